/*
 * Split virtqueue, device side (virtio 1.x, section 2.7).
 *
 * Pure module: it knows only guest memory (vmm/gmem.h) and vmm/util.h. No
 * KVM, no threads, no I/O. One thread owns a queue at a time; nothing here
 * locks.
 *
 * Everything the guest wrote is untrusted and may change underneath us while
 * we read it: indices, ring entries and descriptors are copied out once, then
 * validated, and every buffer range goes through gmem_translate(). A malformed
 * ring makes virtq_pop() return a negative errno, logs one rate-limited line
 * naming the queue and the reason, and leaves the queue *broken*: every later
 * pop/push returns -EIO until virtq_reset(). The transport then sets
 * DEVICE_NEEDS_RESET and raises a config interrupt (the optional error
 * handler below is called exactly once when that happens).
 *
 * Lifecycle, as driven by the transport:
 *
 *   virtq_init(vq, gm, "blk0.q0", 256)      once, at device creation
 *   vq->size / desc_gpa / avail_gpa / used_gpa written while disabled
 *   virtq_enable(vq, features)              on queue_enable = 1
 *   ... device: pop, push, flush, needs_notify ...
 *   virtq_reset(vq)                         on device reset
 *
 * Ring translation: virtq_enable() translates each of the three ring parts
 * once, as a whole (with the event-idx fields, whether negotiated or not),
 * and keeps the host pointers. Guest RAM never moves or shrinks while a
 * queue is enabled; if that ever changes, the owner must reset the queue.
 * A ring part that is not entirely inside one RAM region is refused.
 *
 * Buffer ranges that straddle two RAM regions are split into two (or more)
 * iovecs when every byte is RAM; a range touching a hole or the end of RAM
 * is an error (-EFAULT).
 *
 * Zero-length descriptors are allowed: they produce no iovec and their
 * address is not checked, but they still count towards the chain bound and
 * their WRITE flag still takes part in the readable-before-writable rule.
 * (An indirect descriptor of length 0 is an error: see below.)
 */
#ifndef VIRTIO_VIRTQUEUE_H
#define VIRTIO_VIRTQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "virtio/virtio_ring.h"
#include "vmm/gmem.h"
#include "vmm/util.h"

struct virtq;

/* Called once when the queue turns broken; err is the negative errno. */
typedef void virtq_error_fn(struct virtq *vq, int err, void *opaque);

struct virtq {
	/*
	 * Public, written by the transport while the queue is disabled: they
	 * mirror the common-config registers (queue_size, queue_desc,
	 * queue_driver, queue_device). virtq_enable() validates them.
	 * virtq_init() sets size to max_size and the addresses to 0.
	 */
	uint16_t size;
	uint64_t desc_gpa;
	uint64_t avail_gpa;
	uint64_t used_gpa;

	/* Optional: told once when the queue becomes broken. */
	virtq_error_fn *on_error;
	void *on_error_opaque;

	/* --- private to virtqueue.c below this line --- */
	const struct gmem *gm;
	char name[32];
	uint16_t max_size;
	bool enabled;
	bool broken;
	bool event_idx;        /* VIRTIO_RING_F_EVENT_IDX negotiated */
	bool indirect;         /* VIRTIO_RING_F_INDIRECT_DESC negotiated */
	bool notify_disabled;  /* between virtq_disable_notify and virtq_enable_notify */
	bool signalled_valid;  /* signalled_used means something */
	bool unsignalled;      /* published since the last needs_notify */
	uint16_t last_avail_idx; /* next avail ring slot the device consumes */
	uint16_t avail_idx_shadow; /* last avail->idx read */
	uint16_t used_idx;     /* shadow of used->idx, including unpublished pushes */
	uint16_t used_published; /* last value written to used->idx */
	uint16_t signalled_used; /* used->idx at the last needs_notify decision */
	int error;             /* errno that broke the queue, 0 when healthy */

	/* Host views of the rings, valid while enabled. */
	uint8_t *desc;
	uint8_t *avail;
	uint8_t *used;
};

/*
 * One popped chain. The caller owns it (allocate one per in-flight request,
 * once, with virtq_chain_init()); virtq_pop() fills it without allocating.
 *
 * iov[0 .. nr_out) are the device-readable buffers ("out" from the driver),
 * iov[nr_out .. nr_out + nr_in) the device-writable ones; `out` and `in` point
 * at the two parts. The host pointers stay valid as long as guest memory
 * does, but the guest may rewrite the bytes at any time: copy a header out
 * once (virtq_chain_read) before validating it.
 */
struct virtq_chain {
	uint16_t head;       /* descriptor index to hand back to virtq_push() */
	uint16_t ndesc;      /* buffer descriptors walked (indirect ones included) */
	unsigned nr_out;
	unsigned nr_in;
	uint32_t out_len;    /* total bytes in the readable part */
	uint32_t in_len;     /* total bytes in the writable part */
	struct iovec *out;
	struct iovec *in;
	struct iovec *iov;   /* capacity entries */
	unsigned capacity;
};

/*
 * Allocate room for max_iov iovecs. A chain needing more (only possible when
 * max_iov < queue size, or through region splitting) is treated as
 * malformed: -ENOBUFS. Use the device's maximum queue size unless the device
 * knows its chains are short. Returns 0 or -ENOMEM / -EINVAL.
 */
int virtq_chain_init(struct virtq_chain *c, unsigned max_iov) WUR;
void virtq_chain_destroy(struct virtq_chain *c);

/*
 * Copy up to len bytes starting at byte offset off of the readable part into
 * buf. Returns the number of bytes copied (short when the part ends first).
 */
size_t virtq_chain_read(const struct virtq_chain *c, size_t off, void *buf, size_t len);
/* Same, from buf into the writable part at byte offset off. */
size_t virtq_chain_write(const struct virtq_chain *c, size_t off, const void *buf, size_t len);

/*
 * Set up a disabled queue on guest memory gm. name (copied, truncated) is
 * used in log lines. max_size must be a power of two <= VIRTQ_MAX_SIZE.
 * Returns 0 or -EINVAL.
 */
int virtq_init(struct virtq *vq, const struct gmem *gm, const char *name,
	       uint16_t max_size) WUR;

/*
 * Validate size (power of two, 1..max_size), alignment (desc 16, avail 2,
 * used 4) and that each ring part is RAM, then enable with the negotiated
 * feature bits (only INDIRECT_DESC and EVENT_IDX matter here). Indices start
 * at 0. Returns 0, -EINVAL (size, alignment, already enabled) or -EFAULT (a
 * ring part is not RAM). On failure the queue stays disabled (not broken).
 */
int virtq_enable(struct virtq *vq, uint64_t features) WUR;

/* Back to the state after virtq_init(): disabled, not broken, indices 0,
 * size = max_size, addresses 0. The error handler stays registered. */
void virtq_reset(struct virtq *vq);

static inline bool virtq_is_enabled(const struct virtq *vq) { return vq->enabled; }
static inline bool virtq_is_broken(const struct virtq *vq) { return vq->broken; }
/* The errno that broke the queue, or 0. */
static inline int virtq_error(const struct virtq *vq) { return vq->error; }

/*
 * Take the next available chain.
 *
 * Returns 1 with *c filled, 0 when the ring is empty, or a negative errno:
 *   -ENODEV      queue not enabled (queue not broken by this)
 *   -EIO         queue already broken
 * and, for a malformed ring (the queue becomes broken):
 *   -EPROTO      avail->idx is more than size ahead of the device
 *   -ERANGE      head or next index >= size (or >= indirect table entries)
 *   -ELOOP       chain longer than size descriptors in total (also loops)
 *   -EFAULT      buffer or indirect table not (entirely) RAM
 *   -EOVERFLOW   addr + len wraps, or a part's total length exceeds 4 GiB - 1
 *   -EOPNOTSUPP  INDIRECT flag without VIRTIO_RING_F_INDIRECT_DESC
 *   -EMSGSIZE    indirect table length 0 or not a multiple of 16
 *   -EINVAL      INDIRECT together with NEXT
 *   -EMLINK      indirect descriptor inside an indirect table
 *   -EBADMSG     device-readable descriptor after a device-writable one
 *   -ENOBUFS     chain needs more iovecs than c->capacity
 *   -ENOSPC      a chain is offered while `size` chains are already in
 *                flight (popped, not yet pushed): the driver reused
 *                descriptors it had not got back
 *
 * Chain bound: at most `size` buffer descriptors, direct and indirect
 * together (the descriptor pointing at an indirect table is not counted).
 *
 * When the ring is found empty and notifications are enabled, pop publishes
 * avail_event (EVENT_IDX) and re-checks avail->idx behind a full fence, so a
 * plain `while (virtq_pop(...) > 0)` loop never misses a kick.
 */
int virtq_pop(struct virtq *vq, struct virtq_chain *c) WUR;

/* Give back the last n popped chains (they will be popped again), e.g.
 * when a net rx buffer was taken but no packet arrived. n must not exceed the
 * number popped and not yet pushed. */
void virtq_unpop(struct virtq *vq, uint16_t n);

/* Number of chains the driver has made available and we have not popped
 * (0 when disabled or broken). Reads avail->idx; no side effects. */
uint16_t virtq_avail_count(struct virtq *vq);

/*
 * Put (head, len) in the used ring without publishing it: the driver sees it
 * only after virtq_flush(). len = bytes written into the writable part.
 * Returns 0, -EIO (broken), -ENODEV (disabled) or -EINVAL (head >= size).
 */
int virtq_push(struct virtq *vq, uint16_t head, uint32_t len) WUR;

/* Publish every pushed element with one store of used->idx. */
void virtq_flush(struct virtq *vq);

/*
 * After virtq_flush(): must the device interrupt the driver? Honours
 * VIRTQ_AVAIL_F_NO_INTERRUPT without EVENT_IDX and used_event with it
 * (vring_need_event over what was published since the last call). False when
 * nothing new was published, or the queue is disabled or broken.
 */
bool virtq_needs_notify(struct virtq *vq);

/* push + flush + needs_notify for one element, for simple devices. */
int virtq_push_one(struct virtq *vq, uint16_t head, uint32_t len, bool *notify) WUR;

/*
 * Driver-kick suppression, the classic drain loop:
 *
 *   do {
 *           virtq_disable_notify(vq);
 *           while ((r = virtq_pop(vq, &c)) > 0)
 *                   handle(&c);
 *   } while (r == 0 && virtq_enable_notify(vq));
 *
 * disable: without EVENT_IDX sets VIRTQ_USED_F_NO_NOTIFY; with EVENT_IDX
 * leaves avail_event behind so the driver does not kick.
 * enable: clears the flag or writes avail_event = last_avail_idx, then a full
 * fence, then re-reads avail->idx. Returns true when buffers arrived in the
 * meantime (drain again), false otherwise or when disabled/broken.
 */
void virtq_disable_notify(struct virtq *vq);
bool virtq_enable_notify(struct virtq *vq) WUR;

/*
 * Save/restore for snapshots. Restore goes through the same validation as
 * virtq_enable() when st->enabled; the ring contents themselves live in guest
 * memory, which is restored separately and first.
 */
struct virtq_state {
	uint64_t desc_gpa;
	uint64_t avail_gpa;
	uint64_t used_gpa;
	uint16_t size;
	uint16_t last_avail_idx;
	uint16_t used_idx;
	uint8_t enabled;
	uint8_t reserved;
};

void virtq_save(const struct virtq *vq, struct virtq_state *st);
/* Chains popped and not pushed back yet (0 when disabled): a paused device that drained has none. */
static inline uint16_t virtq_in_flight(const struct virtq *vq)
{
	return vq->enabled ? (uint16_t)(vq->last_avail_idx - vq->used_idx) : 0;
}
/* Chains pushed but not yet published by virtq_flush() (0 when disabled). */
static inline uint16_t virtq_unpublished(const struct virtq *vq)
{
	return vq->enabled ? (uint16_t)(vq->used_idx - vq->used_published) : 0;
}
/* Returns 0, or -EINVAL / -EFAULT (as virtq_enable) leaving the queue reset. */
int virtq_restore(struct virtq *vq, const struct virtq_state *st, uint64_t features) WUR;

#endif
