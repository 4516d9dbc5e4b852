/*
 * The REST API's routing and JSON, without sockets: a request's method, target
 * and body in, a status and a JSON body out, against a small table of VM
 * operations. Endpoints and their spelling follow Cloud Hypervisor's API:
 *
 *   GET /api/v1/vmm.ping       200 {"version", "pid"}
 *   GET /api/v1/vm.info        200 {"state", "config": {...}, ...}
 *   GET /api/v1/vm.counters    200 {"<device id>": {"<counter>": N, ...}, ...}
 *   PUT /api/v1/vm.pause       204, or 409 when paused / pausing / shut down
 *   PUT /api/v1/vm.resume      204, or 409 when running / resuming / shut down
 *   PUT /api/v1/vm.power-button 204 (ACPI power button), 409 when not running
 *   PUT /api/v1/vm.snapshot    {"destination_url": "file:///DIR"}: 204 once the paused VM
 *                              is written into DIR; 409 when it runs or a device cannot be
 *                              saved, 400 for a bad URL, 500 when writing failed
 *   PUT /api/v1/vm.shutdown    204: the guest is stopped, vmm exits 0
 *   PUT /api/v1/vmm.shutdown   204: the same (vmm runs one VM)
 *
 * Everything in a request is untrusted. Errors carry {"error": "..."}: 400
 * (bad target, query string, body on a GET, a body that is not one small JSON
 * object with exactly the endpoint's fields), 404 (no such endpoint), 405 (wrong method; Allow
 * names the right one), 413 (body over API_MAX_BODY), 409 (state conflict),
 * 500 (the operation failed).
 */
#ifndef VMM_API_ROUTES_H
#define VMM_API_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

#include "vmm/util.h"

#define API_MAX_BODY       1024   /* bigger bodies get 413 */
#define API_MAX_TARGET     256    /* longer request targets get 404 */
#define API_MAX_JSON_DEPTH 8      /* deeper JSON gets 400 */
#define API_PREFIX         "/api/v1/"

struct json_object;

/*
 * What the API can do to a VM. Every op returns 0 or a negative errno as
 * vm_runstate_begin() does (-EALREADY, -EBUSY, -EAGAIN, -ESHUTDOWN), or
 * another errno when it failed. info and counters add members to out.
 */
struct api_ops {
	int (*pause)(void *opaque);
	int (*resume)(void *opaque);
	int (*power_button)(void *opaque);
	int (*shutdown)(void *opaque);       /* must not block: the VM stops after the reply */
	int (*info)(void *opaque, struct json_object *out);
	int (*counters)(void *opaque, struct json_object *out);
	/*
	 * Write the paused VM into the directory dir (absolute); -EAGAIN when
	 * it runs, -EBUSY, -ESHUTDOWN, -ENOTSUP (a device cannot be saved), or
	 * another errno, each with one line in msg. NULL: no snapshots (404).
	 */
	int (*snapshot)(void *opaque, const char *dir, char *msg, size_t msglen);
};

struct api_response {
	int status;          /* HTTP status */
	const char *reason;  /* its reason phrase */
	char *body;          /* JSON text (NULL for 204), freed by api_response_free */
	size_t body_len;
	const char *allow;   /* for 405: the method the endpoint takes */
	bool shutdown;       /* the request shut the VM down: stop serving after this reply */
};

/*
 * Handle one request. method is the request's method ("GET", ...), target the
 * request target as received (not decoded), body/len its body (may contain
 * any bytes). Always fills r; a failure to allocate gives 500 with a static body.
 */
void api_handle(const struct api_ops *ops, void *opaque, const char *method, const char *target,
		const void *body, size_t len, struct api_response *r);
void api_response_free(struct api_response *r);

/* {"error": msg} with status; exposed for the HTTP glue's own refusals. */
void api_error(struct api_response *r, int status, const char *fmt, ...) PRINTF_FMT(3, 4);

const char *api_reason(int status);

#endif
