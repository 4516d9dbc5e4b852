/* vmm-exit: stop the VM with a status through the paravirtual exit device.
 *
 *   vmm-exit [STATUS]      STATUS is 0..4294967295 (decimal or 0x hex), default 0
 *
 * Writes STATUS as one 32-bit outl to X86_EXIT_PORT; the VMM ends the VM and
 * exits with it. Returns only if no exit device answered (exit code 3). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <time.h>

#include "arch/x86_64/layout.h"

static int parse_status(const char *s, uint32_t *out)
{
	char *end;
	unsigned long long v;

	if (*s == '\0' || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end != '\0' || v > UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

int main(int argc, char **argv)
{
	const struct timespec grace = { .tv_sec = 1, .tv_nsec = 0 };
	uint32_t status = 0;

	if (argc > 2 || (argc == 2 && parse_status(argv[1], &status) < 0)) {
		fprintf(stderr, "usage: vmm-exit [STATUS]  (STATUS: 0..4294967295)\n");
		return 2;
	}
	if (ioperm(X86_EXIT_PORT, 4, 1) < 0) {
		fprintf(stderr, "vmm-exit: ioperm(0x%x): %s\n", X86_EXIT_PORT, strerror(errno));
		return 1;
	}
	fflush(NULL);
	outl(status, X86_EXIT_PORT);
	/* The VMM may stop the VM from another thread a moment after the write. */
	nanosleep(&grace, NULL);
	fprintf(stderr, "vmm-exit: no exit device at port 0x%x; the VM is still running\n",
		X86_EXIT_PORT);
	return 3;
}
