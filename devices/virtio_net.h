/*
 * virtio-net over a Linux tap (virtio 1.2, section 5.1).
 *
 *   --net tap=NAME[,mac=MAC]
 *
 * One receive and one transmit queue. The tap carries a 12-byte virtio-net
 * header in front of every frame, so checksum and segmentation offloads pass
 * through untouched; the tap's offloads follow what the driver accepted.
 * RX and TX run on the VM's event loop: the tap fd is polled only while the
 * guest has receive buffers, and never spun on.
 */
#ifndef DEVICES_VIRTIO_NET_H
#define DEVICES_VIRTIO_NET_H

#include <stddef.h>
#include <stdint.h>

#include "virtio/virtio_dev.h"
#include "vmm/util.h"

/* Feature bits (5.1.3). */
#define VIRTIO_NET_F_CSUM        0   /* device takes frames with partial checksums */
#define VIRTIO_NET_F_GUEST_CSUM  1   /* driver takes frames with partial checksums */
#define VIRTIO_NET_F_MTU         3
#define VIRTIO_NET_F_MAC         5
#define VIRTIO_NET_F_GUEST_TSO4  7
#define VIRTIO_NET_F_GUEST_TSO6  8
#define VIRTIO_NET_F_GUEST_ECN   9
#define VIRTIO_NET_F_GUEST_UFO   10
#define VIRTIO_NET_F_HOST_TSO4   11
#define VIRTIO_NET_F_HOST_TSO6   12
#define VIRTIO_NET_F_HOST_ECN    13
#define VIRTIO_NET_F_HOST_UFO    14
#define VIRTIO_NET_F_MRG_RXBUF   15
#define VIRTIO_NET_F_STATUS      16
#define VIRTIO_NET_F_CTRL_VQ     17
#define VIRTIO_NET_F_MQ          22

#define VIRTIO_NET_S_LINK_UP     1

/* Header flags and GSO types (5.1.6). */
#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1u
#define VIRTIO_NET_HDR_F_DATA_VALID 2u
#define VIRTIO_NET_HDR_GSO_NONE     0u
#define VIRTIO_NET_HDR_GSO_TCPV4    1u
#define VIRTIO_NET_HDR_GSO_UDP      3u
#define VIRTIO_NET_HDR_GSO_TCPV6    4u
#define VIRTIO_NET_HDR_GSO_ECN      0x80u

/* Queues: one pair, no control queue. */
#define VIRTIO_NET_RXQ 0u
#define VIRTIO_NET_TXQ 1u
#define VIRTIO_NET_QUEUE_SIZE 256u

/* Largest frame either way: a 64 KiB IP packet behind an Ethernet and a VLAN header. */
#define VIRTIO_NET_MAX_FRAME (65535u + 14u + 4u)
#define VIRTIO_NET_ETH_HLEN 14u

/* The header in front of every frame; with VERSION_1 it always has num_buffers. */
struct virtio_net_hdr {
	uint8_t flags;
	uint8_t gso_type;
	le16 hdr_len;
	le16 gso_size;
	le16 csum_start;
	le16 csum_offset;
	le16 num_buffers;
};
_Static_assert(sizeof(struct virtio_net_hdr) == 12, "virtio_net_hdr is 12 bytes");
_Static_assert(offsetof(struct virtio_net_hdr, hdr_len) == 2, "hdr_len offset");
_Static_assert(offsetof(struct virtio_net_hdr, gso_size) == 4, "gso_size offset");
_Static_assert(offsetof(struct virtio_net_hdr, csum_start) == 6, "csum_start offset");
_Static_assert(offsetof(struct virtio_net_hdr, csum_offset) == 8, "csum_offset offset");
_Static_assert(offsetof(struct virtio_net_hdr, num_buffers) == 10, "num_buffers offset");

/* Device configuration (5.1.4). mtu is reported but VIRTIO_NET_F_MTU is not offered. */
struct virtio_net_config {
	uint8_t mac[6];
	le16 status;
	le16 max_virtqueue_pairs;
	le16 mtu;
};
_Static_assert(sizeof(struct virtio_net_config) == 12, "virtio_net_config is 12 bytes");
_Static_assert(offsetof(struct virtio_net_config, status) == 6, "status offset");
_Static_assert(offsetof(struct virtio_net_config, max_virtqueue_pairs) == 8, "max_vq_pairs offset");
_Static_assert(offsetof(struct virtio_net_config, mtu) == 10, "mtu offset");

extern const struct virtio_dev_kind virtio_net_kind;
/* The device node of a snapshot (ops->snap_save / ops->snap_load): MAC and offloads in use. */
struct snap_desc;
extern const struct snap_desc virtio_net_snap_desc;

/* Counters, updated on the event-loop thread (packets and bytes are vdev->counters'). */
struct virtio_net_stats {
	uint64_t tx_packets, tx_bytes, tx_dropped;
	uint64_t rx_packets, rx_bytes, rx_dropped;
};
void virtio_net_get_stats(const struct virtio_dev *vdev, struct virtio_net_stats *st);

/* The tap offloads (TAP_OFFLOAD_*) applied at the last activate, 0 before. */
unsigned virtio_net_offloads(const struct virtio_dev *vdev);

#ifdef VMM_TESTING
/*
 * Create a device whose backend is fd (a datagram socket or pipe standing in
 * for a tap: one frame, vnet header included, per read or write). No tun
 * ioctls are issued; every offload counts as supported. args as for --net,
 * minus tap=. Takes ownership of fd on success.
 */
int virtio_net_create_on_fd(struct vm *vm, int fd, const char *args, struct virtio_dev *vdev,
			    char *err, size_t errlen) WUR;
#endif

#endif
