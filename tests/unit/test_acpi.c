/*
 * Unit tests for the ACPI tables: parsed back independently of the builder
 * (offsets from ACPI 6.4 chapter 5), compared with golden files, and
 * cross-checked with the ACPICA disassembler/compiler (iasl) when installed.
 *
 * UPDATE_GOLDEN=1 rewrites the golden files in tests/unit/golden/.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "arch/x86_64/acpi.h"
#include "arch/x86_64/layout.h"

#define GPA X86_ACPI_ADDR
#define LEN ((size_t)X86_ACPI_MAX)
#define GOLDEN_DIR "tests/unit/golden/"

/* The fixed configuration of the golden files: 4 vCPUs, a 64 GiB window at 16 GiB. */
static const struct x86_platform golden_platform = {
	.ncpus = 4, .mmio64_base = 4 * 0x100000000ULL, .mmio64_size = 0x1000000000ULL,
};

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static uint8_t sum8(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s += *p++;
	return s;
}

struct tables {
	uint8_t *buf;
	uint64_t gpa;
	size_t len;
	size_t end;                    /* offset just past the last table */
	const uint8_t *rsdp, *xsdt, *fadt, *facs, *dsdt, *madt, *mcfg;
};

/* Guest address -> pointer into the buffer, asserting that [addr, addr+n) lies inside it. */
static const uint8_t *at(struct tables *t, uint64_t addr, size_t n)
{
	assert_true(addr >= t->gpa);
	assert_true(addr - t->gpa <= t->len && n <= t->len - (addr - t->gpa));
	if (addr - t->gpa + n > t->end)
		t->end = addr - t->gpa + n;
	return t->buf + (addr - t->gpa);
}

/* A table with a standard header: signature, sane length, checksum, OEM id. */
static const uint8_t *sdt_at(struct tables *t, uint64_t addr, const char *sig)
{
	const uint8_t *h = at(t, addr, 36);
	uint32_t len = rd32(h + 4);

	assert_memory_equal(h, sig, 4);
	assert_true(len >= 36);
	h = at(t, addr, len);
	assert_int_equal(sum8(h, len), 0);
	assert_memory_equal(h + 10, "VMMVMM", 6);
	assert_memory_equal(h + 16, "VMMACPI ", 8);
	return h;
}

/* Walk RSDP -> XSDT -> tables and FADT -> FACS, DSDT as an OS would. */
static void parse(struct tables *t)
{
	const uint8_t *r = at(t, t->gpa, 36);

	assert_memory_equal(r, "RSD PTR ", 8);
	assert_int_equal(sum8(r, 20), 0);
	assert_int_equal(r[15], 2);           /* revision */
	assert_int_equal(rd32(r + 20), 36);   /* length */
	assert_int_equal(sum8(r, 36), 0);     /* extended checksum */
	assert_memory_equal(r + 9, "VMMVMM", 6);
	t->rsdp = r;

	t->xsdt = sdt_at(t, rd64(r + 24), "XSDT");
	assert_int_equal(t->xsdt[8], 1);
	uint32_t n = (rd32(t->xsdt + 4) - 36) / 8;

	assert_int_equal(rd32(t->xsdt + 4), 36 + 8 * n);
	assert_int_equal(n, 3);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t addr = rd64(t->xsdt + 36 + 8 * i);
		const uint8_t *h = at(t, addr, 4);

		if (!memcmp(h, "FACP", 4)) {
			assert_null(t->fadt);
			t->fadt = sdt_at(t, addr, "FACP");
		} else if (!memcmp(h, "APIC", 4)) {
			assert_null(t->madt);
			t->madt = sdt_at(t, addr, "APIC");
		} else if (!memcmp(h, "MCFG", 4)) {
			assert_null(t->mcfg);
			t->mcfg = sdt_at(t, addr, "MCFG");
		} else {
			fail_msg("unexpected table %.4s in the XSDT", (const char *)h);
		}
	}
	assert_non_null(t->fadt);
	assert_non_null(t->madt);
	assert_non_null(t->mcfg);

	t->dsdt = sdt_at(t, rd64(t->fadt + 140), "DSDT");
	t->facs = at(t, rd32(t->fadt + 36), 64);
	assert_memory_equal(t->facs, "FACS", 4);
	assert_int_equal(rd32(t->facs + 4), 64);
}

static void build_at(const struct x86_platform *p, uint64_t gpa, size_t len, struct tables *t)
{
	uint64_t rsdp = 0;

	memset(t, 0, sizeof(*t));
	t->buf = malloc(len);
	assert_non_null(t->buf);
	memset(t->buf, 0xaa, len);
	t->gpa = gpa;
	t->len = len;
	assert_int_equal(acpi_build(p, t->buf, len, gpa, &rsdp), 0);
	assert_int_equal(rsdp, gpa);
	parse(t);
}

static void build(const struct x86_platform *p, struct tables *t)
{
	build_at(p, GPA, LEN, t);
}

/* ---- tiny AML readers for checking the DSDT's content ------------------------------- */

static size_t pkglen_decode(const uint8_t *p, uint32_t *v)
{
	unsigned n = (p[0] >> 6) + 1;

	if (n == 1) {
		*v = p[0] & 0x3f;
		return 1;
	}
	*v = p[0] & 0x0f;
	for (unsigned i = 1; i < n; i++)
		*v |= (uint32_t)p[i] << (4 + 8 * (i - 1));
	return n;
}

static size_t int_decode(const uint8_t *p, uint64_t *v)
{
	unsigned n;

	switch (p[0]) {
	case 0x00: *v = 0; return 1;
	case 0x01: *v = 1; return 1;
	case 0x0a: n = 1; break;
	case 0x0b: n = 2; break;
	case 0x0c: n = 4; break;
	case 0x0e: n = 8; break;
	default: fail_msg("not an integer: opcode 0x%02x", p[0]); return 0;
	}
	*v = 0;
	for (unsigned i = 0; i < n; i++)
		*v |= (uint64_t)p[1 + i] << (8 * i);
	return 1 + n;
}

static const uint8_t *find(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
	const uint8_t *p = memmem(hay, n, needle, m);

	assert_non_null(p);
	return p;
}

/* Name (<seg>, Package () {...}): returns the first element, sets *count. */
static const uint8_t *named_package(const uint8_t *dsdt, const char name[5], unsigned *count)
{
	uint32_t len = rd32(dsdt + 4), pl;
	const uint8_t *p = find(dsdt + 36, len - 36, name, 4) + 4;

	/* NameOp, or NameOp '\' for a root name. */
	assert_true(p[-5] == 0x08 || (p[-5] == 0x5c && p[-6] == 0x08));
	assert_int_equal(p[0], 0x12);   /* PackageOp */
	p += 1 + pkglen_decode(p + 1, &pl);
	*count = *p++;
	return p;
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_rsdp_and_pointers(void **state)
{
	struct tables t;

	(void)state;
	build(&golden_platform, &t);
	/* RSDP at the start, 16-byte aligned, inside the legacy scan range. */
	assert_ptr_equal(t.rsdp, t.buf);
	assert_true(GPA % 16 == 0 && GPA >= 0xe0000 && GPA + 36 <= 0x100000);
	assert_int_equal(rd32(t.rsdp + 16), 0); /* no RSDT: XSDT only */
	/* FADT's 32-bit and 64-bit DSDT pointers agree; FACS only through FIRMWARE_CTRL. */
	assert_int_equal(rd32(t.fadt + 40), rd64(t.fadt + 140));
	assert_int_equal(rd64(t.fadt + 132), 0);
	assert_int_equal((t.gpa + (uint64_t)(t.facs - t.buf)) % 64, 0);
	free(t.buf);
}

/* The tables do not overlap, and everything after the last one is zero. */
static void test_layout_no_overlap(void **state)
{
	struct tables t;
	struct { const uint8_t *p; size_t n; } tabs[7];

	(void)state;
	build(&golden_platform, &t);
	tabs[0].p = t.rsdp, tabs[0].n = 36;
	tabs[1].p = t.facs, tabs[1].n = 64;
	tabs[2].p = t.xsdt, tabs[3].p = t.fadt, tabs[4].p = t.dsdt;
	tabs[5].p = t.madt, tabs[6].p = t.mcfg;
	for (int i = 2; i < 7; i++)
		tabs[i].n = rd32(tabs[i].p + 4);
	for (int i = 0; i < 7; i++)
		for (int j = i + 1; j < 7; j++)
			assert_true(tabs[i].p + tabs[i].n <= tabs[j].p ||
				    tabs[j].p + tabs[j].n <= tabs[i].p);
	for (size_t i = t.end; i < t.len; i++)
		assert_int_equal(t.buf[i], 0);
	free(t.buf);
}

static void test_checksums_all_sizes(void **state)
{
	static const unsigned ncpus[] = { 1, 2, 3, 4, 8, 64, 128, 253, 254 };

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(ncpus); i++) {
		struct x86_platform p = golden_platform;
		struct tables t;

		p.ncpus = ncpus[i];
		build(&p, &t); /* parse() checks every checksum and length */
		assert_int_equal(rd32(t.madt + 4), 44 + 8 * ncpus[i] + 12 + 2 * 10 + 6);
		free(t.buf);
	}
}

static void test_fadt_fields(void **state)
{
	const uint8_t *f;
	struct tables t;

	(void)state;
	build(&golden_platform, &t);
	f = t.fadt;
	assert_int_equal(rd32(f + 4), 276);
	assert_int_equal(f[8], 6);
	assert_int_equal(f[131], 3);                       /* minor version: 6.3 */
	assert_int_equal(rd16(f + 46), X86_ACPI_SCI_IRQ);  /* SCI_INT */
	assert_int_equal(rd32(f + 48), 0);                 /* SMI_CMD: always in ACPI mode */
	assert_int_equal(f[52], 0);
	assert_int_equal(f[53], 0);
	assert_int_equal(rd32(f + 56), X86_ACPI_PM1A_EVT);
	assert_int_equal(rd32(f + 60), 0);                 /* no PM1b */
	assert_int_equal(rd32(f + 64), X86_ACPI_PM1A_CNT);
	assert_int_equal(rd32(f + 68), 0);
	assert_int_equal(rd32(f + 72), 0);                 /* no PM2 */
	assert_int_equal(rd32(f + 76), 0);                 /* no PM timer */
	assert_int_equal(rd32(f + 80), 0);                 /* no GPE blocks */
	assert_int_equal(rd32(f + 84), 0);
	assert_int_equal(f[88], 4);                        /* PM1_EVT_LEN */
	assert_int_equal(f[89], 2);                        /* PM1_CNT_LEN */
	assert_int_equal(f[91], 0);                        /* PM_TMR_LEN */
	assert_int_equal(f[92], 0);
	assert_int_equal(f[93], 0);
	assert_int_equal(rd16(f + 109) & 3, 1);            /* LEGACY_DEVICES, no 8042 */

	uint32_t flags = rd32(f + 112);

	assert_true(flags & (1u << 0));                    /* WBINVD */
	assert_true(flags & (1u << 2));                    /* PROC_C1 */
	assert_false(flags & (1u << 4));                   /* the fixed-feature power button */
	assert_true(flags & (1u << 5));                    /* no fixed sleep button */
	assert_false(flags & (1u << 20));                  /* not HW_REDUCED_ACPI */
	assert_false(flags & (1u << 8));                   /* no PM timer, so no TMR_VAL_EXT */

	/* RESET_REG: the i8042 command port, value 0xfe. */
	assert_true(flags & (1u << 10));
	assert_int_equal(f[116], 1);
	assert_int_equal(f[117], 8);
	assert_int_equal(rd64(f + 120), X86_I8042_PORT_CMD);
	assert_int_equal(f[128], 0xfe);

	/* X_PM1a_EVT_BLK and X_PM1a_CNT_BLK: System I/O GAS matching the 32-bit fields. */
	assert_int_equal(f[148], 1);
	assert_int_equal(f[149], 32);
	assert_int_equal(f[150], 0);
	assert_int_equal(rd64(f + 152), X86_ACPI_PM1A_EVT);
	assert_int_equal(f[172], 1);
	assert_int_equal(f[173], 16);
	assert_int_equal(f[174], 0);
	assert_int_equal(rd64(f + 176), X86_ACPI_PM1A_CNT);
	/* PM1b, PM2, PM timer, GPE0/1, sleep control/status: all absent. */
	static const unsigned absent[] = { 160, 184, 196, 208, 220, 232, 244, 256 };
	static const uint8_t zero[12];

	for (size_t i = 0; i < ARRAY_SIZE(absent); i++)
		assert_memory_equal(f + absent[i], zero, 12);

	/* FACS: version 2, no global lock, no waking vector. */
	assert_int_equal(t.facs[32], 2);
	assert_int_equal(rd32(t.facs + 12), 0);
	assert_int_equal(rd32(t.facs + 16), 0);
	free(t.buf);
}

static void check_madt(unsigned ncpus)
{
	struct x86_platform p = golden_platform;
	unsigned nlapic = 0, nioapic = 0, nnmi = 0, niso = 0;
	uint8_t seen[256] = { 0 };
	struct tables t;

	p.ncpus = ncpus;
	build(&p, &t);
	const uint8_t *m = t.madt, *e = m + 44, *end = m + rd32(m + 4);

	assert_int_equal(m[8], 5);                        /* revision */
	assert_int_equal(rd32(m + 36), X86_LAPIC_BASE);
	assert_int_equal(rd32(m + 40), 1);                /* PCAT_COMPAT */
	while (e < end) {
		assert_true(e[1] >= 2 && e + e[1] <= end);
		switch (e[0]) {
		case 0: /* Processor Local APIC */
			assert_int_equal(e[1], 8);
			assert_int_equal(e[2], nlapic);       /* UID */
			assert_int_equal(e[3], nlapic);       /* APIC id of vCPU i is i */
			assert_int_equal(rd32(e + 4), 1);     /* enabled */
			seen[e[3]]++;
			nlapic++;
			break;
		case 1: /* I/O APIC */
			assert_int_equal(e[1], 12);
			assert_int_equal(e[2], ncpus);
			assert_int_equal(seen[e[2]], 0);      /* no clash with a LAPIC id */
			assert_int_equal(rd32(e + 4), X86_IOAPIC_BASE);
			assert_int_equal(rd32(e + 8), 0);     /* GSI base */
			nioapic++;
			break;
		case 2: /* Interrupt Source Override */
			assert_int_equal(e[1], 10);
			assert_int_equal(e[2], 0);            /* ISA */
			if (e[3] == 0) {
				assert_int_equal(rd32(e + 4), 2);
				assert_int_equal(rd16(e + 8), 0x5);  /* edge, active high */
			} else {
				assert_int_equal(e[3], X86_ACPI_SCI_IRQ);
				assert_int_equal(rd32(e + 4), X86_ACPI_SCI_IRQ);
				assert_int_equal(rd16(e + 8), 0xd);  /* level, active high */
			}
			niso++;
			break;
		case 4: /* Local APIC NMI */
			assert_int_equal(e[1], 6);
			assert_int_equal(e[2], 0xff);         /* all processors */
			assert_int_equal(e[5], 1);            /* LINT1 */
			nnmi++;
			break;
		default:
			fail_msg("unexpected MADT entry type %u", e[0]);
		}
		e += e[1];
	}
	assert_ptr_equal(e, end);
	assert_int_equal(nlapic, ncpus);
	assert_int_equal(nioapic, 1);
	assert_int_equal(niso, 2);
	assert_int_equal(nnmi, 1);
	free(t.buf);
}

static void test_madt(void **state)
{
	(void)state;
	check_madt(1);
	check_madt(2);
	check_madt(4);
	check_madt(254);
}

static void test_mcfg(void **state)
{
	struct tables t;

	(void)state;
	build(&golden_platform, &t);
	assert_int_equal(rd32(t.mcfg + 4), 60);             /* one allocation */
	assert_int_equal(t.mcfg[8], 1);
	assert_int_equal(rd64(t.mcfg + 44), X86_PCI_ECAM_BASE);
	assert_int_equal(rd16(t.mcfg + 52), 0);             /* segment */
	assert_int_equal(t.mcfg[54], 0);                    /* buses 0-0 */
	assert_int_equal(t.mcfg[55], 0);
	free(t.buf);
}

static void test_dsdt_s5_and_prt(void **state)
{
	const uint8_t *p;
	unsigned count;
	struct tables t;
	uint64_t v;

	(void)state;
	build(&golden_platform, &t);
	assert_int_equal(t.dsdt[8], 2); /* revision 2: 64-bit integers */

	/* \_S5 = { SLP_TYP, SLP_TYP, 0, 0 } at the root. */
	p = named_package(t.dsdt, "_S5_", &count);
	assert_int_equal(count, 4);
	for (int i = 0; i < 4; i++) {
		p += int_decode(p, &v);
		assert_int_equal(v, i < 2 ? X86_ACPI_S5_SLP_TYP : 0);
	}

	/* _PRT: 128 entries { slot << 16 | 0xffff, pin, 0, GSI 16 + (slot + pin) % 4 }. */
	p = named_package(t.dsdt, "_PRT", &count);
	assert_int_equal(count, 128);
	for (unsigned slot = 0; slot < 32; slot++) {
		for (unsigned pin = 0; pin < 4; pin++) {
			uint32_t pl;

			assert_int_equal(*p++, 0x12);
			p += pkglen_decode(p, &pl);
			assert_int_equal(*p++, 4);
			p += int_decode(p, &v);
			assert_int_equal(v, (uint64_t)slot << 16 | 0xffff);
			p += int_decode(p, &v);
			assert_int_equal(v, pin);
			p += int_decode(p, &v);
			assert_int_equal(v, 0);
			p += int_decode(p, &v);
			assert_int_equal(v, 16 + (slot + pin) % 4);
			assert_int_equal(v, x86_pci_intx_gsi(slot, pin));
		}
	}

	/* The ids the OS binds drivers by. */
	static const uint8_t pnp0a08[] = { 0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0a, 0x08 };
	static const uint8_t pnp0a03[] = { 0x08, '_', 'C', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0a, 0x03 };
	static const uint8_t pnp0501[] = { 0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x05, 0x01 };
	static const uint8_t pnp0c02[] = { 0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0c, 0x02 };
	size_t n = rd32(t.dsdt + 4);

	find(t.dsdt, n, pnp0a08, sizeof(pnp0a08));
	find(t.dsdt, n, pnp0a03, sizeof(pnp0a03));
	find(t.dsdt, n, pnp0501, sizeof(pnp0501));
	find(t.dsdt, n, pnp0c02, sizeof(pnp0c02));
	/* COM1's resources: IO 0x3f8 len 8 and IRQ 4. */
	static const uint8_t com1_crs[] = { 0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08,
					    0x22, 0x10, 0x00, 0x79, 0x00 };
	find(t.dsdt, n, com1_crs, sizeof(com1_crs));
	/* The motherboard device reserves ECAM, so Linux trusts the MCFG. */
	static const uint8_t ecam[] = { 0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xe0,
					0x00, 0x00, 0x10, 0x00 };
	find(t.dsdt, n, ecam, sizeof(ecam));
	free(t.buf);
}

/* The QWordMemory window appears only when there is a 64-bit window, with its bounds. */
static void test_dsdt_mmio64_window(void **state)
{
	static const uint8_t qword_hdr[] = { 0x8a, 0x2b, 0x00, 0x00 };
	struct x86_platform p = golden_platform;
	struct tables t;
	const uint8_t *q;

	(void)state;
	build(&p, &t);
	q = find(t.dsdt, rd32(t.dsdt + 4), qword_hdr, sizeof(qword_hdr));
	assert_int_equal(rd64(q + 14), p.mmio64_base);
	assert_int_equal(rd64(q + 22), p.mmio64_base + p.mmio64_size - 1);
	assert_int_equal(rd64(q + 38), p.mmio64_size);
	free(t.buf);

	p.mmio64_base = 0;
	p.mmio64_size = 0;
	build(&p, &t);
	assert_null(memmem(t.dsdt, rd32(t.dsdt + 4), qword_hdr, sizeof(qword_hdr)));
	free(t.buf);

	/* A window that ends exactly at the top of the 64-bit space. */
	p.mmio64_base = 0xfffffff000000000ULL;
	p.mmio64_size = 0x1000000000ULL;
	build(&p, &t);
	q = find(t.dsdt, rd32(t.dsdt + 4), qword_hdr, sizeof(qword_hdr));
	assert_int_equal(rd64(q + 22), UINT64_MAX);
	free(t.buf);
}

/* The tables work wherever the RSDP goes in the legacy range, with whatever room is left. */
static void test_other_placement(void **state)
{
	struct tables t;

	(void)state;
	build_at(&golden_platform, 0xf8010, 0x100000 - 0xf8010, &t);
	free(t.buf);
}

static void test_bad_arguments(void **state)
{
	struct x86_platform p = golden_platform;
	static uint8_t buf[0x10000];
	uint64_t rsdp = 0x1234;

	(void)state;
	assert_int_equal(acpi_build(NULL, buf, sizeof(buf), GPA, &rsdp), -EINVAL);
	assert_int_equal(acpi_build(&p, NULL, sizeof(buf), GPA, &rsdp), -EINVAL);
	assert_int_equal(acpi_build(&p, buf, sizeof(buf), GPA, NULL), -EINVAL);
	/* RSDP misaligned or outside 0xe0000-0xfffff. */
	assert_int_equal(acpi_build(&p, buf, sizeof(buf), GPA + 8, &rsdp), -EINVAL);
	assert_int_equal(acpi_build(&p, buf, sizeof(buf), 0x9fc00, &rsdp), -EINVAL);
	assert_int_equal(acpi_build(&p, buf, sizeof(buf), 0xdfff0, &rsdp), -EINVAL);
	assert_int_equal(acpi_build(&p, buf, 64, 0xffff0, &rsdp), -EINVAL);
	assert_int_equal(acpi_build(&p, buf, sizeof(buf), 0x100000, &rsdp), -EINVAL);
	/* Tables must stay below 4 GiB (32-bit pointers in the FADT). */
	assert_int_equal(acpi_build(&p, buf, (size_t)0x100000000ULL, GPA, &rsdp), -EINVAL);
	/* vCPU count: 1..254. */
	p.ncpus = 0;
	assert_int_equal(acpi_build(&p, buf, sizeof(buf), GPA, &rsdp), -EINVAL);
	p.ncpus = 255;
	assert_int_equal(acpi_build(&p, buf, sizeof(buf), GPA, &rsdp), -EINVAL);
	p.ncpus = 4;
	/* 64-bit window below 4 GiB (overlapping the 32-bit hole) or wrapping. */
	p.mmio64_base = 0x40000000;
	assert_int_equal(acpi_build(&p, buf, sizeof(buf), GPA, &rsdp), -EINVAL);
	p.mmio64_base = UINT64_MAX - 0xfff;
	p.mmio64_size = 0x2000;
	assert_int_equal(acpi_build(&p, buf, sizeof(buf), GPA, &rsdp), -EINVAL);
	p.mmio64_base = 0x100000000ULL;
	p.mmio64_size = UINT64_MAX;
	assert_int_equal(acpi_build(&p, buf, sizeof(buf), GPA, &rsdp), -EINVAL);
	assert_int_equal(rsdp, 0x1234); /* untouched on failure */
}

/* Every buffer smaller than the tables fails with -ENOSPC and never writes past its end. */
static void test_enospc_never_overruns(void **state)
{
	struct x86_platform p = golden_platform;
	uint64_t rsdp = 0;
	struct tables t;
	size_t need;

	(void)state;
	p.ncpus = 254;
	build(&p, &t);
	need = t.end;
	free(t.buf);
	for (size_t len = 0; len < need; len++) {
		uint8_t *buf = malloc(len ? len : 1); /* exact size: ASan sees any overrun */

		assert_non_null(buf);
		assert_int_equal(acpi_build(&p, buf, len, GPA, &rsdp), -ENOSPC);
		free(buf);
	}
	uint8_t *buf = malloc(need);

	assert_non_null(buf);
	assert_int_equal(acpi_build(&p, buf, need, GPA, &rsdp), 0);
	free(buf);
}

/* ---- the DSDT extension hook ------------------------------------------------------------ */

static void hook_add_device(struct aml *a, void *opaque)
{
	(*(int *)opaque)++;
	aml_device_begin(a, "VDEV");
	aml_name_string(a, "_HID", "VMM0001");
	aml_end(a);
}

static void hook_bad_name(struct aml *a, void *opaque)
{
	(void)opaque;
	aml_device_begin(a, "bad!");
	aml_end(a);
}

static void hook_huge(struct aml *a, void *opaque)
{
	static const uint8_t junk[4096];

	(void)opaque;
	aml_device_begin(a, "HUGE");
	for (int i = 0; i < 32; i++)
		aml_bytes(a, junk, sizeof(junk));
	aml_end(a);
}

static void test_dsdt_hook(void **state)
{
	static const uint8_t dev[] = { 0x5b, 0x82 };
	struct x86_platform p = golden_platform;
	static uint8_t buf[0x10000];
	uint64_t rsdp;
	struct tables t;
	int calls = 0;

	(void)state;
	p.dsdt_extra = hook_add_device;
	p.dsdt_extra_opaque = &calls;
	build(&p, &t);
	assert_int_equal(calls, 1);
	const uint8_t *d = find(t.dsdt, rd32(t.dsdt + 4), "VDEV", 4);

	assert_memory_equal(d - 3, dev, 2); /* DeviceOp, 1-byte PkgLength, name */
	find(t.dsdt, rd32(t.dsdt + 4), "VMM0001", 8);
	free(t.buf);

	p.dsdt_extra = hook_bad_name;
	assert_int_equal(acpi_build(&p, buf, sizeof(buf), GPA, &rsdp), -EINVAL);
	p.dsdt_extra = hook_huge;
	assert_int_equal(acpi_build(&p, buf, sizeof(buf), GPA, &rsdp), -ENOSPC);
}

/* ---- golden files ------------------------------------------------------------------------ */

static void golden_check(const char *name, const uint8_t *data, size_t n)
{
	char path[256];
	uint8_t *want;
	long size;
	FILE *f;

	snprintf(path, sizeof(path), GOLDEN_DIR "%s", name);
	if (getenv("UPDATE_GOLDEN") && strcmp(getenv("UPDATE_GOLDEN"), "0")) {
		f = fopen(path, "wb");
		assert_non_null(f);
		assert_int_equal(fwrite(data, 1, n, f), n);
		assert_int_equal(fclose(f), 0);
		print_message("updated %s (%zu bytes)\n", path, n);
		return;
	}
	f = fopen(path, "rb");
	if (!f)
		fail_msg("%s: missing (run from the repository root; UPDATE_GOLDEN=1 creates it)", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	rewind(f);
	if (size != (long)n) {
		fclose(f);
		fail_msg("%s: %ld bytes, built %zu (UPDATE_GOLDEN=1 if the change is intended)",
			 path, size, n);
	}
	want = malloc(n ? n : 1);
	assert_non_null(want);
	assert_int_equal(fread(want, 1, n, f), n);
	fclose(f);
	for (size_t i = 0; i < n; i++) {
		if (want[i] != data[i]) {
			uint8_t w = want[i];

			free(want);
			fail_msg("%s: differs at offset 0x%zx: golden 0x%02x, built 0x%02x "
				 "(UPDATE_GOLDEN=1 if the change is intended)", path, i, w, data[i]);
		}
	}
	free(want);
}

static void test_golden(void **state)
{
	struct tables t;

	(void)state;
	build(&golden_platform, &t);
	golden_check("acpi-4cpu-rsdp.bin", t.rsdp, 36);
	golden_check("acpi-4cpu-xsdt.bin", t.xsdt, rd32(t.xsdt + 4));
	golden_check("acpi-4cpu-facp.bin", t.fadt, rd32(t.fadt + 4));
	golden_check("acpi-4cpu-facs.bin", t.facs, 64);
	golden_check("acpi-4cpu-dsdt.bin", t.dsdt, rd32(t.dsdt + 4));
	golden_check("acpi-4cpu-apic.bin", t.madt, rd32(t.madt + 4));
	golden_check("acpi-4cpu-mcfg.bin", t.mcfg, rd32(t.mcfg + 4));
	free(t.buf);
}

/* ---- cross-check with the ACPICA compiler ---------------------------------------------- */

static int have_tool(const char *tool)
{
	const char *path = getenv("PATH");
	char dir[4096], file[4200];

	if (!path)
		return 0;
	while (*path) {
		size_t n = strcspn(path, ":");

		if (n && n < sizeof(dir)) {
			memcpy(dir, path, n);
			dir[n] = '\0';
			snprintf(file, sizeof(file), "%s/%s", dir, tool);
			if (access(file, X_OK) == 0)
				return 1;
		}
		path += n + (path[n] == ':');
	}
	return 0;
}

static uint8_t *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	uint8_t *p;
	long size;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	rewind(f);
	p = malloc(size > 0 ? (size_t)size : 1);
	assert_non_null(p);
	assert_int_equal(fread(p, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	*n = (size_t)size;
	return p;
}

/* Run cmd in dir, appending its output to dir/log. */
static int run(const char *dir, const char *cmd, const char *log)
{
	char line[1024];

	snprintf(line, sizeof(line), "cd '%s' && %s >>%s 2>&1", dir, cmd, log);
	return system(line);
}

/*
 * Disassemble one table with iasl -d, then compile the disassembly back (no
 * optimisations, warnings are errors): the result must be our table again,
 * byte for byte, apart from the compiler id/revision and the checksum
 * that iasl stamps into the header.
 */
static void iasl_round_trip(const char *dir, const char *name, const uint8_t *tab, size_t n,
			    int has_header)
{
	char path[512], cmd[256];
	uint8_t *back;
	size_t m = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.dat", dir, name);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(tab, 1, n, f), n);
	assert_int_equal(fclose(f), 0);

	snprintf(cmd, sizeof(cmd), "iasl -d %s.dat", name);
	if (run(dir, cmd, "iasl.log") != 0)
		fail_msg("iasl -d %s failed (see %s/iasl.log)", name, dir);
	snprintf(cmd, sizeof(cmd), "iasl -we -oa -p rt_%s %s.dsl", name, name);
	if (run(dir, cmd, "iasl.log") != 0)
		fail_msg("iasl could not recompile the disassembly of %s (see %s/iasl.log)",
			 name, dir);
	snprintf(path, sizeof(path), "%s/rt_%s.aml", dir, name);
	back = slurp(path, &m);
	assert_non_null(back);
	assert_int_equal(m, n);
	if (has_header) {
		assert_memory_equal(back, tab, 9);             /* signature, length, revision */
		assert_memory_equal(back + 10, tab + 10, 18);  /* OEM id, table id, revision */
		assert_memory_equal(back + 36, tab + 36, n - 36);
		assert_int_equal(sum8(back, m), 0);
	} else {
		assert_memory_equal(back, tab, n);
	}
	free(back);
}

static char *read_text(const char *dir, const char *name)
{
	char path[512];
	size_t n = 0;
	char *s;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	s = (char *)slurp(path, &n);
	assert_non_null(s);
	s = realloc(s, n + 1);
	assert_non_null(s);
	s[n] = '\0';
	return s;
}

/*
 * Load the tables into ACPICA's interpreter (the code Linux runs) and
 * evaluate what the kernel evaluates at boot. The FADT's lack of PM2, GPE
 * blocks and PM timer makes acpiexec's own hardware self-tests complain
 * ("Unexpected AE_..."); those are expected, ACPI errors and warnings are not.
 */
static void acpiexec_check(const char *dir, const struct x86_platform *p)
{
	static const char *const want[] = {
		"ACPI: 1 ACPI AML tables successfully acquired and loaded",
		"Evaluation of \\_S5_ returned object",
		"[Integer] = 0000000000000005",
		"Evaluation of \\_SB.PCI0._PRT returned object",
		"[Package] Contains 128 Elements:",
		"Evaluation of \\_SB.PCI0._CRS returned object",
		"Evaluation of \\_SB.MBRD._CRS returned object",
	};
	static const char *const bad[] = { "ACPI Error", "ACPI Warning", "ACPI Exception",
					   "AE_AML_", "AE_NOT_FOUND", "AE_ALREADY_EXISTS" };
	char *log;

	(void)p;
	if (run(dir, "timeout 60 acpiexec -b 'evaluate \\_S5_; evaluate \\_SB.PCI0._PRT; "
		     "evaluate \\_SB.PCI0._CRS; evaluate \\_SB.MBRD._CRS' "
		     "facp.dat dsdt.dat apic.dat mcfg.dat", "acpiexec.log") != 0)
		fail_msg("acpiexec failed (see %s/acpiexec.log)", dir);
	log = read_text(dir, "acpiexec.log");
	for (size_t i = 0; i < ARRAY_SIZE(want); i++)
		if (!strstr(log, want[i]))
			fail_msg("acpiexec output lacks \"%s\" (%s/acpiexec.log)", want[i], dir);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (strstr(log, bad[i]))
			fail_msg("acpiexec reported \"%s\" (%s/acpiexec.log)", bad[i], dir);
	free(log);
}

static void iasl_check_config(const struct x86_platform *p)
{
	const char *tmp = getenv("TMPDIR");
	char dir[512], cmd[600];
	struct tables t;
	char *dsl;

	snprintf(dir, sizeof(dir), "%s/test_acpi.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(dir));
	build(p, &t);
	iasl_round_trip(dir, "xsdt", t.xsdt, rd32(t.xsdt + 4), 1);
	iasl_round_trip(dir, "facp", t.fadt, rd32(t.fadt + 4), 1);
	iasl_round_trip(dir, "facs", t.facs, 64, 0);
	iasl_round_trip(dir, "dsdt", t.dsdt, rd32(t.dsdt + 4), 1);
	iasl_round_trip(dir, "apic", t.madt, rd32(t.madt + 4), 1);
	iasl_round_trip(dir, "mcfg", t.mcfg, rd32(t.mcfg + 4), 1);

	dsl = read_text(dir, "dsdt.dsl");
	static const char *const want[] = {
		"Device (PCI0)", "Device (COM1)", "Name (\\_S5, Package (0x04)", "_S5_",
		"Name (_PRT, Package (0x80)", "EisaId (\"PNP0A08\")", "EisaId (\"PNP0A03\")",
		"EisaId (\"PNP0501\")", "EisaId (\"PNP0C02\")", "WordBusNumber (ResourceProducer",
		"DWordMemory (ResourceProducer", "IRQNoFlags ()\n                    {4}",
	};
	for (size_t i = 0; i < ARRAY_SIZE(want); i++)
		if (!strstr(dsl, want[i]))
			fail_msg("the disassembled DSDT lacks \"%s\" (%s/dsdt.dsl)", want[i], dir);
	if ((strstr(dsl, "QWordMemory (ResourceProducer") != NULL) != (p->mmio64_size != 0))
		fail_msg("QWordMemory window present iff mmio64_size != 0 (%s/dsdt.dsl)", dir);
	free(dsl);

	dsl = read_text(dir, "apic.dsl");
	assert_null(strstr(dsl, "Incorrect"));
	free(dsl);
	free(t.buf);

	if (have_tool("acpiexec"))
		acpiexec_check(dir, p);

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static void test_iasl_cross_check(void **state)
{
	struct x86_platform p = golden_platform;

	(void)state;
	if (!have_tool("iasl")) {
		print_message("iasl not installed (acpica-tools): skipping\n");
		skip();
	}
	iasl_check_config(&p);
	p.ncpus = 254;
	p.mmio64_base = p.mmio64_size = 0;
	iasl_check_config(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rsdp_and_pointers),
		cmocka_unit_test(test_layout_no_overlap),
		cmocka_unit_test(test_checksums_all_sizes),
		cmocka_unit_test(test_fadt_fields),
		cmocka_unit_test(test_madt),
		cmocka_unit_test(test_mcfg),
		cmocka_unit_test(test_dsdt_s5_and_prt),
		cmocka_unit_test(test_dsdt_mmio64_window),
		cmocka_unit_test(test_other_placement),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_enospc_never_overruns),
		cmocka_unit_test(test_dsdt_hook),
		cmocka_unit_test(test_golden),
		cmocka_unit_test(test_iasl_cross_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
