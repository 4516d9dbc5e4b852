/*
 * Unit tests for virtio/vhost_user/msg: every request encodes to the bytes
 * the spec lays out, and every reply decoder accepts the well-formed reply
 * and refuses each way a back-end can get it wrong.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "virtio/vhost_user/msg.h"

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
	return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static void wr32(uint8_t *p, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void wr64(uint8_t *p, uint64_t v)
{
	wr32(p, (uint32_t)v);
	wr32(p + 4, (uint32_t)(v >> 32));
}

/* A reply as a back-end would write it. */
static size_t reply(uint8_t *b, uint32_t req, uint32_t flags, const void *payload, uint32_t len)
{
	wr32(b, req);
	wr32(b + 4, flags);
	wr32(b + 8, len);
	memcpy(b + 12, payload, len);
	return 12 + len;
}

static size_t reply_u64(uint8_t *b, uint32_t req, uint64_t v)
{
	uint8_t p[8];

	wr64(p, v);
	return reply(b, req, VHU_FLAG_VERSION | VHU_FLAG_REPLY, p, 8);
}

static void test_encode_header_and_u64(void **state)
{
	uint8_t b[64];
	struct vhu_hdr h;
	size_t n;

	(void)state;
	n = vhu_encode_u64(b, sizeof(b), VHU_SET_FEATURES, true, 0x1122334455667788ULL);
	assert_int_equal(n, 20);
	assert_int_equal(rd32(b), VHU_SET_FEATURES);
	assert_int_equal(rd32(b + 4), VHU_FLAG_VERSION | VHU_FLAG_NEED_REPLY);
	assert_int_equal(rd32(b + 8), 8);
	assert_true(rd64(b + 12) == 0x1122334455667788ULL);
	assert_int_equal(vhu_decode_hdr(b, n, &h), 0);
	assert_int_equal(h.request, VHU_SET_FEATURES);
	assert_int_equal(h.size, 8);

	n = vhu_encode_none(b, sizeof(b), VHU_GET_FEATURES, false);
	assert_int_equal(n, 12);
	assert_int_equal(rd32(b + 4), VHU_FLAG_VERSION);
	assert_int_equal(rd32(b + 8), 0);
	/* Too small a buffer: nothing. */
	assert_int_equal(vhu_encode_u64(b, 19, VHU_SET_FEATURES, false, 1), 0);
}

static void test_encode_vring(void **state)
{
	struct vhu_vring_addr a = { .index = 3, .flags = 0, .desc = 0x1000, .used = 0x3000,
				    .avail = 0x2000, .log = 0 };
	uint8_t b[128];
	size_t n;

	(void)state;
	n = vhu_encode_vring_state(b, sizeof(b), VHU_SET_VRING_BASE, false, 2, 77);
	assert_int_equal(n, 12 + VHU_SZ_VRING_STATE);
	assert_int_equal(rd32(b + 12), 2);
	assert_int_equal(rd32(b + 16), 77);

	n = vhu_encode_vring_addr(b, sizeof(b), true, &a);
	assert_int_equal(n, 12 + VHU_SZ_VRING_ADDR);
	assert_int_equal(rd32(b), VHU_SET_VRING_ADDR);
	assert_int_equal(rd32(b + 12), 3);
	/* Order on the wire: descriptors, used, available, log. */
	assert_true(rd64(b + 20) == 0x1000);
	assert_true(rd64(b + 28) == 0x3000);
	assert_true(rd64(b + 36) == 0x2000);
	assert_true(rd64(b + 44) == 0);
}

static void test_encode_mem(void **state)
{
	struct vhu_mem_region r[2] = {
		{ .gpa = 0, .size = 0xc0000000, .uaddr = 0x7f0000000000, .mmap_offset = 0 },
		{ .gpa = 0x100000000, .size = 0x40000000, .uaddr = 0x7f00c0000000,
		  .mmap_offset = 0xc0000000 },
	};
	struct vhu_mem_region many[VHU_MAX_MEM_REGIONS + 1] = { 0 };
	uint8_t b[512];
	size_t n;

	(void)state;
	n = vhu_encode_mem_table(b, sizeof(b), false, r, 2);
	assert_int_equal(n, 12 + VHU_SZ_MEM_TABLE(2));
	assert_int_equal(rd32(b + 12), 2);
	assert_true(rd64(b + 20) == 0);
	assert_true(rd64(b + 28) == 0xc0000000);
	assert_true(rd64(b + 36) == 0x7f0000000000);
	assert_true(rd64(b + 52) == 0x100000000);
	assert_true(rd64(b + 76) == 0xc0000000);
	assert_int_equal(vhu_encode_mem_table(b, sizeof(b), false, many, VHU_MAX_MEM_REGIONS + 1), 0);

	n = vhu_encode_mem_reg(b, sizeof(b), VHU_ADD_MEM_REG, true, &r[1]);
	assert_int_equal(n, 12 + VHU_SZ_MEM_REG);
	assert_true(rd64(b + 12) == 0);  /* padding */
	assert_true(rd64(b + 20) == 0x100000000);
	assert_true(rd64(b + 44) == 0xc0000000);
}

static void test_encode_config_and_state(void **state)
{
	uint8_t b[512], data[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	size_t n;

	(void)state;
	n = vhu_encode_config(b, sizeof(b), VHU_GET_CONFIG, false, 4, 60, 0, NULL);
	assert_int_equal(n, 12 + 12 + 60);
	assert_int_equal(rd32(b + 12), 4);
	assert_int_equal(rd32(b + 16), 60);
	n = vhu_encode_config(b, sizeof(b), VHU_SET_CONFIG, true, 32, 8, 0, data);
	assert_int_equal(n, 12 + 12 + 8);
	assert_memory_equal(b + 24, data, 8);
	assert_int_equal(vhu_encode_config(b, sizeof(b), VHU_GET_CONFIG, false, 0, VHU_MAX_CONFIG + 1,
					   0, NULL), 0);
	n = vhu_encode_state_xfer(b, sizeof(b), false, 1, 0);
	assert_int_equal(n, 20);
	assert_int_equal(rd32(b), VHU_SET_DEVICE_STATE_FD);
	assert_int_equal(rd32(b + 12), 1);
	n = vhu_encode_backend_reply(b, sizeof(b), VHU_BACKEND_CONFIG_CHANGE_MSG, 0);
	assert_int_equal(rd32(b + 4), VHU_FLAG_VERSION | VHU_FLAG_REPLY);
}

static void test_decode_u64_good(void **state)
{
	uint8_t b[64];
	uint64_t v = 0;
	size_t n;

	(void)state;
	n = reply_u64(b, VHU_GET_FEATURES, 0x140000000ULL);
	assert_int_equal(vhu_decode_reply_u64(b, n, 0, VHU_GET_FEATURES, false, 0, &v), 0);
	assert_true(v == 0x140000000ULL);
	n = reply_u64(b, VHU_GET_QUEUE_NUM, 4);
	assert_int_equal(vhu_decode_reply_u64(b, n, 0, VHU_GET_QUEUE_NUM, false, 0, &v), 0);
	assert_true(v == 4);
	/* A REPLY_ACK: 0 is success, anything else the back-end's failure. */
	n = reply_u64(b, VHU_SET_VRING_NUM, 0);
	assert_int_equal(vhu_decode_reply_u64(b, n, 0, VHU_SET_VRING_NUM, true, 0, &v), 0);
	n = reply_u64(b, VHU_SET_VRING_NUM, 1);
	assert_int_equal(vhu_decode_reply_u64(b, n, 0, VHU_SET_VRING_NUM, true, 0, &v), -VHU_E_NACK);
}

static void test_decode_u64_bad(void **state)
{
	uint8_t b[64], p[8] = { 0 };
	uint64_t v;
	size_t n;

	(void)state;
	/* Wrong request code. */
	n = reply_u64(b, VHU_GET_PROTOCOL_FEATURES, 1);
	assert_int_equal(vhu_decode_reply_u64(b, n, 0, VHU_GET_FEATURES, false, 0, &v), -VHU_E_REQUEST);
	/* No reply flag. */
	n = reply(b, VHU_GET_FEATURES, VHU_FLAG_VERSION, p, 8);
	assert_int_equal(vhu_decode_reply_u64(b, n, 0, VHU_GET_FEATURES, false, 0, &v), -VHU_E_NOT_REPLY);
	/* Version 2, version 0. */
	n = reply(b, VHU_GET_FEATURES, 0x2 | VHU_FLAG_REPLY, p, 8);
	assert_int_equal(vhu_decode_reply_u64(b, n, 0, VHU_GET_FEATURES, false, 0, &v), -VHU_E_VERSION);
	n = reply(b, VHU_GET_FEATURES, VHU_FLAG_REPLY, p, 8);
	assert_int_equal(vhu_decode_reply_u64(b, n, 0, VHU_GET_FEATURES, false, 0, &v), -VHU_E_VERSION);
	/* Bad size: 4 and 16 bytes. */
	n = reply(b, VHU_GET_FEATURES, VHU_FLAG_VERSION | VHU_FLAG_REPLY, p, 4);
	assert_int_equal(vhu_decode_reply_u64(b, n, 0, VHU_GET_FEATURES, false, 0, &v), -VHU_E_SIZE);
	memset(b, 0, sizeof(b));
	n = reply(b, VHU_GET_FEATURES, VHU_FLAG_VERSION | VHU_FLAG_REPLY, b + 40, 16);
	assert_int_equal(vhu_decode_reply_u64(b, n, 0, VHU_GET_FEATURES, false, 0, &v), -VHU_E_SIZE);
	/* An fd where none belongs. */
	n = reply_u64(b, VHU_GET_FEATURES, 1);
	assert_int_equal(vhu_decode_reply_u64(b, n, 1, VHU_GET_FEATURES, false, 0, &v), -VHU_E_FDS);
	assert_int_equal(vhu_decode_reply_u64(b, n, 1, VHU_GET_FEATURES, true, 0, &v), -VHU_E_FDS);
	/* Cut short, trailing bytes, too large. */
	assert_int_equal(vhu_decode_reply_u64(b, 11, 0, VHU_GET_FEATURES, false, 0, &v), -VHU_E_SHORT);
	assert_int_equal(vhu_decode_reply_u64(b, n - 1, 0, VHU_GET_FEATURES, false, 0, &v), -VHU_E_SHORT);
	assert_int_equal(vhu_decode_reply_u64(b, n + 1, 0, VHU_GET_FEATURES, false, 0, &v),
			 -VHU_E_TRAILING);
	wr32(b + 8, VHU_MAX_PAYLOAD + 1);
	assert_int_equal(vhu_decode_reply_u64(b, 12, 0, VHU_GET_FEATURES, false, 0, &v), -VHU_E_TOO_BIG);
	/* Counts out of range. */
	n = reply_u64(b, VHU_GET_QUEUE_NUM, 0);
	assert_int_equal(vhu_decode_reply_u64(b, n, 0, VHU_GET_QUEUE_NUM, false, 0, &v), -VHU_E_VALUE);
	n = reply_u64(b, VHU_GET_MAX_MEM_SLOTS, 1ULL << 40);
	assert_int_equal(vhu_decode_reply_u64(b, n, 0, VHU_GET_MAX_MEM_SLOTS, false, 0, &v), -VHU_E_VALUE);
	/* A request that has no u64 reply. */
	n = reply_u64(b, VHU_SET_OWNER, 0);
	assert_int_equal(vhu_decode_reply_u64(b, n, 0, VHU_SET_OWNER, false, 0, &v), -VHU_E_REQUEST);
}

static void test_decode_vring_base(void **state)
{
	uint8_t b[64], p[8];
	uint64_t v = 0;
	size_t n;

	(void)state;
	wr32(p, 2);
	wr32(p + 4, 513);
	n = reply(b, VHU_GET_VRING_BASE, VHU_FLAG_VERSION | VHU_FLAG_REPLY, p, 8);
	assert_int_equal(vhu_decode_reply_u64(b, n, 0, VHU_GET_VRING_BASE, false, 2, &v), 0);
	assert_true(v == 513);
	assert_int_equal(vhu_decode_reply_u64(b, n, 0, VHU_GET_VRING_BASE, false, 1, &v), -VHU_E_INDEX);
	wr32(p + 4, 0x10000);
	n = reply(b, VHU_GET_VRING_BASE, VHU_FLAG_VERSION | VHU_FLAG_REPLY, p, 8);
	assert_int_equal(vhu_decode_reply_u64(b, n, 0, VHU_GET_VRING_BASE, false, 2, &v), -VHU_E_VALUE);
}

static void test_decode_state_fd(void **state)
{
	uint8_t b[64];
	uint64_t v;
	size_t n;

	(void)state;
	n = reply_u64(b, VHU_SET_DEVICE_STATE_FD, VHU_STATE_NOFD);
	assert_int_equal(vhu_decode_reply_u64(b, n, 0, VHU_SET_DEVICE_STATE_FD, false, 0, &v), 0);
	assert_int_equal(vhu_decode_reply_u64(b, n, 1, VHU_SET_DEVICE_STATE_FD, false, 0, &v), -VHU_E_FDS);
	n = reply_u64(b, VHU_SET_DEVICE_STATE_FD, 0);
	assert_int_equal(vhu_decode_reply_u64(b, n, 1, VHU_SET_DEVICE_STATE_FD, false, 0, &v), 0);
	assert_int_equal(vhu_decode_reply_u64(b, n, 0, VHU_SET_DEVICE_STATE_FD, false, 0, &v), -VHU_E_FDS);
	n = reply_u64(b, VHU_SET_DEVICE_STATE_FD, VHU_STATE_NOFD | 5);
	assert_int_equal(vhu_decode_reply_u64(b, n, 0, VHU_SET_DEVICE_STATE_FD, false, 0, &v), -VHU_E_NACK);
	n = reply_u64(b, VHU_SET_DEVICE_STATE_FD, 1ULL << 20);
	assert_int_equal(vhu_decode_reply_u64(b, n, 0, VHU_SET_DEVICE_STATE_FD, false, 0, &v), -VHU_E_VALUE);
	n = reply_u64(b, VHU_CHECK_DEVICE_STATE, 0);
	assert_int_equal(vhu_decode_reply_u64(b, n, 0, VHU_CHECK_DEVICE_STATE, false, 0, &v), 0);
	n = reply_u64(b, VHU_CHECK_DEVICE_STATE, 1);
	assert_int_equal(vhu_decode_reply_u64(b, n, 0, VHU_CHECK_DEVICE_STATE, false, 0, &v), -VHU_E_NACK);
}

static void test_decode_config(void **state)
{
	uint8_t b[512], p[12 + 60], out[60];
	size_t n;

	(void)state;
	memset(p, 0, sizeof(p));
	wr32(p, 0);
	wr32(p + 4, 60);
	for (unsigned i = 0; i < 60; i++)
		p[12 + i] = (uint8_t)i;
	n = reply(b, VHU_GET_CONFIG, VHU_FLAG_VERSION | VHU_FLAG_REPLY, p, sizeof(p));
	assert_int_equal(vhu_decode_reply_config(b, n, 0, 0, 60, out), 0);
	assert_memory_equal(out, p + 12, 60);
	assert_int_equal(vhu_decode_reply_config(b, n, 0, 4, 60, out), -VHU_E_VALUE);
	assert_int_equal(vhu_decode_reply_config(b, n, 0, 0, 40, out), -VHU_E_SIZE);
	assert_int_equal(vhu_decode_reply_config(b, n, 2, 0, 60, out), -VHU_E_FDS);
	/* Size 0: libvhost-user's way of saying it failed. */
	n = reply(b, VHU_GET_CONFIG, VHU_FLAG_VERSION | VHU_FLAG_REPLY, p, 0);
	assert_int_equal(vhu_decode_reply_config(b, n, 0, 0, 60, out), -VHU_E_NACK);
	n = reply(b, VHU_SET_CONFIG, VHU_FLAG_VERSION | VHU_FLAG_REPLY, p, sizeof(p));
	assert_int_equal(vhu_decode_reply_config(b, n, 0, 0, 60, out), -VHU_E_REQUEST);
}

static void test_decode_backend_req(void **state)
{
	uint8_t b[64], p[8] = { 0 };
	uint32_t req;
	bool need;
	size_t n;

	(void)state;
	n = reply(b, VHU_BACKEND_CONFIG_CHANGE_MSG, VHU_FLAG_VERSION | VHU_FLAG_NEED_REPLY, p, 8);
	assert_int_equal(vhu_decode_backend_req(b, n, 0, &req, &need), 0);
	assert_int_equal(req, VHU_BACKEND_CONFIG_CHANGE_MSG);
	assert_true(need);
	n = reply(b, VHU_BACKEND_CONFIG_CHANGE_MSG, VHU_FLAG_VERSION, p, 0);
	assert_int_equal(vhu_decode_backend_req(b, n, 0, &req, &need), 0);
	assert_false(need);
	assert_int_equal(vhu_decode_backend_req(b, n, 1, &req, &need), -VHU_E_FDS);
	n = reply(b, VHU_BACKEND_CONFIG_CHANGE_MSG, VHU_FLAG_VERSION, p, 4);
	assert_int_equal(vhu_decode_backend_req(b, n, 0, &req, &need), -VHU_E_SIZE);
	n = reply(b, VHU_BACKEND_VRING_HOST_NOTIFIER_MSG, VHU_FLAG_VERSION | VHU_FLAG_NEED_REPLY, p, 8);
	assert_int_equal(vhu_decode_backend_req(b, n, 0, &req, &need), -VHU_E_UNKNOWN);
	assert_true(need);
	n = reply(b, VHU_BACKEND_CONFIG_CHANGE_MSG, VHU_FLAG_VERSION | VHU_FLAG_REPLY, p, 8);
	assert_int_equal(vhu_decode_backend_req(b, n, 0, &req, &need), -VHU_E_REQUEST);
}

static void test_strerror(void **state)
{
	(void)state;
	for (int e = 1; e < VHU_E_MAX; e++) {
		assert_non_null(vhu_strerror(-e));
		assert_string_not_equal(vhu_strerror(-e), "unknown error");
	}
	assert_string_equal(vhu_strerror(-999), "unknown error");
	assert_string_equal(vhu_request_name(VHU_GET_VRING_BASE), "GET_VRING_BASE");
	assert_string_equal(vhu_request_name(9999), "request");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_header_and_u64),
		cmocka_unit_test(test_encode_vring),
		cmocka_unit_test(test_encode_mem),
		cmocka_unit_test(test_encode_config_and_state),
		cmocka_unit_test(test_decode_u64_good),
		cmocka_unit_test(test_decode_u64_bad),
		cmocka_unit_test(test_decode_vring_base),
		cmocka_unit_test(test_decode_state_fd),
		cmocka_unit_test(test_decode_config),
		cmocka_unit_test(test_decode_backend_req),
		cmocka_unit_test(test_strerror),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
