#include "vmm/cli.h"

#include "devices/virtio_kinds.h"

#include <errno.h>
#include <stdbool.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct cli_option {
	const char *name;     /* without the leading dashes */
	const char *metavar;  /* NULL: takes no argument */
	const char *help;
	/* Returns 0, or -1 after writing a message that follows "--name ARG: ". */
	int (*parse)(struct vm_config *cfg, const char *arg, char *err, size_t errlen);
};

PRINTF_FMT(3, 4)
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

int cli_parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	uint64_t mult = MiB;
	char *end;

	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': mult = KiB; end++; break;
	case 'm': case 'M': mult = MiB; end++; break;
	case 'g': case 'G': mult = GiB; end++; break;
	case 't': case 'T': mult = 1024 * GiB; end++; break;
	case 0: break;
	default: return -EINVAL;
	}
	if (*end == 'i' && end[1] == 'B')
		end += 2;
	else if (*end == 'B')
		end++;
	if (*end)
		return -EINVAL;
	if (v > UINT64_MAX / mult)
		return -ERANGE;
	*out = v * mult;
	return 0;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	unsigned long v;
	char *end;

	if (!*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int opt_kernel(struct vm_config *cfg, const char *arg, char *err, size_t errlen)
{
	if (!*arg)
		return fail(err, errlen, "empty path; give the bzImage to boot");
	cfg->kernel = arg;
	return 0;
}

static int opt_initramfs(struct vm_config *cfg, const char *arg, char *err, size_t errlen)
{
	if (!*arg)
		return fail(err, errlen, "empty path; give a cpio archive or leave the option out");
	cfg->initramfs = arg;
	return 0;
}

static int opt_cmdline(struct vm_config *cfg, const char *arg, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	cfg->cmdline = arg;
	return 0;
}

static int opt_cpus(struct vm_config *cfg, const char *arg, char *err, size_t errlen)
{
	unsigned long n;

	if (parse_uint(arg, ULONG_MAX, &n) || n == 0 || n > VMM_MAX_CPUS)
		return fail(err, errlen, "not a vCPU count; give a number from 1 to %d", VMM_MAX_CPUS);
	cfg->ncpus = (unsigned)n;
	return 0;
}

static int parse_mem_size(const char *arg, uint64_t *size, char *err, size_t errlen)
{
	if (cli_parse_size(arg, size))
		return fail(err, errlen, "not a size; use a number with a K, M or G suffix, e.g. 512M or 4G");
	if (*size < VMM_MIN_MEMORY || *size > VMM_MAX_MEMORY)
		return fail(err, errlen, "out of range; give between 16M and 1T");
	if (!IS_ALIGNED(*size, 4096))
		return fail(err, errlen, "not a multiple of 4K; round it, e.g. to whole megabytes");
	return 0;
}

static int parse_on_off(const char *key, const char *val, bool *out, char *err, size_t errlen)
{
	if (!strcmp(val, "on"))
		*out = true;
	else if (!strcmp(val, "off"))
		*out = false;
	else
		return fail(err, errlen, "%s=%s: use on or off", key, val);
	return 0;
}

/* --memory SIZE, or --memory size=SIZE[,shared=on|off][,hugepages=on|off]. */
static int opt_memory(struct vm_config *cfg, const char *arg, char *err, size_t errlen)
{
	bool have_size = false, seen_shared = false, seen_huge = false, shared = false, huge = false;
	char buf[256], *save = NULL;
	uint64_t size = 0;

	if (!strchr(arg, '=')) {
		if (parse_mem_size(arg, &cfg->mem_size, err, errlen))
			return -1;
		cfg->mem_shared = MEM_SHARE_AUTO;
		cfg->mem_hugepages = false;
		return 0;
	}
	if (strlen(arg) >= sizeof(buf))
		return fail(err, errlen, "too long; give size=SIZE[,shared=on][,hugepages=on]");
	strcpy(buf, arg);
	for (char *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *val = strchr(kv, '=');

		if (!val || val == kv)
			return fail(err, errlen, "'%s' is not key=value; keys: size, shared, hugepages", kv);
		*val++ = '\0';
		if (!strcmp(kv, "size")) {
			if (have_size)
				return fail(err, errlen, "size given twice");
			if (parse_mem_size(val, &size, err, errlen))
				return -1;
			have_size = true;
		} else if (!strcmp(kv, "shared")) {
			if (seen_shared)
				return fail(err, errlen, "shared given twice");
			if (parse_on_off(kv, val, &shared, err, errlen))
				return -1;
			seen_shared = true;
		} else if (!strcmp(kv, "hugepages")) {
			if (seen_huge)
				return fail(err, errlen, "hugepages given twice");
			if (parse_on_off(kv, val, &huge, err, errlen))
				return -1;
			seen_huge = true;
		} else {
			return fail(err, errlen, "unknown key '%s'; keys: size, shared, hugepages", kv);
		}
	}
	if (!have_size)
		size = VMM_DEFAULT_MEMORY;
	if (huge && !IS_ALIGNED(size, 2 * MiB))
		return fail(err, errlen, "hugepages=on needs a multiple of 2M; round the size up");
	if (huge && seen_shared && !shared)
		return fail(err, errlen, "hugepages=on is hugetlbfs memory, which is shared; drop shared=off");
	cfg->mem_size = size;
	cfg->mem_shared = seen_shared ? (shared ? MEM_SHARE_ON : MEM_SHARE_OFF) : MEM_SHARE_AUTO;
	cfg->mem_hugepages = huge;
	return 0;
}

static int opt_serial(struct vm_config *cfg, const char *arg, char *err, size_t errlen)
{
	if (!strcmp(arg, "stdio")) {
		cfg->serial = SERIAL_STDIO;
	} else if (!strcmp(arg, "off")) {
		cfg->serial = SERIAL_OFF;
	} else if (!strncmp(arg, "file=", 5) && arg[5]) {
		cfg->serial = SERIAL_FILE;
		cfg->serial_path = arg + 5;
	} else {
		return fail(err, errlen, "unknown mode; use stdio, off or file=PATH");
	}
	return 0;
}

static int opt_timeout(struct vm_config *cfg, const char *arg, char *err, size_t errlen)
{
	unsigned long s;

	if (parse_uint(arg, 365UL * 24 * 3600, &s))
		return fail(err, errlen, "not a number of seconds; e.g. --timeout 120 (0: none)");
	cfg->timeout_s = (unsigned)s;
	return 0;
}

/* PATH or fd=N; whether the path can be used is checked when the socket is made (vmm/api/http.c). */
static int opt_api_socket(struct vm_config *cfg, const char *arg, char *err, size_t errlen)
{
	unsigned long fd;

	if (!strncmp(arg, "fd=", 3)) {
		if (parse_uint(arg + 3, INT_MAX, &fd))
			return fail(err, errlen, "not a file descriptor number; e.g. fd=3");
	} else if (!*arg || strlen(arg) > 107) {
		return fail(err, errlen, "give a socket path of 1 to 107 bytes, or fd=N");
	}
	cfg->api_socket = arg;
	return 0;
}

/*
 * source_url=file:///DIR, as Cloud Hypervisor spells it (a snapshot is a
 * directory; vmm ctl snapshot DIR writes one). The directory is read later.
 */
static int opt_restore(struct vm_config *cfg, const char *arg, char *err, size_t errlen)
{
	static const char key[] = "source_url=", scheme[] = "file://";
	const char *url = arg + strlen(key);

	if (strncmp(arg, key, strlen(key)))
		return fail(err, errlen, "give source_url=file:///DIR, the directory a snapshot was written to");
	if (strchr(url, ','))
		return fail(err, errlen, "only source_url= is known; give source_url=file:///DIR alone");
	if (strncmp(url, scheme, strlen(scheme)))
		return fail(err, errlen, "source_url: only file:// URLs are supported, e.g. file:///var/snap");
	if (!url[strlen(scheme)])
		return fail(err, errlen, "source_url: no directory after file://");
	cfg->restore = url + strlen(scheme);
	return 0;
}

static int opt_resume(struct vm_config *cfg, const char *arg, char *err, size_t errlen)
{
	(void)arg;
	(void)err;
	(void)errlen;
	cfg->resume = true;
	return 0;
}

static int opt_verbose(struct vm_config *cfg, const char *arg, char *err, size_t errlen)
{
	(void)cfg;
	(void)arg;
	(void)err;
	(void)errlen;
	vmm_verbosity++;
	return 0;
}

static const struct cli_option options[] = {
	{ "kernel", "PATH", "Linux bzImage or ELF vmlinux to boot (required)", opt_kernel },
	{ "initramfs", "PATH", "initramfs (cpio, optionally compressed)", opt_initramfs },
	{ "cmdline", "STR", "kernel command line [" VMM_DEFAULT_CMDLINE "]", opt_cmdline },
	{ "cpus", "N", "number of vCPUs [1]", opt_cpus },
	{ "memory", "SIZE|size=SIZE[,shared=on][,hugepages=on]",
	  "guest RAM, e.g. 512M, or size=4G,hugepages=on [512M, private memory]",
	  opt_memory },
	{ "serial", "MODE", "console: stdio, off or file=PATH [stdio]", opt_serial },
	{ "timeout", "SECS", "stop the guest after SECS seconds, exit 124 [0: none]", opt_timeout },
	{ "api-socket", "PATH|fd=N", "serve the REST API on this Unix socket (see vmm ctl --help)",
	  opt_api_socket },
	{ "restore", "source_url=file:///DIR",
	  "restore the VM snapshotted into DIR, paused (instead of --kernel and the rest)", opt_restore },
	{ "resume", NULL, "with --restore: run the restored VM at once", opt_resume },
	{ "verbose", NULL, "log what the VMM does", opt_verbose },
	{ "help", NULL, "show this help", NULL },
	{ "version", NULL, "show the version", NULL },
};

void cli_usage(FILE *f)
{
	fprintf(f, "usage: vmm --kernel PATH [options]\n"
		   "       vmm --restore source_url=file:///DIR [--resume] [--serial MODE] [--api-socket PATH]\n"
		   "\noptions:\n");
	for (size_t i = 0; i < ARRAY_SIZE(options); i++) {
		char left[96];

		snprintf(left, sizeof(left), "--%s%s%s", options[i].name, options[i].metavar ? " " : "",
			 options[i].metavar ? options[i].metavar : "");
		/* A long option form gets a line of its own, like the devices below. */
		if (strlen(left) > 20)
			fprintf(f, "  %s\n  %-20s %s\n", left, "", options[i].help);
		else
			fprintf(f, "  %-20s %s\n", left, options[i].help);
	}
	fprintf(f, "\ndevices:\n");
	for (size_t i = 0; virtio_dev_kinds[i]; i++) {
		const struct virtio_dev_kind *k = virtio_dev_kinds[i];

		fprintf(f, "  --%s%s%s\n  %-20s %s%s\n", k->option, k->metavar[0] ? " " : "", k->metavar, "",
			k->help, k->repeatable ? " (repeatable)" : "");
	}
	fprintf(f, "\nConsole: Ctrl-A x quits, Ctrl-A Ctrl-A sends Ctrl-A.\n"
		   "Exit status: the guest's (power-off 0, exit device N), 1 failure, 2 bad input,\n"
		   "124 timeout, 125 guest panic, 128+N stopped by signal N.\n");
}

static const struct cli_option *find_option(const char *name, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(options); i++)
		if (strlen(options[i].name) == len && !strncmp(options[i].name, name, len))
			return &options[i];
	return NULL;
}

static const struct virtio_dev_kind *find_device_kind(const char *name, size_t len)
{
	for (size_t i = 0; virtio_dev_kinds[i]; i++)
		if (strlen(virtio_dev_kinds[i]->option) == len &&
		    !strncmp(virtio_dev_kinds[i]->option, name, len))
			return virtio_dev_kinds[i];
	return NULL;
}

enum cli_result cli_parse(int argc, char **argv, struct vm_config *cfg, char *err, size_t errlen)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->cmdline = VMM_DEFAULT_CMDLINE;
	cfg->ncpus = 1;
	cfg->mem_size = VMM_DEFAULT_MEMORY;
	cfg->serial = SERIAL_STDIO;

	const char *machine_opt = NULL; /* an option a snapshot's machine fixes, for --restore */

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *eq, *val;
		const struct virtio_dev_kind *kind;
		const struct cli_option *o;
		bool optional;
		char msg[200];
		size_t len;

		if (strncmp(a, "--", 2) != 0 || !a[2]) {
			fail(err, errlen, "unexpected argument '%s'; options start with --, see --help", a);
			return CLI_ERROR;
		}
		a += 2;
		eq = strchr(a, '=');
		len = eq ? (size_t)(eq - a) : strlen(a);
		kind = find_device_kind(a, len);
		if (kind) {
			if (cfg->ndevices == VMM_MAX_DEVICES) {
				fail(err, errlen, "--%s: at most %d devices", kind->option, VMM_MAX_DEVICES);
				return CLI_ERROR;
			}
			if (!kind->repeatable) {
				for (unsigned d = 0; d < cfg->ndevices; d++) {
					if (cfg->devices[d].kind == kind) {
						fail(err, errlen, "--%s given twice; it is not repeatable",
						     kind->option);
						return CLI_ERROR;
					}
				}
			}
			/*
			 * The value comes with '=' or as the next word; it is optional when the
			 * metavar is empty or bracketed ("--rng").
			 */
			optional = !kind->metavar[0] || kind->metavar[0] == '[';
			if (eq)
				val = eq + 1;
			else if (!optional && i + 1 < argc)
				val = argv[++i];
			else if (optional && i + 1 < argc && strncmp(argv[i + 1], "--", 2))
				val = argv[++i];
			else if (optional)
				val = "";
			else {
				fail(err, errlen, "--%s needs a value: --%s %s", kind->option, kind->option,
				     kind->metavar);
				return CLI_ERROR;
			}
			machine_opt = machine_opt ? machine_opt : kind->option;
			cfg->devices[cfg->ndevices].kind = kind;
			cfg->devices[cfg->ndevices].args = val;
			cfg->ndevices++;
			continue;
		}
		o = find_option(a, len);
		if (!o) {
			fail(err, errlen, "unknown option '--%.*s'; see --help", (int)len, a);
			return CLI_ERROR;
		}
		if (!strcmp(o->name, "help")) {
			cli_usage(stdout);
			return CLI_EXIT_OK;
		}
		if (!strcmp(o->name, "version")) {
			printf("vmm %s\n", VMM_VERSION);
			return CLI_EXIT_OK;
		}
		if (!o->metavar) {
			if (eq) {
				fail(err, errlen, "--%s takes no value", o->name);
				return CLI_ERROR;
			}
			val = "";
		} else if (eq) {
			val = eq + 1;
		} else if (i + 1 < argc) {
			val = argv[++i];
		} else {
			fail(err, errlen, "--%s needs a value: --%s %s", o->name, o->name, o->metavar);
			return CLI_ERROR;
		}
		if (o->parse(cfg, val, msg, sizeof(msg))) {
			fail(err, errlen, "--%s %s: %s", o->name, val, msg);
			return CLI_ERROR;
		}
		if (!machine_opt && (o->parse == opt_kernel || o->parse == opt_initramfs ||
				     o->parse == opt_cmdline || o->parse == opt_cpus || o->parse == opt_memory))
			machine_opt = o->name;
	}
	if (cfg->restore) {
		if (machine_opt) {
			fail(err, errlen, "--restore: --%s comes from the snapshot; leave it out", machine_opt);
			return CLI_ERROR;
		}
		return CLI_RUN;
	}
	if (cfg->resume) {
		fail(err, errlen, "--resume goes with --restore: a booted VM runs at once anyway");
		return CLI_ERROR;
	}
	if (!cfg->kernel) {
		fail(err, errlen, "--kernel is required: vmm --kernel bzImage [--initramfs initrd]");
		return CLI_ERROR;
	}
	return CLI_RUN;
}
