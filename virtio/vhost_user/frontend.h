/*
 * The front-end side of one vhost-user connection: negotiation, the memory
 * table, starting and stopping rings, config space, device state transfer,
 * and the back-end request channel. It knows nothing of PCI or of the VM:
 * it is given host addresses and fds, and talks over a connected stream
 * socket, so the unit test drives it against a fake back-end on a socketpair.
 *
 * Every reply is untrusted and bounded in time: a reply that is malformed
 * (see msg.h), carries the wrong fds, or does not come within timeout_ms
 * puts the connection in the failed state with one log line naming the
 * request and what was wrong; from then on every call returns -EIO at once
 * and the caller decides (reconnect, or DEVICE_NEEDS_RESET). A back-end that
 * closed the socket gives -ECONNRESET. No call ever leaks an fd it received.
 *
 * Not thread-safe: one caller at a time (the device layer holds its lock).
 */
#ifndef VIRTIO_VHOST_USER_FRONTEND_H
#define VIRTIO_VHOST_USER_FRONTEND_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio/vhost_user/msg.h"
#include "vmm/util.h"

#define VHU_DEFAULT_TIMEOUT_MS 5000

/* One guest memory region as the back-end must map it. */
struct vhu_fe_region {
	uint64_t gpa, size;
	uint64_t hva;          /* our mapping */
	int fd;                /* the memfd it lives in */
	uint64_t fd_offset;    /* where it starts in fd */
};

/* What a ring needs to run in the back-end. */
struct vhu_ring_cfg {
	uint16_t size;
	uint16_t base;         /* the next available index the back-end processes */
	uint64_t desc, avail, used;  /* host virtual addresses */
	int kick_fd;           /* the ioeventfd */
	int call_fd;           /* the irqfd (or an eventfd the VMM forwards) */
	int err_fd;            /* -1: none */
};

struct vhu_fe {
	char name[48];
	int sock;                   /* connected stream socket; -1 when closed */
	int backend_req_fd;         /* our end of the back-end request channel; -1 */
	int timeout_ms;
	bool failed;                /* a reply was bad or late: the stream is out of step */
	bool quiet_refusals;        /* a request the back-end refuses is not logged (probing) */
	uint64_t backend_features;  /* GET_FEATURES */
	uint64_t protocol_features; /* negotiated (both sides) */
	unsigned queue_num;         /* GET_QUEUE_NUM with MQ, else 0 */
	unsigned max_mem_slots;     /* GET_MAX_MEM_SLOTS with CONFIGURE_MEM_SLOTS, else 0 */
	uint64_t acked_features;    /* last SET_FEATURES */
	bool features_sent;
	/* The table the back-end has (to skip resending, and for REM_MEM_REG). */
	unsigned nr_sent_regions;
	bool mem_sent;
	struct vhu_fe_region sent_regions[VHU_MAX_MEM_REGIONS];
	/* Counters for the tests and --verbose. */
	unsigned nr_requests;
};

/* Take ownership of a connected socket (closed by vhu_fe_close). */
void vhu_fe_init(struct vhu_fe *fe, const char *name, int sock, int timeout_ms);
/* Close the socket and the back-end channel; the struct can be init'ed again. */
void vhu_fe_close(struct vhu_fe *fe);

/* Connect to a listening back-end: a stream socket or -errno (nobody listening: -ECONNREFUSED). */
int vhu_connect(const char *path) WUR;

static inline bool vhu_fe_has_protocol(const struct vhu_fe *fe, unsigned bit)
{
	return (fe->protocol_features >> bit) & 1;
}

/*
 * The set-up of a new connection: GET_FEATURES, GET_PROTOCOL_FEATURES and
 * SET_PROTOCOL_FEATURES (ours & theirs & want_protocol) when the back-end
 * offers VHOST_USER_F_PROTOCOL_FEATURES, SET_OWNER, GET_QUEUE_NUM (MQ),
 * GET_MAX_MEM_SLOTS (CONFIGURE_MEM_SLOTS), SET_BACKEND_REQ_FD (BACKEND_REQ).
 */
int vhu_fe_negotiate(struct vhu_fe *fe, uint64_t want_protocol) WUR;

/* SET_FEATURES: virtio features, plus VHOST_USER_F_PROTOCOL_FEATURES when offered. */
int vhu_fe_set_features(struct vhu_fe *fe, uint64_t features) WUR;

/*
 * Give the back-end guest memory: SET_MEM_TABLE, or REM/ADD_MEM_REG with
 * CONFIGURE_MEM_SLOTS. The same table again is not resent.
 */
int vhu_fe_set_mem_table(struct vhu_fe *fe, const struct vhu_fe_region *r, unsigned n) WUR;

/* NUM, ADDR, BASE, KICK, CALL, ERR, then ENABLE when protocol features are on. */
int vhu_fe_ring_start(struct vhu_fe *fe, unsigned q, const struct vhu_ring_cfg *cfg) WUR;
/* ENABLE 0 (protocol features on), then GET_VRING_BASE: the ring stops, *base is where. */
int vhu_fe_ring_stop(struct vhu_fe *fe, unsigned q, uint16_t *base) WUR;
/* SET_VRING_CALL alone (the driver moved the ring's vector). */
int vhu_fe_ring_set_call(struct vhu_fe *fe, unsigned q, int call_fd) WUR;

/* RESET_DEVICE; -EOPNOTSUPP when the back-end did not offer it. */
int vhu_fe_reset_device(struct vhu_fe *fe) WUR;

/* Device config space, with CONFIG negotiated (-EOPNOTSUPP otherwise). */
int vhu_fe_get_config(struct vhu_fe *fe, uint32_t off, void *buf, uint32_t len) WUR;
int vhu_fe_set_config(struct vhu_fe *fe, uint32_t off, const void *buf, uint32_t len) WUR;

/*
 * DEVICE_STATE (snapshots): hand the back-end fd for direction 0 (save) or 1
 * (load), phase 0 (stopped). *reply_fd is an fd the back-end wants used
 * instead, or -1. Then, after the transfer, CHECK_DEVICE_STATE.
 */
int vhu_fe_set_device_state_fd(struct vhu_fe *fe, uint32_t direction, int fd,
			       int *reply_fd) WUR;
int vhu_fe_check_device_state(struct vhu_fe *fe) WUR;

/*
 * One message from the back-end request channel (call when backend_req_fd
 * is readable): validates it, answers when asked. 0 and *request set, or
 * -ECONNRESET when the back-end closed the channel, or another -errno for a
 * bad message (logged; the channel is closed).
 */
int vhu_fe_backend_req(struct vhu_fe *fe, uint32_t *request) WUR;

#endif
