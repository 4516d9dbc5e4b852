/* The guest-physical memory map of an x86_64 guest; one place for every address. */
#ifndef ARCH_X86_64_LAYOUT_H
#define ARCH_X86_64_LAYOUT_H

/* Low memory used while booting (all below 1 MiB, all RAM in the e820 map). */
#define X86_GDT_ADDR         0x500ULL
#define X86_IDT_ADDR         0x520ULL
#define X86_ZERO_PAGE_ADDR   0x7000ULL   /* struct boot_params */
#define X86_BOOT_STACK_ADDR  0x8ff0ULL
#define X86_PML4_ADDR        0x9000ULL
#define X86_PDPT_ADDR        0xa000ULL
#define X86_PD_ADDR          0xb000ULL   /* 4 pages: identity map of 4 GiB in 2 MiB pages */
#define X86_CMDLINE_ADDR     0x20000ULL
#define X86_CMDLINE_MAX      0x10000ULL  /* 64 KiB, well above any kernel's limit */

/* Reserved low memory: EBDA and the BIOS area, where firmware tables live. */
#define X86_EBDA_START       0x9fc00ULL
#define X86_BIOS_START       0xe0000ULL
#define X86_ACPI_ADDR        0xe0000ULL  /* RSDP first, then the tables: 0xe0000-0xeffff */
#define X86_ACPI_MAX         0x10000ULL
/* MP floating pointer + table (~6.3 KiB at 254 CPUs, too big for the EBDA's 1 KiB): 0xf0000-0xfffff */
#define X86_MPTABLE_ADDR     0xf0000ULL
#define X86_MPTABLE_MAX      0x10000ULL
#define X86_HIMEM_START      0x100000ULL /* 1 MiB: where RAM resumes and the kernel loads */

/* The 32-bit hole below 4 GiB: PCI windows and platform MMIO. RAM above 3 GiB moves above 4 GiB. */
#define X86_MEM_HOLE_START   0xc0000000ULL
#define X86_MEM_HOLE_END     0x100000000ULL
#define X86_PCI_MMIO32_BASE  0xc0000000ULL
#define X86_PCI_MMIO32_SIZE  0x20000000ULL  /* 512 MiB for 32-bit BARs */
#define X86_PCI_ECAM_BASE    0xe0000000ULL
#define X86_PCI_ECAM_SIZE    0x100000ULL    /* bus 0 only: 32 devices x 8 functions x 4 KiB */
#define X86_PCI_IO_BASE      0xc000ULL      /* I/O BARs: 0xc000-0xffff, inside the DSDT's I/O window */
#define X86_PCI_IO_SIZE      0x4000ULL
#define X86_IOAPIC_BASE      0xfec00000ULL
#define X86_LAPIC_BASE       0xfee00000ULL

/* 64-bit BARs go in a window that starts at the first 1 GiB boundary above RAM. */
#define X86_PCI_MMIO64_ALIGN 0x40000000ULL
#define X86_PCI_MMIO64_SIZE  0x1000000000ULL /* 64 GiB */

/* Legacy I/O ports and ISA interrupts. */
#define X86_COM1_PORT        0x3f8
#define X86_COM1_IRQ         4
#define X86_I8042_PORT_DATA  0x60
#define X86_I8042_PORT_CMD   0x64
#define X86_RTC_PORT         0x70
#define X86_ACPI_PM1A_EVT    0x600      /* PM1a event block, 4 bytes */
#define X86_ACPI_PM1A_CNT    0x604      /* PM1a control block, 2 bytes */
#define X86_ACPI_SCI_IRQ     9
#define X86_ACPI_S5_SLP_TYP  5          /* the value \_S5 hands the OS for PM1a_CNT.SLP_TYP */
#define X86_EXIT_PORT        0x501      /* the paravirtual exit device (see README) */

#define X86_IOAPIC_PINS      24

#endif
