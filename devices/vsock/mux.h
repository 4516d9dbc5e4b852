/*
 * The vsock multiplexer: every connection of one device, keyed by
 * (local port, guest port); the queue of packets waiting for receive
 * buffers; the stream ends on the host side; listeners and connect requests.
 *
 * Threads: everything below runs on the VM's event-loop thread, except
 * vsock_mux_create/destroy and the transport hooks (reset, activate,
 * pause, resume, load: called while the loop does not touch the device),
 * and vsock_mux_connect_async (any thread: it queues a request and wakes
 * the loop). The public API (vsock.h) sits on top.
 */
#ifndef DEVICES_VSOCK_MUX_H
#define DEVICES_VSOCK_MUX_H

#include <stdbool.h>
#include <stdint.h>

#include "channel/evloop.h"
#include "channel/stream.h"
#include "devices/vsock/vsock.h"
#include "virtio/virtio_dev.h"

/* Called on the loop thread when a connect request ends: 0 and the local
 * (host) port, or a negative errno; the device end was consumed either way. */
typedef void vsock_connect_done_fn(void *opaque, int result, uint32_t local_port);

/*
 * A guest connected to CID 2 port `port` and no in-process listener has it:
 * return 0 and a non-blocking device-side end to bridge it to, or a negative
 * errno to refuse (RST). Loop thread.
 */
typedef int vsock_guest_connect_fn(void *opaque, uint32_t port, enum vsock_type type,
				   struct stream_end **dev_end);

__attribute__((warn_unused_result))
int vsock_mux_create(struct virtio_dev *vdev, struct evloop *loop, uint64_t guest_cid,
		     struct vsock_dev **out);
void vsock_mux_destroy(struct vsock_dev *dev);

void vsock_mux_set_fallback(struct vsock_dev *dev, vsock_guest_connect_fn *fn, void *opaque);

/*
 * Connect to guest port `port` using dev_end (non-blocking, the device's
 * side; its framing must match type). done runs later on the loop thread.
 * Returns 0 (queued) or -ENOMEM; on error dev_end is not consumed.
 */
__attribute__((warn_unused_result))
int vsock_mux_connect_async(struct vsock_dev *dev, uint32_t port, enum vsock_type type,
			    struct stream_end *dev_end, int timeout_ms,
			    vsock_connect_done_fn *done, void *opaque);

/* Transport hooks. */
void vsock_mux_reset(struct vsock_dev *dev);
int vsock_mux_activate(struct vsock_dev *dev);
void vsock_mux_queue_notify(struct vsock_dev *dev, unsigned q);
int vsock_mux_pause(struct vsock_dev *dev);
int vsock_mux_resume(struct vsock_dev *dev);
/* After a snapshot restore: forget every connection and tell the guest
 * (VIRTIO_VSOCK_EVENT_TRANSPORT_RESET) once the queues run again. */
void vsock_mux_transport_reset(struct vsock_dev *dev);

uint64_t vsock_mux_guest_cid(const struct vsock_dev *dev);
struct evloop *vsock_mux_loop(const struct vsock_dev *dev);

/* For tests: connections open, and packets answered with a RST or dropped. */
struct vsock_mux_stats {
	unsigned conns;
	uint64_t rst_sent, dropped, protocol_resets;
};
void vsock_mux_get_stats(const struct vsock_dev *dev, struct vsock_mux_stats *st);

#endif
