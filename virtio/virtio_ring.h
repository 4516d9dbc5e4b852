/*
 * Split virtqueue wire format (virtio 1.x, section 2.7). Everything here is
 * little-endian guest memory: read it with the le*_to_cpu accessors, and only
 * through the helpers in virtio/virtqueue.c, which treat it as untrusted.
 */
#ifndef VIRTIO_VIRTIO_RING_H
#define VIRTIO_VIRTIO_RING_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/util.h"

/* Feature bits that change the ring layout or the walker (section 6). */
#define VIRTIO_RING_F_INDIRECT_DESC 28
#define VIRTIO_RING_F_EVENT_IDX     29

#define VIRTQ_MAX_SIZE 32768u

/* Descriptor flags (2.7.5). */
#define VIRTQ_DESC_F_NEXT     1u  /* chain continues in .next */
#define VIRTQ_DESC_F_WRITE    2u  /* device-writable buffer */
#define VIRTQ_DESC_F_INDIRECT 4u  /* buffer is a table of descriptors */

/* avail->flags: the driver asks the device not to interrupt (2.7.7). */
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1u
/* used->flags: the device asks the driver not to kick (2.7.10). */
#define VIRTQ_USED_F_NO_NOTIFY 1u

/* Ring alignment the driver must honour (2.7, table "Virtqueue Part Alignment"). */
#define VIRTQ_DESC_ALIGN  16u
#define VIRTQ_AVAIL_ALIGN 2u
#define VIRTQ_USED_ALIGN  4u

struct virtq_desc {
	le64 addr;
	le32 len;
	le16 flags;
	le16 next;
};

/* Followed by le16 ring[size] and, with EVENT_IDX, le16 used_event. */
struct virtq_avail {
	le16 flags;
	le16 idx;
	le16 ring[];
};

struct virtq_used_elem {
	le32 id;   /* head index of the completed chain (le32 for padding) */
	le32 len;  /* bytes written into the device-writable part */
};

/* Followed by struct virtq_used_elem ring[size] and, with EVENT_IDX, le16 avail_event. */
struct virtq_used {
	le16 flags;
	le16 idx;
	struct virtq_used_elem ring[];
};

_Static_assert(sizeof(struct virtq_desc) == 16, "virtq_desc is 16 bytes");
_Static_assert(offsetof(struct virtq_desc, addr) == 0, "desc.addr offset");
_Static_assert(offsetof(struct virtq_desc, len) == 8, "desc.len offset");
_Static_assert(offsetof(struct virtq_desc, flags) == 12, "desc.flags offset");
_Static_assert(offsetof(struct virtq_desc, next) == 14, "desc.next offset");
_Static_assert(sizeof(struct virtq_avail) == 4, "avail header is 4 bytes");
_Static_assert(offsetof(struct virtq_avail, idx) == 2, "avail.idx offset");
_Static_assert(offsetof(struct virtq_avail, ring) == 4, "avail.ring offset");
_Static_assert(sizeof(struct virtq_used_elem) == 8, "used elem is 8 bytes");
_Static_assert(sizeof(struct virtq_used) == 4, "used header is 4 bytes");
_Static_assert(offsetof(struct virtq_used, idx) == 2, "used.idx offset");
_Static_assert(offsetof(struct virtq_used, ring) == 4, "used.ring offset");

/* Byte sizes of the three parts for a queue of `size` entries, event fields included. */
static inline uint64_t virtq_desc_bytes(uint32_t size)
{
	return (uint64_t)size * sizeof(struct virtq_desc);
}
static inline uint64_t virtq_avail_bytes(uint32_t size)
{
	return sizeof(struct virtq_avail) + (uint64_t)size * sizeof(le16) + sizeof(le16);
}
static inline uint64_t virtq_used_bytes(uint32_t size)
{
	return sizeof(struct virtq_used) + (uint64_t)size * sizeof(struct virtq_used_elem) +
	       sizeof(le16);
}

/*
 * 2.7.10: should the side that moved its index from old to new_idx notify,
 * given the other side asked to be told once index `event` is passed?
 * All arithmetic is modulo 2^16.
 */
static inline int vring_need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

#endif
