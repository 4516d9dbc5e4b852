/*
 * netxfer: move a deterministic byte stream over one TCP connection and
 * check it. Used on both sides of the virtio-net tests and benchmark (static,
 * so the same binary runs in the guest and on the host).
 *
 *   netxfer send ADDR BYTES SEED     send BYTES of stream SEED
 *   netxfer recv ADDR [BYTES SEED]   receive until EOF; with BYTES and SEED,
 *                                    also check every byte (exit 1 if wrong)
 *
 * ADDR is HOST:PORT to connect, or :PORT to listen (on every address) and
 * serve one connection. Prints "bytes=N sum=HEX ms=N mbit=N" (and
 * "verify=ok" or "verify=bad ..."). Gives up after NETXFER_TIMEOUT seconds
 * (default 600).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 * 1024)

struct stream {
	uint64_t state;   /* xorshift64* */
	uint64_t sum;     /* FNV-1a over 64-bit words, then the tail bytes */
	uint8_t tail[8];  /* bytes of a word not yet complete */
	unsigned ntail;
	uint64_t pos;
};

static void stream_init(struct stream *s, uint64_t seed)
{
	memset(s, 0, sizeof(*s));
	s->state = seed * 0x9e3779b97f4a7c15ull + 1;
	s->sum = 0xcbf29ce484222325ull;
}

static uint64_t stream_word(struct stream *s)
{
	s->state ^= s->state >> 12;
	s->state ^= s->state << 25;
	s->state ^= s->state >> 27;
	return s->state * 0x2545f4914f6cdd1dull;
}

/* The stream is generated in 8-byte words; CHUNK is a multiple of 8. */
static void stream_fill(struct stream *s, uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t w = stream_word(s);

		memcpy(buf + i, &w, len - i < 8 ? len - i : 8);
	}
}

static void sum_add(struct stream *s, const uint8_t *p, size_t len)
{
	while (len) {
		if (s->ntail == 0 && len >= 8) {
			uint64_t w;

			memcpy(&w, p, 8);
			s->sum = (s->sum ^ w) * 0x100000001b3ull;
			p += 8;
			len -= 8;
			continue;
		}
		s->tail[s->ntail++] = *p++;
		len--;
		if (s->ntail == 8) {
			uint64_t w;

			memcpy(&w, s->tail, 8);
			s->sum = (s->sum ^ w) * 0x100000001b3ull;
			s->ntail = 0;
		}
	}
}

static uint64_t sum_final(const struct stream *s)
{
	uint64_t h = s->sum;

	for (unsigned i = 0; i < s->ntail; i++)
		h = (h ^ s->tail[i]) * 0x100000001b3ull;
	return h;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "netxfer: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "netxfer: timed out\n";
	ssize_t r = write(2, msg, sizeof(msg) - 1);

	(void)r;
	_exit(3);
}

/* Connect to HOST:PORT, or listen on :PORT and accept one connection. */
static int open_conn(const char *addr)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	const char *colon = strrchr(addr, ':');
	char host[64];
	int one = 1, fd, c;

	if (!colon || (size_t)(colon - addr) >= sizeof(host)) {
		fprintf(stderr, "netxfer: bad address '%s' (HOST:PORT or :PORT)\n", addr);
		exit(2);
	}
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	if (!host[0]) {
		sa.sin_addr.s_addr = htonl(INADDR_ANY);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			die("bind");
		if (listen(fd, 1) < 0)
			die("listen");
		c = accept(fd, NULL, NULL);
		if (c < 0)
			die("accept");
		close(fd);
		return c;
	}
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "netxfer: bad IPv4 address '%s'\n", host);
		exit(2);
	}
	/* The other side may not be listening yet: retry for a while. */
	for (int tries = 0; connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0; tries++) {
		if ((errno != ECONNREFUSED && errno != ENETUNREACH && errno != EHOSTUNREACH) || tries == 300)
			die("connect");
		close(fd);
		sleep(1);
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			die("socket");
	}
	return fd;
}

static void report(uint64_t bytes, uint64_t sum, double secs)
{
	printf("bytes=%llu sum=%016llx ms=%.0f mbit=%.1f\n", (unsigned long long)bytes,
	       (unsigned long long)sum, secs * 1000, secs > 0 ? (double)bytes * 8 / secs / 1e6 : 0.0);
}

static int do_send(int fd, uint64_t bytes, uint64_t seed)
{
	static uint8_t buf[CHUNK];
	struct stream s;
	uint64_t left = bytes;
	double t0 = now_s();

	stream_init(&s, seed);
	while (left) {
		size_t n = left < CHUNK ? (size_t)left : CHUNK;

		stream_fill(&s, buf, n);
		sum_add(&s, buf, n);
		for (size_t off = 0; off < n;) {
			ssize_t w = write(fd, buf + off, n - off);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				die("write");
			off += (size_t)w;
		}
		left -= n;
	}
	/* Half-close, then wait for the peer's EOF: everything has arrived when it closes. */
	if (shutdown(fd, SHUT_WR) < 0)
		die("shutdown");
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	report(bytes, sum_final(&s), now_s() - t0);
	return 0;
}

static int do_recv(int fd, int check, uint64_t want_bytes, uint64_t seed)
{
	static uint8_t buf[CHUNK], expect[CHUNK];
	struct stream got, exp;
	uint64_t total = 0, bad_at = UINT64_MAX;
	size_t fill = 0;
	double t0 = 0;
	ssize_t r;

	stream_init(&got, 0);
	stream_init(&exp, seed);
	for (;;) {
		/* Fill whole chunks so the expected stream can be generated chunk by chunk. */
		r = read(fd, buf + fill, CHUNK - fill);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("read");
		if (!t0)
			t0 = now_s();
		fill += (size_t)r;
		if (fill == CHUNK || r == 0) {
			sum_add(&got, buf, fill);
			if (check && bad_at == UINT64_MAX) {
				stream_fill(&exp, expect, CHUNK);
				for (size_t i = 0; i < fill; i++)
					if (buf[i] != expect[i]) {
						bad_at = total + i;
						break;
					}
			}
			total += fill;
			fill = 0;
		}
		if (r == 0)
			break;
	}
	close(fd);
	report(total, sum_final(&got), t0 ? now_s() - t0 : 0);
	if (!check)
		return 0;
	if (bad_at != UINT64_MAX) {
		printf("verify=bad first wrong byte at %llu\n", (unsigned long long)bad_at);
		return 1;
	}
	if (total != want_bytes) {
		printf("verify=bad %llu bytes, expected %llu\n", (unsigned long long)total,
		       (unsigned long long)want_bytes);
		return 1;
	}
	printf("verify=ok\n");
	return 0;
}

int main(int argc, char **argv)
{
	const char *t = getenv("NETXFER_TIMEOUT");
	int fd;

	if (argc < 3 || (strcmp(argv[1], "send") && strcmp(argv[1], "recv")) ||
	    (!strcmp(argv[1], "send") && argc != 5) || (!strcmp(argv[1], "recv") && argc != 3 && argc != 5)) {
		fprintf(stderr, "usage: netxfer send ADDR BYTES SEED | netxfer recv ADDR [BYTES SEED]\n"
				"       ADDR: HOST:PORT to connect, :PORT to listen\n");
		return 2;
	}
	signal(SIGALRM, on_alarm);
	signal(SIGPIPE, SIG_IGN);
	alarm(t ? (unsigned)atoi(t) : 600);
	setvbuf(stdout, NULL, _IOLBF, 0);
	fd = open_conn(argv[2]);
	if (!strcmp(argv[1], "send"))
		return do_send(fd, strtoull(argv[3], NULL, 0), strtoull(argv[4], NULL, 0));
	return do_recv(fd, argc == 5, argc == 5 ? strtoull(argv[3], NULL, 0) : 0,
		       argc == 5 ? strtoull(argv[4], NULL, 0) : 0);
}
