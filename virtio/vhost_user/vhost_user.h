/*
 * vhost-user devices: `--vhost-user type=blk|net|fs|generic,socket=PATH,...`
 * attaches a back-end process as a virtio-pci device (device.c), through the
 * front-end (frontend.c) and the message codec (msg.c). docs/vhost-user.md.
 */
#ifndef VIRTIO_VHOST_USER_VHOST_USER_H
#define VIRTIO_VHOST_USER_VHOST_USER_H

#include "virtio/virtio_dev.h"

extern const struct virtio_dev_kind vhost_user_kind;

#endif
