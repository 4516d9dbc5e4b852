#include "vmm/api/http_proto.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *reason(int status)
{
	switch (status) {
	case 408: return "Request Timeout";
	case 431: return "Request Header Fields Too Large";
	default: return api_reason(status);
	}
}

/* Status line, headers and body of r, in one write. */
static void send_response(struct api_proto *p, const struct api_response *r, bool head)
{
	char hdr[512];
	int n;

	n = snprintf(hdr, sizeof(hdr), "HTTP/1.1 %d %s\r\n%s%s%s%s", r->status, reason(r->status),
		     r->body ? "Content-Type: application/json\r\n" : "",
		     r->allow ? "Allow: " : "", r->allow ? r->allow : "", r->allow ? "\r\n" : "");
	/* RFC 9110, 8.6: no Content-Length in a 204. */
	if (r->status != 204)
		n += snprintf(hdr + n, sizeof(hdr) - (size_t)n, "Content-Length: %zu\r\n", r->body_len);
	n += snprintf(hdr + n, sizeof(hdr) - (size_t)n, "%s\r\n", p->close ? "Connection: close\r\n" : "");
	p->write(p->ctx, hdr, (size_t)n);
	if (r->body && !head)
		p->write(p->ctx, r->body, r->body_len);
	p->waiting = true;
}

/* An answer before routes could see the request; the connection closes after it. */
PRINTF_FMT(3, 4)
static void reject(struct api_proto *p, int status, const char *fmt, ...)
{
	struct api_response r = { 0 };
	char msg[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	api_error(&r, status, "%s", msg);
	p->close = true;
	p->rejected = true;
	send_response(p, &r, false);
	api_response_free(&r);
}

static struct api_proto *of(http_parser *hp)
{
	return hp->data;
}

static const char *method_of(const struct api_proto *p)
{
	return http_method_str((enum http_method)p->parser.method);
}

/*
 * Routes' answer to this request as it stands (body NULL: only its length
 * counts). last: the rest of the request will not be read, so the connection
 * closes after the answer.
 */
static void answer(struct api_proto *p, const void *body, size_t len, bool last)
{
	struct api_response r;

	p->target[p->target_len] = '\0';
	api_handle(p->ops, p->opaque, method_of(p), p->target, body, len, &r);
	if (last || r.status == 413 || !http_should_keep_alive(&p->parser) || p->parser.upgrade)
		p->close = true;
	if (last)
		p->rejected = true;
	p->shutdown = r.shutdown;
	send_response(p, &r, p->parser.method == HTTP_HEAD);
	api_response_free(&r);
}

static int on_message_begin(http_parser *hp)
{
	struct api_proto *p = of(hp);

	p->in_message = true;
	p->headers_done = false;
	p->head_field_expect = false;
	p->expect_continue = false;
	p->target_len = 0;
	p->field_len = 0;
	p->body_len = 0;
	return 0;
}

static int on_url(http_parser *hp, const char *at, size_t len)
{
	struct api_proto *p = of(hp);
	/* Keep one byte more than routes accepts, so it can say the target is too long. */
	size_t room = API_MAX_TARGET + 1 - p->target_len;

	len = len < room ? len : room;
	memcpy(p->target + p->target_len, at, len);
	p->target_len += len;
	return 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t len)
{
	struct api_proto *p = of(hp);

	/* A new field starts after a value: field_len was reset by on_header_value. */
	for (size_t i = 0; i < len && p->field_len < sizeof(p->field); i++)
		p->field[p->field_len++] = (char)tolower((unsigned char)at[i]);
	if (len > sizeof(p->field))
		p->field_len = sizeof(p->field);  /* too long to be "expect" */
	return 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t len)
{
	struct api_proto *p = of(hp);

	if (p->field_len == 6 && !memcmp(p->field, "expect", 6))
		p->head_field_expect = true;
	if (p->head_field_expect && len >= 12 && !strncasecmp(at, "100-continue", 12))
		p->expect_continue = true;
	p->field_len = 0;
	p->head_field_expect = false;
	return 0;
}

static int on_headers_complete(http_parser *hp)
{
	struct api_proto *p = of(hp);

	p->headers_done = true;
	/* Said too big up front: answered now, the body is never read. */
	if ((hp->flags & F_CONTENTLENGTH) && hp->content_length > API_MAX_BODY) {
		answer(p, NULL, (size_t)hp->content_length, true);
		return -1;
	}
	if (p->expect_continue && (hp->content_length || (hp->flags & F_CHUNKED))) {
		static const char go[] = "HTTP/1.1 100 Continue\r\n\r\n";

		p->write(p->ctx, go, sizeof(go) - 1);
	}
	return 0;
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
	struct api_proto *p = of(hp);

	/* Chunks past the bound: 413 (or routes' 404/405) now, the rest never read. */
	if (len > API_MAX_BODY - p->body_len) {
		answer(p, NULL, p->body_len + len, true);
		return -1;
	}
	memcpy(p->body + p->body_len, at, len);
	p->body_len += len;
	return 0;
}

static int on_message_complete(http_parser *hp)
{
	struct api_proto *p = of(hp);

	p->in_message = false;
	answer(p, p->body_len ? p->body : NULL, p->body_len, false);
	/* One request at a time: the next waits until this answer has left. */
	http_parser_pause(hp, 1);
	return 0;
}

static const http_parser_settings settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

void api_proto_init(struct api_proto *p, const struct api_ops *ops, void *opaque,
		    void (*write)(void *ctx, const void *buf, size_t len), void *ctx)
{
	memset(p, 0, sizeof(*p));
	p->ops = ops;
	p->opaque = opaque;
	p->write = write;
	p->ctx = ctx;
	http_parser_init(&p->parser, HTTP_REQUEST);
	p->parser.data = p;
}

/* What http-parser refused, said in words a client can act on. */
static void reject_parse_error(struct api_proto *p)
{
	enum http_errno e = HTTP_PARSER_ERRNO(&p->parser);

	switch (e) {
	case HPE_INVALID_METHOD:
		reject(p, 400, "malformed request line: unknown method");
		break;
	case HPE_INVALID_URL:
		reject(p, 400, "malformed request line: invalid request target");
		break;
	case HPE_INVALID_VERSION:
		reject(p, 400, "malformed request line: invalid HTTP version");
		break;
	case HPE_INVALID_CONTENT_LENGTH:
		reject(p, 400, "invalid Content-Length: not a decimal number of bytes that fits 64 bits");
		break;
	case HPE_UNEXPECTED_CONTENT_LENGTH:
		reject(p, 400, "Content-Length given twice, or together with Transfer-Encoding");
		break;
	case HPE_INVALID_TRANSFER_ENCODING:
		reject(p, 400, "invalid Transfer-Encoding: only chunked, last");
		break;
	case HPE_INVALID_CHUNK_SIZE:
		reject(p, 400, "malformed chunked body: invalid chunk size");
		break;
	case HPE_HEADER_OVERFLOW:
		reject(p, 431, "request line and headers over %d bytes", API_MAX_HEADERS);
		break;
	case HPE_INVALID_EOF_STATE:
		if (p->headers_done)
			reject(p, 400, "the connection ended inside the body (%zu bytes of it came)",
			       p->body_len);
		else
			reject(p, 400, "the connection ended inside the request line or headers");
		break;
	default:
		reject(p, 400, "malformed request: %s", http_errno_description(e));
		break;
	}
}

size_t api_proto_feed(struct api_proto *p, const char *data, size_t len)
{
	size_t taken = 0;

	while (taken < len && !p->waiting && !p->close) {
		size_t n = len - taken, used;
		enum http_errno e;

		/* Never hand the parser more header bytes than the bound allows. */
		if (!p->headers_done && n > API_MAX_HEADERS + 1 - p->head_bytes)
			n = API_MAX_HEADERS + 1 - p->head_bytes;
		used = http_parser_execute(&p->parser, &settings, data + taken, n);
		taken += used;
		if (!p->headers_done && p->in_message)
			p->head_bytes += used;
		e = HTTP_PARSER_ERRNO(&p->parser);
		if (e == HPE_PAUSED)
			break;      /* a request answered: waiting */
		if (e != HPE_OK) {
			if (!p->rejected)
				reject_parse_error(p);
			p->close = true;
			break;
		}
		if (p->in_message && !p->headers_done && p->head_bytes > API_MAX_HEADERS) {
			reject(p, 431, "request line and headers over %d bytes", API_MAX_HEADERS);
			break;
		}
		if (used == 0)
			break;      /* not reached: http-parser takes what it is given */
	}
	return taken;
}

void api_proto_eof(struct api_proto *p)
{
	if (p->waiting || p->close)
		return;
	if (p->in_message || p->head_bytes) {
		/* http-parser decides whether the request was complete at the end (a body to EOF is not allowed). */
		http_parser_execute(&p->parser, &settings, NULL, 0);
		if (HTTP_PARSER_ERRNO(&p->parser) != HPE_OK && HTTP_PARSER_ERRNO(&p->parser) != HPE_PAUSED &&
		    !p->rejected)
			reject_parse_error(p);
	}
	p->close = true;
}

void api_proto_timeout(struct api_proto *p)
{
	if (!p->waiting && !p->close && p->in_message)
		reject(p, 408, "the request was not finished: nothing more came for the idle limit");
	p->close = true;
}

void api_proto_resume(struct api_proto *p)
{
	p->waiting = false;
	p->shutdown = false;
	p->head_bytes = 0;
	p->headers_done = false;
	if (!p->close)
		http_parser_pause(&p->parser, 0);
}
