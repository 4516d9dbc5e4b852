/* The Firecracker-compatible Unix socket bridge. See bridge.h. */
#include "devices/vsock/bridge.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "channel/evloop.h"
#include "devices/vsock/mux.h"

#define BRIDGE_TICK_NS   (500ull * 1000 * 1000)
/* PATH_<port>: room for '_' and ten digits. */
#define BRIDGE_PATH_MAX  (sizeof(((struct sockaddr_un *)0)->sun_path) - 12)

struct hs {
	struct hs *next, **pprev;
	struct vsock_bridge *b;
	int fd;                       /* -1 once handed to the mux */
	struct evloop_fd *reg;
	struct stream_end *end;       /* the client socket as the connection's host end */
	char line[VSOCK_BRIDGE_LINE_MAX];
	unsigned len;
	uint64_t deadline_ns;
};

struct vsock_bridge {
	struct vsock_dev *dev;
	struct evloop *loop;
	enum vsock_type type;         /* of PATH: the type of every host-initiated connection */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int lfd;
	struct evloop_fd *lreg;
	bool accept_paused;           /* out of fds: the listening socket rests until the next tick */
	struct evloop_timer *timer;
	struct hs *pending;           /* reading the CONNECT line */
	unsigned npending;
	struct hs *connecting;        /* waiting for the guest's answer */
};

/* Firecracker splits the line on white space: ASCII's is all a port line can hold. */
static bool hs_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

int vsock_bridge_parse_connect(const char *line, size_t len, uint32_t *port)
{
	static const char cmd[] = "connect";
	uint64_t v = 0;
	size_t i = 0, start;

	while (i < len && hs_space(line[i]))
		i++;
	for (size_t k = 0; k < sizeof(cmd) - 1; k++, i++) {
		/* ASCII case folding: only 'A'..'Z' become letters under | 0x20. */
		if (i >= len || (line[i] | 0x20) != cmd[k])
			return -EINVAL;
	}
	if (i >= len || !hs_space(line[i]))
		return -EINVAL;
	while (i < len && hs_space(line[i]))
		i++;
	/* What Rust's u32 parsing takes: an optional '+', decimal digits, leading zeros. */
	if (i < len && line[i] == '+')
		i++;
	for (start = i; i < len && !hs_space(line[i]); i++) {
		if (line[i] < '0' || line[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(line[i] - '0');
		if (v > 0xffffffffull)
			return -EINVAL;
	}
	if (i == start)
		return -EINVAL;
	/* Words after the port are ignored, as Firecracker ignores them. */
	*port = (uint32_t)v;
	return 0;
}

static void hs_link(struct hs **head, struct hs *h)
{
	h->next = *head;
	if (*head)
		(*head)->pprev = &h->next;
	*head = h;
	h->pprev = head;
}

static void hs_unlink(struct hs *h)
{
	if (!h->pprev)
		return;
	*h->pprev = h->next;
	if (h->next)
		h->next->pprev = h->pprev;
	h->next = NULL;
	h->pprev = NULL;
}

static void hs_free(struct hs *h)
{
	hs_unlink(h);
	evloop_fd_remove(h->reg);
	if (h->fd >= 0)
		close(h->fd);
	free(h);
}

static void hs_drop(struct hs *h, const char *why)
{
	pr_info("vsock bridge: closed a client: %s", why);
	h->b->npending--;
	hs_free(h);
}

static void hs_connected(void *opaque, int result, uint32_t local_port)
{
	struct hs *h = opaque;
	char ok[32];
	int n;

	if (result == 0) {
		/* Before any guest data: the mux handles the RESPONSE before the RW that follows. */
		n = snprintf(ok, sizeof(ok), "OK %u\n", local_port);
		if (stream_write(h->end, ok, (size_t)n) != n)
			pr_info("vsock bridge: could not answer a client (port %u)", local_port);
	} else {
		pr_info("vsock bridge: connect to guest port failed: %s", strerror(-result));
	}
	/* The end belongs to the mux now (closed by it on failure). */
	hs_free(h);
}

static void hs_line(struct hs *h)
{
	struct vsock_bridge *b = h->b;
	uint32_t port;
	int r;

	if (vsock_bridge_parse_connect(h->line, h->len, &port) < 0) {
		hs_drop(h, "not a CONNECT <port> line");
		return;
	}
	evloop_fd_remove(h->reg);
	h->reg = NULL;
	/* Ours from accept4: close-on-exec, of the listening socket's type. */
	if (b->type == VSOCK_SEQPACKET)
		r = stream_adopt(h->fd, STREAM_MESSAGE, VSOCK_MAX_MSG, STREAM_NONBLOCKING, &h->end);
	else
		r = stream_adopt(h->fd, STREAM_BYTE, 0, STREAM_NONBLOCKING, &h->end);
	if (r < 0) {
		hs_drop(h, "cannot wrap the socket");
		return;
	}
	h->fd = -1;
	hs_unlink(h);
	b->npending--;
	hs_link(&b->connecting, h);
	r = vsock_mux_connect_async(b->dev, port, b->type, h->end, 0, hs_connected, h);
	if (r < 0) {
		stream_close(h->end);
		hs_free(h);
	}
}

enum { HS_MORE, HS_DONE };

/* A non-blocking recv from the client, retried on EINTR. */
static ssize_t hs_recv(struct hs *h, void *buf, size_t len, int flags)
{
	ssize_t n;

	do
		n = recv(h->fd, buf, len, MSG_DONTWAIT | flags);
	while (n < 0 && errno == EINTR);
	return n;
}

/*
 * A SEQPACKET client's first message is its line, the newline optional: the
 * message ends it. Read whole (MSG_TRUNC gives its real length), so nothing
 * of the next message, the guest's first, is touched.
 */
static int hs_take_message(struct hs *h)
{
	char buf[VSOCK_BRIDGE_LINE_MAX + 2];
	ssize_t n = hs_recv(h, buf, sizeof(buf), MSG_TRUNC);
	size_t len;

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return HS_MORE;
	/* 0 is an empty message or the client gone: SEQPACKET cannot tell them apart. */
	if (n <= 0) {
		hs_drop(h, "the client went away or sent an empty message during the handshake");
		return HS_DONE;
	}
	/* n is the message's real length, which may exceed what buf took. */
	len = (size_t)n;
	if (len <= sizeof(buf) && buf[len - 1] == '\n')
		len--;
	if (len > VSOCK_BRIDGE_LINE_MAX) {
		hs_drop(h, "handshake message too long");
		return HS_DONE;
	}
	h->len = (unsigned)len;
	memcpy(h->line, buf, len);
	hs_line(h);
	return HS_DONE;
}

/* Take what the client sent of its line. HS_DONE: the line was handled or the client dropped. */
static int hs_take(struct hs *h)
{
	char buf[VSOCK_BRIDGE_LINE_MAX + 1];
	size_t room = sizeof(h->line) - h->len + 1, take;
	const char *nl;
	ssize_t n;

	if (h->b->type == VSOCK_SEQPACKET)
		return hs_take_message(h);
	/* Peek, then take only up to the newline: what follows it is the guest's. */
	n = hs_recv(h, buf, room, MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return HS_MORE;
	if (n <= 0) {
		hs_drop(h, "the client went away during the handshake");
		return HS_DONE;
	}
	nl = memchr(buf, '\n', (size_t)n);
	take = nl ? (size_t)(nl - buf) + 1 : (size_t)n;
	if (!nl && h->len + (size_t)n > sizeof(h->line)) {
		hs_drop(h, "handshake line too long");
		return HS_DONE;
	}
	n = hs_recv(h, buf, take, 0);
	if (n != (ssize_t)take) {
		hs_drop(h, "the client went away during the handshake");
		return HS_DONE;
	}
	memcpy(h->line + h->len, buf, nl ? take - 1 : take);
	h->len += (unsigned)(nl ? take - 1 : take);
	if (!nl)
		return HS_MORE;
	hs_line(h);
	return HS_DONE;
}

static void hs_event(void *opaque, int fd, uint32_t events)
{
	(void)fd;
	(void)events;
	(void)hs_take(opaque);
}

/*
 * One client per call: the listening socket is level-triggered, so a burst
 * takes one loop turn per client, and a lone client costs no accept4 that
 * only says EAGAIN.
 */
static void listen_event(void *opaque, int fd, uint32_t events)
{
	struct vsock_bridge *b = opaque;
	int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	struct hs *h;

	(void)events;
	if (cfd < 0) {
		/* Out of fds (EMFILE, ENFILE, ENOMEM): the client waits in the backlog,
		 * and the level-triggered socket must not spin the loop meanwhile. */
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED &&
		    evloop_fd_modify(b->lreg, 0) == 0) {
			b->accept_paused = true;
			pr_guest_err("vsock bridge: cannot accept a client: %s; pausing", strerror(errno));
		}
		return;
	}
	if (b->npending >= VSOCK_BRIDGE_MAX_PENDING) {
		pr_guest_err("vsock bridge: %u handshakes in progress; closed a client",
			     VSOCK_BRIDGE_MAX_PENDING);
		close(cfd);
		return;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		close(cfd);
		return;
	}
	h->b = b;
	h->fd = cfd;
	h->deadline_ns = monotonic_coarse_ns() + (uint64_t)VSOCK_BRIDGE_HANDSHAKE_MS * 1000000ull;
	hs_link(&b->pending, h);
	b->npending++;
	/* The line is often there already: no poll registration for it then. */
	if (hs_take(h) == HS_MORE && evloop_fd_add(b->loop, cfd, EPOLLIN, hs_event, h, &h->reg) < 0)
		hs_drop(h, "cannot watch the client");
}

static void bridge_tick(void *opaque, uint64_t expirations)
{
	struct vsock_bridge *b = opaque;
	uint64_t now = monotonic_coarse_ns();
	struct hs *h, *next;

	(void)expirations;
	if (b->accept_paused && evloop_fd_modify(b->lreg, EPOLLIN) == 0)
		b->accept_paused = false;
	for (h = b->pending; h; h = next) {
		next = h->next;
		if (now >= h->deadline_ns)
			hs_drop(h, "no CONNECT line in time");
	}
}

/* A guest connection to CID 2 port `port`: PATH_port, if something accepts there. */
static int bridge_guest_connect(void *opaque, uint32_t port, enum vsock_type type,
				struct stream_end **dev_end)
{
	struct vsock_bridge *b = opaque;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, r;

	/* The path's length was checked at creation: PATH_<10 digits> fits. */
	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%.*s_%u", (int)BRIDGE_PATH_MAX,
			     b->path, port) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, (type == VSOCK_SEQPACKET ? SOCK_SEQPACKET : SOCK_STREAM) |
			     SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* AF_UNIX connects at once or fails at once (EAGAIN: its backlog is full). */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		close(fd);
		return r == -EAGAIN ? -ECONNREFUSED : r;
	}
	if (type == VSOCK_SEQPACKET)
		r = stream_adopt(fd, STREAM_MESSAGE, VSOCK_MAX_MSG, STREAM_NONBLOCKING, dev_end);
	else
		r = stream_adopt(fd, STREAM_BYTE, 0, STREAM_NONBLOCKING, dev_end);
	if (r < 0)
		close(fd);
	return r;
}

int vsock_bridge_create(struct vsock_dev *dev, const char *path, enum vsock_type type,
			struct vsock_bridge **out, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct vsock_bridge *b;
	struct stat st;
	int r;

	if (!path[0] || strlen(path) > BRIDGE_PATH_MAX) {
		snprintf(err, errlen, "socket=%s: a Unix socket path is 1 to %zu characters",
			 path, BRIDGE_PATH_MAX);
		return -EINVAL;
	}
	if (lstat(path, &st) == 0) {
		int probe;

		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "socket=%s: exists and is not a socket", path);
			return -EINVAL;
		}
		/*
		 * A socket nobody listens on is left over from an earlier run: reuse
		 * its name. Only a refused connect says so: one of the other type
		 * (EPROTOTYPE) or one we may not use is someone's.
		 */
		memcpy(sa.sun_path, path, strlen(path) + 1);
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe < 0) {
			r = -errno;
			snprintf(err, errlen, "socket=%s: %s", path, strerror(-r));
			return r;
		}
		r = connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : -errno;
		close(probe);
		if (r == 0 || r == -EPROTOTYPE || r == -EAGAIN) {
			snprintf(err, errlen, "socket=%s: another process listens there", path);
			return -EADDRINUSE;
		}
		if (r != -ECONNREFUSED && r != -ENOENT) {
			snprintf(err, errlen, "socket=%s: exists and cannot be reused: %s", path, strerror(-r));
			return r;
		}
		unlink(path);
	}
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->dev = dev;
	b->type = type;
	b->loop = vsock_mux_loop(dev);
	memcpy(b->path, path, strlen(path) + 1);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	b->lfd = socket(AF_UNIX, (type == VSOCK_SEQPACKET ? SOCK_SEQPACKET : SOCK_STREAM) |
			       SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (b->lfd < 0) {
		r = -errno;
		goto err_free;
	}
	if (bind(b->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(b->lfd, 128) < 0) {
		r = -errno;
		snprintf(err, errlen, "socket=%s: cannot listen there: %s", path, strerror(-r));
		goto err_close;
	}
	r = evloop_fd_add(b->loop, b->lfd, EPOLLIN, listen_event, b, &b->lreg);
	if (r < 0)
		goto err_unlink;
	r = evloop_timer_add(b->loop, bridge_tick, b, &b->timer);
	if (r < 0 || (r = evloop_timer_arm(b->timer, BRIDGE_TICK_NS, BRIDGE_TICK_NS)) < 0)
		goto err_unlink;
	vsock_mux_set_fallback(dev, bridge_guest_connect, b);
	*out = b;
	return 0;
err_unlink:
	snprintf(err, errlen, "socket=%s: cannot watch it: %s", path, strerror(-r));
	evloop_timer_remove(b->timer);
	evloop_fd_remove(b->lreg);
	unlink(path);
err_close:
	close(b->lfd);
err_free:
	if (!err[0])
		snprintf(err, errlen, "socket=%s: %s", path, strerror(-r));
	free(b);
	return r;
}

void vsock_bridge_destroy(struct vsock_bridge *b)
{
	if (!b)
		return;
	evloop_timer_remove(b->timer);
	evloop_fd_remove(b->lreg);
	close(b->lfd);
	unlink(b->path);
	while (b->pending)
		hs_drop(b->pending, "the device is going away");
	/* Connecting ones were answered (and freed) when the mux went, which it does first. */
	free(b);
}
