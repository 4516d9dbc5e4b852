/*
 * vmm ctl: the API socket's client.
 *
 *   vmm ctl --api-socket PATH [--json] ping|info|counters|pause|resume|power-button|shutdown
 *   vmm ctl --api-socket PATH snapshot DIR
 *
 * Human-readable output by default, the server's JSON with --json. Exit
 * status 0, 1 with the server's error (or no server), 2 for a bad command line.
 */
#ifndef VMM_API_CTL_H
#define VMM_API_CTL_H

#include <stddef.h>

/* argv[0] is "ctl". */
int ctl_main(int argc, char **argv);

/*
 * One request over a connected socket: send it, parse the response (with
 * http-parser; Connection: close). *status and a malloc'd NUL-terminated body
 * (at most CTL_MAX_BODY bytes) on success; -errno or -EPROTO otherwise.
 */
#define CTL_MAX_BODY (1024 * 1024)
int ctl_request(int fd, const char *method, const char *path, int *status, char **body,
		size_t *body_len);
/* The same with a JSON request body (NUL-terminated; NULL: none). */
int ctl_request_body(int fd, const char *method, const char *path, const char *req_body, int *status,
		     char **body, size_t *body_len);

#endif
