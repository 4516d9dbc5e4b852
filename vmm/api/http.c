#include "vmm/api/http.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "vmm/api/http_proto.h"

struct api_server {
	const struct api_ops *ops;
	void *opaque;
	int listen_fd;
	char *unlink_path;
	int stop_efd;
	pthread_t thread;
	struct event_base *base;
	struct evconnlistener *listener;
	struct event *stop_ev, *grace_ev, *accept_retry;
	unsigned nconns;         /* connections open now (server thread only) */
	struct api_conn *conns;  /* all of them, for the stop */
	bool stopping;
	bool shutdown_pending;   /* a shutdown reply is on its way out */
};

/* One accepted connection: a bufferevent on the socket, http_proto on top. */
struct api_conn {
	struct api_server *s;
	struct bufferevent *bev;
	struct event *deadline;  /* API_CONN_LIFETIME_S */
	struct api_conn *prev, *next;
	bool closing;            /* free once the output has left */
	bool lingering;          /* answered and shut for writing: input read and dropped until EOF */
	bool shutdown_reply;     /* the response in the output buffer shut the VM down */
	struct api_proto proto;
};

/* ---- the listening socket ------------------------------------------------------ */

PRINTF_FMT(3, 4)
static int listen_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Whether something accepts connections on path: a live server (1), a stale socket (0), or -errno. */
static int socket_alive(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), ret;

	if (fd < 0)
		return -errno;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	ret = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 1 : -errno;
	close(fd);
	return ret == -ECONNREFUSED ? 0 : ret;
}

static int listen_fd_spec(const char *n, int *fd_out, char *err, size_t errlen)
{
	int type = 0, domain = 0;
	socklen_t len = sizeof(int);
	struct stat st;
	char *end;
	long v;

	errno = 0;
	v = strtol(n, &end, 10);
	if (errno || !*n || *end || v < 0 || v > INT_MAX)
		return listen_fail(err, errlen, "--api-socket fd=%s: not a file descriptor number", n);
	if (fstat((int)v, &st) < 0)
		return listen_fail(err, errlen, "--api-socket fd=%ld: %s", v, strerror(errno));
	if (!S_ISSOCK(st.st_mode) ||
	    getsockopt((int)v, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM ||
	    getsockopt((int)v, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 || domain != AF_UNIX)
		return listen_fail(err, errlen, "--api-socket fd=%ld: not a Unix stream socket", v);
	/* Listening already, or bound and waiting for it (listen again is harmless). */
	if (listen((int)v, 64) < 0)
		return listen_fail(err, errlen, "--api-socket fd=%ld: listen: %s (bind it first)", v,
				   strerror(errno));
	if (fcntl((int)v, F_SETFD, FD_CLOEXEC) < 0)
		return listen_fail(err, errlen, "--api-socket fd=%ld: %s", v, strerror(errno));
	*fd_out = (int)v;
	return 0;
}

int api_listen(const char *spec, int *fd_out, char **path_out, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, ret;

	*fd_out = -1;
	*path_out = NULL;
	if (!strncmp(spec, "fd=", 3))
		return listen_fd_spec(spec + 3, fd_out, err, errlen);
	if (!*spec || strlen(spec) >= sizeof(sa.sun_path))
		return listen_fail(err, errlen, "--api-socket %s: give a path of 1 to %zu bytes",
				   spec, sizeof(sa.sun_path) - 1);
	if (lstat(spec, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return listen_fail(err, errlen,
					   "--api-socket %s: exists and is not a socket; remove it or choose another path",
					   spec);
		ret = socket_alive(spec);
		if (ret == 1)
			return listen_fail(err, errlen,
					   "--api-socket %s: another process is serving on it (a running vmm?)", spec);
		if (ret < 0)
			return listen_fail(err, errlen, "--api-socket %s: %s", spec, strerror(-ret));
		/* Nobody listens: a dead vmm's socket. */
		if (unlink(spec) < 0 && errno != ENOENT)
			return listen_fail(err, errlen, "--api-socket %s: removing the stale socket: %s",
					   spec, strerror(errno));
	} else if (errno != ENOENT) {
		return listen_fail(err, errlen, "--api-socket %s: %s", spec, strerror(errno));
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return listen_fail(err, errlen, "--api-socket %s: socket: %s", spec, strerror(errno));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", spec);
	/* Linux gives the socket file the socket inode's mode (less the umask): 0600 from the start. */
	if (fchmod(fd, 0600) < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = errno;
		close(fd);
		return listen_fail(err, errlen, "--api-socket %s: %s", spec, strerror(ret));
	}
	if (chmod(spec, 0600) < 0 || listen(fd, 64) < 0) {
		ret = errno;
		close(fd);
		unlink(spec);
		return listen_fail(err, errlen, "--api-socket %s: %s", spec, strerror(ret));
	}
	*path_out = strdup(spec);
	if (!*path_out) {
		close(fd);
		unlink(spec);
		return listen_fail(err, errlen, "--api-socket %s: out of memory", spec);
	}
	*fd_out = fd;
	return 0;
}

/* ---- connections ------------------------------------------------------------------ */

#define API_LINGER_S 2   /* after an error answer: how long the rest of a request may still arrive */

static void conn_free(struct api_conn *c)
{
	struct api_server *s = c->s;

	if (c->shutdown_reply) {
		s->shutdown_pending = false;
		if (s->stopping)
			event_base_loopbreak(s->base);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	if (c->deadline)
		event_free(c->deadline);
	bufferevent_free(c->bev);   /* BEV_OPT_CLOSE_ON_FREE: closes the socket */
	free(c);
}

/* http_proto's output: queued on the bufferevent, written as the client reads. */
static void conn_write(void *ctx, const void *buf, size_t len)
{
	struct api_conn *c = ctx;

	if (bufferevent_write(c->bev, buf, len) < 0)
		c->proto.close = true;
}

/*
 * The last answer has left. Shut the socket for writing and let the rest of
 * the client's request arrive for a while: closing with it unread would reset
 * the connection, and the client could lose the answer.
 */
static void conn_linger(struct api_conn *c)
{
	struct timeval linger = { API_LINGER_S, 0 };
	struct evbuffer *in = bufferevent_get_input(c->bev);

	c->lingering = true;
	shutdown(bufferevent_getfd(c->bev), SHUT_WR);
	evbuffer_drain(in, evbuffer_get_length(in));
	bufferevent_set_timeouts(c->bev, &linger, NULL);
	bufferevent_enable(c->bev, EV_READ);
}

/* Give http_proto what came, as far as it takes it; the rest waits in the input buffer. */
static void conn_feed(struct api_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);

	while (!c->proto.waiting && !c->proto.close && evbuffer_get_length(in)) {
		struct evbuffer_iovec v;
		size_t used;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		used = api_proto_feed(&c->proto, v.iov_base, v.iov_len);
		evbuffer_drain(in, used);
		if (used < v.iov_len)
			break;
	}
	if (c->proto.shutdown)
		c->shutdown_reply = c->s->shutdown_pending = true;
	/* A reply queued: the write callback says when it has left. Nothing queued and done: now. */
	if (c->proto.close && !evbuffer_get_length(bufferevent_get_output(c->bev)))
		conn_linger(c);
}

static void conn_read(struct bufferevent *bev, void *arg)
{
	struct api_conn *c = arg;

	if (c->lingering) {
		evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
		return;
	}
	conn_feed(c);
}

/* The output has left: free, linger, or take the next request. */
static void conn_written(struct bufferevent *bev, void *arg)
{
	struct api_conn *c = arg;

	(void)bev;
	if (c->shutdown_reply) {
		c->shutdown_reply = false;
		c->s->shutdown_pending = false;
		if (c->s->stopping)
			event_base_loopbreak(c->s->base);
	}
	if (c->closing) {
		conn_free(c);
	} else if (c->lingering) {
		return;
	} else if (c->proto.close) {
		conn_linger(c);
	} else if (c->proto.waiting) {
		api_proto_resume(&c->proto);
		conn_feed(c);
	}
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
	struct api_conn *c = arg;

	if (c->lingering || c->closing || (what & (BEV_EVENT_ERROR | BEV_EVENT_WRITING))) {
		conn_free(c);   /* done lingering, a write failed or stalled, or the socket broke */
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		api_proto_timeout(&c->proto);   /* a 408 when a request was under way */
	else if (what & BEV_EVENT_EOF)
		api_proto_eof(&c->proto);       /* a 400 when it was cut short */
	if (!evbuffer_get_length(bufferevent_get_output(bev))) {
		conn_free(c);
		return;
	}
	/* An answer is still going out (the client may have shut only its sending side). */
	bufferevent_disable(bev, EV_READ);
	c->closing = true;
}

/* API_CONN_LIFETIME_S is over: a client dribbling bytes does not keep its slot for ever. */
static void conn_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	conn_free(arg);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
		      void *arg)
{
	struct api_server *s = arg;
	struct timeval idle = { API_IDLE_TIMEOUT_S, 0 }, life = { API_CONN_LIFETIME_S, 0 };
	struct api_conn *c;

	(void)l;
	(void)sa;
	(void)salen;
	if (s->nconns >= API_MAX_CONNECTIONS || s->stopping) {
		pr_guest_err("--api-socket: more than %d connections at once; closing the newest",
			     API_MAX_CONNECTIONS);
		evutil_closesocket(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		evutil_closesocket(fd);
		return;
	}
	c->s = s;
	c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->deadline = evtimer_new(s->base, conn_deadline, c);
	if (!c->bev || !c->deadline || evtimer_add(c->deadline, &life) < 0) {
		if (c->deadline)
			event_free(c->deadline);
		if (c->bev)
			bufferevent_free(c->bev);
		else
			evutil_closesocket(fd);
		free(c);
		return;
	}
	api_proto_init(&c->proto, s->ops, s->opaque, conn_write, c);
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	bufferevent_setcb(c->bev, conn_read, conn_written, conn_event, c);
	/* While an answer waits for the client to read it, its next bytes wait in the socket. */
	bufferevent_setwatermark(c->bev, EV_READ, 0, API_MAX_HEADERS + API_MAX_BODY);
	/* Idle in either direction: a client that neither sends nor reads its answer. */
	bufferevent_set_timeouts(c->bev, &idle, &idle);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct api_server *s = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(s->listener);
}

/* accept() failed (out of fds, say): pause accepting for 100 ms instead of spinning. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
	struct api_server *s = arg;
	struct timeval pause = { 0, 100 * 1000 };

	pr_err("api: accept: %s", strerror(EVUTIL_SOCKET_ERROR()));
	evconnlistener_disable(l);
	evtimer_add(s->accept_retry, &pause);
}

/* ---- the thread ------------------------------------------------------------------------ */

static void grace_over(evutil_socket_t fd, short what, void *arg)
{
	struct api_server *s = arg;

	(void)fd;
	(void)what;
	event_base_loopbreak(s->base);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	struct api_server *s = arg;
	struct timeval grace = { 0, 500 * 1000 };
	uint64_t v;

	(void)what;
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		pr_err("api: reading the stop request: %s", strerror(errno));
	s->stopping = true;
	if (!s->shutdown_pending || !s->grace_ev || evtimer_add(s->grace_ev, &grace) < 0)
		event_base_loopbreak(s->base);
}

static void *server_thread(void *arg)
{
	struct api_server *s = arg;
	sigset_t pipe;

	/*
	 * libevent writes with write(): a client gone before its answer would
	 * raise SIGPIPE and end vmm. Blocked on this thread alone, the write
	 * fails with EPIPE and the connection is dropped.
	 */
	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe, NULL);
	if (event_base_dispatch(s->base) < 0)
		pr_err("api: the event loop failed");
	return NULL;
}

static void server_free(struct api_server *s)
{
	while (s->conns)
		conn_free(s->conns);
	if (s->listener)
		evconnlistener_free(s->listener);  /* LEV_OPT_CLOSE_ON_FREE: closes the socket */
	if (s->stop_ev)
		event_free(s->stop_ev);
	if (s->grace_ev)
		event_free(s->grace_ev);
	if (s->accept_retry)
		event_free(s->accept_retry);
	if (s->base)
		event_base_free(s->base);
	if (s->stop_efd >= 0)
		close(s->stop_efd);
	if (s->unlink_path)
		unlink(s->unlink_path);
	free(s->unlink_path);
	free(s);
}

int api_server_start(struct api_server **out, int listen_fd, char *unlink_path,
		     const struct api_ops *ops, void *opaque)
{
	struct api_server *s = calloc(1, sizeof(*s));
	int ret = -ENOMEM;

	if (!s) {
		close(listen_fd);
		free(unlink_path);
		return -ENOMEM;
	}
	s->ops = ops;
	s->opaque = opaque;
	s->listen_fd = listen_fd;
	s->unlink_path = unlink_path;
	s->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->stop_efd < 0) {
		ret = -errno;
		goto err;
	}
	s->base = event_base_new();
	s->accept_retry = s->base ? evtimer_new(s->base, accept_resume, s) : NULL;
	if (!s->accept_retry)
		goto err;
	/* libevent accepts until EAGAIN: a blocking socket would stall the thread in accept(). */
	if (evutil_make_socket_nonblocking(listen_fd) < 0) {
		ret = -errno;
		goto err;
	}
	s->listener = evconnlistener_new(s->base, on_accept, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, listen_fd);
	if (!s->listener) {
		ret = -EIO;
		goto err;
	}
	s->listen_fd = -1; /* the listener closes it now */
	evconnlistener_set_error_cb(s->listener, on_accept_error);
	s->stop_ev = event_new(s->base, s->stop_efd, EV_READ | EV_PERSIST, on_stop, s);
	s->grace_ev = evtimer_new(s->base, grace_over, s);
	if (!s->stop_ev || !s->grace_ev || event_add(s->stop_ev, NULL) < 0)
		goto err;
	ret = vmm_thread_create(&s->thread, server_thread, s, "api");
	if (ret)
		goto err;
	*out = s;
	return 0;

err:
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	pr_err("--api-socket: starting the API server failed: %s", strerror(-ret));
	server_free(s);
	return ret;
}

void api_server_stop(struct api_server *s)
{
	uint64_t one = 1;

	if (!s)
		return;
	if (write(s->stop_efd, &one, sizeof(one)) < 0)
		pr_err("api: stopping the server: %s", strerror(errno));
	pthread_join(s->thread, NULL);
	server_free(s);
}
