/*
 * Split virtqueue, device side (virtio 1.x, section 2.7). See virtqueue.h for
 * the contracts. Every value read from a ring is read once into a local and
 * validated there; the guest may rewrite the ring while we look at it.
 */
#include "virtio/virtqueue.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/*
 * Compiler-only barrier after copying a descriptor out: the compiler may not
 * re-read guest memory in place of the copy (no double fetch).
 */
#define compiler_barrier() __asm__ __volatile__("" ::: "memory")

/* Offsets inside the avail and used rings (2.7.6, 2.7.8). */
#define AVAIL_IDX_OFF   2u
#define AVAIL_RING_OFF  4u
#define USED_FLAGS_OFF  0u
#define USED_IDX_OFF    2u
#define USED_RING_OFF   4u

/* A descriptor copied out of guest memory, in host byte order. */
struct desc_copy {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* Ring fields are naturally aligned (checked at enable): one volatile access each. */
static inline uint16_t ring_load16(const uint8_t *p)
{
	return le16_to_cpu(*(const volatile le16 *)(const void *)p);
}

static inline void ring_store16(uint8_t *p, uint16_t v)
{
	*(volatile le16 *)(void *)p = cpu_to_le16(v);
}

static inline void ring_store32(uint8_t *p, uint32_t v)
{
	*(volatile le32 *)(void *)p = cpu_to_le32(v);
}

/* Indirect tables need not be aligned: copy bytes, then forbid re-reads. */
static inline void desc_read(struct desc_copy *d, const uint8_t *p)
{
	struct virtq_desc raw;

	memcpy(&raw, p, sizeof(raw));
	compiler_barrier();
	d->addr = le64_to_cpu(raw.addr);
	d->len = le32_to_cpu(raw.len);
	d->flags = le16_to_cpu(raw.flags);
	d->next = le16_to_cpu(raw.next);
}

static inline uint8_t *avail_slot(const struct virtq *vq, uint16_t idx)
{
	return vq->avail + AVAIL_RING_OFF + (size_t)(idx & (vq->size - 1)) * sizeof(le16);
}

/* used_event lives right after the avail ring (2.7.6). */
static inline uint8_t *used_event_ptr(const struct virtq *vq)
{
	return vq->avail + AVAIL_RING_OFF + (size_t)vq->size * sizeof(le16);
}

/* avail_event lives right after the used ring (2.7.8). */
static inline uint8_t *avail_event_ptr(const struct virtq *vq)
{
	return vq->used + USED_RING_OFF + (size_t)vq->size * sizeof(struct virtq_used_elem);
}

/* index: the head, or the offending avail idx for -EPROTO / -ENOSPC. */
static void virtq_fail(struct virtq *vq, int err, const char *why, uint16_t index)
{
	vq->broken = true;
	vq->error = err;
	pr_guest_err("virtq %s: broken: %s (index %u, last_avail_idx %u)", vq->name, why, index,
		     vq->last_avail_idx);
	if (vq->on_error)
		vq->on_error(vq, err, vq->on_error_opaque);
}

/* ---- chains ---------------------------------------------------------------- */

int virtq_chain_init(struct virtq_chain *c, unsigned max_iov)
{
	memset(c, 0, sizeof(*c));
	if (max_iov == 0 || max_iov > 4 * VIRTQ_MAX_SIZE)
		return -EINVAL;
	c->iov = calloc(max_iov, sizeof(*c->iov));
	if (!c->iov)
		return -ENOMEM;
	c->capacity = max_iov;
	c->out = c->in = c->iov;
	return 0;
}

void virtq_chain_destroy(struct virtq_chain *c)
{
	free(c->iov);
	memset(c, 0, sizeof(*c));
}

size_t virtq_chain_read(const struct virtq_chain *c, size_t off, void *buf, size_t len)
{
	uint8_t *dst = buf;
	size_t done = 0;

	for (unsigned i = 0; i < c->nr_out && done < len; i++) {
		size_t n = c->out[i].iov_len;

		if (off >= n) {
			off -= n;
			continue;
		}
		n = MIN(n - off, len - done);
		memcpy(dst + done, (const uint8_t *)c->out[i].iov_base + off, n);
		done += n;
		off = 0;
	}
	return done;
}

size_t virtq_chain_write(const struct virtq_chain *c, size_t off, const void *buf, size_t len)
{
	const uint8_t *src = buf;
	size_t done = 0;

	for (unsigned i = 0; i < c->nr_in && done < len; i++) {
		size_t n = c->in[i].iov_len;

		if (off >= n) {
			off -= n;
			continue;
		}
		n = MIN(n - off, len - done);
		memcpy((uint8_t *)c->in[i].iov_base + off, src + done, n);
		done += n;
		off = 0;
	}
	return done;
}

/* ---- setup ------------------------------------------------------------------ */

static bool is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

int virtq_init(struct virtq *vq, const struct gmem *gm, const char *name, uint16_t max_size)
{
	memset(vq, 0, sizeof(*vq));
	if (!gm || !is_pow2(max_size) || max_size > VIRTQ_MAX_SIZE)
		return -EINVAL;
	vq->gm = gm;
	vq->max_size = max_size;
	vq->size = max_size;
	snprintf(vq->name, sizeof(vq->name), "%s", name ? name : "?");
	return 0;
}

void virtq_reset(struct virtq *vq)
{
	const struct gmem *gm = vq->gm;
	virtq_error_fn *fn = vq->on_error;
	void *opaque = vq->on_error_opaque;
	uint16_t max_size = vq->max_size;
	char name[sizeof(vq->name)];

	memcpy(name, vq->name, sizeof(name));
	memset(vq, 0, sizeof(*vq));
	vq->gm = gm;
	vq->on_error = fn;
	vq->on_error_opaque = opaque;
	vq->max_size = max_size;
	vq->size = max_size;
	memcpy(vq->name, name, sizeof(name));
}

/* Host view of a whole ring part, or NULL when it is not RAM or misaligned. */
static uint8_t *ring_map(const struct virtq *vq, uint64_t gpa, uint64_t len, uint64_t align)
{
	uint8_t *p;

	if (!IS_ALIGNED(gpa, align))
		return NULL;
	p = gmem_translate(vq->gm, gpa, len);
	/* Regions are page aligned, so this holds; checked because loads rely on it. */
	if (p && !IS_ALIGNED((uintptr_t)p, align))
		return NULL;
	return p;
}

static int virtq_enable_at(struct virtq *vq, uint64_t features, uint16_t last_avail,
			   uint16_t used_idx)
{
	uint32_t size = vq->size;

	if (vq->enabled || !vq->gm)
		return -EINVAL;
	if (!is_pow2(size) || size > vq->max_size)
		return -EINVAL;
	if (!IS_ALIGNED(vq->desc_gpa, VIRTQ_DESC_ALIGN) ||
	    !IS_ALIGNED(vq->avail_gpa, VIRTQ_AVAIL_ALIGN) ||
	    !IS_ALIGNED(vq->used_gpa, VIRTQ_USED_ALIGN))
		return -EINVAL;
	/* Sizes are small (size <= 32768); gmem_translate is overflow-safe on gpa + len. */
	vq->desc = ring_map(vq, vq->desc_gpa, virtq_desc_bytes(size), VIRTQ_DESC_ALIGN);
	vq->avail = ring_map(vq, vq->avail_gpa, virtq_avail_bytes(size), VIRTQ_AVAIL_ALIGN);
	vq->used = ring_map(vq, vq->used_gpa, virtq_used_bytes(size), VIRTQ_USED_ALIGN);
	if (!vq->desc || !vq->avail || !vq->used) {
		vq->desc = vq->avail = vq->used = NULL;
		return -EFAULT;
	}
	vq->event_idx = features & (1ULL << VIRTIO_RING_F_EVENT_IDX);
	vq->indirect = features & (1ULL << VIRTIO_RING_F_INDIRECT_DESC);
	vq->last_avail_idx = last_avail;
	vq->avail_idx_shadow = last_avail;
	vq->used_idx = used_idx;
	vq->used_published = used_idx;
	vq->signalled_used = used_idx;
	vq->signalled_valid = false;
	vq->unsignalled = false;
	vq->notify_disabled = false;
	vq->broken = false;
	vq->error = 0;
	/* Start with driver kicks wanted for anything past what we consumed. */
	ring_store16(vq->used + USED_FLAGS_OFF, 0);
	if (vq->event_idx)
		ring_store16(avail_event_ptr(vq), last_avail);
	vq->enabled = true;
	return 0;
}

int virtq_enable(struct virtq *vq, uint64_t features)
{
	return virtq_enable_at(vq, features, 0, 0);
}

/* ---- pop ----------------------------------------------------------------------- */

/* Append the host view of [gpa, gpa + len) to the chain, split at region ends. */
static int chain_add(const struct virtq *vq, struct virtq_chain *c, unsigned *n, uint64_t gpa,
		     uint32_t len)
{
	const struct gmem *gm = vq->gm;
	uint64_t left = len;

	while (left) {
		uint64_t chunk = 0;
		void *p;

		/* Fast path: the whole rest lies in one region. */
		p = gmem_translate(gm, gpa, left);
		if (p) {
			chunk = left;
		} else {
			for (unsigned i = 0; i < gm->nr_regions; i++) {
				const struct gmem_region *r = &gm->regions[i];

				if (gpa >= r->gpa && gpa - r->gpa < r->size) {
					chunk = MIN(left, r->size - (gpa - r->gpa));
					break;
				}
			}
			if (!chunk)
				return -EFAULT;
			p = gmem_translate(gm, gpa, chunk);
			if (!p)
				return -EFAULT;
		}
		if (*n >= c->capacity)
			return -ENOBUFS;
		c->iov[*n].iov_base = p;
		c->iov[*n].iov_len = chunk;
		(*n)++;
		gpa += chunk; /* cannot wrap: addr + len was checked */
		left -= chunk;
	}
	return 0;
}

/*
 * Walk the chain at head into c. Bounded: at most vq->size buffer
 * descriptors plus one indirect pointer, so at most size + 1 iterations.
 */
static int chain_walk(struct virtq *vq, uint16_t head, struct virtq_chain *c, const char **why)
{
	const uint8_t *table = vq->desc;
	uint32_t table_n = vq->size;
	uint32_t idx = head;
	uint64_t out_len = 0, in_len = 0;
	unsigned ndesc = 0, n = 0, nr_out = 0;
	bool in_indirect = false, seen_write = false;
	int ret;

	for (;;) {
		struct desc_copy d;

		desc_read(&d, table + (size_t)idx * sizeof(struct virtq_desc));

		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (in_indirect) {
				*why = "indirect descriptor inside an indirect table";
				return -EMLINK;
			}
			if (!vq->indirect) {
				*why = "indirect descriptor not negotiated";
				return -EOPNOTSUPP;
			}
			if (d.flags & VIRTQ_DESC_F_NEXT) {
				*why = "indirect descriptor with NEXT";
				return -EINVAL;
			}
			if (d.len == 0 || d.len % sizeof(struct virtq_desc)) {
				*why = "indirect table length not a non-zero multiple of 16";
				return -EMSGSIZE;
			}
			if ((uint64_t)(d.addr + d.len) < d.addr) {
				*why = "indirect table address + length overflows";
				return -EOVERFLOW;
			}
			/* The table is copied entry by entry below, never re-read. */
			table = gmem_translate(vq->gm, d.addr, d.len);
			if (!table) {
				*why = "indirect table not in RAM";
				return -EFAULT;
			}
			table_n = d.len / sizeof(struct virtq_desc);
			idx = 0;
			in_indirect = true;
			continue;
		}

		if (++ndesc > vq->size) {
			*why = "chain longer than the queue size (loop?)";
			return -ELOOP;
		}
		if (d.flags & VIRTQ_DESC_F_WRITE) {
			seen_write = true;
		} else if (seen_write) {
			*why = "device-readable descriptor after a device-writable one";
			return -EBADMSG;
		}
		if (d.len) {
			if ((uint64_t)(d.addr + d.len) < d.addr) {
				*why = "buffer address + length overflows";
				return -EOVERFLOW;
			}
			if (seen_write)
				in_len += d.len;
			else
				out_len += d.len;
			if (in_len > UINT32_MAX || out_len > UINT32_MAX) {
				*why = "chain total length exceeds 4 GiB";
				return -EOVERFLOW;
			}
			ret = chain_add(vq, c, &n, d.addr, d.len);
			if (ret) {
				*why = ret == -ENOBUFS ? "chain needs more iovecs than the device allows"
						       : "buffer not in RAM";
				return ret;
			}
			if (!seen_write)
				nr_out = n;
		}
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		if (d.next >= table_n) {
			*why = "next index out of range";
			return -ERANGE;
		}
		idx = d.next;
	}

	c->head = head;
	c->ndesc = (uint16_t)ndesc;
	c->nr_out = nr_out;
	c->nr_in = n - nr_out;
	c->out = c->iov;
	c->in = c->iov + nr_out;
	c->out_len = (uint32_t)out_len;
	c->in_len = (uint32_t)in_len;
	return 0;
}

/* Re-read avail->idx; false (and queue broken) when it is implausible. */
static bool avail_refresh(struct virtq *vq)
{
	uint16_t idx = ring_load16(vq->avail + AVAIL_IDX_OFF);

	if ((uint16_t)(idx - vq->last_avail_idx) > vq->size) {
		virtq_fail(vq, -EPROTO, "avail idx more than queue size ahead", idx);
		return false;
	}
	vq->avail_idx_shadow = idx;
	return true;
}

int virtq_pop(struct virtq *vq, struct virtq_chain *c)
{
	const char *why = "";
	uint16_t head;
	int ret;

	if (!vq->enabled)
		return -ENODEV;
	if (vq->broken)
		return -EIO;

	if (vq->avail_idx_shadow == vq->last_avail_idx) {
		if (!avail_refresh(vq))
			return -EPROTO;
		if (vq->avail_idx_shadow == vq->last_avail_idx) {
			/* Without EVENT_IDX and with NO_NOTIFY clear the driver always kicks. */
			if (vq->notify_disabled || !vq->event_idx)
				return 0;
			ring_store16(avail_event_ptr(vq), vq->last_avail_idx);
			/* Full fence: avail_event store before the avail idx re-load (2.7.10). */
			atomic_thread_fence(memory_order_seq_cst);
			if (!avail_refresh(vq))
				return -EPROTO;
			if (vq->avail_idx_shadow == vq->last_avail_idx)
				return 0;
		}
		/* Acquire: avail idx load before the ring entry and descriptor loads (2.7.13). */
		atomic_thread_fence(memory_order_acquire);
	}

	/* Each chain holds at least one descriptor until pushed back (QEMU checks the same). */
	if ((uint16_t)(vq->last_avail_idx - vq->used_idx) >= vq->size) {
		virtq_fail(vq, -ENOSPC, "more chains in flight than the queue size",
			   vq->last_avail_idx);
		return -ENOSPC;
	}
	head = ring_load16(avail_slot(vq, vq->last_avail_idx));
	if (head >= vq->size) {
		virtq_fail(vq, -ERANGE, "head index out of range", head);
		return -ERANGE;
	}
	ret = chain_walk(vq, head, c, &why);
	if (ret) {
		virtq_fail(vq, ret, why, head);
		return ret;
	}
	vq->last_avail_idx++;
	return 1;
}

void virtq_unpop(struct virtq *vq, uint16_t n)
{
	uint16_t in_flight = (uint16_t)(vq->last_avail_idx - vq->used_idx);

	vq->last_avail_idx -= MIN(n, in_flight);
}

uint16_t virtq_avail_count(struct virtq *vq)
{
	if (!vq->enabled || vq->broken)
		return 0;
	return (uint16_t)(ring_load16(vq->avail + AVAIL_IDX_OFF) - vq->last_avail_idx);
}

/* ---- push, publish, notify ----------------------------------------------------- */

int virtq_push(struct virtq *vq, uint16_t head, uint32_t len)
{
	uint8_t *elem;

	if (!vq->enabled)
		return -ENODEV;
	if (vq->broken)
		return -EIO;
	/* Device bugs, not guest ones: a bad head or more pushes than pops. */
	if (head >= vq->size || vq->used_idx == vq->last_avail_idx)
		return -EINVAL;
	elem = vq->used + USED_RING_OFF +
	       (size_t)(vq->used_idx & (vq->size - 1)) * sizeof(struct virtq_used_elem);
	ring_store32(elem + offsetof(struct virtq_used_elem, id), head);
	ring_store32(elem + offsetof(struct virtq_used_elem, len), len);
	vq->used_idx++;
	return 0;
}

void virtq_flush(struct virtq *vq)
{
	uint16_t old = vq->used_published, new_idx = vq->used_idx;

	if (!vq->enabled || vq->broken || old == new_idx)
		return;
	/* Release: used elements and buffer contents before the used idx store (2.7.8). */
	atomic_thread_fence(memory_order_release);
	ring_store16(vq->used + USED_IDX_OFF, new_idx);
	vq->used_published = new_idx;
	vq->unsignalled = true;
	/* The last signalled index was overtaken by 2^16 wrap: the next check must notify. */
	if ((uint16_t)(new_idx - vq->signalled_used) < (uint16_t)(new_idx - old))
		vq->signalled_valid = false;
}

bool virtq_needs_notify(struct virtq *vq)
{
	uint16_t old = vq->signalled_used, new_idx = vq->used_published;
	bool valid = vq->signalled_valid;

	if (!vq->enabled || vq->broken)
		return false;
	if (!vq->unsignalled)
		return false;
	vq->unsignalled = false;
	vq->signalled_used = new_idx;
	vq->signalled_valid = true;
	/* Full fence: used idx store before the flags / used_event load (2.7.10). */
	atomic_thread_fence(memory_order_seq_cst);
	if (!vq->event_idx)
		return !(ring_load16(vq->avail) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	if (!valid)
		return true;
	return vring_need_event(ring_load16(used_event_ptr(vq)), new_idx, old);
}

int virtq_push_one(struct virtq *vq, uint16_t head, uint32_t len, bool *notify)
{
	int ret = virtq_push(vq, head, len);

	*notify = false;
	if (ret)
		return ret;
	virtq_flush(vq);
	*notify = virtq_needs_notify(vq);
	return 0;
}

void virtq_disable_notify(struct virtq *vq)
{
	if (!vq->enabled || vq->broken || vq->notify_disabled)
		return;
	vq->notify_disabled = true;
	/* With EVENT_IDX avail_event simply stays behind, so the driver stops kicking. */
	if (!vq->event_idx)
		ring_store16(vq->used + USED_FLAGS_OFF, VIRTQ_USED_F_NO_NOTIFY);
}

bool virtq_enable_notify(struct virtq *vq)
{
	if (!vq->enabled || vq->broken)
		return false;
	vq->notify_disabled = false;
	if (vq->event_idx)
		ring_store16(avail_event_ptr(vq), vq->last_avail_idx);
	else
		ring_store16(vq->used + USED_FLAGS_OFF, 0);
	/* Full fence: flags / avail_event store before the avail idx re-load (2.7.10). */
	atomic_thread_fence(memory_order_seq_cst);
	return ring_load16(vq->avail + AVAIL_IDX_OFF) != vq->last_avail_idx;
}

/* ---- snapshots ----------------------------------------------------------------- */

void virtq_save(const struct virtq *vq, struct virtq_state *st)
{
	memset(st, 0, sizeof(*st));
	st->desc_gpa = vq->desc_gpa;
	st->avail_gpa = vq->avail_gpa;
	st->used_gpa = vq->used_gpa;
	st->size = vq->size;
	st->last_avail_idx = vq->last_avail_idx;
	st->used_idx = vq->used_idx;
	st->enabled = vq->enabled;
}

int virtq_restore(struct virtq *vq, const struct virtq_state *st, uint64_t features)
{
	int ret;

	virtq_reset(vq);
	if (st->enabled > 1 || st->size == 0)
		return -EINVAL;
	vq->size = st->size;
	vq->desc_gpa = st->desc_gpa;
	vq->avail_gpa = st->avail_gpa;
	vq->used_gpa = st->used_gpa;
	if (!st->enabled) {
		if (!is_pow2(st->size) || st->size > vq->max_size)
			goto err_reset;
		return 0;
	}
	/* The device cannot have more chains in flight than the ring holds. */
	if ((uint16_t)(st->last_avail_idx - st->used_idx) > st->size)
		goto err_reset;
	ret = virtq_enable_at(vq, features, st->last_avail_idx, st->used_idx);
	if (ret) {
		virtq_reset(vq);
		return ret;
	}
	return 0;

err_reset:
	virtq_reset(vq);
	return -EINVAL;
}
