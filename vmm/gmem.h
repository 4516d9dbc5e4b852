/*
 * Guest memory: one memfd, mapped MAP_SHARED so that vhost-user backends and
 * snapshots can map the very same pages, laid out as up to GMEM_MAX_REGIONS
 * guest-physical regions.
 *
 * gmem_translate() is the one chokepoint from guest-physical ranges to host
 * pointers. Nobody else does arithmetic on guest addresses.
 */
#ifndef VMM_GMEM_H
#define VMM_GMEM_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/util.h"

#define GMEM_MAX_REGIONS 4

struct gmem_region {
	uint64_t gpa;      /* guest-physical start */
	uint64_t size;     /* bytes, page aligned */
	uint8_t *hva;      /* host mapping */
	uint64_t fd_offset;/* offset of this region within the memfd */
};

struct gmem {
	int fd;            /* the memfd; -1 when not created */
	uint64_t ram_size; /* total RAM, sum of the regions */
	unsigned nr_regions;
	struct gmem_region regions[GMEM_MAX_REGIONS];
};

/*
 * Create ram_size bytes of guest RAM. RAM that would overlap the hole
 * [hole_start, hole_end) is relocated to start at hole_end. Pass
 * hole_start == hole_end for one flat region. Returns 0 or -errno.
 */
int gmem_create(struct gmem *gm, uint64_t ram_size, uint64_t hole_start,
		uint64_t hole_end) WUR;
void gmem_destroy(struct gmem *gm);

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
