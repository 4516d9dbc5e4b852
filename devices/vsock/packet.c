/* virtio-vsock header encode, decode and validation. See packet.h. */
#include "devices/vsock/packet.h"

#include <string.h>

void vsock_hdr_decode(const struct vsock_hdr *h, struct vsock_pkt *p)
{
	p->src_cid = le64_to_cpu(h->src_cid);
	p->dst_cid = le64_to_cpu(h->dst_cid);
	p->src_port = le32_to_cpu(h->src_port);
	p->dst_port = le32_to_cpu(h->dst_port);
	p->len = le32_to_cpu(h->len);
	p->type = le16_to_cpu(h->type);
	p->op = le16_to_cpu(h->op);
	p->flags = le32_to_cpu(h->flags);
	p->buf_alloc = le32_to_cpu(h->buf_alloc);
	p->fwd_cnt = le32_to_cpu(h->fwd_cnt);
}

void vsock_hdr_encode(struct vsock_hdr *h, const struct vsock_pkt *p)
{
	h->src_cid = cpu_to_le64(p->src_cid);
	h->dst_cid = cpu_to_le64(p->dst_cid);
	h->src_port = cpu_to_le32(p->src_port);
	h->dst_port = cpu_to_le32(p->dst_port);
	h->len = cpu_to_le32(p->len);
	h->type = cpu_to_le16(p->type);
	h->op = cpu_to_le16(p->op);
	h->flags = cpu_to_le32(p->flags);
	h->buf_alloc = cpu_to_le32(p->buf_alloc);
	h->fwd_cnt = cpu_to_le32(p->fwd_cnt);
}

const char *vsock_op_name(uint16_t op)
{
	static const char *const names[] = {
		[VIRTIO_VSOCK_OP_INVALID] = "INVALID",
		[VIRTIO_VSOCK_OP_REQUEST] = "REQUEST",
		[VIRTIO_VSOCK_OP_RESPONSE] = "RESPONSE",
		[VIRTIO_VSOCK_OP_RST] = "RST",
		[VIRTIO_VSOCK_OP_SHUTDOWN] = "SHUTDOWN",
		[VIRTIO_VSOCK_OP_RW] = "RW",
		[VIRTIO_VSOCK_OP_CREDIT_UPDATE] = "CREDIT_UPDATE",
		[VIRTIO_VSOCK_OP_CREDIT_REQUEST] = "CREDIT_REQUEST",
	};

	return op < sizeof(names) / sizeof(names[0]) ? names[op] : "unknown";
}

void vsock_pkt_make_rst_reply(const struct vsock_pkt *pkt, struct vsock_pkt *rst)
{
	memset(rst, 0, sizeof(*rst));
	rst->src_cid = VSOCK_HOST_CID;
	rst->dst_cid = pkt->src_cid;
	rst->src_port = pkt->dst_port;
	rst->dst_port = pkt->src_port;
	/* A RST for an unknown type would be refused too: answer as a stream then. */
	rst->type = pkt->type == VIRTIO_VSOCK_TYPE_SEQPACKET ? VIRTIO_VSOCK_TYPE_SEQPACKET
							      : VIRTIO_VSOCK_TYPE_STREAM;
	rst->op = VIRTIO_VSOCK_OP_RST;
}

/* RST unless the offending packet is itself a RST (5.10.6.6: never answer a RST). */
static enum vsock_pkt_verdict refuse(const struct vsock_pkt *p, const char **why, const char *reason)
{
	*why = reason;
	return p->op == VIRTIO_VSOCK_OP_RST ? VSOCK_PKT_DROP : VSOCK_PKT_RST;
}

enum vsock_pkt_verdict vsock_pkt_parse(const struct vsock_hdr *h, uint64_t payload_len,
				       uint64_t guest_cid, bool seqpacket, struct vsock_pkt *p,
				       const char **why)
{
	vsock_hdr_decode(h, p);
	*why = NULL;
	/* A spoofed source gets no answer: we would send it to a CID that is not there. */
	if (p->src_cid != guest_cid) {
		*why = "source CID is not the guest's";
		return VSOCK_PKT_DROP;
	}
	if (p->dst_cid != VSOCK_HOST_CID)
		return refuse(p, why, "destination CID is not the host (2)");
	if (p->type != VIRTIO_VSOCK_TYPE_STREAM &&
	    !(p->type == VIRTIO_VSOCK_TYPE_SEQPACKET && seqpacket))
		return refuse(p, why, seqpacket ? "unknown socket type"
						: "SEQPACKET without VIRTIO_VSOCK_F_SEQPACKET");
	if (p->op < VIRTIO_VSOCK_OP_REQUEST || p->op > VIRTIO_VSOCK_OP_CREDIT_REQUEST)
		return refuse(p, why, "unknown operation");
	if (p->len > VSOCK_MAX_PKT_PAYLOAD)
		return refuse(p, why, "payload longer than 64 KiB");
	if ((uint64_t)p->len != payload_len)
		return refuse(p, why, "header length and buffer length disagree");
	switch (p->op) {
	case VIRTIO_VSOCK_OP_RW:
		if (p->type == VIRTIO_VSOCK_TYPE_STREAM && p->flags)
			return refuse(p, why, "flags on a stream RW packet");
		if (p->flags & ~(VIRTIO_VSOCK_SEQ_EOM | VIRTIO_VSOCK_SEQ_EOR))
			return refuse(p, why, "unknown RW flags");
		if ((p->flags & VIRTIO_VSOCK_SEQ_EOR) && !(p->flags & VIRTIO_VSOCK_SEQ_EOM))
			return refuse(p, why, "EOR without EOM");
		break;
	case VIRTIO_VSOCK_OP_SHUTDOWN:
		if (p->len)
			return refuse(p, why, "payload on a SHUTDOWN packet");
		if (!p->flags || (p->flags & ~VIRTIO_VSOCK_SHUTDOWN_ALL))
			return refuse(p, why, "bad SHUTDOWN flags");
		break;
	default:
		if (p->len)
			return refuse(p, why, "payload on a control packet");
		if (p->flags)
			return refuse(p, why, "flags on a control packet");
		break;
	}
	return VSOCK_PKT_OK;
}
