/*
 * The Unix socket bridge of --vsock socket=PATH[,type=seqpacket], compatible
 * with Firecracker's hybrid vsock:
 *   host -> guest: connect to PATH, write "CONNECT <port>\n", read
 *     "OK <host_port>\n", then the socket is a byte stream to the guest's
 *     listener on <port> (closed at once if nothing listens there). With
 *     type=seqpacket PATH is a SOCK_SEQPACKET socket: the command is the
 *     client's first message (its newline optional), "OK <host_port>\n" one
 *     message back, and every message after it one SEQPACKET message to the
 *     guest's listener, boundaries kept both ways (closed at once if the
 *     guest's driver did not accept VIRTIO_VSOCK_F_SEQPACKET);
 *   guest -> host: a guest connection to CID 2 port P is bridged to the
 *     Unix socket PATH_P (SOCK_STREAM, or SOCK_SEQPACKET for a SEQPACKET
 *     connection); RST when nothing accepts there.
 * After the handshake the client's socket itself becomes the connection's
 * host end (no copy in between). Hostile clients cost only their own
 * connection: a line longer than VSOCK_BRIDGE_LINE_MAX, anything but the
 * command (vsock_bridge_parse_connect), a client that stays silent or half-writes for
 * VSOCK_BRIDGE_HANDSHAKE_MS, more than VSOCK_BRIDGE_MAX_PENDING handshakes
 * at once: each closes that client only. Runs on the VM's event loop.
 */
#ifndef DEVICES_VSOCK_BRIDGE_H
#define DEVICES_VSOCK_BRIDGE_H

#include <stddef.h>
#include <stdint.h>

#include "devices/vsock/vsock.h"

#define VSOCK_BRIDGE_LINE_MAX      32u
#define VSOCK_BRIDGE_HANDSHAKE_MS  5000
#define VSOCK_BRIDGE_MAX_PENDING   256u

struct vsock_bridge;

/*
 * Parse one handshake line (without its '\n'), taking what Firecracker takes:
 * words split on white space, the first "connect" in any case, the second a
 * decimal port below 2^32 (an optional '+', leading zeros allowed), any
 * further words ignored. Returns 0 and *port, or -EINVAL. Pure (fuzzed).
 */
int vsock_bridge_parse_connect(const char *line, size_t len, uint32_t *port);

/*
 * Check PATH (and PATH_<port> room) and bind it as a socket of type's kind
 * (VSOCK_STREAM or VSOCK_SEQPACKET). A socket already there is reused only
 * when a connect to it is refused (left over from an earlier run). err gets
 * one line on failure.
 */
__attribute__((warn_unused_result))
int vsock_bridge_create(struct vsock_dev *dev, const char *path, enum vsock_type type,
			struct vsock_bridge **out, char *err, size_t errlen);
/* After vsock_mux_destroy() (which answers the handshakes still waiting on the guest). */
void vsock_bridge_destroy(struct vsock_bridge *b);

#endif
