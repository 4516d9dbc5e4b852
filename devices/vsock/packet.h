/*
 * virtio-vsock packets (virtio 1.2, 5.10.6): the 44-byte header, its
 * constants, and the validation of a packet the guest put on the tx queue.
 *
 * Pure: no I/O, no allocation. Everything here is fuzzed
 * (tests/fuzz/fuzz_vsock_tx.c) and unit-tested (tests/unit/test_vsock_packet.c).
 */
#ifndef DEVICES_VSOCK_PACKET_H
#define DEVICES_VSOCK_PACKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/util.h"

#define VSOCK_HOST_CID      2u
#define VSOCK_MIN_GUEST_CID 3u
/* CIDs 0xffffffff and up are reserved (VMADDR_CID_ANY and the 64-bit space). */
#define VSOCK_MAX_GUEST_CID 0xfffffffeull

/* Largest payload one packet may carry: Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE. */
#define VSOCK_MAX_PKT_PAYLOAD (64u * 1024u)

/* Feature bits (5.10.3). */
#define VIRTIO_VSOCK_F_STREAM    0
#define VIRTIO_VSOCK_F_SEQPACKET 1

/* Socket types (5.10.6). */
#define VIRTIO_VSOCK_TYPE_STREAM    1
#define VIRTIO_VSOCK_TYPE_SEQPACKET 2

/* Operations. */
enum vsock_op {
	VIRTIO_VSOCK_OP_INVALID = 0,
	VIRTIO_VSOCK_OP_REQUEST = 1,
	VIRTIO_VSOCK_OP_RESPONSE = 2,
	VIRTIO_VSOCK_OP_RST = 3,
	VIRTIO_VSOCK_OP_SHUTDOWN = 4,
	VIRTIO_VSOCK_OP_RW = 5,
	VIRTIO_VSOCK_OP_CREDIT_UPDATE = 6,
	VIRTIO_VSOCK_OP_CREDIT_REQUEST = 7,
};

/* SHUTDOWN flags: the sender will receive (RCV) / send (SEND) no more. */
#define VIRTIO_VSOCK_SHUTDOWN_RCV  1u
#define VIRTIO_VSOCK_SHUTDOWN_SEND 2u
#define VIRTIO_VSOCK_SHUTDOWN_ALL  3u
/* RW flags on a SEQPACKET connection: end of message, end of record. */
#define VIRTIO_VSOCK_SEQ_EOM 1u
#define VIRTIO_VSOCK_SEQ_EOR 2u

/* Event queue (5.10.6.8). */
#define VIRTIO_VSOCK_EVENT_TRANSPORT_RESET 0u

/* Queue indices. */
#define VSOCK_RXQ 0u
#define VSOCK_TXQ 1u
#define VSOCK_EVQ 2u

struct vsock_hdr {
	le64 src_cid;
	le64 dst_cid;
	le32 src_port;
	le32 dst_port;
	le32 len;
	le16 type;
	le16 op;
	le32 flags;
	le32 buf_alloc;
	le32 fwd_cnt;
} __attribute__((packed));

#define VSOCK_HDR_LEN ((uint32_t)sizeof(struct vsock_hdr))
_Static_assert(sizeof(struct vsock_hdr) == 44, "virtio_vsock_hdr is 44 bytes");
_Static_assert(offsetof(struct vsock_hdr, src_port) == 16, "src_port offset");
_Static_assert(offsetof(struct vsock_hdr, len) == 24, "len offset");
_Static_assert(offsetof(struct vsock_hdr, type) == 28, "type offset");
_Static_assert(offsetof(struct vsock_hdr, op) == 30, "op offset");
_Static_assert(offsetof(struct vsock_hdr, flags) == 32, "flags offset");
_Static_assert(offsetof(struct vsock_hdr, fwd_cnt) == 40, "fwd_cnt offset");

struct vsock_config {
	le64 guest_cid;
} __attribute__((packed));
_Static_assert(sizeof(struct vsock_config) == 8, "virtio_vsock_config is 8 bytes");

struct vsock_event {
	le32 id;
} __attribute__((packed));
_Static_assert(sizeof(struct vsock_event) == 4, "virtio_vsock_event is 4 bytes");

/* A header in host byte order, after validation. */
struct vsock_pkt {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port;
	uint32_t len;
	uint16_t type, op;
	uint32_t flags;
	uint32_t buf_alloc, fwd_cnt;
};

/*
 * What to do with a packet the guest sent, decided from the header alone.
 * VSOCK_PKT_OK: hand it to the connection (or listener) it names.
 * VSOCK_PKT_RST: answer with a RST to its source (never for a RST, which
 * would ping-pong); VSOCK_PKT_DROP: ignore it. *why names the reason for a
 * rate-limited log line.
 */
enum vsock_pkt_verdict {
	VSOCK_PKT_OK,
	VSOCK_PKT_RST,
	VSOCK_PKT_DROP,
};

/*
 * Validate a header copied out of the tx chain. payload_len is how many
 * device-readable bytes follow the header in the chain. guest_cid is ours;
 * seqpacket: the driver accepted VIRTIO_VSOCK_F_SEQPACKET. Fills *pkt (also
 * for RST and DROP, as far as it could be decoded).
 */
enum vsock_pkt_verdict vsock_pkt_parse(const struct vsock_hdr *h, uint64_t payload_len,
				       uint64_t guest_cid, bool seqpacket, struct vsock_pkt *pkt,
				       const char **why);

/* Encode a host-order packet into a wire header. */
void vsock_hdr_encode(struct vsock_hdr *h, const struct vsock_pkt *pkt);
/* Decode without validation (for tests and logs). */
void vsock_hdr_decode(const struct vsock_hdr *h, struct vsock_pkt *pkt);

/* The RST that answers pkt (source and destination swapped), from the host. */
void vsock_pkt_make_rst_reply(const struct vsock_pkt *pkt, struct vsock_pkt *rst);

const char *vsock_op_name(uint16_t op);

#endif
