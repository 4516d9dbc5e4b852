#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86_64/acpi.h"
#include "arch/x86_64/boot.h"
#include "arch/x86_64/layout.h"
#include "arch/x86_64/mptable.h"
#include "arch/x86_64/vcpu.h"
#include "channel/evloop.h"
#include "devices/platform.h"
#include "virtio/virtio_pci.h"
#include "vmm/pci.h"
#include "vmm/vcpu.h"

#define KVM_DEV "/dev/kvm"
#define KVM_TSS_ADDR          0xfffbd000ULL /* three pages KVM needs on Intel, in the hole */
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000ULL
#define MAX_CPUID_ENTRIES     256

/* Every capability we rely on, checked up front so a missing one is named, not a mystery later. */
static const struct {
	int cap;
	const char *name;
} required_caps[] = {
	{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
	{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
	{ KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
	{ KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR" },
	{ KVM_CAP_PIT2, "KVM_CAP_PIT2" },
	{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
	{ KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD" },
	{ KVM_CAP_IRQFD, "KVM_CAP_IRQFD" },
	{ KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING" },
	{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
	{ KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE" },
};

static int check_caps(int kvm_fd)
{
	int v = ioctl(kvm_fd, KVM_GET_API_VERSION, 0);

	if (v != KVM_API_VERSION) {
		pr_err("%s: KVM API version %d, need %d", KVM_DEV, v, KVM_API_VERSION);
		return -ENOTSUP;
	}
	for (size_t i = 0; i < ARRAY_SIZE(required_caps); i++) {
		if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, required_caps[i].cap) <= 0) {
			pr_err("%s: KVM lacks %s, which vmm needs; use a newer host kernel", KVM_DEV,
			       required_caps[i].name);
			return -ENOTSUP;
		}
	}
	return 0;
}

static int max_vcpus(int kvm_fd)
{
	int n = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);

	if (n <= 0)
		n = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (n <= 0)
		n = 4; /* the documented minimum when neither capability answers */
	/* xAPIC ids are 8 bits and 255 is the broadcast id; the IOAPIC takes one more. */
	return MIN(n, 254);
}

static int get_supported_cpuid(struct vm *vm)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + MAX_CPUID_ENTRIES * sizeof(c->entries[0]));

	if (!c)
		return -ENOMEM;
	c->nent = MAX_CPUID_ENTRIES;
	if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		int ret = -errno;

		free(c);
		pr_err("%s: KVM_GET_SUPPORTED_CPUID failed: %s", KVM_DEV, strerror(-ret));
		return ret;
	}
	vm->supported_cpuid = c;
	return 0;
}

static int open_kvm(void)
{
	int fd = open(KVM_DEV, O_RDWR | O_CLOEXEC);

	if (fd >= 0)
		return fd;
	if (errno == ENOENT)
		pr_err("%s does not exist: this host has no KVM (load kvm_intel or kvm_amd, or enable "
		       "nested virtualization); 'make run' falls back to a nested KVM host", KVM_DEV);
	else if (errno == EACCES || errno == EPERM)
		pr_err("%s: permission denied: add yourself to the 'kvm' group or run as root", KVM_DEV);
	else
		pr_err("%s: %s", KVM_DEV, strerror(errno));
	return -errno;
}

static int set_memory(struct vm *vm)
{
	for (unsigned i = 0; i < vm->mem.nr_regions; i++) {
		const struct gmem_region *r = &vm->mem.regions[i];
		struct kvm_userspace_memory_region kr = {
			.slot = i,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uint64_t)(uintptr_t)r->hva,
		};

		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &kr) < 0)
			return -errno;
	}
	return 0;
}

/* With --verbose: which backing guest RAM got, why, and whether huge pages can back it. */
static void note_backing(const struct vm *vm, const char *why)
{
	char policy[32], reason[128];
	const char *pages;

	if (!vmm_verbosity)
		return; /* no sysfs reads on every start */
	switch (vm->mem.backing) {
	case GMEM_PRIVATE:
		gmem_thp_policy("enabled", policy, sizeof(policy));
		pages = strcmp(policy, "always") && strcmp(policy, "madvise") ?
			"4 KiB pages: THP is off on this host" :
			"transparent huge pages asked for (MADV_HUGEPAGE)";
		pr_info("guest RAM: %llu MiB private anonymous (%s); %s; " GMEM_THP_SYSFS "enabled: %s",
			(unsigned long long)(vm->mem.ram_size / MiB), why, pages, policy);
		break;
	case GMEM_SHARED:
		gmem_thp_policy("shmem_enabled", policy, sizeof(policy));
		if (vm->mem.huge_tmpfs) {
			pr_info("guest RAM: %llu MiB shared (%s), a file on a tmpfs of vmm's own mounted "
				"with huge=always: transparent huge pages, though " GMEM_THP_SYSFS
				"shmem_enabled is %s; unlike a memfd, its size cannot be sealed",
				(unsigned long long)(vm->mem.ram_size / MiB), why, policy);
			break;
		}
		if (vm->mem.huge_tmpfs_err) {
			snprintf(reason, sizeof(reason), "4 KiB pages: a huge=always tmpfs could not be made (%s)",
				 strerror(vm->mem.huge_tmpfs_err));
			pages = reason;
		} else if (strcmp(policy, "always") && strcmp(policy, "advise") && strcmp(policy, "force") &&
			   strcmp(policy, "within_size")) {
			pages = "4 KiB pages: THP is off for shared memory on this host";
		} else {
			pages = "transparent huge pages asked for (MADV_HUGEPAGE)";
		}
		pr_info("guest RAM: %llu MiB shared (%s), a memfd; %s; " GMEM_THP_SYSFS "shmem_enabled: %s%s",
			(unsigned long long)(vm->mem.ram_size / MiB), why, pages, policy,
			vm->mem.huge_tmpfs_err || !strcmp(policy, "deny") ?
				"; --memory hugepages=on gives 2 MiB pages from the host's pool" : "");
		break;
	default:
		pr_info("guest RAM: %llu MiB %s (%s): 2 MiB pages reserved from the host's pool",
			(unsigned long long)(vm->mem.ram_size / MiB), gmem_backing_name(vm->mem.backing), why);
		break;
	}
}

/* The first device on the command line that must share guest RAM with another process. */
static const struct vm_device_arg *sharing_device(const struct vm_config *cfg)
{
	for (unsigned i = 0; i < cfg->ndevices; i++)
		if (cfg->devices[i].kind->shares_guest_memory)
			return &cfg->devices[i];
	return NULL;
}

/*
 * Guest RAM with the backing --memory and the devices ask for: hugetlbfs
 * when asked, a shared memfd when asked or when a device needs one (vhost-user),
 * private anonymous memory otherwise. Errors are printed; -EINVAL means the
 * command line is at fault.
 */
static int create_memory(struct vm *vm, const struct vm_config *cfg, int mem_fd)
{
	const struct vm_device_arg *dev = sharing_device(cfg);
	enum gmem_backing backing = GMEM_PRIVATE;
	const char *why = "the default";
	char reason[64];
	long short_by;
	int ret;

	if (mem_fd >= 0 && !dev && !cfg->mem_hugepages) {
		/*
		 * A restore maps the snapshot's memory file copy-on-write: the
		 * guest runs before it is read. RAM another process shares (or
		 * hugetlbfs) is made as at boot and the file read into it below.
		 */
		ret = gmem_create_from_file(&vm->mem, mem_fd, cfg->mem_size, X86_MEM_HOLE_START,
					    X86_MEM_HOLE_END);
		if (ret) {
			pr_err("--restore: cannot map the snapshot's memory (%llu MiB): %s",
			       (unsigned long long)(cfg->mem_size / MiB), strerror(-ret));
			return ret;
		}
		if (vmm_verbosity)
			pr_info("guest RAM: %llu MiB private copy-on-write mapping of the snapshot's memory file",
				(unsigned long long)(cfg->mem_size / MiB));
		return 0;
	}
	if (dev && cfg->mem_shared == MEM_SHARE_OFF) {
		pr_err("--memory shared=off: --%s shares guest memory with another process; drop shared=off",
		       dev->kind->option);
		return -EINVAL;
	}
	if (cfg->mem_hugepages) {
		backing = GMEM_HUGETLB;
		why = "hugepages=on";
	} else if (cfg->mem_shared == MEM_SHARE_ON) {
		backing = GMEM_SHARED;
		why = "shared=on";
	} else if (dev) {
		backing = GMEM_SHARED;
		snprintf(reason, sizeof(reason), "--%s maps it", dev->kind->option);
		why = reason;
	}
	ret = gmem_create_backed(&vm->mem, cfg->mem_size, X86_MEM_HOLE_START, X86_MEM_HOLE_END, backing);
	if (ret == -ENOMEM && backing == GMEM_HUGETLB && (short_by = gmem_hugetlb_shortfall(cfg->mem_size)) > 0) {
		pr_err("--memory hugepages=on: the host has %ld too few free 2 MiB huge pages for %llu MiB "
		       "(HugePages_Free in /proc/meminfo); reserve them: sysctl vm.nr_hugepages=N",
		       short_by, (unsigned long long)(cfg->mem_size / MiB));
		return -ENOMEM;
	}
	if (ret) {
		pr_err("--memory: cannot allocate %llu MiB of %s guest memory: %s",
		       (unsigned long long)(cfg->mem_size / MiB), gmem_backing_name(backing), strerror(-ret));
		return ret;
	}
	note_backing(vm, why);
	if (mem_fd >= 0) {
		uint64_t t0 = monotonic_ns();

		ret = gmem_load_file(&vm->mem, mem_fd);
		if (ret) {
			pr_err("--restore: reading the snapshot's memory into %s guest RAM failed: %s",
			       gmem_backing_name(backing), strerror(-ret));
			return ret;
		}
		pr_info("guest RAM: the snapshot's memory read in %llu ms (%s RAM cannot map it privately)",
			(unsigned long long)((monotonic_ns() - t0) / 1000000), gmem_backing_name(backing));
	}
	return 0;
}

/*
 * Everything the guest finds in memory at boot: MP and ACPI tables, kernel,
 * initramfs, command line, zero page, page tables, GDT. Needs only guest
 * memory, so it runs on the loader thread while vCPUs and devices are made.
 */
static int load_memory(struct vm *vm, const struct vm_images *img)
{
	struct x86_platform plat = {
		.ncpus = vm->cfg->ncpus,
		.mmio64_base = ALIGN_UP(MAX(gmem_end(&vm->mem), X86_MEM_HOLE_END), X86_PCI_MMIO64_ALIGN),
		.mmio64_size = X86_PCI_MMIO64_SIZE,
	};
	struct x86_boot_params bp = {
		.kernel = img->kernel,
		.initrd = img->initrd,
		.cmdline = vm->cfg->cmdline,
	};
	char err[256];
	void *p;
	int ret;

	p = gmem_translate(&vm->mem, X86_MPTABLE_ADDR, X86_MPTABLE_MAX);
	ret = p ? mptable_build(&plat, p, X86_MPTABLE_MAX, X86_MPTABLE_ADDR) : -EFAULT;
	if (ret) {
		pr_err("building the MP table for %u vCPUs failed: %s", plat.ncpus, strerror(-ret));
		return ret;
	}
	p = gmem_translate(&vm->mem, X86_ACPI_ADDR, X86_ACPI_MAX);
	ret = p ? acpi_build(&plat, p, X86_ACPI_MAX, X86_ACPI_ADDR, &bp.rsdp_gpa) : -EFAULT;
	if (ret) {
		pr_err("building the ACPI tables for %u vCPUs failed: %s", plat.ncpus, strerror(-ret));
		return ret;
	}
	ret = x86_boot_load(&vm->mem, &bp, &vm->layout, err, sizeof(err));
	if (ret) {
		if (ret == -ENOMEM)
			pr_err("--memory: %s", err);
		else if (ret == -EIO)
			pr_err("%s", err);
		else
			pr_err("--kernel %s: %s", vm->cfg->kernel, err);
		return ret;
	}
	ret = x86_boot_build_page_tables(&vm->mem);
	if (!ret)
		ret = x86_boot_build_gdt(&vm->mem);
	if (ret)
		pr_err("building the boot page tables failed: %s", strerror(-ret));
	return ret;
}

static void *loader_thread(void *arg)
{
	struct vm *vm = arg;

	vm->loader_ret = load_memory(vm, vm->loader_img);
	return NULL;
}

/* Start load_memory on its own thread; on failure to start one, run it here. */
static void loader_start(struct vm *vm, const struct vm_images *img)
{
	vm->loader_img = img;
	if (vmm_thread_create(&vm->loader, loader_thread, vm, "loader") == 0)
		vm->loader_running = true;
	else
		vm->loader_ret = load_memory(vm, img);
}

static int loader_wait(struct vm *vm)
{
	if (vm->loader_running) {
		pthread_join(vm->loader, NULL);
		vm->loader_running = false;
	}
	return vm->loader_ret;
}

/*
 * KVM's coalesced ring (vmm/coalesced.h), if it has one for ports too: a page
 * of the VM's that every vCPU's mapping shows, here read through vCPU 0's.
 */
static void coalesced_setup(struct vm *vm)
{
	long page = sysconf(_SC_PAGESIZE);
	int off = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_MMIO);

	if (off <= 0 || page <= 0 || ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_PIO) <= 0 ||
	    (long)(off + 1) * page > vm->vcpu_mmap_size) {
		pr_info("no coalesced I/O ring: every port write exits");
		return;
	}
	coalesced_attach(&vm->coalesced, (char *)vm->vcpus[0].run + (long)off * page, (size_t)page);
}

void vm_coalesce_pio(struct vm *vm, uint16_t port, uint32_t len)
{
	struct kvm_coalesced_mmio_zone zone = { .addr = port, .size = len, .pio = 1 };

	/* Without a ring to drain, queued writes would never reach their device. */
	if (!vm->coalesced.ring)
		return;
	if (ioctl(vm->vm_fd, KVM_REGISTER_COALESCED_MMIO, &zone) < 0)
		pr_info("ports %#x-%#x: not coalesced (%s)", port, port + len - 1, strerror(errno));
}

/* vm_create, or with img NULL and mem_fd a snapshot's memory file, vm_create_restored. */
static int create(struct vm *vm, const struct vm_config *cfg, const struct vm_images *img, int mem_fd)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	int ret, limit;

	memset(vm, 0, sizeof(*vm));
	vm->cfg = cfg;
	vm->kvm_fd = vm->vm_fd = vm->exit_efd = -1;
	coalesced_init(&vm->coalesced, &vm->pio, &vm->mmio);
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);

	/*
	 * Guest memory is not yet a VM's: the loader fills it (15 MiB of kernel
	 * and initramfs), the longest step of a start, while KVM makes the VM,
	 * its vCPUs and devices.
	 */
	ret = create_memory(vm, cfg, mem_fd);
	if (ret)
		goto err;
	if (img)
		loader_start(vm, img);

	vm->kvm_fd = open_kvm();
	if (vm->kvm_fd < 0) {
		ret = vm->kvm_fd;
		goto err;
	}
	ret = check_caps(vm->kvm_fd);
	if (ret)
		goto err;
	limit = max_vcpus(vm->kvm_fd);
	if (cfg->ncpus > (unsigned)limit) {
		pr_err("--cpus %u: this host's KVM allows at most %d vCPUs", cfg->ncpus, limit);
		ret = -EINVAL;
		goto err;
	}
	vm->vcpu_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->vcpu_mmap_size < (int)sizeof(struct kvm_run)) {
		ret = -ENOTSUP;
		pr_err("%s: bad KVM_GET_VCPU_MMAP_SIZE", KVM_DEV);
		goto err;
	}
	ret = get_supported_cpuid(vm);
	if (ret)
		goto err;

	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		ret = -errno;
		pr_err("%s: KVM_CREATE_VM failed: %s", KVM_DEV, strerror(errno));
		goto err;
	}
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_ADDR) < 0 ||
	    ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &(uint64_t){ KVM_IDENTITY_MAP_ADDR }) < 0 ||
	    ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0 ||
	    ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		ret = -errno;
		pr_err("%s: creating the in-kernel irqchip and PIT failed: %s", KVM_DEV, strerror(errno));
		goto err;
	}

	ret = set_memory(vm);
	if (ret) {
		pr_err("KVM_SET_USER_MEMORY_REGION failed: %s", strerror(-ret));
		goto err;
	}

	ret = evloop_create(&vm->loop);
	if (ret) {
		pr_err("creating the device event loop failed: %s", strerror(-ret));
		goto err;
	}

	vm->exit_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->exit_efd < 0) {
		ret = -errno;
		goto err;
	}
	if (bus_init(&vm->pio, "pio") || bus_init(&vm->mmio, "mmio")) {
		ret = -ENOMEM;
		goto err;
	}

	vm->ncpus = cfg->ncpus;
	vm->vcpus = calloc(vm->ncpus, sizeof(*vm->vcpus));
	if (!vm->vcpus) {
		ret = -ENOMEM;
		goto err;
	}
	for (unsigned i = 0; i < vm->ncpus; i++)
		vm->vcpus[i].fd = -1;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		ret = vcpu_create(vm, &vm->vcpus[i], i);
		if (ret) {
			pr_err("KVM_CREATE_VCPU %u failed: %s", i, strerror(-ret));
			goto err;
		}
		ret = x86_vcpu_init(vm->vcpus[i].fd, vm->supported_cpuid, i, vm->ncpus,
				    ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0);
		if (ret) {
			pr_err("setting up vCPU %u (CPUID, LAPIC) failed: %s", i, strerror(-ret));
			goto err;
		}
	}
	coalesced_setup(vm);
	vm->kvmclock_ctrl = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_KVMCLOCK_CTRL) > 0;

	ret = platform_devices_init(vm);
	if (ret)
		goto err;
	/* PCI host bridge and the virtio devices of cfg->devices: added by the PCI transport. */
	ret = pci_vm_init(vm);
	if (!ret)
		ret = virtio_pci_add_devices(vm);
	if (ret)
		goto err;
	return 0;

err:
	vm_destroy(vm);
	return ret;
}

int vm_create(struct vm *vm, const struct vm_config *cfg, const struct vm_images *img)
{
	return create(vm, cfg, img, -1);
}

int vm_create_restored(struct vm *vm, const struct vm_config *cfg, int mem_fd)
{
	int ret = create(vm, cfg, NULL, mem_fd);

	if (ret)
		return ret;
	/* Paused from the start: the vCPUs park before their first KVM_RUN, until vm_wake. */
	vm->pause_requested = true;
	vm->run.state = VM_STATE_PAUSED;
	return 0;
}

/* The vCPUs and the VM fd: KVM frees the VM when the last of them closes. */
static void release_kvm(struct vm *vm)
{
	if (vm->vcpus) {
		for (unsigned i = 0; i < vm->ncpus; i++)
			vcpu_destroy(&vm->vcpus[i]);
		free(vm->vcpus);
		vm->vcpus = NULL;
	}
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	vm->vm_fd = -1;
}

static void *release_thread(void *arg)
{
	release_kvm(arg);
	return NULL;
}

void vm_destroy(struct vm *vm)
{
	pthread_t releaser;
	bool releasing = false;

	/* The loader writes guest memory: it finishes before anything goes. */
	loader_wait(vm);
	/*
	 * KVM takes tens of milliseconds to free a VM, and a tap we created as
	 * long to go: the two overlap. Before the VM goes, devices stop asking
	 * KVM for anything, the serial port (which raises its line through the
	 * VM fd) goes, and so does the coalesced ring, which lies in vCPU 0's
	 * mapping. The rest of the devices need only guest memory and the event
	 * loop, both kept until the VM is gone.
	 */
	pci_vm_detach(vm);
	platform_devices_destroy(vm);
	coalesced_destroy(&vm->coalesced);
	if (vm->vm_fd >= 0 && vmm_thread_create(&releaser, release_thread, vm, "release") == 0)
		releasing = true;
	else
		release_kvm(vm);
	pci_vm_destroy(vm);
	if (vm->loop)
		evloop_destroy(vm->loop);
	vm->loop = NULL;
	if (releasing)
		pthread_join(releaser, NULL);
	if (vm->pio.ranges || vm->pio.name)
		bus_destroy(&vm->pio);
	if (vm->mmio.ranges || vm->mmio.name)
		bus_destroy(&vm->mmio);
	if (vmm_verbosity && vm->mem.nr_regions) {
		int64_t huge = gmem_huge_bytes(&vm->mem);

		if (huge >= 0)
			pr_info("guest RAM: %lld of %llu MiB were in huge pages at exit",
				(long long)(huge / (int64_t)MiB), (unsigned long long)(vm->mem.ram_size / MiB));
	}
	gmem_destroy(&vm->mem);
	free(vm->supported_cpuid);
	vm->supported_cpuid = NULL;
	if (vm->exit_efd >= 0)
		close(vm->exit_efd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->exit_efd = vm->kvm_fd = -1;
}

/*
 * Open a kernel or initramfs file and read its first head_max bytes; errors
 * name the file and the option.
 */
static int open_image(const char *path, const char *option, size_t head_max,
		      struct x86_boot_file *f)
{
	struct stat st;
	uint8_t *head = NULL;
	int ret, fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		pr_err("%s %s: %s", option, path, strerror(errno));
		return -errno;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		pr_err("%s %s: not a regular file", option, path);
		close(fd);
		return -EINVAL;
	}
	f->size = (uint64_t)st.st_size;
	f->head_len = (size_t)MIN(f->size, (uint64_t)head_max);
	if (f->head_len) {
		head = malloc(f->head_len);
		if (!head) {
			close(fd);
			return -ENOMEM;
		}
		ret = pread_full(fd, head, f->head_len, 0);
		if (ret) {
			pr_err("%s %s: read failed: %s", option, path,
			       ret == -EIO ? "short file" : strerror(-ret));
			free(head);
			close(fd);
			return -EIO;
		}
	}
	f->head = head;
	f->fd = fd;
	return 0;
}

/*
 * The bzImage's setup header lies in its first KiB, a vmlinux's ELF and
 * program headers in its first few hundred bytes; the rest is read into the guest.
 */
#define KERNEL_HEAD_MAX 4096

int vm_images_load(const struct vm_config *cfg, struct vm_images *img)
{
	const char *why;
	int ret;

	memset(img, 0, sizeof(*img));
	img->kernel.fd = img->initrd.fd = -1;
	ret = open_image(cfg->kernel, "--kernel", KERNEL_HEAD_MAX, &img->kernel);
	if (ret)
		return ret;
	/* Check the format now, before KVM is even opened: the error is about the file. */
	if (x86_kernel_check(img->kernel.head, img->kernel.head_len, img->kernel.size, &why)) {
		pr_err("--kernel %s: %s", cfg->kernel, why);
		vm_images_free(img);
		return -ENOEXEC;
	}
	if (cfg->initramfs) {
		ret = open_image(cfg->initramfs, "--initramfs", 0, &img->initrd);
		if (ret) {
			vm_images_free(img);
			return ret;
		}
	}
	return 0;
}

void vm_images_free(struct vm_images *img)
{
	free((void *)img->kernel.head);
	free((void *)img->initrd.head);
	if (img->kernel.fd >= 0)
		close(img->kernel.fd);
	if (img->initrd.fd >= 0)
		close(img->initrd.fd);
	memset(img, 0, sizeof(*img));
	img->kernel.fd = img->initrd.fd = -1;
}

int vm_load(struct vm *vm)
{
	int ret = loader_wait(vm);

	if (ret)
		return ret;
	ret = x86_vcpu_set_boot_regs(vm->vcpus[0].fd, vm->layout.entry, vm->layout.zero_page);
	if (ret)
		pr_err("setting up the boot vCPU failed: %s", strerror(-ret));
	return ret;
}

static void *loop_thread(void *arg)
{
	struct vm *vm = arg;
	int ret = evloop_run(vm->loop);

	if (ret)
		vm_request_exit(vm, VMM_EXIT_FAILURE, "device event loop failed: %s", strerror(-ret));
	return NULL;
}

int vm_start(struct vm *vm)
{
	int ret = vcpu_signals_init();

	if (ret)
		return ret;
	ret = vmm_thread_create(&vm->loop_thread, loop_thread, vm, "devices");
	if (ret) {
		pr_err("starting the device event loop failed: %s", strerror(-ret));
		return ret;
	}
	vm->loop_running = true;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		ret = vcpu_start(&vm->vcpus[i]);
		if (ret) {
			pr_err("starting vCPU thread %u failed: %s", i, strerror(-ret));
			vm_stop(vm);
			return ret;
		}
	}
	return 0;
}

static void kick_all(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++)
		vcpu_kick(&vm->vcpus[i]);
}

void vm_stop(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->stop_requested = true;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	kick_all(vm);
	for (unsigned i = 0; i < vm->ncpus; i++) {
		if (vm->vcpus[i].started) {
			pthread_join(vm->vcpus[i].thread, NULL);
			vm->vcpus[i].started = false;
		}
	}
	/* vCPUs first: no new kicks can arrive once they are gone. */
	if (vm->loop_running) {
		evloop_stop(vm->loop);
		pthread_join(vm->loop_thread, NULL);
		vm->loop_running = false;
	}
}

void vm_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->pause_requested = true;
	pthread_mutex_unlock(&vm->lock);
	kick_all(vm);
	pthread_mutex_lock(&vm->lock);
	while (vm->nr_parked < vm->ncpus)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
	/* Writes KVM queued reach their devices before anyone looks at device state. */
	coalesced_drain(&vm->coalesced);
}

void vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->pause_requested = false;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

static int runstate_begin(struct vm *vm, enum vm_op op)
{
	int ret;

	pthread_mutex_lock(&vm->lock);
	ret = vm_runstate_begin(&vm->run, op);
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

static void runstate_end(struct vm *vm, enum vm_op op, bool ok)
{
	pthread_mutex_lock(&vm->lock);
	vm_runstate_end(&vm->run, op, ok);
	pthread_mutex_unlock(&vm->lock);
}

enum vm_run_state vm_run_state(struct vm *vm)
{
	enum vm_run_state s;

	pthread_mutex_lock(&vm->lock);
	s = vm->run.state;
	pthread_mutex_unlock(&vm->lock);
	return s;
}

struct virtio_pci *vm_virtio_device(struct vm *vm, unsigned i)
{
	struct pci_device *d = vm->pci && i < PCI_NR_SLOTS ? vm->pci->slots[i] : NULL;

	if (!d || d == &vm->pci->host_bridge ||
	    pci_cfg_get16(d, 0) != VIRTIO_PCI_VENDOR)
		return NULL;
	return d->opaque;
}

/* Resume the devices of slots [0, upto), in order. */
static int devices_resume(struct vm *vm, unsigned upto)
{
	int ret = 0;

	for (unsigned i = 0; i < upto; i++) {
		struct virtio_pci *vp = vm_virtio_device(vm, i);
		int r = vp ? virtio_pci_resume(vp) : 0;

		if (r) {
			pr_err("%s: resuming failed: %s", vp->name, strerror(-r));
			ret = ret ? ret : r;
		}
	}
	return ret;
}

/*
 * Tell each vCPU's kvmclock that the host stopped it: the guest's soft-lockup
 * and RCU stall detectors then forgive the gap (Documentation/virt/kvm/api.rst,
 * KVM_KVMCLOCK_CTRL). -EINVAL: that vCPU has no kvmclock (the guest chose
 * another clock), nothing to tell.
 */
static void kvmclock_paused(struct vm *vm)
{
	if (!vm->kvmclock_ctrl)
		return;
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (ioctl(vm->vcpus[i].fd, KVM_KVMCLOCK_CTRL, 0) < 0 && errno != EINVAL)
			pr_guest_err("vCPU %u: KVM_KVMCLOCK_CTRL failed: %s", i, strerror(errno));
}

int vm_sleep(struct vm *vm)
{
	uint64_t t0 = monotonic_ns();
	int ret = runstate_begin(vm, VM_OP_PAUSE);
	unsigned i;

	if (ret)
		return ret;
	vm_pause(vm);
	kvmclock_paused(vm);
	/* vCPUs first (no new kicks), then each device finishes or parks what is in flight. */
	for (i = 0; i < PCI_NR_SLOTS; i++) {
		struct virtio_pci *vp = vm_virtio_device(vm, i);

		ret = vp ? virtio_pci_pause(vp) : 0;
		if (ret) {
			pr_err("%s: pausing failed: %s; the VM runs on", vp->name, strerror(-ret));
			break;
		}
	}
	if (ret) {
		(void)devices_resume(vm, i);
		vm_resume(vm);
		runstate_end(vm, VM_OP_PAUSE, false);
		return ret;
	}
	runstate_end(vm, VM_OP_PAUSE, true);
	pr_info("paused in %" PRIu64 " us", (monotonic_ns() - t0) / 1000);
	return 0;
}

int vm_wake(struct vm *vm)
{
	uint64_t t0 = monotonic_ns();
	int ret = runstate_begin(vm, VM_OP_RESUME);

	if (ret)
		return ret;
	ret = devices_resume(vm, PCI_NR_SLOTS);
	/* A device that failed to resume has said so and is marked; the guest runs on regardless. */
	kvmclock_paused(vm);
	vm_resume(vm);
	runstate_end(vm, VM_OP_RESUME, true);
	pr_info("resumed in %" PRIu64 " us", (monotonic_ns() - t0) / 1000);
	return ret;
}

int vm_power_button(struct vm *vm)
{
	int ret;

	/* Under the lock, so a pause cannot start between the check and the press. */
	pthread_mutex_lock(&vm->lock);
	ret = vm_runstate_begin(&vm->run, VM_OP_POWER_BUTTON);
	pthread_mutex_unlock(&vm->lock);
	if (ret)
		return ret;
	return platform_power_button(vm);
}

int vm_shutdown(struct vm *vm, const char *why)
{
	int ret = runstate_begin(vm, VM_OP_SHUTDOWN);

	if (!ret)
		vm_request_exit(vm, VMM_EXIT_OK, "%s", why);
	return ret;
}

void vm_request_exit(struct vm *vm, int status, const char *fmt, ...)
{
	va_list ap;
	bool first;

	pthread_mutex_lock(&vm->lock);
	first = !vm->exit_set;
	vm->run.state = VM_STATE_SHUTDOWN;
	if (first) {
		vm->exit_set = true;
		vm->exit_status = status;
		va_start(ap, fmt);
		vsnprintf(vm->exit_reason, sizeof(vm->exit_reason), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&vm->lock);
	if (first) {
		uint64_t one = 1;

		if (write(vm->exit_efd, &one, sizeof(one)) < 0)
			pr_err("signalling VM exit failed: %s", strerror(errno));
	}
}

/*
 * Kernel text addresses among the first words on a vCPU's stack (the return
 * addresses of where it waits or spins), for a --timeout report: with the
 * guest's System.map (and its KASLR offset) they name the functions.
 */
static void report_stack(struct vm *vm, int fd, FILE *out)
{
	uint64_t sp, ip, gpa, words[64];
	unsigned shown = 0;

	if (x86_vcpu_sp_ip(fd, &sp, &ip) || ip < 0xffff800000000000ULL)
		return;   /* not in a 64-bit kernel */
	/* One page at most: the stack's next page may be unmapped (a guard). */
	if (x86_vcpu_translate(fd, sp, &gpa) ||
	    gmem_read(&vm->mem, gpa, words, MIN(sizeof(words), 4096 - (sp & 4095))))
		return;
	fputs("vmm:   kernel addresses on its stack:", out);
	for (unsigned i = 0; i < MIN(ARRAY_SIZE(words), (4096 - (sp & 4095)) / 8) && shown < 12; i++) {
		if (words[i] >= 0xffffffff80000000ULL && words[i] < 0xfffffffffff00000ULL) {
			fprintf(out, " %#llx", (unsigned long long)words[i]);
			shown++;
		}
	}
	fputc('\n', out);
}

void vm_report_vcpus(struct vm *vm, FILE *out)
{
	char state[256];

	for (unsigned i = 0; i < vm->ncpus; i++) {
		x86_vcpu_describe_wait(vm->vcpus[i].fd, state, sizeof(state));
		fprintf(out, "vmm: vCPU %u: %s\n", i, state);
		report_stack(vm, vm->vcpus[i].fd, out);
	}
}

int vm_irq_line(struct vm *vm, unsigned irq, int level)
{
	struct kvm_irq_level l = { .irq = irq, .level = level };

	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0)
		return -errno;
	return 0;
}
