/* Every virtio device kind the command line knows, in --help order. NULL-terminated. */
#include <stddef.h>

#include "devices/virtio_blk.h"
#include "devices/virtio_kinds.h"
#include "devices/virtio_net.h"

const struct virtio_dev_kind *const virtio_dev_kinds[] = {
	&virtio_blk_kind,
	&virtio_net_kind,
	NULL,
};
