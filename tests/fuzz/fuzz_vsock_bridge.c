/*
 * libFuzzer harness for the vsock bridge's handshake (devices/vsock/bridge.c):
 * the input is what a host client writes to the bridge socket. It is split
 * into lines the way the bridge takes them (up to the '\n', at most
 * VSOCK_BRIDGE_LINE_MAX bytes before it), and each line goes through
 * vsock_bridge_parse_connect(), whose verdict and port must match a second,
 * word-splitting reading of Firecracker's grammar: the first word "connect"
 * in any case, the second an optional '+' and decimal digits worth less than
 * 2^32, any further words ignored.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "devices/vsock/bridge.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* strchr finds the terminating NUL too: a NUL is not white space. */
static bool is_white(char c)
{
	return c && strchr(" \t\n\v\f\r", c);
}

/* The next word of line[*pos..len): its start and length (0 at the end). */
static size_t next_word(const char *line, size_t len, size_t *pos, const char **word)
{
	size_t i = *pos, n = 0;

	while (i < len && is_white(line[i]))
		i++;
	*word = line + i;
	while (i + n < len && !is_white(line[i + n]))
		n++;
	*pos = i + n;
	return n;
}

/* The oracle: 0 and *port for a good line, -1 for a bad one. */
static int oracle(const char *line, size_t len, uint32_t *port)
{
	const char *w;
	size_t pos = 0, n;
	uint64_t v = 0;

	n = next_word(line, len, &pos, &w);
	if (n != 7 || strncasecmp(w, "connect", 7) != 0 || memchr(w, '\0', n))
		return -1;
	n = next_word(line, len, &pos, &w);
	if (n && w[0] == '+') {
		w++;
		n--;
	}
	if (!n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (w[i] < '0' || w[i] > '9')
			return -1;
		if (v <= 0xffffffffull)
			v = v * 10 + (uint64_t)(w[i] - '0');
	}
	if (v > 0xffffffffull)
		return -1;
	*port = (uint32_t)v;
	return 0;
}

static void check_line(const char *line, size_t len)
{
	uint32_t port = 0xdeadbeef, want = 0;
	int r = vsock_bridge_parse_connect(line, len, &port);

	if ((r == 0) != (oracle(line, len, &want) == 0))
		abort();
	if (r == 0 && port != want)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char line[VSOCK_BRIDGE_LINE_MAX];
	size_t len = 0;

	/* The whole input as one line, whatever its bytes. */
	check_line((const char *)data, size);
	for (size_t i = 0; i < size; i++) {
		if (data[i] == '\n') {
			check_line(line, len);
			len = 0;
			continue;
		}
		if (len == sizeof(line)) {
			len = 0;  /* the bridge drops such a client; start over as a new one */
			continue;
		}
		line[len++] = (char)data[i];
	}
	return 0;
}
