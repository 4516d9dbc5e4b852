/*
 * Unit tests for the MP table: found and parsed back the way Linux's
 * arch/x86/kernel/mpparse.c does (scan, signature, length, spec revision,
 * checksums, entry walk), then checked entry by entry.
 *
 * UPDATE_GOLDEN=1 rewrites tests/unit/golden/mptable-4cpu.bin.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "arch/x86_64/acpi.h"
#include "arch/x86_64/layout.h"
#include "arch/x86_64/mptable.h"

#define GOLDEN_DIR "tests/unit/golden/"

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | (uint32_t)rd16(p + 2) << 16; }

static uint8_t sum8(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s += *p++;
	return s;
}

struct mp {
	unsigned cpus, bsp, buses, ioapics, isa_ints, pci_ints, lints;
	uint8_t ioapic_id;
	uint8_t cpu_ids[256];
	int isa_pin[16];                /* INTIN of each ISA IRQ, -1 if none */
	int pci_pin[32][4];             /* INTIN of each PCI slot/pin */
	int lint_extint, lint_nmi;      /* LINTIN of ExtINT / NMI */
	int pci_bus, isa_bus;
};

/* Find the floating pointer as Linux does: 16-byte steps, "_MP_", length 1, checksum, spec 1 or 4. */
static const uint8_t *scan(const uint8_t *buf, size_t len)
{
	for (size_t off = 0; off + 16 <= len; off += 16) {
		const uint8_t *m = buf + off;

		if (!memcmp(m, "_MP_", 4) && m[8] == 1 && sum8(m, 16) == 0 &&
		    (m[9] == 1 || m[9] == 4))
			return m;
	}
	return NULL;
}

static void parse(const uint8_t *buf, size_t len, uint64_t gpa, struct mp *mp)
{
	const uint8_t *mpf = scan(buf, len), *mpc, *e, *end;
	unsigned entries = 0;

	memset(mp, 0, sizeof(*mp));
	memset(mp->isa_pin, -1, sizeof(mp->isa_pin));
	memset(mp->pci_pin, -1, sizeof(mp->pci_pin));
	mp->lint_extint = mp->lint_nmi = mp->pci_bus = mp->isa_bus = -1;

	assert_non_null(mpf);
	assert_int_equal(mpf[9], 4);           /* MP spec 1.4 */
	assert_int_equal(mpf[11], 0);          /* feature1: a configuration table follows */
	assert_int_equal(mpf[12] & 0x80, 0);   /* no IMCR: virtual wire mode */

	uint64_t physptr = rd32(mpf + 4);

	assert_true(physptr >= gpa && physptr - gpa + 44 <= len);
	mpc = buf + (physptr - gpa);
	assert_memory_equal(mpc, "PCMP", 4);
	assert_true(physptr - gpa + rd16(mpc + 4) <= len);
	assert_int_equal(sum8(mpc, rd16(mpc + 4)), 0);
	assert_int_equal(mpc[6], 4);
	assert_int_equal(rd32(mpc + 36), X86_LAPIC_BASE);
	assert_int_equal(rd16(mpc + 40), 0);   /* no extended table */

	e = mpc + 44;
	end = mpc + rd16(mpc + 4);
	while (e < end) {
		switch (e[0]) {
		case 0: /* processor */
			assert_true(e + 20 <= end);
			assert_true(e[3] & 1);     /* enabled */
			if (e[3] & 2) {
				mp->bsp++;
				assert_int_equal(e[1], 0);
			}
			assert_int_equal(e[1], mp->cpus);
			mp->cpu_ids[mp->cpus++] = e[1];
			assert_int_not_equal(rd32(e + 4), 0); /* a CPU signature */
			assert_true(rd32(e + 8) & (1u << 9)); /* feature flags: APIC */
			e += 20;
			break;
		case 1: /* bus */
			assert_true(e + 8 <= end);
			if (!memcmp(e + 2, "PCI   ", 6))
				mp->pci_bus = e[1];
			else if (!memcmp(e + 2, "ISA   ", 6))
				mp->isa_bus = e[1];
			else
				fail_msg("unknown bus type %.6s", (const char *)e + 2);
			mp->buses++;
			e += 8;
			break;
		case 2: /* IOAPIC */
			assert_true(e + 8 <= end);
			assert_true(e[3] & 1);     /* usable */
			assert_int_equal(rd32(e + 4), X86_IOAPIC_BASE);
			mp->ioapic_id = e[1];
			mp->ioapics++;
			e += 8;
			break;
		case 3: /* I/O interrupt */
			assert_true(e + 8 <= end);
			assert_int_equal(e[1], 0); /* INT */
			assert_int_equal(rd16(e + 2), 0); /* conforms to the bus */
			assert_int_equal(e[6], mp->ioapic_id); /* IOAPIC listed before its users */
			assert_int_equal(mp->ioapics, 1);
			if (e[4] == mp->isa_bus) {
				assert_true(e[5] < 16);
				assert_int_equal(mp->isa_pin[e[5]], -1);
				mp->isa_pin[e[5]] = e[7];
				mp->isa_ints++;
			} else {
				assert_int_equal(e[4], mp->pci_bus);
				assert_int_equal(mp->pci_pin[e[5] >> 2][e[5] & 3], -1);
				mp->pci_pin[e[5] >> 2][e[5] & 3] = e[7];
				mp->pci_ints++;
			}
			assert_true(e[7] < X86_IOAPIC_PINS);
			e += 8;
			break;
		case 4: /* local interrupt */
			assert_true(e + 8 <= end);
			assert_int_equal(e[6], 0xff); /* all local APICs */
			if (e[1] == 3)
				mp->lint_extint = e[7];
			else if (e[1] == 1)
				mp->lint_nmi = e[7];
			else
				fail_msg("unexpected local interrupt type %u", e[1]);
			mp->lints++;
			e += 8;
			break;
		default:
			fail_msg("unknown MP entry type %u (Linux stops parsing here)", e[0]);
		}
		entries++;
	}
	assert_ptr_equal(e, end);
	assert_int_equal(rd16(mpc + 34), entries);
}

static void check_ncpus(unsigned ncpus)
{
	struct x86_platform p = { .ncpus = ncpus };
	size_t len = mptable_size(ncpus);
	uint8_t *buf = malloc(len); /* exactly the size it claims to need */
	struct mp mp;

	assert_non_null(buf);
	assert_true(len <= X86_MPTABLE_MAX);
	assert_int_equal(mptable_build(&p, buf, len, X86_MPTABLE_ADDR), 0);
	parse(buf, len, X86_MPTABLE_ADDR, &mp);

	assert_int_equal(mp.cpus, ncpus);
	assert_int_equal(mp.bsp, 1);
	assert_int_equal(mp.buses, 2);
	assert_int_equal(mp.pci_bus, 0);
	assert_int_equal(mp.isa_bus, 1);
	assert_int_equal(mp.ioapics, 1);
	assert_int_equal(mp.ioapic_id, ncpus);
	for (unsigned i = 0; i < mp.cpus; i++)
		assert_int_not_equal(mp.cpu_ids[i], mp.ioapic_id);

	/* ISA: IRQ0 -> INTIN2, IRQ2 absent (cascade), every other IRQ identity. */
	assert_int_equal(mp.isa_ints, 15);
	assert_int_equal(mp.isa_pin[0], 2);
	assert_int_equal(mp.isa_pin[2], -1);
	for (int irq = 1; irq < 16; irq++)
		if (irq != 2)
			assert_int_equal(mp.isa_pin[irq], irq);
	/* PCI: the same swizzle as the DSDT's _PRT. */
	assert_int_equal(mp.pci_ints, 128);
	for (unsigned slot = 0; slot < 32; slot++)
		for (unsigned pin = 0; pin < 4; pin++)
			assert_int_equal(mp.pci_pin[slot][pin], x86_pci_intx_gsi(slot, pin));

	assert_int_equal(mp.lints, 2);
	assert_int_equal(mp.lint_extint, 0);
	assert_int_equal(mp.lint_nmi, 1);
	free(buf);
}

static void test_ncpus(void **state)
{
	(void)state;
	check_ncpus(1);
	check_ncpus(2);
	check_ncpus(4);
	check_ncpus(17);
	check_ncpus(254);
}

static void test_size_and_placement(void **state)
{
	static uint8_t buf[0x10000];
	struct x86_platform p = { .ncpus = 254 };

	(void)state;
	/* 16 + 44 + 254 * 20 + 2 * 8 + 8 + (15 + 128 + 2) * 8 bytes. */
	assert_int_equal(mptable_size(254), 16 + 44 + 254 * 20 + 16 + 8 + 145 * 8);
	assert_true(mptable_size(254) <= X86_MPTABLE_MAX);
	/* Linux scans 0xf0000-0xfffff: the whole table must fit there. */
	assert_true(X86_MPTABLE_ADDR >= 0xf0000 && X86_MPTABLE_ADDR + X86_MPTABLE_MAX <= 0x100000);
	/* It must not overlap the ACPI area. */
	assert_true(X86_MPTABLE_ADDR >= X86_ACPI_ADDR + X86_ACPI_MAX ||
		    X86_MPTABLE_ADDR + X86_MPTABLE_MAX <= X86_ACPI_ADDR);

	/* The builder leaves the rest of the buffer alone. */
	memset(buf, 0xaa, sizeof(buf));
	assert_int_equal(mptable_build(&p, buf, sizeof(buf), X86_MPTABLE_ADDR), 0);
	for (size_t i = mptable_size(254); i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0xaa);
	/* physptr is absolute: it follows gpa. */
	assert_int_equal(mptable_build(&p, buf, sizeof(buf), 0x9fc00), 0);
	assert_int_equal(rd32(buf + 4), 0x9fc00 + 16);
}

static void test_bad_arguments(void **state)
{
	static uint8_t buf[0x10000];
	struct x86_platform p = { .ncpus = 4 };

	(void)state;
	assert_int_equal(mptable_build(NULL, buf, sizeof(buf), X86_MPTABLE_ADDR), -EINVAL);
	assert_int_equal(mptable_build(&p, NULL, sizeof(buf), X86_MPTABLE_ADDR), -EINVAL);
	assert_int_equal(mptable_build(&p, buf, sizeof(buf), X86_MPTABLE_ADDR + 8), -EINVAL);
	assert_int_equal(mptable_build(&p, buf, sizeof(buf), 0x100000000ULL), -EINVAL);
	assert_int_equal(mptable_build(&p, buf, sizeof(buf), 0x100000000ULL - 256), -EINVAL);
	p.ncpus = 0;
	assert_int_equal(mptable_build(&p, buf, sizeof(buf), X86_MPTABLE_ADDR), -EINVAL);
	p.ncpus = 255;
	assert_int_equal(mptable_build(&p, buf, sizeof(buf), X86_MPTABLE_ADDR), -EINVAL);
}

/* Every buffer smaller than the table is refused with -ENOSPC, untouched. */
static void test_enospc(void **state)
{
	struct x86_platform p = { .ncpus = 254 };
	size_t need = mptable_size(254);

	(void)state;
	for (size_t len = 0; len < need; len++) {
		uint8_t *buf = malloc(len ? len : 1);

		assert_non_null(buf);
		memset(buf, 0xaa, len);
		assert_int_equal(mptable_build(&p, buf, len, X86_MPTABLE_ADDR), -ENOSPC);
		for (size_t i = 0; i < len; i++)
			assert_int_equal(buf[i], 0xaa);
		free(buf);
	}
}

static void test_golden(void **state)
{
	const char *path = GOLDEN_DIR "mptable-4cpu.bin";
	struct x86_platform p = { .ncpus = 4 };
	size_t n = mptable_size(4);
	uint8_t buf[0x2000], want[0x2000];
	FILE *f;
	long size;

	(void)state;
	assert_true(n <= sizeof(buf));
	assert_int_equal(mptable_build(&p, buf, n, X86_MPTABLE_ADDR), 0);
	if (getenv("UPDATE_GOLDEN") && strcmp(getenv("UPDATE_GOLDEN"), "0")) {
		f = fopen(path, "wb");
		assert_non_null(f);
		assert_int_equal(fwrite(buf, 1, n, f), n);
		assert_int_equal(fclose(f), 0);
		print_message("updated %s (%zu bytes)\n", path, n);
		return;
	}
	f = fopen(path, "rb");
	if (!f)
		fail_msg("%s: missing (run from the repository root; UPDATE_GOLDEN=1 creates it)", path);
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	rewind(f);
	if (size != (long)n) {
		fclose(f);
		fail_msg("%s: %ld bytes, built %zu (UPDATE_GOLDEN=1 if intended)", path, size, n);
	}
	assert_int_equal(fread(want, 1, n, f), n);
	fclose(f);
	for (size_t i = 0; i < n; i++)
		if (want[i] != buf[i])
			fail_msg("%s: differs at offset 0x%zx: golden 0x%02x, built 0x%02x "
				 "(UPDATE_GOLDEN=1 if intended)", path, i, want[i], buf[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ncpus),
		cmocka_unit_test(test_size_and_placement),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_enospc),
		cmocka_unit_test(test_golden),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
