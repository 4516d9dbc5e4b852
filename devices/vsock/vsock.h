/*
 * virtio-vsock, in process: the guest's AF_VSOCK sockets end in stream
 * channels (channel/stream.h) inside the VMM. `--vsock cid=N,socket=PATH`
 * also puts a Unix socket bridge on PATH (devices/vsock/bridge.h).
 *
 * The in-process API, for code inside the VMM (any thread but the VM's
 * event-loop thread for the blocking calls):
 *
 *   vsock_connect(dev, port, &end)   connects to a guest listener on port.
 *        0: *end is a byte-stream end in blocking mode, connected.
 *        -ECONNREFUSED: the guest answered with RST (nothing listens there).
 *        -ETIMEDOUT: the guest did not answer within the connect timeout.
 *        -ENETDOWN: the guest's driver is not running (no socket can listen).
 *        -ECONNRESET: the device was reset while connecting.
 *        -EDEADLK: called on the event-loop thread (use the bridge's way).
 *   vsock_listen(dev, port, type, &l) takes connections the guest makes to
 *        CID 2 port `port`. A connection the guest makes is established at
 *        once (like a kernel backlog) and queued on the listener; the
 *        listener's notifier (vsock_listener_fd, pollable, one count per
 *        queued connection) says so; vsock_accept() takes one without
 *        blocking (-EAGAIN when none is queued).
 *
 * The ends behave as stream ends do (blocking or not, per end, switchable
 * with stream_set_blocking; read timeouts with stream_set_timeouts give
 * -ETIMEDOUT). Closing:
 *   - the host closes its end: the guest sees SHUTDOWN (its reads return
 *     0 after the data already sent), then the device resets the connection.
 *     A host end that only stops writing (shutdown(SHUT_WR) on a bridge
 *     socket) sends SHUTDOWN(SEND): a half-close, the guest may still send.
 *   - the guest closes (SHUTDOWN both ways): the host reader gets every
 *     byte the guest sent, then end-of-file (read returns 0).
 *   - the guest resets (RST), or breaks the protocol and the device resets
 *     the connection: host writes fail with -EPIPE; host reads fail with
 *     -ECONNRESET if the host had written data the guest never took, and
 *     return end-of-file otherwise (AF_UNIX stream pairs can only mark a
 *     close as abortive that way; see docs/vsock.md).
 * A host end that stops reading pushes back on its own connection only:
 * the device holds at most buf_alloc (256 KiB) of guest data per connection
 * and the guest's credit stops there.
 *
 * SEQPACKET (VIRTIO_VSOCK_F_SEQPACKET): ends are STREAM_MESSAGE channels;
 * one guest message (up to EOM) is one message on the end and back, at most
 * VSOCK_MAX_MSG bytes (a longer one from the guest resets the connection).
 */
#ifndef DEVICES_VSOCK_VSOCK_H
#define DEVICES_VSOCK_VSOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "channel/stream.h"
#include "virtio/virtio_dev.h"

#define VSOCK_MAX_MSG       (64u * 1024u)
#define VSOCK_BUF_ALLOC     (256u * 1024u)
#define VSOCK_CONNECT_MS    5000
#define VSOCK_MAX_CONNS     1024u
#define VSOCK_LISTEN_BACKLOG 128u

enum vsock_type {
	VSOCK_STREAM = 1,      /* = VIRTIO_VSOCK_TYPE_STREAM */
	VSOCK_SEQPACKET = 2,   /* = VIRTIO_VSOCK_TYPE_SEQPACKET */
};

struct vsock_dev;
struct vsock_listener;
struct snap_desc;

extern const struct virtio_dev_kind virtio_vsock_kind;
/* The device's snapshot node (the guest CID), for the snapshot tests. */
extern const struct snap_desc virtio_vsock_snap_desc;

/* The vsock device behind vdev, or NULL when vdev is not one. */
struct vsock_dev *vsock_of(struct virtio_dev *vdev);

__attribute__((warn_unused_result))
int vsock_connect(struct vsock_dev *dev, uint32_t port, struct stream_end **out);

/* vsock_connect with a socket type, a mode for the returned end and a
 * connect timeout in ms (0: VSOCK_CONNECT_MS). */
__attribute__((warn_unused_result))
int vsock_connect_ex(struct vsock_dev *dev, uint32_t port, enum vsock_type type,
		     enum stream_blocking mode, int timeout_ms, struct stream_end **out);

/* Listen on CID 2 port `port` for connections of `type`. -EADDRINUSE if
 * another listener has the port. */
__attribute__((warn_unused_result))
int vsock_listen(struct vsock_dev *dev, uint32_t port, enum vsock_type type,
		 struct vsock_listener **out);

/* Pollable (readable while connections are queued); owned by the listener. */
int vsock_listener_fd(const struct vsock_listener *l);

/* Take one queued connection: 0 and *out (in `mode`), *peer_port (the
 * guest's port, may be NULL), or -EAGAIN. Never blocks. */
__attribute__((warn_unused_result))
int vsock_accept(struct vsock_listener *l, enum stream_blocking mode, struct stream_end **out,
		 uint32_t *peer_port);

/* Stop listening; queued connections are closed (the guest sees them shut
 * down). Close every listener before the device is destroyed. */
void vsock_listener_close(struct vsock_listener *l);

#endif
