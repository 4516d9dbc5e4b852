#include "vmm/api/routes.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "vmm/cli.h"

enum method { M_GET, M_PUT };

struct route {
	const char *name;    /* after API_PREFIX */
	enum method method;
	/*
	 * Fills out on success; errors come back as -errno and are mapped by
	 * the caller, with msg when the op wrote one. body: the request's JSON
	 * object, checked against params; NULL when there was none.
	 */
	int (*run)(const struct api_ops *ops, void *opaque, struct json_object *body,
		   struct json_object *out, char *msg, size_t msglen);
	const char *const *params;  /* the body's fields, all required; NULL: takes none */
	/* 409 messages, for -EALREADY and -EAGAIN */
	const char *already, *again;
};

static void sanitize(const char *in, size_t len, char *out, size_t outlen);

static int run_ping(const struct api_ops *ops, void *opaque, struct json_object *body,
                     struct json_object *out, char *msg, size_t msglen)
{
	(void)body, (void)msg, (void)msglen;
	(void)ops;
	(void)opaque;
	json_object_object_add(out, "version", json_object_new_string(VMM_VERSION));
	json_object_object_add(out, "pid", json_object_new_int64((int64_t)getpid()));
	return 0;
}

static int run_info(const struct api_ops *ops, void *opaque, struct json_object *body,
                     struct json_object *out, char *msg, size_t msglen)
{
	(void)body, (void)msg, (void)msglen;
	return ops->info(opaque, out);
}

static int run_counters(const struct api_ops *ops, void *opaque, struct json_object *body,
                         struct json_object *out, char *msg, size_t msglen)
{
	(void)body, (void)msg, (void)msglen;
	return ops->counters(opaque, out);
}

static int run_pause(const struct api_ops *ops, void *opaque, struct json_object *body,
                      struct json_object *out, char *msg, size_t msglen)
{
	(void)body, (void)msg, (void)msglen;
	(void)out;
	return ops->pause(opaque);
}

static int run_resume(const struct api_ops *ops, void *opaque, struct json_object *body,
                       struct json_object *out, char *msg, size_t msglen)
{
	(void)body, (void)msg, (void)msglen;
	(void)out;
	return ops->resume(opaque);
}

static int run_power_button(const struct api_ops *ops, void *opaque, struct json_object *body,
                             struct json_object *out, char *msg, size_t msglen)
{
	(void)body, (void)msg, (void)msglen;
	(void)out;
	return ops->power_button(opaque);
}

static int run_shutdown(const struct api_ops *ops, void *opaque, struct json_object *body,
                         struct json_object *out, char *msg, size_t msglen)
{
	(void)body, (void)msg, (void)msglen;
	(void)out;
	return ops->shutdown(opaque);
}

#define SNAPSHOT_URL_MAX 4096

/* {"destination_url": "file:///DIR"}: DIR absolute, as Cloud Hypervisor takes it. */
static int run_snapshot(const struct api_ops *ops, void *opaque, struct json_object *body,
			struct json_object *out, char *msg, size_t msglen)
{
	static const char scheme[] = "file://";
	struct json_object *v = NULL;
	const char *url;
	size_t len;

	(void)out;
	if (!ops->snapshot)
		return -ENOSYS;
	json_object_object_get_ex(body, "destination_url", &v);
	if (!json_object_is_type(v, json_type_string)) {
		snprintf(msg, msglen, "destination_url must be a string, e.g. \"file:///var/snap\"");
		return -EINVAL;
	}
	url = json_object_get_string(v);
	len = (size_t)json_object_get_string_len(v);
	if (strlen(url) != len || len > SNAPSHOT_URL_MAX) {
		snprintf(msg, msglen, "destination_url: %s", len > SNAPSHOT_URL_MAX ?
			 "longer than 4096 bytes" : "contains a NUL byte");
		return -EINVAL;
	}
	if (strncmp(url, scheme, strlen(scheme)) || url[strlen(scheme)] != '/') {
		char safe[48];

		sanitize(url, len, safe, sizeof(safe));
		snprintf(msg, msglen, "destination_url \"%s\": give file:///DIR, an absolute directory", safe);
		return -EINVAL;
	}
	return ops->snapshot(opaque, url + strlen(scheme), msg, msglen);
}

static const char *const snapshot_params[] = { "destination_url", NULL };

static const struct route routes[] = {
	{ "vmm.ping", M_GET, run_ping, NULL, NULL, NULL },
	{ "vm.info", M_GET, run_info, NULL, NULL, NULL },
	{ "vm.counters", M_GET, run_counters, NULL, NULL, NULL },
	{ "vm.pause", M_PUT, run_pause, NULL, "the VM is already paused", NULL },
	{ "vm.resume", M_PUT, run_resume, NULL, "the VM is running, not paused", NULL },
	{ "vm.power-button", M_PUT, run_power_button, NULL, NULL,
	  "the VM is paused and cannot see a power button; resume it first" },
	{ "vm.snapshot", M_PUT, run_snapshot, snapshot_params, NULL,
	  "the VM is running; pause it first (vm.pause)" },
	{ "vm.shutdown", M_PUT, run_shutdown, NULL, NULL, NULL },
	{ "vmm.shutdown", M_PUT, run_shutdown, NULL, NULL, NULL },
};

const char *api_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 503: return "Service Unavailable";
	default: return "Internal Server Error";
	}
}

/* A static body for when even building the error fails. */
static char oom_body[] = "{\"error\": \"out of memory\"}";

static void set_json(struct api_response *r, int status, struct json_object *obj)
{
	size_t len;
	const char *s = obj ? json_object_to_json_string_length(obj, JSON_C_TO_STRING_PLAIN, &len) : NULL;

	r->status = status;
	r->reason = api_reason(status);
	r->body = s ? malloc(len + 1) : NULL;
	if (!r->body) {
		r->status = 500;
		r->reason = api_reason(500);
		r->body = oom_body;
		r->body_len = strlen(oom_body);
		return;
	}
	memcpy(r->body, s, len + 1);
	r->body_len = len;
}

void api_error(struct api_response *r, int status, const char *fmt, ...)
{
	struct json_object *obj = json_object_new_object();
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (obj)
		json_object_object_add(obj, "error", json_object_new_string(msg));
	set_json(r, status, obj);
	json_object_put(obj);
}

void api_response_free(struct api_response *r)
{
	if (r->body != oom_body)
		free(r->body);
	r->body = NULL;
	r->body_len = 0;
}

/* Printable for messages: at most 40 bytes, anything odd as '?'. */
static void sanitize(const char *in, size_t len, char *out, size_t outlen)
{
	size_t n = 0;

	for (size_t i = 0; i < len && n + 4 < outlen; i++) {
		if (i == 40) {
			memcpy(out + n, "...", 3);
			n += 3;
			break;
		}
		out[n++] = (in[i] >= 0x20 && in[i] < 0x7f && in[i] != '"' && in[i] != '\\') ? in[i] : '?';
	}
	out[n] = '\0';
}

static bool only_space(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
			return false;
	return true;
}

static bool is_param(const struct route *rt, const char *key)
{
	for (const char *const *p = rt->params; p && *p; p++)
		if (!strcmp(*p, key))
			return true;
	return false;
}

/*
 * A PUT body: none, or one JSON object whose members are the route's params,
 * every one of them (a route without params takes none, or {}). Returns 0
 * with the object in *objp (NULL for no body), or fills r with a 400.
 */
static int check_body(const struct route *rt, const char *body, size_t len, struct api_response *r,
		      struct json_object **objp)
{
	char text[API_MAX_BODY + 1];
	struct json_tokener *tok;
	struct json_object *obj;
	enum json_tokener_error jerr;
	size_t end;
	int ret = -EINVAL;

	*objp = NULL;
	if (len == 0) {
		if (rt->params) {
			api_error(r, 400, "%s needs a JSON body with \"%s\"", rt->name, rt->params[0]);
			return -EINVAL;
		}
		return 0;
	}
	tok = json_tokener_new_ex(API_MAX_JSON_DEPTH);
	if (!tok) {
		api_error(r, 500, "out of memory");
		return -ENOMEM;
	}
	/* With its NUL: a number at the very end is complete only once something follows it. */
	memcpy(text, body, len);
	text[len] = '\0';
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, text, (int)len + 1);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	if (jerr == json_tokener_continue) {
		api_error(r, 400, "%s: the body ends inside a JSON value", rt->name);
	} else if (jerr == json_tokener_error_depth) {
		api_error(r, 400, "%s: the body's JSON nests deeper than %d levels", rt->name,
			  API_MAX_JSON_DEPTH);
	} else if (jerr != json_tokener_success || !obj) {
		api_error(r, 400, "%s: the body is not valid JSON (%s at byte %zu)", rt->name,
			  json_tokener_error_desc(jerr), end);
	} else if (end < len && !only_space(body + end, len - end)) {
		api_error(r, 400, "%s: data after the JSON value at byte %zu", rt->name, end);
	} else if (!json_object_is_type(obj, json_type_object)) {
		api_error(r, 400, "%s: the body must be a JSON object, not %s", rt->name,
			  json_type_to_name(json_object_get_type(obj)));
	} else {
		ret = 0;
		json_object_object_foreach(obj, key, val) {
			char safe[48];

			(void)val;
			if (is_param(rt, key))
				continue;
			sanitize(key, strlen(key), safe, sizeof(safe));
			if (rt->params)
				api_error(r, 400, "%s: unknown field \"%s\"; it takes \"%s\"", rt->name, safe,
					  rt->params[0]);
			else
				api_error(r, 400, "%s takes no parameters; unknown field \"%s\"", rt->name, safe);
			ret = -EINVAL;
			break;
		}
		for (const char *const *p = rt->params; !ret && p && *p; p++) {
			if (!json_object_object_get_ex(obj, *p, NULL)) {
				api_error(r, 400, "%s: the body lacks \"%s\"", rt->name, *p);
				ret = -EINVAL;
			}
		}
	}
	if (ret)
		json_object_put(obj);
	else
		*objp = obj;
	json_tokener_free(tok);
	return ret;
}

static void run_route(const struct route *rt, const struct api_ops *ops, void *opaque,
		      struct json_object *body, struct api_response *r)
{
	struct json_object *out = json_object_new_object();
	char msg[512] = "";
	int ret;

	if (!out) {
		api_error(r, 500, "out of memory");
		return;
	}
	ret = rt->run(ops, opaque, body, out, msg, sizeof(msg));
	if (ret && msg[0]) {
		/* The op said what is wrong: a state conflict, bad input, or a failure. */
		int status = ret == -EINVAL ? 400 : ret == -EALREADY || ret == -EAGAIN || ret == -EBUSY ||
			     ret == -ESHUTDOWN || ret == -ENOTSUP ? 409 : 500;

		api_error(r, status, "%s: %s", rt->name, msg);
		json_object_put(out);
		return;
	}
	switch (ret) {
	case 0:
		if (rt->method == M_GET) {
			set_json(r, 200, out);
		} else {
			r->status = 204;
			r->reason = api_reason(204);
			r->shutdown = rt->run == run_shutdown;
		}
		break;
	case -EALREADY:
		api_error(r, 409, "%s: %s", rt->name, rt->already ? rt->already : "already done");
		break;
	case -EAGAIN:
		api_error(r, 409, "%s: %s", rt->name, rt->again ? rt->again : "not possible now");
		break;
	case -EBUSY:
		api_error(r, 409, "%s: a pause, resume or snapshot is under way; try again", rt->name);
		break;
	case -ENOSYS:
		api_error(r, 404, "%s: not available in this vmm", rt->name);
		break;
	case -ESHUTDOWN:
		api_error(r, 409, "%s: the VM is shut down", rt->name);
		break;
	default:
		api_error(r, 500, "%s failed: %s", rt->name, strerror(ret < 0 ? -ret : EIO));
		break;
	}
	json_object_put(out);
}

void api_handle(const struct api_ops *ops, void *opaque, const char *method, const char *target,
		const void *body, size_t len, struct api_response *r)
{
	const struct route *rt = NULL;
	struct json_object *obj;
	size_t tlen = target ? strnlen(target, API_MAX_TARGET + 1) : 0;
	char safe[64];
	enum method m;

	memset(r, 0, sizeof(*r));
	if (!method || !target || tlen == 0) {
		api_error(r, 400, "malformed request: no method or target");
		return;
	}
	if (tlen > API_MAX_TARGET) {
		api_error(r, 404, "no such endpoint (target longer than %d bytes)", API_MAX_TARGET);
		return;
	}
	if (strchr(target, '?') || strchr(target, '#')) {
		sanitize(target, tlen, safe, sizeof(safe));
		api_error(r, 400, "\"%s\": query strings are not accepted", safe);
		return;
	}
	if (!strncmp(target, API_PREFIX, strlen(API_PREFIX))) {
		const char *name = target + strlen(API_PREFIX);

		for (size_t i = 0; i < ARRAY_SIZE(routes); i++)
			if (!strcmp(routes[i].name, name))
				rt = &routes[i];
	}
	if (!rt) {
		sanitize(target, tlen, safe, sizeof(safe));
		api_error(r, 404, "no endpoint \"%s\"; see GET " API_PREFIX "vmm.ping and docs/api.md",
			  safe);
		return;
	}
	if (!strcmp(method, "GET"))
		m = M_GET;
	else if (!strcmp(method, "PUT"))
		m = M_PUT;
	else
		m = rt->method == M_GET ? M_PUT : M_GET; /* any other method: the wrong one */
	if (m != rt->method) {
		sanitize(method, strlen(method), safe, sizeof(safe));
		r->allow = rt->method == M_GET ? "GET" : "PUT";
		api_error(r, 405, "%s takes %s, not %s", rt->name, r->allow, safe);
		return;
	}
	if (len > API_MAX_BODY) {
		api_error(r, 413, "%s: body of %zu bytes; at most %d", rt->name, len, API_MAX_BODY);
		return;
	}
	if (m == M_GET && len) {
		api_error(r, 400, "%s: a GET takes no body (got %zu bytes)", rt->name, len);
		return;
	}
	if (check_body(rt, body, len, r, &obj))
		return;
	run_route(rt, ops, opaque, obj, r);
	json_object_put(obj);
}
