/*
 * One API connection's HTTP/1.1, without sockets: bytes in, requests parsed
 * by http-parser (Debian's libhttp-parser, never a hand-written parser),
 * handled by vmm/api/routes, responses out through a write callback. The
 * socket side (vmm/api/http.c) moves bytes and enforces time; everything a
 * client can get wrong is answered here with a status and a JSON body
 * {"error": "..."} naming it, the same shape routes gives:
 *
 *   400  a malformed request line or header, an unknown method, a bad or
 *        repeated Content-Length (negative, not a number, too big for 64
 *        bits, beside Transfer-Encoding), a bad chunk, a request cut short
 *   408  a request begun and not finished within the idle limit
 *   413  a body over API_MAX_BODY (said as soon as Content-Length says it,
 *        or as the chunks pass it; the rest of the body is never read)
 *   431  request line and headers over API_MAX_HEADERS bytes
 *   404, 405, 409, 500: routes' answers
 *
 * One request at a time: after a response the connection takes no more
 * bytes until api_proto_resume() (the response has left), so a client that
 * pipelines and never reads holds one response, not many. After an error
 * the connection is closed once the answer has left (`close`).
 */
#ifndef VMM_API_HTTP_PROTO_H
#define VMM_API_HTTP_PROTO_H

#include <stdbool.h>
#include <stddef.h>

#include <http_parser.h>

#include "vmm/api/routes.h"

#define API_MAX_HEADERS 8192   /* request line and headers, in bytes */

struct api_proto {
	const struct api_ops *ops;
	void *opaque;
	/* Where responses go (whole, one call each); the socket side queues them. */
	void (*write)(void *ctx, const void *buf, size_t len);
	void *ctx;

	/* What the socket side looks at after each call. */
	bool waiting;        /* a response is out: feed nothing until api_proto_resume */
	bool close;          /* close once the output has left; feed nothing more */
	bool shutdown;       /* the last response shut the VM down */

	/* The request being read (private). */
	http_parser parser;
	bool in_message, headers_done, head_field_expect, expect_continue;
	bool rejected;       /* a callback answered; the parser stopped */
	size_t head_bytes;   /* request line and headers so far */
	size_t target_len;
	char target[API_MAX_TARGET + 2];   /* one more than routes takes: it says "too long" */
	char field[8];       /* the current header's name, to spot Expect */
	size_t field_len;
	size_t body_len;
	char body[API_MAX_BODY];
};

void api_proto_init(struct api_proto *p, const struct api_ops *ops, void *opaque,
		    void (*write)(void *ctx, const void *buf, size_t len), void *ctx);
/*
 * Bytes from the client. Returns how many were taken: all of them, or fewer
 * when a request completed (waiting) or the connection is to be closed
 * (close); the rest stays with the caller for after api_proto_resume.
 */
size_t api_proto_feed(struct api_proto *p, const char *data, size_t len);
/* The client closed its side: a request cut short gets its 400. */
void api_proto_eof(struct api_proto *p);
/* Nothing came for the idle limit: a request begun gets a 408; close either way. */
void api_proto_timeout(struct api_proto *p);
/* The response has left: take the next request. */
void api_proto_resume(struct api_proto *p);

#endif
