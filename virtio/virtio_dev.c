/* Helpers every virtio device shares: completing chains and changing config space. */
#include "virtio/virtio_dev.h"

#include <errno.h>
#include <string.h>

#include <libfdt.h>

#include "vmm/snapshot/format.h"

#define STATELESS_VERSION 1u

void virtio_dev_complete(struct virtio_dev *vdev, unsigned q, uint16_t head, uint32_t len)
{
	bool notify = false;

	if (q >= vdev->num_queues)
		return;
	/* A broken or disabled queue refuses the push; the transport already knows. */
	if (virtq_push_one(&vdev->vqs[q], head, len, &notify))
		return;
	if (notify && vdev->signal_used)
		vdev->signal_used(vdev, q);
}

void virtio_dev_flush(struct virtio_dev *vdev, unsigned q)
{
	if (q >= vdev->num_queues)
		return;
	virtq_flush(&vdev->vqs[q]);
	if (virtq_needs_notify(&vdev->vqs[q]) && vdev->signal_used)
		vdev->signal_used(vdev, q);
}

void virtio_dev_config_begin(struct virtio_dev *vdev)
{
	pthread_mutex_lock(&vdev->cfg_lock);
}

void virtio_dev_config_end(struct virtio_dev *vdev)
{
	/* Inside the lock: a driver that read the old generation re-reads (4.1.4.3.1). */
	__atomic_add_fetch(&vdev->config_generation, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&vdev->cfg_lock);
	if (vdev->signal_config)
		vdev->signal_config(vdev);
}

int virtio_dev_save_stateless(struct virtio_dev *vdev, struct snap_writer *w)
{
	(void)vdev;
	return snap_write_u32(w, "version", STATELESS_VERSION);
}

int virtio_dev_load_stateless(struct virtio_dev *vdev, struct snap_reader *r, int node)
{
	const char *name;
	uint32_t version;
	int prop, ret;

	ret = snap_read_u32(r, node, "version", &version);
	if (ret)
		return ret;
	if (version != STATELESS_VERSION)
		return snap_fail(r, node, "version %u; this vmm reads %s version %u", version,
				 vdev->ops->name, STATELESS_VERSION);
	fdt_for_each_property_offset(prop, r->fdt, node) {
		if (!fdt_getprop_by_offset(r->fdt, prop, &name, NULL) || !name)
			return snap_fail(r, node, "unreadable property");
		if (strcmp(name, "version"))
			return snap_fail(r, node, "unexpected property %.40s (%s keeps no state)", name,
					 vdev->ops->name);
	}
	if (prop != -FDT_ERR_NOTFOUND)
		return snap_fail(r, node, "corrupt property list");
	return 0;
}

void virtio_dev_cfg_copy(const void *cfg, size_t size, uint32_t off, void *data, uint32_t len)
{
	if (off > size || len > size - off) {
		memset(data, 0, len);
		return;
	}
	memcpy(data, (const uint8_t *)cfg + off, len);
}
