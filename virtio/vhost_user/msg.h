/*
 * vhost-user messages (QEMU docs/interop/vhost-user.rst): encoding the
 * front-end's requests and decoding, with full validation, what the back-end
 * sends back. Pure: no sockets, no fds, no allocation; bytes in, bytes out.
 * The socket side (fds travel beside the bytes as SCM_RIGHTS) is in
 * frontend.c; here an fd is only a count the decoder checks.
 *
 * Wire format: a 12-byte header (request, flags, payload size; host byte
 * order, which is little-endian on every host we run on), then the payload.
 * Everything a back-end sends is untrusted: every decoder returns 0 or a
 * negative VHU_E_* code that vhu_strerror() turns into words for the log.
 */
#ifndef VIRTIO_VHOST_USER_MSG_H
#define VIRTIO_VHOST_USER_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/util.h"

/* Front-end requests (the subset we send; numbers from the spec). */
enum vhu_request {
	VHU_GET_FEATURES = 1,
	VHU_SET_FEATURES = 2,
	VHU_SET_OWNER = 3,
	VHU_RESET_OWNER = 4,
	VHU_SET_MEM_TABLE = 5,
	VHU_SET_VRING_NUM = 8,
	VHU_SET_VRING_ADDR = 9,
	VHU_SET_VRING_BASE = 10,
	VHU_GET_VRING_BASE = 11,
	VHU_SET_VRING_KICK = 12,
	VHU_SET_VRING_CALL = 13,
	VHU_SET_VRING_ERR = 14,
	VHU_GET_PROTOCOL_FEATURES = 15,
	VHU_SET_PROTOCOL_FEATURES = 16,
	VHU_GET_QUEUE_NUM = 17,
	VHU_SET_VRING_ENABLE = 18,
	VHU_SET_BACKEND_REQ_FD = 21,
	VHU_GET_CONFIG = 24,
	VHU_SET_CONFIG = 25,
	VHU_RESET_DEVICE = 34,
	VHU_GET_MAX_MEM_SLOTS = 36,
	VHU_ADD_MEM_REG = 37,
	VHU_REM_MEM_REG = 38,
	VHU_SET_DEVICE_STATE_FD = 42,
	VHU_CHECK_DEVICE_STATE = 43,
	VHU_REQUEST_MAX = 44,
};

/* Back-end requests, on the channel set with SET_BACKEND_REQ_FD. */
enum vhu_backend_request {
	VHU_BACKEND_IOTLB_MSG = 1,
	VHU_BACKEND_CONFIG_CHANGE_MSG = 2,
	VHU_BACKEND_VRING_HOST_NOTIFIER_MSG = 3,
};

/* Header flags. */
#define VHU_FLAG_VERSION      0x1u   /* bits 0-1: protocol version, always 1 */
#define VHU_FLAG_VERSION_MASK 0x3u
#define VHU_FLAG_REPLY        0x4u
#define VHU_FLAG_NEED_REPLY   0x8u

/* Virtio feature bit that announces GET/SET_PROTOCOL_FEATURES. */
#define VHU_F_PROTOCOL_FEATURES 30

/* Protocol feature bits. */
#define VHU_PROTOCOL_F_MQ                  0
#define VHU_PROTOCOL_F_LOG_SHMFD           1
#define VHU_PROTOCOL_F_RARP                2
#define VHU_PROTOCOL_F_REPLY_ACK           3
#define VHU_PROTOCOL_F_NET_MTU             4
#define VHU_PROTOCOL_F_BACKEND_REQ         5
#define VHU_PROTOCOL_F_CROSS_ENDIAN        6
#define VHU_PROTOCOL_F_CRYPTO_SESSION      7
#define VHU_PROTOCOL_F_PAGEFAULT           8
#define VHU_PROTOCOL_F_CONFIG              9
#define VHU_PROTOCOL_F_BACKEND_SEND_FD     10
#define VHU_PROTOCOL_F_HOST_NOTIFIER       11
#define VHU_PROTOCOL_F_INFLIGHT_SHMFD      12
#define VHU_PROTOCOL_F_RESET_DEVICE        13
#define VHU_PROTOCOL_F_INBAND_NOTIFICATIONS 14
#define VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS 15
#define VHU_PROTOCOL_F_STATUS              16
#define VHU_PROTOCOL_F_DEVICE_STATE        19

#define VHU_HDR_SIZE          12u
#define VHU_MAX_PAYLOAD       4096u  /* far above any reply we accept */
#define VHU_MAX_MEM_REGIONS   8u     /* SET_MEM_TABLE's fixed table (VHOST_MEMORY_BASELINE_NREGIONS) */
#define VHU_MAX_CONFIG        256u   /* VHOST_USER_MAX_CONFIG_SIZE */
#define VHU_MAX_FDS           8u     /* fds one message may carry */
#define VHU_VRING_IDX_MASK    0xffu  /* KICK/CALL/ERR payload: ring index ... */
#define VHU_VRING_NOFD        0x100u /* ... and "no fd attached" */
#define VHU_STATE_NOFD        0x100u /* SET_DEVICE_STATE_FD reply: no fd returned */

/* Payload sizes, as on the wire. */
#define VHU_SZ_U64            8u
#define VHU_SZ_VRING_STATE    8u     /* u32 index, u32 num */
#define VHU_SZ_VRING_ADDR     40u    /* u32 index, u32 flags, u64 desc, used, avail, log */
#define VHU_SZ_MEM_REGION     32u    /* u64 gpa, size, user address, mmap offset */
#define VHU_SZ_MEM_TABLE(n)   (8u + (n) * VHU_SZ_MEM_REGION)
#define VHU_SZ_MEM_REG        (8u + VHU_SZ_MEM_REGION)  /* u64 padding + one region */
#define VHU_SZ_CONFIG_HDR     12u    /* u32 offset, size, flags; then the bytes */
#define VHU_SZ_STATE_XFER     8u     /* u32 direction, u32 phase */

/* Decoder verdicts (negative). Stable: the fuzzer and the tests compare them. */
enum vhu_err {
	VHU_E_SHORT = 1,         /* fewer bytes than a header or the payload it announces */
	VHU_E_VERSION,           /* version bits are not 1 */
	VHU_E_NOT_REPLY,         /* reply flag missing */
	VHU_E_REQUEST,           /* reply to a request we did not make */
	VHU_E_SIZE,              /* payload size wrong for this request */
	VHU_E_TOO_BIG,           /* payload above VHU_MAX_PAYLOAD */
	VHU_E_FDS,               /* fds attached where none (or another count) belong */
	VHU_E_INDEX,             /* ring index in the reply is not the one asked for */
	VHU_E_VALUE,             /* a value out of range (queue count, base, slot count) */
	VHU_E_NACK,              /* REPLY_ACK or status reply said failure */
	VHU_E_UNKNOWN,           /* back-end request we do not know */
	VHU_E_TRAILING,          /* more bytes than the message announced */
	VHU_E_MAX,
};

const char *vhu_strerror(int err);
const char *vhu_request_name(uint32_t request);

struct vhu_hdr {
	uint32_t request;
	uint32_t flags;
	uint32_t size;
};

/* A whole message in host memory: header fields and the payload bytes. */
struct vhu_msg {
	struct vhu_hdr hdr;
	uint8_t payload[VHU_MAX_PAYLOAD];
};

struct vhu_mem_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t uaddr;        /* our host virtual address of it */
	uint64_t mmap_offset;  /* where it starts in the fd sent with it */
};

struct vhu_vring_addr {
	uint32_t index;
	uint32_t flags;
	uint64_t desc, used, avail, log;  /* our host virtual addresses */
};

/* ---- encoding (the front-end's requests); each returns the bytes to send ---- */

/* Header + payload into buf (VHU_HDR_SIZE + len bytes); 0 when buf is too small. */
size_t vhu_encode(uint8_t *buf, size_t cap, uint32_t request, bool need_reply,
		  const void *payload, uint32_t len);
size_t vhu_encode_none(uint8_t *buf, size_t cap, uint32_t request, bool need_reply);
size_t vhu_encode_u64(uint8_t *buf, size_t cap, uint32_t request, bool need_reply, uint64_t v);
size_t vhu_encode_vring_state(uint8_t *buf, size_t cap, uint32_t request, bool need_reply,
			      uint32_t index, uint32_t num);
size_t vhu_encode_vring_addr(uint8_t *buf, size_t cap, bool need_reply,
			     const struct vhu_vring_addr *a);
/* n <= VHU_MAX_MEM_REGIONS; 0 otherwise. */
size_t vhu_encode_mem_table(uint8_t *buf, size_t cap, bool need_reply,
			    const struct vhu_mem_region *r, unsigned n);
size_t vhu_encode_mem_reg(uint8_t *buf, size_t cap, uint32_t request, bool need_reply,
			  const struct vhu_mem_region *r);
/* GET_CONFIG carries len zero bytes; SET_CONFIG carries data. len <= VHU_MAX_CONFIG. */
size_t vhu_encode_config(uint8_t *buf, size_t cap, uint32_t request, bool need_reply,
			 uint32_t offset, uint32_t len, uint32_t flags, const void *data);
size_t vhu_encode_state_xfer(uint8_t *buf, size_t cap, bool need_reply, uint32_t direction,
			     uint32_t phase);

/* ---- decoding ---------------------------------------------------------------- */

/*
 * Split bytes into a header and payload: len must be exactly a header and the
 * payload it announces (the socket layer reads exactly that much).
 */
int vhu_decode_hdr(const uint8_t *buf, size_t len, struct vhu_hdr *h) WUR;

/*
 * Validate a reply to `request` (header already decoded from buf, payload
 * follows it) with nfds fds attached, and extract its value:
 *   GET_FEATURES, GET_PROTOCOL_FEATURES, GET_QUEUE_NUM, GET_MAX_MEM_SLOTS,
 *   and any REPLY_ACK:        *u64 (REPLY_ACK: VHU_E_NACK when non-zero)
 *   GET_VRING_BASE:           *u64 = num, index checked against `index`
 *   SET_DEVICE_STATE_FD:      *u64 = the raw value; nfds 0 or 1 as bit 8 says
 *   CHECK_DEVICE_STATE:       *u64 (VHU_E_NACK when non-zero)
 * `ack` says the reply is a REPLY_ACK to a request without its own reply.
 */
int vhu_decode_reply_u64(const uint8_t *buf, size_t len, unsigned nfds, uint32_t request,
			 bool ack, uint32_t index, uint64_t *out) WUR;

/*
 * GET_CONFIG: the payload must echo offset and size; the config bytes are
 * copied to out (size bytes). A reply of size 0 is the back-end's failure.
 */
int vhu_decode_reply_config(const uint8_t *buf, size_t len, unsigned nfds, uint32_t offset,
			    uint32_t size, uint8_t *out) WUR;

/*
 * A message on the back-end request channel. Only CONFIG_CHANGE_MSG is
 * understood (no fds, u64 payload); others return VHU_E_UNKNOWN and the
 * caller answers with a failure when asked to reply. *need_reply tells.
 */
int vhu_decode_backend_req(const uint8_t *buf, size_t len, unsigned nfds, uint32_t *request,
			   bool *need_reply) WUR;

/* The reply to a back-end request: u64 payload (0 success). */
size_t vhu_encode_backend_reply(uint8_t *buf, size_t cap, uint32_t request, uint64_t v);

/* Protocol feature bits we know how to use, and the virtio bits the front-end owns. */
uint64_t vhu_protocol_features_supported(void);

#endif
