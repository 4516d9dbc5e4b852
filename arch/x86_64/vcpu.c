#include "arch/x86_64/vcpu.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86_64/boot.h"
#include "arch/x86_64/cpuid.h"
#include "arch/x86_64/layout.h"

#define X86_CR0_PE   (1ULL << 0)
#define X86_CR0_ET   (1ULL << 4)
#define X86_CR0_PG   (1ULL << 31)
#define X86_CR4_PAE  (1ULL << 5)
#define X86_EFER_LME (1ULL << 8)
#define X86_EFER_LMA (1ULL << 10)

#define MSR_MTRR_DEF_TYPE 0x2ff
#define MTRR_DEF_TYPE_E   (1ULL << 11)
#define MTRR_TYPE_WB      6ULL

#define MSR_IA32_TSC          0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0

#define APIC_TPR         0x80
#define APIC_ISR         0x100
#define APIC_IRR         0x200
#define APIC_LVTT        0x320
#define APIC_TMICT       0x380
#define APIC_LVT0        0x350
#define APIC_LVT1        0x360
#define APIC_MODE_NMI    0x4
#define APIC_MODE_EXTINT 0x7

static int set_cpuid(int vcpu_fd, const struct kvm_cpuid2 *supported, unsigned index, unsigned ncpus,
		     bool tsc_deadline)
{
	size_t sz = sizeof(*supported) + supported->nent * sizeof(supported->entries[0]);
	struct kvm_cpuid2 *c = malloc(sz);
	int ret = 0;

	if (!c)
		return -ENOMEM;
	memcpy(c, supported, sz);
	cpuid_set_topology(c->entries, c->nent, index, ncpus);
	if (tsc_deadline)
		cpuid_set_tsc_deadline(c->entries, c->nent);
	if (ioctl(vcpu_fd, KVM_SET_CPUID2, c) < 0)
		ret = -errno;
	free(c);
	return ret;
}

static uint32_t lapic_reg(const struct kvm_lapic_state *l, unsigned off)
{
	uint32_t v;

	memcpy(&v, &l->regs[off], sizeof(v));
	return v;
}

static void lapic_set_reg(struct kvm_lapic_state *l, unsigned off, uint32_t v)
{
	memcpy(&l->regs[off], &v, sizeof(v));
}

/* Wire LINT0 to the 8259 (ExtINT) and LINT1 to NMI, as PC firmware does. */
static int setup_lapic(int vcpu_fd)
{
	struct kvm_lapic_state l;

	if (ioctl(vcpu_fd, KVM_GET_LAPIC, &l) < 0)
		return -errno;
	lapic_set_reg(&l, APIC_LVT0, (lapic_reg(&l, APIC_LVT0) & ~0x700u) | (APIC_MODE_EXTINT << 8));
	lapic_set_reg(&l, APIC_LVT1, (lapic_reg(&l, APIC_LVT1) & ~0x700u) | (APIC_MODE_NMI << 8));
	if (ioctl(vcpu_fd, KVM_SET_LAPIC, &l) < 0)
		return -errno;
	return 0;
}

/* Firmware enables MTRRs with write-back as the default type; without it Linux also skips PAT. */
static int setup_msrs(int vcpu_fd)
{
	/* struct kvm_msrs ends in a flexible array: give it room for one entry. */
	union {
		struct kvm_msrs hdr;
		uint8_t raw[sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)];
	} msrs;

	memset(&msrs, 0, sizeof(msrs));
	msrs.hdr.nmsrs = 1;
	msrs.hdr.entries[0].index = MSR_MTRR_DEF_TYPE;
	msrs.hdr.entries[0].data = MTRR_DEF_TYPE_E | MTRR_TYPE_WB;
	if (ioctl(vcpu_fd, KVM_SET_MSRS, &msrs) != 1)
		return -EIO;
	return 0;
}

int x86_vcpu_init(int vcpu_fd, const struct kvm_cpuid2 *supported, unsigned index, unsigned ncpus,
		  bool tsc_deadline)
{
	int ret = set_cpuid(vcpu_fd, supported, index, ncpus, tsc_deadline);

	if (ret)
		return ret;
	ret = setup_msrs(vcpu_fd);
	if (ret)
		return ret;
	return setup_lapic(vcpu_fd);
}

static void set_segment(struct kvm_segment *s, uint16_t selector, uint64_t gdt_entry)
{
	memset(s, 0, sizeof(*s));
	s->selector = selector;
	s->base = ((gdt_entry >> 16) & 0xffffff) | (((gdt_entry >> 56) & 0xff) << 24);
	s->limit = (uint32_t)((gdt_entry & 0xffff) | (((gdt_entry >> 48) & 0xf) << 16));
	s->type = (gdt_entry >> 40) & 0xf;
	s->s = (gdt_entry >> 44) & 1;
	s->dpl = (gdt_entry >> 45) & 3;
	s->present = (gdt_entry >> 47) & 1;
	s->avl = (gdt_entry >> 52) & 1;
	s->l = (gdt_entry >> 53) & 1;
	s->db = (gdt_entry >> 54) & 1;
	s->g = (gdt_entry >> 55) & 1;
	if (s->g)
		s->limit = (s->limit << 12) | 0xfff;
	s->unusable = !s->present;
}

int x86_vcpu_set_boot_regs(int vcpu_fd, uint64_t entry, uint64_t zero_page)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_fpu fpu;

	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	set_segment(&sregs.cs, X86_GDT_CODE_SEL, x86_gdt_entry(0xa09b, 0, 0xfffff));
	set_segment(&sregs.ds, X86_GDT_DATA_SEL, x86_gdt_entry(0xc093, 0, 0xfffff));
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	set_segment(&sregs.tr, X86_GDT_TSS_SEL, x86_gdt_entry(0x808b, 0, 0xfffff));
	sregs.gdt.base = X86_GDT_ADDR;
	sregs.gdt.limit = X86_GDT_ENTRIES * 8 - 1;
	sregs.idt.base = X86_IDT_ADDR;
	sregs.idt.limit = 7;
	sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
	sregs.cr3 = X86_PML4_ADDR;
	sregs.cr4 = X86_CR4_PAE;
	sregs.efer = X86_EFER_LME | X86_EFER_LMA;
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;

	memset(&regs, 0, sizeof(regs));
	regs.rflags = 0x2; /* bit 1 is reserved and always set */
	regs.rip = entry;
	regs.rsi = zero_page; /* the 64-bit boot protocol: rsi points at boot_params */
	regs.rsp = X86_BOOT_STACK_ADDR;
	regs.rbp = X86_BOOT_STACK_ADDR;
	if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return -errno;

	memset(&fpu, 0, sizeof(fpu));
	fpu.fcw = 0x37f;    /* x87 power-on control word */
	fpu.mxcsr = 0x1f80; /* SSE power-on: all exceptions masked */
	if (ioctl(vcpu_fd, KVM_SET_FPU, &fpu) < 0)
		return -errno;
	return 0;
}

void x86_vcpu_describe(int vcpu_fd, char *buf, size_t len)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	if (ioctl(vcpu_fd, KVM_GET_REGS, &regs) < 0 || ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0) {
		snprintf(buf, len, "registers unavailable");
		return;
	}
	snprintf(buf, len, "rip=%#llx rsp=%#llx cr0=%#llx cr3=%#llx cr4=%#llx efer=%#llx",
		 (unsigned long long)regs.rip, (unsigned long long)regs.rsp,
		 (unsigned long long)sregs.cr0, (unsigned long long)sregs.cr3,
		 (unsigned long long)sregs.cr4, (unsigned long long)sregs.efer);
}

/* The highest vector set in a 256-bit LAPIC register bank (ISR, IRR), or -1. */
static int lapic_highest(const struct kvm_lapic_state *l, unsigned base)
{
	for (int i = 7; i >= 0; i--) {
		uint32_t w = lapic_reg(l, base + (unsigned)i * 0x10);

		if (w)
			return i * 32 + 31 - __builtin_clz(w);
	}
	return -1;
}

void x86_vcpu_describe_wait(int vcpu_fd, char *buf, size_t len)
{
	static const char *const states[] = { "runnable", "uninitialized", "init-received",
					      "halted", "sipi-received" };
	union {
		struct kvm_msrs hdr;
		uint8_t raw[sizeof(struct kvm_msrs) + 2 * sizeof(struct kvm_msr_entry)];
	} msrs;
	struct kvm_mp_state mp;
	struct kvm_lapic_state lapic;
	struct kvm_regs regs;
	char deadline[64];
	uint64_t tsc, dl;
	int khz;

	memset(&msrs, 0, sizeof(msrs));
	msrs.hdr.nmsrs = 2;
	msrs.hdr.entries[0].index = MSR_IA32_TSC;
	msrs.hdr.entries[1].index = MSR_IA32_TSC_DEADLINE;
	if (ioctl(vcpu_fd, KVM_GET_REGS, &regs) < 0 || ioctl(vcpu_fd, KVM_GET_MP_STATE, &mp) < 0 ||
	    ioctl(vcpu_fd, KVM_GET_LAPIC, &lapic) < 0 || ioctl(vcpu_fd, KVM_GET_MSRS, &msrs) != 2) {
		snprintf(buf, len, "state unavailable");
		return;
	}
	/* How far off the deadline is says whether the guest's time still runs (a
	 * timer hours ahead is a clock that jumped, one long past a lost interrupt). */
	tsc = msrs.hdr.entries[0].data;
	dl = msrs.hdr.entries[1].data;
	khz = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);
	if (!dl)
		snprintf(deadline, sizeof(deadline), "unarmed");
	else if (khz <= 0)
		snprintf(deadline, sizeof(deadline), "armed, in the %s", dl > tsc ? "future" : "past");
	else
		snprintf(deadline, sizeof(deadline), "armed, %llu ms %s",
			 (unsigned long long)((dl > tsc ? dl - tsc : tsc - dl) / (uint64_t)khz),
			 dl > tsc ? "ahead" : "overdue");
	snprintf(buf, len,
		 "%s rip=%#llx rflags.IF=%u; LAPIC tpr=%#x isr=%d irr=%d lvtt=%#x tmict=%#x; "
		 "tsc-deadline %s",
		 mp.mp_state < ARRAY_SIZE(states) ? states[mp.mp_state] : "?",
		 (unsigned long long)regs.rip, (unsigned)(regs.rflags >> 9) & 1,
		 lapic_reg(&lapic, APIC_TPR), lapic_highest(&lapic, APIC_ISR),
		 lapic_highest(&lapic, APIC_IRR), lapic_reg(&lapic, APIC_LVTT),
		 lapic_reg(&lapic, APIC_TMICT), deadline);
}

int x86_vcpu_translate(int vcpu_fd, uint64_t gva, uint64_t *gpa)
{
	struct kvm_translation t = { .linear_address = gva };

	if (ioctl(vcpu_fd, KVM_TRANSLATE, &t) < 0)
		return -errno;
	if (!t.valid)
		return -EFAULT;
	*gpa = t.physical_address;
	return 0;
}

int x86_vcpu_sp_ip(int vcpu_fd, uint64_t *sp, uint64_t *ip)
{
	struct kvm_regs regs;

	if (ioctl(vcpu_fd, KVM_GET_REGS, &regs) < 0)
		return -errno;
	*sp = regs.rsp;
	*ip = regs.rip;
	return 0;
}
