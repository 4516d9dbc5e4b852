/* vCPU and in-kernel device state for snapshots: KVM ioctls and field tables (vmm/snapshot/cpu.h). */
#include "vmm/snapshot/cpu.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

/* ---- field tables: one line per field, shared by save and load ---------------------- */

#define V struct snap_vcpu

#define SEG(sg)                                                                          \
	SNAP_U(V, sregs.sg.base), SNAP_U(V, sregs.sg.limit), SNAP_U(V, sregs.sg.selector), \
	SNAP_UINT_R(V, sregs.sg.type, 0, 15), SNAP_BOOL(V, sregs.sg.present),            \
	SNAP_UINT_R(V, sregs.sg.dpl, 0, 3), SNAP_BOOL(V, sregs.sg.db),                   \
	SNAP_BOOL(V, sregs.sg.s), SNAP_BOOL(V, sregs.sg.l), SNAP_BOOL(V, sregs.sg.g),    \
	SNAP_BOOL(V, sregs.sg.avl), SNAP_BOOL(V, sregs.sg.unusable)

static const struct snap_field vcpu_fields[] = {
	SNAP_U(V, regs.rax), SNAP_U(V, regs.rbx), SNAP_U(V, regs.rcx), SNAP_U(V, regs.rdx),
	SNAP_U(V, regs.rsi), SNAP_U(V, regs.rdi), SNAP_U(V, regs.rsp), SNAP_U(V, regs.rbp),
	SNAP_U(V, regs.r8), SNAP_U(V, regs.r9), SNAP_U(V, regs.r10), SNAP_U(V, regs.r11),
	SNAP_U(V, regs.r12), SNAP_U(V, regs.r13), SNAP_U(V, regs.r14), SNAP_U(V, regs.r15),
	SNAP_U(V, regs.rip),
	/* Bits 22-63 of RFLAGS are reserved (SDM vol. 1, 3.4.3): a VM entry with them set fails. */
	SNAP_UINT_R(V, regs.rflags, 0, 0x3fffff),

	SEG(cs), SEG(ds), SEG(es), SEG(fs), SEG(gs), SEG(ss), SEG(tr), SEG(ldt),
	SNAP_U(V, sregs.gdt.base), SNAP_U(V, sregs.gdt.limit),
	SNAP_U(V, sregs.idt.base), SNAP_U(V, sregs.idt.limit),
	SNAP_U(V, sregs.cr0), SNAP_U(V, sregs.cr2), SNAP_U(V, sregs.cr3), SNAP_U(V, sregs.cr4),
	SNAP_UINT_R(V, sregs.cr8, 0, 15), /* the task priority: 4 bits */
	SNAP_U(V, sregs.efer), SNAP_U(V, sregs.apic_base),
	SNAP_ARR(V, sregs.interrupt_bitmap),

	SNAP_ARR(V, debugregs.db), SNAP_U(V, debugregs.dr6), SNAP_U(V, debugregs.dr7),
	SNAP_UINT_R(V, debugregs.flags, 0, 0), /* KVM_SET_DEBUGREGS refuses any flag */

	SNAP_BOOL(V, events.exception.injected),
	SNAP_UINT_R(V, events.exception.nr, 0, 31),
	SNAP_BOOL(V, events.exception.has_error_code),
	SNAP_BOOL(V, events.exception.pending),
	SNAP_U(V, events.exception.error_code),
	SNAP_BOOL(V, events.interrupt.injected),
	SNAP_U(V, events.interrupt.nr),
	SNAP_BOOL(V, events.interrupt.soft),
	SNAP_UINT_R(V, events.interrupt.shadow, 0, 3), /* KVM_X86_SHADOW_INT_MOV_SS | _STI */
	SNAP_BOOL(V, events.nmi.injected),
	SNAP_UINT_R(V, events.nmi.pending, 0, 2),      /* KVM keeps at most two pending NMIs */
	SNAP_BOOL(V, events.nmi.masked),
	SNAP_U(V, events.sipi_vector),
	SNAP_U(V, events.flags),
	SNAP_BOOL(V, events.smi.smm),
	SNAP_BOOL(V, events.smi.pending),
	SNAP_BOOL(V, events.smi.smm_inside_nmi),
	SNAP_BOOL(V, events.smi.latched_init),
	SNAP_BOOL(V, events.triple_fault.pending),
	SNAP_BOOL(V, events.exception_has_payload),
	SNAP_U(V, events.exception_payload),

	/* RUNNABLE .. SIPI_RECEIVED: the states an x86 vCPU without SEV can be in. */
	SNAP_UINT_R(V, mp.mp_state, KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_SIPI_RECEIVED),
	SNAP_ARRAY_N(V, lapic.regs, "lapic"),
	SNAP_UINT_R(V, tsc_khz, 1, UINT32_MAX),

	SNAP_VARRAY_N(V, xcr_index, nxcrs, "xcr.index"),
	SNAP_VARRAY_N(V, xcr_value, nxcrs, "xcr.value"),
	SNAP_VARRAY_N(V, xsave, xsave_len, "xsave"),
	SNAP_VARRAY_N(V, cpuid_function, ncpuid, "cpuid.function"),
	SNAP_VARRAY_N(V, cpuid_index, ncpuid, "cpuid.index"),
	SNAP_VARRAY_N(V, cpuid_flags, ncpuid, "cpuid.flags"),
	SNAP_VARRAY_N(V, cpuid_eax, ncpuid, "cpuid.eax"),
	SNAP_VARRAY_N(V, cpuid_ebx, ncpuid, "cpuid.ebx"),
	SNAP_VARRAY_N(V, cpuid_ecx, ncpuid, "cpuid.ecx"),
	SNAP_VARRAY_N(V, cpuid_edx, ncpuid, "cpuid.edx"),
	SNAP_VARRAY_N(V, msr_index, nmsrs, "msr.index"),
	SNAP_VARRAY_N(V, msr_data, nmsrs, "msr.data"),
};

static int vcpu_check(const void *obj, char *err, size_t errlen)
{
	const struct snap_vcpu *s = obj;

	/* KVM_GET_XSAVE gives 4096 bytes, KVM_GET_XSAVE2 at least that, in 32-bit words. */
	if (s->xsave_len < SNAP_XSAVE_LEGACY || s->xsave_len % 4) {
		snprintf(err, errlen, "xsave: %u bytes, expected a multiple of 4 from %u to %u",
			 s->xsave_len, SNAP_XSAVE_LEGACY, SNAP_XSAVE_MAX);
		return -EINVAL;
	}
	if (s->ncpuid == 0) {
		snprintf(err, errlen, "cpuid.function: no CPUID entries");
		return -EINVAL;
	}
	return 0;
}

const struct snap_desc snap_vcpu_desc = SNAP_DESC(struct snap_vcpu, "vcpu", 1, vcpu_fields,
						  vcpu_check);
#undef V

#define P struct kvm_pic_state
static const struct snap_field pic_fields[] = {
	SNAP_U(P, last_irr), SNAP_U(P, irr), SNAP_U(P, imr), SNAP_U(P, isr),
	SNAP_UINT_R(P, priority_add, 0, 7),
	SNAP_U(P, irq_base),
	SNAP_BOOL(P, read_reg_select), SNAP_BOOL(P, poll), SNAP_BOOL(P, special_mask),
	SNAP_UINT_R(P, init_state, 0, 3), /* which ICW comes next */
	SNAP_BOOL(P, auto_eoi), SNAP_BOOL(P, rotate_on_auto_eoi),
	SNAP_BOOL(P, special_fully_nested_mode), SNAP_BOOL(P, init4),
	SNAP_U(P, elcr), SNAP_U(P, elcr_mask),
};
#undef P
const struct snap_desc snap_pic_desc = SNAP_DESC(struct kvm_pic_state, "pic", 1, pic_fields, NULL);

#define I struct kvm_ioapic_state
static const struct snap_field ioapic_fields[] = {
	SNAP_U(I, base_address), SNAP_U(I, ioregsel), SNAP_U(I, id), SNAP_U(I, irr),
	SNAP_ARR(I, redirtbl),
};
#undef I
const struct snap_desc snap_ioapic_desc = SNAP_DESC(struct kvm_ioapic_state, "ioapic", 1,
						    ioapic_fields, NULL);

/* The 8254's per-channel registers (kvm_pit_channel_state), for channel i named "chI.". */
#define T struct kvm_pit_state2
#define PIT_CH(i)                                                                        \
	/* A count of 0 means 0x10000, and KVM stores it so. */                         \
	SNAP_UINT_NR(T, channels[i].count, "ch" #i ".count", 0, 0x10000),                  \
	SNAP_UINT_N(T, channels[i].latched_count, "ch" #i ".latched_count"),               \
	SNAP_UINT_NR(T, channels[i].count_latched, "ch" #i ".count_latched", 0, 3),        \
	SNAP_UINT_NR(T, channels[i].status_latched, "ch" #i ".status_latched", 0, 1),      \
	SNAP_UINT_N(T, channels[i].status, "ch" #i ".status"),                             \
	SNAP_UINT_NR(T, channels[i].read_state, "ch" #i ".read_state", 0, 4),              \
	SNAP_UINT_NR(T, channels[i].write_state, "ch" #i ".write_state", 0, 4),            \
	SNAP_UINT_N(T, channels[i].write_latch, "ch" #i ".write_latch"),                   \
	SNAP_UINT_NR(T, channels[i].rw_mode, "ch" #i ".rw_mode", 0, 3),                    \
	/* 0-5, or 0xff for a channel never programmed (KVM's reset value) */          \
	SNAP_UINT_N(T, channels[i].mode, "ch" #i ".mode"),                                 \
	SNAP_UINT_NR(T, channels[i].bcd, "ch" #i ".bcd", 0, 1),                            \
	SNAP_UINT_NR(T, channels[i].gate, "ch" #i ".gate", 0, 1),                          \
	SNAP_UINT_N(T, channels[i].count_load_time, "ch" #i ".load_age_ns")
static const struct snap_field pit_fields[] = {
	PIT_CH(0), PIT_CH(1), PIT_CH(2),
	SNAP_UINT_R(T, flags, 0, KVM_PIT_FLAGS_HPET_LEGACY | KVM_PIT_FLAGS_SPEAKER_DATA_ON),
};
#undef T

static int pit_check(const void *obj, char *err, size_t errlen)
{
	const struct kvm_pit_state2 *s = obj;

	for (int i = 0; i < 3; i++) {
		if (s->channels[i].mode > 5 && s->channels[i].mode != 0xff) {
			snprintf(err, errlen, "ch%d.mode: %u is no 8254 mode", i, s->channels[i].mode);
			return -EINVAL;
		}
		if (s->channels[i].count_load_time < 0) {
			snprintf(err, errlen, "ch%d.load_age_ns: negative", i);
			return -EINVAL;
		}
	}
	return 0;
}
const struct snap_desc snap_pit_desc = SNAP_DESC(struct kvm_pit_state2, "pit", 1, pit_fields,
						 pit_check);

#define C struct kvm_clock_data
static const struct snap_field clock_fields[] = {
	SNAP_U(C, clock), SNAP_U(C, flags), SNAP_U(C, realtime),
};
#undef C
const struct snap_desc snap_clock_desc = SNAP_DESC(struct kvm_clock_data, "kvmclock", 1,
						   clock_fields, NULL);

/* ---- the ioctl seam ------------------------------------------------------------------ */

static int real_ioctl(int fd, unsigned long req, void *arg)
{
	return ioctl(fd, req, arg);
}

static int (*kvm_ioctl)(int fd, unsigned long req, void *arg) = real_ioctl;

#ifdef VMM_TESTING
void snap_cpu_set_ioctl(int (*fn)(int fd, unsigned long req, void *arg))
{
	kvm_ioctl = fn ? fn : real_ioctl;
}
#endif

/* An ioctl that returns 0 on success: -errno, with err naming it. */
#define KVM_DO(fd, req, arg, what)                                                        \
	do {                                                                              \
		if (kvm_ioctl((fd), (req), (arg)) < 0) {                                  \
			int e_ = errno ? errno : EIO;                                     \
			snprintf(err, errlen, "%s: %s", (what), strerror(e_));            \
			ret = -e_;                                                        \
			goto out;                                                         \
		}                                                                         \
	} while (0)

static int64_t monotonic_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The size KVM_GET_XSAVE2 writes and KVM_SET_XSAVE reads: KVM_CAP_XSAVE2 on the VM fd, or 4096. */
static size_t xsave_size(const struct snap_kvm_fds *k)
{
	int n = kvm_ioctl(k->vm_fd, KVM_CHECK_EXTENSION, (void *)(uintptr_t)KVM_CAP_XSAVE2);

	return n > SNAP_XSAVE_LEGACY ? (size_t)n : SNAP_XSAVE_LEGACY;
}

/* ---- one vCPU ------------------------------------------------------------------------ */

int snap_vcpu_complete_io(int vcpu_fd, struct kvm_run *run)
{
	uint8_t was = __atomic_load_n(&run->immediate_exit, __ATOMIC_SEQ_CST);
	int ret = 0;

	__atomic_store_n(&run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	/* Expected: -EINTR after completing; 0 would mean a guest instruction ran (it cannot). */
	if (kvm_ioctl(vcpu_fd, KVM_RUN, NULL) < 0 && errno != EINTR && errno != EAGAIN)
		ret = -errno;
	__atomic_store_n(&run->immediate_exit, was, __ATOMIC_SEQ_CST);
	return ret;
}

/* KVM's list of MSRs to save (msrs_to_save + emulated_msrs), into s->msr_index. */
static int msr_list(const struct snap_kvm_fds *k, struct snap_vcpu *s, char *err, size_t errlen)
{
	struct kvm_msr_list *l = malloc(sizeof(*l) + SNAP_VCPU_MAX_MSRS * sizeof(l->indices[0]));
	int ret = 0;

	if (!l)
		return -ENOMEM;
	l->nmsrs = SNAP_VCPU_MAX_MSRS;
	if (kvm_ioctl(k->kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		ret = errno ? -errno : -EIO;
		if (ret == -E2BIG)
			snprintf(err, errlen, "KVM lists more than %u MSRs to save", SNAP_VCPU_MAX_MSRS);
		else
			snprintf(err, errlen, "KVM_GET_MSR_INDEX_LIST: %s", strerror(-ret));
	} else if (l->nmsrs > SNAP_VCPU_MAX_MSRS) {
		ret = -E2BIG;
		snprintf(err, errlen, "KVM lists %u MSRs to save, more than %u", l->nmsrs,
			 SNAP_VCPU_MAX_MSRS);
	} else {
		s->nmsrs = l->nmsrs;
		memcpy(s->msr_index, l->indices, l->nmsrs * sizeof(l->indices[0]));
	}
	free(l);
	return ret;
}

/*
 * KVM_GET_MSRS reads entries in order and stops at the first it cannot read,
 * returning how many it read (not what api.rst says). Some listed MSRs belong
 * to features this guest's CPUID lacks: drop the one that failed and go on
 * from there, as Firecracker and Cloud Hypervisor do.
 */
static int msr_read(int vcpu_fd, struct snap_vcpu *s, char *err, size_t errlen)
{
	struct kvm_msrs *m = calloc(1, sizeof(*m) + SNAP_VCPU_MAX_MSRS * sizeof(m->entries[0]));
	uint32_t done = 0;
	int ret = 0;

	if (!m)
		return -ENOMEM;
	while (done < s->nmsrs) {
		int got;

		m->nmsrs = s->nmsrs - done;
		for (uint32_t i = 0; i < m->nmsrs; i++) {
			m->entries[i].index = s->msr_index[done + i];
			m->entries[i].data = 0;
		}
		got = kvm_ioctl(vcpu_fd, KVM_GET_MSRS, m);
		if (got < 0 || (uint32_t)got > m->nmsrs) {
			ret = got < 0 && errno ? -errno : -EIO;
			snprintf(err, errlen, "KVM_GET_MSRS: %s", strerror(-ret));
			break;
		}
		for (int i = 0; i < got; i++)
			s->msr_data[done + (uint32_t)i] = m->entries[i].data;
		done += (uint32_t)got;
		if (done < s->nmsrs) {
			/* msr_index[done] is unreadable: drop it. */
			memmove(&s->msr_index[done], &s->msr_index[done + 1],
				(s->nmsrs - done - 1) * sizeof(s->msr_index[0]));
			s->nmsrs--;
			s->msr_index[s->nmsrs] = 0; /* nothing stale past the count */
		}
	}
	free(m);
	return ret;
}

static int cpuid_read(int vcpu_fd, struct snap_vcpu *s, char *err, size_t errlen)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + SNAP_VCPU_MAX_CPUID * sizeof(c->entries[0]));
	int ret = 0;

	if (!c)
		return -ENOMEM;
	c->nent = SNAP_VCPU_MAX_CPUID;
	if (kvm_ioctl(vcpu_fd, KVM_GET_CPUID2, c) < 0 || c->nent > SNAP_VCPU_MAX_CPUID) {
		ret = errno ? -errno : -EIO;
		snprintf(err, errlen, "KVM_GET_CPUID2: %s", strerror(-ret));
	} else {
		s->ncpuid = c->nent;
		for (uint32_t i = 0; i < c->nent; i++) {
			s->cpuid_function[i] = c->entries[i].function;
			s->cpuid_index[i] = c->entries[i].index;
			s->cpuid_flags[i] = c->entries[i].flags;
			s->cpuid_eax[i] = c->entries[i].eax;
			s->cpuid_ebx[i] = c->entries[i].ebx;
			s->cpuid_ecx[i] = c->entries[i].ecx;
			s->cpuid_edx[i] = c->entries[i].edx;
		}
	}
	free(c);
	return ret;
}

int snap_vcpu_capture(const struct snap_kvm_fds *k, int vcpu_fd, struct snap_vcpu *s, char *err,
		      size_t errlen)
{
	struct kvm_xsave *xs = NULL;
	struct kvm_xcrs xcrs;
	size_t xlen = xsave_size(k);
	int ret = 0, khz;

	memset(s, 0, sizeof(*s));
	if (xlen > SNAP_XSAVE_MAX) {
		snprintf(err, errlen, "KVM's XSAVE area is %zu bytes, more than %u", xlen,
			 SNAP_XSAVE_MAX);
		return -E2BIG;
	}
	/*
	 * Order (Firecracker's, with its reasons): KVM_GET_MP_STATE first, as it
	 * makes the LAPIC accept pending INIT/SIPI events and so changes vCPU and
	 * LAPIC state; KVM_GET_LAPIC may update the LAPIC too; the vCPU events
	 * last, since the other GETs may change what is pending.
	 */
	KVM_DO(vcpu_fd, KVM_GET_MP_STATE, &s->mp, "KVM_GET_MP_STATE");
	KVM_DO(vcpu_fd, KVM_GET_REGS, &s->regs, "KVM_GET_REGS");
	KVM_DO(vcpu_fd, KVM_GET_SREGS, &s->sregs, "KVM_GET_SREGS");
	xs = calloc(1, MAX(xlen, sizeof(*xs)));
	if (!xs) {
		ret = -ENOMEM;
		goto out;
	}
	/* KVM_GET_XSAVE2 where the area may exceed 4 KiB (AMX); the plain one is the same below. */
	if (xlen > SNAP_XSAVE_LEGACY)
		KVM_DO(vcpu_fd, KVM_GET_XSAVE2, xs, "KVM_GET_XSAVE2");
	else
		KVM_DO(vcpu_fd, KVM_GET_XSAVE, xs, "KVM_GET_XSAVE");
	s->xsave_len = (uint32_t)xlen;
	memcpy(s->xsave, xs, xlen);
	memset(&xcrs, 0, sizeof(xcrs));
	KVM_DO(vcpu_fd, KVM_GET_XCRS, &xcrs, "KVM_GET_XCRS");
	if (xcrs.nr_xcrs > KVM_MAX_XCRS) {
		snprintf(err, errlen, "KVM_GET_XCRS: %u XCRs", xcrs.nr_xcrs);
		ret = -EIO;
		goto out;
	}
	s->nxcrs = xcrs.nr_xcrs;
	for (uint32_t i = 0; i < xcrs.nr_xcrs; i++) {
		s->xcr_index[i] = xcrs.xcrs[i].xcr;
		s->xcr_value[i] = xcrs.xcrs[i].value;
	}
	KVM_DO(vcpu_fd, KVM_GET_DEBUGREGS, &s->debugregs, "KVM_GET_DEBUGREGS");
	KVM_DO(vcpu_fd, KVM_GET_LAPIC, &s->lapic, "KVM_GET_LAPIC");
	khz = kvm_ioctl(vcpu_fd, KVM_GET_TSC_KHZ, NULL);
	if (khz <= 0) {
		ret = khz < 0 && errno ? -errno : -EIO;
		snprintf(err, errlen, "KVM_GET_TSC_KHZ: %s", strerror(-ret));
		goto out;
	}
	s->tsc_khz = (uint32_t)khz;
	ret = cpuid_read(vcpu_fd, s, err, errlen);
	if (!ret)
		ret = msr_list(k, s, err, errlen);
	/* MSR_IA32_TSC is in KVM's list: the guest TSC travels with the MSRs. */
	if (!ret)
		ret = msr_read(vcpu_fd, s, err, errlen);
	if (ret)
		goto out;
	KVM_DO(vcpu_fd, KVM_GET_VCPU_EVENTS, &s->events, "KVM_GET_VCPU_EVENTS");
	/* Reserved: KVM_SET_VCPU_EVENTS wants zeros there, and the file does not carry them. */
	memset(s->events.reserved, 0, sizeof(s->events.reserved));
out:
	free(xs);
	return ret;
}

static int cpuid_write(int vcpu_fd, const struct snap_vcpu *s, char *err, size_t errlen)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + s->ncpuid * sizeof(c->entries[0]));
	int ret = 0;

	if (!c)
		return -ENOMEM;
	c->nent = s->ncpuid;
	for (uint32_t i = 0; i < s->ncpuid; i++) {
		c->entries[i].function = s->cpuid_function[i];
		c->entries[i].index = s->cpuid_index[i];
		c->entries[i].flags = s->cpuid_flags[i];
		c->entries[i].eax = s->cpuid_eax[i];
		c->entries[i].ebx = s->cpuid_ebx[i];
		c->entries[i].ecx = s->cpuid_ecx[i];
		c->entries[i].edx = s->cpuid_edx[i];
	}
	if (kvm_ioctl(vcpu_fd, KVM_SET_CPUID2, c) < 0) {
		ret = errno ? -errno : -EIO;
		snprintf(err, errlen, "KVM_SET_CPUID2: %s (the snapshot's CPUID does not fit this host)",
			 strerror(-ret));
	}
	free(c);
	return ret;
}

static int msr_write(int vcpu_fd, const struct snap_vcpu *s, char *err, size_t errlen)
{
	struct kvm_msrs *m = calloc(1, sizeof(*m) + s->nmsrs * sizeof(m->entries[0]));
	int ret = 0, set;

	if (!m)
		return -ENOMEM;
	m->nmsrs = s->nmsrs;
	for (uint32_t i = 0; i < s->nmsrs; i++) {
		m->entries[i].index = s->msr_index[i];
		m->entries[i].data = s->msr_data[i];
	}
	set = kvm_ioctl(vcpu_fd, KVM_SET_MSRS, m);
	if (set < 0) {
		ret = errno ? -errno : -EIO;
		snprintf(err, errlen, "KVM_SET_MSRS: %s", strerror(-ret));
	} else if ((uint32_t)set < s->nmsrs) {
		/* Like KVM_GET_MSRS, it stops at the first MSR it refuses. */
		ret = -EINVAL;
		snprintf(err, errlen, "KVM_SET_MSRS: this host refuses MSR %#x = %#llx",
			 s->msr_index[set], (unsigned long long)s->msr_data[set]);
	}
	free(m);
	return ret;
}

/*
 * Restore order, Firecracker's and Cloud Hypervisor's, and why:
 *  - TSC frequency before anything reads or writes the TSC (the MSRs below).
 *  - CPUID first of the vCPU state: some SET ioctls check guest features
 *    (XSAVE, MSRs), and KVM_SET_MP_STATE depends on kvm_vcpu_is_bsp().
 *  - SET_REGS clears pending exceptions, so it comes before SET_VCPU_EVENTS,
 *    which puts them back; the events go last of all.
 *  - SET_SREGS restores the APIC base MSR, so it comes before SET_LAPIC.
 *  - SET_LAPIC before SET_MSRS: MSR_IA32_TSC_DEADLINE only takes when the
 *    LAPIC is in TSC-deadline mode already.
 *  - XSAVE after SREGS/CPUID: XCR0 and the XSAVE features must be allowed.
 */
int snap_vcpu_restore(const struct snap_kvm_fds *k, int vcpu_fd, const struct snap_vcpu *s,
		      char *err, size_t errlen)
{
	struct kvm_xsave *xs = NULL;
	struct kvm_xcrs xcrs;
	struct kvm_vcpu_events events = s->events;
	size_t xlen = xsave_size(k);
	int ret = 0, khz;

	khz = kvm_ioctl(vcpu_fd, KVM_GET_TSC_KHZ, NULL);
	if (khz <= 0 || (uint32_t)khz != s->tsc_khz) {
		/* Another host or another TSC: have KVM scale the guest's (KVM_CAP_TSC_CONTROL). */
		if (kvm_ioctl(vcpu_fd, KVM_SET_TSC_KHZ, (void *)(uintptr_t)s->tsc_khz) < 0) {
			ret = errno ? -errno : -EIO;
			snprintf(err, errlen,
				 "the snapshot's TSC ran at %u kHz, this host's at %d kHz, and KVM "
				 "cannot scale it: %s", s->tsc_khz, khz, strerror(-ret));
			return ret;
		}
	}
	ret = cpuid_write(vcpu_fd, s, err, errlen);
	if (ret)
		return ret;
	KVM_DO(vcpu_fd, KVM_SET_MP_STATE, (void *)&s->mp, "KVM_SET_MP_STATE");
	KVM_DO(vcpu_fd, KVM_SET_REGS, (void *)&s->regs, "KVM_SET_REGS");
	KVM_DO(vcpu_fd, KVM_SET_SREGS, (void *)&s->sregs, "KVM_SET_SREGS");
	/* KVM_SET_XSAVE reads KVM_CAP_XSAVE2's size: pad a smaller saved area with zeros. */
	xs = calloc(1, MAX(MAX(xlen, (size_t)s->xsave_len), sizeof(*xs)));
	if (!xs) {
		ret = -ENOMEM;
		goto out;
	}
	memcpy(xs, s->xsave, s->xsave_len);
	KVM_DO(vcpu_fd, KVM_SET_XSAVE, xs, "KVM_SET_XSAVE");
	memset(&xcrs, 0, sizeof(xcrs));
	xcrs.nr_xcrs = s->nxcrs;
	for (uint32_t i = 0; i < s->nxcrs && i < KVM_MAX_XCRS; i++) {
		xcrs.xcrs[i].xcr = s->xcr_index[i];
		xcrs.xcrs[i].value = s->xcr_value[i];
	}
	KVM_DO(vcpu_fd, KVM_SET_XCRS, &xcrs, "KVM_SET_XCRS");
	KVM_DO(vcpu_fd, KVM_SET_DEBUGREGS, (void *)&s->debugregs, "KVM_SET_DEBUGREGS");
	KVM_DO(vcpu_fd, KVM_SET_LAPIC, (void *)&s->lapic, "KVM_SET_LAPIC");
	ret = msr_write(vcpu_fd, s, err, errlen);
	if (ret)
		goto out;
	memset(events.reserved, 0, sizeof(events.reserved));
	KVM_DO(vcpu_fd, KVM_SET_VCPU_EVENTS, &events, "KVM_SET_VCPU_EVENTS");
out:
	free(xs);
	return ret;
}

/* ---- the VM-wide in-kernel devices --------------------------------------------------- */

int snap_kvm_vm_capture(const struct snap_kvm_fds *k, struct snap_kvm_vm *s, char *err,
			size_t errlen)
{
	struct kvm_irqchip chip;
	int64_t now;
	int ret = 0;

	memset(s, 0, sizeof(*s));
	for (unsigned i = 0; i < 3; i++) {
		memset(&chip, 0, sizeof(chip));
		chip.chip_id = i; /* KVM_IRQCHIP_PIC_MASTER, _PIC_SLAVE, _IOAPIC */
		KVM_DO(k->vm_fd, KVM_GET_IRQCHIP, &chip, "KVM_GET_IRQCHIP");
		if (i == KVM_IRQCHIP_IOAPIC)
			s->ioapic = chip.chip.ioapic;
		else
			s->pic[i] = chip.chip.pic;
	}
	KVM_DO(k->vm_fd, KVM_GET_PIT2, &s->pit, "KVM_GET_PIT2");
	memset(s->pit.reserved, 0, sizeof(s->pit.reserved));
	/* count_load_time is ktime_get(): keep only how long ago it was. */
	now = monotonic_now_ns();
	for (int i = 0; i < 3; i++) {
		int64_t age = now - s->pit.channels[i].count_load_time;

		s->pit.channels[i].count_load_time = age > 0 ? age : 0;
	}
	KVM_DO(k->vm_fd, KVM_GET_CLOCK, &s->clock, "KVM_GET_CLOCK");
	s->clock.host_tsc = 0; /* meaningless in another process */
	memset(s->clock.pad, 0, sizeof(s->clock.pad));
	s->clock.pad0 = 0;
out:
	return ret;
}

/*
 * VM-wide state goes in before the vCPUs' (Firecracker's order: PIT, clock,
 * PICs, IOAPIC). The clock is set as it was, without KVM_CLOCK_REALTIME: the
 * guest sees no time pass while it was saved, as with Firecracker; its NTP
 * (or a resume hook) fixes the wall clock.
 */
int snap_kvm_vm_restore(const struct snap_kvm_fds *k, const struct snap_kvm_vm *s, char *err,
			size_t errlen)
{
	struct kvm_pit_state2 pit = s->pit;
	struct kvm_clock_data clock;
	struct kvm_irqchip chip;
	int64_t now = monotonic_now_ns();
	int ret = 0;

	for (int i = 0; i < 3; i++)
		pit.channels[i].count_load_time = now - s->pit.channels[i].count_load_time;
	memset(pit.reserved, 0, sizeof(pit.reserved));
	KVM_DO(k->vm_fd, KVM_SET_PIT2, &pit, "KVM_SET_PIT2");
	memset(&clock, 0, sizeof(clock));
	clock.clock = s->clock.clock;
	KVM_DO(k->vm_fd, KVM_SET_CLOCK, &clock, "KVM_SET_CLOCK");
	for (unsigned i = 0; i < 3; i++) {
		memset(&chip, 0, sizeof(chip));
		chip.chip_id = i;
		if (i == KVM_IRQCHIP_IOAPIC)
			chip.chip.ioapic = s->ioapic;
		else
			chip.chip.pic = s->pic[i];
		KVM_DO(k->vm_fd, KVM_SET_IRQCHIP, &chip, "KVM_SET_IRQCHIP");
	}
out:
	return ret;
}

/* ---- state file nodes ---------------------------------------------------------------- */

int snap_vcpu_write(struct snap_writer *w, unsigned index, const struct snap_vcpu *s)
{
	char name[32];

	snprintf(name, sizeof(name), "vcpu@%u", index);
	if (snap_begin_node(w, name) || snap_write(w, &snap_vcpu_desc, s))
		return w->err;
	return snap_end_node(w);
}

int snap_vcpu_read(struct snap_reader *r, unsigned index, struct snap_vcpu *s)
{
	char name[32];
	int node;

	snprintf(name, sizeof(name), "vcpu@%u", index);
	node = snap_node(r, 0, name);
	if (node < 0)
		return node;
	return snap_read(r, node, &snap_vcpu_desc, s);
}

static const struct {
	const char *node;
	const struct snap_desc *desc;
	size_t off;
} vm_nodes[] = {
	{ "pic-master", &snap_pic_desc, offsetof(struct snap_kvm_vm, pic[0]) },
	{ "pic-slave", &snap_pic_desc, offsetof(struct snap_kvm_vm, pic[1]) },
	{ "ioapic", &snap_ioapic_desc, offsetof(struct snap_kvm_vm, ioapic) },
	{ "pit", &snap_pit_desc, offsetof(struct snap_kvm_vm, pit) },
	{ "kvmclock", &snap_clock_desc, offsetof(struct snap_kvm_vm, clock) },
};

int snap_kvm_vm_write(struct snap_writer *w, const struct snap_kvm_vm *s)
{
	for (size_t i = 0; i < ARRAY_SIZE(vm_nodes); i++) {
		if (snap_begin_node(w, vm_nodes[i].node) ||
		    snap_write(w, vm_nodes[i].desc, (const char *)s + vm_nodes[i].off) ||
		    snap_end_node(w))
			return w->err;
	}
	return 0;
}

int snap_kvm_vm_read(struct snap_reader *r, struct snap_kvm_vm *s)
{
	struct snap_kvm_vm *stage = malloc(sizeof(*stage));
	int ret = 0;

	if (!stage)
		return -ENOMEM;
	*stage = *s;
	/* Into a copy: s changes only when all five nodes passed. */
	for (size_t i = 0; i < ARRAY_SIZE(vm_nodes) && !ret; i++) {
		int node = snap_node(r, 0, vm_nodes[i].node);

		ret = node < 0 ? node : snap_read(r, node, vm_nodes[i].desc, (char *)stage + vm_nodes[i].off);
	}
	if (!ret)
		*s = *stage;
	free(stage);
	return ret;
}
