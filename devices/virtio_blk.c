/*
 * virtio-blk device (virtio 1.2, 5.2): request parsing, config space and the
 * device hooks. The I/O itself runs in devices/blk_io.c.
 *
 * Per queue, a pool of vq->size requests is allocated when the queue goes
 * live (at activate, or later through queue_enable; a queue found enabled
 * without one gets it on its first kick); a popped chain lives in its request
 * until the I/O completes and the chain is pushed back. Used-ring updates and
 * interrupts are batched: once per kick and once per completion batch.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "channel/evloop.h"
#include "devices/blk_io.h"
#include "devices/virtio_blk.h"
#include "vmm/snapshot/format.h"
#include "vmm/vm.h"

struct blk_dev;

struct blk_req {
	struct virtq_chain chain;
	struct blk_io_req io;
	struct blk_dev *blk;
	uint8_t *status;       /* last byte of the device-writable part */
	uint32_t used_len;     /* bytes written into the writable part on success */
	uint32_t type;         /* VIRTIO_BLK_T_*, for the counters */
	uint16_t q;
	struct blk_req *next_free;
};

struct blk_queue {
	struct blk_req *reqs;  /* vq->size of them while active, else NULL */
	unsigned nreqs;
	struct blk_req *free;
	bool dirty;            /* pushed but not flushed */
	bool starved;          /* stopped popping for lack of a free request */
};

struct blk_dev {
	struct virtio_dev *vdev;
	int fd;
	bool readonly;
	char serial[VIRTIO_BLK_ID_BYTES];
	uint64_t sectors;
	struct virtio_blk_config cfg;
	struct blk_io *io;

	/* Written only while the loop does not touch the device (engine detached, kicks unwatched). */
	bool active;           /* between activate and reset */
	bool paused;
	bool dropping;         /* reset in progress: completions are not pushed */
	bool broken;           /* asked for a reset; process nothing until it comes (loop) */
	struct evloop_op resume_op;  /* after resume: look at every queue, on the loop */
	struct blk_queue queues[VIRTIO_MAX_QUEUES];
};

/* ---- completions ----------------------------------------------------------------- */

static void req_free(struct blk_dev *blk, struct blk_req *req)
{
	struct blk_queue *bq = &blk->queues[req->q];

	req->next_free = bq->free;
	bq->free = req;
}

/* vm.counters: reads and writes as Cloud Hypervisor names them; flush, discard and the rest are requests. */
static const struct virtio_dev_counter_names blk_counter_names = {
	"read_ops", "read_bytes", "write_ops", "write_bytes",
};

static void count_request(struct blk_dev *blk, const struct blk_req *req, uint8_t status)
{
	struct virtio_dev_counters *c = &blk->vdev->counters;

	virtio_count(&c->requests, 1);
	if (status != VIRTIO_BLK_S_OK) {
		virtio_count(&c->errors, 1);
	} else if (req->type == VIRTIO_BLK_T_IN) {
		virtio_count(&c->in_ops, 1);
		virtio_count(&c->in_bytes, req->used_len - 1);
	} else if (req->type == VIRTIO_BLK_T_OUT) {
		virtio_count(&c->out_ops, 1);
		virtio_count(&c->out_bytes, req->io.len);
	}
}

/* Write the status byte and push the chain (published later by flush_queues). */
static void req_complete(struct blk_dev *blk, struct blk_req *req, uint8_t status)
{
	uint32_t len = status == VIRTIO_BLK_S_OK ? req->used_len : 1;

	if (!blk->dropping) {
		count_request(blk, req, status);
		*req->status = status;
		/* -ENODEV/-EIO: the queue was reset or broke meanwhile; nothing to give back. */
		if (virtq_push(&blk->vdev->vqs[req->q], req->chain.head, len) == 0)
			blk->queues[req->q].dirty = true;
	}
	req_free(blk, req);
}

/* A chain we cannot even answer: ask the driver for a reset (5.2.6 gives no other way). */
static void blk_fail(struct blk_dev *blk, unsigned q, const char *why)
{
	if (blk->broken)
		return;
	blk->broken = true;
	pr_guest_err("%s: queue %u: %s: device needs reset", blk->vdev->id, q, why);
	if (blk->vdev->needs_reset)
		blk->vdev->needs_reset(blk->vdev);
}

static void flush_queues(struct blk_dev *blk)
{
	struct virtio_dev *vdev = blk->vdev;

	for (unsigned q = 0; q < vdev->num_queues; q++) {
		struct blk_queue *bq = &blk->queues[q];

		if (!bq->dirty)
			continue;
		bq->dirty = false;
		virtq_flush(&vdev->vqs[q]);
		if (virtq_needs_notify(&vdev->vqs[q]) && vdev->signal_used)
			vdev->signal_used(vdev, q);
	}
}

/* ---- request parsing ------------------------------------------------------------- */

/* [sector, sector + bytes / 512) lies inside the disk. Overflow-safe. */
static bool range_ok(const struct blk_dev *blk, uint64_t sector, uint64_t bytes)
{
	uint64_t n = bytes / VIRTIO_BLK_SECTOR_SIZE;

	return sector <= blk->sectors && n <= blk->sectors - sector;
}

/* Drop the first n bytes of iov[0..*cnt) in place; returns the new start. */
static struct iovec *iov_skip(struct iovec *iov, unsigned *cnt, size_t n)
{
	while (n && *cnt) {
		if (n >= iov->iov_len) {
			n -= iov->iov_len;
			iov++;
			(*cnt)--;
		} else {
			iov->iov_base = (uint8_t *)iov->iov_base + n;
			iov->iov_len -= n;
			n = 0;
		}
	}
	return iov;
}

static uint8_t parse_discard(struct blk_dev *blk, struct blk_req *req, uint32_t type)
{
	const struct virtq_chain *c = &req->chain;
	struct virtio_blk_discard_write_zeroes seg;
	uint32_t data_len = c->out_len - (uint32_t)sizeof(struct virtio_blk_outhdr);
	unsigned feature = type == VIRTIO_BLK_T_DISCARD ? VIRTIO_BLK_F_DISCARD
							 : VIRTIO_BLK_F_WRITE_ZEROES;
	uint32_t flags, nsect;
	uint64_t sector;

	if (blk->readonly)
		return VIRTIO_BLK_S_IOERR;
	if (!virtio_has_feature(blk->vdev, feature))
		return VIRTIO_BLK_S_UNSUPP;
	/* Exactly one segment: we offer max_*_seg = 1. */
	if (data_len != sizeof(seg))
		return VIRTIO_BLK_S_IOERR;
	if (virtq_chain_read(c, sizeof(struct virtio_blk_outhdr), &seg, sizeof(seg)) != sizeof(seg))
		return VIRTIO_BLK_S_IOERR;
	sector = le64_to_cpu(seg.sector);
	nsect = le32_to_cpu(seg.num_sectors);
	flags = le32_to_cpu(seg.flags);
	/* 5.2.6.2: unknown flags, or unmap on a discard, are UNSUPP. */
	if (flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)
		return VIRTIO_BLK_S_UNSUPP;
	if (type == VIRTIO_BLK_T_DISCARD && flags)
		return VIRTIO_BLK_S_UNSUPP;
	if (nsect > VIRTIO_BLK_MAX_DISCARD_SECTORS)
		return VIRTIO_BLK_S_IOERR;
	if (!range_ok(blk, sector, (uint64_t)nsect * VIRTIO_BLK_SECTOR_SIZE))
		return VIRTIO_BLK_S_IOERR;
	if (nsect == 0)
		return VIRTIO_BLK_S_OK;
	req->io.op = type == VIRTIO_BLK_T_DISCARD ? BLK_IO_DISCARD : BLK_IO_WRITE_ZEROES;
	req->io.off = sector * VIRTIO_BLK_SECTOR_SIZE;
	req->io.len = (uint64_t)nsect * VIRTIO_BLK_SECTOR_SIZE;
	req->io.unmap = flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
	return 0xff;  /* submitted */
}

/*
 * Decide what req asks for. Returns a status to complete with at once, or
 * 0xff when req->io is ready to submit.
 */
static uint8_t parse_request(struct blk_dev *blk, struct blk_req *req)
{
	struct virtq_chain *c = &req->chain;
	struct virtio_blk_outhdr hdr;
	uint32_t type, data_len;
	uint64_t sector;
	unsigned cnt;
	struct iovec *iov;

	if (virtq_chain_read(c, 0, &hdr, sizeof(hdr)) != sizeof(hdr))
		return VIRTIO_BLK_S_IOERR;  /* not reached: the caller checked out_len */
	type = le32_to_cpu(hdr.type);
	sector = le64_to_cpu(hdr.sector);
	req->type = type;
	req->used_len = 1;
	memset(&req->io, 0, sizeof(req->io));

	switch (type) {
	case VIRTIO_BLK_T_IN:
		data_len = c->in_len - 1;
		if (data_len % VIRTIO_BLK_SECTOR_SIZE || !range_ok(blk, sector, data_len))
			return VIRTIO_BLK_S_IOERR;
		req->used_len = data_len + 1;
		if (data_len == 0)
			return VIRTIO_BLK_S_OK;
		/* The data is the writable part without its last byte (the status). */
		cnt = c->nr_in;
		iov = c->in;
		if (--iov[cnt - 1].iov_len == 0)
			cnt--;
		req->io.op = BLK_IO_READ;
		req->io.off = sector * VIRTIO_BLK_SECTOR_SIZE;
		req->io.len = data_len;
		req->io.iov = iov;
		req->io.iovcnt = cnt;
		return 0xff;
	case VIRTIO_BLK_T_OUT:
		if (blk->readonly)
			return VIRTIO_BLK_S_IOERR;
		data_len = c->out_len - (uint32_t)sizeof(hdr);
		if (data_len % VIRTIO_BLK_SECTOR_SIZE || !range_ok(blk, sector, data_len))
			return VIRTIO_BLK_S_IOERR;
		if (data_len == 0)
			return VIRTIO_BLK_S_OK;
		cnt = c->nr_out;
		iov = iov_skip(c->out, &cnt, sizeof(hdr));
		req->io.op = BLK_IO_WRITE;
		req->io.off = sector * VIRTIO_BLK_SECTOR_SIZE;
		req->io.len = data_len;
		req->io.iov = iov;
		req->io.iovcnt = cnt;
		return 0xff;
	case VIRTIO_BLK_T_FLUSH:
		req->io.op = BLK_IO_FLUSH;
		return 0xff;
	case VIRTIO_BLK_T_GET_ID: {
		uint32_t n = MIN(c->in_len - 1, VIRTIO_BLK_ID_BYTES);

		if (!blk->serial[0])
			return VIRTIO_BLK_S_UNSUPP;
		/* Up to 20 bytes, NUL-padded; the status byte stays last. */
		virtq_chain_write(c, 0, blk->serial, n);
		req->used_len = n + 1;
		return VIRTIO_BLK_S_OK;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		return parse_discard(blk, req, type);
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
}

/* One popped chain. Returns false when the device broke. */
static bool handle_chain(struct blk_dev *blk, unsigned q, struct blk_req *req)
{
	struct virtq_chain *c = &req->chain;
	struct iovec *last;
	uint8_t status;

	if (c->out_len < sizeof(struct virtio_blk_outhdr) || c->in_len < 1) {
		req_free(blk, req);
		blk_fail(blk, q, c->in_len < 1 ? "request without a writable status byte"
					       : "request header shorter than 16 bytes");
		return false;
	}
	/* Zero-length descriptors make no iovec, so the last one holds at least the status. */
	last = &c->in[c->nr_in - 1];
	req->status = (uint8_t *)last->iov_base + last->iov_len - 1;
	req->q = (uint16_t)q;

	status = parse_request(blk, req);
	if (status != 0xff)
		req_complete(blk, req, status);
	else
		blk_io_submit(blk->io, &req->io);
	return true;
}

static int pool_create(struct blk_dev *blk, unsigned q);

static void process_queue(struct blk_dev *blk, unsigned q)
{
	struct virtq *vq = &blk->vdev->vqs[q];
	struct blk_queue *bq = &blk->queues[q];
	int r;

	if (blk->broken || !virtq_is_enabled(vq))
		return;
	/* Enabled after DRIVER_OK without queue_enable: serve it all the same. */
	if (!bq->reqs && pool_create(blk, q) < 0) {
		blk_fail(blk, q, "no memory for the queue's requests");
		return;
	}
	bq->starved = false;
	do {
		virtq_disable_notify(vq);
		for (;;) {
			struct blk_req *req = bq->free;

			if (!req) {
				/* Completions free requests and call us again; kicks stay off till then. */
				bq->starved = true;
				return;
			}
			r = virtq_pop(vq, &req->chain);
			if (r <= 0)
				break;
			bq->free = req->next_free;
			if (!handle_chain(blk, q, req))
				return;
		}
		if (r < 0) {
			/* The virtqueue logged why; -ENODEV is a queue the driver never enabled. */
			if (r != -ENODEV)
				blk_fail(blk, q, "malformed ring");
			return;
		}
	} while (virtq_enable_notify(vq));
}

/* ---- engine callbacks (event-loop thread, or the thread draining) ----------------- */

static void io_done(void *opaque, struct blk_io_req *io)
{
	struct blk_dev *blk = opaque;
	struct blk_req *req = (struct blk_req *)((uint8_t *)io - offsetof(struct blk_req, io));

	if (io->result < 0 && !blk->dropping)
		pr_guest_err("%s: %s at byte %llu: %s", blk->vdev->id,
			     io->op == BLK_IO_READ ? "read" : io->op == BLK_IO_WRITE ? "write" :
			     io->op == BLK_IO_FLUSH ? "flush" : "discard",
			     (unsigned long long)io->off, strerror(-io->result));
	req_complete(blk, req, io->result < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK);
}

static void io_batch(void *opaque)
{
	struct blk_dev *blk = opaque;

	flush_queues(blk);
	if (blk->dropping || blk->paused || !blk->active)
		return;
	for (unsigned q = 0; q < blk->vdev->num_queues; q++)
		if (blk->queues[q].starved)
			process_queue(blk, q);
	blk_io_kick(blk->io);
	flush_queues(blk);
}

/* ---- device hooks ------------------------------------------------------------------ */

static void blk_queue_notify(struct virtio_dev *vdev, unsigned q)
{
	struct blk_dev *blk = vdev->priv;

	if (q >= vdev->num_queues || !blk->active || blk->paused || blk->broken)
		return;
	process_queue(blk, q);
	blk_io_kick(blk->io);
	flush_queues(blk);
}

/* Queue q's requests, none in flight. */
static void pool_free(struct blk_dev *blk, unsigned q)
{
	struct blk_queue *bq = &blk->queues[q];

	for (unsigned i = 0; i < bq->nreqs; i++)
		virtq_chain_destroy(&bq->reqs[i].chain);
	free(bq->reqs);
	memset(bq, 0, sizeof(*bq));
}

static void free_pools(struct blk_dev *blk)
{
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		pool_free(blk, q);
}

/* One request per descriptor of enabled queue q: what the device needs to serve it. */
static int pool_create(struct blk_dev *blk, unsigned q)
{
	struct virtq *vq = &blk->vdev->vqs[q];
	struct blk_queue *bq = &blk->queues[q];
	int ret;

	if (bq->reqs)
		return 0;
	bq->reqs = calloc(vq->size, sizeof(*bq->reqs));
	if (!bq->reqs)
		return -ENOMEM;
	for (unsigned i = 0; i < vq->size; i++) {
		struct blk_req *req = &bq->reqs[i];

		/* Room for a full chain plus buffers split across RAM regions. */
		ret = virtq_chain_init(&req->chain, vq->size + GMEM_MAX_REGIONS);
		if (ret < 0) {
			pool_free(blk, q);
			return ret;
		}
		bq->nreqs++;
		req->blk = blk;
		req->q = (uint16_t)q;
		req_free(blk, req);
	}
	return 0;
}

/*
 * Leave the loop: none of our callbacks runs after this, so the flags the
 * caller sets next are not read there; it then drains what is in flight.
 */
static void quiesce(struct blk_dev *blk)
{
	evloop_op_cancel(&blk->resume_op);
	blk_io_detach(blk->io);
}

static void blk_reset(struct virtio_dev *vdev)
{
	struct blk_dev *blk = vdev->priv;

	/* The transport resets the queues next: wait for in-flight I/O, push nothing. */
	quiesce(blk);
	blk->dropping = true;
	blk_io_drain(blk->io);
	blk->dropping = false;
	free_pools(blk);
	blk->active = false;
	blk->paused = false;
	blk->broken = false;
}

static int blk_activate(struct virtio_dev *vdev)
{
	struct blk_dev *blk = vdev->priv;
	int ret;

	if (blk->active)
		blk_reset(vdev);
	for (unsigned q = 0; q < vdev->num_queues; q++) {
		if (!virtq_is_enabled(&vdev->vqs[q]))
			continue;
		ret = pool_create(blk, q);
		if (ret < 0)
			goto err_pools;
	}
	ret = blk_io_attach(blk->io, vdev->vm->loop);
	if (ret < 0)
		goto err_pools;
	blk->active = true;
	return 0;

err_pools:
	free_pools(blk);
	return ret;
}

/* Queue q went live after DRIVER_OK (the device is paused or not yet attached). */
static int blk_queue_enable(struct virtio_dev *vdev, unsigned q)
{
	return pool_create(vdev->priv, q);
}

/*
 * The driver reset queue q alone. The transport paused us first, and pause
 * completes every request in flight, so none of q's is left: drop its pool.
 */
static void blk_queue_reset(struct virtio_dev *vdev, unsigned q)
{
	pool_free(vdev->priv, q);
}

static void blk_cfg_read(struct virtio_dev *vdev, uint32_t off, void *data, uint32_t len)
{
	struct blk_dev *blk = vdev->priv;

	if (off > sizeof(blk->cfg) || len > sizeof(blk->cfg) - off) {
		memset(data, 0, len);
		return;
	}
	memcpy(data, (const uint8_t *)&blk->cfg + off, len);
}

static void blk_cfg_write(struct virtio_dev *vdev, uint32_t off, const void *data, uint32_t len)
{
	/* Only `writeback` is writable, and only with CONFIG_WCE, which we do not offer. */
	(void)vdev;
	(void)off;
	(void)data;
	(void)len;
}

static int blk_pause(struct virtio_dev *vdev)
{
	struct blk_dev *blk = vdev->priv;

	if (blk->paused)
		return 0;
	quiesce(blk);
	blk->paused = true;
	/* Completions of the in-flight requests are pushed and signalled here. */
	blk_io_drain(blk->io);
	return 0;
}

/* Loop thread, after resume: kicks that came while paused may have been dropped. */
static void blk_resume_op_done(struct evloop_op *op, int result, void *opaque)
{
	struct blk_dev *blk = opaque;

	(void)op;
	(void)result;
	if (blk->paused || !blk->active)
		return;
	for (unsigned q = 0; q < blk->vdev->num_queues; q++)
		process_queue(blk, q);
	blk_io_kick(blk->io);
	flush_queues(blk);
}

static int blk_resume(struct virtio_dev *vdev)
{
	struct blk_dev *blk = vdev->priv;
	int ret;

	if (!blk->paused)
		return 0;
	blk->paused = false;
	if (!blk->active)
		return 0;
	ret = blk_io_attach(blk->io, vdev->vm->loop);
	if (ret < 0)
		return ret;
	/* The queues are looked at on the loop, which completions reach from now on. */
	ret = evloop_op_start(vdev->vm->loop, &blk->resume_op, blk_resume_op_done, blk);
	if (ret == 0)
		evloop_op_complete(&blk->resume_op, 0);
	return ret == -EBUSY ? 0 : ret;
}

/* ---- snapshots: the disk the guest knows, to check the one restore opens -------- */

struct blk_snap {
	uint64_t capacity;                     /* sectors */
	uint8_t readonly;
	uint8_t serial[VIRTIO_BLK_ID_BYTES];
};

#define B struct blk_snap
static const struct snap_field blk_snap_fields[] = {
	SNAP_U(B, capacity),
	SNAP_BOOL(B, readonly),
	SNAP_ARR(B, serial),
};
#undef B
const struct snap_desc virtio_blk_snap_desc =
	SNAP_DESC(struct blk_snap, "virtio-blk", 1, blk_snap_fields, NULL);

/*
 * Beyond its queues the device keeps nothing once paused: pause waited for
 * every request in flight and pushed its completion, so a write the guest
 * was told about is in the image, and one it was not told about is not in
 * the ring either (the transport checks no chain is left popped).
 */
static int blk_save(struct virtio_dev *vdev, struct snap_writer *w)
{
	struct blk_dev *blk = vdev->priv;
	struct blk_snap st = { .capacity = blk->sectors, .readonly = blk->readonly };

	if (!blk->paused || blk_io_inflight(blk->io))
		return -EBUSY;
	memcpy(st.serial, blk->serial, sizeof(st.serial));
	return snap_write(w, &virtio_blk_snap_desc, &st);
}

static int blk_load(struct virtio_dev *vdev, struct snap_reader *r, int node)
{
	struct blk_dev *blk = vdev->priv;
	struct blk_snap st = { 0 };
	int ret = snap_read(r, node, &virtio_blk_snap_desc, &st);

	if (ret)
		return ret;
	if (st.capacity != blk->sectors)
		return snap_fail(r, node, "capacity: the snapshot's disk has %llu sectors, this one %llu: "
				 "the disk changed size", (unsigned long long)st.capacity,
				 (unsigned long long)blk->sectors);
	if (st.readonly != blk->readonly)
		return snap_fail(r, node, "readonly: the snapshot's disk was %s, this one is %s",
				 st.readonly ? "read-only" : "writable",
				 blk->readonly ? "read-only" : "writable");
	if (memcmp(st.serial, blk->serial, sizeof(st.serial)))
		return snap_fail(r, node, "serial: the snapshot's disk has serial \"%.20s\", this one "
				 "\"%.20s\"", (const char *)st.serial, blk->serial);
	return 0;
}

static void blk_destroy(struct virtio_dev *vdev)
{
	struct blk_dev *blk = vdev->priv;

	if (!blk)
		return;
	quiesce(blk);
	blk->dropping = true;
	blk_io_destroy(blk->io);
	free_pools(blk);
	close(blk->fd);
	free(blk);
	vdev->priv = NULL;
}

static const struct virtio_dev_ops virtio_blk_ops = {
	.name = "virtio-blk",
	.device_id = VIRTIO_ID_BLOCK,
	.reset = blk_reset,
	.activate = blk_activate,
	.queue_enable = blk_queue_enable,
	.queue_reset = blk_queue_reset,
	.queue_notify = blk_queue_notify,
	.cfg_read = blk_cfg_read,
	.cfg_write = blk_cfg_write,
	.pause = blk_pause,
	.resume = blk_resume,
	.snap_save = blk_save,
	.snap_load = blk_load,
	.destroy = blk_destroy,
	.counter_names = &blk_counter_names,
};

/* ---- creation from the command line ----------------------------------------------- */

struct blk_opts {
	const char *path;
	bool readonly;
	const char *serial;
	unsigned queues;      /* 0: one per vCPU */
	enum blk_io_engine engine;
};

static int parse_opts(char *args, struct blk_opts *o, char *err, size_t errlen)
{
	char *save = NULL;
	unsigned seen = 0;

	for (char *kv = strtok_r(args, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		static const char *const keys[] = { "path", "readonly", "serial", "queues", "io" };
		char *val = strchr(kv, '=');
		unsigned k;

		if (!val) {
			snprintf(err, errlen, "--disk: '%s' is not key=value", kv);
			return -EINVAL;
		}
		*val++ = '\0';
		for (k = 0; k < ARRAY_SIZE(keys); k++)
			if (!strcmp(kv, keys[k]))
				break;
		if (k == ARRAY_SIZE(keys)) {
			snprintf(err, errlen, "--disk: unknown key '%s' (path, readonly, serial, queues, io)",
				 kv);
			return -EINVAL;
		}
		if (seen & (1u << k)) {
			snprintf(err, errlen, "--disk: %s= given twice", kv);
			return -EINVAL;
		}
		seen |= 1u << k;
		switch (k) {
		case 0:
			if (!*val) {
				snprintf(err, errlen, "--disk: path= is empty");
				return -EINVAL;
			}
			o->path = val;
			break;
		case 1:
			if (!strcmp(val, "on") || !strcmp(val, "true") || !strcmp(val, "1")) {
				o->readonly = true;
			} else if (!strcmp(val, "off") || !strcmp(val, "false") || !strcmp(val, "0")) {
				o->readonly = false;
			} else {
				snprintf(err, errlen, "--disk: readonly=%s: expected on or off", val);
				return -EINVAL;
			}
			break;
		case 2:
			if (strlen(val) > VIRTIO_BLK_ID_BYTES) {
				snprintf(err, errlen, "--disk: serial=%s: at most %u characters", val,
					 VIRTIO_BLK_ID_BYTES);
				return -EINVAL;
			}
			for (const char *p = val; *p; p++) {
				if (*p < 0x21 || *p > 0x7e) {
					snprintf(err, errlen, "--disk: serial=%s: printable ASCII only", val);
					return -EINVAL;
				}
			}
			o->serial = val;
			break;
		case 3: {
			char *end;
			unsigned long n;

			errno = 0;
			n = strtoul(val, &end, 10);
			if (errno || end == val || *end || *val == '-' || n < 1 || n > VIRTIO_MAX_QUEUES) {
				snprintf(err, errlen, "--disk: queues=%s: expected 1..%u", val,
					 VIRTIO_MAX_QUEUES);
				return -EINVAL;
			}
			o->queues = (unsigned)n;
			break;
		}
		case 4:
			if (!strcmp(val, "uring") || !strcmp(val, "io_uring")) {
				o->engine = BLK_IO_URING;
			} else if (!strcmp(val, "threads")) {
				o->engine = BLK_IO_THREADS;
			} else {
				snprintf(err, errlen, "--disk: io=%s: expected uring or threads", val);
				return -EINVAL;
			}
			break;
		}
	}
	if (!o->path) {
		snprintf(err, errlen, "--disk: path=PATH is required");
		return -EINVAL;
	}
	return 0;
}

/* Open and size the image; errors name the path. */
static int open_image(const struct blk_opts *o, int *fdp, uint64_t *bytes, char *err, size_t errlen)
{
	struct stat st;
	int fd, ret;

	fd = open(o->path, (o->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "--disk path=%s: %s", o->path, strerror(-ret));
		return -EINVAL;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		snprintf(err, errlen, "--disk path=%s: %s", o->path, strerror(-ret));
		goto err_close;
	}
	if (S_ISREG(st.st_mode)) {
		*bytes = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, bytes) < 0) {
			ret = -errno;
			snprintf(err, errlen, "--disk path=%s: %s", o->path, strerror(-ret));
			goto err_close;
		}
	} else {
		snprintf(err, errlen, "--disk path=%s: not a regular file or block device", o->path);
		goto err_close;
	}
	if (*bytes < VIRTIO_BLK_SECTOR_SIZE) {
		snprintf(err, errlen, "--disk path=%s: image smaller than one 512-byte sector", o->path);
		goto err_close;
	}
	/* Two writers on one image corrupt it; readers may share. */
	if (flock(fd, (o->readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK) {
			snprintf(err, errlen, "--disk path=%s: image in use by another process",
				 o->path);
			goto err_close;
		}
		/* Some file systems (9p, some FUSE) cannot lock: go on unprotected. */
		pr_info("--disk path=%s: cannot lock the image: %s", o->path, strerror(errno));
	}
	*fdp = fd;
	return 0;

err_close:
	close(fd);
	return -EINVAL;
}

static void fill_config(struct blk_dev *blk, unsigned nq)
{
	struct virtio_blk_config *c = &blk->cfg;

	memset(c, 0, sizeof(*c));
	c->capacity = cpu_to_le64(blk->sectors);
	/* A chain carries a header and a status around its data segments. */
	c->seg_max = cpu_to_le32(VIRTIO_BLK_QUEUE_SIZE - 2);
	c->blk_size = cpu_to_le32(VIRTIO_BLK_SECTOR_SIZE);
	c->num_queues = cpu_to_le16((uint16_t)nq);
	c->max_discard_sectors = cpu_to_le32(VIRTIO_BLK_MAX_DISCARD_SECTORS);
	c->max_discard_seg = cpu_to_le32(VIRTIO_BLK_MAX_DISCARD_SEG);
	c->discard_sector_alignment = cpu_to_le32(1);
	c->max_write_zeroes_sectors = cpu_to_le32(VIRTIO_BLK_MAX_DISCARD_SECTORS);
	c->max_write_zeroes_seg = cpu_to_le32(VIRTIO_BLK_MAX_DISCARD_SEG);
	c->write_zeroes_may_unmap = 1;
}

static int blk_create(struct vm *vm, const char *args, struct virtio_dev *vdev, char *err,
		      size_t errlen)
{
	static atomic_uint next_index;
	struct blk_opts o = { .engine = BLK_IO_URING };
	struct blk_dev *blk;
	char *copy;
	uint64_t bytes;
	unsigned nq;
	int fd, ret;

	copy = strdup(args ? args : "");
	if (!copy)
		return -ENOMEM;
	ret = parse_opts(copy, &o, err, errlen);
	if (ret < 0)
		goto err_copy;
	ret = open_image(&o, &fd, &bytes, err, errlen);
	if (ret < 0)
		goto err_copy;

	nq = o.queues;
	if (!nq)
		nq = vm && vm->ncpus ? vm->ncpus : vm && vm->cfg ? vm->cfg->ncpus : 1;
	nq = MIN(MAX(nq, 1u), (unsigned)VIRTIO_MAX_QUEUES);

	blk = calloc(1, sizeof(*blk));
	if (!blk) {
		ret = -ENOMEM;
		goto err_fd;
	}
	blk->vdev = vdev;
	blk->fd = fd;
	blk->readonly = o.readonly;
	blk->sectors = bytes / VIRTIO_BLK_SECTOR_SIZE;
	if (o.serial)
		memcpy(blk->serial, o.serial, strlen(o.serial));
	ret = blk_io_create(&blk->io, o.engine, fd, nq * VIRTIO_BLK_QUEUE_SIZE, io_done, io_batch,
			    blk);
	if (ret < 0) {
		snprintf(err, errlen, "--disk path=%s: I/O engine: %s", o.path, strerror(-ret));
		goto err_blk;
	}
	fill_config(blk, nq);

	vdev->ops = &virtio_blk_ops;
	vdev->priv = blk;
	vdev->vm = vm;
	snprintf(vdev->id, sizeof(vdev->id), "blk%u", atomic_fetch_add(&next_index, 1));
	vdev->device_features = (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |
				(1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_MQ) |
				(1ull << VIRTIO_F_INDIRECT_DESC) | (1ull << VIRTIO_F_EVENT_IDX);
	if (o.readonly)
		vdev->device_features |= 1ull << VIRTIO_BLK_F_RO;
	else
		vdev->device_features |= (1ull << VIRTIO_BLK_F_DISCARD) |
					 (1ull << VIRTIO_BLK_F_WRITE_ZEROES);
	vdev->config_size = sizeof(struct virtio_blk_config);
	vdev->num_queues = nq;
	vdev->queue_max_size = VIRTIO_BLK_QUEUE_SIZE;
	pr_info("%s: %s, %llu sectors%s, %u queue(s), %s", vdev->id, o.path,
		(unsigned long long)blk->sectors, o.readonly ? ", read-only" : "", nq,
		blk_io_engine_name(blk_io_engine_of(blk->io)));
	free(copy);
	return 0;

err_blk:
	free(blk);
err_fd:
	close(fd);
err_copy:
	free(copy);
	return ret == -ENOMEM ? -ENOMEM : -EINVAL;
}

const struct virtio_dev_kind virtio_blk_kind = {
	.option = "disk",
	.metavar = "path=PATH[,readonly=on][,serial=ID][,queues=N][,io=uring|threads]",
	.help = "virtio-blk disk on a raw image (queues default to one per vCPU)",
	.repeatable = true,
	.create = blk_create,
};
