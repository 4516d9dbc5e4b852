/*
 * Unit tests for the vsock device (devices/vsock/vsock.c, mux.c, bridge.c)
 * and its in-process API: the test plays the guest's driver (three split queues in a
 * real struct gmem) and the transport (queue setup, activate, kicks, counting
 * interrupts), and pumps the event loop itself. Blocking API calls run on a
 * helper thread while the test answers as the guest.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "channel/evloop.h"
#include "devices/virtio_kinds.h"
#include "devices/vsock/bridge.h"
#include "devices/vsock/mux.h"
#include "devices/vsock/packet.h"
#include "devices/vsock/vsock.h"
#include "virtio/virtqueue.h"
#include "vmm/gmem.h"
#include "vmm/snapshot/format.h"
#include "vmm/vm.h"

#define RAM_SIZE   (8 * MiB)
#define QSIZE      64u
#define CID        3u
#define HDR        VSOCK_HDR_LEN
#define RXPAY      4096u                /* like Linux 6.1's receive buffers */
#define RX_BUF     0x100000ull          /* QSIZE buffers, 0x2000 apart (by descriptor) */
#define TX_BUF     0x200000ull          /* QSIZE slots of 0x11000 */
#define EV_BUF     0x6f0000ull
#define F(bit)     (1ull << (bit))
#define F_BASE     F(VIRTIO_F_VERSION_1)
#define F_SEQ      F(VIRTIO_VSOCK_F_SEQPACKET)

static const uint64_t qgpa[3][3] = {
	{ 0x1000, 0x2000, 0x3000 }, { 0x4000, 0x5000, 0x6000 }, { 0x7000, 0x8000, 0x9000 },
};

struct drvq {
	uint64_t desc, avail, used;
	uint16_t avail_idx, used_seen, next_desc;
};

struct fx {
	struct vm vm;
	struct virtio_dev vdev;
	struct vsock_dev *dev;
	struct drvq q[3];
	int signals[3];
	int resets;
	uint32_t guest_buf_alloc;   /* what our "guest" advertises */
	uint32_t guest_fwd_cnt;
	bool auto_repost;
};

/* One packet as the guest driver sees it on rx. */
struct rxpkt {
	struct vsock_pkt p;
	uint8_t data[RXPAY];
};

/* ---- transport and driver stand-ins --------------------------------------------- */

static void on_signal_used(struct virtio_dev *vdev, unsigned q)
{
	struct fx *f = vdev->transport;

	assert_true(q < 3);
	f->signals[q]++;
}

static void on_needs_reset(struct virtio_dev *vdev)
{
	struct fx *f = vdev->transport;

	f->resets++;
}

static void wr(struct fx *f, uint64_t gpa, const void *p, size_t len)
{
	assert_int_equal(gmem_write(&f->vm.mem, gpa, p, len), 0);
}

static void rd(struct fx *f, uint64_t gpa, void *p, size_t len)
{
	assert_int_equal(gmem_read(&f->vm.mem, gpa, p, len), 0);
}

static uint16_t rd16(struct fx *f, uint64_t gpa)
{
	le16 x;

	rd(f, gpa, &x, sizeof(x));
	return le16_to_cpu(x);
}

static uint32_t rd32(struct fx *f, uint64_t gpa)
{
	le32 x;

	rd(f, gpa, &x, sizeof(x));
	return le32_to_cpu(x);
}

static void wr16(struct fx *f, uint64_t gpa, uint16_t v)
{
	le16 x = cpu_to_le16(v);

	wr(f, gpa, &x, sizeof(x));
}

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

static uint16_t add_chain(struct fx *f, unsigned q, const struct seg *segs, unsigned n)
{
	struct drvq *d = &f->q[q];
	uint16_t head = d->next_desc;

	for (unsigned i = 0; i < n; i++) {
		uint16_t idx = (uint16_t)((head + i) % QSIZE);
		struct virtq_desc desc = {
			.addr = cpu_to_le64(segs[i].gpa),
			.len = cpu_to_le32(segs[i].len),
			.flags = cpu_to_le16((segs[i].write ? VIRTQ_DESC_F_WRITE : 0) |
					     (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
			.next = cpu_to_le16((uint16_t)((idx + 1) % QSIZE)),
		};

		wr(f, d->desc + 16ull * idx, &desc, sizeof(desc));
	}
	d->next_desc = (uint16_t)((head + n) % QSIZE);
	wr16(f, d->avail + 4 + 2ull * (d->avail_idx % QSIZE), head);
	d->avail_idx++;
	wr16(f, d->avail + 2, d->avail_idx);
	return head;
}

static uint16_t used_pending(struct fx *f, unsigned q)
{
	return (uint16_t)(rd16(f, f->q[q].used + 2) - f->q[q].used_seen);
}

static void used_next(struct fx *f, unsigned q, uint32_t *id, uint32_t *len)
{
	uint64_t e = f->q[q].used + 4 + 8ull * (f->q[q].used_seen % QSIZE);

	assert_true(used_pending(f, q) > 0);
	*id = rd32(f, e);
	*len = rd32(f, e + 4);
	f->q[q].used_seen++;
}

static int run_loop(struct fx *f)
{
	int total = 0, n;

	while ((n = evloop_run_once(f->vm.loop, 0)) > 0)
		total += n;
	assert_true(n >= 0);
	return total;
}

static void kick(struct fx *f, unsigned q)
{
	f->vdev.ops->queue_notify(&f->vdev, q);
	run_loop(f);
}

/* rx buffers: one writable descriptor each, its address tied to the descriptor index. */
static void rx_post(struct fx *f, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint16_t idx = f->q[VSOCK_RXQ].next_desc;
		struct seg s = { RX_BUF + 0x2000ull * idx, HDR + RXPAY, true };

		add_chain(f, VSOCK_RXQ, &s, 1);
	}
}

/* Take the next packet the device put on rx; false when there is none. */
static bool rx_take(struct fx *f, struct rxpkt *out)
{
	struct vsock_hdr h;
	uint32_t id, len;

	run_loop(f);
	if (!used_pending(f, VSOCK_RXQ))
		return false;
	used_next(f, VSOCK_RXQ, &id, &len);
	assert_true(len >= HDR && len <= HDR + RXPAY);
	rd(f, RX_BUF + 0x2000ull * id, &h, HDR);
	vsock_hdr_decode(&h, &out->p);
	assert_int_equal(out->p.len, len - HDR);
	assert_int_equal(out->p.src_cid, VSOCK_HOST_CID);
	assert_int_equal(out->p.dst_cid, CID);
	if (out->p.len)
		rd(f, RX_BUF + 0x2000ull * id + HDR, out->data, out->p.len);
	if (f->auto_repost) {
		rx_post(f, 1);
		f->vdev.ops->queue_notify(&f->vdev, VSOCK_RXQ);
	}
	return true;
}

/* Put a raw chain (header bytes + payload, split in two descriptors) on tx. */
static void tx_raw(struct fx *f, const void *hdr, uint32_t hlen, const void *pay, uint32_t plen)
{
	uint16_t idx = f->q[VSOCK_TXQ].next_desc;
	uint64_t base = TX_BUF + 0x11000ull * (idx % QSIZE);
	struct seg s[2] = { { base, hlen, false }, { base + 0x100, plen, false } };

	wr(f, base, hdr, hlen);
	if (plen)
		wr(f, base + 0x100, pay, plen);
	add_chain(f, VSOCK_TXQ, s, plen ? 2 : 1);
}

static void tx_pkt(struct fx *f, uint16_t type, uint16_t op, uint32_t src_port, uint32_t dst_port,
		   uint32_t flags, const void *pay, uint32_t len)
{
	struct vsock_pkt p = {
		.src_cid = CID, .dst_cid = VSOCK_HOST_CID, .src_port = src_port, .dst_port = dst_port,
		.len = len, .type = type, .op = op, .flags = flags,
		.buf_alloc = f->guest_buf_alloc, .fwd_cnt = f->guest_fwd_cnt,
	};
	struct vsock_hdr h;

	vsock_hdr_encode(&h, &p);
	tx_raw(f, &h, HDR, pay, len);
	kick(f, VSOCK_TXQ);
}

#define GP 1234u   /* the guest's port in most tests */

static void tx_stream(struct fx *f, uint16_t op, uint32_t host_port, uint32_t flags, const void *pay,
		      uint32_t len)
{
	tx_pkt(f, VIRTIO_VSOCK_TYPE_STREAM, op, GP, host_port, flags, pay, len);
}

static void enable_queues(struct fx *f, uint64_t features)
{
	static const uint8_t zero[0x1000];

	for (unsigned q = 0; q < 3; q++) {
		struct virtq *vq = &f->vdev.vqs[q];

		assert_int_equal(virtq_init(vq, &f->vm.mem, q == 0 ? "v.rx" : q == 1 ? "v.tx" : "v.ev",
					    f->vdev.queue_max_size), 0);
		vq->size = QSIZE;
		vq->desc_gpa = qgpa[q][0];
		vq->avail_gpa = qgpa[q][1];
		vq->used_gpa = qgpa[q][2];
		for (int i = 0; i < 3; i++)
			wr(f, qgpa[q][i], zero, sizeof(zero));
		assert_int_equal(virtq_enable(vq, features), 0);
		f->q[q] = (struct drvq){ .desc = qgpa[q][0], .avail = qgpa[q][1], .used = qgpa[q][2] };
	}
}

static void activate(struct fx *f, uint64_t features)
{
	f->vdev.driver_features = features;
	enable_queues(f, features);
	assert_int_equal(f->vdev.ops->activate(&f->vdev), 0);
	run_loop(f);
}

static void device_reset(struct fx *f)
{
	f->vdev.ops->reset(&f->vdev);
	for (unsigned q = 0; q < 3; q++)
		virtq_reset(&f->vdev.vqs[q]);
}

static struct fx *fx_new(const char *args, uint64_t features)
{
	struct fx *f = calloc(1, sizeof(*f));
	char err[256] = "";

	assert_non_null(f);
	assert_int_equal(gmem_create(&f->vm.mem, RAM_SIZE, 0, 0), 0);
	assert_int_equal(evloop_create(&f->vm.loop), 0);
	f->vdev.vm = &f->vm;
	assert_int_equal(virtio_vsock_kind.create(&f->vm, args, &f->vdev, err, sizeof(err)), 0);
	f->vdev.transport = f;
	f->vdev.signal_used = on_signal_used;
	f->vdev.needs_reset = on_needs_reset;
	f->dev = vsock_of(&f->vdev);
	assert_non_null(f->dev);
	f->guest_buf_alloc = 256 * 1024;
	f->auto_repost = true;
	if (features) {
		activate(f, features);
		rx_post(f, QSIZE / 2);
		kick(f, VSOCK_RXQ);
	}
	return f;
}

static void fx_free(struct fx *f)
{
	f->vdev.ops->destroy(&f->vdev);
	evloop_destroy(f->vm.loop);
	gmem_destroy(&f->vm.mem);
	free(f);
}

static unsigned conns(struct fx *f)
{
	struct vsock_mux_stats st;

	vsock_mux_get_stats(f->dev, &st);
	return st.conns;
}

static struct vsock_mux_stats stats(struct fx *f)
{
	struct vsock_mux_stats st;

	vsock_mux_get_stats(f->dev, &st);
	return st;
}

static bool readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1;
}

/* Read exactly len bytes from a (non-blocking or blocking) end, pumping the loop meanwhile. */
static void host_read_all(struct fx *f, struct stream_end *e, uint8_t *buf, size_t len)
{
	size_t got = 0;

	for (int spins = 0; got < len; spins++) {
		ssize_t n;

		assert_true(spins < 100000);
		run_loop(f);
		if (!readable(stream_fd(e), 1))
			continue;
		n = stream_read(e, buf + got, len - got);
		if (n == -EAGAIN)
			continue;
		assert_true(n > 0);
		got += (size_t)n;
	}
}

/* The guest connects to host port `port`, a listener takes it: returns the host end. */
static struct stream_end *guest_connects(struct fx *f, struct vsock_listener *l, uint32_t gport,
					 uint32_t port, uint16_t type)
{
	struct stream_end *e = NULL;
	struct rxpkt r;
	uint32_t pp = 0;

	tx_pkt(f, type, VIRTIO_VSOCK_OP_REQUEST, gport, port, 0, NULL, 0);
	assert_true(rx_take(f, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RESPONSE);
	assert_int_equal(r.p.src_port, port);
	assert_int_equal(r.p.dst_port, gport);
	assert_int_equal(r.p.type, type);
	assert_int_equal(r.p.buf_alloc, VSOCK_BUF_ALLOC);
	assert_true(readable(vsock_listener_fd(l), 0));
	assert_int_equal(vsock_accept(l, STREAM_NONBLOCKING, &e, &pp), 0);
	assert_int_equal(pp, gport);
	return e;
}

/* The device's snapshot node, through the snapshot writer: a malloc'd state file. */
static void *snap_save_dev(struct fx *f, size_t *len)
{
	struct snap_writer w;
	const void *blob;
	void *copy;

	assert_int_equal(snap_writer_init(&w), 0);
	assert_int_equal(snap_begin_node(&w, "vsock0"), 0);
	assert_int_equal(f->vdev.ops->snap_save(&f->vdev, &w), 0);
	assert_int_equal(snap_end_node(&w), 0);
	assert_int_equal(snap_writer_finish(&w, &blob, len), 0);
	copy = malloc(*len);
	assert_non_null(copy);
	memcpy(copy, blob, *len);
	snap_writer_free(&w);
	return copy;
}

/* Load it back into f; err gets the reader's line. */
static int snap_load_dev(struct fx *f, const void *blob, size_t len, char *err, size_t errlen)
{
	struct snap_reader r;
	int node, ret;

	assert_int_equal(snap_reader_open(&r, blob, len), 0);
	node = snap_node(&r, 0, "vsock0");
	assert_true(node >= 0);
	ret = f->vdev.ops->snap_load(&f->vdev, &r, node);
	snprintf(err, errlen, "%s", r.err);
	snap_reader_close(&r);
	return ret;
}

/* ---- creation and config ------------------------------------------------------------ */

static void expect_create_error(const char *args, const char *needle)
{
	struct vm vm;
	struct virtio_dev vdev;
	char err[256] = "";

	memset(&vm, 0, sizeof(vm));
	memset(&vdev, 0, sizeof(vdev));
	assert_int_equal(evloop_create(&vm.loop), 0);
	assert_int_equal(virtio_vsock_kind.create(&vm, args, &vdev, err, sizeof(err)), -EINVAL);
	if (!strstr(err, needle))
		fail_msg("'%s': error '%s' does not name '%s'", args, err, needle);
	evloop_destroy(vm.loop);
}

static void test_options(void **state)
{
	char longpath[200];

	(void)state;
	expect_create_error("", "cid=N is required");
	expect_create_error("cid=2", "cid=2");
	expect_create_error("cid=0", "cid=0");
	expect_create_error("cid=4294967295", "cid=4294967295");
	expect_create_error("cid=99999999999", "cid=99999999999");
	expect_create_error("cid=3x", "cid=3x");
	expect_create_error("cid=-3", "cid=-3");
	expect_create_error("cid=3,cid=4", "twice");
	expect_create_error("cid=3,port=4", "unknown key 'port'");
	expect_create_error("cid=3,", "trailing");
	expect_create_error("cid", "not key=value");
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = '\0';
	{
		char args[260];

		snprintf(args, sizeof(args), "cid=3,socket=/tmp/%.100s", longpath);
		expect_create_error(args, "socket=");
	}
	expect_create_error("cid=3,type=seqpacket", "needs socket=PATH");
	expect_create_error("cid=3,socket=/tmp/x.sock,type=dgram", "type=dgram");
	expect_create_error("cid=3,socket=/tmp/x.sock,type=", "type=:");
	expect_create_error("cid=3,socket=/tmp/x.sock,type=stream,type=stream", "type= given twice");
	expect_create_error("cid=3,socket=/proc/version", "not a socket");
	expect_create_error("cid=3,socket=/nonexistent-dir/x.sock", "cannot listen");
}

static void test_config_and_features(void **state)
{
	struct fx *f = fx_new("cid=4294967294", 0), *g;
	uint8_t cfg[8];
	uint64_t cid;
	size_t len;
	void *blob;
	char err[SNAP_ERR_LEN], desc_err[128];

	(void)state;
	assert_int_equal(f->vdev.device_features, F_SEQ);
	assert_int_equal(f->vdev.num_queues, 3);
	assert_int_equal(f->vdev.config_size, 8);
	f->vdev.ops->cfg_read(&f->vdev, 0, cfg, 8);
	memcpy(&cid, cfg, 8);
	assert_int_equal(le64_to_cpu(cid), 4294967294ull);
	f->vdev.ops->cfg_read(&f->vdev, 4, cfg, 4);
	assert_int_equal(cfg[0], 0);
	/* Writes are ignored. */
	f->vdev.ops->cfg_write(&f->vdev, 0, cfg, 4);
	f->vdev.ops->cfg_read(&f->vdev, 0, cfg, 8);
	memcpy(&cid, cfg, 8);
	assert_int_equal(le64_to_cpu(cid), 4294967294ull);
	/* Snapshot: a well-formed table; the round trip; another CID is refused by name. */
	assert_true(snap_desc_valid(&virtio_vsock_snap_desc, desc_err, sizeof(desc_err)));
	blob = snap_save_dev(f, &len);
	assert_int_equal(snap_load_dev(f, blob, len, err, sizeof(err)), 0);
	g = fx_new("cid=3", 0);
	assert_int_equal(snap_load_dev(g, blob, len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "guest_cid"));
	free(blob);
	fx_free(g);
	fx_free(f);
}

/* ---- guest-initiated connections ------------------------------------------------------ */

static void test_guest_connect_refused(void **state)
{
	struct fx *f = fx_new("cid=3", F_BASE);
	struct rxpkt r;

	(void)state;
	tx_stream(f, VIRTIO_VSOCK_OP_REQUEST, 80, 0, NULL, 0);
	assert_true(rx_take(f, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RST);
	assert_int_equal(r.p.src_port, 80);
	assert_int_equal(r.p.dst_port, GP);
	assert_int_equal(conns(f), 0);
	assert_false(rx_take(f, &r));
	assert_int_equal(f->resets, 0);
	fx_free(f);
}

static void test_guest_connect_and_close(void **state)
{
	struct fx *f = fx_new("cid=3", F_BASE);
	struct vsock_listener *l, *l2;
	struct stream_end *e;
	struct rxpkt r;
	char buf[16];

	(void)state;
	assert_int_equal(vsock_listen(f->dev, 80, VSOCK_STREAM, &l), 0);
	assert_int_equal(vsock_listen(f->dev, 80, VSOCK_STREAM, &l2), -EADDRINUSE);
	assert_int_equal(vsock_accept(l, STREAM_NONBLOCKING, &e, NULL), -EAGAIN);
	e = guest_connects(f, l, GP, 80, VIRTIO_VSOCK_TYPE_STREAM);
	assert_false(readable(vsock_listener_fd(l), 0));
	assert_int_equal(conns(f), 1);

	/* guest -> host */
	tx_stream(f, VIRTIO_VSOCK_OP_RW, 80, 0, "hello", 5);
	host_read_all(f, e, (uint8_t *)buf, 5);
	assert_memory_equal(buf, "hello", 5);
	/* host -> guest */
	assert_int_equal(stream_write(e, "world!", 6), 6);
	assert_true(rx_take(f, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RW);
	assert_int_equal(r.p.len, 6);
	assert_int_equal(r.p.flags, 0);
	assert_memory_equal(r.data, "world!", 6);
	/* The guest closes: host reads end-of-file, the device finishes with RST. */
	tx_stream(f, VIRTIO_VSOCK_OP_SHUTDOWN, 80, VIRTIO_VSOCK_SHUTDOWN_ALL, NULL, 0);
	assert_true(rx_take(f, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RST);
	run_loop(f);
	assert_int_equal(conns(f), 0);
	assert_int_equal(stream_read(e, buf, sizeof(buf)), 0);
	assert_int_equal(stream_write(e, "x", 1), -EPIPE);
	stream_close(e);
	vsock_listener_close(l);
	fx_free(f);
}

static void test_listener_type_and_backlog_close(void **state)
{
	struct fx *f = fx_new("cid=3", F_BASE | F_SEQ);
	struct vsock_listener *l;
	struct rxpkt r;

	(void)state;
	assert_int_equal(vsock_listen(f->dev, 81, VSOCK_STREAM, &l), 0);
	/* A SEQPACKET connection to a stream listener is refused. */
	tx_pkt(f, VIRTIO_VSOCK_TYPE_SEQPACKET, VIRTIO_VSOCK_OP_REQUEST, GP, 81, 0, NULL, 0);
	assert_true(rx_take(f, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RST);
	assert_int_equal(r.p.type, VIRTIO_VSOCK_TYPE_SEQPACKET);
	/* Queued, never accepted, listener closed: the guest sees SHUTDOWN. */
	tx_stream(f, VIRTIO_VSOCK_OP_REQUEST, 81, 0, NULL, 0);
	assert_true(rx_take(f, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RESPONSE);
	vsock_listener_close(l);
	assert_true(rx_take(f, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_SHUTDOWN);
	assert_int_equal(r.p.flags, VIRTIO_VSOCK_SHUTDOWN_ALL);
	tx_stream(f, VIRTIO_VSOCK_OP_RST, 81, 0, NULL, 0);
	assert_int_equal(conns(f), 0);
	fx_free(f);
}

/* ---- host-initiated connections --------------------------------------------------------- */

struct connector {
	pthread_t thread;
	struct vsock_dev *dev;
	uint32_t port;
	enum vsock_type type;
	int timeout_ms;
	int result;
	struct stream_end *end;
	volatile bool done;
};

static void *connector_main(void *arg)
{
	struct connector *c = arg;

	c->result = vsock_connect_ex(c->dev, c->port, c->type, STREAM_BLOCKING, c->timeout_ms, &c->end);
	__atomic_store_n(&c->done, true, __ATOMIC_RELEASE);
	return NULL;
}

static void connector_start(struct connector *c, struct fx *f, uint32_t port, enum vsock_type type,
			    int timeout_ms)
{
	memset(c, 0, sizeof(*c));
	c->dev = f->dev;
	c->port = port;
	c->type = type;
	c->timeout_ms = timeout_ms;
	assert_int_equal(pthread_create(&c->thread, NULL, connector_main, c), 0);
}

/* Pump the loop until the guest sees a REQUEST for port; returns it. */
static struct rxpkt wait_request(struct fx *f, uint32_t port)
{
	struct rxpkt r;

	for (int i = 0; i < 5000; i++) {
		if (rx_take(f, &r)) {
			assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_REQUEST);
			assert_int_equal(r.p.dst_port, port);
			assert_true(r.p.src_port >= (1u << 30));
			return r;
		}
		assert_true(evloop_run_once(f->vm.loop, 1) >= 0);
	}
	fail_msg("no REQUEST for port %u", port);
	return r;
}

static void connector_join(struct fx *f, struct connector *c)
{
	for (int i = 0; i < 20000 && !__atomic_load_n(&c->done, __ATOMIC_ACQUIRE); i++)
		assert_true(evloop_run_once(f->vm.loop, 1) >= 0);
	assert_true(c->done);
	pthread_join(c->thread, NULL);
}

static void test_host_connect(void **state)
{
	struct fx *f = fx_new("cid=3", F_BASE);
	struct connector c;
	struct rxpkt req, r;
	char buf[8];

	(void)state;
	connector_start(&c, f, 5000, VSOCK_STREAM, 0);
	req = wait_request(f, 5000);
	tx_pkt(f, VIRTIO_VSOCK_TYPE_STREAM, VIRTIO_VSOCK_OP_RESPONSE, 5000, req.p.src_port, 0, NULL, 0);
	connector_join(f, &c);
	assert_int_equal(c.result, 0);
	assert_non_null(c.end);
	/* Blocking end, both ways. */
	assert_int_equal(stream_write(c.end, "ping", 4), 4);
	assert_true(rx_take(f, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RW);
	assert_memory_equal(r.data, "ping", 4);
	assert_int_equal(r.p.dst_port, 5000);
	tx_pkt(f, VIRTIO_VSOCK_TYPE_STREAM, VIRTIO_VSOCK_OP_RW, 5000, req.p.src_port, 0, "pong", 4);
	assert_int_equal(stream_read(c.end, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "pong", 4);
	/* The host closes: the guest sees SHUTDOWN(both), answers RST, all gone. */
	stream_close(c.end);
	run_loop(f);
	assert_true(rx_take(f, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_SHUTDOWN);
	assert_int_equal(r.p.flags, VIRTIO_VSOCK_SHUTDOWN_ALL);
	tx_pkt(f, VIRTIO_VSOCK_TYPE_STREAM, VIRTIO_VSOCK_OP_RST, 5000, req.p.src_port, 0, NULL, 0);
	assert_int_equal(conns(f), 0);
	fx_free(f);
}

static void test_host_connect_refused_and_timeout(void **state)
{
	struct fx *f = fx_new("cid=3", F_BASE);
	struct connector c;
	struct rxpkt req, r;
	uint64_t t0;

	(void)state;
	connector_start(&c, f, 6000, VSOCK_STREAM, 0);
	req = wait_request(f, 6000);
	tx_pkt(f, VIRTIO_VSOCK_TYPE_STREAM, VIRTIO_VSOCK_OP_RST, 6000, req.p.src_port, 0, NULL, 0);
	connector_join(f, &c);
	assert_int_equal(c.result, -ECONNREFUSED);
	assert_null(c.end);
	assert_int_equal(conns(f), 0);

	t0 = monotonic_ns();
	connector_start(&c, f, 6001, VSOCK_STREAM, 300);
	req = wait_request(f, 6001);
	connector_join(f, &c);
	assert_int_equal(c.result, -ETIMEDOUT);
	assert_true(monotonic_ns() - t0 >= 300ull * 1000000);
	/* The device told the guest it gave up. */
	assert_true(rx_take(f, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RST);
	assert_int_equal(r.p.src_port, req.p.src_port);
	run_loop(f);
	assert_int_equal(conns(f), 0);
	/* A late RESPONSE finds no connection: answered with RST. */
	tx_pkt(f, VIRTIO_VSOCK_TYPE_STREAM, VIRTIO_VSOCK_OP_RESPONSE, 6001, req.p.src_port, 0, NULL, 0);
	assert_true(rx_take(f, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RST);
	fx_free(f);
}

static void test_host_connect_not_running(void **state)
{
	struct fx *f = fx_new("cid=3", 0);
	struct connector c;

	(void)state;
	connector_start(&c, f, 7000, VSOCK_STREAM, 0);
	connector_join(f, &c);
	assert_int_equal(c.result, -ENETDOWN);
	/* SEQPACKET the driver did not accept: refused at once. */
	activate(f, F_BASE);
	connector_start(&c, f, 7000, VSOCK_SEQPACKET, 0);
	connector_join(f, &c);
	assert_int_equal(c.result, -ECONNREFUSED);
	/* A connect on the loop thread would wait for itself. */
	fx_free(f);
}

/* ---- credit and push-back ----------------------------------------------------------------- */

static void pattern(uint8_t *p, size_t len, uint32_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)((seed + i) * 2654435761u >> 13);
}

static void test_guest_to_host_pushback(void **state)
{
	struct fx *f = fx_new("cid=3", F_BASE);
	struct vsock_listener *l;
	struct stream_end *e, *e2;
	uint8_t *data = malloc(VSOCK_BUF_ALLOC), *got = malloc(VSOCK_BUF_ALLOC);
	struct rxpkt r;
	bool update = false;

	(void)state;
	assert_int_equal(vsock_listen(f->dev, 80, VSOCK_STREAM, &l), 0);
	e = guest_connects(f, l, GP, 80, VIRTIO_VSOCK_TYPE_STREAM);
	e2 = guest_connects(f, l, GP + 1, 80, VIRTIO_VSOCK_TYPE_STREAM);
	pattern(data, VSOCK_BUF_ALLOC, 7);
	/* The host does not read: the whole credit (256 KiB) is accepted all the same. */
	for (uint32_t off = 0; off < VSOCK_BUF_ALLOC; off += 65536)
		tx_stream(f, VIRTIO_VSOCK_OP_RW, 80, 0, data + off, 65536);
	assert_int_equal(conns(f), 2);
	/* Another connection is not held up by it. */
	tx_pkt(f, VIRTIO_VSOCK_TYPE_STREAM, VIRTIO_VSOCK_OP_RW, GP + 1, 80, 0, "other", 5);
	host_read_all(f, e2, got, 5);
	assert_memory_equal(got, "other", 5);
	/* Now every byte arrives, in order, and the guest hears its credit back
	 * (before its view of our buffer drops below half). */
	host_read_all(f, e, got, VSOCK_BUF_ALLOC);
	assert_memory_equal(got, data, VSOCK_BUF_ALLOC);
	while (rx_take(f, &r))
		if (r.p.dst_port == GP && r.p.op == VIRTIO_VSOCK_OP_CREDIT_UPDATE &&
		    r.p.fwd_cnt > VSOCK_BUF_ALLOC / 2)
			update = true;
	assert_true(update);
	/*
	 * A guest that ignores its credit while the host does not read: what the
	 * host end holds plus buf_alloc is accepted, then that connection (only)
	 * is reset. The device's memory for it stays bounded.
	 */
	{
		uint32_t sent = 0;
		bool reset = false;

		while (!reset) {
			assert_true(sent < 4 * 1024 * 1024);
			tx_stream(f, VIRTIO_VSOCK_OP_RW, 80, 0, data, 65536);
			sent += 65536;
			while (rx_take(f, &r))
				if (r.p.op == VIRTIO_VSOCK_OP_RST && r.p.dst_port == GP)
					reset = true;
		}
		assert_true(sent > VSOCK_BUF_ALLOC);
	}
	assert_int_equal(r.p.dst_port, GP);
	run_loop(f);
	assert_int_equal(conns(f), 1);
	assert_int_equal(stats(f).protocol_resets, 1);
	stream_close(e);
	stream_close(e2);
	vsock_listener_close(l);
	free(data);
	free(got);
	fx_free(f);
}

static void test_host_to_guest_credit(void **state)
{
	struct fx *f = fx_new("cid=3", F_BASE);
	struct vsock_listener *l;
	struct stream_end *e;
	uint8_t data[20000], got[20000];
	uint32_t have = 0;
	struct rxpkt r;
	int requests = 0;

	(void)state;
	f->guest_buf_alloc = 8192;
	assert_int_equal(vsock_listen(f->dev, 80, VSOCK_STREAM, &l), 0);
	e = guest_connects(f, l, GP, 80, VIRTIO_VSOCK_TYPE_STREAM);
	pattern(data, sizeof(data), 3);
	assert_int_equal(stream_write(e, data, sizeof(data)), (ssize_t)sizeof(data));
	while (have < sizeof(data)) {
		uint32_t window = 0;

		while (rx_take(f, &r)) {
			if (r.p.op == VIRTIO_VSOCK_OP_CREDIT_REQUEST) {
				requests++;
				continue;
			}
			assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RW);
			assert_true(r.p.len <= RXPAY);
			memcpy(got + have, r.data, r.p.len);
			have += r.p.len;
			window += r.p.len;
		}
		/* Never more than the guest's buffer between two credit updates. */
		assert_true(window <= 8192);
		assert_true(window > 0);
		f->guest_fwd_cnt = have;
		tx_stream(f, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 80, 0, NULL, 0);
	}
	assert_memory_equal(got, data, sizeof(data));
	assert_true(requests >= 1);
	stream_close(e);
	vsock_listener_close(l);
	fx_free(f);
}

static void test_credit_wraparound_stream(void **state)
{
	struct fx *f = fx_new("cid=3", F_BASE);
	struct vsock_listener *l;
	struct stream_end *e;
	struct rxpkt r;
	uint8_t buf[4096];

	(void)state;
	/* The guest's counters start near 2^32 (it may have moved 4 GiB before). */
	f->guest_fwd_cnt = 0xfffff000u;
	f->guest_buf_alloc = 4096;
	assert_int_equal(vsock_listen(f->dev, 80, VSOCK_STREAM, &l), 0);
	e = guest_connects(f, l, GP, 80, VIRTIO_VSOCK_TYPE_STREAM);
	/* Our tx_cnt starts at 0 while its fwd_cnt is huge: no credit until it agrees. */
	assert_int_equal(stream_write(e, "abc", 3), 3);
	assert_true(rx_take(f, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_CREDIT_REQUEST);
	assert_false(rx_take(f, &r));
	f->guest_fwd_cnt = 0;
	tx_stream(f, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 80, 0, NULL, 0);
	assert_true(rx_take(f, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RW);
	assert_memory_equal(r.data, "abc", 3);
	(void)buf;
	stream_close(e);
	vsock_listener_close(l);
	fx_free(f);
}

/* ---- fairness ------------------------------------------------------------------------------- */

static void test_fairness(void **state)
{
	struct fx *f = fx_new("cid=3", F_BASE);
	struct vsock_listener *l;
	struct stream_end *busy, *quiet;
	static uint8_t big[150000];
	struct rxpkt r;
	int before_quiet = 0;

	(void)state;
	assert_int_equal(vsock_listen(f->dev, 80, VSOCK_STREAM, &l), 0);
	busy = guest_connects(f, l, GP, 80, VIRTIO_VSOCK_TYPE_STREAM);
	quiet = guest_connects(f, l, GP + 1, 80, VIRTIO_VSOCK_TYPE_STREAM);
	f->auto_repost = false;
	assert_true(stream_write(busy, big, sizeof(big)) > 100000);
	run_loop(f);
	assert_int_equal(stream_write(quiet, "q", 1), 1);
	/* The busy one has filled every buffer; new ones go round-robin. */
	while (rx_take(f, &r))
		;
	rx_post(f, 8);
	kick(f, VSOCK_RXQ);
	while (rx_take(f, &r)) {
		if (r.p.dst_port == GP + 1)
			break;
		before_quiet++;
	}
	assert_int_equal(r.p.dst_port, GP + 1);
	assert_true(before_quiet <= 1);
	stream_close(busy);
	stream_close(quiet);
	vsock_listener_close(l);
	fx_free(f);
}

/* ---- malformed packets ------------------------------------------------------------------------ */

static void test_malformed_tx(void **state)
{
	struct fx *f = fx_new("cid=3", F_BASE);
	struct vsock_listener *l;
	struct stream_end *e;
	struct rxpkt r;
	struct vsock_pkt p = {
		.src_cid = CID, .dst_cid = 2, .src_port = 99, .dst_port = 80, .type = 1,
		.op = VIRTIO_VSOCK_OP_REQUEST, .buf_alloc = 4096,
	};
	struct vsock_hdr h;
	char buf[8];

	(void)state;
	assert_int_equal(vsock_listen(f->dev, 80, VSOCK_STREAM, &l), 0);
	e = guest_connects(f, l, GP, 80, VIRTIO_VSOCK_TYPE_STREAM);

	/* Shorter than the header: dropped. */
	tx_raw(f, "short", 5, NULL, 0);
	kick(f, VSOCK_TXQ);
	assert_false(rx_take(f, &r));
	/* A chain with a device-writable buffer: dropped. */
	{
		struct seg s[2] = { { TX_BUF, HDR, false }, { TX_BUF + 0x100, 16, true } };

		vsock_hdr_encode(&h, &p);
		wr(f, TX_BUF, &h, HDR);
		add_chain(f, VSOCK_TXQ, s, 2);
		kick(f, VSOCK_TXQ);
		assert_false(rx_take(f, &r));
	}
	/* Spoofed source CID: dropped, never answered. */
	p.src_cid = 7;
	vsock_hdr_encode(&h, &p);
	tx_raw(f, &h, HDR, NULL, 0);
	kick(f, VSOCK_TXQ);
	assert_false(rx_take(f, &r));
	p.src_cid = CID;
	/* Unknown op, bad type, another CID, header and buffer disagreeing: RST. */
	p.op = 42;
	vsock_hdr_encode(&h, &p);
	tx_raw(f, &h, HDR, NULL, 0);
	p.op = VIRTIO_VSOCK_OP_REQUEST;
	p.type = 3;
	vsock_hdr_encode(&h, &p);
	tx_raw(f, &h, HDR, NULL, 0);
	p.type = 1;
	p.dst_cid = 9;
	vsock_hdr_encode(&h, &p);
	tx_raw(f, &h, HDR, NULL, 0);
	p.dst_cid = 2;
	p.op = VIRTIO_VSOCK_OP_RW;
	p.len = 10;
	vsock_hdr_encode(&h, &p);
	tx_raw(f, &h, HDR, "12345", 5);
	/* RW and CREDIT_REQUEST for unknown connections: RST; a RST for one: nothing. */
	p.len = 0;
	vsock_hdr_encode(&h, &p);
	tx_raw(f, &h, HDR, NULL, 0);
	p.op = VIRTIO_VSOCK_OP_CREDIT_REQUEST;
	vsock_hdr_encode(&h, &p);
	tx_raw(f, &h, HDR, NULL, 0);
	p.op = VIRTIO_VSOCK_OP_RST;
	vsock_hdr_encode(&h, &p);
	tx_raw(f, &h, HDR, NULL, 0);
	kick(f, VSOCK_TXQ);
	for (int i = 0; i < 6; i++) {
		assert_true(rx_take(f, &r));
		assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RST);
		assert_int_equal(r.p.dst_port, 99);
	}
	assert_false(rx_take(f, &r));
	/* A malformed packet naming a live connection resets that connection only. */
	tx_stream(f, VIRTIO_VSOCK_OP_RW, 80, VIRTIO_VSOCK_SEQ_EOM, "x", 1);
	assert_true(rx_take(f, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RST);
	assert_int_equal(r.p.dst_port, GP);
	run_loop(f);
	assert_int_equal(stream_read(e, buf, sizeof(buf)), 0);
	/* The device never asked for a reset: the queues are fine. */
	assert_int_equal(f->resets, 0);
	assert_true(stats(f).dropped >= 3);
	stream_close(e);
	vsock_listener_close(l);
	fx_free(f);
}

static void test_bad_rx_buffer_needs_reset(void **state)
{
	struct fx *f = fx_new("cid=3", F_BASE);
	struct rxpkt r;
	struct seg s = { RX_BUF, 10, true };

	(void)state;
	/* Use up the good buffers with RSTs, then offer a buffer shorter than a header. */
	f->auto_repost = false;
	for (unsigned i = 0; i < QSIZE / 2; i++)
		tx_stream(f, VIRTIO_VSOCK_OP_REQUEST, 1, 0, NULL, 0);
	while (rx_take(f, &r))
		;
	add_chain(f, VSOCK_RXQ, &s, 1);
	kick(f, VSOCK_RXQ);
	tx_stream(f, VIRTIO_VSOCK_OP_REQUEST, 1, 0, NULL, 0);
	assert_int_equal(f->resets, 1);
	/* After a reset the device works again. */
	device_reset(f);
	activate(f, F_BASE);
	f->auto_repost = true;
	rx_post(f, 4);
	kick(f, VSOCK_RXQ);
	tx_stream(f, VIRTIO_VSOCK_OP_REQUEST, 1, 0, NULL, 0);
	assert_true(rx_take(f, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RST);
	fx_free(f);
}

/* ---- SEQPACKET ---------------------------------------------------------------------------------- */

static void test_seqpacket(void **state)
{
	struct fx *f = fx_new("cid=3", F_BASE | F_SEQ);
	struct vsock_listener *l;
	struct stream_end *e;
	static uint8_t msg[10000], got[VSOCK_MAX_MSG];
	struct rxpkt r;
	uint32_t have = 0;
	const uint16_t T = VIRTIO_VSOCK_TYPE_SEQPACKET;

	(void)state;
	assert_int_equal(vsock_listen(f->dev, 90, VSOCK_SEQPACKET, &l), 0);
	e = guest_connects(f, l, GP, 90, T);
	assert_int_equal(stream_framing_of(e), STREAM_MESSAGE);
	pattern(msg, sizeof(msg), 11);
	/* One message in three packets, then two small ones: three reads, boundaries kept. */
	tx_pkt(f, T, VIRTIO_VSOCK_OP_RW, GP, 90, 0, msg, 4000);
	tx_pkt(f, T, VIRTIO_VSOCK_OP_RW, GP, 90, 0, msg + 4000, 4000);
	assert_int_equal(stream_read(e, got, sizeof(got)), -EAGAIN);
	tx_pkt(f, T, VIRTIO_VSOCK_OP_RW, GP, 90, VIRTIO_VSOCK_SEQ_EOM | VIRTIO_VSOCK_SEQ_EOR,
	       msg + 8000, 2000);
	tx_pkt(f, T, VIRTIO_VSOCK_OP_RW, GP, 90, VIRTIO_VSOCK_SEQ_EOM, "ab", 2);
	tx_pkt(f, T, VIRTIO_VSOCK_OP_RW, GP, 90, VIRTIO_VSOCK_SEQ_EOM, "c", 1);
	assert_int_equal(stream_read(e, got, sizeof(got)), 10000);
	assert_memory_equal(got, msg, 10000);
	assert_int_equal(stream_read(e, got, sizeof(got)), 2);
	assert_int_equal(stream_read(e, got, sizeof(got)), 1);
	assert_int_equal(got[0], 'c');
	/* Host messages: split into 4 KiB buffers, EOM on the last piece only. */
	assert_int_equal(stream_write(e, msg, 10000), 10000);
	assert_int_equal(stream_write(e, "xyz", 3), 3);
	while (have < 10003 && rx_take(f, &r)) {
		assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RW);
		assert_int_equal(r.p.type, T);
		memcpy(got + have, r.data, r.p.len);
		have += r.p.len;
		if (have == 10000 || have == 10003)
			assert_int_equal(r.p.flags, VIRTIO_VSOCK_SEQ_EOM);
		else
			assert_int_equal(r.p.flags, 0);
	}
	assert_int_equal(have, 10003);
	assert_memory_equal(got, msg, 10000);
	assert_memory_equal(got + 10000, "xyz", 3);
	/* A guest message longer than VSOCK_MAX_MSG resets the connection. */
	for (uint32_t sent = 0; sent <= VSOCK_MAX_MSG; sent += 8192)
		tx_pkt(f, T, VIRTIO_VSOCK_OP_RW, GP, 90, 0, got, 8192);
	assert_true(rx_take(f, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RST);
	stream_close(e);
	vsock_listener_close(l);
	fx_free(f);
}

static void test_seqpacket_not_negotiated(void **state)
{
	struct fx *f = fx_new("cid=3", F_BASE);
	struct vsock_listener *l;
	struct rxpkt r;

	(void)state;
	assert_int_equal(vsock_listen(f->dev, 90, VSOCK_SEQPACKET, &l), 0);
	tx_pkt(f, VIRTIO_VSOCK_TYPE_SEQPACKET, VIRTIO_VSOCK_OP_REQUEST, GP, 90, 0, NULL, 0);
	assert_true(rx_take(f, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RST);
	assert_int_equal(conns(f), 0);
	vsock_listener_close(l);
	fx_free(f);
}

/* ---- closing and resets --------------------------------------------------------------------------- */

static void test_half_close(void **state)
{
	struct fx *f = fx_new("cid=3", F_BASE);
	struct vsock_listener *l;
	struct stream_end *e;
	struct rxpkt r;
	char buf[8];

	(void)state;
	assert_int_equal(vsock_listen(f->dev, 80, VSOCK_STREAM, &l), 0);
	e = guest_connects(f, l, GP, 80, VIRTIO_VSOCK_TYPE_STREAM);
	/* The host stops writing but keeps reading: the guest sees SHUTDOWN(SEND) after the data. */
	assert_int_equal(stream_write(e, "last", 4), 4);
	assert_int_equal(shutdown(stream_fd(e), SHUT_WR), 0);
	assert_true(rx_take(f, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RW);
	assert_true(rx_take(f, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_SHUTDOWN);
	assert_int_equal(r.p.flags, VIRTIO_VSOCK_SHUTDOWN_SEND);
	/* The guest may still send. */
	tx_stream(f, VIRTIO_VSOCK_OP_RW, 80, 0, "more", 4);
	host_read_all(f, e, (uint8_t *)buf, 4);
	assert_memory_equal(buf, "more", 4);
	/* The guest shuts its sending side: host reads EOF; then RCV too: the device resets. */
	tx_stream(f, VIRTIO_VSOCK_OP_SHUTDOWN, 80, VIRTIO_VSOCK_SHUTDOWN_SEND, NULL, 0);
	assert_int_equal(stream_read(e, buf, sizeof(buf)), 0);
	assert_int_equal(conns(f), 1);
	tx_stream(f, VIRTIO_VSOCK_OP_SHUTDOWN, 80, VIRTIO_VSOCK_SHUTDOWN_RCV, NULL, 0);
	/* Both directions of the host end are shut now: a SHUTDOWN(both) may come first. */
	assert_true(rx_take(f, &r));
	if (r.p.op == VIRTIO_VSOCK_OP_SHUTDOWN) {
		assert_int_equal(r.p.flags, VIRTIO_VSOCK_SHUTDOWN_ALL);
		assert_true(rx_take(f, &r));
	}
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RST);
	run_loop(f);
	assert_int_equal(conns(f), 0);
	stream_close(e);
	vsock_listener_close(l);
	fx_free(f);
}

static void test_guest_rst_host_sees_reset(void **state)
{
	struct fx *f = fx_new("cid=3", F_BASE);
	struct vsock_listener *l;
	struct stream_end *e;
	char buf[8];

	(void)state;
	assert_int_equal(vsock_listen(f->dev, 80, VSOCK_STREAM, &l), 0);
	/* Clean: a RST with nothing in flight reads as end-of-file. */
	e = guest_connects(f, l, GP, 80, VIRTIO_VSOCK_TYPE_STREAM);
	tx_stream(f, VIRTIO_VSOCK_OP_RST, 80, 0, NULL, 0);
	assert_int_equal(conns(f), 0);
	assert_int_equal(stream_read(e, buf, sizeof(buf)), 0);
	stream_close(e);
	/* The host had written data the guest never took (no credit): -ECONNRESET. */
	f->guest_buf_alloc = 0;
	e = guest_connects(f, l, GP, 80, VIRTIO_VSOCK_TYPE_STREAM);
	assert_int_equal(stream_write(e, "unsent", 6), 6);
	run_loop(f);
	tx_stream(f, VIRTIO_VSOCK_OP_RST, 80, 0, NULL, 0);
	assert_int_equal(stream_read(e, buf, sizeof(buf)), -ECONNRESET);
	assert_int_equal(stream_write(e, "x", 1), -EPIPE);
	stream_close(e);
	vsock_listener_close(l);
	fx_free(f);
}

static void test_transport_reset_on_restore(void **state)
{
	struct fx *f = fx_new("cid=3", F_BASE);
	struct vsock_listener *l;
	struct stream_end *e;
	uint8_t evbuf[8];
	size_t blen;
	void *blob;
	char err[SNAP_ERR_LEN];
	uint32_t id, len;
	struct seg s = { EV_BUF, 8, true };
	char buf[4];

	(void)state;
	assert_int_equal(vsock_listen(f->dev, 80, VSOCK_STREAM, &l), 0);
	e = guest_connects(f, l, GP, 80, VIRTIO_VSOCK_TYPE_STREAM);
	assert_int_equal(f->vdev.ops->pause(&f->vdev), 0);
	blob = snap_save_dev(f, &blen);
	/* The restore path, here on the same device: load while paused, then resume. */
	assert_int_equal(snap_load_dev(f, blob, blen, err, sizeof(err)), 0);
	free(blob);
	assert_int_equal(conns(f), 0);
	assert_int_equal(stream_read(e, buf, sizeof(buf)), 0);
	assert_int_equal(f->vdev.ops->resume(&f->vdev), 0);
	run_loop(f);
	/* No event buffer yet: the event waits for one. */
	assert_int_equal(used_pending(f, VSOCK_EVQ), 0);
	add_chain(f, VSOCK_EVQ, &s, 1);
	kick(f, VSOCK_EVQ);
	assert_int_equal(used_pending(f, VSOCK_EVQ), 1);
	used_next(f, VSOCK_EVQ, &id, &len);
	assert_int_equal(len, 4);
	rd(f, EV_BUF, evbuf, 4);
	assert_int_equal(evbuf[0] | evbuf[1] | evbuf[2] | evbuf[3], VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
	assert_true(f->signals[VSOCK_EVQ] >= 1);
	/* Listeners survive; new connections work. */
	stream_close(e);
	e = guest_connects(f, l, GP, 80, VIRTIO_VSOCK_TYPE_STREAM);
	stream_close(e);
	vsock_listener_close(l);
	fx_free(f);
}

/*
 * The restore as virtio_pci_load() runs it, in a new process: a fresh device
 * loads its node, then the transport resets it (its own state goes back to
 * creation's), restores the queues, activates, pauses; the VM resumes. The
 * TRANSPORT_RESET owed since the load must outlive that reset.
 */
static void test_transport_reset_survives_transport_load(void **state)
{
	struct fx *f = fx_new("cid=3", F_BASE), *g;
	struct vsock_listener *l;
	struct stream_end *e;
	uint8_t evbuf[4];
	size_t blen;
	void *blob;
	char err[SNAP_ERR_LEN];
	uint32_t id, len;
	struct seg s = { EV_BUF, 8, true };

	(void)state;
	assert_int_equal(vsock_listen(f->dev, 80, VSOCK_STREAM, &l), 0);
	e = guest_connects(f, l, GP, 80, VIRTIO_VSOCK_TYPE_STREAM);
	assert_int_equal(f->vdev.ops->pause(&f->vdev), 0);
	blob = snap_save_dev(f, &blen);
	stream_close(e);
	vsock_listener_close(l);
	fx_free(f);

	g = fx_new("cid=3", 0);
	assert_int_equal(snap_load_dev(g, blob, blen, err, sizeof(err)), 0);
	free(blob);
	device_reset(g);
	enable_queues(g, F_BASE);
	/* The guest posted its event buffer before the snapshot: it is in the restored ring. */
	add_chain(g, VSOCK_EVQ, &s, 1);
	g->vdev.driver_features = F_BASE;
	assert_int_equal(g->vdev.ops->activate(&g->vdev), 0);
	assert_int_equal(g->vdev.ops->pause(&g->vdev), 0);
	run_loop(g);
	assert_int_equal(used_pending(g, VSOCK_EVQ), 0);
	assert_int_equal(g->vdev.ops->resume(&g->vdev), 0);
	run_loop(g);
	assert_int_equal(used_pending(g, VSOCK_EVQ), 1);
	used_next(g, VSOCK_EVQ, &id, &len);
	assert_int_equal(len, 4);
	rd(g, EV_BUF, evbuf, 4);
	assert_int_equal(evbuf[0] | evbuf[1] << 8 | evbuf[2] << 16 | (uint32_t)evbuf[3] << 24,
			 VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
	/* Once only: a later device reset by the guest owes it nothing more. */
	device_reset(g);
	enable_queues(g, F_BASE);
	add_chain(g, VSOCK_EVQ, &s, 1);
	assert_int_equal(g->vdev.ops->activate(&g->vdev), 0);
	kick(g, VSOCK_EVQ);
	assert_int_equal(used_pending(g, VSOCK_EVQ), 0);
	fx_free(g);
}

static void test_device_reset_drops_everything(void **state)
{
	struct fx *f = fx_new("cid=3", F_BASE);
	struct vsock_listener *l;
	struct stream_end *e;
	struct connector c;
	char buf[4];

	(void)state;
	assert_int_equal(vsock_listen(f->dev, 80, VSOCK_STREAM, &l), 0);
	e = guest_connects(f, l, GP, 80, VIRTIO_VSOCK_TYPE_STREAM);
	connector_start(&c, f, 5000, VSOCK_STREAM, 0);
	(void)wait_request(f, 5000);
	device_reset(f);
	connector_join(f, &c);
	assert_int_equal(c.result, -ECONNRESET);
	assert_int_equal(stream_read(e, buf, sizeof(buf)), 0);
	assert_int_equal(conns(f), 0);
	stream_close(e);
	vsock_listener_close(l);
	fx_free(f);
}

/* ---- the seed's checklist: many connections, partial reads, timeouts, modes ------------------------ */

static void test_many_connections(void **state)
{
	struct fx *f = fx_new("cid=3", F_BASE);
	struct vsock_listener *l;
	struct stream_end *e[64];
	struct rxpkt r;

	(void)state;
	assert_int_equal(vsock_listen(f->dev, 80, VSOCK_STREAM, &l), 0);
	for (unsigned i = 0; i < 64; i++)
		e[i] = guest_connects(f, l, 2000 + i, 80, VIRTIO_VSOCK_TYPE_STREAM);
	assert_int_equal(conns(f), 64);
	for (unsigned i = 0; i < 64; i++) {
		uint32_t v = i * 7919;

		tx_pkt(f, 1, VIRTIO_VSOCK_OP_RW, 2000 + i, 80, 0, &v, 4);
	}
	for (unsigned i = 0; i < 64; i++) {
		uint32_t v;

		host_read_all(f, e[i], (uint8_t *)&v, 4);
		assert_int_equal(v, i * 7919);
		assert_int_equal(stream_write(e[i], &i, sizeof(i)), sizeof(i));
	}
	for (unsigned i = 0; i < 64; i++) {
		unsigned v;

		assert_true(rx_take(f, &r));
		assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RW);
		memcpy(&v, r.data, sizeof(v));
		assert_int_equal(r.p.dst_port, 2000 + v);
	}
	for (unsigned i = 0; i < 64; i++)
		stream_close(e[i]);
	run_loop(f);
	for (unsigned i = 0; i < 64; i++) {
		assert_true(rx_take(f, &r));
		assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_SHUTDOWN);
		tx_pkt(f, 1, VIRTIO_VSOCK_OP_RST, r.p.dst_port, 80, 0, NULL, 0);
	}
	assert_int_equal(conns(f), 0);
	vsock_listener_close(l);
	fx_free(f);
}

static void test_partial_reads_and_modes(void **state)
{
	struct fx *f = fx_new("cid=3", F_BASE);
	struct vsock_listener *l;
	struct stream_end *e;
	uint8_t buf[16];
	uint64_t t0, ms;

	(void)state;
	assert_int_equal(vsock_listen(f->dev, 80, VSOCK_STREAM, &l), 0);
	e = guest_connects(f, l, GP, 80, VIRTIO_VSOCK_TYPE_STREAM);
	/* Non-blocking: nothing yet. */
	assert_int_equal(stream_read(e, buf, sizeof(buf)), -EAGAIN);
	tx_stream(f, VIRTIO_VSOCK_OP_RW, 80, 0, "0123456789", 10);
	/* Partial reads: 5, 3, 2, then nothing. */
	assert_int_equal(stream_read(e, buf, 5), 5);
	assert_memory_equal(buf, "01234", 5);
	assert_int_equal(stream_read(e, buf, 3), 3);
	assert_memory_equal(buf, "567", 3);
	assert_int_equal(stream_read(e, buf, 16), 2);
	assert_memory_equal(buf, "89", 2);
	assert_int_equal(stream_read(e, buf, 1), -EAGAIN);
	/* Several writes, one read takes them all. */
	tx_stream(f, VIRTIO_VSOCK_OP_RW, 80, 0, "abc", 3);
	tx_stream(f, VIRTIO_VSOCK_OP_RW, 80, 0, "de", 2);
	assert_int_equal(stream_read(e, buf, 16), 5);
	assert_memory_equal(buf, "abcde", 5);
	/* Blocking with a read timeout: -ETIMEDOUT after it. */
	assert_int_equal(stream_set_blocking(e, STREAM_BLOCKING), 0);
	assert_int_equal(stream_set_timeouts(e, 150, -1), 0);
	t0 = monotonic_ns();
	assert_int_equal(stream_read(e, buf, 4), -ETIMEDOUT);
	ms = (monotonic_ns() - t0) / 1000000;
	assert_true(ms >= 150 && ms < 1000);
	/* The peer (the guest) closes mid-stream: the rest arrives, then end-of-file. */
	tx_stream(f, VIRTIO_VSOCK_OP_RW, 80, 0, "tail", 4);
	tx_stream(f, VIRTIO_VSOCK_OP_SHUTDOWN, 80, VIRTIO_VSOCK_SHUTDOWN_ALL, NULL, 0);
	assert_int_equal(stream_read(e, buf, 16), 4);
	assert_int_equal(stream_read(e, buf, 16), 0);
	stream_close(e);
	vsock_listener_close(l);
	fx_free(f);
}

struct blocking_reader {
	struct stream_end *e;
	uint8_t buf[5];
	ssize_t n;
	uint64_t waited_ns;
};

static void *blocking_reader_main(void *arg)
{
	struct blocking_reader *b = arg;
	uint64_t t0 = monotonic_ns();

	b->n = stream_read(b->e, b->buf, sizeof(b->buf));
	b->waited_ns = monotonic_ns() - t0;
	return NULL;
}

static void test_blocking_peer(void **state)
{
	struct fx *f = fx_new("cid=3", F_BASE);
	struct vsock_listener *l;
	struct blocking_reader b = { 0 };
	pthread_t t;
	struct timespec ts = { 0, 200 * 1000000 };

	(void)state;
	assert_int_equal(vsock_listen(f->dev, 80, VSOCK_STREAM, &l), 0);
	b.e = guest_connects(f, l, GP, 80, VIRTIO_VSOCK_TYPE_STREAM);
	assert_int_equal(stream_set_blocking(b.e, STREAM_BLOCKING), 0);
	assert_int_equal(pthread_create(&t, NULL, blocking_reader_main, &b), 0);
	nanosleep(&ts, NULL);
	tx_stream(f, VIRTIO_VSOCK_OP_RW, 80, 0, "\1\2\3\4\5", 5);
	pthread_join(t, NULL);
	assert_int_equal(b.n, 5);
	assert_memory_equal(b.buf, "\1\2\3\4\5", 5);
	assert_true(b.waited_ns >= 150ull * 1000000);
	/* Dropping the guest's side while the host blocks: the read returns. */
	assert_int_equal(pthread_create(&t, NULL, blocking_reader_main, &b), 0);
	nanosleep(&ts, NULL);
	tx_stream(f, VIRTIO_VSOCK_OP_RST, 80, 0, NULL, 0);
	pthread_join(t, NULL);
	assert_int_equal(b.n, 0);
	stream_close(b.e);
	vsock_listener_close(l);
	fx_free(f);
}


/* ---- the Unix socket bridge ----------------------------------------------------------------------- */

struct bfx {
	struct fx *f;
	char dir[64];
	char path[128];
};

/* extra: more options after socket=PATH ("" for none). */
static struct bfx *bfx_new_with(uint64_t features, const char *extra)
{
	struct bfx *b = calloc(1, sizeof(*b));
	char args[256];

	assert_non_null(b);
	snprintf(b->dir, sizeof(b->dir), "/tmp/vsock-test.XXXXXX");
	assert_non_null(mkdtemp(b->dir));
	snprintf(b->path, sizeof(b->path), "%s/v.sock", b->dir);
	snprintf(args, sizeof(args), "cid=3,socket=%s%s", b->path, extra);
	b->f = fx_new(args, features);
	return b;
}

static struct bfx *bfx_new(uint64_t features)
{
	return bfx_new_with(features, "");
}

static void bfx_free(struct bfx *b)
{
	struct dirent *de;
	DIR *d;

	fx_free(b->f);
	/* The bridge removed its own socket: what is left are the test's PATH_<port> ones. */
	assert_int_equal(access(b->path, F_OK), -1);
	d = opendir(b->dir);
	assert_non_null(d);
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			assert_int_equal(unlinkat(dirfd(d), de->d_name, 0), 0);
	closedir(d);
	assert_int_equal(rmdir(b->dir), 0);
	free(b);
}

static int unix_connect(const char *path, int type)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* A client of the bridge at path that has sent msg in one write (one message, SEQPACKET). */
static int client_sends(const char *path, int type, const char *msg, size_t len)
{
	int fd = unix_connect(path, type);

	assert_int_equal(send(fd, msg, len, 0), (ssize_t)len);
	return fd;
}

static int unix_listen(const char *path, int type)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 8), 0);
	return fd;
}

/* The next packet for guest port gport, skipping others. */
static bool rx_take_for(struct fx *f, uint32_t gport, struct rxpkt *r)
{
	while (rx_take(f, r))
		if (r->p.dst_port == gport)
			return true;
	return false;
}

/* Read from a plain socket until len bytes, EOF (returns what it got) or a timeout. */
static ssize_t sock_read(struct fx *f, int fd, void *buf, size_t len, int ms)
{
	size_t got = 0;
	uint64_t end = monotonic_ns() + (uint64_t)ms * 1000000;

	while (got < len && monotonic_ns() < end) {
		ssize_t n;

		run_loop(f);
		n = recv(fd, (char *)buf + got, len - got, MSG_DONTWAIT);
		if (n == 0)
			return (ssize_t)got;
		if (n < 0) {
			if (errno == ECONNRESET)
				return got ? (ssize_t)got : -ECONNRESET;
			assert_true(errno == EAGAIN);
			assert_true(evloop_run_once(f->vm.loop, 1) >= 0);
			continue;
		}
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* Read "OK <port>\n" one byte at a time (as a Firecracker client does). */
static int read_ok_line(struct fx *f, int fd, uint32_t *port)
{
	char line[32];
	size_t n = 0;

	while (n < sizeof(line) - 1) {
		if (sock_read(f, fd, line + n, 1, 2000) != 1)
			return -1;
		if (line[n] == '\n')
			break;
		n++;
	}
	line[n] = '\0';
	if (sscanf(line, "OK %u", port) != 1)
		return -1;
	return 0;
}

static void test_bridge_parse(void **state)
{
	static const struct {
		const char *line;
		int ret;
		uint32_t port;
	} cases[] = {
		{ "CONNECT 52", 0, 52 },
		{ "CONNECT 4294967295\r", 0, 4294967295u },
		/* What Firecracker's parser takes (split on white space, case-blind, u32). */
		{ "connect 5", 0, 5 },
		{ "Connect 6", 0, 6 },
		{ "CONNECT  7", 0, 7 },
		{ "CONNECT 8 ", 0, 8 },
		{ " \tCONNECT\t9\r", 0, 9 },
		{ "CONNECT 00000000010", 0, 10 },
		{ "CONNECT +11", 0, 11 },
		{ "CONNECT 12 and more words", 0, 12 },
		/* And what it refuses. */
		{ "CONNECT 4294967296", -EINVAL, 0 },
		{ "CONNECT 99999999999999999999999", -EINVAL, 0 },
		{ "CONNECT ", -EINVAL, 0 },
		{ "CONNECT", -EINVAL, 0 },
		{ "CONNECT5", -EINVAL, 0 },
		{ "CONNECTX 5", -EINVAL, 0 },
		{ "CONNEC 5", -EINVAL, 0 },
		{ "CONNECT -5", -EINVAL, 0 },
		{ "CONNECT +", -EINVAL, 0 },
		{ "CONNECT ++5", -EINVAL, 0 },
		{ "CONNECT 5x", -EINVAL, 0 },
		{ "CONNECT 0x10", -EINVAL, 0 },
		{ "LISTEN 5", -EINVAL, 0 },
		{ "", -EINVAL, 0 },
		{ "   ", -EINVAL, 0 },
		/* 'C' | 0x20 is 'c'; '#' | 0x20 is '#', not a letter. */
		{ "#ONNECT 5", -EINVAL, 0 },
	};
	uint32_t port;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		port = 0;
		if (vsock_bridge_parse_connect(cases[i].line, strlen(cases[i].line), &port) != cases[i].ret ||
		    port != cases[i].port)
			fail_msg("'%s': want %d port %u, got port %u", cases[i].line, cases[i].ret,
				 cases[i].port, port);
	}
	/* A NUL is not white space: "5\0" is not a number. */
	assert_int_equal(vsock_bridge_parse_connect("CONNECT 5\0", 10, &port), -EINVAL);
	assert_int_equal(vsock_bridge_parse_connect("CONNECT 5\0 6", 12, &port), -EINVAL);
}

static void test_bridge_host_to_guest(void **state)
{
	struct bfx *b = bfx_new(F_BASE);
	struct fx *f = b->f;
	struct rxpkt req, r;
	uint32_t port = 0;
	char buf[16];
	int fd;

	(void)state;
	/* The command and the first data in one write: the data is the guest's. */
	fd = client_sends(b->path, SOCK_STREAM, "CONNECT 5000\nEARLY", 18);
	req = wait_request(f, 5000);
	tx_pkt(f, 1, VIRTIO_VSOCK_OP_RESPONSE, 5000, req.p.src_port, 0, NULL, 0);
	assert_int_equal(read_ok_line(f, fd, &port), 0);
	assert_int_equal(port, req.p.src_port);
	assert_true(rx_take(f, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RW);
	assert_int_equal(r.p.len, 5);
	assert_memory_equal(r.data, "EARLY", 5);
	tx_pkt(f, 1, VIRTIO_VSOCK_OP_RW, 5000, port, 0, "reply", 5);
	assert_int_equal(sock_read(f, fd, buf, 5, 2000), 5);
	assert_memory_equal(buf, "reply", 5);
	/* The client half-closes: SHUTDOWN(SEND); then it goes: SHUTDOWN(both). */
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
	assert_true(rx_take(f, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_SHUTDOWN);
	assert_int_equal(r.p.flags, VIRTIO_VSOCK_SHUTDOWN_SEND);
	close(fd);
	run_loop(f);
	assert_true(rx_take(f, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_SHUTDOWN);
	assert_int_equal(r.p.flags, VIRTIO_VSOCK_SHUTDOWN_ALL);
	tx_pkt(f, 1, VIRTIO_VSOCK_OP_RST, 5000, port, 0, NULL, 0);
	assert_int_equal(conns(f), 0);
	bfx_free(b);
}

static void test_bridge_refused(void **state)
{
	struct bfx *b = bfx_new(F_BASE);
	struct fx *f = b->f;
	struct rxpkt req;
	char buf[8];
	int fd;

	(void)state;
	fd = client_sends(b->path, SOCK_STREAM, "CONNECT 5001\n", 13);
	req = wait_request(f, 5001);
	tx_pkt(f, 1, VIRTIO_VSOCK_OP_RST, 5001, req.p.src_port, 0, NULL, 0);
	/* Closed without an OK. */
	assert_int_equal(sock_read(f, fd, buf, sizeof(buf), 2000), 0);
	close(fd);
	bfx_free(b);
}

static void test_bridge_hostile_clients(void **state)
{
	struct bfx *b = bfx_new(F_BASE);
	struct fx *f = b->f;
	char buf[8];
	int longline, garbage, gone, silent, half, good;
	struct rxpkt req;
	uint32_t port;

	(void)state;
	longline = client_sends(b->path, SOCK_STREAM, "CONNECT 1111111111111111111111111111111111111", 45);
	garbage = client_sends(b->path, SOCK_STREAM, "GET / HTTP/1.0\n", 15);
	gone = client_sends(b->path, SOCK_STREAM, "CONN", 4);
	close(gone);
	silent = unix_connect(b->path, SOCK_STREAM);
	half = client_sends(b->path, SOCK_STREAM, "CONNECT 50", 10);
	/* Meanwhile a well-behaved client is served at once. */
	good = client_sends(b->path, SOCK_STREAM, "CONNECT 5002\n", 13);
	req = wait_request(f, 5002);
	tx_pkt(f, 1, VIRTIO_VSOCK_OP_RESPONSE, 5002, req.p.src_port, 0, NULL, 0);
	assert_int_equal(read_ok_line(f, good, &port), 0);
	/* Closed (a reset when the bridge left their bytes unread). */
	assert_true(sock_read(f, longline, buf, sizeof(buf), 1000) <= 0);
	assert_true(sock_read(f, garbage, buf, sizeof(buf), 1000) <= 0);
	/* The silent and the half-written ones go after the handshake timeout. */
	assert_int_equal(sock_read(f, silent, buf, sizeof(buf), VSOCK_BRIDGE_HANDSHAKE_MS + 1500), 0);
	assert_true(sock_read(f, half, buf, sizeof(buf), 1000) <= 0);
	/* Nothing reached the guest from them, and the good one still works. */
	tx_pkt(f, 1, VIRTIO_VSOCK_OP_RW, 5002, port, 0, "ok", 2);
	assert_int_equal(sock_read(f, good, buf, 2, 2000), 2);
	assert_int_equal(conns(f), 1);
	close(longline);
	close(garbage);
	close(silent);
	close(half);
	close(good);
	bfx_free(b);
}

static void test_bridge_guest_to_host(void **state)
{
	struct bfx *b = bfx_new(F_BASE | F_SEQ);
	struct fx *f = b->f;
	char p6000[160], p6002[160], buf[16];
	int lfd, sfd, c;
	struct rxpkt r;

	(void)state;
	snprintf(p6000, sizeof(p6000), "%s_6000", b->path);
	snprintf(p6002, sizeof(p6002), "%s_6002", b->path);
	lfd = unix_listen(p6000, SOCK_STREAM);
	sfd = unix_listen(p6002, SOCK_SEQPACKET);
	/* Stream: PATH_6000 accepts. */
	tx_stream(f, VIRTIO_VSOCK_OP_REQUEST, 6000, 0, NULL, 0);
	assert_true(rx_take(f, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RESPONSE);
	c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
	assert_true(c >= 0);
	tx_stream(f, VIRTIO_VSOCK_OP_RW, 6000, 0, "to host", 7);
	assert_int_equal(sock_read(f, c, buf, 7, 2000), 7);
	assert_memory_equal(buf, "to host", 7);
	assert_int_equal(send(c, "to guest", 8, 0), 8);
	assert_true(rx_take(f, &r));
	assert_int_equal(r.p.len, 8);
	assert_memory_equal(r.data, "to guest", 8);
	close(c);
	/* Nothing at PATH_6001: RST. */
	tx_pkt(f, 1, VIRTIO_VSOCK_OP_REQUEST, GP + 1, 6001, 0, NULL, 0);
	assert_true(rx_take_for(f, GP + 1, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RST);
	/* SEQPACKET: PATH_6002 is a SOCK_SEQPACKET socket; boundaries kept both ways. */
	tx_pkt(f, 2, VIRTIO_VSOCK_OP_REQUEST, GP + 2, 6002, 0, NULL, 0);
	assert_true(rx_take_for(f, GP + 2, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RESPONSE);
	c = accept4(sfd, NULL, NULL, SOCK_NONBLOCK);
	assert_true(c >= 0);
	tx_pkt(f, 2, VIRTIO_VSOCK_OP_RW, GP + 2, 6002, 0, "one", 3);
	tx_pkt(f, 2, VIRTIO_VSOCK_OP_RW, GP + 2, 6002, VIRTIO_VSOCK_SEQ_EOM, "+1", 2);
	tx_pkt(f, 2, VIRTIO_VSOCK_OP_RW, GP + 2, 6002, VIRTIO_VSOCK_SEQ_EOM, "two", 3);
	run_loop(f);
	assert_int_equal(recv(c, buf, sizeof(buf), MSG_DONTWAIT), 5);
	assert_memory_equal(buf, "one+1", 5);
	assert_int_equal(recv(c, buf, sizeof(buf), MSG_DONTWAIT), 3);
	assert_int_equal(send(c, "m1", 2, 0), 2);
	assert_int_equal(send(c, "m2!", 3, 0), 3);
	assert_true(rx_take_for(f, GP + 2, &r));
	assert_int_equal(r.p.len, 2);
	assert_int_equal(r.p.flags, VIRTIO_VSOCK_SEQ_EOM);
	assert_true(rx_take_for(f, GP + 2, &r));
	assert_int_equal(r.p.len, 3);
	assert_int_equal(r.p.flags, VIRTIO_VSOCK_SEQ_EOM);
	close(c);
	close(lfd);
	close(sfd);
	bfx_free(b);
}

static void test_bridge_path_in_use(void **state)
{
	struct bfx *b = bfx_new(0);
	char args[200], other[160];
	struct stat st;
	int fd;

	(void)state;
	snprintf(args, sizeof(args), "cid=4,socket=%s", b->path);
	expect_create_error(args, "another process listens there");
	/* A listener of the other type answers EPROTOTYPE: it is someone's, and stays. */
	snprintf(other, sizeof(other), "%s/seq.sock", b->dir);
	fd = unix_listen(other, SOCK_SEQPACKET);
	snprintf(args, sizeof(args), "cid=4,socket=%s", other);
	expect_create_error(args, "another process listens there");
	assert_int_equal(stat(other, &st), 0);
	snprintf(args, sizeof(args), "cid=4,socket=%s,type=seqpacket", b->path);
	expect_create_error(args, "another process listens there");
	close(fd);
	bfx_free(b);
}

/* The next packet for guest port gport, running the loop for up to 2 s. */
static bool rx_wait_for(struct fx *f, uint32_t gport, struct rxpkt *r)
{
	for (int i = 0; i < 2000; i++) {
		run_loop(f);
		if (rx_take_for(f, gport, r))
			return true;
		assert_true(evloop_run_once(f->vm.loop, 1) >= 0);
	}
	return false;
}

/* One message from a SEQPACKET client socket, waiting up to ms; -1 when none came. */
static ssize_t seq_read(struct fx *f, int fd, void *buf, size_t len, int ms)
{
	uint64_t end = monotonic_ns() + (uint64_t)ms * 1000000;

	while (monotonic_ns() < end) {
		ssize_t n;

		run_loop(f);
		n = recv(fd, buf, len, MSG_DONTWAIT);
		if (n >= 0)
			return n;
		if (errno == ECONNRESET)
			return -ECONNRESET;
		assert_true(errno == EAGAIN);
		assert_true(evloop_run_once(f->vm.loop, 1) >= 0);
	}
	return -1;
}

static void test_bridge_seqpacket_host_to_guest(void **state)
{
	struct bfx *b = bfx_new_with(F_BASE | F_SEQ, ",type=seqpacket");
	struct fx *f = b->f;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct rxpkt req, r;
	char buf[64], ok[32];
	int fd, sfd;

	(void)state;
	/* PATH is a SOCK_SEQPACKET socket: a byte-stream client cannot connect. */
	assert_true(strlen(b->path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, b->path, strlen(b->path) + 1);
	sfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(sfd >= 0);
	assert_int_equal(connect(sfd, (struct sockaddr *)&sa, sizeof(sa)), -1);
	assert_int_equal(errno, EPROTOTYPE);
	close(sfd);
	/* The command is one message; two messages for the guest follow before the answer. */
	fd = client_sends(b->path, SOCK_SEQPACKET, "CONNECT 5010\n", 13);
	assert_int_equal(send(fd, "m1", 2, 0), 2);
	assert_int_equal(send(fd, "msg2", 4, 0), 4);
	req = wait_request(f, 5010);
	assert_int_equal(req.p.type, VIRTIO_VSOCK_TYPE_SEQPACKET);
	tx_pkt(f, VIRTIO_VSOCK_TYPE_SEQPACKET, VIRTIO_VSOCK_OP_RESPONSE, 5010, req.p.src_port, 0, NULL, 0);
	/* "OK <port>\n" is one message of its own, as a Firecracker client reads it (recv of 32). */
	snprintf(ok, sizeof(ok), "OK %u\n", req.p.src_port);
	assert_int_equal(seq_read(f, fd, buf, 32, 2000), (ssize_t)strlen(ok));
	assert_memory_equal(buf, ok, strlen(ok));
	assert_true(rx_wait_for(f, 5010, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_RW);
	assert_int_equal(r.p.len, 2);
	assert_int_equal(r.p.flags & VIRTIO_VSOCK_SEQ_EOM, VIRTIO_VSOCK_SEQ_EOM);
	assert_memory_equal(r.data, "m1", 2);
	assert_true(rx_wait_for(f, 5010, &r));
	assert_int_equal(r.p.len, 4);
	assert_int_equal(r.p.flags & VIRTIO_VSOCK_SEQ_EOM, VIRTIO_VSOCK_SEQ_EOM);
	assert_memory_equal(r.data, "msg2", 4);
	/* The guest's messages, one in two packets, reach the client whole and apart. */
	tx_pkt(f, VIRTIO_VSOCK_TYPE_SEQPACKET, VIRTIO_VSOCK_OP_RW, 5010, req.p.src_port, 0, "one", 3);
	tx_pkt(f, VIRTIO_VSOCK_TYPE_SEQPACKET, VIRTIO_VSOCK_OP_RW, 5010, req.p.src_port,
	       VIRTIO_VSOCK_SEQ_EOM, "+1", 2);
	tx_pkt(f, VIRTIO_VSOCK_TYPE_SEQPACKET, VIRTIO_VSOCK_OP_RW, 5010, req.p.src_port,
	       VIRTIO_VSOCK_SEQ_EOM, "two", 3);
	assert_int_equal(seq_read(f, fd, buf, sizeof(buf), 2000), 5);
	assert_memory_equal(buf, "one+1", 5);
	assert_int_equal(seq_read(f, fd, buf, sizeof(buf), 2000), 3);
	assert_memory_equal(buf, "two", 3);
	/* The client goes: the guest is told. */
	close(fd);
	assert_true(rx_wait_for(f, 5010, &r));
	assert_int_equal(r.p.op, VIRTIO_VSOCK_OP_SHUTDOWN);
	tx_pkt(f, VIRTIO_VSOCK_TYPE_SEQPACKET, VIRTIO_VSOCK_OP_RST, 5010, req.p.src_port, 0, NULL, 0);
	assert_int_equal(conns(f), 0);
	/* Without its newline the message is the command all the same. */
	fd = client_sends(b->path, SOCK_SEQPACKET, "connect 5011", 12);
	req = wait_request(f, 5011);
	tx_pkt(f, VIRTIO_VSOCK_TYPE_SEQPACKET, VIRTIO_VSOCK_OP_RST, 5011, req.p.src_port, 0, NULL, 0);
	/* Refused: closed without an OK. */
	assert_int_equal(seq_read(f, fd, buf, sizeof(buf), 2000), 0);
	close(fd);
	bfx_free(b);
}

static void test_bridge_seqpacket_hostile(void **state)
{
	struct bfx *b = bfx_new_with(F_BASE | F_SEQ, ",type=seqpacket");
	struct fx *f = b->f;
	char buf[8];
	int longmsg, empty, garbage, split;

	(void)state;
	longmsg = client_sends(b->path, SOCK_SEQPACKET, "CONNECT 5012                              \n", 43);
	empty = client_sends(b->path, SOCK_SEQPACKET, "", 0);
	garbage = client_sends(b->path, SOCK_SEQPACKET, "CONNECT 50x2\n", 13);
	/* A command split over two messages is not one: the first alone is a bad command. */
	split = client_sends(b->path, SOCK_SEQPACKET, "CONNECT", 7);
	assert_int_equal(send(split, " 5012\n", 6, 0), 6);
	assert_true(seq_read(f, longmsg, buf, sizeof(buf), 1000) <= 0);
	assert_true(seq_read(f, empty, buf, sizeof(buf), 1000) <= 0);
	assert_true(seq_read(f, garbage, buf, sizeof(buf), 1000) <= 0);
	assert_true(seq_read(f, split, buf, sizeof(buf), 1000) <= 0);
	/* None of them reached the guest. */
	run_loop(f);
	{
		struct rxpkt r;

		assert_false(rx_take(f, &r));
	}
	assert_int_equal(conns(f), 0);
	close(longmsg);
	close(empty);
	close(garbage);
	close(split);
	bfx_free(b);
}

static void test_bridge_seqpacket_not_negotiated(void **state)
{
	struct bfx *b = bfx_new_with(F_BASE, ",type=seqpacket");
	struct fx *f = b->f;
	struct rxpkt r;
	char buf[8];
	int fd;

	(void)state;
	fd = client_sends(b->path, SOCK_SEQPACKET, "CONNECT 5013\n", 13);
	/* The guest's transport cannot take SEQPACKET: closed, nothing asked of the guest. */
	assert_int_equal(seq_read(f, fd, buf, sizeof(buf), 2000), 0);
	assert_false(rx_take(f, &r));
	close(fd);
	bfx_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_options),
		cmocka_unit_test(test_config_and_features),
		cmocka_unit_test(test_guest_connect_refused),
		cmocka_unit_test(test_guest_connect_and_close),
		cmocka_unit_test(test_listener_type_and_backlog_close),
		cmocka_unit_test(test_host_connect),
		cmocka_unit_test(test_host_connect_refused_and_timeout),
		cmocka_unit_test(test_host_connect_not_running),
		cmocka_unit_test(test_guest_to_host_pushback),
		cmocka_unit_test(test_host_to_guest_credit),
		cmocka_unit_test(test_credit_wraparound_stream),
		cmocka_unit_test(test_fairness),
		cmocka_unit_test(test_malformed_tx),
		cmocka_unit_test(test_bad_rx_buffer_needs_reset),
		cmocka_unit_test(test_seqpacket),
		cmocka_unit_test(test_seqpacket_not_negotiated),
		cmocka_unit_test(test_half_close),
		cmocka_unit_test(test_guest_rst_host_sees_reset),
		cmocka_unit_test(test_transport_reset_on_restore),
		cmocka_unit_test(test_transport_reset_survives_transport_load),
		cmocka_unit_test(test_device_reset_drops_everything),
		cmocka_unit_test(test_many_connections),
		cmocka_unit_test(test_partial_reads_and_modes),
		cmocka_unit_test(test_blocking_peer),
		cmocka_unit_test(test_bridge_parse),
		cmocka_unit_test(test_bridge_host_to_guest),
		cmocka_unit_test(test_bridge_refused),
		cmocka_unit_test(test_bridge_hostile_clients),
		cmocka_unit_test(test_bridge_guest_to_host),
		cmocka_unit_test(test_bridge_path_in_use),
		cmocka_unit_test(test_bridge_seqpacket_host_to_guest),
		cmocka_unit_test(test_bridge_seqpacket_hostile),
		cmocka_unit_test(test_bridge_seqpacket_not_negotiated),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
