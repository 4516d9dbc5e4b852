/*
 * vsockt: move checked bytes over vsock. Static, so the same binary runs in
 * the guest (AF_VSOCK) and on the host (the VMM's Unix socket bridge).
 *
 *   vsockt [-s] [-q] [-n N] [-t SECS] [-r SECS] ENDPOINT MODE [ARG]
 *
 * ENDPOINT (one connection, or N served at once with -n, each in a child):
 *   listen PORT             guest: accept on AF_VSOCK port PORT
 *   connect CID PORT        guest: connect to CID:PORT
 *   ulisten PATH            host: accept on the Unix socket PATH (the bridge's PATH_<port>)
 *   uconnect PATH PORT      host: connect to the bridge at PATH, "CONNECT PORT", expect "OK"
 *                           (-s: PATH is the bridge's SOCK_SEQPACKET socket, type=seqpacket)
 * MODE:
 *   send BYTES              send BYTES of a fixed pattern, then shut down writing and
 *                           wait for the peer to close
 *   recv BYTES              receive until EOF, check every byte of the pattern and the
 *                           count; prints "bytes=N sum=HEX ok"
 *   echo                    send back what arrives until EOF
 *   echocheck BYTES         send BYTES while reading them back, check the echo
 *   seqsend COUNT           -s: COUNT messages of varying size (1..60000), then close
 *   seqrecv COUNT           -s: COUNT messages, checking every size and byte
 *   pingpong COUNT          1 + COUNT x (connect, 64 bytes there and back, close): prints
 *                           the mean of the last COUNT in microseconds (connect included)
 *   xchg BYTES              both ends at once: send BYTES of the pattern while receiving
 *                           and checking the peer's BYTES, shut down writing, read to EOF;
 *                           prints "xchg sent=N sent_sum=HEX recv=N recv_sum=HEX ok"
 *   trade BYTES             the same exchange without the shutdown, then close
 *                           ("trade ... ok")
 *   hold BYTES              the same exchange without the shutdown ("hold ... ok"), then
 *                           keep the connection open and say how it ended: "then=eof",
 *                           or "then=error:ECONNRESET" (the errno's name)
 * -s: SOCK_SEQPACKET. -t: give up after SECS (default 300), exit 124.
 * -q: serve the N connections one after another, without a child each.
 * -r SECS: a connect that fails is tried again every 0.2 s for SECS (the
 * peer may not be listening yet).
 * Prints one result line per connection; exits 0 when every one checked out.
 */
#include <errno.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64 * 1024)

static int sock_type = SOCK_STREAM;
static int retry_s;
static int sequential;

/* Byte i of the pattern: cheap, position-dependent, catches shifts and drops. */
static uint8_t pat(uint64_t i)
{
	uint64_t x = (i >> 3) * 0x9e3779b97f4a7c15ull;

	return (uint8_t)((x >> 32) ^ (x >> (8 * (i & 7))) ^ i);
}

static void fill(uint8_t *b, size_t n, uint64_t pos)
{
	for (size_t i = 0; i < n; i++)
		b[i] = pat(pos + i);
}

static uint64_t fnv(uint64_t h, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

/* ---- endpoints ------------------------------------------------------------ */

static int vsock_listen_fd(unsigned port)
{
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port };
	int fd = socket(AF_VSOCK, sock_type, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
		perror("vsockt: listen");
		exit(2);
	}
	return fd;
}

static int vsock_connect_fd(unsigned cid, unsigned port)
{
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
	int fd = socket(AF_VSOCK, sock_type, 0);

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int unix_listen_fd(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, sock_type, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	unlink(path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
		perror("vsockt: ulisten");
		exit(2);
	}
	return fd;
}

/*
 * The bridge handshake: "CONNECT <port>\n", then "OK <host_port>\n". With -s
 * the bridge's socket is SOCK_SEQPACKET (--vsock ...,type=seqpacket): each
 * line is one message, and the answer is read as Firecracker's tests read
 * it, one recv that must hold the whole line.
 */
static int unix_connect_fd(const char *path, unsigned port)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char line[64];
	size_t n = 0;
	int fd = socket(AF_UNIX, sock_type, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto fail;
	n = (size_t)snprintf(line, sizeof(line), "CONNECT %u\n", port);
	if (send(fd, line, n, MSG_NOSIGNAL) != (ssize_t)n)
		goto fail;
	if (sock_type == SOCK_SEQPACKET) {
		ssize_t got = recv(fd, line, 32, 0);

		if (got <= 0 || line[got - 1] != '\n')
			goto fail;
		n = (size_t)got;
		goto check;
	}
	/* Peek, then take the line alone: guest data may follow it at once. */
	for (n = 0;;) {
		ssize_t got = recv(fd, line + n, sizeof(line) - 1 - n, MSG_PEEK);
		char *nl;

		if (got <= 0)
			goto fail;
		nl = memchr(line + n, '\n', (size_t)got);
		got = nl ? nl - (line + n) + 1 : got;
		if (recv(fd, line + n, (size_t)got, 0) != got)
			goto fail;
		n += (size_t)got;
		if (nl || n >= sizeof(line) - 1)
			break;
	}
check:
	line[n] = '\0';
	if (strncmp(line, "OK ", 3) != 0)
		goto fail;
	return fd;
fail:
	if (fd >= 0)
		close(fd);
	return -1;
}

/* ---- modes ------------------------------------------------------------------- */

static int do_send(int fd, uint64_t bytes)
{
	static uint8_t buf[CHUNK];
	uint64_t pos = 0, sum = 0xcbf29ce484222325ull;
	double t0 = now_s(), dt;
	char c;

	while (pos < bytes) {
		size_t n = bytes - pos < CHUNK ? (size_t)(bytes - pos) : CHUNK;

		fill(buf, n, pos);
		sum = fnv(sum, buf, n);
		if (write_all(fd, buf, n) < 0) {
			printf("send: failed after %llu bytes: %s\n", (unsigned long long)pos, strerror(errno));
			return 1;
		}
		pos += n;
	}
	shutdown(fd, SHUT_WR);
	/* Wait for the peer to finish reading (it closes). */
	while (recv(fd, &c, 1, 0) > 0)
		;
	dt = now_s() - t0;
	printf("bytes=%llu sum=%016llx sent ms=%.0f MBps=%.1f\n", (unsigned long long)pos,
	       (unsigned long long)sum, dt * 1e3, dt > 0 ? pos / dt / 1e6 : 0.0);
	return 0;
}

static int do_recv(int fd, uint64_t bytes)
{
	static uint8_t buf[CHUNK], want[CHUNK];
	uint64_t pos = 0, sum = 0xcbf29ce484222325ull;
	double t0 = now_s(), dt;

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			printf("recv: error after %llu bytes: %s\n", (unsigned long long)pos, strerror(errno));
			return 1;
		}
		if (n == 0)
			break;
		fill(want, (size_t)n, pos);
		if (memcmp(buf, want, (size_t)n)) {
			printf("recv: wrong data near byte %llu\n", (unsigned long long)pos);
			return 1;
		}
		sum = fnv(sum, buf, (size_t)n);
		pos += (uint64_t)n;
	}
	dt = now_s() - t0;
	printf("bytes=%llu sum=%016llx %s ms=%.0f MBps=%.1f\n", (unsigned long long)pos,
	       (unsigned long long)sum, pos == bytes ? "ok" : "short", dt * 1e3,
	       dt > 0 ? pos / dt / 1e6 : 0.0);
	return pos == bytes ? 0 : 1;
}

static int do_echo(int fd)
{
	static uint8_t buf[CHUNK];
	uint64_t total = 0;

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (write_all(fd, buf, (size_t)n) < 0)
			return 1;
		total += (uint64_t)n;
	}
	printf("echoed=%llu\n", (unsigned long long)total);
	return 0;
}

static int do_echocheck(int fd, uint64_t bytes)
{
	static uint8_t out[CHUNK], in[CHUNK], want[CHUNK];
	uint64_t sent = 0, got = 0;

	while (got < bytes) {
		struct pollfd p = { .fd = fd, .events = POLLIN | (sent < bytes ? POLLOUT : 0) };

		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			return 1;
		if ((p.revents & POLLOUT) && sent < bytes) {
			size_t n = bytes - sent < 4096 ? (size_t)(bytes - sent) : 4096;
			ssize_t w;

			fill(out, n, sent);
			w = send(fd, out, n, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (w > 0)
				sent += (uint64_t)w;
			else if (w < 0 && errno != EAGAIN)
				return 1;
			if (sent == bytes)
				shutdown(fd, SHUT_WR);
		}
		if (p.revents & (POLLIN | POLLHUP)) {
			ssize_t n = recv(fd, in, sizeof(in), MSG_DONTWAIT);

			if (n == 0)
				break;
			if (n < 0 && errno != EAGAIN)
				return 1;
			if (n > 0) {
				fill(want, (size_t)n, got);
				if (memcmp(in, want, (size_t)n)) {
					printf("echocheck: wrong echo near byte %llu\n", (unsigned long long)got);
					return 1;
				}
				got += (uint64_t)n;
			}
		}
	}
	printf("echocheck=%llu %s\n", (unsigned long long)got, got == bytes ? "ok" : "short");
	return got == bytes ? 0 : 1;
}

static const char *errno_name(int e)
{
	static char buf[16];

	switch (e) {
	case ECONNRESET: return "ECONNRESET";
	case ENOTCONN: return "ENOTCONN";
	case EPIPE: return "EPIPE";
	case ECONNABORTED: return "ECONNABORTED";
	case ETIMEDOUT: return "ETIMEDOUT";
	}
	snprintf(buf, sizeof(buf), "E%d", e);
	return buf;
}

/*
 * Send BYTES of the pattern and receive the peer's BYTES at once, checking
 * every byte. shut: then shut down writing and read on to EOF (more is an
 * error). Prints "NAME sent=N sent_sum=HEX recv=N recv_sum=HEX ok|short|bad".
 */
static int do_exchange(int fd, uint64_t bytes, bool shut, const char *name)
{
	static uint8_t out[CHUNK], in[CHUNK], want[CHUNK];
	uint64_t sent = 0, got = 0, osum = 0xcbf29ce484222325ull, isum = osum;
	const char *verdict = "ok", *why = "";
	bool eof = false;

	if (shut && !bytes)
		shutdown(fd, SHUT_WR);
	/* The peer's end-of-file ends our receiving, not our sending: a half-close is one-way. */
	while (sent < bytes || (!eof && (shut || got < bytes))) {
		struct pollfd p = { .fd = fd, .events = (eof ? 0 : POLLIN) | (sent < bytes ? POLLOUT : 0) };

		if (poll(&p, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			why = strerror(errno);
			verdict = "bad";
			break;
		}
		/* An error or hang-up is the send's to report (EPIPE), not a reason to spin. */
		if ((p.revents & (POLLOUT | POLLERR | POLLHUP)) && sent < bytes) {
			size_t n = bytes - sent < CHUNK ? (size_t)(bytes - sent) : CHUNK;
			ssize_t w;

			fill(out, n, sent);
			w = send(fd, out, n, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (w < 0 && errno != EAGAIN && errno != EINTR) {
				why = errno_name(errno);
				verdict = "bad";
				break;
			}
			if (w > 0) {
				osum = fnv(osum, out, (size_t)w);
				sent += (uint64_t)w;
				if (sent == bytes && shut)
					shutdown(fd, SHUT_WR);
			}
		}
		if (!eof && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
			ssize_t n = recv(fd, in, sizeof(in), MSG_DONTWAIT);

			if (n < 0 && errno != EAGAIN && errno != EINTR) {
				why = errno_name(errno);
				verdict = "bad";
				break;
			}
			if (n == 0) {
				eof = true;
			} else if (n > 0) {
				if (got + (uint64_t)n > bytes) {
					why = "more bytes than expected";
					verdict = "bad";
					break;
				}
				fill(want, (size_t)n, got);
				if (memcmp(in, want, (size_t)n)) {
					why = "wrong bytes";
					verdict = "bad";
					break;
				}
				isum = fnv(isum, in, (size_t)n);
				got += (uint64_t)n;
			}
		}
	}
	if (!*why && (sent != bytes || got != bytes))
		verdict = "short";
	printf("%s sent=%llu sent_sum=%016llx recv=%llu recv_sum=%016llx %s%s%s\n", name,
	       (unsigned long long)sent, (unsigned long long)osum, (unsigned long long)got,
	       (unsigned long long)isum, verdict, *why ? " " : "", why);
	return strcmp(verdict, "ok") != 0;
}

/* The exchange, then wait for the connection to end and say how. */
static int do_hold(int fd, uint64_t bytes)
{
	char c;
	ssize_t n;

	if (do_exchange(fd, bytes, false, "hold"))
		return 1;
	do
		n = recv(fd, &c, 1, 0);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		printf("then=data\n");
	else if (n == 0)
		printf("then=eof\n");
	else
		printf("then=error:%s\n", errno_name(errno));
	return 0;
}

static size_t msg_size(unsigned i)
{
	return 1 + (size_t)((i * 7919u) % 60000u);
}

static int do_seqsend(int fd, unsigned count)
{
	static uint8_t buf[60001];

	for (unsigned i = 0; i < count; i++) {
		size_t n = msg_size(i);

		fill(buf, n, i * 131u);
		if (send(fd, buf, n, MSG_NOSIGNAL | MSG_EOR) != (ssize_t)n) {
			printf("seqsend: message %u failed: %s\n", i, strerror(errno));
			return 1;
		}
	}
	printf("seqsent=%u\n", count);
	return 0;
}

static int do_seqrecv(int fd, unsigned count)
{
	static uint8_t buf[70000], want[60001];

	for (unsigned i = 0; i < count; i++) {
		size_t n = msg_size(i);
		ssize_t r = recv(fd, buf, sizeof(buf), 0);

		if (r != (ssize_t)n) {
			printf("seqrecv: message %u: %zd bytes, want %zu\n", i, r, n);
			return 1;
		}
		fill(want, n, i * 131u);
		if (memcmp(buf, want, n)) {
			printf("seqrecv: message %u: wrong bytes\n", i);
			return 1;
		}
	}
	printf("seqrecv=%u ok\n", count);
	return 0;
}

static int connect_retry(const char *ep, const char *a1, const char *a2)
{
	double end = now_s() + retry_s;
	struct timespec pause = { 0, 200 * 1000 * 1000 };

	for (;;) {
		int fd = !strcmp(ep, "connect") ? vsock_connect_fd((unsigned)atoi(a1), (unsigned)atoi(a2))
						: unix_connect_fd(a1, (unsigned)atoi(a2));

		if (fd >= 0 || now_s() >= end)
			return fd;
		nanosleep(&pause, NULL);
	}
}

static int serve(int fd, const char *mode, const char *arg)
{
	uint64_t n = arg ? strtoull(arg, NULL, 0) : 0;

	if (!strcmp(mode, "send"))
		return do_send(fd, n);
	if (!strcmp(mode, "recv"))
		return do_recv(fd, n);
	if (!strcmp(mode, "echo"))
		return do_echo(fd);
	if (!strcmp(mode, "echocheck"))
		return do_echocheck(fd, n);
	if (!strcmp(mode, "seqsend"))
		return do_seqsend(fd, (unsigned)n);
	if (!strcmp(mode, "seqrecv"))
		return do_seqrecv(fd, (unsigned)n);
	if (!strcmp(mode, "xchg"))
		return do_exchange(fd, n, true, "xchg");
	if (!strcmp(mode, "trade"))
		return do_exchange(fd, n, false, "trade");
	if (!strcmp(mode, "hold"))
		return do_hold(fd, n);
	fprintf(stderr, "vsockt: unknown mode %s\n", mode);
	return 2;
}

static void on_alarm(int sig)
{
	static const char msg[] = "vsockt: timed out\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(124);
	_exit(124);
}

static void usage(void)
{
	fprintf(stderr, "usage: vsockt [-s] [-q] [-n N] [-t SECS] [-r SECS] listen PORT | connect CID PORT | ulisten PATH |"
			" uconnect PATH PORT   send|recv|echocheck|xchg|trade|hold BYTES | echo | seqsend|seqrecv|pingpong COUNT\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int nconn = 1, secs = 300, i = 1, lfd = -1, failed = 0;
	const char *ep, *mode, *arg = NULL, *a1 = NULL, *a2 = NULL;
	char **rest;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "-s"))
			sock_type = SOCK_SEQPACKET;
		else if (!strcmp(argv[i], "-n") && i + 1 < argc)
			nconn = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-t") && i + 1 < argc)
			secs = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-r") && i + 1 < argc)
			retry_s = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-q"))
			sequential = 1;
		else
			usage();
	}
	if (i >= argc)
		usage();
	ep = argv[i++];
	rest = argv + i;
	if (!strcmp(ep, "connect") || !strcmp(ep, "uconnect")) {
		if (argc - i < 3)
			usage();
		a1 = rest[0];
		a2 = rest[1];
		mode = rest[2];
		arg = argc - i > 3 ? rest[3] : NULL;
	} else if (!strcmp(ep, "listen") || !strcmp(ep, "ulisten")) {
		if (argc - i < 2)
			usage();
		a1 = rest[0];
		mode = rest[1];
		arg = argc - i > 2 ? rest[2] : NULL;
	} else {
		usage();
		return 2;
	}
	signal(SIGALRM, on_alarm);
	signal(SIGPIPE, SIG_IGN);
	alarm((unsigned)secs);

	if (!strcmp(mode, "pingpong")) {
		unsigned count = arg ? (unsigned)atoi(arg) : 100;
		uint8_t out[64], in[64];
		double t0 = now_s(), t_conn = 0, t_echo = 0, t1, t2;

		fill(out, sizeof(out), 0);
		/* Round 0 warms up (and may wait for the listener with -r): not timed. */
		for (unsigned k = 0; k <= count; k++) {
			if (k == 1)
				t0 = now_s();
			int fd;
			size_t got = 0;

			t1 = now_s();
			fd = connect_retry(ep, a1, a2);
			t2 = now_s();

			if (fd < 0 || write_all(fd, out, sizeof(out)) < 0) {
				printf("pingpong: connect %u failed\n", k);
				return 1;
			}
			while (got < sizeof(in)) {
				ssize_t n = recv(fd, in + got, sizeof(in) - got, 0);

				if (n <= 0) {
					printf("pingpong: no echo on %u\n", k);
					return 1;
				}
				got += (size_t)n;
			}
			if (k) {
				t_conn += t2 - t1;
				t_echo += now_s() - t2;
			}
			close(fd);
		}
		printf("pingpong=%u us=%.0f connect_us=%.0f echo_us=%.0f\n", count,
		       (now_s() - t0) / count * 1e6, t_conn / count * 1e6, t_echo / count * 1e6);
		return 0;
	}

	if (!strcmp(ep, "listen") || !strcmp(ep, "ulisten"))
		lfd = !strcmp(ep, "listen") ? vsock_listen_fd((unsigned)atoi(a1)) : unix_listen_fd(a1);
	if (lfd >= 0)
		printf("listening\n");
	for (int k = 0; k < nconn; k++) {
		int fd;
		pid_t pid;

		if (lfd >= 0) {
			fd = accept(lfd, NULL, NULL);
		} else {
			fd = connect_retry(ep, a1, a2);
		}
		if (fd < 0) {
			printf("connection %d failed: %s\n", k, strerror(errno));
			failed++;
			continue;
		}
		if (nconn == 1 || sequential) {
			failed += serve(fd, mode, arg) != 0;
			close(fd);
			continue;
		}
		pid = fork();
		if (pid == 0) {
			int rc = serve(fd, mode, arg);

			close(fd);
			_exit(rc);
		}
		close(fd);
		if (pid < 0)
			failed++;
	}
	for (;;) {
		int st;
		pid_t p = wait(&st);

		if (p < 0)
			break;
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			failed++;
	}
	if (nconn > 1)
		printf("connections=%d failed=%d\n", nconn, failed);
	return failed ? 1 : 0;
}
