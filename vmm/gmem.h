/*
 * Guest memory, laid out as up to GMEM_MAX_REGIONS guest-physical regions
 * around the PCI hole, with one of three backings:
 *
 *   GMEM_PRIVATE  private anonymous memory with MADV_HUGEPAGE: gets 2 MiB
 *                 pages under the kernel's default THP policy ("madvise" or
 *                 "always"), as Firecracker and Cloud Hypervisor do.
 *   GMEM_SHARED   a file mapped MAP_SHARED, so another process (a vhost-user
 *                 backend) can map the very same pages. Where the host's
 *                 .../transparent_hugepage/shmem_enabled is "never" (the
 *                 default), which would leave a memfd with 4 KiB pages: a file
 *                 on a tmpfs instance of our own mounted with huge=always
 *                 (gmem_huge_tmpfs_fd). Otherwise, or when that tmpfs cannot
 *                 be made: a memfd, its size sealed (nobody can truncate it
 *                 under us), huge pages as the policy says.
 *   GMEM_HUGETLB  a memfd with MFD_HUGETLB: 2 MiB pages from the host's
 *                 reserved pool (vm.nr_hugepages), shared too.
 *
 * Whatever the backing, the regions are numbered as one flat RAM image: a
 * region's fd_offset is where it lies in the memfd and in a memory file
 * (gmem_save_file, gmem_create_from_file).
 *
 * gmem_translate() is the one chokepoint from guest-physical ranges to host
 * pointers. Nobody else does arithmetic on guest addresses.
 */
#ifndef VMM_GMEM_H
#define VMM_GMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/util.h"

#define GMEM_MAX_REGIONS 4
#define GMEM_HUGE_PAGE_SIZE (2 * MiB)

enum gmem_backing {
	GMEM_PRIVATE,
	GMEM_SHARED,
	GMEM_HUGETLB,
	GMEM_FILE,    /* a memory file mapped privately, copy-on-write (restore) */
};

struct gmem_region {
	uint64_t gpa;      /* guest-physical start */
	uint64_t size;     /* bytes, page aligned */
	uint8_t *hva;      /* host mapping */
	uint64_t fd_offset;/* offset of this region in the flat RAM image (memfd, file) */
};

struct gmem {
	int fd;            /* the shared file (GMEM_SHARED, GMEM_HUGETLB); -1 otherwise */
	bool huge_tmpfs;   /* GMEM_SHARED: fd is on our huge=always tmpfs, not a memfd */
	int huge_tmpfs_err;/* GMEM_SHARED: errno when that tmpfs was tried and failed, else 0 */
	enum gmem_backing backing;
	uint64_t ram_size; /* total RAM, sum of the regions */
	unsigned nr_regions;
	struct gmem_region regions[GMEM_MAX_REGIONS];
};

/*
 * Create ram_size bytes of guest RAM with the given backing (not GMEM_FILE).
 * RAM that would overlap the hole [hole_start, hole_end) is relocated to
 * start at hole_end. Pass hole_start == hole_end for one flat region.
 * Returns 0 or -errno: -EINVAL for bad sizes (GMEM_HUGETLB needs 2 MiB
 * multiples), -ENOMEM when the host cannot give the memory (for
 * GMEM_HUGETLB: too few free huge pages; gmem_hugetlb_shortfall() says how many).
 */
int gmem_create_backed(struct gmem *gm, uint64_t ram_size, uint64_t hole_start,
		       uint64_t hole_end, enum gmem_backing backing) WUR;

/*
 * An unnamed size-byte file on a new tmpfs instance mounted with huge=always
 * and attached nowhere, so its pages are 2 MiB whatever shmem_enabled says
 * (except "deny"). Made in this process when it may mount (CAP_SYS_ADMIN),
 * else, or with own_userns, by a child in a user namespace of its own (the
 * unprivileged way, where the host allows user namespaces). fd or -errno.
 */
int gmem_huge_tmpfs_fd(uint64_t size, bool own_userns) WUR;

/* gmem_create_backed() with the default backing, GMEM_PRIVATE. */
int gmem_create(struct gmem *gm, uint64_t ram_size, uint64_t hole_start,
		uint64_t hole_end) WUR;

/*
 * Map a memory file written by gmem_save_file() as guest RAM, privately:
 * pages are read from the file when the guest first touches them, and the
 * guest's writes never reach the file. The file must be exactly ram_size
 * bytes (-EINVAL otherwise). The caller may close fd afterwards.
 */
int gmem_create_from_file(struct gmem *gm, int fd, uint64_t ram_size, uint64_t hole_start,
			  uint64_t hole_end) WUR;

/*
 * Read a memory file written by gmem_save_file() into gm's RAM (for a
 * backing another process shares, which cannot be a private mapping of the
 * file): data only, holes stay the zeroes fresh RAM has. The file must be
 * exactly ram_size bytes (-EINVAL). 0 or -errno.
 */
int gmem_load_file(struct gmem *gm, int fd) WUR;

void gmem_destroy(struct gmem *gm);

/*
 * Write guest RAM to fd as the flat image (region after region, at their
 * fd_offset), page by page; all-zero pages are left as holes, so the file is
 * sparse. The file ends up exactly ram_size bytes. Returns 0 or -errno.
 */
int gmem_save_file(const struct gmem *gm, int fd) WUR;

/*
 * How many more free 2 MiB huge pages the host needs for ram_size bytes of
 * GMEM_HUGETLB memory (0: enough), from /proc/meminfo; -errno if unreadable.
 */
long gmem_hugetlb_shortfall(uint64_t ram_size);

#define GMEM_THP_SYSFS "/sys/kernel/mm/transparent_hugepage/"

/*
 * The word in [brackets] of GMEM_THP_SYSFS name ("enabled", "shmem_enabled":
 * "always [madvise] never" gives "madvise"), or "unknown".
 */
void gmem_thp_policy(const char *name, char *out, size_t len);

/* "private", "shared", "hugetlbfs", "file": for messages and the API. */
const char *gmem_backing_name(enum gmem_backing backing);

/*
 * Bytes of guest RAM the host currently backs with huge pages (2 MiB THP or
 * hugetlbfs), from /proc/self/smaps; -errno if unreadable.
 */
int64_t gmem_huge_bytes(const struct gmem *gm);

/*
 * Host pointer for [gpa, gpa + len), or NULL when any byte of it lies outside
 * guest RAM or the range straddles two regions. Overflow-safe for any inputs.
 */
static inline void *gmem_translate(const struct gmem *gm, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < gm->nr_regions; i++) {
		const struct gmem_region *r = &gm->regions[i];

		if (gpa < r->gpa || gpa - r->gpa >= r->size)
			continue;
		if (len > r->size - (gpa - r->gpa))
			return NULL;
		return r->hva + (gpa - r->gpa);
	}
	return NULL;
}

/* Copy in or out of guest memory; -EFAULT when the range is not all RAM. */
int gmem_read(const struct gmem *gm, uint64_t gpa, void *buf, uint64_t len) WUR;
int gmem_write(const struct gmem *gm, uint64_t gpa, const void *buf, uint64_t len) WUR;

/* Highest guest-physical address of RAM plus one. */
uint64_t gmem_end(const struct gmem *gm);

#endif
