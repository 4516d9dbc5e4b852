/*
 * Guest memory: layout around the hole, 2 MiB-aligned mappings, the three
 * backings (private, shared memfd, hugetlbfs), the sparse memory file and its
 * copy-on-write mapping, bounds.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
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
	/* What a vhost-user backend sees: the memfd at the region's offset. */
	assert_int_equal(gmem_create_backed(&gm, 48 * MiB, 32 * MiB, 40 * MiB, GMEM_SHARED), 0);
	assert_int_equal(gm.backing, GMEM_SHARED);
	assert_true(gm.fd >= 0);
	if (gm.huge_tmpfs) {
		struct stat st;

		/* A tmpfs file cannot be sealed; its size is the RAM's. */
		assert_int_equal(fstat(gm.fd, &st), 0);
		assert_int_equal(st.st_size, 48 * MiB);
	} else {
		/* Sealed: whoever the fd is shared with cannot resize guest RAM under us. */
		assert_int_equal(fcntl(gm.fd, F_GET_SEALS) & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
				 F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
		assert_int_equal(ftruncate(gm.fd, 4096), -1);
		assert_int_equal(ftruncate(gm.fd, 64 * MiB), -1);
	}
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

static void test_default_backing_is_private_anonymous(void **state)
{
	struct gmem gm;
	char got[8];

	(void)state;
	assert_int_equal(gmem_create(&gm, 48 * MiB, 32 * MiB, 40 * MiB), 0);
	assert_int_equal(gm.backing, GMEM_PRIVATE);
	assert_int_equal(gm.fd, -1); /* nothing another process could map */
	assert_int_equal(gm.nr_regions, 2);
	assert_int_equal(gm.regions[1].fd_offset, 32 * MiB); /* its place in a memory file */
	assert_int_equal(gmem_write(&gm, 40 * MiB, "private", 8), 0);
	assert_int_equal(gmem_read(&gm, 40 * MiB, got, 8), 0);
	assert_string_equal(got, "private");
	gmem_destroy(&gm);
}

static void read_policy(const char *path, char *policy, size_t len)
{
	FILE *f = fopen(path, "re");

	policy[0] = '\0';
	if (f) {
		if (!fgets(policy, (int)len, f))
			policy[0] = '\0';
		fclose(f);
	}
}

/* Where the host's THP policy grants them, touched private RAM gets 2 MiB pages. */
static void test_private_ram_gets_huge_pages(void **state)
{
	char policy[128];
	struct gmem gm;
	int64_t huge;

	(void)state;
	read_policy("/sys/kernel/mm/transparent_hugepage/enabled", policy, sizeof(policy));
	assert_int_equal(gmem_create(&gm, 16 * MiB, 0, 0), 0);
	memset(gm.regions[0].hva, 0x5a, 8 * MiB);
	huge = gmem_huge_bytes(&gm);
	assert_true(huge >= 0);
	if (strstr(policy, "[always]") || strstr(policy, "[madvise]"))
		assert_true(huge >= (int64_t)(2 * MiB));
	else
		printf("# THP is off here (%s): huge pages not checked\n", policy);
	assert_true(huge <= (int64_t)(16 * MiB));
	gmem_destroy(&gm);
}

/*
 * Shared RAM gets huge pages under every shmem THP policy but "deny": where
 * the policy is "never" (the default), from a huge=always tmpfs of vmm's
 * own; otherwise from the memfd, as the policy gives them.
 */
static void test_shared_ram_gets_huge_pages(void **state)
{
	char policy[128];
	struct gmem gm;
	int64_t huge;

	(void)state;
	read_policy("/sys/kernel/mm/transparent_hugepage/shmem_enabled", policy, sizeof(policy));
	assert_int_equal(gmem_create_backed(&gm, 16 * MiB, 0, 0, GMEM_SHARED), 0);
	memset(gm.regions[0].hva, 0x5a, 8 * MiB);
	huge = gmem_huge_bytes(&gm);
	assert_true(huge >= 0 && huge <= (int64_t)(16 * MiB));
	if (strstr(policy, "[never]")) {
		if (!gm.huge_tmpfs) {
			/* The fallback: a sealed memfd, and a reason to name. */
			assert_true(gm.huge_tmpfs_err > 0);
			assert_int_equal(fcntl(gm.fd, F_GET_SEALS) & F_SEAL_SHRINK, F_SEAL_SHRINK);
			printf("# no huge tmpfs here (%s): huge pages not checked\n", strerror(gm.huge_tmpfs_err));
		} else {
			assert_true(huge >= (int64_t)(2 * MiB));
		}
	} else {
		assert_false(gm.huge_tmpfs);
		assert_int_equal(gm.huge_tmpfs_err, 0);
		if (strstr(policy, "[advise]") || strstr(policy, "[always]") ||
		    strstr(policy, "[within_size]") || strstr(policy, "[force]"))
			assert_true(huge >= (int64_t)(2 * MiB));
		else
			printf("# shmem THP is '%s' here: huge pages not checked\n", policy);
	}
	gmem_destroy(&gm);
}

/*
 * The huge tmpfs file, made in this process (where it may mount) and by a
 * child in a user namespace of its own: unnamed, of the size asked, shared
 * through any mapping, 2 MiB pages when mapped aligned.
 */
static void check_huge_tmpfs(bool own_userns)
{
	struct gmem gm = { .fd = -1 };
	uint8_t *p, *a;
	struct stat st;
	char got[8];
	int fd;

	fd = gmem_huge_tmpfs_fd(8 * MiB, own_userns);
	if (fd < 0) {
		/* No CAP_SYS_ADMIN and no user namespaces: gmem falls back to a memfd. */
		assert_true(fd == -EPERM || fd == -ENOSPC || fd == -EINVAL || fd == -ENOSYS ||
			    fd == -EACCES || fd == -EUSERS);
		printf("# %s: %s; not checked\n", own_userns ? "user namespace" : "in process",
		       strerror(-fd));
		return;
	}
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_size, 8 * MiB);
	assert_int_equal(st.st_nlink, 0);
	/* Mapped 2 MiB-aligned, as gmem maps guest RAM. */
	p = mmap(NULL, 10 * MiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(p != MAP_FAILED);
	a = (uint8_t *)(((uintptr_t)p + 2 * MiB - 1) & ~(uintptr_t)(2 * MiB - 1));
	assert_ptr_equal(mmap(a, 8 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0), a);
	memset(a, 0x77, 8 * MiB);
	memcpy(a + 5 * MiB, "shared", 7);
	assert_int_equal(pread(fd, got, 7, 5 * MiB), 7);
	assert_string_equal(got, "shared");
	gm.nr_regions = 1;
	gm.regions[0].hva = a;
	gm.regions[0].size = 8 * MiB;
	assert_true(gmem_huge_bytes(&gm) >= (int64_t)(2 * MiB));
	munmap(p, 10 * MiB);
	/* The instance holds just this file: it cannot grow past the RAM's size. */
	assert_int_equal(fallocate(fd, 0, 8 * MiB, 2 * MiB), -1);
	close(fd);
}

static void test_huge_tmpfs_in_process(void **state)
{
	(void)state;
	check_huge_tmpfs(false);
}

static void test_huge_tmpfs_in_a_user_namespace(void **state)
{
	(void)state;
	check_huge_tmpfs(true);
}

static void test_hugetlb_backing_or_a_named_shortfall(void **state)
{
	struct gmem gm;
	long short_by;
	int ret;

	(void)state;
	/* Sizes and holes must be whole 2 MiB pages. */
	assert_int_equal(gmem_create_backed(&gm, 3 * MiB, 0, 0, GMEM_HUGETLB), -EINVAL);
	assert_int_equal(gmem_create_backed(&gm, 8 * MiB, 1 * MiB, 5 * MiB, GMEM_HUGETLB), -EINVAL);
	assert_int_equal(gm.fd, -1);

	short_by = gmem_hugetlb_shortfall(8 * MiB);
	ret = gmem_create_backed(&gm, 8 * MiB, 0, 0, GMEM_HUGETLB);
	if (short_by > 0) {
		/* Reserved at mmap: a short pool fails now, not with a SIGBUS later. */
		assert_int_equal(ret, -ENOMEM);
		assert_int_equal(gm.fd, -1);
		printf("# host has %ld too few huge pages: hugetlbfs mapping not checked\n", short_by);
		return;
	}
	assert_int_equal(short_by, 0);
	assert_int_equal(ret, 0);
	assert_int_equal(gm.backing, GMEM_HUGETLB);
	assert_true(gm.fd >= 0);
	assert_int_equal((uintptr_t)gm.regions[0].hva % (2 * MiB), 0);
	memset(gm.regions[0].hva, 1, 8 * MiB);
	assert_int_equal(gmem_huge_bytes(&gm), (int64_t)(8 * MiB));
	gmem_destroy(&gm);
}

static void test_hugetlb_shortfall_counts_pages(void **state)
{
	(void)state;
	/* Nobody has 2^40 free huge pages: the shortfall is the whole request, less what is free. */
	long s = gmem_hugetlb_shortfall(1ULL << 61);

	assert_true(s > 0);
	assert_true(s <= (long)((1ULL << 61) / (2 * MiB)));
	assert_true(s >= (long)((1ULL << 61) / (2 * MiB)) - 1000000);
}

static int memory_file(void)
{
	char path[] = "/tmp/test_gmem.XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	return fd;
}

static void test_memory_file_round_trip_is_sparse_and_copy_on_write(void **state)
{
	struct gmem gm, back;
	char got[32];
	struct stat st;
	int fd;

	(void)state;
	assert_int_equal(gmem_create(&gm, 48 * MiB, 32 * MiB, 40 * MiB), 0);
	assert_int_equal(gmem_write(&gm, 0, "first page", 11), 0);
	assert_int_equal(gmem_write(&gm, 32 * MiB - 5, "edge", 5), 0);
	assert_int_equal(gmem_write(&gm, 40 * MiB + 12345, "above the hole", 15), 0);
	assert_int_equal(gmem_write(&gm, 56 * MiB - 4, "end", 4), 0);

	fd = memory_file();
	assert_int_equal(gmem_save_file(&gm, fd), 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 48 * MiB);
	/* Four written pages; the rest are holes (a file system may round up a little). */
	assert_true((uint64_t)st.st_blocks * 512 <= 1 * MiB);
	assert_int_equal(pread(fd, got, 15, 32 * MiB + 12345), 15);
	assert_memory_equal(got, "above the hole", 15);

	assert_int_equal(gmem_create_from_file(&back, fd, 48 * MiB, 32 * MiB, 40 * MiB), 0);
	assert_int_equal(back.backing, GMEM_FILE);
	assert_int_equal(gmem_read(&back, 0, got, 11), 0);
	assert_memory_equal(got, "first page", 11);
	assert_int_equal(gmem_read(&back, 32 * MiB - 5, got, 5), 0);
	assert_memory_equal(got, "edge", 5);
	assert_int_equal(gmem_read(&back, 40 * MiB + 12345, got, 15), 0);
	assert_memory_equal(got, "above the hole", 15);
	assert_int_equal(gmem_read(&back, 56 * MiB - 4, got, 4), 0);
	assert_memory_equal(got, "end", 4);
	assert_int_equal(gmem_read(&back, 20 * MiB, got, 8), 0);
	assert_memory_equal(got, "\0\0\0\0\0\0\0\0", 8);

	/* The restored guest's writes stay private: the file is the snapshot, unchanged. */
	assert_int_equal(gmem_write(&back, 0, "CHANGED!!!", 11), 0);
	assert_int_equal(pread(fd, got, 11, 0), 11);
	assert_memory_equal(got, "first page", 11);
	gmem_destroy(&back);
	gmem_destroy(&gm);

	/* A file of another size, or no regular file, is refused. */
	assert_int_equal(gmem_create_from_file(&back, fd, 64 * MiB, 32 * MiB, 40 * MiB), -EINVAL);
	assert_int_equal(ftruncate(fd, 48 * MiB - 4096), 0);
	assert_int_equal(gmem_create_from_file(&back, fd, 48 * MiB, 32 * MiB, 40 * MiB), -EINVAL);
	close(fd);
	{
		int p[2];

		assert_int_equal(pipe(p), 0);
		assert_int_equal(gmem_create_from_file(&back, p[0], 48 * MiB, 32 * MiB, 40 * MiB), -EINVAL);
		close(p[0]);
		close(p[1]);
	}
}

static void test_shared_memory_saves_too(void **state)
{
	struct gmem gm, back;
	char got[8];
	int fd;

	(void)state;
	assert_int_equal(gmem_create_backed(&gm, 8 * MiB, 0, 0, GMEM_SHARED), 0);
	assert_int_equal(gmem_write(&gm, 8 * MiB - 7, "shared", 7), 0);
	fd = memory_file();
	assert_int_equal(gmem_save_file(&gm, fd), 0);
	assert_int_equal(gmem_create_from_file(&back, fd, 8 * MiB, 0, 0), 0);
	close(fd); /* the mapping keeps the file */
	assert_int_equal(gmem_read(&back, 8 * MiB - 7, got, 7), 0);
	assert_string_equal(got, "shared");
	gmem_destroy(&back);
	gmem_destroy(&gm);
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
		cmocka_unit_test(test_default_backing_is_private_anonymous),
		cmocka_unit_test(test_private_ram_gets_huge_pages),
		cmocka_unit_test(test_shared_ram_gets_huge_pages),
		cmocka_unit_test(test_huge_tmpfs_in_process),
		cmocka_unit_test(test_huge_tmpfs_in_a_user_namespace),
		cmocka_unit_test(test_hugetlb_backing_or_a_named_shortfall),
		cmocka_unit_test(test_hugetlb_shortfall_counts_pages),
		cmocka_unit_test(test_memory_file_round_trip_is_sparse_and_copy_on_write),
		cmocka_unit_test(test_shared_memory_saves_too),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
