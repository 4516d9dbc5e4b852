/*
 * Snapshots of devices: the virtio-pci transport (virtio/virtio_pci.c) with
 * a fake device and with virtio-blk, virtio-net and virtio-rng, the 16550A
 * (devices/serial.c) and the CMOS RTC (devices/rtc.c).
 *
 * A transport is saved from one VM (its own PCI bus, irq router over a fake
 * KVM, guest RAM), loaded into a second one made the same way, whose RAM got
 * a copy of the first's (as a restore maps the memory file), and must then
 * behave the same: a kick is served from where the first stopped, the
 * interrupt goes to the same vector and MSI message, the BAR is where the
 * guest had moved it. Every corrupt field is refused with a line naming it,
 * and the refused transport is left untouched.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include <libfdt.h>

#include "channel/evloop.h"
#include "devices/platform.h"
#include "devices/rtc.h"
#include "devices/serial.h"
#include "devices/tap.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_net.h"
#include "virtio/virtio_pci.h"
#include "vmm/irq.h"
#include "vmm/snapshot/format.h"
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
#define FEAT_DEV   5

/* ---- fake KVM: routes, irqfds, ioeventfds ---- */

struct fake_kvm {
	struct kvm_irq_routing_entry routes[IRQ_NR_IRQCHIP_GSI * 2 + 64];
	unsigned nr_routes;
	struct { int fd; uint64_t addr; uint32_t len; bool on; } ioev[64];
	unsigned nr_ioev;
};

static int fake_routing(void *ctx, const struct kvm_irq_routing *t)
{
	struct fake_kvm *k = ctx;

	k->nr_routes = MIN(t->nr, (uint32_t)ARRAY_SIZE(k->routes));
	memcpy(k->routes, t->entries, k->nr_routes * sizeof(t->entries[0]));
	return 0;
}

static int fake_irqfd(void *ctx, int fd, uint32_t gsi, bool assign)
{
	(void)ctx;
	(void)fd;
	(void)gsi;
	(void)assign;
	return 0;
}

static int fake_ioeventfd(void *ctx, int fd, uint64_t addr, uint32_t len, bool pio, bool assign)
{
	struct fake_kvm *k = ctx;

	assert_false(pio);
	for (unsigned i = 0; i < k->nr_ioev; i++) {
		if (k->ioev[i].on && k->ioev[i].addr == addr && k->ioev[i].len == len) {
			if (assign)
				return -EEXIST;
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

static int ioeventfd_at(struct fake_kvm *k, uint64_t addr)
{
	for (unsigned i = 0; i < k->nr_ioev; i++)
		if (k->ioev[i].on && k->ioev[i].addr == addr && (k->ioev[i].len == 0 || k->ioev[i].len == 2))
			return k->ioev[i].fd;
	return -1;
}

/* Whether KVM has an MSI route with this data (the vector's message). */
static bool has_msi_route(struct fake_kvm *k, uint32_t data)
{
	for (unsigned i = 0; i < k->nr_routes; i++)
		if (k->routes[i].type == KVM_IRQ_ROUTING_MSI && k->routes[i].u.msi.data == data)
			return true;
	return false;
}

/* ---- a fake device with a field of its own ---- */

struct fdev {
	uint32_t token;         /* the device's own state: saved and checked */
	unsigned nr_notify, nr_activate;
	struct virtq_chain chain;
};

struct fdev_snap {
	uint32_t token;
};
static const struct snap_field fdev_fields[] = { SNAP_U(struct fdev_snap, token) };
static const struct snap_desc fdev_desc = SNAP_DESC(struct fdev_snap, "fake", 1, fdev_fields, NULL);

static void fdev_notify(struct virtio_dev *vdev, unsigned q)
{
	struct fdev *d = vdev->priv;

	d->nr_notify++;
	while (virtq_pop(&vdev->vqs[q], &d->chain) > 0) {
		uint8_t fill[64];

		memset(fill, 0xab, sizeof(fill));
		virtio_dev_complete(vdev, q, d->chain.head,
				    (uint32_t)virtq_chain_write(&d->chain, 0, fill, sizeof(fill)));
	}
}

static int fdev_activate(struct virtio_dev *vdev)
{
	((struct fdev *)vdev->priv)->nr_activate++;
	return 0;
}

static int fdev_save(struct virtio_dev *vdev, struct snap_writer *w)
{
	struct fdev_snap st = { .token = ((struct fdev *)vdev->priv)->token };

	return snap_write(w, &fdev_desc, &st);
}

static int fdev_load(struct virtio_dev *vdev, struct snap_reader *r, int node)
{
	struct fdev_snap st = { 0 };
	int ret = snap_read(r, node, &fdev_desc, &st);

	if (!ret && st.token != ((struct fdev *)vdev->priv)->token)
		ret = snap_fail(r, node, "token: %u, this device %u", st.token,
				((struct fdev *)vdev->priv)->token);
	return ret;
}

static const struct virtio_dev_ops fdev_ops = {
	.name = "fake",
	.device_id = 3,
	.activate = fdev_activate,
	.queue_notify = fdev_notify,
	.snap_save = fdev_save,
	.snap_load = fdev_load,
};

static const struct virtio_dev_ops fdev_nosave_ops = {
	.name = "fake",
	.device_id = 3,
	.queue_notify = fdev_notify,
};

/* ---- fixture: one VM's worth of bus, router, RAM and loop ---- */

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
	int peer;               /* virtio-net: the other end of the "tap" */
};

static struct fx *fx_new(void)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct pci_bus_params p = {
		.pio = NULL, .mmio = NULL,
		.io_base = 0xc000, .io_size = 0x4000,
		.mem32_base = MEM32_BASE, .mem32_size = 0x20000000,
		.mem64_base = MEM64_BASE, .mem64_size = 0x1000000000ULL,
		.ecam_base = ECAM_BASE,
	};

	assert_non_null(f);
	f->peer = -1;
	p.pio = &f->pio;
	p.mmio = &f->mmio;
	assert_int_equal(gmem_create(&f->vm.mem, RAM_SIZE, 0, 0), 0);
	assert_int_equal(evloop_create(&f->vm.loop), 0);
	assert_int_equal(bus_init(&f->pio, "pio"), 0);
	assert_int_equal(bus_init(&f->mmio, "mmio"), 0);
	assert_int_equal(pci_bus_init(&f->pb, &p), 0);
	assert_int_equal(irq_router_init_ops(&f->irq, &fake_ops, &f->kvm), 0);
	return f;
}

static void fx_attach(struct fx *f)
{
	assert_int_equal(virtio_pci_init(&f->vp, &f->vdev, &f->pb, &f->irq, f->vm.loop), 0);
	f->bar0 = pci_bar_decode(&f->vp.pci, VPCI_MSIX_BAR);
	f->bar2 = pci_bar_decode(&f->vp.pci, VPCI_BAR);
}

/* A fake device with two queues and `vectors` MSI-X vectors (0: one per queue and one more). */
static struct fx *fx_fake_vectors(const struct virtio_dev_ops *ops, uint32_t token, unsigned vectors)
{
	struct fx *f = fx_new();

	f->dev.token = token;
	f->vdev.ops = ops;
	f->vdev.priv = &f->dev;
	f->vdev.vm = &f->vm;
	snprintf(f->vdev.id, sizeof(f->vdev.id), "fake0");
	f->vdev.device_features = 1ULL << FEAT_DEV;
	f->vdev.num_queues = 2;
	f->vdev.msix_vectors = vectors;
	f->vdev.queue_max_size = QSIZE;
	assert_int_equal(virtq_chain_init(&f->dev.chain, QSIZE), 0);
	fx_attach(f);
	return f;
}

static struct fx *fx_fake(const struct virtio_dev_ops *ops, uint32_t token)
{
	return fx_fake_vectors(ops, token, 0);
}

static void fx_free(struct fx *f)
{
	pci_bus_destroy(&f->pb);
	irq_router_destroy(&f->irq);
	bus_destroy(&f->pio);
	bus_destroy(&f->mmio);
	evloop_destroy(f->vm.loop);
	gmem_destroy(&f->vm.mem);
	virtq_chain_destroy(&f->dev.chain);
	if (f->peer >= 0)
		close(f->peer);
	free(f);
}

/* ---- the guest's side ---- */

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

#define F_BASIC (1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_F_EVENT_IDX)

static void program_vector(struct fx *f, unsigned v, uint32_t data)
{
	uint64_t e = f->bar0 + VPCI_MSIX_TABLE + v * PCI_MSIX_ENTRY_SIZE;

	wr(f, e + 12, 1, 4);
	wr(f, e, 0xfee00000, 4);
	wr(f, e + 4, 0, 4);
	wr(f, e + 8, data, 4);
	wr(f, e + 12, 0, 4);
}

static void setup_queue(struct fx *f, unsigned q, uint16_t vector)
{
	CW(f, VIRTIO_PCI_COMMON_Q_SELECT, q, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_SIZE, QSIZE, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_MSIX, vector, 2);
	CW(f, VIRTIO_PCI_COMMON_Q_DESCLO, DESC + q * 0x4000, 8);
	CW(f, VIRTIO_PCI_COMMON_Q_AVAILLO, AVAIL + q * 0x4000, 8);
	CW(f, VIRTIO_PCI_COMMON_Q_USEDLO, USED + q * 0x4000, 8);
	CW(f, VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
}

/*
 * 3.1.1: features, MSI-X on with vector v's data 0x40 + v, every queue q on
 * vector q + 1 (or the last one, when the table is smaller), DRIVER_OK.
 */
static void bring_up(struct fx *f, uint64_t features)
{
	uint64_t ctrl = cfg_addr(f, f->vp.msix_cap + 2);

	CW(f, VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE, 1);
	CW(f, VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
	CW(f, VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
	CW(f, VIRTIO_PCI_COMMON_GF, (uint32_t)features, 4);
	CW(f, VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
	CW(f, VIRTIO_PCI_COMMON_GF, features >> 32, 4);
	CW(f, VIRTIO_PCI_COMMON_STATUS, 0x0b, 1);
	assert_int_equal(status(f), 0x0b);
	wr(f, ctrl, (rd(f, ctrl, 2) & 0x7ff) | PCI_MSIX_CTRL_ENABLE, 2);
	for (unsigned v = 0; v < f->vp.nvec; v++)
		program_vector(f, v, 0x40 + v);
	CW(f, VIRTIO_PCI_COMMON_MSIX, 0, 2);
	for (unsigned q = 0; q < f->vdev.num_queues; q++)
		setup_queue(f, q, (uint16_t)MIN(q + 1, f->vp.nvec - 1));
	CW(f, VIRTIO_PCI_COMMON_STATUS, 0x0f, 1);
	assert_int_equal(status(f), 0x0f);
}

static void *gpa(struct fx *f, uint64_t a, uint64_t len)
{
	void *p = gmem_translate(&f->vm.mem, a, len);

	assert_non_null(p);
	return p;
}

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

/* Chain idx (1, 2, ...) on queue q: its descriptors at 4 (idx - 1) mod QSIZE. */
static void offer_chain(struct fx *f, unsigned q, uint16_t idx, const struct seg *segs, unsigned n)
{
	uint8_t *desc = gpa(f, DESC + q * 0x4000, 16 * QSIZE);
	uint8_t *avail = gpa(f, AVAIL + q * 0x4000, 6 + 2 * QSIZE);
	uint16_t head = (uint16_t)(((idx - 1) * 4) % QSIZE);

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

static uint16_t used_idx(struct fx *f, unsigned q)
{
	return (uint16_t)get_le(gpa(f, USED + q * 0x4000 + 2, 2), 2);
}

static void kick(struct fx *f, unsigned q)
{
	int fd = ioeventfd_at(&f->kvm, f->bar2 + VPCI_NOTIFY + q * VPCI_NOTIFY_MULTIPLIER);
	uint64_t one = 1;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, &one, sizeof(one)), (ssize_t)sizeof(one));
}

static void loop_until_used(struct fx *f, unsigned q, uint16_t idx)
{
	uint64_t deadline = monotonic_ns() + 5000000000ULL;

	while (used_idx(f, q) != idx && monotonic_ns() < deadline)
		assert_true(evloop_run_once(f->vm.loop, 20) >= 0);
	assert_int_equal(used_idx(f, q), idx);
}

static uint64_t irqs(struct fx *f, unsigned v)
{
	uint64_t n = 0;

	if (read(notifier_fd(&f->vp.vec[v].irqfd), &n, sizeof(n)) != (ssize_t)sizeof(n))
		return 0;
	return n;
}

/* ---- state files ---- */

struct snap {
	struct snap_writer w;
	struct snap_reader r;
	int node;
	char err[SNAP_ERR_LEN];
};

/* Save f's transport into node "dev" of a fresh state file and open it for reading. */
static int snap_transport(struct snap *s, struct fx *f)
{
	const void *blob;
	size_t len;
	int ret;

	memset(s, 0, sizeof(*s));
	assert_int_equal(snap_writer_init(&s->w), 0);
	assert_int_equal(snap_begin_node(&s->w, "dev"), 0);
	ret = virtio_pci_save(&f->vp, &s->w, s->err, sizeof(s->err));
	if (ret) {
		snap_writer_free(&s->w);
		return ret;
	}
	assert_int_equal(snap_end_node(&s->w), 0);
	assert_int_equal(snap_writer_finish(&s->w, &blob, &len), 0);
	assert_int_equal(snap_reader_open(&s->r, blob, len), 0);
	s->node = snap_node(&s->r, 0, "dev");
	assert_true(s->node >= 0);
	return 0;
}

static void snap_done(struct snap *s)
{
	snap_reader_close(&s->r);
	snap_writer_free(&s->w);
}

/* Overwrite element i of a property (elem bytes each, big-endian) in the opened file. */
static void poke(struct snap *s, int node, const char *name, unsigned i, unsigned elem, uint64_t v)
{
	int len;
	uint8_t *p = fdt_getprop_w(s->r.fdt, node, name, &len);

	assert_non_null(p);
	assert_true((i + 1) * elem <= (unsigned)len);
	for (unsigned b = 0; b < elem; b++)
		p[i * elem + b] = (uint8_t)(v >> (8 * (elem - 1 - b)));
}

static void copy_ram(struct fx *to, struct fx *from)
{
	memcpy(gpa(to, 0, RAM_SIZE), gpa(from, 0, RAM_SIZE), RAM_SIZE);
}

/* ---- tests ---- */

static void test_tables_are_valid(void **state)
{
	const struct snap_desc *d[] = { &virtio_pci_snap_desc, &virtio_blk_snap_desc,
					&virtio_net_snap_desc, &serial_snap_desc, &rtc_snap_desc };
	char err[256] = "";

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(d); i++)
		if (!snap_desc_valid(d[i], err, sizeof(err)))
			fail_msg("%s", err);
}

/*
 * The fake device: both queues live, MSI-X on, a chain served on queue 0
 * and the notify BAR moved by the guest. Restored: same registers, the next
 * chain served at index 2 on the moved notify address, its interrupt on
 * vector 1 with the same message.
 */
static void test_transport_round_trip(void **state)
{
	struct fx *a = fx_fake(&fdev_ops, 7), *b = fx_fake(&fdev_ops, 7);
	uint64_t moved = MEM64_BASE + 0x100000;
	struct seg seg = { BUF, 64, true };
	struct snap s;

	(void)state;
	/* The guest moves BAR 2 (64-bit: low dword at BAR0 + 8). */
	wr(a, cfg_addr(a, PCI_BAR0 + 8), (uint32_t)moved | PCI_BAR_MEM64_FLAG, 4);
	a->bar2 = pci_bar_decode(&a->vp.pci, VPCI_BAR);
	assert_int_equal(a->bar2, moved);
	bring_up(a, F_BASIC | 1ULL << FEAT_DEV);
	offer_chain(a, 0, 1, &seg, 1);
	kick(a, 0);
	loop_until_used(a, 0, 1);
	assert_int_equal(irqs(a, 1), 1);
	CW(a, VIRTIO_PCI_COMMON_Q_SELECT, 1, 2);

	/* Not paused: refused. */
	assert_int_equal(snap_transport(&s, a), -EBUSY);
	assert_non_null(strstr(s.err, "not paused"));
	assert_int_equal(virtio_pci_pause(&a->vp), 0);
	assert_int_equal(snap_transport(&s, a), 0);

	copy_ram(b, a);
	assert_int_equal(virtio_pci_load(&b->vp, &s.r, s.node), 0);
	snap_done(&s);
	b->bar2 = pci_bar_decode(&b->vp.pci, VPCI_BAR);
	assert_int_equal(b->bar2, moved);
	assert_int_equal(b->dev.nr_activate, 1);
	assert_int_equal(status(b), 0x0f);
	assert_int_equal(CR(b, VIRTIO_PCI_COMMON_Q_SELECT, 2), 1);
	assert_int_equal(CR(b, VIRTIO_PCI_COMMON_MSIX, 2), 0);
	CW(b, VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
	assert_int_equal(CR(b, VIRTIO_PCI_COMMON_GF, 4), (uint32_t)(F_BASIC | 1ULL << FEAT_DEV));
	for (unsigned q = 0; q < 2; q++) {
		CW(b, VIRTIO_PCI_COMMON_Q_SELECT, q, 2);
		assert_int_equal(CR(b, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
		assert_int_equal(CR(b, VIRTIO_PCI_COMMON_Q_SIZE, 2), QSIZE);
		assert_int_equal(CR(b, VIRTIO_PCI_COMMON_Q_MSIX, 2), q + 1);
		assert_int_equal(CR(b, VIRTIO_PCI_COMMON_Q_DESCLO, 8), DESC + q * 0x4000);
		assert_int_equal(CR(b, VIRTIO_PCI_COMMON_Q_USEDLO, 8), USED + q * 0x4000);
	}
	for (unsigned v = 0; v < 3; v++)
		assert_true(has_msi_route(&b->kvm, 0x40 + v));
	assert_int_equal(b->vdev.driver_features, F_BASIC | 1ULL << FEAT_DEV);

	/* Paused until resumed, as the VM it came from. */
	assert_true(b->vp.paused);
	assert_int_equal(virtio_pci_resume(&b->vp), 0);
	offer_chain(b, 0, 2, &seg, 1);
	kick(b, 0);
	loop_until_used(b, 0, 2);
	assert_true(irqs(b, 1) >= 1);
	assert_int_equal(irqs(b, 2), 0);
	assert_int_equal(get_le(gpa(b, USED + 4 + 8 + 4, 4), 4), 64);  /* used elem 1's len */
	assert_false(status(b) & VIRTIO_STATUS_NEEDS_RESET);

	assert_int_equal(virtio_pci_resume(&a->vp), 0);
	fx_free(a);
	fx_free(b);
}

/*
 * Queues sharing one vector (vsock's table of two): saved and restored as
 * they were; a snapshot's table of another size is refused by name.
 */
static void test_transport_shared_vector(void **state)
{
	struct fx *a = fx_fake_vectors(&fdev_ops, 5, 2), *b = fx_fake_vectors(&fdev_ops, 5, 2);
	struct fx *c = fx_fake(&fdev_ops, 5);
	struct seg seg = { BUF, 64, true };
	struct snap s;

	(void)state;
	bring_up(a, F_BASIC | 1ULL << FEAT_DEV);
	assert_int_equal(virtio_pci_pause(&a->vp), 0);
	assert_int_equal(snap_transport(&s, a), 0);
	copy_ram(b, a);
	assert_int_equal(virtio_pci_load(&b->vp, &s.r, s.node), 0);
	for (unsigned q = 0; q < 2; q++) {
		CW(b, VIRTIO_PCI_COMMON_Q_SELECT, q, 2);
		assert_int_equal(CR(b, VIRTIO_PCI_COMMON_Q_MSIX, 2), 1);
	}
	assert_true(has_msi_route(&b->kvm, 0x41));
	assert_int_equal(virtio_pci_resume(&b->vp), 0);
	offer_chain(b, 1, 1, &seg, 1);
	kick(b, 1);
	loop_until_used(b, 1, 1);
	assert_int_equal(irqs(b, 1), 1);

	/* Into a transport with a vector per queue: refused before anything is applied. */
	copy_ram(c, a);
	assert_int_equal(virtio_pci_load(&c->vp, &s.r, s.node), -EINVAL);
	assert_non_null(strstr(s.r.err, "msix.ctrl: the snapshot's fake has 2 MSI-X vectors, this one 3"));
	assert_int_equal(status(c), 0);
	snap_done(&s);
	assert_int_equal(virtio_pci_resume(&a->vp), 0);
	fx_free(a);
	fx_free(b);
	fx_free(c);
}

/* A device that never got DRIVER_OK comes back as it was: not activated, queues off. */
static void test_transport_before_driver_ok(void **state)
{
	struct fx *a = fx_fake(&fdev_ops, 1), *b = fx_fake(&fdev_ops, 1);
	struct snap s;

	(void)state;
	CW(a, VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE, 1);
	assert_int_equal(virtio_pci_pause(&a->vp), 0);
	assert_int_equal(snap_transport(&s, a), 0);
	assert_int_equal(virtio_pci_load(&b->vp, &s.r, s.node), 0);
	snap_done(&s);
	assert_int_equal(status(b), VIRTIO_STATUS_ACKNOWLEDGE);
	assert_int_equal(b->dev.nr_activate, 0);
	assert_int_equal(virtio_pci_resume(&b->vp), 0);
	assert_int_equal(virtio_pci_resume(&a->vp), 0);
	fx_free(a);
	fx_free(b);
}

static void test_transport_without_save_is_refused(void **state)
{
	struct fx *a = fx_fake(&fdev_nosave_ops, 0);
	struct snap s;

	(void)state;
	assert_int_equal(virtio_pci_pause(&a->vp), 0);
	assert_int_equal(snap_transport(&s, a), -ENOTSUP);
	assert_string_equal(s.err, "fake0 (fake) cannot be saved");
	assert_int_equal(virtio_pci_resume(&a->vp), 0);
	fx_free(a);
}

struct corruption {
	const char *prop;
	unsigned index, elem;
	uint64_t value;
	const char *want;       /* in the error line */
	const char *prop2;      /* and a second one, or NULL */
	uint64_t value2;
};

/* Each field out of what this transport can take: refused, named, nothing applied. */
static void test_transport_corrupt_fields(void **state)
{
	static const struct corruption cases[] = {
		{ "queue.size", 0, 2, 48, "queue.size[0]: 48 is not a power of two" },
		{ "queue.size", 1, 2, 64, "queue.size[1]: 64 is larger than this device's queues (16)" },
		{ "queue.desc", 0, 8, RAM_SIZE - 16, "queue.desc[0]: 0xffff0 (+256) is not guest RAM" },
		{ "queue.device", 1, 8, 0x7fff0000, "queue.device[1]: 0x7fff0000" },
		{ "queue.driver", 0, 8, 0x2001, "queue.driver[0]: 0x2001 is not 2-byte aligned" },
		{ "queue.vector", 1, 2, 3, "queue.vector[1]: 3 is out of range (3 vectors)" },
		{ "config_vector", 0, 2, 9, "config_vector: 9 is out of range" },
		{ "driver_features", 0, 8, F_BASIC | 1ULL << FEAT_DEV | 1ULL << 7,
		  "driver_features: 0x1200000a0 accepts 0x80, which was not offered" },
		/* Consistent in the file, but this device does not offer bit 7. */
		{ "offered", 0, 8, F_BASIC | 1ULL << FEAT_DEV | 1ULL << 7 | 1ULL << 28 | 1ULL << 40,
		  "driver_features: 0x1200000a0 accepts 0x80, which this fake does not offer",
		  "driver_features", F_BASIC | 1ULL << FEAT_DEV | 1ULL << 7 },
		{ "status", 0, 1, 0x07, "status: 0x7: DRIVER_OK without FEATURES_OK" },
		{ "queue.last_avail_idx", 0, 2, 40, "queue.last_avail_idx[0]: 40 is more than" },
		{ "msix.ctrl", 2, 4, 2, "msix.ctrl[2]: 0x2 has reserved bits" },
		{ "msix.pba", 0, 8, 1ULL << 5, "msix.pba: vector 5 pending" },
		{ "pci.cfg", PCI_DEVICE_ID, 1, 0x41, "pci.cfg: byte 0x2 is 0x41, this fake has 0x43" },
		{ "isr", 0, 1, 4, "isr" },
		{ "live", 0, 1, 2, "live" },
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct fx *a = fx_fake(&fdev_ops, 3), *b = fx_fake(&fdev_ops, 3);
		struct snap s;

		bring_up(a, F_BASIC | 1ULL << FEAT_DEV);
		assert_int_equal(virtio_pci_pause(&a->vp), 0);
		assert_int_equal(snap_transport(&s, a), 0);
		poke(&s, s.node, cases[i].prop, cases[i].index, cases[i].elem, cases[i].value);
		if (cases[i].prop2)
			poke(&s, s.node, cases[i].prop2, 0, 8, cases[i].value2);
		copy_ram(b, a);
		if (virtio_pci_load(&b->vp, &s.r, s.node) != -EINVAL)
			fail_msg("case %zu (%s) was not refused", i, cases[i].prop);
		if (!strstr(s.r.err, cases[i].want))
			fail_msg("case %zu: \"%s\" does not say \"%s\"", i, s.r.err, cases[i].want);
		assert_non_null(strstr(s.r.err, "/dev"));
		/* Refused before anything was applied. */
		assert_int_equal(status(b), 0);
		assert_int_equal(b->dev.nr_activate, 0);
		snap_done(&s);
		assert_int_equal(virtio_pci_resume(&a->vp), 0);
		fx_free(a);
		fx_free(b);
	}
}

/* The device's own node: its refusal is the transport's, and another kind is named. */
static void test_transport_device_node(void **state)
{
	struct fx *a = fx_fake(&fdev_ops, 5), *b = fx_fake(&fdev_ops, 6);
	struct snap s;

	(void)state;
	bring_up(a, F_BASIC);
	assert_int_equal(virtio_pci_pause(&a->vp), 0);
	assert_int_equal(snap_transport(&s, a), 0);
	assert_int_equal(virtio_pci_snap_check(&s.r, s.node), 0);
	assert_int_equal(virtio_pci_load(&b->vp, &s.r, s.node), -EINVAL);
	assert_non_null(strstr(s.r.err, "/dev/device: token: 5, this device 6"));
	assert_int_equal(status(b), 0);
	fdt_setprop_inplace(s.r.fdt, s.node, "kind", "FAKE", 5);
	b->dev.token = 5;
	assert_int_equal(virtio_pci_load(&b->vp, &s.r, s.node), -EINVAL);
	assert_non_null(strstr(s.r.err, "kind: the snapshot has a FAKE, this VM a fake"));
	snap_done(&s);
	assert_int_equal(virtio_pci_resume(&a->vp), 0);
	fx_free(a);
	fx_free(b);
}

/* ---- built-in devices ---- */

#define NSECT 64

static void make_image(const char *path, unsigned sectors)
{
	uint8_t sector[512];
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	for (unsigned s = 0; s < sectors; s++) {
		memset(sector, (int)((s + 1) & 0xff), sizeof(sector));
		assert_int_equal(fwrite(sector, 1, sizeof(sector), fp), sizeof(sector));
	}
	assert_int_equal(fclose(fp), 0);
}

static struct fx *fx_blk(const char *path)
{
	struct fx *f = fx_new();
	char args[160], err[128] = "";

	snprintf(args, sizeof(args), "path=%s,queues=2,serial=sdev", path);
	if (virtio_blk_kind.create(&f->vm, args, &f->vdev, err, sizeof(err)))
		fail_msg("%s", err);
	fx_attach(f);
	return f;
}

static void blk_read(struct fx *f, unsigned q, uint16_t idx, unsigned sector)
{
	uint64_t base = BUF + 0x10000 * q + 0x1000 * (idx % 4);
	struct seg segs[] = { { base, 16, false }, { base + 0x200, 512, true }, { base + 0x400, 1, true } };
	uint8_t hdr[16] = { 0 };
	const uint8_t *data = gpa(f, base + 0x200, 512);

	put_le(hdr, VIRTIO_BLK_T_IN, 4);
	put_le(hdr + 8, sector, 8);
	memcpy(gpa(f, base, 16), hdr, 16);
	offer_chain(f, q, idx, segs, 3);
	kick(f, q);
	loop_until_used(f, q, idx);
	assert_int_equal(*(uint8_t *)gpa(f, base + 0x400, 1), VIRTIO_BLK_S_OK);
	for (unsigned i = 0; i < 512; i++)
		assert_int_equal(data[i], (sector + 1) & 0xff);
}

/* The restored VM opens its own copy of the disk: the old process holds a lock on the first. */
static void test_blk_round_trip_and_resized_disk(void **state)
{
	char path[64] = "/tmp/test_snapshot_devices_blk.XXXXXX";
	char copy[64] = "/tmp/test_snapshot_devices_blk.XXXXXX";
	int fd = mkstemp(path), fd2 = mkstemp(copy);
	struct fx *a, *b;
	struct snap s;

	(void)state;
	assert_true(fd >= 0 && fd2 >= 0);
	close(fd);
	close(fd2);
	make_image(path, NSECT);
	make_image(copy, NSECT);
	a = fx_blk(path);
	b = fx_blk(copy);
	bring_up(a, F_BASIC);
	blk_read(a, 0, 1, 3);
	blk_read(a, 1, 1, 9);
	blk_read(a, 1, 2, 10);
	assert_int_equal(virtio_pci_pause(&a->vp), 0);
	assert_int_equal(snap_transport(&s, a), 0);
	copy_ram(b, a);
	if (virtio_pci_load(&b->vp, &s.r, s.node))
		fail_msg("%s", s.r.err);
	assert_int_equal(virtio_pci_resume(&b->vp), 0);
	/* Both queues carry on from their indices, with their interrupts. */
	(void)irqs(b, 2);
	blk_read(b, 0, 2, 4);
	blk_read(b, 1, 3, 41);
	assert_true(irqs(b, 2) >= 1);
	assert_false(status(b) & VIRTIO_STATUS_NEEDS_RESET);
	fx_free(b);

	/* The disk grew between snapshot and restore: refused, with the sizes. */
	make_image(copy, NSECT * 2);
	b = fx_blk(copy);
	copy_ram(b, a);
	assert_int_equal(virtio_pci_load(&b->vp, &s.r, s.node), -EINVAL);
	assert_non_null(strstr(s.r.err, "/dev/device: capacity: the snapshot's disk has 64 sectors, "
				       "this one 128: the disk changed size"));
	assert_int_equal(status(b), 0);
	fx_free(b);
	snap_done(&s);
	assert_int_equal(virtio_pci_resume(&a->vp), 0);
	fx_free(a);
	unlink(path);
	unlink(copy);
}

static struct fx *fx_net(const char *mac)
{
	struct fx *f = fx_new();
	char args[64], err[128] = "";
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	snprintf(args, sizeof(args), "mac=%s", mac);
	assert_int_equal(virtio_net_create_on_fd(&f->vm, sv[0], args, &f->vdev, err, sizeof(err)), 0);
	f->peer = sv[1];
	fx_attach(f);
	return f;
}

/* A 60-byte frame tagged `tag` as TX chain idx; the peer must get it. */
static void net_send(struct fx *f, uint16_t idx, uint8_t tag)
{
	uint64_t base = BUF + 0x20000 + 0x1000 * (idx % 4);
	uint8_t frame[12 + 60], buf[256];
	struct seg seg = { base, sizeof(frame), false };

	memset(frame, 0, sizeof(frame));
	memset(frame + 12, 0xff, 6);
	frame[12 + 12] = 0x88;
	frame[12 + 13] = 0xb5;
	frame[12 + 14] = tag;
	memcpy(gpa(f, base, sizeof(frame)), frame, sizeof(frame));
	offer_chain(f, VIRTIO_NET_TXQ, idx, &seg, 1);
	kick(f, VIRTIO_NET_TXQ);
	loop_until_used(f, VIRTIO_NET_TXQ, idx);
	assert_int_equal(recv(f->peer, buf, sizeof(buf), MSG_DONTWAIT), 12 + 60);
	assert_int_equal(buf[12 + 14], tag);
}

static void test_net_round_trip_and_other_mac(void **state)
{
	struct fx *a = fx_net("52:54:00:aa:bb:01"), *b = fx_net("52:54:00:aa:bb:01");
	uint64_t features = F_BASIC | 1ULL << VIRTIO_NET_F_MAC | 1ULL << VIRTIO_NET_F_GUEST_CSUM |
			    1ULL << VIRTIO_NET_F_GUEST_TSO4;
	struct snap s;

	(void)state;
	bring_up(a, features);
	net_send(a, 1, 0x11);
	assert_int_equal(virtio_net_offloads(&a->vdev), TAP_OFFLOAD_CSUM | TAP_OFFLOAD_TSO4);
	assert_int_equal(virtio_pci_pause(&a->vp), 0);
	assert_int_equal(snap_transport(&s, a), 0);
	copy_ram(b, a);
	assert_int_equal(virtio_pci_load(&b->vp, &s.r, s.node), 0);
	assert_int_equal(virtio_pci_resume(&b->vp), 0);
	assert_int_equal(virtio_net_offloads(&b->vdev), TAP_OFFLOAD_CSUM | TAP_OFFLOAD_TSO4);
	net_send(b, 2, 0x22);
	fx_free(b);

	b = fx_net("52:54:00:aa:bb:02");
	assert_int_equal(virtio_pci_load(&b->vp, &s.r, s.node), -EINVAL);
	assert_non_null(strstr(s.r.err, "mac: the snapshot's guest has 52:54:00:aa:bb:01, this "
				       "device 52:54:00:aa:bb:02"));
	fx_free(b);
	snap_done(&s);
	assert_int_equal(virtio_pci_resume(&a->vp), 0);
	fx_free(a);
}

static struct fx *fx_rng(void)
{
	struct fx *f = fx_new();
	char err[128] = "";

	assert_int_equal(virtio_rng_kind.create(&f->vm, "", &f->vdev, err, sizeof(err)), 0);
	fx_attach(f);
	return f;
}

static void test_rng_round_trip(void **state)
{
	struct fx *a = fx_rng(), *b = fx_rng();
	struct seg seg = { BUF, 256, true };
	struct snap s;

	(void)state;
	bring_up(a, F_BASIC);
	offer_chain(a, 0, 1, &seg, 1);
	kick(a, 0);
	loop_until_used(a, 0, 1);
	assert_int_equal(virtio_pci_pause(&a->vp), 0);
	assert_int_equal(snap_transport(&s, a), 0);
	copy_ram(b, a);
	assert_int_equal(virtio_pci_load(&b->vp, &s.r, s.node), 0);
	assert_int_equal(virtio_pci_resume(&b->vp), 0);
	offer_chain(b, 0, 2, &seg, 1);
	kick(b, 0);
	loop_until_used(b, 0, 2);
	fx_free(b);

	/* The stateless node takes nothing else. */
	b = fx_rng();
	assert_int_equal(fdt_setprop_inplace_u32(s.r.fdt, snap_node(&s.r, s.node, "device"),
						 "version", 2), 0);
	assert_int_equal(virtio_pci_load(&b->vp, &s.r, s.node), -EINVAL);
	assert_non_null(strstr(s.r.err, "/dev/device: version 2"));
	fx_free(b);
	snap_done(&s);
	assert_int_equal(virtio_pci_resume(&a->vp), 0);
	fx_free(a);
}

/* ---- serial and RTC ---- */

struct irq_log {
	int level;
	unsigned raises;
};

static void serial_irq(void *opaque, int level)
{
	struct irq_log *l = opaque;

	l->raises += level && !l->level;
	l->level = level;
}

static uint8_t uart_rd(struct serial *u, unsigned reg)
{
	uint8_t v = 0;

	serial_io(u, reg, &v, 1, false);
	return v;
}

static void uart_wr(struct serial *u, unsigned reg, uint8_t v)
{
	serial_io(u, reg, &v, 1, true);
}

/* Save into node "uart" and open it. */
static void snap_serial(struct snap *s, struct serial *u)
{
	const void *blob;
	size_t len;

	memset(s, 0, sizeof(*s));
	assert_int_equal(snap_writer_init(&s->w), 0);
	assert_int_equal(snap_begin_node(&s->w, "uart"), 0);
	assert_int_equal(serial_save(u, &s->w), 0);
	assert_int_equal(snap_end_node(&s->w), 0);
	assert_int_equal(snap_writer_finish(&s->w, &blob, &len), 0);
	assert_int_equal(snap_reader_open(&s->r, blob, len), 0);
	s->node = snap_node(&s->r, 0, "uart");
	assert_true(s->node >= 0);
}

static void test_serial_round_trip(void **state)
{
	struct irq_log la = { 0 }, lb = { 0 };
	struct serial a, b;
	struct snap s;

	(void)state;
	assert_int_equal(serial_init(&a, -1, serial_irq, &la), 0);
	assert_int_equal(serial_init(&b, -1, serial_irq, &lb), 0);
	uart_wr(&a, 3, 0x80);                  /* DLAB: divisor 0x0c03 */
	uart_wr(&a, 0, 0x03);
	uart_wr(&a, 1, 0x0c);
	uart_wr(&a, 3, 0x1b);                  /* 8E1, DLAB off */
	uart_wr(&a, 2, 0xc7);                  /* FIFO on, cleared */
	uart_wr(&a, 4, 0x0b);                  /* DTR RTS OUT2 */
	uart_wr(&a, 7, 0x5a);
	uart_wr(&a, 1, 0x01);                  /* RX data interrupt */
	assert_int_equal(serial_receive(&a, (const uint8_t *)"hi!", 3), 3);
	assert_int_equal(uart_rd(&a, 0), 'h'); /* one byte consumed: the FIFO's head moved */
	assert_int_equal(la.level, 1);

	snap_serial(&s, &a);
	assert_int_equal(serial_load(&b, &s.r, s.node), 0);
	/* The line comes up again in the new VM. */
	assert_int_equal(lb.level, 1);
	assert_int_equal(lb.raises, 1);
	assert_int_equal(uart_rd(&b, 3), 0x1b);
	assert_int_equal(uart_rd(&b, 4), 0x0b);
	assert_int_equal(uart_rd(&b, 7), 0x5a);
	assert_int_equal(uart_rd(&b, 1), 0x01);
	assert_int_equal(uart_rd(&b, 2), 0xc4);  /* FIFO on, RX data pending */
	assert_int_equal(uart_rd(&b, 5) & 0x61, 0x61);
	uart_wr(&b, 3, 0x9b);
	assert_int_equal(uart_rd(&b, 0), 0x03);
	assert_int_equal(uart_rd(&b, 1), 0x0c);
	uart_wr(&b, 3, 0x1b);
	assert_int_equal(uart_rd(&b, 0), 'i');
	assert_int_equal(uart_rd(&b, 0), '!');
	assert_int_equal(lb.level, 0);

	/* Corrupt fields: refused with their name, the UART untouched. */
	poke(&s, s.node, "rx_count", 0, 4, 17);
	assert_int_equal(serial_load(&b, &s.r, s.node), -EINVAL);
	assert_non_null(strstr(s.r.err, "/uart: rx_count: 0x11 is out of range"));
	poke(&s, s.node, "rx_count", 0, 4, 0);
	assert_int_equal(serial_load(&b, &s.r, s.node), -EINVAL);
	assert_non_null(strstr(s.r.err, "lsr: 0x61 says data ready, but the FIFO holds 0 bytes"));
	poke(&s, s.node, "rx_count", 0, 4, 2);
	poke(&s, s.node, "irq_level", 0, 1, 0);
	assert_int_equal(serial_load(&b, &s.r, s.node), -EINVAL);
	assert_non_null(strstr(s.r.err, "irq_level: 0, but the registers say 1"));
	assert_int_equal(uart_rd(&b, 7), 0x5a);
	assert_int_equal(uart_rd(&b, 5) & 1, 0);

	snap_done(&s);
	serial_destroy(&a);
	serial_destroy(&b);
}

static void test_rtc_round_trip(void **state)
{
	struct rtc a = { 0 }, b = { 0 };
	const void *blob;
	uint8_t v;
	size_t len;
	struct snap s;

	(void)state;
	for (unsigned i = 0; i < 128; i++)
		a.regs[i] = (uint8_t)(i * 7);
	v = 0x0b;
	rtc_io(&a, 0, &v, 1, true);
	v = 0x42;                                       /* register B: 24h, update interrupts on */
	rtc_io(&a, 1, &v, 1, true);
	v = 0x3c;
	rtc_io(&a, 0, &v, 1, true);                     /* the index the guest left */

	memset(&s, 0, sizeof(s));
	assert_int_equal(snap_writer_init(&s.w), 0);
	assert_int_equal(snap_begin_node(&s.w, "rtc"), 0);
	assert_int_equal(rtc_save(&a, &s.w), 0);
	assert_int_equal(snap_end_node(&s.w), 0);
	assert_int_equal(snap_writer_finish(&s.w, &blob, &len), 0);
	assert_int_equal(snap_reader_open(&s.r, blob, len), 0);
	s.node = snap_node(&s.r, 0, "rtc");
	assert_int_equal(rtc_load(&b, &s.r, s.node), 0);
	assert_memory_equal(&a, &b, sizeof(a));
	rtc_io(&b, 0, &v, 1, false);
	assert_int_equal(v, 0x3c);
	assert_int_equal(rtc_read_reg(&b, 0x0b, 0), 0x42);

	poke(&s, s.node, "index", 0, 1, 0x80);
	memset(&b, 0, sizeof(b));
	assert_int_equal(rtc_load(&b, &s.r, s.node), -EINVAL);
	assert_non_null(strstr(s.r.err, "/rtc: index: 0x80 is out of range"));
	assert_int_equal(b.regs[0x3c], 0);
	snap_done(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tables_are_valid),
		cmocka_unit_test(test_transport_round_trip),
		cmocka_unit_test(test_transport_shared_vector),
		cmocka_unit_test(test_transport_before_driver_ok),
		cmocka_unit_test(test_transport_without_save_is_refused),
		cmocka_unit_test(test_transport_corrupt_fields),
		cmocka_unit_test(test_transport_device_node),
		cmocka_unit_test(test_blk_round_trip_and_resized_disk),
		cmocka_unit_test(test_net_round_trip_and_other_mac),
		cmocka_unit_test(test_rng_round_trip),
		cmocka_unit_test(test_serial_round_trip),
		cmocka_unit_test(test_rtc_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
