/* Every virtio device kind the command line knows, in --help order. NULL-terminated. */
#include <stddef.h>

#include "devices/virtio_blk.h"
#include "devices/virtio_kinds.h"
#include "devices/virtio_net.h"
#include "devices/vsock/vsock.h"
#include "virtio/vhost_user/vhost_user.h"

extern const struct virtio_dev_kind virtio_rng_kind;  /* devices/virtio_rng.c */

const struct virtio_dev_kind *const virtio_dev_kinds[] = {
	&virtio_blk_kind,
	&virtio_net_kind,
	&virtio_rng_kind,
	&virtio_vsock_kind,
	&vhost_user_kind,
	NULL,
};
