/*
 * virtio/virtio_pci (+ vmm/irq): the modern transport driven the way a guest
 * driver drives it, through the PCI bus's ECAM and BAR windows, with a fake
 * KVM behind the irq router that records routes, irqfds and ioeventfds.
 * Kicks are delivered by writing the ioeventfd KVM would signal; interrupts
 * are observed by reading the irqfd KVM would consume.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "channel/evloop.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_net.h"
#include "virtio/virtio_pci.h"
#include "vmm/api/counters.h"
#include "vmm/irq.h"
#include "vmm/vm.h"

extern const struct virtio_dev_kind virtio_rng_kind;

#define MEM32_BASE 0xc0000000ULL
#define MEM64_BASE 0x140000000ULL
#define ECAM_BASE  0xe0000000ULL
#define RAM_SIZE   (1024 * 1024)
#define QSIZE      16
#define DESC       0x1000
#define AVAIL      0x2000
#define USED       0x3000
#define BUF        0x10000
#define FEAT_DEV   5          /* a device feature bit the fake device offers */

/* ---- fake KVM ---- */

struct fake_kvm {
	unsigned nr_routing;
	struct kvm_irq_routing_entry routes[IRQ_NR_IRQCHIP_GSI * 2 + 64];
	unsigned nr_routes;
	struct { int fd; uint32_t gsi; bool on; } irqfd[64];
	unsigned nr_irqfd;
	struct { int fd; uint64_t addr; uint32_t len; bool on; } ioev[64];
	unsigned nr_ioev;
	bool no_any_length;    /* a KVM without KVM_CAP_IOEVENTFD_ANY_LENGTH */
};

static int fake_routing(void *ctx, const struct kvm_irq_routing *t)
{
	struct fake_kvm *k = ctx;

	k->nr_routing++;
	k->nr_routes = MIN(t->nr, (uint32_t)ARRAY_SIZE(k->routes));
	memcpy(k->routes, t->entries, k->nr_routes * sizeof(t->entries[0]));
	return 0;
}

static int fake_irqfd(void *ctx, int fd, uint32_t gsi, bool assign)
{
	struct fake_kvm *k = ctx;

	for (unsigned i = 0; i < k->nr_irqfd; i++) {
		if (k->irqfd[i].fd == fd && k->irqfd[i].gsi == gsi) {
			if (k->irqfd[i].on == assign)
				return assign ? -EEXIST : -ENOENT;
			k->irqfd[i].on = assign;
			return 0;
		}
	}
	if (!assign)
		return -ENOENT;
	assert_true(k->nr_irqfd < ARRAY_SIZE(k->irqfd));
	k->irqfd[k->nr_irqfd].fd = fd;
	k->irqfd[k->nr_irqfd].gsi = gsi;
	k->irqfd[k->nr_irqfd++].on = true;
	return 0;
}

static int fake_ioeventfd(void *ctx, int fd, uint64_t addr, uint32_t len, bool pio, bool assign)
{
	struct fake_kvm *k = ctx;

	assert_false(pio);
	if (len == 0 && k->no_any_length)
		return -EINVAL;
	for (unsigned i = 0; i < k->nr_ioev; i++) {
		if (k->ioev[i].on && k->ioev[i].addr == addr && k->ioev[i].len == len) {
			if (assign)
				return -EEXIST;
			if (k->ioev[i].fd != fd)
				return -ENOENT;
			k->ioev[i].on = false;
			return 0;
		}
	}
	if (!assign)
		return -ENOENT;
	assert_true(k->nr_ioev < ARRAY_SIZE(k->ioev));
	k->ioev[k->nr_ioev].fd = fd;
	k->ioev[k->nr_ioev].addr = addr;
	k->ioev[k->nr_ioev].len = len;
	k->ioev[k->nr_ioev++].on = true;
	return 0;
}

static const struct irq_kvm_ops fake_ops = {
	.set_gsi_routing = fake_routing,
	.irqfd = fake_irqfd,
	.ioeventfd = fake_ioeventfd,
};

/* The fd KVM would signal for a 2-byte write at addr (any width: length 0), or -1. */
static int ioeventfd_at(struct fake_kvm *k, uint64_t addr)
{
	for (unsigned i = 0; i < k->nr_ioev; i++)
		if (k->ioev[i].on && k->ioev[i].addr == addr &&
		    (k->ioev[i].len == 0 || k->ioev[i].len == 2))
			return k->ioev[i].fd;
	return -1;
}

static unsigned nr_ioeventfds(struct fake_kvm *k)
{
	unsigned n = 0;

	for (unsigned i = 0; i < k->nr_ioev; i++)
		n += k->ioev[i].on;
	return n;
}

/* ---- the fake device: 2 queues, 8 bytes of config, one feature bit ---- */

struct fdev {
	uint8_t cfg[8];
	unsigned nr_notify, nr_reset, nr_activate, nr_destroy;
	unsigned nr_queue_enable, nr_queue_reset;
	int queue_enable_ret;
	int activate_ret;
	int last_pop;
	struct virtq_chain chain;
};

static void fdev_notify(struct virtio_dev *vdev, unsigned q)
{
	struct fdev *d = vdev->priv;
	int r;

	d->nr_notify++;
	while ((r = virtq_pop(&vdev->vqs[q], &d->chain)) > 0) {
		uint8_t fill[64];

		memset(fill, 0xab, sizeof(fill));
		virtio_dev_complete(vdev, q, d->chain.head,
				    (uint32_t)virtq_chain_write(&d->chain, 0, fill, sizeof(fill)));
	}
	d->last_pop = r;
}

static void fdev_reset(struct virtio_dev *vdev)
{
	((struct fdev *)vdev->priv)->nr_reset++;
}

static int fdev_activate(struct virtio_dev *vdev)
{
	struct fdev *d = vdev->priv;

	d->nr_activate++;
	return d->activate_ret;
}

static int fdev_queue_enable(struct virtio_dev *vdev, unsigned q)
{
	struct fdev *d = vdev->priv;

	assert_true(virtq_is_enabled(&vdev->vqs[q]));
	d->nr_queue_enable++;
	return d->queue_enable_ret;
}

static void fdev_queue_reset(struct virtio_dev *vdev, unsigned q)
{
	struct fdev *d = vdev->priv;

	assert_true(virtq_is_enabled(&vdev->vqs[q]));
	d->nr_queue_reset++;
}

static void fdev_cfg_read(struct virtio_dev *vdev, uint32_t off, void *data, uint32_t len)
{
	struct fdev *d = vdev->priv;

	assert_true(off + len <= sizeof(d->cfg));
	memcpy(data, d->cfg + off, len);
}

static void fdev_cfg_write(struct virtio_dev *vdev, uint32_t off, const void *data, uint32_t len)
{
	struct fdev *d = vdev->priv;

	assert_true(off + len <= sizeof(d->cfg));
	memcpy(d->cfg + off, data, len);
}

static void fdev_destroy(struct virtio_dev *vdev)
{
	((struct fdev *)vdev->priv)->nr_destroy++;
}

static const struct virtio_dev_ops fdev_ops = {
	.name = "fake",
	.device_id = 3,
	.reset = fdev_reset,
	.activate = fdev_activate,
	.queue_enable = fdev_queue_enable,
	.queue_reset = fdev_queue_reset,
	.queue_notify = fdev_notify,
	.cfg_read = fdev_cfg_read,
	.cfg_write = fdev_cfg_write,
	.destroy = fdev_destroy,
};

/* ---- fixture ---- */

struct fx {
	struct vm vm;
	struct bus pio, mmio;
	struct pci_bus pb;
	struct irq_router irq;
	struct fake_kvm kvm;
	struct virtio_dev vdev;
	struct virtio_pci vp;
	struct fdev dev;
	uint64_t bar0, bar2;
	bool destroyed;
};

static void fx_bus(struct fx *f)
{
	struct pci_bus_params p = {
		.pio = &f->pio, .mmio = &f->mmio,
		.io_base = 0xc000, .io_size = 0x4000,
		.mem32_base = MEM32_BASE, .mem32_size = 0x20000000,
		.mem64_base = MEM64_BASE, .mem64_size = 0x1000000000ULL,
		.ecam_base = ECAM_BASE,
	};

	assert_int_equal(gmem_create(&f->vm.mem, RAM_SIZE, 0, 0), 0);
	assert_int_equal(evloop_create(&f->vm.loop), 0);
	assert_int_equal(bus_init(&f->pio, "pio"), 0);
	assert_int_equal(bus_init(&f->mmio, "mmio"), 0);
	assert_int_equal(pci_bus_init(&f->pb, &p), 0);
	assert_int_equal(irq_router_init_ops(&f->irq, &fake_ops, &f->kvm), 0);
}

/* The fake device (two queues) with `vectors` MSI-X vectors (0: one per queue and one more). */
static int setup_vectors(void **state, unsigned vectors)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	fx_bus(f);
	f->vdev.ops = &fdev_ops;
	f->vdev.priv = &f->dev;
	f->vdev.vm = &f->vm;
	snprintf(f->vdev.id, sizeof(f->vdev.id), "fake0");
	f->vdev.device_features = 1ULL << FEAT_DEV;
	f->vdev.config_size = sizeof(f->dev.cfg);
	f->vdev.num_queues = 2;
	f->vdev.msix_vectors = vectors;
	f->vdev.queue_max_size = QSIZE;
	assert_int_equal(virtq_chain_init(&f->dev.chain, QSIZE), 0);
	assert_int_equal(virtio_pci_init(&f->vp, &f->vdev, &f->pb, &f->irq, f->vm.loop), 0);
	f->bar0 = pci_bar_decode(&f->vp.pci, VPCI_MSIX_BAR);
	f->bar2 = pci_bar_decode(&f->vp.pci, VPCI_BAR);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_vectors(state, 0);
}

static int setup_shared(void **state)
{
	return setup_vectors(state, 2);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	pci_bus_destroy(&f->pb);  /* uninitialises the transport */
	/* Everything KVM was given is taken back. */
	assert_int_equal(nr_ioeventfds(&f->kvm), 0);
	for (unsigned i = 0; i < f->kvm.nr_irqfd; i++)
		assert_false(f->kvm.irqfd[i].on);
	irq_router_destroy(&f->irq);
	bus_destroy(&f->pio);
	bus_destroy(&f->mmio);
	evloop_destroy(f->vm.loop);
	gmem_destroy(&f->vm.mem);
	virtq_chain_destroy(&f->dev.chain);
	free(f);
	return 0;
}

/* ---- guest-side helpers ---- */

static uint64_t get_le(const uint8_t *d, unsigned len)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < len; i++)
		v |= (uint64_t)d[i] << (8 * i);
	return v;
}

static void put_le(uint8_t *d, uint64_t v, unsigned len)
{
	for (unsigned i = 0; i < len; i++)
		d[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t rd(struct fx *f, uint64_t addr, unsigned len)
{
	uint8_t d[8];

	bus_access(&f->mmio, addr, d, len, false);
	return get_le(d, len);
}

static void wr(struct fx *f, uint64_t addr, uint64_t v, unsigned len)
{
	uint8_t d[8];

	put_le(d, v, len);
	bus_access(&f->mmio, addr, d, len, true);
}

static uint64_t cfg_addr(struct fx *f, unsigned reg)
{
	return ECAM_BASE + ((uint64_t)f->vp.pci.slot << 15) + reg;
}

#define CR(f, off, len) rd(f, (f)->bar2 + VPCI_COMMON + (off), len)
#define CW(f, off, v, len) wr(f, (f)->bar2 + VPCI_COMMON + (off), v, len)

static uint8_t status(struct fx *f)
{
	return (uint8_t)CR(f, VIRTIO_PCI_COMMON_STATUS, 1);
}

/* 3.1.1 steps 1-6; returns the status read back after FEATURES_OK. */
static uint8_t negotiate(struct fx *f, uint64_t features)
{
	CW(f, VIRTIO_PCI_COMMON_STATUS, 0, 1);
	CW(f, VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE, 1);
	CW(f, VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
	CW(f, VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
	CW(f, VIRTIO_PCI_COMMON_GF, (uint32_t)features, 4);
	CW(f, VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
	CW(f, VIRTIO_PCI_COMMON_GF, features >> 32, 4);
	CW(f, VIRTIO_PCI_COMMON_STATUS,
	   VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK, 1);
	return status(f);
}

#define STD_FEATURES (1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_F_EVENT_IDX | 1ULL << FEAT_DEV)

static void program_vector(struct fx *f, unsigned v, uint32_t addr, uint32_t data, bool masked)
{
	uint64_t e = f->bar0 + VPCI_MSIX_TABLE + v * PCI_MSIX_ENTRY_SIZE;

	wr(f, e + 12, 1, 4);
	wr(f, e, addr, 4);
	wr(f, e + 4, 0, 4);
	wr(f, e + 8, data, 4);
	wr(f, e + 12, masked, 4);
}

static void msix_enable(struct fx *f, uint16_t extra)
{
	uint64_t ctrl = cfg_addr(f, f->vp.msix_cap + 2);

	wr(f, ctrl, (rd(f, ctrl, 2) & 0x7ff) | PCI_MSIX_CTRL_ENABLE | extra, 2);
}

static void setup_queue(struct fx *f, unsigned q, uint16_t vector)
{
	CW(f, VIRTIO_PCI_COMMON_Q_SELECT, q, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_SIZE, QSIZE, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_MSIX, vector, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_DESCLO, DESC + q * 0x4000, 4);
	CW(f, VIRTIO_PCI_COMMON_Q_DESCHI, 0, 4);
	CW(f, VIRTIO_PCI_COMMON_Q_AVAILLO, AVAIL + q * 0x4000, 8);
	CW(f, VIRTIO_PCI_COMMON_Q_USEDLO, USED + q * 0x4000, 4);
	CW(f, VIRTIO_PCI_COMMON_Q_USEDHI, 0, 4);
	CW(f, VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
}

/*
 * Negotiate, MSI-X on (vector 0 config, 1+q per queue, or the last vector
 * when the table is smaller), both queues live, DRIVER_OK.
 */
static void bring_up(struct fx *f)
{
	assert_true(negotiate(f, STD_FEATURES) & VIRTIO_STATUS_FEATURES_OK);
	msix_enable(f, 0);
	for (unsigned v = 0; v < f->vp.nvec; v++)
		program_vector(f, v, 0xfee00000, 0x40 + v, false);
	CW(f, VIRTIO_PCI_COMMON_MSIX, 0, 2);
	for (unsigned q = 0; q < 2; q++)
		setup_queue(f, q, (uint16_t)MIN(q + 1, f->vp.nvec - 1));
	CW(f, VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
	   VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK, 1);
	assert_int_equal(status(f), 0x0f);
}

static void *gpa(struct fx *f, uint64_t a, uint64_t len)
{
	void *p = gmem_translate(&f->vm.mem, a, len);

	assert_non_null(p);
	return p;
}

/* Offer one chain of a single writable buffer (addr, len) on queue q; avail idx becomes idx. */
static void offer(struct fx *f, unsigned q, uint16_t idx, uint64_t addr, uint32_t len)
{
	uint8_t *desc = gpa(f, DESC + q * 0x4000, 16 * QSIZE);
	uint8_t *avail = gpa(f, AVAIL + q * 0x4000, 6 + 2 * QSIZE);
	uint16_t slot = (uint16_t)(idx - 1) % QSIZE;

	put_le(desc + 16 * slot, addr, 8);
	put_le(desc + 16 * slot + 8, len, 4);
	put_le(desc + 16 * slot + 12, VIRTQ_DESC_F_WRITE, 2);
	put_le(desc + 16 * slot + 14, 0, 2);
	put_le(avail + 4 + 2 * slot, slot, 2);
	/* used_event (EVENT_IDX): interrupt me when this chain is used. */
	put_le(avail + 4 + 2 * QSIZE, (uint16_t)(idx - 1), 2);
	atomic_thread_fence(memory_order_seq_cst);
	put_le(avail + 2, idx, 2);
}

static uint16_t used_idx(struct fx *f, unsigned q)
{
	return (uint16_t)get_le(gpa(f, USED + q * 0x4000 + 2, 2), 2);
}

/* The guest's 2-byte write to the notify address, as KVM's ioeventfd delivers it. */
static void kick(struct fx *f, unsigned q)
{
	int fd = ioeventfd_at(&f->kvm, f->bar2 + VPCI_NOTIFY + q * VPCI_NOTIFY_MULTIPLIER);
	uint64_t one = 1;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, &one, sizeof(one)), (ssize_t)sizeof(one));
}

static int run_loop(struct fx *f)
{
	return evloop_run_once(f->vm.loop, 50);
}

/* How many times KVM would have injected vector v's MSI (consumes the count). */
static uint64_t irqs(struct fx *f, unsigned v)
{
	uint64_t n = 0;

	if (read(notifier_fd(&f->vp.vec[v].irqfd), &n, sizeof(n)) != (ssize_t)sizeof(n))
		return 0;
	return n;
}

/* ---- tests ---- */

static void test_identity_bars_and_caps(void **state)
{
	struct fx *f = *state;
	unsigned pos, next, seen = 0, guard = 0;

	assert_int_equal(rd(f, cfg_addr(f, PCI_VENDOR_ID), 4), (0x1040u + 3) << 16 | 0x1af4);
	assert_int_equal(rd(f, cfg_addr(f, PCI_REVISION_ID), 1), 1);
	assert_int_equal(rd(f, cfg_addr(f, PCI_SUBSYS_VENDOR), 2), 0x1af4);
	assert_int_equal(rd(f, cfg_addr(f, PCI_INT_PIN), 1), 0);
	/* BAR 0 in the 32-bit window, BAR 2 64-bit in the window above RAM. */
	assert_true(f->bar0 >= MEM32_BASE && f->bar0 < MEM32_BASE + 0x20000000);
	assert_true(f->bar2 >= MEM64_BASE);
	assert_int_equal(rd(f, cfg_addr(f, PCI_BAR0 + 8), 4) & 0xf, PCI_BAR_MEM64_FLAG);

	for (pos = (unsigned)rd(f, cfg_addr(f, PCI_CAP_PTR), 1); pos; pos = next, guard++) {
		unsigned id = (unsigned)rd(f, cfg_addr(f, pos), 1), type, bar;
		uint32_t off, len;

		assert_true(guard < 10);
		next = (unsigned)rd(f, cfg_addr(f, pos + 1), 1);
		if (id == PCI_CAP_ID_MSIX) {
			assert_int_equal(rd(f, cfg_addr(f, pos + 2), 2) & 0x7ff, 2); /* 3 vectors */
			assert_int_equal(rd(f, cfg_addr(f, pos + 4), 4), VPCI_MSIX_TABLE | VPCI_MSIX_BAR);
			assert_int_equal(rd(f, cfg_addr(f, pos + 8), 4), VPCI_MSIX_PBA | VPCI_MSIX_BAR);
			seen |= 1;
			continue;
		}
		assert_int_equal(id, PCI_CAP_ID_VNDR);
		type = (unsigned)rd(f, cfg_addr(f, pos + 3), 1);
		bar = (unsigned)rd(f, cfg_addr(f, pos + 4), 1);
		off = (uint32_t)rd(f, cfg_addr(f, pos + 8), 4);
		len = (uint32_t)rd(f, cfg_addr(f, pos + 12), 4);
		seen |= 1u << type;
		if (type == VIRTIO_PCI_CAP_PCI_CFG)
			continue;
		assert_int_equal(bar, VPCI_BAR);
		switch (type) {
		case VIRTIO_PCI_CAP_COMMON_CFG:
			assert_int_equal(off, VPCI_COMMON);
			assert_true(len >= 0x38);
			break;
		case VIRTIO_PCI_CAP_NOTIFY_CFG:
			assert_int_equal(off, VPCI_NOTIFY);
			assert_int_equal(len, 2 * VPCI_NOTIFY_MULTIPLIER);
			assert_int_equal(rd(f, cfg_addr(f, pos + 16), 4), VPCI_NOTIFY_MULTIPLIER);
			break;
		case VIRTIO_PCI_CAP_ISR_CFG:
			assert_int_equal(off, VPCI_ISR);
			break;
		case VIRTIO_PCI_CAP_DEVICE_CFG:
			assert_int_equal(off, VPCI_DEVICE);
			assert_int_equal(len, 8);
			break;
		default:
			fail();
		}
	}
	assert_int_equal(seen, 1 | 1 << 1 | 1 << 2 | 1 << 3 | 1 << 4 | 1 << 5);
	/* One ioeventfd per queue on its notify address, any width; one irqfd per vector. */
	assert_int_equal(nr_ioeventfds(&f->kvm), 2);
	for (unsigned i = 0; i < f->kvm.nr_ioev; i++)
		assert_int_equal(f->kvm.ioev[i].len, 0);
	assert_true(ioeventfd_at(&f->kvm, f->bar2 + VPCI_NOTIFY) >= 0);
	assert_true(ioeventfd_at(&f->kvm, f->bar2 + VPCI_NOTIFY + 4) >= 0);
	assert_int_equal(f->kvm.nr_irqfd, 3);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_NUMQ, 2), 2);
}

static void test_feature_negotiation(void **state)
{
	struct fx *f = *state;
	uint64_t offered;

	CW(f, VIRTIO_PCI_COMMON_DFSELECT, 0, 4);
	offered = CR(f, VIRTIO_PCI_COMMON_DF, 4);
	CW(f, VIRTIO_PCI_COMMON_DFSELECT, 1, 4);
	offered |= CR(f, VIRTIO_PCI_COMMON_DF, 4) << 32;
	CW(f, VIRTIO_PCI_COMMON_DFSELECT, 7, 4);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_DF, 4), 0);
	assert_int_equal(offered, 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_F_EVENT_IDX |
				  1ULL << VIRTIO_F_INDIRECT_DESC | 1ULL << VIRTIO_F_RING_RESET |
				  1ULL << FEAT_DEV);

	/* Refused: a bit not offered, or no VERSION_1 (legacy drivers are not served). */
	assert_false(negotiate(f, STD_FEATURES | 1ULL << 41) & VIRTIO_STATUS_FEATURES_OK);
	assert_false(negotiate(f, 1ULL << FEAT_DEV) & VIRTIO_STATUS_FEATURES_OK);
	/* DRIVER_OK on top of a refusal does not stick either. */
	CW(f, VIRTIO_PCI_COMMON_STATUS, 0x07, 1);
	assert_false(status(f) & VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(f->dev.nr_activate, 0);

	/* Accepted. */
	assert_int_equal(negotiate(f, STD_FEATURES), 0x0b);
	assert_int_equal(f->vdev.driver_features, STD_FEATURES);
	CW(f, VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_GF, 4), (uint32_t)STD_FEATURES);
	/* Features are frozen after FEATURES_OK. */
	CW(f, VIRTIO_PCI_COMMON_GF, 0xffffffff, 4);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_GF, 4), (uint32_t)STD_FEATURES);
	/* Clearing bits without a reset is ignored; the driver cannot set NEEDS_RESET. */
	CW(f, VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE, 1);
	assert_int_equal(status(f), 0x0b);
	CW(f, VIRTIO_PCI_COMMON_STATUS, 0x0b | VIRTIO_STATUS_NEEDS_RESET, 1);
	assert_int_equal(status(f), 0x0b);
	/* Reset, then driver_feature before DRIVER is ignored. */
	CW(f, VIRTIO_PCI_COMMON_STATUS, 0, 1);
	assert_int_equal(status(f), 0);
	assert_int_equal(f->vdev.driver_features, 0);
	CW(f, VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
	CW(f, VIRTIO_PCI_COMMON_GF, 0xffffffff, 4);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_GF, 4), 0);
	/* DRIVER_OK without FEATURES_OK. */
	CW(f, VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
	   VIRTIO_STATUS_DRIVER_OK, 1);
	assert_int_equal(status(f), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	assert_int_equal(f->dev.nr_activate, 0);
	/* Wrong widths change nothing. */
	CW(f, VIRTIO_PCI_COMMON_STATUS, 0, 4);
	CW(f, VIRTIO_PCI_COMMON_STATUS, 0, 2);
	assert_int_equal(status(f), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
}

static void test_queue_register_validation(void **state)
{
	struct fx *f = *state;

	assert_true(negotiate(f, STD_FEATURES) & VIRTIO_STATUS_FEATURES_OK);
	/* Selectors past num_queues: size 0 ("unavailable"), writes ignored. */
	for (unsigned qs = 2; qs < 0x10000; qs = qs * 3 + 1) {
		CW(f, VIRTIO_PCI_COMMON_Q_SELECT, qs, 2);
		assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_SIZE, 2), 0);
		CW(f, VIRTIO_PCI_COMMON_Q_SIZE, 8, 2);
		CW(f, VIRTIO_PCI_COMMON_Q_DESCLO, 0x1000, 4);
		CW(f, VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
		assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	}
	CW(f, VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_SIZE, 2), QSIZE);
	/* Sizes: not a power of two, zero, too large: ignored. */
	CW(f, VIRTIO_PCI_COMMON_Q_SIZE, 3, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_SIZE, 0, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_SIZE, QSIZE * 2, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_SIZE, 0xffff, 2);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_SIZE, 2), QSIZE);
	CW(f, VIRTIO_PCI_COMMON_Q_SIZE, 4, 2);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_SIZE, 2), 4);
	/* Vectors past the table read back NO_VECTOR. */
	CW(f, VIRTIO_PCI_COMMON_Q_MSIX, 3, 2);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	CW(f, VIRTIO_PCI_COMMON_MSIX, 0x1234, 2);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	CW(f, VIRTIO_PCI_COMMON_Q_MSIX, 2, 2);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_MSIX, 2), 2);
	/* 64-bit addresses as two halves or one 8-byte write. */
	CW(f, VIRTIO_PCI_COMMON_Q_DESCLO, 0x11223344, 4);
	CW(f, VIRTIO_PCI_COMMON_Q_DESCHI, 0x55667788, 4);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_DESCLO, 8), 0x5566778811223344ULL);
	CW(f, VIRTIO_PCI_COMMON_Q_AVAILLO, 0xaabbccdd00112233ULL, 8);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_AVAILHI, 4), 0xaabbccdd);
	/* Read-only fields. */
	CW(f, VIRTIO_PCI_COMMON_NUMQ, 9, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_NOFF, 9, 2);
	CW(f, VIRTIO_PCI_COMMON_CFGGENERATION, 9, 1);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_NUMQ, 2), 2);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_NOFF, 2), 0);
	/* Enabling with rings outside RAM: refused, and the device needs a reset. */
	assert_false(status(f) & VIRTIO_STATUS_NEEDS_RESET);
	CW(f, VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	assert_true(status(f) & VIRTIO_STATUS_NEEDS_RESET);
	/* Reset clears it all. */
	CW(f, VIRTIO_PCI_COMMON_STATUS, 0, 1);
	assert_int_equal(status(f), 0);
	CW(f, VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_SIZE, 2), QSIZE);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_DESCLO, 8), 0);
	/* Enabling before FEATURES_OK is ignored. */
	CW(f, VIRTIO_PCI_COMMON_Q_DESCLO, DESC, 4);
	CW(f, VIRTIO_PCI_COMMON_Q_AVAILLO, AVAIL, 4);
	CW(f, VIRTIO_PCI_COMMON_Q_USEDLO, USED, 4);
	CW(f, VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	/* With FEATURES_OK it works, and an enabled queue's registers are frozen. */
	assert_true(negotiate(f, STD_FEATURES) & VIRTIO_STATUS_FEATURES_OK);
	setup_queue(f, 0, 1);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
	CW(f, VIRTIO_PCI_COMMON_Q_SIZE, 2, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_DESCLO, 0x8000, 4);
	CW(f, VIRTIO_PCI_COMMON_Q_ENABLE, 0, 2);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_SIZE, 2), QSIZE);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_DESCLO, 4), DESC);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
	assert_false(status(f) & VIRTIO_STATUS_NEEDS_RESET);
	/* Reads anywhere in the region, any width, never fault. */
	for (unsigned off = 0; off < 0x1000; off += 4)
		(void)CR(f, off, 4);
	assert_int_equal(CR(f, 0x100, 4), 0);
}

static void test_kick_used_and_msix(void **state)
{
	struct fx *f = *state;
	uint8_t *buf;
	bool have_route = false;

	bring_up(f);
	assert_int_equal(f->dev.nr_activate, 1);
	/* The routing table KVM got: irqchip routes first, then our MSIs. */
	assert_true(f->kvm.nr_routing >= 1);
	assert_int_equal(f->kvm.routes[0].type, KVM_IRQ_ROUTING_IRQCHIP);
	assert_int_equal(f->kvm.routes[0].u.irqchip.irqchip, KVM_IRQCHIP_IOAPIC);
	for (unsigned i = 0; i < f->kvm.nr_routes; i++) {
		const struct kvm_irq_routing_entry *e = &f->kvm.routes[i];

		if (e->type == KVM_IRQ_ROUTING_MSI && e->gsi == f->vp.vec[1].gsi) {
			assert_int_equal(e->u.msi.address_lo, 0xfee00000);
			assert_int_equal(e->u.msi.data, 0x41);
			have_route = true;
		}
	}
	assert_true(have_route);
	assert_int_equal(f->kvm.nr_routes, IRQ_NR_IRQCHIP_GSI + 16 + 3);

	offer(f, 0, 1, BUF, 32);
	kick(f, 0);
	assert_int_equal(run_loop(f), 1);
	assert_int_equal(f->dev.nr_notify, 1);
	assert_int_equal(used_idx(f, 0), 1);
	buf = gpa(f, BUF, 32);
	assert_int_equal(buf[0], 0xab);
	assert_int_equal(buf[31], 0xab);
	assert_int_equal(get_le(gpa(f, USED + 8, 4), 4), 32);  /* used.ring[0].len */
	assert_int_equal(irqs(f, 1), 1);
	assert_int_equal(irqs(f, 0), 0);
	assert_int_equal(irqs(f, 2), 0);
	/* No kick: nothing runs. */
	assert_int_equal(run_loop(f), 0);
	/* Queue 1 goes to vector 2. */
	offer(f, 1, 1, BUF + 0x100, 8);
	kick(f, 1);
	assert_int_equal(run_loop(f), 1);
	assert_int_equal(used_idx(f, 1), 1);
	assert_int_equal(irqs(f, 2), 1);
	/* The ISR is not needed with MSI-X but still reads and clears. */
	assert_int_equal(rd(f, f->bar2 + VPCI_ISR, 1), VIRTIO_PCI_ISR_QUEUE);
	assert_int_equal(rd(f, f->bar2 + VPCI_ISR, 1), 0);
	/* vhost-user accessors: the very fds KVM has. */
	assert_int_equal(virtio_pci_queue_kick_fd(&f->vp, 0),
			 ioeventfd_at(&f->kvm, f->bar2 + VPCI_NOTIFY));
	assert_int_equal(virtio_pci_queue_call_fd(&f->vp, 1), notifier_fd(&f->vp.vec[2].irqfd));
	assert_int_equal(virtio_pci_queue_kick_fd(&f->vp, 2), -1);
	assert_int_equal(virtio_pci_queue_call_fd(&f->vp, 9), -1);
}

/*
 * A table of two (vsock's): config and one vector the queues share. The
 * capability says so, a queue cannot take vector 2, and both queues' used
 * buffers raise vector 1. A device asking for 1 vector, or more than one per
 * queue and one more, is refused.
 */
static void test_shared_vector(void **state)
{
	struct fx *f = *state;
	struct virtio_pci other;

	assert_int_equal(rd(f, cfg_addr(f, f->vp.msix_cap + 2), 2) & 0x7ff, 1);
	CW(f, VIRTIO_PCI_COMMON_Q_SELECT, 1, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_MSIX, 2, 2);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	bring_up(f);
	for (unsigned q = 0; q < 2; q++) {
		CW(f, VIRTIO_PCI_COMMON_Q_SELECT, q, 2);
		assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_MSIX, 2), 1);
		offer(f, q, 1, BUF + q * 0x100, 16);
		kick(f, q);
		assert_int_equal(run_loop(f), 1);
		assert_int_equal(used_idx(f, q), 1);
		assert_int_equal(irqs(f, 1), 1);
		assert_int_equal(irqs(f, 0), 0);
	}
	f->vdev.msix_vectors = 1;
	assert_int_equal(virtio_pci_init(&other, &f->vdev, &f->pb, &f->irq, f->vm.loop), -EINVAL);
	f->vdev.msix_vectors = 4;
	assert_int_equal(virtio_pci_init(&other, &f->vdev, &f->pb, &f->irq, f->vm.loop), -EINVAL);
	f->vdev.msix_vectors = 2;
}

static void test_msix_mask_pba_and_garbage(void **state)
{
	struct fx *f = *state;
	uint64_t pba = f->bar0 + VPCI_MSIX_PBA;
	unsigned commits;

	bring_up(f);
	/* Mask vector 1: the interrupt becomes a pending bit. */
	wr(f, f->bar0 + 16 + 12, 1, 4);
	offer(f, 0, 1, BUF, 8);
	kick(f, 0);
	assert_int_equal(run_loop(f), 1);
	assert_int_equal(irqs(f, 1), 0);
	assert_int_equal(rd(f, pba, 8), 1u << 1);
	assert_int_equal(virtio_pci_queue_call_fd(&f->vp, 0), notifier_fd(&f->vp.vec[1].irqfd));
	/* The PBA is read-only. */
	wr(f, pba, 0, 8);
	assert_int_equal(rd(f, pba, 4), 1u << 1);
	/* Unmask: delivered, pending bit cleared. */
	wr(f, f->bar0 + 16 + 12, 0, 4);
	assert_int_equal(irqs(f, 1), 1);
	assert_int_equal(rd(f, pba, 8), 0);

	/* Function mask holds every vector. */
	msix_enable(f, PCI_MSIX_CTRL_MASKALL);
	offer(f, 0, 2, BUF, 8);
	kick(f, 0);
	assert_int_equal(run_loop(f), 1);
	assert_int_equal(irqs(f, 1), 0);
	assert_int_equal(rd(f, pba, 4), 1u << 1);
	msix_enable(f, 0);
	assert_int_equal(irqs(f, 1), 1);

	/* Garbage messages: not routed, the interrupt is dropped (and counted), nothing breaks. */
	commits = f->irq.nr_commits;
	program_vector(f, 1, 0x12345678, 0x41, false);
	program_vector(f, 2, 0xfee00000, 0x05, false);          /* vector < 16 */
	program_vector(f, 0, 0xfee00000, 0x41 | 7 << 8, false); /* ExtINT */
	assert_false(f->vp.vec[1].routed);
	assert_false(f->vp.vec[2].routed);
	assert_false(f->vp.vec[0].routed);
	assert_true(f->irq.nr_commits > commits);  /* the old routes were withdrawn */
	offer(f, 0, 3, BUF, 8);
	kick(f, 0);
	assert_int_equal(run_loop(f), 1);
	assert_int_equal(used_idx(f, 0), 3);
	assert_int_equal(irqs(f, 1), 0);
	assert_int_equal(f->vp.nr_dropped, 1);
	/* A valid message again: routed at unmask. */
	program_vector(f, 1, 0xfee01000, 0x51, false);
	assert_true(f->vp.vec[1].routed);

	/* Odd accesses to the table: 1- and 2-byte, unaligned, past the last entry. */
	wr(f, f->bar0 + 16, 0xffff, 2);
	wr(f, f->bar0 + 17, 0xff, 1);
	wr(f, f->bar0 + 18, 0xffffffff, 4);
	assert_int_equal(rd(f, f->bar0 + 16, 4), 0xfee01000);
	wr(f, f->bar0 + 3 * 16, 0xfee00000, 4);
	assert_int_equal(rd(f, f->bar0 + 3 * 16, 4), 0);
	assert_int_equal(rd(f, f->bar0 + 0xffc, 4), 0);
	/* Reserved control bits stay 0. */
	wr(f, f->bar0 + 16 + 12, 0xfffffffe, 4);
	assert_int_equal(rd(f, f->bar0 + 16 + 12, 4), 0);
	/* MSI-X off: no interrupt at all (no INTx), but nothing crashes. */
	wr(f, cfg_addr(f, f->vp.msix_cap + 2), 0, 2);
	offer(f, 0, 4, BUF, 8);
	kick(f, 0);
	assert_int_equal(run_loop(f), 1);
	assert_int_equal(irqs(f, 1), 0);
}

static void test_malformed_chain_needs_reset(void **state)
{
	struct fx *f = *state;
	unsigned resets;

	bring_up(f);
	/* A buffer far outside RAM. */
	offer(f, 0, 1, 0x7fff00000000ULL, 64);
	kick(f, 0);
	assert_int_equal(run_loop(f), 1);
	assert_true(f->dev.last_pop < 0);
	assert_true(status(f) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(irqs(f, 0), 1);  /* the config-change interrupt, once */
	assert_int_equal(rd(f, f->bar2 + VPCI_ISR, 1) & VIRTIO_PCI_ISR_CONFIG, VIRTIO_PCI_ISR_CONFIG);
	/* Kicking a broken queue again: no crash, no second config interrupt. */
	kick(f, 0);
	assert_int_equal(run_loop(f), 1);
	assert_int_equal(irqs(f, 0), 0);
	/* Reset from NEEDS_RESET: back to a clean device, and kicks no longer reach it. */
	resets = f->dev.nr_reset;
	CW(f, VIRTIO_PCI_COMMON_STATUS, 0, 1);
	assert_int_equal(status(f), 0);
	assert_int_equal(f->dev.nr_reset, resets + 1);
	assert_false(virtq_is_enabled(&f->vdev.vqs[0]));
	assert_false(virtq_is_broken(&f->vdev.vqs[0]));
	kick(f, 0);
	assert_int_equal(run_loop(f), 0);
	/* And the device works again after a fresh bring-up (the stale kick is harmless). */
	memset(gpa(f, AVAIL, 4), 0, 4);
	memset(gpa(f, USED, 4), 0, 4);
	bring_up(f);
	offer(f, 0, 1, BUF, 8);
	kick(f, 0);
	assert_int_equal(run_loop(f), 1);
	assert_int_equal(used_idx(f, 0), 1);
	assert_false(status(f) & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_reset_from_every_state(void **state)
{
	struct fx *f = *state;
	static const uint8_t states[] = { 0x01, 0x03, 0x0b, 0x0f, 0x8b, 0x80 };

	for (unsigned i = 0; i < ARRAY_SIZE(states); i++) {
		assert_true(negotiate(f, STD_FEATURES) & VIRTIO_STATUS_FEATURES_OK);
		setup_queue(f, 0, 1);
		if (states[i] & VIRTIO_STATUS_DRIVER_OK)
			CW(f, VIRTIO_PCI_COMMON_STATUS, states[i], 1);
		CW(f, VIRTIO_PCI_COMMON_STATUS, 0, 1);
		assert_int_equal(status(f), 0);
		assert_false(virtq_is_enabled(&f->vdev.vqs[0]));
	}
	assert_int_equal(f->dev.nr_reset, 2 * ARRAY_SIZE(states));
}

static void test_activate_failure(void **state)
{
	struct fx *f = *state;

	f->dev.activate_ret = -EIO;
	assert_true(negotiate(f, STD_FEATURES) & VIRTIO_STATUS_FEATURES_OK);
	setup_queue(f, 0, 1);
	CW(f, VIRTIO_PCI_COMMON_STATUS, 0x0f, 1);
	assert_int_equal(status(f), 0x0f | VIRTIO_STATUS_NEEDS_RESET);
	kick(f, 0);
	assert_int_equal(run_loop(f), 0);  /* never went live */
}

static void test_notify_trap_path(void **state)
{
	struct fx *f = *state;

	bring_up(f);
	offer(f, 0, 1, BUF, 8);
	/* A write that reaches the BAR (one KVM did not catch) is forwarded. */
	wr(f, f->bar2 + VPCI_NOTIFY, 0, 4);
	assert_int_equal(run_loop(f), 1);
	assert_int_equal(used_idx(f, 0), 1);
	assert_int_equal(f->vp.nr_trapped_kicks, 1);
	/* Notifications for queues that do not exist or at odd offsets: ignored. */
	wr(f, f->bar2 + VPCI_NOTIFY + 8, 0, 4);
	wr(f, f->bar2 + VPCI_NOTIFY + 0xffc, 0, 4);
	wr(f, f->bar2 + VPCI_NOTIFY + 2, 0, 2);
	assert_int_equal(run_loop(f), 0);
	assert_int_equal(rd(f, f->bar2 + VPCI_NOTIFY, 2), 0);
	/* Kick of a disabled queue before DRIVER_OK: nothing runs. */
	CW(f, VIRTIO_PCI_COMMON_STATUS, 0, 1);
	wr(f, f->bar2 + VPCI_NOTIFY + 4, 1, 4);
	assert_int_equal(run_loop(f), 0);
	assert_int_equal(f->dev.nr_notify, 1);
}

static void test_bar_moves_ioeventfds(void **state)
{
	struct fx *f = *state;
	uint64_t bar = cfg_addr(f, PCI_BAR0 + 4 * VPCI_BAR), moved = MEM64_BASE + 0x100000;

	bring_up(f);
	/* Memory decoding off: the ioeventfds go, no access reaches the device. */
	wr(f, cfg_addr(f, PCI_COMMAND), 0, 2);
	assert_int_equal(nr_ioeventfds(&f->kvm), 0);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_NUMQ, 2), 0xffff);
	/* Move BAR 2 and turn decoding back on: the ioeventfds follow. */
	wr(f, bar, (uint32_t)moved | PCI_BAR_MEM64_FLAG, 4);
	wr(f, bar + 4, moved >> 32, 4);
	wr(f, cfg_addr(f, PCI_COMMAND), PCI_CMD_MEM, 2);
	assert_int_equal(nr_ioeventfds(&f->kvm), 2);
	assert_true(ioeventfd_at(&f->kvm, moved + VPCI_NOTIFY) >= 0);
	assert_int_equal(ioeventfd_at(&f->kvm, f->bar2 + VPCI_NOTIFY), -1);
	f->bar2 = moved;
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_NUMQ, 2), 2);
	offer(f, 0, 1, BUF, 8);
	kick(f, 0);
	assert_int_equal(run_loop(f), 1);
	assert_int_equal(used_idx(f, 0), 1);
	/* Moved with decoding on, to a place outside every window: gone again. */
	wr(f, bar + 4, 0xffffffff, 4);
	assert_int_equal(nr_ioeventfds(&f->kvm), 0);
}

/* A KVM that refuses any-width ioeventfds: 2-byte ones, moved and removed alike. */
static void test_ioeventfd_fixed_width_fallback(void **state)
{
	struct fx *f = *state;
	uint64_t bar = cfg_addr(f, PCI_BAR0 + 4 * VPCI_BAR), moved = MEM64_BASE + 0x100000;

	wr(f, cfg_addr(f, PCI_COMMAND), 0, 2);
	assert_int_equal(nr_ioeventfds(&f->kvm), 0);
	f->kvm.no_any_length = true;
	wr(f, bar, (uint32_t)moved | PCI_BAR_MEM64_FLAG, 4);
	wr(f, bar + 4, moved >> 32, 4);
	wr(f, cfg_addr(f, PCI_COMMAND), PCI_CMD_MEM, 2);
	f->bar2 = moved;
	assert_int_equal(nr_ioeventfds(&f->kvm), 2);
	for (unsigned i = 0; i < f->kvm.nr_ioev; i++)
		if (f->kvm.ioev[i].on)
			assert_int_equal(f->kvm.ioev[i].len, 2);
	bring_up(f);
	offer(f, 0, 1, BUF, 8);
	kick(f, 0);
	assert_int_equal(run_loop(f), 1);
	assert_int_equal(used_idx(f, 0), 1);
	assert_int_equal(f->vp.nr_trapped_kicks, 0);
	/* Removal names the width it was registered with (the fake refuses others). */
	wr(f, cfg_addr(f, PCI_COMMAND), 0, 2);
	assert_int_equal(nr_ioeventfds(&f->kvm), 0);
}

static void test_device_config_and_generation(void **state)
{
	struct fx *f = *state;
	uint8_t gen;

	bring_up(f);
	memcpy(f->dev.cfg, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
	assert_int_equal(rd(f, f->bar2 + VPCI_DEVICE, 4), 0x04030201);
	assert_int_equal(rd(f, f->bar2 + VPCI_DEVICE + 4, 4), 0x08070605);
	/* Beyond config_size: zeros, and writes do not reach the device. */
	assert_int_equal(rd(f, f->bar2 + VPCI_DEVICE + 6, 4), 0);
	assert_int_equal(rd(f, f->bar2 + VPCI_DEVICE + 0x800, 8), 0);
	wr(f, f->bar2 + VPCI_DEVICE + 6, 0xffffffff, 4);
	wr(f, f->bar2 + VPCI_DEVICE + 0xffc, 0xffffffff, 4);
	assert_int_equal(f->dev.cfg[6], 7);
	wr(f, f->bar2 + VPCI_DEVICE + 2, 0xbeef, 2);
	assert_int_equal(f->dev.cfg[2], 0xef);

	/* A config change bumps the generation and raises the config vector. */
	gen = (uint8_t)CR(f, VIRTIO_PCI_COMMON_CFGGENERATION, 1);
	virtio_dev_config_begin(&f->vdev);
	f->dev.cfg[0] = 0x99;
	virtio_dev_config_end(&f->vdev);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_CFGGENERATION, 1), (uint8_t)(gen + 1));
	assert_int_equal(irqs(f, 0), 1);
	assert_int_equal(rd(f, f->bar2 + VPCI_ISR, 1), VIRTIO_PCI_ISR_CONFIG);
}

static void test_pci_cfg_access_window(void **state)
{
	struct fx *f = *state;
	unsigned c = f->vp.cfg_cap;

	/* Read num_queues through configuration space (4.1.4.9). */
	wr(f, cfg_addr(f, c + 4), VPCI_BAR, 1);
	wr(f, cfg_addr(f, c + 8), VPCI_COMMON + VIRTIO_PCI_COMMON_NUMQ, 4);
	wr(f, cfg_addr(f, c + 12), 2, 4);
	assert_int_equal(rd(f, cfg_addr(f, c + 16), 2), 2);
	/* Write device_status through it. */
	wr(f, cfg_addr(f, c + 8), VPCI_COMMON + VIRTIO_PCI_COMMON_STATUS, 4);
	wr(f, cfg_addr(f, c + 12), 1, 4);
	wr(f, cfg_addr(f, c + 16), VIRTIO_STATUS_ACKNOWLEDGE, 1);
	assert_int_equal(status(f), VIRTIO_STATUS_ACKNOWLEDGE);
	/* Bad windows read 0 and write nothing: length 3, misaligned, past the BAR, BAR 5. */
	wr(f, cfg_addr(f, c + 12), 3, 4);
	assert_int_equal(rd(f, cfg_addr(f, c + 16), 4), 0);
	wr(f, cfg_addr(f, c + 8), 0x15, 4);
	wr(f, cfg_addr(f, c + 12), 2, 4);
	assert_int_equal(rd(f, cfg_addr(f, c + 16), 4), 0);
	wr(f, cfg_addr(f, c + 8), 0xfffffffc, 4);
	wr(f, cfg_addr(f, c + 12), 4, 4);
	wr(f, cfg_addr(f, c + 16), 0, 4);
	assert_int_equal(rd(f, cfg_addr(f, c + 16), 4), 0);
	wr(f, cfg_addr(f, c + 4), 5, 1);
	wr(f, cfg_addr(f, c + 8), 0, 4);
	assert_int_equal(rd(f, cfg_addr(f, c + 16), 4), 0);
	assert_int_equal(status(f), VIRTIO_STATUS_ACKNOWLEDGE);
	/* Through it to the MSI-X table. */
	wr(f, cfg_addr(f, c + 4), VPCI_MSIX_BAR, 1);
	wr(f, cfg_addr(f, c + 8), 12, 4);
	assert_int_equal(rd(f, cfg_addr(f, c + 16), 4), PCI_MSIX_ENTRY_MASKED);
}

static void test_pause_resume(void **state)
{
	struct fx *f = *state;

	bring_up(f);
	assert_int_equal(virtio_pci_pause(&f->vp), 0);
	offer(f, 0, 1, BUF, 8);
	kick(f, 0);
	assert_int_equal(run_loop(f), 0);
	assert_int_equal(used_idx(f, 0), 0);
	assert_int_equal(virtio_pci_resume(&f->vp), 0);
	/* The kick waited in the eventfd. */
	assert_int_equal(run_loop(f), 1);
	assert_int_equal(used_idx(f, 0), 1);
}

static void test_irq_router(void **state)
{
	struct fx *f = *state;
	struct kvm_irq_routing *t = calloc(1, irq_routing_table_size());
	uint32_t gsi, gsi2;
	unsigned pic = 0, ioapic = 0;

	assert_non_null(t);
	irq_build_routing(&f->irq, t);
	for (unsigned i = 0; i < t->nr; i++) {
		assert_int_equal(t->entries[i].type, KVM_IRQ_ROUTING_IRQCHIP);
		if (t->entries[i].u.irqchip.irqchip == KVM_IRQCHIP_IOAPIC) {
			assert_int_equal(t->entries[i].u.irqchip.pin, t->entries[i].gsi);
			ioapic++;
		} else {
			assert_int_equal(t->entries[i].u.irqchip.pin, t->entries[i].gsi % 8);
			pic++;
		}
	}
	assert_int_equal(ioapic, 24);
	assert_int_equal(pic, 16);

	assert_true(irq_msi_valid(0xfee00000, 0, 0x30));
	assert_true(irq_msi_valid(0xfeeff00c, 0, 0x1ff));
	assert_false(irq_msi_valid(0xfed00000, 0, 0x30));
	assert_false(irq_msi_valid(0xfee00000, 1, 0x30));
	assert_false(irq_msi_valid(0xfee00000, 0, 0x0f));
	assert_false(irq_msi_valid(0xfee00000, 0, 0x430));   /* SMI */
	assert_false(irq_msi_valid(0xfee00000, 0, 0x10030)); /* reserved bits */

	assert_int_equal(irq_msi_alloc(&f->irq, &gsi), 0);
	assert_true(gsi >= IRQ_FIRST_MSI_GSI);
	assert_int_equal(irq_msi_route(&f->irq, gsi, 0xfee00000, 0, 0x30), 0);
	irq_build_routing(&f->irq, t);
	assert_int_equal(t->nr, 40 + 1 + 0);
	assert_int_equal(t->entries[40].gsi, gsi);
	/* The same route again costs no commit; a bad one withdraws it. */
	{
		unsigned n = f->irq.nr_commits;

		assert_int_equal(irq_msi_route(&f->irq, gsi, 0xfee00000, 0, 0x30), 0);
		assert_int_equal(f->irq.nr_commits, n);
		assert_int_equal(irq_msi_route(&f->irq, gsi, 0, 0, 0), -EINVAL);
		assert_int_equal(f->irq.nr_commits, n + 1);
	}
	irq_build_routing(&f->irq, t);
	assert_int_equal(t->nr, 40);
	/* Unallocated or out-of-range GSIs are refused. */
	assert_int_equal(irq_msi_route(&f->irq, 3, 0xfee00000, 0, 0x30), -EINVAL);
	assert_int_equal(irq_msi_route(&f->irq, 100000, 0xfee00000, 0, 0x30), -EINVAL);
	irq_msi_free(&f->irq, gsi);
	assert_int_equal(irq_msi_route(&f->irq, gsi, 0xfee00000, 0, 0x30), -EINVAL);
	assert_int_equal(irq_msi_alloc(&f->irq, &gsi2), 0);
	assert_int_equal(gsi2, gsi);  /* freed GSIs are reused */
	irq_msi_free(&f->irq, gsi2);
	assert_int_equal(irq_ioeventfd_assign(&f->irq, 1, 0, 3, false), -EINVAL);
	free(t);
}

/* Once detached (the VM is going away), nothing reaches KVM: removals succeed, additions fail. */
static void test_irq_router_detach(void **state)
{
	struct fake_kvm k = { 0 };
	struct irq_router r;
	uint32_t gsi;
	unsigned commits;

	(void)state;
	assert_int_equal(irq_router_init_ops(&r, &fake_ops, &k), 0);
	assert_int_equal(irq_msi_alloc(&r, &gsi), 0);
	assert_int_equal(irq_msi_route(&r, gsi, 0xfee00000, 0, 0x30), 0);
	assert_int_equal(irq_irqfd_assign(&r, 7, gsi), 0);
	assert_int_equal(irq_ioeventfd_assign(&r, 8, 0x100000000ULL, 2, false), 0);
	commits = k.nr_routing;

	irq_router_detach(&r);
	assert_int_equal(irq_irqfd_deassign(&r, 7, gsi), 0);
	assert_int_equal(irq_ioeventfd_deassign(&r, 8, 0x100000000ULL, 2, false), 0);
	irq_msi_free(&r, gsi);
	assert_int_equal(k.nr_routing, commits);      /* no KVM_SET_GSI_ROUTING */
	assert_true(k.irqfd[0].on);                    /* left for the VM's close */
	assert_int_equal(nr_ioeventfds(&k), 1);
	assert_int_equal(irq_irqfd_assign(&r, 9, gsi), -ENODEV);
	assert_int_equal(irq_ioeventfd_assign(&r, 9, 0x100001000ULL, 2, false), -ENODEV);
	irq_router_destroy(&r);
}

/* The real virtio-rng, end to end over the transport. */
static void test_rng_device(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char err[128] = "";
	uint8_t *buf;
	unsigned distinct = 0;
	bool seen[256] = { false };

	(void)state;
	assert_non_null(f);
	fx_bus(f);
	assert_int_equal(virtio_rng_kind.create(&f->vm, "x=1", &f->vdev, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "x=1"));
	assert_int_equal(virtio_rng_kind.create(&f->vm, "", &f->vdev, err, sizeof(err)), 0);
	assert_int_equal(virtio_pci_init(&f->vp, &f->vdev, &f->pb, &f->irq, f->vm.loop), 0);
	f->bar0 = pci_bar_decode(&f->vp.pci, VPCI_MSIX_BAR);
	f->bar2 = pci_bar_decode(&f->vp.pci, VPCI_BAR);
	assert_int_equal(rd(f, cfg_addr(f, PCI_DEVICE_ID), 2), 0x1044);

	assert_true(negotiate(f, 1ULL << VIRTIO_F_VERSION_1) & VIRTIO_STATUS_FEATURES_OK);
	msix_enable(f, 0);
	program_vector(f, 0, 0xfee00000, 0x40, false);
	program_vector(f, 1, 0xfee00000, 0x41, false);
	setup_queue(f, 0, 1);
	CW(f, VIRTIO_PCI_COMMON_STATUS, 0x0f, 1);
	offer(f, 0, 1, BUF, 4096);
	kick(f, 0);
	assert_int_equal(run_loop(f), 1);
	assert_int_equal(used_idx(f, 0), 1);
	assert_int_equal(get_le(gpa(f, USED + 8, 4), 4), 4096);
	buf = gpa(f, BUF, 4096);
	for (unsigned i = 0; i < 4096; i++) {
		distinct += !seen[buf[i]];
		seen[buf[i]] = true;
	}
	assert_true(distinct > 200);
	assert_int_equal(irqs(f, 1), 1);
	/* Hostile chain: the device needs a reset. */
	offer(f, 0, 2, RAM_SIZE - 16, 64);
	kick(f, 0);
	assert_int_equal(run_loop(f), 1);
	assert_true(status(f) & VIRTIO_STATUS_NEEDS_RESET);

	pci_bus_destroy(&f->pb);
	assert_int_equal(nr_ioeventfds(&f->kvm), 0);
	irq_router_destroy(&f->irq);
	bus_destroy(&f->pio);
	bus_destroy(&f->mmio);
	evloop_destroy(f->vm.loop);
	gmem_destroy(&f->vm.mem);
	free(f);
}

/* ---- queues that go live after DRIVER_OK, and queue reset ---------------------------- */

/* Negotiate, MSI-X on (vector 0 config, 1+q per queue), the queues in `mask` live, DRIVER_OK. */
static void bring_up_queues(struct fx *f, uint64_t features, unsigned mask)
{
	assert_true(negotiate(f, features) & VIRTIO_STATUS_FEATURES_OK);
	msix_enable(f, 0);
	for (unsigned v = 0; v <= f->vdev.num_queues; v++)
		program_vector(f, v, 0xfee00000, 0x40 + v, false);
	CW(f, VIRTIO_PCI_COMMON_MSIX, 0, 2);
	for (unsigned q = 0; q < f->vdev.num_queues; q++)
		if (mask & (1u << q))
			setup_queue(f, q, (uint16_t)(1 + q));
	CW(f, VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
	   VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK, 1);
	assert_int_equal(status(f), 0x0f);
}

/* The rings of queue q as a driver leaves them before enabling it: empty. */
static void clear_rings(struct fx *f, unsigned q)
{
	memset(gpa(f, DESC + q * 0x4000, 0x3000), 0, 0x3000);
}

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

/* Chain number idx (1-based: the avail index it makes) on queue q, four descriptors per chain. */
static void offer_chain(struct fx *f, unsigned q, uint16_t idx, const struct seg *segs, unsigned n)
{
	uint8_t *desc = gpa(f, DESC + q * 0x4000, 16 * QSIZE);
	uint8_t *avail = gpa(f, AVAIL + q * 0x4000, 6 + 2 * QSIZE);
	uint16_t head = (uint16_t)(((idx - 1) * 4) % QSIZE);

	assert_true(n <= 4);
	for (unsigned i = 0; i < n; i++) {
		uint8_t *d = desc + 16 * (head + i);

		put_le(d, segs[i].gpa, 8);
		put_le(d + 8, segs[i].len, 4);
		put_le(d + 12, (segs[i].write ? VIRTQ_DESC_F_WRITE : 0) |
			       (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0), 2);
		put_le(d + 14, head + i + 1, 2);
	}
	put_le(avail + 4 + 2 * ((idx - 1) % QSIZE), head, 2);
	put_le(avail + 4 + 2 * QSIZE, (uint16_t)(idx - 1), 2);
	atomic_thread_fence(memory_order_seq_cst);
	put_le(avail + 2, idx, 2);
}

/* Run the loop (this thread) until queue q's used index is idx, or 5 s pass. */
static void loop_until_used(struct fx *f, unsigned q, uint16_t idx)
{
	uint64_t deadline = monotonic_ns() + 5000000000ULL;

	while (used_idx(f, q) != idx && monotonic_ns() < deadline)
		assert_true(run_loop(f) >= 0);
	assert_int_equal(used_idx(f, q), idx);
}

static struct fx *fx_new(void)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	fx_bus(f);
	return f;
}

/* The transport around the device create() made in f->vdev. */
static void fx_attach(struct fx *f)
{
	assert_int_equal(virtio_pci_init(&f->vp, &f->vdev, &f->pb, &f->irq, f->vm.loop), 0);
	f->bar0 = pci_bar_decode(&f->vp.pci, VPCI_MSIX_BAR);
	f->bar2 = pci_bar_decode(&f->vp.pci, VPCI_BAR);
}

static void fx_free(struct fx *f)
{
	pci_bus_destroy(&f->pb);
	assert_int_equal(nr_ioeventfds(&f->kvm), 0);
	irq_router_destroy(&f->irq);
	bus_destroy(&f->pio);
	bus_destroy(&f->mmio);
	evloop_destroy(f->vm.loop);
	gmem_destroy(&f->vm.mem);
	free(f);
}

/* A 64-sector image, sector s filled with (s + 1) & 0xff; unlinked at once (the fd lives on). */
static struct fx *fx_blk(void)
{
	struct fx *f = fx_new();
	char path[64] = "/tmp/test_virtio_pci_blk.XXXXXX", args[128], err[128] = "";
	uint8_t sector[512];
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	for (unsigned s = 0; s < 64; s++) {
		memset(sector, (int)((s + 1) & 0xff), sizeof(sector));
		assert_int_equal(pwrite(fd, sector, sizeof(sector), (off_t)s * 512), 512);
	}
	snprintf(args, sizeof(args), "path=%s,queues=2", path);
	assert_int_equal(virtio_blk_kind.create(&f->vm, args, &f->vdev, err, sizeof(err)), 0);
	unlink(path);
	close(fd);
	fx_attach(f);
	return f;
}

/* A read of sector `sector` as chain idx on queue q; its buffers are private to (q, idx % 4). */
static void blk_offer_read(struct fx *f, unsigned q, uint16_t idx, unsigned sector)
{
	uint64_t base = BUF + 0x10000 * q + 0x1000 * (idx % 4);
	struct seg segs[] = {
		{ base, 16, false },
		{ base + 0x200, 512, true },
		{ base + 0x400, 1, true },
	};
	uint8_t hdr[16] = { 0 };

	put_le(hdr, VIRTIO_BLK_T_IN, 4);
	put_le(hdr + 8, sector, 8);
	memcpy(gpa(f, base, 16), hdr, 16);
	*(uint8_t *)gpa(f, base + 0x400, 1) = 0xee;
	offer_chain(f, q, idx, segs, 3);
}

/* The read that chain idx on queue q made: status OK, sector `sector`'s bytes. */
static void blk_check_read(struct fx *f, unsigned q, uint16_t idx, unsigned sector)
{
	uint64_t base = BUF + 0x10000 * q + 0x1000 * (idx % 4);
	const uint8_t *data = gpa(f, base + 0x200, 512);

	assert_int_equal(*(uint8_t *)gpa(f, base + 0x400, 1), VIRTIO_BLK_S_OK);
	for (unsigned i = 0; i < 512; i++)
		assert_int_equal(data[i], (sector + 1) & 0xff);
}

struct netfx {
	struct fx *f;
	int peer;
};

static struct netfx fx_net(void)
{
	struct netfx n = { .f = fx_new() };
	char err[128] = "";
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(virtio_net_create_on_fd(&n.f->vm, sv[0], "", &n.f->vdev, err, sizeof(err)), 0);
	n.peer = sv[1];
	fx_attach(n.f);
	return n;
}

/* A 60-byte frame behind a zero virtio-net header as TX chain idx; byte 14 says which. */
static void net_offer_tx(struct fx *f, uint16_t idx, uint8_t tag)
{
	uint64_t base = BUF + 0x20000 + 0x1000 * (idx % 4);
	uint8_t frame[12 + 60];
	struct seg seg = { base, sizeof(frame), false };

	memset(frame, 0, sizeof(frame));
	memset(frame + 12, 0xff, 6);
	frame[12 + 12] = 0x88;
	frame[12 + 13] = 0xb5;
	frame[12 + 14] = tag;
	memcpy(gpa(f, base, sizeof(frame)), frame, sizeof(frame));
	offer_chain(f, VIRTIO_NET_TXQ, idx, &seg, 1);
}

static void net_expect_frame(int peer, uint8_t tag)
{
	uint8_t buf[256];

	assert_int_equal(recv(peer, buf, sizeof(buf), MSG_DONTWAIT), 12 + 60);
	assert_int_equal(buf[12 + 14], tag);
}

#define F_BASIC (1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_F_EVENT_IDX)
#define F_RESET (F_BASIC | 1ULL << VIRTIO_F_RING_RESET)

/*
 * virtio-blk: queue 1 enabled after DRIVER_OK and kicked. Served, with the
 * data and an interrupt; before the rule it was ignored for ever, silently.
 */
static void test_late_enable_blk(void **state)
{
	struct fx *f = fx_blk();

	(void)state;
	bring_up_queues(f, F_BASIC, 1u << 0);
	blk_offer_read(f, 0, 1, 3);
	kick(f, 0);
	loop_until_used(f, 0, 1);
	blk_check_read(f, 0, 1, 3);

	setup_queue(f, 1, 2);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
	blk_offer_read(f, 1, 1, 40);
	kick(f, 1);
	loop_until_used(f, 1, 1);
	blk_check_read(f, 1, 1, 40);
	assert_int_equal(irqs(f, 2), 1);
	assert_false(status(f) & VIRTIO_STATUS_NEEDS_RESET);
	/* Queue 0 is still served, and the late queue's next request too. */
	blk_offer_read(f, 0, 2, 4);
	blk_offer_read(f, 1, 2, 41);
	kick(f, 0);
	kick(f, 1);
	loop_until_used(f, 0, 2);
	loop_until_used(f, 1, 2);
	blk_check_read(f, 0, 2, 4);
	blk_check_read(f, 1, 2, 41);
	fx_free(f);
}

/* virtio-net: the transmit queue enabled after DRIVER_OK. */
static void test_late_enable_net(void **state)
{
	struct netfx n = fx_net();
	struct fx *f = n.f;

	(void)state;
	bring_up_queues(f, F_BASIC, 1u << VIRTIO_NET_RXQ);
	setup_queue(f, VIRTIO_NET_TXQ, 2);
	net_offer_tx(f, 1, 0x31);
	kick(f, VIRTIO_NET_TXQ);
	loop_until_used(f, VIRTIO_NET_TXQ, 1);
	net_expect_frame(n.peer, 0x31);
	assert_false(status(f) & VIRTIO_STATUS_NEEDS_RESET);
	fx_free(f);
	close(n.peer);
}

/* virtio-rng: no queue at DRIVER_OK, its only queue enabled afterwards. */
static void test_late_enable_rng(void **state)
{
	struct fx *f = fx_new();
	char err[64] = "";

	(void)state;
	assert_int_equal(virtio_rng_kind.create(&f->vm, "", &f->vdev, err, sizeof(err)), 0);
	fx_attach(f);
	bring_up_queues(f, F_BASIC, 0);
	setup_queue(f, 0, 1);
	offer(f, 0, 1, BUF, 64);
	kick(f, 0);
	loop_until_used(f, 0, 1);
	assert_int_equal(get_le(gpa(f, USED + 8, 4), 4), 64);
	assert_int_equal(irqs(f, 1), 1);
	fx_free(f);
}

/* The transport's side: the hook runs once per late queue, and a refusal is NEEDS_RESET, not silence. */
static void test_late_enable_rules(void **state)
{
	struct fx *f = *state;

	bring_up_queues(f, STD_FEATURES, 1u << 0);
	assert_int_equal(f->dev.nr_queue_enable, 0);   /* activate covers queue 0 */
	setup_queue(f, 1, 2);
	assert_int_equal(f->dev.nr_queue_enable, 1);
	offer(f, 1, 1, BUF, 8);
	kick(f, 1);
	assert_int_equal(run_loop(f), 1);
	assert_int_equal(used_idx(f, 1), 1);
	/* Enabling it again changes nothing. */
	CW(f, VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
	assert_int_equal(f->dev.nr_queue_enable, 1);

	/* A device that cannot take the queue: it stays disabled and the driver is told. */
	CW(f, VIRTIO_PCI_COMMON_STATUS, 0, 1);
	memset(gpa(f, AVAIL, 4), 0, 4);
	memset(gpa(f, USED, 4), 0, 4);
	bring_up_queues(f, STD_FEATURES, 1u << 0);
	f->dev.queue_enable_ret = -ENOMEM;
	clear_rings(f, 1);
	setup_queue(f, 1, 2);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	assert_true(status(f) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(irqs(f, 0), 1);
	/* Queue 0 was left as it was. */
	offer(f, 0, 1, BUF, 8);
	kick(f, 0);
	assert_int_equal(run_loop(f), 1);
	assert_int_equal(used_idx(f, 0), 1);
}

/* VIRTIO_F_RING_RESET: the register rules, the device hooks, and the queue serving again. */
static void test_ring_reset(void **state)
{
	struct fx *f = *state;

	/* Not negotiated: queue_reset is ignored. */
	bring_up_queues(f, STD_FEATURES, 3);
	CW(f, VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_RESET, 1, 2);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
	assert_int_equal(f->dev.nr_queue_reset, 0);

	CW(f, VIRTIO_PCI_COMMON_STATUS, 0, 1);
	bring_up_queues(f, STD_FEATURES | 1ULL << VIRTIO_F_RING_RESET, 3);
	offer(f, 0, 1, BUF, 8);
	kick(f, 0);
	assert_int_equal(run_loop(f), 1);
	assert_int_equal(used_idx(f, 0), 1);
	/* Wrong value, wrong width, a queue that does not exist: ignored. */
	CW(f, VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_RESET, 2, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_RESET, 1, 4);
	CW(f, VIRTIO_PCI_COMMON_Q_RESET, 1, 1);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
	CW(f, VIRTIO_PCI_COMMON_Q_SELECT, 7, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_RESET, 1, 2);
	assert_int_equal(f->dev.nr_queue_reset, 0);

	/* Reset queue 0: at once, to the defaults; the device is told, queue 1 is untouched. */
	CW(f, VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_SIZE, QSIZE, 2);  /* frozen: ignored while enabled */
	CW(f, VIRTIO_PCI_COMMON_Q_RESET, 1, 2);
	assert_int_equal(f->dev.nr_queue_reset, 1);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_RESET, 2), 0);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_SIZE, 2), QSIZE);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_DESCLO, 8), 0);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_USEDLO, 8), 0);
	assert_false(status(f) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(status(f), 0x0f);
	offer(f, 0, 2, BUF, 8);
	kick(f, 0);
	assert_int_equal(run_loop(f), 0);          /* not watched while reset */
	offer(f, 1, 1, BUF + 0x100, 8);
	kick(f, 1);
	assert_int_equal(run_loop(f), 1);
	assert_int_equal(used_idx(f, 1), 1);
	/* A second reset of a reset queue: nothing more to tell the device. */
	CW(f, VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_RESET, 1, 2);
	assert_int_equal(f->dev.nr_queue_reset, 1);

	/* Re-enabled with a smaller ring: served from index 0; the stale kick was dropped. */
	clear_rings(f, 0);
	CW(f, VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_SIZE, 8, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_MSIX, 1, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_DESCLO, DESC, 4);
	CW(f, VIRTIO_PCI_COMMON_Q_AVAILLO, AVAIL, 4);
	CW(f, VIRTIO_PCI_COMMON_Q_USEDLO, USED, 4);
	CW(f, VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
	assert_int_equal(f->dev.nr_queue_enable, 1);
	assert_int_equal(run_loop(f), 0);
	(void)irqs(f, 1);
	offer(f, 0, 1, BUF, 8);
	kick(f, 0);
	assert_int_equal(run_loop(f), 1);
	assert_int_equal(used_idx(f, 0), 1);
	assert_int_equal(irqs(f, 1), 1);
	/* A whole-device reset still works, and forgets the feature. */
	CW(f, VIRTIO_PCI_COMMON_STATUS, 0, 1);
	assert_int_equal(status(f), 0);
}

/* Queue reset on the real devices, with work in flight: nothing breaks, the queue serves again. */
static void test_ring_reset_blk(void **state)
{
	struct fx *f = fx_blk();

	(void)state;
	bring_up_queues(f, F_RESET, 3);
	blk_offer_read(f, 1, 1, 10);
	blk_offer_read(f, 1, 2, 11);
	blk_offer_read(f, 0, 1, 12);
	kick(f, 1);
	kick(f, 0);
	assert_true(run_loop(f) >= 1);         /* submitted; completions not reaped yet */
	CW(f, VIRTIO_PCI_COMMON_Q_SELECT, 1, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_RESET, 1, 2);
	assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	assert_false(status(f) & VIRTIO_STATUS_NEEDS_RESET);
	loop_until_used(f, 0, 1);
	blk_check_read(f, 0, 1, 12);
	/* Queue 1 again, four times round its ring. */
	clear_rings(f, 1);
	setup_queue(f, 1, 2);
	for (uint16_t idx = 1; idx <= 2 * QSIZE; idx++) {
		blk_offer_read(f, 1, idx, idx % 64);
		kick(f, 1);
		loop_until_used(f, 1, idx);
		blk_check_read(f, 1, idx, idx % 64);
	}
	/* And reset it while a request sits in the ring, not yet kicked. */
	blk_offer_read(f, 1, 2 * QSIZE + 1, 5);
	CW(f, VIRTIO_PCI_COMMON_Q_RESET, 1, 2);
	assert_int_equal(used_idx(f, 1), 2 * QSIZE);
	assert_false(status(f) & VIRTIO_STATUS_NEEDS_RESET);
	fx_free(f);
}

static void test_ring_reset_net(void **state)
{
	struct netfx n = fx_net();
	struct fx *f = n.f;

	(void)state;
	bring_up_queues(f, F_RESET, 3);
	net_offer_tx(f, 1, 1);
	kick(f, VIRTIO_NET_TXQ);
	loop_until_used(f, VIRTIO_NET_TXQ, 1);
	net_expect_frame(n.peer, 1);
	for (unsigned q = 0; q < 2; q++) {
		CW(f, VIRTIO_PCI_COMMON_Q_SELECT, q, 2);
		CW(f, VIRTIO_PCI_COMMON_Q_RESET, 1, 2);
		assert_int_equal(CR(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	}
	while (run_loop(f) > 0)
		;
	for (unsigned q = 0; q < 2; q++) {
		clear_rings(f, q);
		setup_queue(f, q, (uint16_t)(1 + q));
	}
	net_offer_tx(f, 1, 2);
	kick(f, VIRTIO_NET_TXQ);
	loop_until_used(f, VIRTIO_NET_TXQ, 1);
	net_expect_frame(n.peer, 2);
	assert_false(status(f) & VIRTIO_STATUS_NEEDS_RESET);
	fx_free(f);
	close(n.peer);
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/*
 * virtio-rng and a full ring of 64 KiB buffers (16 MiB of getrandom, tens of
 * ms): served across several callbacks, none holding the shared loop for
 * more than about a millisecond.
 */
static void test_rng_does_not_hog_the_loop(void **state)
{
	enum { RING = 0x40000, RSIZE = 256, RBUF = 0x80000 };
	struct fx *f = fx_new();
	uint8_t *desc, *avail;
	uint64_t worst = 0;
	unsigned calls = 0;
	char err[64] = "";

	(void)state;
	assert_int_equal(virtio_rng_kind.create(&f->vm, "", &f->vdev, err, sizeof(err)), 0);
	fx_attach(f);
	bring_up_queues(f, F_BASIC, 0);
	CW(f, VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_SIZE, RSIZE, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_MSIX, 1, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_DESCLO, RING, 8);
	CW(f, VIRTIO_PCI_COMMON_Q_AVAILLO, RING + 0x1000, 8);
	CW(f, VIRTIO_PCI_COMMON_Q_USEDLO, RING + 0x2000, 8);
	CW(f, VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
	/* Every chain is the same 64 KiB buffer: the device cannot tell. */
	desc = gpa(f, RING, 16 * RSIZE);
	avail = gpa(f, RING + 0x1000, 6 + 2 * RSIZE);
	for (unsigned i = 0; i < RSIZE; i++) {
		put_le(desc + 16 * i, RBUF, 8);
		put_le(desc + 16 * i + 8, 64 * 1024, 4);
		put_le(desc + 16 * i + 12, VIRTQ_DESC_F_WRITE, 2);
		put_le(avail + 4 + 2 * i, i, 2);
	}
	atomic_thread_fence(memory_order_seq_cst);
	put_le(avail + 2, RSIZE, 2);
	kick(f, 0);
	while (get_le(gpa(f, RING + 0x2000 + 2, 2), 2) != RSIZE && calls < 10000) {
		uint64_t t0 = thread_cpu_ns();
		int n = evloop_run_once(f->vm.loop, 100);

		assert_true(n > 0);
		worst = MAX(worst, thread_cpu_ns() - t0);
		calls++;
	}
	assert_int_equal(get_le(gpa(f, RING + 0x2000 + 2, 2), 2), RSIZE);
	assert_int_equal(get_le(gpa(f, RING + 0x2000 + 4 + 8 * (RSIZE - 1) + 4, 4), 4), 64 * 1024);
	if (worst > 10000000)
		fail_msg("one pass of the loop took %.1f ms of CPU", worst / 1e6);
	assert_true(calls > 1);
	assert_false(status(f) & VIRTIO_STATUS_NEEDS_RESET);
	fx_free(f);
}

/* ---- the devices with the event loop on a thread of its own, as in the VMM ------------- */

struct loop_thread {
	struct fx *f;
	pthread_t thread;
};

static void *loop_main(void *arg)
{
	struct loop_thread *t = arg;

	assert_int_equal(evloop_run(t->f->vm.loop), 0);
	return NULL;
}

static void loop_start(struct loop_thread *t, struct fx *f)
{
	t->f = f;
	assert_int_equal(pthread_create(&t->thread, NULL, loop_main, t), 0);
}

static void loop_stop(struct loop_thread *t)
{
	evloop_stop(t->f->vm.loop);
	assert_int_equal(pthread_join(t->thread, NULL), 0);
}

struct barrier {
	struct evloop_op op;
	int efd;
};

static void barrier_done(struct evloop_op *op, int result, void *opaque)
{
	struct barrier *b = opaque;
	uint64_t one = 1;

	(void)op;
	(void)result;
	assert_int_equal(write(b->efd, &one, sizeof(one)), (ssize_t)sizeof(one));
}

/* The loop thread has finished whatever it was running: what it wrote is ours to read. */
static void loop_barrier(struct fx *f)
{
	struct barrier b = { .efd = eventfd(0, EFD_CLOEXEC) };
	uint64_t v;

	assert_true(b.efd >= 0);
	assert_int_equal(evloop_op_start(f->vm.loop, &b.op, barrier_done, &b), 0);
	assert_int_equal(evloop_op_complete(&b.op, 0), 0);
	assert_int_equal(read(b.efd, &v, sizeof(v)), (ssize_t)sizeof(v));
	close(b.efd);
}

/* Wait for vector v's interrupt (the device finished), then for the loop to be idle. */
static void wait_irq(struct fx *f, unsigned v)
{
	struct pollfd p = { .fd = notifier_fd(&f->vp.vec[v].irqfd), .events = POLLIN };

	assert_int_equal(poll(&p, 1, 10000), 1);
	assert_true(irqs(f, v) >= 1);
	loop_barrier(f);
}

/*
 * virtio-blk with the loop on its own thread, the test being the vCPU:
 * requests, pause/resume with I/O in flight, a late queue, queue resets and
 * device resets. Under TSan this checks who touches what from which thread.
 */
static void test_blk_with_loop_thread(void **state)
{
	struct fx *f = fx_blk();
	struct loop_thread t;

	(void)state;
	loop_start(&t, f);
	for (unsigned round = 0; round < 8; round++) {
		bring_up_queues(f, F_RESET, 1u << 0);
		loop_barrier(f);
		for (uint16_t idx = 1; idx <= 6; idx++) {
			blk_offer_read(f, 0, idx, idx + round);
			kick(f, 0);
			if (idx == 3) {
				/* Pause with the request maybe in flight: it is completed by then. */
				assert_int_equal(virtio_pci_pause(&f->vp), 0);
				assert_int_equal(virtio_pci_resume(&f->vp), 0);
				loop_barrier(f);
			}
			wait_irq(f, 1);
			assert_int_equal(used_idx(f, 0), idx);
			blk_check_read(f, 0, idx, idx + round);
		}
		/*
		 * Queue 1 late, used, reset, used again. Each change resumes the
		 * device, which then looks at its rings on the loop: the barrier
		 * keeps this "driver" off them meanwhile, for TSan's sake.
		 */
		clear_rings(f, 1);
		setup_queue(f, 1, 2);
		loop_barrier(f);
		blk_offer_read(f, 1, 1, 20 + round);
		kick(f, 1);
		wait_irq(f, 2);
		blk_check_read(f, 1, 1, 20 + round);
		blk_offer_read(f, 1, 2, 30);
		kick(f, 1);
		CW(f, VIRTIO_PCI_COMMON_Q_SELECT, 1, 2);
		CW(f, VIRTIO_PCI_COMMON_Q_RESET, 1, 2);
		loop_barrier(f);
		(void)irqs(f, 2);   /* the request may have completed before the reset */
		clear_rings(f, 1);
		setup_queue(f, 1, 2);
		loop_barrier(f);
		blk_offer_read(f, 1, 1, 31);
		kick(f, 1);
		wait_irq(f, 2);
		blk_check_read(f, 1, 1, 31);
		assert_false(status(f) & VIRTIO_STATUS_NEEDS_RESET);
		/* A device reset with a request just kicked. */
		blk_offer_read(f, 0, 7, 1);
		kick(f, 0);
		CW(f, VIRTIO_PCI_COMMON_STATUS, 0, 1);
		loop_barrier(f);
		(void)irqs(f, 1);
		(void)irqs(f, 2);
		clear_rings(f, 0);
		clear_rings(f, 1);
	}
	loop_stop(&t);
	fx_free(f);
}

/* virtio-net and virtio-rng the same way: traffic, pause/resume, queue reset, device reset. */
static void test_net_and_rng_with_loop_thread(void **state)
{
	struct netfx n = fx_net();
	struct fx *f = n.f, *r = fx_new();
	struct loop_thread t, tr;
	char err[64] = "";

	(void)state;
	assert_int_equal(virtio_rng_kind.create(&r->vm, "", &r->vdev, err, sizeof(err)), 0);
	fx_attach(r);
	loop_start(&t, f);
	loop_start(&tr, r);
	for (unsigned round = 0; round < 8; round++) {
		bring_up_queues(f, F_RESET, 3);
		bring_up_queues(r, F_RESET, 1);
		loop_barrier(f);
		for (uint16_t idx = 1; idx <= 5; idx++) {
			net_offer_tx(f, idx, (uint8_t)(idx + round));
			kick(f, VIRTIO_NET_TXQ);
			offer(r, 0, idx, BUF, 32);
			kick(r, 0);
			if (idx == 2) {
				assert_int_equal(virtio_pci_pause(&f->vp), 0);
				assert_int_equal(virtio_pci_resume(&f->vp), 0);
				loop_barrier(f);
			}
			wait_irq(f, 2);
			wait_irq(r, 1);
			net_expect_frame(n.peer, (uint8_t)(idx + round));
		}
		CW(f, VIRTIO_PCI_COMMON_Q_SELECT, VIRTIO_NET_TXQ, 2);
		CW(f, VIRTIO_PCI_COMMON_Q_RESET, 1, 2);
		CW(r, VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
		CW(r, VIRTIO_PCI_COMMON_Q_RESET, 1, 2);
		loop_barrier(f);
		loop_barrier(r);
		(void)irqs(f, 2);
		(void)irqs(r, 1);
		clear_rings(f, VIRTIO_NET_TXQ);
		clear_rings(r, 0);
		setup_queue(f, VIRTIO_NET_TXQ, 2);
		setup_queue(r, 0, 1);
		loop_barrier(f);
		loop_barrier(r);
		net_offer_tx(f, 1, 0x77);
		kick(f, VIRTIO_NET_TXQ);
		offer(r, 0, 1, BUF, 32);
		kick(r, 0);
		wait_irq(f, 2);
		wait_irq(r, 1);
		net_expect_frame(n.peer, 0x77);
		assert_false(status(f) & VIRTIO_STATUS_NEEDS_RESET);
		assert_false(status(r) & VIRTIO_STATUS_NEEDS_RESET);
		CW(f, VIRTIO_PCI_COMMON_STATUS, 0, 1);
		CW(r, VIRTIO_PCI_COMMON_STATUS, 0, 1);
		loop_barrier(f);
		loop_barrier(r);
		clear_rings(f, 0);
		clear_rings(f, 1);
		clear_rings(r, 0);
	}
	loop_stop(&t);
	loop_stop(&tr);
	fx_free(f);
	fx_free(r);
	close(n.peer);
}

/* ---- counters (GET /api/v1/vm.counters) ---------------------------------------------- */

/* A write of one sector of 0x5a bytes as chain idx on queue q. */
static void blk_offer_write(struct fx *f, unsigned q, uint16_t idx, unsigned sector)
{
	uint64_t base = BUF + 0x10000 * q + 0x1000 * (idx % 4);
	struct seg segs[] = {
		{ base, 16, false },
		{ base + 0x200, 512, false },
		{ base + 0x400, 1, true },
	};
	uint8_t hdr[16] = { 0 };

	put_le(hdr, VIRTIO_BLK_T_OUT, 4);
	put_le(hdr + 8, sector, 8);
	memcpy(gpa(f, base, 16), hdr, 16);
	memset(gpa(f, base + 0x200, 512), 0x5a, 512);
	offer_chain(f, q, idx, segs, 3);
}

static struct json_object *jget(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	assert_true(json_object_object_get_ex(o, key, &v));
	return v;
}

static uint64_t ju64(struct json_object *o, const char *key)
{
	struct json_object *v = jget(o, key);

	assert_true(json_object_is_type(v, json_type_int));
	return json_object_get_uint64(v);
}

/*
 * virtio-blk over the real transport: requests, bytes, errors, kicks (through
 * the ioeventfd, coalesced or not, and trapped), interrupts per queue and per
 * vector move as the driver drives it; a malformed chain is one error.
 */
static void test_counters_blk(void **state)
{
	struct fx *f = fx_blk();
	struct virtio_pci_counters c;
	struct json_object *d, *q0, *vec;

	(void)state;
	bring_up_queues(f, F_BASIC, 1u << 0);
	virtio_pci_get_counters(&f->vp, &c);
	assert_true(c.counted);
	assert_int_equal(c.dev.requests, 0);
	assert_int_equal(c.queue[0].kicks, 0);

	blk_offer_read(f, 0, 1, 3);
	kick(f, 0);
	loop_until_used(f, 0, 1);
	blk_check_read(f, 0, 1, 3);
	blk_offer_write(f, 0, 2, 5);
	kick(f, 0);
	kick(f, 0);                     /* two notifies before the loop looks: both counted */
	loop_until_used(f, 0, 2);
	blk_offer_read(f, 0, 3, 1000);  /* past the end of the 64-sector disk: IOERR */
	kick(f, 0);
	loop_until_used(f, 0, 3);
	assert_int_equal(*(uint8_t *)gpa(f, BUF + 0x1000 * 3 + 0x400, 1), VIRTIO_BLK_S_IOERR);
	blk_offer_read(f, 0, 4, 7);
	wr(f, f->bar2 + VPCI_NOTIFY, 0, 4);  /* a 4-byte notify: trapped, not the ioeventfd's */
	loop_until_used(f, 0, 4);

	virtio_pci_get_counters(&f->vp, &c);
	assert_int_equal(c.dev.requests, 4);
	assert_int_equal(c.dev.errors, 1);
	assert_int_equal(c.dev.in_ops, 2);
	assert_int_equal(c.dev.in_bytes, 1024);
	assert_int_equal(c.dev.out_ops, 1);
	assert_int_equal(c.dev.out_bytes, 512);
	assert_int_equal(c.queue[0].kicks, 5);
	assert_int_equal(c.trapped_kicks, 1);
	assert_int_equal(c.queue[0].interrupts, 4);
	assert_int_equal(c.queue[0].vector, 1);
	assert_int_equal(c.queue[1].vector, VIRTIO_MSI_NO_VECTOR);
	assert_int_equal(c.nvec, 3);
	assert_int_equal(c.vector_interrupts[1], 4);
	assert_int_equal(irqs(f, 1), 4);  /* what KVM was asked to inject */
	assert_int_equal(c.vector_interrupts[0], 0);
	assert_int_equal(c.config_interrupts, 0);
	assert_false(c.needs_reset);

	/* The same through the API's JSON, with Cloud Hypervisor's names. */
	d = json_object_new_object();
	assert_int_equal(api_counters_device(&f->vp, d), 0);
	assert_int_equal(ju64(d, "requests"), 4);
	assert_int_equal(ju64(d, "errors"), 1);
	assert_int_equal(ju64(d, "read_ops"), 2);
	assert_int_equal(ju64(d, "read_bytes"), 1024);
	assert_int_equal(ju64(d, "write_ops"), 1);
	assert_int_equal(ju64(d, "write_bytes"), 512);
	assert_int_equal(ju64(d, "trapped_kicks"), 1);
	assert_int_equal(ju64(d, "dropped_interrupts"), 0);
	assert_false(json_object_get_boolean(jget(d, "needs_reset")));
	assert_int_equal(json_object_array_length(jget(d, "queues")), 2);
	q0 = json_object_array_get_idx(jget(d, "queues"), 0);
	assert_int_equal(ju64(q0, "kicks"), 5);
	assert_int_equal(ju64(q0, "interrupts"), 4);
	assert_int_equal(ju64(q0, "vector"), 1);
	assert_null(jget(json_object_array_get_idx(jget(d, "queues"), 1), "vector"));
	vec = jget(d, "interrupts");
	assert_int_equal(json_object_array_length(vec), 3);
	assert_int_equal(json_object_get_uint64(json_object_array_get_idx(vec, 1)), 4);
	json_object_put(d);

	/* A malformed chain (a buffer outside RAM): one error, NEEDS_RESET, one config interrupt. */
	{
		struct seg bad = { 0x7fff00000000ULL, 16, false };
		uint64_t deadline = monotonic_ns() + 5000000000ULL;

		offer_chain(f, 0, 5, &bad, 1);
		kick(f, 0);
		while (!(status(f) & VIRTIO_STATUS_NEEDS_RESET) && monotonic_ns() < deadline)
			assert_true(run_loop(f) >= 0);
	}
	virtio_pci_get_counters(&f->vp, &c);
	assert_true(c.needs_reset);
	assert_int_equal(c.dev.errors, 2);   /* the virtqueue and the device both said so: once */
	assert_int_equal(c.dev.requests, 4);
	assert_int_equal(c.queue[0].kicks, 6);
	assert_int_equal(c.config_interrupts, 1);
	assert_int_equal(c.vector_interrupts[0], 1);
	assert_int_equal(irqs(f, 0), 1);
	fx_free(f);
}

/*
 * Queues another process serves (vhost-user): kicks and used-buffer
 * interrupts never pass through us, so they are null, not 0; so are
 * requests of a device that does not count them. Errors stay ours.
 */
static void test_counters_external_queues_are_null(void **state)
{
	struct fx *f = *state;
	struct json_object *d, *q;

	f->vdev.external_queues = true;
	bring_up(f);
	d = json_object_new_object();
	assert_int_equal(api_counters_device(&f->vp, d), 0);
	assert_null(jget(d, "requests"));
	assert_int_equal(ju64(d, "errors"), 0);
	assert_null(jget(d, "interrupts"));
	q = json_object_array_get_idx(jget(d, "queues"), 0);
	assert_null(jget(q, "kicks"));
	assert_null(jget(q, "interrupts"));
	assert_int_equal(ju64(q, "vector"), 1);
	assert_int_equal(ju64(d, "config_interrupts"), 0);
	json_object_put(d);
	f->vdev.external_queues = false;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identity_bars_and_caps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_feature_negotiation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_register_validation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kick_used_and_msix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shared_vector, setup_shared, teardown),
		cmocka_unit_test_setup_teardown(test_msix_mask_pba_and_garbage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_chain_needs_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_from_every_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_activate_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notify_trap_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_moves_ioeventfds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ioeventfd_fixed_width_fallback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_device_config_and_generation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pci_cfg_access_window, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
		cmocka_unit_test(test_irq_router_detach),
		cmocka_unit_test_setup_teardown(test_irq_router, setup, teardown),
		cmocka_unit_test(test_rng_device),
		cmocka_unit_test(test_late_enable_blk),
		cmocka_unit_test(test_late_enable_net),
		cmocka_unit_test(test_late_enable_rng),
		cmocka_unit_test_setup_teardown(test_late_enable_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ring_reset, setup, teardown),
		cmocka_unit_test(test_ring_reset_blk),
		cmocka_unit_test(test_ring_reset_net),
		cmocka_unit_test(test_rng_does_not_hog_the_loop),
		cmocka_unit_test(test_blk_with_loop_thread),
		cmocka_unit_test(test_net_and_rng_with_loop_thread),
		cmocka_unit_test(test_counters_blk),
		cmocka_unit_test_setup_teardown(test_counters_external_queues_are_null, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
