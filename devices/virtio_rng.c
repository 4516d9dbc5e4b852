/*
 * virtio-rng (virtio 1.2, 5.4): one request queue; every device-writable
 * buffer the driver offers is filled from the host's getrandom().
 * No config space, no device features, nothing in flight between kicks, so
 * pause/resume have nothing to do and save/load have no state to carry.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "devices/virtio_kinds.h"
#include "virtio/virtio_dev.h"

#define RNG_QUEUE_SIZE   256
#define RNG_MAX_PER_CHAIN (64 * KiB)  /* keeps one hostile chain from stalling the event loop */

struct rng {
	struct virtq_chain chain;
};

/* Fill the writable part with up to RNG_MAX_PER_CHAIN random bytes; returns bytes written. */
static uint32_t rng_fill(const struct virtq_chain *c)
{
	uint32_t done = 0;

	for (unsigned i = 0; i < c->nr_in && done < RNG_MAX_PER_CHAIN; i++) {
		size_t want = MIN(c->in[i].iov_len, (size_t)(RNG_MAX_PER_CHAIN - done));
		size_t got = 0;

		while (got < want) {
			ssize_t n = getrandom((uint8_t *)c->in[i].iov_base + got, want - got, 0);

			if (n < 0) {
				if (errno == EINTR)
					continue;
				pr_guest_err("virtio-rng: getrandom failed: %s", strerror(errno));
				return done + (uint32_t)got;
			}
			got += (size_t)n;
		}
		done += (uint32_t)got;
	}
	return done;
}

static void rng_queue_notify(struct virtio_dev *vdev, unsigned q)
{
	struct rng *r = vdev->priv;
	struct virtq *vq = &vdev->vqs[0];
	int ret;

	if (q != 0)
		return;
	do {
		virtq_disable_notify(vq);
		while ((ret = virtq_pop(vq, &r->chain)) > 0) {
			if (virtq_push(vq, r->chain.head, rng_fill(&r->chain)))
				return;
		}
	} while (ret == 0 && virtq_enable_notify(vq));
	/* A broken queue (ret < 0) has told the transport already. */
	virtio_dev_flush(vdev, 0);
}

static void rng_destroy(struct virtio_dev *vdev)
{
	struct rng *r = vdev->priv;

	if (!r)
		return;
	virtq_chain_destroy(&r->chain);
	free(r);
	vdev->priv = NULL;
}

static int rng_pause(struct virtio_dev *vdev)
{
	(void)vdev;
	return 0;  /* nothing in flight outside queue_notify */
}

static int rng_save(struct virtio_dev *vdev, void *buf, size_t len, size_t *used)
{
	(void)vdev;
	(void)buf;
	(void)len;
	*used = 0;  /* stateless: the queues are the transport's */
	return 0;
}

static int rng_load(struct virtio_dev *vdev, const void *buf, size_t len)
{
	(void)vdev;
	(void)buf;
	return len == 0 ? 0 : -EINVAL;
}

static const struct virtio_dev_ops rng_ops = {
	.name = "virtio-rng",
	.device_id = VIRTIO_ID_RNG,
	.queue_notify = rng_queue_notify,
	.pause = rng_pause,
	.resume = rng_pause,
	.save = rng_save,
	.load = rng_load,
	.destroy = rng_destroy,
};

static int rng_create(struct vm *vm, const char *args, struct virtio_dev *vdev, char *err,
		      size_t errlen)
{
	struct rng *r;

	if (args[0]) {
		snprintf(err, errlen, "unknown argument '%s'; --rng takes none", args);
		return -EINVAL;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	if (virtq_chain_init(&r->chain, RNG_QUEUE_SIZE)) {
		free(r);
		return -ENOMEM;
	}
	vdev->ops = &rng_ops;
	vdev->priv = r;
	vdev->vm = vm;
	vdev->num_queues = 1;
	vdev->queue_max_size = RNG_QUEUE_SIZE;
	vdev->config_size = 0;
	vdev->device_features = 0;
	return 0;
}

const struct virtio_dev_kind virtio_rng_kind = {
	.option = "rng",
	.metavar = "",
	.help = "a virtio-rng device fed by the host's getrandom()",
	.repeatable = false,
	.create = rng_create,
};
