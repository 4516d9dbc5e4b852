#include "vmm/gmem.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define HUGE_PAGE_SIZE (2ULL << 20)

/*
 * Maps [fd_offset, fd_offset + size) of the memfd at a 2 MiB-aligned address
 * and asks for transparent huge pages: with gpa and offset 2 MiB-aligned too,
 * KVM can then map guest RAM with 2 MiB pages (far fewer nested page faults,
 * and TLB reach). Whether the kernel gives them for a memfd depends on
 * /sys/kernel/mm/transparent_hugepage/shmem_enabled ("advise" or "always").
 */
static void *map_ram(int fd, uint64_t size, uint64_t fd_offset)
{
	uint64_t span = size + HUGE_PAGE_SIZE;
	uint8_t *area, *hva;
	uintptr_t aligned;

	area = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (area == MAP_FAILED)
		return MAP_FAILED;
	aligned = ALIGN_UP((uintptr_t)area, HUGE_PAGE_SIZE);
	hva = mmap((void *)aligned, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE | MAP_FIXED,
		   fd, (off_t)fd_offset);
	if (hva == MAP_FAILED) {
		int e = errno;

		munmap(area, span);
		errno = e;
		return MAP_FAILED;
	}
	/* Give back the slack on both sides of the aligned mapping. */
	if (hva > area)
		munmap(area, (size_t)(hva - area));
	if (area + span > hva + size)
		munmap(hva + size, (size_t)(area + span - (hva + size)));
	return hva;
}

static int gmem_add_region(struct gmem *gm, uint64_t gpa, uint64_t size, uint64_t fd_offset)
{
	struct gmem_region *r = &gm->regions[gm->nr_regions];
	void *hva;

	hva = map_ram(gm->fd, size, fd_offset);
	if (hva == MAP_FAILED)
		return -errno;
	/* Guest RAM in a core dump is noise, and may hold the guest's secrets. */
	madvise(hva, size, MADV_DONTDUMP);
	/* Best effort: EINVAL where the kernel has no THP. */
	madvise(hva, size, MADV_HUGEPAGE);
	r->gpa = gpa;
	r->size = size;
	r->hva = hva;
	r->fd_offset = fd_offset;
	gm->nr_regions++;
	return 0;
}

int gmem_create(struct gmem *gm, uint64_t ram_size, uint64_t hole_start, uint64_t hole_end)
{
	uint64_t low;
	int ret;

	memset(gm, 0, sizeof(*gm));
	gm->fd = -1;
	if (ram_size == 0 || !IS_ALIGNED(ram_size, 4096) || hole_end < hole_start ||
	    !IS_ALIGNED(hole_start, 4096) || !IS_ALIGNED(hole_end, 4096))
		return -EINVAL;

	gm->fd = memfd_create("vmm-guest-ram", MFD_CLOEXEC);
	if (gm->fd < 0)
		return -errno;
	if (ftruncate(gm->fd, (off_t)ram_size) < 0) {
		ret = -errno;
		goto err_close;
	}
	gm->ram_size = ram_size;

	low = hole_start < hole_end ? MIN(ram_size, hole_start) : ram_size;
	ret = gmem_add_region(gm, 0, low, 0);
	if (ret)
		goto err_close;
	if (ram_size > low) {
		ret = gmem_add_region(gm, hole_end, ram_size - low, low);
		if (ret)
			goto err_unmap;
	}
	return 0;

err_unmap:
	munmap(gm->regions[0].hva, gm->regions[0].size);
	gm->nr_regions = 0;
err_close:
	close(gm->fd);
	gm->fd = -1;
	return ret;
}

void gmem_destroy(struct gmem *gm)
{
	for (unsigned i = 0; i < gm->nr_regions; i++)
		munmap(gm->regions[i].hva, gm->regions[i].size);
	gm->nr_regions = 0;
	if (gm->fd >= 0)
		close(gm->fd);
	gm->fd = -1;
}

int gmem_read(const struct gmem *gm, uint64_t gpa, void *buf, uint64_t len)
{
	const void *p = gmem_translate(gm, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(buf, p, len);
	return 0;
}

int gmem_write(const struct gmem *gm, uint64_t gpa, const void *buf, uint64_t len)
{
	void *p = gmem_translate(gm, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(p, buf, len);
	return 0;
}

uint64_t gmem_end(const struct gmem *gm)
{
	uint64_t end = 0;

	for (unsigned i = 0; i < gm->nr_regions; i++)
		end = MAX(end, gm->regions[i].gpa + gm->regions[i].size);
	return end;
}
