/*
 * libFuzzer harness for vmm/api/routes: a request from raw bytes, split as
 *
 *   METHOD '\n' TARGET '\n' BODY...
 *
 * (missing separators leave the later parts empty), handled against a fake VM
 * that keeps the real state machine. Beyond ASan/UBSan: every status is one
 * the API documents, every body is valid JSON (an object with a string
 * "error" for 4xx/5xx), 405 names the allowed method, 204 has no body, and the
 * state machine never leaves its states.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "vmm/api/routes.h"
#include "vmm/api/state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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

static int f_info(void *o, struct json_object *out)
{
	(void)o;
	json_object_object_add(out, "state", json_object_new_string(vm_run_state_name(rs.state)));
	return 0;
}

static int f_counters(void *o, struct json_object *out)
{
	(void)o;
	(void)out;
	return 0;
}

/* The directory reaches the op only after the route checked it: absolute, no NUL. */
static int f_snapshot(void *o, const char *dir, char *msg, size_t msglen)
{
	(void)o;
	if (dir[0] != '/')
		__builtin_trap();
	snprintf(msg, msglen, "%s: written", dir);
	return op(VM_OP_SNAPSHOT) ? -EAGAIN : 0;
}

static const struct api_ops ops = {
	.pause = f_pause, .resume = f_resume, .power_button = f_button,
	.shutdown = f_shutdown, .info = f_info, .counters = f_counters, .snapshot = f_snapshot,
};

/* Copy [p, p + n) as a NUL-terminated string (NULs inside cut it short, as a C caller would). */
static char *dup_part(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);

	if (!s)
		abort();
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *end = data + size, *nl1, *nl2;
	struct api_response r;
	char *method, *target;
	const uint8_t *body;
	size_t body_len;

	nl1 = memchr(data, '\n', size);
	nl1 = nl1 ? nl1 : end;
	nl2 = nl1 < end ? memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1)) : NULL;
	nl2 = nl2 ? nl2 : end;
	method = dup_part(data, (size_t)(nl1 - data));
	target = nl1 < end ? dup_part(nl1 + 1, (size_t)(nl2 - nl1 - 1)) : dup_part(data, 0);
	body = nl2 < end ? nl2 + 1 : end;
	body_len = (size_t)(end - body);
	/* Start from a state the input picks, so every transition gets exercised. */
	rs.state = (enum vm_run_state)(size % 5);
	rs.snapshotting = size % 7 == 0;

	api_handle(&ops, NULL, method, target, body, body_len, &r);

	switch (r.status) {
	case 200: case 204: case 400: case 404: case 405: case 409: case 413: case 500:
		break;
	default:
		abort();
	}
	if (r.status == 204 && r.body)
		abort();
	if (r.status != 204) {
		struct json_object *j = r.body ? json_tokener_parse(r.body) : NULL;
		struct json_object *e;

		if (!j || strlen(r.body) != r.body_len)
			abort();
		if (r.status >= 400 && (!json_object_object_get_ex(j, "error", &e) ||
					!json_object_is_type(e, json_type_string)))
			abort();
		json_object_put(j);
	}
	if (r.status == 405 && (!r.allow || (strcmp(r.allow, "GET") && strcmp(r.allow, "PUT"))))
		abort();
	if ((unsigned)rs.state > VM_STATE_SHUTDOWN)
		abort();
	api_response_free(&r);
	free(method);
	free(target);
	return 0;
}
