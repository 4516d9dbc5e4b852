/* vmm-smoke's console reader and report: markers, values, hostile lines, every check's verdict. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smoke/report.h"

#define SHA "89a99926cd5491b5ae4bf95614bae1dd230e918d4fbb86fc8d0912f7fa34c125"

static void feed(struct smoke_console *c, const char *text)
{
	const char *nl;

	while ((nl = strchr(text, '\n'))) {
		smoke_console_line(c, text, (size_t)(nl - text));
		text = nl + 1;
	}
	if (*text)
		smoke_console_line(c, text, strlen(text));
}

static const char good_boot[] =
	"[    0.000000] Linux version 6.1.0-57-cloud-amd64\r\n"
	"VMMTEST-BEGIN smoke\r\n"
	"uptime_at_init=1.82\r\n"
	"kernel=6.1.0-57-cloud-amd64\r\n"
	"cpus=2\r\n"
	"online=0-1\r\n"
	"memtotal_kb=479000\r\n"
	"virtio_ids= 0x0001 0x0002 0x0004\r\n"
	"vda_sha256=" SHA "\r\n"
	"VMMTEST-END smoke rc=0\r\n"
	"[    2.141756] reboot: Power down\r\n";

static const struct smoke_run good_run = {
	.name = "vmm-smoke", .vmm_name = "vmm", .kernel = "/k/bzImage", .version = "6.1",
	.cpus = 2, .mem_mib = 512, .secs = 2.5, .net = true, .want_sha = SHA, .status = 0,
};

/* The report of console `text` for run r, in a string the caller frees; *fails gets the count. */
static char *report(const char *text, const struct smoke_run *r, unsigned *fails)
{
	struct smoke_console *c = malloc(sizeof(*c));
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);

	assert_non_null(c);
	assert_non_null(out);
	smoke_console_init(c, "vmm: ");
	feed(c, text);
	*fails = smoke_report(out, c, r);
	fclose(out);
	free(c);
	return buf;
}

static void test_good_boot_passes_every_check(void **state)
{
	unsigned fails;
	char *out = report(good_boot, &good_run, &fails);

	(void)state;
	assert_int_equal(fails, 0);
	assert_non_null(strstr(out, "vmm-smoke: bzImage (6.1), 2 vCPUs, 512 MiB, 2.5 s "
				    "(tests began at 1.82 s, power-off at 2.141 s of guest time)\n"));
	assert_non_null(strstr(out, "PASS init started: 6.1.0-57-cloud-amd64\n"));
	assert_non_null(strstr(out, "PASS vCPUs online: 2 of 2 (0-1)\n"));
	assert_non_null(strstr(out, "PASS memory: 467 MiB of 512 MiB\n"));
	assert_non_null(strstr(out, "PASS virtio-blk probed\n"));
	assert_non_null(strstr(out, "PASS virtio-rng probed\n"));
	assert_non_null(strstr(out, "PASS virtio-net probed\n"));
	assert_non_null(strstr(out, "PASS disk read: 4 MiB pattern matches\n"));
	assert_non_null(strstr(out, "PASS power-off: vmm exited 0\n"));
	assert_non_null(strstr(out, "\n8 passed, 0 failed\n"));
	assert_null(strstr(out, "last console lines"));
	free(out);
}

static void test_each_check_can_fail(void **state)
{
	struct smoke_run r = good_run;
	unsigned fails;
	char *out;

	(void)state;
	/* Wrong CPU count, memory out of range, a device missing, another pattern, a VMM error. */
	r.cpus = 4;
	r.mem_mib = 1024;
	r.want_sha = "00";
	r.status = 1;
	out = report("VMMTEST-BEGIN smoke\ncpus=2\nmemtotal_kb=479000\nvirtio_ids= 0x0002\n"
		     "vda_sha256=" SHA "\nvmm: the guest triple-faulted\n", &r, &fails);
	assert_int_equal(fails, 6);
	assert_non_null(strstr(out, "FAIL vCPUs online: 2 of 4\n"));
	assert_non_null(strstr(out, "FAIL memory: 479000 kB of 1024 MiB\n"));
	assert_non_null(strstr(out, "PASS virtio-blk probed\n"));
	assert_non_null(strstr(out, "FAIL virtio-rng probed: driver not bound (virtio ids:  0x0002 )\n"));
	assert_non_null(strstr(out, "FAIL virtio-net probed"));
	assert_non_null(strstr(out, "FAIL disk read: sha256 " SHA " != 00\n"));
	assert_non_null(strstr(out, "FAIL power-off: vmm exited 1: vmm: the guest triple-faulted\n"));
	assert_non_null(strstr(out, "---- last console lines:\n| VMMTEST-BEGIN smoke\n| cpus=2\n"));
	assert_non_null(strstr(out, "\n2 passed, 6 failed\n"));
	free(out);

	/* Nothing at all: every check fails, and the tail says so. */
	r = good_run;
	r.status = 124;
	r.net = false;
	out = report("", &r, &fails);
	assert_int_equal(fails, 7);
	assert_non_null(strstr(out, "FAIL init started\n"));
	assert_non_null(strstr(out, "FAIL vCPUs online: ? of 2\n"));
	assert_non_null(strstr(out, "FAIL memory: ? kB of 512 MiB\n"));
	assert_non_null(strstr(out, "note: virtio-net not checked"));
	assert_non_null(strstr(out, "FAIL disk read: sha256 none != " SHA "\n"));
	assert_non_null(strstr(out, "| (none)\n"));
	free(out);
}

static void test_values_first_wins_and_keys_are_strict(void **state)
{
	struct smoke_console c;

	(void)state;
	smoke_console_init(&c, "vmm: ");
	feed(&c, "cpus=2\ncpus=64\nCPUS=3\n cpus=5\nkernel==x=y\nunknown=1\nonline=\n");
	assert_true(c.has[SMOKE_CPUS]);
	assert_string_equal(c.val[SMOKE_CPUS], "2");
	assert_string_equal(c.val[SMOKE_KERNEL], "=x=y");
	assert_true(c.has[SMOKE_ONLINE]);
	assert_string_equal(c.val[SMOKE_ONLINE], "");
	/* A marker line is not a value line, and only the exact END line counts. */
	feed(&c, "VMMTEST-END smoke rc=1\nVMMTEST-END smoke rc=0 \n");
	assert_false(c.ended_ok);
	feed(&c, "VMMTEST-END smoke rc=0\r\n");
	assert_true(c.ended_ok);
	/* Memory that is not a plain number fails, however it is written. */
	{
		const char *bad[] = { "memtotal_kb=-5", "memtotal_kb=4e5", "memtotal_kb=99999999999999999999",
				      "memtotal_kb= 479000", "memtotal_kb=" };

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			char text[1024];
			unsigned fails;
			char *out;

			snprintf(text, sizeof(text), "%s\n%s", bad[i], good_boot);
			out = report(text, &good_run, &fails);
			assert_int_equal(fails, 1);
			assert_non_null(strstr(out, "FAIL memory"));
			free(out);
		}
	}
}

static void test_power_off_clock(void **state)
{
	struct smoke_console c;

	(void)state;
	smoke_console_init(&c, "vmm: ");
	feed(&c, "[ 12.5] reboot: Power down\n");
	assert_string_equal(c.power_off, "12.5");
	smoke_console_init(&c, "vmm: ");
	feed(&c, "[x] reboot: Power down\n[] reboot: Power down\n[1] reboot: Power down\n[1.] reboot: Power down\n");
	assert_string_equal(c.power_off, "");
	/* An absurd clock does not overflow its field. */
	feed(&c, "[123456789012345678901.123] reboot: Power down\n");
	assert_string_equal(c.power_off, "");
}

static void test_hostile_lines(void **state)
{
	struct smoke_console c;
	char *big = malloc(100000);

	(void)state;
	assert_non_null(big);
	memset(big, 'a', 99999);
	big[99999] = '\0';
	memcpy(big, "vmm: ", 5);
	smoke_console_init(&c, "vmm: ");
	smoke_console_line(&c, big, 99999);
	assert_int_equal(strlen(c.vmm_err), SMOKE_LINE_MAX - 1);
	assert_int_equal(strlen(c.last_line), SMOKE_LINE_MAX - 1);
	memcpy(big, "kernel=", 7);
	smoke_console_line(&c, big, 99999);
	assert_int_equal(strlen(c.val[SMOKE_KERNEL]), SMOKE_VALUE_MAX - 1);
	/* NUL bytes vanish, as a shell's read drops them. */
	smoke_console_line(&c, "cpu\0s=7", 7);
	assert_string_equal(c.val[SMOKE_CPUS], "7");
	/* The tail keeps the last SMOKE_TAIL lines, in order. */
	for (int i = 0; i < 50; i++) {
		char line[32];

		snprintf(line, sizeof(line), "line %d", i);
		smoke_console_line(&c, line, strlen(line));
	}
	assert_string_equal(c.tail[(c.nlines - 1) % SMOKE_TAIL], "line 49");
	assert_string_equal(c.tail[(c.nlines - SMOKE_TAIL) % SMOKE_TAIL], "line 30");
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_boot_passes_every_check),
		cmocka_unit_test(test_each_check_can_fail),
		cmocka_unit_test(test_values_first_wins_and_keys_are_strict),
		cmocka_unit_test(test_power_off_clock),
		cmocka_unit_test(test_hostile_lines),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
