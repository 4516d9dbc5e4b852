/*
 * The vsock multiplexer. See mux.h.
 *
 * TX (guest -> host): the tx queue is drained on a kick, never held up: a
 * chain's header is copied out once and validated (packet.c), the packet is
 * applied to its connection (conn.c), and RW payload goes to the host end,
 * or, when the host end is full, into the connection's pending ring. The
 * ring holds up to buf_alloc bytes, which is all the credit the guest has,
 * so accepted data is never dropped and a host that stops reading stops
 * only its own connection's sender.
 *
 * RX (host -> guest): connections with something to say (a control packet,
 * or a readable host end and credit) sit on a round-robin list; each
 * receive buffer goes to the next one, one packet each, so a busy
 * connection cannot starve the others. RSTs for packets that named no
 * connection wait in a small ring of their own (dropped when it is full).
 * Host ends are watched edge-triggered: "readable" stays set until a read
 * says EAGAIN, so a connection that may not send (no credit, no receive
 * buffer) costs no wake-ups, and no poll mask changes while data flows.
 */
#include "devices/vsock/mux.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "channel/notifier.h"
#include "devices/vsock/conn.h"
#include "devices/vsock/packet.h"

#define MUX_QUEUE_SIZE   256u
#define MUX_BUCKETS      256u
#define MUX_RST_RING     64u
#define MUX_BUDGET       256u      /* chains per queue per callback */
#define MUX_STAGE        (64u * 1024u)
#define MUX_MSGQ         1024u     /* SEQPACKET messages queued per connection */
#define MUX_TICK_NS      (200ull * 1000 * 1000)
#define MUX_CLOSE_NS     (2000ull * 1000 * 1000)  /* SHUTDOWN sent: wait this long for the RST */
#define MUX_FIRST_PORT   (1u << 30)                /* host-initiated local ports, as Firecracker */

struct vsock_req {
	struct vsock_req *next;
	uint32_t port;
	enum vsock_type type;
	struct stream_end *dev_end;
	int timeout_ms;
	vsock_connect_done_fn *done;
	void *opaque;
};

struct vsock_listener {
	struct vsock_dev *dev;
	struct vsock_listener *next;
	uint32_t port;
	enum vsock_type type;
	struct notifier ready;        /* semaphore: one count per queued connection */
	struct stream_end *queue[VSOCK_LISTEN_BACKLOG];
	uint32_t peer_port[VSOCK_LISTEN_BACKLOG];
	unsigned head, count;
};

struct mconn {
	struct vsock_conn c;
	struct mconn *hnext;
	struct mconn *rx_next;
	bool on_rx;
	struct vsock_dev *dev;

	struct stream_end *end;       /* device side; NULL once closed */
	struct evloop_fd *reg;        /* the host end, edge-triggered */
	uint32_t reg_events;          /* reg's mask: EPOLLOUT only while pend_len */
	bool host_readable;           /* may have data: set by an edge, cleared by EAGAIN or a short read */
	bool host_rdhup;              /* an edge said the host shut down writing: read to the end */
	bool host_eof;                /* a read returned 0 */
	bool host_hup;                /* the host end is closed for good (EPOLLHUP/ERR, EPIPE) */
	bool host_wr_shut;            /* we passed the guest's SHUTDOWN(SEND) on */

	/* guest -> host: pending ring (byte stream, or SEQPACKET messages back to back) */
	uint8_t *pend;
	uint32_t pend_head, pend_len;
	uint32_t *msgq;               /* SEQPACKET: lengths of complete messages in the ring */
	unsigned msgq_head, msgq_count;
	uint32_t partial;             /* SEQPACKET: bytes of the message still being received */

	/* host -> guest: bytes read from the host end, not yet in a packet */
	uint8_t *stage;
	uint32_t stage_off, stage_len;

	struct vsock_req *req;        /* host-initiated, until RESPONSE or failure */
	uint64_t deadline_ns;
};

struct vsock_dev {
	struct virtio_dev *vdev;
	struct evloop *loop;
	uint64_t guest_cid;

	pthread_mutex_t lock;         /* listeners and reqs: shared with API threads */
	struct vsock_listener *listeners;
	struct vsock_req *reqs, **reqs_tail;
	struct notifier wake;

	vsock_guest_connect_fn *fallback;
	void *fallback_opaque;

	/* Loop thread from here on. */
	struct evloop_fd *wake_reg;
	struct evloop_timer *timer;
	bool active, paused, broken, seqpacket;
	bool event_pending;           /* TRANSPORT_RESET waiting for an event buffer */
	struct mconn *buckets[MUX_BUCKETS];
	unsigned nconns;
	struct mconn *rx_head, *rx_tail;
	struct vsock_pkt rst_ring[MUX_RST_RING];
	unsigned rst_head, rst_count;
	uint32_t next_port;
	struct virtq_chain rx_chain, tx_chain, ev_chain;
	uint8_t *bounce;              /* MUX_STAGE: a SEQPACKET message that wraps in the ring */
	struct vsock_mux_stats stats;
};

static void mux_schedule(struct vsock_dev *dev);
static void conn_destroy(struct mconn *m, int req_result);
static void conn_update_events(struct mconn *m);

/* ---- small helpers ------------------------------------------------------------ */

static unsigned bucket_of(uint32_t local, uint32_t peer)
{
	uint32_t h = local * 0x9e3779b1u ^ peer * 0x85ebca6bu;

	return (h ^ (h >> 16)) % MUX_BUCKETS;
}

static struct mconn *conn_find(struct vsock_dev *dev, uint32_t local, uint32_t peer)
{
	for (struct mconn *m = dev->buckets[bucket_of(local, peer)]; m; m = m->hnext)
		if (m->c.local_port == local && m->c.peer_port == peer)
			return m;
	return NULL;
}

static bool local_port_used(struct vsock_dev *dev, uint32_t port)
{
	for (unsigned b = 0; b < MUX_BUCKETS; b++)
		for (struct mconn *m = dev->buckets[b]; m; m = m->hnext)
			if (m->c.local_port == port)
				return true;
	for (struct vsock_listener *l = dev->listeners; l; l = l->next)
		if (l->port == port)
			return true;
	return false;
}

static void signal_queue(struct vsock_dev *dev, unsigned q)
{
	struct virtio_dev *vdev = dev->vdev;

	virtq_flush(&vdev->vqs[q]);
	if (virtq_needs_notify(&vdev->vqs[q]) && vdev->signal_used)
		vdev->signal_used(vdev, q);
}

static void queue_error(struct vsock_dev *dev, unsigned q, int err, const char *why)
{
	struct virtio_dev *vdev = dev->vdev;

	if (dev->broken)
		return;
	dev->broken = true;
	pr_guest_err("%s: %s queue: %s (%s); the device needs a reset", vdev->id,
		     q == VSOCK_RXQ ? "rx" : q == VSOCK_TXQ ? "tx" : "event", why, strerror(-err));
	if (vdev->needs_reset)
		vdev->needs_reset(vdev);
}

/* A guest packet (or an answer to one) dropped: for vsock_mux_get_stats and vm.counters' errors. */
static void count_dropped(struct vsock_dev *dev)
{
	dev->stats.dropped++;
	virtio_count(&dev->vdev->counters.errors, 1);
}

static void queue_rst(struct vsock_dev *dev, const struct vsock_pkt *p)
{
	if (dev->rst_count == MUX_RST_RING) {
		count_dropped(dev);
		pr_guest_err("%s: too many RSTs waiting for receive buffers; dropped one", dev->vdev->id);
		return;
	}
	vsock_pkt_make_rst_reply(p, &dev->rst_ring[(dev->rst_head + dev->rst_count) % MUX_RST_RING]);
	dev->rst_count++;
}

/* ---- the round-robin list of connections with something for the guest ---------- */

static bool conn_has_rx_work(struct mconn *m)
{
	struct vsock_conn *c = &m->c;
	uint32_t credit;

	if (c->ctl)
		return true;
	if (c->state != VSOCK_CONN_ESTABLISHED && c->state != VSOCK_CONN_CLOSING)
		return false;
	credit = vsock_conn_peer_credit(c);
	if (m->stage_off < m->stage_len)
		return credit > 0;
	return m->host_readable && !m->host_eof && m->end && credit > 0 &&
	       !(c->peer_shut & VIRTIO_VSOCK_SHUTDOWN_RCV);
}

/* Data is waiting on a connection without credit: ask the guest for some, once. */
static void conn_check_credit(struct mconn *m)
{
	bool data = m->stage_off < m->stage_len ||
		    (m->host_readable && !m->host_eof && m->end &&
		     !(m->c.peer_shut & VIRTIO_VSOCK_SHUTDOWN_RCV));

	if (data && m->c.state == VSOCK_CONN_ESTABLISHED && !vsock_conn_peer_credit(&m->c))
		vsock_conn_want_credit(&m->c);
}

static void rx_list_add(struct mconn *m)
{
	struct vsock_dev *dev = m->dev;

	conn_check_credit(m);
	if (m->on_rx || !conn_has_rx_work(m))
		return;
	m->on_rx = true;
	m->rx_next = NULL;
	if (dev->rx_tail)
		dev->rx_tail->rx_next = m;
	else
		dev->rx_head = m;
	dev->rx_tail = m;
}

static struct mconn *rx_list_pop(struct vsock_dev *dev)
{
	struct mconn *m = dev->rx_head;

	if (!m)
		return NULL;
	dev->rx_head = m->rx_next;
	if (!dev->rx_head)
		dev->rx_tail = NULL;
	m->on_rx = false;
	m->rx_next = NULL;
	return m;
}

static void rx_list_remove(struct mconn *m)
{
	struct vsock_dev *dev = m->dev;
	struct mconn **pp = &dev->rx_head, *prev = NULL;

	if (!m->on_rx)
		return;
	while (*pp && *pp != m) {
		prev = *pp;
		pp = &(*pp)->rx_next;
	}
	if (*pp)
		*pp = m->rx_next;
	if (dev->rx_tail == m)
		dev->rx_tail = prev;
	m->on_rx = false;
}

/* ---- connections ------------------------------------------------------------------- */

static void conn_fd_event(void *opaque, int fd, uint32_t events);

/*
 * The host end is watched edge-triggered: an edge sets host_readable (cleared
 * by a read that says EAGAIN, or a short one: conn_stage_fill) or lets the
 * pending ring flush, so a connection that may not send now (no credit, no
 * receive buffer) costs no wake-ups until the guest makes room. EPOLLOUT is
 * in the mask only while the pending ring holds bytes: a writable socket
 * raises an EPOLLOUT edge every time its reader takes data, which would wake
 * the loop for nothing on every read the host makes.
 */
static void conn_update_events(struct mconn *m)
{
	uint32_t events;
	int r;

	if (!m->end || m->host_hup || m->dev->paused || m->c.state == VSOCK_CONN_CONNECTING)
		return;
	events = EPOLLIN | EPOLLRDHUP | EPOLLET | (m->pend_len ? EPOLLOUT : 0);
	if (m->reg && events == m->reg_events)
		return;
	if (m->reg)
		r = evloop_fd_modify(m->reg, events);
	else
		r = evloop_fd_add(m->dev->loop, stream_fd(m->end), events, conn_fd_event, m, &m->reg);
	if (r < 0) {
		/* A failed add leaves reg NULL; a failed modify keeps the old mask. */
		pr_err("%s: cannot watch a connection's host end: %s", m->dev->vdev->id, strerror(-r));
		return;
	}
	m->reg_events = events;
}

static void conn_unwatch(struct mconn *m)
{
	evloop_fd_remove(m->reg);
	m->reg = NULL;
}

/* Close the device's end: the host reader gets end-of-file (see vsock.h). */
static void conn_close_end(struct mconn *m)
{
	conn_unwatch(m);
	stream_close(m->end);
	m->end = NULL;
	m->host_hup = true;
}

static void conn_req_done(struct mconn *m, int result)
{
	struct vsock_req *req = m->req;

	if (!req)
		return;
	m->req = NULL;
	if (result < 0) {
		/* The end was the requester's; it is gone with the request. */
		if (m->end == req->dev_end)
			conn_close_end(m);
	}
	req->done(req->opaque, result, m->c.local_port);
	free(req);
}

static void conn_destroy(struct mconn *m, int req_result)
{
	struct vsock_dev *dev = m->dev;
	struct mconn **pp = &dev->buckets[bucket_of(m->c.local_port, m->c.peer_port)];

	while (*pp && *pp != m)
		pp = &(*pp)->hnext;
	if (*pp) {
		*pp = m->hnext;
		dev->nconns--;
	}
	rx_list_remove(m);
	conn_req_done(m, req_result);
	conn_close_end(m);
	free(m->pend);
	free(m->msgq);
	free(m->stage);
	free(m);
}

static struct mconn *conn_new(struct vsock_dev *dev, struct stream_end *end)
{
	struct mconn *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->dev = dev;
	m->end = end;
	return m;
}

static void conn_insert(struct vsock_dev *dev, struct mconn *m)
{
	unsigned b = bucket_of(m->c.local_port, m->c.peer_port);

	m->hnext = dev->buckets[b];
	dev->buckets[b] = m;
	dev->nconns++;
}

/* Reset a connection from our side: RST to the guest, the host end closed. */
static void conn_reset(struct mconn *m)
{
	vsock_conn_reset(&m->c);
	conn_req_done(m, -ECONNRESET);
	conn_close_end(m);
	m->pend_len = 0;
	m->msgq_count = 0;
	m->partial = 0;
	m->stage_len = m->stage_off = 0;
	rx_list_add(m);
}

/* The host end is gone for good: what the guest sent and the host never took is lost. */
static void conn_host_gone(struct mconn *m)
{
	uint32_t dropped = m->pend_len;

	m->host_hup = true;
	m->pend_len = 0;
	m->msgq_count = 0;
	m->partial = 0;
	if (dropped)
		vsock_conn_forwarded(&m->c, dropped);
	conn_unwatch(m);
	if (m->c.state == VSOCK_CONN_CLOSED)
		return;
	/* Data it wrote before closing still goes to the guest first (host_readable). */
	m->host_readable = true;
	if (m->host_eof || (m->c.peer_shut & VIRTIO_VSOCK_SHUTDOWN_RCV) || !m->end) {
		vsock_conn_host_shutdown(&m->c, VIRTIO_VSOCK_SHUTDOWN_ALL);
		m->deadline_ns = monotonic_coarse_ns() + MUX_CLOSE_NS;
	}
	rx_list_add(m);
}

/* After the pending ring drained: pass the guest's shutdown on to the host end. */
static void conn_after_flush(struct mconn *m)
{
	struct vsock_conn *c = &m->c;

	if (m->pend_len || c->state == VSOCK_CONN_CLOSED)
		return;
	if ((c->peer_shut & VIRTIO_VSOCK_SHUTDOWN_SEND) && !m->host_wr_shut && m->end) {
		m->host_wr_shut = true;
		shutdown(stream_fd(m->end), SHUT_WR);
	}
	if (c->peer_shut == VIRTIO_VSOCK_SHUTDOWN_ALL) {
		/* The guest closed and the host has every byte: finish with a RST (as Linux does). */
		vsock_conn_reset(c);
		conn_req_done(m, -ECONNRESET);
		rx_list_add(m);
	}
}

/* ---- guest -> host: the pending ring -------------------------------------------------- */

static int conn_ring_alloc(struct mconn *m)
{
	if (!m->pend) {
		m->pend = malloc(m->c.buf_alloc);
		if (!m->pend)
			return -ENOMEM;
	}
	if (m->c.type == VIRTIO_VSOCK_TYPE_SEQPACKET && !m->msgq) {
		m->msgq = calloc(MUX_MSGQ, sizeof(*m->msgq));
		if (!m->msgq)
			return -ENOMEM;
	}
	return 0;
}

/* Copy n payload bytes at offset off of the chain onto the ring's tail. */
static void ring_put(struct mconn *m, const struct virtq_chain *ch, size_t off, uint32_t n)
{
	uint32_t cap = m->c.buf_alloc, tail = (m->pend_head + m->pend_len) % cap;
	uint32_t first = MIN(n, cap - tail);

	virtq_chain_read(ch, off, m->pend + tail, first);
	if (n > first)
		virtq_chain_read(ch, off + first, m->pend, n - first);
	m->pend_len += n;
}

static void ring_consume(struct mconn *m, uint32_t n)
{
	m->pend_head = (m->pend_head + n) % m->c.buf_alloc;
	m->pend_len -= n;
	vsock_conn_forwarded(&m->c, n);
}

/* Write what the host end takes. Returns false when the host end is gone. */
static bool ring_flush(struct mconn *m)
{
	struct vsock_dev *dev = m->dev;
	uint32_t cap = m->c.buf_alloc;
	ssize_t w;

	while (m->pend_len && m->end && !m->host_hup) {
		if (m->c.type == VIRTIO_VSOCK_TYPE_SEQPACKET) {
			uint32_t len, first;
			const uint8_t *p;

			if (!m->msgq_count)
				break;
			len = m->msgq[m->msgq_head];
			first = MIN(len, cap - m->pend_head);
			if (first == len) {
				p = m->pend + m->pend_head;
			} else {
				memcpy(dev->bounce, m->pend + m->pend_head, first);
				memcpy(dev->bounce + first, m->pend, len - first);
				p = dev->bounce;
			}
			w = stream_write(m->end, p, len);
			if (w == (ssize_t)len) {
				m->msgq_head = (m->msgq_head + 1) % MUX_MSGQ;
				m->msgq_count--;
				ring_consume(m, len);
				continue;
			}
		} else {
			uint32_t first = MIN(m->pend_len, cap - m->pend_head);

			w = stream_write(m->end, m->pend + m->pend_head, first);
			if (w > 0) {
				ring_consume(m, (uint32_t)w);
				continue;
			}
		}
		if (w == -EAGAIN || w == 0)
			break;
		conn_host_gone(m);
		return false;
	}
	return true;
}

static void conn_no_ring(struct mconn *m)
{
	pr_err("%s: out of memory for a connection's buffer; resetting it", m->dev->vdev->id);
	conn_reset(m);
}

/* An RW packet's payload for the host end. */
static void conn_deliver(struct mconn *m, const struct virtq_chain *ch, const struct vsock_pkt *p)
{
	struct vsock_conn *c = &m->c;
	size_t off = VSOCK_HDR_LEN;
	uint32_t left = p->len;

	if (!m->end || m->host_hup || m->c.state == VSOCK_CONN_CLOSED) {
		/* Nobody to take it: count it as taken so the guest is not stuck on credit. */
		vsock_conn_forwarded(c, left);
		rx_list_add(m);
		return;
	}
	if (c->type == VIRTIO_VSOCK_TYPE_SEQPACKET) {
		if (conn_ring_alloc(m) < 0) {
			conn_no_ring(m);
			return;
		}
		if (m->partial + left > VSOCK_MAX_MSG) {
			pr_guest_err("%s: guest sent a SEQPACKET message over %u bytes; connection reset",
				     m->dev->vdev->id, VSOCK_MAX_MSG);
			m->dev->stats.protocol_resets++;
			conn_reset(m);
			return;
		}
		if ((p->flags & VIRTIO_VSOCK_SEQ_EOM) && m->msgq_count == MUX_MSGQ) {
			pr_guest_err("%s: %u SEQPACKET messages waiting for the host; connection reset",
				     m->dev->vdev->id, MUX_MSGQ);
			conn_reset(m);
			return;
		}
		ring_put(m, ch, off, left);
		m->partial += left;
		if (!(p->flags & VIRTIO_VSOCK_SEQ_EOM))
			return;
		if (!m->partial) {
			/* An empty message cannot travel on a message channel (0 is end-of-stream). */
			return;
		}
		m->msgq[(m->msgq_head + m->msgq_count) % MUX_MSGQ] = m->partial;
		m->msgq_count++;
		m->partial = 0;
	} else {
		/* Straight to the host end while nothing is queued before it. */
		for (unsigned i = 0; i < ch->nr_out && left && !m->pend_len; i++) {
			size_t len = ch->out[i].iov_len, n;
			ssize_t w;

			if (off >= len) {
				off -= len;
				continue;
			}
			n = MIN(len - off, (size_t)left);
			w = stream_write(m->end, (uint8_t *)ch->out[i].iov_base + off, n);
			if (w < 0 && w != -EAGAIN) {
				vsock_conn_forwarded(c, left);
				conn_host_gone(m);
				return;
			}
			if (w > 0) {
				vsock_conn_forwarded(c, (uint32_t)w);
				left -= (uint32_t)w;
			}
			if (w != (ssize_t)n) {
				/* Host end full: the rest waits in the ring. */
				off += (w > 0 ? (size_t)w : 0);
				break;
			}
			off = 0;
		}
		if (left) {
			/* Only now the ring: most connections never need one (256 KiB,
			 * an mmap and a munmap with its TLB shootdown, per connection). */
			if (conn_ring_alloc(m) < 0) {
				conn_no_ring(m);
				return;
			}
			/* off is relative to the iovec we stopped in: recompute from the chain start. */
			ring_put(m, ch, VSOCK_HDR_LEN + (p->len - left), left);
		}
	}
	if (ring_flush(m))
		conn_after_flush(m);
	conn_update_events(m);
	if (m->c.ctl)
		rx_list_add(m);
}

/* ---- host -> guest: one packet for a receive chain ---------------------------------------- */

/* Read from the host end into the stage. Returns > 0 staged, 0 nothing to send now. */
static uint32_t conn_stage_fill(struct mconn *m, uint32_t credit)
{
	struct vsock_conn *c = &m->c;
	bool seq = c->type == VIRTIO_VSOCK_TYPE_SEQPACKET;
	size_t want;
	ssize_t r;

	if (!m->host_readable || m->host_eof || !m->end || (c->peer_shut & VIRTIO_VSOCK_SHUTDOWN_RCV))
		return 0;
	if (!m->stage) {
		m->stage = malloc(MUX_STAGE);
		if (!m->stage)
			return 0;
	}
	want = seq ? MUX_STAGE : MIN(credit, MUX_STAGE);
	r = stream_read(m->end, m->stage, want);
	if (r > 0) {
		m->stage_off = 0;
		m->stage_len = (uint32_t)r;
		/*
		 * A short read from a byte stream took all there was: bytes or an
		 * end that come later raise a new edge, so no read to hear EAGAIN.
		 * Not when the end was already there at the last edge (EPOLLRDHUP):
		 * no edge follows it, and it is read as 0 next. (A Unix peer's
		 * MSG_OOB byte, meaningless here, also ends a read short; what
		 * follows it then waits for that peer's next write or close.)
		 */
		if (!seq && (size_t)r < want && m->reg && !m->host_rdhup && !m->host_hup)
			m->host_readable = false;
		return (uint32_t)r;
	}
	if (r == -EAGAIN) {
		m->host_readable = false;
		conn_update_events(m);
		return 0;
	}
	if (r == 0) {
		/* End of stream: the host stopped writing (half-close) or closed (host_hup). */
		m->host_eof = true;
		m->host_readable = false;
		vsock_conn_host_shutdown(c, m->host_hup ? VIRTIO_VSOCK_SHUTDOWN_ALL
							: VIRTIO_VSOCK_SHUTDOWN_SEND);
		if (c->state == VSOCK_CONN_CLOSING)
			m->deadline_ns = monotonic_coarse_ns() + MUX_CLOSE_NS;
		conn_update_events(m);
		return 0;
	}
	/* -ECONNRESET and friends: the host end broke. */
	m->host_eof = true;
	m->host_readable = false;
	conn_reset(m);
	return 0;
}

/*
 * Fill one receive chain for m. Returns the bytes written into it (header
 * included), 0 when m had nothing to send after all.
 */
static uint32_t conn_fill_rx(struct mconn *m, const struct virtq_chain *ch)
{
	struct vsock_conn *c = &m->c;
	struct vsock_pkt p;
	struct vsock_hdr h;
	uint16_t op = vsock_conn_next_ctl(c);
	uint32_t room = ch->in_len - VSOCK_HDR_LEN, credit, n, flags = 0;

	if (op && op != VIRTIO_VSOCK_OP_SHUTDOWN)
		goto control;
	credit = vsock_conn_peer_credit(c);
	if (m->stage_off == m->stage_len && credit && room)
		conn_stage_fill(m, credit);
	op = vsock_conn_next_ctl(c);   /* a read may have found end-of-stream or a reset */
	if (m->stage_off < m->stage_len && credit && room && c->state != VSOCK_CONN_CLOSED) {
		n = MIN(MIN(room, credit), m->stage_len - m->stage_off);
		if (c->type == VIRTIO_VSOCK_TYPE_SEQPACKET && m->stage_off + n == m->stage_len)
			flags = VIRTIO_VSOCK_SEQ_EOM;
		vsock_conn_build(c, VIRTIO_VSOCK_OP_RW, n, flags, &p);
		vsock_hdr_encode(&h, &p);
		virtq_chain_write(ch, 0, &h, VSOCK_HDR_LEN);
		virtq_chain_write(ch, VSOCK_HDR_LEN, m->stage + m->stage_off, n);
		m->stage_off += n;
		if (m->stage_off == m->stage_len)
			m->stage_off = m->stage_len = 0;
		return VSOCK_HDR_LEN + n;
	}
	if (m->stage_off < m->stage_len && op == VIRTIO_VSOCK_OP_SHUTDOWN)
		return 0;  /* data first; it waits for credit */
	if (!op)
		return 0;
control:
	vsock_conn_build(c, op, 0, 0, &p);
	vsock_hdr_encode(&h, &p);
	virtq_chain_write(ch, 0, &h, VSOCK_HDR_LEN);
	if (op == VIRTIO_VSOCK_OP_RST)
		m->dev->stats.rst_sent++;
	return VSOCK_HDR_LEN;
}

/* ---- the queues ------------------------------------------------------------------------- */

static bool rx_work_left(struct vsock_dev *dev)
{
	return dev->rst_count || dev->rx_head;
}

static void rx_drain(struct vsock_dev *dev)
{
	struct virtq *vq = &dev->vdev->vqs[VSOCK_RXQ];
	unsigned pushed = 0, budget = MUX_BUDGET;
	int r;

	if (!dev->active || dev->paused || dev->broken)
		return;
	while (rx_work_left(dev)) {
		uint32_t len = 0;

		if (!budget--) {
			mux_schedule(dev);
			break;
		}
		r = virtq_pop(vq, &dev->rx_chain);
		if (r == 0 || r == -ENODEV) {
			/* No buffers: ask for a kick; buffers that raced in mean go on. */
			if (r == 0 && virtq_enable_notify(vq)) {
				virtq_disable_notify(vq);
				continue;
			}
			break;
		}
		if (r < 0) {
			queue_error(dev, VSOCK_RXQ, r, "malformed ring");
			break;
		}
		if (dev->rx_chain.nr_out || dev->rx_chain.in_len < VSOCK_HDR_LEN) {
			queue_error(dev, VSOCK_RXQ, -EBADMSG,
				    "receive chain with device-readable buffers or shorter than the header");
			break;
		}
		if (dev->rst_count) {
			struct vsock_hdr h;

			vsock_hdr_encode(&h, &dev->rst_ring[dev->rst_head]);
			dev->rst_head = (dev->rst_head + 1) % MUX_RST_RING;
			dev->rst_count--;
			virtq_chain_write(&dev->rx_chain, 0, &h, VSOCK_HDR_LEN);
			dev->stats.rst_sent++;
			len = VSOCK_HDR_LEN;
		}
		while (!len && dev->rx_head) {
			struct mconn *m = rx_list_pop(dev);

			len = conn_fill_rx(m, &dev->rx_chain);
			if (m->c.state == VSOCK_CONN_CLOSED && !m->c.ctl) {
				conn_destroy(m, -ECONNRESET);
				continue;
			}
			if (len) {
				rx_list_add(m);
				continue;
			}
			/* Nothing after all (no credit, EAGAIN): events bring it back. A
			 * credit request just queued always makes a packet, so no spin. */
			conn_check_credit(m);
			if (m->c.ctl & ~VSOCK_CTL_SHUTDOWN)
				rx_list_add(m);
		}
		if (!len) {
			virtq_unpop(vq, 1);
			break;
		}
		if (virtq_push(vq, dev->rx_chain.head, len) < 0) {
			queue_error(dev, VSOCK_RXQ, -EIO, "cannot return a buffer");
			break;
		}
		virtio_count(&dev->vdev->counters.requests, 1);
		virtio_count(&dev->vdev->counters.in_ops, 1);
		virtio_count(&dev->vdev->counters.in_bytes, len - VSOCK_HDR_LEN);
		if (++pushed % 32 == 0)
			signal_queue(dev, VSOCK_RXQ);
	}
	signal_queue(dev, VSOCK_RXQ);
}

static void event_drain(struct vsock_dev *dev)
{
	struct virtq *vq = &dev->vdev->vqs[VSOCK_EVQ];
	struct vsock_event ev = { .id = cpu_to_le32(VIRTIO_VSOCK_EVENT_TRANSPORT_RESET) };
	int r;

	if (!dev->event_pending || !dev->active || dev->paused || dev->broken)
		return;
	r = virtq_pop(vq, &dev->ev_chain);
	if (r <= 0) {
		if (r < 0 && r != -ENODEV)
			queue_error(dev, VSOCK_EVQ, r, "malformed ring");
		return;
	}
	if (dev->ev_chain.nr_out || dev->ev_chain.in_len < sizeof(ev)) {
		queue_error(dev, VSOCK_EVQ, -EBADMSG, "event buffer too short or device-readable");
		return;
	}
	virtq_chain_write(&dev->ev_chain, 0, &ev, sizeof(ev));
	if (virtq_push(vq, dev->ev_chain.head, sizeof(ev)) < 0) {
		queue_error(dev, VSOCK_EVQ, -EIO, "cannot return a buffer");
		return;
	}
	dev->event_pending = false;
	signal_queue(dev, VSOCK_EVQ);
}

static void guest_connect(struct vsock_dev *dev, const struct vsock_pkt *p)
{
	struct stream_end *dev_end = NULL, *host_end = NULL;
	struct vsock_listener *l;
	struct mconn *m;
	int r = -ECONNREFUSED;
	bool queued = false;

	if (dev->nconns >= VSOCK_MAX_CONNS) {
		pr_guest_err("%s: %u connections open; refused one more", dev->vdev->id,
			     VSOCK_MAX_CONNS);
		queue_rst(dev, p);
		return;
	}
	m = conn_new(dev, NULL);
	if (!m) {
		queue_rst(dev, p);
		return;
	}
	pthread_mutex_lock(&dev->lock);
	for (l = dev->listeners; l && l->port != p->dst_port; l = l->next)
		;
	if (l && l->type == p->type && l->count < VSOCK_LISTEN_BACKLOG) {
		r = stream_pair(p->type == VIRTIO_VSOCK_TYPE_SEQPACKET ? STREAM_MESSAGE : STREAM_BYTE,
				VSOCK_MAX_MSG, STREAM_NONBLOCKING, STREAM_BLOCKING, &dev_end, &host_end);
		if (r == 0) {
			unsigned slot = (l->head + l->count) % VSOCK_LISTEN_BACKLOG;

			l->queue[slot] = host_end;
			l->peer_port[slot] = p->src_port;
			l->count++;
			queued = true;
			notifier_signal(&l->ready);
		}
	}
	pthread_mutex_unlock(&dev->lock);
	if (!l && dev->fallback)
		r = dev->fallback(dev->fallback_opaque, p->dst_port, (enum vsock_type)p->type, &dev_end);
	if (r < 0 || (!queued && !dev_end)) {
		free(m);
		queue_rst(dev, p);
		return;
	}
	m->end = dev_end;
	vsock_conn_init_accept(&m->c, p, VSOCK_BUF_ALLOC);
	conn_insert(dev, m);
	conn_update_events(m);
	rx_list_add(m);
}

/* Apply one guest packet. */
static void tx_packet(struct vsock_dev *dev, const struct virtq_chain *ch)
{
	struct vsock_hdr h;
	struct vsock_pkt p;
	struct mconn *m;
	const char *why;
	enum vsock_pkt_verdict v;
	enum vsock_conn_event ev;
	enum vsock_conn_state before;

	if (ch->nr_in) {
		count_dropped(dev);
		pr_guest_err("%s: tx chain with device-writable buffers; dropped", dev->vdev->id);
		return;
	}
	if (ch->out_len < VSOCK_HDR_LEN) {
		count_dropped(dev);
		pr_guest_err("%s: tx packet of %u bytes, shorter than the header; dropped",
			     dev->vdev->id, ch->out_len);
		return;
	}
	/* Copied once: the guest may rewrite its copy while we look at ours. */
	virtq_chain_read(ch, 0, &h, VSOCK_HDR_LEN);
	v = vsock_pkt_parse(&h, ch->out_len - VSOCK_HDR_LEN, dev->guest_cid, dev->seqpacket, &p, &why);
	if (v != VSOCK_PKT_OK) {
		pr_guest_err("%s: %s packet %u -> %u: %s; %s", dev->vdev->id, vsock_op_name(p.op),
			     p.src_port, p.dst_port, why, v == VSOCK_PKT_RST ? "reset" : "dropped");
		if (v == VSOCK_PKT_DROP) {
			count_dropped(dev);
			return;
		}
		m = p.src_cid == dev->guest_cid ? conn_find(dev, p.dst_port, p.src_port) : NULL;
		if (m) {
			dev->stats.protocol_resets++;
			conn_reset(m);
		} else {
			queue_rst(dev, &p);
		}
		return;
	}
	virtio_count(&dev->vdev->counters.out_ops, 1);
	virtio_count(&dev->vdev->counters.out_bytes, ch->out_len - VSOCK_HDR_LEN);
	m = conn_find(dev, p.dst_port, p.src_port);
	if (!m) {
		if (p.op == VIRTIO_VSOCK_OP_REQUEST)
			guest_connect(dev, &p);
		else if (p.op != VIRTIO_VSOCK_OP_RST)
			queue_rst(dev, &p);
		return;
	}
	before = m->c.state;
	ev = vsock_conn_recv(&m->c, &p, &why);
	switch (ev) {
	case VSOCK_EV_RESET:
		pr_guest_err("%s: %s on connection %u -> %u: %s; reset", dev->vdev->id,
			     vsock_op_name(p.op), p.src_port, p.dst_port, why);
		dev->stats.protocol_resets++;
		conn_reset(m);
		return;
	case VSOCK_EV_CLOSED:
		conn_destroy(m, before == VSOCK_CONN_CONNECTING ? -ECONNREFUSED : -ECONNRESET);
		return;
	case VSOCK_EV_ESTABLISHED:
		conn_req_done(m, 0);
		conn_update_events(m);
		break;
	case VSOCK_EV_DATA:
		conn_deliver(m, ch, &p);
		return;
	case VSOCK_EV_SHUTDOWN:
		if ((m->c.peer_shut & VIRTIO_VSOCK_SHUTDOWN_SEND) && m->partial) {
			/* A message the guest will never finish: nobody can take it. */
			m->pend_len -= m->partial;
			vsock_conn_forwarded(&m->c, m->partial);
			m->partial = 0;
		}
		if ((m->c.peer_shut & VIRTIO_VSOCK_SHUTDOWN_RCV) && m->end)
			shutdown(stream_fd(m->end), SHUT_RD);
		conn_after_flush(m);
		conn_update_events(m);
		break;
	case VSOCK_EV_CREDIT:
	case VSOCK_EV_NONE:
		break;
	}
	rx_list_add(m);
}

static void tx_drain(struct vsock_dev *dev)
{
	struct virtq *vq = &dev->vdev->vqs[VSOCK_TXQ];
	unsigned n = 0;
	int r;

	if (!dev->active || dev->paused || dev->broken)
		return;
	do {
		virtq_disable_notify(vq);
		while ((r = virtq_pop(vq, &dev->tx_chain)) > 0) {
			tx_packet(dev, &dev->tx_chain);
			virtio_count(&dev->vdev->counters.requests, 1);
			if (virtq_push(vq, dev->tx_chain.head, 0) < 0) {
				queue_error(dev, VSOCK_TXQ, -EIO, "cannot return a buffer");
				return;
			}
			if (++n == MUX_BUDGET) {
				/* Let the others run; we come back through the wake notifier. */
				signal_queue(dev, VSOCK_TXQ);
				notifier_signal(&dev->wake);
				return;
			}
		}
	} while (r == 0 && virtq_enable_notify(vq));
	if (r < 0 && r != -ENODEV)
		queue_error(dev, VSOCK_TXQ, r, "malformed ring");
	signal_queue(dev, VSOCK_TXQ);
}

/* ---- requests from other threads, the timer ------------------------------------------------ */

static uint32_t alloc_local_port(struct vsock_dev *dev)
{
	for (unsigned tries = 0; tries < 4 * VSOCK_MAX_CONNS; tries++) {
		uint32_t port = dev->next_port++;

		if (dev->next_port == 0xffffffffu || dev->next_port < MUX_FIRST_PORT)
			dev->next_port = MUX_FIRST_PORT;
		if (!local_port_used(dev, port))
			return port;
	}
	return 0;
}

static void start_request(struct vsock_dev *dev, struct vsock_req *req)
{
	struct mconn *m;
	uint32_t port;
	int err = -ENETDOWN;

	if (!dev->active || dev->broken)
		goto fail;
	err = -ENOBUFS;
	if (dev->nconns >= VSOCK_MAX_CONNS)
		goto fail;
	if (req->type == VSOCK_SEQPACKET && !dev->seqpacket) {
		err = -ECONNREFUSED;  /* the guest's transport cannot take SEQPACKET */
		goto fail;
	}
	pthread_mutex_lock(&dev->lock);
	port = alloc_local_port(dev);
	pthread_mutex_unlock(&dev->lock);
	if (!port)
		goto fail;
	err = -ENOMEM;
	m = conn_new(dev, req->dev_end);
	if (!m)
		goto fail;
	vsock_conn_init_connect(&m->c, dev->guest_cid, port, req->port, (uint16_t)req->type,
				VSOCK_BUF_ALLOC);
	m->req = req;
	m->deadline_ns = monotonic_coarse_ns() + (uint64_t)req->timeout_ms * 1000000ull;
	conn_insert(dev, m);
	rx_list_add(m);
	return;
fail:
	stream_close(req->dev_end);
	req->done(req->opaque, err, 0);
	free(req);
}

static void take_requests(struct vsock_dev *dev)
{
	struct vsock_req *list;

	/*
	 * A TRANSPORT_RESET owed to the guest (after a restore) goes first: a
	 * host connection's REQUEST queued before it would be reset with the
	 * old ones by the guest's handler.
	 */
	event_drain(dev);
	pthread_mutex_lock(&dev->lock);
	list = dev->reqs;
	dev->reqs = NULL;
	dev->reqs_tail = &dev->reqs;
	pthread_mutex_unlock(&dev->lock);
	while (list) {
		struct vsock_req *req = list;

		list = req->next;
		start_request(dev, req);
	}
}

static void mux_run(struct vsock_dev *dev)
{
	take_requests(dev);  /* the owed event first, then new host connections */
	tx_drain(dev);
	rx_drain(dev);
}

static void wake_event(void *opaque, int fd, uint32_t events)
{
	struct vsock_dev *dev = opaque;

	(void)fd;
	(void)events;
	notifier_reset(&dev->wake);
	mux_run(dev);
}

/* Come back to the rx queue from the loop (never recursively from a callback). */
static void mux_schedule(struct vsock_dev *dev)
{
	notifier_signal(&dev->wake);
}

static void timer_event(void *opaque, uint64_t expirations)
{
	struct vsock_dev *dev = opaque;
	uint64_t now = monotonic_coarse_ns();

	(void)expirations;
	for (unsigned b = 0; b < MUX_BUCKETS; b++) {
		struct mconn *m = dev->buckets[b], *next;

		for (; m; m = next) {
			next = m->hnext;
			if (!m->deadline_ns || now < m->deadline_ns)
				continue;
			m->deadline_ns = 0;
			if (m->c.state == VSOCK_CONN_CONNECTING) {
				vsock_conn_reset(&m->c);
				conn_req_done(m, -ETIMEDOUT);
				rx_list_add(m);
			} else if (m->c.state == VSOCK_CONN_CLOSING) {
				/* The guest never answered our SHUTDOWN: finish with a RST. */
				conn_reset(m);
			}
		}
	}
	mux_run(dev);
}

static void conn_fd_event(void *opaque, int fd, uint32_t events)
{
	struct mconn *m = opaque;
	struct vsock_dev *dev = m->dev;

	(void)fd;
	if ((events & EPOLLOUT) && m->pend_len) {
		if (ring_flush(m))
			conn_after_flush(m);
		conn_update_events(m);  /* drained: no more EPOLLOUT */
		if (m->c.ctl)
			rx_list_add(m);
	}
	if (events & EPOLLRDHUP)
		m->host_rdhup = true;
	if (m->reg && (events & (EPOLLIN | EPOLLRDHUP)) && !m->host_eof) {
		m->host_readable = true;
		rx_list_add(m);
	}
	if (m->reg && (events & (EPOLLHUP | EPOLLERR)))
		conn_host_gone(m);
	/* m may go in here (its RST sent): not touched after. */
	rx_drain(dev);
}

/* ---- the API's side -------------------------------------------------------------------------- */

int vsock_mux_connect_async(struct vsock_dev *dev, uint32_t port, enum vsock_type type,
			    struct stream_end *dev_end, int timeout_ms,
			    vsock_connect_done_fn *done, void *opaque)
{
	struct vsock_req *req = calloc(1, sizeof(*req));

	if (!req)
		return -ENOMEM;
	req->port = port;
	req->type = type;
	req->dev_end = dev_end;
	req->timeout_ms = timeout_ms > 0 ? timeout_ms : VSOCK_CONNECT_MS;
	req->done = done;
	req->opaque = opaque;
	if (evloop_in_loop_thread(dev->loop) && !dev->paused) {
		/* From the loop (the bridge): no trip through the wake notifier. */
		take_requests(dev);
		start_request(dev, req);
		rx_drain(dev);
		return 0;
	}
	pthread_mutex_lock(&dev->lock);
	*dev->reqs_tail = req;
	dev->reqs_tail = &req->next;
	pthread_mutex_unlock(&dev->lock);
	notifier_signal(&dev->wake);
	return 0;
}

struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int result;
};

static void waiter_done(void *opaque, int result, uint32_t local_port)
{
	struct waiter *w = opaque;

	(void)local_port;
	pthread_mutex_lock(&w->lock);
	w->done = true;
	w->result = result;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

int vsock_connect_ex(struct vsock_dev *dev, uint32_t port, enum vsock_type type,
		     enum stream_blocking mode, int timeout_ms, struct stream_end **out)
{
	struct stream_end *dev_end, *host_end;
	struct waiter w = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
	int r;

	if (!dev || !out || (type != VSOCK_STREAM && type != VSOCK_SEQPACKET) || timeout_ms < 0)
		return -EINVAL;
	if (evloop_in_loop_thread(dev->loop))
		return -EDEADLK;
	r = stream_pair(type == VSOCK_SEQPACKET ? STREAM_MESSAGE : STREAM_BYTE, VSOCK_MAX_MSG,
			STREAM_NONBLOCKING, mode, &dev_end, &host_end);
	if (r < 0)
		return r;
	r = vsock_mux_connect_async(dev, port, type, dev_end, timeout_ms, waiter_done, &w);
	if (r < 0) {
		stream_close(dev_end);
		stream_close(host_end);
		return r;
	}
	/* The mux always answers: RESPONSE, RST, its own timeout, reset or destroy. */
	pthread_mutex_lock(&w.lock);
	while (!w.done)
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
	pthread_cond_destroy(&w.cond);
	pthread_mutex_destroy(&w.lock);
	if (w.result < 0) {
		stream_close(host_end);
		return w.result;
	}
	*out = host_end;
	return 0;
}

int vsock_connect(struct vsock_dev *dev, uint32_t port, struct stream_end **out)
{
	return vsock_connect_ex(dev, port, VSOCK_STREAM, STREAM_BLOCKING, 0, out);
}

int vsock_listen(struct vsock_dev *dev, uint32_t port, enum vsock_type type,
		 struct vsock_listener **out)
{
	struct vsock_listener *l;
	int r;

	if (!dev || !out || (type != VSOCK_STREAM && type != VSOCK_SEQPACKET))
		return -EINVAL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	r = notifier_init(&l->ready, NOTIFIER_SEMAPHORE);
	if (r < 0) {
		free(l);
		return r;
	}
	l->dev = dev;
	l->port = port;
	l->type = type;
	pthread_mutex_lock(&dev->lock);
	for (struct vsock_listener *o = dev->listeners; o; o = o->next) {
		if (o->port == port) {
			pthread_mutex_unlock(&dev->lock);
			notifier_destroy(&l->ready);
			free(l);
			return -EADDRINUSE;
		}
	}
	l->next = dev->listeners;
	dev->listeners = l;
	pthread_mutex_unlock(&dev->lock);
	*out = l;
	return 0;
}

int vsock_listener_fd(const struct vsock_listener *l)
{
	return notifier_fd(&l->ready);
}

int vsock_accept(struct vsock_listener *l, enum stream_blocking mode, struct stream_end **out,
		 uint32_t *peer_port)
{
	struct vsock_dev *dev = l->dev;
	struct stream_end *end = NULL;
	uint32_t pp = 0;

	if (mode != STREAM_BLOCKING && mode != STREAM_NONBLOCKING)
		return -EINVAL;
	pthread_mutex_lock(&dev->lock);
	if (l->count) {
		end = l->queue[l->head];
		pp = l->peer_port[l->head];
		l->head = (l->head + 1) % VSOCK_LISTEN_BACKLOG;
		l->count--;
		/* Semaphore mode: one count per queued connection, taken with it. */
		if (notifier_wait(&l->ready, 0, NULL) < 0)
			pr_err("vsock: listener notifier out of step");
	}
	pthread_mutex_unlock(&dev->lock);
	if (!end)
		return -EAGAIN;
	stream_set_blocking(end, mode);
	*out = end;
	if (peer_port)
		*peer_port = pp;
	return 0;
}

void vsock_listener_close(struct vsock_listener *l)
{
	struct vsock_dev *dev;

	if (!l)
		return;
	dev = l->dev;
	pthread_mutex_lock(&dev->lock);
	for (struct vsock_listener **pp = &dev->listeners; *pp; pp = &(*pp)->next) {
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	}
	pthread_mutex_unlock(&dev->lock);
	/* Queued connections: their device ends see the close and shut down towards the guest. */
	while (l->count) {
		stream_close(l->queue[l->head]);
		l->head = (l->head + 1) % VSOCK_LISTEN_BACKLOG;
		l->count--;
	}
	notifier_destroy(&l->ready);
	free(l);
}

/* ---- transport hooks ----------------------------------------------------------------------- */

/* Stop every event source but the wake notifier (API requests are answered even
 * while the driver is not running). */
static void mux_unwatch_conns(struct vsock_dev *dev)
{
	evloop_timer_remove(dev->timer);
	dev->timer = NULL;
	for (unsigned b = 0; b < MUX_BUCKETS; b++)
		for (struct mconn *m = dev->buckets[b]; m; m = m->hnext)
			conn_unwatch(m);
}

static void mux_unwatch(struct vsock_dev *dev)
{
	evloop_fd_remove(dev->wake_reg);
	dev->wake_reg = NULL;
	mux_unwatch_conns(dev);
}

static int mux_watch_wake(struct vsock_dev *dev)
{
	int r = 0;

	if (!dev->wake_reg)
		r = evloop_fd_add(dev->loop, notifier_fd(&dev->wake), EPOLLIN, wake_event, dev,
				  &dev->wake_reg);
	if (r == 0)
		notifier_signal(&dev->wake);
	return r;
}

static int mux_watch(struct vsock_dev *dev)
{
	int r = mux_watch_wake(dev);

	if (r < 0)
		return r;
	if (!dev->timer) {
		r = evloop_timer_add(dev->loop, timer_event, dev, &dev->timer);
		if (r < 0)
			return r;
		r = evloop_timer_arm(dev->timer, MUX_TICK_NS, MUX_TICK_NS);
		if (r < 0)
			return r;
	}
	for (unsigned b = 0; b < MUX_BUCKETS; b++)
		for (struct mconn *m = dev->buckets[b]; m; m = m->hnext)
			conn_update_events(m);
	notifier_signal(&dev->wake);
	return 0;
}

/* Forget every connection: host ends closed, pending connects failed. */
static void mux_forget_all(struct vsock_dev *dev)
{
	for (unsigned b = 0; b < MUX_BUCKETS; b++)
		while (dev->buckets[b])
			conn_destroy(dev->buckets[b], -ECONNRESET);
	dev->rx_head = dev->rx_tail = NULL;
	dev->rst_count = 0;
	dev->rst_head = 0;
}

static void fail_requests(struct vsock_dev *dev, int err)
{
	struct vsock_req *list;

	pthread_mutex_lock(&dev->lock);
	list = dev->reqs;
	dev->reqs = NULL;
	dev->reqs_tail = &dev->reqs;
	pthread_mutex_unlock(&dev->lock);
	while (list) {
		struct vsock_req *req = list;

		list = req->next;
		stream_close(req->dev_end);
		req->done(req->opaque, err, 0);
		free(req);
	}
}

void vsock_mux_reset(struct vsock_dev *dev)
{
	/* Synchronous: on return none of our callbacks runs; then the wake alone comes back. */
	mux_unwatch(dev);
	mux_forget_all(dev);
	dev->active = false;
	dev->broken = false;
	/*
	 * event_pending stays: a restore loads the device, then the transport
	 * resets it before it applies the queues; the TRANSPORT_RESET owed to the
	 * guest goes out once the driver runs again (at worst one spurious event
	 * after a guest's own reset, which costs it nothing: it has no connection).
	 */
	if (!dev->paused && mux_watch_wake(dev) < 0)
		pr_err("%s: cannot watch the wake notifier", dev->vdev->id);
}

int vsock_mux_activate(struct vsock_dev *dev)
{
	struct virtio_dev *vdev = dev->vdev;

	dev->seqpacket = virtio_has_feature(vdev, VIRTIO_VSOCK_F_SEQPACKET);
	dev->broken = false;
	if (virtq_is_enabled(&vdev->vqs[VSOCK_RXQ]))
		virtq_disable_notify(&vdev->vqs[VSOCK_RXQ]);
	dev->active = true;
	if (dev->paused)
		return 0;
	return mux_watch(dev);
}

void vsock_mux_queue_notify(struct vsock_dev *dev, unsigned q)
{
	if (q == VSOCK_TXQ) {
		take_requests(dev);
		tx_drain(dev);
		rx_drain(dev);
	} else if (q == VSOCK_RXQ) {
		/* While we are not stalled the driver need not kick after refilling. */
		virtq_disable_notify(&dev->vdev->vqs[VSOCK_RXQ]);
		rx_drain(dev);
	} else if (q == VSOCK_EVQ) {
		event_drain(dev);
	}
}

int vsock_mux_pause(struct vsock_dev *dev)
{
	mux_unwatch(dev);
	dev->paused = true;
	return 0;
}

int vsock_mux_resume(struct vsock_dev *dev)
{
	dev->paused = false;
	return dev->active ? mux_watch(dev) : mux_watch_wake(dev);
}

void vsock_mux_transport_reset(struct vsock_dev *dev)
{
	mux_forget_all(dev);
	dev->event_pending = true;
	if (dev->active && !dev->paused)
		notifier_signal(&dev->wake);
}

void vsock_mux_set_fallback(struct vsock_dev *dev, vsock_guest_connect_fn *fn, void *opaque)
{
	dev->fallback = fn;
	dev->fallback_opaque = opaque;
}

uint64_t vsock_mux_guest_cid(const struct vsock_dev *dev)
{
	return dev->guest_cid;
}

struct evloop *vsock_mux_loop(const struct vsock_dev *dev)
{
	return dev->loop;
}

void vsock_mux_get_stats(const struct vsock_dev *dev, struct vsock_mux_stats *st)
{
	*st = dev->stats;
	st->conns = dev->nconns;
}

int vsock_mux_create(struct virtio_dev *vdev, struct evloop *loop, uint64_t guest_cid,
		     struct vsock_dev **out)
{
	struct vsock_dev *dev = calloc(1, sizeof(*dev));
	int r = -ENOMEM;

	if (!dev)
		return -ENOMEM;
	dev->vdev = vdev;
	dev->loop = loop;
	dev->guest_cid = guest_cid;
	dev->next_port = MUX_FIRST_PORT;
	dev->reqs_tail = &dev->reqs;
	pthread_mutex_init(&dev->lock, NULL);
	dev->wake.fd = -1;
	dev->bounce = malloc(MUX_STAGE);
	if (!dev->bounce)
		goto err;
	if (virtq_chain_init(&dev->rx_chain, MUX_QUEUE_SIZE) ||
	    virtq_chain_init(&dev->tx_chain, MUX_QUEUE_SIZE) ||
	    virtq_chain_init(&dev->ev_chain, MUX_QUEUE_SIZE))
		goto err;
	r = notifier_init(&dev->wake, NOTIFIER_COUNTER);
	if (r < 0)
		goto err;
	r = mux_watch_wake(dev);
	if (r < 0)
		goto err;
	*out = dev;
	return 0;
err:
	vsock_mux_destroy(dev);
	return r;
}

void vsock_mux_destroy(struct vsock_dev *dev)
{
	if (!dev)
		return;
	mux_unwatch(dev);
	mux_forget_all(dev);
	fail_requests(dev, -ECONNRESET);
	notifier_destroy(&dev->wake);
	virtq_chain_destroy(&dev->rx_chain);
	virtq_chain_destroy(&dev->tx_chain);
	virtq_chain_destroy(&dev->ev_chain);
	free(dev->bounce);
	pthread_mutex_destroy(&dev->lock);
	free(dev);
}
