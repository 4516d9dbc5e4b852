/*
 * The modern virtio-over-PCI transport (virtio 1.2, 4.1), no legacy
 * interface. One struct virtio_pci per device, on the VM's PCI bus:
 *
 *   BAR 0 (32-bit memory, 4 KiB)   MSI-X table at 0x000, PBA at 0x800
 *   BAR 2 (64-bit memory, 16 KiB)  common cfg 0x0000, ISR 0x1000,
 *                                  device cfg 0x2000, notify 0x3000
 *
 * Capabilities: MSI-X, then the virtio ones (common, notify with
 * notify_off_multiplier 4 and queue q at notify + 4 q, ISR, device cfg when
 * the device has one, PCI cfg access window). No INTx (interrupt pin 0).
 *
 * Interrupts: one MSI-X vector per queue plus one for config changes
 * (num_queues + 1). Each vector owns a KVM GSI, an MSI route (set when the
 * driver unmasks a vector with a valid message) and an eventfd bound to the
 * GSI with irqfd. Masked vectors collect a pending bit in the PBA instead.
 * Kicks: each queue has an eventfd registered with KVM as an ioeventfd on
 * its notify address (any width), so a kick costs no exit to userspace; the
 * eventfd is watched by the VM's event loop while the queue is enabled and
 * the device live (DRIVER_OK until reset).
 *
 * Queues after DRIVER_OK, the same rule for every device: a queue enabled
 * late (or re-enabled after its own reset, VIRTIO_F_RING_RESET, offered to
 * every driver) is served. The transport pauses the device (kicks unwatched,
 * ops->pause), enables the queue, calls ops->queue_enable, resumes it and
 * watches the kicks; a refusal disables the queue and sets NEEDS_RESET with
 * one log line. queue_reset = 1 likewise pauses, calls ops->queue_reset,
 * resets the queue to its defaults (vector NO_VECTOR) and resumes; the reset
 * is complete when the write returns, so queue_reset always reads 0.
 *
 * Threads and locks: `lock` guards the common configuration (status,
 * features, queue setup) and is taken by vCPU threads; a reset holds it while
 * it removes the kick handlers from the event loop, which waits for a
 * running handler, so nothing on the event loop may take `lock`. What the
 * event loop needs (signal_used, signal_config, needs_reset) uses only
 * `msix_lock` and atomics. Order: pci cfg_lock -> lock -> vdev->cfg_lock ->
 * msix_lock -> irq router lock.
 *
 * For vhost-user later: queue addresses are in vdev->vqs[q]; the kick
 * eventfd of each queue and the irqfd of each vector are public below
 * (virtio_pci_queue_kick_fd, virtio_pci_queue_call_fd), and stay the same
 * fds for the device's lifetime, whatever the guest does with BARs or
 * vectors.
 */
#ifndef VIRTIO_VIRTIO_PCI_H
#define VIRTIO_VIRTIO_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "channel/notifier.h"
#include "virtio/virtio_dev.h"
#include "vmm/pci.h"
#include "vmm/util.h"

#define VIRTIO_PCI_VENDOR       0x1af4
#define VIRTIO_PCI_DEVICE_BASE  0x1040   /* + device id: modern-only ids (4.1.2.1) */
#define VIRTIO_PCI_REVISION     1
#define VIRTIO_MSI_NO_VECTOR    0xffff

/* virtio_pci_cap.cfg_type (4.1.4). */
#define VIRTIO_PCI_CAP_COMMON_CFG  1
#define VIRTIO_PCI_CAP_NOTIFY_CFG  2
#define VIRTIO_PCI_CAP_ISR_CFG     3
#define VIRTIO_PCI_CAP_DEVICE_CFG  4
#define VIRTIO_PCI_CAP_PCI_CFG     5

/* Where things live in the two BARs. */
#define VPCI_MSIX_BAR          0
#define VPCI_MSIX_BAR_SIZE     0x1000
#define VPCI_MSIX_TABLE        0x000
#define VPCI_MSIX_PBA          0x800
#define VPCI_BAR               2
#define VPCI_BAR_SIZE          0x4000
#define VPCI_COMMON            0x0000
#define VPCI_ISR               0x1000
#define VPCI_DEVICE            0x2000
#define VPCI_NOTIFY            0x3000
#define VPCI_NOTIFY_MULTIPLIER 4
#define VPCI_DEVICE_CFG_MAX    0x1000
#define VPCI_MAX_VECTORS       (VIRTIO_MAX_QUEUES + 1)

/* struct virtio_pci_common_cfg (4.1.4.3), offsets. */
#define VIRTIO_PCI_COMMON_DFSELECT     0x00
#define VIRTIO_PCI_COMMON_DF           0x04
#define VIRTIO_PCI_COMMON_GFSELECT     0x08
#define VIRTIO_PCI_COMMON_GF           0x0c
#define VIRTIO_PCI_COMMON_MSIX         0x10
#define VIRTIO_PCI_COMMON_NUMQ         0x12
#define VIRTIO_PCI_COMMON_STATUS       0x14
#define VIRTIO_PCI_COMMON_CFGGENERATION 0x15
#define VIRTIO_PCI_COMMON_Q_SELECT     0x16
#define VIRTIO_PCI_COMMON_Q_SIZE       0x18
#define VIRTIO_PCI_COMMON_Q_MSIX       0x1a
#define VIRTIO_PCI_COMMON_Q_ENABLE     0x1c
#define VIRTIO_PCI_COMMON_Q_NOFF       0x1e
#define VIRTIO_PCI_COMMON_Q_DESCLO     0x20
#define VIRTIO_PCI_COMMON_Q_DESCHI     0x24
#define VIRTIO_PCI_COMMON_Q_AVAILLO    0x28
#define VIRTIO_PCI_COMMON_Q_AVAILHI    0x2c
#define VIRTIO_PCI_COMMON_Q_USEDLO     0x30
#define VIRTIO_PCI_COMMON_Q_USEDHI     0x34
#define VIRTIO_PCI_COMMON_Q_NDATA      0x38
#define VIRTIO_PCI_COMMON_Q_RESET      0x3a
#define VIRTIO_PCI_COMMON_SIZE         0x3c

/* ISR bits (4.1.4.5). */
#define VIRTIO_PCI_ISR_QUEUE   1
#define VIRTIO_PCI_ISR_CONFIG  2

/* The wire format of the capabilities (4.1.4). */
struct virtio_pci_cap {
	uint8_t cap_vndr;
	uint8_t cap_next;
	uint8_t cap_len;
	uint8_t cfg_type;
	uint8_t bar;
	uint8_t id;
	uint8_t padding[2];
	le32 offset;
	le32 length;
};
struct virtio_pci_notify_cap {
	struct virtio_pci_cap cap;
	le32 notify_off_multiplier;
};
struct virtio_pci_cfg_cap {
	struct virtio_pci_cap cap;
	uint8_t pci_cfg_data[4];
};
_Static_assert(sizeof(struct virtio_pci_cap) == 16, "virtio_pci_cap is 16 bytes");
_Static_assert(sizeof(struct virtio_pci_notify_cap) == 20, "notify cap is 20 bytes");
_Static_assert(sizeof(struct virtio_pci_cfg_cap) == 20, "pci cfg cap is 20 bytes");

/* MSI-X (PCI 3.0, 6.8.2): control word bits and table entry layout. */
#define PCI_MSIX_CTRL_ENABLE   0x8000
#define PCI_MSIX_CTRL_MASKALL  0x4000
#define PCI_MSIX_ENTRY_SIZE    16
#define PCI_MSIX_ENTRY_MASKED  1

struct virtio_pci_vector {
	uint32_t gsi;
	struct notifier irqfd;      /* write = inject the MSI (once routed) */
	bool irqfd_assigned;
	uint32_t addr_lo, addr_hi, data, ctrl;  /* the table entry as the guest wrote it */
	bool routed;                /* KVM has a route for exactly this message */
	uint32_t routed_lo, routed_hi, routed_data;
	uint64_t nr_fired;          /* atomic: messages sent to KVM through the irqfd */
};

struct virtio_pci;

struct virtio_pci_queue {
	struct virtio_pci *vp;
	unsigned index;
	struct notifier kick;       /* the ioeventfd */
	bool ioeventfd_assigned;
	uint32_t ioeventfd_len;     /* 0 (any width) where KVM takes it, else 2 */
	struct evloop_fd *watch;    /* on the event loop while the device is live */
	uint16_t msix_vector;       /* guarded by msix_lock */
	/* Atomic counters for vm.counters; not counted for vdev->external_queues. */
	uint64_t nr_kicks;          /* notifies: each ioeventfd write KVM made, and trapped ones */
	uint64_t nr_interrupts;     /* used-buffer interrupts the device raised (signal_used) */
	bool synthetic_kick;        /* one signal in `kick` is the transport's own (after load) */
};

struct irq_router;
struct evloop;

struct virtio_pci {
	struct pci_device pci;
	struct virtio_dev *vdev;
	struct irq_router *irq;
	struct evloop *loop;
	char name[48];

	pthread_mutex_t lock;
	uint64_t offered;            /* device features + the transport's */
	uint64_t driver_features;    /* as written so far */
	uint32_t dfselect, gfselect;
	uint8_t status;              /* without NEEDS_RESET, which lives in needs_reset */
	uint16_t queue_select;
	bool live;                   /* DRIVER_OK taken: kicks watched */
	bool needs_reset;            /* atomic: set from any thread */
	uint8_t isr;                 /* atomic */

	pthread_mutex_t msix_lock;
	unsigned nvec;
	struct virtio_pci_vector vec[VPCI_MAX_VECTORS];
	uint64_t pba[(VPCI_MAX_VECTORS + 63) / 64];
	bool msix_enabled, msix_masked;
	uint16_t config_vector;      /* guarded by msix_lock */
	/* Atomic counters (relaxed) for vm.counters and the exit line. */
	uint64_t nr_dropped;         /* signals lost to an invalid or missing route */
	uint64_t nr_trapped_kicks;   /* notifies that exited to userspace (not via ioeventfd) */
	uint64_t nr_config_interrupts; /* config-change interrupts raised (signal_config) */

	bool paused;                 /* virtio_pci_pause() taken: kicks not watched */
	bool initialised;            /* virtio_pci_init() succeeded, uninit not yet run */
	bool allocated;              /* made by virtio_pci_add_devices(): freed on destroy */

	uint64_t notify_addr;        /* guest address of the notify region while BAR 2 decodes */
	uint8_t msix_cap, cfg_cap;   /* capability offsets in config space */
	struct virtio_pci_queue queues[VIRTIO_MAX_QUEUES];
};

/*
 * Set up the transport for vdev (whose create() has run: ops, vm, id,
 * features, config_size, num_queues, queue_max_size) and add it to bus pb.
 * Initialises vdev's queues, cfg_lock and signal hooks. Errors are logged.
 */
int virtio_pci_init(struct virtio_pci *vp, struct virtio_dev *vdev, struct pci_bus *pb,
		    struct irq_router *irq, struct evloop *loop) WUR;
/* Stop the device (as a reset does), release fds, GSIs and the device. */
void virtio_pci_uninit(struct virtio_pci *vp);

/* Create every device of vm->cfg->devices on vm->pci; a bad argument is a one-line error. */
int virtio_pci_add_devices(struct vm *vm) WUR;

/* Device reset, as a guest write of 0 to device_status does (any state). */
void virtio_pci_reset(struct virtio_pci *vp);

/*
 * Pausing is a protocol (the vCPUs are parked first): pause removes the kick
 * handlers, so once it returns nothing on the event loop runs for this
 * transport, then asks the device to pause (ops->pause). resume runs it
 * backwards. Kicks that arrive meanwhile wait in the eventfds. Return 0 or
 * the device's error.
 */
int virtio_pci_pause(struct virtio_pci *vp) WUR;
int virtio_pci_resume(struct virtio_pci *vp) WUR;

/*
 * The counters of GET /api/v1/vm.counters, read without locks (each one is
 * exact, together they are not one instant). With vdev->external_queues
 * (vhost-user) kicks and used-buffer interrupts go straight between KVM and
 * the back-end: `counted` is false and the per-queue and per-vector figures
 * are not ours to give (0 here, null in the API).
 */
struct virtio_pci_queue_counters {
	uint64_t kicks, interrupts;
	uint16_t vector;             /* VIRTIO_MSI_NO_VECTOR: none */
};
struct virtio_pci_counters {
	bool counted;                /* false for vhost-user: see above */
	bool needs_reset;
	uint64_t trapped_kicks, dropped_interrupts, config_interrupts;
	unsigned nqueues, nvec;
	struct virtio_pci_queue_counters queue[VIRTIO_MAX_QUEUES];
	uint64_t vector_interrupts[VPCI_MAX_VECTORS];  /* delivered, per MSI-X vector */
	struct virtio_dev_counters dev;
};
void virtio_pci_get_counters(struct virtio_pci *vp, struct virtio_pci_counters *c);

/* For vhost-user: the eventfd KVM signals when the driver kicks queue q, or -1. */
int virtio_pci_queue_kick_fd(struct virtio_pci *vp, unsigned q);
/* For vhost-user: the irqfd of the vector queue q uses now, or -1 (none, or masked). */
int virtio_pci_queue_call_fd(struct virtio_pci *vp, unsigned q);

/*
 * Snapshots (docs/snapshot.md). A device's node in the state file holds the
 * transport's fields (virtio_pci_snap_desc: features offered and accepted,
 * feature selects, status, config generation, ISR, MSI-X table, PBA and
 * config vector, every queue's size, enable, vector, ring addresses and
 * indices, and the PCI configuration space), "kind" (ops->name), and a child
 * node "device" with what the device's own save hook wrote.
 *
 * virtio_pci_save: the transport must be paused (virtio_pci_pause); writes
 * into the current node of w, which the caller opened and closes (named
 * after vdev->id). -ENOTSUP when the device has no snap_save/snap_load, -EBUSY
 * when not paused or a queue still has requests in flight; err says which.
 *
 * virtio_pci_load: node as virtio_pci_save wrote it; vp was just created
 * from the same command line, its VM's RAM already holds the snapshot's
 * memory, and nothing runs. Reads and checks every field (the transport's,
 * against this device: queue count and sizes, rings inside guest RAM,
 * vectors, features offered, the read-only PCI config bytes; then the
 * device's load hook) before applying any; then re-creates what the live
 * transport had: BARs (and so the ioeventfds), MSI-X routes, queues at
 * their indices, and activate() when the device was live. The transport
 * comes back paused, as the VM it belonged to: virtio_pci_resume() starts
 * it, and every enabled queue is looked at once then. 0, or -EINVAL (or
 * the device's -errno) with one line in r->err naming the node and field.
 *
 * virtio_pci_snap_check: the checks that need no device (ranges, fields
 * against each other, a "device" child), for parsing a whole file early.
 */
struct snap_desc;
struct snap_writer;
struct snap_reader;
extern const struct snap_desc virtio_pci_snap_desc;
int virtio_pci_save(struct virtio_pci *vp, struct snap_writer *w, char *err, size_t errlen) WUR;
int virtio_pci_load(struct virtio_pci *vp, struct snap_reader *r, int node) WUR;
int virtio_pci_snap_check(struct snap_reader *r, int node) WUR;

/* The BAR handlers (tests and fuzzing reach them through the PCI bus too). */
void virtio_pci_common_read(struct virtio_pci *vp, uint32_t off, uint8_t *data, unsigned len);
void virtio_pci_common_write(struct virtio_pci *vp, uint32_t off, const uint8_t *data,
			     unsigned len);

#endif
