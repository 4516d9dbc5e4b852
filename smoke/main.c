/*
 * vmm-smoke: boot-smoke a kernel with vmm and our test initramfs.
 *
 * A CI job pays for every process it starts (tens of milliseconds each in an
 * emulated host): past its first run this one starts one, vmm, reads the
 * console from a pipe as the guest prints, and makes no files (--keep: a
 * folder with console.log and vmm.err). The cache it boots from (initramfs
 * per modules tree, disk image) is made by tests/smoke/make-cache.sh, run
 * only on a miss.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "smoke/report.h"

#ifndef SMOKE_REPO
#error "SMOKE_REPO: the Makefile says where the repository (guest-images/) is"
#endif

#define CMDLINE "console=ttyS0 quiet panic=-1 reboot=k vmm.test=smoke"
#define APPEND_MAX 1024  /* --append's bytes: with ours, well inside Linux's 2048 */
#define STR_(x) #x
#define STR(x)  STR_(x)

#define USAGE \
	"usage: vmm-smoke --kernel PATH [--modules DIR] [--cpus N] [--memory MIB] [--tap NAME]\n" \
	"                 [--timeout SECS] [--append ARGS] [--vmm PATH] [--keep]\n"

static const char usage_text[] =
	USAGE
	"\n"
	"Boots PATH (a bzImage or an ELF vmlinux) with a small busybox initramfs (plus\n"
	"the modules under DIR, an INSTALL_MOD_PATH tree or a lib/modules/VERSION\n"
	"folder, when the virtio drivers are modules), a virtio disk holding a random\n"
	"pattern, a virtio-net on a tap (NAME, or a private one vmm creates when run as\n"
	"root; skipped otherwise) and a virtio-rng, and checks: init starts, every vCPU\n"
	"online, memory as configured, virtio devices probed, the disk reads back the\n"
	"pattern, power-off. One line per check, then \"N passed, N failed\"; exit status\n"
	"0 only if all passed, 1 if a check failed, 2 for bad arguments.\n"
	"--append adds kernel arguments after vmm-smoke's own:\n"
	"  " CMDLINE "\n"
	"The initramfs and the disk are cached in $VMM_SMOKE_CACHE (default\n"
	"build/smoke-cache), remade when a guest-image source is newer.\n"
	"Defaults: --cpus 2 --memory 512 --timeout 300 --vmm (the vmm beside this program).\n";

struct opts {
	const char *kernel, *modules, *tap, *vmm, *append;
	unsigned cpus, mem, timeout;
	bool keep;
};

static void die_usage(const char *fmt, const char *arg)
{
	if (fmt) {
		fprintf(stderr, "vmm-smoke: ");
		fprintf(stderr, fmt, arg);
		fprintf(stderr, "\n");
	}
	fputs(USAGE, stderr);
	exit(2);
}

/* A decimal number: positive when !zero_ok. */
static bool parse_uint(const char *s, bool zero_ok, unsigned *out)
{
	char *end;
	unsigned long v;

	if (!s[0] || strspn(s, "0123456789") != strlen(s) || strlen(s) > 9)
		return false;
	v = strtoul(s, &end, 10);
	if (!zero_ok && v == 0)
		return false;
	*out = (unsigned)v;
	return true;
}

static void parse_args(int argc, char **argv, struct opts *o)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage_text, stdout);
			exit(0);
		}
		if (!strcmp(a, "--keep")) {
			o->keep = true;
			continue;
		}
		if (!v)
			die_usage(strncmp(a, "--", 2) ? "unknown argument '%s'" : "%s needs a value", a);
		i++;
		if (!strcmp(a, "--kernel"))
			o->kernel = v;
		else if (!strcmp(a, "--modules"))
			o->modules = v;
		else if (!strcmp(a, "--tap"))
			o->tap = v;
		else if (!strcmp(a, "--vmm"))
			o->vmm = v;
		else if (!strcmp(a, "--cpus")) {
			if (!parse_uint(v, false, &o->cpus))
				die_usage("--cpus %s: not a number", v);
		} else if (!strcmp(a, "--memory")) {
			if (!parse_uint(v, false, &o->mem))
				die_usage("--memory %s: give MiB, e.g. 512", v);
		} else if (!strcmp(a, "--append")) {
			if (strlen(v) > APPEND_MAX)
				die_usage("--append: longer than the %s bytes it may add", STR(APPEND_MAX));
			for (const char *c = v; *c; c++) {
				if ((unsigned char)*c < 0x20 || *c == 0x7f)
					die_usage("--append: control characters (a tab, a newline) "
						  "cannot be kernel arguments%s", "");
			}
			o->append = v;
		} else if (!strcmp(a, "--timeout")) {
			if (!parse_uint(v, true, &o->timeout))
				die_usage("--timeout %s: not a number of seconds", v);
		} else
			die_usage("unknown argument '%s'", a);
	}
	if (!o->kernel)
		die_usage("--kernel is required%s", "");
}

static bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* printf into a PATH_MAX buffer; a path that long is an error, not a cut. */
__attribute__((format(printf, 2, 3))) static char *path_printf(char *buf, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, PATH_MAX, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= PATH_MAX) {
		fprintf(stderr, "vmm-smoke: path too long: %.80s...\n", buf);
		exit(2);
	}
	return buf;
}

/* A/B into a PATH_MAX buffer. */
static char *join(char *buf, const char *a, const char *b)
{
	return path_printf(buf, "%s/%s", a, b);
}

/* PATH made absolute, without a trailing "/" or "/." (no symlinks resolved: it names the cache). */
static void abs_path(const char *path, char *out)
{
	char cwd[PATH_MAX];
	size_t len;

	if (path[0] == '/')
		snprintf(out, PATH_MAX, "%s", path);
	else if (getcwd(cwd, sizeof(cwd)))
		join(out, cwd, path);
	else
		snprintf(out, PATH_MAX, "%s", path);
	for (len = strlen(out); len > 1;) {
		if (out[len - 1] == '/')
			out[--len] = '\0';
		else if (len > 2 && out[len - 1] == '.' && out[len - 2] == '/')
			out[len -= 2] = '\0';
		else
			break;
	}
}

/* The first folder in dir by name, as a shell glob lists them; false if none. */
static bool first_subdir(const char *dir, char *name, size_t size)
{
	struct dirent **list;
	char path[PATH_MAX];
	bool found = false;
	int n = scandir(dir, &list, NULL, alphasort);

	if (n < 0)
		return false;
	for (int i = 0; i < n; i++) {
		if (!found && list[i]->d_name[0] != '.' && is_dir(join(path, dir, list[i]->d_name)) &&
		    strlen(list[i]->d_name) < size) {
			snprintf(name, size, "%s", list[i]->d_name);
			found = true;
		}
		free(list[i]);
	}
	free(list);
	return found;
}

static bool newer(const char *path, const struct stat *than)
{
	struct stat st;

	if (stat(path, &st))
		return false;
	return st.st_mtim.tv_sec > than->st_mtim.tv_sec ||
	       (st.st_mtim.tv_sec == than->st_mtim.tv_sec && st.st_mtim.tv_nsec > than->st_mtim.tv_nsec);
}

/* Whether any regular file in dir whose name ends in suffix is newer than `than`. */
static bool any_newer(const char *dir, const char *suffix, const struct stat *than)
{
	char path[PATH_MAX];
	struct dirent *e;
	bool found = false;
	DIR *d = opendir(dir);

	if (!d)
		return false;
	while (!found && (e = readdir(d))) {
		size_t n = strlen(e->d_name), s = strlen(suffix);

		if (e->d_name[0] == '.' || n < s || strcmp(e->d_name + n - s, suffix))
			continue;
		found = newer(join(path, dir, e->d_name), than);
	}
	closedir(d);
	return found;
}

/* mkdir -p; true if path is then a folder we may write in. */
static bool make_dirs(const char *path)
{
	char buf[PATH_MAX];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		mkdir(buf, 0755);
		*p = '/';
	}
	mkdir(buf, 0755);
	return is_dir(buf) && access(buf, W_OK) == 0;
}

/*
 * Whether the cached initramfs is missing or older than what it is made of:
 * our guest-image sources and tools, and the modules' modules.dep.
 */
static bool initramfs_stale(const char *initramfs, const char *repo, const char *build, const char *depfile)
{
	static const char *const sources[] = { "init", "profile", "modules.list", "mkinitramfs.sh" };
	char path[PATH_MAX];
	struct stat st;

	if (stat(initramfs, &st))
		return true;
	for (size_t i = 0; i < sizeof(sources) / sizeof(sources[0]); i++)
		if (newer(path_printf(path, "%s/guest-images/%s", repo, sources[i]), &st))
			return true;
	return any_newer(join(path, repo, "guest-images/tests"), ".sh", &st) ||
	       any_newer(join(path, build, "guest/tools"), "", &st) || (depfile && newer(depfile, &st));
}

/*
 * Starts vmm with its stdout (and stderr, unless errpath) on a pipe; returns
 * its pid and sets *fd to the pipe's read end, or returns -1.
 */
static pid_t spawn_vmm(char *const argv[], const char *errpath, int *fd)
{
	int fds[2], errfd = -1;
	pid_t pid;

	if (errpath) {
		errfd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (errfd < 0) {
			fprintf(stderr, "vmm-smoke: cannot write %s: %s\n", errpath, strerror(errno));
			return -1;
		}
	}
	if (pipe2(fds, O_CLOEXEC)) {
		fprintf(stderr, "vmm-smoke: pipe: %s\n", strerror(errno));
		if (errfd >= 0)
			close(errfd);
		return -1;
	}
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);

		if (null < 0 || dup2(null, STDIN_FILENO) < 0 || dup2(fds[1], STDOUT_FILENO) < 0 ||
		    dup2(errfd >= 0 ? errfd : fds[1], STDERR_FILENO) < 0)
			_exit(127);
		execv(argv[0], argv);
		fprintf(stderr, "vmm: vmm-smoke cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	if (pid < 0)
		fprintf(stderr, "vmm-smoke: fork: %s\n", strerror(errno));
	close(fds[1]);
	if (errfd >= 0)
		close(errfd);
	if (pid < 0)
		close(fds[0]);
	else
		*fd = fds[0];
	return pid;
}

/* waitpid through EINTR: the child's wait status, or -1. */
static int wait_child(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return status;
}

/* Runs argv to completion with our stdout and stderr; its exit status, or -1. */
static int run(char *const argv[])
{
	int status;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		execv(argv[0], argv);
		fprintf(stderr, "vmm-smoke: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	status = wait_child(pid);
	return status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static volatile sig_atomic_t child_pid;

/* Ctrl-C reaches vmm through the terminal; kill(1) of this program alone is passed on. */
static void forward_signal(int sig)
{
	if (child_pid > 0)
		kill((pid_t)child_pid, sig);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The first "vmm: " line of vmm's stderr (--keep sends it to a file). */
static void first_vmm_line(const char *path, struct smoke_console *c)
{
	char line[SMOKE_LINE_MAX];
	FILE *f = fopen(path, "re");

	if (!f)
		return;
	while (!c->vmm_err[0] && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (!strncmp(line, c->prefix, strlen(c->prefix)))
			snprintf(c->vmm_err, sizeof(c->vmm_err), "%s", line);
	}
	fclose(f);
}

/*
 * Reads the console from fd to its end, line by line as it arrives, into c
 * (and log, unless NULL). A line longer than SMOKE_LINE_MAX is cut.
 */
static void read_console(int fd, struct smoke_console *c, FILE *log)
{
	static char buf[65536];
	char line[SMOKE_LINE_MAX];
	size_t len = 0;
	bool cut = false;

	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] != '\n') {
				if (len < sizeof(line))
					line[len++] = buf[i];
				else
					cut = true;
				continue;
			}
			if (log)
				fprintf(log, "%.*s%s\n", (int)len, line, cut ? " [cut]" : "");
			smoke_console_line(c, line, len);
			len = 0;
			cut = false;
		}
	}
	if (len) {
		if (log)
			fprintf(log, "%.*s\n", (int)len, line);
		smoke_console_line(c, line, len);
	}
}

int main(int argc, char **argv)
{
	struct opts o = { .cpus = 2, .mem = 512, .timeout = 300 };
	char exe[PATH_MAX], build[PATH_MAX], vmm[PATH_MAX], cache[PATH_MAX], initramfs[PATH_MAX];
	char disk[PATH_MAX], sha_path[PATH_MAX], modules[PATH_MAX], path[PATH_MAX], work[PATH_MAX] = "";
	char version[256] = "", tag[512], want_sha[80] = "", tap[16] = "", mem_arg[32], cpus_arg[16];
	char timeout_arg[16], disk_arg[PATH_MAX + 32], net_arg[32];
	char cmdline[sizeof(CMDLINE) + 1 + APPEND_MAX];
	const char *repo = SMOKE_REPO, *mroot = NULL, *depfile = NULL, *env;
	struct smoke_console con;
	struct smoke_run r = { .name = "vmm-smoke", .vmm_name = "vmm" };
	struct sigaction sa = { .sa_handler = forward_signal };
	struct stat st;
	int status, fd = -1;
	double start;
	bool cache_ok;
	pid_t pid;
	FILE *log = NULL, *f;
	ssize_t n;

	parse_args(argc, argv, &o);
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0) {
		fprintf(stderr, "vmm-smoke: cannot find where this program lives (/proc/self/exe)\n");
		return 2;
	}
	exe[n] = '\0';
	snprintf(build, sizeof(build), "%s", exe);
	*strrchr(build, '/') = '\0';
	if (!o.vmm)
		o.vmm = join(vmm, build, "vmm");
	if (access(o.kernel, R_OK)) {
		fprintf(stderr, "vmm-smoke: --kernel %s: cannot read it\n", o.kernel);
		return 2;
	}
	if (access(o.vmm, X_OK)) {
		fprintf(stderr, "vmm-smoke: %s not built (make)\n", o.vmm);
		return 2;
	}
	if (!is_file(join(path, repo, "guest-images/init"))) {
		fprintf(stderr, "vmm-smoke: no guest-image sources in %s (was the repository moved? make again)\n", repo);
		return 2;
	}

	/* The modules tree: ROOT/lib/modules/VERSION, or a VERSION folder itself. */
	if (o.modules) {
		if (!is_dir(o.modules))
			die_usage("--modules %s: no such folder", o.modules);
		abs_path(o.modules, modules);
		if (is_dir(join(path, modules, "lib/modules"))) {
			mroot = modules;
			if (!first_subdir(path, version, sizeof(version))) {
				fprintf(stderr, "vmm-smoke: --modules %s: lib/modules/ is empty\n", o.modules);
				return 2;
			}
		} else if (is_file(join(path, modules, "modules.dep")) || is_dir(join(path, modules, "kernel"))) {
			snprintf(version, sizeof(version), "%s", strrchr(modules, '/') + 1);
		} else {
			fprintf(stderr, "vmm-smoke: --modules %s: no lib/modules/VERSION or modules.dep there\n",
				o.modules);
			return 2;
		}
		if (mroot)
			snprintf(path, sizeof(path), "%s/lib/modules/%s/modules.dep", mroot, version);
		else
			join(path, modules, "modules.dep");
		depfile = strdup(path);
		/* The cache's name: the version and the tree's path, as a file name. */
		snprintf(tag, sizeof(tag), "%s-%s", version, modules);
		for (char *p = tag + strlen(version) + 1; *p; p++)
			if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", *p))
				*p = '_';
		tag[200] = '\0';
	} else {
		snprintf(tag, sizeof(tag), "builtin");
	}

	/* The cache, or (not writable) a private folder for this run. */
	env = getenv("VMM_SMOKE_CACHE");
	if (env && env[0])
		snprintf(cache, sizeof(cache), "%s", env);
	else
		join(cache, build, "smoke-cache");
	cache_ok = make_dirs(cache);
	if (!cache_ok || o.keep) {
		snprintf(work, sizeof(work), "%s/vmm-smoke.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
		if (!mkdtemp(work)) {
			fprintf(stderr, "vmm-smoke: cannot make a folder at %s: %s\n", work, strerror(errno));
			return 2;
		}
		if (!cache_ok)
			snprintf(cache, sizeof(cache), "%s", work);
	}
	setenv("BUILD", build, 1);
	path_printf(initramfs, "%s/initramfs-%s.cpio.gz", cache, tag);
	path_printf(disk, "%s/disk-4m.img", cache);
	path_printf(sha_path, "%s.sha256", disk);
	char script[PATH_MAX];
	char *build_args[] = { join(script, repo, "tests/smoke/make-cache.sh"), "initramfs", initramfs,
			       o.modules ? version : NULL, mroot ? "root" : "dir", mroot ? (char *)mroot : modules,
			       NULL };
	char *disk_args[] = { script, "disk", disk, NULL };

	/* A disk with a random pattern, made once (the guest sees it read-only). */
	for (int attempt = 0; !want_sha[0]; attempt++) {
		f = is_file(disk) ? fopen(sha_path, "re") : NULL;
		if (f) {
			if (fscanf(f, "%64[0-9a-f]", want_sha) != 1)
				want_sha[0] = '\0';
			fclose(f);
		}
		if (want_sha[0])
			break;
		if (attempt) {
			fprintf(stderr, "vmm-smoke: no disk image and sha256 at %s\n", disk);
			return 2;
		}
		if (run(disk_args) != 0)
			return 2;
	}

	/* virtio-net: the given tap, or a private one vmm creates (root only) and the kernel removes with it. */
	if (o.tap)
		snprintf(tap, sizeof(tap), "%s", o.tap);
	else if (geteuid() == 0 && stat("/dev/net/tun", &st) == 0 && S_ISCHR(st.st_mode))
		snprintf(tap, sizeof(tap), "vmmsmoke%d", (int)getpid());

	snprintf(cpus_arg, sizeof(cpus_arg), "%u", o.cpus);
	snprintf(mem_arg, sizeof(mem_arg), "%uM", o.mem);
	snprintf(timeout_arg, sizeof(timeout_arg), "%u", o.timeout);
	snprintf(disk_arg, sizeof(disk_arg), "path=%s,readonly=on", disk);
	snprintf(net_arg, sizeof(net_arg), "tap=%s", tap);
	snprintf(cmdline, sizeof(cmdline), "%s%s%s", CMDLINE, o.append ? " " : "",
		 o.append ? o.append : "");
	char *vargs[] = { (char *)o.vmm, "--kernel", (char *)o.kernel, "--initramfs", initramfs,
			  "--cpus", cpus_arg, "--memory", mem_arg, "--cmdline", cmdline,
			  "--disk", disk_arg, "--rng", "--serial", "stdio", "--timeout", timeout_arg,
			  tap[0] ? "--net" : NULL, net_arg, NULL };
	char errpath[PATH_MAX];

	if (o.keep)
		join(errpath, work, "vmm.err");
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	/*
	 * With a cached initramfs, vmm starts before the cache is checked: on a
	 * slow file system (a network share, a nested host's 9p) the thirty-odd
	 * stat() calls overlap the boot. A stale cache stops that boot unseen,
	 * and the run starts again on the rebuilt image.
	 */
	start = now_s();
	pid = is_file(initramfs) ? spawn_vmm(vargs, o.keep ? errpath : NULL, &fd) : 0;
	if (pid < 0)
		return 2;
	child_pid = pid;
	if (initramfs_stale(initramfs, repo, build, depfile)) {
		if (pid > 0) {
			kill(pid, SIGKILL);
			wait_child(pid);
			child_pid = 0;
			close(fd);
		}
		printf("vmm-smoke: building the initramfs%s%s (cached in %s)\n", version[0] ? " for " : "", version,
		       cache);
		if (run(build_args) != 0)
			return 2;
		pid = 0;
	}
	if (!pid) {
		start = now_s();
		pid = spawn_vmm(vargs, o.keep ? errpath : NULL, &fd);
		if (pid < 0)
			return 2;
		child_pid = pid;
	}

	if (o.keep) {
		log = fopen(join(path, work, "console.log"), "we");
		if (!log)
			fprintf(stderr, "vmm-smoke: cannot write %s: %s\n", path, strerror(errno));
	}
	smoke_console_init(&con, "vmm: ");
	read_console(fd, &con, log);
	close(fd);
	status = wait_child(pid);
	child_pid = 0;
	r.secs = now_s() - start;
	if (log)
		fclose(log);
	if (o.keep)
		first_vmm_line(errpath, &con);

	r.kernel = o.kernel;
	r.version = version;
	r.cpus = o.cpus;
	r.mem_mib = o.mem;
	r.net = tap[0] != '\0';
	r.want_sha = want_sha;
	r.status = status < 0 ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	r.kept = o.keep ? work : NULL;
	status = smoke_report(stdout, &con, &r) ? 1 : 0;
	if (work[0] && !o.keep) {
		char *args[] = { "/bin/rm", "-rf", work, NULL };

		run(args);
	}
	return status;
}
