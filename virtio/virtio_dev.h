/*
 * The contract between a virtio device (devices/virtio_*.c) and its transport
 * (virtio/virtio_pci.c). A device is a const ops table plus private state; it
 * never knows about PCI, and the transport never knows what a block is.
 *
 * Threads: cfg_read/cfg_write run on a vCPU thread (the transport holds the
 * device lock around them). queue_notify, and everything a device does with
 * its queues, runs on the VM's event-loop thread (vm->loop). reset, activate,
 * queue_enable, queue_reset, pause, resume, save and load are called by the
 * transport with the event loop not touching the device (kicks unregistered
 * and, once live, the device paused).
 *
 * Queues may go live after DRIVER_OK: the driver enables a queue late, or
 * re-enables one after resetting it alone (VIRTIO_F_RING_RESET, 2.6.1). The
 * transport serves such a queue for every device: it pauses the device,
 * enables the queue, calls queue_enable, resumes the device and watches the
 * queue's kicks. A device must therefore never ignore an enabled queue: a
 * kick on it gets used entries or DEVICE_NEEDS_RESET (with one log line).
 */
#ifndef VIRTIO_VIRTIO_DEV_H
#define VIRTIO_VIRTIO_DEV_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtio/virtqueue.h"
#include "vmm/util.h"

/* Device ids (virtio 1.2, 5). */
#define VIRTIO_ID_NET    1
#define VIRTIO_ID_BLOCK  2
#define VIRTIO_ID_RNG    4
#define VIRTIO_ID_VSOCK  19
#define VIRTIO_ID_FS     26

/* Reserved feature bits (6). */
#define VIRTIO_F_INDIRECT_DESC     28
#define VIRTIO_F_EVENT_IDX         29
#define VIRTIO_F_VERSION_1         32
#define VIRTIO_F_ACCESS_PLATFORM   33
#define VIRTIO_F_RING_PACKED       34
#define VIRTIO_F_RING_RESET        40

/* Device status bits (2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE  1
#define VIRTIO_STATUS_DRIVER       2
#define VIRTIO_STATUS_DRIVER_OK    4
#define VIRTIO_STATUS_FEATURES_OK  8
#define VIRTIO_STATUS_NEEDS_RESET  64
#define VIRTIO_STATUS_FAILED       128

#define VIRTIO_MAX_QUEUES 64

struct vm;
struct virtio_dev;

/*
 * What a device counts for GET /api/v1/vm.counters. "in" is towards the guest
 * (a disk read, a received frame or packet, entropy), "out" from it (a disk
 * write, a sent frame). Bytes are payload: no virtio-blk/-net/-vsock headers.
 * Counted with virtio_count() on the device's threads and read from any
 * other with virtio_counter_get(): relaxed atomics, no lock, no ordering
 * between counters (each one alone is exact).
 */
struct virtio_dev_counters {
	uint64_t requests;    /* chains served: a disk request, a frame, a packet, an entropy fill */
	uint64_t errors;      /* requests that failed or were dropped, and every NEEDS_RESET */
	uint64_t in_ops, in_bytes;
	uint64_t out_ops, out_bytes;
};

/* The names vm.counters gives in_ops, in_bytes, out_ops, out_bytes (Cloud Hypervisor's); NULL: not kept. */
struct virtio_dev_counter_names {
	const char *in_ops, *in_bytes, *out_ops, *out_bytes;
};

static inline void virtio_count(uint64_t *counter, uint64_t n)
{
	__atomic_add_fetch(counter, n, __ATOMIC_RELAXED);
}

static inline uint64_t virtio_counter_get(const uint64_t *counter)
{
	return __atomic_load_n(counter, __ATOMIC_RELAXED);
}
struct snap_writer;
struct snap_reader;

/* What every device of a kind shares: name, id, hooks. */
struct virtio_dev_ops {
	const char *name;              /* "virtio-blk": for messages */
	uint16_t device_id;            /* VIRTIO_ID_* */

	/*
	 * Back to the state after creation. Kicks are already unwatched; the device
	 * must stop its own event sources and wait out in-flight work, pushing
	 * nothing: the transport resets the queues right after this returns.
	 */
	void (*reset)(struct virtio_dev *vdev);
	/*
	 * DRIVER_OK: features are final (vdev->driver_features) and the enabled
	 * queues are live. Return 0, or -errno to make the transport set
	 * NEEDS_RESET.
	 */
	int (*activate)(struct virtio_dev *vdev);
	/*
	 * Queue q went live after DRIVER_OK (a late enable, or a re-enable after
	 * queue_reset); the queues enabled at DRIVER_OK are activate's. Return 0,
	 * or -errno: the transport then disables the queue and sets NEEDS_RESET.
	 * NULL: the device keeps nothing per queue beyond vdev->vqs[q].
	 */
	int (*queue_enable)(struct virtio_dev *vdev, unsigned q);
	/*
	 * The driver reset queue q alone (VIRTIO_F_RING_RESET, 2.6.1); it was
	 * enabled, the device is live and paused. Forget everything about q,
	 * pushing nothing more into it: the transport resets vdev->vqs[q] right
	 * after. NULL: nothing per queue to forget.
	 */
	void (*queue_reset)(struct virtio_dev *vdev, unsigned q);
	/* The driver kicked queue q (event-loop thread). */
	void (*queue_notify)(struct virtio_dev *vdev, unsigned q);
	/* Device-specific config space; off + len <= config_size is guaranteed. */
	void (*cfg_read)(struct virtio_dev *vdev, uint32_t off, void *data, uint32_t len);
	void (*cfg_write)(struct virtio_dev *vdev, uint32_t off, const void *data, uint32_t len);
	/* Stop touching guest memory / resume; NULL when the device has nothing in flight. */
	int (*pause)(struct virtio_dev *vdev);
	int (*resume)(struct virtio_dev *vdev);
	/*
	 * Snapshot hooks (vmm/snapshot/format.h); NULL means "cannot be saved" and
	 * the VMM refuses the snapshot, naming the device. Both run with the
	 * device paused (or, for load, freshly created and not yet activated).
	 *
	 * snap_save: write the device's own state into the current node of w (the
	 * transport opened it: ".../blk0/device") with snap_write() and one
	 * struct snap_desc, so save and load share one description. The
	 * transport saves features, status, MSI-X and every queue itself, after
	 * pause: by then nothing may be in flight (popped and not pushed) and
	 * vdev->vqs[] must hold the indices the device stopped at (a device whose
	 * queues another process runs updates them in its pause hook).
	 *
	 * snap_load: read node (the device's node, as snap_save wrote it),
	 * validate every field against this device (a disk whose size changed,
	 * another MAC) and only then keep what it needs; 0, or -EINVAL with one
	 * line in r->err (snap_read / snap_fail name the node and field). Called
	 * after the transport validated its own fields and before it applies
	 * them: the queues are restored and activate() runs after load returns.
	 */
	int (*snap_save)(struct virtio_dev *vdev, struct snap_writer *w);
	int (*snap_load)(struct virtio_dev *vdev, struct snap_reader *r, int node);
	/* Free the device's private state. */
	void (*destroy)(struct virtio_dev *vdev);
	/*
	 * How vm.counters names vdev->counters' data counters. NULL: the device
	 * does not see its requests (vhost-user: another process serves the
	 * queues), and requests and data are reported as JSON null, never 0.
	 */
	const struct virtio_dev_counter_names *counter_names;
};

/* One device instance, filled by the device's create function, then owned by the transport. */
struct virtio_dev {
	const struct virtio_dev_ops *ops;
	void *priv;                    /* the device's own state */
	struct vm *vm;                 /* guest memory: &vm->mem; event loop: vm->loop */
	char id[32];                   /* "blk0": for messages */

	/* offered; the transport adds VERSION_1, RING_EVENT_IDX, INDIRECT_DESC and RING_RESET */
	uint64_t device_features;
	uint64_t driver_features;      /* accepted by the driver, valid from activate() on */
	uint32_t config_size;
	unsigned num_queues;
	/*
	 * MSI-X table entries: 0 = one per queue and one for config changes, so
	 * Linux gives each queue its own interrupt (and spreads them over vCPUs);
	 * 2 = config and one vector all queues share, which Linux takes when the
	 * table is too small for one each: every queue's interrupt on one vCPU.
	 */
	unsigned msix_vectors;
	uint16_t queue_max_size;       /* largest queue size offered, power of two */
	/* vqs[0 .. num_queues) are set up (virtq_init) by the transport when it adds the device. */
	struct virtq vqs[VIRTIO_MAX_QUEUES];

	/*
	 * The device lock, initialised by the transport: held around cfg_read and
	 * cfg_write. A device changes its config space only between
	 * virtio_dev_config_begin() and virtio_dev_config_end(), which bump
	 * config_generation inside the lock so the driver never accepts a torn read.
	 */
	pthread_mutex_t cfg_lock;
	uint32_t config_generation;    /* read and bumped atomically */

	/* Set by the transport: how a device signals the guest. Thread-safe. */
	void (*signal_used)(struct virtio_dev *vdev, unsigned q);  /* used-buffer interrupt */
	void (*signal_config)(struct virtio_dev *vdev);            /* config change interrupt */
	/* A guest error: mark DEVICE_NEEDS_RESET and tell the driver. Logged once by the caller. */
	void (*needs_reset)(struct virtio_dev *vdev);
	void *transport;               /* the transport's own state */
	/* For vm.counters: for the device's lifetime (a reset keeps them). */
	struct virtio_dev_counters counters;

	/*
	 * vhost-user: another process reads the queues' kick eventfds and writes
	 * their irqfds itself. Set by the device's create(); the transport then
	 * never watches kicks (queue_notify is not called) and hands out the fds
	 * through the two hooks it sets (thread-safe; -1 when there is none).
	 */
	bool external_queues;
	int (*queue_kick_fd)(struct virtio_dev *vdev, unsigned q);
	int (*queue_call_fd)(struct virtio_dev *vdev, unsigned q);  /* the vector's irqfd */
};

/*
 * Push one used element on queue q and interrupt the guest if the driver
 * wants it (EVENT_IDX or NO_INTERRUPT honoured). A helper for devices.
 */
void virtio_dev_complete(struct virtio_dev *vdev, unsigned q, uint16_t head, uint32_t len);

/*
 * For devices that batch: after any number of virtq_push() calls, publish
 * them (virtq_flush) and interrupt the guest if the driver wants it.
 */
void virtio_dev_flush(struct virtio_dev *vdev, unsigned q);

/* Change the device config space: begin takes cfg_lock; end bumps the
 * generation, drops the lock and raises the config-change interrupt. */
void virtio_dev_config_begin(struct virtio_dev *vdev);
void virtio_dev_config_end(struct virtio_dev *vdev);

/*
 * For a device with no state of its own beyond its queues (virtio-rng): save
 * writes a node with only a version; load refuses anything else in it.
 */
int virtio_dev_save_stateless(struct virtio_dev *vdev, struct snap_writer *w) WUR;
int virtio_dev_load_stateless(struct virtio_dev *vdev, struct snap_reader *r, int node) WUR;

/*
 * A cfg_read from a device's config struct cfg of size bytes: copies
 * [off, off + len), or zeroes data when the range leaves the struct.
 */
void virtio_dev_cfg_copy(const void *cfg, size_t size, uint32_t off, void *data, uint32_t len);

/* Whether the driver accepted feature bit `bit`. */
static inline bool virtio_has_feature(const struct virtio_dev *vdev, unsigned bit)
{
	return (vdev->driver_features >> bit) & 1;
}

/*
 * Device kinds the command line can create: `--NAME ARGS` (repeatable when
 * `repeatable`). create() parses ARGS (a "k=v,k=v" list, may be empty) and
 * fills vdev; errors go in err (one line naming the key at fault) and
 * return -EINVAL, which makes vmm exit with status 2.
 */
struct virtio_dev_kind {
	const char *option;            /* "disk", "net", "rng" */
	const char *metavar;           /* "path=PATH[,readonly=on][,serial=ID]" */
	const char *help;
	bool repeatable;
	/* Guest RAM must be a shared memfd another process can map (vhost-user). */
	bool shares_guest_memory;
	int (*create)(struct vm *vm, const char *args, struct virtio_dev *vdev, char *err, size_t errlen);
};

#endif
