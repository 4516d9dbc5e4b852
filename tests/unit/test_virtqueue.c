/*
 * Unit tests for virtio/virtqueue: the test plays the driver, writing
 * descriptors and the avail ring into a real struct gmem, and checks what the
 * device side makes of them, including every malformed chain we know of.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "virtio/virtqueue.h"
#include "vmm/gmem.h"

/* 1 MiB of RAM with a 256 KiB hole: RAM is [0, 512K) and [768K, 1280K). */
#define RAM_SIZE   (1 * MiB)
#define HOLE_START (512 * KiB)
#define HOLE_END   (768 * KiB)
#define RAM2_END   (HOLE_END + RAM_SIZE - HOLE_START)

#define QSIZE      16u
#define DESC_GPA   0x1000ull
#define AVAIL_GPA  0x2000ull
#define USED_GPA   0x3000ull
#define TABLE_GPA  0x8000ull   /* indirect tables */
#define TABLE2_GPA 0x9000ull
#define BUF_GPA    0x10000ull  /* data buffers, 0x1000 apart */

#define F_INDIRECT (1ull << VIRTIO_RING_F_INDIRECT_DESC)
#define F_EVENT    (1ull << VIRTIO_RING_F_EVENT_IDX)

struct fx {
	struct gmem gm;
	struct virtq vq;
	struct virtq_chain c;
	uint16_t avail_idx; /* driver's shadow */
	int errors;         /* on_error calls */
	int last_error;
};

static void on_error(struct virtq *vq, int err, void *opaque)
{
	struct fx *f = opaque;

	(void)vq;
	f->errors++;
	f->last_error = err;
}

/* ---- driver-side helpers ---------------------------------------------------- */

static void wr16(struct fx *f, uint64_t gpa, uint16_t v)
{
	le16 x = cpu_to_le16(v);

	assert_int_equal(gmem_write(&f->gm, gpa, &x, sizeof(x)), 0);
}

static uint16_t rd16(struct fx *f, uint64_t gpa)
{
	le16 x;

	assert_int_equal(gmem_read(&f->gm, gpa, &x, sizeof(x)), 0);
	return le16_to_cpu(x);
}

static uint32_t rd32(struct fx *f, uint64_t gpa)
{
	le32 x;

	assert_int_equal(gmem_read(&f->gm, gpa, &x, sizeof(x)), 0);
	return le32_to_cpu(x);
}

static void put_desc(struct fx *f, uint64_t table, uint16_t i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	struct virtq_desc d = {
		.addr = cpu_to_le64(addr),
		.len = cpu_to_le32(len),
		.flags = cpu_to_le16(flags),
		.next = cpu_to_le16(next),
	};

	assert_int_equal(gmem_write(&f->gm, table + (uint64_t)i * sizeof(d), &d, sizeof(d)), 0);
}

static void set_desc(struct fx *f, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	put_desc(f, DESC_GPA, i, addr, len, flags, next);
}

static void avail_push(struct fx *f, uint16_t head)
{
	uint16_t size = f->vq.size;

	wr16(f, AVAIL_GPA + 4 + 2 * (uint64_t)(f->avail_idx % size), head);
	f->avail_idx++;
	wr16(f, AVAIL_GPA + 2, f->avail_idx);
}

static uint16_t used_idx(struct fx *f)
{
	return rd16(f, USED_GPA + 2);
}

static uint16_t used_flags(struct fx *f)
{
	return rd16(f, USED_GPA);
}

static void used_elem(struct fx *f, uint16_t slot, uint32_t *id, uint32_t *len)
{
	uint64_t e = USED_GPA + 4 + 8 * (uint64_t)(slot % f->vq.size);

	*id = rd32(f, e);
	*len = rd32(f, e + 4);
}

static void set_used_event(struct fx *f, uint16_t v)
{
	wr16(f, AVAIL_GPA + 4 + 2 * (uint64_t)f->vq.size, v);
}

static uint16_t avail_event(struct fx *f)
{
	return rd16(f, USED_GPA + 4 + 8 * (uint64_t)f->vq.size);
}

static void *hva(struct fx *f, uint64_t gpa)
{
	return gmem_translate(&f->gm, gpa, 1);
}

/* Disable, point at the standard rings, enable with features. */
static void enable(struct fx *f, uint64_t features)
{
	virtq_reset(&f->vq);
	f->vq.size = QSIZE;
	f->vq.desc_gpa = DESC_GPA;
	f->vq.avail_gpa = AVAIL_GPA;
	f->vq.used_gpa = USED_GPA;
	assert_int_equal(virtq_enable(&f->vq, features), 0);
	f->avail_idx = 0;
	wr16(f, AVAIL_GPA + 2, 0);
	wr16(f, AVAIL_GPA, 0);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	assert_int_equal(gmem_create(&f->gm, RAM_SIZE, HOLE_START, HOLE_END), 0);
	assert_int_equal(virtq_init(&f->vq, &f->gm, "test.q0", 64), 0);
	f->vq.on_error = on_error;
	f->vq.on_error_opaque = f;
	assert_int_equal(virtq_chain_init(&f->c, 64), 0);
	enable(f, 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	virtq_chain_destroy(&f->c);
	gmem_destroy(&f->gm);
	free(f);
	return 0;
}

/* Pop must fail with err, break the queue, report once, and stay broken. */
static void expect_broken(struct fx *f, int err)
{
	assert_int_equal(virtq_pop(&f->vq, &f->c), err);
	assert_true(virtq_is_broken(&f->vq));
	assert_int_equal(virtq_error(&f->vq), err);
	assert_int_equal(f->errors, 1);
	assert_int_equal(f->last_error, err);
	assert_int_equal(virtq_pop(&f->vq, &f->c), -EIO);
	assert_int_equal(virtq_push(&f->vq, 0, 0), -EIO);
	assert_false(virtq_needs_notify(&f->vq));
	assert_int_equal(f->errors, 1);
}

/* ---- well-formed chains ----------------------------------------------------- */

static void test_empty(void **state)
{
	struct fx *f = *state;

	assert_int_equal(virtq_pop(&f->vq, &f->c), 0);
	assert_int_equal(virtq_avail_count(&f->vq), 0);
	assert_false(virtq_is_broken(&f->vq));
}

static void test_not_enabled(void **state)
{
	struct fx *f = *state;

	virtq_reset(&f->vq);
	assert_int_equal(virtq_pop(&f->vq, &f->c), -ENODEV);
	assert_int_equal(virtq_push(&f->vq, 0, 0), -ENODEV);
	assert_false(virtq_needs_notify(&f->vq));
	assert_false(virtq_is_broken(&f->vq));
}

static void test_readonly(void **state)
{
	struct fx *f = *state;

	set_desc(f, 3, BUF_GPA, 100, 0, 0);
	avail_push(f, 3);
	assert_int_equal(virtq_avail_count(&f->vq), 1);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_int_equal(f->c.head, 3);
	assert_int_equal(f->c.nr_out, 1);
	assert_int_equal(f->c.nr_in, 0);
	assert_int_equal(f->c.out_len, 100);
	assert_int_equal(f->c.in_len, 0);
	assert_int_equal(f->c.ndesc, 1);
	assert_ptr_equal(f->c.out[0].iov_base, hva(f, BUF_GPA));
	assert_int_equal(f->c.out[0].iov_len, 100);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 0);
}

static void test_writeonly(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, BUF_GPA, 512, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, BUF_GPA + 0x1000, 8, VIRTQ_DESC_F_WRITE, 0);
	avail_push(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_int_equal(f->c.nr_out, 0);
	assert_int_equal(f->c.nr_in, 2);
	assert_int_equal(f->c.in_len, 520);
	assert_ptr_equal(f->c.in[0].iov_base, hva(f, BUF_GPA));
	assert_ptr_equal(f->c.in[1].iov_base, hva(f, BUF_GPA + 0x1000));
	assert_int_equal(f->c.in[1].iov_len, 8);
}

static void test_mixed_chain(void **state)
{
	struct fx *f = *state;

	/* 9 -> 2 -> 15 -> 4: two readable, two writable, indices out of order. */
	set_desc(f, 9, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 2);
	set_desc(f, 2, BUF_GPA + 0x1000, 4096, VIRTQ_DESC_F_NEXT, 15);
	set_desc(f, 15, BUF_GPA + 0x2000, 4096, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 4);
	set_desc(f, 4, BUF_GPA + 0x3000, 1, VIRTQ_DESC_F_WRITE, 0);
	avail_push(f, 9);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_int_equal(f->c.head, 9);
	assert_int_equal(f->c.nr_out, 2);
	assert_int_equal(f->c.nr_in, 2);
	assert_int_equal(f->c.out_len, 16 + 4096);
	assert_int_equal(f->c.in_len, 4096 + 1);
	assert_int_equal(f->c.ndesc, 4);
	assert_ptr_equal(f->c.out[1].iov_base, hva(f, BUF_GPA + 0x1000));
	assert_ptr_equal(f->c.in[0].iov_base, hva(f, BUF_GPA + 0x2000));
	assert_ptr_equal(f->c.in[1].iov_base, hva(f, BUF_GPA + 0x3000));
	assert_ptr_equal(f->c.in, f->c.iov + 2);
}

static void test_chain_copy_helpers(void **state)
{
	struct fx *f = *state;
	uint8_t hdr[6], out[10];

	/* A header split 3 + 5 bytes across two readable descriptors. */
	memcpy(hva(f, BUF_GPA), "abc", 3);
	memcpy(hva(f, BUF_GPA + 0x1000), "defgh", 5);
	set_desc(f, 0, BUF_GPA, 3, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, BUF_GPA + 0x1000, 5, VIRTQ_DESC_F_NEXT, 2);
	set_desc(f, 2, BUF_GPA + 0x2000, 2, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 3);
	set_desc(f, 3, BUF_GPA + 0x3000, 4, VIRTQ_DESC_F_WRITE, 0);
	avail_push(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);

	assert_int_equal(virtq_chain_read(&f->c, 2, hdr, 4), 4);
	assert_memory_equal(hdr, "cdef", 4);
	/* Short read at the end of the readable part; never reads the writable part. */
	assert_int_equal(virtq_chain_read(&f->c, 5, hdr, sizeof(hdr)), 3);
	assert_memory_equal(hdr, "fgh", 3);
	assert_int_equal(virtq_chain_read(&f->c, 8, hdr, 1), 0);
	assert_int_equal(virtq_chain_read(&f->c, 1000, hdr, 1), 0);

	assert_int_equal(virtq_chain_write(&f->c, 1, "XYZW", 4), 4);
	assert_memory_equal(hva(f, BUF_GPA + 0x2000), "\0X", 2);
	assert_memory_equal(hva(f, BUF_GPA + 0x3000), "YZW", 3);
	assert_int_equal(virtq_chain_write(&f->c, 0, "0123456789", 10), 6);
	memcpy(out, hva(f, BUF_GPA + 0x3000), 4);
	assert_memory_equal(out, "2345", 4);
	/* The readable part was not written. */
	assert_memory_equal(hva(f, BUF_GPA), "abc", 3);
}

static void test_indirect(void **state)
{
	struct fx *f = *state;

	enable(f, F_INDIRECT);
	put_desc(f, TABLE_GPA, 0, BUF_GPA, 10, VIRTQ_DESC_F_NEXT, 2);
	put_desc(f, TABLE_GPA, 2, BUF_GPA + 0x1000, 20, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	put_desc(f, TABLE_GPA, 1, BUF_GPA + 0x2000, 30, VIRTQ_DESC_F_WRITE, 0);
	/* WRITE on the descriptor pointing at the table is ignored (2.7.5.3.2). */
	set_desc(f, 5, TABLE_GPA, 3 * 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0);
	avail_push(f, 5);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_int_equal(f->c.head, 5);
	assert_int_equal(f->c.nr_out, 1);
	assert_int_equal(f->c.nr_in, 2);
	assert_int_equal(f->c.out_len, 10);
	assert_int_equal(f->c.in_len, 50);
	assert_int_equal(f->c.ndesc, 3);
	assert_ptr_equal(f->c.in[1].iov_base, hva(f, BUF_GPA + 0x2000));
}

static void test_direct_then_indirect(void **state)
{
	struct fx *f = *state;

	enable(f, F_INDIRECT);
	put_desc(f, TABLE_GPA, 0, BUF_GPA + 0x1000, 20, VIRTQ_DESC_F_WRITE, 0);
	set_desc(f, 0, BUF_GPA, 10, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, TABLE_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_int_equal(f->c.nr_out, 1);
	assert_int_equal(f->c.nr_in, 1);
	assert_int_equal(f->c.ndesc, 2);
}

/* An indirect table exactly as long as the queue is fine; one more is not. */
static void test_indirect_bound(void **state)
{
	struct fx *f = *state;

	enable(f, F_INDIRECT);
	for (uint16_t i = 0; i < QSIZE; i++)
		put_desc(f, TABLE_GPA, i, BUF_GPA, 1, i + 1u < QSIZE ? VIRTQ_DESC_F_NEXT : 0,
			 i + 1);
	set_desc(f, 0, TABLE_GPA, QSIZE * 16, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_int_equal(f->c.ndesc, QSIZE);
	assert_int_equal(f->c.nr_out, QSIZE);

	/* Same table behind one direct descriptor: QSIZE + 1 buffers. */
	set_desc(f, 1, BUF_GPA, 1, VIRTQ_DESC_F_NEXT, 2);
	set_desc(f, 2, TABLE_GPA, QSIZE * 16, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(f, 1);
	expect_broken(f, -ELOOP);
}

static void test_zero_length_allowed(void **state)
{
	struct fx *f = *state;

	/* Zero-length descriptors are skipped, whatever their address. */
	set_desc(f, 0, UINT64_MAX, 0, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, BUF_GPA, 10, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
	set_desc(f, 2, HOLE_START, 0, VIRTQ_DESC_F_WRITE, 0);
	avail_push(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_int_equal(f->c.nr_out, 0);
	assert_int_equal(f->c.nr_in, 1);
	assert_int_equal(f->c.in_len, 10);
	assert_int_equal(f->c.ndesc, 3);
}

static void test_buffer_above_hole(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, HOLE_END, 4096, 0, 0);
	set_desc(f, 1, RAM2_END - 16, 16, VIRTQ_DESC_F_WRITE, 0);
	avail_push(f, 0);
	avail_push(f, 1);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_ptr_equal(f->c.out[0].iov_base, gmem_translate(&f->gm, HOLE_END, 4096));
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_int_equal(f->c.in_len, 16);
}

static void test_batch_and_publish(void **state)
{
	struct fx *f = *state;
	uint32_t id, len;

	for (uint16_t i = 0; i < 3; i++) {
		set_desc(f, i, BUF_GPA + 0x1000 * i, 64, VIRTQ_DESC_F_WRITE, 0);
		avail_push(f, i);
	}
	for (uint16_t i = 0; i < 3; i++) {
		assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
		assert_int_equal(f->c.head, i);
	}
	assert_int_equal(virtq_push(&f->vq, 1, 11), 0);
	assert_int_equal(virtq_push(&f->vq, 0, 10), 0);
	assert_int_equal(virtq_push(&f->vq, 2, 12), 0);
	/* More pushes than pops is a device bug. */
	assert_int_equal(virtq_push(&f->vq, 2, 12), -EINVAL);
	assert_int_equal(used_idx(f), 0); /* not published yet */
	used_elem(f, 0, &id, &len);
	assert_int_equal(id, 1);
	assert_int_equal(len, 11);
	virtq_flush(&f->vq);
	assert_int_equal(used_idx(f), 3);
	used_elem(f, 1, &id, &len);
	assert_int_equal(id, 0);
	assert_int_equal(len, 10);
	used_elem(f, 2, &id, &len);
	assert_int_equal(id, 2);
	assert_int_equal(len, 12);
	assert_true(virtq_needs_notify(&f->vq));
	assert_false(virtq_needs_notify(&f->vq)); /* nothing new */
}

static void test_push_errors(void **state)
{
	struct fx *f = *state;

	assert_int_equal(virtq_push(&f->vq, 0, 0), -EINVAL); /* nothing popped */
	set_desc(f, 0, BUF_GPA, 1, 0, 0);
	avail_push(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_int_equal(virtq_push(&f->vq, QSIZE, 0), -EINVAL);
	assert_int_equal(virtq_push(&f->vq, 0, 0), 0);
}

static void test_unpop(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, BUF_GPA, 1, 0, 0);
	set_desc(f, 1, BUF_GPA, 2, 0, 0);
	avail_push(f, 0);
	avail_push(f, 1);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	virtq_unpop(&f->vq, 1);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_int_equal(f->c.head, 1);
	assert_int_equal(virtq_push(&f->vq, 0, 0), 0);
	virtq_unpop(&f->vq, 5); /* clamped to the one still in flight */
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_int_equal(f->c.head, 1);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 0);
}

/* Over many laps of the 16-bit indices, with 3 chains in flight at a time. */
static void test_wrap_around(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, BUF_GPA, 1, 0, 0);
	set_desc(f, 1, BUF_GPA, 1, 0, 0);
	set_desc(f, 2, BUF_GPA, 1, 0, 0);
	for (unsigned lap = 0; lap < 70000 / 3; lap++) {
		for (uint16_t i = 0; i < 3; i++)
			avail_push(f, i);
		for (uint16_t i = 0; i < 3; i++) {
			assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
			assert_int_equal(f->c.head, i);
		}
		assert_int_equal(virtq_pop(&f->vq, &f->c), 0);
		for (uint16_t i = 0; i < 3; i++)
			assert_int_equal(virtq_push(&f->vq, i, i), 0);
		virtq_flush(&f->vq);
		assert_int_equal(used_idx(f), f->avail_idx);
	}
	assert_false(virtq_is_broken(&f->vq));
}

/* ---- notifications ------------------------------------------------------------ */

static void complete_one(struct fx *f, uint16_t head)
{
	avail_push(f, head);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_int_equal(virtq_push(&f->vq, f->c.head, 0), 0);
	virtq_flush(&f->vq);
}

static void test_no_interrupt_flag(void **state)
{
	struct fx *f = *state;
	bool notify;

	set_desc(f, 0, BUF_GPA, 1, 0, 0);
	assert_false(virtq_needs_notify(&f->vq)); /* nothing published */
	wr16(f, AVAIL_GPA, VIRTQ_AVAIL_F_NO_INTERRUPT);
	complete_one(f, 0);
	assert_false(virtq_needs_notify(&f->vq));
	wr16(f, AVAIL_GPA, 0);
	complete_one(f, 0);
	assert_true(virtq_needs_notify(&f->vq));
	/* push_one bundles the three steps. */
	avail_push(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_int_equal(virtq_push_one(&f->vq, 0, 5, &notify), 0);
	assert_true(notify);
	assert_int_equal(used_idx(f), 3);
}

static void test_event_idx_notify(void **state)
{
	struct fx *f = *state;

	enable(f, F_EVENT);
	set_desc(f, 0, BUF_GPA, 1, 0, 0);
	/* NO_INTERRUPT is ignored with EVENT_IDX; used_event rules. */
	wr16(f, AVAIL_GPA, VIRTQ_AVAIL_F_NO_INTERRUPT);
	set_used_event(f, 0);
	complete_one(f, 0);                        /* used 0 -> 1 passes event 0 */
	assert_true(virtq_needs_notify(&f->vq));
	set_used_event(f, 3);
	complete_one(f, 0);                        /* 1 -> 2 */
	assert_false(virtq_needs_notify(&f->vq));
	complete_one(f, 0);                        /* 2 -> 3 */
	assert_false(virtq_needs_notify(&f->vq));
	complete_one(f, 0);                        /* 3 -> 4 passes 3 */
	assert_true(virtq_needs_notify(&f->vq));
	/* A batch that jumps over the event index notifies once. */
	set_used_event(f, 5);
	for (int i = 0; i < 3; i++) {
		avail_push(f, 0);
		assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	}
	for (int i = 0; i < 3; i++)
		assert_int_equal(virtq_push(&f->vq, 0, 0), 0);
	virtq_flush(&f->vq);                       /* 4 -> 7 passes 5 */
	assert_true(virtq_needs_notify(&f->vq));
	assert_false(virtq_needs_notify(&f->vq));
	/* An event index behind (already passed) does not notify again. */
	complete_one(f, 0);                        /* 7 -> 8, event 5 */
	assert_false(virtq_needs_notify(&f->vq));
}

static void test_event_idx_wrap(void **state)
{
	struct fx *f = *state;
	struct virtq_state st = {
		.desc_gpa = DESC_GPA, .avail_gpa = AVAIL_GPA, .used_gpa = USED_GPA,
		.size = QSIZE, .last_avail_idx = 65534, .used_idx = 65534, .enabled = 1,
	};

	assert_int_equal(virtq_restore(&f->vq, &st, F_EVENT), 0);
	f->avail_idx = 65534;
	wr16(f, AVAIL_GPA + 2, f->avail_idx);
	set_desc(f, 7, BUF_GPA, 1, 0, 0);
	set_used_event(f, 65535);
	complete_one(f, 7);                        /* 65534 -> 65535 */
	assert_true(virtq_needs_notify(&f->vq));   /* first check after restore */
	complete_one(f, 7);                        /* 65535 -> 0 passes 65535 */
	assert_int_equal(used_idx(f), 0);
	assert_true(virtq_needs_notify(&f->vq));
	set_used_event(f, 1);
	complete_one(f, 7);                        /* 0 -> 1 */
	assert_false(virtq_needs_notify(&f->vq));
	complete_one(f, 7);                        /* 1 -> 2 passes 1 */
	assert_true(virtq_needs_notify(&f->vq));
	/* used_event far behind after the wrap (65000): no notification. */
	set_used_event(f, 65000);
	complete_one(f, 7);
	assert_false(virtq_needs_notify(&f->vq));
	assert_int_equal(virtq_pop(&f->vq, &f->c), 0);
	assert_int_equal(avail_event(f), 3);
}

/* 2^16 + 2 completions published without a notification check in between. */
static void test_event_idx_lapped(void **state)
{
	struct fx *f = *state;

	enable(f, F_EVENT);
	set_desc(f, 0, BUF_GPA, 1, 0, 0);
	complete_one(f, 0);
	assert_true(virtq_needs_notify(&f->vq));   /* signalled at 1 */
	for (unsigned i = 0; i < 65536 + 2; i++) {
		avail_push(f, 0);
		assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
		assert_int_equal(virtq_push(&f->vq, 0, 0), 0);
		if (i % QSIZE == QSIZE - 1 || i == 65536 + 1)
			virtq_flush(&f->vq);
	}
	assert_int_equal(used_idx(f), 3);
	/* 1 -> 3 looks like 2 steps and misses 6, but used idx passed 6 a lap ago. */
	set_used_event(f, 6);
	assert_true(virtq_needs_notify(&f->vq));
}

static void test_kick_suppression_flag(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, BUF_GPA, 1, 0, 0);
	assert_int_equal(used_flags(f), 0);
	virtq_disable_notify(&f->vq);
	assert_int_equal(used_flags(f), VIRTQ_USED_F_NO_NOTIFY);
	/* Disabled: an empty pop does not touch the rings. */
	assert_int_equal(virtq_pop(&f->vq, &f->c), 0);
	assert_false(virtq_enable_notify(&f->vq)); /* nothing arrived */
	assert_int_equal(used_flags(f), 0);

	virtq_disable_notify(&f->vq);
	avail_push(f, 0);                          /* arrives while disabled */
	assert_true(virtq_enable_notify(&f->vq));  /* caller must drain again */
	assert_int_equal(used_flags(f), 0);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_false(virtq_enable_notify(&f->vq));
}

static void test_kick_suppression_event_idx(void **state)
{
	struct fx *f = *state;
	int rounds = 0, r;

	enable(f, F_EVENT);
	assert_int_equal(avail_event(f), 0);
	set_desc(f, 0, BUF_GPA, 1, 0, 0);
	avail_push(f, 0);
	avail_push(f, 0);
	/* The drain loop from the header. */
	do {
		virtq_disable_notify(&f->vq);
		while ((r = virtq_pop(&f->vq, &f->c)) > 0) {
			assert_int_equal(virtq_push(&f->vq, f->c.head, 0), 0);
			if (rounds == 0 && f->vq.last_avail_idx == 2)
				avail_push(f, 0); /* the driver adds one mid-drain */
		}
		rounds++;
	} while (r == 0 && virtq_enable_notify(&f->vq));
	assert_int_equal(r, 0);
	assert_int_equal(f->vq.last_avail_idx, 3);
	assert_int_equal(avail_event(f), 3);       /* kick me for the 4th */
	assert_int_equal(used_flags(f), 0);        /* flag unused with EVENT_IDX */

	/* Plain pop loop without disable: an empty pop publishes avail_event. */
	avail_push(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_int_equal(avail_event(f), 3);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 0);
	assert_int_equal(avail_event(f), 4);
	/* While disabled, an empty pop leaves avail_event behind. */
	virtq_disable_notify(&f->vq);
	avail_push(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 0);
	assert_int_equal(avail_event(f), 4);
	assert_false(virtq_enable_notify(&f->vq));
	assert_int_equal(avail_event(f), 5);
	/* vring_need_event itself, including wrap. */
	assert_true(vring_need_event(4, 5, 4));
	assert_false(vring_need_event(5, 5, 4));
	assert_true(vring_need_event(65535, 0, 65534));
	assert_true(vring_need_event(65535, 2, 65530));
	assert_false(vring_need_event(3, 2, 65530));
}

/* ---- malformed rings: every one breaks the queue ---------------------------- */

static void test_bad_loop(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, BUF_GPA, 1, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, BUF_GPA, 1, VIRTQ_DESC_F_NEXT, 0);
	avail_push(f, 0);
	expect_broken(f, -ELOOP);
}

static void test_bad_self_loop_indirect(void **state)
{
	struct fx *f = *state;

	enable(f, F_INDIRECT);
	put_desc(f, TABLE_GPA, 0, BUF_GPA, 1, VIRTQ_DESC_F_NEXT, 0);
	set_desc(f, 0, TABLE_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(f, 0);
	expect_broken(f, -ELOOP);
}

static void test_bad_chain_too_long(void **state)
{
	struct fx *f = *state;

	/* 17 distinct descriptors in an indirect table on a 16-entry queue. */
	enable(f, F_INDIRECT);
	for (uint16_t i = 0; i < QSIZE + 1; i++)
		put_desc(f, TABLE_GPA, i, BUF_GPA, 1, i < QSIZE ? VIRTQ_DESC_F_NEXT : 0, i + 1);
	set_desc(f, 0, TABLE_GPA, (QSIZE + 1) * 16, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(f, 0);
	expect_broken(f, -ELOOP);
}

static void test_bad_next_range(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, BUF_GPA, 1, VIRTQ_DESC_F_NEXT, QSIZE);
	avail_push(f, 0);
	expect_broken(f, -ERANGE);
}

static void test_bad_head(void **state)
{
	struct fx *f = *state;

	avail_push(f, QSIZE);
	expect_broken(f, -ERANGE);
}

static void test_bad_avail_jump(void **state)
{
	struct fx *f = *state;

	/* Exactly size ahead is a full ring, fine (every slot says head 0). */
	set_desc(f, 0, BUF_GPA, 1, 0, 0);
	wr16(f, AVAIL_GPA + 2, QSIZE);
	assert_int_equal(virtq_avail_count(&f->vq), QSIZE);
	for (unsigned i = 0; i < QSIZE; i++)
		assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 0);
	for (unsigned i = 0; i < QSIZE; i++)
		assert_int_equal(virtq_push(&f->vq, 0, 0), 0);
	wr16(f, AVAIL_GPA + 2, 2 * QSIZE + 1);
	expect_broken(f, -EPROTO);
}

static void test_bad_too_many_in_flight(void **state)
{
	struct fx *f = *state;

	/* The driver offers head 0 again and again without getting it back. */
	set_desc(f, 0, BUF_GPA, 1, 0, 0);
	for (unsigned i = 0; i < QSIZE; i++) {
		avail_push(f, 0);
		assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	}
	avail_push(f, 0);
	/* Pushing one back makes room again. */
	assert_int_equal(virtq_push(&f->vq, 0, 0), 0);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	avail_push(f, 0);
	expect_broken(f, -ENOSPC);
}

static void test_bad_avail_backwards(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, BUF_GPA, 1, 0, 0);
	avail_push(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	wr16(f, AVAIL_GPA + 2, 0); /* driver moved its index back */
	expect_broken(f, -EPROTO);
}

static void test_bad_addr_outside_ram(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, RAM2_END, 1, 0, 0);
	avail_push(f, 0);
	expect_broken(f, -EFAULT);
}

static void test_bad_addr_straddles_end(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, RAM2_END - 8, 16, VIRTQ_DESC_F_WRITE, 0);
	avail_push(f, 0);
	expect_broken(f, -EFAULT);
}

static void test_bad_addr_overflow(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, UINT64_MAX - 1, 16, 0, 0);
	avail_push(f, 0);
	expect_broken(f, -EOVERFLOW);
}

static void test_bad_addr_into_hole(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, HOLE_START - 8, 16, 0, 0);
	avail_push(f, 0);
	expect_broken(f, -EFAULT);
}

static void test_bad_addr_in_hole(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, HOLE_START + 0x1000, 16, 0, 0);
	avail_push(f, 0);
	expect_broken(f, -EFAULT);
}

static void test_bad_nested_indirect(void **state)
{
	struct fx *f = *state;

	enable(f, F_INDIRECT);
	put_desc(f, TABLE2_GPA, 0, BUF_GPA, 8, 0, 0);
	put_desc(f, TABLE_GPA, 0, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, 1);
	put_desc(f, TABLE_GPA, 1, TABLE2_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0);
	set_desc(f, 0, TABLE_GPA, 32, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(f, 0);
	expect_broken(f, -EMLINK);
}

static void test_bad_indirect_next(void **state)
{
	struct fx *f = *state;

	enable(f, F_INDIRECT);
	put_desc(f, TABLE_GPA, 0, BUF_GPA, 8, 0, 0);
	set_desc(f, 1, BUF_GPA, 8, 0, 0);
	set_desc(f, 0, TABLE_GPA, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	avail_push(f, 0);
	expect_broken(f, -EINVAL);
}

static void test_bad_indirect_len_zero(void **state)
{
	struct fx *f = *state;

	enable(f, F_INDIRECT);
	set_desc(f, 0, TABLE_GPA, 0, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(f, 0);
	expect_broken(f, -EMSGSIZE);
}

static void test_bad_indirect_len_odd(void **state)
{
	struct fx *f = *state;

	enable(f, F_INDIRECT);
	put_desc(f, TABLE_GPA, 0, BUF_GPA, 8, 0, 0);
	set_desc(f, 0, TABLE_GPA, 24, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(f, 0);
	expect_broken(f, -EMSGSIZE);
}

static void test_bad_indirect_not_negotiated(void **state)
{
	struct fx *f = *state;

	put_desc(f, TABLE_GPA, 0, BUF_GPA, 8, 0, 0);
	set_desc(f, 0, TABLE_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(f, 0);
	expect_broken(f, -EOPNOTSUPP);
}

static void test_bad_indirect_table_outside_ram(void **state)
{
	struct fx *f = *state;

	enable(f, F_INDIRECT);
	set_desc(f, 0, HOLE_START - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(f, 0);
	expect_broken(f, -EFAULT);
}

static void test_bad_indirect_table_overflow(void **state)
{
	struct fx *f = *state;

	enable(f, F_INDIRECT);
	set_desc(f, 0, UINT64_MAX - 15, 32, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(f, 0);
	expect_broken(f, -EOVERFLOW);
}

static void test_bad_indirect_next_range(void **state)
{
	struct fx *f = *state;

	enable(f, F_INDIRECT);
	/* next = 2 is a valid queue index but past this 2-entry table. */
	put_desc(f, TABLE_GPA, 0, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, 2);
	put_desc(f, TABLE_GPA, 1, BUF_GPA, 8, 0, 0);
	set_desc(f, 0, TABLE_GPA, 32, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(f, 0);
	expect_broken(f, -ERANGE);
}

static void test_bad_read_after_write(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, BUF_GPA, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, BUF_GPA, 8, 0, 0);
	avail_push(f, 0);
	expect_broken(f, -EBADMSG);
}

static void test_bad_read_after_zero_len_write(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, BUF_GPA, 0, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, BUF_GPA, 8, 0, 0);
	avail_push(f, 0);
	expect_broken(f, -EBADMSG);
}

static void test_bad_read_after_write_indirect(void **state)
{
	struct fx *f = *state;

	enable(f, F_INDIRECT);
	set_desc(f, 0, BUF_GPA, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, TABLE_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0);
	put_desc(f, TABLE_GPA, 0, BUF_GPA, 8, 0, 0);
	avail_push(f, 0);
	expect_broken(f, -EBADMSG);
}

static void test_bad_too_many_iovecs(void **state)
{
	struct fx *f = *state;
	struct virtq_chain small;

	assert_int_equal(virtq_chain_init(&small, 2), 0);
	set_desc(f, 0, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, 2);
	set_desc(f, 2, BUF_GPA, 8, 0, 0);
	avail_push(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &small), -ENOBUFS);
	assert_true(virtq_is_broken(&f->vq));
	virtq_chain_destroy(&small);
}

static void test_broken_until_reset(void **state)
{
	struct fx *f = *state;

	avail_push(f, QSIZE);
	expect_broken(f, -ERANGE);
	/* Fixing the ring does not un-break the queue. */
	set_desc(f, 0, BUF_GPA, 8, 0, 0);
	wr16(f, AVAIL_GPA + 4, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->c), -EIO);
	assert_int_equal(virtq_avail_count(&f->vq), 0);
	/* Reset keeps the error handler, clears the state. */
	virtq_reset(&f->vq);
	assert_false(virtq_is_broken(&f->vq));
	assert_false(virtq_is_enabled(&f->vq));
	assert_int_equal(virtq_error(&f->vq), 0);
	assert_int_equal(f->vq.size, 64);
	assert_int_equal(f->vq.desc_gpa, 0);
	enable(f, 0);
	avail_push(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_int_equal(f->c.head, 0);
	avail_push(f, QSIZE);
	assert_int_equal(virtq_pop(&f->vq, &f->c), -ERANGE);
	assert_int_equal(f->errors, 2);
}

/* ---- chains over two adjacent regions ----------------------------------------- */

static void test_split_adjacent_regions(void **state)
{
	struct fx *f = *state;
	struct gmem gm2;
	struct virtq vq2;
	uint8_t *lo = aligned_alloc(4096, 64 * KiB), *hi = aligned_alloc(4096, 64 * KiB);
	uint8_t buf[8];
	struct virtq_desc d = { .addr = cpu_to_le64(64 * KiB - 4), .len = cpu_to_le32(8) };
	struct virtq_chain one;

	(void)f;
	assert_non_null(lo);
	assert_non_null(hi);
	memset(lo, 0, 64 * KiB);
	memset(hi, 0, 64 * KiB);
	/* RAM [0, 64K) and [64K, 128K) backed by unrelated host memory. */
	memset(&gm2, 0, sizeof(gm2));
	gm2.fd = -1;
	gm2.nr_regions = 2;
	gm2.regions[0] = (struct gmem_region){ .gpa = 0, .size = 64 * KiB, .hva = lo };
	gm2.regions[1] = (struct gmem_region){ .gpa = 64 * KiB, .size = 64 * KiB, .hva = hi };
	assert_int_equal(virtq_init(&vq2, &gm2, "split", 16), 0);
	vq2.desc_gpa = DESC_GPA;
	vq2.avail_gpa = AVAIL_GPA;
	vq2.used_gpa = USED_GPA;
	assert_int_equal(virtq_enable(&vq2, 0), 0);
	memcpy(lo + DESC_GPA, &d, sizeof(d));
	memcpy(lo + 64 * KiB - 4, "abcd", 4);
	memcpy(hi, "efgh", 4);
	lo[AVAIL_GPA + 2] = 1; /* avail idx 1, ring[0] = 0 */
	assert_int_equal(virtq_pop(&vq2, &f->c), 1);
	assert_int_equal(f->c.nr_out, 2);
	assert_int_equal(f->c.out_len, 8);
	assert_ptr_equal(f->c.out[0].iov_base, lo + 64 * KiB - 4);
	assert_int_equal(f->c.out[0].iov_len, 4);
	assert_ptr_equal(f->c.out[1].iov_base, hi);
	assert_int_equal(f->c.out[1].iov_len, 4);
	assert_int_equal(virtq_chain_read(&f->c, 0, buf, 8), 8);
	assert_memory_equal(buf, "abcdefgh", 8);

	/* The split needs two iovecs: a one-iovec chain cannot hold it. */
	assert_int_equal(virtq_chain_init(&one, 1), 0);
	lo[AVAIL_GPA + 2] = 2;
	memset(lo + AVAIL_GPA + 6, 0, 2);
	assert_int_equal(virtq_pop(&vq2, &one), -ENOBUFS);
	virtq_chain_destroy(&one);
	free(lo);
	free(hi);
}

static void test_total_len_overflow(void **state)
{
	struct fx *f = *state;
	struct gmem big;
	struct virtq vq2;
	uint8_t *p;

	(void)f;
	/* 3 GiB of sparse RAM: two 2 GiB readable buffers exceed 4 GiB - 1. */
	assert_int_equal(gmem_create(&big, 3 * GiB, 0, 0), 0);
	assert_int_equal(virtq_init(&vq2, &big, "big", 16), 0);
	vq2.desc_gpa = DESC_GPA;
	vq2.avail_gpa = AVAIL_GPA;
	vq2.used_gpa = USED_GPA;
	assert_int_equal(virtq_enable(&vq2, 0), 0);
	p = gmem_translate(&big, 0, 1 * MiB);
	struct virtq_desc d[2] = {
		{ .addr = cpu_to_le64(0), .len = cpu_to_le32(2 * GiB), .flags = cpu_to_le16(VIRTQ_DESC_F_NEXT), .next = cpu_to_le16(1) },
		{ .addr = cpu_to_le64(GiB), .len = cpu_to_le32(2 * GiB) },
	};
	memcpy(p + DESC_GPA, d, sizeof(d));
	p[AVAIL_GPA + 2] = 1;
	assert_int_equal(virtq_pop(&vq2, &f->c), -EOVERFLOW);
	assert_true(virtq_is_broken(&vq2));
	gmem_destroy(&big);
}

/* ---- setup validation, save/restore ------------------------------------------ */

static void try_enable(struct fx *f, uint16_t size, uint64_t desc, uint64_t avail, uint64_t used,
		       int expect)
{
	virtq_reset(&f->vq);
	f->vq.size = size;
	f->vq.desc_gpa = desc;
	f->vq.avail_gpa = avail;
	f->vq.used_gpa = used;
	assert_int_equal(virtq_enable(&f->vq, 0), expect);
	assert_int_equal(virtq_is_enabled(&f->vq), expect == 0);
	assert_false(virtq_is_broken(&f->vq));
}

static void test_enable_validation(void **state)
{
	struct fx *f = *state;
	struct virtq tmp;

	assert_int_equal(virtq_init(&tmp, &f->gm, "x", 24), -EINVAL);
	assert_int_equal(virtq_init(&tmp, &f->gm, "x", 0), -EINVAL);
	assert_int_equal(virtq_init(&tmp, NULL, "x", 16), -EINVAL);
	assert_int_equal(virtq_init(&tmp, &f->gm, NULL, 32768), 0);

	try_enable(f, 16, DESC_GPA, AVAIL_GPA, USED_GPA, 0);
	assert_int_equal(virtq_enable(&f->vq, 0), -EINVAL); /* already enabled */
	try_enable(f, 1, DESC_GPA, AVAIL_GPA, USED_GPA, 0);
	try_enable(f, 64, DESC_GPA, AVAIL_GPA, USED_GPA, 0);
	try_enable(f, 0, DESC_GPA, AVAIL_GPA, USED_GPA, -EINVAL);
	try_enable(f, 12, DESC_GPA, AVAIL_GPA, USED_GPA, -EINVAL);
	try_enable(f, 128, DESC_GPA, AVAIL_GPA, USED_GPA, -EINVAL); /* > max 64 */
	try_enable(f, 16, DESC_GPA + 8, AVAIL_GPA, USED_GPA, -EINVAL);
	try_enable(f, 16, DESC_GPA, AVAIL_GPA + 1, USED_GPA, -EINVAL);
	try_enable(f, 16, DESC_GPA, AVAIL_GPA, USED_GPA + 2, -EINVAL);
	try_enable(f, 16, DESC_GPA, AVAIL_GPA + 2, USED_GPA + 4, 0); /* minimum alignment */
	try_enable(f, 16, RAM2_END, AVAIL_GPA, USED_GPA, -EFAULT);
	try_enable(f, 16, HOLE_START - 16 * 8, AVAIL_GPA, USED_GPA, -EFAULT);
	try_enable(f, 16, DESC_GPA, HOLE_START - 8, USED_GPA, -EFAULT);
	try_enable(f, 16, DESC_GPA, AVAIL_GPA, HOLE_START - 64, -EFAULT);
	try_enable(f, 16, DESC_GPA, AVAIL_GPA, UINT64_MAX - 3, -EFAULT);
	try_enable(f, 16, UINT64_MAX & ~15ull, AVAIL_GPA, USED_GPA, -EFAULT);
	try_enable(f, 16, HOLE_END, HOLE_END + 0x1000, RAM2_END - virtq_used_bytes(16) - 2, 0);
}

static void test_save_restore(void **state)
{
	struct fx *f = *state;
	struct virtq_state st, st2;
	struct virtq vq2;

	for (uint16_t i = 0; i < 3; i++) {
		set_desc(f, i, BUF_GPA, 8, 0, 0);
		avail_push(f, i);
	}
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_int_equal(virtq_push(&f->vq, 0, 1), 0);
	virtq_flush(&f->vq);
	virtq_save(&f->vq, &st);
	assert_int_equal(st.size, QSIZE);
	assert_int_equal(st.last_avail_idx, 2);
	assert_int_equal(st.used_idx, 1);
	assert_int_equal(st.enabled, 1);
	assert_int_equal(st.desc_gpa, DESC_GPA);

	assert_int_equal(virtq_init(&vq2, &f->gm, "restored", 64), 0);
	assert_int_equal(virtq_restore(&vq2, &st, 0), 0);
	virtq_save(&vq2, &st2);
	assert_memory_equal(&st, &st2, sizeof(st));
	assert_int_equal(virtq_pop(&vq2, &f->c), 1);
	assert_int_equal(f->c.head, 2);
	assert_int_equal(virtq_push(&vq2, 1, 0), 0);
	assert_int_equal(virtq_push(&vq2, 2, 0), 0);
	virtq_flush(&vq2);
	assert_int_equal(used_idx(f), 3);

	/* Disabled queues round-trip too. */
	virtq_reset(&vq2);
	vq2.size = 32;
	virtq_save(&vq2, &st);
	assert_int_equal(virtq_restore(&f->vq, &st, 0), 0);
	assert_false(virtq_is_enabled(&f->vq));
	assert_int_equal(f->vq.size, 32);

	/* Snapshot files are untrusted: bad states are refused, queue left reset. */
	virtq_save(&vq2, &st);
	st = st2;
	st.last_avail_idx = (uint16_t)(st.used_idx + QSIZE + 1);
	assert_int_equal(virtq_restore(&vq2, &st, 0), -EINVAL);
	assert_false(virtq_is_enabled(&vq2));
	st = st2;
	st.size = 48;
	assert_int_equal(virtq_restore(&vq2, &st, 0), -EINVAL);
	st = st2;
	st.size = 128;
	assert_int_equal(virtq_restore(&vq2, &st, 0), -EINVAL);
	st = st2;
	st.enabled = 2;
	assert_int_equal(virtq_restore(&vq2, &st, 0), -EINVAL);
	st = st2;
	st.used_gpa = HOLE_START + 4;
	assert_int_equal(virtq_restore(&vq2, &st, 0), -EFAULT);
	assert_false(virtq_is_enabled(&vq2));
	assert_int_equal(vq2.used_gpa, 0);
	st = st2;
	st.enabled = 0;
	st.size = 3;
	assert_int_equal(virtq_restore(&vq2, &st, 0), -EINVAL);
}

static void test_chain_init(void **state)
{
	struct virtq_chain c;

	(void)state;
	assert_int_equal(virtq_chain_init(&c, 0), -EINVAL);
	assert_int_equal(virtq_chain_init(&c, 4 * VIRTQ_MAX_SIZE + 1), -EINVAL);
	assert_int_equal(virtq_chain_init(&c, 1), 0);
	assert_int_equal(c.capacity, 1);
	virtq_chain_destroy(&c);
	assert_null(c.iov);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_empty),
		T(test_not_enabled),
		T(test_readonly),
		T(test_writeonly),
		T(test_mixed_chain),
		T(test_chain_copy_helpers),
		T(test_indirect),
		T(test_direct_then_indirect),
		T(test_indirect_bound),
		T(test_zero_length_allowed),
		T(test_buffer_above_hole),
		T(test_batch_and_publish),
		T(test_push_errors),
		T(test_unpop),
		T(test_wrap_around),
		T(test_no_interrupt_flag),
		T(test_event_idx_notify),
		T(test_event_idx_wrap),
		T(test_event_idx_lapped),
		T(test_kick_suppression_flag),
		T(test_kick_suppression_event_idx),
		T(test_bad_loop),
		T(test_bad_self_loop_indirect),
		T(test_bad_chain_too_long),
		T(test_bad_next_range),
		T(test_bad_head),
		T(test_bad_avail_jump),
		T(test_bad_too_many_in_flight),
		T(test_bad_avail_backwards),
		T(test_bad_addr_outside_ram),
		T(test_bad_addr_straddles_end),
		T(test_bad_addr_overflow),
		T(test_bad_addr_into_hole),
		T(test_bad_addr_in_hole),
		T(test_bad_nested_indirect),
		T(test_bad_indirect_next),
		T(test_bad_indirect_len_zero),
		T(test_bad_indirect_len_odd),
		T(test_bad_indirect_not_negotiated),
		T(test_bad_indirect_table_outside_ram),
		T(test_bad_indirect_table_overflow),
		T(test_bad_indirect_next_range),
		T(test_bad_read_after_write),
		T(test_bad_read_after_zero_len_write),
		T(test_bad_read_after_write_indirect),
		T(test_bad_too_many_iovecs),
		T(test_broken_until_reset),
		T(test_split_adjacent_regions),
		T(test_total_len_overflow),
		T(test_enable_validation),
		T(test_save_restore),
		T(test_chain_init),
	};

	return cmocka_run_group_tests_name("virtqueue", tests, NULL, NULL);
}
