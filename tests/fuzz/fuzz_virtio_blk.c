/*
 * libFuzzer harness for devices/virtio_blk (+ devices/blk_io): the input is a
 * hostile guest driver of a disk, going through the device's real request
 * path against a 64-sector raw image on tmpfs. The harness plays the
 * transport (as tests/unit/test_virtio_blk.c does): one queue of 64, device
 * hooks called directly, the event loop run until the completions are in.
 *
 * Input layout:
 *   [0]     device and features: bit 0 read-only disk, bit 1 thread-pool
 *           engine (else io_uring), bit 2 EVENT_IDX, bit 3 DISCARD and
 *           WRITE_ZEROES negotiated (when offered), bit 4 INDIRECT_DESC.
 *           The four disks (bits 0-1) have serials of 20, 0, 3 and 9 bytes.
 *   then requests, each:
 *   [ctl]   bits 0-2 type: IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES,
 *           raw (le32 follows), IN; bit 3 as one indirect descriptor;
 *           bits 4-5 header: 16-byte segment, split in two (u8 split point),
 *           short (u8 length), 16 bytes followed by 512 * (u8 % 3) of data;
 *           bits 6-7 sector: u8 % 80, capacity - u8 % 8, le64, ~0 - u8
 *   [segs]  bits 0-2 data segments (% 6), bit 3 pause and resume the device
 *           right after the kick, bits 4-5 status: own 1-byte writable
 *           segment, none, a 1-byte readable segment, a writable segment of
 *           u8 + 1 bytes; bit 7 end of batch (kick and wait)
 *   [seg]*  per data segment: bit 0 device-writable; bits 1-2 placement:
 *           tame (0, 1: a fresh buffer no other touches), wild (2: le16
 *           offset in a 32K zone at the end of RAM that segments may share),
 *           raw (3: le64 address, remapped into the wild zone when below it,
 *           and le32 length); bit 3: length 512 * (u8 % 8 + 1), else le16 %
 *           1100 (raw: the le32 as is)
 *   DISCARD / WRITE_ZEROES then carry their segment, written over the first
 *           16 data bytes: [sector mode u8 as above][sector][u8 count:
 *           count * 3 sectors, 0xff: le32 as is][u8 flags % 4, 0xff: le32]
 * Batches hold up to 8 requests; an input up to 16 batches.
 *
 * A reference model predicts each chain's fate from what the harness wrote:
 * a chain with a buffer outside RAM, a readable buffer after a writable one,
 * an indirect table without INDIRECT_DESC, a header under 16 bytes or no
 * writable byte breaks the device (needs_reset, nothing completed from it
 * on); any other chain completes with the status, used length, guest memory
 * writes and image writes 5.2.6 gives. Checks beyond ASan/UBSan:
 *   - the used ring gets exactly the chains before the first breaking one,
 *     each once, with the predicted length; needs_reset iff predicted;
 *     completions arrive within a bounded wait (no hang, nothing lost);
 *   - guest RAM outside the used ring is byte-for-byte what the model says
 *     (status bytes, read data, serial), so nothing is written outside the
 *     chain's writable buffers and refused requests write only their status;
 *     when buffers of a batch overlap, RAM outside its writable buffers;
 *   - the image keeps its size; sectors no accepted write covers keep their
 *     bytes (refused requests, read-only disks write nothing); accepted
 *     writes land as the guest's bytes (zeroes for WRITE_ZEROES, old or
 *     zero for DISCARD) unless two requests of the batch race on them.
 * Guest RAM is two adjacent heap blocks, so ASan sees any access past RAM.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "channel/evloop.h"
#include "devices/virtio_blk.h"
#include "virtio/virtqueue.h"
#include "vmm/gmem.h"
#include "vmm/vm.h"

#include "tests/fuzz/fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM_SIZE     0x40000ull
#define REGION_SIZE  (RAM_SIZE / 2)
#define QSIZE        64u
#define DESC_GPA     0x0000ull
#define AVAIL_GPA    0x1000ull
#define USED_GPA     0x2000ull
#define USED_BYTES   (6ull + 8 * QSIZE)
#define ITABLE_GPA   0x3000ull    /* one indirect table per request, 0x200 apart */
#define TAME_GPA     0x8000ull
#define WILD_GPA     0x38000ull
#define WILD_SIZE    (RAM_SIZE - WILD_GPA)
#define IMG_SECTORS  64u
#define IMG_BYTES    (IMG_SECTORS * VIRTIO_BLK_SECTOR_SIZE)
#define MAX_REQS     8u
#define MAX_SEGS     8u           /* header (2) + data (5) + status: 8 x 8 fill the table */
#define MAX_BATCHES  16u
#define NDEV         4u

#define CHECK(cond)                       \
	do {                              \
		if (!(cond))              \
			__builtin_trap(); \
	} while (0)

/* F_VQ_BROKEN: the ring walk fails, nothing more is published; F_DEV_BROKEN: the device refuses the layout. */
enum fate { F_DONE, F_VQ_BROKEN, F_DEV_BROKEN };

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

struct req {
	struct seg segs[MAX_SEGS];
	unsigned nsegs;
	bool indirect;
	uint16_t head;
	/* The model's prediction. */
	enum fate fate;
	bool fuzzy;            /* shares bytes with a writable buffer of the batch */
	bool status_known;
	uint8_t status;
	uint32_t used_len;
	uint32_t type;
	uint64_t wr_sector, wr_count;  /* accepted image write, in sectors */
	bool wr_zero, wr_discard;
	bool seen;
};

struct disk {
	struct virtio_dev vdev;
	int fd;                /* the harness's own fd on the image */
	char serial[VIRTIO_BLK_ID_BYTES];
	bool readonly;
};

static struct vm vm;
static struct disk disks[NDEV];
static uint8_t initial[IMG_BYTES], shadow[IMG_BYTES], img_now[IMG_BYTES];
static uint8_t canary[RAM_SIZE], before[RAM_SIZE], after[RAM_SIZE], expect[RAM_SIZE];
static unsigned resets;

static void on_signal(struct virtio_dev *vdev, unsigned q) { (void)vdev; (void)q; }
static void on_needs_reset(struct virtio_dev *vdev) { (void)vdev; resets++; }

static uint8_t *ram(uint64_t gpa)
{
	return vm.mem.regions[gpa >= REGION_SIZE].hva + gpa % REGION_SIZE;
}

static void ram_write(uint64_t gpa, const void *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		*ram(gpa + i) = ((const uint8_t *)p)[i];
}

static void ram_copy_out(uint8_t *dst)
{
	memcpy(dst, vm.mem.regions[0].hva, REGION_SIZE);
	memcpy(dst + REGION_SIZE, vm.mem.regions[1].hva, REGION_SIZE);
}

static void ram_copy_in(const uint8_t *src)
{
	memcpy(vm.mem.regions[0].hva, src, REGION_SIZE);
	memcpy(vm.mem.regions[1].hva, src + REGION_SIZE, REGION_SIZE);
}

/* Whatever the device left in [gpa, gpa + len) is fine. */
static void dont_care(uint64_t gpa, uint64_t len)
{
	memcpy(expect + gpa, after + gpa, len);
}

static uint8_t img_byte(unsigned i)
{
	return (uint8_t)((i / 512) * 37 + (i % 512) * 11 + 0x41);
}

static void init_once(void)
{
	static const char *const serials[NDEV] = { "FUZZ-SERIAL-01234567", "", "abc", "RO-SERIAL" };
	static bool done;
	char path[64], args[160], err[256];

	if (done)
		return;
	done = true;
	for (unsigned r = 0; r < 2; r++) {
		uint8_t *p = aligned_alloc(4096, REGION_SIZE);

		if (!p)
			abort();
		vm.mem.regions[r] = (struct gmem_region){ .gpa = r * REGION_SIZE, .size = REGION_SIZE,
							  .hva = p, .fd_offset = r * REGION_SIZE };
	}
	vm.mem.fd = -1;
	vm.mem.ram_size = RAM_SIZE;
	vm.mem.nr_regions = 2;
	vm.ncpus = 1;
	if (evloop_create(&vm.loop))
		abort();
	for (unsigned i = 0; i < IMG_BYTES; i++)
		initial[i] = img_byte(i);
	for (uint64_t g = 0; g < RAM_SIZE; g++)
		canary[g] = (uint8_t)(0xa5 ^ (g * 7) ^ (g >> 9));

	for (unsigned d = 0; d < NDEV; d++) {
		struct disk *k = &disks[d];

		snprintf(path, sizeof(path), "%s/fuzz_virtio_blk.XXXXXX",
			 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
		k->fd = mkstemp(path);
		if (k->fd < 0 || pwrite(k->fd, initial, IMG_BYTES, 0) != IMG_BYTES)
			abort();
		k->readonly = d & 1;
		memcpy(k->serial, serials[d], strlen(serials[d]));
		snprintf(args, sizeof(args), "path=%s,queues=1,io=%s%s%s%s", path,
			 d & 2 ? "threads" : "uring", k->readonly ? ",readonly=on" : "",
			 serials[d][0] ? ",serial=" : "", serials[d]);
		if (virtio_blk_kind.create(&vm, args, &k->vdev, err, sizeof(err))) {
			fprintf(stderr, "fuzz_virtio_blk: %s\n", err);
			abort();
		}
		unlink(path);
		k->vdev.signal_used = on_signal;
		k->vdev.needs_reset = on_needs_reset;
		if (virtq_init(&k->vdev.vqs[0], &vm.mem, "fuzz.blk", k->vdev.queue_max_size))
			abort();
	}
}

/* ---- transport ------------------------------------------------------------------ */

struct run {
	struct disk *k;
	uint64_t features;
	uint16_t avail_idx, used_seen;
	uint64_t tame_next;
};

static void start(struct run *r)
{
	struct virtq *vq = &r->k->vdev.vqs[0];

	memset(ram(DESC_GPA), 0, 0x3000);
	virtq_reset(vq);
	vq->size = QSIZE;
	vq->desc_gpa = DESC_GPA;
	vq->avail_gpa = AVAIL_GPA;
	vq->used_gpa = USED_GPA;
	CHECK(virtq_enable(vq, r->features) == 0);
	r->k->vdev.driver_features = r->features;
	r->avail_idx = r->used_seen = 0;
	CHECK(r->k->vdev.ops->activate(&r->k->vdev) == 0);
}

/* What the transport does when the driver writes status 0. */
static void stop(struct run *r)
{
	virtq_reset(&r->k->vdev.vqs[0]);
	r->k->vdev.ops->reset(&r->k->vdev);
}

static uint16_t used_idx(void)
{
	le16 v;

	memcpy(&v, ram(USED_GPA + 2), 2);
	return le16_to_cpu(v);
}

/* ---- building requests ----------------------------------------------------------- */

static uint64_t tame_alloc(struct run *r, uint32_t *len)
{
	uint64_t gpa = r->tame_next;

	if (*len > WILD_GPA - gpa)
		*len = (uint32_t)(WILD_GPA - gpa);
	r->tame_next += *len;
	return gpa;
}

static uint64_t pick_sector(struct input *in, unsigned mode)
{
	switch (mode & 3) {
	case 0:
		return take8(in) % 80;
	case 1:
		return IMG_SECTORS - take8(in) % 8;
	case 2:
		return take64(in);
	default:
		return UINT64_MAX - take8(in);
	}
}

static void add_seg(struct req *q, uint64_t gpa, uint32_t len, bool write)
{
	if (q->nsegs < MAX_SEGS)
		q->segs[q->nsegs++] = (struct seg){ .gpa = gpa, .len = len, .write = write };
}

/* Fill a readable tame buffer: bytes the guest would send. */
static void fill(uint64_t gpa, uint32_t len, uint8_t seed)
{
	for (uint32_t i = 0; i < len; i++)
		*ram(gpa + i) = (uint8_t)(seed + i * 13 + (i >> 8));
}

/* Write bytes at offset off of the readable part, through the segments that are in RAM. */
static void out_write(const struct req *q, uint32_t off, const void *p, uint32_t len)
{
	for (unsigned i = 0; i < q->nsegs && len; i++) {
		const struct seg *s = &q->segs[i];

		if (s->write)
			break;
		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		for (uint32_t j = off; j < s->len && len; j++, len--, p = (const uint8_t *)p + 1)
			if (s->gpa + j >= s->gpa && s->gpa + j < RAM_SIZE)
				*ram(s->gpa + j) = *(const uint8_t *)p;
		off = 0;
	}
}

static void build_req(struct run *r, struct input *in, struct req *q, uint8_t ctl, uint8_t segctl)
{
	static const uint32_t types[8] = { VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_FLUSH,
					   VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_DISCARD,
					   VIRTIO_BLK_T_WRITE_ZEROES, 0, VIRTIO_BLK_T_IN };
	struct virtio_blk_outhdr h;
	uint32_t type = types[ctl & 7], hlen = 16, split = 0, extra = 0, len;
	uint64_t gpa;

	memset(q, 0, sizeof(*q));
	if ((ctl & 7) == 6)
		type = take32(in);
	q->indirect = ctl & 8;
	switch ((ctl >> 4) & 3) {
	case 1:
		split = take8(in) % 15 + 1;
		break;
	case 2:
		hlen = take8(in) % 16;
		break;
	case 3:
		extra = 512 * (take8(in) % 3);
		break;
	}
	h = (struct virtio_blk_outhdr){
		.type = cpu_to_le32(type),
		.reserved = cpu_to_le32(0),
		.sector = cpu_to_le64(pick_sector(in, ctl >> 6)),
	};
	len = hlen + extra;
	gpa = tame_alloc(r, &len);
	fill(gpa, len, ctl);
	ram_write(gpa, &h, MIN(len, hlen));
	if (split && len > split) {
		add_seg(q, gpa, split, false);
		add_seg(q, gpa + split, len - split, false);
	} else {
		add_seg(q, gpa, len, false);
	}

	for (unsigned i = 0; i < (segctl & 7) % 6; i++) {
		uint8_t f = take8(in);
		bool write = f & 1;

		switch ((f >> 1) & 3) {
		case 0:
		case 1:
			len = f & 8 ? 512 * (take8(in) % 8 + 1) : take16(in) % 1100;
			gpa = tame_alloc(r, &len);
			break;
		case 2:
			gpa = WILD_GPA + take16(in) % WILD_SIZE;
			len = f & 8 ? 512 * (take8(in) % 8 + 1) : take16(in) % 1100;
			break;
		default:
			gpa = take64(in);
			len = take32(in);
			if (gpa < WILD_GPA)
				gpa = WILD_GPA + gpa % WILD_SIZE;
			break;
		}
		if (!write && gpa < WILD_GPA)
			fill(gpa, len, f);
		add_seg(q, gpa, len, write);
	}

	switch ((segctl >> 4) & 3) {
	case 0:
		len = 1;
		add_seg(q, tame_alloc(r, &len), len, true);
		break;
	case 2:
		len = 1;
		add_seg(q, tame_alloc(r, &len), len, false);
		break;
	case 3:
		len = take8(in) + 1u;
		add_seg(q, tame_alloc(r, &len), len, true);
		break;
	}

	if (type == VIRTIO_BLK_T_DISCARD || type == VIRTIO_BLK_T_WRITE_ZEROES) {
		struct virtio_blk_discard_write_zeroes s;
		uint8_t cnt, fl;

		s.sector = cpu_to_le64(pick_sector(in, take8(in)));
		cnt = take8(in);
		s.num_sectors = cpu_to_le32(cnt == 0xff ? take32(in) : cnt * 3u);
		fl = take8(in);
		s.flags = cpu_to_le32(fl == 0xff ? take32(in) : fl % 4u);
		out_write(q, 16, &s, sizeof(s));
	}
}

/* Lay q out at descriptor *next (one indirect descriptor, or a direct chain) and make it available. */
static void offer(struct run *r, struct req *q, unsigned idx, uint16_t *next)
{
	uint64_t table = DESC_GPA;
	uint16_t base = *next;
	le16 v;

	if (q->indirect) {
		struct virtq_desc d = {
			.addr = cpu_to_le64(ITABLE_GPA + 0x200ull * idx),
			.len = cpu_to_le32(16 * q->nsegs),
			.flags = cpu_to_le16(VIRTQ_DESC_F_INDIRECT),
		};

		ram_write(DESC_GPA + 16ull * base, &d, sizeof(d));
		q->head = base;
		(*next)++;
		table = ITABLE_GPA + 0x200ull * idx;
		base = 0;
	} else {
		q->head = base;
		*next = (uint16_t)(*next + q->nsegs);
	}
	for (unsigned i = 0; i < q->nsegs; i++) {
		struct virtq_desc d = {
			.addr = cpu_to_le64(q->segs[i].gpa),
			.len = cpu_to_le32(q->segs[i].len),
			.flags = cpu_to_le16((q->segs[i].write ? VIRTQ_DESC_F_WRITE : 0) |
					     (i + 1 < q->nsegs ? VIRTQ_DESC_F_NEXT : 0)),
			.next = cpu_to_le16((uint16_t)(base + i + 1)),
		};

		ram_write(table + 16ull * (base + i), &d, sizeof(d));
	}
	v = cpu_to_le16(q->head);
	ram_write(AVAIL_GPA + 4 + 2ull * (r->avail_idx % QSIZE), &v, 2);
	r->avail_idx++;
}

/* ---- the model -------------------------------------------------------------------- */

static bool seg_in_ram(const struct seg *s)
{
	return s->len == 0 || (s->gpa < RAM_SIZE && s->len <= RAM_SIZE - s->gpa);
}

static bool overlap(const struct seg *a, const struct seg *b)
{
	return a->len && b->len && seg_in_ram(a) && seg_in_ram(b) && a->gpa < b->gpa + b->len &&
	       b->gpa < a->gpa + a->len;
}

/* Bytes off.. of the readable (or writable) part, as they were at the kick. */
static void part_read(const struct req *q, bool write, uint64_t off, uint8_t *buf, uint64_t len)
{
	for (unsigned i = 0; i < q->nsegs && len; i++) {
		const struct seg *s = &q->segs[i];

		if (s->write != write)
			continue;
		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		for (uint64_t j = off; j < s->len && len; j++, len--)
			*buf++ = before[s->gpa + j];
		off = 0;
	}
}

/* The guest-physical address of byte off of the writable part. */
static uint64_t in_gpa(const struct req *q, uint64_t off)
{
	for (unsigned i = 0; i < q->nsegs; i++) {
		const struct seg *s = &q->segs[i];

		if (!s->write)
			continue;
		if (off < s->len)
			return s->gpa + off;
		off -= s->len;
	}
	__builtin_trap();
}

static bool sectors_ok(uint64_t sector, uint64_t n)
{
	return n <= IMG_SECTORS && sector <= IMG_SECTORS - n;
}

/* Fate, status, used length and image write of q, per 5.2.6 and the device's documented limits. */
static void predict(const struct run *r, struct req *q)
{
	uint64_t out_len = 0, in_len = 0, sector, data;
	struct virtio_blk_outhdr h;
	bool writing = false;

	q->fate = F_VQ_BROKEN;
	q->status_known = true;
	if (q->indirect && !(r->features & (1ull << VIRTIO_F_INDIRECT_DESC)))
		return;
	for (unsigned i = 0; i < q->nsegs; i++) {
		const struct seg *s = &q->segs[i];

		if (!seg_in_ram(s))
			return;
		if (s->write)
			writing = true;
		else if (writing)
			return;
		*(s->write ? &in_len : &out_len) += s->len;
	}
	q->fate = F_DEV_BROKEN;
	if (out_len < 16 || in_len < 1)
		return;
	q->fate = F_DONE;
	q->used_len = 1;
	part_read(q, false, 0, (uint8_t *)&h, sizeof(h));
	q->type = le32_to_cpu(h.type);
	sector = le64_to_cpu(h.sector);
	q->status = VIRTIO_BLK_S_IOERR;
	switch (q->type) {
	case VIRTIO_BLK_T_IN:
		data = in_len - 1;
		if (data % 512 || !sectors_ok(sector, data / 512))
			return;
		q->status = VIRTIO_BLK_S_OK;
		q->used_len = (uint32_t)data + 1;
		return;
	case VIRTIO_BLK_T_OUT:
		data = out_len - 16;
		if (r->k->readonly || data % 512 || !sectors_ok(sector, data / 512))
			return;
		q->status = VIRTIO_BLK_S_OK;
		q->wr_sector = sector;
		q->wr_count = data / 512;
		return;
	case VIRTIO_BLK_T_FLUSH:
		q->status = VIRTIO_BLK_S_OK;
		return;
	case VIRTIO_BLK_T_GET_ID:
		if (!r->k->serial[0]) {
			q->status = VIRTIO_BLK_S_UNSUPP;
			return;
		}
		q->status = VIRTIO_BLK_S_OK;
		q->used_len = (uint32_t)MIN(in_len - 1, VIRTIO_BLK_ID_BYTES) + 1;
		return;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES: {
		unsigned bit = q->type == VIRTIO_BLK_T_DISCARD ? VIRTIO_BLK_F_DISCARD
							    : VIRTIO_BLK_F_WRITE_ZEROES;
		struct virtio_blk_discard_write_zeroes s;
		uint32_t n, fl;

		if (r->k->readonly)
			return;
		if (!(r->features & (1ull << bit))) {
			q->status = VIRTIO_BLK_S_UNSUPP;
			return;
		}
		if (out_len != 32)
			return;
		/* From here on the answer depends on guest bytes a racing write may change. */
		q->status_known = !q->fuzzy;
		part_read(q, false, 16, (uint8_t *)&s, sizeof(s));
		n = le32_to_cpu(s.num_sectors);
		fl = le32_to_cpu(s.flags);
		if (fl > 1 || (q->type == VIRTIO_BLK_T_DISCARD && fl)) {
			q->status = VIRTIO_BLK_S_UNSUPP;
			return;
		}
		if (n > VIRTIO_BLK_MAX_DISCARD_SECTORS || !sectors_ok(le64_to_cpu(s.sector), n))
			return;
		q->status = VIRTIO_BLK_S_OK;
		q->wr_sector = le64_to_cpu(s.sector);
		q->wr_count = n;
		q->wr_zero = q->type == VIRTIO_BLK_T_WRITE_ZEROES;
		q->wr_discard = !q->wr_zero;
		return;
	}
	default:
		q->status = VIRTIO_BLK_S_UNSUPP;
		return;
	}
}

/* ---- a batch: offer, kick, wait, check ---------------------------------------------- */

static void run_batch(struct run *r, struct req *qs, unsigned n, bool pause)
{
	static uint8_t wcount[IMG_SECTORS];
	struct virtio_dev *vdev = &r->k->vdev;
	bool aliased = false, image_known = true;
	enum fate broken = F_DONE;
	uint16_t next = 0, start_used = r->used_seen, target;
	unsigned resets_before = resets, ndone = 0;
	uint64_t deadline;
	struct stat st;
	le16 v;

	for (unsigned i = 0; i < n; i++)
		offer(r, &qs[i], i, &next);
	v = cpu_to_le16(r->avail_idx);
	ram_write(AVAIL_GPA + 2, &v, 2);
	/* Who shares bytes with a writable buffer: their contents are the guest's race. */
	for (unsigned i = 0; i < n; i++)
		for (unsigned a = 0; a < qs[i].nsegs; a++)
			for (unsigned j = 0; j < n; j++)
				for (unsigned b = 0; b < qs[j].nsegs; b++)
					if ((i != j || a != b) && qs[j].segs[b].write &&
					    overlap(&qs[i].segs[a], &qs[j].segs[b])) {
						qs[i].fuzzy = true;
						aliased = true;
					}
	ram_copy_out(before);
	for (unsigned i = 0; i < n; i++) {
		if (broken == F_DONE)
			predict(r, &qs[i]);
		else
			qs[i].fate = broken;
		if (qs[i].fate != F_DONE)
			broken = qs[i].fate;
		else
			ndone++;
	}

	vdev->ops->queue_notify(vdev, 0);
	if (pause) {
		CHECK(vdev->ops->pause(vdev) == 0);
		CHECK(vdev->ops->resume(vdev) == 0);
	}
	/* A broken ring publishes nothing more: not even the chains popped before. */
	target = (uint16_t)(start_used + (broken == F_VQ_BROKEN ? 0 : ndone));
	deadline = monotonic_ns() + 5000000000ull;
	while (used_idx() != target) {
		/* Never more than predicted, and never a hang. */
		CHECK((uint16_t)(used_idx() - start_used) < (uint16_t)(target - start_used));
		CHECK(monotonic_ns() < deadline);
		CHECK(evloop_run_once(vm.loop, 10) >= 0);
	}
	CHECK(evloop_run_once(vm.loop, 0) >= 0);
	CHECK(used_idx() == target);
	CHECK((resets != resets_before) == (broken != F_DONE));
	/* The transport's reset waits for what is still in flight. */
	if (broken != F_DONE)
		stop(r);

	/* Used elements: each completed chain once, with its length. */
	for (uint16_t u = start_used; u != target; u++) {
		struct virtq_used_elem e;
		unsigned i;

		memcpy(&e, ram(USED_GPA + 4 + 8ull * (u % QSIZE)), sizeof(e));
		for (i = 0; i < n; i++)
			if (qs[i].fate == F_DONE && qs[i].head == le32_to_cpu(e.id) && !qs[i].seen)
				break;
		CHECK(i < n);
		qs[i].seen = true;
		if (qs[i].status_known)
			CHECK(le32_to_cpu(e.len) == (qs[i].status == VIRTIO_BLK_S_OK ? qs[i].used_len : 1));
		else
			CHECK(le32_to_cpu(e.len) == 1);
	}
	r->used_seen = target;

	/* The image: its size, and what each sector may hold now. */
	CHECK(fstat(r->k->fd, &st) == 0 && st.st_size == IMG_BYTES);
	CHECK(pread(r->k->fd, img_now, IMG_BYTES, 0) == IMG_BYTES);
	memset(wcount, 0, sizeof(wcount));
	for (unsigned i = 0; i < n; i++) {
		struct req *q = &qs[i];

		if (q->fate != F_DONE)
			continue;
		if (!q->status_known) {
			image_known = false;
			continue;
		}
		if (q->status != VIRTIO_BLK_S_OK)
			continue;
		for (uint64_t s = 0; s < q->wr_count; s++)
			wcount[q->wr_sector + s] += q->fuzzy ? 2 : 1;
	}
	for (unsigned s = 0; s < IMG_SECTORS && image_known; s++) {
		const uint8_t *now = img_now + s * 512, *old = shadow + s * 512;
		uint8_t want[512];
		unsigned i;

		if (!wcount[s]) {
			CHECK(!memcmp(now, old, 512));
			continue;
		}
		if (wcount[s] > 1)
			continue;
		for (i = 0; i < n; i++)
			if (qs[i].fate == F_DONE && qs[i].status == VIRTIO_BLK_S_OK && qs[i].wr_count &&
			    s >= qs[i].wr_sector && s - qs[i].wr_sector < qs[i].wr_count)
				break;
		if (qs[i].wr_discard) {
			for (unsigned b = 0; b < 512; b++)
				CHECK(now[b] == old[b] || now[b] == 0);
			continue;
		}
		memset(want, 0, sizeof(want));
		if (!qs[i].wr_zero)
			part_read(&qs[i], false, 16 + 512 * (s - qs[i].wr_sector), want, 512);
		CHECK(!memcmp(now, want, 512));
	}

	/* Guest RAM: the model's writes and nothing else, outside the used ring. */
	ram_copy_out(after);
	memcpy(expect, before, RAM_SIZE);
	dont_care(USED_GPA, USED_BYTES);
	for (unsigned i = 0; i < n; i++) {
		struct req *q = &qs[i];
		uint64_t in_len = 0;

		if (aliased || (broken == F_VQ_BROKEN && q->fate == F_DONE))
			for (unsigned a = 0; a < q->nsegs; a++)
				if (q->segs[a].write && q->segs[a].len && seg_in_ram(&q->segs[a]))
					dont_care(q->segs[a].gpa, q->segs[a].len);
		if (q->fate != F_DONE || aliased || broken == F_VQ_BROKEN)
			continue;
		for (unsigned a = 0; a < q->nsegs; a++)
			in_len += q->segs[a].write ? q->segs[a].len : 0;
		expect[in_gpa(q, in_len - 1)] = q->status;
		if (q->status != VIRTIO_BLK_S_OK)
			continue;
		if (q->type == VIRTIO_BLK_T_IN) {
			uint64_t sector;
			bool racy = false;

			part_read(q, false, 8, (uint8_t *)&sector, 8);
			for (uint64_t b = 0; b + 1 < q->used_len; b += 512)
				racy |= wcount[sector + b / 512] != 0;
			for (uint64_t b = 0; b + 1 < q->used_len; b++) {
				if (racy)
					dont_care(in_gpa(q, b), 1);
				else
					expect[in_gpa(q, b)] = shadow[sector * 512 + b];
			}
		} else if (q->type == VIRTIO_BLK_T_GET_ID) {
			for (uint64_t b = 0; b + 1 < q->used_len; b++)
				expect[in_gpa(q, b)] = (uint8_t)r->k->serial[b];
		}
	}
	CHECK(!memcmp(after, expect, RAM_SIZE));

	memcpy(shadow, img_now, IMG_BYTES);
	if (broken != F_DONE)
		start(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct req qs[MAX_REQS];
	struct input in = { data, size };
	struct run r = { 0 };
	uint8_t cfg;

	init_once();
	if (size < 1)
		return 0;
	cfg = take8(&in);
	r.k = &disks[cfg & 3];
	r.features = (1ull << VIRTIO_F_VERSION_1) |
		     (cfg & 4 ? 1ull << VIRTIO_F_EVENT_IDX : 0) |
		     (cfg & 8 ? (1ull << VIRTIO_BLK_F_DISCARD) | (1ull << VIRTIO_BLK_F_WRITE_ZEROES) : 0) |
		     (cfg & 16 ? 1ull << VIRTIO_F_INDIRECT_DESC : 0);
	r.features &= r.k->vdev.device_features | (1ull << VIRTIO_F_VERSION_1);

	/* A fresh image and guest RAM full of canaries. */
	CHECK(pwrite(r.k->fd, initial, IMG_BYTES, 0) == IMG_BYTES);
	memcpy(shadow, initial, IMG_BYTES);
	ram_copy_in(canary);
	start(&r);

	for (unsigned b = 0; b < MAX_BATCHES && in.n; b++) {
		unsigned n = 0;
		bool pause = false;

		r.tame_next = TAME_GPA;
		while (n < MAX_REQS && in.n) {
			uint8_t ctl = take8(&in), segctl = take8(&in);

			build_req(&r, &in, &qs[n++], ctl, segctl);
			pause |= segctl & 8;
			if (segctl & 0x80)
				break;
		}
		run_batch(&r, qs, n, pause);
	}
	stop(&r);
	return 0;
}
