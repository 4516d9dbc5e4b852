#include "vmm/api/ctl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <http_parser.h>
#include <json-c/json.h>

#include "vmm/api/routes.h"

#define CTL_TIMEOUT_S 30   /* a pause waits for in-flight I/O; generous */

static const struct {
	const char *cmd, *method, *endpoint, *done;
} commands[] = {
	{ "ping", "GET", "vmm.ping", NULL },
	{ "info", "GET", "vm.info", NULL },
	{ "counters", "GET", "vm.counters", NULL },
	{ "pause", "PUT", "vm.pause", "paused" },
	{ "resume", "PUT", "vm.resume", "resumed" },
	{ "power-button", "PUT", "vm.power-button", "power button pressed" },
	{ "shutdown", "PUT", "vm.shutdown", "shutting down" },
	{ "snapshot", "PUT", "vm.snapshot", "snapshot written" },  /* takes DIR */
};

#define CTL_SNAPSHOT_TIMEOUT_S 3600 /* writing guest RAM out: minutes for a big guest on a slow disk */

struct reply {
	char *body;
	size_t len;
	bool complete, too_big;
};

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct reply *r = p->data;
	char *nb;

	if (len > CTL_MAX_BODY - r->len) {
		r->too_big = true;
		return -1;
	}
	nb = realloc(r->body, r->len + len + 1);
	if (!nb)
		return -1;
	memcpy(nb + r->len, at, len);
	r->body = nb;
	r->len += len;
	r->body[r->len] = '\0';
	return 0;
}

static int on_complete(http_parser *p)
{
	struct reply *r = p->data;

	r->complete = true;
	return 0;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int ctl_request(int fd, const char *method, const char *path, int *status, char **body,
		size_t *body_len)
{
	return ctl_request_body(fd, method, path, NULL, status, body, body_len);
}

int ctl_request_body(int fd, const char *method, const char *path, const char *req_body, int *status,
		     char **body, size_t *body_len)
{
	size_t req_len = req_body ? strlen(req_body) : 0;
	http_parser_settings settings;
	struct reply r = { 0 };
	http_parser parser;
	char buf[4096];
	int n, ret;

	n = snprintf(buf, sizeof(buf),
		     "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n%s"
		     "Content-Length: %zu\r\nConnection: close\r\n\r\n", method, path,
		     req_len ? "Content-Type: application/json\r\n" : "", req_len);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return -EINVAL;
	ret = write_all(fd, buf, (size_t)n);
	if (!ret && req_len)
		ret = write_all(fd, req_body, req_len);
	if (ret)
		return ret;

	http_parser_settings_init(&settings);
	settings.on_body = on_body;
	settings.on_message_complete = on_complete;
	http_parser_init(&parser, HTTP_RESPONSE);
	parser.data = &r;
	while (!r.complete) {
		ssize_t got = recv(fd, buf, sizeof(buf), 0);
		size_t used;

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			ret = errno == EAGAIN ? -ETIMEDOUT : -errno;
			goto err;
		}
		/* got == 0 tells the parser the stream ended (a body read to EOF ends there). */
		used = http_parser_execute(&parser, &settings, buf, (size_t)got);
		if (parser.http_errno != HPE_OK || used != (size_t)got) {
			ret = r.too_big ? -EMSGSIZE : -EPROTO;
			goto err;
		}
		if (got == 0)
			break;
	}
	/* http-parser takes any number for a status; an HTTP one has three digits. */
	if (!r.complete || parser.status_code < 100 || parser.status_code > 599) {
		ret = -EPROTO;
		goto err;
	}
	*status = (int)parser.status_code;
	*body = r.body;
	*body_len = r.len;
	return 0;

err:
	free(r.body);
	return ret;
}

static int ctl_connect(const char *path, int timeout_s, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { timeout_s, 0 };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "--api-socket %s: path longer than %zu bytes", path,
			 sizeof(sa.sun_path) - 1);
		return -1;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		snprintf(err, errlen, "--api-socket %s: %s%s", path, strerror(errno),
			 errno == ENOENT || errno == ECONNREFUSED ? " (is vmm running with --api-socket?)" : "");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* JSON null (a NULL object) prints as "null", never as a NULL string. */
static const char *str(struct json_object *v)
{
	const char *s = v ? json_object_get_string(v) : NULL;

	return s ? s : "null";
}

static const char *get_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? str(v) : "?";
}

static struct json_object *get(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static void print_info(struct json_object *j)
{
	struct json_object *cfg = get(j, "config"), *devs;
	int64_t mem = json_object_get_int64(get(get(cfg, "memory"), "size"));

	printf("state:     %s\n", get_str(j, "state"));
	printf("vCPUs:     %" PRId64 "\n", json_object_get_int64(get(get(cfg, "cpus"), "boot_vcpus")));
	printf("memory:    %" PRId64 " MiB (%s)\n", mem / (1024 * 1024), get_str(get(cfg, "memory"), "backing"));
	printf("kernel:    %s\n", get_str(get(cfg, "payload"), "kernel"));
	printf("initramfs: %s\n", get_str(get(cfg, "payload"), "initramfs"));
	printf("cmdline:   %s\n", get_str(get(cfg, "payload"), "cmdline"));
	devs = get(cfg, "devices");
	for (size_t i = 0; json_object_is_type(devs, json_type_array) && i < json_object_array_length(devs); i++) {
		struct json_object *d = json_object_array_get_idx(devs, i);

		printf("device:    %-8s %s\n", get_str(d, "id"), get_str(d, "options"));
	}
}

/* A counter: null is one this process cannot see (vhost-user's kicks and calls). */
static const char *counter(struct json_object *v)
{
	return v ? str(v) : "n/a";
}

/* "queues": one line per queue, its counters by name. */
static void print_queues(struct json_object *queues)
{
	for (size_t i = 0; i < json_object_array_length(queues); i++) {
		struct json_object *q = json_object_array_get_idx(queues, i);

		printf("  queue %zu:", i);
		if (json_object_is_type(q, json_type_object)) {
			json_object_object_foreach(q, name, v)
				printf(" %s=%s", name, counter(v));
		} else {
			printf(" %s", counter(q));
		}
		printf("\n");
	}
}

/*
 * One line of named counters per device, then its queues and its interrupts
 * per MSI-X vector. The reply is the server's: anything not shaped as
 * expected is printed as it came.
 */
static void print_counters(struct json_object *j)
{
	if (!json_object_is_type(j, json_type_object)) {
		printf("%s\n", str(j));
		return;
	}
	if (json_object_object_length(j) == 0)
		printf("no virtio devices\n");
	json_object_object_foreach(j, dev, counters) {
		struct json_object *queues = NULL, *vectors = NULL;
		bool has_vectors = false;

		printf("%s:", dev);
		if (json_object_is_type(counters, json_type_object)) {
			json_object_object_foreach(counters, name, v) {
				if (!strcmp(name, "queues") && json_object_is_type(v, json_type_array)) {
					queues = v;
				} else if (!strcmp(name, "interrupts") &&
					   (!v || json_object_is_type(v, json_type_array))) {
					vectors = v;
					has_vectors = true;
				} else {
					printf(" %s=%s", name, counter(v));
				}
			}
		} else {
			printf(" %s", str(counters));
		}
		printf("\n");
		if (queues)
			print_queues(queues);
		if (has_vectors && !vectors) {
			printf("  interrupts per vector: n/a (the vhost-user back-end signals them)\n");
		} else if (has_vectors) {
			printf("  interrupts per vector:");
			for (size_t i = 0; i < json_object_array_length(vectors); i++)
				printf(" %zu=%s", i, counter(json_object_array_get_idx(vectors, i)));
			printf("\n");
		}
	}
}

/* The body of vm.snapshot for DIR: {"destination_url": "file:///absolute/DIR"}. 0, or 2 (printed). */
static int snapshot_request(const char *dir, char **req)
{
	struct json_object *o;
	char *abs = NULL, *url;
	int ret = 2;

	if (!dir || !*dir) {
		fprintf(stderr, "vmm ctl: snapshot needs a directory: vmm ctl --api-socket PATH snapshot DIR\n");
		return 2;
	}
	/* The server's working directory is not ours: send an absolute path. */
	if (dir[0] != '/') {
		char *cwd = getcwd(NULL, 0);

		if (!cwd || asprintf(&abs, "%s/%s", cwd, dir) < 0)
			abs = NULL;
		free(cwd);
		if (!abs) {
			fprintf(stderr, "vmm ctl: snapshot %s: cannot make it an absolute path\n", dir);
			return 2;
		}
		dir = abs;
	}
	o = json_object_new_object();
	if (o && asprintf(&url, "file://%s", dir) >= 0) {
		json_object_object_add(o, "destination_url", json_object_new_string(url));
		free(url);
		*req = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		ret = *req ? 0 : 2;
	}
	if (ret)
		fprintf(stderr, "vmm ctl: out of memory\n");
	json_object_put(o);
	free(abs);
	return ret;
}

static int usage(FILE *f, int status)
{
	fprintf(f, "usage: vmm ctl --api-socket PATH [--json] COMMAND\n\ncommands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(f, "  %-14s %s /api/v1/%s\n", strcmp(commands[i].cmd, "snapshot") ?
			commands[i].cmd : "snapshot DIR", commands[i].method, commands[i].endpoint);
	fprintf(f, "\nsnapshot DIR writes the paused VM into DIR (vmm --restore source_url=file:///DIR).\n");
	fprintf(f, "\nExit status: 0, 1 with the server's error, 2 for a bad command line.\n");
	return status;
}

int ctl_main(int argc, char **argv)
{
	const char *sock = NULL, *cmd = NULL, *arg = NULL;
	bool json = false;
	size_t ci, body_len = 0;
	char err[256], path[64], *body = NULL, *req = NULL;
	struct json_object *j = NULL;
	int fd, status, ret;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			return usage(stdout, 0);
		if (!strcmp(a, "--json")) {
			json = true;
		} else if (!strcmp(a, "--api-socket")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "vmm ctl: --api-socket needs a value: --api-socket PATH\n");
				return 2;
			}
			sock = argv[++i];
		} else if (!strncmp(a, "--api-socket=", 13)) {
			sock = a + 13;
		} else if (a[0] == '-') {
			fprintf(stderr, "vmm ctl: unknown option '%s'; see vmm ctl --help\n", a);
			return 2;
		} else if (cmd && !strcmp(cmd, "snapshot") && !arg) {
			arg = a;
		} else if (cmd) {
			fprintf(stderr, "vmm ctl: one command at a time ('%s', then '%s')\n", cmd, a);
			return 2;
		} else {
			cmd = a;
		}
	}
	if (!sock || !*sock) {
		fprintf(stderr, "vmm ctl: --api-socket PATH is required (the path given to vmm --api-socket)\n");
		return 2;
	}
	if (!cmd) {
		fprintf(stderr, "vmm ctl: no command; one of ping, info, counters, pause, resume, power-button, shutdown, snapshot\n");
		return 2;
	}
	for (ci = 0; ci < ARRAY_SIZE(commands) && strcmp(commands[ci].cmd, cmd); ci++)
		;
	if (ci == ARRAY_SIZE(commands)) {
		fprintf(stderr, "vmm ctl: unknown command '%s'; one of ping, info, counters, pause, resume, "
			"power-button, shutdown, snapshot\n", cmd);
		return 2;
	}
	if (!strcmp(cmd, "snapshot")) {
		ret = snapshot_request(arg, &req);
		if (ret)
			return ret;
	}

	fd = ctl_connect(sock, req ? CTL_SNAPSHOT_TIMEOUT_S : CTL_TIMEOUT_S, err, sizeof(err));
	if (fd < 0) {
		fprintf(stderr, "vmm ctl: %s\n", err);
		free(req);
		return 1;
	}
	snprintf(path, sizeof(path), API_PREFIX "%s", commands[ci].endpoint);
	ret = ctl_request_body(fd, commands[ci].method, path, req, &status, &body, &body_len);
	close(fd);
	free(req);
	if (ret) {
		fprintf(stderr, "vmm ctl: --api-socket %s: %s %s: %s\n", sock, commands[ci].method, path,
			ret == -EPROTO ? "not an HTTP response from vmm" : strerror(-ret));
		return 1;
	}
	if (body_len)
		j = json_tokener_parse(body);
	if (status >= 300) {
		struct json_object *e = j ? get(j, "error") : NULL;

		fprintf(stderr, "vmm ctl: %s: %d %s\n", cmd, status,
			e ? str(e) : "(no error message)");
		ret = 1;
	} else if (json) {
		printf("%s\n", body_len ? body : "{}");
	} else if (commands[ci].done) {
		printf("%s\n", commands[ci].done);
	} else if (!j) {
		fprintf(stderr, "vmm ctl: %s: the server's reply is not JSON\n", cmd);
		ret = 1;
	} else if (!strcmp(cmd, "ping")) {
		printf("vmm %s (pid %s)\n", get_str(j, "version"), get_str(j, "pid"));
	} else if (!strcmp(cmd, "info")) {
		print_info(j);
	} else {
		print_counters(j);
	}
	json_object_put(j);
	free(body);
	return ret;
}
