/*
 * vmm-smoke's console reader and report on any console: lines of any length
 * and bytes. The reader must stay in its buffers, every field must stay a
 * string that fits, and the report must count what it printed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smoke/report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct smoke_console c;
	const char *p = (const char *)data, *end = p + size;
	struct smoke_run r = { .name = "vmm-smoke", .vmm_name = "vmm", .kernel = "k", .version = "",
			       .cpus = 2, .mem_mib = 512, .net = size & 1, .want_sha = "00", .status = 0 };
	FILE *out = fopen("/dev/null", "w");
	unsigned fails;

	if (!out)
		abort();
	smoke_console_init(&c, "vmm: ");
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);

		smoke_console_line(&c, p, len);
		p += len + 1;
	}
	for (unsigned k = 0; k < SMOKE_NR_KEYS; k++)
		if (strnlen(c.val[k], SMOKE_VALUE_MAX) >= SMOKE_VALUE_MAX || (!c.has[k] && c.val[k][0]))
			abort();
	if (strnlen(c.last_line, SMOKE_LINE_MAX) >= SMOKE_LINE_MAX ||
	    strnlen(c.vmm_err, SMOKE_LINE_MAX) >= SMOKE_LINE_MAX ||
	    strnlen(c.power_off, sizeof(c.power_off)) >= sizeof(c.power_off))
		abort();
	fails = smoke_report(out, &c, &r);
	/* Seven checks, eight with the net. */
	if (fails > 7u + (unsigned)r.net)
		abort();
	fclose(out);
	return 0;
}
