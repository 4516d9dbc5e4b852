#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "arch/x86_64/boot.h"
#include "arch/x86_64/layout.h"

#define FAKE_SETUP_SECTS 4
#define FAKE_KERNEL_SIZE (64 * 1024)

/* A minimal image with a valid setup header: enough for the loader, not for a CPU. */
static uint8_t *fake_bzimage(size_t *len)
{
	size_t n = (FAKE_SETUP_SECTS + 1) * 512 + FAKE_KERNEL_SIZE;
	uint8_t *img = calloc(1, n);
	struct setup_header *h = (struct setup_header *)(img + 0x1f1);

	h->setup_sects = FAKE_SETUP_SECTS;
	h->boot_flag = 0xaa55;
	h->header = 0x53726448;
	h->version = 0x020f;
	h->loadflags = LOADED_HIGH;
	h->xloadflags = XLF_KERNEL_64;
	h->initrd_addr_max = 0x7fffffff;
	h->cmdline_size = 2048;
	h->init_size = 4 * 1024 * 1024;
	h->syssize = FAKE_KERNEL_SIZE / 16;
	memset(img + (FAKE_SETUP_SECTS + 1) * 512, 0xcc, FAKE_KERNEL_SIZE);
	*len = n;
	return img;
}

/* A file held whole in memory. */
static struct x86_boot_file mem_file(const uint8_t *data, size_t len)
{
	return (struct x86_boot_file){ .head = data, .head_len = len, .size = len, .fd = -1 };
}

static struct setup_header *hdr_of(uint8_t *img)
{
	return (struct setup_header *)(img + 0x1f1);
}

static void expect_rejected(uint8_t *img, size_t len, const char *needle)
{
	struct bzimage bz;
	const char *why = NULL;

	assert_int_equal(bzimage_parse(img, len, len, &bz, &why), -ENOEXEC);
	assert_non_null(why);
	if (!strstr(why, needle))
		fail_msg("'%s' does not mention '%s'", why, needle);
}

static void test_parse_valid(void **state)
{
	struct bzimage bz;
	const char *why;
	size_t len;
	uint8_t *img = fake_bzimage(&len);

	(void)state;
	assert_int_equal(bzimage_parse(img, len, len, &bz, &why), 0);
	assert_int_equal(bz.kernel_offset, (FAKE_SETUP_SECTS + 1) * 512);
	assert_int_equal(bz.kernel_size, FAKE_KERNEL_SIZE);
	assert_int_equal(bz.version, 0x020f);
	assert_int_equal(bz.cmdline_size, 2048);
	free(img);
}

static void test_parse_rejects_bad_images(void **state)
{
	size_t len;
	uint8_t *img = fake_bzimage(&len);

	(void)state;
	expect_rejected(img, 100, "too short");
	hdr_of(img)->header = 0x464c457f; /* an ELF file has no HdrS */
	expect_rejected(img, len, "not a bzImage");
	hdr_of(img)->header = 0x53726448;
	hdr_of(img)->version = 0x0206;
	expect_rejected(img, len, "older than 2.12");
	hdr_of(img)->version = 0x020f;
	hdr_of(img)->xloadflags = 0;
	expect_rejected(img, len, "64-bit");
	hdr_of(img)->xloadflags = XLF_KERNEL_64;
	expect_rejected(img, len - 4096, "truncated"); /* cut short: shorter than syssize */
	expect_rejected(img, (FAKE_SETUP_SECTS + 1) * 512, "truncated");
	free(img);
}

static void test_e820_small_guest(void **state)
{
	struct boot_e820_entry t[16];
	struct gmem gm;
	unsigned n;

	(void)state;
	assert_int_equal(gmem_create(&gm, 512 * MiB, X86_MEM_HOLE_START, X86_MEM_HOLE_END), 0);
	n = x86_e820_build(&gm, t, 16);
	assert_int_equal(n, 4);
	assert_int_equal(t[0].addr, 0);
	assert_int_equal(t[0].size, X86_EBDA_START);
	assert_int_equal(t[0].type, 1);
	assert_int_equal(t[1].addr, X86_EBDA_START);
	assert_int_equal(t[1].type, 2);
	assert_int_equal(t[2].addr, X86_HIMEM_START);
	assert_int_equal(t[2].addr + t[2].size, 512 * MiB);
	assert_int_equal(t[2].type, 1);
	assert_int_equal(t[3].addr, X86_PCI_ECAM_BASE);
	assert_int_equal(t[3].type, 2);
	gmem_destroy(&gm);
}

static void test_e820_large_guest_skips_the_hole(void **state)
{
	struct boot_e820_entry t[16];
	struct gmem gm;
	uint64_t ram = 0;
	unsigned n;

	(void)state;
	assert_int_equal(gmem_create(&gm, 5 * GiB, X86_MEM_HOLE_START, X86_MEM_HOLE_END), 0);
	n = x86_e820_build(&gm, t, 16);
	assert_int_equal(n, 5);
	for (unsigned i = 0; i < n; i++) {
		if (t[i].type == 1)
			ram += t[i].size;
		/* No RAM inside the 32-bit hole. */
		if (t[i].type == 1)
			assert_true(t[i].addr + t[i].size <= X86_MEM_HOLE_START ||
				    t[i].addr >= X86_MEM_HOLE_END);
	}
	assert_int_equal(t[2].addr + t[2].size, X86_MEM_HOLE_START);
	assert_int_equal(t[4].addr, X86_MEM_HOLE_END);
	assert_int_equal(t[4].size, 2 * GiB);
	/* Everything but the 384 KiB of firmware area is RAM. */
	assert_int_equal(ram, 5 * GiB - (X86_HIMEM_START - X86_EBDA_START));
	gmem_destroy(&gm);
}

static void test_load_places_everything(void **state)
{
	static uint8_t initrd[3 * 4096 + 5];
	struct x86_boot_layout lay;
	struct boot_params *zp;
	struct gmem gm;
	char err[256];
	size_t len;
	uint8_t *img = fake_bzimage(&len);
	struct x86_boot_params p = {
		.kernel = mem_file(img, len), .initrd = mem_file(initrd, sizeof(initrd)),
		.cmdline = "console=ttyS0 quiet", .rsdp_gpa = X86_ACPI_ADDR,
	};

	(void)state;
	memset(initrd, 0x5a, sizeof(initrd));
	assert_int_equal(gmem_create(&gm, 256 * MiB, X86_MEM_HOLE_START, X86_MEM_HOLE_END), 0);
	assert_int_equal(x86_boot_load(&gm, &p, &lay, err, sizeof(err)), 0);
	assert_int_equal(lay.entry, X86_HIMEM_START + 0x200);
	assert_int_equal(lay.zero_page, X86_ZERO_PAGE_ADDR);

	/* Kernel bytes at 1 MiB. */
	assert_int_equal(*(uint8_t *)gmem_translate(&gm, X86_HIMEM_START, 1), 0xcc);
	/* Initramfs page aligned, at the top of RAM, above the kernel, with its bytes. */
	assert_true(IS_ALIGNED(lay.initrd_start, 4096));
	assert_true(lay.initrd_start >= lay.kernel_end);
	assert_true(lay.initrd_end <= 256 * MiB);
	assert_memory_equal(gmem_translate(&gm, lay.initrd_start, sizeof(initrd)), initrd, sizeof(initrd));

	zp = gmem_translate(&gm, X86_ZERO_PAGE_ADDR, sizeof(*zp));
	assert_int_equal(zp->hdr.ramdisk_image, lay.initrd_start);
	assert_int_equal(zp->hdr.ramdisk_size, sizeof(initrd));
	assert_int_equal(zp->hdr.cmd_line_ptr, X86_CMDLINE_ADDR);
	assert_string_equal(gmem_translate(&gm, X86_CMDLINE_ADDR, 20), "console=ttyS0 quiet");
	assert_int_equal(zp->hdr.type_of_loader, 0xff);
	assert_int_equal(zp->acpi_rsdp_addr, X86_ACPI_ADDR);
	assert_int_equal(zp->e820_entries, 4);
	gmem_destroy(&gm);
	free(img);
}

static void test_load_initrd_respects_addr_max(void **state)
{
	static uint8_t initrd[8192];
	struct x86_boot_layout lay;
	struct gmem gm;
	char err[256];
	size_t len;
	uint8_t *img = fake_bzimage(&len);
	struct x86_boot_params p = {
		.kernel = mem_file(img, len), .initrd = mem_file(initrd, sizeof(initrd)),
		.cmdline = "",
	};

	(void)state;
	hdr_of(img)->initrd_addr_max = 64 * MiB - 1;
	assert_int_equal(gmem_create(&gm, 256 * MiB, X86_MEM_HOLE_START, X86_MEM_HOLE_END), 0);
	assert_int_equal(x86_boot_load(&gm, &p, &lay, err, sizeof(err)), 0);
	assert_true(lay.initrd_end <= 64 * MiB);
	gmem_destroy(&gm);
	free(img);
}

static void test_load_errors(void **state)
{
	static uint8_t big_initrd[40 * 1024 * 1024];
	struct x86_boot_layout lay;
	struct gmem gm;
	char err[256], longline[4096];
	size_t len;
	uint8_t *img = fake_bzimage(&len);
	struct x86_boot_params p = { .kernel = mem_file(img, len), .cmdline = "" };

	(void)state;
	/* 16 MiB of RAM: the kernel fits, a 40 MiB initramfs does not. */
	assert_int_equal(gmem_create(&gm, 16 * MiB, X86_MEM_HOLE_START, X86_MEM_HOLE_END), 0);
	p.initrd = mem_file(big_initrd, sizeof(big_initrd));
	assert_int_not_equal(x86_boot_load(&gm, &p, &lay, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "memory too small"));
	assert_non_null(strstr(err, "--memory"));

	/* A command line longer than the kernel takes. */
	p.initrd = mem_file(NULL, 0);
	memset(longline, 'a', sizeof(longline) - 1);
	longline[sizeof(longline) - 1] = 0;
	p.cmdline = longline;
	assert_int_not_equal(x86_boot_load(&gm, &p, &lay, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "command line"));

	/* A kernel whose init_size exceeds RAM. */
	p.cmdline = "";
	hdr_of(img)->init_size = 64 * MiB;
	assert_int_equal(x86_boot_load(&gm, &p, &lay, err, sizeof(err)), -ENOMEM);
	assert_non_null(strstr(err, "memory too small"));
	gmem_destroy(&gm);
	free(img);
}

/* A memfd holding len bytes of data, for the loader's read-from-fd path. */
static int data_fd(const uint8_t *data, size_t len)
{
	int fd = memfd_create("test-boot", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	return fd;
}

/* As vmm does: the header in memory, kernel and initramfs read from their files into the guest. */
static void test_load_reads_files_into_guest(void **state)
{
	static uint8_t initrd[3 * 4096 + 5];
	struct x86_boot_layout lay;
	struct gmem gm;
	char err[256];
	size_t len;
	uint8_t *img = fake_bzimage(&len);
	int kfd, ifd;
	struct x86_boot_params p = { .cmdline = "" };

	(void)state;
	for (size_t i = 0; i < sizeof(initrd); i++)
		initrd[i] = (uint8_t)(i * 7);
	/* The last kernel byte differs, so a copy from the wrong offset shows. */
	img[len - 1] = 0x5b;
	kfd = data_fd(img, len);
	ifd = data_fd(initrd, sizeof(initrd));
	p.kernel = (struct x86_boot_file){ .head = img, .head_len = 1024, .size = len, .fd = kfd };
	p.initrd = (struct x86_boot_file){ .head = NULL, .size = sizeof(initrd), .fd = ifd };
	assert_int_equal(gmem_create(&gm, 256 * MiB, X86_MEM_HOLE_START, X86_MEM_HOLE_END), 0);
	assert_int_equal(x86_boot_load(&gm, &p, &lay, err, sizeof(err)), 0);
	assert_memory_equal(gmem_translate(&gm, X86_HIMEM_START, FAKE_KERNEL_SIZE),
			    img + (FAKE_SETUP_SECTS + 1) * 512, FAKE_KERNEL_SIZE);
	assert_memory_equal(gmem_translate(&gm, lay.initrd_start, sizeof(initrd)), initrd, sizeof(initrd));

	/* Files that shrank after they were opened: a clear error, not a guest with holes. */
	assert_int_equal(ftruncate(ifd, 4096), 0);
	assert_int_equal(x86_boot_load(&gm, &p, &lay, err, sizeof(err)), -EIO);
	if (!strstr(err, "--initramfs") || !strstr(err, "ended early"))
		fail_msg("unexpected error: %s", err);
	assert_int_equal(ftruncate(kfd, 2048), 0);
	assert_int_equal(x86_boot_load(&gm, &p, &lay, err, sizeof(err)), -EIO);
	if (!strstr(err, "--kernel") || !strstr(err, "ended early"))
		fail_msg("unexpected error: %s", err);
	/* A closed fd. */
	close(kfd);
	p.kernel.fd = -1;
	assert_int_not_equal(x86_boot_load(&gm, &p, &lay, err, sizeof(err)), 0);
	close(ifd);
	gmem_destroy(&gm);
	free(img);
}

/* The header check needs only the head of the file; the size says where the kernel ends. */
static void test_parse_from_head(void **state)
{
	struct bzimage bz;
	const char *why = NULL;
	size_t len;
	uint8_t *img = fake_bzimage(&len);

	(void)state;
	assert_int_equal(bzimage_parse(img, 1024, len, &bz, &why), 0);
	assert_int_equal(bz.kernel_size, FAKE_KERNEL_SIZE);
	/* A head too short to hold the setup header is refused, whatever the size. */
	assert_int_equal(bzimage_parse(img, 0x200, len, &bz, &why), -ENOEXEC);
	assert_non_null(strstr(why, "too short"));
	free(img);
}

/*
 * A minimal x86_64 vmlinux: text at 16 MiB (0xcc, holding the entry), data
 * with a BSS tail at 20 MiB (0xdd, then zeroes), and a note that is not loaded.
 */
#define ELF_TEXT_OFF  0x1000
#define ELF_TEXT_SIZE 0x3000
#define ELF_DATA_OFF  0x4000
#define ELF_DATA_SIZE 0x1000
#define ELF_BSS_SIZE  0x2000
#define ELF_FILE_SIZE 0x5000

static uint8_t *fake_vmlinux(size_t *len)
{
	uint8_t *img = calloc(1, ELF_FILE_SIZE);
	Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
	Elf64_Phdr *ph = (Elf64_Phdr *)(img + sizeof(*eh));

	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = 16 * MiB + 0x10;
	eh->e_phoff = sizeof(*eh);
	eh->e_ehsize = sizeof(*eh);
	eh->e_phentsize = sizeof(*ph);
	eh->e_phnum = 3;
	ph[0] = (Elf64_Phdr){ .p_type = PT_LOAD, .p_offset = ELF_TEXT_OFF, .p_vaddr = 0xffffffff81000000,
			      .p_paddr = 16 * MiB, .p_filesz = ELF_TEXT_SIZE, .p_memsz = ELF_TEXT_SIZE };
	ph[1] = (Elf64_Phdr){ .p_type = PT_NOTE, .p_offset = ELF_TEXT_OFF, .p_paddr = 0,
			      .p_filesz = 0x10, .p_memsz = 0x10 };
	ph[2] = (Elf64_Phdr){ .p_type = PT_LOAD, .p_offset = ELF_DATA_OFF, .p_vaddr = 0,
			      .p_paddr = 20 * MiB, .p_filesz = ELF_DATA_SIZE,
			      .p_memsz = ELF_DATA_SIZE + ELF_BSS_SIZE };
	memset(img + ELF_TEXT_OFF, 0xcc, ELF_TEXT_SIZE);
	memset(img + ELF_DATA_OFF, 0xdd, ELF_DATA_SIZE);
	*len = ELF_FILE_SIZE;
	return img;
}

static Elf64_Phdr *phdr_of(uint8_t *img, unsigned i)
{
	return (Elf64_Phdr *)(img + sizeof(Elf64_Ehdr)) + i;
}

static void test_vmlinux_loads_segments(void **state)
{
	static uint8_t initrd[4096];
	struct x86_boot_layout lay;
	struct boot_params *zp;
	struct gmem gm;
	char err[256];
	size_t len;
	uint8_t *img = fake_vmlinux(&len), *bss;
	struct x86_boot_params p = {
		.kernel = mem_file(img, len), .initrd = mem_file(initrd, sizeof(initrd)),
		.cmdline = "console=ttyS0", .rsdp_gpa = X86_ACPI_ADDR,
	};
	const char *why = NULL;

	(void)state;
	memset(initrd, 0x5a, sizeof(initrd));
	assert_int_equal(x86_kernel_check(img, len, len, &why), 0);
	assert_int_equal(gmem_create(&gm, 256 * MiB, X86_MEM_HOLE_START, X86_MEM_HOLE_END), 0);
	/* The BSS must be zeroed by the loader, whatever memory held before. */
	bss = gmem_translate(&gm, 20 * MiB + ELF_DATA_SIZE, ELF_BSS_SIZE);
	memset(bss, 0xee, ELF_BSS_SIZE);
	assert_int_equal(x86_boot_load(&gm, &p, &lay, err, sizeof(err)), 0);
	assert_int_equal(lay.entry, 16 * MiB + 0x10);
	assert_int_equal(lay.kernel_start, 16 * MiB);
	assert_int_equal(lay.kernel_end, 20 * MiB + ELF_DATA_SIZE + ELF_BSS_SIZE);
	assert_int_equal(*(uint8_t *)gmem_translate(&gm, 16 * MiB, 1), 0xcc);
	assert_int_equal(*(uint8_t *)gmem_translate(&gm, 16 * MiB + ELF_TEXT_SIZE - 1, 1), 0xcc);
	assert_int_equal(*(uint8_t *)gmem_translate(&gm, 20 * MiB, 1), 0xdd);
	for (size_t i = 0; i < ELF_BSS_SIZE; i++)
		assert_int_equal(bss[i], 0);
	/* Nothing at 1 MiB: only the segments are loaded. */
	assert_int_equal(*(uint8_t *)gmem_translate(&gm, X86_HIMEM_START, 1), 0);
	assert_true(lay.initrd_start >= lay.kernel_end);

	/* The zero page we make, since an ELF file brings none. */
	zp = gmem_translate(&gm, X86_ZERO_PAGE_ADDR, sizeof(*zp));
	assert_int_equal(zp->hdr.boot_flag, 0xaa55);
	assert_int_equal(zp->hdr.header, 0x53726448);
	assert_true(zp->hdr.loadflags & LOADED_HIGH);
	assert_int_equal(zp->hdr.type_of_loader, 0xff);
	assert_int_equal(zp->hdr.cmd_line_ptr, X86_CMDLINE_ADDR);
	assert_int_equal(zp->hdr.cmdline_size, strlen("console=ttyS0"));
	assert_int_equal(zp->hdr.ramdisk_image, lay.initrd_start);
	assert_int_equal(zp->hdr.ramdisk_size, sizeof(initrd));
	assert_int_equal(zp->acpi_rsdp_addr, X86_ACPI_ADDR);
	assert_int_equal(zp->e820_entries, 4);
	gmem_destroy(&gm);
	free(img);
}

/* One corruption of a good vmlinux, and the words its rejection must contain. */
static void expect_vmlinux_rejected(void (*corrupt)(uint8_t *img, size_t *len), const char *needle)
{
	struct vmlinux vm;
	const char *why = NULL;
	size_t len;
	uint8_t *img = fake_vmlinux(&len);

	corrupt(img, &len);
	assert_int_equal(vmlinux_parse(img, len, len, &vm, &why), -ENOEXEC);
	assert_non_null(why);
	if (!strstr(why, needle))
		fail_msg("'%s' does not mention '%s'", why, needle);
	why = NULL;
	assert_int_equal(x86_kernel_check(img, len, len, &why), -ENOEXEC);
	assert_non_null(why);
	free(img);
}

static void elf32(uint8_t *img, size_t *len) { (void)len; img[EI_CLASS] = ELFCLASS32; }
static void big_endian(uint8_t *img, size_t *len) { (void)len; img[EI_DATA] = ELFDATA2MSB; }
static void arm64(uint8_t *img, size_t *len) { (void)len; ((Elf64_Ehdr *)img)->e_machine = EM_AARCH64; }
static void relocatable(uint8_t *img, size_t *len) { (void)len; ((Elf64_Ehdr *)img)->e_type = ET_REL; }
static void cut_in_header(uint8_t *img, size_t *len) { (void)img; *len = 40; }
static void no_phdrs(uint8_t *img, size_t *len) { (void)len; ((Elf64_Ehdr *)img)->e_phnum = 0; }
static void phdrs_past_end(uint8_t *img, size_t *len) { (void)len; ((Elf64_Ehdr *)img)->e_phoff = ELF_FILE_SIZE - 8; }
static void phoff_huge(uint8_t *img, size_t *len) { (void)len; ((Elf64_Ehdr *)img)->e_phoff = UINT64_MAX - 16; }
static void phnum_huge(uint8_t *img, size_t *len) { (void)len; ((Elf64_Ehdr *)img)->e_phnum = 0xffff; }
static void bad_phentsize(uint8_t *img, size_t *len) { (void)len; ((Elf64_Ehdr *)img)->e_phentsize = 32; }
static void truncated(uint8_t *img, size_t *len) { (void)img; *len = ELF_DATA_OFF + 16; }
static void offset_wraps(uint8_t *img, size_t *len) { (void)len; phdr_of(img, 2)->p_offset = UINT64_MAX - 8; }
static void filesz_over_memsz(uint8_t *img, size_t *len) { (void)len; phdr_of(img, 2)->p_memsz = 16; }
static void below_1mib(uint8_t *img, size_t *len) { (void)len; phdr_of(img, 2)->p_paddr = 0x7000; }
static void into_the_hole(uint8_t *img, size_t *len) { (void)len; phdr_of(img, 2)->p_paddr = X86_MEM_HOLE_START - 4096; }
static void paddr_wraps(uint8_t *img, size_t *len)
{
	(void)len;
	phdr_of(img, 2)->p_paddr = UINT64_MAX - 4096;
}
static void overlapping(uint8_t *img, size_t *len) { (void)len; phdr_of(img, 2)->p_paddr = 16 * MiB + 4096; }
static void entry_outside(uint8_t *img, size_t *len) { (void)len; ((Elf64_Ehdr *)img)->e_entry = 0xffffffff81000000; }
static void entry_in_bss(uint8_t *img, size_t *len)
{
	(void)len;
	((Elf64_Ehdr *)img)->e_entry = 20 * MiB + ELF_DATA_SIZE + 16;
}
static void nothing_loaded(uint8_t *img, size_t *len)
{
	(void)len;
	phdr_of(img, 0)->p_type = PT_NOTE;
	phdr_of(img, 2)->p_type = PT_NOTE;
}
static void too_many(uint8_t *img, size_t *len)
{
	Elf64_Ehdr *eh = (Elf64_Ehdr *)img;

	(void)len;
	/* 17 tiny segments at distinct addresses, all in the first KiBs of the file. */
	eh->e_phnum = 17;
	for (unsigned i = 0; i < 17; i++)
		*phdr_of(img, i) = (Elf64_Phdr){ .p_type = PT_LOAD, .p_offset = ELF_TEXT_OFF,
						 .p_paddr = 16 * MiB + i * 4096, .p_filesz = 16, .p_memsz = 16 };
}

static void test_vmlinux_rejects_bad_files(void **state)
{
	(void)state;
	expect_vmlinux_rejected(elf32, "not an x86_64 kernel");
	expect_vmlinux_rejected(big_endian, "not an x86_64 kernel");
	expect_vmlinux_rejected(arm64, "not an x86_64 kernel");
	expect_vmlinux_rejected(relocatable, "not a vmlinux");
	expect_vmlinux_rejected(cut_in_header, "not an ELF file");
	expect_vmlinux_rejected(no_phdrs, "program headers");
	expect_vmlinux_rejected(phdrs_past_end, "program headers");
	expect_vmlinux_rejected(phoff_huge, "program headers");
	expect_vmlinux_rejected(phnum_huge, "program headers");
	expect_vmlinux_rejected(bad_phentsize, "program headers");
	expect_vmlinux_rejected(truncated, "beyond the end of the file");
	expect_vmlinux_rejected(offset_wraps, "beyond the end of the file");
	expect_vmlinux_rejected(filesz_over_memsz, "beyond the end of the file");
	expect_vmlinux_rejected(below_1mib, "between 1 MiB and 3 GiB");
	expect_vmlinux_rejected(into_the_hole, "between 1 MiB and 3 GiB");
	expect_vmlinux_rejected(paddr_wraps, "between 1 MiB and 3 GiB");
	expect_vmlinux_rejected(overlapping, "overlap");
	expect_vmlinux_rejected(entry_outside, "entry point");
	expect_vmlinux_rejected(entry_in_bss, "entry point");
	expect_vmlinux_rejected(nothing_loaded, "nothing to load");
	expect_vmlinux_rejected(too_many, "more than 16");
}

static void test_vmlinux_load_errors(void **state)
{
	struct x86_boot_layout lay;
	struct gmem gm;
	char err[256], long_cmdline[2100];
	size_t len;
	uint8_t *img = fake_vmlinux(&len);
	struct x86_boot_params p = { .kernel = mem_file(img, len), .cmdline = "" };

	(void)state;
	/* 16 MiB of RAM cannot hold a kernel that loads at 16 MiB. */
	assert_int_equal(gmem_create(&gm, 16 * MiB, X86_MEM_HOLE_START, X86_MEM_HOLE_END), 0);
	assert_int_equal(x86_boot_load(&gm, &p, &lay, err, sizeof(err)), -ENOMEM);
	assert_non_null(strstr(err, "give --memory more"));
	gmem_destroy(&gm);

	assert_int_equal(gmem_create(&gm, 64 * MiB, X86_MEM_HOLE_START, X86_MEM_HOLE_END), 0);
	memset(long_cmdline, 'a', sizeof(long_cmdline) - 1);
	long_cmdline[sizeof(long_cmdline) - 1] = 0;
	p.cmdline = long_cmdline;
	assert_int_equal(x86_boot_load(&gm, &p, &lay, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "at most 2047"));

	/* A file that shrank after its headers were read: a read error, not garbage. */
	p.cmdline = "";
	p.kernel = (struct x86_boot_file){ .head = img, .head_len = 4096, .size = len, .fd = -1 };
	assert_int_equal(x86_boot_load(&gm, &p, &lay, err, sizeof(err)), -EIO);
	assert_non_null(strstr(err, "--kernel: reading failed"));
	gmem_destroy(&gm);
	free(img);
}

static void test_page_tables_identity_map_4g(void **state)
{
	struct gmem gm;
	uint64_t *pml4, *pdpt, *pd;

	(void)state;
	assert_int_equal(gmem_create(&gm, 64 * MiB, X86_MEM_HOLE_START, X86_MEM_HOLE_END), 0);
	assert_int_equal(x86_boot_build_page_tables(&gm), 0);
	pml4 = gmem_translate(&gm, X86_PML4_ADDR, 4096);
	pdpt = gmem_translate(&gm, X86_PDPT_ADDR, 4096);
	pd = gmem_translate(&gm, X86_PD_ADDR, 4 * 4096);
	assert_int_equal(pml4[0] & ~0xfffULL, X86_PDPT_ADDR);
	assert_int_equal(pml4[0] & 3, 3);
	assert_int_equal(pml4[1], 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(pdpt[i] & ~0xfffULL, X86_PD_ADDR + i * 4096);
	assert_int_equal(pdpt[4], 0);
	/* Walk a few addresses through the tables: virtual == physical. */
	for (uint64_t va = 0; va < 4 * GiB; va += 511 * MiB + 4096) {
		uint64_t pde = pd[va >> 21];

		assert_true(pde & 0x80); /* 2 MiB page */
		assert_int_equal((pde & ~0x1fffffULL) | (va & 0x1fffff), va);
	}
	gmem_destroy(&gm);
}

static void test_gdt_entries(void **state)
{
	struct gmem gm;
	uint64_t *gdt;

	(void)state;
	assert_int_equal(gmem_create(&gm, 64 * MiB, X86_MEM_HOLE_START, X86_MEM_HOLE_END), 0);
	assert_int_equal(x86_boot_build_gdt(&gm), 0);
	gdt = gmem_translate(&gm, X86_GDT_ADDR, 32);
	assert_int_equal(gdt[0], 0);
	assert_int_equal(gdt[1], 0x00af9b000000ffffULL); /* 64-bit code: L=1, D=0, G=1 */
	assert_int_equal(gdt[2], 0x00cf93000000ffffULL); /* flat data */
	assert_int_equal(gdt[3], 0x008f8b000000ffffULL); /* busy TSS */
	gmem_destroy(&gm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_valid),
		cmocka_unit_test(test_parse_rejects_bad_images),
		cmocka_unit_test(test_e820_small_guest),
		cmocka_unit_test(test_e820_large_guest_skips_the_hole),
		cmocka_unit_test(test_load_places_everything),
		cmocka_unit_test(test_load_initrd_respects_addr_max),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_load_reads_files_into_guest),
		cmocka_unit_test(test_parse_from_head),
		cmocka_unit_test(test_vmlinux_loads_segments),
		cmocka_unit_test(test_vmlinux_rejects_bad_files),
		cmocka_unit_test(test_vmlinux_load_errors),
		cmocka_unit_test(test_page_tables_identity_map_4g),
		cmocka_unit_test(test_gdt_entries),
	};
	return cmocka_run_group_tests_name("boot", tests, NULL, NULL);
}
