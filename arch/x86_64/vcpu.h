/* x86_64 vCPU state at power-on: CPUID, LAPIC wiring, and the 64-bit boot registers. */
#ifndef ARCH_X86_64_VCPU_H
#define ARCH_X86_64_VCPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>

#include "vmm/util.h"

/* Set CPUID (from KVM's supported set, with our topology) and LINT0/LINT1 wiring. */
int x86_vcpu_init(int vcpu_fd, const struct kvm_cpuid2 *supported, unsigned index,
		  unsigned ncpus, bool tsc_deadline) WUR;

/* Registers for the boot vCPU: long mode, paging on, rip at the 64-bit entry, rsi at the zero page. */
int x86_vcpu_set_boot_regs(int vcpu_fd, uint64_t entry, uint64_t zero_page) WUR;

/* A one-line dump of rip/rsp/cr0/cr3/cr4/efer for error messages. */
void x86_vcpu_describe(int vcpu_fd, char *buf, size_t len);

/*
 * Where a vCPU waits, for a --timeout report: run state, rip, interrupt flag,
 * the LAPIC's pending and in-service vectors, its timer and the TSC deadline.
 */
void x86_vcpu_describe_wait(int vcpu_fd, char *buf, size_t len);

/* The guest-physical address of a linear one, through the vCPU's page tables (KVM_TRANSLATE). */
int x86_vcpu_translate(int vcpu_fd, uint64_t gva, uint64_t *gpa) WUR;

/* The vCPU's stack pointer and instruction pointer. */
int x86_vcpu_sp_ip(int vcpu_fd, uint64_t *sp, uint64_t *ip) WUR;

#endif
