/* Helpers every virtio device shares: completing chains and changing config space. */
#include "virtio/virtio_dev.h"

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
