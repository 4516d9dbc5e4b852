/*
 * Pause and resume latency through a VMM's control socket, client side: the
 * time from sending the request to having its answer, over CYCLES cycles,
 * with the guest running GAP_MS between them. Prints one line per operation:
 *
 *   pause p50_us p99_us
 *   resume p50_us p99_us
 *
 *   pause --vmm SOCKET [CYCLES [GAP_MS]]    PUT /api/v1/vm.pause, vm.resume (a connection each)
 *   pause --qmp SOCKET [CYCLES [GAP_MS]]    QMP stop, cont (one connection)
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "vmm/api/ctl.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int connect_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "pause: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	return fd;
}

static void vmm_op(const char *sock, const char *endpoint)
{
	char *body = NULL;
	size_t len;
	int status = 0, fd = connect_unix(sock);

	if (ctl_request(fd, "PUT", endpoint, &status, &body, &len) || status != 204) {
		fprintf(stderr, "pause: %s: status %d %s\n", endpoint, status, body ? body : "");
		exit(1);
	}
	free(body);
	close(fd);
}

/* QMP: one JSON object per line; skip events until the command's return. */
static FILE *qmp;

static void qmp_cmd(const char *cmd)
{
	char line[4096];

	fprintf(qmp, "{\"execute\": \"%s\"}\n", cmd);
	fflush(qmp);
	while (fgets(line, sizeof(line), qmp)) {
		struct json_object *j = json_tokener_parse(line), *v;
		int done = j && json_object_object_get_ex(j, "return", &v);
		int err = j && json_object_object_get_ex(j, "error", &v);

		json_object_put(j);
		if (err) {
			fprintf(stderr, "pause: QMP %s: %s", cmd, line);
			exit(1);
		}
		if (done)
			return;
	}
	fprintf(stderr, "pause: QMP %s: connection closed\n", cmd);
	exit(1);
}

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void report(const char *name, uint64_t *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp);
	printf("%s %llu %llu\n", name, (unsigned long long)(v[n / 2] / 1000),
	       (unsigned long long)(v[(n * 99 + 99) / 100 - 1] / 1000));
}

int main(int argc, char **argv)
{
	int cycles = argc > 3 ? atoi(argv[3]) : 100, gap_ms = argc > 4 ? atoi(argv[4]) : 50;
	bool is_qmp;
	uint64_t *p, *r;

	if (argc < 3 || (strcmp(argv[1], "--vmm") && strcmp(argv[1], "--qmp")) || cycles < 1 ||
	    gap_ms < 0) {
		fprintf(stderr, "usage: pause --vmm|--qmp SOCKET [CYCLES [GAP_MS]]\n");
		return 2;
	}
	is_qmp = !strcmp(argv[1], "--qmp");
	p = calloc((size_t)cycles, sizeof(*p));
	r = calloc((size_t)cycles, sizeof(*r));
	if (!p || !r)
		return 1;
	if (is_qmp) {
		char line[4096];

		qmp = fdopen(connect_unix(argv[2]), "r+");
		if (!qmp || !fgets(line, sizeof(line), qmp)) /* the greeting */
			return 1;
		qmp_cmd("qmp_capabilities");
	}
	for (int i = 0; i < cycles; i++) {
		uint64_t t0 = now_ns();

		if (is_qmp)
			qmp_cmd("stop");
		else
			vmm_op(argv[2], "/api/v1/vm.pause");
		p[i] = now_ns() - t0;
		usleep((useconds_t)gap_ms * 1000);
		t0 = now_ns();
		if (is_qmp)
			qmp_cmd("cont");
		else
			vmm_op(argv[2], "/api/v1/vm.resume");
		r[i] = now_ns() - t0;
		usleep((useconds_t)gap_ms * 1000);
	}
	report("pause", p, cycles);
	report("resume", r, cycles);
	free(p);
	free(r);
	return 0;
}
