/*
 * virtio-net over a tap (virtio 1.2, 5.1). See virtio_net.h.
 *
 * TX: the transmit queue is drained on a kick; each chain's header is copied
 * out once, checked against the negotiated features, and written to the tap
 * together with the frame straight from guest memory (writev). A bad frame is
 * dropped and its buffer returned; a chain with device-writable buffers is
 * malformed and the device asks for a reset.
 *
 * RX: one frame is read from the tap into a bounce buffer, then copied into
 * one receive chain, or several with MRG_RXBUF. When the guest has no buffer
 * (or too few for a merged frame) the frame stays in the bounce buffer, the
 * tap fd is taken off the poll set, and rx kicks are re-enabled; the guest's
 * next rx kick puts it back.
 */
#include "devices/virtio_net.h"

#include <errno.h>
#include <net/if.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "channel/evloop.h"
#include "devices/tap.h"
#include "vmm/snapshot/format.h"
#include "vmm/vm.h"

#define NET_HDR_LEN ((uint32_t)sizeof(struct virtio_net_hdr))
/* Room for the largest frame the tap hands over (64 KiB GSO) with its header, and slack. */
#define NET_RX_BUF_SIZE (128u * 1024u)
/* Frames per tap readiness callback, so TX and other devices get their turn. */
#define NET_RX_BUDGET 64u
/* Publish the used ring at least this often while draining a long TX burst. */
#define NET_TX_BATCH 32u
/* Chains per TX callback; the rest of a long burst comes after the other callbacks. */
#define NET_TX_BUDGET 64u
/* Region splits can make more iovecs than descriptors. */
#define NET_CHAIN_IOV (2u * VIRTIO_NET_QUEUE_SIZE)

#define ALL_OFFLOADS (TAP_OFFLOAD_CSUM | TAP_OFFLOAD_TSO4 | TAP_OFFLOAD_TSO6 | \
		      TAP_OFFLOAD_ECN | TAP_OFFLOAD_UFO)

struct net_dev {
	struct virtio_dev *vdev;
	int fd;
	bool is_tap;            /* false: a test stand-in, no tun ioctls */
	char ifname[IFNAMSIZ];
	uint8_t mac[6];
	unsigned tap_offloads;  /* what the tap accepts (probed at creation) */
	unsigned offloads;      /* applied at activate */

	/* Owned by the event-loop thread while active and not paused. */
	bool active;
	bool paused;
	bool mrg_rxbuf;
	bool rx_stalled;        /* waiting for the guest's rx kick; tap not polled for input */
	bool tx_blocked;        /* the tap would block: waiting for EPOLLOUT */
	bool tap_dead;          /* the tap reported an error or hang-up */
	bool broken;            /* a queue failed; needs_reset was asked once */
	/*
	 * The tap's registration has one owner: the thread running the device's
	 * lifecycle (activate, reset, pause, resume, destroy) adds and removes it.
	 * The loop thread only changes its event mask, from the device's callbacks.
	 * reg_lock covers the pointer and the mask, so a callback that runs before
	 * evloop_fd_add() has returned finds them published; it is never held
	 * across a removal, which waits for those callbacks.
	 */
	pthread_mutex_t reg_lock;
	struct evloop_fd *reg;
	uint32_t reg_events;
	struct evloop_op kick_op;

	uint8_t *rx_buf;
	size_t rx_pending;      /* bytes of one frame (header included) waiting for buffers */
	unsigned rx_n;          /* chains the pending frame has filled so far (MRG_RXBUF) */
	uint32_t rx_off;        /* bytes of it copied so far */
	struct virtq_chain rx_first, rx_next, tx_chain;
	uint16_t *rx_heads;
	uint32_t *rx_lens;
	struct iovec *tx_iov;   /* NET_CHAIN_IOV + 1 */

	/* Frames dropped (atomic); sent and received ones are in vdev->counters. */
	uint64_t tx_dropped, rx_dropped;
};

static atomic_uint net_instances;

static struct net_dev *to_net(const struct virtio_dev *vdev)
{
	return vdev->priv;
}

/* ---- poll set -------------------------------------------------------------- */

static void net_tap_event(void *opaque, int fd, uint32_t events);

static uint32_t net_wanted_events(const struct net_dev *net)
{
	uint32_t ev = 0;

	/* Gone: edge-triggered and nothing asked, so its hang-up is not reported over and over. */
	if (net->tap_dead)
		return EPOLLET;
	if (net->broken)
		return 0;
	if (!net->rx_stalled)
		ev |= EPOLLIN;
	if (net->tx_blocked)
		ev |= EPOLLOUT;
	return ev;
}

/* Loop thread (or the lifecycle thread while nothing is registered). */
static void net_update_events(struct net_dev *net)
{
	uint32_t ev = net_wanted_events(net);
	int r = 0;

	pthread_mutex_lock(&net->reg_lock);
	if (net->reg && ev != net->reg_events) {
		r = evloop_fd_modify(net->reg, ev);
		if (r == 0)
			net->reg_events = ev;
	}
	pthread_mutex_unlock(&net->reg_lock);
	if (r < 0)
		pr_err("%s: cannot change the tap's poll events: %s", net->vdev->id, strerror(-r));
}

/* Lifecycle thread. */
static int net_register(struct net_dev *net)
{
	struct vm *vm = net->vdev->vm;
	uint32_t ev = net_wanted_events(net);
	int r = 0;

	if (net->tap_dead)
		return 0;
	pthread_mutex_lock(&net->reg_lock);
	if (!net->reg) {
		r = evloop_fd_add(vm->loop, net->fd, ev, net_tap_event, net, &net->reg);
		if (r == 0)
			net->reg_events = ev;
	}
	pthread_mutex_unlock(&net->reg_lock);
	if (r < 0)
		pr_err("%s: cannot watch the tap: %s", net->vdev->id, strerror(-r));
	return r;
}

/*
 * Lifecycle thread, kicks unwatched. On return none of our callbacks runs or
 * will run: the tap's first (its callback may queue the catch-up op), then
 * the op (which may queue itself again, but finds the tap gone).
 */
static void net_unregister(struct net_dev *net)
{
	struct evloop_fd *reg;

	pthread_mutex_lock(&net->reg_lock);
	reg = net->reg;
	net->reg = NULL;
	net->reg_events = 0;
	pthread_mutex_unlock(&net->reg_lock);
	evloop_fd_remove(reg);
	evloop_op_cancel(&net->kick_op);
}

/*
 * Loop thread: the tap failed or hung up. Stop polling it for good, without
 * removing the registration (its owner does, at reset or destroy): a level-
 * triggered ERR/HUP would be reported for ever, an edge-triggered one once.
 */
static void net_tap_gone(struct net_dev *net, const char *why)
{
	/* Once per device: the tap never comes back. */
	if (!net->tap_dead)
		pr_err("%s: tap %s: %s; the link is down", net->vdev->id, net->ifname, why);
	net->tap_dead = true;
	net->tx_blocked = false;
	net_update_events(net);
}

/* ---- errors ---------------------------------------------------------------- */

/* A malformed ring or chain: ask the driver for a reset, once, and stop touching the queues. */
static void net_queue_error(struct net_dev *net, unsigned q, int err, const char *why)
{
	struct virtio_dev *vdev = net->vdev;

	if (net->broken)
		return;
	net->broken = true;
	pr_guest_err("%s: %s queue: %s (%s); the device needs a reset", vdev->id,
		     q == VIRTIO_NET_RXQ ? "rx" : "tx", why, strerror(-err));
	net_update_events(net);
	if (vdev->needs_reset)
		vdev->needs_reset(vdev);
}

static void net_drop(struct net_dev *net, bool tx, const char *why, uint32_t len)
{
	virtio_count(tx ? &net->tx_dropped : &net->rx_dropped, 1);
	virtio_count(&net->vdev->counters.errors, 1);
	pr_guest_err("%s: %s: dropped a %u-byte frame: %s", net->vdev->id, tx ? "tx" : "rx", len, why);
}

static void net_signal(struct net_dev *net, unsigned q)
{
	struct virtio_dev *vdev = net->vdev;

	virtq_flush(&vdev->vqs[q]);
	if (virtq_needs_notify(&vdev->vqs[q]) && vdev->signal_used)
		vdev->signal_used(vdev, q);
}

/* ---- TX ---------------------------------------------------------------------- */

/* Why a transmit header cannot go to the tap, or NULL when it can. */
static const char *net_tx_hdr_error(const struct virtio_dev *vdev, const struct virtio_net_hdr *h,
				    uint32_t frame_len)
{
	uint8_t gso = h->gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
	uint32_t csum_end = (uint32_t)le16_to_cpu(h->csum_start) + le16_to_cpu(h->csum_offset) + 2;

	if (h->flags & ~VIRTIO_NET_HDR_F_NEEDS_CSUM)
		return "unknown header flags";
	if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		if (!virtio_has_feature(vdev, VIRTIO_NET_F_CSUM))
			return "partial checksum without VIRTIO_NET_F_CSUM";
		if (csum_end > frame_len)
			return "checksum offsets beyond the frame";
	}
	if (le16_to_cpu(h->hdr_len) > frame_len)
		return "hdr_len beyond the frame";
	if (h->gso_type == VIRTIO_NET_HDR_GSO_NONE)
		return NULL;
	if ((h->gso_type & VIRTIO_NET_HDR_GSO_ECN) && !virtio_has_feature(vdev, VIRTIO_NET_F_HOST_ECN))
		return "GSO ECN not negotiated";
	switch (gso) {
	case VIRTIO_NET_HDR_GSO_TCPV4:
		if (!virtio_has_feature(vdev, VIRTIO_NET_F_HOST_TSO4))
			return "TSO4 not negotiated";
		break;
	case VIRTIO_NET_HDR_GSO_TCPV6:
		if (!virtio_has_feature(vdev, VIRTIO_NET_F_HOST_TSO6))
			return "TSO6 not negotiated";
		break;
	case VIRTIO_NET_HDR_GSO_UDP:
		if (!virtio_has_feature(vdev, VIRTIO_NET_F_HOST_UFO))
			return "UFO not negotiated";
		break;
	default:
		return "unknown GSO type";
	}
	if (!(h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM))
		return "GSO without a partial checksum";
	if (!le16_to_cpu(h->gso_size))
		return "GSO with gso_size 0";
	return NULL;
}

enum { TX_DONE, TX_AGAIN, TX_MALFORMED };

/* Send one chain's frame. TX_AGAIN: the tap is full, keep the chain. */
static int net_tx_one(struct net_dev *net, const struct virtq_chain *c)
{
	struct virtio_net_hdr hdr;
	uint32_t frame_len;
	const char *why;
	size_t skip = NET_HDR_LEN, total;
	unsigned n = 0;
	ssize_t w;

	if (c->nr_in)
		return TX_MALFORMED;
	if (c->out_len < NET_HDR_LEN) {
		net_drop(net, true, "shorter than the virtio-net header", c->out_len);
		return TX_DONE;
	}
	frame_len = c->out_len - NET_HDR_LEN;
	if (frame_len < VIRTIO_NET_ETH_HLEN) {
		net_drop(net, true, "shorter than an Ethernet header", frame_len);
		return TX_DONE;
	}
	if (frame_len > VIRTIO_NET_MAX_FRAME) {
		net_drop(net, true, "oversized", frame_len);
		return TX_DONE;
	}
	/* Copied once: the guest may rewrite its copy while we look at ours. */
	virtq_chain_read(c, 0, &hdr, NET_HDR_LEN);
	why = net_tx_hdr_error(net->vdev, &hdr, frame_len);
	if (why) {
		net_drop(net, true, why, frame_len);
		return TX_DONE;
	}
	hdr.num_buffers = 0;

	net->tx_iov[n++] = (struct iovec){ .iov_base = &hdr, .iov_len = NET_HDR_LEN };
	for (unsigned i = 0; i < c->nr_out; i++) {
		size_t len = c->out[i].iov_len;

		if (skip >= len) {
			skip -= len;
			continue;
		}
		net->tx_iov[n++] = (struct iovec){
			.iov_base = (uint8_t *)c->out[i].iov_base + skip,
			.iov_len = len - skip,
		};
		skip = 0;
	}
	total = (size_t)NET_HDR_LEN + frame_len;
	do
		w = writev(net->fd, net->tx_iov, (int)n);
	while (w < 0 && errno == EINTR);
	if (w < 0 && (errno == EAGAIN || errno == ENOBUFS))
		return TX_AGAIN;
	if (w < 0) {
		/* EINVAL: the tap refused the header; EIO: link down. Either way the frame is lost. */
		net_drop(net, true, strerror(errno), frame_len);
		return TX_DONE;
	}
	if ((size_t)w != total) {
		net_drop(net, true, "short write to the tap", frame_len);
		return TX_DONE;
	}
	virtio_count(&net->vdev->counters.requests, 1);
	virtio_count(&net->vdev->counters.out_ops, 1);
	virtio_count(&net->vdev->counters.out_bytes, frame_len);
	return TX_DONE;
}

static void net_kick_op_done(struct evloop_op *op, int result, void *opaque);

/* Loop thread: run the catch-up (both queues) after the callbacks ready now. */
static void net_catch_up(struct net_dev *net)
{
	if (evloop_op_start(net->vdev->vm->loop, &net->kick_op, net_kick_op_done, net) == 0)
		evloop_op_complete(&net->kick_op, 0);
}

static void net_tx_drain(struct net_dev *net)
{
	struct virtio_dev *vdev = net->vdev;
	struct virtq *vq = &vdev->vqs[VIRTIO_NET_TXQ];
	unsigned batch = 0, sent = 0;
	int r, res;

	if (!net->active || net->paused || net->broken || net->tx_blocked)
		return;
	do {
		virtq_disable_notify(vq);
		while ((r = virtq_pop(vq, &net->tx_chain)) > 0) {
			if (net->tap_dead) {
				net_drop(net, true, "the tap is gone", net->tx_chain.out_len);
				res = TX_DONE;
			} else {
				res = net_tx_one(net, &net->tx_chain);
			}
			if (res == TX_MALFORMED) {
				net_queue_error(net, VIRTIO_NET_TXQ, -EBADMSG,
						"transmit chain with device-writable buffers");
				goto out;
			}
			if (res == TX_AGAIN) {
				/* Try this chain again when the tap drains; no kicks meanwhile. */
				virtq_unpop(vq, 1);
				net->tx_blocked = true;
				net_update_events(net);
				goto out;
			}
			r = virtq_push(vq, net->tx_chain.head, 0);
			if (r < 0) {
				net_queue_error(net, VIRTIO_NET_TXQ, r, "cannot return a buffer");
				goto out;
			}
			if (++batch == NET_TX_BATCH) {
				net_signal(net, VIRTIO_NET_TXQ);
				batch = 0;
			}
			if (++sent == NET_TX_BUDGET) {
				/* Kicks stay off until the rest is done. */
				net_catch_up(net);
				goto out;
			}
		}
	} while (r == 0 && virtq_enable_notify(vq));
	if (r < 0 && r != -ENODEV)
		net_queue_error(net, VIRTIO_NET_TXQ, r, "malformed ring");
out:
	net_signal(net, VIRTIO_NET_TXQ);
}

/* ---- RX ---------------------------------------------------------------------- */

/* Fix up a header the tap wrote for what the driver accepted; NULL when the frame may go in. */
static const char *net_rx_hdr_fixup(const struct virtio_dev *vdev, struct virtio_net_hdr *h)
{
	uint8_t gso = h->gso_type & ~VIRTIO_NET_HDR_GSO_ECN;

	if (!virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_CSUM)) {
		/* 5.1.6.4: flags must be zero; the offloads being off, the checksum is complete. */
		if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)
			return "partial checksum, driver has no GUEST_CSUM";
		h->flags = 0;
	}
	if (h->gso_type == VIRTIO_NET_HDR_GSO_NONE)
		return NULL;
	if ((h->gso_type & VIRTIO_NET_HDR_GSO_ECN) && !virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_ECN))
		return "GSO ECN frame, driver has no GUEST_ECN";
	if ((gso == VIRTIO_NET_HDR_GSO_TCPV4 && virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_TSO4)) ||
	    (gso == VIRTIO_NET_HDR_GSO_TCPV6 && virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_TSO6)) ||
	    (gso == VIRTIO_NET_HDR_GSO_UDP && virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_UFO)))
		return NULL;
	return "GSO frame the driver did not accept";
}

enum { RX_DELIVERED, RX_NO_BUFFERS, RX_DROPPED, RX_ERROR };

/*
 * Copy the pending frame into guest buffers. A merged frame that runs out of
 * buffers keeps the chains it has filled (rx_n, rx_off) and goes on from there
 * after the next kick: giving them back would leave avail_event behind the
 * driver's index, and the driver would never kick again.
 */
static int net_rx_deliver(struct net_dev *net)
{
	struct virtio_dev *vdev = net->vdev;
	struct virtq *vq = &vdev->vqs[VIRTIO_NET_RXQ];
	uint32_t total = (uint32_t)net->rx_pending, put;
	le16 nbufs;
	int r;

	if (!net->rx_n) {
		r = virtq_pop(vq, &net->rx_first);
		if (r == 0 || r == -ENODEV)
			return RX_NO_BUFFERS;
		if (r < 0) {
			net_queue_error(net, VIRTIO_NET_RXQ, r, "malformed ring");
			return RX_ERROR;
		}
		if (net->rx_first.nr_out || net->rx_first.in_len < NET_HDR_LEN) {
			net_queue_error(net, VIRTIO_NET_RXQ, -EBADMSG,
					"receive chain with device-readable buffers or smaller than the header");
			return RX_ERROR;
		}
		if (!net->mrg_rxbuf && net->rx_first.in_len < total) {
			/* The driver SHOULD post big enough buffers; keep this one for a smaller frame. */
			virtq_unpop(vq, 1);
			net_drop(net, false, "larger than the receive buffer", total - NET_HDR_LEN);
			return RX_DROPPED;
		}
		/* Without MRG_RXBUF num_buffers is 1 (5.1.6.4); with it, patched below. */
		nbufs = cpu_to_le16(1);
		memcpy(net->rx_buf + offsetof(struct virtio_net_hdr, num_buffers), &nbufs, sizeof(nbufs));
		put = MIN(net->rx_first.in_len, total);
		virtq_chain_write(&net->rx_first, 0, net->rx_buf, put);
		net->rx_heads[0] = net->rx_first.head;
		net->rx_lens[0] = put;
		net->rx_n = 1;
		net->rx_off = put;
	}
	/* 5.1.6.4: with MRG_RXBUF one frame may fill several chains; the header says how many. */
	while (net->rx_off < total) {
		r = virtq_pop(vq, &net->rx_next);
		if (r == 0 || r == -ENODEV)
			return RX_NO_BUFFERS;
		if (r < 0) {
			net_queue_error(net, VIRTIO_NET_RXQ, r, "malformed ring");
			return RX_ERROR;
		}
		if (net->rx_next.nr_out || !net->rx_next.in_len || net->rx_n == VIRTIO_NET_QUEUE_SIZE) {
			net_queue_error(net, VIRTIO_NET_RXQ, -EBADMSG,
					"receive chain with device-readable buffers or empty");
			return RX_ERROR;
		}
		put = MIN(net->rx_next.in_len, total - net->rx_off);
		virtq_chain_write(&net->rx_next, 0, net->rx_buf + net->rx_off, put);
		net->rx_heads[net->rx_n] = net->rx_next.head;
		net->rx_lens[net->rx_n++] = put;
		net->rx_off += put;
	}
	if (net->rx_n > 1) {
		nbufs = cpu_to_le16((uint16_t)net->rx_n);
		virtq_chain_write(&net->rx_first, offsetof(struct virtio_net_hdr, num_buffers), &nbufs,
				  sizeof(nbufs));
	}
	r = 0;
	for (unsigned i = 0; i < net->rx_n && r == 0; i++)
		r = virtq_push(vq, net->rx_heads[i], net->rx_lens[i]);
	net->rx_n = 0;
	net->rx_off = 0;
	if (r < 0) {
		net_queue_error(net, VIRTIO_NET_RXQ, r, "cannot return a buffer");
		return RX_ERROR;
	}
	/* One publish for all of a merged frame's buffers. */
	virtq_flush(vq);
	virtio_count(&net->vdev->counters.requests, 1);
	virtio_count(&net->vdev->counters.in_ops, 1);
	virtio_count(&net->vdev->counters.in_bytes, total - NET_HDR_LEN);
	return RX_DELIVERED;
}

/* Read one frame from the tap into the bounce buffer. 1: got one, 0: nothing there. */
static int net_rx_read(struct net_dev *net)
{
	struct virtio_net_hdr hdr;
	const char *why;
	ssize_t n;

	for (;;) {
		n = read(net->fd, net->rx_buf, NET_RX_BUF_SIZE);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0) {
			net_tap_gone(net, strerror(errno));
			return 0;
		}
		if (n == 0)
			return 0;
		if ((size_t)n < NET_HDR_LEN + VIRTIO_NET_ETH_HLEN) {
			net_drop(net, false, "runt from the tap", (uint32_t)n);
			continue;
		}
		if ((size_t)n >= NET_RX_BUF_SIZE || (size_t)n - NET_HDR_LEN > VIRTIO_NET_MAX_FRAME) {
			net_drop(net, false, "oversized from the tap", (uint32_t)n);
			continue;
		}
		memcpy(&hdr, net->rx_buf, sizeof(hdr));
		why = net_rx_hdr_fixup(net->vdev, &hdr);
		if (why) {
			net_drop(net, false, why, (uint32_t)n - NET_HDR_LEN);
			continue;
		}
		memcpy(net->rx_buf, &hdr, sizeof(hdr));
		net->rx_pending = (size_t)n;
		return 1;
	}
}

static void net_rx_drain(struct net_dev *net)
{
	struct virtq *vq = &net->vdev->vqs[VIRTIO_NET_RXQ];
	bool delivered = false;

	if (!net->active || net->paused || net->broken)
		return;
	for (unsigned budget = 0; budget < NET_RX_BUDGET && !net->rx_stalled;) {
		if (!net->rx_pending) {
			if (net->tap_dead || !net_rx_read(net))
				break;
			budget++;
		}
		switch (net_rx_deliver(net)) {
		case RX_DELIVERED:
			delivered = true;
			/* fall through */
		case RX_DROPPED:
			net->rx_pending = 0;
			break;
		case RX_NO_BUFFERS:
			/* Ask for a kick; buffers that raced in mean try again. */
			if (virtq_is_enabled(vq) && virtq_enable_notify(vq)) {
				virtq_disable_notify(vq);
				break;
			}
			net->rx_stalled = true;
			net_update_events(net);
			break;
		default:
			goto out;
		}
	}
out:
	if (delivered)
		net_signal(net, VIRTIO_NET_RXQ);
}

static void net_rx_kick(struct net_dev *net)
{
	struct virtq *vq = &net->vdev->vqs[VIRTIO_NET_RXQ];

	if (!net->active || net->paused || net->broken)
		return;
	if (net->rx_stalled) {
		net->rx_stalled = false;
		/* While we are not stalled the driver need not kick after refilling. */
		virtq_disable_notify(vq);
		net_rx_drain(net);
		net_update_events(net);
	}
}

/* ---- event loop ------------------------------------------------------------- */

static void net_tap_event(void *opaque, int fd, uint32_t events)
{
	struct net_dev *net = opaque;

	(void)fd;
	if (events & (EPOLLERR | EPOLLHUP)) {
		net_tap_gone(net, events & EPOLLERR ? "error" : "hang-up");
		net_tx_drain(net);  /* what was waiting for the tap is dropped */
		return;
	}
	if ((events & EPOLLOUT) && net->tx_blocked) {
		net->tx_blocked = false;
		net_update_events(net);
		net_tx_drain(net);
	}
	if (events & EPOLLIN)
		net_rx_drain(net);
}

/* After resume: catch up with kicks that may have come while paused. */
static void net_kick_op_done(struct evloop_op *op, int result, void *opaque)
{
	struct net_dev *net = opaque;

	(void)op;
	(void)result;
	net_tx_drain(net);
	if (net->rx_stalled)
		net_rx_kick(net);
	else
		net_rx_drain(net);
}

/* ---- virtio_dev_ops --------------------------------------------------------- */

static void net_queue_notify(struct virtio_dev *vdev, unsigned q)
{
	struct net_dev *net = to_net(vdev);

	if (q == VIRTIO_NET_TXQ)
		net_tx_drain(net);
	else if (q == VIRTIO_NET_RXQ)
		net_rx_kick(net);
}

static unsigned net_offloads_for(const struct virtio_dev *vdev, unsigned supported)
{
	unsigned o = 0;

	/* TUN_F_TSO* and UFO mean nothing without TUN_F_CSUM (and the kernel refuses them). */
	if (!virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_CSUM))
		return 0;
	o |= TAP_OFFLOAD_CSUM;
	if (virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_TSO4))
		o |= TAP_OFFLOAD_TSO4;
	if (virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_TSO6))
		o |= TAP_OFFLOAD_TSO6;
	if (virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_ECN) && (o & (TAP_OFFLOAD_TSO4 | TAP_OFFLOAD_TSO6)))
		o |= TAP_OFFLOAD_ECN;
	if (virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_UFO))
		o |= TAP_OFFLOAD_UFO;
	return o & supported;
}

static int net_activate(struct virtio_dev *vdev)
{
	struct net_dev *net = to_net(vdev);
	unsigned offloads = net_offloads_for(vdev, net->tap_offloads);
	int r;

	if (net->is_tap) {
		r = tap_set_offload(net->fd, offloads);
		if (r < 0) {
			pr_err("%s: tap %s refused offloads %#x: %s", vdev->id, net->ifname, offloads,
			       strerror(-r));
			return r;
		}
	}
	net->offloads = offloads;
	net->mrg_rxbuf = virtio_has_feature(vdev, VIRTIO_NET_F_MRG_RXBUF);
	net->rx_stalled = false;
	net->tx_blocked = false;
	net->broken = false;
	net->rx_pending = 0;
	net->rx_n = 0;
	net->rx_off = 0;
	if (virtq_is_enabled(&vdev->vqs[VIRTIO_NET_RXQ]))
		virtq_disable_notify(&vdev->vqs[VIRTIO_NET_RXQ]);
	net->active = true;
	if (net->paused)
		return 0;
	r = net_register(net);
	if (r < 0)
		net->active = false;
	return r;
}

/* The receive queue went live after DRIVER_OK: poll the tap for it (the device is paused). */
static int net_queue_enable(struct virtio_dev *vdev, unsigned q)
{
	struct net_dev *net = to_net(vdev);

	if (q == VIRTIO_NET_RXQ) {
		net->rx_stalled = false;
		/* While we are not stalled the driver need not kick after refilling. */
		virtq_disable_notify(&vdev->vqs[VIRTIO_NET_RXQ]);
	}
	return 0;
}

/* The driver reset queue q alone (the device is paused): forget what was half done on it. */
static void net_queue_reset(struct virtio_dev *vdev, unsigned q)
{
	struct net_dev *net = to_net(vdev);

	if (q == VIRTIO_NET_TXQ) {
		net->tx_blocked = false;   /* the chain kept for the tap went with the ring */
		return;
	}
	/* A merged frame partly written into the old ring cannot be finished in the new one. */
	if (net->rx_n) {
		virtio_count(&net->rx_dropped, 1);
		net->rx_pending = 0;
		net->rx_n = 0;
		net->rx_off = 0;
	}
	net->rx_stalled = false;
}

static void net_reset(struct virtio_dev *vdev)
{
	struct net_dev *net = to_net(vdev);

	net_unregister(net);
	net->active = false;
	net->rx_stalled = false;
	net->tx_blocked = false;
	net->broken = false;
	net->rx_pending = 0;
	net->rx_n = 0;
	net->rx_off = 0;
	if (net->is_tap && net->offloads && tap_set_offload(net->fd, 0) < 0)
		pr_info("%s: cannot switch the tap's offloads off", vdev->id);
	net->offloads = 0;
}

static int net_pause(struct virtio_dev *vdev)
{
	struct net_dev *net = to_net(vdev);

	/* Synchronous: on return the loop is not in our callbacks and will not enter them. */
	net_unregister(net);
	net->paused = true;
	/*
	 * A merged frame half written into the receive ring holds chains the driver
	 * has not got back: give them back (nothing was published), keep the frame,
	 * and write it again after resume. Nothing stays in flight across a pause,
	 * so a snapshot taken now has none.
	 */
	if (net->rx_n) {
		virtq_unpop(&vdev->vqs[VIRTIO_NET_RXQ], (uint16_t)net->rx_n);
		net->rx_n = 0;
		net->rx_off = 0;
	}
	return 0;
}

static int net_resume(struct virtio_dev *vdev)
{
	struct net_dev *net = to_net(vdev);
	int r;

	net->paused = false;
	if (!net->active)
		return 0;
	r = net_register(net);
	if (r < 0)
		return r;
	r = evloop_op_start(vdev->vm->loop, &net->kick_op, net_kick_op_done, net);
	if (r == 0)
		evloop_op_complete(&net->kick_op, 0);
	return r == -EBUSY ? 0 : r;
}

/* ---- snapshots: what the guest knows of this device beyond its queues ------------ */

struct net_snap {
	uint8_t mac[6];
	uint32_t offloads;   /* TAP_OFFLOAD_* the negotiated features turned on */
};

#define N struct net_snap
static const struct snap_field net_snap_fields[] = {
	SNAP_ARR(N, mac),
	SNAP_UINT_R(N, offloads, 0, ALL_OFFLOADS),
};
#undef N
const struct snap_desc virtio_net_snap_desc =
	SNAP_DESC(struct net_snap, "virtio-net", 1, net_snap_fields, NULL);

/* Paused: nothing in flight (pause gave back a half-delivered frame's chains). */
static int net_save(struct virtio_dev *vdev, struct snap_writer *w)
{
	struct net_dev *net = to_net(vdev);
	struct net_snap st = { .offloads = net->offloads };

	if (!net->paused || net->rx_n)
		return -EBUSY;
	memcpy(st.mac, net->mac, sizeof(st.mac));
	return snap_write(w, &virtio_net_snap_desc, &st);
}

static void format_mac(const uint8_t mac[6], char *buf, size_t len)
{
	snprintf(buf, len, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
		 mac[5]);
}

/*
 * The guest keeps the MAC it read and the offloads it negotiated: the tap of
 * the new process must match. The frame that was waiting in the old
 * process's bounce buffer is lost, as a frame on a wire may be.
 */
static int net_load(struct virtio_dev *vdev, struct snap_reader *r, int node)
{
	struct net_dev *net = to_net(vdev);
	struct net_snap st = { 0 };
	char was[24], now[24];
	int ret = snap_read(r, node, &virtio_net_snap_desc, &st);

	if (ret)
		return ret;
	if (memcmp(st.mac, net->mac, sizeof(st.mac))) {
		format_mac(st.mac, was, sizeof(was));
		format_mac(net->mac, now, sizeof(now));
		return snap_fail(r, node, "mac: the snapshot's guest has %s, this device %s", was, now);
	}
	if (st.offloads & ~net->tap_offloads)
		return snap_fail(r, node, "offloads: the snapshot's guest uses tap offloads %#x, tap %s "
				 "takes only %#x", st.offloads, net->ifname, net->tap_offloads);
	return 0;
}

static void net_cfg_read(struct virtio_dev *vdev, uint32_t off, void *data, uint32_t len)
{
	struct net_dev *net = to_net(vdev);
	struct virtio_net_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	memcpy(cfg.mac, net->mac, sizeof(cfg.mac));
	cfg.status = cpu_to_le16(VIRTIO_NET_S_LINK_UP);
	cfg.max_virtqueue_pairs = cpu_to_le16(1);
	cfg.mtu = cpu_to_le16(1500);
	virtio_dev_cfg_copy(&cfg, sizeof(cfg), off, data, len);
}

static void net_cfg_write(struct virtio_dev *vdev, uint32_t off, const void *data, uint32_t len)
{
	/* Read-only for a VERSION_1 driver (the MAC is writable only through a control queue). */
	(void)data;
	pr_guest_err("%s: ignored a %u-byte config write at %u", vdev->id, len, off);
}

static void net_free(struct net_dev *net)
{
	if (!net)
		return;
	if (net->fd >= 0)
		close(net->fd);
	virtq_chain_destroy(&net->rx_first);
	virtq_chain_destroy(&net->rx_next);
	virtq_chain_destroy(&net->tx_chain);
	free(net->rx_buf);
	free(net->rx_heads);
	free(net->rx_lens);
	free(net->tx_iov);
	pthread_mutex_destroy(&net->reg_lock);
	free(net);
}

static void net_destroy(struct virtio_dev *vdev)
{
	struct net_dev *net = to_net(vdev);

	if (!net)
		return;
	net_unregister(net);
	net_free(net);
	vdev->priv = NULL;
}

/* vm.counters: the names the API gave before the generic counters (Cloud Hypervisor says rx_frames). */
static const struct virtio_dev_counter_names net_counter_names = {
	"rx_packets", "rx_bytes", "tx_packets", "tx_bytes",
};

static const struct virtio_dev_ops virtio_net_ops = {
	.name = "virtio-net",
	.device_id = VIRTIO_ID_NET,
	.reset = net_reset,
	.activate = net_activate,
	.queue_enable = net_queue_enable,
	.queue_reset = net_queue_reset,
	.queue_notify = net_queue_notify,
	.cfg_read = net_cfg_read,
	.cfg_write = net_cfg_write,
	.pause = net_pause,
	.resume = net_resume,
	.snap_save = net_save,
	.snap_load = net_load,
	.destroy = net_destroy,
	.counter_names = &net_counter_names,
};

/* ---- creation --------------------------------------------------------------- */

static int parse_mac(const char *s, size_t len, uint8_t mac[6])
{
	unsigned v[6];
	char buf[18];
	int used = 0;

	if (len != 17)
		return -EINVAL;
	memcpy(buf, s, len);
	buf[len] = '\0';
	for (size_t i = 0; i < len; i++) {
		bool sep = i % 3 == 2;

		if (sep ? buf[i] != ':' : !((buf[i] >= '0' && buf[i] <= '9') ||
					  ((buf[i] | 0x20) >= 'a' && (buf[i] | 0x20) <= 'f')))
			return -EINVAL;
	}
	if (sscanf(buf, "%2x:%2x:%2x:%2x:%2x:%2x%n", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
		   &used) != 6 || used != 17)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	return 0;
}

/* A stable locally administered unicast address derived from the tap's name (FNV-1a). */
static void default_mac(const char *name, uint8_t mac[6])
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (const char *p = "vmm-net:"; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
	for (const char *p = name; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
	mac[0] = 0x02;  /* locally administered, unicast */
	for (int i = 1; i < 6; i++)
		mac[i] = (uint8_t)(h >> (8 * (i - 1)));
}

struct net_args {
	char tap[IFNAMSIZ];
	bool have_tap, have_mac;
	uint8_t mac[6];
};

#define NET_USAGE "tap=NAME[,mac=MAC]"

static int parse_args(const char *args, bool want_tap, struct net_args *a, char *err, size_t errlen)
{
	const char *p = args;

	memset(a, 0, sizeof(*a));
	while (*p) {
		const char *end = strchr(p, ','), *eq;
		size_t len = end ? (size_t)(end - p) : strlen(p), klen, vlen;
		const char *val;

		eq = memchr(p, '=', len);
		if (!eq) {
			snprintf(err, errlen, "'%.*s' is not key=value (expected %s)", (int)len, p,
				 NET_USAGE);
			return -EINVAL;
		}
		klen = (size_t)(eq - p);
		val = eq + 1;
		vlen = len - klen - 1;
		if (klen == 3 && !strncmp(p, "tap", 3) && want_tap) {
			if (a->have_tap) {
				snprintf(err, errlen, "tap= given twice");
				return -EINVAL;
			}
			if (!vlen || vlen >= IFNAMSIZ) {
				snprintf(err, errlen, "tap=%.*s: an interface name is 1 to %d characters",
					 (int)vlen, val, IFNAMSIZ - 1);
				return -EINVAL;
			}
			memcpy(a->tap, val, vlen);
			a->tap[vlen] = '\0';
			a->have_tap = true;
		} else if (klen == 3 && !strncmp(p, "mac", 3)) {
			if (a->have_mac) {
				snprintf(err, errlen, "mac= given twice");
				return -EINVAL;
			}
			if (parse_mac(val, vlen, a->mac) < 0) {
				snprintf(err, errlen, "mac=%.*s: expected six hex bytes like 02:00:00:12:34:56",
					 (int)MIN(vlen, 40), val);
				return -EINVAL;
			}
			if (a->mac[0] & 1) {
				snprintf(err, errlen, "mac=%.*s: a multicast address cannot be a NIC's",
					 (int)vlen, val);
				return -EINVAL;
			}
			if (!(a->mac[0] | a->mac[1] | a->mac[2] | a->mac[3] | a->mac[4] | a->mac[5])) {
				snprintf(err, errlen, "mac=%.*s: the all-zero address is not valid",
					 (int)vlen, val);
				return -EINVAL;
			}
			a->have_mac = true;
		} else {
			snprintf(err, errlen, "unknown key '%.*s' (expected %s)", (int)MIN(klen, 40), p,
				 NET_USAGE);
			return -EINVAL;
		}
		if (!end)
			break;
		p = end + 1;
		if (!*p) {
			snprintf(err, errlen, "trailing ',' in '%s'", args);
			return -EINVAL;
		}
	}
	if (want_tap && !a->have_tap) {
		snprintf(err, errlen, "tap=NAME is required (expected %s)", NET_USAGE);
		return -EINVAL;
	}
	return 0;
}

static int net_setup(struct vm *vm, struct virtio_dev *vdev, struct net_dev *net, const struct net_args *a,
		     char *err, size_t errlen)
{
	unsigned idx = atomic_fetch_add(&net_instances, 1);
	uint64_t f = 0;

	/* The transport names devices by kind and position; a name of our own only if it did not. */
	if (!vdev->id[0])
		snprintf(vdev->id, sizeof(vdev->id), "net%u", idx);
	if (a->have_mac)
		memcpy(net->mac, a->mac, sizeof(net->mac));
	else
		default_mac(net->ifname, net->mac);

	net->vdev = vdev;
	net->rx_buf = malloc(NET_RX_BUF_SIZE);
	net->rx_heads = calloc(VIRTIO_NET_QUEUE_SIZE, sizeof(*net->rx_heads));
	net->rx_lens = calloc(VIRTIO_NET_QUEUE_SIZE, sizeof(*net->rx_lens));
	net->tx_iov = calloc(NET_CHAIN_IOV + 1, sizeof(*net->tx_iov));
	if (!net->rx_buf || !net->rx_heads || !net->rx_lens || !net->tx_iov ||
	    virtq_chain_init(&net->rx_first, NET_CHAIN_IOV) < 0 ||
	    virtq_chain_init(&net->rx_next, NET_CHAIN_IOV) < 0 ||
	    virtq_chain_init(&net->tx_chain, NET_CHAIN_IOV) < 0) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}

	f |= 1ull << VIRTIO_NET_F_MAC | 1ull << VIRTIO_NET_F_STATUS | 1ull << VIRTIO_NET_F_MRG_RXBUF;
	f |= 1ull << VIRTIO_F_EVENT_IDX | 1ull << VIRTIO_F_INDIRECT_DESC;
	/* The tap takes checksum and segmentation offloads on write whatever its own offloads. */
	f |= 1ull << VIRTIO_NET_F_CSUM | 1ull << VIRTIO_NET_F_HOST_TSO4 | 1ull << VIRTIO_NET_F_HOST_TSO6 |
	     1ull << VIRTIO_NET_F_HOST_ECN;
	if (net->tap_offloads & TAP_OFFLOAD_UFO)
		f |= 1ull << VIRTIO_NET_F_HOST_UFO;
	if (net->tap_offloads & TAP_OFFLOAD_CSUM) {
		f |= 1ull << VIRTIO_NET_F_GUEST_CSUM;
		if (net->tap_offloads & TAP_OFFLOAD_TSO4)
			f |= 1ull << VIRTIO_NET_F_GUEST_TSO4;
		if (net->tap_offloads & TAP_OFFLOAD_TSO6)
			f |= 1ull << VIRTIO_NET_F_GUEST_TSO6;
		if (net->tap_offloads & TAP_OFFLOAD_ECN)
			f |= 1ull << VIRTIO_NET_F_GUEST_ECN;
		if (net->tap_offloads & TAP_OFFLOAD_UFO)
			f |= 1ull << VIRTIO_NET_F_GUEST_UFO;
	}

	vdev->ops = &virtio_net_ops;
	vdev->priv = net;
	vdev->vm = vm;
	vdev->device_features = f;
	vdev->config_size = sizeof(struct virtio_net_config);
	vdev->num_queues = 2;
	vdev->queue_max_size = VIRTIO_NET_QUEUE_SIZE;
	return 0;
}

static struct net_dev *net_alloc(void)
{
	struct net_dev *net = calloc(1, sizeof(*net));

	if (net) {
		net->fd = -1;
		pthread_mutex_init(&net->reg_lock, NULL);
	}
	return net;
}

static int net_create(struct vm *vm, const char *args, struct virtio_dev *vdev, char *err, size_t errlen)
{
	struct net_dev *net;
	struct net_args a;
	char why[200];
	bool created;
	int r;

	r = parse_args(args ? args : "", true, &a, err, errlen);
	if (r < 0)
		return r;
	net = net_alloc();
	if (!net) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	memcpy(net->ifname, a.tap, sizeof(net->ifname));
	r = tap_open(a.tap, (int)sizeof(struct virtio_net_hdr), &created, why, sizeof(why));
	if (r < 0) {
		snprintf(err, errlen, "%s", why);
		/* Whatever the cause, the user fixes the command line or the host: exit 2. */
		r = -EINVAL;
		goto err_free;
	}
	net->fd = r;
	net->is_tap = true;
	net->tap_offloads = tap_probe_offloads(net->fd, ALL_OFFLOADS);
	r = net_setup(vm, vdev, net, &a, err, errlen);
	if (r < 0)
		goto err_free;
	pr_info("%s: tap %s%s, offloads %#x", vdev->id, a.tap, created ? " (created)" : "",
		net->tap_offloads);
	return 0;

err_free:
	net_free(net);
	vdev->priv = NULL;
	return r;
}

#ifdef VMM_TESTING
int virtio_net_create_on_fd(struct vm *vm, int fd, const char *args, struct virtio_dev *vdev,
			    char *err, size_t errlen)
{
	struct net_dev *net;
	struct net_args a;
	int r;

	r = parse_args(args ? args : "", false, &a, err, errlen);
	if (r < 0)
		return r;
	net = net_alloc();
	if (!net)
		return -ENOMEM;
	snprintf(net->ifname, sizeof(net->ifname), "fd%d", fd);
	net->tap_offloads = ALL_OFFLOADS;
	r = net_setup(vm, vdev, net, &a, err, errlen);
	if (r < 0) {
		net_free(net);
		vdev->priv = NULL;
		return r;
	}
	net->fd = fd;
	return 0;
}
#endif

void virtio_net_get_stats(const struct virtio_dev *vdev, struct virtio_net_stats *st)
{
	const struct net_dev *net = to_net(vdev);

	st->tx_packets = virtio_counter_get(&vdev->counters.out_ops);
	st->tx_bytes = virtio_counter_get(&vdev->counters.out_bytes);
	st->tx_dropped = virtio_counter_get(&net->tx_dropped);
	st->rx_packets = virtio_counter_get(&vdev->counters.in_ops);
	st->rx_bytes = virtio_counter_get(&vdev->counters.in_bytes);
	st->rx_dropped = virtio_counter_get(&net->rx_dropped);
}

unsigned virtio_net_offloads(const struct virtio_dev *vdev)
{
	return to_net(vdev)->offloads;
}

const struct virtio_dev_kind virtio_net_kind = {
	.option = "net",
	.metavar = NET_USAGE,
	.help = "virtio-net on a tap interface (an existing one, or created when privileged)",
	.repeatable = true,
	.create = net_create,
};
