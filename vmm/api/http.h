/*
 * The API socket: HTTP/1.1 on a Unix socket, on its own thread with its own
 * libevent event_base. Each connection is a bufferevent carrying bytes to and
 * from vmm/api/http_proto (http-parser), which hands requests to
 * vmm/api/routes; every refusal, the parser's too, is JSON {"error": "..."}.
 * (libevent 2.1's evhttp answered its own refusals with an HTML page and has
 * no hook to change that.)
 *
 * Bounds, so that a slow or hostile client never blocks another one or the VM:
 * request line and headers API_MAX_HEADERS bytes (431), bodies API_MAX_BODY
 * (413 as soon as that is known; the rest is not read), one request at a time
 * per connection (the next bytes wait in the socket until the answer has been
 * read), API_IDLE_TIMEOUT_S without progress either way (a request half read
 * gets 408), API_CONN_LIFETIME_S in all, and at most API_MAX_CONNECTIONS at
 * once (one more is closed on arrival). VM operations run on this thread; none
 * of them waits on a client.
 */
#ifndef VMM_API_HTTP_H
#define VMM_API_HTTP_H

#include <stddef.h>

#include "vmm/api/http_proto.h"
#include "vmm/api/routes.h"
#include "vmm/util.h"

#define API_IDLE_TIMEOUT_S    10
#define API_CONN_LIFETIME_S   30
#define API_MAX_CONNECTIONS   16

struct api_server;

/*
 * Open the listening socket of --api-socket SPEC: "fd=N" (a Unix stream
 * socket handed over, bound; listened on if it was not yet) or a PATH, created
 * with mode 0600 (a stale socket of a dead vmm is replaced; a live one, or any
 * other file, is refused). *path_out is the path to unlink at exit (NULL for
 * fd=N). Errors: one line in err naming the option, -errno returned.
 */
int api_listen(const char *spec, int *fd_out, char **path_out, char *err, size_t errlen) WUR;

/* Serve on listen_fd (taken over) until api_server_stop; unlink_path (taken over) goes at stop. */
int api_server_start(struct api_server **out, int listen_fd, char *unlink_path,
		     const struct api_ops *ops, void *opaque) WUR;
/* Stop serving (a shutdown reply under way gets up to 500 ms to leave), close, unlink. */
void api_server_stop(struct api_server *s);

#endif
