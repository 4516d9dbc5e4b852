// SPDX-License-Identifier: MIT
/* Unit tests for channel/stream: framing, partial reads and the read
 * notifier, EMSGSIZE, timeouts, EPIPE without SIGPIPE, the close notifier on
 * close and on kill -9 of the peer's process, handing an end to a child
 * (SCM_RIGHTS and fork+exec), and hostile hand-over messages. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "channel/stream.h"

#define LONG_WAIT_MS 10000

static bool fd_readable(int fd, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, timeout_ms) == 1 && (pfd.revents & POLLIN);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void test_byte_partial_reads_notifier(void **state)
{
	struct stream_end *a, *b;
	unsigned char buf[4];
	const unsigned char data[] = { 75, 77, 54, 82, 76, 65 };

	(void)state;
	assert_int_equal(stream_pair(STREAM_BYTE, 0, STREAM_BLOCKING, STREAM_NONBLOCKING, &a, &b), 0);
	assert_int_equal(stream_framing_of(a), STREAM_BYTE);
	assert_false(fd_readable(stream_read_notifier(b), 0));
	assert_int_equal(stream_read(b, buf, sizeof(buf)), -EAGAIN);
	assert_int_equal(stream_write(a, data, sizeof(data)), 6);
	assert_true(fd_readable(stream_read_notifier(b), LONG_WAIT_MS));
	/* Partial read: the notifier stays set while bytes remain. */
	assert_int_equal(stream_read(b, buf, 4), 4);
	assert_memory_equal(buf, data, 4);
	assert_true(fd_readable(stream_read_notifier(b), 0));
	assert_int_equal(stream_read(b, buf, 1), 1);
	assert_int_equal(buf[0], 76);
	assert_true(fd_readable(stream_read_notifier(b), 0));
	assert_int_equal(stream_read(b, buf, 4), 1);
	assert_int_equal(buf[0], 65);
	/* Drained: cleared, and a non-blocking read says so. */
	assert_false(fd_readable(stream_read_notifier(b), 0));
	assert_int_equal(stream_read(b, buf, 4), -EAGAIN);
	assert_int_equal(stream_read(b, buf, 0), -EINVAL);
	assert_false(fd_readable(stream_close_notifier(b), 0));
	stream_close(a);
	stream_close(b);
}

static void test_message_boundaries_and_emsgsize(void **state)
{
	struct stream_end *a, *b;
	char big[300], buf[300];

	(void)state;
	assert_int_equal(stream_pair(STREAM_MESSAGE, 256, STREAM_NONBLOCKING, STREAM_NONBLOCKING, &a, &b), 0);
	assert_int_equal(stream_max_msg(a), 256);
	memset(big, 'x', sizeof(big));
	assert_int_equal(stream_write(a, "one", 3), 3);
	assert_int_equal(stream_write(a, "three", 5), 5);
	assert_int_equal(stream_write(a, big, 256), 256);
	/* Too large, empty: refused, nothing sent. */
	assert_int_equal(stream_write(a, big, 257), -EMSGSIZE);
	assert_int_equal(stream_write(a, big, 0), -EINVAL);

	assert_int_equal(stream_read(b, buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "one", 3);
	/* Too-small buffer: fails, message kept, notifier still set. */
	assert_int_equal(stream_read(b, buf, 4), -EMSGSIZE);
	assert_true(fd_readable(stream_read_notifier(b), 0));
	assert_int_equal(stream_read(b, buf, 5), 5);
	assert_memory_equal(buf, "three", 5);
	assert_int_equal(stream_read(b, buf, 255), -EMSGSIZE);
	assert_int_equal(stream_read(b, buf, sizeof(buf)), 256);
	assert_memory_equal(buf, big, 256);
	assert_false(fd_readable(stream_read_notifier(b), 0));
	assert_int_equal(stream_read(b, buf, sizeof(buf)), -EAGAIN);
	stream_close(a);
	stream_close(b);

	/* Bad parameters. */
	assert_int_equal(stream_pair(STREAM_MESSAGE, 1u << 30, STREAM_BLOCKING, STREAM_BLOCKING, &a, &b), -EINVAL);
	assert_int_equal(stream_pair((enum stream_framing)9, 0, STREAM_BLOCKING, STREAM_BLOCKING, &a, &b), -EINVAL);
	assert_int_equal(stream_pair(STREAM_BYTE, 0, (enum stream_blocking)5, STREAM_BLOCKING, &a, &b), -EINVAL);
}

static void test_default_max_msg(void **state)
{
	struct stream_end *a, *b;
	char *m = calloc(1, STREAM_DEFAULT_MAX_MSG + 1);

	(void)state;
	assert_non_null(m);
	assert_int_equal(stream_pair(STREAM_MESSAGE, 0, STREAM_BLOCKING, STREAM_BLOCKING, &a, &b), 0);
	assert_int_equal(stream_max_msg(a), STREAM_DEFAULT_MAX_MSG);
	assert_int_equal(stream_write(a, m, STREAM_DEFAULT_MAX_MSG), STREAM_DEFAULT_MAX_MSG);
	assert_int_equal(stream_write(a, m, STREAM_DEFAULT_MAX_MSG + 1), -EMSGSIZE);
	assert_int_equal(stream_read(b, m, STREAM_DEFAULT_MAX_MSG + 1), STREAM_DEFAULT_MAX_MSG);
	stream_close(a);
	stream_close(b);
	free(m);
}

static long elapsed_ms(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

static void test_timeouts(void **state)
{
	struct stream_end *a, *b;
	struct timespec t0;
	char buf[4096] = { 0 };
	ssize_t n;

	(void)state;
	assert_int_equal(stream_pair(STREAM_MESSAGE, 4096, STREAM_BLOCKING, STREAM_BLOCKING, &a, &b), 0);
	assert_int_equal(stream_set_timeouts(b, 50, 50), 0);
	assert_int_equal(stream_set_timeouts(b, -2, 50), -EINVAL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(stream_read(b, buf, sizeof(buf)), -ETIMEDOUT);
	assert_true(elapsed_ms(&t0) >= 49);
	/* Fill the peer's queue: a blocking write then times out. */
	for (int i = 0; i < 100000; i++) {
		n = stream_write(b, buf, sizeof(buf));
		if (n != (ssize_t)sizeof(buf))
			break;
	}
	assert_int_equal(n, -ETIMEDOUT);
	/* Draining one message makes room again. */
	assert_int_equal(stream_read(a, buf, sizeof(buf)), sizeof(buf));
	assert_int_equal(stream_write(b, buf, sizeof(buf)), sizeof(buf));
	/* Non-blocking now: a full queue is -EAGAIN, not a timeout. */
	assert_int_equal(stream_set_blocking(b, STREAM_NONBLOCKING), 0);
	assert_int_equal(stream_write(b, buf, sizeof(buf)), -EAGAIN);
	assert_int_equal(stream_set_blocking(b, (enum stream_blocking)3), -EINVAL);
	stream_close(a);
	stream_close(b);

	/* Byte mode: a blocking write that only partly fits returns the part. */
	assert_int_equal(stream_pair(STREAM_BYTE, 0, STREAM_BLOCKING, STREAM_BLOCKING, &a, &b), 0);
	assert_int_equal(stream_set_timeouts(a, -1, 50), 0);
	{
		size_t sz = 8u << 20;
		char *huge = calloc(1, sz);

		assert_non_null(huge);
		n = stream_write(a, huge, sz);
		assert_true(n > 0 && (size_t)n < sz);
		assert_int_equal(stream_write(a, huge, sz), -ETIMEDOUT);
		free(huge);
	}
	stream_close(a);
	stream_close(b);
}

static void test_epipe_and_close_notifier(void **state)
{
	struct stream_end *a, *b;
	char buf[8];

	(void)state;
	for (int f = 0; f < 2; f++) {
		enum stream_framing framing = f ? STREAM_MESSAGE : STREAM_BYTE;

		assert_int_equal(stream_pair(framing, 0, STREAM_BLOCKING, STREAM_BLOCKING, &a, &b), 0);
		assert_false(fd_readable(stream_close_notifier(a), 0));
		stream_close(b);
		assert_true(fd_readable(stream_close_notifier(a), LONG_WAIT_MS));
		/* SIGPIPE keeps its default action: raising it would kill us. */
		assert_int_equal(stream_write(a, "x", 1), -EPIPE);
		assert_int_equal(stream_read(a, buf, sizeof(buf)), 0);
		/* Readable at end-of-stream: a read does not block. */
		assert_true(fd_readable(stream_read_notifier(a), 0));
		stream_close(a);
	}
	stream_close(NULL);
}

/* The peer's process is killed with SIGKILL: the close notifier fires. */
static void test_close_notifier_on_kill9(void **state)
{
	struct stream_end *a, *b;
	pid_t pid;
	int status;

	(void)state;
	assert_int_equal(stream_pair(STREAM_MESSAGE, 0, STREAM_BLOCKING, STREAM_BLOCKING, &a, &b), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		stream_close(a);
		(void)stream_write(b, "ready", 5);
		for (;;)
			pause();
	}
	stream_close(b); /* our copy; the child still holds the end */
	{
		char buf[16];

		assert_int_equal(stream_read(a, buf, sizeof(buf)), 5);
	}
	assert_false(fd_readable(stream_close_notifier(a), 100));
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_true(fd_readable(stream_close_notifier(a), LONG_WAIT_MS));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_int_equal(stream_write(a, "x", 1), -EPIPE);
	stream_close(a);
}

/* Child side of the hand-over tests: echo one message reversed, then exit. */
static int child_echo(struct stream_end *end)
{
	char buf[64];
	ssize_t n = stream_read(end, buf, sizeof(buf));

	if (n <= 0)
		return 2;
	for (ssize_t i = 0; i < n / 2; i++) {
		char t = buf[i];

		buf[i] = buf[n - 1 - i];
		buf[n - 1 - i] = t;
	}
	if (stream_write(end, buf, (size_t)n) != n)
		return 3;
	stream_close(end);
	return 0;
}

static void check_echo(struct stream_end *a)
{
	char buf[64];

	assert_int_equal(stream_write(a, "hello", 5), 5);
	assert_int_equal(stream_read(a, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "olleh", 5);
}

static void test_hand_over_scm_rights(void **state)
{
	struct stream_end *a, *b;
	int ctl[2], status;
	pid_t pid;

	(void)state;
	assert_int_equal(stream_pair(STREAM_MESSAGE, 128, STREAM_BLOCKING, STREAM_BLOCKING, &a, &b), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct stream_end *got;

		close(ctl[0]);
		/* Drop the inherited copies: only the received end stays. */
		stream_close(a);
		stream_close(b);
		if (stream_recv_end(ctl[1], STREAM_BLOCKING, &got))
			_exit(1);
		if (stream_max_msg(got) != 128 || stream_framing_of(got) != STREAM_MESSAGE)
			_exit(4);
		_exit(child_echo(got));
	}
	close(ctl[1]);
	assert_int_equal(stream_send_end(ctl[0], b), 0); /* b is closed here */
	assert_false(fd_readable(stream_close_notifier(a), 100));
	check_echo(a);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_true(fd_readable(stream_close_notifier(a), LONG_WAIT_MS));
	close(ctl[0]);
	stream_close(a);
}

static void test_hand_over_exec(void **state)
{
	struct stream_end *a, *b;
	char desc[64], self[4096];
	ssize_t len;
	int status;
	pid_t pid;

	(void)state;
	len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	assert_true(len > 0);
	self[len] = '\0';
	assert_int_equal(stream_pair(STREAM_BYTE, 0, STREAM_BLOCKING, STREAM_BLOCKING, &a, &b), 0);
	assert_int_equal(stream_export(b, desc, 4), -ENOSPC);
	assert_int_equal(stream_export(b, desc, sizeof(desc)), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execl(self, self, "--stream-child", desc, (char *)NULL);
		_exit(127);
	}
	stream_close(b); /* the exec'd child holds the end now */
	assert_false(fd_readable(stream_close_notifier(a), 100));
	check_echo(a);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_true(fd_readable(stream_close_notifier(a), LONG_WAIT_MS));
	stream_close(a);
}

/* Adopting sockets this process made: both framings carry data and EOF; bad parameters refused. */
static void test_adopt(void **state)
{
	struct stream_end *got, *peer;
	char buf[8];
	int sp[2], mp[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, mp), 0);
	assert_int_equal(stream_adopt(-1, STREAM_BYTE, 0, STREAM_BLOCKING, &got), -EINVAL);
	assert_int_equal(stream_adopt(sp[0], STREAM_BYTE, 5, STREAM_BLOCKING, &got), -EINVAL);
	assert_int_equal(stream_adopt(mp[0], STREAM_MESSAGE, 0, STREAM_BLOCKING, &got), -EINVAL);
	assert_int_equal(stream_adopt(mp[0], STREAM_MESSAGE, (4u << 20) + 1, STREAM_BLOCKING,
				      &got), -EINVAL);
	assert_int_equal(stream_adopt(sp[0], STREAM_BYTE, 0, (enum stream_blocking)7, &got), -EINVAL);

	assert_int_equal(stream_adopt(sp[0], STREAM_BYTE, 0, STREAM_NONBLOCKING, &got), 0);
	assert_int_equal(stream_fd(got), sp[0]);
	assert_int_equal(stream_read(got, buf, sizeof(buf)), -EAGAIN);
	assert_int_equal(write(sp[1], "abc", 3), 3);
	assert_int_equal(stream_read(got, buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "abc", 3);
	assert_int_equal(stream_write(got, "xy", 2), 2);
	assert_int_equal(read(sp[1], buf, sizeof(buf)), 2);
	close(sp[1]);
	assert_int_equal(stream_read(got, buf, sizeof(buf)), 0);
	stream_close(got);  /* closes sp[0] */

	/* A message end: boundaries kept both ways. */
	assert_int_equal(stream_adopt(mp[0], STREAM_MESSAGE, 4096, STREAM_BLOCKING, &got), 0);
	assert_int_equal(stream_adopt(mp[1], STREAM_MESSAGE, 4096, STREAM_BLOCKING, &peer), 0);
	assert_int_equal(stream_write(peer, "one", 3), 3);
	assert_int_equal(stream_write(peer, "two!", 4), 4);
	assert_int_equal(stream_read(got, buf, sizeof(buf)), 3);
	assert_int_equal(stream_read(got, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "two!", 4);
	stream_close(peer);
	assert_int_equal(stream_read(got, buf, sizeof(buf)), 0);
	stream_close(got);
}

static void test_import_rejects_bad_descriptions(void **state)
{
	struct stream_end *a, *b, *got;
	int p[2], sp[2];
	char d[96];

	(void)state;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp), 0);
	assert_int_equal(stream_pair(STREAM_BYTE, 0, STREAM_BLOCKING, STREAM_BLOCKING, &a, &b), 0);
	const char *bad[] = {
		"", "stream", "stream:", "stream:x:b:0", "stream:-1:b:0",
		"stream:99999999999999999999:b:0", "stream:3:q:0", "stream:3:b",
		"stream:3:b:", "stream:3:b:0 ", "stream: 3:b:0", "pipe:3:b:0",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(stream_import(bad[i], STREAM_BLOCKING, &got), -EINVAL);
	assert_int_equal(stream_import(NULL, STREAM_BLOCKING, &got), -EINVAL);
	/* A pipe is not a stream socket. */
	snprintf(d, sizeof(d), "stream:%d:b:0", p[0]);
	assert_int_equal(stream_import(d, STREAM_BLOCKING, &got), -EINVAL);
	/* Wrong socket type for the framing, or byte mode with a max size. */
	snprintf(d, sizeof(d), "stream:%d:b:0", sp[0]);
	assert_int_equal(stream_import(d, STREAM_BLOCKING, &got), -EINVAL);
	snprintf(d, sizeof(d), "stream:%d:m:99999999", sp[0]);
	assert_int_equal(stream_import(d, STREAM_BLOCKING, &got), -EINVAL);
	snprintf(d, sizeof(d), "stream:%d:m:0", sp[0]);
	assert_int_equal(stream_import(d, STREAM_BLOCKING, &got), -EINVAL);
	snprintf(d, sizeof(d), "stream:%d:b:5", stream_fd(b));
	assert_int_equal(stream_import(d, STREAM_BLOCKING, &got), -EINVAL);
	/* A good one works (adopting a socket we hold: stands for the child). */
	snprintf(d, sizeof(d), "stream:%d:m:100", sp[0]);
	assert_int_equal(stream_import(d, STREAM_BLOCKING, &got), 0);
	assert_int_equal(stream_write(got, "hi", 2), 2);
	stream_close(got); /* owns sp[0] now */
	close(sp[1]);
	close(p[0]);
	close(p[1]);
	stream_close(a);
	stream_close(b);
}

/* Hostile hand-over messages are rejected and leak no fds. */
static void send_raw(int sock, const void *data, size_t len, const int *fds, int nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	memset(&ctl, 0, sizeof(ctl));
	if (nfds) {
		struct cmsghdr *c;

		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	assert_int_equal(sendmsg(sock, &mh, 0), (ssize_t)len);
}

/* Whatever max_msg an end accepts, it can write: every way of making a
 * message end (pair, import, receive) either refuses a max_msg the socket
 * cannot carry or sizes the socket so a max_msg message goes through. */
static void check_carries(struct stream_end *w, int raw_peer, struct stream_end *peer, size_t max)
{
	char *m = calloc(1, max + 1);
	ssize_t n;

	assert_non_null(m);
	m[0] = 'S';
	m[max - 1] = 'E';
	assert_int_equal(stream_set_timeouts(w, -1, LONG_WAIT_MS), 0);
	assert_int_equal(stream_write(w, m, max), (ssize_t)max);
	memset(m, 0, max);
	if (peer)
		n = stream_read(peer, m, max + 1);
	else
		n = recv(raw_peer, m, max + 1, MSG_DONTWAIT);
	assert_int_equal(n, (ssize_t)max);
	assert_true(m[0] == 'S' && m[max - 1] == 'E');
	free(m);
}

static void test_max_msg_is_carried_or_refused(void **state)
{
	/* 1 MiB took the import and then failed the write; 16 MiB can never be
	 * one AF_UNIX message; the others straddle the usual buffer limits. */
	const size_t sizes[] = { 64u << 10, 300000, 1u << 20, (1u << 20) + 1, 4u << 20,
				 5u << 20, 8u << 20, 16u << 20 };
	struct { uint32_t magic, version, framing, max_msg; } msg = { 0x53454e44u, 1, 1, 0 };
	int accepted = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t max = sizes[i];
		struct stream_end *a, *b, *got;
		char d[96];
		int sp[2], ctl[2], ret;

		/* stream_pair */
		ret = stream_pair(STREAM_MESSAGE, max, STREAM_BLOCKING, STREAM_BLOCKING, &a, &b);
		if (ret == 0) {
			check_carries(a, -1, b, max);
			check_carries(b, -1, a, max);
			stream_close(a);
			stream_close(b);
			accepted++;
		} else {
			assert_int_equal(ret, -EINVAL);
		}

		/* stream_import of a plain SOCK_SEQPACKET socket */
		assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
		snprintf(d, sizeof(d), "stream:%d:m:%zu", sp[0], max);
		ret = stream_import(d, STREAM_BLOCKING, &got);
		if (ret == 0) {
			check_carries(got, sp[1], NULL, max);
			stream_close(got); /* owns sp[0] */
			accepted++;
		} else {
			assert_int_equal(ret, -EINVAL);
			close(sp[0]);
		}
		close(sp[1]);

		/* stream_recv_end announcing max_msg next to a plain socket */
		assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
		assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl), 0);
		msg.max_msg = (uint32_t)max;
		send_raw(ctl[0], &msg, sizeof(msg), &sp[0], 1);
		close(sp[0]);
		ret = stream_recv_end(ctl[1], STREAM_BLOCKING, &got);
		if (ret == 0) {
			check_carries(got, sp[1], NULL, max);
			stream_close(got);
			accepted++;
		} else {
			assert_int_equal(ret, -EBADMSG);
		}
		close(sp[1]);
		close(ctl[0]);
		close(ctl[1]);

		/* The default size is always accepted, 16 MiB never. */
		if (max == (64u << 10))
			assert_int_equal(accepted, 3);
		if (max == (16u << 20))
			assert_int_equal(ret, -EBADMSG);
	}
}

/* A queued message longer than the reader's buffer stays queued, even when it
 * is also longer than this end's max_msg: a foreign writer on the socket, or
 * a peer end that announced a larger limit. */
static void test_oversized_message_stays_queued(void **state)
{
	struct stream_end *a, *b, *small, *big;
	char d[96], buf[4096], m[3000];
	int sp[2];

	(void)state;
	for (size_t i = 0; i < sizeof(m); i++)
		m[i] = (char)(i * 7);
	/* Foreign writer on the peer's socket, longer than max_msg by 1 and by a lot. */
	for (int mode = 0; mode < 2; mode++) {
		assert_int_equal(stream_pair(STREAM_MESSAGE, 256, STREAM_BLOCKING,
					     mode ? STREAM_BLOCKING : STREAM_NONBLOCKING, &a, &b), 0);
		assert_int_equal(send(stream_fd(a), m, 257, MSG_DONTWAIT), 257);
		assert_int_equal(send(stream_fd(a), m, 1000, MSG_DONTWAIT), 1000);
		assert_int_equal(stream_read(b, buf, 256), -EMSGSIZE);
		assert_int_equal(stream_read(b, buf, 100), -EMSGSIZE);
		assert_true(fd_readable(stream_read_notifier(b), 0));
		assert_int_equal(stream_read(b, buf, 257), 257);
		assert_memory_equal(buf, m, 257);
		assert_int_equal(stream_read(b, buf, 256), -EMSGSIZE);
		assert_int_equal(stream_read(b, buf, 999), -EMSGSIZE);
		assert_int_equal(stream_read(b, buf, sizeof(buf)), 1000);
		assert_memory_equal(buf, m, 1000);
		assert_false(fd_readable(stream_read_notifier(b), 0));
		stream_close(a);
		stream_close(b);
	}
	/* Two ends of one socket pair announcing different limits. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
	snprintf(d, sizeof(d), "stream:%d:m:100", sp[0]);
	assert_int_equal(stream_import(d, STREAM_NONBLOCKING, &small), 0);
	snprintf(d, sizeof(d), "stream:%d:m:4000", sp[1]);
	assert_int_equal(stream_import(d, STREAM_BLOCKING, &big), 0);
	assert_int_equal(stream_write(big, m, sizeof(m)), (ssize_t)sizeof(m));
	assert_int_equal(stream_read(small, buf, 100), -EMSGSIZE);
	assert_int_equal(stream_read(small, buf, 2999), -EMSGSIZE);
	assert_int_equal(stream_read(small, buf, sizeof(buf)), (ssize_t)sizeof(m));
	assert_memory_equal(buf, m, sizeof(m));
	assert_int_equal(stream_read(small, buf, sizeof(buf)), -EAGAIN);
	stream_close(small);
	stream_close(big);
}

static void test_recv_end_rejects_garbage(void **state)
{
	struct { uint32_t magic, version, framing, max_msg; } good = { 0x53454e44u, 1, 1, 64 }, m;
	struct stream_end *got;
	int ctl[2], seq[2], strm[2], before;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, seq), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, strm), 0);
	before = count_fds();

	send_raw(ctl[0], &good, sizeof(good), NULL, 0);               /* no fd */
	assert_int_equal(stream_recv_end(ctl[1], STREAM_BLOCKING, &got), -EBADMSG);
	int two[2] = { seq[0], seq[1] };
	send_raw(ctl[0], &good, sizeof(good), two, 2);                /* two fds */
	assert_int_equal(stream_recv_end(ctl[1], STREAM_BLOCKING, &got), -EBADMSG);
	m = good;
	m.magic ^= 1;
	send_raw(ctl[0], &m, sizeof(m), &seq[0], 1);                  /* bad magic */
	assert_int_equal(stream_recv_end(ctl[1], STREAM_BLOCKING, &got), -EBADMSG);
	m = good;
	m.version = 2;
	send_raw(ctl[0], &m, sizeof(m), &seq[0], 1);
	assert_int_equal(stream_recv_end(ctl[1], STREAM_BLOCKING, &got), -EBADMSG);
	m = good;
	m.max_msg = 0x7fffffff;
	send_raw(ctl[0], &m, sizeof(m), &seq[0], 1);                  /* absurd size */
	assert_int_equal(stream_recv_end(ctl[1], STREAM_BLOCKING, &got), -EBADMSG);
	m = good;
	m.framing = 7;
	send_raw(ctl[0], &m, sizeof(m), &seq[0], 1);
	assert_int_equal(stream_recv_end(ctl[1], STREAM_BLOCKING, &got), -EBADMSG);
	send_raw(ctl[0], &good, sizeof(good), &strm[0], 1);           /* wrong type */
	assert_int_equal(stream_recv_end(ctl[1], STREAM_BLOCKING, &got), -EBADMSG);
	send_raw(ctl[0], &good, 7, &seq[0], 1);                       /* short */
	assert_int_equal(stream_recv_end(ctl[1], STREAM_BLOCKING, &got), -EBADMSG);
	/* Every fd that arrived with a rejected message was closed. */
	assert_int_equal(count_fds(), before);
	/* And a well-formed one is accepted. */
	send_raw(ctl[0], &good, sizeof(good), &seq[0], 1);
	assert_int_equal(stream_recv_end(ctl[1], STREAM_NONBLOCKING, &got), 0);
	assert_int_equal(stream_max_msg(got), 64);
	assert_int_equal(stream_write(got, "ok", 2), 2);
	stream_close(got);
	close(ctl[0]);
	assert_int_equal(stream_recv_end(ctl[1], STREAM_BLOCKING, &got), -ECONNRESET);
	close(ctl[1]);
	for (int i = 0; i < 2; i++) {
		close(seq[i]);
		close(strm[i]);
	}
}

/* A reader driven only by the read notifier: whenever it says readable, a
 * read must not find nothing (no spurious signal), and no byte is lost or
 * reordered while a writer thread races it with random chunk sizes. */
#define STRESS_BYTES (4u << 20)

static void *stress_writer(void *arg)
{
	struct stream_end *w = arg;
	static unsigned char chunk[8192];
	unsigned seed = 7;
	uint32_t pos = 0;

	while (pos < STRESS_BYTES) {
		size_t n = 1 + rand_r(&seed) % sizeof(chunk);
		ssize_t r;

		if (n > STRESS_BYTES - pos)
			n = STRESS_BYTES - pos;
		for (size_t i = 0; i < n; i++)
			chunk[i] = (unsigned char)((pos + i) * 31u);
		r = stream_write(w, chunk, n);
		if (r <= 0)
			return (void *)1;
		pos += (uint32_t)r;
	}
	stream_close(w);
	return NULL;
}

static void test_notifier_exact_under_race(void **state)
{
	struct stream_end *w, *r;
	unsigned char buf[3000];
	uint32_t pos = 0;
	pthread_t t;
	void *ret;
	unsigned seed = 3;

	(void)state;
	assert_int_equal(stream_pair(STREAM_BYTE, 0, STREAM_BLOCKING, STREAM_NONBLOCKING, &w, &r), 0);
	assert_int_equal(pthread_create(&t, NULL, stress_writer, w), 0);
	for (;;) {
		ssize_t n;

		assert_true(fd_readable(stream_read_notifier(r), LONG_WAIT_MS));
		n = stream_read(r, buf, 1 + rand_r(&seed) % sizeof(buf));
		assert_true(n >= 0); /* never -EAGAIN after the notifier said so */
		if (n == 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			assert_int_equal(buf[i], (unsigned char)((pos + (uint32_t)i) * 31u));
		pos += (uint32_t)n;
	}
	assert_int_equal(pos, STRESS_BYTES);
	pthread_join(t, &ret);
	assert_null(ret);
	assert_true(fd_readable(stream_close_notifier(r), 0));
	stream_close(r);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_byte_partial_reads_notifier),
		cmocka_unit_test(test_message_boundaries_and_emsgsize),
		cmocka_unit_test(test_default_max_msg),
		cmocka_unit_test(test_timeouts),
		cmocka_unit_test(test_epipe_and_close_notifier),
		cmocka_unit_test(test_close_notifier_on_kill9),
		cmocka_unit_test(test_hand_over_scm_rights),
		cmocka_unit_test(test_hand_over_exec),
		cmocka_unit_test(test_import_rejects_bad_descriptions),
		cmocka_unit_test(test_adopt),
		cmocka_unit_test(test_recv_end_rejects_garbage),
		cmocka_unit_test(test_max_msg_is_carried_or_refused),
		cmocka_unit_test(test_oversized_message_stays_queued),
		cmocka_unit_test(test_notifier_exact_under_race),
	};

	if (argc == 3 && strcmp(argv[1], "--stream-child") == 0) {
		struct stream_end *end;

		if (stream_import(argv[2], STREAM_BLOCKING, &end))
			return 1;
		return child_echo(end);
	}
	return cmocka_run_group_tests_name("channel_stream", tests, NULL, NULL);
}
