/*
 * virtio-blk (virtio 1.2, section 5.2) on a raw image file or block device.
 *
 *   --disk path=PATH[,readonly=on][,serial=ID][,queues=N][,io=uring|threads]
 *
 * Requests are parsed on the event-loop thread and run by devices/blk_io
 * (io_uring by default, or a thread pool). Everything in a request is guest
 * controlled: bad requests complete with VIRTIO_BLK_S_IOERR or _UNSUPP; a
 * chain with no room for the header or the status byte asks for a device
 * reset.
 */
#ifndef DEVICES_VIRTIO_BLK_H
#define DEVICES_VIRTIO_BLK_H

#include <stddef.h>
#include <stdint.h>

#include "virtio/virtio_dev.h"
#include "vmm/util.h"

/* Feature bits (5.2.3). */
#define VIRTIO_BLK_F_SIZE_MAX      1
#define VIRTIO_BLK_F_SEG_MAX       2
#define VIRTIO_BLK_F_GEOMETRY      4
#define VIRTIO_BLK_F_RO            5
#define VIRTIO_BLK_F_BLK_SIZE      6
#define VIRTIO_BLK_F_FLUSH         9
#define VIRTIO_BLK_F_TOPOLOGY      10
#define VIRTIO_BLK_F_CONFIG_WCE    11
#define VIRTIO_BLK_F_MQ            12
#define VIRTIO_BLK_F_DISCARD       13
#define VIRTIO_BLK_F_WRITE_ZEROES  14

/* Request types (5.2.6). */
#define VIRTIO_BLK_T_IN            0
#define VIRTIO_BLK_T_OUT           1
#define VIRTIO_BLK_T_FLUSH         4
#define VIRTIO_BLK_T_GET_ID        8
#define VIRTIO_BLK_T_GET_LIFETIME  10
#define VIRTIO_BLK_T_DISCARD       11
#define VIRTIO_BLK_T_WRITE_ZEROES  13
#define VIRTIO_BLK_T_SECURE_ERASE  14

/* Status byte values. */
#define VIRTIO_BLK_S_OK            0
#define VIRTIO_BLK_S_IOERR         1
#define VIRTIO_BLK_S_UNSUPP        2

#define VIRTIO_BLK_SECTOR_SIZE     512u
#define VIRTIO_BLK_ID_BYTES        20u

/* discard / write-zeroes segment flags */
#define VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP 1u

/* What this device offers. */
#define VIRTIO_BLK_QUEUE_SIZE         256u
#define VIRTIO_BLK_MAX_DISCARD_SECTORS 0x3fffffu  /* 2 GiB - 512 per segment */
#define VIRTIO_BLK_MAX_DISCARD_SEG    1u

struct virtio_blk_config {
	le64 capacity;                 /* in 512-byte sectors */
	le32 size_max;
	le32 seg_max;
	struct {
		le16 cylinders;
		uint8_t heads;
		uint8_t sectors;
	} geometry;
	le32 blk_size;
	struct {
		uint8_t physical_block_exp;
		uint8_t alignment_offset;
		le16 min_io_size;
		le32 opt_io_size;
	} topology;
	uint8_t writeback;
	uint8_t unused0;
	le16 num_queues;
	le32 max_discard_sectors;
	le32 max_discard_seg;
	le32 discard_sector_alignment;
	le32 max_write_zeroes_sectors;
	le32 max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap;
	uint8_t unused1[3];
	le32 max_secure_erase_sectors;
	le32 max_secure_erase_seg;
	le32 secure_erase_sector_alignment;
};

_Static_assert(sizeof(struct virtio_blk_config) == 72, "virtio_blk_config size");
_Static_assert(offsetof(struct virtio_blk_config, seg_max) == 12, "seg_max offset");
_Static_assert(offsetof(struct virtio_blk_config, blk_size) == 20, "blk_size offset");
_Static_assert(offsetof(struct virtio_blk_config, writeback) == 32, "writeback offset");
_Static_assert(offsetof(struct virtio_blk_config, num_queues) == 34, "num_queues offset");
_Static_assert(offsetof(struct virtio_blk_config, max_discard_sectors) == 36, "discard offset");
_Static_assert(offsetof(struct virtio_blk_config, max_write_zeroes_sectors) == 48, "wz offset");
_Static_assert(offsetof(struct virtio_blk_config, write_zeroes_may_unmap) == 56, "unmap offset");
_Static_assert(offsetof(struct virtio_blk_config, max_secure_erase_sectors) == 60, "se offset");

/* The request header, first 16 bytes of the device-readable part. */
struct virtio_blk_outhdr {
	le32 type;
	le32 reserved;
	le64 sector;
};

_Static_assert(sizeof(struct virtio_blk_outhdr) == 16, "virtio_blk_outhdr size");

/* One DISCARD / WRITE_ZEROES segment. */
struct virtio_blk_discard_write_zeroes {
	le64 sector;
	le32 num_sectors;
	le32 flags;
};

_Static_assert(sizeof(struct virtio_blk_discard_write_zeroes) == 16, "segment size");

extern const struct virtio_dev_kind virtio_blk_kind;
/* The device node of a snapshot (ops->snap_save / ops->snap_load): capacity, read-only, serial. */
struct snap_desc;
extern const struct snap_desc virtio_blk_snap_desc;

#endif
