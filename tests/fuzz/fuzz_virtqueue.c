/*
 * libFuzzer harness for virtio/virtqueue: the input is a hostile driver.
 *
 * Input layout:
 *   [0]      log2 of the queue size (mod 7: 1..64 entries)
 *   [1]      bit 0 INDIRECT_DESC, bit 1 EVENT_IDX, bit 2 adjacent-region
 *            memory instead of memory with a hole, bit 3 "tame" (below),
 *            bits 4-7 chain capacity (0: 64)
 *   [2..7]   le16 desc, avail and used ring offsets (see ring_gpa)
 *   [8]      number of operation bytes that follow
 *   [9..]    operations (pop, push, flush+notify, notify on/off, unpop,
 *            guest rewrites of memory, save/reset/restore), then the rest
 *            is the guest memory image starting at guest-physical 0.
 * Guest addresses in descriptors are taken as they come (any 64-bit value),
 * except in tame mode: there every 16-byte slot of RAM, read as a descriptor,
 * gets its address reduced modulo (end of RAM + 4K) and its length modulo
 * 8K, so that most chains point near RAM and its edges instead of far away.
 *
 * After the operations the queue is drained: pop and push until empty or
 * broken. Beyond ASan/UBSan, every popped iovec is checked to lie inside a
 * RAM region (guest memory is mmapped, so ASan alone would not see a stray
 * pointer into it) and the walker's totals are checked against the iovecs.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/virtqueue.h"
#include "vmm/gmem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REGION_SIZE (16 * 1024)
#define HOLE_SIZE   (4 * 1024)
#define MAX_INFLIGHT 64

/* Realistic: memfd-backed RAM [0, 16K), a 4K hole, RAM [20K, 36K). */
static struct gmem gm_hole;
/*
 * Sensitive: RAM [0, 2K) and [2K, 4K) in two separate heap blocks, so that
 * ASan's redzones catch any access past a region's end, which mmapped RAM
 * would hide.
 */
static struct gmem gm_adjacent;
#define ADJ_REGION_SIZE 2048
static uint8_t scratch[64 * 1024];

#define CHECK(cond)                      \
	do {                             \
		if (!(cond))             \
			__builtin_trap(); \
	} while (0)

static void init_once(void)
{
	static int done;
	uint8_t *a, *b;

	if (done)
		return;
	done = 1;
	if (gmem_create(&gm_hole, 2 * REGION_SIZE, REGION_SIZE, REGION_SIZE + HOLE_SIZE))
		abort();
	a = aligned_alloc(ADJ_REGION_SIZE, ADJ_REGION_SIZE);
	b = aligned_alloc(ADJ_REGION_SIZE, ADJ_REGION_SIZE);
	if (!a || !b)
		abort();
	gm_adjacent.fd = -1;
	gm_adjacent.ram_size = 2 * ADJ_REGION_SIZE;
	gm_adjacent.nr_regions = 2;
	gm_adjacent.regions[0] =
		(struct gmem_region){ .gpa = 0, .size = ADJ_REGION_SIZE, .hva = a };
	gm_adjacent.regions[1] =
		(struct gmem_region){ .gpa = ADJ_REGION_SIZE, .size = ADJ_REGION_SIZE, .hva = b };
}

/* Fill RAM with the image, region by region in address order; zero the rest. */
static void load_image(struct gmem *gm, const uint8_t *img, size_t len)
{
	for (unsigned i = 0; i < gm->nr_regions; i++) {
		struct gmem_region *r = &gm->regions[i];
		size_t n = MIN(len, r->size);

		memcpy(r->hva, img, n);
		memset(r->hva + n, 0, r->size - n);
		img += n;
		len -= n;
	}
}

/* Mostly inside the loaded image; with bit 15 set, near the first region's end. */
static uint64_t ring_gpa(const struct gmem *gm, const uint8_t *p)
{
	uint16_t raw = (uint16_t)(p[0] | p[1] << 8);

	if (raw & 0x8000)
		return gm->regions[0].size - 256 + (raw & 0x1ff);
	return raw & 0x0fff;
}

static void tame(struct gmem *gm)
{
	uint64_t end = gmem_end(gm) + 4096;

	for (unsigned i = 0; i < gm->nr_regions; i++) {
		struct gmem_region *r = &gm->regions[i];

		for (uint64_t off = 0; off + sizeof(struct virtq_desc) <= r->size;
		     off += sizeof(struct virtq_desc)) {
			struct virtq_desc d;

			memcpy(&d, r->hva + off, sizeof(d));
			d.addr = cpu_to_le64(le64_to_cpu(d.addr) % end);
			d.len = cpu_to_le32(le32_to_cpu(d.len) % 8192);
			memcpy(r->hva + off, &d, sizeof(d));
		}
	}
}

static bool in_ram(const struct gmem *gm, const struct iovec *iov)
{
	const uint8_t *base = iov->iov_base;

	for (unsigned i = 0; i < gm->nr_regions; i++) {
		const struct gmem_region *r = &gm->regions[i];

		if (base >= r->hva && base < r->hva + r->size &&
		    iov->iov_len <= (size_t)(r->hva + r->size - base))
			return true;
	}
	return false;
}

static void check_chain(const struct gmem *gm, const struct virtq *vq, const struct virtq_chain *c)
{
	uint64_t out = 0, in = 0;

	CHECK(c->head < vq->size);
	CHECK(c->ndesc <= vq->size);
	CHECK(c->nr_out + c->nr_in <= c->capacity);
	CHECK(c->out == c->iov && c->in == c->iov + c->nr_out);
	for (unsigned i = 0; i < c->nr_out + c->nr_in; i++) {
		CHECK(c->iov[i].iov_len > 0);
		CHECK(in_ram(gm, &c->iov[i]));
		if (i < c->nr_out)
			out += c->iov[i].iov_len;
		else
			in += c->iov[i].iov_len;
	}
	CHECK(out == c->out_len && in == c->in_len);
	/* Touch every byte the way a device would. */
	CHECK(virtq_chain_read(c, 0, scratch, MIN(sizeof(scratch), c->out_len)) ==
	      MIN(sizeof(scratch), c->out_len));
	CHECK(virtq_chain_write(c, 0, scratch, MIN(sizeof(scratch), c->in_len)) ==
	      MIN(sizeof(scratch), c->in_len));
}

struct run {
	struct gmem *gm;
	struct virtq vq;
	struct virtq_chain c;
	uint64_t features;
	uint16_t inflight[MAX_INFLIGHT];
	unsigned nr_inflight;
};

static void push_oldest(struct run *r, uint32_t len)
{
	int ret;

	if (!r->nr_inflight)
		return;
	ret = virtq_push(&r->vq, r->inflight[0], len);
	CHECK(ret == 0 || (ret == -EIO && virtq_is_broken(&r->vq)));
	memmove(r->inflight, r->inflight + 1, --r->nr_inflight * sizeof(r->inflight[0]));
}

/*
 * Reference model: an independent, slow transcription of the walker's rules
 * (2.7.5 plus our documented choices), checked in the same order, reading
 * guest memory with gmem_read. Compared against every pop that got as far as
 * walking a chain; guest memory is unchanged between the two walks.
 */
static struct iovec ref_iov[64];

static int ref_add(const struct gmem *gm, uint64_t gpa, uint64_t len, unsigned cap, unsigned *n)
{
	while (len) {
		uint64_t chunk = 0;

		for (unsigned i = 0; i < gm->nr_regions; i++) {
			const struct gmem_region *r = &gm->regions[i];

			if (gpa >= r->gpa && gpa < r->gpa + r->size)
				chunk = MIN(len, r->gpa + r->size - gpa);
		}
		if (!chunk)
			return -EFAULT;
		if (*n == cap)
			return -ENOBUFS;
		ref_iov[*n].iov_base = gmem_translate(gm, gpa, chunk);
		ref_iov[*n].iov_len = chunk;
		(*n)++;
		gpa += chunk;
		len -= chunk;
	}
	return 0;
}

static int ref_walk(const struct gmem *gm, const struct virtq *vq, uint16_t head, unsigned cap,
		    unsigned *nr_out, unsigned *n, uint64_t *out_len, uint64_t *in_len)
{
	uint64_t table = vq->desc_gpa, entries = vq->size, i = head;
	bool nested = false, writing = false;
	unsigned count = 0;

	*nr_out = *n = 0;
	*out_len = *in_len = 0;
	for (;;) {
		struct virtq_desc d;
		uint64_t addr, len;
		uint16_t flags;

		CHECK(i < entries);
		CHECK(gmem_read(gm, table + 16 * i, &d, sizeof(d)) == 0);
		addr = le64_to_cpu(d.addr);
		len = le32_to_cpu(d.len);
		flags = le16_to_cpu(d.flags);
		if (flags & VIRTQ_DESC_F_INDIRECT) {
			if (nested)
				return -EMLINK;
			if (!vq->indirect)
				return -EOPNOTSUPP;
			if (flags & VIRTQ_DESC_F_NEXT)
				return -EINVAL;
			if (len == 0 || len % 16)
				return -EMSGSIZE;
			if (addr > UINT64_MAX - len)
				return -EOVERFLOW;
			if (!gmem_translate(gm, addr, len))
				return -EFAULT;
			table = addr;
			entries = len / 16;
			i = 0;
			nested = true;
			continue;
		}
		if (++count > vq->size)
			return -ELOOP;
		if (flags & VIRTQ_DESC_F_WRITE)
			writing = true;
		else if (writing)
			return -EBADMSG;
		if (len) {
			int ret;

			if (addr > UINT64_MAX - len)
				return -EOVERFLOW;
			*(writing ? in_len : out_len) += len;
			if (*in_len > UINT32_MAX || *out_len > UINT32_MAX)
				return -EOVERFLOW;
			ret = ref_add(gm, addr, len, cap, n);
			if (ret)
				return ret;
			if (!writing)
				*nr_out = *n;
		}
		if (!(flags & VIRTQ_DESC_F_NEXT))
			return 0;
		i = le16_to_cpu(d.next);
		if (i >= entries)
			return -ERANGE;
	}
}

/* Compare a pop that walked a chain (or failed in the walk) with the model. */
static void ref_check(const struct run *r, uint16_t last_before, int ret)
{
	const struct virtq *vq = &r->vq;
	unsigned nr_out, n;
	uint64_t out_len, in_len;
	le16 head;
	int want;

	if (ret == 0 || ret == -EIO || ret == -ENODEV || ret == -EPROTO)
		return;
	if (ret == -ENOSPC) {
		CHECK((uint16_t)(last_before - vq->used_idx) >= vq->size);
		return;
	}
	CHECK(gmem_read(r->gm, vq->avail_gpa + 4 + 2 * (uint64_t)(last_before % vq->size), &head,
			sizeof(head)) == 0);
	if (le16_to_cpu(head) >= vq->size) {
		CHECK(ret == -ERANGE);
		return;
	}
	want = ref_walk(r->gm, vq, le16_to_cpu(head), r->c.capacity, &nr_out, &n, &out_len,
			&in_len);
	if (want) {
		CHECK(ret == want);
		return;
	}
	CHECK(ret == 1);
	CHECK(r->c.head == le16_to_cpu(head));
	CHECK(r->c.nr_out == nr_out && r->c.nr_in == n - nr_out);
	CHECK(r->c.out_len == out_len && r->c.in_len == in_len);
	for (unsigned i = 0; i < n; i++)
		CHECK(r->c.iov[i].iov_base == ref_iov[i].iov_base &&
		      r->c.iov[i].iov_len == ref_iov[i].iov_len);
}

/* Returns the pop result after checking the queue's reaction to it. */
static int do_pop(struct run *r)
{
	bool was_broken = virtq_is_broken(&r->vq);
	uint16_t last_before = r->vq.last_avail_idx;
	int ret = virtq_pop(&r->vq, &r->c);

	ref_check(r, last_before, ret);
	if (ret == 1) {
		CHECK(!was_broken);
		check_chain(r->gm, &r->vq, &r->c);
		if (r->nr_inflight == MAX_INFLIGHT)
			push_oldest(r, 0);
		r->inflight[r->nr_inflight++] = r->c.head;
	} else if (ret < 0) {
		CHECK(virtq_is_broken(&r->vq));
		CHECK(was_broken ? ret == -EIO : ret == virtq_error(&r->vq));
		CHECK(virtq_pop(&r->vq, &r->c) == -EIO);
	} else {
		CHECK(ret == 0 && !was_broken);
	}
	return ret;
}

static void save_restore(struct run *r)
{
	struct virtq_state st;
	bool enabled = virtq_is_enabled(&r->vq);

	virtq_save(&r->vq, &st);
	virtq_reset(&r->vq);
	CHECK(virtq_restore(&r->vq, &st, r->features) == 0);
	CHECK(virtq_is_enabled(&r->vq) == enabled);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct run r;
	const uint8_t *ops, *img;
	size_t nops;

	init_once();
	if (size < 9)
		return 0;
	nops = MIN(data[8], size - 9);
	ops = data + 9;
	img = ops + nops;

	r.gm = (data[1] & 4) ? &gm_adjacent : &gm_hole;
	r.features = ((data[1] & 1) ? 1ull << VIRTIO_RING_F_INDIRECT_DESC : 0) |
		     ((data[1] & 2) ? 1ull << VIRTIO_RING_F_EVENT_IDX : 0);
	r.nr_inflight = 0;
	load_image(r.gm, img, size - 9 - nops);
	if (data[1] & 8)
		tame(r.gm);

	if (virtq_init(&r.vq, r.gm, "fuzz", 64))
		abort();
	if (virtq_chain_init(&r.c, (data[1] >> 4) ? (data[1] >> 4) : 64))
		abort();
	r.vq.size = (uint16_t)(1u << (data[0] % 7));
	r.vq.desc_gpa = ring_gpa(r.gm, data + 2);
	r.vq.avail_gpa = ring_gpa(r.gm, data + 4);
	r.vq.used_gpa = ring_gpa(r.gm, data + 6);
	if (virtq_enable(&r.vq, r.features)) {
		CHECK(!virtq_is_enabled(&r.vq) && !virtq_is_broken(&r.vq));
		goto out;
	}

	for (size_t i = 0; i < nops; i++) {
		uint8_t op = ops[i];

		switch (op & 7) {
		case 0:
			do_pop(&r);
			break;
		case 1:
			push_oldest(&r, (uint32_t)op << 4);
			break;
		case 2:
			virtq_flush(&r.vq);
			(void)virtq_needs_notify(&r.vq);
			break;
		case 3:
			virtq_disable_notify(&r.vq);
			break;
		case 4:
			(void)virtq_enable_notify(&r.vq);
			(void)virtq_avail_count(&r.vq);
			break;
		case 5:
			/* Give back the newest chain not yet pushed. */
			if (r.nr_inflight && !virtq_is_broken(&r.vq)) {
				virtq_unpop(&r.vq, 1);
				r.nr_inflight--;
			}
			break;
		case 6: {
			/* The guest rewrites memory between two device steps. */
			uint64_t gpa = ((uint64_t)(op >> 3) << 7) + (i & 0x7f);
			uint8_t v = (uint8_t)(op ^ (i * 37));

			if (gmem_write(r.gm, gpa, &v, 1)) {
				/* gpa in the hole: nothing to write */
			}
			break;
		}
		case 7:
			save_restore(&r);
			break;
		}
	}

	/*
	 * Drain, with a budget: the device's own writes (used ring, buffers) may
	 * alias the avail ring, so a hostile guest can keep it non-empty.
	 */
	for (unsigned n = 0; n <= 2u * r.vq.size + 2; n++) {
		if (do_pop(&r) <= 0)
			break;
		push_oldest(&r, 1);
	}
	while (r.nr_inflight)
		push_oldest(&r, 0);
	virtq_flush(&r.vq);
	(void)virtq_needs_notify(&r.vq);
out:
	virtq_chain_destroy(&r.c);
	return 0;
}
