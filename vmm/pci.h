/*
 * PCI bus 0: a host bridge at 00:00.0 and up to 31 single-function devices,
 * configured through ports 0xCF8/0xCFC (mechanism #1) and the PCIe ECAM
 * window. The bus plays firmware too: it places every BAR in its window when
 * a device is added and turns decoding on, as a BIOS would; the guest may
 * move BARs and toggle decoding afterwards, and the bus follows.
 *
 * Windows: I/O BARs in [io_base, +io_size), 32-bit memory BARs in the 32-bit
 * window below 4 GiB, 64-bit memory BARs in the window above RAM. The bus
 * registers each window (and the config mechanisms) on the VM's buses once
 * and dispatches inside them itself, so moving a BAR never re-enters the
 * vmm/bus locks from inside a bus handler.
 *
 * A BAR decodes when the command register enables its space (IO or MEM) and
 * the whole BAR lies inside its window; a device hears about every change
 * through ops->bar_remap (it moves its ioeventfds there).
 *
 * Locking: cfg_lock serialises configuration accesses (either mechanism) and
 * the device hooks they call; bar_lock (rwlock) guards where BARs decode:
 * BAR accesses hold it for reading while the device handler runs, config
 * writes take it for writing only to update the decode table. Order:
 * cfg_lock -> bar_lock; device locks come after either.
 */
#ifndef VMM_PCI_H
#define VMM_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/bus.h"
#include "vmm/util.h"

#define PCI_CFG_SIZE       256    /* stored configuration space; 0x100-0xfff read as 0 */
#define PCI_ECAM_FN_SIZE   4096
#define PCI_NR_SLOTS       32
#define PCI_NR_BARS        6
#define PCI_CAP_START      0x40

/* Type 0 header (PCI Local Bus 3.0, 6.1). */
#define PCI_VENDOR_ID      0x00
#define PCI_DEVICE_ID      0x02
#define PCI_COMMAND        0x04
#define PCI_STATUS         0x06
#define PCI_REVISION_ID    0x08
#define PCI_CLASS_PROG     0x09
#define PCI_CACHE_LINE     0x0c
#define PCI_LATENCY        0x0d
#define PCI_HEADER_TYPE    0x0e
#define PCI_BAR0           0x10
#define PCI_SUBSYS_VENDOR  0x2c
#define PCI_SUBSYS_ID      0x2e
#define PCI_ROM_ADDRESS    0x30
#define PCI_CAP_PTR        0x34
#define PCI_INT_LINE       0x3c
#define PCI_INT_PIN        0x3d

#define PCI_CMD_IO         0x0001
#define PCI_CMD_MEM        0x0002
#define PCI_CMD_MASTER     0x0004
#define PCI_CMD_PARITY     0x0040
#define PCI_CMD_SERR       0x0100
#define PCI_CMD_INTX_OFF   0x0400
#define PCI_STATUS_CAPS    0x0010

#define PCI_BAR_IO_FLAG    0x1
#define PCI_BAR_MEM64_FLAG 0x4
#define PCI_BAR_PREFETCH   0x8

#define PCI_CAP_ID_VNDR    0x09
#define PCI_CAP_ID_MSIX    0x11

/* Config address register of mechanism #1. */
#define PCI_CF8_ENABLE     0x80000000u
#define PCI_CONFIG_PORT    0xcf8

enum pci_bar_type { PCI_BAR_UNUSED, PCI_BAR_IO, PCI_BAR_MEM32, PCI_BAR_MEM64 };

struct pci_device;

struct pci_device_ops {
	/* An access inside a decoding BAR; off is relative to the BAR's start. */
	void (*bar_io)(struct pci_device *d, unsigned bar, uint64_t off, uint8_t *data,
		       unsigned len, bool is_write);
	/* Before a config read of [off, off+len): refresh those bytes. Optional. */
	void (*cfg_read)(struct pci_device *d, uint32_t off, uint32_t len);
	/* After the bus stored a config write to [off, off+len): side effects. Optional. */
	void (*cfg_write)(struct pci_device *d, uint32_t off, uint32_t len);
	/* BAR bar now decodes at new_addr (0: not at all); it decoded at old_addr. Optional. */
	void (*bar_remap)(struct pci_device *d, unsigned bar, uint64_t old_addr, uint64_t new_addr);
	/* pci_bus_destroy() calls this for every device still on the bus. Optional. */
	void (*destroy)(struct pci_device *d);
};

struct pci_bar {
	enum pci_bar_type type;
	uint64_t size;      /* a power of two */
	uint64_t decode;    /* guest address it decodes at, 0: not decoding */
};

struct pci_device {
	const char *name;
	const struct pci_device_ops *ops;
	void *opaque;
	struct pci_bus *bus;
	unsigned slot;
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE];   /* bits the guest may write */
	uint8_t cap_end;               /* where the next capability goes */
	uint8_t cap_last;              /* offset of the last capability, 0: none */
	struct pci_bar bars[PCI_NR_BARS];
};

struct pci_window {
	uint64_t base, size;
	uint64_t next;                 /* bump allocator for BAR placement */
	enum pci_bar_type type;        /* which BARs live here (MEM32 covers MEM64 too) */
	struct pci_bus *bus;
};

struct pci_bus {
	pthread_mutex_t cfg_lock;
	pthread_rwlock_t bar_lock;
	uint32_t cf8;                  /* mechanism #1 address register */
	struct pci_device *slots[PCI_NR_SLOTS];
	struct pci_device host_bridge;
	struct pci_window io, mem32, mem64;
	struct bus *pio, *mmio;        /* where the bus registered itself */
	uint64_t ecam_base;
	bool registered;
};

struct pci_bus_params {
	struct bus *pio, *mmio;
	uint64_t io_base, io_size;
	uint64_t mem32_base, mem32_size;
	uint64_t mem64_base, mem64_size;   /* size 0: no 64-bit window */
	uint64_t ecam_base;                /* bus 0 only: PCI_NR_SLOTS * 8 * 4 KiB */
};

/* Set up the bus with its host bridge and register it on the buses. */
int pci_bus_init(struct pci_bus *pb, const struct pci_bus_params *p) WUR;
/* Calls every device's destroy hook, then unregisters and frees the bus's own state. */
void pci_bus_destroy(struct pci_bus *pb);

/*
 * Fill a type 0 header. class_code is the 24-bit class/subclass/prog-if.
 * Interrupt pin 0: no INTx. The device still needs pci_bus_add().
 */
void pci_device_init(struct pci_device *d, const char *name, uint16_t vendor, uint16_t device,
		     uint32_t class_code, uint8_t revision, uint16_t subsys_vendor,
		     uint16_t subsys_id);
/* Declare BAR bar (MEM64 takes bar and bar+1). size: a power of two, >= 16 (>= 4 for I/O). */
int pci_device_set_bar(struct pci_device *d, unsigned bar, enum pci_bar_type type,
		       uint64_t size) WUR;
/*
 * Append a capability: id, then body (len bytes, which follow the id and
 * next bytes). Returns the capability's offset in config space, or -ENOSPC.
 */
int pci_device_add_cap(struct pci_device *d, uint8_t id, const void *body, unsigned len) WUR;
/* Let the guest write the bits of mask (little-endian, len <= 4) at off. */
void pci_device_set_wmask(struct pci_device *d, uint32_t off, unsigned len, uint32_t mask);

/* Put d in the first free slot, place its BARs and enable decoding. -ENOSPC when full. */
int pci_bus_add(struct pci_bus *pb, struct pci_device *d) WUR;

/*
 * A configuration access to bus 0 (either mechanism ends here): any reg below
 * 4096, any len 1-8 (split as hardware would); reads of absent functions
 * return all ones. Takes cfg_lock.
 */
void pci_cfg_access(struct pci_bus *pb, unsigned slot, unsigned fn, uint32_t reg,
		    uint8_t *data, unsigned len, bool is_write);

/* The handlers registered on the buses, exposed for tests and fuzzing. */
void pci_cf8_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write);
void pci_ecam_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write);
void pci_window_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write);

/* Little helpers on a device's stored config space. */
static inline uint16_t pci_cfg_get16(const struct pci_device *d, uint32_t off)
{
	return (uint16_t)(d->cfg[off] | d->cfg[off + 1] << 8);
}
static inline uint32_t pci_cfg_get32(const struct pci_device *d, uint32_t off)
{
	return (uint32_t)d->cfg[off] | (uint32_t)d->cfg[off + 1] << 8 |
	       (uint32_t)d->cfg[off + 2] << 16 | (uint32_t)d->cfg[off + 3] << 24;
}
static inline void pci_cfg_put16(struct pci_device *d, uint32_t off, uint16_t v)
{
	d->cfg[off] = (uint8_t)v;
	d->cfg[off + 1] = (uint8_t)(v >> 8);
}
static inline void pci_cfg_put32(struct pci_device *d, uint32_t off, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		d->cfg[off + i] = (uint8_t)(v >> (8 * i));
}

/* Where BAR bar decodes now (0: not decoding). Takes bar_lock. */
uint64_t pci_bar_decode(struct pci_device *d, unsigned bar);

struct vm;
/* The VM's PCI bus and interrupt router (vm->pci, vm->irq), with the x86 windows. */
int pci_vm_init(struct vm *vm) WUR;
/*
 * From here on no device asks KVM for anything: routes, irqfds and
 * ioeventfds go with the VM fd, which may then close while the devices are
 * torn down.
 */
void pci_vm_detach(struct vm *vm);
void pci_vm_destroy(struct vm *vm);

#endif
