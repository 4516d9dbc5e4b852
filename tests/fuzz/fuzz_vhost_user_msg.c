/*
 * libFuzzer harness for virtio/vhost_user/msg: the input is what a hostile
 * back-end sends, decoded as the reply to any request the front-end makes, as
 * a GET_CONFIG reply and as a back-end request.
 *
 *   [0] request code   [1] low 4 bits: fds attached, bit 4: REPLY_ACK
 *   [2] ring index     [3] config size asked
 *   [4..] the message bytes (header and payload)
 *
 * Beyond ASan/UBSan: a decoder that accepts a message never reads past it,
 * accepts only replies with the reply flag and the asked request, and never
 * accepts fds where none belong.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/vhost_user/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t cfg[VHU_MAX_CONFIG];
	struct vhu_hdr h;
	uint32_t request, breq;
	unsigned nfds, csize;
	bool ack, need;
	uint64_t v;
	uint8_t *msg;
	size_t len;
	int ret;

	if (size < 4)
		return 0;
	request = data[0] % VHU_REQUEST_MAX;
	nfds = data[1] & 0xf;
	ack = data[1] & 0x10;
	csize = data[3];
	len = size - 4;
	/* An exact-size heap copy, so ASan sees any read past the message. */
	msg = malloc(len ? len : 1);
	if (!msg)
		return 0;
	memcpy(msg, data + 4, len);

	ret = vhu_decode_reply_u64(msg, len, nfds, request, ack, data[2], &v);
	if (ret == 0) {
		if (vhu_decode_hdr(msg, len, &h) || !(h.flags & VHU_FLAG_REPLY) || h.request != request)
			abort();
		if (request == VHU_SET_DEVICE_STATE_FD ? nfds > 1 : nfds != 0)
			abort();
		if (request == VHU_GET_VRING_BASE && v > 0xffff)
			abort();
	}
	ret = vhu_decode_reply_config(msg, len, nfds, 0, csize, cfg);
	if (ret == 0 && (nfds || csize == 0 || vhu_decode_hdr(msg, len, &h) ||
			 h.size != VHU_SZ_CONFIG_HDR + csize))
		abort();
	ret = vhu_decode_backend_req(msg, len, nfds, &breq, &need);
	if (ret == 0 && (nfds || breq != VHU_BACKEND_CONFIG_CHANGE_MSG))
		abort();
	(void)vhu_strerror(ret);
	free(msg);
	return 0;
}
