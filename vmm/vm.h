/*
 * One virtual machine: the KVM VM and its vCPUs, guest memory, the I/O buses
 * and the lifecycle (run, pause, resume, stop) every thread agrees on.
 */
#ifndef VMM_VM_H
#define VMM_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <linux/kvm.h>

#include "arch/x86_64/boot.h"
#include "vmm/api/state.h"
#include "vmm/bus.h"
#include "vmm/coalesced.h"
#include "vmm/gmem.h"
#include "vmm/util.h"

/* vmm's exit statuses (see README, "Exit status"). */
enum {
	VMM_EXIT_OK = 0,         /* guest powered off or rebooted */
	VMM_EXIT_FAILURE = 1,    /* the VMM or the guest's CPU failed (e.g. triple fault) */
	VMM_EXIT_USAGE = 2,      /* bad command line or input */
	VMM_EXIT_TIMEOUT = 124,  /* --timeout expired */
	VMM_EXIT_PANIC = 125,    /* the guest kernel panicked */
	VMM_EXIT_SIGNAL = 128,   /* + signal number: stopped by SIGINT, SIGTERM, ... */
};

enum serial_mode { SERIAL_STDIO, SERIAL_OFF, SERIAL_FILE };
enum mem_share { MEM_SHARE_AUTO, MEM_SHARE_OFF, MEM_SHARE_ON };

#define VMM_MAX_DEVICES 32

struct virtio_dev_kind;
struct virtio_pci;

/* A device asked for on the command line: its kind and its "k=v,..." arguments. */
struct vm_device_arg {
	const struct virtio_dev_kind *kind;
	const char *args;
};

struct vm_config {
	const char *kernel;
	const char *initramfs;
	const char *cmdline;
	unsigned ncpus;
	uint64_t mem_size;
	enum mem_share mem_shared; /* --memory shared=on|off; AUTO: shared when a device needs it */
	bool mem_hugepages;        /* --memory hugepages=on: hugetlbfs (memfd with MFD_HUGETLB) */
	enum serial_mode serial;
	const char *serial_path;
	unsigned timeout_s;      /* 0: none */
	const char *api_socket;  /* --api-socket PATH or fd=N; NULL: no API */
	const char *restore;     /* --restore: the snapshot directory; NULL: boot the kernel */
	bool resume;             /* --resume: run a restored VM at once */
	unsigned ndevices;
	struct vm_device_arg devices[VMM_MAX_DEVICES];
};

struct vcpu;
struct serial;
struct evloop;
struct pci_bus;
struct irq_router;

struct vm {
	const struct vm_config *cfg;
	int kvm_fd;
	int vm_fd;
	int vcpu_mmap_size;
	struct gmem mem;
	struct bus pio;
	struct bus mmio;
	struct coalesced coalesced; /* writes KVM queued for us (vmm/coalesced.h) */
	pthread_t loader;           /* filling guest memory (vm_create to vm_load) */
	const struct vm_images *loader_img;
	bool loader_running;
	int loader_ret;
	struct x86_boot_layout layout;
	struct kvm_cpuid2 *supported_cpuid;

	unsigned ncpus;
	struct vcpu *vcpus;

	/* Lifecycle: guarded by lock. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop_requested;     /* vCPUs leave their loops */
	bool pause_requested;    /* vCPUs park until resumed */
	unsigned nr_parked;      /* vCPUs parked or exited */
	bool exit_set;
	int exit_status;
	char exit_reason[256];
	int exit_efd;            /* eventfd: readable once the VM wants to exit */
	struct vm_runstate run;  /* Running / Paused / ... as vm_sleep and vm_wake move it */
	bool kvmclock_ctrl;      /* KVM_CAP_KVMCLOCK_CTRL: tell the guest it was paused */

	/* Device I/O: one event-loop thread runs every device's queue work. */
	struct evloop *loop;
	pthread_t loop_thread;
	bool loop_running;

	struct serial *serial;   /* COM1, for console input */
	struct irq_router *irq;  /* GSI routes, irqfds, ioeventfds (vmm/irq.h) */
	struct pci_bus *pci;     /* bus 0 and its devices (vmm/pci.h) */
	void *platform;          /* devices/platform.c's state */
};

/*
 * The kernel and initramfs, opened and the kernel's header checked before KVM
 * is opened; they are read straight into guest memory later.
 */
struct vm_images {
	struct x86_boot_file kernel, initrd;
};
int vm_images_load(const struct vm_config *cfg, struct vm_images *img) WUR;
void vm_images_free(struct vm_images *img);

/*
 * Open /dev/kvm, check every capability we use, create the VM, guest memory,
 * vCPUs and devices. Errors are printed. As soon as guest memory exists a
 * loader thread places img in it (firmware tables, kernel, initramfs, command
 * line, page tables) while the rest is made, as Cloud Hypervisor does: img
 * must stay valid until vm_load or vm_destroy returns.
 */
int vm_create(struct vm *vm, const struct vm_config *cfg, const struct vm_images *img) WUR;
/*
 * The same for a restore: guest RAM is a private copy-on-write mapping of
 * mem_fd (a snapshot's memory file, cfg->mem_size bytes), nothing is loaded,
 * and the VM is Paused: vm_start starts its vCPUs parked and its devices
 * wait, until vm_wake. Put the snapshot's state in (vm_snapshot_apply)
 * before vm_start.
 */
int vm_create_restored(struct vm *vm, const struct vm_config *cfg, int mem_fd) WUR;
void vm_destroy(struct vm *vm);

/* Wait for the loader; on success point the boot vCPU at the kernel's entry. */
int vm_load(struct vm *vm) WUR;

/*
 * Have KVM queue the guest's writes to ports [port, port + len) in the
 * coalesced ring instead of exiting (vmm/coalesced.h): for an index or
 * address register the guest writes only to set up the access that follows.
 * Optional: without the capability, or where it fails, the writes exit as
 * before (--verbose says so).
 */
void vm_coalesce_pio(struct vm *vm, uint16_t port, uint32_t len);

/* Start one thread per vCPU. */
int vm_start(struct vm *vm) WUR;
/* Stop every vCPU (idempotent) and join the threads. */
void vm_stop(struct vm *vm);
/* The vCPU pause protocol: returns once every vCPU is out of KVM_RUN and parked. */
void vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);

/*
 * Sleep and wake, for the API: the whole VM stops or continues. vm_sleep
 * parks every vCPU (vm_pause), tells each guest kvmclock it was stopped
 * (KVM_KVMCLOCK_CTRL, so a long pause does not read as a soft lockup), then
 * pauses every device through its pause hook (in-flight requests finish
 * first); vm_wake runs it backwards. Any thread; returns 0, or -EALREADY,
 * -EBUSY or -ESHUTDOWN as vm_runstate_begin() says, or a device's error (the
 * VM is then left as it was).
 */
int vm_sleep(struct vm *vm) WUR;
int vm_wake(struct vm *vm) WUR;
/* Press the ACPI power button; -EAGAIN while paused, -ESHUTDOWN after shutdown. */
int vm_power_button(struct vm *vm) WUR;
/* End the VM with status 0 (vm_request_exit); -ESHUTDOWN when it is already ending. */
int vm_shutdown(struct vm *vm, const char *why) WUR;
enum vm_run_state vm_run_state(struct vm *vm);
/* The virtio transport on PCI slot i (< 32), or NULL: for walking the devices. */
struct virtio_pci *vm_virtio_device(struct vm *vm, unsigned i);

/*
 * Ask for the VM to end with this status. The first request wins; the reason
 * is printed when the VMM exits (unless status is 0 and the reason empty).
 */
void vm_request_exit(struct vm *vm, int status, const char *fmt, ...) PRINTF_FMT(3, 4);

/* One line per vCPU saying where it waits (for a timeout report); call after vm_stop(). */
void vm_report_vcpus(struct vm *vm, FILE *out);

/* Drive an interrupt line of the in-kernel irqchip (ISA IRQ or IOAPIC pin). */
int vm_irq_line(struct vm *vm, unsigned irq, int level);

#endif
