/*
 * Unit tests for devices/virtio_blk: the test plays both the transport (it
 * sets up the queues and calls the device hooks) and the driver (it writes
 * descriptor chains into a real struct gmem), against a temporary image
 * file. Completions arrive through a real event loop that the test runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "channel/evloop.h"
#include "devices/blk_io.h"
#include "devices/virtio_blk.h"
#include "virtio/virtqueue.h"
#include "vmm/gmem.h"
#include "vmm/vm.h"

#define RAM_SIZE    (2 * MiB)
#define QSIZE       64u
#define NQ          2u
#define RING_GPA(q) (0x1000ull + (uint64_t)(q) * 0x4000)  /* desc, +0x1000 avail, +0x2000 used */
#define HDR_GPA     0x20000ull
#define STATUS_GPA  0x21000ull
#define DATA_GPA    0x40000ull   /* up to 1 MiB of data buffers */
#define IMG_SECTORS 2048u        /* 1 MiB image */

struct fx {
	struct vm vm;
	struct vm_config cfg;
	struct virtio_dev vdev;
	char path[64];
	int img;                   /* the test's own fd on the image */
	uint16_t avail_idx[NQ];
	uint16_t used_seen[NQ];
	uint16_t next_desc[NQ];
	unsigned signals[NQ];
	unsigned resets;
	const char *engine;
};

static void fake_signal_used(struct virtio_dev *vdev, unsigned q)
{
	struct fx *f = (struct fx *)((uint8_t *)vdev - offsetof(struct fx, vdev));

	assert_true(q < NQ);
	f->signals[q]++;
}

static void fake_needs_reset(struct virtio_dev *vdev)
{
	struct fx *f = (struct fx *)((uint8_t *)vdev - offsetof(struct fx, vdev));

	f->resets++;
}

static void *hva(struct fx *f, uint64_t gpa)
{
	void *p = gmem_translate(&f->vm.mem, gpa, 1);

	assert_non_null(p);
	return p;
}

/* Sector s of the initial image: every byte is (s * 7 + offset / 512) & 0xff... simply s-derived. */
static uint8_t pattern(uint64_t sector, unsigned i)
{
	return (uint8_t)(sector * 7 + i / 64);
}

/* ---- transport side ---------------------------------------------------------- */

static void enable_queue(struct fx *f, unsigned q, uint64_t features)
{
	struct virtq *vq = &f->vdev.vqs[q];

	virtq_reset(vq);
	vq->size = QSIZE;
	vq->desc_gpa = RING_GPA(q);
	vq->avail_gpa = RING_GPA(q) + 0x1000;
	vq->used_gpa = RING_GPA(q) + 0x2000;
	memset(hva(f, RING_GPA(q)), 0, 0x3000);
	assert_int_equal(virtq_enable(vq, features), 0);
	f->avail_idx[q] = f->used_seen[q] = f->next_desc[q] = 0;
}

static void enable_queues(struct fx *f, uint64_t features)
{
	for (unsigned q = 0; q < f->vdev.num_queues && q < NQ; q++)
		enable_queue(f, q, features);
	f->vdev.driver_features = features;
}

static int create_dev(struct fx *f, const char *extra, char *err, size_t errlen)
{
	char args[256];

	snprintf(args, sizeof(args), "path=%s,queues=%u,serial=SN-0042,io=%s%s", f->path, NQ,
		 f->engine, extra);
	return virtio_blk_kind.create(&f->vm, args, &f->vdev, err, errlen);
}

static void start_dev(struct fx *f, const char *extra)
{
	char err[256] = "";

	assert_int_equal(create_dev(f, extra, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_int_equal(f->vdev.num_queues, NQ);
	f->vdev.signal_used = fake_signal_used;
	f->vdev.needs_reset = fake_needs_reset;
	for (unsigned q = 0; q < f->vdev.num_queues; q++) {
		char name[32];

		snprintf(name, sizeof(name), "blk.q%u", q);
		assert_int_equal(virtq_init(&f->vdev.vqs[q], &f->vm.mem, name, f->vdev.queue_max_size), 0);
	}
	enable_queues(f, f->vdev.device_features | (1ull << VIRTIO_F_VERSION_1));
	assert_int_equal(f->vdev.ops->activate(&f->vdev), 0);
}

/* What the transport does when the driver writes status 0. */
static void transport_reset(struct fx *f)
{
	for (unsigned q = 0; q < f->vdev.num_queues; q++)
		virtq_reset(&f->vdev.vqs[q]);
	f->vdev.ops->reset(&f->vdev);
}

static int setup_engine(void **state, const char *engine)
{
	struct fx *f = calloc(1, sizeof(*f));
	uint8_t sector[512];

	assert_non_null(f);
	f->engine = engine;
	assert_int_equal(gmem_create(&f->vm.mem, RAM_SIZE, RAM_SIZE, RAM_SIZE), 0);
	assert_int_equal(evloop_create(&f->vm.loop), 0);
	f->cfg.ncpus = 3;
	f->vm.cfg = &f->cfg;
	f->vm.ncpus = 3;

	snprintf(f->path, sizeof(f->path), "/tmp/test_virtio_blk.XXXXXX");
	f->img = mkstemp(f->path);
	assert_true(f->img >= 0);
	for (unsigned s = 0; s < IMG_SECTORS; s++) {
		for (unsigned i = 0; i < sizeof(sector); i++)
			sector[i] = pattern(s, i);
		assert_int_equal(pwrite(f->img, sector, sizeof(sector), (off_t)s * 512), 512);
	}
	*state = f;
	return 0;
}

static int setup_uring(void **state) { return setup_engine(state, "uring"); }
static int setup_threads(void **state) { return setup_engine(state, "threads"); }

static int setup_started(void **state)
{
	setup_uring(state);
	start_dev(*state, "");
	return 0;
}

static int setup_started_threads(void **state)
{
	setup_threads(state);
	start_dev(*state, "");
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	blk_io_test_fail_fallocate(0);   /* whatever a failed test left */
	if (f->vdev.ops)
		f->vdev.ops->destroy(&f->vdev);
	evloop_destroy(f->vm.loop);
	gmem_destroy(&f->vm.mem);
	close(f->img);
	unlink(f->path);
	free(f);
	return 0;
}

/* ---- driver side --------------------------------------------------------------- */

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

static void put_desc(struct fx *f, uint64_t table, uint16_t i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	struct virtq_desc d = {
		.addr = cpu_to_le64(addr),
		.len = cpu_to_le32(len),
		.flags = cpu_to_le16(flags),
		.next = cpu_to_le16(next),
	};

	assert_int_equal(gmem_write(&f->vm.mem, table + (uint64_t)i * sizeof(d), &d, sizeof(d)), 0);
}

static void avail_push(struct fx *f, unsigned q, uint16_t head)
{
	uint64_t avail = RING_GPA(q) + 0x1000;
	le16 v = cpu_to_le16(head);

	assert_int_equal(gmem_write(&f->vm.mem, avail + 4 + 2 * (uint64_t)(f->avail_idx[q] % QSIZE),
				    &v, 2), 0);
	f->avail_idx[q]++;
	v = cpu_to_le16(f->avail_idx[q]);
	assert_int_equal(gmem_write(&f->vm.mem, avail + 2, &v, 2), 0);
}

/* Lay segs out as a direct chain on queue q and make it available. Returns the head. */
static uint16_t offer(struct fx *f, unsigned q, const struct seg *segs, unsigned n)
{
	uint16_t head = f->next_desc[q] % QSIZE;

	for (unsigned i = 0; i < n; i++) {
		uint16_t idx = (uint16_t)((head + i) % QSIZE);
		uint16_t flags = (segs[i].write ? VIRTQ_DESC_F_WRITE : 0) |
				 (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0);

		put_desc(f, RING_GPA(q), idx, segs[i].gpa, segs[i].len, flags,
			 (uint16_t)((idx + 1) % QSIZE));
	}
	f->next_desc[q] = (uint16_t)((head + n) % QSIZE);
	avail_push(f, q, head);
	return head;
}

static uint16_t used_idx(struct fx *f, unsigned q)
{
	le16 v;

	assert_int_equal(gmem_read(&f->vm.mem, RING_GPA(q) + 0x2000 + 2, &v, 2), 0);
	return le16_to_cpu(v);
}

static void used_elem(struct fx *f, unsigned q, uint16_t slot, uint32_t *id, uint32_t *len)
{
	struct virtq_used_elem e;

	assert_int_equal(gmem_read(&f->vm.mem, RING_GPA(q) + 0x2000 + 4 + 8 * (uint64_t)(slot % QSIZE),
				   &e, sizeof(e)), 0);
	*id = le32_to_cpu(e.id);
	*len = le32_to_cpu(e.len);
}

/* Run the event loop until queue q's used index reaches target (or 5 s pass). */
static void wait_used(struct fx *f, unsigned q, uint16_t target)
{
	uint64_t deadline = monotonic_ns() + 5000000000ull;

	while ((uint16_t)(used_idx(f, q) - target) > 0x8000 && monotonic_ns() < deadline)
		assert_true(evloop_run_once(f->vm.loop, 20) >= 0);
	assert_int_equal(used_idx(f, q), target);
}

/* Let the loop run a while; nothing is expected to complete. */
static void settle(struct fx *f)
{
	for (int i = 0; i < 5; i++)
		assert_true(evloop_run_once(f->vm.loop, 10) >= 0);
}

static void kick(struct fx *f, unsigned q)
{
	f->vdev.ops->queue_notify(&f->vdev, q);
}

static void put_hdr(struct fx *f, uint64_t gpa, uint32_t type, uint64_t sector)
{
	struct virtio_blk_outhdr h = {
		.type = cpu_to_le32(type),
		.sector = cpu_to_le64(sector),
	};

	assert_int_equal(gmem_write(&f->vm.mem, gpa, &h, sizeof(h)), 0);
}

/* Offer a chain, kick, wait; check the used element; return the status byte at status_gpa. */
static uint8_t run_chain(struct fx *f, unsigned q, const struct seg *segs, unsigned n,
			 uint64_t status_gpa, uint32_t *used_len)
{
	uint16_t head, slot = f->used_seen[q];
	uint32_t id, len;

	*(uint8_t *)hva(f, status_gpa) = 0xee;
	head = offer(f, q, segs, n);
	kick(f, q);
	wait_used(f, q, (uint16_t)(slot + 1));
	f->used_seen[q]++;
	used_elem(f, q, slot, &id, &len);
	assert_int_equal(id, head);
	if (used_len)
		*used_len = len;
	return *(uint8_t *)hva(f, status_gpa);
}

/* The usual layout: header, one data buffer, status. */
static uint8_t simple_req(struct fx *f, unsigned q, uint32_t type, uint64_t sector, uint32_t len,
			  bool data_write, uint32_t *used_len)
{
	struct seg segs[3] = {
		{ HDR_GPA, 16, false },
		{ DATA_GPA, len, data_write },
		{ STATUS_GPA, 1, true },
	};

	put_hdr(f, HDR_GPA, type, sector);
	if (len == 0) {
		segs[1] = segs[2];
		return run_chain(f, q, segs, 2, STATUS_GPA, used_len);
	}
	return run_chain(f, q, segs, 3, STATUS_GPA, used_len);
}

static void check_pattern(const uint8_t *p, uint64_t sector, unsigned nsect)
{
	for (unsigned s = 0; s < nsect; s++)
		for (unsigned i = 0; i < 512; i++)
			if (p[s * 512 + i] != pattern(sector + s, i))
				fail_msg("sector %llu byte %u: %#x, expected %#x",
					 (unsigned long long)(sector + s), i, p[s * 512 + i],
					 pattern(sector + s, i));
}

static void read_image(struct fx *f, uint64_t off, void *buf, size_t len)
{
	assert_int_equal(pread(f->img, buf, len, (off_t)off), (ssize_t)len);
}

/* ---- config and features ------------------------------------------------------- */

static void test_config(void **state)
{
	struct fx *f = *state;
	struct virtio_blk_config c;
	uint64_t feat = f->vdev.device_features;

	assert_int_equal(f->vdev.config_size, sizeof(c));
	assert_int_equal(f->vdev.ops->device_id, VIRTIO_ID_BLOCK);
	f->vdev.ops->cfg_read(&f->vdev, 0, &c, sizeof(c));
	assert_int_equal(le64_to_cpu(c.capacity), IMG_SECTORS);
	assert_int_equal(le32_to_cpu(c.seg_max), VIRTIO_BLK_QUEUE_SIZE - 2);
	assert_int_equal(le32_to_cpu(c.blk_size), 512);
	assert_int_equal(le16_to_cpu(c.num_queues), NQ);
	assert_int_equal(le32_to_cpu(c.max_discard_seg), 1);
	assert_int_equal(le32_to_cpu(c.max_write_zeroes_seg), 1);
	assert_true(le32_to_cpu(c.max_discard_sectors) > 0);
	assert_int_equal(c.write_zeroes_may_unmap, 1);
	/* A partial read at an offset, as a driver reading one field does. */
	uint16_t nq;
	f->vdev.ops->cfg_read(&f->vdev, offsetof(struct virtio_blk_config, num_queues), &nq, 2);
	assert_int_equal(nq, NQ);
	/* Writes to the config space change nothing. */
	uint8_t junk[8] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	f->vdev.ops->cfg_write(&f->vdev, 0, junk, sizeof(junk));
	f->vdev.ops->cfg_read(&f->vdev, 0, &c, sizeof(c));
	assert_int_equal(le64_to_cpu(c.capacity), IMG_SECTORS);

	for (unsigned b = 0; b < 64; b++) {
		static const unsigned want[] = {
			VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH,
			VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES,
			VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX,
		};
		bool expect = false;

		for (unsigned i = 0; i < ARRAY_SIZE(want); i++)
			expect |= want[i] == b;
		if (((feat >> b) & 1) != expect)
			fail_msg("feature bit %u: offered %d, expected %d", b, (int)((feat >> b) & 1),
				 expect);
	}
	assert_int_equal(f->vdev.queue_max_size, VIRTIO_BLK_QUEUE_SIZE);
}

static void test_config_readonly(void **state)
{
	struct fx *f = *state;
	uint64_t feat;

	start_dev(f, ",readonly=on");
	feat = f->vdev.device_features;
	assert_true(feat & (1ull << VIRTIO_BLK_F_RO));
	assert_false(feat & (1ull << VIRTIO_BLK_F_DISCARD));
	assert_false(feat & (1ull << VIRTIO_BLK_F_WRITE_ZEROES));
}

static void test_default_queues_per_vcpu(void **state)
{
	struct fx *f = *state;
	char args[128], err[128] = "";
	uint16_t nq;

	snprintf(args, sizeof(args), "path=%s", f->path);
	assert_int_equal(virtio_blk_kind.create(&f->vm, args, &f->vdev, err, sizeof(err)), 0);
	assert_int_equal(f->vdev.num_queues, 3);
	f->vdev.ops->cfg_read(&f->vdev, offsetof(struct virtio_blk_config, num_queues), &nq, 2);
	assert_int_equal(nq, 3);
	assert_string_equal(virtio_blk_kind.option, "disk");
	assert_true(virtio_blk_kind.repeatable);
}

/* ---- well-formed requests -------------------------------------------------------- */

static void test_read(void **state)
{
	struct fx *f = *state;
	uint32_t used;

	memset(hva(f, DATA_GPA), 0, 3 * 512);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_IN, 5, 3 * 512, true, &used), VIRTIO_BLK_S_OK);
	assert_int_equal(used, 3 * 512 + 1);
	check_pattern(hva(f, DATA_GPA), 5, 3);
	assert_true(f->signals[0] >= 1);
	assert_int_equal(f->resets, 0);
	/* The last sector. */
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_IN, IMG_SECTORS - 1, 512, true, NULL),
			 VIRTIO_BLK_S_OK);
	check_pattern(hva(f, DATA_GPA), IMG_SECTORS - 1, 1);
}

static void test_read_any_layout(void **state)
{
	struct fx *f = *state;
	/* Header split 5 + 11 across two descriptors; data in three pieces, the last
	 * also holding the status byte. */
	struct seg segs[] = {
		{ HDR_GPA, 5, false },
		{ HDR_GPA + 0x100, 11, false },
		{ DATA_GPA, 100, true },
		{ DATA_GPA + 0x1000, 700, true },
		{ DATA_GPA + 0x2000, 225, true },   /* 224 data + status */
	};
	uint8_t hdr[16], buf[1024];
	struct virtio_blk_outhdr h = { .type = cpu_to_le32(VIRTIO_BLK_T_IN), .sector = cpu_to_le64(9) };
	uint32_t used;

	memcpy(hdr, &h, sizeof(h));
	memcpy(hva(f, HDR_GPA), hdr, 5);
	memcpy(hva(f, HDR_GPA + 0x100), hdr + 5, 11);
	*(uint8_t *)hva(f, DATA_GPA + 0x2000 + 224) = 0xee;
	assert_int_equal(run_chain(f, 0, segs, ARRAY_SIZE(segs), DATA_GPA + 0x2000 + 224, &used),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(used, 1025);
	memcpy(buf, hva(f, DATA_GPA), 100);
	memcpy(buf + 100, hva(f, DATA_GPA + 0x1000), 700);
	memcpy(buf + 800, hva(f, DATA_GPA + 0x2000), 224);
	check_pattern(buf, 9, 2);
}

static void test_write(void **state)
{
	struct fx *f = *state;
	uint8_t buf[2048];
	uint32_t used;

	for (unsigned i = 0; i < 2048; i++)
		((uint8_t *)hva(f, DATA_GPA))[i] = (uint8_t)(i * 13 + 1);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_OUT, 100, 2048, false, &used),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(used, 1);
	read_image(f, 100 * 512, buf, sizeof(buf));
	assert_memory_equal(buf, hva(f, DATA_GPA), sizeof(buf));
	/* Neighbours untouched. */
	read_image(f, 99 * 512, buf, 512);
	check_pattern(buf, 99, 1);
	read_image(f, 104 * 512, buf, 512);
	check_pattern(buf, 104, 1);
	/* And it reads back through the device. */
	memset(hva(f, DATA_GPA + 0x10000), 0, 2048);
	{
		struct seg segs[] = {
			{ HDR_GPA, 16, false },
			{ DATA_GPA + 0x10000, 2048, true },
			{ STATUS_GPA, 1, true },
		};

		put_hdr(f, HDR_GPA, VIRTIO_BLK_T_IN, 100);
		assert_int_equal(run_chain(f, 0, segs, 3, STATUS_GPA, NULL), VIRTIO_BLK_S_OK);
	}
	assert_memory_equal(hva(f, DATA_GPA + 0x10000), hva(f, DATA_GPA), 2048);
}

static void test_write_header_and_data_in_one_descriptor(void **state)
{
	struct fx *f = *state;
	struct seg segs[] = {
		{ DATA_GPA, 16 + 512, false },
		{ STATUS_GPA, 1, true },
	};
	uint8_t buf[512];

	put_hdr(f, DATA_GPA, VIRTIO_BLK_T_OUT, 7);
	memset(hva(f, DATA_GPA + 16), 0x5a, 512);
	assert_int_equal(run_chain(f, 0, segs, 2, STATUS_GPA, NULL), VIRTIO_BLK_S_OK);
	read_image(f, 7 * 512, buf, 512);
	for (unsigned i = 0; i < 512; i++)
		assert_int_equal(buf[i], 0x5a);
}

static void test_flush(void **state)
{
	struct fx *f = *state;
	uint32_t used;
	struct seg segs[] = {
		{ HDR_GPA, 16, false },
		{ STATUS_GPA, 4, true },   /* a larger writable part: the status is its last byte */
	};

	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_FLUSH, 0, 0, false, &used), VIRTIO_BLK_S_OK);
	assert_int_equal(used, 1);
	put_hdr(f, HDR_GPA, VIRTIO_BLK_T_FLUSH, 0);
	*(uint8_t *)hva(f, STATUS_GPA + 3) = 0xee;
	assert_int_equal(run_chain(f, 0, segs, 2, STATUS_GPA + 3, NULL), VIRTIO_BLK_S_OK);
}

static void test_get_id(void **state)
{
	struct fx *f = *state;
	uint32_t used;
	uint8_t want[20] = "SN-0042";

	memset(hva(f, DATA_GPA), 0xaa, 20);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_GET_ID, 0, 20, true, &used), VIRTIO_BLK_S_OK);
	assert_int_equal(used, 21);
	assert_memory_equal(hva(f, DATA_GPA), want, 20);
	/* A short buffer gets what fits, never more. */
	memset(hva(f, DATA_GPA), 0xaa, 20);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_GET_ID, 0, 4, true, &used), VIRTIO_BLK_S_OK);
	assert_int_equal(used, 5);
	assert_memory_equal(hva(f, DATA_GPA), "SN-0", 4);
	assert_int_equal(((uint8_t *)hva(f, DATA_GPA))[4], 0xaa);
}

static void test_get_id_without_serial(void **state)
{
	struct fx *f = *state;
	char args[128], err[128] = "";

	snprintf(args, sizeof(args), "path=%s,queues=2", f->path);
	assert_int_equal(virtio_blk_kind.create(&f->vm, args, &f->vdev, err, sizeof(err)), 0);
	f->vdev.signal_used = fake_signal_used;
	f->vdev.needs_reset = fake_needs_reset;
	for (unsigned q = 0; q < f->vdev.num_queues; q++)
		assert_int_equal(virtq_init(&f->vdev.vqs[q], &f->vm.mem, "q", 256), 0);
	enable_queues(f, f->vdev.device_features);
	assert_int_equal(f->vdev.ops->activate(&f->vdev), 0);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_GET_ID, 0, 20, true, NULL),
			 VIRTIO_BLK_S_UNSUPP);
}

static void test_discard_and_write_zeroes(void **state)
{
	struct fx *f = *state;
	struct virtio_blk_discard_write_zeroes seg = {
		.sector = cpu_to_le64(200), .num_sectors = cpu_to_le32(8), .flags = 0,
	};
	uint8_t buf[8 * 512], zero[8 * 512] = { 0 };

	assert_int_equal(gmem_write(&f->vm.mem, DATA_GPA, &seg, sizeof(seg)), 0);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, false, NULL),
			 VIRTIO_BLK_S_OK);
	read_image(f, 200 * 512, buf, sizeof(buf));
	assert_memory_equal(buf, zero, sizeof(buf));
	read_image(f, 208 * 512, buf, 512);
	check_pattern(buf, 208, 1);
	read_image(f, 199 * 512, buf, 512);
	check_pattern(buf, 199, 1);

	/* Write zeroes with unmap. */
	seg.sector = cpu_to_le64(300);
	seg.flags = cpu_to_le32(VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
	assert_int_equal(gmem_write(&f->vm.mem, DATA_GPA, &seg, sizeof(seg)), 0);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, false, NULL),
			 VIRTIO_BLK_S_OK);
	read_image(f, 300 * 512, buf, sizeof(buf));
	assert_memory_equal(buf, zero, sizeof(buf));

	/* Discard: succeeds; the range may read back as anything, the file keeps its size. */
	seg.sector = cpu_to_le64(400);
	seg.flags = 0;
	assert_int_equal(gmem_write(&f->vm.mem, DATA_GPA, &seg, sizeof(seg)), 0);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_DISCARD, 0, 16, false, NULL),
			 VIRTIO_BLK_S_OK);
	struct stat st;
	assert_int_equal(fstat(f->img, &st), 0);
	assert_int_equal(st.st_size, IMG_SECTORS * 512);
	read_image(f, 408 * 512, buf, 512);
	check_pattern(buf, 408, 1);
}

static void test_multiqueue(void **state)
{
	struct fx *f = *state;

	assert_int_equal(simple_req(f, 1, VIRTIO_BLK_T_IN, 33, 512, true, NULL), VIRTIO_BLK_S_OK);
	check_pattern(hva(f, DATA_GPA), 33, 1);
	assert_true(f->signals[1] >= 1);
	assert_int_equal(f->signals[0], 0);
	assert_int_equal(used_idx(f, 0), 0);
}

/* Many requests in one kick: all complete, interrupts are batched. */
static void test_batch(void **state)
{
	struct fx *f = *state;
	enum { N = 20 };
	uint16_t heads[N];
	bool seen[N] = { false };

	for (unsigned i = 0; i < N; i++) {
		struct seg segs[] = {
			{ HDR_GPA + 16 * i, 16, false },
			{ DATA_GPA + 0x1000 * i, 1024, true },
			{ STATUS_GPA + i, 1, true },
		};

		put_hdr(f, HDR_GPA + 16 * i, VIRTIO_BLK_T_IN, 2 * i);
		*(uint8_t *)hva(f, STATUS_GPA + i) = 0xee;
		heads[i] = offer(f, 0, segs, 3);
	}
	kick(f, 0);
	wait_used(f, 0, N);
	for (unsigned slot = 0; slot < N; slot++) {
		uint32_t id, len;

		used_elem(f, 0, slot, &id, &len);
		for (unsigned i = 0; i < N; i++) {
			if (heads[i] == id) {
				assert_false(seen[i]);
				seen[i] = true;
				assert_int_equal(len, 1025);
			}
		}
	}
	for (unsigned i = 0; i < N; i++) {
		assert_true(seen[i]);
		assert_int_equal(*(uint8_t *)hva(f, STATUS_GPA + i), VIRTIO_BLK_S_OK);
		check_pattern(hva(f, DATA_GPA + 0x1000 * i), 2 * i, 2);
	}
	/* Interrupts are per completion batch, not per request. */
	assert_true(f->signals[0] >= 1);
	assert_true(f->signals[0] < N);
}

static void offer_reads(struct fx *f, unsigned n);

/* Without EVENT_IDX: one interrupt per completion batch; none under NO_INTERRUPT. */
static void test_interrupts_batched(void **state)
{
	struct fx *f = *state;
	le16 flags = cpu_to_le16(VIRTQ_AVAIL_F_NO_INTERRUPT);

	enable_queues(f, f->vdev.device_features & ~(1ull << VIRTIO_F_EVENT_IDX));
	offer_reads(f, 12);
	kick(f, 0);
	/* pause reaps every completion in one batch. */
	assert_int_equal(f->vdev.ops->pause(&f->vdev), 0);
	assert_int_equal(used_idx(f, 0), 12);
	assert_int_equal(f->signals[0], 1);
	assert_int_equal(f->vdev.ops->resume(&f->vdev), 0);

	assert_int_equal(gmem_write(&f->vm.mem, RING_GPA(0) + 0x1000, &flags, 2), 0);
	f->next_desc[0] = 0;
	offer_reads(f, 4);
	kick(f, 0);
	wait_used(f, 0, 16);
	settle(f);
	assert_int_equal(f->signals[0], 1);
}

static void test_indirect(void **state)
{
	struct fx *f = *state;
	uint64_t table = 0x30000;
	uint16_t head = f->next_desc[0];

	put_hdr(f, HDR_GPA, VIRTIO_BLK_T_IN, 77);
	put_desc(f, table, 0, HDR_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
	put_desc(f, table, 1, DATA_GPA, 512, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
	put_desc(f, table, 2, STATUS_GPA, 1, VIRTQ_DESC_F_WRITE, 0);
	put_desc(f, RING_GPA(0), head, table, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	f->next_desc[0]++;
	*(uint8_t *)hva(f, STATUS_GPA) = 0xee;
	avail_push(f, 0, head);
	kick(f, 0);
	wait_used(f, 0, 1);
	assert_int_equal(*(uint8_t *)hva(f, STATUS_GPA), VIRTIO_BLK_S_OK);
	check_pattern(hva(f, DATA_GPA), 77, 1);
}

/* ---- bad requests: a status, never a crash ------------------------------------------ */

static void test_read_out_of_range(void **state)
{
	struct fx *f = *state;
	uint8_t canary[512];

	memset(hva(f, DATA_GPA), 0x77, 1024);
	memcpy(canary, hva(f, DATA_GPA), 512);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_IN, IMG_SECTORS, 512, true, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_IN, IMG_SECTORS - 1, 1024, true, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_IN, UINT64_MAX, 512, true, NULL),
			 VIRTIO_BLK_S_IOERR);
	/* sector * 512 wraps to a small offset: still refused. */
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_IN, (1ull << 55), 512, true, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_memory_equal(hva(f, DATA_GPA), canary, 512);
	/* A zero-length read at the very end is fine. */
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_IN, IMG_SECTORS, 0, true, NULL),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(f->resets, 0);
}

static void test_write_out_of_range(void **state)
{
	struct fx *f = *state;
	struct stat st;

	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_OUT, IMG_SECTORS, 512, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_OUT, IMG_SECTORS - 1, 1024, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_OUT, UINT64_MAX / 512 + 1, 512, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(fstat(f->img, &st), 0);
	assert_int_equal(st.st_size, IMG_SECTORS * 512);
}

static void test_unaligned_length(void **state)
{
	struct fx *f = *state;
	uint8_t buf[512];

	memset(hva(f, DATA_GPA), 0x33, 1024);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_IN, 0, 511, true, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_IN, 0, 513, true, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(((uint8_t *)hva(f, DATA_GPA))[0], 0x33);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_OUT, 0, 100, false, NULL), VIRTIO_BLK_S_IOERR);
	read_image(f, 0, buf, 512);
	check_pattern(buf, 0, 1);
}

static void test_unknown_types(void **state)
{
	struct fx *f = *state;
	static const uint32_t types[] = { 2, 3, 5, VIRTIO_BLK_T_GET_LIFETIME,
					  VIRTIO_BLK_T_SECURE_ERASE, 0x80000000u, UINT32_MAX };

	for (unsigned i = 0; i < ARRAY_SIZE(types); i++)
		assert_int_equal(simple_req(f, 0, types[i], 0, 512, true, NULL), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(f->resets, 0);
}

static void test_bad_discard(void **state)
{
	struct fx *f = *state;
	struct virtio_blk_discard_write_zeroes segs[2] = {
		{ .sector = cpu_to_le64(10), .num_sectors = cpu_to_le32(1) },
		{ .sector = cpu_to_le64(20), .num_sectors = cpu_to_le32(1) },
	};
	struct virtio_blk_discard_write_zeroes *s = hva(f, DATA_GPA);
	uint8_t buf[512];

	/* Two segments: more than max_discard_seg. */
	assert_int_equal(gmem_write(&f->vm.mem, DATA_GPA, segs, sizeof(segs)), 0);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_WRITE_ZEROES, 0, 32, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	/* Not a whole segment. */
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_DISCARD, 0, 8, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_DISCARD, 0, 0, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	/* Unmap on a discard, unknown flags. */
	s->flags = cpu_to_le32(VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_DISCARD, 0, 16, false, NULL),
			 VIRTIO_BLK_S_UNSUPP);
	s->flags = cpu_to_le32(2);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, false, NULL),
			 VIRTIO_BLK_S_UNSUPP);
	/* Past the end, wrapping, too long. */
	s->flags = 0;
	s->sector = cpu_to_le64(IMG_SECTORS - 1);
	s->num_sectors = cpu_to_le32(2);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	s->sector = cpu_to_le64(UINT64_MAX);
	s->num_sectors = cpu_to_le32(1);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_DISCARD, 0, 16, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	s->sector = 0;
	s->num_sectors = cpu_to_le32(UINT32_MAX);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	read_image(f, 0, buf, 512);
	check_pattern(buf, 0, 1);
	read_image(f, (IMG_SECTORS - 1) * 512, buf, 512);
	check_pattern(buf, IMG_SECTORS - 1, 1);

	/* Not negotiated: UNSUPP. */
	f->vdev.driver_features &= ~((1ull << VIRTIO_BLK_F_DISCARD) | (1ull << VIRTIO_BLK_F_WRITE_ZEROES));
	s->sector = cpu_to_le64(10);
	s->num_sectors = cpu_to_le32(1);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_DISCARD, 0, 16, false, NULL),
			 VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, false, NULL),
			 VIRTIO_BLK_S_UNSUPP);
	read_image(f, 10 * 512, buf, 512);
	check_pattern(buf, 10, 1);
	assert_int_equal(f->resets, 0);
}

static void test_readonly_refuses_writes(void **state)
{
	struct fx *f = *state;
	struct virtio_blk_discard_write_zeroes seg = {
		.sector = cpu_to_le64(0), .num_sectors = cpu_to_le32(4),
	};
	uint8_t buf[4 * 512];

	start_dev(f, ",readonly=on");
	memset(hva(f, DATA_GPA), 0x11, 2048);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_OUT, 0, 2048, false, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(gmem_write(&f->vm.mem, DATA_GPA, &seg, sizeof(seg)), 0);
	/* Even a driver that ignores the missing feature bits gets an error. */
	f->vdev.driver_features |= (1ull << VIRTIO_BLK_F_DISCARD) | (1ull << VIRTIO_BLK_F_WRITE_ZEROES);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_DISCARD, 0, 16, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	read_image(f, 0, buf, sizeof(buf));
	check_pattern(buf, 0, 4);
	/* Reads and flushes work. */
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_IN, 1, 512, true, NULL), VIRTIO_BLK_S_OK);
	check_pattern(hva(f, DATA_GPA), 1, 1);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_FLUSH, 0, 0, false, NULL), VIRTIO_BLK_S_OK);
}

/* The image shrank under us: the read past its new end is an I/O error. */
static void test_host_io_error(void **state)
{
	struct fx *f = *state;

	assert_int_equal(ftruncate(f->img, 512 * 512), 0);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_IN, 1000, 512, true, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_IN, 10, 512, true, NULL), VIRTIO_BLK_S_OK);
	check_pattern(hva(f, DATA_GPA), 10, 1);
	assert_int_equal(f->resets, 0);
}

/* ---- malformed chains: the device asks for a reset ---------------------------------- */

/* After a reset from the transport, the device works again. */
static void check_recovers(struct fx *f)
{
	transport_reset(f);
	enable_queues(f, f->vdev.device_features);
	assert_int_equal(f->vdev.ops->activate(&f->vdev), 0);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_IN, 3, 512, true, NULL), VIRTIO_BLK_S_OK);
	check_pattern(hva(f, DATA_GPA), 3, 1);
}

static void expect_needs_reset(struct fx *f, const struct seg *segs, unsigned n)
{
	uint16_t before = used_idx(f, 0);

	offer(f, 0, segs, n);
	kick(f, 0);
	settle(f);
	assert_int_equal(f->resets, 1);
	assert_int_equal(used_idx(f, 0), before);
	/* Later requests are left alone until the reset. */
	put_hdr(f, HDR_GPA + 0x200, VIRTIO_BLK_T_IN, 0);
	{
		struct seg ok[] = {
			{ HDR_GPA + 0x200, 16, false },
			{ DATA_GPA, 512, true },
			{ STATUS_GPA, 1, true },
		};

		offer(f, 0, ok, 3);
	}
	kick(f, 0);
	settle(f);
	assert_int_equal(used_idx(f, 0), before);
	assert_int_equal(f->resets, 1);
	check_recovers(f);
}

static void test_status_in_readonly_descriptor(void **state)
{
	struct fx *f = *state;
	struct seg segs[] = {
		{ HDR_GPA, 16, false },
		{ DATA_GPA, 512, false },
		{ STATUS_GPA, 1, false },
	};

	put_hdr(f, HDR_GPA, VIRTIO_BLK_T_OUT, 0);
	*(uint8_t *)hva(f, STATUS_GPA) = 0xee;
	expect_needs_reset(f, segs, 3);
}

static void test_zero_length_status(void **state)
{
	struct fx *f = *state;
	struct seg segs[] = {
		{ HDR_GPA, 16, false },
		{ DATA_GPA, 512, true },
		{ STATUS_GPA, 0, true },
	};
	uint8_t buf[512];

	/* The last writable byte is then data: it is not touched, nothing is read. */
	put_hdr(f, HDR_GPA, VIRTIO_BLK_T_IN, 0);
	memset(hva(f, DATA_GPA), 0x44, 512);
	offer(f, 0, segs, 3);
	kick(f, 0);
	wait_used(f, 0, 1);
	/* 511 bytes of data is not a whole sector: IOERR in the last byte. */
	memcpy(buf, hva(f, DATA_GPA), 512);
	assert_int_equal(buf[511], VIRTIO_BLK_S_IOERR);
	assert_int_equal(buf[0], 0x44);
	assert_int_equal(f->resets, 0);
}

static void test_short_header(void **state)
{
	struct fx *f = *state;
	struct seg segs[] = {
		{ HDR_GPA, 8, false },
		{ STATUS_GPA, 1, true },
	};

	put_hdr(f, HDR_GPA, VIRTIO_BLK_T_IN, 0);
	expect_needs_reset(f, segs, 2);
}

static void test_no_readable_part(void **state)
{
	struct fx *f = *state;
	struct seg segs[] = {
		{ DATA_GPA, 512, true },
		{ STATUS_GPA, 1, true },
	};

	expect_needs_reset(f, segs, 2);
}

static void test_malformed_ring(void **state)
{
	struct fx *f = *state;

	/* A head index past the queue size. */
	avail_push(f, 0, QSIZE + 3);
	kick(f, 0);
	settle(f);
	assert_int_equal(f->resets, 1);
	assert_true(virtq_is_broken(&f->vdev.vqs[0]));
	check_recovers(f);
}

static void test_notify_bad_queue(void **state)
{
	struct fx *f = *state;

	kick(f, NQ);
	kick(f, 1000);
	kick(f, UINT32_MAX);
	settle(f);
	assert_int_equal(f->resets, 0);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_IN, 3, 512, true, NULL), VIRTIO_BLK_S_OK);
}

/* ---- lifecycle ---------------------------------------------------------------------- */

static void offer_reads(struct fx *f, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct seg segs[] = {
			{ HDR_GPA + 16 * i, 16, false },
			{ DATA_GPA + 0x1000 * i, 4096, true },
			{ STATUS_GPA + i, 1, true },
		};

		put_hdr(f, HDR_GPA + 16 * i, VIRTIO_BLK_T_IN, 8 * i);
		*(uint8_t *)hva(f, STATUS_GPA + i) = 0xee;
		offer(f, 0, segs, 3);
	}
}

/* Pause waits for in-flight I/O and completes it; kicks while paused wait for resume. */
static void test_pause_resume(void **state)
{
	struct fx *f = *state;

	offer_reads(f, 8);
	kick(f, 0);           /* submitted; the loop is not run */
	assert_int_equal(f->vdev.ops->pause(&f->vdev), 0);
	assert_int_equal(used_idx(f, 0), 8);
	for (unsigned i = 0; i < 8; i++) {
		assert_int_equal(*(uint8_t *)hva(f, STATUS_GPA + i), VIRTIO_BLK_S_OK);
		check_pattern(hva(f, DATA_GPA + 0x1000 * i), 8 * i, 8);
	}
	assert_true(f->signals[0] >= 1);

	/* While paused, nothing is taken from the ring. */
	f->used_seen[0] = 8;
	put_hdr(f, HDR_GPA + 0x300, VIRTIO_BLK_T_IN, 42);
	{
		struct seg segs[] = {
			{ HDR_GPA + 0x300, 16, false },
			{ DATA_GPA, 512, true },
			{ STATUS_GPA + 0x100, 1, true },
		};

		*(uint8_t *)hva(f, STATUS_GPA + 0x100) = 0xee;
		offer(f, 0, segs, 3);
	}
	kick(f, 0);
	settle(f);
	assert_int_equal(used_idx(f, 0), 8);
	assert_int_equal(f->vdev.ops->pause(&f->vdev), 0);  /* idempotent */

	/* Resume looks at the queues by itself. */
	assert_int_equal(f->vdev.ops->resume(&f->vdev), 0);
	wait_used(f, 0, 9);
	assert_int_equal(*(uint8_t *)hva(f, STATUS_GPA + 0x100), VIRTIO_BLK_S_OK);
	check_pattern(hva(f, DATA_GPA), 42, 1);
	assert_int_equal(f->vdev.ops->resume(&f->vdev), 0);
	/* Saved through the field-table hooks (tests/unit/test_snapshot_devices.c), not a blob. */
	assert_non_null(f->vdev.ops->snap_save);
	assert_non_null(f->vdev.ops->snap_load);
}

/* A reset with I/O in flight waits for it and pushes nothing into the reset queue. */
static void test_reset_in_flight(void **state)
{
	struct fx *f = *state;

	offer_reads(f, 8);
	kick(f, 0);
	transport_reset(f);
	assert_int_equal(used_idx(f, 0), 0);
	settle(f);
	check_recovers(f);
}

/* Destroy with I/O in flight, never having run the loop. */
static void test_destroy_in_flight(void **state)
{
	struct fx *f = *state;

	offer_reads(f, 8);
	kick(f, 0);
	f->vdev.ops->destroy(&f->vdev);
	f->vdev.ops = NULL;
}

/* ---- command line -------------------------------------------------------------------- */

static void expect_create_error(struct fx *f, const char *args, const char *needle)
{
	char err[256] = "";
	struct virtio_dev vdev;

	memset(&vdev, 0, sizeof(vdev));
	assert_int_equal(virtio_blk_kind.create(&f->vm, args, &vdev, err, sizeof(err)), -EINVAL);
	if (!strstr(err, needle))
		fail_msg("create('%s') said '%s', expected it to mention '%s'", args, err, needle);
	assert_null(strchr(err, '\n'));
	assert_null(vdev.priv);
}

static void test_cli_errors(void **state)
{
	struct fx *f = *state;
	char args[256], empty[64], dir[64];
	int fd;

	expect_create_error(f, "", "path=");
	expect_create_error(f, "readonly=on", "path=");
	expect_create_error(f, "path=/nonexistent/disk.img", "/nonexistent/disk.img: No such file");
	snprintf(args, sizeof(args), "path=%s,frob=1", f->path);
	expect_create_error(f, args, "frob");
	snprintf(args, sizeof(args), "path=%s,readonly=maybe", f->path);
	expect_create_error(f, args, "readonly=maybe");
	snprintf(args, sizeof(args), "path=%s,queues=0", f->path);
	expect_create_error(f, args, "queues=0");
	snprintf(args, sizeof(args), "path=%s,queues=65", f->path);
	expect_create_error(f, args, "queues=65");
	snprintf(args, sizeof(args), "path=%s,queues=-1", f->path);
	expect_create_error(f, args, "queues=-1");
	snprintf(args, sizeof(args), "path=%s,queues=2x", f->path);
	expect_create_error(f, args, "queues=2x");
	snprintf(args, sizeof(args), "path=%s,serial=123456789012345678901", f->path);
	expect_create_error(f, args, "serial=");
	snprintf(args, sizeof(args), "path=%s,serial=a b", f->path);
	expect_create_error(f, args, "serial=");
	snprintf(args, sizeof(args), "path=%s,io=aio", f->path);
	expect_create_error(f, args, "io=aio");
	snprintf(args, sizeof(args), "path=%s,path=%s", f->path, f->path);
	expect_create_error(f, args, "twice");
	snprintf(args, sizeof(args), "path=%s,readonly", f->path);
	expect_create_error(f, args, "readonly");
	expect_create_error(f, "path=", "path=");

	snprintf(dir, sizeof(dir), "/tmp/test_virtio_blk_dir.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(args, sizeof(args), "path=%s", dir);
	expect_create_error(f, args, "Is a directory");
	snprintf(args, sizeof(args), "path=%s,readonly=on", dir);
	expect_create_error(f, args, "not a regular file");
	rmdir(dir);

	snprintf(empty, sizeof(empty), "/tmp/test_virtio_blk_empty.XXXXXX");
	fd = mkstemp(empty);
	assert_true(fd >= 0);
	snprintf(args, sizeof(args), "path=%s", empty);
	expect_create_error(f, args, "smaller than one");
	close(fd);
	unlink(empty);

	/* Read-only file, opened read-write: refused, not silently downgraded (unless root). */
	if (geteuid() != 0) {
		assert_int_equal(chmod(f->path, 0400), 0);
		snprintf(args, sizeof(args), "path=%s", f->path);
		expect_create_error(f, args, "Permission denied");
		chmod(f->path, 0600);
	}
}

/* A second writer on the same image is refused; two readers may share. */
static void test_image_lock(void **state)
{
	struct fx *f = *state;
	char args[128];

	start_dev(f, "");
	snprintf(args, sizeof(args), "path=%s", f->path);
	expect_create_error(f, args, "in use");
	snprintf(args, sizeof(args), "path=%s,readonly=on", f->path);
	expect_create_error(f, args, "in use");
}

/* ---- queues that go live after DRIVER_OK ---------------------------------------------- */

/*
 * The driver enables queue 1 only after DRIVER_OK. Its requests are served
 * like queue 0's: never ignored (no used entry, no reset request) for ever.
 */
static void test_late_enabled_queue(void **state)
{
	struct fx *f = *state;
	uint64_t features;
	char err[256] = "";

	assert_int_equal(create_dev(f, "", err, sizeof(err)), 0);
	f->vdev.signal_used = fake_signal_used;
	f->vdev.needs_reset = fake_needs_reset;
	for (unsigned q = 0; q < NQ; q++)
		assert_int_equal(virtq_init(&f->vdev.vqs[q], &f->vm.mem, "blk.q", f->vdev.queue_max_size), 0);
	features = f->vdev.device_features | (1ull << VIRTIO_F_VERSION_1);
	f->vdev.driver_features = features;
	enable_queue(f, 0, features);
	assert_int_equal(f->vdev.ops->activate(&f->vdev), 0);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_IN, 4, 512, true, NULL), VIRTIO_BLK_S_OK);

	/* Late, and kicked straight away, as a driver may do. */
	enable_queue(f, 1, features);
	assert_int_equal(simple_req(f, 1, VIRTIO_BLK_T_IN, 33, 1024, true, NULL), VIRTIO_BLK_S_OK);
	check_pattern(hva(f, DATA_GPA), 33, 2);
	assert_true(f->signals[1] >= 1);
	assert_int_equal(simple_req(f, 1, VIRTIO_BLK_T_FLUSH, 0, 0, false, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_IN, 5, 512, true, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(f->resets, 0);
	/* And a reset still takes both queues down cleanly. */
	check_recovers(f);
}

/* The transport's path: queue_enable after DRIVER_OK, and queue_reset (VIRTIO_F_RING_RESET). */
static void test_queue_enable_and_reset_hooks(void **state)
{
	struct fx *f = *state;
	uint64_t features = f->vdev.driver_features;

	assert_non_null(f->vdev.ops->queue_enable);
	assert_non_null(f->vdev.ops->queue_reset);
	assert_int_equal(simple_req(f, 1, VIRTIO_BLK_T_IN, 6, 512, true, NULL), VIRTIO_BLK_S_OK);
	/* Requests in flight on both queues; the transport pauses the device, then resets queue 1. */
	offer_reads(f, 4);
	for (unsigned i = 0; i < 3; i++) {
		struct seg segs[] = {
			{ HDR_GPA + 0x400 + 16 * i, 16, false },
			{ DATA_GPA + 0x40000 + 0x1000 * i, 4096, true },
			{ STATUS_GPA + 0x400 + i, 1, true },
		};

		put_hdr(f, HDR_GPA + 0x400 + 16 * i, VIRTIO_BLK_T_IN, 100 + 8 * i);
		offer(f, 1, segs, 3);
	}
	kick(f, 0);
	kick(f, 1);
	assert_int_equal(f->vdev.ops->pause(&f->vdev), 0);
	assert_int_equal(used_idx(f, 0), 4);   /* pause completes what was in flight */
	f->vdev.ops->queue_reset(&f->vdev, 1);
	virtq_reset(&f->vdev.vqs[1]);
	assert_int_equal(f->vdev.ops->resume(&f->vdev), 0);
	settle(f);
	/* Queue 0 goes on; queue 1 is served again once re-enabled, from index 0. */
	f->used_seen[0] = 4;
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_IN, 7, 512, true, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(f->vdev.ops->pause(&f->vdev), 0);
	enable_queue(f, 1, features);
	assert_int_equal(f->vdev.ops->queue_enable(&f->vdev, 1), 0);
	assert_int_equal(f->vdev.ops->resume(&f->vdev), 0);
	assert_int_equal(simple_req(f, 1, VIRTIO_BLK_T_IN, 9, 512, true, NULL), VIRTIO_BLK_S_OK);
	check_pattern(hva(f, DATA_GPA), 9, 1);
	assert_int_equal(used_idx(f, 1), 1);
	assert_int_equal(f->resets, 0);
}

/* ---- WRITE_ZEROES where fallocate cannot: the event loop keeps its beat --------------- */

#define BIG_MIB      132u
#define ZERO_MIB     64u
#define MARK         4096u
/* The most loop-thread CPU time between two beats: a few chunks' worth, sanitizers slower. */
#if defined(__SANITIZE_THREAD__)
#define BEAT_CPU_MAX_NS 20000000ull
#elif defined(__SANITIZE_ADDRESS__)
#define BEAT_CPU_MAX_NS 10000000ull
#else
#define BEAT_CPU_MAX_NS 5000000ull
#endif

/* The loop on a thread of its own, as in the VMM, with a 1 ms heartbeat timer and a kick. */
struct beat {
	struct fx *f;
	pthread_t thread;
	struct evloop_timer *timer;
	struct evloop_fd *kick_reg;
	int kick_fd;
	uint64_t last_ns, last_cpu_ns;
	uint64_t max_gap_ns;       /* wall time between two beats */
	uint64_t max_cpu_ns;       /* loop-thread CPU time between two beats: blind to preemption */
	unsigned beats;
	uint16_t want_used;        /* queue 0's used index the test waits for */
	bool done;                 /* seen by the loop thread, which writes the ring */
};

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void beat_fn(void *opaque, uint64_t expirations)
{
	struct beat *b = opaque;
	uint64_t now = monotonic_ns(), cpu = thread_cpu_ns();

	(void)expirations;
	if (__atomic_fetch_add(&b->beats, 1, __ATOMIC_RELAXED)) {
		b->max_gap_ns = MAX(b->max_gap_ns, now - b->last_ns);
		b->max_cpu_ns = MAX(b->max_cpu_ns, cpu - b->last_cpu_ns);
	}
	b->last_ns = now;
	b->last_cpu_ns = cpu;
	if (b->want_used && used_idx(b->f, 0) == b->want_used)
		__atomic_store_n(&b->done, true, __ATOMIC_RELEASE);
}

static void beat_kick(void *opaque, int fd, uint32_t events)
{
	struct beat *b = opaque;
	uint64_t v;

	(void)events;
	if (read(fd, &v, sizeof(v)) == sizeof(v))
		b->f->vdev.ops->queue_notify(&b->f->vdev, 0);
}

static void *beat_loop(void *arg)
{
	struct beat *b = arg;

	assert_int_equal(evloop_run(b->f->vm.loop), 0);
	return NULL;
}

static void beat_start(struct beat *b, struct fx *f, uint16_t want_used)
{
	memset(b, 0, sizeof(*b));
	b->f = f;
	b->want_used = want_used;
	b->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_true(b->kick_fd >= 0);
	assert_int_equal(evloop_fd_add(f->vm.loop, b->kick_fd, EPOLLIN, beat_kick, b, &b->kick_reg), 0);
	assert_int_equal(evloop_timer_add(f->vm.loop, beat_fn, b, &b->timer), 0);
	assert_int_equal(evloop_timer_arm(b->timer, 1000000, 1000000), 0);
	assert_int_equal(pthread_create(&b->thread, NULL, beat_loop, b), 0);
}

static void beat_stop(struct beat *b)
{
	evloop_stop(b->f->vm.loop);
	assert_int_equal(pthread_join(b->thread, NULL), 0);
	evloop_timer_remove(b->timer);
	evloop_fd_remove(b->kick_reg);
	close(b->kick_fd);
}

/* Replace the fixture's image by a sparse one of BIG_MIB in dir, with markers around two ranges. */
static void big_image(struct fx *f, const char *dir)
{
	uint8_t mark[MARK];

	close(f->img);
	unlink(f->path);
	snprintf(f->path, sizeof(f->path), "%s/test_virtio_blk_big.XXXXXX", dir);
	f->img = mkstemp(f->path);
	assert_true(f->img >= 0);
	assert_int_equal(ftruncate(f->img, (off_t)(BIG_MIB * MiB)), 0);
	memset(mark, 0x5a, sizeof(mark));
	/* Inside both ranges (first, middle, last 4 KiB) and just outside them. */
	static const uint64_t at[] = { 1 * MiB - MARK, 1 * MiB, 33 * MiB, 65 * MiB - MARK, 65 * MiB,
				       66 * MiB - MARK, 66 * MiB, 98 * MiB, 130 * MiB - MARK, 130 * MiB };
	for (unsigned i = 0; i < ARRAY_SIZE(at); i++)
		assert_int_equal(pwrite(f->img, mark, sizeof(mark), (off_t)at[i]), (ssize_t)sizeof(mark));
}

/*
 * Two 64 MiB WRITE_ZEROES on an image whose file system has no fallocate:
 * the zeroes are written, and no request holds the shared loop for more than
 * about a millisecond (a 1 ms heartbeat on the same loop keeps beating).
 */
static void zeroes_keep_the_beat(struct fx *f, const char *dir)
{
	static const uint64_t start[2] = { 1 * MiB, 66 * MiB };
	struct beat b;
	uint8_t buf[MARK], zero[MARK] = { 0 };
	uint64_t deadline;

	big_image(f, dir);
	start_dev(f, "");
	for (unsigned i = 0; i < 2; i++) {
		struct virtio_blk_discard_write_zeroes seg = {
			.sector = cpu_to_le64(start[i] / 512),
			.num_sectors = cpu_to_le32(ZERO_MIB * MiB / 512),
		};
		struct seg segs[] = {
			{ HDR_GPA + 16 * i, 16, false },
			{ DATA_GPA + 16 * i, 16, false },
			{ STATUS_GPA + i, 1, true },
		};

		put_hdr(f, HDR_GPA + 16 * i, VIRTIO_BLK_T_WRITE_ZEROES, 0);
		assert_int_equal(gmem_write(&f->vm.mem, DATA_GPA + 16 * i, &seg, sizeof(seg)), 0);
		*(uint8_t *)hva(f, STATUS_GPA + i) = 0xee;
		offer(f, 0, segs, 3);
	}
	beat_start(&b, f, 2);
	/* Let the beat settle, then kick from "the vCPU". */
	while (__atomic_load_n(&b.beats, __ATOMIC_RELAXED) < 3)
		sched_yield();
	{
		uint64_t one = 1;

		assert_int_equal(write(b.kick_fd, &one, sizeof(one)), (ssize_t)sizeof(one));
	}
	deadline = monotonic_ns() + 20000000000ull;
	while (!__atomic_load_n(&b.done, __ATOMIC_ACQUIRE) && monotonic_ns() < deadline) {
		struct timespec ms = { 0, 1000000 };

		nanosleep(&ms, NULL);
	}
	beat_stop(&b);
	assert_int_equal(used_idx(f, 0), 2);
	for (unsigned i = 0; i < 2; i++)
		assert_int_equal(*(uint8_t *)hva(f, STATUS_GPA + i), VIRTIO_BLK_S_OK);
	for (unsigned i = 0; i < 2; i++) {
		static const uint64_t in[] = { 0, 32 * MiB, ZERO_MIB * MiB - MARK };

		for (unsigned k = 0; k < ARRAY_SIZE(in); k++) {
			read_image(f, start[i] + in[k], buf, sizeof(buf));
			assert_memory_equal(buf, zero, sizeof(buf));
		}
		read_image(f, start[i] - MARK, buf, sizeof(buf));
		assert_int_equal(buf[0], 0x5a);
		assert_int_equal(buf[MARK - 1], 0x5a);
		read_image(f, start[i] + ZERO_MIB * MiB, buf, sizeof(buf));
		assert_int_equal(buf[0], 0x5a);
	}
	assert_int_equal(f->resets, 0);
	if (b.max_cpu_ns > BEAT_CPU_MAX_NS)
		fail_msg("the loop thread ran %.1f ms between two 1 ms beats (longest wall gap %.1f ms)",
			 b.max_cpu_ns / 1e6, b.max_gap_ns / 1e6);
	print_message("%s: %u beats, longest gap %.1f ms, loop CPU between beats at most %.2f ms\n",
		      f->engine, b.beats, b.max_gap_ns / 1e6, b.max_cpu_ns / 1e6);
}

/* A ramfs (no fallocate at all) in a private mount namespace; false when that is not possible. */
static bool ramfs_dir(char *dir, size_t len)
{
	snprintf(dir, len, "/tmp/test_virtio_blk_ramfs.XXXXXX");
	if (!mkdtemp(dir))
		return false;
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("none", dir, "ramfs", 0, NULL) < 0) {
		rmdir(dir);
		return false;
	}
	return true;
}

static void test_write_zeroes_on_ramfs(void **state)
{
	struct fx *f = *state;
	char dir[64];

	if (!ramfs_dir(dir, sizeof(dir)))
		skip();
	zeroes_keep_the_beat(f, dir);
	f->vdev.ops->destroy(&f->vdev);   /* its fd keeps the mount busy */
	f->vdev.ops = NULL;
	close(f->img);
	f->img = -1;
	unlink(f->path);
	assert_int_equal(umount(dir), 0);
	rmdir(dir);
}

/*
 * The same on a file system that has fallocate, which refuses this range
 * (EINVAL, as a 4 KiB-sector device does a 512-byte-aligned one): injected.
 * On ext4 or tmpfs io_uring may copy a write inline, on the loop thread.
 */
static void test_write_zeroes_fallocate_refused(void **state)
{
	struct fx *f = *state;
	struct virtio_blk_discard_write_zeroes seg = {
		.sector = cpu_to_le64(8), .num_sectors = cpu_to_le32(8),
	};
	uint8_t buf[512];

	blk_io_test_fail_fallocate(EINVAL);
	zeroes_keep_the_beat(f, access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	/* A discard is advisory: OK, and nothing is written. */
	f->used_seen[0] = 2;
	assert_int_equal(gmem_write(&f->vm.mem, DATA_GPA, &seg, sizeof(seg)), 0);
	assert_int_equal(pwrite(f->img, "\x5a", 1, 8 * 512), 1);
	assert_int_equal(simple_req(f, 0, VIRTIO_BLK_T_DISCARD, 0, 16, false, NULL), VIRTIO_BLK_S_OK);
	read_image(f, 8 * 512, buf, 1);
	assert_int_equal(buf[0], 0x5a);
	blk_io_test_fail_fallocate(0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_started, teardown)
#define TT(fn) cmocka_unit_test_setup_teardown(fn, setup_started_threads, teardown)
#define TU(fn) cmocka_unit_test_setup_teardown(fn, setup_uring, teardown)
#define TP(fn) cmocka_unit_test_setup_teardown(fn, setup_threads, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_config),
		TU(test_config_readonly),
		TU(test_default_queues_per_vcpu),
		T(test_read),
		T(test_read_any_layout),
		T(test_write),
		T(test_write_header_and_data_in_one_descriptor),
		T(test_flush),
		T(test_get_id),
		TU(test_get_id_without_serial),
		T(test_discard_and_write_zeroes),
		T(test_multiqueue),
		T(test_batch),
		T(test_interrupts_batched),
		T(test_indirect),
		T(test_read_out_of_range),
		T(test_write_out_of_range),
		T(test_unaligned_length),
		T(test_unknown_types),
		T(test_bad_discard),
		TU(test_readonly_refuses_writes),
		T(test_host_io_error),
		T(test_status_in_readonly_descriptor),
		T(test_zero_length_status),
		T(test_short_header),
		T(test_no_readable_part),
		T(test_malformed_ring),
		T(test_notify_bad_queue),
		T(test_pause_resume),
		T(test_reset_in_flight),
		T(test_destroy_in_flight),
		TU(test_late_enabled_queue),
		T(test_queue_enable_and_reset_hooks),
		TU(test_write_zeroes_on_ramfs),
		TU(test_write_zeroes_fallocate_refused),
		TU(test_cli_errors),
		TU(test_image_lock),
		/* The thread-pool engine through the same paths. */
		TT(test_read),
		TT(test_read_any_layout),
		TT(test_write),
		TT(test_flush),
		TT(test_discard_and_write_zeroes),
		TT(test_batch),
		TT(test_interrupts_batched),
		TT(test_read_out_of_range),
		TT(test_host_io_error),
		TT(test_pause_resume),
		TT(test_reset_in_flight),
		TT(test_destroy_in_flight),
		TP(test_late_enabled_queue),
		TP(test_write_zeroes_on_ramfs),
		TP(test_write_zeroes_fallocate_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
