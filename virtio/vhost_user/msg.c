/* vhost-user message encoding and decoding; see msg.h. Pure. */
#include "virtio/vhost_user/msg.h"

#include <string.h>

_Static_assert(VHU_HDR_SIZE == 3 * sizeof(uint32_t), "vhost-user header is 12 bytes");
_Static_assert(VHU_SZ_MEM_TABLE(VHU_MAX_MEM_REGIONS) == 264, "SET_MEM_TABLE payload is 264 bytes");
_Static_assert(VHU_SZ_CONFIG_HDR + VHU_MAX_CONFIG <= VHU_MAX_PAYLOAD, "config fits a payload");

static void put32(uint8_t *p, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (unsigned i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

const char *vhu_strerror(int err)
{
	static const char *const what[VHU_E_MAX] = {
		[VHU_E_SHORT] = "message cut short",
		[VHU_E_VERSION] = "wrong protocol version in the header",
		[VHU_E_NOT_REPLY] = "reply flag missing",
		[VHU_E_REQUEST] = "reply to another request",
		[VHU_E_SIZE] = "payload size wrong for the request",
		[VHU_E_TOO_BIG] = "payload too large",
		[VHU_E_FDS] = "wrong number of file descriptors attached",
		[VHU_E_INDEX] = "reply names another ring",
		[VHU_E_VALUE] = "value out of range",
		[VHU_E_NACK] = "the back-end reported failure",
		[VHU_E_UNKNOWN] = "unknown back-end request",
		[VHU_E_TRAILING] = "bytes past the announced payload",
	};

	if (err < 0)
		err = -err;
	return err > 0 && err < VHU_E_MAX ? what[err] : "unknown error";
}

const char *vhu_request_name(uint32_t request)
{
	static const char *const names[VHU_REQUEST_MAX] = {
		[VHU_GET_FEATURES] = "GET_FEATURES",
		[VHU_SET_FEATURES] = "SET_FEATURES",
		[VHU_SET_OWNER] = "SET_OWNER",
		[VHU_RESET_OWNER] = "RESET_OWNER",
		[VHU_SET_MEM_TABLE] = "SET_MEM_TABLE",
		[VHU_SET_VRING_NUM] = "SET_VRING_NUM",
		[VHU_SET_VRING_ADDR] = "SET_VRING_ADDR",
		[VHU_SET_VRING_BASE] = "SET_VRING_BASE",
		[VHU_GET_VRING_BASE] = "GET_VRING_BASE",
		[VHU_SET_VRING_KICK] = "SET_VRING_KICK",
		[VHU_SET_VRING_CALL] = "SET_VRING_CALL",
		[VHU_SET_VRING_ERR] = "SET_VRING_ERR",
		[VHU_GET_PROTOCOL_FEATURES] = "GET_PROTOCOL_FEATURES",
		[VHU_SET_PROTOCOL_FEATURES] = "SET_PROTOCOL_FEATURES",
		[VHU_GET_QUEUE_NUM] = "GET_QUEUE_NUM",
		[VHU_SET_VRING_ENABLE] = "SET_VRING_ENABLE",
		[VHU_SET_BACKEND_REQ_FD] = "SET_BACKEND_REQ_FD",
		[VHU_GET_CONFIG] = "GET_CONFIG",
		[VHU_SET_CONFIG] = "SET_CONFIG",
		[VHU_RESET_DEVICE] = "RESET_DEVICE",
		[VHU_GET_MAX_MEM_SLOTS] = "GET_MAX_MEM_SLOTS",
		[VHU_ADD_MEM_REG] = "ADD_MEM_REG",
		[VHU_REM_MEM_REG] = "REM_MEM_REG",
		[VHU_SET_DEVICE_STATE_FD] = "SET_DEVICE_STATE_FD",
		[VHU_CHECK_DEVICE_STATE] = "CHECK_DEVICE_STATE",
	};

	return request < VHU_REQUEST_MAX && names[request] ? names[request] : "request";
}

uint64_t vhu_protocol_features_supported(void)
{
	return 1ULL << VHU_PROTOCOL_F_MQ | 1ULL << VHU_PROTOCOL_F_REPLY_ACK |
	       1ULL << VHU_PROTOCOL_F_BACKEND_REQ | 1ULL << VHU_PROTOCOL_F_CONFIG |
	       1ULL << VHU_PROTOCOL_F_RESET_DEVICE | 1ULL << VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS |
	       1ULL << VHU_PROTOCOL_F_DEVICE_STATE;
}

/* ---- encoding ---------------------------------------------------------------------- */

size_t vhu_encode(uint8_t *buf, size_t cap, uint32_t request, bool need_reply,
		  const void *payload, uint32_t len)
{
	if (len > VHU_MAX_PAYLOAD || cap < VHU_HDR_SIZE + (size_t)len)
		return 0;
	put32(buf, request);
	put32(buf + 4, VHU_FLAG_VERSION | (need_reply ? VHU_FLAG_NEED_REPLY : 0));
	put32(buf + 8, len);
	if (len)
		memcpy(buf + VHU_HDR_SIZE, payload, len);
	return VHU_HDR_SIZE + (size_t)len;
}

size_t vhu_encode_none(uint8_t *buf, size_t cap, uint32_t request, bool need_reply)
{
	return vhu_encode(buf, cap, request, need_reply, NULL, 0);
}

size_t vhu_encode_u64(uint8_t *buf, size_t cap, uint32_t request, bool need_reply, uint64_t v)
{
	uint8_t p[VHU_SZ_U64];

	put64(p, v);
	return vhu_encode(buf, cap, request, need_reply, p, sizeof(p));
}

size_t vhu_encode_vring_state(uint8_t *buf, size_t cap, uint32_t request, bool need_reply,
			      uint32_t index, uint32_t num)
{
	uint8_t p[VHU_SZ_VRING_STATE];

	put32(p, index);
	put32(p + 4, num);
	return vhu_encode(buf, cap, request, need_reply, p, sizeof(p));
}

size_t vhu_encode_vring_addr(uint8_t *buf, size_t cap, bool need_reply,
			     const struct vhu_vring_addr *a)
{
	uint8_t p[VHU_SZ_VRING_ADDR];

	put32(p, a->index);
	put32(p + 4, a->flags);
	put64(p + 8, a->desc);
	put64(p + 16, a->used);
	put64(p + 24, a->avail);
	put64(p + 32, a->log);
	return vhu_encode(buf, cap, VHU_SET_VRING_ADDR, need_reply, p, sizeof(p));
}

static void put_region(uint8_t *p, const struct vhu_mem_region *r)
{
	put64(p, r->gpa);
	put64(p + 8, r->size);
	put64(p + 16, r->uaddr);
	put64(p + 24, r->mmap_offset);
}

size_t vhu_encode_mem_table(uint8_t *buf, size_t cap, bool need_reply,
			    const struct vhu_mem_region *r, unsigned n)
{
	uint8_t p[VHU_SZ_MEM_TABLE(VHU_MAX_MEM_REGIONS)] = { 0 };

	if (n > VHU_MAX_MEM_REGIONS)
		return 0;
	put32(p, n);
	for (unsigned i = 0; i < n; i++)
		put_region(p + 8 + i * VHU_SZ_MEM_REGION, &r[i]);
	return vhu_encode(buf, cap, VHU_SET_MEM_TABLE, need_reply, p, VHU_SZ_MEM_TABLE(n));
}

size_t vhu_encode_mem_reg(uint8_t *buf, size_t cap, uint32_t request, bool need_reply,
			  const struct vhu_mem_region *r)
{
	uint8_t p[VHU_SZ_MEM_REG] = { 0 };

	put_region(p + 8, r);
	return vhu_encode(buf, cap, request, need_reply, p, sizeof(p));
}

size_t vhu_encode_config(uint8_t *buf, size_t cap, uint32_t request, bool need_reply,
			 uint32_t offset, uint32_t len, uint32_t flags, const void *data)
{
	uint8_t p[VHU_SZ_CONFIG_HDR + VHU_MAX_CONFIG] = { 0 };

	if (len > VHU_MAX_CONFIG)
		return 0;
	put32(p, offset);
	put32(p + 4, len);
	put32(p + 8, flags);
	if (data && len)
		memcpy(p + VHU_SZ_CONFIG_HDR, data, len);
	return vhu_encode(buf, cap, request, need_reply, p, VHU_SZ_CONFIG_HDR + len);
}

size_t vhu_encode_state_xfer(uint8_t *buf, size_t cap, bool need_reply, uint32_t direction,
			     uint32_t phase)
{
	uint8_t p[VHU_SZ_STATE_XFER];

	put32(p, direction);
	put32(p + 4, phase);
	return vhu_encode(buf, cap, VHU_SET_DEVICE_STATE_FD, need_reply, p, sizeof(p));
}

size_t vhu_encode_backend_reply(uint8_t *buf, size_t cap, uint32_t request, uint64_t v)
{
	size_t n = vhu_encode_u64(buf, cap, request, false, v);

	if (n)
		put32(buf + 4, VHU_FLAG_VERSION | VHU_FLAG_REPLY);
	return n;
}

/* ---- decoding ---------------------------------------------------------------------- */

int vhu_decode_hdr(const uint8_t *buf, size_t len, struct vhu_hdr *h)
{
	if (len < VHU_HDR_SIZE)
		return -VHU_E_SHORT;
	h->request = get32(buf);
	h->flags = get32(buf + 4);
	h->size = get32(buf + 8);
	if ((h->flags & VHU_FLAG_VERSION_MASK) != VHU_FLAG_VERSION)
		return -VHU_E_VERSION;
	if (h->size > VHU_MAX_PAYLOAD)
		return -VHU_E_TOO_BIG;
	if (len - VHU_HDR_SIZE < h->size)
		return -VHU_E_SHORT;
	if (len - VHU_HDR_SIZE > h->size)
		return -VHU_E_TRAILING;
	return 0;
}

/* The checks every reply shares: header, reply flag, request, exact size. */
static int check_reply(const uint8_t *buf, size_t len, uint32_t request, uint32_t size,
		       struct vhu_hdr *h)
{
	int ret = vhu_decode_hdr(buf, len, h);

	if (ret)
		return ret;
	if (!(h->flags & VHU_FLAG_REPLY))
		return -VHU_E_NOT_REPLY;
	if (h->request != request)
		return -VHU_E_REQUEST;
	if (h->size != size)
		return -VHU_E_SIZE;
	return 0;
}

int vhu_decode_reply_u64(const uint8_t *buf, size_t len, unsigned nfds, uint32_t request,
			 bool ack, uint32_t index, uint64_t *out)
{
	struct vhu_hdr h;
	const uint8_t *p = buf + VHU_HDR_SIZE;
	uint64_t v;
	int ret = check_reply(buf, len, request, VHU_SZ_U64, &h);

	if (ret)
		return ret;
	if (ack) {
		if (nfds)
			return -VHU_E_FDS;
		*out = get64(p);
		return *out ? -VHU_E_NACK : 0;
	}
	switch (request) {
	case VHU_GET_FEATURES:
	case VHU_GET_PROTOCOL_FEATURES:
		v = get64(p);
		break;
	case VHU_GET_QUEUE_NUM:
	case VHU_GET_MAX_MEM_SLOTS:
		v = get64(p);
		/* A count we would size arrays by: 1 to 65535 is all the protocol can use. */
		if (v == 0 || v > 0xffff)
			return -VHU_E_VALUE;
		break;
	case VHU_GET_VRING_BASE:
		if (get32(p) != index)
			return -VHU_E_INDEX;
		v = get32(p + 4);
		if (v > 0xffff)
			return -VHU_E_VALUE;  /* a split ring's index is 16 bits */
		break;
	case VHU_SET_DEVICE_STATE_FD:
		v = get64(p);
		if (v & ~(uint64_t)(0xff | VHU_STATE_NOFD))
			return -VHU_E_VALUE;
		if (nfds != ((v & VHU_STATE_NOFD) ? 0u : 1u))
			return -VHU_E_FDS;
		*out = v;
		return (v & 0xff) ? -VHU_E_NACK : 0;
	case VHU_CHECK_DEVICE_STATE:
		v = get64(p);
		if (nfds)
			return -VHU_E_FDS;
		*out = v;
		return v ? -VHU_E_NACK : 0;
	default:
		return -VHU_E_REQUEST;  /* not a request that has a u64 reply */
	}
	if (nfds)
		return -VHU_E_FDS;
	*out = v;
	return 0;
}

int vhu_decode_reply_config(const uint8_t *buf, size_t len, unsigned nfds, uint32_t offset,
			    uint32_t size, uint8_t *out)
{
	struct vhu_hdr h;
	const uint8_t *p = buf + VHU_HDR_SIZE;
	int ret;

	if (size == 0 || size > VHU_MAX_CONFIG)
		return -VHU_E_VALUE;   /* nothing we ask for */
	ret = vhu_decode_hdr(buf, len, &h);
	if (ret)
		return ret;
	if (!(h.flags & VHU_FLAG_REPLY))
		return -VHU_E_NOT_REPLY;
	if (h.request != VHU_GET_CONFIG)
		return -VHU_E_REQUEST;
	if (h.size == 0)
		return -VHU_E_NACK;   /* how libvhost-user says GET_CONFIG failed */
	if (h.size != VHU_SZ_CONFIG_HDR + size)
		return -VHU_E_SIZE;
	if (nfds)
		return -VHU_E_FDS;
	if (get32(p) != offset || get32(p + 4) != size)
		return -VHU_E_VALUE;
	memcpy(out, p + VHU_SZ_CONFIG_HDR, size);
	return 0;
}

int vhu_decode_backend_req(const uint8_t *buf, size_t len, unsigned nfds, uint32_t *request,
			   bool *need_reply)
{
	struct vhu_hdr h;
	int ret = vhu_decode_hdr(buf, len, &h);

	*need_reply = false;
	if (ret)
		return ret;
	*request = h.request;
	*need_reply = (h.flags & VHU_FLAG_NEED_REPLY) != 0;
	if (h.flags & VHU_FLAG_REPLY)
		return -VHU_E_REQUEST;  /* a reply where a request belongs */
	switch (h.request) {
	case VHU_BACKEND_CONFIG_CHANGE_MSG:
		/* The spec gives it no payload; QEMU's own back-ends send a u64. Accept both. */
		if (h.size != 0 && h.size != VHU_SZ_U64)
			return -VHU_E_SIZE;
		if (nfds)
			return -VHU_E_FDS;
		return 0;
	default:
		return -VHU_E_UNKNOWN;
	}
}
