/*
 * Modern virtio-pci transport (virtio 1.2, 4.1). See virtio_pci.h for the
 * BAR layout, the interrupt and kick paths and the locking rules.
 */
#include "virtio/virtio_pci.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libfdt.h>

#include "channel/evloop.h"
#include "devices/virtio_kinds.h"
#include "vmm/irq.h"
#include "vmm/snapshot/format.h"
#include "vmm/vm.h"

/* One allocation per command-line device: the transport and the device it carries. */
struct vpci_owned {
	struct virtio_pci vp;
	struct virtio_dev vdev;
};

static uint64_t get_le(const uint8_t *p, unsigned len)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < len; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void put_le(uint8_t *p, uint64_t v, unsigned len)
{
	for (unsigned i = 0; i < len; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- interrupts ------------------------------------------------------------------ */

/* Caller holds msix_lock. Deliver vector v, or remember it in the PBA while masked. */
static void msix_fire_locked(struct virtio_pci *vp, uint16_t v)
{
	struct virtio_pci_vector *e;

	/* No INTx: with MSI-X off the driver polls the ISR, if it wants anything. */
	if (!vp->msix_enabled || v >= vp->nvec)
		return;
	e = &vp->vec[v];
	if (vp->msix_masked || (e->ctrl & PCI_MSIX_ENTRY_MASKED)) {
		vp->pba[v / 64] |= 1ULL << (v % 64);
		return;
	}
	if (!e->routed) {
		virtio_count(&vp->nr_dropped, 1);
		pr_guest_err("%s: MSI-X vector %u has no valid message (addr %#x:%#x data %#x); "
			     "interrupt dropped", vp->name, v, e->addr_hi, e->addr_lo, e->data);
		return;
	}
	notifier_signal(&e->irqfd);
	virtio_count(&e->nr_fired, 1);
}

/*
 * Caller holds msix_lock. Entry v or the function state changed: when the
 * vector can deliver, make KVM's route match the entry, then flush a pending bit.
 */
static void msix_sync_locked(struct virtio_pci *vp, uint16_t v)
{
	struct virtio_pci_vector *e = &vp->vec[v];
	int ret;

	if (!vp->msix_enabled || vp->msix_masked || (e->ctrl & PCI_MSIX_ENTRY_MASKED))
		return;
	if (!e->routed || e->routed_lo != e->addr_lo || e->routed_hi != e->addr_hi ||
	    e->routed_data != e->data) {
		ret = irq_msi_route(vp->irq, e->gsi, e->addr_lo, e->addr_hi, e->data);
		e->routed = !ret;
		if (!ret) {
			e->routed_lo = e->addr_lo;
			e->routed_hi = e->addr_hi;
			e->routed_data = e->data;
		} else if (ret == -EINVAL) {
			pr_guest_err("%s: MSI-X vector %u unmasked with an invalid message "
				     "(addr %#x:%#x data %#x)", vp->name, v, e->addr_hi, e->addr_lo,
				     e->data);
		} else {
			pr_err("%s: routing MSI-X vector %u (GSI %u) failed: %s", vp->name, v,
			       e->gsi, strerror(-ret));
		}
	}
	if (vp->pba[v / 64] & (1ULL << (v % 64))) {
		vp->pba[v / 64] &= ~(1ULL << (v % 64));
		msix_fire_locked(vp, v);
	}
}

static void signal_used(struct virtio_dev *vdev, unsigned q)
{
	struct virtio_pci *vp = vdev->transport;

	if (q >= vdev->num_queues)
		return;
	virtio_count(&vp->queues[q].nr_interrupts, 1);
	__atomic_or_fetch(&vp->isr, VIRTIO_PCI_ISR_QUEUE, __ATOMIC_SEQ_CST);
	pthread_mutex_lock(&vp->msix_lock);
	msix_fire_locked(vp, vp->queues[q].msix_vector);
	pthread_mutex_unlock(&vp->msix_lock);
}

static void signal_config(struct virtio_dev *vdev)
{
	struct virtio_pci *vp = vdev->transport;

	virtio_count(&vp->nr_config_interrupts, 1);
	__atomic_or_fetch(&vp->isr, VIRTIO_PCI_ISR_CONFIG, __ATOMIC_SEQ_CST);
	pthread_mutex_lock(&vp->msix_lock);
	msix_fire_locked(vp, vp->config_vector);
	pthread_mutex_unlock(&vp->msix_lock);
}

/*
 * A guest error (any thread): DEVICE_NEEDS_RESET and one config interrupt
 * (2.1.2). Counted once per occurrence: a bad chain reaches here from both the
 * virtqueue and the device.
 */
static void set_needs_reset(struct virtio_pci *vp)
{
	if (!__atomic_exchange_n(&vp->needs_reset, true, __ATOMIC_SEQ_CST)) {
		virtio_count(&vp->vdev->counters.errors, 1);
		signal_config(vp->vdev);
	}
}

/* Notifies waiting in queue q's eventfd, consumed: each one KVM or a trapped write signalled. */
static void count_kicks(struct virtio_pci_queue *pq)
{
	int64_t n = notifier_reset(&pq->kick);

	/* The look at every queue after a snapshot load was no notify from the guest. */
	if (n > 0 && pq->synthetic_kick) {
		pq->synthetic_kick = false;
		n--;
	}
	if (n > 0)
		virtio_count(&pq->nr_kicks, (uint64_t)n);
}

static void needs_reset(struct virtio_dev *vdev)
{
	set_needs_reset(vdev->transport);
}

/* vhost-user (vdev->external_queues): the fds a back-end process uses directly. */
static int queue_kick_fd(struct virtio_dev *vdev, unsigned q)
{
	return virtio_pci_queue_kick_fd(vdev->transport, q);
}

static int queue_call_fd(struct virtio_dev *vdev, unsigned q)
{
	return virtio_pci_queue_call_fd(vdev->transport, q);
}

/* The virtqueue turned broken; it has logged why. */
static void vq_error(struct virtq *vq, int err, void *opaque)
{
	(void)vq;
	(void)err;
	set_needs_reset(opaque);
}

/* ---- kicks ------------------------------------------------------------------------ */

/* Event loop: the driver kicked (through the ioeventfd, or a trapped write). */
static void kick_ready(void *opaque, int fd, uint32_t events)
{
	struct virtio_pci_queue *pq = opaque;
	struct virtio_dev *vdev = pq->vp->vdev;
	struct virtq *vq = &vdev->vqs[pq->index];

	(void)fd;
	(void)events;
	count_kicks(pq);
	if (virtq_is_enabled(vq) && !virtq_is_broken(vq))
		vdev->ops->queue_notify(vdev, pq->index);
}

/* Caller holds lock. */
static int watch_queue(struct virtio_pci *vp, unsigned q)
{
	struct virtio_pci_queue *pq = &vp->queues[q];
	int ret;

	/* vhost-user: the back-end reads the kicks itself (vdev->external_queues). */
	if (pq->watch || vp->paused || vp->vdev->external_queues)
		return 0;
	ret = evloop_fd_add(vp->loop, notifier_fd(&pq->kick), EPOLLIN, kick_ready, pq, &pq->watch);
	if (ret)
		pr_err("%s: watching the kicks of queue %u failed: %s", vp->name, q, strerror(-ret));
	return ret;
}

/* Caller holds lock. On return no kick handler runs or will run. */
static void unwatch_queues(struct virtio_pci *vp)
{
	for (unsigned q = 0; q < vp->vdev->num_queues; q++) {
		evloop_fd_remove(vp->queues[q].watch);
		vp->queues[q].watch = NULL;
	}
}

/* Caller holds lock. Watch the kicks of every enabled queue again (live, not paused). */
static int rewatch_queues(struct virtio_pci *vp)
{
	for (unsigned q = 0; vp->live && !vp->paused && q < vp->vdev->num_queues; q++) {
		if (virtq_is_enabled(&vp->vdev->vqs[q])) {
			int ret = watch_queue(vp, q);

			if (ret)
				return ret;
		}
	}
	return 0;
}

/*
 * Caller holds lock; the device is live. Make it still for a change to one
 * queue, as reset and activate find it: kick handlers removed, then the
 * device paused (its own event sources stopped, work in flight completed).
 */
static int quiesce(struct virtio_pci *vp)
{
	struct virtio_dev *vdev = vp->vdev;
	int ret;

	unwatch_queues(vp);
	if (vp->paused || !vdev->ops->pause)
		return 0;   /* virtio_pci_pause() did it already, or nothing runs */
	ret = vdev->ops->pause(vdev);
	if (ret)
		pr_guest_err("%s: pausing the device for a queue change failed: %s", vp->name,
			     strerror(-ret));
	return ret;
}

/* Caller holds lock. Back from quiesce(): device resumed, kicks watched. Errors: NEEDS_RESET. */
static void unquiesce(struct virtio_pci *vp, bool resume)
{
	struct virtio_dev *vdev = vp->vdev;
	int ret = 0;

	if (vp->paused)
		return;     /* virtio_pci_resume() will */
	if (resume && vdev->ops->resume)
		ret = vdev->ops->resume(vdev);
	if (ret)
		pr_guest_err("%s: resuming the device after a queue change failed: %s", vp->name,
			     strerror(-ret));
	if (ret || rewatch_queues(vp))
		set_needs_reset(vp);
}

static void assign_ioeventfds(struct virtio_pci *vp, uint64_t notify_addr, bool assign)
{
	for (unsigned q = 0; q < vp->vdev->num_queues; q++) {
		struct virtio_pci_queue *pq = &vp->queues[q];
		uint64_t addr = notify_addr + (uint64_t)q * VPCI_NOTIFY_MULTIPLIER;
		int fd = notifier_fd(&pq->kick), ret;

		if (!assign) {
			if (pq->ioeventfd_assigned)
				irq_ioeventfd_deassign(vp->irq, fd, addr, pq->ioeventfd_len, false);
			pq->ioeventfd_assigned = false;
			continue;
		}
		/*
		 * Any width (length 0), as QEMU and Firecracker register theirs:
		 * KVM then also puts it on its fast MMIO bus, where a VMX host
		 * signals it without decoding the guest's instruction. A KVM
		 * without KVM_CAP_IOEVENTFD_ANY_LENGTH refuses that with EINVAL:
		 * exactly 2-byte writes then (the queue index, 4.1.4.4), and
		 * other widths trap and are forwarded.
		 */
		pq->ioeventfd_len = 0;
		ret = irq_ioeventfd_assign(vp->irq, fd, addr, 0, false);
		if (ret == -EINVAL) {
			pq->ioeventfd_len = 2;
			ret = irq_ioeventfd_assign(vp->irq, fd, addr, 2, false);
		}
		pq->ioeventfd_assigned = !ret;
		if (ret)
			pr_guest_err("%s: ioeventfd for queue %u at %#llx failed (%s); kicks will trap",
				     vp->name, q, (unsigned long long)addr, strerror(-ret));
	}
}

/* ---- reset and status ------------------------------------------------------------ */

/* Caller holds lock. Back to the state after creation (4.1.4.3.1: any state). */
static void reset_locked(struct virtio_pci *vp)
{
	struct virtio_dev *vdev = vp->vdev;

	unwatch_queues(vp);
	vp->live = false;
	/*
	 * The device first: it stops its own event sources (a tap, I/O
	 * completions) that could still be touching the queues on the event-loop
	 * thread. Only then are the queues cleared under nobody's feet.
	 */
	if (vdev->ops->reset)
		vdev->ops->reset(vdev);
	for (unsigned q = 0; q < vdev->num_queues; q++) {
		virtq_reset(&vdev->vqs[q]);
		count_kicks(&vp->queues[q]);
	}
	vp->status = 0;
	vp->driver_features = 0;
	vdev->driver_features = 0;
	vp->dfselect = vp->gfselect = 0;
	vp->queue_select = 0;
	pthread_mutex_lock(&vp->msix_lock);
	vp->config_vector = VIRTIO_MSI_NO_VECTOR;
	for (unsigned q = 0; q < vdev->num_queues; q++)
		vp->queues[q].msix_vector = VIRTIO_MSI_NO_VECTOR;
	pthread_mutex_unlock(&vp->msix_lock);
	__atomic_store_n(&vp->needs_reset, false, __ATOMIC_SEQ_CST);
	__atomic_store_n(&vp->isr, 0, __ATOMIC_SEQ_CST);
}

void virtio_pci_reset(struct virtio_pci *vp)
{
	pthread_mutex_lock(&vp->lock);
	reset_locked(vp);
	pthread_mutex_unlock(&vp->lock);
}

static uint8_t status_of(struct virtio_pci *vp)
{
	return vp->status |
	       (__atomic_load_n(&vp->needs_reset, __ATOMIC_SEQ_CST) ? VIRTIO_STATUS_NEEDS_RESET : 0);
}

/* Caller holds lock. DRIVER_OK: features are final and the enabled queues go live. */
static void go_live(struct virtio_pci *vp)
{
	struct virtio_dev *vdev = vp->vdev;
	int ret = vdev->ops->activate ? vdev->ops->activate(vdev) : 0;

	if (ret) {
		pr_guest_err("%s: the device refused to start: %s", vp->name, strerror(-ret));
		set_needs_reset(vp);
		return;
	}
	for (unsigned q = 0; q < vdev->num_queues; q++) {
		if (virtq_is_enabled(&vdev->vqs[q]) && watch_queue(vp, q)) {
			set_needs_reset(vp);
			return;
		}
	}
	vp->live = true;
}

/* Caller holds lock. 3.1.1: the driver sets bits in order; a write of 0 resets. */
static void status_write(struct virtio_pci *vp, uint8_t v)
{
	uint8_t cur = vp->status, want, add;

	if (v == 0) {
		reset_locked(vp);
		return;
	}
	want = v & (uint8_t)~VIRTIO_STATUS_NEEDS_RESET;  /* the device's bit, not the driver's */
	if (cur & ~want) {
		pr_guest_err("%s: status %#x clears bits of %#x without a reset; ignored", vp->name,
			     v, cur);
		return;
	}
	add = want & (uint8_t)~cur;
	if ((add & VIRTIO_STATUS_FEATURES_OK)) {
		uint64_t f = vp->driver_features;

		if (!(want & VIRTIO_STATUS_DRIVER) || (f & ~vp->offered) ||
		    !(f & (1ULL << VIRTIO_F_VERSION_1))) {
			/* 3.1.1 step 6: the driver re-reads status and sees the refusal. */
			pr_guest_err("%s: FEATURES_OK refused for features %#llx (offered %#llx)",
				     vp->name, (unsigned long long)f, (unsigned long long)vp->offered);
			want &= (uint8_t)~(VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
			add &= (uint8_t)~(VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
		} else {
			vp->vdev->driver_features = f;
		}
	}
	if ((add & VIRTIO_STATUS_DRIVER_OK) && !(want & VIRTIO_STATUS_FEATURES_OK)) {
		pr_guest_err("%s: DRIVER_OK without FEATURES_OK; ignored", vp->name);
		want &= (uint8_t)~VIRTIO_STATUS_DRIVER_OK;
		add &= (uint8_t)~VIRTIO_STATUS_DRIVER_OK;
	}
	vp->status = want;
	if (add & VIRTIO_STATUS_DRIVER_OK)
		go_live(vp);
}

/* ---- common configuration --------------------------------------------------------- */

void virtio_pci_common_read(struct virtio_pci *vp, uint32_t off, uint8_t *data, unsigned len)
{
	struct virtio_dev *vdev = vp->vdev;
	uint8_t b[VIRTIO_PCI_COMMON_SIZE] = { 0 };
	unsigned qs;

	pthread_mutex_lock(&vp->lock);
	qs = vp->queue_select;
	put_le(b + VIRTIO_PCI_COMMON_DFSELECT, vp->dfselect, 4);
	put_le(b + VIRTIO_PCI_COMMON_DF, vp->dfselect < 2 ? vp->offered >> (32 * vp->dfselect) : 0, 4);
	put_le(b + VIRTIO_PCI_COMMON_GFSELECT, vp->gfselect, 4);
	put_le(b + VIRTIO_PCI_COMMON_GF,
	       vp->gfselect < 2 ? vp->driver_features >> (32 * vp->gfselect) : 0, 4);
	put_le(b + VIRTIO_PCI_COMMON_NUMQ, vdev->num_queues, 2);
	b[VIRTIO_PCI_COMMON_STATUS] = status_of(vp);
	b[VIRTIO_PCI_COMMON_CFGGENERATION] =
		(uint8_t)__atomic_load_n(&vdev->config_generation, __ATOMIC_SEQ_CST);
	put_le(b + VIRTIO_PCI_COMMON_Q_SELECT, qs, 2);
	pthread_mutex_lock(&vp->msix_lock);
	put_le(b + VIRTIO_PCI_COMMON_MSIX, vp->config_vector, 2);
	if (qs < vdev->num_queues)
		put_le(b + VIRTIO_PCI_COMMON_Q_MSIX, vp->queues[qs].msix_vector, 2);
	pthread_mutex_unlock(&vp->msix_lock);
	if (qs < vdev->num_queues) {
		/* A selector past num_queues reads queue_size 0: "not available" (4.1.4.3.1). */
		const struct virtq *vq = &vdev->vqs[qs];

		put_le(b + VIRTIO_PCI_COMMON_Q_SIZE, vq->size, 2);
		put_le(b + VIRTIO_PCI_COMMON_Q_ENABLE, virtq_is_enabled(vq), 2);
		put_le(b + VIRTIO_PCI_COMMON_Q_NOFF, qs, 2);
		put_le(b + VIRTIO_PCI_COMMON_Q_DESCLO, vq->desc_gpa, 8);
		put_le(b + VIRTIO_PCI_COMMON_Q_AVAILLO, vq->avail_gpa, 8);
		put_le(b + VIRTIO_PCI_COMMON_Q_USEDLO, vq->used_gpa, 8);
	}
	pthread_mutex_unlock(&vp->lock);
	for (unsigned i = 0; i < len; i++)
		data[i] = off + i < sizeof(b) ? b[off + i] : 0;
}

/* Caller holds lock; q < num_queues. A queue's registers change only while it is disabled. */
static bool queue_writable(struct virtio_pci *vp, unsigned q, const char *what)
{
	if (virtq_is_enabled(&vp->vdev->vqs[q])) {
		pr_guest_err("%s: %s of enabled queue %u written; ignored", vp->name, what, q);
		return false;
	}
	return true;
}

static uint16_t checked_vector(struct virtio_pci *vp, uint64_t v)
{
	/* 4.1.5.1.2: a vector the device cannot map reads back as NO_VECTOR. */
	return v < vp->nvec ? (uint16_t)v : VIRTIO_MSI_NO_VECTOR;
}

static void set_half(uint64_t *field, uint32_t off_in_field, unsigned len, uint64_t v)
{
	if (len == 8)
		*field = v;
	else if (off_in_field == 0)
		*field = (*field & 0xffffffff00000000ULL) | (uint32_t)v;
	else
		*field = (*field & 0xffffffffULL) | v << 32;
}

static void queue_enable(struct virtio_pci *vp, unsigned q, uint64_t v)
{
	struct virtq *vq = &vp->vdev->vqs[q];
	int ret;

	if (v != 1) {
		pr_guest_err("%s: queue_enable %llu for queue %u; only 1 is allowed", vp->name,
			     (unsigned long long)v, q);
		return;
	}
	if (virtq_is_enabled(vq))
		return;
	if (!(vp->status & VIRTIO_STATUS_FEATURES_OK)) {
		pr_guest_err("%s: queue %u enabled before FEATURES_OK; ignored", vp->name, q);
		return;
	}
	if (!vp->live) {
		/* Before DRIVER_OK (or after activate failed): activate() will see it. */
		ret = virtq_enable(vq, vp->driver_features);
		if (ret)
			goto err_enable;
		return;
	}
	/*
	 * After DRIVER_OK: a late enable, or a re-enable after queue_reset. Served
	 * the same way for every device: the queue changes under no one's feet,
	 * the device is told, and its kicks are watched like the others'.
	 */
	if (quiesce(vp)) {
		pr_guest_err("%s: queue %u enabled after DRIVER_OK could not be started; "
			     "device needs reset", vp->name, q);
		set_needs_reset(vp);
		unquiesce(vp, false);
		return;
	}
	ret = virtq_enable(vq, vp->driver_features);
	if (ret) {
		unquiesce(vp, true);
		goto err_enable;
	}
	ret = vp->vdev->ops->queue_enable ? vp->vdev->ops->queue_enable(vp->vdev, q) : 0;
	if (ret) {
		pr_guest_err("%s: queue %u enabled after DRIVER_OK: the device refused it (%s); "
			     "device needs reset", vp->name, q, strerror(-ret));
		virtq_reset(vq);
		set_needs_reset(vp);
	}
	unquiesce(vp, true);
	return;

err_enable:
	pr_guest_err("%s: queue %u cannot be enabled (size %u, desc %#llx, driver %#llx, "
		     "device %#llx): %s", vp->name, q, vq->size, (unsigned long long)vq->desc_gpa,
		     (unsigned long long)vq->avail_gpa, (unsigned long long)vq->used_gpa,
		     strerror(-ret));
	set_needs_reset(vp);
}

/*
 * queue_reset = 1 (VIRTIO_F_RING_RESET, 2.6.1 and 4.1.4.3.2): reset queue q
 * alone, at once; it then reads queue_reset 0 and queue_enable 0, with the
 * default size, addresses and vector, until the driver enables it again.
 */
static void queue_reset(struct virtio_pci *vp, unsigned q, uint64_t v)
{
	struct virtio_dev *vdev = vp->vdev;
	struct virtq *vq = &vdev->vqs[q];
	bool live = vp->live;

	if (!virtio_has_feature(vdev, VIRTIO_F_RING_RESET)) {
		pr_guest_err("%s: queue_reset written without VIRTIO_F_RING_RESET; ignored", vp->name);
		return;
	}
	if (v != 1) {
		pr_guest_err("%s: queue_reset %llu for queue %u; only 1 is allowed", vp->name,
			     (unsigned long long)v, q);
		return;
	}
	if (live && quiesce(vp)) {
		pr_guest_err("%s: queue %u could not be reset; device needs reset", vp->name, q);
		set_needs_reset(vp);
		unquiesce(vp, false);
		return;
	}
	if (live && virtq_is_enabled(vq) && vdev->ops->queue_reset)
		vdev->ops->queue_reset(vdev, q);
	virtq_reset(vq);
	count_kicks(&vp->queues[q]);
	pthread_mutex_lock(&vp->msix_lock);
	vp->queues[q].msix_vector = VIRTIO_MSI_NO_VECTOR;
	pthread_mutex_unlock(&vp->msix_lock);
	if (live)
		unquiesce(vp, true);
}

void virtio_pci_common_write(struct virtio_pci *vp, uint32_t off, const uint8_t *data,
			     unsigned len)
{
	struct virtio_dev *vdev = vp->vdev;
	uint64_t v = get_le(data, len);
	unsigned qs;
	bool width_ok;

	pthread_mutex_lock(&vp->lock);
	qs = vp->queue_select;
	switch (off) {
	case VIRTIO_PCI_COMMON_DFSELECT:
	case VIRTIO_PCI_COMMON_GFSELECT:
	case VIRTIO_PCI_COMMON_GF:
		width_ok = len == 4;
		break;
	case VIRTIO_PCI_COMMON_STATUS:
		width_ok = len == 1;
		break;
	case VIRTIO_PCI_COMMON_MSIX:
	case VIRTIO_PCI_COMMON_Q_SELECT:
	case VIRTIO_PCI_COMMON_Q_SIZE:
	case VIRTIO_PCI_COMMON_Q_MSIX:
	case VIRTIO_PCI_COMMON_Q_ENABLE:
	case VIRTIO_PCI_COMMON_Q_RESET:
		width_ok = len == 2;
		break;
	case VIRTIO_PCI_COMMON_Q_DESCLO:
	case VIRTIO_PCI_COMMON_Q_AVAILLO:
	case VIRTIO_PCI_COMMON_Q_USEDLO:
		width_ok = len == 4 || len == 8;
		break;
	case VIRTIO_PCI_COMMON_Q_DESCHI:
	case VIRTIO_PCI_COMMON_Q_AVAILHI:
	case VIRTIO_PCI_COMMON_Q_USEDHI:
		width_ok = len == 4;
		break;
	default:
		/* Read-only fields and padding. */
		pr_guest_err("%s: write of %u bytes to read-only common config offset %#x; ignored",
			     vp->name, len, off);
		goto out;
	}
	if (!width_ok) {
		pr_guest_err("%s: %u-byte write to common config offset %#x; wrong width, ignored",
			     vp->name, len, off);
		goto out;
	}

	switch (off) {
	case VIRTIO_PCI_COMMON_DFSELECT:
		vp->dfselect = (uint32_t)v;
		break;
	case VIRTIO_PCI_COMMON_GFSELECT:
		vp->gfselect = (uint32_t)v;
		break;
	case VIRTIO_PCI_COMMON_GF:
		if (!(vp->status & VIRTIO_STATUS_DRIVER) || (vp->status & VIRTIO_STATUS_FEATURES_OK)) {
			pr_guest_err("%s: driver_feature written in status %#x; ignored", vp->name,
				     vp->status);
		} else if (vp->gfselect < 2) {
			set_half(&vp->driver_features, vp->gfselect * 4, 4, v);
		}
		break;
	case VIRTIO_PCI_COMMON_STATUS:
		status_write(vp, (uint8_t)v);
		break;
	case VIRTIO_PCI_COMMON_MSIX:
		pthread_mutex_lock(&vp->msix_lock);
		vp->config_vector = checked_vector(vp, v);
		pthread_mutex_unlock(&vp->msix_lock);
		break;
	case VIRTIO_PCI_COMMON_Q_SELECT:
		vp->queue_select = (uint16_t)v;
		break;
	default:
		if (qs >= vdev->num_queues) {
			pr_guest_err("%s: queue register %#x written with queue_select %u out of range; "
				     "ignored", vp->name, off, qs);
			break;
		}
		switch (off) {
		case VIRTIO_PCI_COMMON_Q_SIZE:
			if (!queue_writable(vp, qs, "queue_size"))
				break;
			if (v == 0 || (v & (v - 1)) || v > vdev->queue_max_size) {
				pr_guest_err("%s: queue %u size %llu is not a power of two up to %u; "
					     "ignored", vp->name, qs, (unsigned long long)v,
					     vdev->queue_max_size);
				break;
			}
			vdev->vqs[qs].size = (uint16_t)v;
			break;
		case VIRTIO_PCI_COMMON_Q_MSIX:
			pthread_mutex_lock(&vp->msix_lock);
			vp->queues[qs].msix_vector = checked_vector(vp, v);
			pthread_mutex_unlock(&vp->msix_lock);
			break;
		case VIRTIO_PCI_COMMON_Q_ENABLE:
			queue_enable(vp, qs, v);
			break;
		case VIRTIO_PCI_COMMON_Q_RESET:
			queue_reset(vp, qs, v);
			break;
		case VIRTIO_PCI_COMMON_Q_DESCLO:
		case VIRTIO_PCI_COMMON_Q_DESCHI:
			if (queue_writable(vp, qs, "queue_desc"))
				set_half(&vdev->vqs[qs].desc_gpa, off - VIRTIO_PCI_COMMON_Q_DESCLO, len, v);
			break;
		case VIRTIO_PCI_COMMON_Q_AVAILLO:
		case VIRTIO_PCI_COMMON_Q_AVAILHI:
			if (queue_writable(vp, qs, "queue_driver"))
				set_half(&vdev->vqs[qs].avail_gpa, off - VIRTIO_PCI_COMMON_Q_AVAILLO, len,
					 v);
			break;
		case VIRTIO_PCI_COMMON_Q_USEDLO:
		case VIRTIO_PCI_COMMON_Q_USEDHI:
			if (queue_writable(vp, qs, "queue_device"))
				set_half(&vdev->vqs[qs].used_gpa, off - VIRTIO_PCI_COMMON_Q_USEDLO, len, v);
			break;
		}
		break;
	}
out:
	pthread_mutex_unlock(&vp->lock);
}

/* ---- the other regions ----------------------------------------------------------- */

static void device_cfg_io(struct virtio_pci *vp, uint32_t off, uint8_t *data, unsigned len,
			  bool is_write)
{
	struct virtio_dev *vdev = vp->vdev;
	bool inside = off < vdev->config_size && len <= vdev->config_size - off;

	if (!inside) {
		if (!is_write)
			memset(data, 0, len);
		else
			pr_guest_err("%s: device config write at %#x+%u beyond its %u bytes; ignored",
				     vp->name, off, len, vdev->config_size);
		return;
	}
	pthread_mutex_lock(&vdev->cfg_lock);
	if (!is_write) {
		memset(data, 0, len);
		if (vdev->ops->cfg_read)
			vdev->ops->cfg_read(vdev, off, data, len);
	} else if (vdev->ops->cfg_write) {
		vdev->ops->cfg_write(vdev, off, data, len);
	}
	pthread_mutex_unlock(&vdev->cfg_lock);
}

static void msix_bar_io(struct virtio_pci *vp, uint64_t off, uint8_t *data, unsigned len,
			bool is_write)
{
	uint64_t table_end = VPCI_MSIX_TABLE + (uint64_t)vp->nvec * PCI_MSIX_ENTRY_SIZE;
	uint64_t pba_end = VPCI_MSIX_PBA + ALIGN_UP((uint64_t)vp->nvec, 64) / 8;

	/* PCI 3.0 6.8.2: DWORD or aligned QWORD accesses only. */
	if ((len != 4 && len != 8) || off % len) {
		pr_guest_err("%s: %u-byte MSI-X access at %#llx; ignored", vp->name, len,
			     (unsigned long long)off);
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	pthread_mutex_lock(&vp->msix_lock);
	for (unsigned i = 0; i < len; i += 4, off += 4) {
		if (off < table_end) {  /* the table starts at 0 */
			uint16_t v = (uint16_t)((off - VPCI_MSIX_TABLE) / PCI_MSIX_ENTRY_SIZE);
			struct virtio_pci_vector *e = &vp->vec[v];
			uint32_t *field[4] = { &e->addr_lo, &e->addr_hi, &e->data, &e->ctrl };
			unsigned f = (unsigned)(off % PCI_MSIX_ENTRY_SIZE) / 4;

			if (!is_write) {
				put_le(data + i, *field[f], 4);
				continue;
			}
			*field[f] = (uint32_t)get_le(data + i, 4);
			if (f == 3)
				e->ctrl &= PCI_MSIX_ENTRY_MASKED;  /* the rest is reserved */
			msix_sync_locked(vp, v);
		} else if (off >= VPCI_MSIX_PBA && off < pba_end) {
			if (!is_write)
				put_le(data + i, vp->pba[(off - VPCI_MSIX_PBA) / 8] >>
						 (32 * ((off - VPCI_MSIX_PBA) / 4 % 2)), 4);
		} else if (!is_write) {
			memset(data + i, 0, 4);
		}
	}
	pthread_mutex_unlock(&vp->msix_lock);
}

static void vpci_bar_io(struct pci_device *d, unsigned bar, uint64_t off, uint8_t *data,
			unsigned len, bool is_write)
{
	struct virtio_pci *vp = d->opaque;
	uint32_t region = (uint32_t)(off & ~0xfffULL), in = (uint32_t)(off & 0xfff);

	if (bar == VPCI_MSIX_BAR) {
		msix_bar_io(vp, off, data, len, is_write);
		return;
	}
	if (bar != VPCI_BAR || in + len > 0x1000) {
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	switch (region) {
	case VPCI_COMMON:
		if (is_write)
			virtio_pci_common_write(vp, in, data, len);
		else
			virtio_pci_common_read(vp, in, data, len);
		break;
	case VPCI_ISR:
		/* Reading the ISR clears it (4.1.4.5). */
		if (!is_write) {
			memset(data, 0, len);
			if (in == 0)
				data[0] = __atomic_exchange_n(&vp->isr, 0, __ATOMIC_SEQ_CST);
		}
		break;
	case VPCI_DEVICE:
		device_cfg_io(vp, in, data, len, is_write);
		break;
	case VPCI_NOTIFY:
		/* Only kicks the ioeventfd does not catch get here (see assign_ioeventfds). */
		if (!is_write) {
			memset(data, 0, len);
		} else if (in % VPCI_NOTIFY_MULTIPLIER == 0 &&
			   in / VPCI_NOTIFY_MULTIPLIER < vp->vdev->num_queues) {
			__atomic_add_fetch(&vp->nr_trapped_kicks, 1, __ATOMIC_RELAXED);
			notifier_signal(&vp->queues[in / VPCI_NOTIFY_MULTIPLIER].kick);
		} else {
			pr_guest_err("%s: notify write at %#x matches no queue; ignored", vp->name, in);
		}
		break;
	default:
		if (!is_write)
			memset(data, 0, len);
		break;
	}
}

/* ---- PCI configuration hooks ------------------------------------------------------- */

/* The VIRTIO_PCI_CAP_PCI_CFG window (4.1.4.9): a BAR access through config space. */
static bool cfg_window(struct virtio_pci *vp, unsigned *bar, uint32_t *off, uint32_t *len)
{
	const struct pci_device *d = &vp->pci;
	unsigned c = vp->cfg_cap;

	*bar = d->cfg[c + offsetof(struct virtio_pci_cap, bar)];
	*off = pci_cfg_get32(d, c + offsetof(struct virtio_pci_cap, offset));
	*len = pci_cfg_get32(d, c + offsetof(struct virtio_pci_cap, length));
	if ((*len != 1 && *len != 2 && *len != 4) || *off % *len)
		return false;
	if (*bar == VPCI_BAR)
		return *off <= VPCI_BAR_SIZE - *len;
	if (*bar == VPCI_MSIX_BAR)
		return *off <= VPCI_MSIX_BAR_SIZE - *len;
	return false;
}

static bool touches_cfg_data(struct virtio_pci *vp, uint32_t off, uint32_t len)
{
	uint32_t start = vp->cfg_cap + offsetof(struct virtio_pci_cfg_cap, pci_cfg_data);

	return vp->cfg_cap && off < start + 4 && start < off + len;
}

static void vpci_cfg_read(struct pci_device *d, uint32_t off, uint32_t len)
{
	struct virtio_pci *vp = d->opaque;
	uint8_t *window = &d->cfg[vp->cfg_cap + offsetof(struct virtio_pci_cfg_cap, pci_cfg_data)];
	uint32_t boff, blen;
	unsigned bar;

	if (!touches_cfg_data(vp, off, len))
		return;
	memset(window, 0, 4);
	if (cfg_window(vp, &bar, &boff, &blen))
		vpci_bar_io(d, bar, boff, window, blen, false);
}

static void vpci_cfg_write(struct pci_device *d, uint32_t off, uint32_t len)
{
	struct virtio_pci *vp = d->opaque;
	uint32_t ctrl_off = vp->msix_cap + 2, boff, blen;
	unsigned bar;

	if (off < ctrl_off + 2 && ctrl_off < off + len) {
		uint16_t ctrl = pci_cfg_get16(d, ctrl_off);

		pthread_mutex_lock(&vp->msix_lock);
		vp->msix_enabled = ctrl & PCI_MSIX_CTRL_ENABLE;
		vp->msix_masked = ctrl & PCI_MSIX_CTRL_MASKALL;
		for (uint16_t v = 0; v < vp->nvec; v++)
			msix_sync_locked(vp, v);
		pthread_mutex_unlock(&vp->msix_lock);
	}
	if (touches_cfg_data(vp, off, len) && cfg_window(vp, &bar, &boff, &blen))
		vpci_bar_io(d, bar, boff,
			    &d->cfg[vp->cfg_cap + offsetof(struct virtio_pci_cfg_cap, pci_cfg_data)],
			    blen, true);
}

/* BAR 2 moved or stopped decoding: the ioeventfds follow the notify region. */
static void vpci_bar_remap(struct pci_device *d, unsigned bar, uint64_t old_addr,
			   uint64_t new_addr)
{
	struct virtio_pci *vp = d->opaque;

	(void)old_addr;
	if (bar != VPCI_BAR)
		return;
	if (vp->notify_addr)
		assign_ioeventfds(vp, vp->notify_addr, false);
	vp->notify_addr = new_addr ? new_addr + VPCI_NOTIFY : 0;
	if (vp->notify_addr)
		assign_ioeventfds(vp, vp->notify_addr, true);
}

static void vpci_destroy(struct pci_device *d)
{
	struct virtio_pci *vp = d->opaque;
	bool owned = vp->allocated;

	virtio_pci_uninit(vp);
	if (owned)
		free((struct vpci_owned *)vp);
}

static const struct pci_device_ops vpci_ops = {
	.bar_io = vpci_bar_io,
	.cfg_read = vpci_cfg_read,
	.cfg_write = vpci_cfg_write,
	.bar_remap = vpci_bar_remap,
	.destroy = vpci_destroy,
};

/* ---- setup -------------------------------------------------------------------------- */

static uint32_t class_of(uint16_t device_id)
{
	switch (device_id) {
	case VIRTIO_ID_NET:
		return 0x020000;   /* network controller, Ethernet */
	case VIRTIO_ID_BLOCK:
		return 0x018000;   /* mass storage, other */
	default:
		return 0xff0000;   /* unassigned class */
	}
}

static int add_caps(struct virtio_pci *vp)
{
	struct virtio_dev *vdev = vp->vdev;
	struct pci_device *d = &vp->pci;
	uint8_t msix[10];
	struct virtio_pci_cap common = {
		.cap_len = sizeof(struct virtio_pci_cap), .cfg_type = VIRTIO_PCI_CAP_COMMON_CFG,
		.bar = VPCI_BAR, .offset = cpu_to_le32(VPCI_COMMON),
		.length = cpu_to_le32(VIRTIO_PCI_COMMON_SIZE),
	};
	struct virtio_pci_notify_cap notify = {
		.cap = { .cap_len = sizeof(struct virtio_pci_notify_cap),
			 .cfg_type = VIRTIO_PCI_CAP_NOTIFY_CFG, .bar = VPCI_BAR,
			 .offset = cpu_to_le32(VPCI_NOTIFY),
			 .length = cpu_to_le32(vdev->num_queues * VPCI_NOTIFY_MULTIPLIER) },
		.notify_off_multiplier = cpu_to_le32(VPCI_NOTIFY_MULTIPLIER),
	};
	struct virtio_pci_cap isr = {
		.cap_len = sizeof(struct virtio_pci_cap), .cfg_type = VIRTIO_PCI_CAP_ISR_CFG,
		.bar = VPCI_BAR, .offset = cpu_to_le32(VPCI_ISR), .length = cpu_to_le32(1),
	};
	struct virtio_pci_cap device = {
		.cap_len = sizeof(struct virtio_pci_cap), .cfg_type = VIRTIO_PCI_CAP_DEVICE_CFG,
		.bar = VPCI_BAR, .offset = cpu_to_le32(VPCI_DEVICE),
		.length = cpu_to_le32(vdev->config_size),
	};
	struct virtio_pci_cfg_cap pcicfg = {
		.cap = { .cap_len = sizeof(struct virtio_pci_cfg_cap),
			 .cfg_type = VIRTIO_PCI_CAP_PCI_CFG },
	};
	int off;

	/* MSI-X: control (table size - 1), table offset|BIR, PBA offset|BIR. */
	put_le(msix, vp->nvec - 1, 2);
	put_le(msix + 2, VPCI_MSIX_TABLE | VPCI_MSIX_BAR, 4);
	put_le(msix + 6, VPCI_MSIX_PBA | VPCI_MSIX_BAR, 4);
	off = pci_device_add_cap(d, PCI_CAP_ID_MSIX, msix, sizeof(msix));
	if (off < 0)
		return off;
	vp->msix_cap = (uint8_t)off;
	pci_device_set_wmask(d, off + 2, 2, PCI_MSIX_CTRL_ENABLE | PCI_MSIX_CTRL_MASKALL);

#define ADD_VIRTIO_CAP(c)                                                                    \
	do {                                                                                 \
		off = pci_device_add_cap(d, PCI_CAP_ID_VNDR, (const uint8_t *)&(c) + 2,        \
					 sizeof(c) - 2);                                     \
		if (off < 0)                                                                 \
			return off;                                                          \
	} while (0)
	ADD_VIRTIO_CAP(common);
	ADD_VIRTIO_CAP(notify);
	ADD_VIRTIO_CAP(isr);
	if (vdev->config_size)
		ADD_VIRTIO_CAP(device);
	ADD_VIRTIO_CAP(pcicfg);
#undef ADD_VIRTIO_CAP
	vp->cfg_cap = (uint8_t)off;
	pci_device_set_wmask(d, off + offsetof(struct virtio_pci_cap, bar), 1, 0xff);
	pci_device_set_wmask(d, off + offsetof(struct virtio_pci_cap, offset), 4, 0xffffffff);
	pci_device_set_wmask(d, off + offsetof(struct virtio_pci_cap, length), 4, 0xffffffff);
	pci_device_set_wmask(d, off + offsetof(struct virtio_pci_cfg_cap, pci_cfg_data), 4,
			     0xffffffff);
	return 0;
}

static int check_device(const struct virtio_dev *vdev)
{
	if (!vdev->ops || !vdev->ops->queue_notify || !vdev->vm)
		return -EINVAL;
	if (vdev->num_queues == 0 || vdev->num_queues > VIRTIO_MAX_QUEUES)
		return -EINVAL;
	if (!vdev->queue_max_size || (vdev->queue_max_size & (vdev->queue_max_size - 1)) ||
	    vdev->queue_max_size > VIRTQ_MAX_SIZE)
		return -EINVAL;
	if (vdev->config_size > VPCI_DEVICE_CFG_MAX)
		return -EINVAL;
	if (vdev->msix_vectors && (vdev->msix_vectors < 2 || vdev->msix_vectors > vdev->num_queues + 1))
		return -EINVAL;
	return 0;
}

int virtio_pci_init(struct virtio_pci *vp, struct virtio_dev *vdev, struct pci_bus *pb,
		    struct irq_router *irq, struct evloop *loop)
{
	unsigned q, v = 0;
	int ret;

	memset(vp, 0, sizeof(*vp));
	vp->vdev = vdev;
	vp->irq = irq;
	vp->loop = loop;
	snprintf(vp->name, sizeof(vp->name), "%s", vdev->id[0] ? vdev->id : "virtio");
	ret = check_device(vdev);
	if (ret) {
		pr_err("%s: the device describes itself inconsistently (queues %u, size %u, config %u)",
		       vp->name, vdev->num_queues, vdev->queue_max_size, vdev->config_size);
		return ret;
	}
	vp->offered = vdev->device_features | 1ULL << VIRTIO_F_VERSION_1 |
		      1ULL << VIRTIO_F_EVENT_IDX | 1ULL << VIRTIO_F_INDIRECT_DESC |
		      1ULL << VIRTIO_F_RING_RESET;
	vp->config_vector = VIRTIO_MSI_NO_VECTOR;
	vp->nvec = vdev->msix_vectors ? vdev->msix_vectors : vdev->num_queues + 1;
	pthread_mutex_init(&vp->lock, NULL);
	pthread_mutex_init(&vp->msix_lock, NULL);
	pthread_mutex_init(&vdev->cfg_lock, NULL);
	vdev->transport = vp;
	vdev->signal_used = signal_used;
	vdev->signal_config = signal_config;
	vdev->needs_reset = needs_reset;
	vdev->queue_kick_fd = queue_kick_fd;
	vdev->queue_call_fd = queue_call_fd;

	for (q = 0; q < vdev->num_queues; q++) {
		struct virtio_pci_queue *pq = &vp->queues[q];
		char qname[64];

		pq->vp = vp;
		pq->index = q;
		pq->msix_vector = VIRTIO_MSI_NO_VECTOR;
		snprintf(qname, sizeof(qname), "%.40s.q%u", vp->name, q);
		ret = virtq_init(&vdev->vqs[q], &vdev->vm->mem, qname, vdev->queue_max_size);
		if (!ret)
			ret = notifier_init(&pq->kick, NOTIFIER_COUNTER);
		if (ret)
			goto err_queues;
		vdev->vqs[q].on_error = vq_error;
		vdev->vqs[q].on_error_opaque = vp;
	}
	for (v = 0; v < vp->nvec; v++) {
		struct virtio_pci_vector *e = &vp->vec[v];

		e->ctrl = PCI_MSIX_ENTRY_MASKED;   /* the reset state of a table entry */
		ret = irq_msi_alloc(irq, &e->gsi);
		if (ret)
			goto err_vectors;
		ret = notifier_init(&e->irqfd, NOTIFIER_COUNTER);
		if (ret) {
			irq_msi_free(irq, e->gsi);
			goto err_vectors;
		}
		ret = irq_irqfd_assign(irq, notifier_fd(&e->irqfd), e->gsi);
		if (ret) {
			notifier_destroy(&e->irqfd);
			irq_msi_free(irq, e->gsi);
			goto err_vectors;
		}
		e->irqfd_assigned = true;
	}

	pci_device_init(&vp->pci, vp->name, VIRTIO_PCI_VENDOR,
			VIRTIO_PCI_DEVICE_BASE + vdev->ops->device_id, class_of(vdev->ops->device_id),
			VIRTIO_PCI_REVISION, VIRTIO_PCI_VENDOR, vdev->ops->device_id);
	vp->pci.ops = &vpci_ops;
	vp->pci.opaque = vp;
	if ((ret = pci_device_set_bar(&vp->pci, VPCI_MSIX_BAR, PCI_BAR_MEM32, VPCI_MSIX_BAR_SIZE)) ||
	    (ret = pci_device_set_bar(&vp->pci, VPCI_BAR, PCI_BAR_MEM64, VPCI_BAR_SIZE)) ||
	    (ret = add_caps(vp)))
		goto err_vectors;
	ret = pci_bus_add(pb, &vp->pci);
	if (ret) {
		pr_err("%s: no room on the PCI bus: %s", vp->name, strerror(-ret));
		goto err_vectors;
	}
	vp->initialised = true;
	return 0;

err_vectors:
	while (v-- > 0) {
		irq_irqfd_deassign(irq, notifier_fd(&vp->vec[v].irqfd), vp->vec[v].gsi);
		notifier_destroy(&vp->vec[v].irqfd);
		irq_msi_free(irq, vp->vec[v].gsi);
	}
err_queues:
	while (q-- > 0)
		notifier_destroy(&vp->queues[q].kick);
	pthread_mutex_destroy(&vdev->cfg_lock);
	pthread_mutex_destroy(&vp->msix_lock);
	pthread_mutex_destroy(&vp->lock);
	if (ret != -ENOSPC)
		pr_err("%s: setting up the virtio-pci transport failed: %s", vp->name, strerror(-ret));
	return ret;
}

void virtio_pci_uninit(struct virtio_pci *vp)
{
	struct virtio_dev *vdev = vp->vdev;

	if (!vp->initialised)
		return;
	vp->initialised = false;
	pr_info("%s: %llu kicks trapped to userspace (the rest came through ioeventfds), "
		"%llu interrupts dropped", vp->name,
		(unsigned long long)virtio_counter_get(&vp->nr_trapped_kicks),
		(unsigned long long)virtio_counter_get(&vp->nr_dropped));
	virtio_pci_reset(vp);
	if (vp->notify_addr)
		assign_ioeventfds(vp, vp->notify_addr, false);
	vp->notify_addr = 0;
	for (unsigned q = 0; q < vdev->num_queues; q++)
		notifier_destroy(&vp->queues[q].kick);
	for (unsigned v = 0; v < vp->nvec; v++) {
		struct virtio_pci_vector *e = &vp->vec[v];

		if (e->irqfd_assigned)
			irq_irqfd_deassign(vp->irq, notifier_fd(&e->irqfd), e->gsi);
		notifier_destroy(&e->irqfd);
		irq_msi_free(vp->irq, e->gsi);
	}
	if (vdev->ops->destroy)
		vdev->ops->destroy(vdev);
	pthread_mutex_destroy(&vdev->cfg_lock);
	pthread_mutex_destroy(&vp->msix_lock);
	pthread_mutex_destroy(&vp->lock);
}

int virtio_pci_pause(struct virtio_pci *vp)
{
	struct virtio_dev *vdev = vp->vdev;
	int ret = 0;

	pthread_mutex_lock(&vp->lock);
	if (!vp->paused) {
		unwatch_queues(vp);
		if (vdev->ops->pause)
			ret = vdev->ops->pause(vdev);
		if (ret) {
			for (unsigned q = 0; vp->live && q < vdev->num_queues; q++)
				if (virtq_is_enabled(&vdev->vqs[q]))
					(void)watch_queue(vp, q);
		} else {
			vp->paused = true;
		}
	}
	pthread_mutex_unlock(&vp->lock);
	return ret;
}

int virtio_pci_resume(struct virtio_pci *vp)
{
	struct virtio_dev *vdev = vp->vdev;
	int ret = 0;

	pthread_mutex_lock(&vp->lock);
	if (vp->paused) {
		if (vdev->ops->resume)
			ret = vdev->ops->resume(vdev);
		vp->paused = false;
		for (unsigned q = 0; !ret && vp->live && q < vdev->num_queues; q++)
			if (virtq_is_enabled(&vdev->vqs[q]))
				ret = watch_queue(vp, q);
	}
	pthread_mutex_unlock(&vp->lock);
	return ret;
}

void virtio_pci_get_counters(struct virtio_pci *vp, struct virtio_pci_counters *c)
{
	struct virtio_dev *vdev = vp->vdev;

	memset(c, 0, sizeof(*c));
	c->counted = !vdev->external_queues;
	c->needs_reset = __atomic_load_n(&vp->needs_reset, __ATOMIC_RELAXED);
	c->trapped_kicks = virtio_counter_get(&vp->nr_trapped_kicks);
	c->dropped_interrupts = virtio_counter_get(&vp->nr_dropped);
	c->config_interrupts = virtio_counter_get(&vp->nr_config_interrupts);
	c->nqueues = vdev->num_queues;
	c->nvec = vp->nvec;
	/* msix_lock for the vectors only: the API thread, never the hot path. */
	pthread_mutex_lock(&vp->msix_lock);
	for (unsigned q = 0; q < vdev->num_queues; q++)
		c->queue[q].vector = vp->queues[q].msix_vector;
	pthread_mutex_unlock(&vp->msix_lock);
	for (unsigned q = 0; c->counted && q < vdev->num_queues; q++) {
		c->queue[q].kicks = virtio_counter_get(&vp->queues[q].nr_kicks);
		c->queue[q].interrupts = virtio_counter_get(&vp->queues[q].nr_interrupts);
	}
	for (unsigned v = 0; c->counted && v < vp->nvec; v++)
		c->vector_interrupts[v] = virtio_counter_get(&vp->vec[v].nr_fired);
	c->dev.requests = virtio_counter_get(&vdev->counters.requests);
	c->dev.errors = virtio_counter_get(&vdev->counters.errors);
	c->dev.in_ops = virtio_counter_get(&vdev->counters.in_ops);
	c->dev.in_bytes = virtio_counter_get(&vdev->counters.in_bytes);
	c->dev.out_ops = virtio_counter_get(&vdev->counters.out_ops);
	c->dev.out_bytes = virtio_counter_get(&vdev->counters.out_bytes);
}

int virtio_pci_queue_kick_fd(struct virtio_pci *vp, unsigned q)
{
	return q < vp->vdev->num_queues ? notifier_fd(&vp->queues[q].kick) : -1;
}

int virtio_pci_queue_call_fd(struct virtio_pci *vp, unsigned q)
{
	int fd = -1;

	if (q >= vp->vdev->num_queues)
		return -1;
	pthread_mutex_lock(&vp->msix_lock);
	if (vp->queues[q].msix_vector < vp->nvec)
		fd = notifier_fd(&vp->vec[vp->queues[q].msix_vector].irqfd);
	pthread_mutex_unlock(&vp->msix_lock);
	return fd;
}

int virtio_pci_add_devices(struct vm *vm)
{
	const struct vm_config *cfg = vm->cfg;

	for (unsigned i = 0; i < cfg->ndevices; i++) {
		const struct vm_device_arg *a = &cfg->devices[i];
		struct vpci_owned *o = calloc(1, sizeof(*o));
		unsigned nth = 0;
		char err[256] = "";
		int ret;

		if (!o)
			return -ENOMEM;
		for (unsigned j = 0; j < i; j++)
			nth += cfg->devices[j].kind == a->kind;
		o->vdev.vm = vm;
		snprintf(o->vdev.id, sizeof(o->vdev.id), "%s%u", a->kind->option, nth);
		ret = a->kind->create(vm, a->args, &o->vdev, err, sizeof(err));
		if (ret) {
			pr_err("--%s%s%s: %s", a->kind->option, a->args[0] ? " " : "", a->args,
			       err[0] ? err : strerror(-ret));
			free(o);
			return ret;
		}
		ret = virtio_pci_init(&o->vp, &o->vdev, vm->pci, vm->irq, vm->loop);
		if (ret) {
			if (o->vdev.ops && o->vdev.ops->destroy)
				o->vdev.ops->destroy(&o->vdev);
			free(o);
			return ret;
		}
		o->vp.allocated = true;
	}
	return 0;
}

/* ---- snapshots ------------------------------------------------------------------------ */

/*
 * The transport's state as the state file holds it: one node per device
 * ("blk0"), these fields, "kind" (the device's ops->name), and a child
 * "device" with the device's own fields (ops->snap_save). Arrays run over the
 * vectors (nvec) or the queues (num_queues).
 */
struct vpci_snap {
	uint64_t offered;            /* device features + the transport's, when saved */
	uint64_t driver_features;    /* as the driver wrote them */
	uint32_t dfselect, gfselect;
	uint32_t config_generation;
	uint32_t num_queues;         /* the length of the queue.* arrays */
	uint32_t nvec;               /* the length of the msix.* arrays */
	uint16_t queue_select;
	uint16_t config_vector;
	uint8_t status;              /* without NEEDS_RESET */
	uint8_t needs_reset;
	uint8_t isr;
	uint8_t live;                /* DRIVER_OK taken and the device activated */
	uint32_t msix_addr_lo[VPCI_MAX_VECTORS];
	uint32_t msix_addr_hi[VPCI_MAX_VECTORS];
	uint32_t msix_data[VPCI_MAX_VECTORS];
	uint32_t msix_ctrl[VPCI_MAX_VECTORS];
	uint64_t msix_pba[(VPCI_MAX_VECTORS + 63) / 64];
	uint16_t q_size[VIRTIO_MAX_QUEUES];
	uint8_t q_enabled[VIRTIO_MAX_QUEUES];
	uint16_t q_vector[VIRTIO_MAX_QUEUES];
	uint16_t q_last_avail[VIRTIO_MAX_QUEUES];
	uint16_t q_used_idx[VIRTIO_MAX_QUEUES];
	uint64_t q_desc[VIRTIO_MAX_QUEUES];
	uint64_t q_driver[VIRTIO_MAX_QUEUES];
	uint64_t q_device[VIRTIO_MAX_QUEUES];
	uint8_t pci_cfg[PCI_CFG_SIZE]; /* the function's configuration space: BARs, command, MSI-X control */
};

#define S struct vpci_snap
static const struct snap_field vpci_snap_fields[] = {
	SNAP_U(S, offered),
	SNAP_U(S, driver_features),
	SNAP_U(S, dfselect),
	SNAP_U(S, gfselect),
	SNAP_U(S, config_generation),
	SNAP_U(S, queue_select),
	SNAP_U(S, config_vector),
	SNAP_U(S, status),
	SNAP_BOOL(S, needs_reset),
	SNAP_UINT_R(S, isr, 0, VIRTIO_PCI_ISR_QUEUE | VIRTIO_PCI_ISR_CONFIG),
	SNAP_BOOL(S, live),
	SNAP_VARRAY_N(S, msix_addr_lo, nvec, "msix.addr_lo"),
	SNAP_VARRAY_N(S, msix_addr_hi, nvec, "msix.addr_hi"),
	SNAP_VARRAY_N(S, msix_data, nvec, "msix.data"),
	SNAP_VARRAY_N(S, msix_ctrl, nvec, "msix.ctrl"),
	SNAP_ARRAY_N(S, msix_pba, "msix.pba"),
	SNAP_VARRAY_N(S, q_size, num_queues, "queue.size"),
	SNAP_VARRAY_N(S, q_enabled, num_queues, "queue.enabled"),
	SNAP_VARRAY_N(S, q_vector, num_queues, "queue.vector"),
	SNAP_VARRAY_N(S, q_last_avail, num_queues, "queue.last_avail_idx"),
	SNAP_VARRAY_N(S, q_used_idx, num_queues, "queue.used_idx"),
	SNAP_VARRAY_N(S, q_desc, num_queues, "queue.desc"),
	SNAP_VARRAY_N(S, q_driver, num_queues, "queue.driver"),
	SNAP_VARRAY_N(S, q_device, num_queues, "queue.device"),
	SNAP_ARRAY_N(S, pci_cfg, "pci.cfg"),
};
#undef S

#define VPCI_STATUS_BITS (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | \
			  VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_FAILED)

static bool vector_ok(const struct vpci_snap *st, uint16_t v)
{
	return v < st->nvec || v == VIRTIO_MSI_NO_VECTOR;
}

/* What any transport could hold, whatever the device: the fields agree with each other. */
static int vpci_snap_check(const void *obj, char *err, size_t errlen)
{
	const struct vpci_snap *st = obj;
	bool fok = st->status & VIRTIO_STATUS_FEATURES_OK;
	uint64_t extra = st->driver_features & ~st->offered;

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return -EINVAL; } while (0)
	if (!st->num_queues)
		FAIL("queue.size: no queues");
	if (st->nvec < 2 || st->nvec > st->num_queues + 1)
		FAIL("msix.ctrl: %u vectors for %u queues; the transport has 2 to one per queue and one more",
		     st->nvec, st->num_queues);
	if (st->status & ~VPCI_STATUS_BITS)
		FAIL("status: %#x has bits a driver cannot set", st->status);
	if (fok && !(st->status & VIRTIO_STATUS_DRIVER))
		FAIL("status: %#x: FEATURES_OK without DRIVER", st->status);
	if ((st->status & VIRTIO_STATUS_DRIVER_OK) && !fok)
		FAIL("status: %#x: DRIVER_OK without FEATURES_OK", st->status);
	if (st->live && !(st->status & VIRTIO_STATUS_DRIVER_OK))
		FAIL("live: set, but status %#x has no DRIVER_OK", st->status);
	if (fok && extra)
		FAIL("driver_features: %#llx accepts %#llx, which was not offered (%#llx)",
		     (unsigned long long)st->driver_features, (unsigned long long)extra,
		     (unsigned long long)st->offered);
	if (fok && !(st->driver_features & (1ULL << VIRTIO_F_VERSION_1)))
		FAIL("driver_features: %#llx: FEATURES_OK without VERSION_1",
		     (unsigned long long)st->driver_features);
	if (!vector_ok(st, st->config_vector))
		FAIL("config_vector: %u is out of range (%u vectors)", st->config_vector, st->nvec);
	for (unsigned v = 0; v < st->nvec; v++)
		if (st->msix_ctrl[v] & ~(uint32_t)PCI_MSIX_ENTRY_MASKED)
			FAIL("msix.ctrl[%u]: %#x has reserved bits set", v, st->msix_ctrl[v]);
	for (unsigned v = st->nvec; v < 64 * ARRAY_SIZE(st->msix_pba); v++)
		if (st->msix_pba[v / 64] & (1ULL << (v % 64)))
			FAIL("msix.pba: vector %u pending, but there are %u vectors", v, st->nvec);
	for (unsigned q = 0; q < st->num_queues; q++) {
		uint16_t size = st->q_size[q];

		if (!size || (size & (size - 1)) || size > VIRTQ_MAX_SIZE)
			FAIL("queue.size[%u]: %u is not a power of two up to %u", q, size, VIRTQ_MAX_SIZE);
		if (!vector_ok(st, st->q_vector[q]))
			FAIL("queue.vector[%u]: %u is out of range (%u vectors)", q, st->q_vector[q],
			     st->nvec);
		if (st->q_enabled[q] > 1)
			FAIL("queue.enabled[%u]: %u is neither 0 nor 1", q, st->q_enabled[q]);
		if (!st->q_enabled[q])
			continue;
		if (!fok)
			FAIL("queue.enabled[%u]: enabled, but status %#x has no FEATURES_OK", q, st->status);
		if ((uint16_t)(st->q_last_avail[q] - st->q_used_idx[q]) > size)
			FAIL("queue.last_avail_idx[%u]: %u is more than the queue size %u ahead of "
			     "used_idx %u", q, st->q_last_avail[q], size, st->q_used_idx[q]);
		if (!IS_ALIGNED(st->q_desc[q], VIRTQ_DESC_ALIGN))
			FAIL("queue.desc[%u]: %#llx is not %u-byte aligned", q,
			     (unsigned long long)st->q_desc[q], VIRTQ_DESC_ALIGN);
		if (!IS_ALIGNED(st->q_driver[q], VIRTQ_AVAIL_ALIGN))
			FAIL("queue.driver[%u]: %#llx is not %u-byte aligned", q,
			     (unsigned long long)st->q_driver[q], VIRTQ_AVAIL_ALIGN);
		if (!IS_ALIGNED(st->q_device[q], VIRTQ_USED_ALIGN))
			FAIL("queue.device[%u]: %#llx is not %u-byte aligned", q,
			     (unsigned long long)st->q_device[q], VIRTQ_USED_ALIGN);
	}
#undef FAIL
	return 0;
}

static const char *const vpci_snap_extra[] = { "kind", NULL };

const struct snap_desc virtio_pci_snap_desc = {
	.name = "virtio-pci", .version = 1, .min_version = 1, .size = sizeof(struct vpci_snap),
	.fields = vpci_snap_fields, .nfields = ARRAY_SIZE(vpci_snap_fields),
	.extra = vpci_snap_extra, .check = vpci_snap_check,
};

int virtio_pci_save(struct virtio_pci *vp, struct snap_writer *w, char *err, size_t errlen)
{
	struct virtio_dev *vdev = vp->vdev;
	struct vpci_snap *st;
	int ret = 0;

	if (!vdev->ops->snap_save || !vdev->ops->snap_load) {
		snprintf(err, errlen, "%s (%s) cannot be saved", vdev->id, vdev->ops->name);
		return -ENOTSUP;
	}
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	/* Config space first: the bus's lock comes before ours. */
	if (vp->pci.bus)
		pthread_mutex_lock(&vp->pci.bus->cfg_lock);
	memcpy(st->pci_cfg, vp->pci.cfg, sizeof(st->pci_cfg));
	if (vp->pci.bus)
		pthread_mutex_unlock(&vp->pci.bus->cfg_lock);

	pthread_mutex_lock(&vp->lock);
	if (!vp->paused) {
		snprintf(err, errlen, "%s: not paused; pause the VM before a snapshot", vp->name);
		ret = -EBUSY;
		goto unlock;
	}
	st->offered = vp->offered;
	st->driver_features = vp->driver_features;
	st->dfselect = vp->dfselect;
	st->gfselect = vp->gfselect;
	st->config_generation = __atomic_load_n(&vdev->config_generation, __ATOMIC_SEQ_CST);
	st->num_queues = vdev->num_queues;
	st->nvec = vp->nvec;
	st->queue_select = vp->queue_select;
	st->status = vp->status;
	st->needs_reset = __atomic_load_n(&vp->needs_reset, __ATOMIC_SEQ_CST);
	st->isr = __atomic_load_n(&vp->isr, __ATOMIC_SEQ_CST);
	st->live = vp->live;
	for (unsigned q = 0; q < vdev->num_queues; q++) {
		const struct virtq *vq = &vdev->vqs[q];
		struct virtq_state qs;

		/* Pause drained the device: what it popped it has pushed and published. */
		if (!vdev->external_queues && (virtq_in_flight(vq) || virtq_unpublished(vq))) {
			snprintf(err, errlen, "%s: queue %u still has %u request(s) in flight and %u "
				 "unpublished after pause", vp->name, q, virtq_in_flight(vq),
				 virtq_unpublished(vq));
			ret = -EBUSY;
			goto unlock;
		}
		virtq_save(vq, &qs);
		st->q_size[q] = qs.size;
		st->q_enabled[q] = qs.enabled;
		st->q_last_avail[q] = qs.last_avail_idx;
		st->q_used_idx[q] = qs.used_idx;
		st->q_desc[q] = qs.desc_gpa;
		st->q_driver[q] = qs.avail_gpa;
		st->q_device[q] = qs.used_gpa;
	}
	pthread_mutex_lock(&vp->msix_lock);
	st->config_vector = vp->config_vector;
	for (unsigned q = 0; q < vdev->num_queues; q++)
		st->q_vector[q] = vp->queues[q].msix_vector;
	for (unsigned v = 0; v < vp->nvec; v++) {
		st->msix_addr_lo[v] = vp->vec[v].addr_lo;
		st->msix_addr_hi[v] = vp->vec[v].addr_hi;
		st->msix_data[v] = vp->vec[v].data;
		st->msix_ctrl[v] = vp->vec[v].ctrl;
	}
	memcpy(st->msix_pba, vp->pba, sizeof(st->msix_pba));
	pthread_mutex_unlock(&vp->msix_lock);
unlock:
	pthread_mutex_unlock(&vp->lock);
	if (ret)
		goto out;

	if (snap_write(w, &virtio_pci_snap_desc, st) ||
	    snap_write_string(w, "kind", vdev->ops->name) || snap_begin_node(w, "device")) {
		ret = w->err;
		snprintf(err, errlen, "%s: writing the transport's state: %s", vp->name, strerror(-ret));
		goto out;
	}
	ret = vdev->ops->snap_save(vdev, w);
	if (!ret && snap_end_node(w))
		ret = w->err;
	if (ret)
		snprintf(err, errlen, "%s (%s): saving its state failed: %s", vdev->id, vdev->ops->name,
			 strerror(-ret));
out:
	free(st);
	return ret;
}

/* The transport node holds its fields and one child, "device". */
static int device_node(struct snap_reader *r, int node)
{
	int child, dev = -1;

	fdt_for_each_subnode(child, r->fdt, node) {
		const char *name = fdt_get_name(r->fdt, child, NULL);

		if (!name || strcmp(name, "device") || dev >= 0)
			return snap_fail(r, node, "unexpected node %.40s", name ? name : "(unnamed)");
		dev = child;
	}
	if (child != -FDT_ERR_NOTFOUND)
		return snap_fail(r, node, "corrupt node list");
	if (dev < 0)
		return snap_fail(r, node, "missing node device");
	return dev;
}

int virtio_pci_snap_check(struct snap_reader *r, int node)
{
	struct vpci_snap *st = calloc(1, sizeof(*st));
	const char *kind;
	int ret;

	if (!st)
		return -ENOMEM;
	ret = snap_read_string(r, node, "kind", &kind);
	if (!ret)
		ret = snap_read(r, node, &virtio_pci_snap_desc, st);
	if (!ret) {
		ret = device_node(r, node);
		ret = ret < 0 ? ret : 0;
	}
	free(st);
	return ret;
}

/* Does [gpa, gpa + len) lie in guest RAM? */
static bool in_ram(struct virtio_pci *vp, uint64_t gpa, uint64_t len)
{
	return gmem_translate(&vp->vdev->vm->mem, gpa, len) != NULL;
}

/* What this transport and device can take: queue counts and sizes, features, RAM, identity. */
static int check_against(struct virtio_pci *vp, const struct vpci_snap *st, struct snap_reader *r,
			 int node)
{
	struct virtio_dev *vdev = vp->vdev;
	uint64_t extra = st->driver_features & ~vp->offered;

	if (st->num_queues != vdev->num_queues)
		return snap_fail(r, node, "num_queues: the snapshot's %s has %u queues, this one %u",
				 vdev->ops->name, st->num_queues, vdev->num_queues);
	if (st->nvec != vp->nvec)
		return snap_fail(r, node, "msix.ctrl: the snapshot's %s has %u MSI-X vectors, this one %u",
				 vdev->ops->name, st->nvec, vp->nvec);
	if ((st->status & VIRTIO_STATUS_FEATURES_OK) && extra)
		return snap_fail(r, node, "driver_features: %#llx accepts %#llx, which this %s does "
				 "not offer (%#llx)", (unsigned long long)st->driver_features,
				 (unsigned long long)extra, vdev->ops->name,
				 (unsigned long long)vp->offered);
	for (unsigned q = 0; q < st->num_queues; q++) {
		uint16_t size = st->q_size[q];

		if (size > vdev->queue_max_size)
			return snap_fail(r, node, "queue.size[%u]: %u is larger than this device's "
					 "queues (%u)", q, size, vdev->queue_max_size);
		if (!st->q_enabled[q])
			continue;
		if (!in_ram(vp, st->q_desc[q], virtq_desc_bytes(size)))
			return snap_fail(r, node, "queue.desc[%u]: %#llx (+%llu) is not guest RAM", q,
					 (unsigned long long)st->q_desc[q],
					 (unsigned long long)virtq_desc_bytes(size));
		if (!in_ram(vp, st->q_driver[q], virtq_avail_bytes(size)))
			return snap_fail(r, node, "queue.driver[%u]: %#llx (+%llu) is not guest RAM", q,
					 (unsigned long long)st->q_driver[q],
					 (unsigned long long)virtq_avail_bytes(size));
		if (!in_ram(vp, st->q_device[q], virtq_used_bytes(size)))
			return snap_fail(r, node, "queue.device[%u]: %#llx (+%llu) is not guest RAM", q,
					 (unsigned long long)st->q_device[q],
					 (unsigned long long)virtq_used_bytes(size));
	}
	/* What the guest cannot write must be this device's: ids, capabilities, BAR types. */
	for (unsigned i = 0; i < PCI_CFG_SIZE; i++) {
		uint8_t ro = (uint8_t)~vp->pci.wmask[i];

		if ((st->pci_cfg[i] ^ vp->pci.cfg[i]) & ro)
			return snap_fail(r, node, "pci.cfg: byte %#x is %#x, this %s has %#x", i,
					 st->pci_cfg[i], vdev->ops->name, vp->pci.cfg[i]);
	}
	return 0;
}

static void cfg_write(struct virtio_pci *vp, uint32_t reg, const uint8_t *cfg, unsigned len)
{
	uint8_t data[4];

	memcpy(data, cfg + reg, len);
	pci_cfg_access(vp->pci.bus, vp->pci.slot, 0, reg, data, len, true);
}

/*
 * The guest's configuration space back through the bus, as the guest wrote
 * it: BARs with decoding off, then the other writable bytes, then the command
 * register (BARs decode: the ioeventfds follow), then MSI-X control (routes).
 * The PCI_CFG window's data is not written: that would be a BAR access.
 */
static void restore_pci_cfg(struct virtio_pci *vp, const uint8_t *cfg)
{
	const struct pci_device *d = &vp->pci;
	uint32_t data_off = vp->cfg_cap + offsetof(struct virtio_pci_cfg_cap, pci_cfg_data);
	uint32_t ctrl_off = vp->msix_cap + 2u;
	uint8_t no_decode[2] = { cfg[PCI_COMMAND] & (uint8_t)~(PCI_CMD_IO | PCI_CMD_MEM),
				 cfg[PCI_COMMAND + 1] };

	pci_cfg_access(vp->pci.bus, vp->pci.slot, 0, PCI_COMMAND, no_decode, 2, true);
	for (uint32_t reg = PCI_BAR0; reg < PCI_BAR0 + 4 * PCI_NR_BARS; reg += 4)
		cfg_write(vp, reg, cfg, 4);
	for (uint32_t reg = 0; reg < PCI_CFG_SIZE; reg++) {
		if (!d->wmask[reg] || (reg >= PCI_COMMAND && reg < PCI_COMMAND + 2) ||
		    (reg >= PCI_BAR0 && reg < PCI_BAR0 + 4 * PCI_NR_BARS) ||
		    (reg >= ctrl_off && reg < ctrl_off + 2) ||
		    (vp->cfg_cap && reg >= data_off && reg < data_off + 4))
			continue;
		cfg_write(vp, reg, cfg, 1);
	}
	cfg_write(vp, PCI_COMMAND, cfg, 2);
	cfg_write(vp, ctrl_off, cfg, 2);
}

/* Validated state onto a transport just created (or reset): nothing here is the file's fault. */
static int apply_snap(struct virtio_pci *vp, const struct vpci_snap *st, struct snap_reader *r,
		      int node)
{
	struct virtio_dev *vdev = vp->vdev;
	uint64_t features = st->status & VIRTIO_STATUS_FEATURES_OK ? st->driver_features : 0;
	int ret = 0;

	pthread_mutex_lock(&vp->lock);
	reset_locked(vp);
	pthread_mutex_unlock(&vp->lock);

	/* The table before MSI-X control: enabling then routes exactly the saved messages. */
	pthread_mutex_lock(&vp->msix_lock);
	for (unsigned v = 0; v < vp->nvec; v++) {
		vp->vec[v].addr_lo = st->msix_addr_lo[v];
		vp->vec[v].addr_hi = st->msix_addr_hi[v];
		vp->vec[v].data = st->msix_data[v];
		vp->vec[v].ctrl = st->msix_ctrl[v];
	}
	memcpy(vp->pba, st->msix_pba, sizeof(vp->pba));
	pthread_mutex_unlock(&vp->msix_lock);
	if (vp->pci.bus)
		restore_pci_cfg(vp, st->pci_cfg);

	pthread_mutex_lock(&vp->lock);
	vp->driver_features = st->driver_features;
	vdev->driver_features = features;
	vp->dfselect = st->dfselect;
	vp->gfselect = st->gfselect;
	vp->status = st->status;
	vp->queue_select = st->queue_select;
	__atomic_store_n(&vdev->config_generation, st->config_generation, __ATOMIC_SEQ_CST);
	__atomic_store_n(&vp->isr, st->isr, __ATOMIC_SEQ_CST);
	__atomic_store_n(&vp->needs_reset, st->needs_reset != 0, __ATOMIC_SEQ_CST);
	pthread_mutex_lock(&vp->msix_lock);
	vp->config_vector = st->config_vector;
	for (unsigned q = 0; q < vdev->num_queues; q++)
		vp->queues[q].msix_vector = st->q_vector[q];
	pthread_mutex_unlock(&vp->msix_lock);
	for (unsigned q = 0; q < vdev->num_queues && !ret; q++) {
		const struct virtq_state qs = {
			.desc_gpa = st->q_desc[q], .avail_gpa = st->q_driver[q],
			.used_gpa = st->q_device[q], .size = st->q_size[q],
			.last_avail_idx = st->q_last_avail[q], .used_idx = st->q_used_idx[q],
			.enabled = st->q_enabled[q],
		};

		ret = virtq_restore(&vdev->vqs[q], &qs, features);
		if (ret)
			ret = snap_fail(r, node, "queue %u cannot be restored: %s", q, strerror(-ret));
	}
	/*
	 * The device picks up where it stopped: activated on its restored queues,
	 * then paused like every device of a paused VM; virtio_pci_resume() starts it.
	 */
	if (!ret && st->live && vdev->ops->activate) {
		ret = vdev->ops->activate(vdev);
		if (ret)
			snap_fail(r, node, "live: the device refused to start: %s", strerror(-ret));
	}
	if (!ret) {
		vp->live = st->live;
		if (!vp->paused && vdev->ops->pause) {
			ret = vdev->ops->pause(vdev);
			if (ret)
				snap_fail(r, node, "the restored device cannot be paused: %s",
					  strerror(-ret));
		}
	}
	if (!ret) {
		vp->paused = true;
		/* A kick the old process had not served yet: the device looks at every queue once. */
		for (unsigned q = 0; !vdev->external_queues && q < vdev->num_queues; q++)
			if (virtq_is_enabled(&vdev->vqs[q])) {
				vp->queues[q].synthetic_kick = true;
				notifier_signal(&vp->queues[q].kick);
			}
	}
	pthread_mutex_unlock(&vp->lock);
	return ret;
}

int virtio_pci_load(struct virtio_pci *vp, struct snap_reader *r, int node)
{
	struct virtio_dev *vdev = vp->vdev;
	struct vpci_snap *st;
	const char *kind;
	int dev, ret;

	if (!vdev->ops->snap_load)
		return snap_fail(r, node, "%s (%s) cannot be restored", vdev->id, vdev->ops->name);
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	ret = snap_read_string(r, node, "kind", &kind);
	if (!ret && strcmp(kind, vdev->ops->name))
		ret = snap_fail(r, node, "kind: the snapshot has a %.40s, this VM a %s", kind,
				vdev->ops->name);
	/* Everything is checked before anything changes: the transport's fields, then the device's. */
	if (!ret)
		ret = snap_read(r, node, &virtio_pci_snap_desc, st);
	if (!ret)
		ret = check_against(vp, st, r, node);
	if (!ret) {
		dev = device_node(r, node);
		ret = dev < 0 ? dev : vdev->ops->snap_load(vdev, r, dev);
	}
	if (!ret)
		ret = apply_snap(vp, st, r, node);
	free(st);
	return ret;
}
