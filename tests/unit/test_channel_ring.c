// SPDX-License-Identifier: MIT
/* Unit tests for channel/ring: messages and wrap-around, limits, timeouts and
 * peer states, corrupt or foreign headers, corrupt indices and records, fail
 * points at every step of a push (and a pop) in a child process that is then
 * stopped and killed with SIGKILL, recovery by reopening, threads in futex
 * and eventfd mode, and the event-loop integration. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "channel/evloop.h"
#include "channel/ring.h"

#define SMALL       1024u
#define LONG_WAIT   10000
static const char PAYLOAD[] = "failpoint message";

static const struct ring_opts fast_stall = { .data_efd = -1, .space_efd = -1, .stall_ms = 100 };

static void open_pair(int fd, const struct ring_opts *o, struct ring **p, struct ring **c)
{
	assert_int_equal(ring_open(fd, RING_PRODUCER, o, p), 0);
	assert_int_equal(ring_open(fd, RING_CONSUMER, o, c), 0);
}

static void fill_pattern(uint8_t *b, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(seed * 131u + i * 7u);
}

static void test_push_pop_and_limits(void **state)
{
	struct ring *p, *c;
	uint8_t in[600], out[600];
	int fd;

	(void)state;
	assert_int_equal(ring_create_memfd(SMALL, RING_WAKE_FUTEX, &fd), 0);
	open_pair(fd, NULL, &p, &c);
	assert_int_equal(ring_max_msg(p), SMALL / 2 - 8);
	assert_int_equal(ring_pop(c, out, sizeof(out), 0), -EAGAIN);
	fill_pattern(in, sizeof(in), 1);
	assert_int_equal(ring_push(p, in, 0, 0), 0);        /* empty message */
	assert_int_equal(ring_push(p, in, 13, 0), 0);
	assert_int_equal(ring_push(p, in, ring_max_msg(p) + 1, 0), -EMSGSIZE);
	assert_int_equal(ring_pop(c, out, sizeof(out), 0), 0);
	/* Too-small buffer: the message stays. */
	assert_int_equal(ring_pop(c, out, 12, 0), -EMSGSIZE);
	assert_int_equal(ring_pop(c, out, 13, 0), 13);
	assert_memory_equal(in, out, 13);
	/* Roles are enforced. */
	assert_int_equal(ring_push(c, in, 1, 0), -EINVAL);
	assert_int_equal(ring_pop(p, out, 1, 0), -EINVAL);
	/* One live producer per ring. */
	{
		struct ring *p2;

		assert_int_equal(ring_open(fd, RING_PRODUCER, NULL, &p2), -EBUSY);
	}
	assert_int_equal(ring_peer_state(c), RING_PEER_ALIVE);
	assert_int_equal(ring_poll_fd(c), -EOPNOTSUPP);
	ring_close(p);
	ring_close(c);
	ring_close(NULL);
	close(fd);
	/* Bad create arguments. */
	assert_int_equal(ring_create_memfd(1000, RING_WAKE_FUTEX, &fd), -EINVAL);
	assert_int_equal(ring_create_memfd(512, RING_WAKE_FUTEX, &fd), -EINVAL);
	assert_int_equal(ring_create_memfd(SMALL, (enum ring_wake)0, &fd), -EINVAL);
}

static void test_wrap_around(void **state)
{
	struct ring *p, *c;
	uint8_t in[512], out[512];
	unsigned seed = 5;
	int fd, pushed = 0, popped = 0;

	(void)state;
	assert_int_equal(ring_create_memfd(SMALL, RING_WAKE_FUTEX, &fd), 0);
	open_pair(fd, NULL, &p, &c);
	/* Random sizes, ring kept partly full: wraps many times over. */
	for (int round = 0; round < 3000; round++) {
		size_t n = (size_t)(rand_r(&seed) % (ring_max_msg(p) + 1));

		fill_pattern(in, n, (uint32_t)pushed);
		if (ring_push(p, in, n, 0) == 0) {
			pushed++;
		} else {
			/* Full: drain one and retry; it must then fit. */
			ssize_t m = ring_pop(c, out, sizeof(out), 0);

			assert_true(m >= 0);
			fill_pattern(in, (size_t)m, (uint32_t)popped);
			assert_memory_equal(in, out, (size_t)m);
			popped++;
			round--;
			continue;
		}
		if (rand_r(&seed) % 3 == 0) {
			ssize_t m = ring_pop(c, out, sizeof(out), 0);

			assert_true(m >= 0);
			fill_pattern(in, (size_t)m, (uint32_t)popped);
			assert_memory_equal(in, out, (size_t)m);
			popped++;
		}
	}
	for (;;) {
		ssize_t m = ring_pop(c, out, sizeof(out), 0);

		if (m == -EAGAIN)
			break;
		assert_true(m >= 0);
		fill_pattern(in, (size_t)m, (uint32_t)popped);
		assert_memory_equal(in, out, (size_t)m);
		popped++;
	}
	assert_int_equal(pushed, popped);
	assert_true(pushed >= 3000);
	ring_close(p);
	ring_close(c);
	close(fd);
}

static void test_timeouts_and_peer_states(void **state)
{
	struct ring *p, *c;
	uint8_t buf[512] = { 0 };
	int fd;

	(void)state;
	assert_int_equal(ring_create_memfd(SMALL, RING_WAKE_FUTEX, &fd), 0);
	/* Consumer alone: nobody will ever write. */
	assert_int_equal(ring_open(fd, RING_CONSUMER, NULL, &c), 0);
	assert_int_equal(ring_peer_state(c), RING_PEER_ABSENT);
	assert_int_equal(ring_pop(c, buf, sizeof(buf), LONG_WAIT), -EPIPE);
	/* Producer attached but idle: a plain timeout. */
	assert_int_equal(ring_open(fd, RING_PRODUCER, NULL, &p), 0);
	assert_int_equal(ring_pop(c, buf, sizeof(buf), 50), -ETIMEDOUT);
	/* Full ring, consumer attached but idle: a plain timeout too. */
	while (ring_push(p, buf, 100, 0) == 0)
		;
	assert_int_equal(ring_push(p, buf, 100, 0), -EAGAIN);
	assert_int_equal(ring_push(p, buf, 100, 50), -ETIMEDOUT);
	/* A consumer that left cleanly: the producer is told, not hung. */
	ring_close(c);
	assert_int_equal(ring_peer_state(p), RING_PEER_ABSENT);
	assert_int_equal(ring_push(p, buf, 100, -1), -EPIPE);
	/* A producer that left cleanly: what it published is still read. */
	assert_int_equal(ring_open(fd, RING_CONSUMER, NULL, &c), 0);
	ring_close(p);
	/* 1024 / (8 + 104) = 9 records fitted. */
	for (int i = 0; i < 9; i++)
		assert_int_equal(ring_pop(c, buf, sizeof(buf), 0), 100);
	assert_int_equal(ring_pop(c, buf, sizeof(buf), -1), -EPIPE);
	ring_close(c);
	close(fd);
}

/* ---- corrupt or foreign headers ---------------------------------------------- */

static int corrupt_and_open(size_t off, const void *bytes, size_t n)
{
	struct ring *r;
	int fd, ret;

	assert_int_equal(ring_create_memfd(SMALL, RING_WAKE_FUTEX, &fd), 0);
	assert_int_equal(pwrite(fd, bytes, n, (off_t)off), (ssize_t)n);
	ret = ring_open(fd, RING_CONSUMER, NULL, &r);
	if (ret == 0)
		ring_close(r);
	close(fd);
	return ret;
}

static void test_rejects_bad_headers(void **state)
{
	uint64_t u64;
	uint32_t u32;
	uint8_t junk[192];
	struct ring *r;
	int fd;

	(void)state;
	u64 = 0x1122334455667788ull;
	assert_int_equal(corrupt_and_open(0, &u64, 8), -EBADMSG);          /* magic */
	u32 = 2;
	assert_int_equal(corrupt_and_open(8, &u32, 4), -EPROTONOSUPPORT); /* version */
	u32 = 8192;
	assert_int_equal(corrupt_and_open(12, &u32, 4), -EBADMSG);         /* hdr_size */
	u64 = 2048;
	assert_int_equal(corrupt_and_open(16, &u64, 8), -EBADMSG);         /* data_size vs file */
	u64 = 1000;
	assert_int_equal(corrupt_and_open(16, &u64, 8), -EBADMSG);         /* not a power of 2 */
	u64 = 1ull << 40;
	assert_int_equal(corrupt_and_open(16, &u64, 8), -EBADMSG);         /* huge */
	u32 = 100000;
	assert_int_equal(corrupt_and_open(24, &u32, 4), -EBADMSG);         /* max_msg */
	u32 = 9;
	assert_int_equal(corrupt_and_open(28, &u32, 4), -EBADMSG);         /* wake */
	u32 = 0;
	assert_int_equal(corrupt_and_open(32, &u32, 4), -EBADMSG);         /* checksum */
	memset(junk, 0xff, sizeof(junk));
	assert_int_equal(corrupt_and_open(0, junk, sizeof(junk)), -EBADMSG);
	/* Inconsistent indices: tail far beyond head. */
	u64 = 4096;
	assert_int_equal(corrupt_and_open(64, &u64, 8), -EPROTO);
	u64 = 3; /* misaligned head */
	assert_int_equal(corrupt_and_open(128, &u64, 8), -EPROTO);

	/* An unsealed memfd (shrinkable by the peer) is refused. */
	fd = memfd_create("t", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(fd >= 0);
	{
		int good;
		uint8_t page[4096];

		assert_int_equal(ring_create_memfd(SMALL, RING_WAKE_FUTEX, &good), 0);
		assert_int_equal(pread(good, page, sizeof(page), 0), (ssize_t)sizeof(page));
		assert_int_equal(ftruncate(fd, 4096 + SMALL), 0);
		assert_int_equal(pwrite(fd, page, sizeof(page), 0), (ssize_t)sizeof(page));
		close(good);
	}
	assert_int_equal(ring_open(fd, RING_CONSUMER, NULL, &r), -EPERM);
	close(fd);

	/* Not a regular file; too small; empty. */
	{
		int pp[2];

		assert_int_equal(pipe(pp), 0);
		assert_int_equal(ring_open(pp[0], RING_CONSUMER, NULL, &r), -EBADMSG);
		close(pp[0]);
		close(pp[1]);
	}
	fd = memfd_create("t", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ring_open(fd, RING_CONSUMER, NULL, &r), -EBADMSG);
	assert_int_equal(ftruncate(fd, 100), 0);
	assert_int_equal(ring_open(fd, RING_CONSUMER, NULL, &r), -EBADMSG);
	close(fd);
	assert_int_equal(ring_open(-1, RING_CONSUMER, NULL, &r), -EINVAL);
	/* Eventfd mode needs the eventfds. */
	assert_int_equal(ring_create_memfd(SMALL, RING_WAKE_EVENTFD, &fd), 0);
	assert_int_equal(ring_open(fd, RING_CONSUMER, NULL, &r), -EINVAL);
	{
		struct ring_opts o = { .data_efd = fd, .space_efd = fd }; /* not eventfds */

		assert_int_equal(ring_open(fd, RING_CONSUMER, &o, &r), -EINVAL);
	}
	close(fd);
}

static void test_file_backed_and_truncated(void **state)
{
	char dir[] = "/tmp/ringtestXXXXXX", path[64];
	struct ring *p, *c;
	char buf[64];
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ring", dir);
	assert_int_equal(ring_create_file(path, SMALL, RING_WAKE_FUTEX), 0);
	assert_int_equal(ring_create_file(path, SMALL, RING_WAKE_FUTEX), -EEXIST);
	assert_int_equal(ring_open_path(path, RING_PRODUCER, NULL, &p), 0);
	assert_int_equal(ring_push(p, "persist", 7, 0), 0);
	ring_close(p);
	/* Reopened later: the message is still there. */
	assert_int_equal(ring_open_path(path, RING_CONSUMER, NULL, &c), 0);
	assert_int_equal(ring_pop(c, buf, sizeof(buf), 0), 7);
	assert_memory_equal(buf, "persist", 7);
	ring_close(c);
	/* A truncated (or extended) file is rejected before it is mapped. */
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4096 + SMALL / 2), 0);
	assert_int_equal(ring_open_path(path, RING_CONSUMER, NULL, &c), -EBADMSG);
	assert_int_equal(ftruncate(fd, 4096 + SMALL * 2), 0);
	assert_int_equal(ring_open_path(path, RING_CONSUMER, NULL, &c), -EBADMSG);
	close(fd);
	assert_int_equal(ring_open_path("/nonexistent/ring", RING_CONSUMER, NULL, &c), -ENOENT);
	unlink(path);
	rmdir(dir);
}

/* ---- corrupt shared state at run time ------------------------------------------ */

static void test_rejects_corrupt_records(void **state)
{
	struct ring *p, *c;
	uint8_t buf[512];
	uint32_t rec[2];
	uint64_t u64;
	int fd;

	(void)state;
	/* Record length beyond the published bytes. */
	assert_int_equal(ring_create_memfd(SMALL, RING_WAKE_FUTEX, &fd), 0);
	open_pair(fd, NULL, &p, &c);
	assert_int_equal(ring_push(p, "abc", 3, 0), 0);
	rec[0] = 200;
	rec[1] = 0x4753454du;
	assert_int_equal(pwrite(fd, rec, 8, 4096), 8);
	assert_int_equal(ring_pop(c, buf, sizeof(buf), 0), -EPROTO);
	assert_int_equal(ring_pop(c, buf, sizeof(buf), 0), -EPROTO); /* sticky */
	ring_close(p);
	ring_close(c);
	close(fd);

	/* Unknown record type; length above max_msg; wrap marker at 0. */
	const uint32_t bad[][2] = { { 3, 0xdeadbeef }, { 100000, 0x4753454du }, { 0, 0x50415257u } };
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(ring_create_memfd(SMALL, RING_WAKE_FUTEX, &fd), 0);
		open_pair(fd, NULL, &p, &c);
		assert_int_equal(ring_push(p, "abc", 3, 0), 0);
		assert_int_equal(pwrite(fd, bad[i], 8, 4096), 8);
		assert_int_equal(ring_pop(c, buf, sizeof(buf), 0), -EPROTO);
		ring_close(p);
		ring_close(c);
		close(fd);
	}

	/* Bogus tail seen by the consumer, bogus head seen by the producer. */
	assert_int_equal(ring_create_memfd(SMALL, RING_WAKE_FUTEX, &fd), 0);
	open_pair(fd, NULL, &p, &c);
	u64 = SMALL * 5;
	assert_int_equal(pwrite(fd, &u64, 8, 64), 8);
	assert_int_equal(ring_pop(c, buf, sizeof(buf), 0), -EPROTO);
	u64 = 12345;
	assert_int_equal(pwrite(fd, &u64, 8, 128), 8);
	assert_int_equal(ring_push(p, "x", 1, 0), -EPROTO);
	ring_close(p);
	ring_close(c);
	close(fd);
}

/* Random garbage in the records and indices: every pop returns a length or
 * an error, never crashes or reads outside the mapping (checked by ASan). */
static void test_random_corruption_never_crashes(void **state)
{
	unsigned seed = 77;
	uint8_t buf[SMALL];

	(void)state;
	for (int iter = 0; iter < 300; iter++) {
		struct ring *p, *c;
		int fd;

		assert_int_equal(ring_create_memfd(SMALL, RING_WAKE_FUTEX, &fd), 0);
		open_pair(fd, NULL, &p, &c);
		for (int i = 0; i < 5; i++)
			(void)ring_push(p, buf, (size_t)(rand_r(&seed) % 200), 0);
		for (int k = 0; k < 4; k++) {
			uint64_t v = (uint64_t)rand_r(&seed) | ((uint64_t)rand_r(&seed) << 31);
			off_t where;

			switch (rand_r(&seed) % 3) {
			case 0: where = 4096 + (rand_r(&seed) % SMALL) / 8 * 8; break;
			case 1: where = 64; v %= 4 * SMALL; break; /* tail */
			default: where = 128; v %= 4 * SMALL; break; /* head */
			}
			assert_int_equal(pwrite(fd, &v, rand_r(&seed) % 2 ? 4 : 8, where) > 0, 1);
		}
		for (int i = 0; i < 10; i++) {
			ssize_t n = ring_pop(c, buf, sizeof(buf), 0);

			assert_true(n == -EAGAIN || n == -EPROTO || (n >= 0 && n <= (ssize_t)ring_max_msg(c)));
			int pr = ring_push(p, buf, 8, 0);
			assert_true(pr == 0 || pr == -EAGAIN || pr == -EPROTO);
		}
		ring_close(p);
		ring_close(c);
		close(fd);
	}
}

/* ---- fail points: a producer process stopped and killed at every step -------- */

struct push_case {
	const char *name;
	bool visible;
};

static const struct push_case push_cases[] = {
	{ "push_begin", false },
	{ "push_after_wrap", false },
	{ "push_after_payload", false },
	{ "push_after_header", false },
	{ "push_after_publish", true },
	{ "push_after_wake", true },
};

/* Moves the ring's position to 960 of 1024 so a 100-byte message wraps. */
static void prime_wrap(struct ring *p, struct ring *c)
{
	uint8_t buf[512] = { 0 };

	assert_int_equal(ring_push(p, buf, 504, 0), 0);
	assert_int_equal(ring_pop(c, buf, sizeof(buf), 0), 504);
	assert_int_equal(ring_push(p, buf, 440, 0), 0);
	assert_int_equal(ring_pop(c, buf, sizeof(buf), 0), 440);
}

static pid_t spawn_producer(int fd, const char *fp, enum ring_fp_action act, size_t len)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		struct ring *p;
		char msg[128];

		memset(msg, 'm', sizeof(msg));
		memcpy(msg, PAYLOAD, sizeof(PAYLOAD));
		if (ring_open(fd, RING_PRODUCER, NULL, &p))
			_exit(10);
		if (ring_failpoint_set(fp, act))
			_exit(11);
		(void)ring_push(p, msg, len, 0);
		_exit(12); /* the fail point did not trigger */
	}
	return pid;
}

static void run_push_case(const struct push_case *pc, bool wrap, enum ring_fp_action act)
{
	struct ring *p, *c;
	char buf[512];
	size_t len = wrap ? 100 : sizeof(PAYLOAD);
	pid_t pid;
	int fd, status;

	assert_int_equal(ring_create_memfd(SMALL, RING_WAKE_FUTEX, &fd), 0);
	open_pair(fd, &fast_stall, &p, &c);
	if (wrap)
		prime_wrap(p, c);
	ring_close(p); /* the child becomes the producer */
	if (!wrap && !strcmp(pc->name, "push_after_wrap")) {
		/* Needs a wrap to be reached: covered by the wrap variant. */
		ring_close(c);
		close(fd);
		return;
	}
	pid = spawn_producer(fd, pc->name, act, len);
	assert_int_equal(waitpid(pid, &status, act == RING_FP_STOP ? WUNTRACED : 0), pid);
	if (act == RING_FP_STOP) {
		assert_true(WIFSTOPPED(status));
		/* Producer alive, frozen mid-push. */
		assert_int_equal(ring_peer_state(c), RING_PEER_ALIVE);
		if (pc->visible) {
			assert_int_equal(ring_pop(c, buf, sizeof(buf), 0), (ssize_t)len);
			assert_memory_equal(buf, PAYLOAD, sizeof(PAYLOAD));
		} else {
			assert_int_equal(ring_pop(c, buf, sizeof(buf), 0), -EAGAIN);
		}
		/* Waiting longer: told "stalled", not "timed out"; and from then
		 * on even by a wait shorter than the stall limit. */
		assert_int_equal(ring_pop(c, buf, sizeof(buf), LONG_WAIT), -EDEADLK);
		assert_int_equal(ring_pop(c, buf, sizeof(buf), 30), -EDEADLK);
		assert_int_equal(kill(pid, SIGKILL), 0);
		assert_int_equal(waitpid(pid, &status, 0), pid);
	} else if (pc->visible) {
		assert_int_equal(ring_pop(c, buf, sizeof(buf), 0), (ssize_t)len);
		assert_memory_equal(buf, PAYLOAD, sizeof(PAYLOAD));
	}
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* Dead: nothing (more) to read, and the consumer is told why. */
	assert_int_equal(ring_peer_state(c), RING_PEER_DEAD);
	assert_int_equal(ring_pop(c, buf, sizeof(buf), 0), -EAGAIN);
	assert_int_equal(ring_pop(c, buf, sizeof(buf), LONG_WAIT), -EOWNERDEAD);
	/* Recovery: a new producer attaches and the ring works on. */
	assert_int_equal(ring_open(fd, RING_PRODUCER, NULL, &p), 0);
	assert_int_equal(ring_peer_state(c), RING_PEER_ALIVE);
	for (int i = 0; i < 20; i++) {
		char m[300];

		memset(m, 'a' + i, sizeof(m));
		assert_int_equal(ring_push(p, m, 50 + (size_t)i * 10, LONG_WAIT), 0);
		assert_int_equal(ring_pop(c, buf, sizeof(buf), LONG_WAIT), 50 + i * 10);
		assert_memory_equal(buf, m, 50 + (size_t)i * 10);
	}
	assert_int_equal(ring_pop(c, buf, sizeof(buf), 0), -EAGAIN);
	ring_close(p);
	ring_close(c);
	close(fd);
}

static void test_push_failpoints(void **state)
{
	size_t n = 0;

	(void)state;
	/* The table covers every fail point the ring has, in order. */
	while (ring_push_failpoints[n])
		n++;
	assert_int_equal(n, sizeof(push_cases) / sizeof(push_cases[0]));
	for (size_t i = 0; i < n; i++)
		assert_string_equal(ring_push_failpoints[i], push_cases[i].name);
	assert_int_equal(ring_failpoint_set("no_such_point", RING_FP_KILL), -ENOENT);

	for (size_t i = 0; i < n; i++) {
		for (int wrap = 0; wrap < 2; wrap++) {
			run_push_case(&push_cases[i], wrap, RING_FP_STOP);
			run_push_case(&push_cases[i], wrap, RING_FP_KILL);
		}
	}
}

struct pop_case {
	const char *name;
	bool survives;
};

static const struct pop_case pop_cases[] = {
	{ "pop_begin", true },
	{ "pop_after_copy", true },
	{ "pop_after_advance", false },
	{ "pop_after_wake", false },
};

static void test_pop_failpoints(void **state)
{
	size_t n = 0;

	(void)state;
	while (ring_pop_failpoints[n])
		n++;
	assert_int_equal(n, sizeof(pop_cases) / sizeof(pop_cases[0]));
	for (size_t i = 0; i < n; i++) {
		for (int wrap = 0; wrap < 2; wrap++) {
			struct ring *p, *c;
			char buf[512];
			pid_t pid;
			int fd, status;

			assert_string_equal(ring_pop_failpoints[i], pop_cases[i].name);
			assert_int_equal(ring_create_memfd(SMALL, RING_WAKE_FUTEX, &fd), 0);
			open_pair(fd, &fast_stall, &p, &c);
			if (wrap)
				prime_wrap(p, c);
			ring_close(c);
			memset(buf, 'm', 100);
			memcpy(buf, PAYLOAD, sizeof(PAYLOAD));
			assert_int_equal(ring_push(p, buf, 100, 0), 0);
			pid = fork();
			assert_true(pid >= 0);
			if (pid == 0) {
				if (ring_open(fd, RING_CONSUMER, NULL, &c) ||
				    ring_failpoint_set(pop_cases[i].name, RING_FP_KILL))
					_exit(10);
				(void)ring_pop(c, buf, sizeof(buf), 0);
				_exit(12);
			}
			assert_int_equal(waitpid(pid, &status, 0), pid);
			assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
			assert_int_equal(ring_peer_state(p), RING_PEER_DEAD);
			/* A new consumer sees the message again, or it is gone. */
			assert_int_equal(ring_open(fd, RING_CONSUMER, NULL, &c), 0);
			if (pop_cases[i].survives) {
				assert_int_equal(ring_pop(c, buf, sizeof(buf), 0), 100);
				assert_memory_equal(buf, PAYLOAD, sizeof(PAYLOAD));
			}
			assert_int_equal(ring_pop(c, buf, sizeof(buf), 0), -EAGAIN);
			assert_int_equal(ring_push(p, "next", 4, 0), 0);
			assert_int_equal(ring_pop(c, buf, sizeof(buf), 0), 4);
			ring_close(p);
			ring_close(c);
			close(fd);
		}
	}
}

/* A full ring whose consumer is frozen mid-pop: the producer says stalled;
 * once the consumer is killed: dead. */
static void test_producer_sees_stalled_then_dead_consumer(void **state)
{
	struct ring *p, *c;
	char buf[512] = { 0 };
	pid_t pid;
	int fd, status;

	(void)state;
	assert_int_equal(ring_create_memfd(SMALL, RING_WAKE_FUTEX, &fd), 0);
	assert_int_equal(ring_open(fd, RING_PRODUCER, &fast_stall, &p), 0);
	while (ring_push(p, buf, 200, 0) == 0)
		;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (ring_open(fd, RING_CONSUMER, NULL, &c) ||
		    ring_failpoint_set("pop_after_copy", RING_FP_STOP))
			_exit(10);
		(void)ring_pop(c, buf, sizeof(buf), 0);
		_exit(12);
	}
	assert_int_equal(waitpid(pid, &status, WUNTRACED), pid);
	assert_true(WIFSTOPPED(status));
	assert_int_equal(ring_push(p, buf, 200, LONG_WAIT), -EDEADLK);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(ring_push(p, buf, 200, LONG_WAIT), -EOWNERDEAD);
	ring_close(p);
	close(fd);
}

/* Waiting in calls shorter than the stall limit still learns of a peer stuck
 * mid-operation: the stall is measured across calls, from the first wait
 * that saw the peer busy, not within one call's wait.  Both directions. */
static long ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

static void test_stall_seen_across_short_waits(void **state)
{
	const struct ring_opts stall200 = { .data_efd = -1, .space_efd = -1, .stall_ms = 200 };
	struct ring *p, *c;
	char buf[512] = { 0 };
	struct timespec t0;
	long elapsed;
	pid_t pid;
	int fd, status, ret = 0, calls, later, nowait;

	(void)state;
	/* Consumer waiting 30 ms at a time on a producer frozen mid-push. */
	assert_int_equal(ring_create_memfd(SMALL, RING_WAKE_FUTEX, &fd), 0);
	assert_int_equal(ring_open(fd, RING_CONSUMER, &stall200, &c), 0);
	pid = spawn_producer(fd, "push_after_payload", RING_FP_STOP, sizeof(PAYLOAD));
	assert_int_equal(waitpid(pid, &status, WUNTRACED), pid);
	assert_true(WIFSTOPPED(status));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (calls = 0; calls < 40; calls++) {
		ret = (int)ring_pop(c, buf, sizeof(buf), 30);
		if (ret != -ETIMEDOUT)
			break;
	}
	elapsed = ms_since(&t0);
	/* Still stuck: every later wait says so, however short. */
	later = (int)ring_pop(c, buf, sizeof(buf), 1);
	nowait = (int)ring_pop(c, buf, sizeof(buf), 0);
	/* Kill before asserting: a failure must not leave it stopped. */
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(ret, -EDEADLK);
	assert_true(elapsed >= 200 - 1); /* never before the limit (ms rounding) */
	assert_int_equal(later, -EDEADLK);
	assert_int_equal(nowait, -EAGAIN); /* no wait, no verdict */
	assert_int_equal(ring_pop(c, buf, sizeof(buf), 30), -EOWNERDEAD);
	/* A new producer, idle: plain timeouts again, the old stall forgotten. */
	assert_int_equal(ring_open(fd, RING_PRODUCER, NULL, &p), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(ring_pop(c, buf, sizeof(buf), 30), -ETIMEDOUT);
	ring_close(p);
	ring_close(c);
	close(fd);

	/* Producer waiting 30 ms at a time on a full ring whose consumer is
	 * frozen mid-pop. */
	assert_int_equal(ring_create_memfd(SMALL, RING_WAKE_FUTEX, &fd), 0);
	assert_int_equal(ring_open(fd, RING_PRODUCER, &stall200, &p), 0);
	while (ring_push(p, buf, 200, 0) == 0)
		;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (ring_open(fd, RING_CONSUMER, NULL, &c) ||
		    ring_failpoint_set("pop_begin", RING_FP_STOP))
			_exit(10);
		(void)ring_pop(c, buf, sizeof(buf), 0);
		_exit(12);
	}
	assert_int_equal(waitpid(pid, &status, WUNTRACED), pid);
	assert_true(WIFSTOPPED(status));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (calls = 0; calls < 40; calls++) {
		ret = ring_push(p, buf, 200, 30);
		if (ret != -ETIMEDOUT)
			break;
	}
	elapsed = ms_since(&t0);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(ret, -EDEADLK);
	assert_true(elapsed >= 200 - 1);
	assert_int_equal(ring_push(p, buf, 200, 30), -EOWNERDEAD);
	ring_close(p);
	close(fd);
}

/* ---- threads and processes ------------------------------------------------------- */

#define STREAM_MSGS 100000

struct xfer {
	struct ring *r;
	int count;
	int err;
};

static void *producer_thread(void *arg)
{
	struct xfer *x = arg;
	uint8_t m[300];

	for (int i = 0; i < x->count; i++) {
		size_t n = 4 + (size_t)(i * 37) % 280;

		fill_pattern(m, n, (uint32_t)i);
		memcpy(m, &i, sizeof(i));
		x->err = ring_push(x->r, m, n, LONG_WAIT);
		if (x->err)
			return NULL;
	}
	return NULL;
}

static void consume_all(struct ring *c, int count)
{
	uint8_t m[300], want[300];

	for (int i = 0; i < count; i++) {
		ssize_t n = ring_pop(c, m, sizeof(m), LONG_WAIT);
		size_t en = 4 + (size_t)(i * 37) % 280;

		assert_int_equal(n, (ssize_t)en);
		fill_pattern(want, en, (uint32_t)i);
		memcpy(want, &i, sizeof(i));
		assert_memory_equal(m, want, en);
	}
}

static void test_threads(void **state)
{
	for (int mode = 0; mode < 2; mode++) {
		struct ring *p, *c;
		struct ring_opts o = { .data_efd = -1, .space_efd = -1, .spin_us = mode ? -1 : 0 };
		struct xfer x;
		pthread_t t;
		int fd;

		(void)state;
		if (mode) {
			o.data_efd = eventfd(0, EFD_CLOEXEC);
			o.space_efd = eventfd(0, EFD_CLOEXEC);
		}
		assert_int_equal(ring_create_memfd(4096, mode ? RING_WAKE_EVENTFD : RING_WAKE_FUTEX, &fd), 0);
		open_pair(fd, &o, &p, &c);
		x = (struct xfer){ .r = p, .count = STREAM_MSGS };
		assert_int_equal(pthread_create(&t, NULL, producer_thread, &x), 0);
		consume_all(c, STREAM_MSGS);
		pthread_join(t, NULL);
		assert_int_equal(x.err, 0);
		ring_close(p);
		ring_close(c);
		close(fd);
		if (mode) {
			close(o.data_efd);
			close(o.space_efd);
		}
	}
}

static void test_cross_process(void **state)
{
	struct ring *c;
	uint8_t buf[16];
	pid_t pid;
	int fd, status;

	(void)state;
	assert_int_equal(ring_create_memfd(4096, RING_WAKE_FUTEX, &fd), 0);
	assert_int_equal(ring_open(fd, RING_CONSUMER, NULL, &c), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct ring *p;
		struct xfer x;

		if (ring_open(fd, RING_PRODUCER, NULL, &p))
			_exit(10);
		x = (struct xfer){ .r = p, .count = STREAM_MSGS };
		producer_thread(&x);
		ring_close(p);
		_exit(x.err ? 11 : 0);
	}
	/* Until the child attaches, a waiting consumer is told "no peer". */
	for (int i = 0; i < 10000 && ring_peer_state(c) == RING_PEER_ABSENT; i++)
		usleep(1000);
	consume_all(c, STREAM_MSGS);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(ring_pop(c, buf, sizeof(buf), LONG_WAIT), -EPIPE);
	ring_close(c);
	close(fd);
}

/* Consumer driven by the event loop through the eventfd. */
struct loop_consumer {
	struct ring *c;
	struct evloop *loop;
	int next;
	int count;
	bool bad;
};

static void ring_ready(void *opaque, int fd, uint32_t events)
{
	struct loop_consumer *lc = opaque;
	uint8_t m[300];

	(void)fd;
	(void)events;
	for (;;) {
		ssize_t n = ring_pop(lc->c, m, sizeof(m), 0);

		if (n == -EAGAIN) {
			int r = ring_wait_prepare(lc->c);

			if (r == 1)
				continue; /* raced with the producer: go again */
			if (r < 0)
				lc->bad = true;
			break;
		}
		if (n < 0 || memcmp(m, &lc->next, sizeof(int)) != 0) {
			lc->bad = true;
			break;
		}
		if (++lc->next == lc->count) {
			evloop_stop(lc->loop);
			break;
		}
	}
}

static void test_evloop_integration(void **state)
{
	struct ring_opts o = { .data_efd = eventfd(0, EFD_CLOEXEC), .space_efd = eventfd(0, EFD_CLOEXEC), .spin_us = -1 };
	struct loop_consumer lc = { .count = 20000 };
	struct evloop_fd *reg;
	struct ring *p;
	struct xfer x;
	pthread_t t;
	int fd;

	(void)state;
	assert_int_equal(ring_create_memfd(4096, RING_WAKE_EVENTFD, &fd), 0);
	open_pair(fd, &o, &p, &lc.c);
	assert_true(ring_poll_fd(lc.c) >= 0);
	assert_int_equal(ring_wait_prepare(lc.c), 0); /* armed, empty */
	assert_int_equal(evloop_create(&lc.loop), 0);
	assert_int_equal(evloop_fd_add(lc.loop, ring_poll_fd(lc.c), EPOLLIN, ring_ready, &lc, &reg), 0);
	x = (struct xfer){ .r = p, .count = lc.count };
	assert_int_equal(pthread_create(&t, NULL, producer_thread, &x), 0);
	assert_int_equal(evloop_run(lc.loop), 0);
	pthread_join(t, NULL);
	assert_int_equal(x.err, 0);
	assert_false(lc.bad);
	assert_int_equal(lc.next, lc.count);
	evloop_fd_remove(reg);
	evloop_destroy(lc.loop);
	ring_close(p);
	ring_close(lc.c);
	close(fd);
	close(o.data_efd);
	close(o.space_efd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_push_pop_and_limits),
		cmocka_unit_test(test_wrap_around),
		cmocka_unit_test(test_timeouts_and_peer_states),
		cmocka_unit_test(test_rejects_bad_headers),
		cmocka_unit_test(test_file_backed_and_truncated),
		cmocka_unit_test(test_rejects_corrupt_records),
		cmocka_unit_test(test_random_corruption_never_crashes),
		cmocka_unit_test(test_push_failpoints),
		cmocka_unit_test(test_pop_failpoints),
		cmocka_unit_test(test_producer_sees_stalled_then_dead_consumer),
		cmocka_unit_test(test_stall_seen_across_short_waits),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_cross_process),
		cmocka_unit_test(test_evloop_integration),
	};

	return cmocka_run_group_tests_name("channel_ring", tests, NULL, NULL);
}
