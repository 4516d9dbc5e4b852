/*
 * libFuzzer harness for devices/virtio_net: the input is a hostile guest
 * driver sending frames and posting receive buffers, and a host side
 * writing frames into the "tap". As in tests/unit/test_virtio_net.c a
 * SOCK_SEQPACKET socketpair stands in for the tap (virtio_net_create_on_fd,
 * one frame with its vnet header per message); the harness plays the
 * transport (queues of 64, device hooks called directly) and runs the event
 * loop. Every input gets a fresh device.
 *
 * Input layout:
 *   [0]     features: bit 0 MRG_RXBUF, 1 CSUM, 2 GUEST_CSUM, 3 HOST_TSO4/6
 *           and HOST_ECN, 4 GUEST_TSO4/6 and GUEST_ECN, 5 EVENT_IDX, 6 HOST
 *           and GUEST_UFO, 7 INDIRECT_DESC (negotiated, unused by chains)
 *   then operations, first byte's bits 0-2:
 *   0: tx chain. op bit 3: a raw 12-byte header follows (else zeroes);
 *      [le16 frame length] (op bit 4: 65536 + length % 64, around the
 *      largest frame) [u8 layout: bits 0-1 frame segments - 1, bit 2 header
 *      split over two descriptors, bit 3 header and frame in one descriptor,
 *      bit 4 a device-writable descriptor at the end, bit 5 one more segment
 *      of le16 % 4096 bytes at a le16 offset in a zone tx chains share,
 *      bit 6 one more at a raw le64 address (remapped into that zone when in
 *      RAM) with a le32 length][u8 seed of the frame bytes]
 *   1: post [u8 % 4 + 1] rx chains, each [u8 size: bits 0-2 from a table
 *      (1, 11, 12, 26, 100, 1526, 4096, 65565), bit 3 le16 instead]
 *      [u8 layout: bits 0-1 segments - 1, bit 2 a readable descriptor
 *      first, bit 3 the first segment at a le16 offset in a zone rx chains
 *      share, bit 4 a raw le64 address / le32 length segment]; then an rx kick
 *   2: the host sends a frame: op bit 3: a raw 12-byte header follows (else
 *      zeroes); [le16 length] (op bit 4: + 65436) [u8 seed]
 *   3: rx kick; 4: tx kick; 5: pause and resume; 6: device reset and
 *      re-activation; 7: nothing (the loop runs after every operation)
 *
 * Checks beyond ASan/UBSan, after every operation:
 *   - tx: the frames on the tap are exactly, in order, the chains a model of
 *     5.1.6.2 accepts: the guest's header (num_buffers 0) and the bytes after
 *     it; every tx chain comes back (nothing stuck, no hang) unless the
 *     chain breaks the queue (device-writable buffer, buffer outside RAM),
 *     which must ask for a reset;
 *   - rx: used entries come back in posting order; each frame's chains hold
 *     a frame the host sent that the negotiated features let through, in
 *     order, header fixed up (no flags without GUEST_CSUM, num_buffers = the
 *     chains used), one chain without MRG_RXBUF; no used length beyond its
 *     chain; a reset is asked for only when a chain gave a reason. A chain
 *     sharing bytes with another gets no content check, and once a frame's
 *     first chain is shared under MRG_RXBUF (a later frame may overwrite its
 *     num_buffers) each entry is checked alone until the queues restart;
 *   - guest RAM changes only in the used rings, rx chains not yet returned,
 *     and the first used-length bytes of returned ones.
 * Guest RAM is two adjacent heap blocks, so ASan sees any access past RAM.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "channel/evloop.h"
#include "devices/virtio_net.h"
#include "virtio/virtqueue.h"
#include "vmm/gmem.h"
#include "vmm/vm.h"

#include "tests/fuzz/fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM_SIZE     0x80000ull
#define REGION_SIZE  (RAM_SIZE / 2)
#define QSIZE        64u
#define HDR          12u
#define RX           VIRTIO_NET_RXQ
#define TX           VIRTIO_NET_TXQ
#define USED_BYTES   (6ull + 8 * QSIZE)
#define TX_TAME      0x8000ull
#define TX_WILD      0x30000ull
#define RX_TAME      0x38000ull
#define RX_WILD      0x70000ull
#define ZONE_END(z)  ((z) == TX_TAME ? TX_WILD : (z) == TX_WILD ? RX_TAME : (z) == RX_TAME ? RX_WILD : RAM_SIZE)
#define MAX_SEGS     8u
#define MAX_RX       QSIZE
#define MAX_TX       64u
#define MAX_HOST     64u
#define MAX_FRAME    (HDR + 65535u + 64u)
#define MAX_OPS      64u

#define CHECK(cond)                       \
	do {                              \
		if (!(cond))              \
			__builtin_trap(); \
	} while (0)

static const uint64_t ring_gpa[2][3] = { { 0x0000, 0x1000, 0x2000 }, { 0x3000, 0x4000, 0x5000 } };

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

struct chain {
	struct seg segs[MAX_SEGS];
	unsigned nsegs, ndesc;
	uint16_t head;
	uint64_t in_len;
	bool odd;          /* rx: a reason for the device to give up on the queue */
	bool aliased;      /* rx: shares bytes with another chain in flight */
};

/* A frame: length and bytes, vnet header included. */
struct frame {
	uint32_t len;
	uint8_t *bytes;
};

struct fz {
	struct virtio_dev vdev;
	int peer;
	uint64_t features;
	bool mrg;
	unsigned resets, resets_seen;
	/* Per queue: the driver's indices and descriptors. */
	uint16_t avail_idx[2], used_seen[2], next_desc[2];
	unsigned free_desc[2];
	/* tx: chains popped in order, frames the tap must see in order. */
	unsigned tx_pending;
	bool tx_break;
	struct frame tx_want[MAX_TX];
	unsigned tx_want_n, tx_want_head;
	uint64_t tx_next;
	/* rx: chains posted and not returned (in order), frames the host sent. */
	struct chain rx[MAX_RX];
	unsigned rx_head, rx_n;
	/*
	 * A frame's first buffer shared with another chain: a later frame may
	 * have overwritten its header, num_buffers with it, so which used
	 * entries make up which frame is unknown from there on. Each entry is
	 * then checked alone (its chain and length), until the queues restart.
	 */
	bool rx_lost;
	uint64_t rx_next;
	struct frame host[MAX_HOST];
	unsigned host_n, host_head;
};

static struct vm vm;
static struct fz fz;
static uint8_t canary[RAM_SIZE], mirror[RAM_SIZE], after[RAM_SIZE];
static uint8_t buf[2 * MAX_FRAME], frame_buf[2 * MAX_FRAME];

static void on_signal(struct virtio_dev *vdev, unsigned q) { (void)vdev; (void)q; }
static void on_needs_reset(struct virtio_dev *vdev) { (void)vdev; fz.resets++; }

static uint8_t *ram(uint64_t gpa)
{
	return vm.mem.regions[gpa >= REGION_SIZE].hva + gpa % REGION_SIZE;
}

static void ram_copy_out(uint8_t *dst)
{
	memcpy(dst, vm.mem.regions[0].hva, REGION_SIZE);
	memcpy(dst + REGION_SIZE, vm.mem.regions[1].hva, REGION_SIZE);
}

/* The guest writes: RAM and the harness's mirror of it. */
static void wr(uint64_t gpa, const void *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		*ram(gpa + i) = mirror[gpa + i] = ((const uint8_t *)p)[i];
}

static void wr16(uint64_t gpa, uint16_t v)
{
	le16 x = cpu_to_le16(v);

	wr(gpa, &x, 2);
}

static uint16_t used_idx(unsigned q)
{
	le16 v;

	memcpy(&v, ram(ring_gpa[q][2] + 2), 2);
	return le16_to_cpu(v);
}

static bool seg_in_ram(const struct seg *s)
{
	return s->len == 0 || (s->gpa < RAM_SIZE && s->len <= RAM_SIZE - s->gpa);
}

static bool overlap(const struct seg *a, const struct seg *b)
{
	return a->len && b->len && seg_in_ram(a) && seg_in_ram(b) && a->gpa < b->gpa + b->len &&
	       b->gpa < a->gpa + a->len;
}

static bool has_feature(unsigned bit)
{
	return fz.features & (1ull << bit);
}

static void init_once(void)
{
	static bool done;

	if (done)
		return;
	done = true;
	for (unsigned r = 0; r < 2; r++) {
		uint8_t *p = aligned_alloc(4096, REGION_SIZE);

		if (!p)
			abort();
		vm.mem.regions[r] = (struct gmem_region){ .gpa = r * REGION_SIZE, .size = REGION_SIZE,
							  .hva = p, .fd_offset = r * REGION_SIZE };
	}
	vm.mem.fd = -1;
	vm.mem.ram_size = RAM_SIZE;
	vm.mem.nr_regions = 2;
	vm.ncpus = 1;
	if (evloop_create(&vm.loop))
		abort();
	for (uint64_t g = 0; g < RAM_SIZE; g++)
		canary[g] = (uint8_t)(0x5a ^ (g * 13) ^ (g >> 10));
	for (unsigned i = 0; i < MAX_TX; i++)
		fz.tx_want[i].bytes = malloc(MAX_FRAME);
	for (unsigned i = 0; i < MAX_HOST; i++)
		fz.host[i].bytes = malloc(MAX_FRAME);
	for (unsigned i = 0; i < MAX_TX; i++)
		if (!fz.tx_want[i].bytes || !fz.host[i].bytes)
			abort();
}

/* ---- transport ---------------------------------------------------------------------- */

static void queues_start(void)
{
	static const uint8_t zero[0x1000];

	for (unsigned q = 0; q < 2; q++) {
		struct virtq *vq = &fz.vdev.vqs[q];

		virtq_reset(vq);
		vq->size = QSIZE;
		vq->desc_gpa = ring_gpa[q][0];
		vq->avail_gpa = ring_gpa[q][1];
		vq->used_gpa = ring_gpa[q][2];
		for (int i = 0; i < 3; i++)
			wr(ring_gpa[q][i], zero, sizeof(zero));
		CHECK(virtq_enable(vq, fz.features) == 0);
		fz.avail_idx[q] = fz.used_seen[q] = fz.next_desc[q] = 0;
		fz.free_desc[q] = QSIZE;
	}
	fz.tx_pending = 0;
	fz.tx_break = false;
	fz.tx_next = TX_TAME;
	fz.rx_head = fz.rx_n = 0;
	fz.rx_lost = false;
	fz.rx_next = RX_TAME;
	fz.vdev.driver_features = fz.features;
	CHECK(fz.vdev.ops->activate(&fz.vdev) == 0);
}

static void queues_stop(void)
{
	for (unsigned q = 0; q < 2; q++)
		virtq_reset(&fz.vdev.vqs[q]);
	fz.vdev.ops->reset(&fz.vdev);
}

/* Lay c out as a direct chain on queue q and make it available. */
static void offer(unsigned q, struct chain *c)
{
	uint16_t head = fz.next_desc[q];

	for (unsigned i = 0; i < c->nsegs; i++) {
		uint16_t idx = (uint16_t)((head + i) % QSIZE);
		struct virtq_desc d = {
			.addr = cpu_to_le64(c->segs[i].gpa),
			.len = cpu_to_le32(c->segs[i].len),
			.flags = cpu_to_le16((c->segs[i].write ? VIRTQ_DESC_F_WRITE : 0) |
					     (i + 1 < c->nsegs ? VIRTQ_DESC_F_NEXT : 0)),
			.next = cpu_to_le16((uint16_t)((idx + 1) % QSIZE)),
		};

		wr(ring_gpa[q][0] + 16ull * idx, &d, sizeof(d));
	}
	c->head = head;
	c->ndesc = c->nsegs;
	fz.next_desc[q] = (uint16_t)((head + c->nsegs) % QSIZE);
	fz.free_desc[q] -= c->nsegs;
	wr16(ring_gpa[q][1] + 4 + 2ull * (fz.avail_idx[q] % QSIZE), head);
	fz.avail_idx[q]++;
	wr16(ring_gpa[q][1] + 2, fz.avail_idx[q]);
}

static void add_seg(struct chain *c, uint64_t gpa, uint32_t len, bool write)
{
	if (c->nsegs < MAX_SEGS)
		c->segs[c->nsegs++] = (struct seg){ .gpa = gpa, .len = len, .write = write };
}

/* len bytes of a zone, from *next on; shorter when the zone runs out. */
static uint64_t zone_alloc(uint64_t zone, uint64_t *next, uint32_t *len)
{
	uint64_t gpa = *next;

	if (*len > ZONE_END(zone) - gpa)
		*len = (uint32_t)(ZONE_END(zone) - gpa);
	*next += *len;
	return gpa;
}

/* Readable bytes off.. of c, from the mirror (what the guest wrote). */
static uint64_t chain_out(const struct chain *c, uint8_t *dst, uint64_t max)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < c->nsegs; i++) {
		const struct seg *s = &c->segs[i];

		if (s->write)
			break;
		for (uint32_t j = 0; j < s->len && n < max; j++)
			dst[n++] = mirror[s->gpa + j];
	}
	return n;
}

/* ---- the tap side ------------------------------------------------------------------- */

/* Everything the device sent must be the next frame the model let through. */
static bool peer_drain(void)
{
	bool got = false;

	for (;;) {
		ssize_t n = recv(fz.peer, buf, sizeof(buf), MSG_DONTWAIT);
		struct frame *w;

		if (n < 0) {
			CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
			return got;
		}
		got = true;
		CHECK(fz.tx_want_head < fz.tx_want_n);
		w = &fz.tx_want[fz.tx_want_head++];
		CHECK((size_t)n == w->len && !memcmp(buf, w->bytes, w->len));
	}
}

/* Run the loop until nothing happens: the tap drained, kicks and catch-ups done. */
static void pump(void)
{
	for (unsigned i = 0; i < 4096; i++) {
		int n = evloop_run_once(vm.loop, 0);

		CHECK(n >= 0);
		if (!peer_drain() && n == 0)
			return;
	}
	/* A device that keeps the loop busy for ever is a hang. */
	__builtin_trap();
}

/* ---- tx ------------------------------------------------------------------------------ */

/* 5.1.6.2 and the device's limits: whether the tap may get this frame. */
static bool tx_accepts(const uint8_t *f, uint64_t out_len)
{
	struct virtio_net_hdr h;
	uint64_t len;
	uint8_t gso;

	if (out_len < HDR)
		return false;
	len = out_len - HDR;
	if (len < 14 || len > VIRTIO_NET_MAX_FRAME)
		return false;
	memcpy(&h, f, HDR);
	if (h.flags & ~VIRTIO_NET_HDR_F_NEEDS_CSUM)
		return false;
	if ((h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) &&
	    (!has_feature(VIRTIO_NET_F_CSUM) ||
	     (uint64_t)le16_to_cpu(h.csum_start) + le16_to_cpu(h.csum_offset) + 2 > len))
		return false;
	if (le16_to_cpu(h.hdr_len) > len)
		return false;
	if (h.gso_type == VIRTIO_NET_HDR_GSO_NONE)
		return true;
	if ((h.gso_type & VIRTIO_NET_HDR_GSO_ECN) && !has_feature(VIRTIO_NET_F_HOST_ECN))
		return false;
	gso = h.gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
	if (!((gso == VIRTIO_NET_HDR_GSO_TCPV4 && has_feature(VIRTIO_NET_F_HOST_TSO4)) ||
	      (gso == VIRTIO_NET_HDR_GSO_TCPV6 && has_feature(VIRTIO_NET_F_HOST_TSO6)) ||
	      (gso == VIRTIO_NET_HDR_GSO_UDP && has_feature(VIRTIO_NET_F_HOST_UFO))))
		return false;
	return (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && le16_to_cpu(h.gso_size);
}

static void fill(uint64_t gpa, uint32_t len, uint8_t seed)
{
	for (uint32_t i = 0; i < len; i++) {
		uint8_t b = (uint8_t)(seed + i * 7 + (i >> 8));

		*ram(gpa + i) = mirror[gpa + i] = b;
	}
}

static void op_tx(struct input *in, uint8_t op)
{
	struct virtio_net_hdr h = { 0 };
	struct chain c = { 0 };
	uint32_t flen, len, parts;
	uint8_t layout, seed;
	uint64_t gpa, out_len;
	bool breaks = false;

	if (op & 8)
		for (unsigned i = 0; i < HDR; i++)
			((uint8_t *)&h)[i] = take8(in);
	flen = take16(in);
	if (op & 16)
		flen = 65536 + flen % 64;
	layout = take8(in);
	seed = take8(in);
	if (fz.tx_break || fz.free_desc[TX] < MAX_SEGS)
		return;

	parts = (layout & 3) + 1u;
	if (layout & 8) {
		len = HDR + flen;
		gpa = zone_alloc(TX_TAME, &fz.tx_next, &len);
		fill(gpa, len, seed);
		wr(gpa, &h, MIN(len, HDR));
		add_seg(&c, gpa, len, false);
		flen = 0;
	} else {
		len = HDR;
		gpa = zone_alloc(TX_TAME, &fz.tx_next, &len);
		wr(gpa, &h, len);
		if (layout & 4) {
			add_seg(&c, gpa, MIN(len, 5u), false);
			add_seg(&c, gpa + MIN(len, 5u), len - MIN(len, 5u), false);
		} else {
			add_seg(&c, gpa, len, false);
		}
	}
	for (uint32_t p = 0; p < parts && flen; p++) {
		len = p + 1 < parts ? flen / parts : flen - (parts - 1) * (flen / parts);
		gpa = zone_alloc(TX_TAME, &fz.tx_next, &len);
		fill(gpa, len, (uint8_t)(seed + p));
		add_seg(&c, gpa, len, false);
	}
	if (layout & 32) {
		len = take16(in) % 4096;
		add_seg(&c, TX_WILD + take16(in) % (RX_TAME - TX_WILD), len, false);
	}
	if (layout & 64) {
		gpa = take64(in);
		len = take32(in);
		if (gpa < RAM_SIZE)
			gpa = TX_WILD + gpa % (RX_TAME - TX_WILD);
		add_seg(&c, gpa, len, false);
	}
	if (layout & 16) {
		len = 64;
		add_seg(&c, zone_alloc(TX_TAME, &fz.tx_next, &len), len, true);
	}

	/* The model: a chain the device cannot use breaks the queue; others are sent or dropped. */
	for (unsigned i = 0; i < c.nsegs; i++)
		breaks |= (c.segs[i].write && c.segs[i].len) || !seg_in_ram(&c.segs[i]);
	offer(TX, &c);
	if (breaks) {
		fz.tx_break = true;
	} else {
		out_len = chain_out(&c, frame_buf, sizeof(frame_buf));
		if (tx_accepts(frame_buf, out_len)) {
			struct frame *w = &fz.tx_want[fz.tx_want_n++];

			/* The device sends its copy of the header, num_buffers zeroed. */
			memset(frame_buf + offsetof(struct virtio_net_hdr, num_buffers), 0, 2);
			memcpy(w->bytes, frame_buf, out_len);
			w->len = (uint32_t)out_len;
		}
		fz.tx_pending++;
	}
	fz.vdev.ops->queue_notify(&fz.vdev, TX);
}

/* ---- rx ------------------------------------------------------------------------------ */

static void rx_post_one(struct input *in)
{
	static const uint32_t sizes[8] = { 1, 11, 12, 26, 100, 1526, 4096, 65565 };
	uint8_t size = take8(in), layout = take8(in);
	uint32_t total = size & 8 ? take16(in) : sizes[size & 7], parts = (layout & 3) + 1u, len;
	struct chain *c;
	uint64_t gpa;

	if (fz.rx_n == MAX_RX || fz.free_desc[RX] < MAX_SEGS)
		return;
	c = &fz.rx[(fz.rx_head + fz.rx_n) % MAX_RX];
	memset(c, 0, sizeof(*c));
	if (layout & 4) {
		len = 16;
		add_seg(c, zone_alloc(RX_TAME, &fz.rx_next, &len), len, false);
	}
	if (layout & 8) {
		len = MIN(total, 4096u);
		gpa = RX_WILD + take16(in) % (RAM_SIZE - RX_WILD - len + 1);
		add_seg(c, gpa, len, true);
		total -= len;
	}
	if (layout & 16) {
		gpa = take64(in);
		len = take32(in);
		if (gpa < RAM_SIZE)
			gpa = RX_WILD + gpa % (RAM_SIZE - RX_WILD);
		add_seg(c, gpa, len, true);
	}
	if (fz.rx_next + total > RX_WILD && !fz.rx_n)
		fz.rx_next = RX_TAME;
	for (uint32_t p = 0; p < parts && total; p++) {
		len = p + 1 < parts ? total / parts : total - (parts - 1) * (total / parts);
		gpa = zone_alloc(RX_TAME, &fz.rx_next, &len);
		add_seg(c, gpa, len, true);
	}

	for (unsigned i = 0; i < c->nsegs; i++) {
		const struct seg *s = &c->segs[i];

		c->odd |= !s->write || !seg_in_ram(s);
		c->in_len += s->write ? s->len : 0;
		for (unsigned k = 0; k < fz.rx_n; k++) {
			struct chain *o = &fz.rx[(fz.rx_head + k) % MAX_RX];

			for (unsigned j = 0; j < o->nsegs; j++)
				if (overlap(s, &o->segs[j]))
					c->aliased = o->aliased = true;
		}
		for (unsigned j = 0; j < i; j++)
			if (overlap(s, &c->segs[j]))
				c->aliased = true;
	}
	if (!c->nsegs)
		add_seg(c, RX_TAME, 0, true);
	/* Too small for a header, or empty: fine only as a later buffer of a merged frame. */
	c->odd |= c->in_len < HDR || c->nsegs == 0;
	offer(RX, c);
	fz.rx_n++;
}

static void op_host(struct input *in, uint8_t op)
{
	struct virtio_net_hdr h = { 0 };
	uint32_t len;
	uint8_t seed;
	ssize_t n;

	if (op & 8)
		for (unsigned i = 0; i < HDR; i++)
			((uint8_t *)&h)[i] = take8(in);
	len = take16(in);
	if (op & 16)
		len += 65436;
	seed = take8(in);
	len = MIN(len, MAX_FRAME);
	memcpy(buf, &h, MIN(len, HDR));
	for (uint32_t i = HDR; i < len; i++)
		buf[i] = (uint8_t)(seed ^ (i * 29) ^ (i >> 7));
	if (fz.host_n == MAX_HOST)
		return;
	n = send(fz.peer, buf, len, MSG_DONTWAIT);
	if (n < 0 || (uint32_t)n != len)
		return;
	memcpy(fz.host[fz.host_n].bytes, buf, len);
	fz.host[fz.host_n++].len = len;
}

/* The frame as the driver may see it (flags and GSO per its features), or false if dropped. */
static bool rx_passes(const struct frame *f, uint8_t *out)
{
	struct virtio_net_hdr h;
	uint8_t gso;

	if (f->len < HDR + 14 || f->len - HDR > VIRTIO_NET_MAX_FRAME)
		return false;
	memcpy(&h, f->bytes, HDR);
	if (!has_feature(VIRTIO_NET_F_GUEST_CSUM)) {
		if (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)
			return false;
		h.flags = 0;
	}
	gso = h.gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
	if (h.gso_type != VIRTIO_NET_HDR_GSO_NONE &&
	    (((h.gso_type & VIRTIO_NET_HDR_GSO_ECN) && !has_feature(VIRTIO_NET_F_GUEST_ECN)) ||
	     !((gso == VIRTIO_NET_HDR_GSO_TCPV4 && has_feature(VIRTIO_NET_F_GUEST_TSO4)) ||
	       (gso == VIRTIO_NET_HDR_GSO_TCPV6 && has_feature(VIRTIO_NET_F_GUEST_TSO6)) ||
	       (gso == VIRTIO_NET_HDR_GSO_UDP && has_feature(VIRTIO_NET_F_GUEST_UFO)))))
		return false;
	memcpy(out, &h, HDR);
	memcpy(out + HDR, f->bytes + HDR, f->len - HDR);
	return true;
}

/* Bytes [0, len) of c's writable part, as the device left them. */
static void chain_in(const struct chain *c, uint8_t *dst, uint32_t len)
{
	for (unsigned i = 0; i < c->nsegs && len; i++) {
		const struct seg *s = &c->segs[i];

		if (!s->write)
			continue;
		CHECK(seg_in_ram(s));
		for (uint32_t j = 0; j < s->len && len; j++, len--)
			*dst++ = *ram(s->gpa + j);
	}
}

/* Writable bytes [0, len) of c: the device may have written them. */
static void chain_dont_care(const struct chain *c, uint64_t len)
{
	for (unsigned i = 0; i < c->nsegs && len; i++) {
		const struct seg *s = &c->segs[i];
		uint64_t n = MIN(len, (uint64_t)s->len);

		if (!s->write || !s->len || !seg_in_ram(s))
			continue;
		memcpy(mirror + s->gpa, after + s->gpa, n);
		len -= n;
	}
}

/* Walk the rx used entries the device published: whole frames, in order, matching the host's. */
static void rx_check(void)
{
	uint16_t used = used_idx(RX);

	while (fz.used_seen[RX] != used) {
		uint16_t avail = (uint16_t)(used - fz.used_seen[RX]);
		uint32_t total = 0, nbufs = 1;
		struct virtio_net_hdr h;
		bool aliased = false;

		CHECK(avail <= fz.rx_n);
		for (uint16_t k = 0; k < avail; k++) {
			uint64_t e = ring_gpa[RX][2] + 4 + 8ull * ((fz.used_seen[RX] + k) % QSIZE);
			struct chain *c = &fz.rx[(fz.rx_head + k) % MAX_RX];
			le32 id, len;

			memcpy(&id, ram(e), 4);
			memcpy(&len, ram(e + 4), 4);
			CHECK(le32_to_cpu(id) == c->head && le32_to_cpu(len) <= c->in_len);
			if (k == 0 && c->aliased && fz.mrg)
				fz.rx_lost = true;
			if (fz.rx_lost) {
				aliased = true;
				chain_dont_care(c, UINT64_MAX);
				break;
			}
			if (k == 0) {
				CHECK(le32_to_cpu(len) >= HDR);
				chain_in(c, (uint8_t *)&h, HDR);
				/* Without MRG_RXBUF a frame is one buffer, whatever overwrote it. */
				nbufs = c->aliased ? 1 : le16_to_cpu(h.num_buffers);
				CHECK(nbufs >= 1 && nbufs <= avail && (fz.mrg || nbufs == 1));
			}
			chain_in(c, buf + total, le32_to_cpu(len));
			total += le32_to_cpu(len);
			aliased |= c->aliased;
			/* Past the used length the chain is as the guest left it (unless shared). */
			chain_dont_care(c, c->aliased ? UINT64_MAX : le32_to_cpu(len));
			if (k + 1 == nbufs)
				break;
		}
		/* The frame must be one the host sent and the driver may get, later than the last one. */
		while (!aliased) {
			CHECK(fz.host_head < fz.host_n);
			if (rx_passes(&fz.host[fz.host_head++], frame_buf)) {
				le16 nb = cpu_to_le16((uint16_t)nbufs);

				memcpy(frame_buf + offsetof(struct virtio_net_hdr, num_buffers), &nb, 2);
				if (fz.host[fz.host_head - 1].len == total && !memcmp(buf, frame_buf, total))
					break;
			}
		}
		for (uint32_t k = 0; k < nbufs; k++) {
			fz.free_desc[RX] += fz.rx[fz.rx_head].ndesc;
			fz.rx_head = (fz.rx_head + 1) % MAX_RX;
			fz.rx_n--;
		}
		fz.used_seen[RX] = (uint16_t)(fz.used_seen[RX] + nbufs);
	}
}

/* ---- after every operation ------------------------------------------------------------ */

static void check(void)
{
	bool rx_odd = false, broke;

	pump();
	ram_copy_out(after);
	rx_check();
	broke = fz.resets != fz.resets_seen;

	/* tx: every chain back with nothing written, every accepted frame on the tap. */
	if (!fz.tx_break && !broke) {
		CHECK((uint16_t)(used_idx(TX) - fz.used_seen[TX]) == fz.tx_pending);
		CHECK(fz.tx_want_head == fz.tx_want_n);
		for (; fz.used_seen[TX] != used_idx(TX); fz.used_seen[TX]++) {
			le32 len;

			memcpy(&len, ram(ring_gpa[TX][2] + 8 + 8ull * (fz.used_seen[TX] % QSIZE)), 4);
			CHECK(le32_to_cpu(len) == 0);
		}
		fz.free_desc[TX] = QSIZE;
		fz.tx_pending = 0;
		fz.tx_next = TX_TAME;
	}

	/* RAM: the rings' used parts and the rx chains still out are the device's. */
	for (unsigned q = 0; q < 2; q++)
		memcpy(mirror + ring_gpa[q][2], after + ring_gpa[q][2], USED_BYTES);
	for (unsigned k = 0; k < fz.rx_n; k++) {
		chain_dont_care(&fz.rx[(fz.rx_head + k) % MAX_RX], UINT64_MAX);
		rx_odd |= fz.rx[(fz.rx_head + k) % MAX_RX].odd;
	}
	CHECK(!memcmp(after, mirror, RAM_SIZE));

	/* A reset request needs a reason the guest gave, and a broken tx chain gives one. */
	CHECK(!broke || fz.tx_break || rx_odd);
	CHECK(broke || !fz.tx_break);
	fz.resets_seen = fz.resets;
	if (broke) {
		/* Frames sent before the broken chain are on the tap (an rx failure stops tx too). */
		CHECK(rx_odd || fz.tx_want_head == fz.tx_want_n);
		fz.tx_want_head = fz.tx_want_n;
		queues_stop();
		queues_start();
		pump();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t feature_bits[8] = {
		1ull << VIRTIO_NET_F_MRG_RXBUF,
		1ull << VIRTIO_NET_F_CSUM,
		1ull << VIRTIO_NET_F_GUEST_CSUM,
		(1ull << VIRTIO_NET_F_HOST_TSO4) | (1ull << VIRTIO_NET_F_HOST_TSO6) |
			(1ull << VIRTIO_NET_F_HOST_ECN),
		(1ull << VIRTIO_NET_F_GUEST_TSO4) | (1ull << VIRTIO_NET_F_GUEST_TSO6) |
			(1ull << VIRTIO_NET_F_GUEST_ECN),
		1ull << VIRTIO_F_EVENT_IDX,
		(1ull << VIRTIO_NET_F_HOST_UFO) | (1ull << VIRTIO_NET_F_GUEST_UFO),
		1ull << VIRTIO_F_INDIRECT_DESC,
	};
	struct input in = { data, size };
	char err[256];
	int sv[2];
	uint8_t cfg;

	init_once();
	if (size < 1)
		return 0;
	cfg = take8(&in);
	fz.features = 1ull << VIRTIO_F_VERSION_1;
	for (unsigned b = 0; b < 8; b++)
		if (cfg & (1u << b))
			fz.features |= feature_bits[b];
	fz.mrg = cfg & 1;
	fz.tx_want_n = fz.tx_want_head = fz.host_n = fz.host_head = 0;
	fz.resets = fz.resets_seen = 0;

	memset(&fz.vdev, 0, sizeof(fz.vdev));
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv))
		abort();
	if (virtio_net_create_on_fd(&vm, sv[0], "", &fz.vdev, err, sizeof(err)))
		abort();
	fz.peer = sv[1];
	fz.vdev.signal_used = on_signal;
	fz.vdev.needs_reset = on_needs_reset;
	fz.features &= fz.vdev.device_features | (1ull << VIRTIO_F_VERSION_1);
	for (unsigned q = 0; q < 2; q++)
		if (virtq_init(&fz.vdev.vqs[q], &vm.mem, q ? "fz.tx" : "fz.rx", VIRTIO_NET_QUEUE_SIZE))
			abort();
	/* RAM full of canaries, and the mirror says so. */
	memcpy(mirror, canary, RAM_SIZE);
	memcpy(vm.mem.regions[0].hva, mirror, REGION_SIZE);
	memcpy(vm.mem.regions[1].hva, mirror + REGION_SIZE, REGION_SIZE);
	queues_start();

	for (unsigned ops = 0; ops < MAX_OPS && in.n; ops++) {
		uint8_t op = take8(&in);

		switch (op & 7) {
		case 0:
			op_tx(&in, op);
			break;
		case 1:
			for (unsigned n = take8(&in) % 4 + 1; n; n--)
				rx_post_one(&in);
			fz.vdev.ops->queue_notify(&fz.vdev, RX);
			break;
		case 2:
			op_host(&in, op);
			break;
		case 3:
			fz.vdev.ops->queue_notify(&fz.vdev, RX);
			break;
		case 4:
			fz.vdev.ops->queue_notify(&fz.vdev, TX);
			break;
		case 5:
			CHECK(fz.vdev.ops->pause(&fz.vdev) == 0);
			CHECK(fz.vdev.ops->resume(&fz.vdev) == 0);
			break;
		case 6:
			queues_stop();
			queues_start();
			break;
		}
		check();
	}
	fz.vdev.ops->destroy(&fz.vdev);
	close(fz.peer);
	return 0;
}
