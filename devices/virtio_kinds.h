/* The table of virtio device kinds; each device file defines its `const struct virtio_dev_kind`. */
#ifndef DEVICES_VIRTIO_KINDS_H
#define DEVICES_VIRTIO_KINDS_H

#include "virtio/virtio_dev.h"

extern const struct virtio_dev_kind *const virtio_dev_kinds[];

#endif
