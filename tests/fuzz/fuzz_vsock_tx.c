/*
 * libFuzzer harness for the vsock device's guest tx path (devices/vsock/):
 * the input is a hostile guest driver sending packets on the tx queue,
 * offering receive buffers, and a host side that accepts, writes, reads and
 * closes its ends, with device resets and snapshot restores in between.
 *
 * Every input builds a fresh device (guest CID 3) with a stream listener on
 * port 80 and a SEQPACKET one on port 90. The input's first byte picks the
 * features (bits 0-1) and how many receive buffers (1-8, bits 2-4) are
 * offered at each activation. Then operations, first byte:
 *   0: a tx packet: [flags][44-byte header][le16 payload length][payload]
 *      flags bit 0: force src_cid 3 / dst_cid 2, bit 1: make len agree,
 *      bit 2: split the header over two descriptors, bit 3: point dst at 80/90
 *   1: offer [count] receive buffers of [size code] bytes
 *   2: host: accept everything queued; 3: host writes [n] bytes on end [i];
 *   4: host reads end [i]; 5: host closes end [i];
 *   6: device reset and re-activation; 7: pause, snapshot save + load, resume
 *      (connections forgotten, TRANSPORT_RESET)
 *   8: offer one hostile receive chain of [shape]: the header split over two
 *      buffers, a zero-length buffer, a readable buffer first, an address
 *      across or past the end of RAM, a length of 4 GiB, a buffer over the
 *      receive ring's own descriptors or its used ring
 *   9: offer one event buffer of [shape]: right, too short, readable, outside RAM
 * Checks beyond ASan/UBSan: every packet the device puts on rx comes from
 * CID 2 to CID 3, with a known op and type and a length inside its buffer
 * (not checked for a chain whose descriptors the driver rewrote while it
 * was offered, and not at all once it offered a buffer over the rings); and
 * at the end, guest RAM differs from what the driver wrote only where it
 * offered the device a writable buffer, or in the used rings.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "channel/evloop.h"
#include "devices/vsock/mux.h"
#include "devices/vsock/packet.h"
#include "devices/vsock/vsock.h"
#include "vmm/snapshot/format.h"
#include "vmm/vm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM_SIZE (2 * 1024 * 1024)
#define QSIZE    16u
#define RX_BUF   0x10000u    /* 16 x 0x2000 */
#define TX_BUF   0x40000u    /* 16 x 0x11000 */
#define EV_BUF   0x9000u     /* event buffers: 16 x 0x100 */
#define HOSTILE  0x160000u   /* op 8's chains: 16 x 0x2000 */
#define MAX_ENDS 16
#define MAX_OPS  256
#define MAX_SEGS 3

static const uint64_t qgpa[3][3] = {
	{ 0x1000, 0x2000, 0x3000 }, { 0x4000, 0x5000, 0x6000 }, { 0x7000, 0x8000, 0x8800 },
};

/* A receive chain as the driver offered it, by its head descriptor. */
struct rx_chain {
	unsigned n;
	bool clobbered;      /* a later chain rewrote one of its descriptors: the record may be stale */
	uint64_t gpa[MAX_SEGS];
	uint32_t len[MAX_SEGS];
};

struct fz {
	struct vm vm;
	struct virtio_dev vdev;
	struct vsock_dev *dev;
	struct vsock_listener *l80, *l90;
	struct stream_end *ends[MAX_ENDS];
	unsigned nends;
	uint16_t avail_idx[3], next_desc[3], used_seen[3];
	uint64_t features;
	uint8_t first_rx;    /* op_rx's count for the buffers offered at activation */
	struct rx_chain rx[QSIZE];
	int8_t owner[QSIZE]; /* the head of the receive chain each descriptor was last written for */
	bool rx_over_rings;  /* a receive buffer over the rings: packets may overwrite them */
	uint8_t *shadow;     /* guest RAM as the driver wrote it */
	uint8_t *writable;   /* a bit per byte of RAM the device was offered */
};

static void allow(struct fz *f, uint64_t gpa, uint64_t len)
{
	uint64_t end = gpa + len < RAM_SIZE ? gpa + len : RAM_SIZE;

	for (uint64_t a = gpa; a < end; a++) {
		if (a % 8 == 0 && end - a >= 8) {
			f->writable[a / 8] = 0xff;
			a += 7;
		} else {
			f->writable[a / 8] |= (uint8_t)(1u << (a % 8));
		}
	}
}

static void on_signal(struct virtio_dev *vdev, unsigned q) { (void)vdev; (void)q; }
static void on_needs_reset(struct virtio_dev *vdev) { (void)vdev; }

static void wr(struct fz *f, uint64_t gpa, const void *p, size_t len)
{
	if (gmem_write(&f->vm.mem, gpa, p, len))
		abort();
	memcpy(f->shadow + gpa, p, len);
}

static void add_desc_chain(struct fz *f, unsigned q, const uint64_t *gpa, const uint32_t *len,
			   const bool *write, unsigned n)
{
	uint16_t head = f->next_desc[q];
	le16 v;

	for (unsigned i = 0; i < n; i++) {
		uint16_t idx = (uint16_t)((head + i) % QSIZE);
		struct virtq_desc d = {
			.addr = cpu_to_le64(gpa[i]), .len = cpu_to_le32(len[i]),
			.flags = cpu_to_le16((write[i] ? VIRTQ_DESC_F_WRITE : 0) |
					     (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
			.next = cpu_to_le16((uint16_t)((idx + 1) % QSIZE)),
		};
		wr(f, qgpa[q][0] + 16ull * idx, &d, sizeof(d));
		if (write[i])
			allow(f, gpa[i], len[i]);
	}
	if (q == 0) {
		/* A driver that offers more than the ring holds rewrites descriptors still offered. */
		for (unsigned i = 0; i < n; i++) {
			int8_t *o = &f->owner[(head + i) % QSIZE];

			if (*o >= 0 && *o != head)
				f->rx[*o].clobbered = true;
			*o = (int8_t)head;
		}
		f->rx[head].n = n;
		f->rx[head].clobbered = false;
		for (unsigned i = 0; i < n; i++) {
			if (gpa[i] < RX_BUF && len[i])
				f->rx_over_rings = true;
			f->rx[head].gpa[i] = gpa[i];
			f->rx[head].len[i] = len[i];
		}
	}
	f->next_desc[q] = (uint16_t)((head + n) % QSIZE);
	v = cpu_to_le16(head);
	wr(f, qgpa[q][1] + 4 + 2ull * (f->avail_idx[q] % QSIZE), &v, 2);
	f->avail_idx[q]++;
	v = cpu_to_le16(f->avail_idx[q]);
	wr(f, qgpa[q][1] + 2, &v, 2);
}

static void pump(struct fz *f)
{
	for (int i = 0; i < 64 && evloop_run_once(f->vm.loop, 0) > 0; i++)
		;
}

/* The first `n` bytes of a receive chain into `out`; returns the chain's length. */
static uint64_t gather(struct fz *f, const struct rx_chain *c, void *out, size_t n)
{
	uint8_t *o = out;
	uint64_t total = 0;

	for (unsigned i = 0; i < c->n; i++) {
		size_t take = c->len[i] < n ? c->len[i] : n;

		/* The device used this chain, so all of it lies in RAM. */
		if (take && gmem_read(&f->vm.mem, c->gpa[i], o, take))
			abort();
		o += take;
		n -= take;
		total += c->len[i];
	}
	if (n)
		abort();  /* used, though shorter than the header */
	return total;
}

/* Check what the device put on rx since last time. */
static void check_rx(struct fz *f)
{
	le16 idx;
	uint16_t used;

	if (gmem_read(&f->vm.mem, qgpa[0][2] + 2, &idx, 2))
		abort();
	used = le16_to_cpu(idx);
	if (f->rx_over_rings) {
		/* The driver let the device write over its own rings: nothing there can be trusted. */
		f->used_seen[0] = used;
		return;
	}
	while (f->used_seen[0] != used) {
		uint64_t e = qgpa[0][2] + 4 + 8ull * (f->used_seen[0] % QSIZE);
		le32 id, len;
		struct vsock_hdr h;
		struct vsock_pkt p;
		const struct rx_chain *c;

		if (gmem_read(&f->vm.mem, e, &id, 4) || gmem_read(&f->vm.mem, e + 4, &len, 4))
			abort();
		if (le32_to_cpu(id) >= QSIZE || le32_to_cpu(len) < VSOCK_HDR_LEN ||
		    le32_to_cpu(len) > VSOCK_HDR_LEN + 4096)
			abort();
		c = &f->rx[le32_to_cpu(id)];
		if (c->clobbered) {
			/* What the device read is not what we recorded: bounds only. */
			f->used_seen[0]++;
			continue;
		}
		if (gather(f, c, &h, sizeof(h)) < le32_to_cpu(len))
			abort();
		vsock_hdr_decode(&h, &p);
		if (p.src_cid != VSOCK_HOST_CID || p.dst_cid != 3 || p.len != le32_to_cpu(len) - VSOCK_HDR_LEN ||
		    p.op < VIRTIO_VSOCK_OP_REQUEST || p.op > VIRTIO_VSOCK_OP_CREDIT_REQUEST ||
		    (p.type != VIRTIO_VSOCK_TYPE_STREAM && p.type != VIRTIO_VSOCK_TYPE_SEQPACKET) ||
		    (p.op != VIRTIO_VSOCK_OP_RW && p.len))
			abort();
		f->used_seen[0]++;
	}
}

static void activate(struct fz *f)
{
	static const uint8_t zero[0x1000];

	f->vdev.driver_features = f->features;
	for (unsigned q = 0; q < 3; q++) {
		struct virtq *vq = &f->vdev.vqs[q];

		if (virtq_init(vq, &f->vm.mem, "fz", f->vdev.queue_max_size))
			abort();
		vq->size = QSIZE;
		vq->desc_gpa = qgpa[q][0];
		vq->avail_gpa = qgpa[q][1];
		vq->used_gpa = qgpa[q][2];
		for (int i = 0; i < 3; i++)
			wr(f, qgpa[q][i], zero, q == 2 ? 0x800 : sizeof(zero));
		allow(f, qgpa[q][2], q == 2 ? 0x800 : 0x1000);
		if (virtq_enable(vq, f->features))
			abort();
		f->avail_idx[q] = f->next_desc[q] = f->used_seen[q] = 0;
	}
	memset(f->owner, -1, sizeof(f->owner));
	f->rx_over_rings = false;
	if (f->vdev.ops->activate(&f->vdev))
		abort();
}

static size_t op_tx(struct fz *f, const uint8_t *d, size_t n)
{
	struct vsock_hdr h;
	uint8_t flags;
	uint16_t plen;
	uint64_t base, gpa[3];
	uint32_t len[3];
	bool write[3] = { false, false, false };
	unsigned nd = 0;
	size_t used;

	if (n < 1 + sizeof(h) + 2)
		return n;
	flags = d[0];
	memcpy(&h, d + 1, sizeof(h));
	plen = (uint16_t)(d[1 + sizeof(h)] | d[2 + sizeof(h)] << 8);
	used = 3 + sizeof(h);
	if (plen > n - used)
		plen = (uint16_t)(n - used);
	if (flags & 1) {
		h.src_cid = cpu_to_le64(3);
		h.dst_cid = cpu_to_le64(2);
	}
	if (flags & 2)
		h.len = cpu_to_le32(plen);
	if (flags & 8) {
		h.dst_port = cpu_to_le32(flags & 16 ? 90 : 80);
		h.type = cpu_to_le16(flags & 16 ? 2 : 1);
	}
	base = TX_BUF + 0x11000ull * (f->next_desc[1] % QSIZE);
	wr(f, base, &h, sizeof(h));
	if (plen)
		wr(f, base + 0x100, d + used, plen);
	if (flags & 4) {
		gpa[nd] = base; len[nd++] = 10;
		gpa[nd] = base + 10; len[nd++] = sizeof(h) - 10;
	} else {
		gpa[nd] = base; len[nd++] = sizeof(h);
	}
	if (plen) {
		gpa[nd] = base + 0x100; len[nd++] = plen;
	}
	if (flags & 32)
		write[nd - 1] = true;  /* a device-writable buffer in a tx chain */
	add_desc_chain(f, 1, gpa, len, write, nd);
	f->vdev.ops->queue_notify(&f->vdev, 1);
	return used + plen;
}

static void op_rx(struct fz *f, uint8_t count, uint8_t size_code)
{
	static const uint32_t sizes[4] = { VSOCK_HDR_LEN + 4096, VSOCK_HDR_LEN, 20, VSOCK_HDR_LEN + 7 };

	for (unsigned i = 0; i < (count % 8u) + 1; i++) {
		uint16_t idx = f->next_desc[0];
		uint64_t gpa = RX_BUF + 0x2000ull * idx;
		uint32_t len = sizes[size_code % 4];
		bool w = !(size_code & 4);

		add_desc_chain(f, 0, &gpa, &len, &w, 1);
	}
	f->vdev.ops->queue_notify(&f->vdev, 0);
}

/* One receive chain of a shape a hostile driver may offer. */
static void op_rx_hostile(struct fz *f, uint8_t shape)
{
	uint64_t base = HOSTILE + 0x2000ull * f->next_desc[0];
	uint64_t gpa[MAX_SEGS] = { base, base + 0x100, base + 0x200 };
	uint32_t len[MAX_SEGS] = { VSOCK_HDR_LEN, 4096, 0 };
	bool w[MAX_SEGS] = { true, true, true };
	unsigned n = 2;

	switch (shape % 8) {
	case 0: len[0] = 20; len[1] = VSOCK_HDR_LEN - 20 + 4096; break;  /* header split */
	case 1: len[1] = 0; len[2] = 100; n = 3; break;                    /* a zero-length buffer */
	case 2: w[0] = false; len[0] = 10; break;                          /* readable first */
	case 3: gpa[0] = RAM_SIZE - 10; len[0] = 100; n = 1; break;        /* across the end of RAM */
	case 4: gpa[1] = RAM_SIZE + 0x1000; break;                         /* past it */
	case 5: len[1] = 0xffffffffu; break;                               /* 4 GiB */
	case 6: gpa[1] = qgpa[0][0]; len[1] = 16 * QSIZE; break;           /* over the descriptor table */
	case 7: gpa[0] = qgpa[0][2]; len[0] = 0x100; n = 1; break;         /* over its own used ring */
	}
	add_desc_chain(f, 0, gpa, len, w, n);
	f->vdev.ops->queue_notify(&f->vdev, 0);
}

/* One event buffer: TRANSPORT_RESET (after a restore) needs one. */
static void op_event(struct fz *f, uint8_t shape)
{
	uint64_t gpa = EV_BUF + 0x100ull * f->next_desc[2];
	uint32_t len = 8;
	bool w = true;

	switch (shape % 4) {
	case 1: len = 3; break;
	case 2: w = false; break;
	case 3: gpa = RAM_SIZE - 4; break;
	}
	add_desc_chain(f, 2, &gpa, &len, &w, 1);
	f->vdev.ops->queue_notify(&f->vdev, 2);
}

/*
 * Guest RAM changed only where the driver let the device write. Pages no one
 * wrote are not resident (and read as zero): only resident ones are compared,
 * so an input does not fault in all of RAM.
 */
static void check_ram(struct fz *f)
{
	static unsigned char resident[RAM_SIZE / 4096];
	uint8_t *ram = gmem_translate(&f->vm.mem, 0, RAM_SIZE);

	if (!ram || mincore(ram, RAM_SIZE, resident))
		abort();
	for (size_t blk = 0; blk < RAM_SIZE; blk += 4096) {
		if (!(resident[blk / 4096] & 1) || !memcmp(ram + blk, f->shadow + blk, 4096))
			continue;
		for (size_t a = blk; a < blk + 4096; a++) {
			if (ram[a] != f->shadow[a] && !(f->writable[a / 8] & (1u << (a % 8))))
				abort();
		}
	}
}

static void accept_all(struct fz *f, struct vsock_listener *l)
{
	struct stream_end *e;

	while (vsock_accept(l, STREAM_NONBLOCKING, &e, NULL) == 0) {
		if (f->nends < MAX_ENDS)
			f->ends[f->nends++] = e;
		else
			stream_close(e);
	}
}

/* Save the device's node and load it back: connections forgotten, TRANSPORT_RESET queued. */
static int snapshot_restore(struct fz *f)
{
	struct snap_writer w;
	struct snap_reader r;
	const void *blob;
	size_t len;
	int ret = -EIO, node;

	if (snap_writer_init(&w))
		return -ENOMEM;
	if (!snap_begin_node(&w, "vsock0") && !f->vdev.ops->snap_save(&f->vdev, &w) &&
	    !snap_end_node(&w) && !snap_writer_finish(&w, &blob, &len) &&
	    !snap_reader_open(&r, blob, len)) {
		node = snap_node(&r, 0, "vsock0");
		ret = node < 0 ? node : f->vdev.ops->snap_load(&f->vdev, &r, node);
		snap_reader_close(&r);
	}
	snap_writer_free(&w);
	return ret;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[70000], shadow[RAM_SIZE], writable[RAM_SIZE / 8];
	struct fz *f;
	char err[256];
	size_t i = 1;

	if (size < 1)
		return 0;
	f = calloc(1, sizeof(*f));
	if (!f)
		abort();
	/* Static: ASan's calloc would write all 2 MiB, and fault it in, every input. */
	memset(shadow, 0, sizeof(shadow));
	memset(writable, 0, sizeof(writable));
	f->shadow = shadow;
	f->writable = writable;
	if (gmem_create(&f->vm.mem, RAM_SIZE, 0, 0) || evloop_create(&f->vm.loop))
		abort();
	f->vdev.vm = &f->vm;
	if (virtio_vsock_kind.create(&f->vm, "cid=3", &f->vdev, err, sizeof(err)))
		abort();
	f->vdev.signal_used = on_signal;
	f->vdev.needs_reset = on_needs_reset;
	f->dev = vsock_of(&f->vdev);
	if (vsock_listen(f->dev, 80, VSOCK_STREAM, &f->l80) || vsock_listen(f->dev, 90, VSOCK_SEQPACKET, &f->l90))
		abort();
	f->features = (1ull << VIRTIO_F_VERSION_1) | (data[0] & 1 ? 1ull << VIRTIO_VSOCK_F_SEQPACKET : 0) |
		      (data[0] & 2 ? 1ull << VIRTIO_F_EVENT_IDX : 0);
	f->first_rx = data[0] >> 2;
	activate(f);
	op_rx(f, f->first_rx, 0);

	for (unsigned ops = 0; i < size && ops < MAX_OPS; ops++) {
		uint8_t op = data[i++] % 10;
		uint8_t a = i < size ? data[i] : 0, b = i + 1 < size ? data[i + 1] : 0;

		switch (op) {
		case 0:
			i += op_tx(f, data + i, size - i);
			break;
		case 1:
			op_rx(f, a, b);
			i += 2;
			break;
		case 2:
			accept_all(f, f->l80);
			accept_all(f, f->l90);
			break;
		case 3:
			if (f->nends) {
				size_t n = (size_t)b * 257 + 1;

				memset(buf, a, n);
				(void)stream_write(f->ends[a % f->nends], buf, n);
			}
			i += 2;
			break;
		case 4:
			if (f->nends)
				(void)stream_read(f->ends[a % f->nends], buf, sizeof(buf));
			i += 1;
			break;
		case 5:
			if (f->nends) {
				unsigned k = a % f->nends;

				stream_close(f->ends[k]);
				f->ends[k] = f->ends[--f->nends];
			}
			i += 1;
			break;
		case 6:
			f->vdev.ops->reset(&f->vdev);
			for (unsigned q = 0; q < 3; q++)
				virtq_reset(&f->vdev.vqs[q]);
			activate(f);
			op_rx(f, f->first_rx, 0);
			break;
		case 7:
			if (f->vdev.ops->pause(&f->vdev) || snapshot_restore(f) || f->vdev.ops->resume(&f->vdev))
				abort();
			break;
		case 8:
			op_rx_hostile(f, a);
			i += 1;
			break;
		case 9:
			op_event(f, a);
			i += 1;
			break;
		}
		pump(f);
		check_rx(f);
	}
	for (unsigned k = 0; k < f->nends; k++)
		stream_close(f->ends[k]);
	vsock_listener_close(f->l80);
	vsock_listener_close(f->l90);
	f->vdev.ops->destroy(&f->vdev);
	check_ram(f);
	evloop_destroy(f->vm.loop);
	gmem_destroy(&f->vm.mem);
	free(f);
	return 0;
}
