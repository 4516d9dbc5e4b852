/*
 * One vsock connection: its state machine and credit accounting
 * (virtio 1.2, 5.10.6.3 and 5.10.6.6). Pure: the mux does the I/O and asks
 * this module what a packet means and what to send next.
 *
 * Counters are 32-bit and wrap (the spec's arithmetic is modulo 2^32):
 *   rx_cnt        payload bytes the guest sent us;
 *   fwd_cnt       of those, bytes handed on to the host end (advertised as fwd_cnt);
 *   fwd_cnt_sent  the fwd_cnt the guest last saw from us;
 *   tx_cnt        payload bytes we sent the guest;
 *   peer_fwd_cnt, peer_buf_alloc: the guest's view of its receive buffer.
 * The guest may have at most buf_alloc bytes in flight towards us
 * (rx_cnt - fwd_cnt <= buf_alloc, else it broke the protocol and the
 * connection is reset); we send at most peer_buf_alloc - (tx_cnt - peer_fwd_cnt).
 */
#ifndef DEVICES_VSOCK_CONN_H
#define DEVICES_VSOCK_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/vsock/packet.h"

enum vsock_conn_state {
	VSOCK_CONN_CONNECTING,   /* host-initiated: REQUEST queued or sent, waiting for RESPONSE */
	VSOCK_CONN_ESTABLISHED,
	VSOCK_CONN_CLOSING,      /* we sent SHUTDOWN(RCV|SEND): waiting for the guest's RST */
	VSOCK_CONN_CLOSED,       /* forget it (a RST was received, or queued to go out last) */
};

/* Control packets waiting for a receive buffer (bits of vsock_conn.ctl). */
#define VSOCK_CTL_REQUEST        (1u << 0)
#define VSOCK_CTL_RESPONSE       (1u << 1)
#define VSOCK_CTL_SHUTDOWN       (1u << 2)
#define VSOCK_CTL_CREDIT_UPDATE  (1u << 3)
#define VSOCK_CTL_CREDIT_REQUEST (1u << 4)
#define VSOCK_CTL_RST            (1u << 5)  /* last: the connection is gone once it is out */

struct vsock_conn {
	uint64_t guest_cid;
	uint32_t local_port;     /* ours (the host's) */
	uint32_t peer_port;      /* the guest's */
	uint16_t type;           /* VIRTIO_VSOCK_TYPE_* */
	enum vsock_conn_state state;
	unsigned ctl;            /* VSOCK_CTL_* pending */

	uint32_t buf_alloc;
	uint32_t rx_cnt, fwd_cnt, fwd_cnt_sent;
	uint32_t tx_cnt;
	uint32_t peer_buf_alloc, peer_fwd_cnt;

	uint32_t peer_shut;      /* SHUTDOWN flags the guest sent (cumulative) */
	uint32_t local_shut;     /* SHUTDOWN flags we queued (cumulative) */
	bool credit_requested;   /* a CREDIT_REQUEST went out and no update came back yet */
};

/* What a guest packet means for the connection it names. */
enum vsock_conn_event {
	VSOCK_EV_NONE,           /* counters updated, nothing else to do */
	VSOCK_EV_ESTABLISHED,    /* our REQUEST was accepted */
	VSOCK_EV_DATA,           /* RW payload accepted: forward pkt->len bytes to the host end */
	VSOCK_EV_SHUTDOWN,       /* peer_shut gained flags */
	VSOCK_EV_CREDIT,         /* the guest granted more credit: data may flow again */
	VSOCK_EV_RESET,          /* protocol violation: RST queued, close the host end */
	VSOCK_EV_CLOSED,         /* the guest sent RST (or refused us): forget the connection */
};

/* A connection the guest asked for (its REQUEST is pkt): ESTABLISHED, RESPONSE queued. */
void vsock_conn_init_accept(struct vsock_conn *c, const struct vsock_pkt *req, uint32_t buf_alloc);
/* A connection we ask for: CONNECTING, REQUEST queued. */
void vsock_conn_init_connect(struct vsock_conn *c, uint64_t guest_cid, uint32_t local_port,
			     uint32_t peer_port, uint16_t type, uint32_t buf_alloc);

/* Apply a validated guest packet addressed to this connection. *why is set for RESET. */
enum vsock_conn_event vsock_conn_recv(struct vsock_conn *c, const struct vsock_pkt *p,
				      const char **why);

/* Bytes we may send the guest now (0 when it has no room, or may not receive). */
uint32_t vsock_conn_peer_credit(const struct vsock_conn *c);
/* Guest payload we hold that the host end has not taken yet. */
static inline uint32_t vsock_conn_rx_pending(const struct vsock_conn *c)
{
	return c->rx_cnt - c->fwd_cnt;
}
/* n bytes of guest payload reached the host end; may queue a CREDIT_UPDATE. */
void vsock_conn_forwarded(struct vsock_conn *c, uint32_t n);
/* No credit and data waiting: ask the guest once (CREDIT_REQUEST). */
void vsock_conn_want_credit(struct vsock_conn *c);

/* The host end shut down: flags VIRTIO_VSOCK_SHUTDOWN_*; queues a SHUTDOWN if they are new. */
void vsock_conn_host_shutdown(struct vsock_conn *c, uint32_t flags);
/* Reset from our side: RST queued, CLOSED. */
void vsock_conn_reset(struct vsock_conn *c);

/* The next control op to send (VIRTIO_VSOCK_OP_*), or 0 when none is pending. */
uint16_t vsock_conn_next_ctl(const struct vsock_conn *c);
/*
 * Fill a header from the host for op with len payload bytes (RW) and flags;
 * advertises buf_alloc and fwd_cnt, counts len into tx_cnt and clears the
 * control bit op stands for.
 */
void vsock_conn_build(struct vsock_conn *c, uint16_t op, uint32_t len, uint32_t flags,
		      struct vsock_pkt *out);

#endif
