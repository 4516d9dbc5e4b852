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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size_suffixes),
		cmocka_unit_test(test_size_rejects_garbage),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_all_options),
		cmocka_unit_test(test_errors_name_the_option),
		cmocka_unit_test(test_device_options),
	};
	return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}
