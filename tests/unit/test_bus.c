#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmm/bus.h"
#include "vmm/gmem.h"

struct hit {
	uint64_t offset;
	unsigned len, count;
	bool write;
};

static void record(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	struct hit *h = opaque;

	h->offset = offset;
	h->len = len;
	h->write = is_write;
	h->count++;
	if (!is_write)
		memset(data, 0x42, len);
}

static void test_dispatch_and_offsets(void **state)
{
	struct hit a = { 0 }, b = { 0 };
	uint8_t d[4];
	struct bus bus;

	(void)state;
	assert_int_equal(bus_init(&bus, "test"), 0);
	assert_int_equal(bus_register(&bus, 0x3f8, 8, record, &a, "a"), 0);
	assert_int_equal(bus_register(&bus, 0x60, 5, record, &b, "b"), 0);
	assert_int_equal(bus_access(&bus, 0x3fd, d, 1, false), 0);
	assert_int_equal(a.offset, 5);
	assert_int_equal(d[0], 0x42);
	assert_int_equal(bus_access(&bus, 0x64, d, 1, true), 0);
	assert_int_equal(b.offset, 4);
	assert_true(b.write);
	/* Unclaimed reads return all ones; an access running off the end is unclaimed. */
	assert_int_equal(bus_access(&bus, 0x500, d, 4, false), -ENOENT);
	assert_int_equal(d[0] & d[1] & d[2] & d[3], 0xff);
	assert_int_equal(bus_access(&bus, 0x3fe, d, 4, false), -ENOENT);
	assert_int_equal(a.count, 1);
	bus_destroy(&bus);
}

static void test_overlap_and_unregister(void **state)
{
	struct hit a = { 0 };
	struct bus bus;
	uint8_t d;

	(void)state;
	assert_int_equal(bus_init(&bus, "test"), 0);
	assert_int_equal(bus_register(&bus, 0x1000, 0x100, record, &a, "a"), 0);
	assert_int_equal(bus_register(&bus, 0x10ff, 1, record, &a, "x"), -EEXIST);
	assert_int_equal(bus_register(&bus, 0xf00, 0x101, record, &a, "x"), -EEXIST);
	assert_int_equal(bus_register(&bus, 0, 0, record, &a, "x"), -EINVAL);
	assert_int_equal(bus_register(&bus, UINT64_MAX, 2, record, &a, "x"), -EINVAL);
	for (uint64_t i = 0; i < 40; i++) /* grows past the initial capacity, keeps order */
		assert_int_equal(bus_register(&bus, 0x2000 + i * 0x10, 0x10, record, &a, "m"), 0);
	assert_int_equal(bus_access(&bus, 0x2000 + 39 * 0x10 + 3, &d, 1, false), 0);
	assert_int_equal(a.offset, 3);
	assert_int_equal(bus_unregister(&bus, 0x1000, &a), 0);
	assert_int_equal(bus_unregister(&bus, 0x1000, &a), -ENOENT);
	assert_int_equal(bus_access(&bus, 0x1000, &d, 1, false), -ENOENT);
	bus_destroy(&bus);
}

static void test_gmem_translate_bounds(void **state)
{
	struct gmem gm;

	(void)state;
	/* 1 MiB of RAM with a hole at [512K, 768K): the top half moves to 768K. */
	assert_int_equal(gmem_create_backed(&gm, 1 * MiB, 512 * KiB, 768 * KiB, GMEM_SHARED), 0);
	assert_int_equal(gm.nr_regions, 2);
	assert_int_equal(gmem_end(&gm), 768 * KiB + 512 * KiB);
	assert_non_null(gmem_translate(&gm, 0, 512 * KiB));
	assert_null(gmem_translate(&gm, 0, 512 * KiB + 1));        /* runs into the hole */
	assert_null(gmem_translate(&gm, 512 * KiB, 1));            /* in the hole */
	assert_null(gmem_translate(&gm, 512 * KiB - 1, 256 * KiB + 2)); /* straddles */
	assert_non_null(gmem_translate(&gm, 768 * KiB, 512 * KiB));
	assert_null(gmem_translate(&gm, 768 * KiB + 1, 512 * KiB));
	assert_null(gmem_translate(&gm, UINT64_MAX, 2));
	assert_null(gmem_translate(&gm, 16, UINT64_MAX));
	assert_null(gmem_translate(&gm, UINT64_MAX - 1, UINT64_MAX));
	/* Both regions are views of one memfd: writes land at the right file offset. */
	*(uint8_t *)gmem_translate(&gm, 768 * KiB, 1) = 0x77;
	assert_int_equal(pread(gm.fd, &(uint8_t){ 0 }, 1, 512 * KiB), 1);
	{
		uint8_t v = 0;

		assert_int_equal(pread(gm.fd, &v, 1, 512 * KiB), 1);
		assert_int_equal(v, 0x77);
	}
	assert_int_equal(gmem_read(&gm, 512 * KiB, &(uint8_t){ 0 }, 1), -EFAULT);
	gmem_destroy(&gm);
	assert_int_equal(gmem_create(&gm, 1000, 0, 0), -EINVAL); /* not page aligned */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dispatch_and_offsets),
		cmocka_unit_test(test_overlap_and_unregister),
		cmocka_unit_test(test_gmem_translate_bounds),
	};
	return cmocka_run_group_tests_name("bus", tests, NULL, NULL);
}
