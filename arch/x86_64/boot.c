#include "arch/x86_64/boot.h"

#include <elf.h>
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
#define VMLINUX_CMDLINE_MAX 2047       /* x86 COMMAND_LINE_SIZE - 1 */
#define VMLINUX_ALIGN       0x200000   /* CONFIG_PHYSICAL_ALIGN of x86_64 kernels */
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
		*why = "not a bzImage or an ELF vmlinux (no boot signature; a compressed file?)";
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
	if (bz->kernel_size <= ENTRY_64_OFFSET) {
		*why = "bzImage is truncated (its kernel ends before the 64-bit entry point)";
		return -ENOEXEC;
	}
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

int is_elf(const uint8_t *head, size_t head_len)
{
	return head_len >= SELFMAG && memcmp(head, ELFMAG, SELFMAG) == 0;
}

int vmlinux_parse(const uint8_t *head, size_t head_len, uint64_t size, struct vmlinux *vm,
		  const char **why)
{
	Elf64_Ehdr eh;
	int has_entry = 0;

	memset(vm, 0, sizeof(*vm));
	head_len = (size_t)MIN((uint64_t)head_len, size);
	if (head_len < sizeof(eh) || !is_elf(head, head_len)) {
		*why = "not an ELF file";
		return -ENOEXEC;
	}
	memcpy(&eh, head, sizeof(eh));
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh.e_machine != EM_X86_64) {
		*why = "ELF file is not an x86_64 kernel (wrong class, byte order or machine)";
		return -ENOEXEC;
	}
	if (eh.e_type != ET_EXEC) {
		*why = "ELF file is not a vmlinux: not a fixed-address executable (a program, a module, an object file?)";
		return -ENOEXEC;
	}
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 ||
	    eh.e_phoff > head_len || (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > head_len - eh.e_phoff) {
		*why = "ELF program headers missing or not in the file's first 4 KiB";
		return -ENOEXEC;
	}
	vm->start = UINT64_MAX;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		struct vmlinux_segment *seg;
		Elf64_Phdr ph;

		memcpy(&ph, head + eh.e_phoff + i * sizeof(ph), sizeof(ph));
		if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
			continue;
		if (vm->nr_segments == VMLINUX_MAX_SEGMENTS) {
			*why = "ELF file has more than 16 loadable segments";
			return -ENOEXEC;
		}
		if (ph.p_filesz > ph.p_memsz || ph.p_offset > size || ph.p_filesz > size - ph.p_offset) {
			*why = "ELF segment lies beyond the end of the file (truncated?)";
			return -ENOEXEC;
		}
		if (ph.p_paddr < KERNEL_LOAD_ADDR || ph.p_paddr >= X86_MEM_HOLE_START ||
		    ph.p_memsz > X86_MEM_HOLE_START - ph.p_paddr) {
			*why = "ELF segment does not load between 1 MiB and 3 GiB (physical addresses)";
			return -ENOEXEC;
		}
		for (unsigned j = 0; j < vm->nr_segments; j++) {
			const struct vmlinux_segment *o = &vm->segments[j];

			if (ph.p_paddr < o->paddr + o->memsz && o->paddr < ph.p_paddr + ph.p_memsz) {
				*why = "ELF segments overlap";
				return -ENOEXEC;
			}
		}
		seg = &vm->segments[vm->nr_segments++];
		seg->offset = ph.p_offset;
		seg->filesz = ph.p_filesz;
		seg->paddr = ph.p_paddr;
		seg->memsz = ph.p_memsz;
		vm->start = MIN(vm->start, seg->paddr);
		vm->end = MAX(vm->end, seg->paddr + seg->memsz);
		if (eh.e_entry >= seg->paddr && eh.e_entry - seg->paddr < seg->filesz)
			has_entry = 1;
	}
	if (!vm->nr_segments) {
		*why = "ELF file has nothing to load";
		return -ENOEXEC;
	}
	/* vmlinux's entry is physical (phys_startup_64) and must be code from the file. */
	if (!has_entry) {
		*why = "ELF entry point is not inside a loaded segment";
		return -ENOEXEC;
	}
	vm->entry = eh.e_entry;
	return 0;
}

int x86_kernel_check(const uint8_t *head, size_t head_len, uint64_t size, const char **why)
{
	struct vmlinux vm;
	struct bzimage bz;

	if (is_elf(head, MIN((uint64_t)head_len, size)))
		return vmlinux_parse(head, head_len, size, &vm, why);
	return bzimage_parse(head, head_len, size, &bz, why);
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

static int kernel_read_err(int ret, char *err, size_t errlen)
{
	return boot_err(-EIO, err, errlen, "--kernel: reading failed: %s (did the file change while loading?)",
			ret == -EIO ? "it ended early" : strerror(-ret));
}

static int too_small(uint64_t end, char *err, size_t errlen)
{
	return boot_err(-ENOMEM, err, errlen,
			"memory too small: the kernel needs %llu MiB below 3 GiB; give --memory more",
			(unsigned long long)((end + MiB - 1) / MiB));
}

/* What loading either kind of kernel leaves for the zero page and the layout. */
struct loaded_kernel {
	struct setup_header hdr;
	uint64_t entry;            /* guest-physical 64-bit entry */
	uint64_t start, end;       /* the memory the kernel occupies (or needs) */
};

/* A bzImage: its protected-mode part at 1 MiB; it decompresses itself from there. */
static int load_bzimage(const struct gmem *gm, const struct x86_boot_params *p, size_t cmdline_len,
			uint64_t low_end, struct loaded_kernel *k, char *err, size_t errlen)
{
	struct bzimage bz;
	const char *why;
	void *dst;
	int ret;

	if (bzimage_parse(p->kernel.head, p->kernel.head_len, p->kernel.size, &bz, &why))
		return boot_err(-ENOEXEC, err, errlen, "%s", why);
	if (cmdline_len > bz.cmdline_size)
		return boot_err(-EINVAL, err, errlen,
				"command line is %zu bytes; this kernel accepts at most %u",
				cmdline_len, bz.cmdline_size);
	/* The kernel decompresses in place from its load address: it needs init_size bytes. */
	k->start = KERNEL_LOAD_ADDR;
	k->end = KERNEL_LOAD_ADDR + MAX((uint64_t)bz.init_size, bz.kernel_size);
	if (k->end > low_end)
		return too_small(k->end, err, errlen);
	dst = gmem_translate(gm, KERNEL_LOAD_ADDR, bz.kernel_size);
	if (!dst)
		return too_small(k->end, err, errlen);
	ret = file_copy(&p->kernel, dst, bz.kernel_offset, bz.kernel_size);
	if (ret)
		return kernel_read_err(ret, err, errlen);
	k->hdr = bz.hdr;
	k->entry = KERNEL_LOAD_ADDR + ENTRY_64_OFFSET;
	return 0;
}

/*
 * An ELF vmlinux: its segments at their physical addresses, entered at its
 * 64-bit entry. No setup header comes with it: make the one the kernel reads.
 */
static int load_vmlinux(const struct gmem *gm, const struct x86_boot_params *p, size_t cmdline_len,
			uint64_t low_end, struct loaded_kernel *k, char *err, size_t errlen)
{
	struct vmlinux vm;
	const char *why;
	int ret;

	if (vmlinux_parse(p->kernel.head, p->kernel.head_len, p->kernel.size, &vm, &why))
		return boot_err(-ENOEXEC, err, errlen, "%s", why);
	if (cmdline_len > VMLINUX_CMDLINE_MAX)
		return boot_err(-EINVAL, err, errlen,
				"command line is %zu bytes; a kernel accepts at most %u",
				cmdline_len, VMLINUX_CMDLINE_MAX);
	k->start = vm.start;
	k->end = vm.end;
	if (k->end > low_end)
		return too_small(k->end, err, errlen);
	for (unsigned i = 0; i < vm.nr_segments; i++) {
		const struct vmlinux_segment *seg = &vm.segments[i];
		uint8_t *dst = gmem_translate(gm, seg->paddr, seg->memsz);

		if (!dst)
			return too_small(k->end, err, errlen);
		ret = file_copy(&p->kernel, dst, seg->offset, seg->filesz);
		if (ret)
			return kernel_read_err(ret, err, errlen);
		memset(dst + seg->filesz, 0, seg->memsz - seg->filesz);
	}
	memset(&k->hdr, 0, sizeof(k->hdr));
	k->hdr.boot_flag = BOOT_FLAG_MAGIC;
	k->hdr.header = HDRS_MAGIC;
	k->hdr.version = MIN_BOOT_PROTOCOL;
	k->hdr.loadflags = LOADED_HIGH;
	k->hdr.kernel_alignment = VMLINUX_ALIGN;
	k->hdr.xloadflags = XLF_KERNEL_64;
	k->entry = vm.entry;
	return 0;
}

int x86_boot_load(const struct gmem *gm, const struct x86_boot_params *p,
		  struct x86_boot_layout *out, char *err, size_t errlen)
{
	struct boot_params *zp;
	struct loaded_kernel k = { 0 };
	uint64_t low_end, initrd_top, initrd_addr = 0, initrd_max;
	uint64_t initrd_len = p->initrd.size;
	size_t cmdline_len = strlen(p->cmdline);
	void *dst;
	int ret;

	memset(out, 0, sizeof(*out));
	if (cmdline_len >= X86_CMDLINE_MAX)
		return boot_err(-EINVAL, err, errlen, "command line is %zu bytes; too long", cmdline_len);
	low_end = gm->regions[0].size;
	if (is_elf(p->kernel.head, MIN((uint64_t)p->kernel.head_len, p->kernel.size)))
		ret = load_vmlinux(gm, p, cmdline_len, low_end, &k, err, errlen);
	else
		ret = load_bzimage(gm, p, cmdline_len, low_end, &k, err, errlen);
	if (ret)
		return ret;
	initrd_max = k.hdr.initrd_addr_max ? k.hdr.initrd_addr_max : 0x37ffffff;

	if (initrd_len) {
		/* As high as allowed, below initrd_addr_max and the end of low RAM, page aligned. */
		initrd_top = MIN(low_end, initrd_max + 1);
		if (initrd_len > initrd_top ||
		    ((initrd_top - initrd_len) & ~(uint64_t)4095) < ALIGN_UP(k.end, 4096))
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
	zp->hdr = k.hdr;
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

	out->entry = k.entry;
	out->zero_page = X86_ZERO_PAGE_ADDR;
	out->kernel_start = k.start;
	out->kernel_end = k.end;
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
