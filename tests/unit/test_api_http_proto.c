/*
 * vmm/api/http_proto without sockets: bytes in, responses out. Every request
 * the parser refuses gets its status and a JSON {"error"} naming the fault;
 * one request at a time; bounds on headers and bodies; Expect, HEAD,
 * keep-alive and close.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "vmm/api/http_proto.h"
#include "vmm/api/state.h"

static struct vm_runstate rs;

static int op(enum vm_op o)
{
	int ret = vm_runstate_begin(&rs, o);

	if (!ret)
		vm_runstate_end(&rs, o, true);
	return ret;
}

static int f_pause(void *o) { (void)o; return op(VM_OP_PAUSE); }
static int f_resume(void *o) { (void)o; return op(VM_OP_RESUME); }
static int f_button(void *o) { (void)o; return op(VM_OP_POWER_BUTTON); }
static int f_shutdown(void *o) { (void)o; return op(VM_OP_SHUTDOWN); }
static int f_info(void *o, struct json_object *out) { (void)o; (void)out; return 0; }
static int f_counters(void *o, struct json_object *out) { (void)o; (void)out; return 0; }

static const struct api_ops ops = {
	.pause = f_pause, .resume = f_resume, .power_button = f_button,
	.shutdown = f_shutdown, .info = f_info, .counters = f_counters,
};

struct out {
	char buf[65536];
	size_t len;
};

static void out_write(void *ctx, const void *buf, size_t len)
{
	struct out *o = ctx;

	assert_true(o->len + len < sizeof(o->buf));
	memcpy(o->buf + o->len, buf, len);
	o->len += len;
	o->buf[o->len] = '\0';
}

static struct api_proto p;
static struct out o;

static int setup(void **state)
{
	(void)state;
	memset(&rs, 0, sizeof(rs));
	memset(&o, 0, sizeof(o));
	api_proto_init(&p, &ops, NULL, out_write, &o);
	return 0;
}

static size_t feed(const char *s)
{
	return api_proto_feed(&p, s, strlen(s));
}

/* The first response in o: its status, and (for >= 400) its JSON error containing `what`. */
static void expect(int status, const char *what)
{
	char line[32], *body;
	struct json_object *j, *e;

	snprintf(line, sizeof(line), "HTTP/1.1 %d ", status);
	if (strncmp(o.buf, line, strlen(line)))
		fail_msg("expected %d, got: %.200s", status, o.buf);
	if (status < 400)
		return;
	assert_non_null(strstr(o.buf, "Content-Type: application/json\r\n"));
	body = strstr(o.buf, "\r\n\r\n");
	assert_non_null(body);
	j = json_tokener_parse(body + 4);
	assert_non_null(j);
	assert_true(json_object_object_get_ex(j, "error", &e));
	assert_true(json_object_is_type(e, json_type_string));
	if (what && !strstr(json_object_get_string(e), what))
		fail_msg("error \"%s\" does not say \"%s\"", json_object_get_string(e), what);
	json_object_put(j);
}

/* One bad request: the answer, JSON, and the connection closes. */
static void reject_case(const char *req, int status, const char *what)
{
	setup(NULL);
	feed(req);
	expect(status, what);
	assert_true(p.close);
	assert_non_null(strstr(o.buf, "Connection: close\r\n"));
}

static void test_parser_refusals_are_json(void **state)
{
	(void)state;
	reject_case("GARBAGE / HTTP/1.1\r\n\r\n", 400, "unknown method");
	reject_case("GET /api/v1/vmm.ping HTTP/9.x\r\n\r\n", 400, "HTTP version");
	reject_case("GET /api/\x01v1 HTTP/1.1\r\n\r\n", 400, "request target");
	reject_case("PUT /api/v1/vm.pause HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400, "Content-Length");
	reject_case("PUT /api/v1/vm.pause HTTP/1.1\r\nContent-Length: 12abc\r\n\r\n", 400, "Content-Length");
	reject_case("PUT /api/v1/vm.pause HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 400,
		    "Content-Length");
	reject_case("PUT /api/v1/vm.pause HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400,
		    "twice");
	reject_case("PUT /api/v1/vm.pause HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
		    400, "Transfer-Encoding");
	reject_case("PUT /api/v1/vm.pause HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400,
		    "chunk size");
	reject_case("GET /api/v1/vmm.ping HTTP/1.1\r\nBad Header\r\n\r\n", 400, "malformed request");
	assert_int_equal(rs.state, VM_STATE_RUNNING);
}

static void test_sizes(void **state)
{
	static char big[3 * API_MAX_HEADERS];
	int n;

	(void)state;
	/* Headers over the bound: 431, said as soon as the bound is passed. */
	n = snprintf(big, sizeof(big), "GET /api/v1/vmm.ping HTTP/1.1\r\nX: ");
	memset(big + n, 'a', 2 * API_MAX_HEADERS);
	setup(NULL);
	assert_true(api_proto_feed(&p, big, (size_t)n + 2 * API_MAX_HEADERS) <= API_MAX_HEADERS + 1);
	expect(431, "over 8192 bytes");
	assert_true(p.close);
	/* A body said too big: 413 before a byte of it, naming the size. */
	reject_case("PUT /api/v1/vm.pause HTTP/1.1\r\nContent-Length: 65546\r\n\r\n", 413, "65546 bytes");
	reject_case("PUT /api/v1/vm.pause HTTP/1.1\r\nContent-Length: 1025\r\n\r\n", 413, "at most 1024");
	/* ... but routes' 404 and 405 come first, as for a small body. */
	reject_case("PUT /api/v1/nothing HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", 404, "nothing");
	/* Chunks adding up past the bound: 413 when they pass it. */
	setup(NULL);
	feed("PUT /api/v1/vm.pause HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
	memset(big, ' ', 600);
	for (int i = 0; i < 2 && !p.close; i++) {
		feed("258\r\n");
		api_proto_feed(&p, big, 600);
		feed("\r\n");
	}
	expect(413, "at most 1024");
	assert_true(p.close);
	/* Exactly API_MAX_BODY of spaces is taken (and found not to be JSON). */
	setup(NULL);
	n = snprintf(big, sizeof(big), "PUT /api/v1/vm.pause HTTP/1.1\r\nContent-Length: %d\r\n\r\n",
		     API_MAX_BODY);
	memset(big + n, ' ', API_MAX_BODY);
	api_proto_feed(&p, big, (size_t)n + API_MAX_BODY);
	expect(400, "vm.pause");
	assert_false(p.close);
}

/* Content-Length that lies: fewer bytes and the end, more bytes and a second request. */
static void test_lying_content_length(void **state)
{
	(void)state;
	setup(NULL);
	feed("PUT /api/v1/vm.pause HTTP/1.1\r\nContent-Length: 10\r\n\r\n{}");
	assert_int_equal(o.len, 0);
	api_proto_eof(&p);
	expect(400, "ended inside the body");
	assert_true(p.close);
	assert_int_equal(rs.state, VM_STATE_RUNNING);

	setup(NULL);
	feed("GET /api/v1/vmm.ping HTTP/1.1\r\nHost: x\r\n");
	api_proto_eof(&p);
	expect(400, "headers");

	/* Two bytes said, nine sent: the rest is the next request, which is garbage. */
	setup(NULL);
	assert_int_equal(feed("PUT /api/v1/vm.resume HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}garbage\r\n\r\n"),
			 strlen("PUT /api/v1/vm.resume HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"));
	expect(409, "running");
	assert_true(p.waiting);
	o.len = 0;
	api_proto_resume(&p);
	feed("garbage\r\n\r\n");
	expect(400, "unknown method");
	assert_true(p.close);
}

static void test_one_request_at_a_time(void **state)
{
	static const char two[] = "GET /api/v1/vmm.ping HTTP/1.1\r\n\r\nPUT /api/v1/vm.pause HTTP/1.1\r\n\r\n";
	size_t first = strlen("GET /api/v1/vmm.ping HTTP/1.1\r\n\r\n");

	(void)state;
	setup(NULL);
	assert_int_equal(feed(two), first);
	expect(200, NULL);
	assert_true(p.waiting);
	assert_false(p.close);
	/* Nothing more is taken until the answer has left. */
	assert_int_equal(api_proto_feed(&p, two + first, strlen(two + first)), 0);
	assert_int_equal(rs.state, VM_STATE_RUNNING);
	o.len = 0;
	api_proto_resume(&p);
	assert_int_equal(api_proto_feed(&p, two + first, strlen(two + first)), strlen(two + first));
	expect(204, NULL);
	assert_null(strstr(o.buf, "Content-Length"));
	assert_int_equal(rs.state, VM_STATE_PAUSED);
}

static void test_http_details(void **state)
{
	(void)state;
	/* HEAD: the headers of the answer, no body. */
	setup(NULL);
	feed("HEAD /api/v1/vmm.ping HTTP/1.1\r\n\r\n");
	assert_int_equal(strncmp(o.buf, "HTTP/1.1 405 ", 13), 0);
	assert_non_null(strstr(o.buf, "Allow: GET\r\n"));
	assert_int_equal(strcmp(o.buf + o.len - 4, "\r\n\r\n"), 0);
	/* HTTP/1.0 and Connection: close end the connection after the answer. */
	reject_case("GET /api/v1/vmm.pong HTTP/1.0\r\n\r\n", 404, "vmm.pong");
	setup(NULL);
	feed("GET /api/v1/vmm.ping HTTP/1.1\r\nConnection: close\r\n\r\n");
	expect(200, NULL);
	assert_true(p.close);
	/* Expect: 100-continue gets its interim answer, then the real one. */
	setup(NULL);
	feed("PUT /api/v1/vm.pause HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
	assert_string_equal(o.buf, "HTTP/1.1 100 Continue\r\n\r\n");
	feed("{}");
	assert_non_null(strstr(o.buf, "HTTP/1.1 204 "));
	/* A request begun and left: 408 at the idle limit; an idle connection just closes. */
	setup(NULL);
	feed("PUT /api/v1/vm.pa");
	api_proto_timeout(&p);
	expect(408, "not finished");
	assert_true(p.close);
	setup(NULL);
	api_proto_timeout(&p);
	assert_int_equal(o.len, 0);
	assert_true(p.close);
	/* A target longer than routes takes: its 404, not a truncated match. */
	{
		char req[600];

		snprintf(req, sizeof(req), "GET /api/v1/vmm.ping%0*d HTTP/1.1\r\n\r\n", 400, 0);
		setup(NULL);
		feed(req);
		expect(404, "longer than 256");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_parser_refusals_are_json, setup),
		cmocka_unit_test_setup(test_sizes, setup),
		cmocka_unit_test_setup(test_lying_content_length, setup),
		cmocka_unit_test_setup(test_one_request_at_a_time, setup),
		cmocka_unit_test_setup(test_http_details, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
