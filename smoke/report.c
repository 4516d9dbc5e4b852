/* vmm-smoke's console reader and report (see report.h). */
#include "smoke/report.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const key_names[SMOKE_NR_KEYS] = {
	[SMOKE_UPTIME_AT_INIT] = "uptime_at_init",
	[SMOKE_KERNEL] = "kernel",
	[SMOKE_CPUS] = "cpus",
	[SMOKE_ONLINE] = "online",
	[SMOKE_MEMTOTAL_KB] = "memtotal_kb",
	[SMOKE_VIRTIO_IDS] = "virtio_ids",
	[SMOKE_VDA_SHA256] = "vda_sha256",
};

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* snprintf that always cuts instead of warning: console text is any length. */
static void copy_cut(char *dst, size_t size, const char *src, size_t len)
{
	len = len < size - 1 ? len : size - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

void smoke_console_init(struct smoke_console *c, const char *prefix)
{
	memset(c, 0, sizeof(*c));
	c->prefix = prefix ? prefix : "";
}

/*
 * "[    2.141756] reboot: Power down": the clock, to three decimals (the
 * rest of the line is free text, so only its start is read).
 */
static void read_power_off(struct smoke_console *c, const char *line)
{
	const char *p = line + 1, *digits;
	size_t frac = 0;

	while (*p == ' ')
		p++;
	digits = p;
	while (*p >= '0' && *p <= '9')
		p++;
	if (p == digits || *p != '.')
		return;
	while (frac < 3 && p[1 + frac] >= '0' && p[1 + frac] <= '9')
		frac++;
	if (!frac || (size_t)(p + 1 + frac - digits) >= sizeof(c->power_off))
		return;
	copy_cut(c->power_off, sizeof(c->power_off), digits, (size_t)(p + 1 + frac - digits));
}

/* KEY=value, KEY of [a-z_0-9]: the first value of each key the checks read. */
static void read_value(struct smoke_console *c, const char *line, const char *eq)
{
	size_t klen = (size_t)(eq - line);

	if (!klen)
		return;
	for (size_t i = 0; i < klen; i++) {
		char ch = line[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'))
			return;
	}
	for (unsigned k = 0; k < SMOKE_NR_KEYS; k++) {
		if (strlen(key_names[k]) == klen && !memcmp(line, key_names[k], klen)) {
			if (!c->has[k]) {
				c->has[k] = true;
				copy_cut(c->val[k], sizeof(c->val[k]), eq + 1, strlen(eq + 1));
			}
			return;
		}
	}
}

void smoke_console_line(struct smoke_console *c, const char *raw, size_t len)
{
	char line[SMOKE_LINE_MAX];
	size_t n = 0;
	const char *eq;

	/* NUL bytes are dropped, as a shell's read drops them; the rest is cut to fit. */
	for (size_t i = 0; i < len && n < sizeof(line) - 1; i++)
		if (raw[i])
			line[n++] = raw[i];
	if (n && line[n - 1] == '\r')
		n--;
	line[n] = '\0';

	if (starts_with(line, "VMMTEST-BEGIN smoke")) {
		c->began = true;
	} else if (!strcmp(line, "VMMTEST-END smoke rc=0")) {
		c->ended_ok = true;
	} else if (c->prefix[0] && starts_with(line, c->prefix)) {
		if (!c->vmm_err[0])
			copy_cut(c->vmm_err, sizeof(c->vmm_err), line, n);
	} else if (line[0] == '[' && strstr(line + 1, "] reboot: Power down")) {
		read_power_off(c, line);
	} else if ((eq = strchr(line, '='))) {
		read_value(c, line, eq);
	}
	if (n)
		copy_cut(c->last_line, sizeof(c->last_line), line, n);
	copy_cut(c->tail[c->nlines++ % SMOKE_TAIL], sizeof(c->tail[0]), line, n);
}

struct tally {
	FILE *out;
	unsigned pass, fail;
};

static void check(struct tally *t, const char *name, bool ok, const char *detail)
{
	if (ok)
		t->pass++;
	else
		t->fail++;
	fprintf(t->out, "%s %s%s%s\n", ok ? "PASS" : "FAIL", name, detail && detail[0] ? ": " : "",
		detail ? detail : "");
}

/* A whole decimal number of at most 18 digits (no sign, no spaces), else -1. */
static int64_t parse_count(const char *s)
{
	size_t len = strlen(s);

	if (!len || len > 18 || strspn(s, "0123456789") != len)
		return -1;
	return strtoll(s, NULL, 10);
}

unsigned smoke_report(FILE *out, const struct smoke_console *c, const struct smoke_run *r)
{
	static const struct {
		const char *name, *id;
	} devices[] = {
		{ "virtio-blk", "0x0002" },
		{ "virtio-rng", "0x0004" },
		{ "virtio-net", "0x0001" },
	};
	struct tally t = { .out = out };
	const char *kernel = strrchr(r->kernel, '/') ? strrchr(r->kernel, '/') + 1 : r->kernel;
	const char *got;
	char detail[SMOKE_LINE_MAX + 64], want[16], ids[SMOKE_VALUE_MAX + 2];
	int64_t kb;

	fprintf(out, "%s: %s", r->name, kernel);
	if (r->version && r->version[0])
		fprintf(out, " (%s)", r->version);
	fprintf(out, ", %u vCPUs, %u MiB, %.1f s", r->cpus, r->mem_mib, r->secs);
	if (c->has[SMOKE_UPTIME_AT_INIT] || c->power_off[0]) {
		fprintf(out, " (");
		if (c->has[SMOKE_UPTIME_AT_INIT])
			fprintf(out, "tests began at %s s%s", c->val[SMOKE_UPTIME_AT_INIT], c->power_off[0] ? ", " : "");
		if (c->power_off[0])
			fprintf(out, "power-off at %s s", c->power_off);
		fprintf(out, " of guest time)");
	}
	fprintf(out, "\n");
	if (r->kept)
		fprintf(out, "%s: kept %s (console.log, %s.err)\n", r->name, r->kept, r->vmm_name);

	check(&t, "init started", c->began, c->began ? c->val[SMOKE_KERNEL] : c->vmm_err);

	snprintf(want, sizeof(want), "%u", r->cpus);
	got = c->has[SMOKE_CPUS] ? c->val[SMOKE_CPUS] : "";
	if (!strcmp(got, want))
		snprintf(detail, sizeof(detail), "%s of %u (%s)", got, r->cpus, c->val[SMOKE_ONLINE]);
	else
		snprintf(detail, sizeof(detail), "%s of %u", got[0] ? got : "?", r->cpus);
	check(&t, "vCPUs online", !strcmp(got, want), detail);

	kb = c->has[SMOKE_MEMTOTAL_KB] ? parse_count(c->val[SMOKE_MEMTOTAL_KB]) : -1;
	if (kb >= (int64_t)r->mem_mib * 1024 * 80 / 100 && kb <= (int64_t)r->mem_mib * 1024) {
		snprintf(detail, sizeof(detail), "%" PRId64 " MiB of %u MiB", kb / 1024, r->mem_mib);
		check(&t, "memory", true, detail);
	} else {
		snprintf(detail, sizeof(detail), "%s kB of %u MiB",
			 c->val[SMOKE_MEMTOTAL_KB][0] ? c->val[SMOKE_MEMTOTAL_KB] : "?", r->mem_mib);
		check(&t, "memory", false, detail);
	}

	/* " ID ... ": each id between spaces, as the guest lists them. */
	snprintf(ids, sizeof(ids), " %s ", c->val[SMOKE_VIRTIO_IDS]);
	for (size_t i = 0; i < sizeof(devices) / sizeof(devices[0]); i++) {
		char needle[16], name[32];
		bool ok;

		if (!strcmp(devices[i].name, "virtio-net") && !r->net)
			continue;
		snprintf(needle, sizeof(needle), " %s ", devices[i].id);
		snprintf(name, sizeof(name), "%s probed", devices[i].name);
		ok = strstr(ids, needle) != NULL;
		snprintf(detail, sizeof(detail), "driver not bound (virtio ids:%s)", ids);
		check(&t, name, ok, ok ? NULL : detail);
	}
	if (!r->net)
		fprintf(out, "note: virtio-net not checked: no --tap given and not root (%s could not create one)\n",
			r->vmm_name);

	if (c->has[SMOKE_VDA_SHA256] && !strcmp(c->val[SMOKE_VDA_SHA256], r->want_sha)) {
		check(&t, "disk read", true, "4 MiB pattern matches");
	} else {
		snprintf(detail, sizeof(detail), "sha256 %s != %s",
			 c->val[SMOKE_VDA_SHA256][0] ? c->val[SMOKE_VDA_SHA256] : "none", r->want_sha);
		check(&t, "disk read", false, detail);
	}

	if (r->status == 0 && c->ended_ok) {
		snprintf(detail, sizeof(detail), "%s exited 0", r->vmm_name);
		check(&t, "power-off", true, detail);
	} else {
		snprintf(detail, sizeof(detail), "%s exited %d: %s", r->vmm_name, r->status, c->vmm_err);
		check(&t, "power-off", false, detail);
	}

	if (t.fail) {
		unsigned long first = c->nlines > SMOKE_TAIL ? c->nlines - SMOKE_TAIL : 0;

		fprintf(out, "---- last console lines:\n");
		for (unsigned long i = first; i < c->nlines; i++)
			fprintf(out, "| %s\n", c->tail[i % SMOKE_TAIL]);
		if (!c->last_line[0])
			fprintf(out, "| (none)\n");
	}
	fprintf(out, "%u passed, %u failed\n", t.pass, t.fail);
	return t.fail;
}
