/*
 * The x86_64 Linux boot protocol (Documentation/arch/x86/boot.rst): parse a
 * bzImage (or an uncompressed ELF vmlinux, entered at its 64-bit entry with a
 * zero page we fill in, as Firecracker does), lay out the kernel, initramfs, command line, zero page and e820
 * map in guest memory, and describe where the 64-bit entry starts.
 */
#ifndef ARCH_X86_64_BOOT_H
#define ARCH_X86_64_BOOT_H

#include <stddef.h>
#include <stdint.h>
#include <asm/bootparam.h>

#include "vmm/gmem.h"

/* What the setup header says, after validation. */
struct bzimage {
	uint16_t version;          /* boot protocol, e.g. 0x020f */
	uint64_t kernel_offset;    /* file offset of the protected-mode kernel */
	uint64_t kernel_size;
	uint32_t initrd_addr_max;  /* highest byte address the initramfs may occupy */
	uint32_t cmdline_size;     /* longest command line, excluding the NUL */
	uint32_t init_size;        /* memory the kernel needs from its load address */
	struct setup_header hdr;   /* verbatim, for the zero page */
};

/*
 * Validate the setup header of a bzImage of size bytes, given its first
 * head_len bytes. On failure returns -ENOEXEC and points *why at a sentence
 * naming what is wrong.
 */
int bzimage_parse(const uint8_t *head, size_t head_len, uint64_t size, struct bzimage *bz,
		  const char **why) WUR;

/* An uncompressed ELF vmlinux: its loadable segments, after validation. */
#define VMLINUX_MAX_SEGMENTS 16
struct vmlinux_segment {
	uint64_t offset;           /* in the file */
	uint64_t filesz;           /* bytes from the file; the rest of memsz is zeroed */
	uint64_t paddr;            /* guest-physical load address */
	uint64_t memsz;
};
struct vmlinux {
	uint64_t entry;            /* guest-physical 64-bit entry (startup_64) */
	uint64_t start, end;       /* lowest and highest guest-physical byte + 1 loaded */
	unsigned nr_segments;
	struct vmlinux_segment segments[VMLINUX_MAX_SEGMENTS];
};

/* Is this file (given its first head_len bytes) an ELF file? */
int is_elf(const uint8_t *head, size_t head_len);

/*
 * Validate an x86_64 ELF vmlinux of size bytes, given its first head_len
 * bytes, which must hold the ELF and program headers. Segments must lie
 * inside the file, load at or above 1 MiB, not overlap, and hold the entry
 * point. On failure returns -ENOEXEC and points *why at a sentence.
 */
int vmlinux_parse(const uint8_t *head, size_t head_len, uint64_t size, struct vmlinux *vm,
		  const char **why) WUR;

/* Either format, as x86_boot_load accepts it: 0, or -ENOEXEC and *why. */
int x86_kernel_check(const uint8_t *head, size_t head_len, uint64_t size, const char **why) WUR;

/* The e820 map for this guest memory; returns the number of entries (<= max). */
unsigned x86_e820_build(const struct gmem *gm, struct boot_e820_entry *tab, unsigned max);

/*
 * A kernel or initramfs file: its first head_len bytes in memory (for a
 * bzImage, at least the setup header) and the rest read from fd straight into
 * guest memory, so that a 15 MiB kernel is neither buffered nor copied twice.
 * With fd < 0, head holds all size bytes.
 */
struct x86_boot_file {
	const uint8_t *head;
	size_t head_len;
	uint64_t size;
	int fd;
};

struct x86_boot_params {
	struct x86_boot_file kernel;  /* a bzImage or an ELF vmlinux */
	struct x86_boot_file initrd;  /* size 0: none */
	const char *cmdline;
	uint64_t rsdp_gpa;         /* 0 when there are no ACPI tables */
};

struct x86_boot_layout {
	uint64_t entry;            /* 64-bit entry: bzImage load address + 0x200, or the ELF's */
	uint64_t zero_page;        /* guest-physical address of struct boot_params */
	uint64_t kernel_start, kernel_end;
	uint64_t initrd_start, initrd_end;
};

/*
 * Copy kernel, initramfs and command line into guest memory and build the
 * zero page. On failure returns -errno (-ENOMEM: guest memory too small; -EIO:
 * a file could not be read whole) and writes a one-line reason to err.
 */
int x86_boot_load(const struct gmem *gm, const struct x86_boot_params *p,
		  struct x86_boot_layout *out, char *err, size_t errlen) WUR;

/* Identity-mapped page tables for the first 4 GiB and a flat GDT, as the 64-bit entry needs. */
int x86_boot_build_page_tables(const struct gmem *gm) WUR;
int x86_boot_build_gdt(const struct gmem *gm) WUR;

/* GDT selectors the vCPU registers use. */
#define X86_GDT_CODE_SEL 0x08
#define X86_GDT_DATA_SEL 0x10
#define X86_GDT_TSS_SEL  0x18
#define X86_GDT_ENTRIES  4

/* One GDT descriptor from flags (access byte + granularity nibble), base and limit. */
static inline uint64_t x86_gdt_entry(uint16_t flags, uint32_t base, uint32_t limit)
{
	return ((uint64_t)(base & 0xff000000u) << 32) | ((uint64_t)(flags & 0xf0ffu) << 40) |
	       ((uint64_t)(limit & 0x000f0000u) << 32) | ((uint64_t)(base & 0x00ffffffu) << 16) |
	       (uint64_t)(limit & 0x0000ffffu);
}

#endif
