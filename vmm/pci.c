#include "vmm/pci.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86_64/layout.h"
#include "vmm/irq.h"
#include "vmm/vm.h"

/* The host bridge: Red Hat's id for a generic PCIe host bridge, class 06/00 (host bridge). */
#define HOST_BRIDGE_VENDOR 0x1b36
#define HOST_BRIDGE_DEVICE 0x0008
#define HOST_BRIDGE_CLASS  0x060000

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* ---- building a device ---------------------------------------------------------- */

void pci_device_set_wmask(struct pci_device *d, uint32_t off, unsigned len, uint32_t mask)
{
	for (unsigned i = 0; i < len && i < 4 && off + i < PCI_CFG_SIZE; i++)
		d->wmask[off + i] = (uint8_t)(mask >> (8 * i));
}

void pci_device_init(struct pci_device *d, const char *name, uint16_t vendor, uint16_t device,
		     uint32_t class_code, uint8_t revision, uint16_t subsys_vendor,
		     uint16_t subsys_id)
{
	memset(d, 0, sizeof(*d));
	d->name = name;
	pci_cfg_put16(d, PCI_VENDOR_ID, vendor);
	pci_cfg_put16(d, PCI_DEVICE_ID, device);
	d->cfg[PCI_REVISION_ID] = revision;
	d->cfg[PCI_CLASS_PROG] = (uint8_t)class_code;
	pci_cfg_put16(d, PCI_CLASS_PROG + 1, (uint16_t)(class_code >> 8));
	d->cfg[PCI_HEADER_TYPE] = 0;   /* type 0, single function */
	pci_cfg_put16(d, PCI_SUBSYS_VENDOR, subsys_vendor);
	pci_cfg_put16(d, PCI_SUBSYS_ID, subsys_id);
	d->cap_end = PCI_CAP_START;
	/* What a guest may change in the header; everything else reads back as built. */
	pci_device_set_wmask(d, PCI_COMMAND, 2,
			     PCI_CMD_IO | PCI_CMD_MEM | PCI_CMD_MASTER | PCI_CMD_PARITY |
			     PCI_CMD_SERR | PCI_CMD_INTX_OFF);
	pci_device_set_wmask(d, PCI_CACHE_LINE, 1, 0xff);
	pci_device_set_wmask(d, PCI_LATENCY, 1, 0xff);
	pci_device_set_wmask(d, PCI_INT_LINE, 1, 0xff);
}

int pci_device_set_bar(struct pci_device *d, unsigned bar, enum pci_bar_type type, uint64_t size)
{
	uint32_t off = PCI_BAR0 + 4 * bar;

	if (bar >= PCI_NR_BARS || !is_pow2(size) || d->bars[bar].type != PCI_BAR_UNUSED)
		return -EINVAL;
	switch (type) {
	case PCI_BAR_IO:
		if (size < 4 || size > 256)
			return -EINVAL;
		d->cfg[off] = PCI_BAR_IO_FLAG;
		pci_device_set_wmask(d, off, 4, ~(uint32_t)(size - 1) & ~3u);
		break;
	case PCI_BAR_MEM32:
		if (size < 16 || size > 1ULL << 31)
			return -EINVAL;
		pci_device_set_wmask(d, off, 4, ~(uint32_t)(size - 1) & ~0xfu);
		break;
	case PCI_BAR_MEM64:
		if (size < 16 || bar + 1 >= PCI_NR_BARS || d->bars[bar + 1].type != PCI_BAR_UNUSED)
			return -EINVAL;
		d->cfg[off] = PCI_BAR_MEM64_FLAG;
		pci_device_set_wmask(d, off, 4, ~(uint32_t)(size - 1) & ~0xfu);
		pci_device_set_wmask(d, off + 4, 4, ~(uint32_t)((size - 1) >> 32));
		break;
	default:
		return -EINVAL;
	}
	d->bars[bar].type = type;
	d->bars[bar].size = size;
	return 0;
}

int pci_device_add_cap(struct pci_device *d, uint8_t id, const void *body, unsigned len)
{
	unsigned off = d->cap_end;

	if (len > PCI_CFG_SIZE || off + 2 + len > PCI_CFG_SIZE)
		return -ENOSPC;
	d->cfg[off] = id;
	d->cfg[off + 1] = 0;
	memcpy(&d->cfg[off + 2], body, len);
	if (d->cap_last)
		d->cfg[d->cap_last + 1] = (uint8_t)off;
	else
		d->cfg[PCI_CAP_PTR] = (uint8_t)off;
	d->cap_last = (uint8_t)off;
	d->cfg[PCI_STATUS] |= PCI_STATUS_CAPS;
	d->cap_end = (uint8_t)MIN(ALIGN_UP(off + 2 + len, 4u), PCI_CFG_SIZE - 4u);
	return (int)off;
}

/* ---- BAR decoding --------------------------------------------------------------- */

/* The address BAR i holds now, from config space. */
static uint64_t bar_addr(const struct pci_device *d, unsigned i)
{
	uint32_t lo = pci_cfg_get32(d, PCI_BAR0 + 4 * i);

	switch (d->bars[i].type) {
	case PCI_BAR_IO:
		return lo & ~3u;
	case PCI_BAR_MEM32:
		return lo & ~0xfu;
	case PCI_BAR_MEM64:
		return (uint64_t)pci_cfg_get32(d, PCI_BAR0 + 4 * (i + 1)) << 32 | (lo & ~0xfu);
	default:
		return 0;
	}
}

static bool in_window(const struct pci_window *w, uint64_t addr, uint64_t size)
{
	return w->size && addr >= w->base && size <= w->size && addr - w->base <= w->size - size;
}

/* Where BAR i should decode given the command register and its address: 0 for nowhere. */
static uint64_t bar_target(const struct pci_bus *pb, const struct pci_device *d, unsigned i)
{
	const struct pci_bar *b = &d->bars[i];
	uint16_t cmd = pci_cfg_get16(d, PCI_COMMAND);
	uint64_t addr = bar_addr(d, i);

	switch (b->type) {
	case PCI_BAR_IO:
		return (cmd & PCI_CMD_IO) && in_window(&pb->io, addr, b->size) ? addr : 0;
	case PCI_BAR_MEM32:
		return (cmd & PCI_CMD_MEM) && in_window(&pb->mem32, addr, b->size) ? addr : 0;
	case PCI_BAR_MEM64:
		if (!(cmd & PCI_CMD_MEM))
			return 0;
		return in_window(&pb->mem32, addr, b->size) || in_window(&pb->mem64, addr, b->size)
			       ? addr : 0;
	default:
		return 0;
	}
}

/* Re-evaluate d's BARs after a command or BAR write; caller holds cfg_lock. */
static void update_decode(struct pci_bus *pb, struct pci_device *d)
{
	uint64_t old[PCI_NR_BARS], now[PCI_NR_BARS];
	bool changed = false;

	for (unsigned i = 0; i < PCI_NR_BARS; i++) {
		old[i] = d->bars[i].decode;
		now[i] = bar_target(pb, d, i);
		changed |= old[i] != now[i];
	}
	if (!changed)
		return;
	pthread_rwlock_wrlock(&pb->bar_lock);
	for (unsigned i = 0; i < PCI_NR_BARS; i++)
		d->bars[i].decode = now[i];
	pthread_rwlock_unlock(&pb->bar_lock);
	/* Outside bar_lock: the device may issue KVM ioctls (ioeventfds) here. */
	for (unsigned i = 0; i < PCI_NR_BARS; i++)
		if (old[i] != now[i] && d->ops && d->ops->bar_remap)
			d->ops->bar_remap(d, i, old[i], now[i]);
}

uint64_t pci_bar_decode(struct pci_device *d, unsigned bar)
{
	uint64_t v;

	if (bar >= PCI_NR_BARS || !d->bus)
		return 0;
	pthread_rwlock_rdlock(&d->bus->bar_lock);
	v = d->bars[bar].decode;
	pthread_rwlock_unlock(&d->bus->bar_lock);
	return v;
}

void pci_window_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	struct pci_window *w = opaque;
	struct pci_bus *pb = w->bus;
	uint64_t addr = w->base + offset;
	bool want_io = w->type == PCI_BAR_IO;

	pthread_rwlock_rdlock(&pb->bar_lock);
	for (unsigned s = 0; s < PCI_NR_SLOTS; s++) {
		struct pci_device *d = pb->slots[s];

		if (!d)
			continue;
		for (unsigned i = 0; i < PCI_NR_BARS; i++) {
			const struct pci_bar *b = &d->bars[i];

			if (!b->decode || (b->type == PCI_BAR_IO) != want_io)
				continue;
			if (addr < b->decode || addr - b->decode >= b->size)
				continue;
			if (len > b->size - (addr - b->decode))
				break;  /* runs off the BAR's end: unclaimed */
			if (d->ops && d->ops->bar_io)
				d->ops->bar_io(d, i, addr - b->decode, data, len, is_write);
			else if (!is_write)
				memset(data, 0xff, len);
			pthread_rwlock_unlock(&pb->bar_lock);
			return;
		}
	}
	pthread_rwlock_unlock(&pb->bar_lock);
	if (!is_write)
		memset(data, 0xff, len);
}

/* ---- configuration space -------------------------------------------------------- */

static bool overlaps(uint32_t off, unsigned len, uint32_t start, uint32_t end)
{
	return off < end && start < off + len;
}

/* One naturally aligned access of 1, 2 or 4 bytes to an existing function. */
static void cfg_access_one(struct pci_bus *pb, struct pci_device *d, uint32_t reg, uint8_t *data,
			   unsigned len, bool is_write)
{
	if (reg >= PCI_CFG_SIZE) {
		/* Extended space: no extended capabilities, writes ignored. */
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	if (!is_write) {
		if (d->ops && d->ops->cfg_read)
			d->ops->cfg_read(d, reg, len);
		memcpy(data, &d->cfg[reg], len);
		return;
	}
	for (unsigned i = 0; i < len; i++) {
		uint8_t m = d->wmask[reg + i];

		d->cfg[reg + i] = (uint8_t)((d->cfg[reg + i] & ~m) | (data[i] & m));
	}
	if (overlaps(reg, len, PCI_COMMAND, PCI_COMMAND + 2) ||
	    overlaps(reg, len, PCI_BAR0, PCI_BAR0 + 4 * PCI_NR_BARS))
		update_decode(pb, d);
	if (d->ops && d->ops->cfg_write)
		d->ops->cfg_write(d, reg, len);
}

static void cfg_access_locked(struct pci_bus *pb, unsigned slot, unsigned fn, uint32_t reg,
			      uint8_t *data, unsigned len, bool is_write)
{
	struct pci_device *d = slot < PCI_NR_SLOTS && fn == 0 ? pb->slots[slot] : NULL;

	if (!d) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	if ((len == 1 || len == 2 || len == 4) && reg % len == 0) {
		cfg_access_one(pb, d, reg, data, len, is_write);
	} else if (len == 8 && reg % 8 == 0) {
		cfg_access_one(pb, d, reg, data, 4, is_write);
		cfg_access_one(pb, d, reg + 4, data + 4, 4, is_write);
	} else {
		/* Unaligned: byte by byte, as byte enables would do it. */
		for (unsigned i = 0; i < len; i++)
			cfg_access_one(pb, d, reg + i, data + i, 1, is_write);
	}
}

void pci_cfg_access(struct pci_bus *pb, unsigned slot, unsigned fn, uint32_t reg, uint8_t *data,
		    unsigned len, bool is_write)
{
	if (len == 0 || len > 8 || reg >= PCI_ECAM_FN_SIZE || len > PCI_ECAM_FN_SIZE - reg) {
		if (!is_write)
			memset(data, 0xff, len > 8 ? 8 : len);
		return;
	}
	pthread_mutex_lock(&pb->cfg_lock);
	cfg_access_locked(pb, slot, fn, reg, data, len, is_write);
	pthread_mutex_unlock(&pb->cfg_lock);
}

/* Ports 0xCF8-0xCFF: the address register (32-bit accesses only) and the data window. */
void pci_cf8_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	struct pci_bus *pb = opaque;
	uint32_t addr;

	if (offset < 4) {
		if (offset != 0 || len != 4) {
			if (!is_write)
				memset(data, 0xff, len);
			return;
		}
		pthread_mutex_lock(&pb->cfg_lock);
		if (is_write)
			pb->cf8 = (uint32_t)data[0] | (uint32_t)data[1] << 8 |
				  (uint32_t)data[2] << 16 | (uint32_t)data[3] << 24;
		else
			memcpy(data, &(uint32_t){ cpu_to_le32(pb->cf8) }, 4);
		pthread_mutex_unlock(&pb->cfg_lock);
		return;
	}
	offset -= 4;
	if (offset + len > 4) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&pb->cfg_lock);
	addr = pb->cf8;
	if (!(addr & PCI_CF8_ENABLE) || ((addr >> 16) & 0xff) != 0) {
		/* Disabled, or a bus that does not exist. */
		if (!is_write)
			memset(data, 0xff, len);
	} else {
		cfg_access_locked(pb, (addr >> 11) & 31, (addr >> 8) & 7,
				  (addr & 0xfc) + (uint32_t)offset, data, len, is_write);
	}
	pthread_mutex_unlock(&pb->cfg_lock);
}

/* ECAM: offset = bus << 20 | slot << 15 | fn << 12 | reg; the window covers bus 0 only. */
void pci_ecam_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	struct pci_bus *pb = opaque;
	uint32_t reg = offset & (PCI_ECAM_FN_SIZE - 1);

	if (offset >> 20 || reg + len > PCI_ECAM_FN_SIZE) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	pci_cfg_access(pb, (offset >> 15) & 31, (offset >> 12) & 7, reg, data, len, is_write);
}

/* ---- the bus -------------------------------------------------------------------- */

static void window_init(struct pci_window *w, struct pci_bus *pb, enum pci_bar_type type,
			uint64_t base, uint64_t size)
{
	w->base = w->next = base;
	w->size = size;
	w->type = type;
	w->bus = pb;
}

int pci_bus_init(struct pci_bus *pb, const struct pci_bus_params *p)
{
	struct pci_device *hb = &pb->host_bridge;
	int ret;

	memset(pb, 0, sizeof(*pb));
	pthread_mutex_init(&pb->cfg_lock, NULL);
	pthread_rwlock_init(&pb->bar_lock, NULL);
	window_init(&pb->io, pb, PCI_BAR_IO, p->io_base, p->io_size);
	window_init(&pb->mem32, pb, PCI_BAR_MEM32, p->mem32_base, p->mem32_size);
	window_init(&pb->mem64, pb, PCI_BAR_MEM64, p->mem64_base, p->mem64_size);
	pb->pio = p->pio;
	pb->mmio = p->mmio;
	pb->ecam_base = p->ecam_base;

	pci_device_init(hb, "host-bridge", HOST_BRIDGE_VENDOR, HOST_BRIDGE_DEVICE, HOST_BRIDGE_CLASS,
			0, HOST_BRIDGE_VENDOR, 0x1100);
	hb->bus = pb;
	pb->slots[0] = hb;

	if ((ret = bus_register(p->pio, PCI_CONFIG_PORT, 8, pci_cf8_io, pb, "pci-cf8")))
		goto err;
	if ((ret = bus_register(p->mmio, p->ecam_base, PCI_NR_SLOTS * 8 * PCI_ECAM_FN_SIZE,
				pci_ecam_io, pb, "pci-ecam")))
		goto err_cf8;
	if (p->io_size && (ret = bus_register(p->pio, p->io_base, p->io_size, pci_window_io,
					      &pb->io, "pci-io")))
		goto err_ecam;
	if ((ret = bus_register(p->mmio, p->mem32_base, p->mem32_size, pci_window_io, &pb->mem32,
				"pci-mem32")))
		goto err_io;
	if (p->mem64_size && (ret = bus_register(p->mmio, p->mem64_base, p->mem64_size,
						 pci_window_io, &pb->mem64, "pci-mem64")))
		goto err_mem32;
	pb->registered = true;
	return 0;

err_mem32:
	bus_unregister(p->mmio, p->mem32_base, &pb->mem32);
err_io:
	if (p->io_size)
		bus_unregister(p->pio, p->io_base, &pb->io);
err_ecam:
	bus_unregister(p->mmio, p->ecam_base, pb);
err_cf8:
	bus_unregister(p->pio, PCI_CONFIG_PORT, pb);
err:
	pthread_rwlock_destroy(&pb->bar_lock);
	pthread_mutex_destroy(&pb->cfg_lock);
	return ret;
}

void pci_bus_destroy(struct pci_bus *pb)
{
	if (!pb->registered)
		return;
	for (unsigned s = 1; s < PCI_NR_SLOTS; s++) {
		struct pci_device *d = pb->slots[s];

		pb->slots[s] = NULL;
		if (d && d->ops && d->ops->destroy)
			d->ops->destroy(d);
	}
	bus_unregister(pb->pio, PCI_CONFIG_PORT, pb);
	bus_unregister(pb->mmio, pb->ecam_base, pb);
	if (pb->io.size)
		bus_unregister(pb->pio, pb->io.base, &pb->io);
	bus_unregister(pb->mmio, pb->mem32.base, &pb->mem32);
	if (pb->mem64.size)
		bus_unregister(pb->mmio, pb->mem64.base, &pb->mem64);
	pthread_rwlock_destroy(&pb->bar_lock);
	pthread_mutex_destroy(&pb->cfg_lock);
	pb->registered = false;
}

/* Place BAR i (naturally aligned, bump allocation) and write its address; -ENOSPC when full. */
static int place_bar(struct pci_bus *pb, struct pci_device *d, unsigned i)
{
	struct pci_bar *b = &d->bars[i];
	struct pci_window *w;
	uint64_t addr;
	uint32_t off = PCI_BAR0 + 4 * i;

	switch (b->type) {
	case PCI_BAR_IO:
		w = &pb->io;
		break;
	case PCI_BAR_MEM32:
		w = &pb->mem32;
		break;
	case PCI_BAR_MEM64:
		w = pb->mem64.size ? &pb->mem64 : &pb->mem32;
		break;
	default:
		return 0;
	}
	addr = ALIGN_UP(w->next, b->size);
	if (addr < w->next || !in_window(w, addr, b->size))
		return -ENOSPC;
	w->next = addr + b->size;
	pci_cfg_put32(d, off, (pci_cfg_get32(d, off) & ~d->wmask[off] & 0xf) | (uint32_t)addr);
	if (b->type == PCI_BAR_MEM64)
		pci_cfg_put32(d, off + 4, (uint32_t)(addr >> 32));
	return 0;
}

int pci_bus_add(struct pci_bus *pb, struct pci_device *d)
{
	uint16_t cmd = 0;
	unsigned slot;
	int ret = 0;

	pthread_mutex_lock(&pb->cfg_lock);
	for (slot = 1; slot < PCI_NR_SLOTS && pb->slots[slot]; slot++)
		;
	if (slot == PCI_NR_SLOTS) {
		ret = -ENOSPC;
		goto out;
	}
	for (unsigned i = 0; i < PCI_NR_BARS; i++) {
		ret = place_bar(pb, d, i);
		if (ret)
			goto out;
		if (d->bars[i].type == PCI_BAR_IO)
			cmd |= PCI_CMD_IO;
		else if (d->bars[i].type != PCI_BAR_UNUSED)
			cmd |= PCI_CMD_MEM;
	}
	d->bus = pb;
	d->slot = slot;
	/* As firmware leaves it: BARs assigned and decoding. */
	pci_cfg_put16(d, PCI_COMMAND, cmd);
	pthread_rwlock_wrlock(&pb->bar_lock);
	pb->slots[slot] = d;
	pthread_rwlock_unlock(&pb->bar_lock);
	update_decode(pb, d);
out:
	pthread_mutex_unlock(&pb->cfg_lock);
	return ret;
}

/* ---- the VM's bus ---------------------------------------------------------------- */

int pci_vm_init(struct vm *vm)
{
	struct pci_bus_params p = {
		.pio = &vm->pio,
		.mmio = &vm->mmio,
		.io_base = X86_PCI_IO_BASE,
		.io_size = X86_PCI_IO_SIZE,
		.mem32_base = X86_PCI_MMIO32_BASE,
		.mem32_size = X86_PCI_MMIO32_SIZE,
		/* The same window vm_load() describes in the DSDT. */
		.mem64_base = ALIGN_UP(MAX(gmem_end(&vm->mem), X86_MEM_HOLE_END), X86_PCI_MMIO64_ALIGN),
		.mem64_size = X86_PCI_MMIO64_SIZE,
		.ecam_base = X86_PCI_ECAM_BASE,
	};
	int ret;

	vm->irq = calloc(1, sizeof(*vm->irq));
	if (!vm->irq)
		return -ENOMEM;
	ret = irq_router_init(vm->irq, vm->vm_fd);
	if (ret) {
		free(vm->irq);
		vm->irq = NULL;
		return ret;
	}
	vm->pci = calloc(1, sizeof(*vm->pci));
	if (!vm->pci)
		return -ENOMEM;
	ret = pci_bus_init(vm->pci, &p);
	if (ret) {
		pr_err("registering the PCI host bridge failed: %s", strerror(-ret));
		free(vm->pci);
		vm->pci = NULL;
		return ret;
	}
	/* The address register, written before every type-1 config access. */
	vm_coalesce_pio(vm, PCI_CONFIG_PORT, 4);
	return 0;
}

void pci_vm_detach(struct vm *vm)
{
	if (vm->irq)
		irq_router_detach(vm->irq);
}

void pci_vm_destroy(struct vm *vm)
{
	pci_vm_detach(vm);
	if (vm->pci) {
		pci_bus_destroy(vm->pci);
		free(vm->pci);
		vm->pci = NULL;
	}
	if (vm->irq) {
		irq_router_destroy(vm->irq);
		free(vm->irq);
		vm->irq = NULL;
	}
}
