/*
 * ACPI firmware tables for an x86_64 guest: RSDP, XSDT, FADT, FACS, DSDT,
 * MADT and MCFG, describing the platform the VMM emulates (KVM in-kernel PIC +
 * IOAPIC + LAPICs, a PCIe host bridge with ECAM, COM1, CMOS RTC, ACPI fixed
 * hardware with a PM1a event/control block for S5 power-off, and the i8042
 * command port as the reset register; no keyboard is declared).
 */
#ifndef ARCH_X86_64_ACPI_H
#define ARCH_X86_64_ACPI_H

#include <stddef.h>
#include <stdint.h>

#include "arch/x86_64/aml.h"
#include "vmm/util.h"

#define X86_MAX_CPUS 254 /* xAPIC ids 0..253; the IOAPIC takes id ncpus, 255 is broadcast */

/* PCI INTx routing shared by the DSDT's _PRT, the MP table and the PCI devices. */
#define X86_PCI_INTX_GSI_BASE 16
#define X86_PCI_INTX_GSI_NR   4

/* GSI of INTx pin (0 = INTA .. 3 = INTD) of a device in slot (0-31) of bus 0: swizzled by slot. */
static inline unsigned x86_pci_intx_gsi(unsigned slot, unsigned pin)
{
	return X86_PCI_INTX_GSI_BASE + (slot + pin) % X86_PCI_INTX_GSI_NR;
}

/* The byte that makes n bytes sum to zero: the checksum of ACPI and MP tables alike. */
static inline uint8_t fw_checksum(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	while (n--)
		sum += *b++;
	return (uint8_t)-sum;
}

struct x86_platform {            /* what the firmware tables describe */
	unsigned ncpus;              /* vCPUs; APIC id of vCPU i is i; vCPU 0 is the BSP */
	uint64_t mmio64_base;        /* 64-bit PCI window (above 4 GiB); size 0: none */
	uint64_t mmio64_size;
	/*
	 * Optional: called inside Scope (\_SB) after the built-in devices, so
	 * later devices can add their own AML. Errors are sticky in the encoder.
	 */
	void (*dsdt_extra)(struct aml *a, void *opaque);
	void *dsdt_extra_opaque;
};

/*
 * Build RSDP + XSDT + FADT + FACS + DSDT + MADT + MCFG into buf, which is the
 * host view of guest-physical [gpa, gpa+len). The RSDP goes at gpa, which must
 * be 16-byte aligned and inside 0xE0000-0xFFFFF (the kernel's legacy scan).
 * The rest of buf is zeroed. Returns 0 and sets *rsdp_gpa, or -EINVAL (bad
 * platform or placement) / -ENOSPC (buf too small).
 */
int acpi_build(const struct x86_platform *p, void *buf, size_t len, uint64_t gpa,
	       uint64_t *rsdp_gpa) WUR;

/* The DSDT's AML body (no table header) into an encoder; acpi_build() uses it. */
void acpi_dsdt_body(const struct x86_platform *p, struct aml *a);

#endif
