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
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>

struct api_server {
	const struct api_ops *ops;
	void *opaque;
	int listen_fd;
	char *unlink_path;
	int stop_efd;
	pthread_t thread;
	struct event_base *base;
	struct evhttp *http;
	struct event *stop_ev, *grace_ev;
	unsigned nconns;         /* connections open now (server thread only) */
	struct api_conn *pending; /* accepted, conn_setup not run yet */
	bool stopping;
	bool shutdown_pending;   /* a shutdown reply is on its way out */
};

/* One accepted connection, tracked so their number stays bounded. */
struct api_conn {
	struct api_server *s;
	struct bufferevent *bev;
	struct event *deadline;
	struct api_conn *next_pending;
};

static void pending_remove(struct api_server *s, struct api_conn *c)
{
	for (struct api_conn **p = &s->pending; *p; p = &(*p)->next_pending) {
		if (*p == c) {
			*p = c->next_pending;
			return;
		}
	}
}

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

static void conn_closed(struct evhttp_connection *evcon, void *arg)
{
	struct api_conn *c = arg;

	(void)evcon;
	c->s->nconns--;
	if (c->deadline)
		event_free(c->deadline);
	free(c);
}

/* API_CONN_LIFETIME_S is over: a client dribbling bytes does not keep its slot for ever. */
static void conn_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct api_conn *c = arg;
	void *evcon = NULL;

	(void)fd;
	(void)what;
	bufferevent_getcb(c->bev, NULL, NULL, NULL, &evcon);
	if (evcon)
		evhttp_connection_free(evcon); /* calls conn_closed */
}

/*
 * Runs on the loop's next turn after evhttp wrapped a new connection around
 * our bufferevent; its callback argument is then the evhttp_connection. Our
 * reference kept the bufferevent alive in case the connection died first
 * (bufferevent_free() clears the callbacks, so that is seen too).
 */
static void conn_setup(evutil_socket_t fd, short what, void *arg)
{
	struct api_conn *c = arg;
	struct api_server *s = c->s;
	struct timeval life = { API_CONN_LIFETIME_S, 0 };
	void *evcon = NULL;

	(void)fd;
	(void)what;
	pending_remove(s, c);
	bufferevent_getcb(c->bev, NULL, NULL, NULL, &evcon);
	bufferevent_decref(c->bev);
	if (!evcon) {
		s->nconns--;
		free(c);
		return;
	}
	evhttp_connection_set_closecb(evcon, conn_closed, c);
	if (s->nconns > API_MAX_CONNECTIONS || s->stopping) {
		pr_guest_err("--api-socket: more than %d connections at once; closing the newest",
			     API_MAX_CONNECTIONS);
		evhttp_connection_free(evcon);
		return;
	}
	c->deadline = evtimer_new(s->base, conn_deadline, c);
	if (c->deadline)
		evtimer_add(c->deadline, &life);
}

static struct bufferevent *conn_new(struct event_base *base, void *arg)
{
	struct api_server *s = arg;
	struct api_conn *c = calloc(1, sizeof(*c));
	struct bufferevent *bev = c ? bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE) : NULL;

	if (!bev || event_base_once(base, -1, EV_TIMEOUT, conn_setup, c, NULL) < 0) {
		/* evhttp makes its own bufferevent, or drops the connection: not counted. */
		if (bev)
			bufferevent_free(bev);
		free(c);
		return NULL;
	}
	c->s = s;
	c->bev = bev;
	c->next_pending = s->pending;
	s->pending = c;
	bufferevent_incref(bev);
	s->nconns++;
	return bev;
}

/* ---- requests ------------------------------------------------------------------------ */

static const char *method_name(enum evhttp_cmd_type t)
{
	switch (t) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_PUT: return "PUT";
	case EVHTTP_REQ_POST: return "POST";
	case EVHTTP_REQ_HEAD: return "HEAD";
	case EVHTTP_REQ_DELETE: return "DELETE";
	case EVHTTP_REQ_OPTIONS: return "OPTIONS";
	case EVHTTP_REQ_TRACE: return "TRACE";
	case EVHTTP_REQ_CONNECT: return "CONNECT";
	case EVHTTP_REQ_PATCH: return "PATCH";
	}
	return "UNKNOWN";
}

static void shutdown_sent(struct evhttp_request *req, void *arg)
{
	struct api_server *s = arg;

	(void)req;
	s->shutdown_pending = false;
	if (s->stopping)
		event_base_loopbreak(s->base);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct api_server *s = arg;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	struct evkeyvalq *out_headers = evhttp_request_get_output_headers(req);
	size_t len = evbuffer_get_length(in);
	const void *body = len && len <= API_MAX_BODY ? evbuffer_pullup(in, -1) : NULL;
	struct api_response r;
	struct evbuffer *out;

	api_handle(s->ops, s->opaque, method_name(evhttp_request_get_command(req)),
		   evhttp_request_get_uri(req), body, len, &r);
	out = r.body ? evbuffer_new() : NULL;
	if (out && evbuffer_add(out, r.body, r.body_len) < 0) {
		evbuffer_free(out);
		out = NULL;
	}
	if (r.body)
		evhttp_add_header(out_headers, "Content-Type", "application/json");
	if (r.allow)
		evhttp_add_header(out_headers, "Allow", r.allow);
	if (r.status == 413)
		evhttp_add_header(out_headers, "Connection", "close");
	if (r.shutdown) {
		s->shutdown_pending = true;
		evhttp_request_set_on_complete_cb(req, shutdown_sent, s);
	}
	evhttp_send_reply(req, r.status, r.reason, out);
	if (out)
		evbuffer_free(out);
	api_response_free(&r);
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
	 * fails with EPIPE and evhttp drops the connection.
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
	if (s->http)
		evhttp_free(s->http); /* closes every connection (conn_closed runs for each) */
	/* Accepted just before the stop: their conn_setup will never run. */
	while (s->pending) {
		struct api_conn *c = s->pending;

		s->pending = c->next_pending;
		bufferevent_decref(c->bev);
		free(c);
	}
	if (s->stop_ev)
		event_free(s->stop_ev);
	if (s->grace_ev)
		event_free(s->grace_ev);
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
	s->http = s->base ? evhttp_new(s->base) : NULL;
	if (!s->http)
		goto err;
	evhttp_set_max_headers_size(s->http, API_MAX_HEADERS);
	evhttp_set_max_body_size(s->http, API_MAX_BODY_HARD);
	evhttp_set_timeout(s->http, API_IDLE_TIMEOUT_S);
	/* Every method evhttp knows reaches routes, which answers a wrong one with 405 and JSON. */
	evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
				   EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
				   EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_default_content_type(s->http, "application/json");
	evhttp_set_gencb(s->http, on_request, s);
	evhttp_set_bevcb(s->http, conn_new, s);
	/* libevent accepts until EAGAIN: a blocking socket would stall the thread in accept(). */
	if (evutil_make_socket_nonblocking(listen_fd) < 0 ||
	    !evhttp_accept_socket_with_handle(s->http, listen_fd)) {
		ret = -EIO;
		goto err;
	}
	s->listen_fd = -1; /* evhttp closes it now */
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
