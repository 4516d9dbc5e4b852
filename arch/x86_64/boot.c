#include "arch/x86_64/boot.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "arch/x86_64/layout.h"
#include "vmm/util.h"

#define SETUP_HEADER_OFFSET 0x1f1
#define BOOT_FLAG_MAGIC     0xaa55
#define HDRS_MAGIC          0x53726448 /* "HdrS" */
#define MIN_BOOT_PROTOCOL   0x020c     /* 2.12: xloadflags, the 64-bit entry */
#define LOADER_TYPE_UNKNOWN 0xff
#define KERNEL_LOAD_ADDR    X86_HIMEM_START
#define ENTRY_64_OFFSET     0x200
#define E820_TYPE_RAM       1
#define E820_TYPE_RESERVED  2

_Static_assert(sizeof(struct boot_params) == 4096, "zero page is one page");
_Static_assert(offsetof(struct boot_params, hdr) == SETUP_HEADER_OFFSET, "setup header offset");
_Static_assert(offsetof(struct boot_params, e820_table) == 0x2d0, "e820 table offset");
_Static_assert(sizeof(struct boot_e820_entry) == 20, "e820 entry size");

int bzimage_parse(const uint8_t *head, size_t head_len, uint64_t size, struct bzimage *bz,
		  const char **why)
{
	uint64_t setup_sects;

	memset(bz, 0, sizeof(*bz));
	if (MIN(head_len, size) < SETUP_HEADER_OFFSET + sizeof(struct setup_header)) {
		*why = "file too short to be a bzImage";
		return -ENOEXEC;
	}
	memcpy(&bz->hdr, head + SETUP_HEADER_OFFSET, sizeof(bz->hdr));
	if (bz->hdr.boot_flag != BOOT_FLAG_MAGIC || bz->hdr.header != HDRS_MAGIC) {
		*why = "not a bzImage (no boot signature; an ELF vmlinux or a compressed file?)";
		return -ENOEXEC;
	}
	bz->version = bz->hdr.version;
	if (bz->version < MIN_BOOT_PROTOCOL) {
		*why = "boot protocol older than 2.12 (no 64-bit entry point)";
		return -ENOEXEC;
	}
	if (!(bz->hdr.xloadflags & XLF_KERNEL_64)) {
		*why = "kernel has no 64-bit entry point (not an x86_64 kernel?)";
		return -ENOEXEC;
	}
	if (!(bz->hdr.loadflags & LOADED_HIGH)) {
		*why = "kernel cannot be loaded at 1 MiB (zImage, not bzImage)";
		return -ENOEXEC;
	}
	setup_sects = bz->hdr.setup_sects ? bz->hdr.setup_sects : 4;
	bz->kernel_offset = (setup_sects + 1) * 512;
	if (bz->kernel_offset >= size) {
		*why = "bzImage is truncated (no protected-mode kernel after the setup code)";
		return -ENOEXEC;
	}
	bz->kernel_size = size - bz->kernel_offset;
	/* syssize counts 16-byte paragraphs of the protected-mode part. */
	if ((uint64_t)bz->hdr.syssize * 16 > bz->kernel_size) {
		*why = "bzImage is truncated (shorter than its header's syssize)";
		return -ENOEXEC;
	}
	bz->initrd_addr_max = bz->hdr.initrd_addr_max ? bz->hdr.initrd_addr_max : 0x37ffffff;
	bz->cmdline_size = bz->hdr.cmdline_size ? bz->hdr.cmdline_size : 255;
	bz->init_size = bz->hdr.init_size;
	if (bz->init_size < bz->kernel_size)
		bz->init_size = (uint32_t)MIN(bz->kernel_size * 4, UINT32_MAX);
	return 0;
}

static unsigned e820_add(struct boot_e820_entry *tab, unsigned n, unsigned max,
			 uint64_t addr, uint64_t size, uint32_t type)
{
	if (n >= max || size == 0)
		return n;
	tab[n].addr = addr;
	tab[n].size = size;
	tab[n].type = type;
	return n + 1;
}

unsigned x86_e820_build(const struct gmem *gm, struct boot_e820_entry *tab, unsigned max)
{
	unsigned n = 0;

	for (unsigned i = 0; i < gm->nr_regions; i++) {
		const struct gmem_region *r = &gm->regions[i];
		uint64_t end = r->gpa + r->size;

		if (r->gpa == 0) {
			/* Low memory: RAM up to the EBDA, then the firmware area. */
			n = e820_add(tab, n, max, 0, MIN(end, X86_EBDA_START), E820_TYPE_RAM);
			if (end > X86_EBDA_START)
				n = e820_add(tab, n, max, X86_EBDA_START,
					     X86_HIMEM_START - X86_EBDA_START, E820_TYPE_RESERVED);
			if (end > X86_HIMEM_START)
				n = e820_add(tab, n, max, X86_HIMEM_START, end - X86_HIMEM_START,
					     E820_TYPE_RAM);
			/* The ECAM window must be reserved or Linux refuses MMCONFIG. */
			n = e820_add(tab, n, max, X86_PCI_ECAM_BASE, X86_PCI_ECAM_SIZE,
				     E820_TYPE_RESERVED);
		} else {
			n = e820_add(tab, n, max, r->gpa, r->size, E820_TYPE_RAM);
		}
	}
	return n;
}

PRINTF_FMT(4, 5)
static int boot_err(int ret, char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return ret;
}

/* Copy len bytes at offset off of f to dst: from its head, then from its fd. */
static int file_copy(const struct x86_boot_file *f, uint8_t *dst, uint64_t off, size_t len)
{
	if (off > f->size || len > f->size - off)
		return -EINVAL;
	if (off < f->head_len) {
		size_t n = (size_t)MIN((uint64_t)len, f->head_len - off);

		memcpy(dst, f->head + off, n);
		dst += n;
		off += n;
		len -= n;
	}
	if (!len)
		return 0;
	/* -EIO: the file ended early, it shrank since it was opened. */
	return f->fd < 0 ? -EINVAL : pread_full(f->fd, dst, len, off);
}

int x86_boot_load(const struct gmem *gm, const struct x86_boot_params *p,
		  struct x86_boot_layout *out, char *err, size_t errlen)
{
	struct boot_params *zp;
	struct bzimage bz;
	const char *why;
	uint64_t low_end, kernel_end, initrd_top, initrd_addr = 0;
	uint64_t initrd_len = p->initrd.size;
	size_t cmdline_len = strlen(p->cmdline);
	void *dst;
	int ret;

	memset(out, 0, sizeof(*out));
	if (bzimage_parse(p->kernel.head, p->kernel.head_len, p->kernel.size, &bz, &why))
		return boot_err(-ENOEXEC, err, errlen, "%s", why);
	if (cmdline_len > bz.cmdline_size || cmdline_len >= X86_CMDLINE_MAX)
		return boot_err(-EINVAL, err, errlen,
				"command line is %zu bytes; this kernel accepts at most %u",
				cmdline_len, bz.cmdline_size);

	/* The kernel decompresses in place from its load address: it needs init_size bytes. */
	low_end = gm->regions[0].size;
	kernel_end = KERNEL_LOAD_ADDR + MAX((uint64_t)bz.init_size, bz.kernel_size);
	if (kernel_end > low_end)
		return boot_err(-ENOMEM, err, errlen,
				"memory too small: the kernel needs %llu MiB below 3 GiB; give --memory more",
				(unsigned long long)((kernel_end + MiB - 1) / MiB));
	dst = gmem_translate(gm, KERNEL_LOAD_ADDR, bz.kernel_size);
	if (!dst)
		return boot_err(-ENOMEM, err, errlen, "memory too small for the kernel; give --memory more");
	ret = file_copy(&p->kernel, dst, bz.kernel_offset, bz.kernel_size);
	if (ret)
		return boot_err(-EIO, err, errlen,
				"--kernel: reading failed: %s (did the file change while loading?)",
				ret == -EIO ? "it ended early" : strerror(-ret));

	if (initrd_len) {
		/* As high as allowed, below initrd_addr_max and the end of low RAM, page aligned. */
		initrd_top = MIN(low_end, (uint64_t)bz.initrd_addr_max + 1);
		if (initrd_len > initrd_top ||
		    ((initrd_top - initrd_len) & ~(uint64_t)4095) < ALIGN_UP(kernel_end, 4096))
			return boot_err(-ENOMEM, err, errlen,
					"memory too small for kernel + initramfs (%llu MiB); give --memory more",
					(unsigned long long)(initrd_len / MiB + 1));
		initrd_addr = (initrd_top - initrd_len) & ~(uint64_t)4095;
		dst = gmem_translate(gm, initrd_addr, initrd_len);
		if (!dst)
			return boot_err(-EINVAL, err, errlen, "initramfs does not fit in guest RAM");
		ret = file_copy(&p->initrd, dst, 0, initrd_len);
		if (ret)
			return boot_err(-EIO, err, errlen,
					"--initramfs: reading failed: %s (did the file change while loading?)",
					ret == -EIO ? "it ended early" : strerror(-ret));
	}

	if (gmem_write(gm, X86_CMDLINE_ADDR, p->cmdline, cmdline_len + 1))
		return boot_err(-EINVAL, err, errlen, "guest RAM too small for the command line");

	zp = gmem_translate(gm, X86_ZERO_PAGE_ADDR, sizeof(*zp));
	if (!zp)
		return boot_err(-EINVAL, err, errlen, "guest RAM too small for the zero page");
	memset(zp, 0, sizeof(*zp));
	zp->hdr = bz.hdr;
	zp->hdr.type_of_loader = LOADER_TYPE_UNKNOWN;
	zp->hdr.loadflags |= CAN_USE_HEAP | KEEP_SEGMENTS;
	zp->hdr.loadflags &= (uint8_t)~QUIET_FLAG;
	zp->hdr.heap_end_ptr = 0xfe00;
	zp->hdr.cmd_line_ptr = (uint32_t)X86_CMDLINE_ADDR;
	zp->ext_cmd_line_ptr = 0;
	zp->hdr.cmdline_size = (uint32_t)cmdline_len;
	zp->hdr.ramdisk_image = (uint32_t)initrd_addr;
	zp->ext_ramdisk_image = (uint32_t)(initrd_addr >> 32);
	zp->hdr.ramdisk_size = (uint32_t)(initrd_addr ? initrd_len : 0);
	zp->ext_ramdisk_size = (uint32_t)(initrd_addr ? initrd_len >> 32 : 0);
	zp->acpi_rsdp_addr = p->rsdp_gpa;
	zp->e820_entries = (uint8_t)x86_e820_build(gm, zp->e820_table, ARRAY_SIZE(zp->e820_table));

	out->entry = KERNEL_LOAD_ADDR + ENTRY_64_OFFSET;
	out->zero_page = X86_ZERO_PAGE_ADDR;
	out->kernel_start = KERNEL_LOAD_ADDR;
	out->kernel_end = kernel_end;
	out->initrd_start = initrd_addr;
	out->initrd_end = initrd_addr ? initrd_addr + initrd_len : 0;
	return 0;
}

#define PTE_PRESENT  (1ULL << 0)
#define PTE_WRITE    (1ULL << 1)
#define PTE_HUGE     (1ULL << 7)

int x86_boot_build_page_tables(const struct gmem *gm)
{
	uint64_t *pml4 = gmem_translate(gm, X86_PML4_ADDR, 4096);
	uint64_t *pdpt = gmem_translate(gm, X86_PDPT_ADDR, 4096);
	uint64_t *pd = gmem_translate(gm, X86_PD_ADDR, 4 * 4096);

	if (!pml4 || !pdpt || !pd)
		return -EFAULT;
	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	pml4[0] = X86_PDPT_ADDR | PTE_PRESENT | PTE_WRITE;
	for (uint64_t i = 0; i < 4; i++)
		pdpt[i] = (X86_PD_ADDR + i * 4096) | PTE_PRESENT | PTE_WRITE;
	/* 2048 entries of 2 MiB: an identity map of the first 4 GiB. */
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | PTE_PRESENT | PTE_WRITE | PTE_HUGE;
	return 0;
}

int x86_boot_build_gdt(const struct gmem *gm)
{
	const uint64_t gdt[X86_GDT_ENTRIES] = {
		0,
		x86_gdt_entry(0xa09b, 0, 0xfffff), /* 64-bit code, present, DPL 0 */
		x86_gdt_entry(0xc093, 0, 0xfffff), /* 32-bit data, read/write */
		x86_gdt_entry(0x808b, 0, 0xfffff), /* busy 64-bit TSS */
	};
	const uint64_t idt = 0;

	if (gmem_write(gm, X86_GDT_ADDR, gdt, sizeof(gdt)) ||
	    gmem_write(gm, X86_IDT_ADDR, &idt, sizeof(idt)))
		return -EFAULT;
	return 0;
}
