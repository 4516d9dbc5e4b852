#include "vmm/gmem.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/memfd.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21 << 26)
#endif

#define PAGE_SIZE 4096ULL

const char *gmem_backing_name(enum gmem_backing backing)
{
	switch (backing) {
	case GMEM_PRIVATE: return "private";
	case GMEM_SHARED: return "shared";
	case GMEM_HUGETLB: return "hugetlbfs";
	case GMEM_FILE: return "file";
	}
	return "?";
}

/*
 * Maps size bytes at a 2 MiB-aligned address: anonymous memory when fd < 0,
 * else [fd_offset, fd_offset + size) of fd. With gpa and offset 2 MiB-aligned
 * too, KVM can map guest RAM with 2 MiB pages (far fewer nested page faults,
 * and TLB reach).
 */
static void *map_ram(int fd, uint64_t size, uint64_t fd_offset, int flags)
{
	uint64_t span = size + GMEM_HUGE_PAGE_SIZE;
	uint8_t *area, *hva;
	uintptr_t aligned;

	area = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (area == MAP_FAILED)
		return MAP_FAILED;
	aligned = ALIGN_UP((uintptr_t)area, GMEM_HUGE_PAGE_SIZE);
	hva = mmap((void *)aligned, size, PROT_READ | PROT_WRITE, flags | MAP_FIXED, fd,
		   fd < 0 ? 0 : (off_t)fd_offset);
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

static int map_flags(enum gmem_backing backing)
{
	switch (backing) {
	case GMEM_PRIVATE:
		return MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
	case GMEM_SHARED:
		return MAP_SHARED | MAP_NORESERVE;
	case GMEM_HUGETLB:
		/* No MAP_NORESERVE: the huge pages are reserved now, so a short pool
		 * fails here with ENOMEM instead of a SIGBUS in the middle of a boot. */
		return MAP_SHARED;
	case GMEM_FILE:
		return MAP_PRIVATE | MAP_NORESERVE;
	}
	return 0;
}

static int gmem_add_region(struct gmem *gm, int fd, uint64_t gpa, uint64_t size, uint64_t fd_offset)
{
	struct gmem_region *r = &gm->regions[gm->nr_regions];
	void *hva;

	hva = map_ram(fd, size, fd_offset, map_flags(gm->backing));
	if (hva == MAP_FAILED)
		return -errno;
	/* Guest RAM in a core dump is noise, and may hold the guest's secrets. */
	madvise(hva, size, MADV_DONTDUMP);
	/* Best effort (EINVAL where the kernel has no THP); hugetlbfs needs none. */
	if (gm->backing != GMEM_HUGETLB)
		madvise(hva, size, MADV_HUGEPAGE);
	r->gpa = gpa;
	r->size = size;
	r->hva = hva;
	r->fd_offset = fd_offset;
	gm->nr_regions++;
	return 0;
}

static bool layout_ok(uint64_t ram_size, uint64_t hole_start, uint64_t hole_end)
{
	return ram_size != 0 && IS_ALIGNED(ram_size, PAGE_SIZE) && hole_end >= hole_start &&
	       IS_ALIGNED(hole_start, PAGE_SIZE) && IS_ALIGNED(hole_end, PAGE_SIZE);
}

/* Lay RAM out around the hole, mapping fd (or anonymous memory when fd < 0). */
static int map_regions(struct gmem *gm, int fd, uint64_t hole_start, uint64_t hole_end)
{
	uint64_t low = hole_start < hole_end ? MIN(gm->ram_size, hole_start) : gm->ram_size;
	int ret;

	ret = gmem_add_region(gm, fd, 0, low, 0);
	if (ret)
		return ret;
	if (gm->ram_size > low) {
		ret = gmem_add_region(gm, fd, hole_end, gm->ram_size - low, low);
		if (ret) {
			munmap(gm->regions[0].hva, gm->regions[0].size);
			gm->nr_regions = 0;
			return ret;
		}
	}
	return 0;
}

static void gmem_init(struct gmem *gm, uint64_t ram_size, enum gmem_backing backing)
{
	memset(gm, 0, sizeof(*gm));
	gm->fd = -1;
	gm->backing = backing;
	gm->ram_size = ram_size;
}

/*
 * An unnamed file of size bytes on a tmpfs instance of its own, made with
 * huge=always and attached nowhere (fsopen, fsmount, O_TMPFILE): its pages
 * are 2 MiB whatever shmem_enabled says (unless "deny"). The instance's size
 * is the file's, so the file can never meet ENOSPC (a SIGBUS) while it grows
 * into its pages; limit is that size in bytes, as a string. Needs
 * CAP_SYS_ADMIN over the caller's mount namespace. The fd or -errno.
 */
static int huge_tmpfs_here(uint64_t size, const char *limit)
{
	int fsfd, mfd, fd, e;

	fsfd = fsopen("tmpfs", FSOPEN_CLOEXEC);
	if (fsfd < 0)
		return -errno;
	if (fsconfig(fsfd, FSCONFIG_SET_STRING, "huge", "always", 0) < 0 ||
	    fsconfig(fsfd, FSCONFIG_SET_STRING, "size", limit, 0) < 0 ||
	    fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
		e = errno;
		close(fsfd);
		return -e;
	}
	mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
	e = errno;
	close(fsfd);
	if (mfd < 0)
		return -e;
	/* The open file holds the detached mount; nothing else needs it. */
	fd = openat(mfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	e = errno;
	close(mfd);
	if (fd < 0)
		return -e;
	if (ftruncate(fd, (off_t)size) < 0) {
		e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

static bool write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	size_t len = strlen(s);
	bool ok;

	if (fd < 0)
		return false;
	ok = write(fd, s, len) == (ssize_t)len;
	close(fd);
	return ok;
}

/*
 * huge_tmpfs_here() for a caller without CAP_SYS_ADMIN: a child process
 * makes a user namespace of its own (where it has that capability over a new
 * mount namespace), makes the file there and passes it back. The child
 * only makes system calls between fork and _exit (its strings are made before
 * the fork), so a threaded caller is safe.
 */
static int huge_tmpfs_in_userns(uint64_t size, const char *limit)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl = { { 0 } };
	char uid_map[32], gid_map[32];
	int sv[2], err = 0, fd = -1, status;
	struct iovec iov = { .iov_base = &err, .iov_len = sizeof(err) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;
	pid_t pid;
	ssize_t n;

	snprintf(uid_map, sizeof(uid_map), "0 %u 1\n", (unsigned)geteuid());
	snprintf(gid_map, sizeof(gid_map), "0 %u 1\n", (unsigned)getegid());
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		err = -errno;
		close(sv[0]);
		close(sv[1]);
		return err;
	}
	if (pid == 0) {
		if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
			err = -errno;
		else if (!write_str("/proc/self/setgroups", "deny") ||
			 !write_str("/proc/self/uid_map", uid_map) ||
			 !write_str("/proc/self/gid_map", gid_map))
			err = -EPERM;
		else if ((fd = huge_tmpfs_here(size, limit)) < 0)
			err = fd;
		if (fd >= 0) {
			msg.msg_control = ctl.buf;
			msg.msg_controllen = sizeof(ctl.buf);
			cm = CMSG_FIRSTHDR(&msg);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &fd, sizeof(int));
		}
		_exit(sendmsg(sv[1], &msg, MSG_NOSIGNAL) < 0);
	}
	close(sv[1]);
	msg.msg_control = ctl.buf;
	msg.msg_controllen = sizeof(ctl.buf);
	do
		n = recvmsg(sv[0], &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		err = -errno;
	else if (n != sizeof(err))
		err = -EPROTO;
	close(sv[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	cm = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL;
	if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
	    cm->cmsg_len == CMSG_LEN(sizeof(int)))
		memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	else
		fd = -1;
	if (fd >= 0 && err == 0)
		return fd;
	if (fd >= 0)
		close(fd);
	return err ? err : -EPROTO;
}

int gmem_huge_tmpfs_fd(uint64_t size, bool own_userns)
{
	char limit[32];
	int fd;

	snprintf(limit, sizeof(limit), "%" PRIu64, (uint64_t)ALIGN_UP(size, GMEM_HUGE_PAGE_SIZE));
	if (own_userns)
		return huge_tmpfs_in_userns(size, limit);
	fd = huge_tmpfs_here(size, limit);
	return fd == -EPERM ? huge_tmpfs_in_userns(size, limit) : fd;
}

void gmem_thp_policy(const char *name, char *out, size_t len)
{
	char path[128], buf[128] = "";
	const char *open_br, *close_br;
	FILE *f;

	snprintf(out, len, "unknown");
	snprintf(path, sizeof(path), GMEM_THP_SYSFS "%s", name);
	f = fopen(path, "re");
	if (!f)
		return;
	if (fgets(buf, sizeof(buf), f)) {
		open_br = strchr(buf, '[');
		close_br = open_br ? strchr(open_br, ']') : NULL;
		if (close_br)
			snprintf(out, len, "%.*s", (int)(close_br - open_br - 1), open_br + 1);
	}
	fclose(f);
}

/*
 * GMEM_SHARED's file: a sealed memfd when the host's shmem THP policy gives
 * it huge pages (or forbids them everywhere); where the policy is "never" (the
 * default), a file on a huge=always tmpfs of our own, which cannot be sealed.
 * The memfd too when that tmpfs cannot be made (gm->huge_tmpfs_err says why).
 */
static int shared_fd(struct gmem *gm, uint64_t ram_size)
{
	char policy[32];
	int fd;

	if (gm->backing != GMEM_SHARED)
		return -1;
	/* "never" (the default) holds a memfd to 4 KiB pages. */
	gmem_thp_policy("shmem_enabled", policy, sizeof(policy));
	if (!strcmp(policy, "never")) {
		fd = gmem_huge_tmpfs_fd(ram_size, false);
		if (fd >= 0) {
			gm->huge_tmpfs = true;
			return fd;
		}
		gm->huge_tmpfs_err = -fd;
	}
	return -1;
}

/*
 * A memfd of ram_size bytes (MFD_HUGETLB for GMEM_HUGETLB), its size sealed:
 * a process it is shared with (a vhost-user back-end) cannot truncate it and
 * turn our own accesses to guest RAM into SIGBUS. The fd or -errno.
 */
static int sealed_memfd(enum gmem_backing backing, uint64_t ram_size, uint64_t hole_start,
			uint64_t hole_end)
{
	unsigned int mfd_flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
	int fd, e;

	if (backing == GMEM_HUGETLB) {
		/* Every region's size and offset must be whole huge pages. */
		if (!IS_ALIGNED(ram_size, GMEM_HUGE_PAGE_SIZE) ||
		    !IS_ALIGNED(hole_start, GMEM_HUGE_PAGE_SIZE) ||
		    !IS_ALIGNED(hole_end, GMEM_HUGE_PAGE_SIZE))
			return -EINVAL;
		mfd_flags |= MFD_HUGETLB | MFD_HUGE_2MB;
	}
	fd = memfd_create("vmm-guest-ram", mfd_flags);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)ram_size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

int gmem_create_backed(struct gmem *gm, uint64_t ram_size, uint64_t hole_start, uint64_t hole_end,
		       enum gmem_backing backing)
{
	int ret;

	gmem_init(gm, ram_size, backing);
	if (!layout_ok(ram_size, hole_start, hole_end) || backing == GMEM_FILE)
		return -EINVAL;
	if (backing == GMEM_PRIVATE)
		return map_regions(gm, -1, hole_start, hole_end);
	gm->fd = shared_fd(gm, ram_size);
	if (gm->fd < 0) {
		gm->fd = sealed_memfd(backing, ram_size, hole_start, hole_end);
		if (gm->fd < 0) {
			ret = gm->fd;
			gm->fd = -1;
			return ret;
		}
	}
	ret = map_regions(gm, gm->fd, hole_start, hole_end);
	if (ret) {
		close(gm->fd);
		gm->fd = -1;
	}
	return ret;
}

int gmem_create(struct gmem *gm, uint64_t ram_size, uint64_t hole_start, uint64_t hole_end)
{
	return gmem_create_backed(gm, ram_size, hole_start, hole_end, GMEM_PRIVATE);
}

int gmem_create_from_file(struct gmem *gm, int fd, uint64_t ram_size, uint64_t hole_start,
			  uint64_t hole_end)
{
	struct stat st;

	gmem_init(gm, ram_size, GMEM_FILE);
	if (!layout_ok(ram_size, hole_start, hole_end))
		return -EINVAL;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != ram_size)
		return -EINVAL;
	/* The mapping holds the file; gm->fd stays -1 (nothing to share). */
	return map_regions(gm, fd, hole_start, hole_end);
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

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;

	for (size_t i = 0; i < PAGE_SIZE / sizeof(*w); i++)
		if (w[i])
			return false;
	return true;
}

static int write_full(int fd, const uint8_t *buf, uint64_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, buf, MIN(len, 64 * MiB), (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		buf += n;
		len -= (uint64_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int gmem_save_file(const struct gmem *gm, int fd)
{
	int ret;

	/* Start from an empty file: pages never written stay holes. */
	if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)gm->ram_size) < 0)
		return -errno;
	for (unsigned i = 0; i < gm->nr_regions; i++) {
		const struct gmem_region *r = &gm->regions[i];
		uint64_t run = 0; /* bytes of non-zero pages before off */

		for (uint64_t off = 0; off <= r->size; off += PAGE_SIZE) {
			if (off < r->size && !page_is_zero(r->hva + off)) {
				run += PAGE_SIZE;
				continue;
			}
			if (run) {
				ret = write_full(fd, r->hva + off - run, run, r->fd_offset + off - run);
				if (ret)
					return ret;
				run = 0;
			}
		}
	}
	return 0;
}

int gmem_load_file(struct gmem *gm, int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size != gm->ram_size)
		return -EINVAL;
	for (unsigned i = 0; i < gm->nr_regions; i++) {
		const struct gmem_region *r = &gm->regions[i];
		off_t pos = (off_t)r->fd_offset, end = (off_t)(r->fd_offset + r->size);

		/* Only the file's data: a hole is zeroes, which fresh guest RAM already is. */
		while (pos < end) {
			off_t data = lseek(fd, pos, SEEK_DATA), hole;
			int ret;

			if (data < 0 && errno == ENXIO)
				break;                 /* nothing but holes from here */
			if (data < 0)
				data = pos;            /* no SEEK_DATA here: read it all */
			if (data >= end)
				break;
			hole = lseek(fd, data, SEEK_HOLE);
			if (hole < 0 || hole > end)
				hole = end;
			ret = pread_full(fd, r->hva + (data - (off_t)r->fd_offset), (size_t)(hole - data),
					 data);
			if (ret)
				return ret;
			pos = hole;
		}
	}
	return 0;
}

long gmem_hugetlb_shortfall(uint64_t ram_size)
{
	unsigned long free_pages = 0, page_kb = 0;
	bool have_free = false;
	char line[256];
	FILE *f;
	long need;

	f = fopen("/proc/meminfo", "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "HugePages_Free: %lu", &free_pages) == 1)
			have_free = true;
		else
			sscanf(line, "Hugepagesize: %lu kB", &page_kb);
	}
	fclose(f);
	if (!have_free)
		return -ENOENT;
	need = (long)(ALIGN_UP(ram_size, GMEM_HUGE_PAGE_SIZE) / GMEM_HUGE_PAGE_SIZE);
	/* The pool counted is the default size's; MFD_HUGE_2MB takes 2 MiB pages. */
	if (page_kb && page_kb != GMEM_HUGE_PAGE_SIZE / KiB)
		return need;
	return need > (long)free_pages ? need - (long)free_pages : 0;
}

static bool in_guest_ram(const struct gmem *gm, uintptr_t start)
{
	for (unsigned i = 0; i < gm->nr_regions; i++) {
		uintptr_t base = (uintptr_t)gm->regions[i].hva;

		if (start >= base && start - base < gm->regions[i].size)
			return true;
	}
	return false;
}

int64_t gmem_huge_bytes(const struct gmem *gm)
{
	static const char *const fields[] = {
		"AnonHugePages:", "ShmemPmdMapped:", "FilePmdMapped:", "Shared_Hugetlb:",
		"Private_Hugetlb:",
	};
	int64_t total = 0;
	bool ours = false;
	char line[512];
	FILE *f;

	f = fopen("/proc/self/smaps", "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		uintptr_t start, end;
		unsigned long kb;

		/* A mapping's header: "start-end perms offset dev inode [path]". */
		if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " ", &start, &end) == 2) {
			ours = in_guest_ram(gm, start);
			continue;
		}
		if (!ours)
			continue;
		for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
			size_t n = strlen(fields[i]);

			if (!strncmp(line, fields[i], n) && sscanf(line + n, "%lu", &kb) == 1)
				total += (int64_t)kb * 1024;
		}
	}
	fclose(f);
	return total;
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
