/*
 * `--vhost-user type=blk|net|fs|generic,socket=PATH,...`: a virtio-pci
 * device whose queues an external back-end serves (QEMU's
 * docs/interop/vhost-user.rst), on top of frontend.c.
 *
 * The guest's kicks go straight from KVM's ioeventfd to the back-end and its
 * interrupts straight from the back-end into KVM's irqfd
 * (vdev->external_queues): the VMM is not on the I/O path at all. What the
 * VMM does is the control path, driven by the transport's hooks on a vCPU
 * thread (activate, reset, pause = sleep, resume = wake, config access), and
 * one worker thread per device that watches the connection (hang-up, the
 * back-end request channel, ring error eventfds), forwards interrupts of
 * queues the driver gave no MSI-X vector, and reconnects. A dead or slow
 * back-end therefore never stalls the VM's shared event loop; a vCPU waits
 * at most one reply timeout per message.
 *
 * When the back-end goes away: without reconnect= the device sets
 * DEVICE_NEEDS_RESET (one log line) and stays dead until the process ends;
 * with reconnect=SECS the worker tries again every SECS seconds, forever,
 * while the guest's requests simply wait in the rings. Once it is back, the
 * whole set-up is replayed with the features the guest negotiated, and
 * every ring restarts from the used index in guest memory, so whatever was
 * in flight when the back-end died is processed again.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "channel/notifier.h"
#include "virtio/vhost_user/frontend.h"
#include "virtio/vhost_user/vhost_user.h"
#include "vmm/gmem.h"
#include "vmm/snapshot/format.h"
#include "vmm/vm.h"

#define VHU_DEFAULT_QUEUE_SIZE 256
#define VHU_BLK_CONFIG_SIZE    60     /* up to write_zeroes_may_unmap: what QEMU 7.2 serves */
#define VHU_NET_CONFIG_SIZE    24
#define VHU_FS_CONFIG_SIZE     40     /* tag[36], le32 num_request_queues */
#define VHU_FS_TAG_MAX         36
#define VHU_BLK_F_MQ           12
#define VHU_BLK_NUM_QUEUES_OFF 34
#define VHU_NET_F_MAC          5
#define VHU_DRAIN_MS           2000   /* sleep: how long in-flight requests may take */

/* Device feature bits a back-end may offer the guest: 0-23 and 41 up (2.2). */
#define DEVICE_FEATURE_MASK (0xffffffULL | ~((1ULL << 41) - 1))
/* Ring features the transport always offers: the back-end must handle them. */
#define TRANSPORT_RING_FEATURES (1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_F_EVENT_IDX | \
				 1ULL << VIRTIO_F_INDIRECT_DESC)

enum vhu_type { VHU_BLK, VHU_NET, VHU_FS, VHU_GENERIC };

struct vhu_ring {
	bool live;          /* the driver enabled it and DRIVER_OK came: the back-end serves it */
	bool have_base;     /* base is from GET_VRING_BASE (asleep); else the guest's used index */
	uint16_t base;
	struct notifier fwd;  /* the call fd when the queue has no MSI-X vector */
	struct notifier err;  /* the back-end's error eventfd for this ring */
	bool err_reported;
};

struct vhu_dev {
	struct virtio_dev *vdev;
	struct virtio_dev_ops ops;  /* per device: generic takes its device id from the user */
	enum vhu_type type;
	char path[108];
	char tag[VHU_FS_TAG_MAX + 1];
	unsigned reconnect_s;

	pthread_mutex_t lock;       /* everything below; taken inside the transport's locks */
	struct vhu_fe fe;
	bool connected;             /* fe can be used */
	bool lost;                  /* the connection broke: the worker closes it */
	bool dead;                  /* gone for good (no reconnect=): NEEDS_RESET */
	bool active;                /* DRIVER_OK until reset */
	bool sleeping;              /* pause() stopped the rings */
	bool restored;              /* made from a snapshot: the first wake nudges both sides */
	uint64_t lost_ns, next_attempt_ns;
	unsigned nr_reconnects, nr_attempts;
	uint8_t config[VHU_MAX_CONFIG];  /* the guest's view; cfg_lock guards it */
	struct vhu_ring ring[VIRTIO_MAX_QUEUES];

	pthread_t worker;
	bool worker_started;
	bool stopping;
	struct notifier wake;
};

static const char *const type_names[] = { "blk", "net", "fs", "generic" };

static uint64_t want_protocol(void)
{
	return vhu_protocol_features_supported();
}

/* ---- state changes (lock held) ------------------------------------------------------- */

/* The connection broke (any thread). The worker closes it and, with reconnect=, retries. */
static void conn_lost(struct vhu_dev *d)
{
	struct virtio_dev *vdev = d->vdev;

	if (!d->connected)
		return;
	d->connected = false;
	d->lost = true;
	d->lost_ns = monotonic_ns();
	for (unsigned q = 0; q < vdev->num_queues; q++)
		d->ring[q].have_base = false;  /* its base is gone with it: use the used index */
	if (d->reconnect_s) {
		pr_err("%s: vhost-user back-end at %s is gone; reconnecting every %u s, the guest's "
		       "requests wait", vdev->id, d->path, d->reconnect_s);
	} else {
		pr_err("%s: vhost-user back-end at %s is gone; device needs reset (no reconnect=)",
		       vdev->id, d->path);
		d->dead = true;
		if (d->active && vdev->needs_reset)
			vdev->needs_reset(vdev);
	}
	notifier_signal(&d->wake);
}

/* An operation on the connection failed: 0 if the device carries on (reconnecting). */
static int op_failed(struct vhu_dev *d, int err)
{
	if (err == -EREMOTEIO)
		return err;  /* the back-end refused one request; the connection is fine */
	conn_lost(d);
	return d->reconnect_s ? 0 : -EIO;
}

static int mem_regions(struct vhu_dev *d, struct vhu_fe_region *r, unsigned *n)
{
	const struct gmem *gm = &d->vdev->vm->mem;

	if (gm->fd < 0) {
		pr_err("%s: guest memory is not shared (--memory shared=off?); a vhost-user "
		       "back-end cannot map it", d->vdev->id);
		return -ENODEV;
	}
	if (gm->nr_regions > VHU_MAX_MEM_REGIONS)
		return -E2BIG;
	/*
	 * A memfd's size is sealed: a back-end cannot truncate it under us. The
	 * huge=always tmpfs file (shmem_enabled "never") cannot be sealed; a
	 * back-end that truncated it would fault vmm, as with QEMU's file backend.
	 */
	for (unsigned i = 0; i < gm->nr_regions; i++)
		r[i] = (struct vhu_fe_region){ .gpa = gm->regions[i].gpa, .size = gm->regions[i].size,
					       .hva = (uint64_t)(uintptr_t)gm->regions[i].hva,
					       .fd = gm->fd, .fd_offset = gm->regions[i].fd_offset };
	*n = gm->nr_regions;
	return 0;
}

static uint16_t guest_used_idx(struct vhu_dev *d, unsigned q)
{
	const struct virtq *vq = &d->vdev->vqs[q];
	uint16_t idx = 0;

	if (gmem_read(&d->vdev->vm->mem, vq->used_gpa + 2, &idx, sizeof(idx)))
		return 0;
	return le16_to_cpu(idx);
}

static int ring_cfg(struct vhu_dev *d, unsigned q, struct vhu_ring_cfg *c)
{
	struct virtio_dev *vdev = d->vdev;
	const struct virtq *vq = &vdev->vqs[q];
	const struct gmem *gm = &vdev->vm->mem;
	uint64_t n = vq->size;
	void *desc = gmem_translate(gm, vq->desc_gpa, 16 * n);
	void *avail = gmem_translate(gm, vq->avail_gpa, 6 + 2 * n);
	void *used = gmem_translate(gm, vq->used_gpa, 6 + 8 * n);

	if (!desc || !avail || !used)
		return -EFAULT;   /* virtq_enable() checked them; cannot happen */
	c->size = vq->size;
	c->desc = (uint64_t)(uintptr_t)desc;
	c->avail = (uint64_t)(uintptr_t)avail;
	c->used = (uint64_t)(uintptr_t)used;
	c->base = d->ring[q].have_base ? d->ring[q].base : guest_used_idx(d, q);
	c->kick_fd = vdev->queue_kick_fd ? vdev->queue_kick_fd(vdev, q) : -1;
	c->call_fd = vdev->queue_call_fd ? vdev->queue_call_fd(vdev, q) : -1;
	if (c->call_fd < 0)
		c->call_fd = notifier_fd(&d->ring[q].fwd);  /* no vector: the worker forwards */
	c->err_fd = notifier_fd(&d->ring[q].err);
	return c->kick_fd < 0 ? -EBADF : 0;
}

/*
 * A ring a new back-end takes over (after a reconnect or a restore) carries
 * the old one's notification suppression in guest memory: VRING_USED_F_NO_NOTIFY
 * in the used ring's flags, or an avail_event the driver has passed, left
 * as the old back-end stopped. The new one has not seen a request yet and
 * would wait for a kick the driver never sends. As the device, ask for
 * notifications again: flags 0, avail_event at the current avail index.
 */
static void rearm_notifications(struct vhu_dev *d, unsigned q)
{
	const struct virtq *vq = &d->vdev->vqs[q];
	const struct gmem *gm = &d->vdev->vm->mem;
	uint16_t flags = 0, avail = 0;

	if (gmem_write(gm, vq->used_gpa, &flags, sizeof(flags)))
		return;   /* virtq_enable() checked the ring: cannot happen */
	if ((d->vdev->driver_features & (1ULL << VIRTIO_RING_F_EVENT_IDX)) &&
	    !gmem_read(gm, vq->avail_gpa + 2, &avail, sizeof(avail)))
		(void)!gmem_write(gm, vq->used_gpa + 4 + 8ULL * vq->size, &avail, sizeof(avail));
}

static int start_ring(struct vhu_dev *d, unsigned q, bool restart)
{
	struct vhu_ring_cfg c;
	int ret = ring_cfg(d, q, &c);

	if (ret)
		return ret;
	if (restart)
		rearm_notifications(d, q);
	ret = vhu_fe_ring_start(&d->fe, q, &c);
	if (ret)
		return ret;
	d->ring[q].have_base = false;
	/*
	 * After a reconnect, look at the ring at once: kicks may have come
	 * meanwhile. After a restore, the driver may also wait for an interrupt
	 * for requests the old back-end completed as the VM was paused: one
	 * spurious interrupt makes it look at the used ring (drivers expect
	 * those; QEMU sends one on a vhost start too).
	 */
	if (restart) {
		uint64_t one = 1;

		if (write(c.kick_fd, &one, sizeof(one)) < 0) {
			/* the counter is full: the back-end has a kick pending anyway */
		}
		if (d->restored && write(c.call_fd, &one, sizeof(one)) < 0) {
			/* full: an interrupt is pending anyway */
		}
	}
	return 0;
}

/* Features, memory, rings: the set-up of a live device on a (new) connection. */
static int setup_device(struct vhu_dev *d, bool restart)
{
	struct virtio_dev *vdev = d->vdev;
	struct vhu_fe_region r[VHU_MAX_MEM_REGIONS];
	unsigned n;
	int ret;

	/* Transport-only bits (RING_RESET) are the VMM's business, not the back-end's. */
	ret = vhu_fe_set_features(&d->fe, vdev->driver_features & d->fe.backend_features);
	if (ret)
		return ret;
	ret = mem_regions(d, r, &n);
	if (ret)
		return ret;
	ret = vhu_fe_set_mem_table(&d->fe, r, n);
	if (ret)
		return ret;
	for (unsigned q = 0; !d->sleeping && q < vdev->num_queues; q++) {
		if (!d->ring[q].live)
			continue;
		ret = start_ring(d, q, restart);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * Sleep: the vCPUs are stopped, so no request is added; wait (a bounded time)
 * until the back-end has used every request the driver made available, so
 * that after GET_VRING_BASE nothing in flight writes guest memory any more.
 */
static void drain_ring(struct vhu_dev *d, unsigned q)
{
	const struct virtq *vq = &d->vdev->vqs[q];
	uint64_t end = monotonic_ns() + VHU_DRAIN_MS * 1000000ULL;
	uint16_t avail = 0, used = 0;

	if (gmem_read(&d->vdev->vm->mem, vq->avail_gpa + 2, &avail, sizeof(avail)))
		return;
	do {
		if (gmem_read(&d->vdev->vm->mem, vq->used_gpa + 2, &used, sizeof(used)) ||
		    le16_to_cpu(used) == le16_to_cpu(avail))
			return;
		usleep(200);
	} while (monotonic_ns() < end);
	pr_err("%s: ring %u still has %u requests in the back-end after %d ms; stopping it anyway",
	       d->vdev->id, q, (uint16_t)(le16_to_cpu(avail) - le16_to_cpu(used)), VHU_DRAIN_MS);
}

/* Stop every live ring, keeping the bases the back-end reports. */
static int stop_rings(struct vhu_dev *d, bool drain)
{
	for (unsigned q = 0; q < d->vdev->num_queues; q++) {
		uint16_t base;
		int ret;

		if (!d->ring[q].live)
			continue;
		if (drain)
			drain_ring(d, q);
		ret = vhu_fe_ring_stop(&d->fe, q, &base);
		if (ret)
			return ret;
		d->ring[q].base = base;
		d->ring[q].have_base = true;
	}
	return 0;
}

/* ---- reconnecting (worker thread, lock held) ----------------------------------------- */

static void schedule_attempt(struct vhu_dev *d)
{
	d->next_attempt_ns = monotonic_ns() + (uint64_t)d->reconnect_s * 1000000000ULL;
}

static void try_reconnect(struct vhu_dev *d)
{
	struct virtio_dev *vdev = d->vdev;
	uint64_t need, missing;
	int fd, ret;

	d->nr_attempts++;
	fd = vhu_connect(d->path);
	if (fd < 0) {
		schedule_attempt(d);
		return;
	}
	vhu_fe_init(&d->fe, vdev->id, fd, d->fe.timeout_ms);
	ret = vhu_fe_negotiate(&d->fe, want_protocol());
	if (ret) {
		vhu_fe_close(&d->fe);
		schedule_attempt(d);
		return;
	}
	need = (d->active ? vdev->driver_features : vdev->device_features) &
	       ~(1ULL << VIRTIO_F_RING_RESET);
	need |= TRANSPORT_RING_FEATURES & (d->active ? vdev->driver_features : ~0ULL);
	missing = need & ~d->fe.backend_features;
	if (missing) {
		pr_err("%s: vhost-user back-end at %s came back without features %#llx the guest "
		       "uses; device needs reset", vdev->id, d->path, (unsigned long long)missing);
		vhu_fe_close(&d->fe);
		d->dead = true;
		if (d->active && vdev->needs_reset)
			vdev->needs_reset(vdev);
		return;
	}
	d->connected = true;
	if (d->active) {
		ret = setup_device(d, true);
		if (ret) {
			(void)op_failed(d, ret);
			return;
		}
	}
	d->nr_reconnects++;
	pr_err("%s: vhost-user back-end at %s is back after %llu ms; rings restarted from the "
	       "guest's used index", vdev->id, d->path,
	       (unsigned long long)((monotonic_ns() - d->lost_ns) / 1000000));
}

/* CONFIG_CHANGE_MSG: read the config space again and tell the driver. */
static void refresh_config(struct vhu_dev *d, uint32_t size);

static void *worker_main(void *arg)
{
	struct vhu_dev *d = arg;
	struct virtio_dev *vdev = d->vdev;

	for (;;) {
		struct pollfd p[2 + 2 * VIRTIO_MAX_QUEUES + 1];
		int what[ARRAY_SIZE(p)];   /* -1 wake, -2 socket, -3 back-end channel, q, 1000 + q */
		unsigned n = 0;
		int timeout = -1;
		bool refresh = false;

		pthread_mutex_lock(&d->lock);
		if (d->stopping) {
			pthread_mutex_unlock(&d->lock);
			break;
		}
		if (d->lost) {
			vhu_fe_close(&d->fe);
			d->lost = false;
			if (d->reconnect_s)
				schedule_attempt(d);
		}
		if (!d->connected && d->reconnect_s && !d->dead &&
		    monotonic_ns() >= d->next_attempt_ns)
			try_reconnect(d);
		p[n] = (struct pollfd){ .fd = notifier_fd(&d->wake), .events = POLLIN };
		what[n++] = -1;
		if (d->connected) {
			/* Idle between requests: any event on the socket is the back-end leaving. */
			p[n] = (struct pollfd){ .fd = d->fe.sock, .events = POLLRDHUP };
			what[n++] = -2;
			if (d->fe.backend_req_fd >= 0) {
				p[n] = (struct pollfd){ .fd = d->fe.backend_req_fd, .events = POLLIN };
				what[n++] = -3;
			}
		}
		for (unsigned q = 0; q < vdev->num_queues; q++) {
			if (!d->ring[q].live)
				continue;
			p[n] = (struct pollfd){ .fd = notifier_fd(&d->ring[q].fwd), .events = POLLIN };
			what[n++] = (int)q;
			if (!d->ring[q].err_reported) {
				p[n] = (struct pollfd){ .fd = notifier_fd(&d->ring[q].err), .events = POLLIN };
				what[n++] = 1000 + (int)q;
			}
		}
		if (d->lost || (!d->connected && d->reconnect_s && !d->dead)) {
			uint64_t now = monotonic_ns();

			timeout = d->lost ? 0 : d->next_attempt_ns > now ?
				  (int)MIN((d->next_attempt_ns - now) / 1000000 + 1, 60000ULL) : 0;
		}
		pthread_mutex_unlock(&d->lock);

		if (poll(p, n, timeout) <= 0)
			continue;

		pthread_mutex_lock(&d->lock);
		for (unsigned i = 0; i < n; i++) {
			uint32_t req;

			if (!p[i].revents)
				continue;
			if (what[i] == -1) {
				(void)notifier_reset(&d->wake);
			} else if (what[i] == -2) {
				if (d->connected && p[i].fd == d->fe.sock)
					conn_lost(d);
			} else if (what[i] == -3) {
				if (d->connected && p[i].fd == d->fe.backend_req_fd &&
				    !vhu_fe_backend_req(&d->fe, &req) &&
				    req == VHU_BACKEND_CONFIG_CHANGE_MSG)
					refresh = true;
			} else if (what[i] >= 1000) {
				unsigned q = (unsigned)(what[i] - 1000);

				(void)notifier_reset(&d->ring[q].err);
				if (d->ring[q].live && !d->ring[q].err_reported) {
					d->ring[q].err_reported = true;
					pr_err("%s: vhost-user back-end reported an error on ring %u; "
					       "device needs reset", vdev->id, q);
					vdev->needs_reset(vdev);
				}
			} else {
				(void)notifier_reset(&d->ring[what[i]].fwd);
				vdev->signal_used(vdev, (unsigned)what[i]);
			}
		}
		pthread_mutex_unlock(&d->lock);
		if (refresh)
			refresh_config(d, vdev->config_size);
	}
	return NULL;
}

static void fix_config(struct vhu_dev *d, uint8_t *cfg)
{
	struct virtio_dev *vdev = d->vdev;

	/* The guest gets as many queues as the transport has, whatever the back-end has. */
	if (d->type == VHU_BLK && vdev->config_size >= VHU_BLK_NUM_QUEUES_OFF + 2) {
		cfg[VHU_BLK_NUM_QUEUES_OFF] = (uint8_t)vdev->num_queues;
		cfg[VHU_BLK_NUM_QUEUES_OFF + 1] = (uint8_t)(vdev->num_queues >> 8);
	}
}

static void refresh_config(struct vhu_dev *d, uint32_t size)
{
	struct virtio_dev *vdev = d->vdev;
	uint8_t cfg[VHU_MAX_CONFIG];
	int ret = -ENOTCONN;

	if (!size)
		return;
	pthread_mutex_lock(&d->lock);
	if (d->connected) {
		ret = vhu_fe_get_config(&d->fe, 0, cfg, size);
		if (ret)
			(void)op_failed(d, ret);
	}
	pthread_mutex_unlock(&d->lock);
	if (ret)
		return;
	fix_config(d, cfg);
	virtio_dev_config_begin(vdev);
	memcpy(d->config, cfg, size);
	virtio_dev_config_end(vdev);
}

/* ---- the device ops (vCPU threads, the transport's lock held) ------------------------ */

static int vhu_activate(struct virtio_dev *vdev)
{
	struct vhu_dev *d = vdev->priv;
	int ret = 0;

	pthread_mutex_lock(&d->lock);
	if (!d->worker_started) {
		ret = vmm_thread_create(&d->worker, worker_main, d, "vhost-user");
		if (ret) {
			pthread_mutex_unlock(&d->lock);
			return ret;
		}
		d->worker_started = true;
	}
	d->active = true;
	d->sleeping = false;
	for (unsigned q = 0; q < vdev->num_queues; q++) {
		d->ring[q].live = virtq_is_enabled(&vdev->vqs[q]);
		d->ring[q].have_base = false;
		d->ring[q].err_reported = false;
	}
	if (d->dead) {
		ret = -EIO;
	} else if (d->connected) {
		ret = setup_device(d, false);
		if (ret)
			ret = op_failed(d, ret);
	}
	/* Not connected, reconnecting: the worker sets the rings up once the back-end is back. */
	notifier_signal(&d->wake);
	pthread_mutex_unlock(&d->lock);
	return ret;
}

static void vhu_reset(struct virtio_dev *vdev)
{
	struct vhu_dev *d = vdev->priv;
	int ret = 0;

	pthread_mutex_lock(&d->lock);
	if (d->connected && d->active) {
		/* Reclaim the rings: the back-end lets go of them (and of the kick and call fds). */
		ret = vhu_fe_reset_device(&d->fe);
		if (ret == -EOPNOTSUPP)
			ret = d->sleeping ? 0 : stop_rings(d, false);
		if (ret)
			(void)op_failed(d, ret);
	}
	d->active = false;
	d->sleeping = false;
	for (unsigned q = 0; q < vdev->num_queues; q++) {
		d->ring[q].live = false;
		d->ring[q].have_base = false;
		(void)notifier_reset(&d->ring[q].fwd);
		(void)notifier_reset(&d->ring[q].err);
	}
	notifier_signal(&d->wake);
	pthread_mutex_unlock(&d->lock);
}

/* Sleep: GET_VRING_BASE on every live ring; the bases are kept for wake. */
static int vhu_pause(struct virtio_dev *vdev)
{
	struct vhu_dev *d = vdev->priv;
	int ret = 0;

	pthread_mutex_lock(&d->lock);
	if (d->connected && d->active && !d->sleeping) {
		ret = stop_rings(d, true);
		if (ret)
			ret = op_failed(d, ret);
	}
	if (!ret)
		d->sleeping = true;
	pthread_mutex_unlock(&d->lock);
	return ret;
}

/* Wake: SET_VRING_BASE (and the rest) from the kept bases. */
static int vhu_resume(struct virtio_dev *vdev)
{
	struct vhu_dev *d = vdev->priv;
	int ret = 0;

	pthread_mutex_lock(&d->lock);
	if (d->sleeping) {
		d->sleeping = false;
		for (unsigned q = 0; d->connected && d->active && q < vdev->num_queues; q++) {
			if (!d->ring[q].live)
				continue;
			ret = start_ring(d, q, d->restored);
			if (ret) {
				ret = op_failed(d, ret);
				break;
			}
		}
		d->restored = false;
	}
	notifier_signal(&d->wake);
	pthread_mutex_unlock(&d->lock);
	return ret;
}

/* A queue enabled after DRIVER_OK; the device is paused, resume starts it. */
static int vhu_queue_enable(struct virtio_dev *vdev, unsigned q)
{
	struct vhu_dev *d = vdev->priv;

	pthread_mutex_lock(&d->lock);
	d->ring[q].live = true;
	d->ring[q].have_base = false;
	d->ring[q].err_reported = false;
	pthread_mutex_unlock(&d->lock);
	return 0;
}

/* The driver reset queue q alone; paused, so the back-end has let go of it already. */
static void vhu_queue_reset(struct virtio_dev *vdev, unsigned q)
{
	struct vhu_dev *d = vdev->priv;

	pthread_mutex_lock(&d->lock);
	d->ring[q].live = false;
	d->ring[q].have_base = false;
	pthread_mutex_unlock(&d->lock);
}

static void vhu_queue_notify(struct virtio_dev *vdev, unsigned q)
{
	(void)vdev;
	(void)q;  /* never called: the back-end reads the kicks (external_queues) */
}

static void vhu_cfg_read(struct virtio_dev *vdev, uint32_t off, void *data, uint32_t len)
{
	struct vhu_dev *d = vdev->priv;

	memcpy(data, d->config + off, len);
}

static void vhu_cfg_write(struct virtio_dev *vdev, uint32_t off, const void *data, uint32_t len)
{
	struct vhu_dev *d = vdev->priv;
	int ret;

	memcpy(d->config + off, data, len);
	pthread_mutex_lock(&d->lock);
	if (d->connected && vhu_fe_has_protocol(&d->fe, VHU_PROTOCOL_F_CONFIG)) {
		ret = vhu_fe_set_config(&d->fe, off, data, len);
		if (ret)
			(void)op_failed(d, ret);
	}
	pthread_mutex_unlock(&d->lock);
}

static void vhu_destroy(struct virtio_dev *vdev)
{
	struct vhu_dev *d = vdev->priv;

	if (!d)
		return;
	if (d->worker_started) {
		pthread_mutex_lock(&d->lock);
		d->stopping = true;
		notifier_signal(&d->wake);
		pthread_mutex_unlock(&d->lock);
		pthread_join(d->worker, NULL);
	}
	vhu_fe_close(&d->fe);
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		notifier_destroy(&d->ring[q].fwd);
		notifier_destroy(&d->ring[q].err);
	}
	notifier_destroy(&d->wake);
	pthread_mutex_destroy(&d->lock);
	free(d);
	vdev->priv = NULL;
}

/* ---- snapshots ---------------------------------------------------------------------- */

/*
 * blk and net back-ends keep no state of their own that a guest could miss:
 * a snapshot holds the device type and the config space the guest saw; the
 * rings are the transport's (saved after pause stopped and drained them).
 * On restore the device connects to its back-end as at boot, the transport
 * activates it and every ring restarts from the used index in guest memory.
 */
struct vhu_snap {
	uint8_t type;
	uint32_t config_size;
	uint8_t config[VHU_MAX_CONFIG];
};

#define S struct vhu_snap
static const struct snap_field vhu_snap_fields[] = {
	SNAP_UINT_R(S, type, VHU_BLK, VHU_NET),
	SNAP_UINT_R(S, config_size, 0, VHU_MAX_CONFIG),
	SNAP_ARR(S, config),
};
#undef S

static const struct snap_desc vhu_snap_desc = SNAP_DESC(struct vhu_snap, "vhost-user", 1, vhu_snap_fields, NULL);

static int vhu_snap_save(struct virtio_dev *vdev, struct snap_writer *w)
{
	struct vhu_dev *d = vdev->priv;
	struct vhu_snap *st = calloc(1, sizeof(*st));
	int ret;

	if (!st)
		return -ENOMEM;
	st->type = (uint8_t)d->type;
	st->config_size = vdev->config_size;
	virtio_dev_config_begin(vdev);
	memcpy(st->config, d->config, vdev->config_size);
	virtio_dev_config_end(vdev);
	ret = snap_write(w, &vhu_snap_desc, st);
	free(st);
	return ret;
}

/* What identifies the back-end's device to the guest: a disk's capacity, a NIC's MAC. */
static int vhu_snap_load(struct virtio_dev *vdev, struct snap_reader *r, int node)
{
	struct vhu_dev *d = vdev->priv;
	struct vhu_snap *st = calloc(1, sizeof(*st));
	uint64_t was = 0, now = 0;
	int ret;

	if (!st)
		return -ENOMEM;
	ret = snap_read(r, node, &vhu_snap_desc, st);
	if (!ret && st->type != d->type)
		ret = snap_fail(r, node, "type: the snapshot has vhost-user %s, this VM %s",
				type_names[st->type], type_names[d->type]);
	if (!ret && st->config_size != vdev->config_size)
		ret = snap_fail(r, node, "config_size: %u bytes in the snapshot, %u from the back-end",
				st->config_size, vdev->config_size);
	if (!ret && d->type == VHU_BLK && vdev->config_size >= 8) {
		memcpy(&was, st->config, 8);
		memcpy(&now, d->config, 8);
		if (was != now)
			ret = snap_fail(r, node, "the back-end's disk has %llu sectors, the snapshot's had %llu "
					"(a disk whose size changed)", (unsigned long long)le64_to_cpu(now),
					(unsigned long long)le64_to_cpu(was));
	}
	if (!ret && d->type == VHU_NET && vdev->config_size >= 6 && memcmp(st->config, d->config, 6))
		ret = snap_fail(r, node, "the back-end's MAC differs from the snapshot's");
	if (!ret)
		d->restored = true;
	free(st);
	return ret;
}

static const struct virtio_dev_ops vhu_ops_template = {
	.name = "vhost-user",
	.reset = vhu_reset,
	.activate = vhu_activate,
	.queue_enable = vhu_queue_enable,
	.queue_reset = vhu_queue_reset,
	.queue_notify = vhu_queue_notify,
	.cfg_read = vhu_cfg_read,
	.cfg_write = vhu_cfg_write,
	.pause = vhu_pause,
	.resume = vhu_resume,
	/*
	 * snap_save/snap_load: set for blk and net only (vhu_create). fs and
	 * generic back-ends may keep state the VMM cannot see, and the ones we
	 * meet offer no DEVICE_STATE to save it (docs/vhost-user.md): a
	 * snapshot with one is refused, naming it.
	 */
	.destroy = vhu_destroy,
};

/* ---- creation ------------------------------------------------------------------------ */

struct vhu_opts {
	enum vhu_type type;
	bool have_type;
	const char *socket;
	const char *tag;
	unsigned queues, queue_size, device_id, reconnect;
};

static int parse_uint(const char *key, const char *v, unsigned min, unsigned max, unsigned *out,
		      char *err, size_t errlen)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(v, &end, 0);
	if (!*v || *end || errno || n < min || n > max || v[0] == '-') {
		snprintf(err, errlen, "%s=%s: want a number from %u to %u", key, v, min, max);
		return -EINVAL;
	}
	*out = (unsigned)n;
	return 0;
}

static int parse_opts(char *s, struct vhu_opts *o, char *err, size_t errlen)
{
	char *save = NULL;

	for (char *kv = strtok_r(s, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *v = strchr(kv, '=');
		int ret = 0;

		if (!v) {
			snprintf(err, errlen, "'%s' is not KEY=VALUE", kv);
			return -EINVAL;
		}
		*v++ = 0;
		if (!strcmp(kv, "type")) {
			unsigned t;

			for (t = 0; t < ARRAY_SIZE(type_names) && strcmp(v, type_names[t]); t++)
				;
			if (t == ARRAY_SIZE(type_names)) {
				snprintf(err, errlen, "type=%s: want blk, net, fs or generic", v);
				return -EINVAL;
			}
			o->type = (enum vhu_type)t;
			o->have_type = true;
		} else if (!strcmp(kv, "socket")) {
			o->socket = v;
		} else if (!strcmp(kv, "tag")) {
			o->tag = v;
		} else if (!strcmp(kv, "queues")) {
			ret = parse_uint(kv, v, 1, VIRTIO_MAX_QUEUES, &o->queues, err, errlen);
		} else if (!strcmp(kv, "queue-size")) {
			ret = parse_uint(kv, v, 2, VIRTQ_MAX_SIZE, &o->queue_size, err, errlen);
			if (!ret && (o->queue_size & (o->queue_size - 1))) {
				snprintf(err, errlen, "queue-size=%s: want a power of two", v);
				ret = -EINVAL;
			}
		} else if (!strcmp(kv, "device-id")) {
			ret = parse_uint(kv, v, 1, 255, &o->device_id, err, errlen);
		} else if (!strcmp(kv, "reconnect")) {
			ret = parse_uint(kv, v, 1, 3600, &o->reconnect, err, errlen);
		} else {
			snprintf(err, errlen, "unknown key '%s'", kv);
			return -EINVAL;
		}
		if (ret)
			return ret;
	}
	if (!o->have_type || !o->socket || !o->socket[0]) {
		snprintf(err, errlen, "type= and socket= are required");
		return -EINVAL;
	}
	if (o->type == VHU_GENERIC && (!o->device_id || !o->queues)) {
		snprintf(err, errlen, "type=generic needs device-id= and queues=");
		return -EINVAL;
	}
	if (o->type != VHU_GENERIC && o->device_id) {
		snprintf(err, errlen, "device-id= is for type=generic only");
		return -EINVAL;
	}
	if (o->tag && o->type != VHU_FS) {
		snprintf(err, errlen, "tag= is for type=fs only");
		return -EINVAL;
	}
	if (o->type == VHU_FS && (!o->tag || !o->tag[0] || strlen(o->tag) > VHU_FS_TAG_MAX)) {
		snprintf(err, errlen, "type=fs needs tag= (1 to %d characters)", VHU_FS_TAG_MAX);
		return -EINVAL;
	}
	if (o->type == VHU_NET && o->queues && o->queues != 2) {
		snprintf(err, errlen, "type=net: queues=2 only (one receive, one transmit queue)");
		return -EINVAL;
	}
	if (o->type == VHU_FS && o->queues == 1) {
		snprintf(err, errlen, "type=fs: queues counts the high-priority queue too; at least 2");
		return -EINVAL;
	}
	if (strlen(o->socket) >= sizeof(((struct vhu_dev *)0)->path)) {
		snprintf(err, errlen, "socket=%s: path too long", o->socket);
		return -EINVAL;
	}
	return 0;
}

/* The config space the guest sees, from the back-end or made here. */
static int initial_config(struct vhu_dev *d, const struct vhu_opts *o, char *err, size_t errlen)
{
	struct virtio_dev *vdev = d->vdev;
	bool has_config = vhu_fe_has_protocol(&d->fe, VHU_PROTOCOL_F_CONFIG);
	int ret;

	switch (d->type) {
	case VHU_BLK:
		if (!has_config) {
			snprintf(err, errlen, "socket=%s: the back-end offers no config space "
				 "(VHOST_USER_PROTOCOL_F_CONFIG), which virtio-blk needs", o->socket);
			return -EINVAL;
		}
		vdev->config_size = VHU_BLK_CONFIG_SIZE;
		break;
	case VHU_NET:
		vdev->config_size = VHU_NET_CONFIG_SIZE;
		if (!has_config) {
			/* A stable locally administered MAC from the socket path. */
			uint32_t h = 2166136261u;

			for (const char *c = o->socket; *c; c++)
				h = (h ^ (uint8_t)*c) * 16777619u;
			d->config[0] = 0x52;
			d->config[1] = 0x54;
			d->config[2] = 0x00;
			d->config[3] = (uint8_t)(h >> 16);
			d->config[4] = (uint8_t)(h >> 8);
			d->config[5] = (uint8_t)h;
			vdev->device_features |= 1ULL << VHU_NET_F_MAC;
			return 0;
		}
		break;
	case VHU_FS:
		vdev->config_size = VHU_FS_CONFIG_SIZE;
		memcpy(d->config, o->tag, strlen(o->tag));
		d->config[36] = (uint8_t)(vdev->num_queues - 1);
		return 0;   /* ours: tag= and queues= say it */
	case VHU_GENERIC: {
		/* The size is the device's business: the largest the back-end serves. */
		static const uint32_t sizes[] = { 256, 128, 96, 72, 64, 60, 40, 32, 24, 16, 8, 4 };

		vdev->config_size = 0;
		d->fe.quiet_refusals = true;
		for (unsigned i = 0; has_config && i < ARRAY_SIZE(sizes); i++) {
			ret = vhu_fe_get_config(&d->fe, 0, d->config, sizes[i]);
			if (ret != -EREMOTEIO) {
				vdev->config_size = ret ? 0 : sizes[i];
				break;
			}
		}
		d->fe.quiet_refusals = false;
		if (d->fe.failed) {
			snprintf(err, errlen, "socket=%s: reading the config space: bad reply (see above)",
				 o->socket);
			return -EINVAL;
		}
		return 0;
	}
	}
	if (!vdev->config_size)
		return 0;
	ret = vhu_fe_get_config(&d->fe, 0, d->config, vdev->config_size);
	if (ret) {
		snprintf(err, errlen, "socket=%s: reading the config space: %s", o->socket,
			 d->fe.failed ? "bad reply (see above)" : strerror(-ret));
		return -EINVAL;
	}
	fix_config(d, d->config);
	return 0;
}

static int vhu_create(struct vm *vm, const char *args, struct virtio_dev *vdev, char *err,
		      size_t errlen)
{
	static const uint16_t ids[] = { VIRTIO_ID_BLOCK, VIRTIO_ID_NET, VIRTIO_ID_FS, 0 };
	static const unsigned default_queues[] = { 1, 2, 2, 0 };
	struct vhu_opts o = { 0 };
	struct vhu_dev *d;
	uint64_t missing;
	char *copy;
	int fd, ret;

	copy = strdup(args ? args : "");
	if (!copy)
		return -ENOMEM;
	ret = parse_opts(copy, &o, err, errlen);
	if (ret)
		goto err_copy;
	d = calloc(1, sizeof(*d));
	if (!d) {
		ret = -ENOMEM;
		goto err_copy;
	}
	d->vdev = vdev;
	d->type = o.type;
	d->reconnect_s = o.reconnect;
	snprintf(d->path, sizeof(d->path), "%s", o.socket);
	if (o.tag)
		snprintf(d->tag, sizeof(d->tag), "%s", o.tag);
	pthread_mutex_init(&d->lock, NULL);
	d->fe.sock = d->fe.backend_req_fd = -1;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		d->ring[q].fwd.fd = d->ring[q].err.fd = -1;
	d->wake.fd = -1;
	if (notifier_init(&d->wake, NOTIFIER_COUNTER)) {
		ret = -ENOMEM;
		goto err_dev;
	}

	d->ops = vhu_ops_template;
	d->ops.device_id = o.type == VHU_GENERIC ? (uint16_t)o.device_id : ids[o.type];
	if (o.type == VHU_BLK || o.type == VHU_NET) {
		d->ops.snap_save = vhu_snap_save;
		d->ops.snap_load = vhu_snap_load;
	}
	vdev->ops = &d->ops;
	vdev->priv = d;
	vdev->vm = vm;
	vdev->external_queues = true;
	vdev->num_queues = o.queues ? o.queues : default_queues[o.type];
	vdev->queue_max_size = o.queue_size ? (uint16_t)o.queue_size : VHU_DEFAULT_QUEUE_SIZE;
	for (unsigned q = 0; q < vdev->num_queues; q++) {
		if (notifier_init(&d->ring[q].fwd, NOTIFIER_COUNTER) ||
		    notifier_init(&d->ring[q].err, NOTIFIER_COUNTER)) {
			ret = -ENOMEM;
			goto err_dev;
		}
	}

	fd = vhu_connect(o.socket);
	if (fd < 0) {
		snprintf(err, errlen, "socket=%s: %s (start the back-end first)", o.socket,
			 strerror(-fd));
		ret = -EINVAL;
		goto err_dev;
	}
	vhu_fe_init(&d->fe, vdev->id, fd, VHU_DEFAULT_TIMEOUT_MS);
	ret = vhu_fe_negotiate(&d->fe, want_protocol());
	if (ret) {
		snprintf(err, errlen, "socket=%s: vhost-user set-up failed: %s", o.socket,
			 d->fe.failed ? "bad reply (see above)" : strerror(-ret));
		ret = -EINVAL;
		goto err_dev;
	}
	missing = TRANSPORT_RING_FEATURES & ~d->fe.backend_features;
	if (missing) {
		snprintf(err, errlen, "socket=%s: the back-end does not offer %s (features %#llx)",
			 o.socket, missing & (1ULL << VIRTIO_F_VERSION_1) ? "VIRTIO_F_VERSION_1" :
			 missing & (1ULL << VIRTIO_F_EVENT_IDX) ? "VIRTIO_RING_F_EVENT_IDX" :
			 "VIRTIO_RING_F_INDIRECT_DESC", (unsigned long long)d->fe.backend_features);
		ret = -EINVAL;
		goto err_dev;
	}
	if (d->fe.queue_num && d->fe.queue_num < vdev->num_queues) {
		snprintf(err, errlen, "socket=%s: the back-end has %u queues, %u asked", o.socket,
			 d->fe.queue_num, vdev->num_queues);
		ret = -EINVAL;
		goto err_dev;
	}
	vdev->device_features = d->fe.backend_features & DEVICE_FEATURE_MASK;
	if (o.type == VHU_NET)   /* no control queue: the back-end serves rx and tx only */
		vdev->device_features &= ~0xfe0000ULL;
	if (o.type == VHU_BLK && vdev->num_queues == 1)
		vdev->device_features &= ~(1ULL << VHU_BLK_F_MQ);
	ret = initial_config(d, &o, err, errlen);
	if (ret)
		goto err_dev;
	d->connected = true;
	pr_info("%s: vhost-user %s at %s: features %#llx, protocol features %#llx, %u queue(s) "
		"of %u, back-end queues %u, memory slots %u%s", vdev->id, type_names[o.type],
		o.socket, (unsigned long long)d->fe.backend_features,
		(unsigned long long)d->fe.protocol_features, vdev->num_queues, vdev->queue_max_size,
		d->fe.queue_num, d->fe.max_mem_slots, o.reconnect ? ", reconnecting" : "");
	free(copy);
	return 0;

err_dev:
	vdev->priv = d;
	vhu_destroy(vdev);
	vdev->ops = NULL;
err_copy:
	free(copy);
	return ret == -ENOMEM ? -ENOMEM : -EINVAL;
}

const struct virtio_dev_kind vhost_user_kind = {
	.option = "vhost-user",
	.metavar = "type=blk|net|fs|generic,socket=PATH[,tag=TAG][,queues=N][,queue-size=N]"
		   "[,device-id=N][,reconnect=SECS]",
	.help = "a virtio device served by a vhost-user back-end listening on PATH",
	.repeatable = true,
	.shares_guest_memory = true,
	.create = vhu_create,
};
