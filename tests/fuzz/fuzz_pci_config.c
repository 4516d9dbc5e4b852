/*
 * libFuzzer harness for vmm/pci + virtio/virtio_pci: the input is a hostile
 * guest poking configuration space (ECAM and 0xCF8/0xCFC), BARs (moving them,
 * toggling decode), the common configuration, the MSI-X table, notify and
 * device config regions, writing guest RAM and kicking queues.
 *
 * Every input builds a fresh bus with the host bridge, a virtio-rng and a
 * fake device with config space and three queues, behind a fake KVM that
 * refuses duplicate ioeventfds like the real one. Operations, 12 bytes each:
 *
 *   [0] op   [1] selector   [2..3] le16 offset   [4] length code   [5..11] value
 *   (the value's eighth byte is 0; seeds in tests/fuzz/corpus/pci_config/)
 *
 * Beyond ASan/UBSan, invariants are checked after every operation: device
 * identity unchanged, BARs decode only inside their windows, DRIVER_OK only
 * with FEATURES_OK, negotiated features a subset of the offer, vectors in
 * range or NO_VECTOR; and at teardown KVM got every ioeventfd and irqfd back.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "channel/evloop.h"
#include "virtio/virtio_pci.h"
#include "vmm/irq.h"
#include "vmm/vm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
extern const struct virtio_dev_kind virtio_rng_kind;

#define MEM32_BASE 0xc0000000ULL
#define MEM32_SIZE 0x20000000ULL
#define MEM64_BASE 0x100000000ULL
#define MEM64_SIZE 0x1000000000ULL
#define ECAM_BASE  0xe0000000ULL
#define IO_BASE    0xc000ULL
#define RAM_SIZE   (64 * 1024)
#define MAX_OPS    512

#define CHECK(cond)                      \
	do {                             \
		if (!(cond))             \
			__builtin_trap(); \
	} while (0)

/* ---- fake KVM: balanced bookkeeping, duplicates refused ---- */

struct fake_kvm {
	int ioev_live;
	int irqfd_live;
	struct { int fd; uint64_t addr; uint32_t len; } ioev[64];
	unsigned nr_ioev;
};

static int fk_routing(void *ctx, const struct kvm_irq_routing *t)
{
	(void)ctx;
	CHECK(t->nr >= 40 && t->nr <= 40 + IRQ_MAX_MSI);
	for (unsigned i = 40; i < t->nr; i++)
		CHECK(t->entries[i].type == KVM_IRQ_ROUTING_MSI &&
		      irq_msi_valid(t->entries[i].u.msi.address_lo, t->entries[i].u.msi.address_hi,
				    t->entries[i].u.msi.data));
	return 0;
}

static int fk_irqfd(void *ctx, int fd, uint32_t gsi, bool assign)
{
	struct fake_kvm *k = ctx;

	(void)fd;
	CHECK(gsi >= IRQ_FIRST_MSI_GSI);
	k->irqfd_live += assign ? 1 : -1;
	return 0;
}

static int fk_ioeventfd(void *ctx, int fd, uint64_t addr, uint32_t len, bool pio, bool assign)
{
	struct fake_kvm *k = ctx;

	CHECK(!pio);
	for (unsigned i = 0; i < k->nr_ioev; i++) {
		if (k->ioev[i].addr == addr && k->ioev[i].len == len) {
			if (assign)
				return -EEXIST;
			CHECK(k->ioev[i].fd == fd);
			k->ioev[i] = k->ioev[--k->nr_ioev];
			k->ioev_live--;
			return 0;
		}
	}
	if (!assign)
		return -ENOENT;
	/* An ioeventfd only ever sits inside a window (it would shadow RAM otherwise). */
	CHECK((addr >= MEM32_BASE && addr < MEM32_BASE + MEM32_SIZE) ||
	      (addr >= MEM64_BASE && addr < MEM64_BASE + MEM64_SIZE));
	CHECK(k->nr_ioev < 64);
	k->ioev[k->nr_ioev].fd = fd;
	k->ioev[k->nr_ioev].addr = addr;
	k->ioev[k->nr_ioev++].len = len;
	k->ioev_live++;
	return 0;
}

static const struct irq_kvm_ops fk_ops = { fk_routing, fk_irqfd, fk_ioeventfd };

/* ---- a fake device with config space ---- */

struct fdev {
	uint8_t cfg[24];
	struct virtq_chain chain;
};

static void fdev_notify(struct virtio_dev *vdev, unsigned q)
{
	struct fdev *d = vdev->priv;
	int r;

	CHECK(q < vdev->num_queues);
	while ((r = virtq_pop(&vdev->vqs[q], &d->chain)) > 0)
		virtio_dev_complete(vdev, q, d->chain.head, d->chain.in_len > 4 ? 4 : 0);
}

static void fdev_cfg_read(struct virtio_dev *vdev, uint32_t off, void *data, uint32_t len)
{
	struct fdev *d = vdev->priv;

	CHECK(off < sizeof(d->cfg) && len <= sizeof(d->cfg) - off);
	memcpy(data, d->cfg + off, len);
}

static void fdev_cfg_write(struct virtio_dev *vdev, uint32_t off, const void *data, uint32_t len)
{
	struct fdev *d = vdev->priv;

	CHECK(off < sizeof(d->cfg) && len <= sizeof(d->cfg) - off);
	memcpy(d->cfg + off, data, len);
	/* Every write is a config change: exercises the generation and config vector. */
	__atomic_add_fetch(&vdev->config_generation, 1, __ATOMIC_SEQ_CST);
}

static const struct virtio_dev_ops fdev_ops = {
	.name = "fuzz",
	.device_id = 5,
	.queue_notify = fdev_notify,
	.cfg_read = fdev_cfg_read,
	.cfg_write = fdev_cfg_write,
};

/* ---- per-process and per-input state ---- */

static struct vm vm;
static struct fdev fdev;

struct world {
	struct bus pio, mmio;
	struct pci_bus pb;
	struct irq_router irq;
	struct fake_kvm kvm;
	struct virtio_dev vdev[2];
	struct virtio_pci vp[2];
};

static void init_once(void)
{
	static int done;

	if (done)
		return;
	done = 1;
	if (gmem_create(&vm.mem, RAM_SIZE, 0, 0) || evloop_create(&vm.loop) ||
	    virtq_chain_init(&fdev.chain, 64))
		abort();
}

static uint64_t get_le(const uint8_t *p, unsigned len)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < len; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void check_invariants(struct world *w)
{
	for (unsigned i = 0; i < 2; i++) {
		struct virtio_pci *vp = &w->vp[i];
		uint8_t st = vp->status;

		CHECK(pci_cfg_get16(&vp->pci, PCI_VENDOR_ID) == VIRTIO_PCI_VENDOR);
		CHECK(!(st & VIRTIO_STATUS_DRIVER_OK) || (st & VIRTIO_STATUS_FEATURES_OK));
		CHECK(!(st & VIRTIO_STATUS_NEEDS_RESET));
		CHECK((vp->vdev->driver_features & ~vp->offered) == 0);
		CHECK(vp->config_vector == VIRTIO_MSI_NO_VECTOR || vp->config_vector < vp->nvec);
		for (unsigned q = 0; q < vp->vdev->num_queues; q++) {
			const struct virtq *vq = &vp->vdev->vqs[q];
			uint16_t v = vp->queues[q].msix_vector;

			CHECK(v == VIRTIO_MSI_NO_VECTOR || v < vp->nvec);
			CHECK(vq->size && !(vq->size & (vq->size - 1)) &&
			      vq->size <= vp->vdev->queue_max_size);
		}
		for (unsigned b = 0; b < PCI_NR_BARS; b++) {
			uint64_t a = vp->pci.bars[b].decode, s = vp->pci.bars[b].size;

			CHECK(!a || (a % s == 0 &&
				     ((a >= MEM32_BASE && a + s <= MEM32_BASE + MEM32_SIZE) ||
				      (a >= MEM64_BASE && a + s <= MEM64_BASE + MEM64_SIZE))));
		}
	}
	CHECK(pci_cfg_get16(&w->pb.host_bridge, PCI_VENDOR_ID) == 0x1b36);
}

static void run_op(struct world *w, const uint8_t *op)
{
	static const unsigned lens[] = { 1, 2, 4, 8, 1, 2, 4, 3 };
	unsigned sel = op[1], len = lens[op[4] & 7];
	uint32_t off = (uint32_t)get_le(op + 2, 2);
	uint8_t val[8];
	struct virtio_pci *vp = &w->vp[sel & 1];
	uint64_t base;

	memcpy(val, op + 5, 7);
	val[7] = 0;
	if (len == 3)
		len = 8;
	switch (op[0] % 12) {
	case 0: /* ECAM, slots 0-3 and any function */
	case 1:
		bus_access(&w->mmio, ECAM_BASE + ((uint64_t)(sel & 3) << 15) +
				     ((uint64_t)((sel >> 2) & 7) << 12) + (off & 0xfff),
			   val, len, op[0] % 12 == 0);
		break;
	case 2: /* the config address register */
		bus_access(&w->pio, 0xcf8 + (sel & 7), val, len > 4 ? 4 : len, true);
		break;
	case 3: /* the config data register */
		bus_access(&w->pio, 0xcfc + (sel & 3), val, len > 4 ? 4 : len, sel & 4);
		break;
	case 4: /* BAR 2 of a virtio device, wherever it decodes now */
	case 5:
		base = pci_bar_decode(&vp->pci, VPCI_BAR);
		if (base)
			bus_access(&w->mmio, base + (off & (VPCI_BAR_SIZE - 1)), val, len,
				   op[0] % 12 == 4);
		break;
	case 6: /* the common configuration, densely */
		base = pci_bar_decode(&vp->pci, VPCI_BAR);
		if (base)
			bus_access(&w->mmio, base + (off & 0x3f), val, len, sel & 2);
		break;
	case 7: /* the MSI-X table and PBA */
		base = pci_bar_decode(&vp->pci, VPCI_MSIX_BAR);
		if (base)
			bus_access(&w->mmio, base + (off & (VPCI_MSIX_BAR_SIZE - 1)), val, len, sel & 2);
		break;
	case 8: /* anywhere in the windows or the I/O window */
		if (sel & 2)
			bus_access(&w->pio, IO_BASE + (off & 0x3fff), val, len > 4 ? 4 : len, sel & 4);
		else
			bus_access(&w->mmio, (sel & 4 ? MEM64_BASE : MEM32_BASE) + off * 16ULL, val, len,
				   sel & 8);
		break;
	case 9: /* the guest rewrites its RAM (rings, descriptors) */
		memcpy((uint8_t *)gmem_translate(&vm.mem, 0, RAM_SIZE) + (off % (RAM_SIZE - 8)), val,
		       8);
		break;
	case 10: { /* a kick through the ioeventfd */
		int fd = virtio_pci_queue_kick_fd(vp, sel >> 1);
		uint64_t one = 1;

		if (fd >= 0 && write(fd, &one, sizeof(one)) < 0)
			abort();
		break;
	}
	case 11:
		while (evloop_run_once(vm.loop, 0) > 0)
			;
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pci_bus_params p = {
		.io_base = IO_BASE, .io_size = 0x4000,
		.mem32_base = MEM32_BASE, .mem32_size = MEM32_SIZE,
		.mem64_base = MEM64_BASE, .mem64_size = MEM64_SIZE,
		.ecam_base = ECAM_BASE,
	};
	struct world *w;
	char err[64];
	size_t nops = size / 12;

	init_once();
	w = calloc(1, sizeof(*w));
	if (!w || bus_init(&w->pio, "pio") || bus_init(&w->mmio, "mmio"))
		abort();
	p.pio = &w->pio;
	p.mmio = &w->mmio;
	memset(gmem_translate(&vm.mem, 0, RAM_SIZE), 0, RAM_SIZE);
	memset(fdev.cfg, 0, sizeof(fdev.cfg));
	if (pci_bus_init(&w->pb, &p) || irq_router_init_ops(&w->irq, &fk_ops, &w->kvm))
		abort();
	if (virtio_rng_kind.create(&vm, "", &w->vdev[0], err, sizeof(err)))
		abort();
	w->vdev[1] = (struct virtio_dev){
		.ops = &fdev_ops, .priv = &fdev, .vm = &vm, .id = "fuzz0",
		.device_features = 1ULL << 3 | 1ULL << 40, .config_size = sizeof(fdev.cfg),
		.num_queues = 3, .queue_max_size = 64,
	};
	for (unsigned i = 0; i < 2; i++)
		if (virtio_pci_init(&w->vp[i], &w->vdev[i], &w->pb, &w->irq, vm.loop))
			abort();

	if (nops > MAX_OPS)
		nops = MAX_OPS;
	for (size_t i = 0; i < nops; i++) {
		run_op(w, data + 12 * i);
		check_invariants(w);
	}
	while (evloop_run_once(vm.loop, 0) > 0)
		;

	pci_bus_destroy(&w->pb);
	CHECK(w->kvm.ioev_live == 0);
	CHECK(w->kvm.irqfd_live == 0);
	irq_router_destroy(&w->irq);
	CHECK(w->pio.nr == 0 && w->mmio.nr == 0);
	bus_destroy(&w->pio);
	bus_destroy(&w->mmio);
	free(w);
	return 0;
}
