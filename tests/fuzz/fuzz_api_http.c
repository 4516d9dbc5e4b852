/*
 * libFuzzer harness for vmm/api/http_proto: raw bytes as a client sends them,
 * cut into pieces at points the input picks, then the end of the stream,
 * against a fake VM that keeps the real state machine. Beyond ASan/UBSan:
 * every answer is a response http-parser reads back, with a status the API
 * documents and, for 4xx/5xx, a JSON body with a string "error"; nothing is
 * fed while an answer waits, and nothing after close.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>
#include <json-c/json.h>

#include "vmm/api/http_proto.h"
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
static int f_info(void *o, struct json_object *out) { (void)o; (void)out; return 0; }
static int f_counters(void *o, struct json_object *out) { (void)o; (void)out; return 0; }

static const struct api_ops ops = {
	.pause = f_pause, .resume = f_resume, .power_button = f_button,
	.shutdown = f_shutdown, .info = f_info, .counters = f_counters,
};

struct out {
	char *buf;
	size_t len, cap;
};

static void out_write(void *ctx, const void *buf, size_t len)
{
	struct out *o = ctx;

	if (o->len + len > o->cap) {
		o->cap = (o->len + len) * 2;
		o->buf = realloc(o->buf, o->cap);
		if (!o->buf)
			abort();
	}
	memcpy(o->buf + o->len, buf, len);
	o->len += len;
}

/* Reading the answers back. */
struct check {
	char body[4096];
	size_t body_len;
	unsigned responses;
	bool head;
};

static int on_body(http_parser *hp, const char *at, size_t len)
{
	struct check *c = hp->data;

	if (len > sizeof(c->body) - 1 - c->body_len)
		abort();
	memcpy(c->body + c->body_len, at, len);
	c->body_len += len;
	return 0;
}

static int on_complete(http_parser *hp)
{
	struct check *c = hp->data;
	struct json_object *j = NULL, *e;

	c->body[c->body_len] = '\0';
	switch (hp->status_code) {
	case 100: case 200: case 204: case 400: case 404: case 405: case 408: case 409: case 413:
	case 431: case 500:
		break;
	default:
		abort();
	}
	if (hp->status_code >= 400 && !c->head) {
		j = json_tokener_parse(c->body);
		if (!j || !json_object_object_get_ex(j, "error", &e) || !json_object_is_type(e, json_type_string))
			abort();
		json_object_put(j);
	}
	c->body_len = 0;
	c->responses++;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct api_proto p;
	struct out o = { 0 };
	http_parser_settings settings;
	http_parser hp;
	struct check c = { .head = size > 4 && !memcmp(data, "HEAD", 4) };
	size_t off = 0, step;

	memset(&rs, 0, sizeof(rs));
	rs.state = (enum vm_run_state)(size % 3);
	api_proto_init(&p, &ops, NULL, out_write, &o);
	/* Pieces of 1 to 64 bytes, sized by the byte before each. */
	while (off < size && !p.close) {
		size_t took;

		step = 1 + (data[off] % 64);
		if (step > size - off)
			step = size - off;
		took = api_proto_feed(&p, (const char *)data + off, step);
		if (took > step || (took < step && !p.waiting && !p.close))
			abort();
		off += took;
		if (p.waiting)
			api_proto_resume(&p);
		if (p.shutdown)
			abort();   /* resume clears it */
	}
	if (!p.close)
		api_proto_eof(&p);
	if (!p.close)
		abort();
	/* Every byte out is a sequence of responses. */
	http_parser_settings_init(&settings);
	settings.on_body = on_body;
	settings.on_message_complete = on_complete;
	http_parser_init(&hp, HTTP_RESPONSE);
	hp.data = &c;
	if (c.head)
		;  /* bodyless answers to HEAD: http-parser cannot know; check the status lines only */
	else if (http_parser_execute(&hp, &settings, o.buf, o.len) != o.len ||
		 HTTP_PARSER_ERRNO(&hp) != HPE_OK)
		abort();
	if ((unsigned)rs.state > VM_STATE_SHUTDOWN)
		abort();
	free(o.buf);
	return 0;
}
