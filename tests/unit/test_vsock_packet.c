/*
 * Unit tests for devices/vsock/packet (header validation) and
 * devices/vsock/conn (one connection's state machine and credit), both pure.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "devices/vsock/conn.h"
#include "devices/vsock/packet.h"

#define GUEST 3u

static struct vsock_pkt good_pkt(uint16_t op)
{
	struct vsock_pkt p = {
		.src_cid = GUEST, .dst_cid = VSOCK_HOST_CID, .src_port = 1234, .dst_port = 80,
		.type = VIRTIO_VSOCK_TYPE_STREAM, .op = op, .buf_alloc = 65536,
	};
	return p;
}

static enum vsock_pkt_verdict check(const struct vsock_pkt *in, uint64_t payload, bool seq,
				    const char **why)
{
	struct vsock_hdr h;
	struct vsock_pkt out;

	vsock_hdr_encode(&h, in);
	return vsock_pkt_parse(&h, payload, GUEST, seq, &out, why);
}

/* ---- packet ------------------------------------------------------------------ */

static void test_roundtrip(void **state)
{
	struct vsock_pkt p = {
		.src_cid = 0x1122334455667788ull, .dst_cid = 2, .src_port = 0xdeadbeef,
		.dst_port = 7, .len = 513, .type = 2, .op = 5, .flags = 3,
		.buf_alloc = 0xfffffff0u, .fwd_cnt = 0x80000001u,
	}, q;
	struct vsock_hdr h;
	const uint8_t *b = (const uint8_t *)&h;

	(void)state;
	vsock_hdr_encode(&h, &p);
	/* Little-endian on the wire, fields where the spec puts them. */
	assert_int_equal(b[0], 0x88);
	assert_int_equal(b[16], 0xef);
	assert_int_equal(b[24], 0x01);
	assert_int_equal(b[25], 0x02);
	assert_int_equal(b[28], 2);
	assert_int_equal(b[30], 5);
	vsock_hdr_decode(&h, &q);
	assert_int_equal(q.src_cid, p.src_cid);
	assert_int_equal(q.dst_cid, p.dst_cid);
	assert_int_equal(q.src_port, p.src_port);
	assert_int_equal(q.dst_port, p.dst_port);
	assert_int_equal(q.len, p.len);
	assert_int_equal(q.type, p.type);
	assert_int_equal(q.op, p.op);
	assert_int_equal(q.flags, p.flags);
	assert_int_equal(q.buf_alloc, p.buf_alloc);
	assert_int_equal(q.fwd_cnt, p.fwd_cnt);
}

static void test_valid_packets(void **state)
{
	const char *why;
	struct vsock_pkt p;

	(void)state;
	for (uint16_t op = VIRTIO_VSOCK_OP_REQUEST; op <= VIRTIO_VSOCK_OP_CREDIT_REQUEST; op++) {
		p = good_pkt(op);
		if (op == VIRTIO_VSOCK_OP_SHUTDOWN)
			p.flags = VIRTIO_VSOCK_SHUTDOWN_SEND;
		assert_int_equal(check(&p, 0, false, &why), VSOCK_PKT_OK);
	}
	p = good_pkt(VIRTIO_VSOCK_OP_RW);
	p.len = VSOCK_MAX_PKT_PAYLOAD;
	assert_int_equal(check(&p, VSOCK_MAX_PKT_PAYLOAD, false, &why), VSOCK_PKT_OK);
	p.type = VIRTIO_VSOCK_TYPE_SEQPACKET;
	p.flags = VIRTIO_VSOCK_SEQ_EOM | VIRTIO_VSOCK_SEQ_EOR;
	assert_int_equal(check(&p, VSOCK_MAX_PKT_PAYLOAD, true, &why), VSOCK_PKT_OK);
}

struct bad_case {
	const char *name;
	void (*mutate)(struct vsock_pkt *p, uint64_t *payload, bool *seq);
	enum vsock_pkt_verdict want;
};

static void m_src_cid(struct vsock_pkt *p, uint64_t *l, bool *s) { (void)l; (void)s; p->src_cid = 4; }
static void m_src_cid_host(struct vsock_pkt *p, uint64_t *l, bool *s) { (void)l; (void)s; p->src_cid = 2; }
static void m_dst_cid(struct vsock_pkt *p, uint64_t *l, bool *s) { (void)l; (void)s; p->dst_cid = 5; }
static void m_dst_cid_high(struct vsock_pkt *p, uint64_t *l, bool *s) { (void)l; (void)s; p->dst_cid = (1ull << 32) | 2; }
static void m_type0(struct vsock_pkt *p, uint64_t *l, bool *s) { (void)l; (void)s; p->type = 0; }
static void m_type9(struct vsock_pkt *p, uint64_t *l, bool *s) { (void)l; (void)s; p->type = 9; }
static void m_seq_unneg(struct vsock_pkt *p, uint64_t *l, bool *s) { (void)l; *s = false; p->type = 2; }
static void m_op0(struct vsock_pkt *p, uint64_t *l, bool *s) { (void)l; (void)s; p->op = 0; }
static void m_op8(struct vsock_pkt *p, uint64_t *l, bool *s) { (void)l; (void)s; p->op = 8; }
static void m_opffff(struct vsock_pkt *p, uint64_t *l, bool *s) { (void)l; (void)s; p->op = 0xffff; }
static void m_too_long(struct vsock_pkt *p, uint64_t *l, bool *s)
{
	(void)s;
	p->op = VIRTIO_VSOCK_OP_RW;
	p->len = VSOCK_MAX_PKT_PAYLOAD + 1;
	*l = p->len;
}
static void m_len_more(struct vsock_pkt *p, uint64_t *l, bool *s) { (void)s; p->op = VIRTIO_VSOCK_OP_RW; p->len = 100; *l = 99; }
static void m_len_less(struct vsock_pkt *p, uint64_t *l, bool *s) { (void)s; p->op = VIRTIO_VSOCK_OP_RW; p->len = 100; *l = 101; }
static void m_len_huge(struct vsock_pkt *p, uint64_t *l, bool *s) { (void)s; p->op = VIRTIO_VSOCK_OP_RW; p->len = 0xffffffffu; *l = 0xffffffffu; }
static void m_ctl_payload(struct vsock_pkt *p, uint64_t *l, bool *s) { (void)s; p->op = VIRTIO_VSOCK_OP_REQUEST; p->len = 4; *l = 4; }
static void m_ctl_flags(struct vsock_pkt *p, uint64_t *l, bool *s) { (void)l; (void)s; p->op = VIRTIO_VSOCK_OP_CREDIT_UPDATE; p->flags = 1; }
static void m_shut0(struct vsock_pkt *p, uint64_t *l, bool *s) { (void)l; (void)s; p->op = VIRTIO_VSOCK_OP_SHUTDOWN; p->flags = 0; }
static void m_shut4(struct vsock_pkt *p, uint64_t *l, bool *s) { (void)l; (void)s; p->op = VIRTIO_VSOCK_OP_SHUTDOWN; p->flags = 7; }
static void m_shut_payload(struct vsock_pkt *p, uint64_t *l, bool *s) { (void)s; p->op = VIRTIO_VSOCK_OP_SHUTDOWN; p->flags = 3; p->len = 1; *l = 1; }
static void m_stream_flags(struct vsock_pkt *p, uint64_t *l, bool *s) { (void)l; (void)s; p->op = VIRTIO_VSOCK_OP_RW; p->flags = VIRTIO_VSOCK_SEQ_EOM; }
static void m_seq_badflags(struct vsock_pkt *p, uint64_t *l, bool *s) { (void)l; *s = true; p->type = 2; p->op = VIRTIO_VSOCK_OP_RW; p->flags = 4; }
static void m_seq_eor_only(struct vsock_pkt *p, uint64_t *l, bool *s) { (void)l; *s = true; p->type = 2; p->op = VIRTIO_VSOCK_OP_RW; p->flags = VIRTIO_VSOCK_SEQ_EOR; }
static void m_rst_bad(struct vsock_pkt *p, uint64_t *l, bool *s) { (void)l; (void)s; p->op = VIRTIO_VSOCK_OP_RST; p->dst_cid = 9; }
static void m_rst_payload(struct vsock_pkt *p, uint64_t *l, bool *s) { (void)s; p->op = VIRTIO_VSOCK_OP_RST; p->len = 3; *l = 3; }

static const struct bad_case bad_cases[] = {
	{ "source CID not the guest's", m_src_cid, VSOCK_PKT_DROP },
	{ "source CID the host's", m_src_cid_host, VSOCK_PKT_DROP },
	{ "destination CID another guest", m_dst_cid, VSOCK_PKT_RST },
	{ "destination CID above 32 bits", m_dst_cid_high, VSOCK_PKT_RST },
	{ "type 0", m_type0, VSOCK_PKT_RST },
	{ "type 9", m_type9, VSOCK_PKT_RST },
	{ "SEQPACKET not negotiated", m_seq_unneg, VSOCK_PKT_RST },
	{ "op 0", m_op0, VSOCK_PKT_RST },
	{ "op 8", m_op8, VSOCK_PKT_RST },
	{ "op 0xffff", m_opffff, VSOCK_PKT_RST },
	{ "payload over 64 KiB", m_too_long, VSOCK_PKT_RST },
	{ "len above the buffer", m_len_more, VSOCK_PKT_RST },
	{ "len below the buffer", m_len_less, VSOCK_PKT_RST },
	{ "len 4 GiB - 1", m_len_huge, VSOCK_PKT_RST },
	{ "payload on REQUEST", m_ctl_payload, VSOCK_PKT_RST },
	{ "flags on CREDIT_UPDATE", m_ctl_flags, VSOCK_PKT_RST },
	{ "SHUTDOWN without flags", m_shut0, VSOCK_PKT_RST },
	{ "SHUTDOWN unknown flags", m_shut4, VSOCK_PKT_RST },
	{ "SHUTDOWN with payload", m_shut_payload, VSOCK_PKT_RST },
	{ "flags on stream RW", m_stream_flags, VSOCK_PKT_RST },
	{ "unknown SEQPACKET flags", m_seq_badflags, VSOCK_PKT_RST },
	{ "EOR without EOM", m_seq_eor_only, VSOCK_PKT_RST },
	{ "a bad RST is dropped, never answered", m_rst_bad, VSOCK_PKT_DROP },
	{ "a RST with payload is dropped", m_rst_payload, VSOCK_PKT_DROP },
};

static void test_malformed(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct vsock_pkt p = good_pkt(VIRTIO_VSOCK_OP_CREDIT_REQUEST);
		uint64_t payload = 0;
		bool seq = false;
		const char *why = NULL;
		enum vsock_pkt_verdict v;

		bad_cases[i].mutate(&p, &payload, &seq);
		v = check(&p, payload, seq, &why);
		if (v != bad_cases[i].want)
			fail_msg("%s: verdict %d, want %d", bad_cases[i].name, v, bad_cases[i].want);
		assert_non_null(why);
	}
}

static void test_rst_reply(void **state)
{
	struct vsock_pkt p = good_pkt(VIRTIO_VSOCK_OP_RW), r;

	(void)state;
	p.type = 77;
	vsock_pkt_make_rst_reply(&p, &r);
	assert_int_equal(r.src_cid, VSOCK_HOST_CID);
	assert_int_equal(r.dst_cid, GUEST);
	assert_int_equal(r.src_port, 80);
	assert_int_equal(r.dst_port, 1234);
	assert_int_equal(r.op, VIRTIO_VSOCK_OP_RST);
	assert_int_equal(r.type, VIRTIO_VSOCK_TYPE_STREAM);
	assert_int_equal(r.len, 0);
	assert_string_equal(vsock_op_name(VIRTIO_VSOCK_OP_CREDIT_UPDATE), "CREDIT_UPDATE");
	assert_string_equal(vsock_op_name(99), "unknown");
}

/* ---- conn ---------------------------------------------------------------------- */

static struct vsock_pkt from_guest(const struct vsock_conn *c, uint16_t op, uint32_t len,
				   uint32_t flags, uint32_t buf_alloc, uint32_t fwd_cnt)
{
	struct vsock_pkt p = {
		.src_cid = GUEST, .dst_cid = 2, .src_port = c->peer_port, .dst_port = c->local_port,
		.len = len, .type = c->type, .op = op, .flags = flags, .buf_alloc = buf_alloc,
		.fwd_cnt = fwd_cnt,
	};
	return p;
}

static void accept_conn(struct vsock_conn *c, uint32_t buf_alloc, uint32_t peer_buf)
{
	struct vsock_pkt req = good_pkt(VIRTIO_VSOCK_OP_REQUEST), out;

	req.buf_alloc = peer_buf;
	vsock_conn_init_accept(c, &req, buf_alloc);
	assert_int_equal(c->state, VSOCK_CONN_ESTABLISHED);
	assert_int_equal(vsock_conn_next_ctl(c), VIRTIO_VSOCK_OP_RESPONSE);
	vsock_conn_build(c, VIRTIO_VSOCK_OP_RESPONSE, 0, 0, &out);
	assert_int_equal(out.src_port, 80);
	assert_int_equal(out.dst_port, 1234);
	assert_int_equal(out.dst_cid, GUEST);
	assert_int_equal(out.buf_alloc, buf_alloc);
	assert_int_equal(vsock_conn_next_ctl(c), 0);
}

static void test_conn_accept_and_data(void **state)
{
	struct vsock_conn c;
	struct vsock_pkt p, out;
	const char *why;

	(void)state;
	accept_conn(&c, 4096, 8192);
	assert_int_equal(vsock_conn_peer_credit(&c), 8192);
	/* Guest data within our credit. */
	p = from_guest(&c, VIRTIO_VSOCK_OP_RW, 4000, 0, 8192, 0);
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_DATA);
	assert_int_equal(vsock_conn_rx_pending(&c), 4000);
	/* 97 more would pass buf_alloc: reset. */
	p.len = 97;
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_RESET);
	assert_non_null(why);
	assert_int_equal(vsock_conn_next_ctl(&c), VIRTIO_VSOCK_OP_RST);
	vsock_conn_build(&c, VIRTIO_VSOCK_OP_RST, 0, 0, &out);
	assert_int_equal(c.state, VSOCK_CONN_CLOSED);
	assert_int_equal(vsock_conn_next_ctl(&c), 0);
}

static void test_conn_exact_credit(void **state)
{
	struct vsock_conn c;
	struct vsock_pkt p, out;
	const char *why;

	(void)state;
	accept_conn(&c, 4096, 8192);
	p = from_guest(&c, VIRTIO_VSOCK_OP_RW, 4096, 0, 8192, 0);
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_DATA);
	p.len = 0;  /* an empty RW on a full buffer is fine */
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_DATA);
	/* Half forwarded: the guest's view (4096 in flight) is over half: update owed. */
	vsock_conn_forwarded(&c, 2048);
	assert_int_equal(vsock_conn_next_ctl(&c), VIRTIO_VSOCK_OP_CREDIT_UPDATE);
	vsock_conn_build(&c, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 0, 0, &out);
	assert_int_equal(out.fwd_cnt, 2048);
	assert_int_equal(vsock_conn_next_ctl(&c), 0);
	/* Now the guest may send 2048 more, not 2049. */
	p.len = 2048;
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_DATA);
	p.len = 1;
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_RESET);
}

static void test_conn_credit_update_threshold(void **state)
{
	struct vsock_conn c;
	struct vsock_pkt p;
	const char *why;

	(void)state;
	accept_conn(&c, 4096, 8192);
	p = from_guest(&c, VIRTIO_VSOCK_OP_RW, 1000, 0, 8192, 0);
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_DATA);
	vsock_conn_forwarded(&c, 1000);
	/* The guest still sees 3096 free of 4096: no update needed yet. */
	assert_int_equal(vsock_conn_next_ctl(&c), 0);
	/* A CREDIT_REQUEST is always answered. */
	p = from_guest(&c, VIRTIO_VSOCK_OP_CREDIT_REQUEST, 0, 0, 8192, 0);
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_CREDIT);
	assert_int_equal(vsock_conn_next_ctl(&c), VIRTIO_VSOCK_OP_CREDIT_UPDATE);
}

static void test_conn_tx_credit_and_wrap(void **state)
{
	struct vsock_conn c;
	struct vsock_pkt p, out;
	const char *why;

	(void)state;
	accept_conn(&c, 4096, 1000);
	/* Counters near the top: everything is modulo 2^32. */
	c.tx_cnt = 0xffffff00u;
	c.peer_fwd_cnt = 0xffffff00u;
	assert_int_equal(vsock_conn_peer_credit(&c), 1000);
	vsock_conn_build(&c, VIRTIO_VSOCK_OP_RW, 600, 0, &out);
	assert_int_equal(c.tx_cnt, 0x158u);  /* wrapped */
	assert_int_equal(vsock_conn_peer_credit(&c), 400);
	vsock_conn_build(&c, VIRTIO_VSOCK_OP_RW, 400, 0, &out);
	assert_int_equal(vsock_conn_peer_credit(&c), 0);
	/* No credit: ask once, not twice. */
	vsock_conn_want_credit(&c);
	assert_int_equal(vsock_conn_next_ctl(&c), VIRTIO_VSOCK_OP_CREDIT_REQUEST);
	vsock_conn_build(&c, VIRTIO_VSOCK_OP_CREDIT_REQUEST, 0, 0, &out);
	vsock_conn_want_credit(&c);
	assert_int_equal(vsock_conn_next_ctl(&c), 0);
	/* An update that frees nothing: still no new request (no ping-pong). */
	p = from_guest(&c, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 0, 0, 1000, 0xffffff00u);
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_CREDIT);
	vsock_conn_want_credit(&c);
	assert_int_equal(vsock_conn_next_ctl(&c), 0);
	/* The guest read 700 across the wrap: 700 credit. */
	p.fwd_cnt = 0xffffff00u + 700u;
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_CREDIT);
	assert_int_equal(vsock_conn_peer_credit(&c), 700);
	/* A guest claiming more than we sent gets nothing, not 4 GiB. */
	p.fwd_cnt = c.tx_cnt + 5;
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_CREDIT);
	assert_int_equal(vsock_conn_peer_credit(&c), 0);
	/* A guest that shrinks its buffer below what is in flight: no credit, no underflow. */
	p.fwd_cnt = c.tx_cnt - 900;
	p.buf_alloc = 500;
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_CREDIT);
	assert_int_equal(vsock_conn_peer_credit(&c), 0);
}

static void test_conn_rx_wrap(void **state)
{
	struct vsock_conn c;
	struct vsock_pkt p;
	const char *why;

	(void)state;
	accept_conn(&c, 4096, 4096);
	c.rx_cnt = c.fwd_cnt = c.fwd_cnt_sent = 0xfffffff0u;
	p = from_guest(&c, VIRTIO_VSOCK_OP_RW, 4096, 0, 4096, 0);
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_DATA);
	assert_int_equal(c.rx_cnt, 0xff0u);
	assert_int_equal(vsock_conn_rx_pending(&c), 4096);
	p.len = 1;
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_RESET);
}

static void test_conn_connect(void **state)
{
	struct vsock_conn c;
	struct vsock_pkt p, out;
	const char *why;

	(void)state;
	vsock_conn_init_connect(&c, GUEST, 1u << 30, 5000, VIRTIO_VSOCK_TYPE_STREAM, 4096);
	assert_int_equal(c.state, VSOCK_CONN_CONNECTING);
	assert_int_equal(vsock_conn_next_ctl(&c), VIRTIO_VSOCK_OP_REQUEST);
	vsock_conn_build(&c, VIRTIO_VSOCK_OP_REQUEST, 0, 0, &out);
	assert_int_equal(out.dst_port, 5000);
	assert_int_equal(out.src_port, 1u << 30);
	assert_int_equal(vsock_conn_peer_credit(&c), 0);
	/* Data before RESPONSE is a violation. */
	p = from_guest(&c, VIRTIO_VSOCK_OP_RW, 0, 0, 4096, 0);
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_RESET);

	vsock_conn_init_connect(&c, GUEST, 1u << 30, 5000, VIRTIO_VSOCK_TYPE_STREAM, 4096);
	p = from_guest(&c, VIRTIO_VSOCK_OP_RESPONSE, 0, 0, 4096, 0);
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_ESTABLISHED);
	assert_int_equal(vsock_conn_peer_credit(&c), 4096);
	/* A second RESPONSE is a violation. */
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_RESET);

	/* Refused. */
	vsock_conn_init_connect(&c, GUEST, 1u << 30, 5000, VIRTIO_VSOCK_TYPE_STREAM, 4096);
	p = from_guest(&c, VIRTIO_VSOCK_OP_RST, 0, 0, 0, 0);
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_CLOSED);
	assert_int_equal(c.state, VSOCK_CONN_CLOSED);
}

static void test_conn_shutdown(void **state)
{
	struct vsock_conn c;
	struct vsock_pkt p, out;
	const char *why;

	(void)state;
	accept_conn(&c, 4096, 4096);
	p = from_guest(&c, VIRTIO_VSOCK_OP_SHUTDOWN, 0, VIRTIO_VSOCK_SHUTDOWN_RCV, 4096, 0);
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_SHUTDOWN);
	/* The guest will not receive: no credit for us, it may still send. */
	assert_int_equal(vsock_conn_peer_credit(&c), 0);
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_NONE);  /* repeated */
	p = from_guest(&c, VIRTIO_VSOCK_OP_RW, 10, 0, 4096, 0);
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_DATA);
	p = from_guest(&c, VIRTIO_VSOCK_OP_SHUTDOWN, 0, VIRTIO_VSOCK_SHUTDOWN_SEND, 4096, 0);
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_SHUTDOWN);
	assert_int_equal(c.peer_shut, VIRTIO_VSOCK_SHUTDOWN_ALL);
	/* Data after SHUTDOWN(SEND): violation. */
	p = from_guest(&c, VIRTIO_VSOCK_OP_RW, 1, 0, 4096, 0);
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_RESET);

	/* Host half-close, then full close. */
	accept_conn(&c, 4096, 4096);
	vsock_conn_host_shutdown(&c, VIRTIO_VSOCK_SHUTDOWN_SEND);
	assert_int_equal(vsock_conn_next_ctl(&c), VIRTIO_VSOCK_OP_SHUTDOWN);
	assert_int_equal(vsock_conn_peer_credit(&c), 0);
	vsock_conn_build(&c, VIRTIO_VSOCK_OP_SHUTDOWN, 0, 0, &out);
	assert_int_equal(out.flags, VIRTIO_VSOCK_SHUTDOWN_SEND);
	assert_int_equal(c.state, VSOCK_CONN_ESTABLISHED);
	vsock_conn_host_shutdown(&c, VIRTIO_VSOCK_SHUTDOWN_SEND);  /* nothing new */
	assert_int_equal(vsock_conn_next_ctl(&c), 0);
	vsock_conn_host_shutdown(&c, VIRTIO_VSOCK_SHUTDOWN_ALL);
	vsock_conn_build(&c, VIRTIO_VSOCK_OP_SHUTDOWN, 0, 0, &out);
	assert_int_equal(out.flags, VIRTIO_VSOCK_SHUTDOWN_ALL);
	assert_int_equal(c.state, VSOCK_CONN_CLOSING);
	/* The guest answers with RST. */
	p = from_guest(&c, VIRTIO_VSOCK_OP_RST, 0, 0, 0, 0);
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_CLOSED);
}

static void test_conn_violations(void **state)
{
	struct vsock_conn c;
	struct vsock_pkt p;
	const char *why;

	(void)state;
	accept_conn(&c, 4096, 4096);
	p = from_guest(&c, VIRTIO_VSOCK_OP_REQUEST, 0, 0, 4096, 0);
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_RESET);
	/* After our RST is queued, guest packets change nothing. */
	p = from_guest(&c, VIRTIO_VSOCK_OP_RW, 5, 0, 4096, 0);
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_NONE);

	accept_conn(&c, 4096, 4096);
	p = from_guest(&c, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 0, 0, 4096, 0);
	p.type = VIRTIO_VSOCK_TYPE_SEQPACKET;
	assert_int_equal(vsock_conn_recv(&c, &p, &why), VSOCK_EV_RESET);
	assert_non_null(strstr(why, "type"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_valid_packets),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_rst_reply),
		cmocka_unit_test(test_conn_accept_and_data),
		cmocka_unit_test(test_conn_exact_credit),
		cmocka_unit_test(test_conn_credit_update_threshold),
		cmocka_unit_test(test_conn_tx_credit_and_wrap),
		cmocka_unit_test(test_conn_rx_wrap),
		cmocka_unit_test(test_conn_connect),
		cmocka_unit_test(test_conn_shutdown),
		cmocka_unit_test(test_conn_violations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
