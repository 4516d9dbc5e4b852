/*
 * What vmm-smoke reads from a boot and how it reports it: the guest's console
 * (and the VMM's own messages) line by line, then one line per check and a
 * summary. Pure: no I/O but the FILE it prints to, so every rule is
 * unit-tested and fuzzed. bench/qemu-smoke.sh applies the same rules
 * (tests/smoke/report.sh) to QEMU's console; tests/host-checks.sh holds the
 * two to the same verdicts.
 *
 * The console is the guest's: any bytes, any length. A line is cut at
 * SMOKE_LINE_MAX bytes; values at SMOKE_VALUE_MAX.
 */
#ifndef SMOKE_REPORT_H
#define SMOKE_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define SMOKE_LINE_MAX  1024
#define SMOKE_VALUE_MAX 256
#define SMOKE_TAIL      20

/* The guest's key=value report lines that the checks read (guest-images/tests/smoke.sh). */
enum smoke_key {
	SMOKE_UPTIME_AT_INIT,
	SMOKE_KERNEL,
	SMOKE_CPUS,
	SMOKE_ONLINE,
	SMOKE_MEMTOTAL_KB,
	SMOKE_VIRTIO_IDS,
	SMOKE_VDA_SHA256,
	SMOKE_NR_KEYS,
};

struct smoke_console {
	const char *prefix;                     /* the VMM's lines start with it ("vmm: ") */
	bool began, ended_ok;                   /* VMMTEST-BEGIN smoke, VMMTEST-END smoke rc=0 */
	bool has[SMOKE_NR_KEYS];
	char val[SMOKE_NR_KEYS][SMOKE_VALUE_MAX];   /* the first value of each key */
	char vmm_err[SMOKE_LINE_MAX];           /* the VMM's first line: its verdict */
	char power_off[16];                     /* the guest's clock at "reboot: Power down" */
	char last_line[SMOKE_LINE_MAX];         /* the last non-empty line */
	char tail[SMOKE_TAIL][SMOKE_LINE_MAX];  /* the last SMOKE_TAIL lines, a ring */
	unsigned long nlines;
};

void smoke_console_init(struct smoke_console *c, const char *prefix);
/* One console line, without its '\n' (a trailing '\r' is dropped); len may exceed SMOKE_LINE_MAX. */
void smoke_console_line(struct smoke_console *c, const char *line, size_t len);

/* What the run was, for the report's first line and its checks. */
struct smoke_run {
	const char *name;        /* "vmm-smoke" */
	const char *vmm_name;    /* "vmm" */
	const char *kernel;      /* its path; the report shows the last part */
	const char *version;     /* the modules' kernel version, or "" */
	unsigned cpus, mem_mib;
	double secs;             /* wall time */
	bool net;                /* a virtio-net was given: check it */
	const char *want_sha;    /* the disk pattern's sha256 */
	int status;              /* the VMM's exit status */
	const char *kept;        /* --keep: the folder, else NULL */
};

/* Prints the report; returns the number of failed checks (0: all passed). */
unsigned smoke_report(FILE *out, const struct smoke_console *c, const struct smoke_run *r);

#endif
