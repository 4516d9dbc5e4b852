/* Per-vCPU CPUID: KVM's supported set, with the topology and hypervisor leaves made truthful. */
#ifndef ARCH_X86_64_CPUID_H
#define ARCH_X86_64_CPUID_H

#include <stdint.h>
#include <linux/kvm.h>

/* Bits of the APIC id that number cores: ceil(log2(ncpus)), 0 for one vCPU. */
unsigned cpuid_core_shift(unsigned ncpus);

/*
 * Rewrite the entries (as returned by KVM_GET_SUPPORTED_CPUID) for vCPU
 * `index` of `ncpus`, all cores of one socket with one thread each, APIC id
 * == index: leaves 0x1, 0x4, 0xB, 0x1F, 0x80000001, 0x80000008, 0x8000001E.
 * Leaves KVM reports and we do not touch pass through unchanged, which keeps
 * the KVM paravirtual leaves (0x40000000..) so the guest uses kvmclock.
 */
void cpuid_set_topology(struct kvm_cpuid_entry2 *e, unsigned nent, unsigned index, unsigned ncpus);

/* Advertise the TSC-deadline LAPIC timer (KVM emulates it but leaves the bit to userspace). */
void cpuid_set_tsc_deadline(struct kvm_cpuid_entry2 *e, unsigned nent);

/* The entry for (function, index), or NULL. */
struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid_entry2 *e, unsigned nent,
				    uint32_t function, uint32_t index);

#endif
