/* One vsock connection's state machine and credit. See conn.h. */
#include "devices/vsock/conn.h"

#include <string.h>

void vsock_conn_init_accept(struct vsock_conn *c, const struct vsock_pkt *req, uint32_t buf_alloc)
{
	memset(c, 0, sizeof(*c));
	c->guest_cid = req->src_cid;
	c->local_port = req->dst_port;
	c->peer_port = req->src_port;
	c->type = req->type;
	c->state = VSOCK_CONN_ESTABLISHED;
	c->ctl = VSOCK_CTL_RESPONSE;
	c->buf_alloc = buf_alloc;
	c->peer_buf_alloc = req->buf_alloc;
	c->peer_fwd_cnt = req->fwd_cnt;
}

void vsock_conn_init_connect(struct vsock_conn *c, uint64_t guest_cid, uint32_t local_port,
			     uint32_t peer_port, uint16_t type, uint32_t buf_alloc)
{
	memset(c, 0, sizeof(*c));
	c->guest_cid = guest_cid;
	c->local_port = local_port;
	c->peer_port = peer_port;
	c->type = type;
	c->state = VSOCK_CONN_CONNECTING;
	c->ctl = VSOCK_CTL_REQUEST;
	c->buf_alloc = buf_alloc;
}

void vsock_conn_reset(struct vsock_conn *c)
{
	c->ctl = VSOCK_CTL_RST;
	c->state = VSOCK_CONN_CLOSED;
}

static enum vsock_conn_event violation(struct vsock_conn *c, const char **why, const char *reason)
{
	*why = reason;
	vsock_conn_reset(c);
	return VSOCK_EV_RESET;
}

enum vsock_conn_event vsock_conn_recv(struct vsock_conn *c, const struct vsock_pkt *p,
				      const char **why)
{
	uint32_t fresh;

	*why = NULL;
	if (p->op == VIRTIO_VSOCK_OP_RST) {
		c->ctl = 0;
		c->state = VSOCK_CONN_CLOSED;
		return VSOCK_EV_CLOSED;
	}
	if (c->state == VSOCK_CONN_CLOSED)
		return VSOCK_EV_NONE;  /* our RST is on its way; the guest has not seen it yet */
	if (p->type != c->type)
		return violation(c, why, "socket type differs from the connection's");
	/* Every packet carries the guest's receive-buffer view (5.10.6.3). */
	c->peer_buf_alloc = p->buf_alloc;
	c->peer_fwd_cnt = p->fwd_cnt;
	/* Ask again only once the credit has been seen above zero: no REQUEST/UPDATE ping-pong. */
	if (vsock_conn_peer_credit(c) > 0)
		c->credit_requested = false;

	switch (p->op) {
	case VIRTIO_VSOCK_OP_REQUEST:
		return violation(c, why, "REQUEST on an open connection");
	case VIRTIO_VSOCK_OP_RESPONSE:
		if (c->state != VSOCK_CONN_CONNECTING)
			return violation(c, why, "RESPONSE to no REQUEST");
		c->state = VSOCK_CONN_ESTABLISHED;
		return VSOCK_EV_ESTABLISHED;
	case VIRTIO_VSOCK_OP_SHUTDOWN:
		if (c->state == VSOCK_CONN_CONNECTING)
			return violation(c, why, "SHUTDOWN before the connection was up");
		fresh = p->flags & ~c->peer_shut;
		c->peer_shut |= p->flags;
		return fresh ? VSOCK_EV_SHUTDOWN : VSOCK_EV_NONE;
	case VIRTIO_VSOCK_OP_RW:
		if (c->state == VSOCK_CONN_CONNECTING)
			return violation(c, why, "data before the connection was up");
		if (c->peer_shut & VIRTIO_VSOCK_SHUTDOWN_SEND)
			return violation(c, why, "data after SHUTDOWN(SEND)");
		/* Wrap-safe: both sides of the comparison are distances, not counters. */
		if (p->len > c->buf_alloc - vsock_conn_rx_pending(c))
			return violation(c, why, "data beyond the credit we gave");
		c->rx_cnt += p->len;
		return VSOCK_EV_DATA;
	case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
		return VSOCK_EV_CREDIT;
	case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
		c->ctl |= VSOCK_CTL_CREDIT_UPDATE;
		return VSOCK_EV_CREDIT;
	default:
		return violation(c, why, "unknown operation");
	}
}

uint32_t vsock_conn_peer_credit(const struct vsock_conn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;

	if (c->state != VSOCK_CONN_ESTABLISHED || (c->peer_shut & VIRTIO_VSOCK_SHUTDOWN_RCV) ||
	    (c->local_shut & VIRTIO_VSOCK_SHUTDOWN_SEND))
		return 0;
	/* A guest claiming more forwarded than we sent shows up as a huge in_flight: no credit. */
	if (in_flight >= c->peer_buf_alloc)
		return 0;
	return c->peer_buf_alloc - in_flight;
}

void vsock_conn_forwarded(struct vsock_conn *c, uint32_t n)
{
	uint32_t seen_in_flight;

	c->fwd_cnt += n;
	if (c->fwd_cnt == c->fwd_cnt_sent || c->state == VSOCK_CONN_CLOSED)
		return;
	/* The guest believes rx_cnt - fwd_cnt_sent bytes of our buffer are taken: tell it
	 * before its view runs below half, so a fast sender never waits for us. */
	seen_in_flight = c->rx_cnt - c->fwd_cnt_sent;
	if (seen_in_flight > c->buf_alloc / 2)
		c->ctl |= VSOCK_CTL_CREDIT_UPDATE;
}

void vsock_conn_want_credit(struct vsock_conn *c)
{
	if (c->state != VSOCK_CONN_ESTABLISHED || c->credit_requested)
		return;
	c->ctl |= VSOCK_CTL_CREDIT_REQUEST;
}

void vsock_conn_host_shutdown(struct vsock_conn *c, uint32_t flags)
{
	uint32_t fresh = flags & VIRTIO_VSOCK_SHUTDOWN_ALL & ~c->local_shut;

	if (!fresh || c->state == VSOCK_CONN_CLOSED)
		return;
	c->local_shut |= fresh;
	c->ctl |= VSOCK_CTL_SHUTDOWN;
	if (c->local_shut == VIRTIO_VSOCK_SHUTDOWN_ALL && c->state == VSOCK_CONN_ESTABLISHED)
		c->state = VSOCK_CONN_CLOSING;
}

uint16_t vsock_conn_next_ctl(const struct vsock_conn *c)
{
	if (c->ctl & VSOCK_CTL_RST)
		return VIRTIO_VSOCK_OP_RST;
	if (c->ctl & VSOCK_CTL_REQUEST)
		return VIRTIO_VSOCK_OP_REQUEST;
	if (c->ctl & VSOCK_CTL_RESPONSE)
		return VIRTIO_VSOCK_OP_RESPONSE;
	if (c->ctl & VSOCK_CTL_CREDIT_UPDATE)
		return VIRTIO_VSOCK_OP_CREDIT_UPDATE;
	if (c->ctl & VSOCK_CTL_CREDIT_REQUEST)
		return VIRTIO_VSOCK_OP_CREDIT_REQUEST;
	if (c->ctl & VSOCK_CTL_SHUTDOWN)
		return VIRTIO_VSOCK_OP_SHUTDOWN;
	return 0;
}

void vsock_conn_build(struct vsock_conn *c, uint16_t op, uint32_t len, uint32_t flags,
		      struct vsock_pkt *out)
{
	memset(out, 0, sizeof(*out));
	out->src_cid = VSOCK_HOST_CID;
	out->dst_cid = c->guest_cid;
	out->src_port = c->local_port;
	out->dst_port = c->peer_port;
	out->type = c->type;
	out->op = op;
	out->len = op == VIRTIO_VSOCK_OP_RW ? len : 0;
	out->flags = flags;
	out->buf_alloc = c->buf_alloc;
	out->fwd_cnt = c->fwd_cnt;
	/* Every packet tells the guest our fwd_cnt: no separate update is owed. */
	c->fwd_cnt_sent = c->fwd_cnt;
	c->ctl &= ~VSOCK_CTL_CREDIT_UPDATE;
	switch (op) {
	case VIRTIO_VSOCK_OP_REQUEST:
		c->ctl &= ~VSOCK_CTL_REQUEST;
		break;
	case VIRTIO_VSOCK_OP_RESPONSE:
		c->ctl &= ~VSOCK_CTL_RESPONSE;
		break;
	case VIRTIO_VSOCK_OP_SHUTDOWN:
		out->flags = c->local_shut;
		c->ctl &= ~VSOCK_CTL_SHUTDOWN;
		break;
	case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
		c->ctl &= ~VSOCK_CTL_CREDIT_REQUEST;
		c->credit_requested = true;
		break;
	case VIRTIO_VSOCK_OP_RST:
		c->ctl = 0;
		c->state = VSOCK_CONN_CLOSED;
		break;
	case VIRTIO_VSOCK_OP_RW:
		c->tx_cnt += len;
		break;
	default:
		break;
	}
}
