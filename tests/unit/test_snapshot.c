/*
 * Whole snapshots (vmm/snapshot/snapshot.h) without KVM: a state file with
 * configuration, vCPUs, in-kernel devices and device states parses back; the
 * vCPU count, unknown nodes and device states are checked against the
 * configuration; the memory file must match the RAM size; and a save is
 * refused, with nothing written, on a running VM or a device without save.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/platform.h"
#include "devices/rtc.h"
#include "devices/serial.h"
#include "virtio/virtio_pci.h"
#include "vmm/pci.h"
#include "vmm/snapshot/snapshot.h"
#include "vmm/vm.h"

#define MEM (64 * MiB)

struct shape {
	uint32_t cfg_cpus;     /* in the config node */
	unsigned vcpu_nodes;   /* vcpu@0 .. vcpu@N-1 written */
	unsigned ndevices;     /* device@i in the config */
	unsigned nstates;      /* device states */
	bool extra_node;
	bool no_platform;      /* leave out the serial, rtc and acpi-pm nodes */
	bool bad_rtc;          /* an RTC index out of range */
	uint8_t serial;
	bool serial_path;
};

static void sample_vcpu(struct snap_vcpu *v, unsigned i)
{
	memset(v, 0, sizeof(*v));
	v->regs.rip = 0xffffffff81000000ULL + i;
	v->regs.rflags = 2;
	v->sregs.cr0 = 0x80050033;
	v->tsc_khz = 2000000;
	v->xsave_len = SNAP_XSAVE_LEGACY;
	v->xsave[0] = 0x7f;
	v->ncpuid = 1;
	v->cpuid_eax[0] = 0xd;
	v->nmsrs = 1;
	v->msr_index[0] = 0x10;
	v->msr_data[0] = 12345 + i;
	v->mp.mp_state = KVM_MP_STATE_HALTED;
}

/* The platform devices' nodes: a quiet UART, an RTC, ACPI PM with SCI_EN (as acpi_pm_io leaves it). */
static void write_platform(struct snap_writer *w, bool bad_rtc)
{
	struct acpi_pm_regs pm = { .cnt = 1 };
	void *serial = calloc(1, serial_snap_desc.size);
	struct rtc rtc = { .index = bad_rtc ? 0x80 : 0x0b };

	assert_int_equal(snap_begin_node(w, "serial"), 0);
	assert_int_equal(snap_write(w, &serial_snap_desc, serial), 0);
	assert_int_equal(snap_end_node(w), 0);
	assert_int_equal(snap_begin_node(w, "rtc"), 0);
	assert_int_equal(snap_write(w, &rtc_snap_desc, &rtc), 0);
	assert_int_equal(snap_end_node(w), 0);
	assert_int_equal(snap_begin_node(w, "acpi-pm"), 0);
	assert_int_equal(snap_write(w, &acpi_pm_snap_desc, &pm), 0);
	assert_int_equal(snap_end_node(w), 0);
	free(serial);
}

static void *build(const struct shape *sh, size_t *len)
{
	struct snap_config c = { .ncpus = sh->cfg_cpus, .mem_size = MEM, .serial = sh->serial };
	struct snap_kvm_vm kvm;
	struct snap_vcpu *v = malloc(sizeof(*v));
	struct snap_writer w;
	const void *blob;
	char name[32];
	void *copy;

	memset(&kvm, 0, sizeof(kvm));
	kvm.clock.clock = 99;
	assert_int_equal(snap_writer_init(&w), 0);
	assert_int_equal(snap_begin_node(&w, "config"), 0);
	assert_int_equal(snap_write(&w, &snap_config_desc, &c), 0);
	assert_int_equal(snap_write_string(&w, "cmdline", "console=ttyS0"), 0);
	if (sh->serial_path)
		assert_int_equal(snap_write_string(&w, "serial-path", "/tmp/console.log"), 0);
	for (unsigned i = 0; i < sh->ndevices; i++) {
		snprintf(name, sizeof(name), "device@%u", i);
		assert_int_equal(snap_begin_node(&w, name), 0);
		assert_int_equal(snap_write_string(&w, "option", "rng"), 0);
		assert_int_equal(snap_write_string(&w, "args", ""), 0);
		assert_int_equal(snap_end_node(&w), 0);
	}
	assert_int_equal(snap_end_node(&w), 0);
	assert_int_equal(snap_kvm_vm_write(&w, &kvm), 0);
	if (!sh->no_platform)
		write_platform(&w, sh->bad_rtc);
	for (unsigned i = 0; i < sh->vcpu_nodes; i++) {
		sample_vcpu(v, i);
		assert_int_equal(snap_vcpu_write(&w, i, v), 0);
	}
	assert_int_equal(snap_begin_node(&w, "devices"), 0);
	for (unsigned i = 0; i < sh->nstates; i++) {
		snprintf(name, sizeof(name), "rng%u", i);
		assert_int_equal(snap_begin_node(&w, name), 0);
		assert_int_equal(snap_write_u32(&w, "version", 1), 0);
		assert_int_equal(snap_write_string(&w, "kind", "virtio-rng"), 0);
		assert_int_equal(snap_write_prop(&w, "state", "abc", 3), 0);
		assert_int_equal(snap_end_node(&w), 0);
	}
	assert_int_equal(snap_end_node(&w), 0);
	if (sh->extra_node) {
		assert_int_equal(snap_begin_node(&w, "hpet"), 0);
		assert_int_equal(snap_end_node(&w), 0);
	}
	assert_int_equal(snap_writer_finish(&w, &blob, len), 0);
	copy = malloc(*len);
	memcpy(copy, blob, *len);
	snap_writer_free(&w);
	free(v);
	return copy;
}

/*
 * Device nodes hold the virtio-pci transport's fields (test_snapshot_devices.c
 * round-trips real ones); here nstates writes nodes of another shape, which a
 * parse must refuse by name.
 */
static const struct shape good = { .cfg_cpus = 2, .vcpu_nodes = 2, .ndevices = 2, .nstates = 0 };

static void expect_refused(const struct shape *sh, const char *what)
{
	struct vm_snapshot *s = (void *)1;
	char err[SNAP_ERR_LEN] = "";
	size_t len;
	void *blob = build(sh, &len);

	assert_int_equal(vm_snapshot_parse(blob, len, &s, err, sizeof(err)), -EINVAL);
	assert_null(s);
	if (!strstr(err, what))
		fail_msg("error \"%s\" does not mention \"%s\"", err, what);
	free(blob);
}

static void test_config_table_is_well_formed(void **state)
{
	char err[128];

	(void)state;
	if (!snap_desc_valid(&snap_config_desc, err, sizeof(err)))
		fail_msg("%s", err);
}

static void test_whole_snapshot_parses(void **state)
{
	struct vm_snapshot *s;
	struct snap_vcpu *want = malloc(sizeof(*want));
	char err[SNAP_ERR_LEN] = "";
	size_t len;
	void *blob = build(&good, &len);

	(void)state;
	assert_int_equal(vm_snapshot_parse(blob, len, &s, err, sizeof(err)), 0);
	free(blob); /* the snapshot keeps its own copy */
	assert_int_equal(s->cfg.ncpus, 2);
	assert_true(s->cfg.mem_size == MEM);
	assert_string_equal(s->cmdline, "console=ttyS0");
	assert_null(s->kernel);
	assert_int_equal(s->ndevices, 2);
	assert_string_equal(s->devices[1].option, "rng");
	assert_string_equal(s->devices[1].args, "");
	assert_true(s->kvm.clock.clock == 99);
	for (unsigned i = 0; i < 2; i++) {
		sample_vcpu(want, i);
		assert_memory_equal(&s->vcpus[i], want, sizeof(*want));
	}
	assert_int_equal(s->nstates, 0);
	vm_snapshot_free(s);
	free(want);
}

static void test_vcpu_count_must_match(void **state)
{
	struct shape sh = good;

	(void)state;
	sh.cfg_cpus = 3; /* a vCPU short */
	expect_refused(&sh, "missing node vcpu@2");
	sh.cfg_cpus = 1; /* a vCPU too many */
	expect_refused(&sh, "/vcpu@1: unexpected node (the configuration has 1 vCPUs)");
}

static void test_unknown_node_is_refused(void **state)
{
	struct shape sh = good;

	(void)state;
	sh.extra_node = true;
	expect_refused(&sh, "/hpet: unexpected node");
}

static void test_device_nodes_are_checked_at_parse(void **state)
{
	struct shape sh = good;

	(void)state;
	/* A node that is no transport's state is refused before any VM exists. */
	sh.nstates = 1;
	expect_refused(&sh, "/devices/rng0");
}

/* The platform devices' nodes must be there and pass their tables at parse time. */
static void test_platform_nodes_are_checked_at_parse(void **state)
{
	struct shape sh = good;

	(void)state;
	sh.no_platform = true;
	expect_refused(&sh, "serial");
	sh.no_platform = false;
	sh.bad_rtc = true;
	expect_refused(&sh, "/rtc: index");
}

static void test_serial_file_needs_its_path(void **state)
{
	struct shape sh = good;
	struct vm_snapshot *s;
	char err[SNAP_ERR_LEN];
	size_t len;
	void *blob;

	(void)state;
	sh.serial = SERIAL_FILE;
	expect_refused(&sh, "/config: serial: a file, but no serial-path");
	sh.serial_path = true;
	blob = build(&sh, &len);
	assert_int_equal(vm_snapshot_parse(blob, len, &s, err, sizeof(err)), 0);
	assert_string_equal(s->serial_path, "/tmp/console.log");
	vm_snapshot_free(s);
	free(blob);
}

/* A snapshot directory under TMPDIR with state.dtb and a memory file of mem_len bytes. */
static char *make_dir(const void *blob, size_t len, off_t mem_len)
{
	char tmpl[256], path[300];
	const char *tmp = getenv("TMPDIR");
	char *dir;
	int fd;

	snprintf(tmpl, sizeof(tmpl), "%s/snapshot-test.XXXXXX", tmp ? tmp : "/tmp");
	dir = strdup(mkdtemp(tmpl));
	assert_non_null(dir);
	if (blob) {
		snprintf(path, sizeof(path), "%s/state.dtb", dir);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, blob, len), (ssize_t)len);
		close(fd);
	}
	if (mem_len >= 0) {
		snprintf(path, sizeof(path), "%s/memory", dir);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, mem_len), 0); /* sparse: no 64 MiB written */
		close(fd);
	}
	return dir;
}

static void remove_dir(char *dir)
{
	char path[300];

	snprintf(path, sizeof(path), "%s/state.dtb", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/memory", dir);
	unlink(path);
	assert_int_equal(rmdir(dir), 0);
	free(dir);
}

static void test_load_from_a_directory(void **state)
{
	struct vm_snapshot *s;
	char err[512] = "";
	size_t len;
	void *blob = build(&good, &len);
	char *dir;
	int mem_fd;

	(void)state;
	dir = make_dir(blob, len, MEM);
	assert_int_equal(vm_snapshot_load(dir, &s, &mem_fd, err, sizeof(err)), 0);
	assert_true(mem_fd >= 0);
	assert_int_equal(s->cfg.ncpus, 2);
	close(mem_fd);
	vm_snapshot_free(s);
	remove_dir(dir);

	/* A memory file that disagrees with the RAM size. */
	dir = make_dir(blob, len, MEM - 4096);
	assert_int_equal(vm_snapshot_load(dir, &s, &mem_fd, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "memory: 67104768 bytes, but the snapshot's guest has 64 MiB"));
	assert_null(s);
	assert_int_equal(mem_fd, -1);
	remove_dir(dir);

	/* No memory file; no state file; a truncated state file. */
	dir = make_dir(blob, len, -1);
	assert_int_equal(vm_snapshot_load(dir, &s, &mem_fd, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/memory: "));
	remove_dir(dir);
	dir = make_dir(NULL, 0, MEM);
	assert_int_equal(vm_snapshot_load(dir, &s, &mem_fd, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/state.dtb: "));
	remove_dir(dir);
	dir = make_dir(blob, len / 2, MEM);
	assert_int_equal(vm_snapshot_load(dir, &s, &mem_fd, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "/state.dtb: truncated"));
	remove_dir(dir);
	free(blob);
}

/* ---- saving: the refusals, before anything is written ------------------------------- */

static int no_save(struct virtio_dev *vdev, struct snap_writer *w)
{
	(void)vdev, (void)w;
	return 0;
}

static int no_load(struct virtio_dev *vdev, struct snap_reader *r, int node)
{
	(void)vdev, (void)r, (void)node;
	return 0;
}

static void test_save_refuses_running_vm_and_unsaveable_device(void **state)
{
	static const struct virtio_dev_ops blk_ops = { .name = "virtio-blk" };
	static const struct virtio_dev_ops rng_ops = { .name = "virtio-rng", .snap_save = no_save,
						       .snap_load = no_load };
	static const struct virtio_dev_ops rng_noload_ops = { .name = "virtio-rng", .snap_save = no_save };
	struct vm *vm = calloc(1, sizeof(*vm));
	struct pci_bus *pb = calloc(1, sizeof(*pb));
	struct virtio_pci *vp = calloc(2, sizeof(*vp));
	struct virtio_dev *vdev = calloc(2, sizeof(*vdev));
	char err[256] = "", dir[300];
	struct stat st;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/snapshot-never-%d", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
		 (int)getpid());
	pthread_mutex_init(&vm->lock, NULL);
	vm->pci = pb;
	for (int i = 0; i < 2; i++) {
		vp[i].vdev = &vdev[i];
		vp[i].pci.opaque = &vp[i];
		pci_cfg_put16(&vp[i].pci, 0, VIRTIO_PCI_VENDOR);
		pb->slots[2 + i] = &vp[i].pci;
	}
	vdev[0].ops = &rng_ops;
	snprintf(vdev[0].id, sizeof(vdev[0].id), "rng0");
	vdev[1].ops = &blk_ops;
	snprintf(vdev[1].id, sizeof(vdev[1].id), "blk0");

	vm->run.state = VM_STATE_RUNNING;
	assert_int_equal(vm_snapshot_save(vm, dir, err, sizeof(err)), -EAGAIN);
	assert_non_null(strstr(err, "the VM is Running: pause it"));
	vm->run.state = VM_STATE_PAUSED;
	vm->run.snapshotting = true;
	assert_int_equal(vm_snapshot_save(vm, dir, err, sizeof(err)), -EBUSY);
	vm->run.snapshotting = false;

	vm->run.state = VM_STATE_PAUSED;
	assert_int_equal(vm_snapshot_save(vm, dir, err, sizeof(err)), -ENOTSUP);
	assert_string_equal(err, "snapshot refused: blk0 (virtio-blk) cannot be saved");
	/* The refusal ended the snapshot: the VM can resume. */
	assert_false(vm->run.snapshotting);
	assert_int_equal(vm->run.state, VM_STATE_PAUSED);
	/* Refused before anything was written: not even the directory. */
	assert_int_equal(stat(dir, &st), -1);
	/* rng0 has save but no load: refused too (a snapshot nobody could restore). */
	pb->slots[3] = NULL;
	vdev[0].ops = &rng_noload_ops;
	assert_int_equal(vm_snapshot_check_devices(vm, err, sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "rng0 (virtio-rng)"));

	pthread_mutex_destroy(&vm->lock);
	free(vdev);
	free(vp);
	free(pb);
	free(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_table_is_well_formed),
		cmocka_unit_test(test_whole_snapshot_parses),
		cmocka_unit_test(test_vcpu_count_must_match),
		cmocka_unit_test(test_unknown_node_is_refused),
		cmocka_unit_test(test_device_nodes_are_checked_at_parse),
		cmocka_unit_test(test_platform_nodes_are_checked_at_parse),
		cmocka_unit_test(test_serial_file_needs_its_path),
		cmocka_unit_test(test_load_from_a_directory),
		cmocka_unit_test(test_save_refuses_running_vm_and_unsaveable_device),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
