/* Unit tests for the AML encoder: every primitive byte-for-byte against ACPI 6.4 chapter 20 / 6.4. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "arch/x86_64/acpi.h"
#include "arch/x86_64/aml.h"

#define GUARD 0xa5

/* An encoder over buf[0..cap) with a guard zone behind it that must stay untouched. */
struct fixture {
	uint8_t mem[8192 + 64];
	struct aml a;
	size_t cap;
};

static void fx_init(struct fixture *f, size_t cap)
{
	assert_true(cap + 64 <= sizeof(f->mem));
	memset(f->mem, GUARD, sizeof(f->mem));
	f->cap = cap;
	aml_init(&f->a, f->mem, cap);
}

static void assert_guard(const struct fixture *f)
{
	for (size_t i = f->cap; i < sizeof(f->mem); i++)
		assert_int_equal(f->mem[i], GUARD);
}

/* The encoder finished cleanly and produced exactly the expected bytes. */
static void expect_bytes(struct fixture *f, const uint8_t *want, size_t n)
{
	size_t len = 0;

	assert_int_equal(aml_finish(&f->a, &len), 0);
	assert_int_equal(len, n);
	assert_memory_equal(f->mem, want, n);
	assert_guard(f);
}

#define EXPECT(f, ...)                                          \
	do {                                                    \
		static const uint8_t want_[] = { __VA_ARGS__ }; \
		expect_bytes((f), want_, sizeof(want_));        \
	} while (0)

static void expect_error(struct fixture *f, int err)
{
	size_t len = 12345;

	assert_int_equal(aml_finish(&f->a, &len), err);
	assert_int_equal(len, 12345); /* untouched on error */
	assert_guard(f);
}

/* ---- PkgLength ------------------------------------------------------------- */

static void test_pkglen_encode_boundaries(void **state)
{
	static const struct {
		uint32_t v;
		int n;
		uint8_t b[4];
	} cases[] = {
		{ 0, 1, { 0x00 } },
		{ 1, 1, { 0x01 } },
		{ 63, 1, { 0x3f } },
		{ 64, 2, { 0x40, 0x04 } },
		{ 0x123, 2, { 0x43, 0x12 } },
		{ 4095, 2, { 0x4f, 0xff } },
		{ 4096, 3, { 0x80, 0x00, 0x01 } },
		{ 0xfffff, 3, { 0x8f, 0xff, 0xff } },
		{ 0x100000, 4, { 0xc0, 0x00, 0x00, 0x01 } },
		{ 0x0fedcba9, 4, { 0xc9, 0xba, 0xdc, 0xfe } },
		{ 0x0fffffff, 4, { 0xcf, 0xff, 0xff, 0xff } },
	};
	uint8_t out[4];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		memset(out, 0xee, sizeof(out));
		assert_int_equal(aml_pkglen_encode(out, cases[i].v), cases[i].n);
		assert_memory_equal(out, cases[i].b, (size_t)cases[i].n);
	}
	assert_int_equal(aml_pkglen_encode(out, 0x10000000), -EINVAL);
	assert_int_equal(aml_pkglen_encode(out, UINT32_MAX), -EINVAL);
}

/*
 * A Scope whose body (NameString "\" = 2 bytes, then filler) makes the
 * PkgLength just fit or just overflow each encoding size: the value counts
 * the PkgLength bytes too, so body 62 -> 1 byte, body 63 -> 2 bytes.
 */
static void scope_with_body(struct aml *a, size_t body)
{
	static const uint8_t filler[4096];
	size_t left = body - 2;

	aml_scope_begin(a, "\\");
	while (left) {
		size_t n = left < sizeof(filler) ? left : sizeof(filler);

		aml_bytes(a, filler, n);
		left -= n;
	}
	aml_end(a);
}

static void check_scope_pkglen(size_t body, const uint8_t *pl, size_t npl)
{
	size_t cap = 1 + npl + body, len = 0;
	uint8_t *buf = malloc(cap); /* exact size: ASan catches any overrun */
	struct aml a;

	assert_non_null(buf);
	aml_init(&a, buf, cap);
	scope_with_body(&a, body);
	assert_int_equal(aml_finish(&a, &len), 0);
	assert_int_equal(len, cap);
	assert_int_equal(buf[0], AML_SCOPE_OP);
	assert_memory_equal(buf + 1, pl, npl);
	assert_int_equal(buf[1 + npl], '\\');
	assert_int_equal(buf[2 + npl], 0x00);

	/* One byte less room must fail cleanly, not overrun. */
	aml_init(&a, buf, cap - 1);
	scope_with_body(&a, body);
	assert_int_equal(aml_finish(&a, &len), -ENOSPC);
	free(buf);
}

static void test_pkglen_in_objects(void **state)
{
	(void)state;
	check_scope_pkglen(2, (const uint8_t[]){ 0x03 }, 1);
	check_scope_pkglen(62, (const uint8_t[]){ 0x3f }, 1);
	check_scope_pkglen(63, (const uint8_t[]){ 0x41, 0x04 }, 2);       /* 65 */
	check_scope_pkglen(4093, (const uint8_t[]){ 0x4f, 0xff }, 2);     /* 4095 */
	check_scope_pkglen(4094, (const uint8_t[]){ 0x81, 0x00, 0x01 }, 3); /* 4097 */
	check_scope_pkglen(0xffffc, (const uint8_t[]){ 0x8f, 0xff, 0xff }, 3);
	check_scope_pkglen(0xffffd, (const uint8_t[]){ 0xc1, 0x00, 0x00, 0x01 }, 4);
}

/* ---- data objects ------------------------------------------------------------ */

static void check_integer(uint64_t v, const uint8_t *want, size_t n)
{
	struct fixture f;

	fx_init(&f, 64);
	aml_integer(&f.a, v);
	expect_bytes(&f, want, n);
}

static void test_integer_sizes(void **state)
{
	(void)state;
	check_integer(0, (const uint8_t[]){ 0x00 }, 1);
	check_integer(1, (const uint8_t[]){ 0x01 }, 1);
	check_integer(2, (const uint8_t[]){ 0x0a, 0x02 }, 2);
	check_integer(0xff, (const uint8_t[]){ 0x0a, 0xff }, 2);
	check_integer(0x100, (const uint8_t[]){ 0x0b, 0x00, 0x01 }, 3);
	check_integer(0xffff, (const uint8_t[]){ 0x0b, 0xff, 0xff }, 3);
	check_integer(0x10000, (const uint8_t[]){ 0x0c, 0x00, 0x00, 0x01, 0x00 }, 5);
	check_integer(0xffffffff, (const uint8_t[]){ 0x0c, 0xff, 0xff, 0xff, 0xff }, 5);
	check_integer(0x100000000ULL,
		      (const uint8_t[]){ 0x0e, 0, 0, 0, 0, 1, 0, 0, 0 }, 9);
	check_integer(0x0123456789abcdefULL,
		      (const uint8_t[]){ 0x0e, 0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01 }, 9);
	check_integer(UINT64_MAX,
		      (const uint8_t[]){ 0x0e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, 9);
}

static void test_string(void **state)
{
	struct fixture f;

	(void)state;
	fx_init(&f, 64);
	aml_string(&f.a, "ab");
	aml_string(&f.a, "");
	EXPECT(&f, 0x0d, 'a', 'b', 0x00, 0x0d, 0x00);

	fx_init(&f, 64);
	aml_string(&f.a, "caf\xc3\xa9"); /* not ASCII */
	expect_error(&f, -EINVAL);
}

static void test_eisaid(void **state)
{
	static const struct {
		const char *id;
		uint32_t v;
	} good[] = {
		{ "PNP0A08", 0x080ad041 },
		{ "PNP0A03", 0x030ad041 },
		{ "PNP0501", 0x0105d041 },
		{ "PNP0C02", 0x020cd041 },
		{ "PNP0B00", 0x000bd041 },
		{ "ABC1234", 0x34124304 },
		{ "ZZZFFFF", 0xffff5a6b }, /* the top of both ranges */
	};
	static const char *const bad[] = { "pnp0a08", "PNP0A0", "PNP0A080", "PNP0A0G",
					   "PNP0a08", "P@P0A08", "ACPI000", "" };
	struct fixture f;
	uint32_t v;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		assert_int_equal(aml_eisaid_encode(good[i].id, &v), 0);
		assert_int_equal(v, good[i].v);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(aml_eisaid_encode(bad[i], &v), -EINVAL);

	fx_init(&f, 64);
	aml_eisaid(&f.a, "PNP0A08");
	EXPECT(&f, 0x0c, 0x41, 0xd0, 0x0a, 0x08);

	fx_init(&f, 64);
	aml_eisaid(&f.a, "PNP0A0G");
	expect_error(&f, -EINVAL);
}

static void test_buffer(void **state)
{
	struct fixture f;

	(void)state;
	fx_init(&f, 64);
	aml_buffer(&f.a, (const uint8_t[]){ 1, 2, 3 }, 3);
	EXPECT(&f, 0x11, 0x06, 0x0a, 0x03, 1, 2, 3);

	fx_init(&f, 64);
	aml_buffer(&f.a, NULL, 0);
	EXPECT(&f, 0x11, 0x02, 0x00);
}

/* ---- names ------------------------------------------------------------------- */

static void check_name(const char *path, const uint8_t *want, size_t n)
{
	struct fixture f;

	fx_init(&f, 64);
	aml_namestring(&f.a, path);
	expect_bytes(&f, want, n);
}

static void test_namestrings(void **state)
{
	(void)state;
	check_name("_HID", (const uint8_t[]){ '_', 'H', 'I', 'D' }, 4);
	check_name("PCI", (const uint8_t[]){ 'P', 'C', 'I', '_' }, 4);
	check_name("A", (const uint8_t[]){ 'A', '_', '_', '_' }, 4);
	check_name("\\", (const uint8_t[]){ 0x5c, 0x00 }, 2);
	check_name("", (const uint8_t[]){ 0x00 }, 1);
	check_name("\\_SB", (const uint8_t[]){ 0x5c, '_', 'S', 'B', '_' }, 5);
	check_name("\\_SB.PCI0",
		   (const uint8_t[]){ 0x5c, 0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0' }, 10);
	check_name("\\_SB.PCI0.COM1",
		   (const uint8_t[]){ 0x5c, 0x2f, 0x03, '_', 'S', 'B', '_', 'P', 'C', 'I', '0',
				      'C', 'O', 'M', '1' }, 15);
	check_name("^^FOO", (const uint8_t[]){ 0x5e, 0x5e, 'F', 'O', 'O', '_' }, 6);
	check_name("^A.B", (const uint8_t[]){ 0x5e, 0x2e, 'A', '_', '_', '_', 'B', '_', '_', '_' }, 10);
}

static void test_namestrings_invalid(void **state)
{
	static const char *const bad[] = {
		"pci0",      /* lower case */
		"ABCDE",     /* segment longer than 4 */
		"1ABC",      /* digit cannot lead */
		"A..B",      /* empty segment */
		"A.",        /* trailing dot */
		".A",        /* leading dot */
		"\\^A",      /* root then parent */
		"^\\A",      /* parent then root */
		"AB-C",      /* bad character */
		"\\_SB PCI0",
	};
	struct fixture f;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		fx_init(&f, 64);
		aml_namestring(&f.a, bad[i]);
		expect_error(&f, -EINVAL);
	}
}

static void test_namestring_many_segments(void **state)
{
	char path[5 * 256 + 1];
	size_t n = 0, len = 0;
	struct fixture f;

	(void)state;
	/* 255 segments is the MultiNamePath maximum; 256 must be refused. */
	for (int i = 0; i < 256; i++) {
		memcpy(path + n, "ABCD.", 5);
		n += 5;
	}
	path[n - 1] = '\0';
	fx_init(&f, 2048);
	aml_namestring(&f.a, path);
	expect_error(&f, -EINVAL);

	path[5 * 255 - 1] = '\0';
	fx_init(&f, 2048);
	aml_namestring(&f.a, path);
	assert_int_equal(aml_finish(&f.a, &len), 0);
	assert_int_equal(len, 2 + 4 * 255);
	assert_int_equal(f.mem[0], 0x2f);
	assert_int_equal(f.mem[1], 255);
}

/* ---- named objects and blocks ------------------------------------------------- */

static void test_name_objects(void **state)
{
	struct fixture f;

	(void)state;
	fx_init(&f, 128);
	aml_name_integer(&f.a, "_UID", 1);
	aml_name_string(&f.a, "_STR", "x");
	aml_name_eisaid(&f.a, "_HID", "PNP0501");
	EXPECT(&f, 0x08, '_', 'U', 'I', 'D', 0x01,
	       0x08, '_', 'S', 'T', 'R', 0x0d, 'x', 0x00,
	       0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x05, 0x01);
}

static void test_device_scope_method(void **state)
{
	struct fixture f;

	(void)state;
	/* Scope (\_SB) { Device (COM1) { Method (_STA, 0, NotSerialized) { Return (0x0F) } } } */
	fx_init(&f, 128);
	aml_scope_begin(&f.a, "\\_SB");
	aml_device_begin(&f.a, "COM1");
	aml_method_begin(&f.a, "_STA", 0, 0);
	aml_return(&f.a);
	aml_integer(&f.a, 0x0f);
	aml_end(&f.a);
	aml_end(&f.a);
	aml_end(&f.a);
	EXPECT(&f, 0x10, 0x17, 0x5c, '_', 'S', 'B', '_',
	       0x5b, 0x82, 0x0f, 'C', 'O', 'M', '1',
	       0x14, 0x09, '_', 'S', 'T', 'A', 0x00, 0xa4, 0x0a, 0x0f);

	/* Serialized method with 2 arguments: flags 0x0a. Empty device: PkgLength covers the name. */
	fx_init(&f, 128);
	aml_method_begin(&f.a, "FOO", 2, 1);
	aml_end(&f.a);
	aml_device_begin(&f.a, "\\_SB.DEV");
	aml_end(&f.a);
	EXPECT(&f, 0x14, 0x06, 'F', 'O', 'O', '_', 0x0a,
	       0x5b, 0x82, 0x0b, 0x5c, 0x2e, '_', 'S', 'B', '_', 'D', 'E', 'V', '_');
}

static void test_package(void **state)
{
	struct fixture f;

	(void)state;
	/* Name (_S5, Package () { 5, 5, 0, 0 }) */
	fx_init(&f, 64);
	aml_name_begin(&f.a, "\\_S5");
	aml_package_begin(&f.a);
	aml_integer(&f.a, 5);
	aml_integer(&f.a, 5);
	aml_integer(&f.a, 0);
	aml_integer(&f.a, 0);
	aml_end(&f.a);
	EXPECT(&f, 0x08, 0x5c, '_', 'S', '5', '_', 0x12, 0x08, 0x04, 0x0a, 0x05, 0x0a, 0x05,
	       0x00, 0x00);

	/* Nested packages count as one element each: Package () { Package () { 0 }, 1, "a", \_SB } */
	fx_init(&f, 64);
	aml_package_begin(&f.a);
	aml_package_begin(&f.a);
	aml_integer(&f.a, 0);
	aml_end(&f.a);
	aml_integer(&f.a, 1);
	aml_string(&f.a, "a");
	aml_namestring(&f.a, "\\_SB");
	aml_end(&f.a);
	EXPECT(&f, 0x12, 0x0f, 0x04, 0x12, 0x03, 0x01, 0x00, 0x01, 0x0d, 'a', 0x00,
	       0x5c, '_', 'S', 'B', '_');

	/* Empty package. */
	fx_init(&f, 64);
	aml_package_begin(&f.a);
	aml_end(&f.a);
	EXPECT(&f, 0x12, 0x02, 0x00);
}

static void test_package_element_limit(void **state)
{
	struct fixture f;
	size_t len = 0;

	(void)state;
	fx_init(&f, 1024);
	aml_package_begin(&f.a);
	for (int i = 0; i < 255; i++)
		aml_integer(&f.a, 0);
	aml_end(&f.a);
	assert_int_equal(aml_finish(&f.a, &len), 0);
	/* 0x12, PkgLength 2 bytes (255 + 1 + 2 = 258 = 0x102), NumElements 0xff. */
	assert_int_equal(len, 1 + 2 + 1 + 255);
	assert_int_equal(f.mem[1], 0x42);
	assert_int_equal(f.mem[2], 0x10);
	assert_int_equal(f.mem[3], 0xff);

	fx_init(&f, 1024);
	aml_package_begin(&f.a);
	for (int i = 0; i < 256; i++)
		aml_integer(&f.a, 0);
	aml_end(&f.a);
	expect_error(&f, -EINVAL);
}

/* ---- resource descriptors ------------------------------------------------------ */

static void test_res_small(void **state)
{
	struct fixture f;

	(void)state;
	fx_init(&f, 64);
	aml_restemplate_begin(&f.a);
	aml_res_io(&f.a, 0x3f8, 0x3f8, 1, 8);
	aml_res_irq_noflags(&f.a, 1u << 4);
	aml_end(&f.a);
	/* Buffer, PkgLength, BufferSize 0x0d, IO, IRQNoFlags, EndTag (checksum 0). */
	EXPECT(&f, 0x11, 0x10, 0x0a, 0x0d,
	       0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08,
	       0x22, 0x10, 0x00,
	       0x79, 0x00);

	/* The empty template is just the EndTag. */
	fx_init(&f, 64);
	aml_restemplate_begin(&f.a);
	aml_end(&f.a);
	EXPECT(&f, 0x11, 0x05, 0x0a, 0x02, 0x79, 0x00);
}

/* Descriptors alone: emit them in a template and check the bytes between the header and the EndTag. */
static void expect_descriptor(struct fixture *f, const uint8_t *want, size_t n)
{
	size_t len = 0;

	aml_end(&f->a);
	assert_int_equal(aml_finish(&f->a, &len), 0);
	/* 0x11, 1-byte PkgLength, ByteConst BufferSize (all descriptors here are short). */
	assert_int_equal(len, 4 + n + 2);
	assert_int_equal(f->mem[0], 0x11);
	assert_int_equal(f->mem[3], n + 2);
	assert_memory_equal(f->mem + 4, want, n);
	assert_int_equal(f->mem[4 + n], 0x79);
	assert_int_equal(f->mem[5 + n], 0x00);
	assert_guard(f);
}

#define EXPECT_DESC(f, ...)                                      \
	do {                                                     \
		static const uint8_t want_[] = { __VA_ARGS__ };  \
		expect_descriptor((f), want_, sizeof(want_));    \
	} while (0)

static void test_res_large(void **state)
{
	struct fixture f;

	(void)state;
	fx_init(&f, 128);
	aml_restemplate_begin(&f.a);
	aml_res_memory32_fixed(&f.a, AML_RES_RW, 0xe0000000, 0x100000);
	EXPECT_DESC(&f, 0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xe0, 0x00, 0x00, 0x10, 0x00);

	fx_init(&f, 128);
	aml_restemplate_begin(&f.a);
	aml_res_word_bus_number(&f.a, 0, 0);
	EXPECT_DESC(&f, 0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00,
		    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00);

	fx_init(&f, 128);
	aml_restemplate_begin(&f.a);
	aml_res_word_io(&f.a, 0x0d00, 0xffff);
	EXPECT_DESC(&f, 0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03,
		    0x00, 0x00, 0x00, 0x0d, 0xff, 0xff, 0x00, 0x00, 0x00, 0xf3);

	fx_init(&f, 128);
	aml_restemplate_begin(&f.a);
	aml_res_dword_memory(&f.a, AML_RES_NONCACHEABLE, 0xc0000000, 0xdfffffff);
	EXPECT_DESC(&f, 0x87, 0x17, 0x00, 0x00, 0x0c, 0x01,
		    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xff, 0xff, 0xff, 0xdf,
		    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20);

	fx_init(&f, 128);
	aml_restemplate_begin(&f.a);
	aml_res_qword_memory(&f.a, AML_RES_CACHEABLE, 0x400000000ULL, 0x13ffffffffULL);
	EXPECT_DESC(&f, 0x8a, 0x2b, 0x00, 0x00, 0x0c, 0x03,
		    0, 0, 0, 0, 0, 0, 0, 0,
		    0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00,
		    0xff, 0xff, 0xff, 0xff, 0x13, 0x00, 0x00, 0x00,
		    0, 0, 0, 0, 0, 0, 0, 0,
		    0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00);
}

static void test_res_invalid(void **state)
{
	struct fixture f;

	(void)state;
	/* Descriptors outside a template. */
	fx_init(&f, 64);
	aml_res_io(&f.a, 0x60, 0x60, 1, 1);
	expect_error(&f, -EINVAL);

	/* Data objects inside a template. */
	fx_init(&f, 64);
	aml_restemplate_begin(&f.a);
	aml_integer(&f.a, 5);
	aml_end(&f.a);
	expect_error(&f, -EINVAL);

	/* min > max. */
	fx_init(&f, 64);
	aml_restemplate_begin(&f.a);
	aml_res_io(&f.a, 0x61, 0x60, 1, 1);
	aml_end(&f.a);
	expect_error(&f, -EINVAL);

	fx_init(&f, 64);
	aml_restemplate_begin(&f.a);
	aml_res_dword_memory(&f.a, 0, 0x2000, 0x1000);
	aml_end(&f.a);
	expect_error(&f, -EINVAL);

	/* A Word range whose length (0x10000) does not fit its 16-bit length field. */
	fx_init(&f, 64);
	aml_restemplate_begin(&f.a);
	aml_res_word_io(&f.a, 0, 0xffff);
	aml_end(&f.a);
	expect_error(&f, -EINVAL);

	/* The whole 64-bit space has no 64-bit length. */
	fx_init(&f, 128);
	aml_restemplate_begin(&f.a);
	aml_res_qword_memory(&f.a, 0, 0, UINT64_MAX);
	aml_end(&f.a);
	expect_error(&f, -EINVAL);
}

/* ---- structural errors ------------------------------------------------------------ */

static void test_nesting_errors(void **state)
{
	struct fixture f;

	(void)state;
	fx_init(&f, 64);
	aml_end(&f.a); /* nothing open */
	expect_error(&f, -EINVAL);

	fx_init(&f, 64);
	aml_device_begin(&f.a, "DEV");
	expect_error(&f, -EINVAL); /* never closed */

	fx_init(&f, 256);
	for (int i = 0; i < AML_MAX_DEPTH + 1; i++)
		aml_scope_begin(&f.a, "S");
	expect_error(&f, -EINVAL);

	fx_init(&f, 64);
	aml_package_begin(&f.a);
	aml_name_integer(&f.a, "FOO", 1); /* a term inside a package */
	aml_end(&f.a);
	expect_error(&f, -EINVAL);

	fx_init(&f, 64);
	aml_package_begin(&f.a);
	aml_device_begin(&f.a, "DEV");
	expect_error(&f, -EINVAL);

	fx_init(&f, 64);
	aml_return(&f.a); /* outside a method */
	expect_error(&f, -EINVAL);

	fx_init(&f, 64);
	aml_method_begin(&f.a, "FOO", 8, 0); /* at most 7 arguments */
	expect_error(&f, -EINVAL);
}

static void test_error_is_sticky(void **state)
{
	struct fixture f;
	size_t len;

	(void)state;
	fx_init(&f, 64);
	aml_integer(&f.a, 7);
	aml_namestring(&f.a, "bad");
	len = f.a.len;
	aml_integer(&f.a, 0x12345678); /* ignored after the error */
	aml_scope_begin(&f.a, "\\");
	aml_end(&f.a);
	assert_int_equal(f.a.len, len);
	expect_error(&f, -EINVAL);
}

static void test_overflow_never_overruns(void **state)
{
	struct x86_platform p = { .ncpus = 4, .mmio64_base = 0x400000000ULL,
				  .mmio64_size = 0x1000000000ULL };
	struct fixture f;
	size_t need = 0;

	(void)state;
	/* The whole DSDT body: learn its size, then every smaller buffer must fail cleanly. */
	fx_init(&f, 8192);
	acpi_dsdt_body(&p, &f.a);
	assert_int_equal(aml_finish(&f.a, &need), 0);
	assert_true(need > 1000 && need < 8192);

	for (size_t cap = 0; cap < need; cap++) {
		fx_init(&f, cap);
		acpi_dsdt_body(&p, &f.a);
		expect_error(&f, -ENOSPC);
	}
	fx_init(&f, need);
	acpi_dsdt_body(&p, &f.a);
	assert_int_equal(aml_finish(&f.a, &need), 0);
	assert_guard(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pkglen_encode_boundaries),
		cmocka_unit_test(test_pkglen_in_objects),
		cmocka_unit_test(test_integer_sizes),
		cmocka_unit_test(test_string),
		cmocka_unit_test(test_eisaid),
		cmocka_unit_test(test_buffer),
		cmocka_unit_test(test_namestrings),
		cmocka_unit_test(test_namestrings_invalid),
		cmocka_unit_test(test_namestring_many_segments),
		cmocka_unit_test(test_name_objects),
		cmocka_unit_test(test_device_scope_method),
		cmocka_unit_test(test_package),
		cmocka_unit_test(test_package_element_limit),
		cmocka_unit_test(test_res_small),
		cmocka_unit_test(test_res_large),
		cmocka_unit_test(test_res_invalid),
		cmocka_unit_test(test_nesting_errors),
		cmocka_unit_test(test_error_is_sticky),
		cmocka_unit_test(test_overflow_never_overruns),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
