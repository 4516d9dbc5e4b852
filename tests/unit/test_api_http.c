/*
 * vmm/api/http and vmm/api/ctl over a real Unix socket, against a fake VM:
 * the socket file (mode, stale and live sockets, other files, fd=N), requests
 * through the ctl client, hostile raw bytes (what the HTTP parser refuses and
 * what reaches routes: every refusal JSON), slow clients that must not block others, the bound on
 * connections, and a shutdown reply that gets out before the server stops.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "vmm/api/ctl.h"
#include "vmm/api/http.h"
#include "vmm/api/state.h"

struct fake_vm {
	struct vm_runstate rs;
	int pauses;
};

static int op(struct fake_vm *f, enum vm_op o)
{
	int ret = vm_runstate_begin(&f->rs, o);

	if (!ret)
		vm_runstate_end(&f->rs, o, true);
	return ret;
}

static int f_pause(void *o) { struct fake_vm *f = o; int r = op(f, VM_OP_PAUSE); f->pauses += !r; return r; }
static int f_resume(void *o) { return op(o, VM_OP_RESUME); }
static int f_button(void *o) { return op(o, VM_OP_POWER_BUTTON); }
static int f_shutdown(void *o) { return op(o, VM_OP_SHUTDOWN); }
static int f_info(void *o, struct json_object *out)
{
	struct fake_vm *f = o;

	json_object_object_add(out, "state", json_object_new_string(vm_run_state_name(f->rs.state)));
	return 0;
}
static int f_counters(void *o, struct json_object *out) { (void)o; (void)out; return 0; }

static const struct api_ops ops = {
	.pause = f_pause, .resume = f_resume, .power_button = f_button,
	.shutdown = f_shutdown, .info = f_info, .counters = f_counters,
};

struct fixture {
	char dir[64], path[128];
	struct fake_vm vm;
	struct api_server *srv;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256], *path;
	int fd;

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/vmm-api-test.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/api.sock", f->dir);
	assert_int_equal(api_listen(f->path, &fd, &path, err, sizeof(err)), 0);
	assert_int_equal(api_server_start(&f->srv, fd, path, &ops, &f->vm), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	api_server_stop(f->srv);
	/* The server removed its socket at stop. */
	assert_int_equal(access(f->path, F_OK), -1);
	rmdir(f->dir);
	free(f);
	return 0;
}

static int connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { 3, 0 };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Send raw bytes, read the answer until the server closes (or 3 s pass). */
static char *raw(const char *path, const void *req, size_t len)
{
	static char buf[16384];
	int fd = connect_to(path);
	size_t got = 0;
	ssize_t n;

	/*
	 * A server that refuses an oversized request may answer and close before
	 * all of it is sent: a short or failed send then is the server's right;
	 * what it answered is read below either way.
	 */
	for (size_t sent = 0; sent < len;) {
		n = send(fd, (const char *)req + sent, len - sent, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			assert_true(errno == EPIPE || errno == ECONNRESET);
			break;
		}
		sent += (size_t)n;
	}
	while (got < sizeof(buf) - 1 && (n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0)) > 0)
		got += (size_t)n;
	buf[got] = '\0';
	close(fd);
	return buf;
}

static char *raw_str(const char *path, const char *req)
{
	return raw(path, req, strlen(req));
}

/* Through the real client: status and body. */
static int ctl(struct fixture *f, const char *method, const char *endpoint, char **body)
{
	char path[64];
	size_t len;
	int fd = connect_to(f->path), status = 0;

	snprintf(path, sizeof(path), "/api/v1/%s", endpoint);
	assert_int_equal(ctl_request(fd, method, path, &status, body, &len), 0);
	close(fd);
	return status;
}

/*
 * ctl() once the server has caught up: a connection it closes unanswered (it
 * still holds API_MAX_CONNECTIONS that are going away) is tried again, every
 * 50 ms for 5 s.
 */
static int ctl_eventually(struct fixture *f, const char *endpoint, char **body)
{
	char path[64];
	size_t len;
	int status = 0;

	snprintf(path, sizeof(path), "/api/v1/%s", endpoint);
	for (int i = 0; i < 100; i++) {
		int fd = connect_to(f->path), ret = ctl_request(fd, "GET", path, &status, body, &len);

		close(fd);
		if (ret == 0)
			return status;
		usleep(50 * 1000);
	}
	fail_msg("%s: no answer in 5 s", endpoint);
	return 0;
}

static void test_socket_file(void **state)
{
	struct fixture *f = *state;
	char err[256], *path, other[160];
	struct stat st;
	int fd, sv[2];

	/* Mode 0600: nobody else may write to it. */
	assert_int_equal(lstat(f->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	/* A live socket is refused. */
	assert_int_not_equal(api_listen(f->path, &fd, &path, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "another process is serving"));
	assert_non_null(strstr(err, "--api-socket"));
	/* A regular file is refused and left alone. */
	snprintf(other, sizeof(other), "%s/file", f->dir);
	fd = open(other, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_not_equal(api_listen(other, &fd, &path, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "not a socket"));
	assert_int_equal(access(other, F_OK), 0);
	unlink(other);
	/* A stale socket (bound, nobody listening) is replaced. */
	snprintf(other, sizeof(other), "%s/stale.sock", f->dir);
	{
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int s = socket(AF_UNIX, SOCK_STREAM, 0);

		assert_true(strlen(other) < sizeof(sa.sun_path));
		memcpy(sa.sun_path, other, strlen(other) + 1);
		assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
		close(s);
	}
	assert_int_equal(api_listen(other, &fd, &path, err, sizeof(err)), 0);
	assert_string_equal(path, other);
	close(fd);
	unlink(path);
	free(path);
	/* Paths too long, fd=N that is no socket, or no number. */
	memset(other, 'a', sizeof(other) - 1);
	other[sizeof(other) - 1] = '\0';
	assert_int_not_equal(api_listen(other, &fd, &path, err, sizeof(err)), 0);
	assert_int_not_equal(api_listen("fd=0x3", &fd, &path, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "fd=0x3"));
	assert_int_not_equal(api_listen("fd=2", &fd, &path, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "not a Unix stream socket"));
	/* fd=N: a socket a supervisor made and handed over. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
	snprintf(other, sizeof(other), "fd=%d", sv[0]);
	assert_int_not_equal(api_listen(other, &fd, &path, err, sizeof(err)), 0); /* datagram */
	close(sv[0]);
	close(sv[1]);
	{
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int s = socket(AF_UNIX, SOCK_STREAM, 0);

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/sup.sock", f->dir);
		assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
		snprintf(other, sizeof(other), "fd=%d", s);
		assert_int_equal(api_listen(other, &fd, &path, err, sizeof(err)), 0);
		assert_int_equal(fd, s);
		assert_null(path);
		close(s);
		unlink(sa.sun_path);
	}
}

static void test_requests_through_ctl(void **state)
{
	struct fixture *f = *state;
	char *body;

	assert_int_equal(ctl(f, "GET", "vmm.ping", &body), 200);
	assert_non_null(strstr(body, "\"version\""));
	free(body);
	assert_int_equal(ctl(f, "PUT", "vm.pause", &body), 204);
	free(body);
	assert_int_equal(ctl(f, "PUT", "vm.pause", &body), 409);
	assert_non_null(strstr(body, "already paused"));
	free(body);
	assert_int_equal(ctl(f, "GET", "vm.info", &body), 200);
	assert_non_null(strstr(body, "\"Paused\""));
	free(body);
	assert_int_equal(ctl(f, "PUT", "vm.resume", &body), 204);
	free(body);
	assert_int_equal(f->vm.pauses, 1);
	assert_int_equal(ctl(f, "GET", "vm.nothing", &body), 404);
	free(body);
}

/* A raw answer: its status line, a JSON body whose "error" says `what`, and how it ends. */
static void expect_json_error(const char *r, int status, const char *what)
{
	char line[32];
	const char *body = strstr(r, "\r\n\r\n");
	struct json_object *j, *e;

	snprintf(line, sizeof(line), "HTTP/1.1 %d ", status);
	if (strncmp(r, line, strlen(line)))
		fail_msg("expected %d with \"%s\", got: %.300s", status, what, r);
	assert_non_null(strstr(r, "Content-Type: application/json\r\n"));
	assert_non_null(body);
	j = json_tokener_parse(body + 4);
	assert_non_null(j);
	assert_true(json_object_object_get_ex(j, "error", &e));
	if (!strstr(json_object_get_string(e), what))
		fail_msg("error \"%s\" does not say \"%s\"", json_object_get_string(e), what);
	json_object_put(j);
}

static void test_hostile_bytes(void **state)
{
	struct fixture *f = *state;
	enum { BIG = 64 * 1024 };
	static char big[BIG * 2];
	char *r;
	int n;

	/* What routes sees: JSON errors. */
	r = raw_str(f->path, "DELETE /api/v1/vm.pause HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	expect_json_error(r, 405, "takes PUT");
	assert_non_null(strstr(r, "Allow: PUT"));
	r = raw_str(f->path, "PUT /api/v1/vm.pause HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
			     "Content-Length: 9\r\n\r\n{\"a\":[1]}");
	expect_json_error(r, 400, "unknown field");
	n = snprintf(big, sizeof(big), "PUT /api/v1/vm.pause HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n");
	memset(big + n, ' ', 2000);
	r = raw(f->path, big, (size_t)n + 2000);
	expect_json_error(r, 413, "body of 2000 bytes");

	/* What the parser refuses before routes: JSON errors too, naming the fault. */
	expect_json_error(raw_str(f->path, "GARBAGE\r\n\r\n"), 400, "unknown method");
	expect_json_error(raw_str(f->path, "PUT /api/v1/vm.pause HTTP/1.1\r\nContent-Length: -5\r\n\r\n"),
			  400, "invalid Content-Length");
	expect_json_error(raw_str(f->path, "PUT /api/v1/vm.pause HTTP/1.1\r\n"
				  "Content-Length: 99999999999999999999\r\n\r\n"), 400, "invalid Content-Length");
	expect_json_error(raw_str(f->path, "PUT /api/v1/vm.pause HTTP/1.1\r\nContent-Length: 2\r\n"
				  "Content-Length: 2\r\n\r\n{}"), 400, "twice");
	expect_json_error(raw(f->path, "GET /\0 HTTP/1.1\r\n\r\n", 19), 400, "malformed request line");
	/* Headers past the bound. */
	n = snprintf(big, sizeof(big), "GET /api/v1/vmm.ping HTTP/1.1\r\nX: ");
	memset(big + n, 'a', API_MAX_HEADERS * 2);
	memcpy(big + n + API_MAX_HEADERS * 2, "\r\n\r\n", 4);
	r = raw(f->path, big, (size_t)n + API_MAX_HEADERS * 2 + 4);
	expect_json_error(r, 431, "headers over 8192 bytes");
	/* A big body, said and sent: refused from its Content-Length, before it is read. */
	n = snprintf(big, sizeof(big), "PUT /api/v1/vm.pause HTTP/1.1\r\nContent-Length: %d\r\n\r\n", BIG + 10);
	memset(big + n, '{', BIG + 10);
	r = raw(f->path, big, (size_t)n + BIG + 10);
	expect_json_error(r, 413, "at most 1024");
	/* A Content-Length that promises more than comes, then the client stops sending. */
	{
		int fd = connect_to(f->path);
		static const char req[] = "PUT /api/v1/vm.pause HTTP/1.1\r\nContent-Length: 10\r\n\r\n{}";
		char buf[1024];
		ssize_t got;
		size_t len = 0;

		assert_int_equal(send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL), (ssize_t)(sizeof(req) - 1));
		assert_int_equal(shutdown(fd, SHUT_WR), 0);
		while (len < sizeof(buf) - 1 && (got = recv(fd, buf + len, sizeof(buf) - 1 - len, 0)) > 0)
			len += (size_t)got;
		buf[len] = '\0';
		close(fd);
		expect_json_error(buf, 400, "ended inside the body");
	}
	assert_int_equal(f->vm.pauses, 0);

	/* Two requests in one write: two answers, in order, on one connection. */
	r = raw_str(f->path, "GET /api/v1/vmm.ping HTTP/1.1\r\n\r\n"
			     "GET /api/v1/vm.nothing HTTP/1.1\r\nConnection: close\r\n\r\n");
	assert_true(!strncmp(r, "HTTP/1.1 200 ", 13));
	expect_json_error(strstr(r + 1, "HTTP/1.1 "), 404, "vm.nothing");

	/* And the server still answers. */
	r = raw_str(f->path, "GET /api/v1/vmm.ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	assert_non_null(strstr(r, "HTTP/1.1 200"));
}

static void test_slow_clients_block_nobody(void **state)
{
	struct fixture *f = *state;
	int slow[4];
	char *body;

	/* Half a request each, then silence: the server must go on serving others. */
	for (int i = 0; i < 4; i++) {
		slow[i] = connect_to(f->path);
		assert_int_equal(send(slow[i], "PUT /api/v1/vm.pa", 17, MSG_NOSIGNAL), 17);
	}
	assert_int_equal(ctl(f, "GET", "vmm.ping", &body), 200);
	free(body);
	for (int i = 0; i < 4; i++)
		close(slow[i]);
}

/* Clients that hang up before their answer is written must not take the process down (SIGPIPE). */
static void test_clients_leaving_early(void **state)
{
	struct fixture *f = *state;
	static const char req[] = "GET /api/v1/vm.info HTTP/1.1\r\nHost: x\r\n\r\n";
	char *body;

	for (int i = 0; i < 50; i++) {
		int fd = connect_to(f->path);
		struct linger lg = { 1, 0 }; /* close with a reset: the answer's write fails */

		assert_int_equal(send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL), (ssize_t)(sizeof(req) - 1));
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(fd);
	}
	assert_int_equal(ctl_eventually(f, "vmm.ping", &body), 200);
	free(body);
}

static void test_connection_bound(void **state)
{
	struct fixture *f = *state;
	enum { N = API_MAX_CONNECTIONS + 8 };
	int fds[N], closed = 0;
	char c, *body;

	for (int i = 0; i < N; i++)
		fds[i] = connect_to(f->path);
	usleep(200 * 1000);
	/* The ones past the bound were closed on arrival: they read EOF at once. */
	for (int i = 0; i < N; i++) {
		struct timeval tv = { 0, 100 * 1000 };

		setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if (recv(fds[i], &c, 1, 0) == 0)
			closed++;
	}
	assert_int_equal(closed, N - API_MAX_CONNECTIONS);
	for (int i = 0; i < N; i++)
		close(fds[i]);
	/* Their slots are free again. */
	assert_int_equal(ctl_eventually(f, "vmm.ping", &body), 200);
	free(body);
}

static void test_shutdown_reply_gets_out(void **state)
{
	struct fixture *f = *state;
	char *body;

	assert_int_equal(ctl(f, "PUT", "vm.shutdown", &body), 204);
	free(body);
	assert_int_equal(f->vm.rs.state, VM_STATE_SHUTDOWN);
	assert_int_equal(ctl(f, "PUT", "vmm.shutdown", &body), 409);
	free(body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_socket_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_requests_through_ctl, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slow_clients_block_nobody, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clients_leaving_early, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown_reply_gets_out, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
