/*
 * libFuzzer harness for vmm ctl's side (vmm/api/ctl.c): whatever a server
 * answers, raw bytes, goes through ctl_request() over a socketpair. It must
 * return 0 with a status and a NUL-terminated body no longer than
 * CTL_MAX_BODY, or a negative errno; never crash, hang or leak.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vmm/api/ctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2], status = -1, ret;
	char *body = NULL;
	size_t len = 0;

	/* Inputs beyond the socket buffer would block the write below: keep them small. */
	if (size > 64 * 1024 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return 0;
	if (size && write(sv[1], data, size) != (ssize_t)size)
		abort();
	shutdown(sv[1], SHUT_WR);
	ret = ctl_request(sv[0], "GET", "/api/v1/vmm.ping", &status, &body, &len);
	if (ret == 0) {
		if (status < 100 || status > 599 || len > CTL_MAX_BODY || (body && strlen(body) > len))
			abort();
		if (len && (!body || body[len] != '\0'))
			abort();
	} else if (ret > 0 || body) {
		abort();
	}
	free(body);
	close(sv[0]);
	close(sv[1]);
	return 0;
}
