/*
 * The KVM side of a snapshot: one vCPU's full state, and the VM-wide in-kernel
 * devices (both 8259 PICs, the IOAPIC, the PIT, kvmclock). Capture and restore
 * go through KVM ioctls; the structs go to and from the state file through
 * one field table each (vmm/snapshot/format.h), so save and load agree.
 *
 * State file nodes: vcpu@N (one per vCPU), pic-master, pic-slave, ioapic,
 * pit, kvmclock. Every vCPU must be out of KVM_RUN (the VM paused) for both
 * capture and restore: KVM_{GET,SET}_VCPU_EVENTS is unsafe while other vCPUs run.
 */
#ifndef VMM_SNAPSHOT_CPU_H
#define VMM_SNAPSHOT_CPU_H

#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>

#include "vmm/snapshot/format.h"
#include "vmm/util.h"

#define SNAP_VCPU_MAX_MSRS   1024
#define SNAP_VCPU_MAX_CPUID  256          /* as many as vm.c asks KVM for */
#define SNAP_XSAVE_LEGACY    4096         /* struct kvm_xsave, KVM_GET_XSAVE */
#define SNAP_XSAVE_MAX       (16 * 1024)  /* KVM_GET_XSAVE2 with AMX is ~11 KiB */

/* One vCPU, as KVM reports it. Lives on the heap: ~40 KiB. */
struct snap_vcpu {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_debugregs debugregs;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	struct kvm_lapic_state lapic;
	uint32_t tsc_khz;                       /* the guest TSC's frequency */

	uint32_t nxcrs;                         /* struct kvm_xcrs, flags always 0 */
	uint32_t xcr_index[KVM_MAX_XCRS];
	uint64_t xcr_value[KVM_MAX_XCRS];

	uint32_t xsave_len;                     /* 4096, or KVM_CAP_XSAVE2's size */
	uint8_t xsave[SNAP_XSAVE_MAX];

	uint32_t ncpuid;                        /* the CPUID the guest saw (KVM_GET_CPUID2) */
	uint32_t cpuid_function[SNAP_VCPU_MAX_CPUID];
	uint32_t cpuid_index[SNAP_VCPU_MAX_CPUID];
	uint32_t cpuid_flags[SNAP_VCPU_MAX_CPUID];
	uint32_t cpuid_eax[SNAP_VCPU_MAX_CPUID];
	uint32_t cpuid_ebx[SNAP_VCPU_MAX_CPUID];
	uint32_t cpuid_ecx[SNAP_VCPU_MAX_CPUID];
	uint32_t cpuid_edx[SNAP_VCPU_MAX_CPUID];

	uint32_t nmsrs;                         /* the MSRs KVM lists for save that it could read */
	uint32_t msr_index[SNAP_VCPU_MAX_MSRS];
	uint64_t msr_data[SNAP_VCPU_MAX_MSRS];
};

/* The VM-wide in-kernel devices. */
struct snap_kvm_vm {
	struct kvm_pic_state pic[2];            /* KVM_IRQCHIP_PIC_MASTER, _SLAVE */
	struct kvm_ioapic_state ioapic;
	/*
	 * KVM_GET_PIT2, except that each channel's count_load_time (a host
	 * CLOCK_MONOTONIC time, meaningless in another process or boot) holds how
	 * many ns before the capture the count was loaded.
	 */
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;            /* clock and flags; realtime when flags say so */
};

extern const struct snap_desc snap_vcpu_desc;
extern const struct snap_desc snap_pic_desc;
extern const struct snap_desc snap_ioapic_desc;
extern const struct snap_desc snap_pit_desc;
extern const struct snap_desc snap_clock_desc;

/* The fds capture and restore talk to. */
struct snap_kvm_fds {
	int kvm_fd;  /* /dev/kvm: the MSR index list */
	int vm_fd;   /* KVM_CAP_XSAVE2's size, irqchip, PIT, clock */
};

/*
 * Finish what KVM leaves half done after an exit to userspace: the port or
 * MMIO access the VMM has just handled completes (and rip moves past it)
 * only on the next KVM_RUN. KVM_RUN with immediate_exit set completes it and
 * runs no guest instruction (api.rst, KVM_RUN: "userspace should ensure that
 * the operation is completed before performing a live migration"). Call on
 * each paused vCPU before snap_vcpu_capture(); immediate_exit is left as it
 * was. 0 or -errno.
 */
int snap_vcpu_complete_io(int vcpu_fd, struct kvm_run *run) WUR;

/*
 * Capture vCPU vcpu_fd into s (order as Firecracker's: MP state first, events
 * last). 0 or -errno; err names the ioctl that failed.
 */
int snap_vcpu_capture(const struct snap_kvm_fds *k, int vcpu_fd, struct snap_vcpu *s, char *err,
		      size_t errlen) WUR;
/*
 * Put s into a vCPU that has not run yet (or is paused). The order matters;
 * see the comment at the function. 0 or -errno; err names the step.
 */
int snap_vcpu_restore(const struct snap_kvm_fds *k, int vcpu_fd, const struct snap_vcpu *s,
		      char *err, size_t errlen) WUR;

int snap_kvm_vm_capture(const struct snap_kvm_fds *k, struct snap_kvm_vm *s, char *err,
			size_t errlen) WUR;
int snap_kvm_vm_restore(const struct snap_kvm_fds *k, const struct snap_kvm_vm *s, char *err,
			size_t errlen) WUR;

/* State file nodes: vcpu@index, and the five VM-wide ones. */
int snap_vcpu_write(struct snap_writer *w, unsigned index, const struct snap_vcpu *s) WUR;
int snap_vcpu_read(struct snap_reader *r, unsigned index, struct snap_vcpu *s) WUR;
int snap_kvm_vm_write(struct snap_writer *w, const struct snap_kvm_vm *s) WUR;
int snap_kvm_vm_read(struct snap_reader *r, struct snap_kvm_vm *s) WUR;

#ifdef VMM_TESTING
/* Tests replace ioctl() with a fake KVM; NULL puts the real one back. */
void snap_cpu_set_ioctl(int (*fn)(int fd, unsigned long req, void *arg));
#endif

#endif
