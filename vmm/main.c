/*
 * vmm: boot a Linux guest on KVM. main parses the command line, builds the
 * VM, then runs the console and lifecycle loop until the guest (or a signal,
 * or --timeout) ends it; the exit status says which.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "devices/serial.h"
#include "vmm/api/ctl.h"
#include "vmm/api/http.h"
#include "vmm/api/vm_api.h"
#include "vmm/cli.h"
#include "vmm/snapshot/snapshot.h"
#include "vmm/term.h"
#include "vmm/vm.h"

#define CTRL_A 0x01

struct console {
	struct vm *vm;
	bool escape;      /* the previous byte was Ctrl-A */
	bool stdin_open;
	uint8_t pending[64];
	size_t pending_len, pending_off;
};

/* Feed buffered input to the UART as room allows. */
static void console_flush(struct console *c)
{
	while (c->pending_off < c->pending_len) {
		size_t n = serial_receive(c->vm->serial, c->pending + c->pending_off,
					  c->pending_len - c->pending_off);
		if (!n)
			break;
		c->pending_off += n;
	}
	if (c->pending_off == c->pending_len)
		c->pending_off = c->pending_len = 0;
}

/* Read host input, handling the Ctrl-A escapes (as QEMU does). */
static void console_read(struct console *c)
{
	uint8_t buf[64];
	ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));

	if (n <= 0) {
		if (n == 0 || (errno != EINTR && errno != EAGAIN))
			c->stdin_open = false;
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		uint8_t b = buf[i];

		if (c->escape) {
			c->escape = false;
			if (b == 'x' || b == 'X') {
				vm_request_exit(c->vm, VMM_EXIT_OK, "quit from the console (Ctrl-A x)");
				return;
			}
			if (b != CTRL_A)
				continue; /* unknown escape: swallowed */
		} else if (b == CTRL_A) {
			c->escape = true;
			continue;
		}
		if (c->pending_len < sizeof(c->pending))
			c->pending[c->pending_len++] = b;
	}
	console_flush(c);
}

static int block_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGQUIT);
	/* Blocked before any thread starts, so every thread inherits it and signalfd sees them. */
	return -pthread_sigmask(SIG_BLOCK, set, NULL);
}

/* With --verbose, where a boot's wall time goes: before the guest, in it, after it. */
static uint64_t started_ns;

static uint64_t ms_since(uint64_t t)
{
	return (monotonic_ns() - t) / 1000000;
}

/* --api-socket: the listening socket made before the VM, served once the vCPUs run. */
struct api_socket {
	int fd;
	char *path;      /* to unlink at exit; NULL for fd=N */
	struct api_server *server;
};

static void api_socket_close(struct api_socket *api)
{
	if (api->server) {
		api_server_stop(api->server); /* closes and unlinks */
		api->server = NULL;
		return;
	}
	if (api->fd >= 0)
		close(api->fd);
	if (api->path)
		unlink(api->path);
	free(api->path);
	api->fd = -1;
	api->path = NULL;
}

static int run_loop(struct vm *vm, struct api_socket *api)
{
	struct console con = { .vm = vm, .stdin_open = vm->cfg->serial == SERIAL_STDIO };
	uint64_t deadline = vm->cfg->timeout_s ? monotonic_ns() + vm->cfg->timeout_s * 1000000000ULL : 0;
	sigset_t set;
	int sfd;

	if (block_signals(&set))
		return VMM_EXIT_FAILURE;
	sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (sfd < 0) {
		pr_err("signalfd: %s", strerror(errno));
		return VMM_EXIT_FAILURE;
	}
	if (con.stdin_open)
		term_raw(STDIN_FILENO);
	pr_info("timeline: vCPUs start %" PRIu64 " ms after vmm did", ms_since(started_ns));
	if (vm_start(vm)) {
		close(sfd);
		return VMM_EXIT_FAILURE;
	}
	if (api->fd >= 0) {
		/* The server owns the socket from here, started or not. */
		int ret = api_server_start(&api->server, api->fd, api->path, &vm_api_ops, vm);

		api->fd = -1;
		api->path = NULL;
		if (ret)
			vm_request_exit(vm, VMM_EXIT_FAILURE, "--api-socket: the API server did not start");
	}
	if (vm->cfg->resume) {
		int ret = vm_wake(vm);

		if (ret)
			vm_request_exit(vm, VMM_EXIT_FAILURE, "--resume: resuming the restored VM failed: %s",
					strerror(-ret));
	}

	for (;;) {
		bool want_stdin = con.stdin_open && con.pending_len == 0;
		struct pollfd fds[4] = {
			{ .fd = vm->exit_efd, .events = POLLIN },
			{ .fd = sfd, .events = POLLIN },
			{ .fd = want_stdin ? STDIN_FILENO : -1, .events = POLLIN },
			{ .fd = con.pending_len ? vm->serial->room_efd : -1, .events = POLLIN },
		};
		int timeout_ms = -1;

		if (deadline) {
			uint64_t now = monotonic_ns();

			if (now >= deadline) {
				char line[SERIAL_TAIL_SIZE];

				if (serial_last_line(vm->serial, line, sizeof(line)))
					vm_request_exit(vm, VMM_EXIT_TIMEOUT,
							"--timeout %u s expired; the guest's last console line: \"%s\"",
							vm->cfg->timeout_s, line);
				else
					vm_request_exit(vm, VMM_EXIT_TIMEOUT,
							"--timeout %u s expired; the guest wrote nothing to its serial console "
							"(no console=ttyS0 on --cmdline? earlyprintk=ttyS0 shows early boot; "
							"a KVM without hardware virtualization runs guests far too slowly to get there)",
							vm->cfg->timeout_s);
				break;
			}
			timeout_ms = (int)MIN((deadline - now + 999999) / 1000000, (uint64_t)INT32_MAX);
		}
		if (poll(fds, ARRAY_SIZE(fds), timeout_ms) < 0) {
			if (errno == EINTR)
				continue;
			vm_request_exit(vm, VMM_EXIT_FAILURE, "poll: %s", strerror(errno));
			break;
		}
		if (fds[0].revents)
			break;
		if (fds[1].revents) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				vm_request_exit(vm, VMM_EXIT_SIGNAL + (int)si.ssi_signo,
						"stopped by signal %s", strsignal((int)si.ssi_signo));
				break;
			}
		}
		if (fds[2].revents)
			console_read(&con);
		if (fds[3].revents) {
			uint64_t v;

			if (read(vm->serial->room_efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				break;
			console_flush(&con);
		}
	}
	pr_info("timeline: the guest ended %" PRIu64 " ms after vmm started", ms_since(started_ns));
	/* The API first: no pause or resume may be under way while the vCPUs stop. */
	api_socket_close(api);
	vm_stop(vm);
	term_restore();
	close(sfd);
	return vm->exit_status;
}

/*
 * --restore: read and check the whole snapshot, make the VM it describes
 * (its devices opened again), put its state in; the VM stays paused. Errors
 * are printed; any is the input's fault (exit 2). *snap must outlive the VM.
 */
static int restore(struct vm *vm, struct vm_config *cfg, struct vm_snapshot **snap)
{
	uint64_t t0 = monotonic_ns();
	char err[512];
	int mem_fd, ret;

	ret = vm_snapshot_load(cfg->restore, snap, &mem_fd, err, sizeof(err));
	if (!ret)
		ret = vm_snapshot_config(*snap, cfg, err, sizeof(err));
	if (ret) {
		pr_err("--restore %s: %s", cfg->restore, err);
		return ret;
	}
	ret = vm_create_restored(vm, cfg, mem_fd);
	close(mem_fd);
	if (ret)
		return ret;
	ret = vm_snapshot_apply(vm, *snap, err, sizeof(err));
	if (ret) {
		pr_err("--restore %s: %s", cfg->restore, err);
		vm_destroy(vm);
		return ret;
	}
	pr_info("restored %s (%u vCPUs, %llu MiB) in %llu ms; paused%s", cfg->restore, cfg->ncpus,
		(unsigned long long)(cfg->mem_size / MiB),
		(unsigned long long)((monotonic_ns() - t0) / 1000000),
		cfg->resume ? ", resuming" : " until vm.resume");
	return 0;
}

int main(int argc, char **argv)
{
	struct api_socket api = { .fd = -1 };
	struct vm_config cfg;
	struct vm_images img;
	struct vm_snapshot *snap = NULL;
	struct vm vm;
	char err[512];
	int status, ret;

	started_ns = monotonic_ns();
	if (argc > 1 && !strcmp(argv[1], "ctl"))
		return ctl_main(argc - 1, argv + 1);
	/*
	 * A reader that goes away (the console piped into `head`, a vsock or API
	 * client gone) is an EPIPE for the write that meets it, never the end
	 * of vmm and its guest: as with QEMU and Firecracker. vmm runs no other
	 * program, so nothing inherits the disposition.
	 */
	signal(SIGPIPE, SIG_IGN);
	switch (cli_parse(argc, argv, &cfg, err, sizeof(err))) {
	case CLI_EXIT_OK:
		return 0;
	case CLI_ERROR:
		fprintf(stderr, "vmm: %s\n", err);
		return VMM_EXIT_USAGE;
	case CLI_RUN:
		break;
	}

	/* Before KVM, like every other check of the command line's files. */
	if (cfg.api_socket && api_listen(cfg.api_socket, &api.fd, &api.path, err, sizeof(err))) {
		fprintf(stderr, "vmm: %s\n", err);
		return VMM_EXIT_USAGE;
	}
	if (cfg.restore) {
		ret = restore(&vm, &cfg, &snap);
	} else {
		if (vm_images_load(&cfg, &img)) {
			api_socket_close(&api);
			return VMM_EXIT_USAGE;
		}
		ret = vm_create(&vm, &cfg, &img);
		if (!ret) {
			ret = vm_load(&vm);
			if (ret)
				vm_destroy(&vm);
		}
		vm_images_free(&img);
	}
	if (ret) {
		vm_snapshot_free(snap);
		api_socket_close(&api);
		return VMM_EXIT_USAGE;
	}
	status = run_loop(&vm, &api);
	api_socket_close(&api); /* when run_loop left early */
	if (vm.exit_reason[0]) {
		if (cfg.serial == SERIAL_STDIO)
			fprintf(stderr, "\r\n");
		fprintf(stderr, "vmm: %s\n", vm.exit_reason);
	}
	/* SIGQUIT asks where a stuck guest waits, as --timeout reports it. */
	if (status == VMM_EXIT_TIMEOUT || status == VMM_EXIT_SIGNAL + SIGQUIT)
		vm_report_vcpus(&vm, stderr);
	vm_destroy(&vm);
	vm_snapshot_free(snap); /* after the VM: cfg's strings point into it */
	pr_info("timeline: vmm exits %" PRIu64 " ms after it started", ms_since(started_ns));
	return status;
}
