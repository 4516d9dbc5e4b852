// SPDX-License-Identifier: MIT
/*
 * Stream channel pairs on AF_UNIX socket pairs.  All socket I/O uses
 * MSG_DONTWAIT and a blocking end waits with poll(), so blocking mode and
 * timeouts stay per end even when the socket is shared with another process
 * (O_NONBLOCK would be shared through the open file description).
 */
#include "channel/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* An AF_UNIX message is one kernel buffer, mostly one kmalloc (at most 4 MiB
 * on x86_64): a little beyond 4 MiB every send fails with ENOBUFS. */
#define STREAM_MAX_MAX_MSG (4u * 1024u * 1024u)
#define SEND_END_MAGIC     0x53454e44u /* "SEND" */
#define SEND_END_VERSION   1u

struct stream_end {
	int sock;
	int read_ep;  /* epoll fd watching sock for EPOLLIN; -1 until asked for */
	int close_ep; /* epoll fd watching sock for EPOLLRDHUP; -1 until asked for */
	enum stream_framing framing;
	enum stream_blocking mode;
	size_t max_msg;
	int read_ms, write_ms;
};

/* What stream_send_end puts next to the fd; validated on receipt. */
struct send_end_msg {
	uint32_t magic;
	uint32_t version;
	uint32_t framing;
	uint32_t max_msg;
};
_Static_assert(sizeof(struct send_end_msg) == 16, "send_end_msg is a wire format");

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int watch(int sock, uint32_t events)
{
	struct epoll_event ev = { .events = events };
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep < 0)
		return -errno;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, sock, &ev) < 0) {
		int ret = -errno;

		close(ep);
		return ret;
	}
	return ep;
}

/*
 * A notifier's epoll fd, made on first use: most ends never need one (an
 * event loop watches stream_fd itself), and making both cost four system
 * calls on every new end. Two threads asking at once both make one; the
 * loser closes its own.
 */
static int lazy_watch(const struct stream_end *end, const int *cslot, uint32_t events)
{
	/* Ends are never defined const: the getters promise only not to change what they describe. */
	int *slot = (int *)cslot;
	int ep = __atomic_load_n(slot, __ATOMIC_ACQUIRE), none = -1;

	if (ep >= 0)
		return ep;
	ep = watch(end->sock, events);
	if (ep < 0)
		return ep;
	if (!__atomic_compare_exchange_n(slot, &none, ep, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		close(ep);
		return none;
	}
	return ep;
}

/* Wraps sock (owned on success) in a new end. */
static int end_new(int sock, enum stream_framing framing, size_t max_msg,
		   enum stream_blocking mode, struct stream_end **out)
{
	struct stream_end *end = calloc(1, sizeof(*end));

	if (!end)
		return -ENOMEM;
	end->sock = sock;
	end->framing = framing;
	end->mode = mode;
	end->max_msg = max_msg;
	end->read_ms = end->write_ms = -1;
	end->read_ep = end->close_ep = -1;
	*out = end;
	return 0;
}

/* Message mode: every message up to max_msg must fit the send buffer (the
 * kernel refuses one longer than SO_SNDBUF - 32 with EMSGSIZE).  Grows the
 * buffer when the system allows it; -EINVAL when it does not. */
static int size_sndbuf(int sock, size_t max_msg)
{
	int have = 0, want = (int)max_msg + 1024;
	socklen_t sl = sizeof(have);

	if (getsockopt(sock, SOL_SOCKET, SO_SNDBUF, &have, &sl) < 0)
		return -errno;
	if (have >= want)
		return 0;
	if (setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &want, sizeof(want)) < 0)
		return -errno;
	sl = sizeof(have);
	if (getsockopt(sock, SOL_SOCKET, SO_SNDBUF, &have, &sl) < 0)
		return -errno;
	return have >= want ? 0 : -EINVAL;
}

int stream_pair(enum stream_framing framing, size_t max_msg, enum stream_blocking a_mode,
		enum stream_blocking b_mode, struct stream_end **a, struct stream_end **b)
{
	int sv[2], ret, type;

	if ((framing != STREAM_BYTE && framing != STREAM_MESSAGE) ||
	    (a_mode != STREAM_BLOCKING && a_mode != STREAM_NONBLOCKING) ||
	    (b_mode != STREAM_BLOCKING && b_mode != STREAM_NONBLOCKING) || !a || !b)
		return -EINVAL;
	if (framing == STREAM_MESSAGE) {
		if (max_msg == 0)
			max_msg = STREAM_DEFAULT_MAX_MSG;
		if (max_msg > STREAM_MAX_MAX_MSG)
			return -EINVAL;
		type = SOCK_SEQPACKET;
	} else {
		max_msg = 0;
		type = SOCK_STREAM;
	}
	if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	if (framing == STREAM_MESSAGE) {
		ret = size_sndbuf(sv[0], max_msg);
		if (!ret)
			ret = size_sndbuf(sv[1], max_msg);
		if (ret)
			goto err_close;
	}
	ret = end_new(sv[0], framing, max_msg, a_mode, a);
	if (ret)
		goto err_close;
	ret = end_new(sv[1], framing, max_msg, b_mode, b);
	if (ret) {
		stream_close(*a);
		close(sv[1]);
		return ret;
	}
	return 0;

err_close:
	close(sv[0]);
	close(sv[1]);
	return ret;
}

static void end_free_keep_sock(struct stream_end *end)
{
	if (end->read_ep >= 0)
		close(end->read_ep);
	if (end->close_ep >= 0)
		close(end->close_ep);
	free(end);
}

void stream_close(struct stream_end *end)
{
	if (!end)
		return;
	close(end->sock);
	end_free_keep_sock(end);
}

/* Waits for events on the socket until deadline (-1: forever).  Returns 0
 * when ready, -ETIMEDOUT, or -errno. */
static int wait_sock(const struct stream_end *end, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = end->sock, .events = events };

	for (;;) {
		int left = -1, r;

		if (deadline >= 0) {
			int64_t rem = deadline - now_ms();

			if (rem <= 0)
				return -ETIMEDOUT;
			left = rem > INT_MAX ? INT_MAX : (int)rem;
		}
		r = poll(&pfd, 1, left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

/* What the close notifier reports, asked of the socket directly. */
static bool peer_closed(const struct stream_end *end)
{
	struct pollfd pfd = { .fd = end->sock, .events = POLLRDHUP };

	return poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* One non-blocking read attempt; -EAGAIN if nothing is queued. */
static ssize_t read_once(struct stream_end *end, void *buf, size_t len)
{
	for (;;) {
		ssize_t n;

		if (end->framing == STREAM_BYTE) {
			n = recv(end->sock, buf, len, MSG_DONTWAIT);
			return n < 0 ? -errno : n;
		}
		/* Learn the size first so a short buffer loses nothing, whatever
		 * our max_msg: a foreign writer, or a peer end announcing a larger
		 * limit, can queue a longer message. */
		n = recv(end->sock, buf, 0, MSG_DONTWAIT | MSG_PEEK | MSG_TRUNC);
		if (n < 0)
			return -errno;
		if ((size_t)n > len)
			return -EMSGSIZE;
		{
			struct iovec iov = { .iov_base = buf, .iov_len = len };
			struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

			n = recvmsg(end->sock, &mh, MSG_DONTWAIT);
			if (n < 0)
				return -errno;
			/* Only another reader of this socket (in another process)
			 * can swap the message after the peek; it is then lost. */
			if (mh.msg_flags & MSG_TRUNC)
				return -EMSGSIZE;
		}
		if (n > 0 || peer_closed(end))
			return n;
		/* A zero-length message from a foreign writer: drop it, it
		 * would read as end-of-stream. */
	}
}

ssize_t stream_read(struct stream_end *end, void *buf, size_t len)
{
	int64_t deadline;

	if (!end || !buf || len == 0)
		return -EINVAL;
	deadline = end->read_ms >= 0 ? now_ms() + end->read_ms : -1;
	for (;;) {
		ssize_t n = read_once(end, buf, len);
		int ret;

		if (n != -EAGAIN && n != -EINTR)
			return n;
		if (n == -EINTR)
			continue;
		if (end->mode == STREAM_NONBLOCKING)
			return -EAGAIN;
		ret = wait_sock(end, POLLIN, deadline);
		if (ret)
			return ret;
	}
}

static ssize_t send_once(struct stream_end *end, const void *buf, size_t len)
{
	ssize_t n = send(end->sock, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);

	if (n >= 0)
		return n;
	/* A closed peer shows up as EPIPE, ENOTCONN or ECONNRESET. */
	if (errno == ENOTCONN || errno == ECONNRESET)
		return -EPIPE;
	return -errno;
}

ssize_t stream_write(struct stream_end *end, const void *buf, size_t len)
{
	const char *p = buf;
	size_t done = 0;
	int64_t deadline;

	if (!end || (!buf && len))
		return -EINVAL;
	if (end->framing == STREAM_MESSAGE) {
		if (len == 0)
			return -EINVAL;
		if (len > end->max_msg)
			return -EMSGSIZE;
	} else if (len == 0) {
		return 0;
	}
	deadline = end->write_ms >= 0 ? now_ms() + end->write_ms : -1;
	for (;;) {
		ssize_t n = send_once(end, p + done, len - done);
		int ret;

		if (n == -EINTR)
			continue;
		if (n >= 0) {
			done += (size_t)n;
			if (done == len)
				return (ssize_t)done;
			if (end->mode == STREAM_NONBLOCKING)
				return (ssize_t)done;
		} else if (n != -EAGAIN) {
			return done ? (ssize_t)done : n;
		} else if (end->mode == STREAM_NONBLOCKING) {
			return done ? (ssize_t)done : -EAGAIN;
		}
		ret = wait_sock(end, POLLOUT, deadline);
		if (ret)
			return done ? (ssize_t)done : ret;
	}
}

int stream_set_blocking(struct stream_end *end, enum stream_blocking mode)
{
	if (mode != STREAM_BLOCKING && mode != STREAM_NONBLOCKING)
		return -EINVAL;
	end->mode = mode;
	return 0;
}

int stream_set_timeouts(struct stream_end *end, int read_ms, int write_ms)
{
	if (read_ms < -1 || write_ms < -1)
		return -EINVAL;
	end->read_ms = read_ms;
	end->write_ms = write_ms;
	return 0;
}

int stream_read_notifier(const struct stream_end *end)
{
	return lazy_watch(end, &end->read_ep, EPOLLIN);
}

int stream_close_notifier(const struct stream_end *end)
{
	return lazy_watch(end, &end->close_ep, EPOLLRDHUP);
}

int stream_fd(const struct stream_end *end)
{
	return end->sock;
}

enum stream_framing stream_framing_of(const struct stream_end *end)
{
	return end->framing;
}

size_t stream_max_msg(const struct stream_end *end)
{
	return end->max_msg;
}

/* ---- handing an end to another process ------------------------------------ */

/* Checks that fd is an AF_UNIX socket of the type framing needs. */
static int check_sock(int fd, enum stream_framing framing)
{
	int domain = 0, type = 0;
	socklen_t sl = sizeof(int);

	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &sl) < 0)
		return -EINVAL;
	sl = sizeof(int);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl) < 0)
		return -EINVAL;
	if (domain != AF_UNIX)
		return -EINVAL;
	if (type != (framing == STREAM_MESSAGE ? SOCK_SEQPACKET : SOCK_STREAM))
		return -EINVAL;
	return 0;
}

static int check_params(uint32_t framing, uint64_t max_msg)
{
	if (framing == STREAM_BYTE)
		return max_msg == 0 ? 0 : -EINVAL;
	if (framing == STREAM_MESSAGE)
		return (max_msg > 0 && max_msg <= STREAM_MAX_MAX_MSG) ? 0 : -EINVAL;
	return -EINVAL;
}

int stream_send_end(int sock, struct stream_end *end)
{
	struct send_end_msg msg = {
		.magic = SEND_END_MAGIC,
		.version = SEND_END_VERSION,
		.framing = (uint32_t)end->framing,
		.max_msg = (uint32_t)end->max_msg,
	};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = &msg, .iov_len = sizeof(msg) };
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf),
	};
	struct cmsghdr *c;
	ssize_t n;

	memset(&ctl, 0, sizeof(ctl));
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &end->sock, sizeof(int));
	do {
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if ((size_t)n != sizeof(msg))
		return -EIO;
	/* The socket is in flight and keeps the connection open. */
	stream_close(end);
	return 0;
}

int stream_recv_end(int sock, enum stream_blocking mode, struct stream_end **out)
{
	struct send_end_msg msg;
	union {
		char buf[CMSG_SPACE(sizeof(int) * 8)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = &msg, .iov_len = sizeof(msg) };
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf),
	};
	int fd = -1, nfds = 0, ret;
	ssize_t n;

	if (mode != STREAM_BLOCKING && mode != STREAM_NONBLOCKING)
		return -EINVAL;
	do {
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	/* Collect every fd that arrived, keep the first, close the rest. */
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		size_t cnt;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
		    c->cmsg_len < CMSG_LEN(0))
			continue;
		cnt = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < cnt; i++) {
			int f;

			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (nfds++ == 0)
				fd = f;
			else
				close(f);
		}
	}
	if (n == 0 && nfds == 0)
		return -ECONNRESET;
	ret = -EBADMSG;
	if (nfds != 1 || (mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) || (size_t)n != sizeof(msg))
		goto err_close;
	if (msg.magic != SEND_END_MAGIC || msg.version != SEND_END_VERSION ||
	    check_params(msg.framing, msg.max_msg) ||
	    check_sock(fd, (enum stream_framing)msg.framing) ||
	    (msg.framing == STREAM_MESSAGE && size_sndbuf(fd, msg.max_msg)))
		goto err_close;
	ret = end_new(fd, (enum stream_framing)msg.framing, msg.max_msg, mode, out);
	if (ret)
		goto err_close;
	return 0;

err_close:
	if (fd >= 0)
		close(fd);
	return ret;
}

int stream_export(struct stream_end *end, char *buf, size_t len)
{
	int n, fl;

	n = snprintf(buf, len, "stream:%d:%c:%zu", end->sock,
		     end->framing == STREAM_MESSAGE ? 'm' : 'b', end->max_msg);
	if (n < 0 || (size_t)n >= len)
		return -ENOSPC;
	fl = fcntl(end->sock, F_GETFD);
	if (fl < 0 || fcntl(end->sock, F_SETFD, fl & ~FD_CLOEXEC) < 0)
		return -errno;
	return 0;
}

int stream_adopt(int fd, enum stream_framing framing, size_t max_msg, enum stream_blocking mode,
		 struct stream_end **out)
{
	if (fd < 0 || check_params((uint32_t)framing, max_msg) ||
	    (mode != STREAM_BLOCKING && mode != STREAM_NONBLOCKING))
		return -EINVAL;
	if (framing == STREAM_MESSAGE && size_sndbuf(fd, max_msg))
		return -EINVAL;
	return end_new(fd, framing, max_msg, mode, out);
}

/* Parses a decimal number without sign, spaces or overflow. */
static const char *parse_u64(const char *s, uint64_t max, uint64_t *v)
{
	uint64_t x = 0;

	if (*s < '0' || *s > '9')
		return NULL;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (x > (max - (uint64_t)(*s - '0')) / 10)
			return NULL;
		x = x * 10 + (uint64_t)(*s - '0');
	}
	*v = x;
	return s;
}

int stream_import(const char *desc, enum stream_blocking mode, struct stream_end **out)
{
	enum stream_framing framing;
	uint64_t fd, max_msg;
	const char *p = desc;
	int fl, ret;

	if (!p || strncmp(p, "stream:", 7) != 0 ||
	    (mode != STREAM_BLOCKING && mode != STREAM_NONBLOCKING))
		return -EINVAL;
	p = parse_u64(p + 7, INT_MAX, &fd);
	if (!p || *p++ != ':')
		return -EINVAL;
	if (*p == 'b')
		framing = STREAM_BYTE;
	else if (*p == 'm')
		framing = STREAM_MESSAGE;
	else
		return -EINVAL;
	if (*++p != ':')
		return -EINVAL;
	p = parse_u64(p + 1, STREAM_MAX_MAX_MSG, &max_msg);
	if (!p || *p != '\0')
		return -EINVAL;
	if (check_params(framing, max_msg) || check_sock((int)fd, framing))
		return -EINVAL;
	/* The description promises max_msg: make the socket able to carry it. */
	if (framing == STREAM_MESSAGE && size_sndbuf((int)fd, (size_t)max_msg))
		return -EINVAL;
	fl = fcntl((int)fd, F_GETFD);
	if (fl < 0 || (!(fl & FD_CLOEXEC) && fcntl((int)fd, F_SETFD, fl | FD_CLOEXEC) < 0))
		return -errno;
	ret = end_new((int)fd, framing, (size_t)max_msg, mode, out);
	return ret;
}
