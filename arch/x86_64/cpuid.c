#include "arch/x86_64/cpuid.h"

#include <stddef.h>

#include "vmm/util.h"

#define CPUID_1_EBX_APIC_ID_SHIFT   24
#define CPUID_1_EBX_LCPU_SHIFT      16
#define CPUID_1_ECX_HYPERVISOR      (1u << 31)
#define CPUID_1_ECX_TSC_DEADLINE    (1u << 24)
#define CPUID_1_EDX_HTT             (1u << 28)
#define CPUID_TOPO_LEVEL_SMT        1
#define CPUID_TOPO_LEVEL_CORE       2
#define CPUID_80000001_ECX_CMPLEGACY (1u << 1)

unsigned cpuid_core_shift(unsigned ncpus)
{
	unsigned shift = 0;

	while ((1u << shift) < ncpus)
		shift++;
	return shift;
}

struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid_entry2 *e, unsigned nent,
				    uint32_t function, uint32_t index)
{
	for (unsigned i = 0; i < nent; i++) {
		if (e[i].function != function)
			continue;
		if ((e[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) && e[i].index != index)
			continue;
		return &e[i];
	}
	return NULL;
}

/* Leaves 0xB and 0x1F: the extended topology enumeration, one subleaf per level. */
static void set_ext_topology(struct kvm_cpuid_entry2 *e, unsigned index, unsigned shift,
			     unsigned ncpus)
{
	e->edx = index; /* x2APIC id, the same on every subleaf */
	switch (e->index) {
	case 0: /* SMT level: one thread per core */
		e->eax = 0;
		e->ebx = 1;
		e->ecx = (CPUID_TOPO_LEVEL_SMT << 8) | e->index;
		break;
	case 1: /* core level: the whole package */
		e->eax = shift;
		e->ebx = ncpus;
		e->ecx = (CPUID_TOPO_LEVEL_CORE << 8) | e->index;
		break;
	default: /* no further levels */
		e->eax = 0;
		e->ebx = 0;
		e->ecx = e->index;
		break;
	}
}

void cpuid_set_topology(struct kvm_cpuid_entry2 *ents, unsigned nent, unsigned index, unsigned ncpus)
{
	unsigned shift = cpuid_core_shift(ncpus);

	for (unsigned i = 0; i < nent; i++) {
		struct kvm_cpuid_entry2 *e = &ents[i];

		switch (e->function) {
		case 0x1:
			e->ebx &= 0x0000ffffu;
			e->ebx |= index << CPUID_1_EBX_APIC_ID_SHIFT;
			e->ebx |= MIN(1u << shift, 0xffu) << CPUID_1_EBX_LCPU_SHIFT;
			e->ecx |= CPUID_1_ECX_HYPERVISOR;
			if (ncpus > 1)
				e->edx |= CPUID_1_EDX_HTT;
			else
				e->edx &= ~CPUID_1_EDX_HTT;
			break;
		case 0x4:
			/* Deterministic cache parameters: cores per package, one thread per cache
			 * below L3, the whole package sharing the last level. */
			if ((e->eax & 0x1f) == 0)
				break;
			e->eax &= 0x00003fffu;
			e->eax |= ((1u << shift) - 1) << 26;
			if (((e->eax >> 5) & 0x7) >= 3)
				e->eax |= ((1u << shift) - 1) << 14;
			break;
		case 0xb:
		case 0x1f:
			set_ext_topology(e, index, shift, ncpus);
			break;
		case 0x80000001:
			if (ncpus > 1)
				e->ecx |= CPUID_80000001_ECX_CMPLEGACY;
			else
				e->ecx &= ~CPUID_80000001_ECX_CMPLEGACY;
			break;
		case 0x80000008:
			/* NC: cores per package minus one; ApicIdCoreIdSize. */
			e->ecx &= ~0xf0ffu;
			e->ecx |= (ncpus - 1) & 0xff;
			e->ecx |= (shift & 0xf) << 12;
			break;
		case 0x8000001e:
			e->eax = index;          /* extended APIC id */
			e->ebx = index & 0xff;   /* core id; threads per core - 1 = 0 */
			e->ecx = 0;              /* one node */
			e->edx = 0;
			break;
		default:
			break;
		}
	}
}

void cpuid_set_tsc_deadline(struct kvm_cpuid_entry2 *e, unsigned nent)
{
	struct kvm_cpuid_entry2 *l = cpuid_find(e, nent, 0x1, 0);

	if (l)
		l->ecx |= CPUID_1_ECX_TSC_DEADLINE;
}
