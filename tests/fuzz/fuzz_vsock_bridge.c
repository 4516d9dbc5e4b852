/*
 * libFuzzer harness for the vsock bridge's handshake (devices/vsock/bridge.c):
 * the input is what a host client writes to the bridge socket. It is split
 * into lines the way the bridge takes them (up to the '\n', at most
 * VSOCK_BRIDGE_LINE_MAX bytes before it), and each line goes through
 * vsock_bridge_parse_connect(). An accepted line must be exactly
 * "CONNECT " + 1..10 decimal digits (+ optional '\r') naming a port below
 * 2^32, and the port must be the number those digits spell.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/vsock/bridge.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_line(const char *line, size_t len)
{
	uint32_t port = 0xdeadbeef;
	size_t body = len, digits;
	uint64_t v = 0;

	if (vsock_bridge_parse_connect(line, len, &port) < 0)
		return;
	if (body && line[body - 1] == '\r')
		body--;
	if (body < 9 || memcmp(line, "CONNECT ", 8))
		abort();
	digits = body - 8;
	if (digits < 1 || digits > 10)
		abort();
	for (size_t i = 8; i < body; i++) {
		if (line[i] < '0' || line[i] > '9')
			abort();
		v = v * 10 + (uint64_t)(line[i] - '0');
	}
	if (v > 0xffffffffull || v != port)
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
