/*
 * Unit tests for devices/virtio_net: the test plays the driver (rings in a
 * real struct gmem) and the transport (queue setup, activate, kicks, counting
 * interrupts and reset requests). A SOCK_SEQPACKET socketpair stands in for
 * the tap (one frame per message, vnet header included); a second group uses
 * a real tap in a private network namespace, and skips when that is not
 * possible here.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/ethtool.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>

#include <cmocka.h>

#include "channel/evloop.h"
#include "devices/tap.h"
#include "devices/virtio_kinds.h"
#include "devices/virtio_net.h"
#include "virtio/virtqueue.h"
#include "vmm/gmem.h"
#include "vmm/vm.h"

#define RAM_SIZE (4 * MiB)
#define QSIZE    16u
#define HDR      12u
#define RX_DESC  0x1000ull
#define RX_AVAIL 0x2000ull
#define RX_USED  0x3000ull
#define TX_DESC  0x4000ull
#define TX_AVAIL 0x5000ull
#define TX_USED  0x6000ull
#define RX_BUF   0x10000ull   /* receive buffers, 0x1000 apart */
#define TX_BUF   0x40000ull   /* transmit buffers */
#define BIG_BUF  0x100000ull  /* 128 KiB buffers for big frames */
#define ETHERTYPE_TEST 0x88b5 /* IEEE local experimental */

#define F(bit) (1ull << (bit))
#define F_BASE   (F(VIRTIO_F_VERSION_1))
#define F_MRG    F(VIRTIO_NET_F_MRG_RXBUF)
#define F_EVENT  F(VIRTIO_F_EVENT_IDX)
#define F_OFFLOADS (F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_HOST_TSO4) | \
		    F(VIRTIO_NET_F_HOST_TSO6) | F(VIRTIO_NET_F_GUEST_TSO4) | F(VIRTIO_NET_F_GUEST_TSO6))

struct drvq {
	uint64_t desc, avail, used;
	uint16_t avail_idx;   /* driver's shadow */
	uint16_t used_seen;   /* used entries consumed by the test */
	uint16_t next_desc;
};

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

struct fx {
	struct vm vm;
	struct virtio_dev vdev;
	bool created;
	int peer;             /* our end of the socketpair */
	int dev_fd;           /* the device's end (owned by the device) */
	struct drvq q[2];
	int signals[2];
	int resets;
};

static bool tap_ok;       /* a private netns with /dev/net/tun */
static char tap_skip_why[128];

/* ---- transport stand-in ------------------------------------------------------ */

static void on_signal_used(struct virtio_dev *vdev, unsigned q)
{
	struct fx *f = vdev->transport;

	assert_true(q < 2);
	f->signals[q]++;
}

static void on_needs_reset(struct virtio_dev *vdev)
{
	struct fx *f = vdev->transport;

	f->resets++;
}

static void enable_queues(struct fx *f, uint64_t features)
{
	static const uint64_t gpas[2][3] = { { RX_DESC, RX_AVAIL, RX_USED },
					     { TX_DESC, TX_AVAIL, TX_USED } };

	for (unsigned q = 0; q < 2; q++) {
		struct virtq *vq = &f->vdev.vqs[q];
		static const uint8_t zero[0x1000];

		assert_int_equal(virtq_init(vq, &f->vm.mem, q ? "t.tx" : "t.rx", VIRTIO_NET_QUEUE_SIZE), 0);
		vq->size = QSIZE;
		vq->desc_gpa = gpas[q][0];
		vq->avail_gpa = gpas[q][1];
		vq->used_gpa = gpas[q][2];
		for (int i = 0; i < 3; i++)
			assert_int_equal(gmem_write(&f->vm.mem, gpas[q][i], zero, sizeof(zero)), 0);
		assert_int_equal(virtq_enable(vq, features), 0);
		f->q[q] = (struct drvq){ .desc = gpas[q][0], .avail = gpas[q][1], .used = gpas[q][2] };
	}
}

/* Features accepted, queues live, DRIVER_OK. */
static void activate(struct fx *f, uint64_t features)
{
	f->vdev.driver_features = features;
	enable_queues(f, features);
	assert_int_equal(f->vdev.ops->activate(&f->vdev), 0);
}

static void device_reset(struct fx *f)
{
	for (unsigned q = 0; q < 2; q++)
		virtq_reset(&f->vdev.vqs[q]);
	f->vdev.ops->reset(&f->vdev);
}

static void fx_init(struct fx *f)
{
	memset(f, 0, sizeof(*f));
	f->peer = -1;
	assert_int_equal(gmem_create(&f->vm.mem, RAM_SIZE, 0, 0), 0);
	assert_int_equal(evloop_create(&f->vm.loop), 0);
}

static void fx_hook(struct fx *f)
{
	f->created = true;
	f->vdev.transport = f;
	f->vdev.signal_used = on_signal_used;
	f->vdev.needs_reset = on_needs_reset;
}

/* A device on a socketpair; features offered are checked here once. */
static struct fx *fx_pair(const char *args)
{
	struct fx *f = calloc(1, sizeof(*f));
	char err[256] = "";
	int sv[2];

	assert_non_null(f);
	fx_init(f);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(virtio_net_create_on_fd(&f->vm, sv[0], args, &f->vdev, err, sizeof(err)), 0);
	f->peer = sv[1];
	f->dev_fd = sv[0];
	fx_hook(f);
	return f;
}

static void fx_free(struct fx *f)
{
	if (f->created)
		f->vdev.ops->destroy(&f->vdev);
	if (f->peer >= 0)
		close(f->peer);
	evloop_destroy(f->vm.loop);
	gmem_destroy(&f->vm.mem);
	free(f);
}

static int setup_pair(void **state)
{
	*state = fx_pair("");
	return 0;
}

static int teardown(void **state)
{
	fx_free(*state);
	return 0;
}

/* ---- driver side ---------------------------------------------------------------- */

static void wr(struct fx *f, uint64_t gpa, const void *p, size_t len)
{
	assert_int_equal(gmem_write(&f->vm.mem, gpa, p, len), 0);
}

static void rd(struct fx *f, uint64_t gpa, void *p, size_t len)
{
	assert_int_equal(gmem_read(&f->vm.mem, gpa, p, len), 0);
}

static void wr16(struct fx *f, uint64_t gpa, uint16_t v)
{
	le16 x = cpu_to_le16(v);

	wr(f, gpa, &x, sizeof(x));
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

/* Put a chain of segments in queue q's descriptor table and make it available. */
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

static uint16_t avail_event(struct fx *f, unsigned q)
{
	return rd16(f, f->q[q].used + 4 + 8ull * QSIZE);
}

static void kick(struct fx *f, unsigned q)
{
	f->vdev.ops->queue_notify(&f->vdev, q);
}

/* Run the loop until it is idle; returns the callbacks run. */
static int run_loop(struct fx *f)
{
	int total = 0, n;

	while ((n = evloop_run_once(f->vm.loop, 0)) > 0)
		total += n;
	assert_true(n >= 0);
	return total;
}

static struct virtio_net_stats stats(struct fx *f)
{
	struct virtio_net_stats st;

	virtio_net_get_stats(&f->vdev, &st);
	return st;
}

/* An Ethernet frame of len bytes: broadcast, test ethertype, a byte pattern from seed. */
static void make_frame(uint8_t *p, size_t len, uint8_t seed)
{
	static const uint8_t hdr[14] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
					 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x88, 0xb5 };

	memcpy(p, hdr, MIN(len, sizeof(hdr)));
	for (size_t i = sizeof(hdr); i < len; i++)
		p[i] = (uint8_t)(seed + i * 7);
}

/* ---- TX helpers ---------------------------------------------------------------- */

/* Queue header + frame on TX, the header split after `split` bytes (0: one descriptor). */
static void tx_queue(struct fx *f, const struct virtio_net_hdr *h, const uint8_t *frame, uint32_t len,
		     uint32_t split)
{
	struct seg segs[3];
	unsigned n = 0;

	wr(f, TX_BUF, h, HDR);
	wr(f, TX_BUF + 0x100, frame, len);
	if (split) {
		segs[n++] = (struct seg){ TX_BUF, split, false };
		segs[n++] = (struct seg){ TX_BUF + split, HDR - split, false };
	} else {
		segs[n++] = (struct seg){ TX_BUF, HDR, false };
	}
	segs[n++] = (struct seg){ TX_BUF + 0x100, len, false };
	add_chain(f, VIRTIO_NET_TXQ, segs, n);
}

/* What the peer received: -1 when nothing. */
static ssize_t peer_recv(struct fx *f, uint8_t *buf, size_t len)
{
	ssize_t n = recv(f->peer, buf, len, MSG_DONTWAIT);

	if (n < 0)
		assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
	return n;
}

/* The chain came back with len 0, one interrupt or more. */
static void expect_tx_completed(struct fx *f)
{
	uint32_t id, len;

	assert_int_equal(used_pending(f, VIRTIO_NET_TXQ), 1);
	used_next(f, VIRTIO_NET_TXQ, &id, &len);
	assert_int_equal(len, 0);
	assert_true(f->signals[VIRTIO_NET_TXQ] >= 1);
}

/* ---- tests: creation and config ----------------------------------------------------- */

static void expect_create_error(const char *args, const char *needle)
{
	struct fx *f = calloc(1, sizeof(*f));
	char err[256] = "";

	assert_non_null(f);
	fx_init(f);
	assert_int_equal(virtio_net_kind.create(&f->vm, args, &f->vdev, err, sizeof(err)), -EINVAL);
	if (!strstr(err, needle))
		fail_msg("args '%s': error '%s' does not mention '%s'", args, err, needle);
	assert_null(strchr(err, '\n'));
	assert_null(f->vdev.priv);
	fx_free(f);
}

static void test_bad_args(void **state)
{
	(void)state;
	expect_create_error("", "tap=NAME is required");
	expect_create_error("mac=02:00:00:00:00:01", "tap=NAME is required");
	expect_create_error("tap=", "tap=");
	expect_create_error("tap=abcdefghijklmnop", "tap=abcdefghijklmnop");
	expect_create_error("tap=t0,foo=1", "'foo'");
	expect_create_error("tap=t0,tap=t1", "tap= given twice");
	expect_create_error("tap=t0,mac", "'mac'");
	expect_create_error("tap=t0,", "trailing");
	expect_create_error("tap=t0,mac=zz:00:00:00:00:01", "mac=zz:00:00:00:00:01");
	expect_create_error("tap=t0,mac=02:00:00:00:00", "mac=02:00:00:00:00");
	expect_create_error("tap=t0,mac=02:00:00:00:00:01:03", "mac=02:00:00:00:00:01:03");
	expect_create_error("tap=t0,mac=02-00-00-00-00-01", "mac=02-00-00-00-00-01");
	expect_create_error("tap=t0,mac=2:00:00:00:00:001", "mac=2:00:00:00:00:001");
	expect_create_error("tap=t0,mac=01:00:5e:00:00:01", "multicast");
	expect_create_error("tap=t0,mac=00:00:00:00:00:00", "all-zero");
	expect_create_error("tap=t0,mac=02:00:00:00:00:01,mac=02:00:00:00:00:02", "mac= given twice");
}

/* A tap that cannot be opened: the error names it, whatever the reason (no tun, not a tap). */
static void test_unopenable_tap(void **state)
{
	(void)state;
	expect_create_error("tap=lo", "'lo'");
	expect_create_error("tap=a%d", "a%d");
}

static void test_config_and_features(void **state)
{
	struct fx *f = fx_pair("mac=02:12:34:56:78:9A");
	uint8_t buf[12];
	uint64_t feat = f->vdev.device_features;

	(void)state;
	assert_int_equal(f->vdev.config_size, sizeof(struct virtio_net_config));
	assert_int_equal(f->vdev.num_queues, 2);
	assert_int_equal(f->vdev.queue_max_size, VIRTIO_NET_QUEUE_SIZE);
	assert_int_equal(f->vdev.ops->device_id, VIRTIO_ID_NET);
	f->vdev.ops->cfg_read(&f->vdev, 0, buf, 12);
	assert_memory_equal(buf, ((uint8_t[]){ 0x02, 0x12, 0x34, 0x56, 0x78, 0x9a }), 6);
	assert_int_equal(buf[6] | buf[7] << 8, VIRTIO_NET_S_LINK_UP);
	assert_int_equal(buf[8] | buf[9] << 8, 1);
	/* Byte-wise reads at any offset see the same bytes. */
	for (uint32_t off = 0; off < 12; off++) {
		uint8_t b;

		f->vdev.ops->cfg_read(&f->vdev, off, &b, 1);
		assert_int_equal(b, buf[off]);
	}
	/* Writes are ignored. */
	f->vdev.ops->cfg_write(&f->vdev, 0, "\xff\xff", 2);
	f->vdev.ops->cfg_read(&f->vdev, 0, buf, 6);
	assert_int_equal(buf[0], 0x02);

	for (unsigned bit = 0; bit < 64; bit++) {
		bool want = bit == VIRTIO_NET_F_MAC || bit == VIRTIO_NET_F_STATUS ||
			    bit == VIRTIO_NET_F_MRG_RXBUF || bit == VIRTIO_NET_F_CSUM ||
			    bit == VIRTIO_NET_F_GUEST_CSUM || bit == VIRTIO_NET_F_HOST_TSO4 ||
			    bit == VIRTIO_NET_F_HOST_TSO6 || bit == VIRTIO_NET_F_GUEST_TSO4 ||
			    bit == VIRTIO_NET_F_GUEST_TSO6 || bit == VIRTIO_NET_F_HOST_ECN ||
			    bit == VIRTIO_NET_F_GUEST_ECN || bit == VIRTIO_NET_F_HOST_UFO ||
			    bit == VIRTIO_NET_F_GUEST_UFO || bit == VIRTIO_F_EVENT_IDX ||
			    bit == VIRTIO_F_INDIRECT_DESC;

		if (want != !!(feat & F(bit)))
			fail_msg("feature bit %u: offered %d, expected %d", bit, !!(feat & F(bit)), want);
	}
	fx_free(f);
}

/* The tap's offloads follow what the driver accepted, and only sensible combinations. */
static void test_offloads_follow_features(void **state)
{
	struct fx *f = *state;

	assert_int_equal(virtio_net_offloads(&f->vdev), 0);
	activate(f, F_BASE | F_OFFLOADS);
	assert_int_equal(virtio_net_offloads(&f->vdev), TAP_OFFLOAD_CSUM | TAP_OFFLOAD_TSO4 | TAP_OFFLOAD_TSO6);
	device_reset(f);
	assert_int_equal(virtio_net_offloads(&f->vdev), 0);
	/* TSO without GUEST_CSUM means nothing. */
	activate(f, F_BASE | F(VIRTIO_NET_F_GUEST_TSO4));
	assert_int_equal(virtio_net_offloads(&f->vdev), 0);
	device_reset(f);
	/* ECN needs TSO. */
	activate(f, F_BASE | F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_GUEST_ECN));
	assert_int_equal(virtio_net_offloads(&f->vdev), TAP_OFFLOAD_CSUM);
	device_reset(f);
	activate(f, F_BASE | F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_GUEST_TSO6) |
		    F(VIRTIO_NET_F_GUEST_ECN) | F(VIRTIO_NET_F_GUEST_UFO));
	assert_int_equal(virtio_net_offloads(&f->vdev),
			 TAP_OFFLOAD_CSUM | TAP_OFFLOAD_TSO6 | TAP_OFFLOAD_ECN | TAP_OFFLOAD_UFO);
}

/* ---- tests: TX ------------------------------------------------------------------ */

static void test_tx_frame(void **state)
{
	struct fx *f = *state;
	struct virtio_net_hdr h = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = cpu_to_le16(14),
				    .csum_offset = cpu_to_le16(6), .num_buffers = cpu_to_le16(77) };
	uint8_t frame[300], got[2048];
	ssize_t n;

	activate(f, F_BASE | F_OFFLOADS | F_EVENT);
	make_frame(frame, sizeof(frame), 1);
	/* Header in two descriptors, 5 + 7 bytes, then the frame. */
	tx_queue(f, &h, frame, sizeof(frame), 5);
	kick(f, VIRTIO_NET_TXQ);
	n = peer_recv(f, got, sizeof(got));
	assert_int_equal(n, HDR + sizeof(frame));
	assert_int_equal(got[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
	assert_int_equal(got[6] | got[7] << 8, 14);
	assert_int_equal(got[8] | got[9] << 8, 6);
	assert_int_equal(got[10] | got[11] << 8, 0);  /* num_buffers is not the tap's business */
	assert_memory_equal(got + HDR, frame, sizeof(frame));
	expect_tx_completed(f);
	assert_int_equal(stats(f).tx_packets, 1);
	assert_int_equal(stats(f).tx_bytes, sizeof(frame));
	assert_int_equal(f->resets, 0);
	/* With EVENT_IDX the device re-armed kicks at the ring's end. */
	assert_int_equal(avail_event(f, VIRTIO_NET_TXQ), f->q[VIRTIO_NET_TXQ].avail_idx);
}

static void test_tx_many_frames_batched(void **state)
{
	struct fx *f = *state;
	struct virtio_net_hdr h = { 0 };
	uint8_t frame[64], got[256];
	uint32_t id, len;

	/* Two descriptors a chain: QSIZE / 2 chains fill the table. */
	const unsigned per = QSIZE / 2;

	activate(f, F_BASE);
	for (unsigned i = 0; i < 6 * per; i++) {
		struct seg s[2] = { { TX_BUF + 0x200 * (i % per), HDR, false },
				    { TX_BUF + 0x200 * (i % per) + 0x100, sizeof(frame), false } };

		make_frame(frame, sizeof(frame), (uint8_t)i);
		wr(f, s[0].gpa, &h, HDR);
		wr(f, s[1].gpa, frame, sizeof(frame));
		add_chain(f, VIRTIO_NET_TXQ, s, 2);
		if (i % per == per - 1) {
			kick(f, VIRTIO_NET_TXQ);
			for (unsigned j = 0; j < per; j++) {
				used_next(f, VIRTIO_NET_TXQ, &id, &len);
				assert_int_equal(len, 0);
				assert_int_equal(peer_recv(f, got, sizeof(got)), HDR + sizeof(frame));
				make_frame(frame, sizeof(frame), (uint8_t)(i - per + 1 + j));
				assert_memory_equal(got + HDR, frame, sizeof(frame));
			}
			/* Halfway through, the NO_NOTIFY flag was up; at the end it is down again. */
			assert_int_equal(rd16(f, TX_USED), 0);
		}
	}
	assert_int_equal(stats(f).tx_packets, 6 * per);
	assert_int_equal(peer_recv(f, got, sizeof(got)), -1);
}

/* Each bad frame is dropped, its buffer returned, and the device goes on. */
static void expect_tx_dropped(struct fx *f, const struct virtio_net_hdr *h, uint32_t frame_len,
			      uint64_t *dropped)
{
	static uint8_t frame[VIRTIO_NET_MAX_FRAME + 16];
	uint8_t got[64];

	make_frame(frame, frame_len, 9);
	wr(f, BIG_BUF, h, HDR);
	wr(f, BIG_BUF + HDR, frame, frame_len);
	add_chain(f, VIRTIO_NET_TXQ, (struct seg[]){ { BIG_BUF, HDR + frame_len, false } }, 1);
	kick(f, VIRTIO_NET_TXQ);
	expect_tx_completed(f);
	assert_int_equal(peer_recv(f, got, sizeof(got)), -1);
	assert_int_equal(stats(f).tx_dropped, ++*dropped);
	assert_int_equal(f->resets, 0);
}

static void test_tx_bad_frames_dropped(void **state)
{
	struct fx *f = *state;
	struct virtio_net_hdr ok = { 0 }, h;
	uint64_t dropped = 0;
	uint8_t frame[100], got[256];

	/* The driver took CSUM and HOST_TSO4 only. */
	activate(f, F_BASE | F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_HOST_TSO4));

	/* A chain shorter than the header, in one and in two descriptors. */
	add_chain(f, VIRTIO_NET_TXQ, (struct seg[]){ { TX_BUF, HDR - 1, false } }, 1);
	kick(f, VIRTIO_NET_TXQ);
	expect_tx_completed(f);
	assert_int_equal(stats(f).tx_dropped, ++dropped);
	add_chain(f, VIRTIO_NET_TXQ, (struct seg[]){ { TX_BUF, 4, false }, { TX_BUF + 4, 4, false } }, 2);
	kick(f, VIRTIO_NET_TXQ);
	expect_tx_completed(f);
	assert_int_equal(stats(f).tx_dropped, ++dropped);
	/* A header and nothing else, a runt. */
	expect_tx_dropped(f, &ok, 0, &dropped);
	expect_tx_dropped(f, &ok, 13, &dropped);
	/* Oversized. */
	expect_tx_dropped(f, &ok, VIRTIO_NET_MAX_FRAME + 1, &dropped);
	/* Checksum offsets beyond the frame: csum_start + csum_offset + 2 > len. */
	h = (struct virtio_net_hdr){ .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = cpu_to_le16(90),
				     .csum_offset = cpu_to_le16(9) };
	expect_tx_dropped(f, &h, 100, &dropped);
	h.csum_start = cpu_to_le16(0xffff);
	h.csum_offset = cpu_to_le16(0xffff);
	expect_tx_dropped(f, &h, 100, &dropped);
	/* hdr_len beyond the frame. */
	h = (struct virtio_net_hdr){ .hdr_len = cpu_to_le16(101) };
	expect_tx_dropped(f, &h, 100, &dropped);
	/* Flags the driver must not set. */
	h = (struct virtio_net_hdr){ .flags = VIRTIO_NET_HDR_F_DATA_VALID };
	expect_tx_dropped(f, &h, 100, &dropped);
	/* GSO types not negotiated, unknown, or inconsistent. */
	h = (struct virtio_net_hdr){ .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .gso_type = VIRTIO_NET_HDR_GSO_TCPV6,
				     .gso_size = cpu_to_le16(1000), .csum_start = cpu_to_le16(54),
				     .csum_offset = cpu_to_le16(16), .hdr_len = cpu_to_le16(74) };
	expect_tx_dropped(f, &h, 100, &dropped);
	h.gso_type = VIRTIO_NET_HDR_GSO_UDP;
	expect_tx_dropped(f, &h, 100, &dropped);
	h.gso_type = 2;
	expect_tx_dropped(f, &h, 100, &dropped);
	h.gso_type = VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN;
	expect_tx_dropped(f, &h, 100, &dropped);
	h.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
	h.gso_size = 0;
	expect_tx_dropped(f, &h, 100, &dropped);
	h.gso_size = cpu_to_le16(1000);
	h.flags = 0;
	expect_tx_dropped(f, &h, 100, &dropped);

	/* After all that, a good TSO4 frame still goes through. */
	h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	make_frame(frame, sizeof(frame), 3);
	tx_queue(f, &h, frame, sizeof(frame), 0);
	kick(f, VIRTIO_NET_TXQ);
	assert_int_equal(peer_recv(f, got, sizeof(got)), HDR + sizeof(frame));
	assert_int_equal(got[1], VIRTIO_NET_HDR_GSO_TCPV4);
	expect_tx_completed(f);
	assert_int_equal(stats(f).tx_packets, 1);
}

/* Partial checksums need VIRTIO_NET_F_CSUM. */
static void test_tx_csum_not_negotiated(void **state)
{
	struct fx *f = *state;
	struct virtio_net_hdr h = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = cpu_to_le16(14),
				    .csum_offset = cpu_to_le16(6) };
	uint64_t dropped = 0;

	activate(f, F_BASE);
	expect_tx_dropped(f, &h, 100, &dropped);
}

/* Device-writable buffers in a transmit chain: malformed, the device asks for a reset once. */
static void test_tx_writable_chain_needs_reset(void **state)
{
	struct fx *f = *state;
	struct virtio_net_hdr h = { 0 };
	uint8_t frame[64], got[256];

	activate(f, F_BASE);
	make_frame(frame, sizeof(frame), 1);
	wr(f, TX_BUF, &h, HDR);
	wr(f, TX_BUF + HDR, frame, sizeof(frame));
	add_chain(f, VIRTIO_NET_TXQ, (struct seg[]){ { TX_BUF, HDR + sizeof(frame), false },
						     { TX_BUF + 0x800, 64, true } }, 2);
	kick(f, VIRTIO_NET_TXQ);
	assert_int_equal(f->resets, 1);
	assert_int_equal(peer_recv(f, got, sizeof(got)), -1);
	/* Later kicks and packets do nothing until reset. */
	tx_queue(f, &h, frame, sizeof(frame), 0);
	kick(f, VIRTIO_NET_TXQ);
	assert_int_equal(peer_recv(f, got, sizeof(got)), -1);
	assert_int_equal(f->resets, 1);
	/* Nor does the tap get polled. */
	make_frame(got, 64, 0);
	assert_int_equal(send(f->peer, got, HDR + 64, 0), HDR + 64);
	assert_int_equal(run_loop(f), 0);
	/* A reset brings it back. */
	device_reset(f);
	activate(f, F_BASE);
	tx_queue(f, &h, frame, sizeof(frame), 0);
	kick(f, VIRTIO_NET_TXQ);
	assert_int_equal(peer_recv(f, got, sizeof(got)), HDR + sizeof(frame));
}

/* A ring the walker refuses (head out of range) also ends in a reset request, not a crash. */
static void test_tx_malformed_ring(void **state)
{
	struct fx *f = *state;

	activate(f, F_BASE);
	wr16(f, TX_AVAIL + 4, 200);
	wr16(f, TX_AVAIL + 2, 1);
	kick(f, VIRTIO_NET_TXQ);
	assert_int_equal(f->resets, 1);
	kick(f, VIRTIO_NET_TXQ);
	assert_int_equal(f->resets, 1);
}

/* The tap would block: the frame waits (no completion, no spinning) until the fd is writable. */
static void test_tx_backpressure(void **state)
{
	struct fx *f = *state;
	struct virtio_net_hdr h = { 0 };
	const unsigned total = QSIZE - 1;
	uint8_t frame[64], got[256];
	unsigned sent, received = 0;
	uint32_t id, len;
	int sndbuf = 4096;

	/* A small send buffer: the socket fills after a few frames. */
	assert_int_equal(setsockopt(f->dev_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
	activate(f, F_BASE);
	for (unsigned i = 0; i < total; i++) {
		uint64_t gpa = TX_BUF + 0x100ull * i;

		make_frame(frame, sizeof(frame), (uint8_t)i);
		wr(f, gpa, &h, HDR);
		wr(f, gpa + HDR, frame, sizeof(frame));
		add_chain(f, VIRTIO_NET_TXQ, (struct seg[]){ { gpa, HDR + sizeof(frame), false } }, 1);
	}
	kick(f, VIRTIO_NET_TXQ);
	sent = used_pending(f, VIRTIO_NET_TXQ);
	assert_true(sent > 0 && sent < total);
	assert_int_equal(stats(f).tx_packets, sent);
	assert_int_equal(stats(f).tx_dropped, 0);
	/* Nothing to do until the peer reads. */
	assert_int_equal(run_loop(f), 0);
	kick(f, VIRTIO_NET_TXQ);
	assert_int_equal(used_pending(f, VIRTIO_NET_TXQ), sent);
	while (received < total) {
		ssize_t n = peer_recv(f, got, sizeof(got));

		if (n < 0) {
			assert_true(run_loop(f) > 0);
			continue;
		}
		assert_int_equal(n, HDR + sizeof(frame));
		make_frame(frame, sizeof(frame), (uint8_t)received);
		assert_memory_equal(got + HDR, frame, sizeof(frame));
		received++;
	}
	assert_int_equal(used_pending(f, VIRTIO_NET_TXQ), total);
	for (unsigned i = 0; i < total; i++) {
		used_next(f, VIRTIO_NET_TXQ, &id, &len);
		assert_int_equal(id, i);
	}
	assert_int_equal(stats(f).tx_packets, total);
	assert_int_equal(run_loop(f), 0);
}

/* The peer hangs up: no spinning on EPOLLHUP; frames are dropped and returned. */
static void test_tx_peer_gone(void **state)
{
	struct fx *f = *state;
	struct virtio_net_hdr h = { 0 };
	uint8_t frame[64];
	int n;

	activate(f, F_BASE);
	close(f->peer);
	f->peer = -1;
	/* The hang-up, then once more as the tap is switched to edge-triggered; then quiet. */
	n = run_loop(f);
	assert_true(n >= 1 && n <= 2);
	assert_int_equal(evloop_run_once(f->vm.loop, 0), 0);
	assert_int_equal(evloop_run_once(f->vm.loop, 10), 0);
	make_frame(frame, sizeof(frame), 1);
	tx_queue(f, &h, frame, sizeof(frame), 0);
	kick(f, VIRTIO_NET_TXQ);
	expect_tx_completed(f);
	assert_int_equal(stats(f).tx_dropped, 1);
	assert_int_equal(f->resets, 0);
}

/*
 * A long TX burst (a 256-entry ring) is sent across several callbacks of the
 * shared loop, not in one: at most 64 chains at a time, the rest after the
 * other callbacks, in order, with kicks off meanwhile.
 */
static void test_tx_burst_shares_the_loop(void **state)
{
	enum { N = 150, RSIZE = 256 };
	struct fx *f = *state;
	struct virtq *vq = &f->vdev.vqs[VIRTIO_NET_TXQ];
	uint8_t frame[60], got[256];
	struct virtio_net_hdr h = { 0 };
	unsigned seen = 0;

	activate(f, F_BASE);
	/* A bigger transmit ring than the helpers make. */
	virtq_reset(vq);
	vq->size = RSIZE;
	vq->desc_gpa = 0x200000;
	vq->avail_gpa = 0x201000;
	vq->used_gpa = 0x202000;
	assert_int_equal(virtq_enable(vq, F_BASE), 0);
	for (unsigned i = 0; i < N; i++) {
		uint64_t buf = 0x210000 + 0x100 * i;
		struct virtq_desc d = { .addr = cpu_to_le64(buf), .len = cpu_to_le32(HDR + sizeof(frame)) };

		make_frame(frame, sizeof(frame), (uint8_t)i);
		wr(f, buf, &h, HDR);
		wr(f, buf + HDR, frame, sizeof(frame));
		wr(f, 0x200000 + 16ull * i, &d, sizeof(d));
		wr16(f, 0x201000 + 4 + 2ull * i, (uint16_t)i);
	}
	wr16(f, 0x201002, N);
	kick(f, VIRTIO_NET_TXQ);
	/* One callback's worth went out; the rest is queued behind other callbacks. */
	assert_int_equal(rd16(f, 0x202002), 64);
	while (rd16(f, 0x202002) != N) {
		assert_true(evloop_run_once(f->vm.loop, 100) > 0);
		while (peer_recv(f, got, sizeof(got)) > 0) {
			make_frame(frame, sizeof(frame), (uint8_t)seen);
			assert_memory_equal(got + HDR, frame, sizeof(frame));
			seen++;
		}
	}
	while (peer_recv(f, got, sizeof(got)) > 0) {
		make_frame(frame, sizeof(frame), (uint8_t)seen);
		assert_memory_equal(got + HDR, frame, sizeof(frame));
		seen++;
	}
	assert_int_equal(seen, N);
	assert_int_equal(stats(f).tx_packets, N);
	assert_int_equal(f->resets, 0);
}

/* ---- tests: RX ------------------------------------------------------------------ */

static void peer_send(struct fx *f, const struct virtio_net_hdr *h, const uint8_t *frame, size_t len)
{
	static uint8_t buf[HDR + VIRTIO_NET_MAX_FRAME];

	memcpy(buf, h, HDR);
	memcpy(buf + HDR, frame, len);
	assert_int_equal(send(f->peer, buf, HDR + len, 0), (ssize_t)(HDR + len));
}

static void post_rx(struct fx *f, uint64_t gpa, uint32_t len)
{
	add_chain(f, VIRTIO_NET_RXQ, (struct seg[]){ { gpa, len, true } }, 1);
}

static void test_rx_frame(void **state)
{
	struct fx *f = *state;
	struct virtio_net_hdr h = { .flags = VIRTIO_NET_HDR_F_DATA_VALID }, got_h;
	uint8_t frame[500], got[500];
	uint32_t id, len;
	uint16_t head;

	activate(f, F_BASE | F_OFFLOADS);
	/* Header and frame in two descriptors of one chain. */
	head = add_chain(f, VIRTIO_NET_RXQ, (struct seg[]){ { RX_BUF, 100, true },
							    { RX_BUF + 0x1000, 1600, true } }, 2);
	make_frame(frame, sizeof(frame), 5);
	peer_send(f, &h, frame, sizeof(frame));
	assert_true(run_loop(f) >= 1);
	used_next(f, VIRTIO_NET_RXQ, &id, &len);
	assert_int_equal(id, head);
	assert_int_equal(len, HDR + sizeof(frame));
	rd(f, RX_BUF, &got_h, HDR);
	assert_int_equal(got_h.flags, VIRTIO_NET_HDR_F_DATA_VALID);
	assert_int_equal(le16_to_cpu(got_h.num_buffers), 1);
	rd(f, RX_BUF + HDR, got, 100 - HDR);
	rd(f, RX_BUF + 0x1000, got + 100 - HDR, sizeof(frame) - (100 - HDR));
	assert_memory_equal(got, frame, sizeof(frame));
	assert_int_equal(f->signals[VIRTIO_NET_RXQ], 1);
	assert_int_equal(stats(f).rx_packets, 1);
	assert_int_equal(stats(f).rx_bytes, sizeof(frame));
}

/* Without GUEST_CSUM the flags are cleared; offloaded frames the driver did not accept are dropped. */
static void test_rx_header_fixup(void **state)
{
	struct fx *f = *state;
	struct virtio_net_hdr h = { .flags = VIRTIO_NET_HDR_F_DATA_VALID }, got_h;
	uint8_t frame[100];
	uint32_t id, len;

	activate(f, F_BASE);
	post_rx(f, RX_BUF, 2048);
	make_frame(frame, sizeof(frame), 5);
	peer_send(f, &h, frame, sizeof(frame));
	h = (struct virtio_net_hdr){ .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = cpu_to_le16(14),
				     .csum_offset = cpu_to_le16(6) };
	peer_send(f, &h, frame, sizeof(frame));
	h = (struct virtio_net_hdr){ .gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .gso_size = cpu_to_le16(1000) };
	peer_send(f, &h, frame, sizeof(frame));
	run_loop(f);
	used_next(f, VIRTIO_NET_RXQ, &id, &len);
	assert_int_equal(len, HDR + sizeof(frame));
	rd(f, RX_BUF, &got_h, HDR);
	assert_int_equal(got_h.flags, 0);
	assert_int_equal(used_pending(f, VIRTIO_NET_RXQ), 0);
	assert_int_equal(stats(f).rx_dropped, 2);
	assert_int_equal(f->resets, 0);
}

/* MRG_RXBUF: a frame spread over three chains, num_buffers says so, one publish. */
static void test_rx_mergeable(void **state)
{
	struct fx *f = *state;
	struct virtio_net_hdr h = { 0 }, got_h;
	uint8_t frame[250], got[250];
	uint32_t id[3], len[3];

	activate(f, F_BASE | F_MRG);
	for (unsigned i = 0; i < 3; i++)
		post_rx(f, RX_BUF + 0x1000 * i, 100);
	make_frame(frame, sizeof(frame), 11);
	peer_send(f, &h, frame, sizeof(frame));
	run_loop(f);
	assert_int_equal(used_pending(f, VIRTIO_NET_RXQ), 3);
	for (unsigned i = 0; i < 3; i++)
		used_next(f, VIRTIO_NET_RXQ, &id[i], &len[i]);
	assert_int_equal(len[0], 100);
	assert_int_equal(len[1], 100);
	assert_int_equal(len[2], HDR + sizeof(frame) - 200);
	rd(f, RX_BUF, &got_h, HDR);
	assert_int_equal(le16_to_cpu(got_h.num_buffers), 3);
	rd(f, RX_BUF + HDR, got, 100 - HDR);
	rd(f, RX_BUF + 0x1000, got + 100 - HDR, 100);
	rd(f, RX_BUF + 0x2000, got + 200 - HDR, len[2]);
	assert_memory_equal(got, frame, sizeof(frame));
	assert_int_equal(f->signals[VIRTIO_NET_RXQ], 1);
}

/* No buffers: the frame waits, the tap is not polled (no spinning), a kick delivers it. */
static void test_rx_no_buffers_waits_for_kick(void **state)
{
	struct fx *f = *state;
	struct virtio_net_hdr h = { 0 }, got_h;
	uint8_t frame[80], got[80];
	uint32_t id, len;

	activate(f, F_BASE | F_MRG | F_EVENT);
	make_frame(frame, sizeof(frame), 1);
	peer_send(f, &h, frame, sizeof(frame));
	make_frame(frame, sizeof(frame), 2);
	peer_send(f, &h, frame, sizeof(frame));
	assert_int_equal(run_loop(f), 1);
	/* Idle although the second frame is still in the socket. */
	assert_int_equal(evloop_run_once(f->vm.loop, 0), 0);
	assert_int_equal(used_pending(f, VIRTIO_NET_RXQ), 0);
	/* Kicks are armed: avail_event is where the driver will add next. */
	assert_int_equal(avail_event(f, VIRTIO_NET_RXQ), f->q[VIRTIO_NET_RXQ].avail_idx);

	post_rx(f, RX_BUF, 1024);
	kick(f, VIRTIO_NET_RXQ);
	assert_int_equal(used_pending(f, VIRTIO_NET_RXQ), 1);
	assert_int_equal(f->signals[VIRTIO_NET_RXQ], 1);
	used_next(f, VIRTIO_NET_RXQ, &id, &len);
	assert_int_equal(len, HDR + sizeof(frame));
	rd(f, RX_BUF + HDR, got, sizeof(got));
	make_frame(frame, sizeof(frame), 1);
	assert_memory_equal(got, frame, sizeof(frame));
	/* The kick also read the second frame, found no buffer again and stalled again. */
	assert_int_equal(run_loop(f), 0);
	assert_int_equal(used_pending(f, VIRTIO_NET_RXQ), 0);
	post_rx(f, RX_BUF + 0x1000, 1024);
	kick(f, VIRTIO_NET_RXQ);
	used_next(f, VIRTIO_NET_RXQ, &id, &len);
	rd(f, RX_BUF + 0x1000, &got_h, HDR);
	assert_int_equal(le16_to_cpu(got_h.num_buffers), 1);
	rd(f, RX_BUF + 0x1000 + HDR, got, sizeof(got));
	make_frame(frame, sizeof(frame), 2);
	assert_memory_equal(got, frame, sizeof(frame));
	assert_int_equal(stats(f).rx_packets, 2);
	assert_int_equal(stats(f).rx_dropped, 0);
}

/* MRG_RXBUF with too few buffers for a frame: the filled ones are kept, the rest come after a kick. */
static void test_rx_mergeable_runs_out(void **state)
{
	struct fx *f = *state;
	struct virtio_net_hdr h = { 0 }, got_h;
	uint8_t frame[200], got[200];
	uint32_t id, len[3];

	activate(f, F_BASE | F_MRG | F_EVENT);
	post_rx(f, RX_BUF, 64);
	make_frame(frame, sizeof(frame), 4);
	peer_send(f, &h, frame, sizeof(frame));
	assert_int_equal(run_loop(f), 1);
	assert_int_equal(used_pending(f, VIRTIO_NET_RXQ), 0);
	assert_int_equal(avail_event(f, VIRTIO_NET_RXQ), f->q[VIRTIO_NET_RXQ].avail_idx);
	post_rx(f, RX_BUF + 0x1000, 100);
	post_rx(f, RX_BUF + 0x2000, 100);
	kick(f, VIRTIO_NET_RXQ);
	assert_int_equal(used_pending(f, VIRTIO_NET_RXQ), 3);
	for (unsigned i = 0; i < 3; i++)
		used_next(f, VIRTIO_NET_RXQ, &id, &len[i]);
	assert_int_equal(len[0], 64);
	assert_int_equal(len[1], 100);
	assert_int_equal(len[2], HDR + sizeof(frame) - 164);
	rd(f, RX_BUF, &got_h, HDR);
	assert_int_equal(le16_to_cpu(got_h.num_buffers), 3);
	rd(f, RX_BUF + HDR, got, 64 - HDR);
	rd(f, RX_BUF + 0x1000, got + 64 - HDR, 100);
	rd(f, RX_BUF + 0x2000, got + 164 - HDR, len[2]);
	assert_memory_equal(got, frame, sizeof(frame));
}

/* Without MRG_RXBUF a frame bigger than the buffer is dropped; the buffer serves the next one. */
static void test_rx_too_big_without_mrg(void **state)
{
	struct fx *f = *state;
	struct virtio_net_hdr h = { 0 };
	uint8_t frame[200], got[50];
	uint32_t id, len;
	uint16_t head;

	activate(f, F_BASE);
	head = add_chain(f, VIRTIO_NET_RXQ, (struct seg[]){ { RX_BUF, 100, true } }, 1);
	make_frame(frame, sizeof(frame), 1);
	peer_send(f, &h, frame, sizeof(frame));
	make_frame(frame, 50, 2);
	peer_send(f, &h, frame, 50);
	run_loop(f);
	assert_int_equal(stats(f).rx_dropped, 1);
	used_next(f, VIRTIO_NET_RXQ, &id, &len);
	assert_int_equal(id, head);
	assert_int_equal(len, HDR + 50);
	rd(f, RX_BUF + HDR, got, 50);
	assert_memory_equal(got, frame, 50);
	assert_int_equal(f->resets, 0);
}

/* The largest frame, into one big buffer and merged into many. */
static void test_rx_max_frame(void **state)
{
	struct fx *f = *state;
	struct virtio_net_hdr h = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
				    .gso_size = cpu_to_le16(1448), .csum_start = cpu_to_le16(34),
				    .csum_offset = cpu_to_le16(16) };
	static uint8_t frame[VIRTIO_NET_MAX_FRAME], got[VIRTIO_NET_MAX_FRAME];
	uint32_t id, len;

	activate(f, F_BASE | F_OFFLOADS);
	post_rx(f, BIG_BUF, HDR + VIRTIO_NET_MAX_FRAME);
	make_frame(frame, sizeof(frame), 7);
	peer_send(f, &h, frame, sizeof(frame));
	run_loop(f);
	used_next(f, VIRTIO_NET_RXQ, &id, &len);
	assert_int_equal(len, HDR + sizeof(frame));
	rd(f, BIG_BUF + HDR, got, sizeof(got));
	assert_memory_equal(got, frame, sizeof(frame));

	/* Merged: 15 buffers of 4 KiB run out; one of 8 KiB after a kick finishes the frame. */
	device_reset(f);
	f->signals[VIRTIO_NET_RXQ] = 0;
	activate(f, F_BASE | F_OFFLOADS | F_MRG);
	for (unsigned i = 0; i < QSIZE - 1; i++)
		post_rx(f, BIG_BUF + 4096ull * i, 4096);
	peer_send(f, &h, frame, sizeof(frame));
	assert_int_equal(run_loop(f), 1);
	assert_int_equal(used_pending(f, VIRTIO_NET_RXQ), 0);
	post_rx(f, BIG_BUF + 4096ull * (QSIZE - 1), 8192);
	kick(f, VIRTIO_NET_RXQ);
	assert_int_equal(used_pending(f, VIRTIO_NET_RXQ), QSIZE);
	for (unsigned i = 0; i < QSIZE; i++) {
		used_next(f, VIRTIO_NET_RXQ, &id, &len);
		assert_int_equal(id, i);
		assert_int_equal(len, i < QSIZE - 1 ? 4096 : HDR + sizeof(frame) - 4096 * (QSIZE - 1));
	}
	memset(got, 0, sizeof(got));
	rd(f, BIG_BUF + HDR, got, sizeof(got));
	assert_memory_equal(got, frame, sizeof(frame));
	assert_int_equal(rd16(f, BIG_BUF + 10), QSIZE);
	assert_int_equal(f->signals[VIRTIO_NET_RXQ], 1);
	assert_int_equal(f->resets, 0);
}

/* A receive chain with a device-readable buffer, or smaller than the header: reset. */
static void test_rx_malformed_chains(void **state)
{
	struct fx *f = *state;
	struct virtio_net_hdr h = { 0 };
	uint8_t frame[64];

	activate(f, F_BASE);
	add_chain(f, VIRTIO_NET_RXQ, (struct seg[]){ { RX_BUF, 64, false }, { RX_BUF + 64, 2000, true } }, 2);
	make_frame(frame, sizeof(frame), 1);
	peer_send(f, &h, frame, sizeof(frame));
	run_loop(f);
	assert_int_equal(f->resets, 1);
	assert_int_equal(used_pending(f, VIRTIO_NET_RXQ), 0);
	/* Not polled any more: nothing spins. */
	peer_send(f, &h, frame, sizeof(frame));
	assert_int_equal(run_loop(f), 0);

	device_reset(f);
	f->resets = 0;
	activate(f, F_BASE | F_MRG);
	post_rx(f, RX_BUF, HDR - 1);
	peer_send(f, &h, frame, sizeof(frame));
	run_loop(f);
	assert_int_equal(f->resets, 1);

	device_reset(f);
	f->resets = 0;
	activate(f, F_BASE | F_MRG);
	post_rx(f, RX_BUF, 64);
	add_chain(f, VIRTIO_NET_RXQ, (struct seg[]){ { RX_BUF + 0x1000, 0, true } }, 1);
	peer_send(f, &h, frame, sizeof(frame));
	run_loop(f);
	assert_int_equal(f->resets, 1);
	assert_int_equal(used_pending(f, VIRTIO_NET_RXQ), 0);
}

/* Runts and frames without a whole header from the tap are dropped. */
static void test_rx_runt_from_tap(void **state)
{
	struct fx *f = *state;
	uint8_t buf[HDR + 13] = { 0 };

	activate(f, F_BASE);
	post_rx(f, RX_BUF, 2048);
	assert_int_equal(send(f->peer, buf, 5, 0), 5);
	assert_int_equal(send(f->peer, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	run_loop(f);
	assert_int_equal(stats(f).rx_dropped, 2);
	assert_int_equal(used_pending(f, VIRTIO_NET_RXQ), 0);
}

/* Paused: the tap is not read and no interrupt comes; resume catches up. */
static void test_pause_resume(void **state)
{
	struct fx *f = *state;
	struct virtio_net_hdr h = { 0 };
	uint8_t frame[64];
	uint32_t id, len;

	activate(f, F_BASE);
	post_rx(f, RX_BUF, 2048);
	assert_int_equal(f->vdev.ops->pause(&f->vdev), 0);
	make_frame(frame, sizeof(frame), 1);
	peer_send(f, &h, frame, sizeof(frame));
	assert_int_equal(run_loop(f), 0);
	assert_int_equal(used_pending(f, VIRTIO_NET_RXQ), 0);
	/* A TX kick that slipped through while paused touches nothing. */
	tx_queue(f, &h, frame, sizeof(frame), 0);
	kick(f, VIRTIO_NET_TXQ);
	assert_int_equal(used_pending(f, VIRTIO_NET_TXQ), 0);

	assert_int_equal(f->vdev.ops->resume(&f->vdev), 0);
	assert_true(run_loop(f) >= 1);
	used_next(f, VIRTIO_NET_RXQ, &id, &len);
	assert_int_equal(len, HDR + sizeof(frame));
	/* The TX frame queued while paused went out on resume. */
	expect_tx_completed(f);
	assert_int_equal(stats(f).tx_packets, 1);
}

/* Kicks before DRIVER_OK or after reset do nothing. */
static void test_inactive_ignores_kicks(void **state)
{
	struct fx *f = *state;
	struct virtio_net_hdr h = { 0 };
	uint8_t frame[64], got[128];

	f->vdev.driver_features = F_BASE;
	enable_queues(f, F_BASE);
	make_frame(frame, sizeof(frame), 1);
	tx_queue(f, &h, frame, sizeof(frame), 0);
	kick(f, VIRTIO_NET_TXQ);
	kick(f, VIRTIO_NET_RXQ);
	assert_int_equal(used_pending(f, VIRTIO_NET_TXQ), 0);
	assert_int_equal(peer_recv(f, got, sizeof(got)), -1);
	assert_int_equal(run_loop(f), 0);
}

/* ---- tests: the event loop on a thread of its own, as in the VMM ---------------------- */

static void *loop_main(void *arg)
{
	struct fx *f = arg;

	assert_int_equal(evloop_run(f->vm.loop), 0);
	return NULL;
}

/* A short, varying pause: sweeps the moments the loop thread can be at. */
static void spin(unsigned n)
{
	for (volatile unsigned i = 0; i < n; i++)
		;
}

/*
 * The tap hangs up while the driver resets or pauses the device: the loop
 * thread (hang-up) and this one (reset, pause, destroy) both deal with the
 * tap's registration. It must be removed once, by one of them: ASan sees a
 * double free otherwise, TSan the unguarded pointer.
 */
static void test_reset_races_tap_hangup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	pthread_t loop;

	(void)state;
	assert_non_null(f);
	fx_init(f);
	assert_int_equal(pthread_create(&loop, NULL, loop_main, f), 0);
	for (unsigned i = 0; i < 2000; i++) {
		char err[256] = "";
		int sv[2];

		assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
		assert_int_equal(virtio_net_create_on_fd(&f->vm, sv[0], "", &f->vdev, err, sizeof(err)), 0);
		fx_hook(f);
		activate(f, F_BASE);                 /* the tap is watched by the running loop */
		close(sv[1]);                        /* the peer hangs up */
		spin((i * 37) % 4000);
		/* What the transport does: the device first, then its queues. */
		if (i % 3 == 2) {
			assert_int_equal(f->vdev.ops->pause(&f->vdev), 0);
		} else {
			f->vdev.ops->reset(&f->vdev);
			for (unsigned q = 0; q < 2; q++)
				virtq_reset(&f->vdev.vqs[q]);
		}
		f->vdev.ops->destroy(&f->vdev);
	}
	evloop_stop(f->vm.loop);
	assert_int_equal(pthread_join(loop, NULL), 0);
	evloop_destroy(f->vm.loop);
	gmem_destroy(&f->vm.mem);
	free(f);
}

/* ---- tests: a real tap in a private network namespace -------------------------------- */

#define TAP_NAME "vmmtest0"

static int setup_tap_group(void **state)
{
	int fd;

	(void)state;
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		snprintf(tap_skip_why, sizeof(tap_skip_why), "/dev/net/tun: %s", strerror(errno));
		return 0;
	}
	close(fd);
	/* Our own namespace: the taps we create are seen by nobody, and vanish with us. */
	if (unshare(CLONE_NEWNET) < 0) {
		snprintf(tap_skip_why, sizeof(tap_skip_why), "unshare(CLONE_NEWNET): %s", strerror(errno));
		return 0;
	}
	/* No IPv6 chatter (router solicitations, MLD) on the test link. */
	fd = open("/proc/sys/net/ipv6/conf/default/disable_ipv6", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, "1", 1) < 0)
			(void)0;
		close(fd);
	}
	tap_ok = true;
	return 0;
}

static struct fx *fx_tap(const char *args)
{
	struct fx *f = calloc(1, sizeof(*f));
	char err[256] = "";

	assert_non_null(f);
	fx_init(f);
	if (virtio_net_kind.create(&f->vm, args, &f->vdev, err, sizeof(err)) != 0)
		fail_msg("create '%s': %s", args, err);
	fx_hook(f);
	return f;
}

static int ethtool_get(const char *ifname, uint32_t cmd)
{
	struct ethtool_value ev = { .cmd = cmd };
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), r;

	assert_true(s >= 0);
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	ifr.ifr_data = (void *)&ev;
	r = ioctl(s, SIOCETHTOOL, &ifr);
	close(s);
	assert_int_equal(r, 0);
	return (int)ev.data;
}

static void test_tap_create_mac_and_offloads(void **state)
{
	struct fx *f;
	uint8_t mac[6], mac2[6];
	unsigned want;

	(void)state;
	if (!tap_ok)
		skip();
	f = fx_tap("tap=" TAP_NAME);
	assert_true(if_nametoindex(TAP_NAME) != 0);
	f->vdev.ops->cfg_read(&f->vdev, 0, mac, 6);
	assert_int_equal(mac[0] & 3, 2);  /* locally administered, unicast */
	/* The tap we created goes away with the device; the same name gives the same MAC. */
	fx_free(f);
	assert_int_equal(if_nametoindex(TAP_NAME), 0);
	f = fx_tap("tap=" TAP_NAME);
	f->vdev.ops->cfg_read(&f->vdev, 0, mac2, 6);
	assert_memory_equal(mac, mac2, 6);
	fx_free(f);
	f = fx_tap("tap=vmmtest1");
	f->vdev.ops->cfg_read(&f->vdev, 0, mac2, 6);
	assert_memory_not_equal(mac, mac2, 6);
	fx_free(f);

	f = fx_tap("tap=" TAP_NAME ",mac=52:54:00:12:34:56");
	f->vdev.ops->cfg_read(&f->vdev, 0, mac, 6);
	assert_memory_equal(mac, ((uint8_t[]){ 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 }), 6);
	/* Every kernel we run on takes checksum and TSO offloads. */
	want = F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_GUEST_TSO4) | F(VIRTIO_NET_F_GUEST_TSO6);
	assert_true((f->vdev.device_features & want) == want);
	assert_int_equal(ethtool_get(TAP_NAME, ETHTOOL_GTSO), 0);
	activate(f, F_BASE | F_OFFLOADS);
	assert_int_equal(virtio_net_offloads(&f->vdev), TAP_OFFLOAD_CSUM | TAP_OFFLOAD_TSO4 | TAP_OFFLOAD_TSO6);
	assert_int_equal(ethtool_get(TAP_NAME, ETHTOOL_GTSO), 1);
	assert_int_equal(ethtool_get(TAP_NAME, ETHTOOL_GTXCSUM), 1);
	device_reset(f);
	assert_int_equal(ethtool_get(TAP_NAME, ETHTOOL_GTSO), 0);
	activate(f, F_BASE);
	assert_int_equal(ethtool_get(TAP_NAME, ETHTOOL_GTSO), 0);
	assert_int_equal(ethtool_get(TAP_NAME, ETHTOOL_GTXCSUM), 0);
	fx_free(f);
}

static void test_tap_busy_and_not_a_tap(void **state)
{
	struct fx *f;

	(void)state;
	if (!tap_ok)
		skip();
	f = fx_tap("tap=" TAP_NAME);
	/* A second device on the same (single-queue) tap. */
	expect_create_error("tap=" TAP_NAME, "'" TAP_NAME "' is busy");
	fx_free(f);
	expect_create_error("tap=lo", "not a single-queue tap");
}

static short link_flags(const char *ifname)
{
	struct ifreq ifr = { 0 };
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	assert_true(s >= 0);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	assert_int_equal(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
	close(s);
	return ifr.ifr_flags;
}

/* Make (persist=1) or remove (persist=0) a persistent tap, as `ip tuntap` does. */
static void tap_persist(const char *ifname, int persist)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

	assert_true(fd >= 0);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	assert_int_equal(ioctl(fd, TUNSETIFF, &ifr), 0);
	assert_int_equal(ioctl(fd, TUNSETPERSIST, persist), 0);
	close(fd);
}

/*
 * tap_open tells a tap it made (brought up, gone with its fd) from an
 * existing persistent one (left as its owner set it, outlives the fd).
 */
static void test_tap_created_or_existing(void **state)
{
	bool created = false;
	char err[200];
	int fd;

	(void)state;
	if (!tap_ok)
		skip();
	fd = tap_open(TAP_NAME, 12, &created, err, sizeof(err));
	assert_true(fd >= 0);
	assert_true(created);
	assert_true(link_flags(TAP_NAME) & IFF_UP);
	close(fd);
	assert_int_equal(if_nametoindex(TAP_NAME), 0);

	tap_persist(TAP_NAME, 1);
	assert_false(link_flags(TAP_NAME) & IFF_UP);
	fd = tap_open(TAP_NAME, 12, &created, err, sizeof(err));
	assert_true(fd >= 0);
	assert_false(created);
	assert_false(link_flags(TAP_NAME) & IFF_UP);
	close(fd);
	assert_true(if_nametoindex(TAP_NAME) != 0);
	tap_persist(TAP_NAME, 0);
	assert_int_equal(if_nametoindex(TAP_NAME), 0);
}

static int packet_socket(const char *ifname)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
				   .sll_ifindex = (int)if_nametoindex(ifname) };
	int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));

	assert_true(s >= 0);
	assert_int_equal(bind(s, (struct sockaddr *)&sll, sizeof(sll)), 0);
	return s;
}

/* The next frame with our ethertype the packet socket sees coming from the tap; its length. */
static ssize_t packet_recv(int s, uint8_t *buf, size_t len)
{
	for (;;) {
		struct pollfd p = { .fd = s, .events = POLLIN };
		struct sockaddr_ll from;
		socklen_t fl = sizeof(from);
		ssize_t n;

		if (poll(&p, 1, 2000) != 1)
			return -1;
		n = recvfrom(s, buf, len, MSG_TRUNC, (struct sockaddr *)&from, &fl);
		assert_true(n >= 0);
		if (from.sll_pkttype == PACKET_OUTGOING)
			continue;
		if (n >= 14 && buf[12] == (ETHERTYPE_TEST >> 8) && buf[13] == (ETHERTYPE_TEST & 0xff))
			return n;
		if (n >= 14 && buf[12] == 0x08 && buf[13] == 0x00)
			return n;
	}
}

/* Frames both ways through a real tap, a TSO frame passed through whole. */
static void test_tap_traffic(void **state)
{
	struct virtio_net_hdr h = { 0 }, got_h;
	static uint8_t frame[4054], got[65536];
	struct sockaddr_ll to;
	struct fx *f;
	uint32_t id, len;
	int s;

	(void)state;
	if (!tap_ok)
		skip();
	f = fx_tap("tap=" TAP_NAME);
	activate(f, F_BASE | F_OFFLOADS | F_MRG | F_EVENT);
	s = packet_socket(TAP_NAME);

	/* Guest to host. */
	make_frame(frame, 300, 1);
	tx_queue(f, &h, frame, 300, 0);
	kick(f, VIRTIO_NET_TXQ);
	expect_tx_completed(f);
	assert_int_equal(stats(f).tx_dropped, 0);
	assert_int_equal(packet_recv(s, got, sizeof(got)), 300);
	assert_memory_equal(got, frame, 300);

	/* A TCP/IPv4 segment of 4000 bytes with TSO: the tap takes it whole. */
	memset(frame, 0, 54);
	memcpy(frame, "\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00", 14);
	frame[14] = 0x45;                        /* IPv4, 20-byte header */
	frame[16] = (4040 >> 8) & 0xff;          /* total length 20 + 20 + 4000 */
	frame[17] = 4040 & 0xff;
	frame[22] = 64;                          /* TTL */
	frame[23] = 6;                           /* TCP */
	memcpy(frame + 26, "\x0a\x00\x02\x0f\x0a\x00\x02\x01", 8);
	frame[34 + 1] = 80;                      /* ports */
	frame[36 + 1] = 81;
	frame[34 + 12] = 5 << 4;                 /* data offset */
	frame[34 + 13] = 0x18;                   /* PSH ACK */
	for (size_t i = 54; i < sizeof(frame); i++)
		frame[i] = (uint8_t)i;
	{
		/* IPv4 header checksum. */
		uint32_t sum = 0;

		for (int i = 14; i < 34; i += 2)
			sum += (uint32_t)frame[i] << 8 | frame[i + 1];
		sum = (sum & 0xffff) + (sum >> 16);
		sum = (sum & 0xffff) + (sum >> 16);
		frame[24] = (uint8_t)(~sum >> 8);
		frame[25] = (uint8_t)~sum;
	}
	h = (struct virtio_net_hdr){ .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
				     .hdr_len = cpu_to_le16(54), .gso_size = cpu_to_le16(1448),
				     .csum_start = cpu_to_le16(34), .csum_offset = cpu_to_le16(16) };
	wr(f, BIG_BUF, &h, HDR);
	wr(f, BIG_BUF + HDR, frame, sizeof(frame));
	add_chain(f, VIRTIO_NET_TXQ, (struct seg[]){ { BIG_BUF, HDR + sizeof(frame), false } }, 1);
	kick(f, VIRTIO_NET_TXQ);
	expect_tx_completed(f);
	assert_int_equal(stats(f).tx_dropped, 0);
	assert_int_equal(stats(f).tx_packets, 2);
	assert_int_equal(packet_recv(s, got, sizeof(got)), sizeof(frame));
	assert_memory_equal(got + 54, frame + 54, sizeof(frame) - 54);

	/* Host to guest. */
	post_rx(f, RX_BUF, 2048);
	make_frame(frame, 200, 3);
	memset(&to, 0, sizeof(to));
	to.sll_family = AF_PACKET;
	to.sll_ifindex = (int)if_nametoindex(TAP_NAME);
	to.sll_halen = 6;
	memset(to.sll_addr, 0xff, 6);
	assert_int_equal(sendto(s, frame, 200, 0, (struct sockaddr *)&to, sizeof(to)), 200);
	for (int tries = 0; tries < 100 && !used_pending(f, VIRTIO_NET_RXQ); tries++) {
		assert_true(evloop_run_once(f->vm.loop, 20) >= 0);
	}
	used_next(f, VIRTIO_NET_RXQ, &id, &len);
	assert_int_equal(len, HDR + 200);
	rd(f, RX_BUF, &got_h, HDR);
	assert_int_equal(le16_to_cpu(got_h.num_buffers), 1);
	rd(f, RX_BUF + HDR, got, 200);
	assert_memory_equal(got, frame, 200);
	close(s);
	fx_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_args),
		cmocka_unit_test(test_unopenable_tap),
		cmocka_unit_test(test_config_and_features),
		cmocka_unit_test_setup_teardown(test_offloads_follow_features, setup_pair, teardown),
		cmocka_unit_test_setup_teardown(test_tx_frame, setup_pair, teardown),
		cmocka_unit_test_setup_teardown(test_tx_many_frames_batched, setup_pair, teardown),
		cmocka_unit_test_setup_teardown(test_tx_bad_frames_dropped, setup_pair, teardown),
		cmocka_unit_test_setup_teardown(test_tx_csum_not_negotiated, setup_pair, teardown),
		cmocka_unit_test_setup_teardown(test_tx_writable_chain_needs_reset, setup_pair, teardown),
		cmocka_unit_test_setup_teardown(test_tx_malformed_ring, setup_pair, teardown),
		cmocka_unit_test_setup_teardown(test_tx_backpressure, setup_pair, teardown),
		cmocka_unit_test_setup_teardown(test_tx_peer_gone, setup_pair, teardown),
		cmocka_unit_test_setup_teardown(test_tx_burst_shares_the_loop, setup_pair, teardown),
		cmocka_unit_test_setup_teardown(test_rx_frame, setup_pair, teardown),
		cmocka_unit_test_setup_teardown(test_rx_header_fixup, setup_pair, teardown),
		cmocka_unit_test_setup_teardown(test_rx_mergeable, setup_pair, teardown),
		cmocka_unit_test_setup_teardown(test_rx_no_buffers_waits_for_kick, setup_pair, teardown),
		cmocka_unit_test_setup_teardown(test_rx_mergeable_runs_out, setup_pair, teardown),
		cmocka_unit_test_setup_teardown(test_rx_too_big_without_mrg, setup_pair, teardown),
		cmocka_unit_test_setup_teardown(test_rx_max_frame, setup_pair, teardown),
		cmocka_unit_test_setup_teardown(test_rx_malformed_chains, setup_pair, teardown),
		cmocka_unit_test_setup_teardown(test_rx_runt_from_tap, setup_pair, teardown),
		cmocka_unit_test_setup_teardown(test_pause_resume, setup_pair, teardown),
		cmocka_unit_test_setup_teardown(test_inactive_ignores_kicks, setup_pair, teardown),
		cmocka_unit_test(test_reset_races_tap_hangup),
	};
	const struct CMUnitTest tap_tests[] = {
		cmocka_unit_test(test_tap_create_mac_and_offloads),
		cmocka_unit_test(test_tap_busy_and_not_a_tap),
		cmocka_unit_test(test_tap_created_or_existing),
		cmocka_unit_test(test_tap_traffic),
	};
	int failed;

	failed = cmocka_run_group_tests_name("virtio_net", tests, NULL, NULL);
	failed += cmocka_run_group_tests_name("virtio_net_tap", tap_tests, setup_tap_group, NULL);
	if (!tap_ok)
		fprintf(stderr, "virtio_net_tap: skipped: %s\n", tap_skip_why);
	return failed;
}
