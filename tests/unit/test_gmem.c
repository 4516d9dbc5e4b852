/* Guest memory: layout around the hole, 2 MiB-aligned mappings, sharing through the memfd, bounds. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/gmem.h"


static void test_flat_ram_is_one_region(void **state)
{
	struct gmem gm;

	(void)state;
	assert_int_equal(gmem_create(&gm, 64 * MiB, 0, 0), 0);
	assert_int_equal(gm.nr_regions, 1);
	assert_int_equal(gm.regions[0].gpa, 0);
	assert_int_equal(gm.regions[0].size, 64 * MiB);
	assert_int_equal(gmem_end(&gm), 64 * MiB);
	gmem_destroy(&gm);
	assert_int_equal(gm.fd, -1);
}

static void test_ram_is_relocated_above_the_hole(void **state)
{
	struct gmem gm;

	(void)state;
	/* 48 MiB of RAM, a hole at [32 MiB, 40 MiB): 32 below, 16 from 40 MiB on. */
	assert_int_equal(gmem_create(&gm, 48 * MiB, 32 * MiB, 40 * MiB), 0);
	assert_int_equal(gm.nr_regions, 2);
	assert_int_equal(gm.regions[0].gpa, 0);
	assert_int_equal(gm.regions[0].size, 32 * MiB);
	assert_int_equal(gm.regions[1].gpa, 40 * MiB);
	assert_int_equal(gm.regions[1].size, 16 * MiB);
	assert_int_equal(gm.regions[1].fd_offset, 32 * MiB);
	assert_int_equal(gmem_end(&gm), 56 * MiB);
	assert_null(gmem_translate(&gm, 32 * MiB, 1));     /* in the hole */
	assert_null(gmem_translate(&gm, 32 * MiB - 1, 2)); /* straddles RAM and hole */
	assert_non_null(gmem_translate(&gm, 40 * MiB, 16 * MiB));
	gmem_destroy(&gm);
}

static void test_mappings_are_2mib_aligned(void **state)
{
	struct gmem gm;

	(void)state;
	/* KVM maps a huge page only where host address and gpa agree modulo 2 MiB. */
	for (int i = 0; i < 4; i++) {
		assert_int_equal(gmem_create(&gm, 48 * MiB, 32 * MiB, 40 * MiB), 0);
		for (unsigned r = 0; r < gm.nr_regions; r++)
			assert_int_equal((uintptr_t)gm.regions[r].hva % (2 * MiB),
					 gm.regions[r].gpa % (2 * MiB));
		gmem_destroy(&gm);
	}
}

static void test_guest_writes_are_visible_through_the_memfd(void **state)
{
	struct gmem gm;
	char got[16];

	(void)state;
	/* What a vhost-user backend or a snapshot sees: the memfd at the region's offset. */
	assert_int_equal(gmem_create(&gm, 48 * MiB, 32 * MiB, 40 * MiB), 0);
	assert_int_equal(gmem_write(&gm, 40 * MiB + 4096, "above the hole", 15), 0);
	assert_int_equal(pread(gm.fd, got, 15, (off_t)(32 * MiB + 4096)), 15);
	assert_memory_equal(got, "above the hole", 15);
	assert_int_equal(pwrite(gm.fd, "from the fd", 12, 8192), 12);
	assert_int_equal(gmem_read(&gm, 8192, got, 12), 0);
	assert_memory_equal(got, "from the fd", 12);
	gmem_destroy(&gm);
}

static void test_out_of_range_accesses_fail(void **state)
{
	struct gmem gm;
	char buf[8] = { 0 };

	(void)state;
	assert_int_equal(gmem_create(&gm, 8 * MiB, 0, 0), 0);
	assert_int_equal(gmem_read(&gm, 8 * MiB, buf, 1), -EFAULT);
	assert_int_equal(gmem_write(&gm, 8 * MiB - 4, buf, 8), -EFAULT);
	assert_null(gmem_translate(&gm, UINT64_MAX, 2));
	assert_null(gmem_translate(&gm, 4096, UINT64_MAX));
	assert_non_null(gmem_translate(&gm, 8 * MiB - 8, 8));
	gmem_destroy(&gm);
}

static void test_bad_arguments_are_refused(void **state)
{
	struct gmem gm;

	(void)state;
	assert_int_equal(gmem_create(&gm, 0, 0, 0), -EINVAL);
	assert_int_equal(gmem_create(&gm, 4097, 0, 0), -EINVAL);
	assert_int_equal(gmem_create(&gm, 8 * MiB, 40 * MiB, 32 * MiB), -EINVAL);
	assert_int_equal(gmem_create(&gm, 8 * MiB, 4095, 8192), -EINVAL);
	assert_int_equal(gm.fd, -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flat_ram_is_one_region),
		cmocka_unit_test(test_ram_is_relocated_above_the_hole),
		cmocka_unit_test(test_mappings_are_2mib_aligned),
		cmocka_unit_test(test_guest_writes_are_visible_through_the_memfd),
		cmocka_unit_test(test_out_of_range_accesses_fail),
		cmocka_unit_test(test_bad_arguments_are_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
