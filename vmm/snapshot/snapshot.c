/* Snapshot and restore of a whole VM into a directory (vmm/snapshot/snapshot.h). */
#include "vmm/snapshot/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libfdt.h>

#include "devices/platform.h"
#include "devices/virtio_kinds.h"
#include "virtio/virtio_pci.h"
#include "vmm/pci.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

_Static_assert(SNAP_MAX_DEVICES == VMM_MAX_DEVICES, "one device state per configured device");

#define C struct snap_config
static const struct snap_field config_fields[] = {
	SNAP_UINT_R(C, ncpus, 1, 254),  /* as vm_create allows */
	SNAP_UINT_R(C, mem_size, 1 * MiB, 1ULL << 46),
	SNAP_UINT_R(C, mem_shared, MEM_SHARE_AUTO, MEM_SHARE_ON),
	SNAP_BOOL(C, mem_hugepages),
	SNAP_UINT_R(C, serial, SERIAL_STDIO, SERIAL_FILE),
};
#undef C

static int config_check(const void *obj, char *err, size_t errlen)
{
	const struct snap_config *c = obj;

	if (!IS_ALIGNED(c->mem_size, 4 * KiB)) {
		snprintf(err, errlen, "mem_size: %#llx is not page aligned",
			 (unsigned long long)c->mem_size);
		return -EINVAL;
	}
	return 0;
}

/* The strings of the command line, beside the numbers. */
static const char *const config_strings[] = { "kernel", "initramfs", "cmdline", "serial-path", NULL };

const struct snap_desc snap_config_desc = {
	.name = "config", .version = 1, .min_version = 1, .size = sizeof(struct snap_config),
	.fields = config_fields, .nfields = ARRAY_SIZE(config_fields), .extra = config_strings,
	.check = config_check,
};

/* The VM-wide nodes cpu.c writes; with platform_snap_nodes, a parse refuses any other root node. */
static const char *const vm_node_names[] = { "pic-master", "pic-slave", "ioapic", "pit", "kvmclock" };

/* ---- save ---------------------------------------------------------------------------- */

int vm_snapshot_check_devices(struct vm *vm, char *err, size_t errlen)
{
	for (unsigned i = 0; i < PCI_NR_SLOTS; i++) {
		struct virtio_pci *vp = vm_virtio_device(vm, i);

		if (vp && (!vp->vdev->ops->snap_save || !vp->vdev->ops->snap_load)) {
			snprintf(err, errlen, "snapshot refused: %s (%s) cannot be saved", vp->vdev->id,
				 vp->vdev->ops->name);
			return -ENOTSUP;
		}
	}
	return 0;
}

static int write_config(struct snap_writer *w, const struct vm_config *cfg)
{
	struct snap_config c = {
		.ncpus = cfg->ncpus,
		.mem_size = cfg->mem_size,
		.mem_shared = (uint8_t)cfg->mem_shared,
		.mem_hugepages = cfg->mem_hugepages,
		.serial = (uint8_t)cfg->serial,
	};
	char name[32];

	if (snap_begin_node(w, "config") || snap_write(w, &snap_config_desc, &c))
		return w->err;
	/* Where the guest came from: for people and for checks; restore needs no kernel. */
	if (cfg->kernel && snap_write_string(w, "kernel", cfg->kernel))
		return w->err;
	if (cfg->initramfs && snap_write_string(w, "initramfs", cfg->initramfs))
		return w->err;
	if (cfg->cmdline && snap_write_string(w, "cmdline", cfg->cmdline))
		return w->err;
	if (cfg->serial == SERIAL_FILE && cfg->serial_path &&
	    snap_write_string(w, "serial-path", cfg->serial_path))
		return w->err;
	/* The devices of the command line, in order: a restore opens each again. */
	for (unsigned i = 0; i < cfg->ndevices; i++) {
		snprintf(name, sizeof(name), "device@%u", i);
		if (snap_begin_node(w, name) ||
		    snap_write_string(w, "option", cfg->devices[i].kind->option) ||
		    snap_write_string(w, "args", cfg->devices[i].args ? cfg->devices[i].args : "") ||
		    snap_end_node(w))
			return w->err;
	}
	return snap_end_node(w);
}

/*
 * Each virtio device under "devices", keyed by its id: the transport's state
 * and, in a child node, the device's own (virtio_pci_save).
 */
static int write_devices(struct snap_writer *w, struct vm *vm, char *err, size_t errlen)
{
	int ret = 0;

	if (snap_begin_node(w, "devices"))
		return w->err;
	for (unsigned i = 0; i < PCI_NR_SLOTS && !ret; i++) {
		struct virtio_pci *vp = vm_virtio_device(vm, i);

		if (!vp)
			continue;
		if (snap_begin_node(w, vp->vdev->id)) {
			ret = w->err;
			break;
		}
		ret = virtio_pci_save(vp, w, err, errlen);
		if (!ret && snap_end_node(w))
			ret = w->err;
	}
	if (!ret && snap_end_node(w))
		ret = w->err;
	if (ret && !err[0])
		snprintf(err, errlen, "saving the devices: %s", strerror(-ret));
	return ret;
}

/* Write len bytes to dir/name through dir/name.tmp, fsync and rename: all or nothing. */
static int write_file(const char *dir, const char *name, const void *blob, size_t len,
		      const struct gmem *mem, char *err, size_t errlen)
{
	char path[4096], tmp[4096 + 8];
	const uint8_t *p = blob;
	int fd, ret = 0;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path)) {
		snprintf(err, errlen, "%s: path too long", dir);
		return -ENAMETOOLONG;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		return ret;
	}
	if (mem) {
		ret = gmem_save_file(mem, fd);
	} else {
		while (len && !ret) {
			ssize_t n = write(fd, p, len);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				ret = n < 0 ? -errno : -EIO;
			else {
				p += n;
				len -= (size_t)n;
			}
		}
	}
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	if (close(fd) < 0 && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path) < 0)
		ret = -errno;
	if (ret) {
		snprintf(err, errlen, "%s: %s", path, strerror(-ret));
		unlink(tmp);
	}
	return ret;
}

static int save_paused(struct vm *vm, const char *dir, char *err, size_t errlen);

int vm_snapshot_save(struct vm *vm, const char *dir, char *err, size_t errlen)
{
	int ret;

	/* Paused, and stays so: vm.resume waits (-EBUSY) until the snapshot is written. */
	pthread_mutex_lock(&vm->lock);
	ret = vm_runstate_begin(&vm->run, VM_OP_SNAPSHOT);
	if (ret == -EAGAIN || ret == -ESHUTDOWN)
		snprintf(err, errlen, "the VM is %s: %s", vm_run_state_name(vm->run.state),
			 ret == -EAGAIN ? "pause it before a snapshot (vm.pause)" : "nothing to save");
	else if (ret)
		snprintf(err, errlen, "a pause, resume or snapshot is under way; try again");
	pthread_mutex_unlock(&vm->lock);
	if (ret)
		return ret;
	ret = save_paused(vm, dir, err, errlen);
	pthread_mutex_lock(&vm->lock);
	vm_runstate_end(&vm->run, VM_OP_SNAPSHOT, ret == 0);
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

static int save_paused(struct vm *vm, const char *dir, char *err, size_t errlen)
{
	const struct snap_kvm_fds k = { .kvm_fd = vm->kvm_fd, .vm_fd = vm->vm_fd };
	struct snap_vcpu *vs = NULL;
	struct snap_kvm_vm kvm;
	struct snap_writer w;
	const void *blob;
	char what[200];
	size_t len;
	int ret;

	ret = vm_snapshot_check_devices(vm, err, errlen);
	if (ret)
		return ret;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return ret;
	}
	ret = snap_writer_init(&w);
	if (ret) {
		snprintf(err, errlen, "starting the state file: %s", strerror(-ret));
		return ret;
	}
	ret = write_config(&w, vm->cfg);
	if (ret) {
		snprintf(err, errlen, "writing the configuration: %s", strerror(-ret));
		goto out;
	}
	/* The VM is paused: every vCPU is out of KVM_RUN, so its state holds still. */
	ret = snap_kvm_vm_capture(&k, &kvm, what, sizeof(what));
	if (!ret)
		ret = snap_kvm_vm_write(&w, &kvm);
	if (ret) {
		snprintf(err, errlen, "saving the in-kernel PIC, IOAPIC, PIT or clock: %s",
			 what[0] ? what : strerror(-ret));
		goto out;
	}
	ret = platform_save(vm, &w);
	if (ret) {
		snprintf(err, errlen, "saving the serial port, RTC or ACPI PM: %s", strerror(-ret));
		goto out;
	}
	vs = malloc(sizeof(*vs));
	if (!vs) {
		ret = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < vm->ncpus; i++) {
		what[0] = '\0';
		/*
		 * A vCPU finishes its last port or MMIO access before it parks
		 * (vcpu.c); done again here, at no cost, so a capture never sees
		 * half an instruction whatever parked the vCPU.
		 */
		ret = snap_vcpu_complete_io(vm->vcpus[i].fd, vm->vcpus[i].run);
		if (ret)
			snprintf(what, sizeof(what), "completing its last I/O: %s", strerror(-ret));
		else
			ret = snap_vcpu_capture(&k, vm->vcpus[i].fd, vs, what, sizeof(what));
		if (!ret)
			ret = snap_vcpu_write(&w, i, vs);
		if (ret) {
			snprintf(err, errlen, "saving vCPU %u: %s", i, what[0] ? what : strerror(-ret));
			goto out;
		}
	}
	ret = write_devices(&w, vm, err, errlen);
	if (ret)
		goto out;
	ret = snap_writer_finish(&w, &blob, &len);
	if (ret) {
		snprintf(err, errlen, "finishing the state file: %s", strerror(-ret));
		goto out;
	}
	/* Memory first, the state file last: a state.dtb means the snapshot is whole. */
	ret = write_file(dir, SNAP_MEMORY_FILE, NULL, 0, &vm->mem, err, errlen);
	if (!ret)
		ret = write_file(dir, SNAP_STATE_FILE, blob, len, NULL, err, errlen);
out:
	free(vs);
	snap_writer_free(&w);
	return ret;
}

/* ---- restore: parse and validate ----------------------------------------------------- */

/* Whether name is "vcpu@N" with N canonical decimal below ncpus. */
static bool is_vcpu_node(const char *name, uint32_t ncpus)
{
	char want[32];

	if (strncmp(name, "vcpu@", 5))
		return false;
	for (uint32_t i = 0; i < ncpus; i++) {
		snprintf(want, sizeof(want), "vcpu@%u", i);
		if (!strcmp(name, want))
			return true;
	}
	return false;
}

static bool is_vm_node(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(vm_node_names); i++)
		if (!strcmp(name, vm_node_names[i]))
			return true;
	for (size_t i = 0; platform_snap_nodes[i]; i++)
		if (!strcmp(name, platform_snap_nodes[i]))
			return true;
	return false;
}

static int optional_string(struct snap_reader *r, int node, const char *name, const char **s)
{
	*s = NULL;
	if (!fdt_getprop(r->fdt, node, name, NULL))
		return 0;
	return snap_read_string(r, node, name, s);
}

static int parse_config(struct vm_snapshot *s)
{
	struct snap_reader *r = &s->reader;
	int node = snap_node(r, 0, "config"), child, ret;

	if (node < 0)
		return node;
	ret = snap_read(r, node, &snap_config_desc, &s->cfg);
	if (!ret)
		ret = optional_string(r, node, "kernel", &s->kernel);
	if (!ret)
		ret = optional_string(r, node, "initramfs", &s->initramfs);
	if (!ret)
		ret = optional_string(r, node, "cmdline", &s->cmdline);
	if (!ret)
		ret = optional_string(r, node, "serial-path", &s->serial_path);
	if (ret)
		return ret;
	if (s->cfg.serial == SERIAL_FILE && !s->serial_path)
		return snap_fail(r, node, "serial: a file, but no serial-path");
	fdt_for_each_subnode(child, r->fdt, node) {
		const char *name = fdt_get_name(r->fdt, child, NULL);
		char want[32];
		unsigned i = s->ndevices;

		if (i >= SNAP_MAX_DEVICES)
			return snap_fail(r, node, "more than %u devices", SNAP_MAX_DEVICES);
		/* device@0, device@1, ... in command-line order */
		snprintf(want, sizeof(want), "device@%u", i);
		if (!name || strcmp(name, want))
			return snap_fail(r, child, "expected node %s here", want);
		ret = snap_read_string(r, child, "option", &s->devices[i].option);
		if (!ret)
			ret = snap_read_string(r, child, "args", &s->devices[i].args);
		if (ret)
			return ret;
		s->ndevices++;
	}
	if (child != -FDT_ERR_NOTFOUND)
		return snap_fail(r, node, "corrupt node list");
	return 0;
}

static int parse_devices(struct vm_snapshot *s)
{
	struct snap_reader *r = &s->reader;
	int node, child, ret;

	if (!snap_has_node(r, 0, "devices"))
		return 0;
	node = snap_node(r, 0, "devices");
	fdt_for_each_subnode(child, r->fdt, node) {
		unsigned i = s->nstates;

		if (i >= SNAP_MAX_DEVICES)
			return snap_fail(r, node, "more than %u devices", SNAP_MAX_DEVICES);
		s->states[i].id = fdt_get_name(r->fdt, child, NULL);
		if (!s->states[i].id || !s->states[i].id[0])
			return snap_fail(r, child, "a device state without a name");
		/* What needs no device (ranges, versions): a bad file is refused before a VM exists. */
		ret = virtio_pci_snap_check(r, child);
		if (ret)
			return ret;
		s->states[i].node = child;
		s->nstates++;
	}
	if (child != -FDT_ERR_NOTFOUND)
		return snap_fail(r, node, "corrupt node list");
	if (s->nstates > s->ndevices)
		return snap_fail(r, node, "%u device states for %u configured devices", s->nstates,
				 s->ndevices);
	return 0;
}

int vm_snapshot_parse(const void *buf, size_t len, struct vm_snapshot **out, char *err,
		      size_t errlen)
{
	struct vm_snapshot *s = calloc(1, sizeof(*s));
	struct snap_reader *r;
	int ret, node;

	*out = NULL;
	if (!s)
		return -ENOMEM;
	r = &s->reader;
	ret = snap_reader_open(r, buf, len);
	if (!ret)
		ret = parse_config(s);
	if (!ret)
		ret = snap_kvm_vm_read(r, &s->kvm);
	if (!ret)
		ret = platform_snap_check(r);
	if (ret)
		goto err;
	s->vcpus = calloc(s->cfg.ncpus, sizeof(*s->vcpus));
	if (!s->vcpus) {
		ret = -ENOMEM;
		goto err;
	}
	for (uint32_t i = 0; i < s->cfg.ncpus && !ret; i++)
		ret = snap_vcpu_read(r, i, &s->vcpus[i]);
	if (!ret)
		ret = parse_devices(s);
	if (ret)
		goto err;
	/* Nothing the snapshot's configuration does not explain: no vcpu@N beyond its count. */
	fdt_for_each_subnode(node, r->fdt, 0) {
		const char *name = fdt_get_name(r->fdt, node, NULL);

		if (!name || (strcmp(name, "config") && strcmp(name, "devices") && !is_vm_node(name) &&
			      !is_vcpu_node(name, s->cfg.ncpus))) {
			ret = snap_fail(r, node, "unexpected node (the configuration has %u vCPUs)",
					s->cfg.ncpus);
			goto err;
		}
	}
	*out = s;
	return 0;

err:
	snprintf(err, errlen, "%s", r->err[0] ? r->err : strerror(-ret));
	vm_snapshot_free(s);
	return ret;
}

void vm_snapshot_free(struct vm_snapshot *s)
{
	if (!s)
		return;
	snap_reader_close(&s->reader);
	free(s->vcpus);
	free(s);
}

int vm_snapshot_load(const char *dir, struct vm_snapshot **out, int *mem_fd, char *err,
		     size_t errlen)
{
	char path[4096], msg[SNAP_ERR_LEN];
	struct stat st;
	void *buf = NULL;
	int fd, ret;

	*out = NULL;
	*mem_fd = -1;
	snprintf(path, sizeof(path), "%s/%s", dir, SNAP_STATE_FILE);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return ret;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
	    (uint64_t)st.st_size > SNAP_MAX_FILE) {
		snprintf(err, errlen, "%s: not a regular file of 1 byte to %u MiB", path,
			 SNAP_MAX_FILE >> 20);
		close(fd);
		return -EINVAL;
	}
	buf = malloc((size_t)st.st_size);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	ret = pread_full(fd, buf, (size_t)st.st_size, 0);
	close(fd);
	if (ret) {
		snprintf(err, errlen, "%s: %s", path, ret == -EIO ? "short read" : strerror(-ret));
		free(buf);
		return ret;
	}
	ret = vm_snapshot_parse(buf, (size_t)st.st_size, out, msg, sizeof(msg));
	free(buf);
	if (ret) {
		snprintf(err, errlen, "%s: %s", path, msg);
		return ret;
	}

	snprintf(path, sizeof(path), "%s/%s", dir, SNAP_MEMORY_FILE);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto err;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != (*out)->cfg.mem_size) {
		ret = -EINVAL;
		snprintf(err, errlen, "%s: %lld bytes, but the snapshot's guest has %llu MiB of RAM",
			 path, (long long)st.st_size, (unsigned long long)((*out)->cfg.mem_size / MiB));
		goto err;
	}
	*mem_fd = fd;
	return 0;

err:
	if (fd >= 0)
		close(fd);
	vm_snapshot_free(*out);
	*out = NULL;
	return ret;
}

int vm_snapshot_config(const struct vm_snapshot *s, struct vm_config *cfg, char *err, size_t errlen)
{
	cfg->ncpus = s->cfg.ncpus;
	cfg->mem_size = s->cfg.mem_size;
	cfg->mem_shared = (enum mem_share)s->cfg.mem_shared;
	cfg->mem_hugepages = s->cfg.mem_hugepages;
	cfg->kernel = s->kernel;
	cfg->initramfs = s->initramfs;
	cfg->cmdline = s->cmdline;
	cfg->ndevices = 0;
	for (unsigned i = 0; i < s->ndevices; i++) {
		const struct virtio_dev_kind *kind = NULL;

		for (size_t k = 0; virtio_dev_kinds[k] && !kind; k++)
			if (!strcmp(virtio_dev_kinds[k]->option, s->devices[i].option))
				kind = virtio_dev_kinds[k];
		if (!kind) {
			snprintf(err, errlen, "device %u: --%s is not a device this vmm knows", i,
				 s->devices[i].option);
			return -EINVAL;
		}
		cfg->devices[i].kind = kind;
		cfg->devices[i].args = s->devices[i].args;
		cfg->ndevices++;
	}
	return 0;
}

/* ---- restore: apply ------------------------------------------------------------------ */

int vm_snapshot_apply(struct vm *vm, struct vm_snapshot *s, char *err, size_t errlen)
{
	const struct snap_kvm_fds k = { .kvm_fd = vm->kvm_fd, .vm_fd = vm->vm_fd };
	char what[200] = "";
	unsigned nlive = 0;
	int ret;

	if (vm->ncpus != s->cfg.ncpus || vm->mem.ram_size != s->cfg.mem_size) {
		snprintf(err, errlen, "the VM has %u vCPUs and %llu MiB, the snapshot %u and %llu MiB",
			 vm->ncpus, (unsigned long long)(vm->mem.ram_size / MiB), s->cfg.ncpus,
			 (unsigned long long)(s->cfg.mem_size / MiB));
		return -EINVAL;
	}
	/* Devices first: their checks (a device missing, a state it refuses) change nothing in KVM. */
	for (unsigned i = 0; i < PCI_NR_SLOTS; i++) {
		struct virtio_pci *vp = vm_virtio_device(vm, i);
		struct virtio_dev *vdev = vp ? vp->vdev : NULL;
		unsigned j;

		if (!vdev)
			continue;
		nlive++;
		for (j = 0; j < s->nstates && strcmp(s->states[j].id, vdev->id); j++)
			;
		if (j == s->nstates) {
			snprintf(err, errlen, "%s (%s): no state for it in the snapshot", vdev->id,
				 vdev->ops->name);
			return -EINVAL;
		}
		ret = virtio_pci_load(vp, &s->reader, s->states[j].node);
		if (ret) {
			snprintf(err, errlen, "%s", s->reader.err[0] ? s->reader.err : strerror(-ret));
			return ret;
		}
	}
	if (nlive != s->nstates) {
		snprintf(err, errlen, "the snapshot has %u device states, the VM %u devices",
			 s->nstates, nlive);
		return -EINVAL;
	}
	/* The VM-wide devices, then the vCPUs (Firecracker's order); see cpu.c for each step. */
	ret = snap_kvm_vm_restore(&k, &s->kvm, what, sizeof(what));
	if (ret) {
		snprintf(err, errlen, "restoring the in-kernel PIC, IOAPIC, PIT or clock: %s", what);
		return ret;
	}
	/* After the irqchip: the serial port and the SCI drive their lines to the saved level. */
	ret = platform_load(vm, &s->reader);
	if (ret) {
		snprintf(err, errlen, "%s", s->reader.err[0] ? s->reader.err : strerror(-ret));
		return ret;
	}
	for (unsigned i = 0; i < vm->ncpus; i++) {
		what[0] = '\0';
		ret = snap_vcpu_restore(&k, vm->vcpus[i].fd, &s->vcpus[i], what, sizeof(what));
		if (ret) {
			snprintf(err, errlen, "restoring vCPU %u: %s", i, what);
			return ret;
		}
	}
	return 0;
}
