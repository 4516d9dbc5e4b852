/*
 * vmm/api/routes: every endpoint, and every way a request can be wrong,
 * against a fake VM (the real state machine, no KVM). The HTTP glue has its
 * own test (test_api_http) over a real socket.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "vmm/api/routes.h"
#include "vmm/api/state.h"

struct fake_vm {
	struct vm_runstate rs;
	int pauses, resumes, buttons, shutdowns, snapshots;
	int fail_with;  /* non-zero: the next op fails with it */
	char snapshot_dir[256];  /* the directory the last snapshot op got */
};

static int fake_op(struct fake_vm *f, enum vm_op op, int *count)
{
	int ret;

	if (f->fail_with) {
		ret = f->fail_with;
		f->fail_with = 0;
		return ret;
	}
	ret = vm_runstate_begin(&f->rs, op);
	if (ret)
		return ret;
	vm_runstate_end(&f->rs, op, true);
	(*count)++;
	return 0;
}

static int fake_pause(void *o) { struct fake_vm *f = o; return fake_op(f, VM_OP_PAUSE, &f->pauses); }
static int fake_resume(void *o) { struct fake_vm *f = o; return fake_op(f, VM_OP_RESUME, &f->resumes); }
static int fake_button(void *o) { struct fake_vm *f = o; return fake_op(f, VM_OP_POWER_BUTTON, &f->buttons); }
static int fake_shutdown(void *o) { struct fake_vm *f = o; return fake_op(f, VM_OP_SHUTDOWN, &f->shutdowns); }

static int fake_info(void *o, struct json_object *out)
{
	struct fake_vm *f = o;

	json_object_object_add(out, "state", json_object_new_string(vm_run_state_name(f->rs.state)));
	return 0;
}

static int fake_counters(void *o, struct json_object *out)
{
	struct json_object *d = json_object_new_object();

	(void)o;
	json_object_object_add(d, "kicks", json_object_new_int64(7));
	json_object_object_add(out, "disk0", d);
	return 0;
}

/* As vm_snapshot_save answers: the state machine's refusals, with a line saying why. */
static int fake_snapshot(void *o, const char *dir, char *msg, size_t msglen)
{
	struct fake_vm *f = o;
	int ret;

	snprintf(f->snapshot_dir, sizeof(f->snapshot_dir), "%s", dir);
	if (f->fail_with) {
		ret = f->fail_with;
		f->fail_with = 0;
		snprintf(msg, msglen, "%s: it failed", dir);
		return ret;
	}
	ret = vm_runstate_begin(&f->rs, VM_OP_SNAPSHOT);
	if (ret == -EAGAIN)
		snprintf(msg, msglen, "the VM is Running: pause it before a snapshot (vm.pause)");
	if (ret)
		return ret;
	vm_runstate_end(&f->rs, VM_OP_SNAPSHOT, true);
	f->snapshots++;
	return 0;
}

static const struct api_ops fake_ops = {
	.snapshot = fake_snapshot,
	.pause = fake_pause,
	.resume = fake_resume,
	.power_button = fake_button,
	.shutdown = fake_shutdown,
	.info = fake_info,
	.counters = fake_counters,
};

/* One request; returns the status and leaves the parsed JSON body (or NULL) in *json. */
static int req(struct fake_vm *f, const char *method, const char *target, const char *body,
	       struct api_response *r, struct json_object **json)
{
	api_handle(&fake_ops, f, method, target, body, body ? strlen(body) : 0, r);
	*json = NULL;
	if (r->body) {
		*json = json_tokener_parse(r->body);
		assert_non_null(*json); /* every body we send is valid JSON */
		assert_int_equal(strlen(r->body), r->body_len);
	}
	assert_non_null(r->reason);
	return r->status;
}

/* The status, and that an error body says {"error": "...needle..."}. */
static void expect_error(struct fake_vm *f, const char *method, const char *target, const char *body,
			 int status, const char *needle)
{
	struct api_response r;
	struct json_object *j, *e;

	assert_int_equal(req(f, method, target, body, &r, &j), status);
	assert_non_null(j);
	assert_true(json_object_object_get_ex(j, "error", &e));
	assert_true(json_object_is_type(e, json_type_string));
	if (!strstr(json_object_get_string(e), needle))
		fail_msg("error \"%s\" lacks \"%s\"", json_object_get_string(e), needle);
	json_object_put(j);
	api_response_free(&r);
}

static void expect_ok(struct fake_vm *f, const char *method, const char *target, const char *body,
		      int status)
{
	struct api_response r;
	struct json_object *j;

	assert_int_equal(req(f, method, target, body, &r, &j), status);
	if (status == 204)
		assert_null(r.body);
	json_object_put(j);
	api_response_free(&r);
}

static void test_ping_info_counters(void **state)
{
	struct fake_vm f = { { VM_STATE_RUNNING } };
	struct api_response r;
	struct json_object *j, *v;

	(void)state;
	assert_int_equal(req(&f, "GET", "/api/v1/vmm.ping", NULL, &r, &j), 200);
	assert_true(json_object_object_get_ex(j, "version", &v));
	assert_true(json_object_object_get_ex(j, "pid", &v));
	assert_true(json_object_get_int64(v) > 0);
	json_object_put(j);
	api_response_free(&r);

	assert_int_equal(req(&f, "GET", "/api/v1/vm.info", NULL, &r, &j), 200);
	assert_true(json_object_object_get_ex(j, "state", &v));
	assert_string_equal(json_object_get_string(v), "Running");
	json_object_put(j);
	api_response_free(&r);

	assert_int_equal(req(&f, "GET", "/api/v1/vm.counters", NULL, &r, &j), 200);
	assert_true(json_object_object_get_ex(j, "disk0", &v));
	json_object_put(j);
	api_response_free(&r);
}

static void test_pause_resume_and_conflicts(void **state)
{
	struct fake_vm f = { { VM_STATE_RUNNING } };

	(void)state;
	expect_error(&f, "PUT", "/api/v1/vm.resume", NULL, 409, "running, not paused");
	expect_ok(&f, "PUT", "/api/v1/vm.pause", NULL, 204);
	assert_int_equal(f.rs.state, VM_STATE_PAUSED);
	expect_error(&f, "PUT", "/api/v1/vm.pause", NULL, 409, "already paused");
	expect_error(&f, "PUT", "/api/v1/vm.power-button", NULL, 409, "resume it first");
	/* An empty JSON object is a body too, as curl -d '{}' sends. */
	expect_ok(&f, "PUT", "/api/v1/vm.resume", "{}", 204);
	expect_ok(&f, "PUT", "/api/v1/vm.power-button", " { } \r\n", 204);
	assert_int_equal(f.pauses, 1);
	assert_int_equal(f.resumes, 1);
	assert_int_equal(f.buttons, 1);

	/* A transition under way on another thread. */
	f.rs.state = VM_STATE_PAUSING;
	expect_error(&f, "PUT", "/api/v1/vm.pause", NULL, 409, "under way");
	expect_error(&f, "PUT", "/api/v1/vm.resume", NULL, 409, "under way");
	f.rs.state = VM_STATE_RUNNING;

	/* An op that fails for its own reasons is a 500 naming it. */
	f.fail_with = -EIO;
	expect_error(&f, "PUT", "/api/v1/vm.pause", NULL, 500, "vm.pause failed");
	assert_int_equal(f.rs.state, VM_STATE_RUNNING);
}

static void test_shutdown(void **state)
{
	struct fake_vm f = { { VM_STATE_PAUSED } };
	struct api_response r;
	struct json_object *j;

	(void)state;
	/* Shutdown while paused is allowed, and says to stop serving after the reply. */
	assert_int_equal(req(&f, "PUT", "/api/v1/vm.shutdown", NULL, &r, &j), 204);
	assert_true(r.shutdown);
	api_response_free(&r);
	expect_error(&f, "PUT", "/api/v1/vm.shutdown", NULL, 409, "shut down");
	expect_error(&f, "PUT", "/api/v1/vmm.shutdown", NULL, 409, "shut down");
	expect_error(&f, "PUT", "/api/v1/vm.pause", NULL, 409, "shut down");
	expect_error(&f, "PUT", "/api/v1/vm.resume", NULL, 409, "shut down");
	/* Reading still works. */
	expect_ok(&f, "GET", "/api/v1/vm.info", NULL, 200);

	f.rs.state = VM_STATE_RUNNING;
	assert_int_equal(req(&f, "PUT", "/api/v1/vmm.shutdown", NULL, &r, &j), 204);
	assert_true(r.shutdown);
	api_response_free(&r);
	assert_int_equal(f.shutdowns, 2);
}

static void test_unknown_endpoints(void **state)
{
	struct fake_vm f = { { VM_STATE_RUNNING } };
	char longpath[600];

	(void)state;
	expect_error(&f, "GET", "/api/v1/vm.nope", NULL, 404, "no endpoint \"/api/v1/vm.nope\"");
	expect_error(&f, "GET", "/", NULL, 404, "no endpoint");
	expect_error(&f, "GET", "/api/v1/", NULL, 404, "no endpoint");
	expect_error(&f, "GET", "/api/v2/vmm.ping", NULL, 404, "no endpoint");
	expect_error(&f, "GET", "/api/v1/vmm.ping/", NULL, 404, "no endpoint");
	expect_error(&f, "GET", "/api/v1/VMM.PING", NULL, 404, "no endpoint");
	expect_error(&f, "GET", "/api/v1/vmm%2eping", NULL, 404, "no endpoint");
	expect_error(&f, "GET", "http://localhost/api/v1/vmm.ping", NULL, 404, "no endpoint");
	expect_error(&f, "GET", "*", NULL, 404, "no endpoint");
	/* Control characters and quotes in the target never reach the message raw. */
	expect_error(&f, "GET", "/api/v1/\x01\"\\\x7f", NULL, 404, "/api/v1/????");
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = '\0';
	expect_error(&f, "GET", longpath, NULL, 404, "longer than");
	expect_error(&f, "GET", "", NULL, 400, "malformed");
	expect_error(&f, "GET", "/api/v1/vmm.ping?x=1", NULL, 400, "query strings");
	expect_error(&f, "GET", "/api/v1/vmm.ping#frag", NULL, 400, "query strings");
}

static void test_wrong_methods(void **state)
{
	struct fake_vm f = { { VM_STATE_RUNNING } };
	struct api_response r;
	struct json_object *j;

	(void)state;
	assert_int_equal(req(&f, "PUT", "/api/v1/vm.info", NULL, &r, &j), 405);
	assert_string_equal(r.allow, "GET");
	json_object_put(j);
	api_response_free(&r);
	assert_int_equal(req(&f, "GET", "/api/v1/vm.pause", NULL, &r, &j), 405);
	assert_string_equal(r.allow, "PUT");
	json_object_put(j);
	api_response_free(&r);
	expect_error(&f, "POST", "/api/v1/vm.pause", NULL, 405, "takes PUT, not POST");
	expect_error(&f, "DELETE", "/api/v1/vmm.ping", NULL, 405, "takes GET, not DELETE");
	expect_error(&f, "HEAD", "/api/v1/vmm.ping", NULL, 405, "takes GET");
	expect_error(&f, "get", "/api/v1/vmm.ping", NULL, 405, "takes GET");
	assert_int_equal(f.pauses, 0);
}

static void test_bodies(void **state)
{
	struct fake_vm f = { { VM_STATE_RUNNING } };
	char big[API_MAX_BODY + 2];
	char deep[64];
	char withnul[] = "{}\0{}";
	struct api_response r;

	(void)state;
	expect_error(&f, "GET", "/api/v1/vm.info", "{}", 400, "takes no body");
	expect_error(&f, "PUT", "/api/v1/vm.pause", "{", 400, "unexpected end of data");
	expect_error(&f, "PUT", "/api/v1/vm.pause", "{]", 400, "not valid JSON");
	expect_error(&f, "PUT", "/api/v1/vm.pause", "nul", 400, "");
	expect_error(&f, "PUT", "/api/v1/vm.pause", "{} {}", 400, "at byte 3");
	expect_error(&f, "PUT", "/api/v1/vm.pause", "{}x", 400, "at byte 2");
	expect_error(&f, "PUT", "/api/v1/vm.pause", "[]", 400, "must be a JSON object, not array");
	expect_error(&f, "PUT", "/api/v1/vm.pause", "42", 400, "must be a JSON object");
	expect_error(&f, "PUT", "/api/v1/vm.pause", "\"x\"", 400, "must be a JSON object");
	expect_error(&f, "PUT", "/api/v1/vm.pause", "{'a': 1}", 400, "");
	expect_error(&f, "PUT", "/api/v1/vm.pause", "{\"a\": 1,}", 400, "");
	expect_error(&f, "PUT", "/api/v1/vm.pause", "{\"force\": true}", 400,
		     "takes no parameters; unknown field \"force\"");
	expect_error(&f, "PUT", "/api/v1/vm.pause", "{\"\\u0001\\\"\": 1}", 400, "unknown field \"??\"");
	expect_error(&f, "PUT", "/api/v1/vm.pause", "{\"a\": \"\xff\xfe\"}", 400, "");

	memset(deep, '[', sizeof(deep));
	deep[sizeof(deep) - 1] = '\0';
	expect_error(&f, "PUT", "/api/v1/vm.pause", deep, 400, "deeper than");
	memset(big, ' ', sizeof(big));
	big[0] = '{';
	big[sizeof(big) - 2] = '}';
	big[sizeof(big) - 1] = '\0';
	expect_error(&f, "PUT", "/api/v1/vm.pause", big, 413, "at most 1024");

	/* A NUL inside the body: the bytes after it are not ignored. */
	api_handle(&fake_ops, &f, "PUT", "/api/v1/vm.pause", withnul, sizeof(withnul) - 1, &r);
	assert_int_equal(r.status, 400);
	api_response_free(&r);
	assert_int_equal(f.pauses, 0);
}

static void test_snapshot(void **state)
{
	struct fake_vm f = { { VM_STATE_RUNNING } };
	struct api_response r;
	const char *good = "{\"destination_url\": \"file:///var/snap/one\"}";

	(void)state;
	/* Running: 409 naming the fix; nothing taken. */
	expect_error(&f, "PUT", "/api/v1/vm.snapshot", good, 409, "pause it");
	assert_int_equal(f.snapshots, 0);
	expect_ok(&f, "PUT", "/api/v1/vm.pause", NULL, 204);
	expect_ok(&f, "PUT", "/api/v1/vm.snapshot", good, 204);
	assert_int_equal(f.snapshots, 1);
	assert_string_equal(f.snapshot_dir, "/var/snap/one");
	assert_int_equal(f.rs.state, VM_STATE_PAUSED);
	/* A snapshot being written holds off resume (another thread's request meanwhile). */
	f.rs.snapshotting = true;
	expect_error(&f, "PUT", "/api/v1/vm.resume", NULL, 409, "under way");
	expect_error(&f, "PUT", "/api/v1/vm.snapshot", good, 409, "under way");
	f.rs.snapshotting = false;
	/* The op's own failures: a device that cannot be saved 409, a write failure 500, with its line. */
	f.fail_with = -ENOTSUP;
	expect_error(&f, "PUT", "/api/v1/vm.snapshot", good, 409, "it failed");
	f.fail_with = -EIO;
	expect_error(&f, "PUT", "/api/v1/vm.snapshot", good, 500, "/var/snap/one: it failed");
	/* Bad bodies never reach the op. */
	f.snapshots = 0;
	expect_error(&f, "PUT", "/api/v1/vm.snapshot", NULL, 400, "needs a JSON body");
	expect_error(&f, "PUT", "/api/v1/vm.snapshot", "{}", 400, "lacks \"destination_url\"");
	expect_error(&f, "PUT", "/api/v1/vm.snapshot", "{\"destination_url\": 7}", 400, "must be a string");
	expect_error(&f, "PUT", "/api/v1/vm.snapshot", "{\"destination_url\": \"http://x/y\"}", 400,
		     "give file:///DIR");
	expect_error(&f, "PUT", "/api/v1/vm.snapshot", "{\"destination_url\": \"file://relative\"}", 400,
		     "absolute");
	expect_error(&f, "PUT", "/api/v1/vm.snapshot", "{\"destination_url\": \"file:///a\\u0000b\"}", 400,
		     "NUL");
	expect_error(&f, "PUT", "/api/v1/vm.snapshot",
		     "{\"destination_url\": \"file:///a\", \"incremental\": true}", 400,
		     "unknown field \"incremental\"");
	expect_error(&f, "PUT", "/api/v1/vm.snapshot", "[1]", 400, "JSON object");
	expect_error(&f, "GET", "/api/v1/vm.snapshot", NULL, 405, "takes PUT");
	assert_int_equal(f.snapshots, 0);
	/* Other PUTs still take no fields. */
	expect_error(&f, "PUT", "/api/v1/vm.resume", good, 400, "takes no parameters");
	(void)r;
}

static void test_error_helper(void **state)
{
	struct api_response r = { 0 };
	struct json_object *j, *e;

	(void)state;
	api_error(&r, 503, "too many connections (%d)", 16);
	assert_int_equal(r.status, 503);
	assert_string_equal(r.reason, "Service Unavailable");
	j = json_tokener_parse(r.body);
	assert_true(json_object_object_get_ex(j, "error", &e));
	assert_string_equal(json_object_get_string(e), "too many connections (16)");
	json_object_put(j);
	api_response_free(&r);
	api_response_free(&r); /* twice is harmless */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ping_info_counters),
		cmocka_unit_test(test_pause_resume_and_conflicts),
		cmocka_unit_test(test_shutdown),
		cmocka_unit_test(test_unknown_endpoints),
		cmocka_unit_test(test_wrong_methods),
		cmocka_unit_test(test_bodies),
		cmocka_unit_test(test_snapshot),
		cmocka_unit_test(test_error_helper),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
