/* blkbench: O_DIRECT block-device benchmark for the test guests.
 *
 *   blkbench DEV seqread|seqwrite SIZE_MIB [BLOCK_KIB]
 *   blkbench DEV randread SECONDS [JOBS]
 *   blkbench DEV zeroout OFFSET_KIB LEN_KIB
 *
 * seqread/seqwrite move SIZE_MIB from the start of DEV in BLOCK_KIB blocks
 * (default 1024) and print "MODE MBps=N". randread reads random 4 KiB blocks
 * with JOBS threads (default 4), each one request at a time, for SECONDS and
 * prints "randread iops=N". Writes end with fdatasync, inside the timing.
 * zeroout is a test helper: BLKZEROOUT, which the kernel turns into
 * WRITE_ZEROES requests when the device offers them. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define MAX_JOBS 64

struct job {
	int fd;
	uint64_t blocks;      /* 4 KiB blocks on the device */
	double deadline;
	uint64_t seed;
	uint64_t done;
	int err;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_uint(const char *s, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, 10);
	return errno || end == s || *end || *s == '-' ? -1 : 0;
}

static int sequential(int fd, int write_mode, unsigned long mib, unsigned long block_kib)
{
	size_t bs = block_kib * 1024;
	uint64_t total = (uint64_t)mib << 20, off = 0;
	void *buf;
	double t0, t;

	if (posix_memalign(&buf, 4096, bs)) {
		fprintf(stderr, "blkbench: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < bs; i++)
		((uint8_t *)buf)[i] = (uint8_t)(i * 31 + 7);
	t0 = now();
	while (off < total) {
		size_t n = (size_t)(total - off < bs ? total - off : bs);
		ssize_t r = write_mode ? pwrite(fd, buf, n, (off_t)off) : pread(fd, buf, n, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			fprintf(stderr, "blkbench: %s at %" PRIu64 ": %s\n", write_mode ? "write" : "read",
				off, r < 0 ? strerror(errno) : "end of device");
			free(buf);
			return 1;
		}
		off += (uint64_t)r;
	}
	if (write_mode && fdatasync(fd) < 0) {
		fprintf(stderr, "blkbench: fdatasync: %s\n", strerror(errno));
		free(buf);
		return 1;
	}
	t = now() - t0;
	printf("%s MBps=%.1f\n", write_mode ? "seqwrite" : "seqread", (double)total / 1e6 / t);
	free(buf);
	return 0;
}

static void *rand_job(void *arg)
{
	struct job *j = arg;
	void *buf;

	if (posix_memalign(&buf, 4096, 4096)) {
		j->err = ENOMEM;
		return NULL;
	}
	while (now() < j->deadline) {
		for (int k = 0; k < 64; k++) {
			/* xorshift64: cheap, and every job has its own sequence. */
			j->seed ^= j->seed << 13;
			j->seed ^= j->seed >> 7;
			j->seed ^= j->seed << 17;
			if (pread(j->fd, buf, 4096, (off_t)((j->seed % j->blocks) * 4096)) != 4096) {
				j->err = errno ? errno : EIO;
				free(buf);
				return NULL;
			}
			j->done++;
		}
	}
	free(buf);
	return NULL;
}

static int random_read(int fd, unsigned long seconds, unsigned long jobs)
{
	struct job js[MAX_JOBS];
	pthread_t th[MAX_JOBS];
	uint64_t size, total = 0;
	double t0, t;

	if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
		off_t end = lseek(fd, 0, SEEK_END);  /* a regular file, when testing on the host */

		size = end < 0 ? 0 : (uint64_t)end;
	}
	if (size < 4096) {
		fprintf(stderr, "blkbench: cannot size the device\n");
		return 1;
	}
	t0 = now();
	for (unsigned long i = 0; i < jobs; i++) {
		js[i] = (struct job){ .fd = fd, .blocks = size / 4096, .deadline = t0 + (double)seconds,
				      .seed = 0x9e3779b97f4a7c15ull * (i + 1) };
		if (pthread_create(&th[i], NULL, rand_job, &js[i])) {
			fprintf(stderr, "blkbench: pthread_create failed\n");
			return 1;
		}
	}
	for (unsigned long i = 0; i < jobs; i++) {
		pthread_join(th[i], NULL);
		if (js[i].err) {
			fprintf(stderr, "blkbench: randread: %s\n", strerror(js[i].err));
			return 1;
		}
		total += js[i].done;
	}
	t = now() - t0;
	printf("randread iops=%.0f\n", (double)total / t);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned long a = 0, b = 0;
	int fd, ret, write_mode;

	if (argc < 4 || parse_uint(argv[3], &a) || (a == 0 && strcmp(argv[2], "zeroout")) ||
	    (argc > 4 && (parse_uint(argv[4], &b) || b == 0)) || argc > 5)
		goto usage;
	if (!strcmp(argv[2], "zeroout")) {
		uint64_t range[2] = { (uint64_t)a << 10, (uint64_t)b << 10 };

		if (argc != 5)
			goto usage;
		fd = open(argv[1], O_RDWR);
		if (fd < 0 || ioctl(fd, BLKZEROOUT, range) < 0) {
			fprintf(stderr, "blkbench: zeroout %s: %s\n", argv[1], strerror(errno));
			return 1;
		}
		close(fd);
		return 0;
	}
	if (!strcmp(argv[2], "seqread") || !strcmp(argv[2], "seqwrite")) {
		write_mode = argv[2][3] == 'w';
		if (!b)
			b = 1024;
		if (b > 65536)
			goto usage;
	} else if (!strcmp(argv[2], "randread")) {
		write_mode = 0;
		if (!b)
			b = 4;
		if (b > MAX_JOBS)
			goto usage;
	} else {
		goto usage;
	}
	fd = open(argv[1], (write_mode ? O_RDWR : O_RDONLY) | O_DIRECT);
	if (fd < 0) {
		fprintf(stderr, "blkbench: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	if (!strcmp(argv[2], "randread"))
		ret = random_read(fd, a, b);
	else
		ret = sequential(fd, write_mode, a, b);
	close(fd);
	return ret;

usage:
	fprintf(stderr, "usage: blkbench DEV seqread|seqwrite SIZE_MIB [BLOCK_KIB]\n"
			"       blkbench DEV randread SECONDS [JOBS]\n"
			"       blkbench DEV zeroout OFFSET_KIB LEN_KIB\n");
	return 2;
}
