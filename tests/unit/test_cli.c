#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "virtio/virtio_dev.h"
#include "vmm/cli.h"

static enum cli_result parse(struct vm_config *cfg, char *err, const char *a1, const char *a2,
			     const char *a3, const char *a4)
{
	char *argv[] = { "vmm", (char *)a1, (char *)a2, (char *)a3, (char *)a4, NULL };
	int argc = 1;

	while (argc < 5 && argv[argc])
		argc++;
	return cli_parse(argc, argv, cfg, err, 256);
}

static void test_size_suffixes(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(cli_parse_size("512M", &v), 0);
	assert_int_equal(v, 512 * MiB);
	assert_int_equal(cli_parse_size("4G", &v), 0);
	assert_int_equal(v, 4 * GiB);
	assert_int_equal(cli_parse_size("5GiB", &v), 0);
	assert_int_equal(v, 5 * GiB);
	assert_int_equal(cli_parse_size("64k", &v), 0);
	assert_int_equal(v, 64 * KiB);
	assert_int_equal(cli_parse_size("1T", &v), 0);
	assert_int_equal(v, 1024 * GiB);
	assert_int_equal(cli_parse_size("256", &v), 0); /* plain number: MiB, as QEMU's -m */
	assert_int_equal(v, 256 * MiB);
}

static void test_size_rejects_garbage(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_not_equal(cli_parse_size("", &v), 0);
	assert_int_not_equal(cli_parse_size("M", &v), 0);
	assert_int_not_equal(cli_parse_size("-1G", &v), 0);
	assert_int_not_equal(cli_parse_size("12X", &v), 0);
	assert_int_not_equal(cli_parse_size("1GG", &v), 0);
	assert_int_not_equal(cli_parse_size("99999999999999999999", &v), 0);
	assert_int_not_equal(cli_parse_size("18446744073709551615T", &v), 0); /* overflows */
}

static void test_defaults(void **state)
{
	struct vm_config cfg;
	char err[256];

	(void)state;
	assert_int_equal(parse(&cfg, err, "--kernel", "bz", NULL, NULL), CLI_RUN);
	assert_string_equal(cfg.kernel, "bz");
	assert_null(cfg.initramfs);
	assert_int_equal(cfg.ncpus, 1);
	assert_int_equal(cfg.mem_size, 512 * MiB);
	assert_int_equal(cfg.serial, SERIAL_STDIO);
	assert_string_equal(cfg.cmdline, "console=ttyS0 reboot=k panic=1");
}

static void test_all_options(void **state)
{
	char *argv[] = { "vmm", "--kernel=k", "--initramfs", "i", "--cmdline", "quiet", "--cpus", "4",
			 "--memory", "5G", "--serial", "file=/tmp/x.log", "--timeout", "120" };
	struct vm_config cfg;
	char err[256];

	(void)state;
	assert_int_equal(cli_parse(ARRAY_SIZE(argv), argv, &cfg, err, sizeof(err)), CLI_RUN);
	assert_string_equal(cfg.kernel, "k");
	assert_string_equal(cfg.initramfs, "i");
	assert_string_equal(cfg.cmdline, "quiet");
	assert_int_equal(cfg.ncpus, 4);
	assert_int_equal(cfg.mem_size, 5 * GiB);
	assert_int_equal(cfg.serial, SERIAL_FILE);
	assert_string_equal(cfg.serial_path, "/tmp/x.log");
	assert_int_equal(cfg.timeout_s, 120);
}

/* Every error names the option at fault. */
static void test_errors_name_the_option(void **state)
{
	static const struct {
		const char *a1, *a2, *a3, *a4, *needle;
	} cases[] = {
		{ "--kernel", "k", "--cpus", "0", "--cpus 0" },
		{ "--kernel", "k", "--cpus", "255", "--cpus 255" },
		{ "--kernel", "k", "--cpus", "two", "--cpus two" },
		{ "--kernel", "k", "--memory", "12X", "--memory 12X" },
		{ "--kernel", "k", "--memory", "1M", "--memory 1M" },
		{ "--kernel", "k", "--memory", "2T", "--memory 2T" },
		{ "--kernel", "k", "--serial", "tcp", "--serial tcp" },
		{ "--kernel", "k", "--serial", "file=", "--serial file=" },
		{ "--kernel", "k", "--timeout", "-5", "--timeout -5" },
		{ "--kernel", "k", "--bogus", NULL, "--bogus" },
		{ "--kernel", "k", "stray", NULL, "stray" },
		{ "--kernel", "k", "--cpus", NULL, "--cpus needs a value" },
		{ "--cpus", "2", NULL, NULL, "--kernel is required" },
		{ "--kernel", "", NULL, NULL, "--kernel" },
		{ "--kernel", "k", "--verbose=1", NULL, "--verbose takes no value" },
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct vm_config cfg;
		char err[256] = "";

		assert_int_equal(parse(&cfg, err, cases[i].a1, cases[i].a2, cases[i].a3, cases[i].a4),
				 CLI_ERROR);
		if (!strstr(err, cases[i].needle))
			fail_msg("case %zu: '%s' does not mention '%s'", i, err, cases[i].needle);
	}
}

static void test_device_options(void **state)
{
	char *argv[] = { "vmm", "--kernel", "k", "--rng", "--disk", "path=a.img", "--disk=path=b.img,readonly=on",
			 "--cpus", "2" };
	struct vm_config cfg;
	char err[256];

	(void)state;
	assert_int_equal(cli_parse(ARRAY_SIZE(argv), argv, &cfg, err, sizeof(err)), CLI_RUN);
	assert_int_equal(cfg.ndevices, 3);
	assert_string_equal(cfg.devices[0].kind->option, "rng");
	assert_string_equal(cfg.devices[0].args, "");   /* optional value, next word is an option */
	assert_string_equal(cfg.devices[1].kind->option, "disk");
	assert_string_equal(cfg.devices[1].args, "path=a.img");
	assert_string_equal(cfg.devices[2].args, "path=b.img,readonly=on");
	assert_int_equal(cfg.ncpus, 2);

	/* A required value missing, a non-repeatable device given twice. */
	assert_int_equal(parse(&cfg, err, "--kernel", "k", "--disk", NULL), CLI_ERROR);
	assert_non_null(strstr(err, "--disk needs a value"));
	assert_int_equal(parse(&cfg, err, "--kernel", "k", "--rng", "--rng"), CLI_ERROR);
	assert_non_null(strstr(err, "--rng given twice"));
}

static void test_memory_backing_grammar(void **state)
{
	struct vm_config cfg;
	char err[256];

	(void)state;
	assert_int_equal(parse(&cfg, err, "--kernel", "k", "--memory", "2G"), CLI_RUN);
	assert_int_equal(cfg.mem_size, 2 * GiB);
	assert_int_equal(cfg.mem_shared, MEM_SHARE_AUTO);
	assert_false(cfg.mem_hugepages);

	assert_int_equal(parse(&cfg, err, "--kernel", "k", "--memory", "size=2G,shared=on"), CLI_RUN);
	assert_int_equal(cfg.mem_size, 2 * GiB);
	assert_int_equal(cfg.mem_shared, MEM_SHARE_ON);
	assert_false(cfg.mem_hugepages);

	assert_int_equal(parse(&cfg, err, "--kernel", "k", "--memory=shared=off,size=64M", NULL), CLI_RUN);
	assert_int_equal(cfg.mem_size, 64 * MiB);
	assert_int_equal(cfg.mem_shared, MEM_SHARE_OFF);

	assert_int_equal(parse(&cfg, err, "--kernel", "k", "--memory", "size=1G,hugepages=on"), CLI_RUN);
	assert_int_equal(cfg.mem_size, 1 * GiB);
	assert_true(cfg.mem_hugepages);
	assert_int_equal(cfg.mem_shared, MEM_SHARE_AUTO);

	/* size= may be left out: the default size with another backing. */
	assert_int_equal(parse(&cfg, err, "--kernel", "k", "--memory", "shared=on"), CLI_RUN);
	assert_int_equal(cfg.mem_size, VMM_DEFAULT_MEMORY);
	assert_int_equal(cfg.mem_shared, MEM_SHARE_ON);

	/* The last --memory wins whole: a plain size resets the backing. */
	{
		char *argv[] = { "vmm", "--kernel", "k", "--memory", "size=1G,hugepages=on", "--memory", "256M", NULL };

		assert_int_equal(cli_parse(7, argv, &cfg, err, sizeof(err)), CLI_RUN);
		assert_int_equal(cfg.mem_size, 256 * MiB);
		assert_false(cfg.mem_hugepages);
	}
}

static void test_memory_backing_errors(void **state)
{
	static const struct {
		const char *arg, *says;
	} bad[] = {
		{ "size=", "not a size" },
		{ "size=2X", "not a size" },
		{ "size=8M", "out of range" },
		{ "size=16385K", "multiple of 4K" },
		{ "size=1G,size=2G", "size given twice" },
		{ "shared=yes", "shared=yes: use on or off" },
		{ "hugepages=1", "hugepages=1: use on or off" },
		{ "shared=on,shared=off", "shared given twice" },
		{ "hugepages=on,hugepages=on", "hugepages given twice" },
		{ "size=1G,prealloc=on", "unknown key 'prealloc'" },
		{ "size=1G,,shared=on", NULL }, /* empty item: tolerated by strtok, checked below */
		{ "size=1G,shared", "'shared' is not key=value" },
		{ "=1G", "'=1G' is not key=value" },
		{ "size=1025M,hugepages=on", "multiple of 2M" },
		{ "size=1G,hugepages=on,shared=off", "drop shared=off" },
	};
	struct vm_config cfg;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		enum cli_result r = parse(&cfg, err, "--kernel", "k", "--memory", bad[i].arg);

		if (!bad[i].says) {
			assert_int_equal(r, CLI_RUN);
			continue;
		}
		if (r != CLI_ERROR || !strstr(err, bad[i].says) || !strstr(err, "--memory") ||
		    strchr(err, '\n'))
			fail_msg("--memory %s: got %d '%s', wanted one line with '%s'", bad[i].arg, r,
				 r == CLI_ERROR ? err : "", bad[i].says);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size_suffixes),
		cmocka_unit_test(test_size_rejects_garbage),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_all_options),
		cmocka_unit_test(test_errors_name_the_option),
		cmocka_unit_test(test_device_options),
		cmocka_unit_test(test_memory_backing_grammar),
		cmocka_unit_test(test_memory_backing_errors),
	};
	return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}
