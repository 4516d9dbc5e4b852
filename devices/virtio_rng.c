/*
 * virtio-rng (virtio 1.2, 5.4): one request queue; every device-writable
 * buffer the driver offers is filled from the host's getrandom().
 * No config space, no device features. The event loop is shared: one
 * callback fills at most RNG_MAX_PER_CALL bytes, and the rest of a long ring
 * waits for a continuation queued behind the other callbacks. That op is all
 * there is in flight, so pause and reset cancel it, resume queues it again,
 * and save/load have no state to carry.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "channel/evloop.h"
#include "devices/virtio_kinds.h"
#include "virtio/virtio_dev.h"
#include "vmm/vm.h"

#define RNG_QUEUE_SIZE   256
#define RNG_MAX_PER_CHAIN (64 * KiB)  /* keeps one hostile chain from stalling the event loop */
#define RNG_MAX_PER_CALL  (256 * KiB) /* and a ring of them: about 0.5 ms of getrandom */

struct rng {
	struct virtq_chain chain;
	struct virtio_dev *vdev;
	bool live;                    /* DRIVER_OK until reset (lifecycle thread) */
	struct evloop_op more;        /* the rest of the ring, after the other callbacks */
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

static void rng_more(struct evloop_op *op, int result, void *opaque);

/* Event loop: fill what the driver offered, up to RNG_MAX_PER_CALL bytes this time. */
static void rng_queue_notify(struct virtio_dev *vdev, unsigned q)
{
	struct rng *r = vdev->priv;
	struct virtq *vq = &vdev->vqs[0];
	uint32_t filled = 0;
	int ret;

	if (q != 0)
		return;
	do {
		virtq_disable_notify(vq);
		while ((ret = virtq_pop(vq, &r->chain)) > 0) {
			uint32_t n = rng_fill(&r->chain);

			if (virtq_push(vq, r->chain.head, n))
				return;
			virtio_count(&vdev->counters.requests, 1);
			virtio_count(&vdev->counters.in_bytes, n);
			filled += n;
			if (filled >= RNG_MAX_PER_CALL) {
				/* Kicks stay off; the rest comes after the other callbacks. */
				if (evloop_op_start(vdev->vm->loop, &r->more, rng_more, r) == 0)
					evloop_op_complete(&r->more, 0);
				goto out;
			}
		}
	} while (ret == 0 && virtq_enable_notify(vq));
	/* A broken queue (ret < 0) has told the transport already. */
out:
	virtio_dev_flush(vdev, 0);
}

static void rng_more(struct evloop_op *op, int result, void *opaque)
{
	struct rng *r = opaque;

	(void)op;
	(void)result;
	if (virtq_is_enabled(&r->vdev->vqs[0]))
		rng_queue_notify(r->vdev, 0);
}

static int rng_activate(struct virtio_dev *vdev)
{
	((struct rng *)vdev->priv)->live = true;
	return 0;
}

/* The continuation is the only thing in flight; on return it does not run. */
static void rng_stop(struct virtio_dev *vdev)
{
	struct rng *r = vdev->priv;

	evloop_op_cancel(&r->more);
}

static void rng_reset(struct virtio_dev *vdev)
{
	rng_stop(vdev);
	((struct rng *)vdev->priv)->live = false;
}

static void rng_destroy(struct virtio_dev *vdev)
{
	struct rng *r = vdev->priv;

	if (!r)
		return;
	rng_stop(vdev);
	virtq_chain_destroy(&r->chain);
	free(r);
	vdev->priv = NULL;
}

static int rng_pause(struct virtio_dev *vdev)
{
	rng_stop(vdev);
	return 0;
}

/* A continuation cancelled by pause, or kicks that came meanwhile: look at the ring once. */
static int rng_resume(struct virtio_dev *vdev)
{
	struct rng *r = vdev->priv;
	int ret;

	if (!r->live || !virtq_is_enabled(&vdev->vqs[0]))
		return 0;
	ret = evloop_op_start(vdev->vm->loop, &r->more, rng_more, r);
	if (ret == 0)
		evloop_op_complete(&r->more, 0);
	return ret == -EBUSY ? 0 : ret;
}

/* vm.counters: the entropy given, as bytes the guest read. */
static const struct virtio_dev_counter_names rng_counter_names = { .in_bytes = "read_bytes" };

static const struct virtio_dev_ops rng_ops = {
	.name = "virtio-rng",
	.device_id = VIRTIO_ID_RNG,
	.reset = rng_reset,
	.activate = rng_activate,
	.queue_notify = rng_queue_notify,
	.pause = rng_pause,
	.resume = rng_resume,
	/* Stateless: the queues are the transport's. */
	.snap_save = virtio_dev_save_stateless,
	.snap_load = virtio_dev_load_stateless,
	.destroy = rng_destroy,
	.counter_names = &rng_counter_names,
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
	r->vdev = vdev;
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
