/*
 * vmm/pci: host bridge, both configuration mechanisms, BAR sizing, placement,
 * decoding and relocation, capability lists, and hostile config accesses.
 * Everything goes through the same vmm/bus dispatch the vCPUs use.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/bus.h"
#include "vmm/pci.h"

#define IO_BASE    0xc000ULL
#define IO_SIZE    0x4000ULL
#define MEM32_BASE 0xc0000000ULL
#define MEM32_SIZE 0x20000000ULL
#define MEM64_BASE 0x140000000ULL
#define MEM64_SIZE 0x1000000000ULL
#define ECAM_BASE  0xe0000000ULL

struct tdev;

struct fixture {
	struct bus pio, mmio;
	struct pci_bus pb;
	struct tdev *t;      /* devices outlive the bus: teardown destroys it first */
};

struct remap {
	unsigned bar;
	uint64_t old_addr, new_addr;
};

/* A device that records what reaches it. */
struct tdev {
	struct pci_device pci;
	unsigned nr_io;
	unsigned last_bar;
	uint64_t last_off;
	unsigned last_len;
	bool last_write;
	uint8_t last_data[8];
	unsigned nr_remap;
	struct remap remaps[64];
	unsigned nr_cfg_write;
	bool destroyed;
};

static void tdev_bar_io(struct pci_device *d, unsigned bar, uint64_t off, uint8_t *data,
			unsigned len, bool is_write)
{
	struct tdev *t = d->opaque;

	t->nr_io++;
	t->last_bar = bar;
	t->last_off = off;
	t->last_len = len;
	t->last_write = is_write;
	if (is_write)
		memcpy(t->last_data, data, len);
	else
		memset(data, 0xa0 + (int)bar, len);
}

static void tdev_remap(struct pci_device *d, unsigned bar, uint64_t old_addr, uint64_t new_addr)
{
	struct tdev *t = d->opaque;

	if (t->nr_remap < 64)
		t->remaps[t->nr_remap] = (struct remap){ bar, old_addr, new_addr };
	t->nr_remap++;
}

static void tdev_cfg_write(struct pci_device *d, uint32_t off, uint32_t len)
{
	struct tdev *t = d->opaque;

	(void)off;
	(void)len;
	t->nr_cfg_write++;
}

static void tdev_destroy(struct pci_device *d)
{
	struct tdev *t = d->opaque;

	t->destroyed = true;
}

static const struct pci_device_ops tdev_ops = {
	.bar_io = tdev_bar_io,
	.cfg_write = tdev_cfg_write,
	.bar_remap = tdev_remap,
	.destroy = tdev_destroy,
};

/* BAR0: 4 KiB MEM32, BAR2: 16 KiB MEM64, BAR4: 32 bytes of I/O. */
static void tdev_init(struct tdev *t, uint16_t device)
{
	memset(t, 0, sizeof(*t));
	pci_device_init(&t->pci, "tdev", 0x1234, device, 0xff0000, 3, 0x1234, 0x5678);
	t->pci.ops = &tdev_ops;
	t->pci.opaque = t;
	assert_int_equal(pci_device_set_bar(&t->pci, 0, PCI_BAR_MEM32, 0x1000), 0);
	assert_int_equal(pci_device_set_bar(&t->pci, 2, PCI_BAR_MEM64, 0x4000), 0);
	assert_int_equal(pci_device_set_bar(&t->pci, 4, PCI_BAR_IO, 32), 0);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct pci_bus_params p = {
		.io_base = IO_BASE, .io_size = IO_SIZE,
		.mem32_base = MEM32_BASE, .mem32_size = MEM32_SIZE,
		.mem64_base = MEM64_BASE, .mem64_size = MEM64_SIZE,
		.ecam_base = ECAM_BASE,
	};

	assert_non_null(f);
	assert_int_equal(bus_init(&f->pio, "pio"), 0);
	assert_int_equal(bus_init(&f->mmio, "mmio"), 0);
	p.pio = &f->pio;
	p.mmio = &f->mmio;
	assert_int_equal(pci_bus_init(&f->pb, &p), 0);
	f->t = calloc(4, sizeof(*f->t));
	assert_non_null(f->t);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	pci_bus_destroy(&f->pb);
	/* Everything the bus registered is gone again. */
	assert_int_equal(f->pio.nr, 0);
	assert_int_equal(f->mmio.nr, 0);
	bus_destroy(&f->pio);
	bus_destroy(&f->mmio);
	free(f->t);
	free(f);
	return 0;
}

/* ---- access helpers ---- */

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

static uint64_t pio_in(struct fixture *f, uint64_t port, unsigned len)
{
	uint8_t d[8];

	bus_access(&f->pio, port, d, len, false);
	return get_le(d, len);
}

static void pio_out(struct fixture *f, uint64_t port, uint64_t v, unsigned len)
{
	uint8_t d[8];

	put_le(d, v, len);
	bus_access(&f->pio, port, d, len, true);
}

static uint64_t mmio_rd(struct fixture *f, uint64_t addr, unsigned len)
{
	uint8_t d[8];

	bus_access(&f->mmio, addr, d, len, false);
	return get_le(d, len);
}

static void mmio_wr(struct fixture *f, uint64_t addr, uint64_t v, unsigned len)
{
	uint8_t d[8];

	put_le(d, v, len);
	bus_access(&f->mmio, addr, d, len, true);
}

static uint64_t ecam(unsigned slot, unsigned fn, unsigned reg)
{
	return ECAM_BASE + ((uint64_t)slot << 15) + ((uint64_t)fn << 12) + reg;
}

static uint32_t cf8_read(struct fixture *f, unsigned slot, unsigned reg, unsigned len)
{
	pio_out(f, 0xcf8, PCI_CF8_ENABLE | slot << 11 | (reg & 0xfc), 4);
	return (uint32_t)pio_in(f, 0xcfc + (reg & 3), len);
}

static void cf8_write(struct fixture *f, unsigned slot, unsigned reg, uint32_t v, unsigned len)
{
	pio_out(f, 0xcf8, PCI_CF8_ENABLE | slot << 11 | (reg & 0xfc), 4);
	pio_out(f, 0xcfc + (reg & 3), v, len);
}

/* ---- tests ---- */

static void test_host_bridge_both_mechanisms(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(cf8_read(f, 0, PCI_VENDOR_ID, 4), 0x00081b36);
	assert_int_equal(mmio_rd(f, ecam(0, 0, PCI_VENDOR_ID), 4), 0x00081b36);
	/* Class 06/00/00 (host bridge) in the top three bytes of dword 2. */
	assert_int_equal(cf8_read(f, 0, PCI_REVISION_ID, 4) >> 8, 0x060000);
	assert_int_equal(mmio_rd(f, ecam(0, 0, PCI_HEADER_TYPE), 1), 0);
	/* The two mechanisms show the same 256 bytes. */
	for (unsigned r = 0; r < PCI_CFG_SIZE; r += 4)
		assert_int_equal(cf8_read(f, 0, r, 4), mmio_rd(f, ecam(0, 0, r), 4));
	/* Sub-dword reads through 0xCFC + n. */
	assert_int_equal(cf8_read(f, 0, PCI_DEVICE_ID, 2), 0x0008);
	assert_int_equal(cf8_read(f, 0, 1, 1), 0x1b);
}

static void test_absent_functions_read_ones(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(cf8_read(f, 5, 0, 4), 0xffffffffu);
	assert_int_equal(mmio_rd(f, ecam(5, 0, 0), 4), 0xffffffffu);
	/* Functions 1-7 of the host bridge do not exist. */
	assert_int_equal(mmio_rd(f, ecam(0, 3, 0), 4), 0xffffffffu);
	/* Enable bit clear: no cycle, all ones. */
	pio_out(f, 0xcf8, 0, 4);
	assert_int_equal(pio_in(f, 0xcfc, 4), 0xffffffffu);
	/* Bus 1 does not exist. */
	pio_out(f, 0xcf8, PCI_CF8_ENABLE | 1 << 16, 4);
	assert_int_equal(pio_in(f, 0xcfc, 4), 0xffffffffu);
	/* Writes to absent functions go nowhere and do not crash. */
	mmio_wr(f, ecam(31, 7, 0x10), 0xffffffff, 4);
	cf8_write(f, 9, 0x04, 0xffff, 2);
}

static void test_cf8_register(void **state)
{
	struct fixture *f = *state;

	pio_out(f, 0xcf8, 0x80001234, 4);
	assert_int_equal(pio_in(f, 0xcf8, 4), 0x80001234);
	/* Only whole-dword accesses reach the address register. */
	pio_out(f, 0xcfb, 0x01, 1);
	pio_out(f, 0xcfa, 0xffff, 2);
	assert_int_equal(pio_in(f, 0xcf8, 4), 0x80001234);
	assert_int_equal(pio_in(f, 0xcf9, 1), 0xff);
	/* Data accesses inside the dword at 0xCFC; one running past 0xCFF is refused. */
	pio_out(f, 0xcf8, PCI_CF8_ENABLE, 4);
	assert_int_equal(pio_in(f, 0xcfe, 2), 0x0008);
	assert_int_equal(pio_in(f, 0xcfd, 4), 0xffffffffu);
}

static void test_bar_placement_and_sizing(void **state)
{
	struct fixture *f = *state;
	struct tdev *a = &f->t[0], *b = &f->t[1];
	uint64_t bar0, bar2, bar4;

	tdev_init(a, 1);
	tdev_init(b, 2);
	assert_int_equal(pci_bus_add(&f->pb, &a->pci), 0);
	assert_int_equal(pci_bus_add(&f->pb, &b->pci), 0);
	assert_int_equal(a->pci.slot, 1);
	assert_int_equal(b->pci.slot, 2);

	bar0 = mmio_rd(f, ecam(1, 0, 0x10), 4);
	bar2 = mmio_rd(f, ecam(1, 0, 0x18), 4) | mmio_rd(f, ecam(1, 0, 0x1c), 4) << 32;
	bar4 = mmio_rd(f, ecam(1, 0, 0x20), 4);
	/* Placed in their windows, naturally aligned, with the type bits. */
	assert_true(bar0 >= MEM32_BASE && bar0 < MEM32_BASE + MEM32_SIZE);
	assert_int_equal(bar0 & 0xfff, 0);
	assert_int_equal(bar2 & 0xf, PCI_BAR_MEM64_FLAG);
	bar2 &= ~0xfULL;
	assert_true(bar2 >= MEM64_BASE && bar2 < MEM64_BASE + MEM64_SIZE);
	assert_int_equal(bar2 & 0x3fff, 0);
	assert_int_equal(bar4 & 3, PCI_BAR_IO_FLAG);
	assert_true((bar4 & ~3ULL) >= IO_BASE && (bar4 & ~3ULL) < IO_BASE + IO_SIZE);
	/* The second device's BARs do not overlap the first's. */
	assert_int_not_equal(mmio_rd(f, ecam(2, 0, 0x10), 4), bar0);
	/* As firmware leaves it: memory and I/O decoding on. */
	assert_int_equal(mmio_rd(f, ecam(1, 0, PCI_COMMAND), 2) & 3, 3);
	assert_int_equal(pci_bar_decode(&a->pci, 0), bar0);
	assert_int_equal(pci_bar_decode(&a->pci, 2), bar2);

	/* Sizing, the way Linux does it: all ones, read back, restore. */
	mmio_wr(f, ecam(1, 0, PCI_COMMAND), 0, 2);
	mmio_wr(f, ecam(1, 0, 0x10), 0xffffffff, 4);
	assert_int_equal(mmio_rd(f, ecam(1, 0, 0x10), 4), 0xfffff000u);
	mmio_wr(f, ecam(1, 0, 0x18), 0xffffffff, 4);
	mmio_wr(f, ecam(1, 0, 0x1c), 0xffffffff, 4);
	assert_int_equal(mmio_rd(f, ecam(1, 0, 0x18), 4), 0xffffc004u);
	assert_int_equal(mmio_rd(f, ecam(1, 0, 0x1c), 4), 0xffffffffu);
	cf8_write(f, 1, 0x20, 0xffffffff, 4);
	assert_int_equal(cf8_read(f, 1, 0x20, 4), 0xffffffe1u);
	/* Unused BARs and the ROM BAR are hard-wired to 0. */
	mmio_wr(f, ecam(1, 0, 0x24), 0xffffffff, 4);
	mmio_wr(f, ecam(1, 0, PCI_ROM_ADDRESS), 0xffffffff, 4);
	assert_int_equal(mmio_rd(f, ecam(1, 0, 0x24), 4), 0);
	assert_int_equal(mmio_rd(f, ecam(1, 0, PCI_ROM_ADDRESS), 4), 0);
	/* Nothing decodes at all-ones addresses with decoding off. */
	assert_int_equal(pci_bar_decode(&a->pci, 0), 0);
	mmio_wr(f, ecam(1, 0, 0x10), bar0, 4);
	mmio_wr(f, ecam(1, 0, 0x18), bar2 | 4, 4);
	mmio_wr(f, ecam(1, 0, 0x1c), bar2 >> 32, 4);
	cf8_write(f, 1, 0x20, (uint32_t)bar4, 4);
	mmio_wr(f, ecam(1, 0, PCI_COMMAND), PCI_CMD_MEM | PCI_CMD_IO, 2);
	assert_int_equal(pci_bar_decode(&a->pci, 0), bar0);
	assert_int_equal(pci_bar_decode(&a->pci, 2), bar2);
	assert_int_equal(pci_bar_decode(&a->pci, 4), bar4 & ~3ULL);
}

static void test_bar_decode_follows_command_and_moves(void **state)
{
	struct fixture *f = *state;
	struct tdev *a = &f->t[0];
	uint64_t bar0, bar4, moved = MEM32_BASE + 0x100000;
	unsigned n;

	tdev_init(a, 1);
	assert_int_equal(pci_bus_add(&f->pb, &a->pci), 0);
	bar0 = pci_bar_decode(&a->pci, 0);
	bar4 = pci_bar_decode(&a->pci, 4);
	/* Dispatch with offsets relative to the BAR. */
	assert_int_equal(mmio_rd(f, bar0 + 0x10, 4), 0xa0a0a0a0);
	assert_int_equal(a->last_off, 0x10);
	mmio_wr(f, bar0 + 0xff8, 0x1122334455667788ULL, 8);
	assert_int_equal(a->last_off, 0xff8);
	assert_int_equal(get_le(a->last_data, 8), 0x1122334455667788ULL);
	assert_int_equal(pio_in(f, bar4 + 2, 2), 0xa4a4);
	assert_int_equal(a->last_bar, 4);
	/* An access running off the BAR's end is not the device's. */
	n = a->nr_io;
	assert_int_equal(mmio_rd(f, bar0 + 0xffc, 8), ~0ULL);
	assert_int_equal(a->nr_io, n);

	/* Memory decoding off: BARs 0 and 2 go away (the device is told), I/O stays. */
	n = a->nr_remap;
	mmio_wr(f, ecam(1, 0, PCI_COMMAND), PCI_CMD_IO, 2);
	assert_int_equal(a->nr_remap, n + 2);
	assert_int_equal(a->remaps[n].bar, 0);
	assert_int_equal(a->remaps[n].old_addr, bar0);
	assert_int_equal(a->remaps[n].new_addr, 0);
	n = a->nr_io;
	assert_int_equal(mmio_rd(f, bar0, 4), 0xffffffffu);
	mmio_wr(f, bar0, 1, 4);
	assert_int_equal(a->nr_io, n);
	assert_int_equal(pio_in(f, bar4, 1), 0xa4);
	/* I/O off too. */
	mmio_wr(f, ecam(1, 0, PCI_COMMAND), 0, 2);
	assert_int_equal(pio_in(f, bar4, 1), 0xff);

	/* Move BAR 0 while decoding is off, then turn it back on. */
	mmio_wr(f, ecam(1, 0, 0x10), moved, 4);
	assert_int_equal(pci_bar_decode(&a->pci, 0), 0);
	n = a->nr_remap;
	mmio_wr(f, ecam(1, 0, PCI_COMMAND), PCI_CMD_MEM, 2);
	assert_int_equal(pci_bar_decode(&a->pci, 0), moved);
	assert_int_equal(a->remaps[n].bar, 0);
	assert_int_equal(a->remaps[n].old_addr, 0);
	assert_int_equal(a->remaps[n].new_addr, moved);
	assert_int_equal(mmio_rd(f, moved + 4, 4), 0xa0a0a0a0);
	assert_int_equal(mmio_rd(f, bar0 + 4, 4), 0xffffffffu);
	/* Moving with decoding on takes effect at once. */
	mmio_wr(f, ecam(1, 0, 0x10), bar0, 4);
	assert_int_equal(pci_bar_decode(&a->pci, 0), bar0);
	assert_int_equal(mmio_rd(f, moved + 4, 4), 0xffffffffu);

	/* Outside every window (RAM, ECAM, 0): programmed but never decoding. */
	mmio_wr(f, ecam(1, 0, 0x10), 0x100000, 4);
	assert_int_equal(pci_bar_decode(&a->pci, 0), 0);
	mmio_wr(f, ecam(1, 0, 0x10), (uint32_t)ECAM_BASE, 4);
	assert_int_equal(pci_bar_decode(&a->pci, 0), 0);
	/* A BAR straddling the window's end does not decode either. */
	mmio_wr(f, ecam(1, 0, 0x10), (uint32_t)(MEM32_BASE + MEM32_SIZE - 0x1000), 4);
	assert_int_equal(pci_bar_decode(&a->pci, 0), MEM32_BASE + MEM32_SIZE - 0x1000);
	/* A 64-bit BAR may live below 4 GiB as well. */
	mmio_wr(f, ecam(1, 0, 0x18), (uint32_t)(MEM32_BASE + 0x200000) | 4, 4);
	mmio_wr(f, ecam(1, 0, 0x1c), 0, 4);
	assert_int_equal(pci_bar_decode(&a->pci, 2), MEM32_BASE + 0x200000);
	mmio_wr(f, ecam(1, 0, 0x1c), 0xffffffff, 4);
	assert_int_equal(pci_bar_decode(&a->pci, 2), 0);
}

static void test_read_only_header(void **state)
{
	struct fixture *f = *state;
	struct tdev *a = &f->t[0];
	uint8_t before[PCI_CFG_SIZE];

	tdev_init(a, 7);
	assert_int_equal(pci_bus_add(&f->pb, &a->pci), 0);
	memcpy(before, a->pci.cfg, sizeof(before));
	mmio_wr(f, ecam(1, 0, PCI_VENDOR_ID), 0xdeadbeef, 4);
	mmio_wr(f, ecam(1, 0, PCI_REVISION_ID), 0xffffffff, 4);
	mmio_wr(f, ecam(1, 0, PCI_HEADER_TYPE), 0xff, 1);
	mmio_wr(f, ecam(1, 0, PCI_STATUS), 0xffff, 2);
	mmio_wr(f, ecam(1, 0, PCI_SUBSYS_VENDOR), 0xffffffff, 4);
	mmio_wr(f, ecam(1, 0, PCI_CAP_PTR), 0xff, 1);
	mmio_wr(f, ecam(1, 0, PCI_INT_PIN), 0xff, 1);
	assert_memory_equal(before, a->pci.cfg, 0x04);
	assert_memory_equal(before + 0x06, a->pci.cfg + 0x06, 0x06);
	assert_int_equal(a->pci.cfg[PCI_HEADER_TYPE], 0);
	assert_memory_equal(before + 0x2c, a->pci.cfg + 0x2c, 0x10);
	assert_int_equal(a->pci.cfg[PCI_INT_PIN], 0);
	/* Writable: interrupt line, cache line size, command bits we allow. */
	mmio_wr(f, ecam(1, 0, PCI_INT_LINE), 0x0b, 1);
	assert_int_equal(mmio_rd(f, ecam(1, 0, PCI_INT_LINE), 1), 0x0b);
	mmio_wr(f, ecam(1, 0, PCI_COMMAND), 0xffff, 2);
	assert_int_equal(mmio_rd(f, ecam(1, 0, PCI_COMMAND), 2),
			 PCI_CMD_IO | PCI_CMD_MEM | PCI_CMD_MASTER | PCI_CMD_PARITY | PCI_CMD_SERR |
				 PCI_CMD_INTX_OFF);
}

static void test_capabilities(void **state)
{
	struct fixture *f = *state;
	struct tdev *a = &f->t[0];
	uint8_t body1[2] = { 0x11, 0x22 }, body2[10] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
	int c1, c2;
	unsigned pos, n = 0;

	tdev_init(a, 1);
	c1 = pci_device_add_cap(&a->pci, PCI_CAP_ID_MSIX, body1, sizeof(body1));
	c2 = pci_device_add_cap(&a->pci, PCI_CAP_ID_VNDR, body2, sizeof(body2));
	assert_int_equal(c1, PCI_CAP_START);
	assert_int_equal(c2, PCI_CAP_START + 4);
	pci_device_set_wmask(&a->pci, c2 + 4, 1, 0x0f);
	assert_int_equal(pci_bus_add(&f->pb, &a->pci), 0);

	assert_true(mmio_rd(f, ecam(1, 0, PCI_STATUS), 2) & PCI_STATUS_CAPS);
	/* Walk the list the way a driver does. */
	for (pos = (unsigned)mmio_rd(f, ecam(1, 0, PCI_CAP_PTR), 1); pos; n++) {
		assert_true(pos >= 0x40 && pos < 0x100 && n < 4);
		if (n == 0)
			assert_int_equal(mmio_rd(f, ecam(1, 0, pos), 1), PCI_CAP_ID_MSIX);
		else
			assert_int_equal(mmio_rd(f, ecam(1, 0, pos + 2), 4), 0x04030201);
		pos = (unsigned)mmio_rd(f, ecam(1, 0, pos + 1), 1);
	}
	assert_int_equal(n, 2);
	/* Only the bits the device opened are writable; the next pointer never is. */
	mmio_wr(f, ecam(1, 0, c2 + 4), 0xff, 1);
	assert_int_equal(mmio_rd(f, ecam(1, 0, c2 + 4), 1), 0x0f);
	mmio_wr(f, ecam(1, 0, c1), 0xffffffff, 4);
	assert_int_equal(mmio_rd(f, ecam(1, 0, c1), 4), 0x22110000u | (unsigned)c2 << 8 | 0x11);
	/* A capability that does not fit is refused. */
	{
		uint8_t big[250] = { 0 };

		assert_int_equal(pci_device_add_cap(&a->pci, PCI_CAP_ID_VNDR, big, sizeof(big)),
				 -ENOSPC);
	}
}

static void test_odd_accesses(void **state)
{
	struct fixture *f = *state;
	struct tdev *a = &f->t[0];
	uint8_t d[8];

	tdev_init(a, 1);
	assert_int_equal(pci_bus_add(&f->pb, &a->pci), 0);
	/* Extended space: no extended capabilities (reads 0), writes ignored. */
	assert_int_equal(mmio_rd(f, ecam(1, 0, 0x100), 4), 0);
	mmio_wr(f, ecam(1, 0, 0x100), 0xffffffff, 4);
	assert_int_equal(mmio_rd(f, ecam(1, 0, 0x100), 4), 0);
	assert_int_equal(mmio_rd(f, ecam(1, 0, 0xffc), 4), 0);
	/* An 8-byte ECAM read is two dwords. */
	assert_int_equal(mmio_rd(f, ecam(1, 0, 0), 8),
			 (uint64_t)mmio_rd(f, ecam(1, 0, 4), 4) << 32 | mmio_rd(f, ecam(1, 0, 0), 4));
	/* Unaligned reads are assembled byte by byte. */
	assert_int_equal(mmio_rd(f, ecam(1, 0, 1), 2), 0x0112);
	assert_int_equal(mmio_rd(f, ecam(1, 0, 3), 4) & 0xff, 0x00);
	/* An access crossing the end of a function's 4 KiB is refused. */
	assert_int_equal(mmio_rd(f, ecam(1, 0, 0xffe), 4), 0xffffffffu);
	/* pci_cfg_access itself: any length, any offset, never past the buffer. */
	memset(d, 0x5a, sizeof(d));
	pci_cfg_access(&f->pb, 1, 0, 4095, d, 8, false);
	assert_int_equal(d[0], 0xff);
	pci_cfg_access(&f->pb, 1, 0, 0, d, 0, false);
	pci_cfg_access(&f->pb, 1, 0, 70000, d, 4, true);
	pci_cfg_access(&f->pb, 40, 9, 0, d, 4, false);
	assert_int_equal(get_le(d, 4), 0xffffffffu);
}

static void test_bus_full_and_window_full(void **state)
{
	struct fixture *f = *state;
	struct tdev *devs = calloc(PCI_NR_SLOTS, sizeof(*devs));
	struct tdev *huge = &f->t[2];

	assert_non_null(devs);
	for (unsigned i = 0; i < PCI_NR_SLOTS - 1; i++) {
		tdev_init(&devs[i], (uint16_t)i);
		assert_int_equal(pci_bus_add(&f->pb, &devs[i].pci), 0);
	}
	tdev_init(&devs[PCI_NR_SLOTS - 1], 99);
	assert_int_equal(pci_bus_add(&f->pb, &devs[PCI_NR_SLOTS - 1].pci), -ENOSPC);
	/* 31 devices x 32 bytes of I/O fit in 16 KiB; every slot answers. */
	for (unsigned s = 1; s < PCI_NR_SLOTS; s++)
		assert_int_equal(mmio_rd(f, ecam(s, 0, 0), 2), 0x1234);
	/* Bad BAR declarations. */
	memset(huge, 0, sizeof(*huge));
	pci_device_init(&huge->pci, "huge", 1, 1, 0, 0, 0, 0);
	assert_int_equal(pci_device_set_bar(&huge->pci, 0, PCI_BAR_MEM32, 3000), -EINVAL);
	assert_int_equal(pci_device_set_bar(&huge->pci, 5, PCI_BAR_MEM64, 4096), -EINVAL);
	assert_int_equal(pci_device_set_bar(&huge->pci, 6, PCI_BAR_MEM32, 4096), -EINVAL);
	assert_int_equal(pci_device_set_bar(&huge->pci, 0, PCI_BAR_IO, 4096), -EINVAL);
	assert_int_equal(pci_device_set_bar(&huge->pci, 0, PCI_BAR_MEM32, 4096), 0);
	assert_int_equal(pci_device_set_bar(&huge->pci, 0, PCI_BAR_MEM32, 4096), -EINVAL);
	pci_bus_destroy(&f->pb);
	for (unsigned i = 0; i < PCI_NR_SLOTS - 1; i++)
		assert_true(devs[i].destroyed);
	assert_false(devs[PCI_NR_SLOTS - 1].destroyed);
	free(devs);
	/* teardown destroys again: that must be harmless. */
}

static void test_window_exhausted(void **state)
{
	struct fixture *f = *state;
	struct tdev *a = &f->t[0], *b = &f->t[1];

	(void)f;
	memset(a, 0, sizeof(*a));
	pci_device_init(&a->pci, "big", 1, 1, 0, 0, 0, 0);
	a->pci.opaque = a;
	a->pci.ops = &tdev_ops;
	/* 256 MiB twice fits the 512 MiB window; a third does not. */
	assert_int_equal(pci_device_set_bar(&a->pci, 0, PCI_BAR_MEM32, 256 * 1024 * 1024), 0);
	assert_int_equal(pci_device_set_bar(&a->pci, 1, PCI_BAR_MEM32, 256 * 1024 * 1024), 0);
	assert_int_equal(pci_bus_add(&f->pb, &a->pci), 0);
	memset(b, 0, sizeof(*b));
	pci_device_init(&b->pci, "big2", 1, 2, 0, 0, 0, 0);
	assert_int_equal(pci_device_set_bar(&b->pci, 0, PCI_BAR_MEM32, 4096), 0);
	assert_int_equal(pci_bus_add(&f->pb, &b->pci), -ENOSPC);
}

/* A guest writing random values everywhere: identity and BAR invariants hold. */
static void test_random_config_writes(void **state)
{
	struct fixture *f = *state;
	struct tdev *a = &f->t[0];
	uint32_t seed = 12345;

	tdev_init(a, 0x42);
	assert_int_equal(pci_bus_add(&f->pb, &a->pci), 0);
	for (unsigned i = 0; i < 200000; i++) {
		static const unsigned lens[] = { 1, 2, 4, 8 };
		unsigned len, reg, slot;

		seed = seed * 1103515245 + 12345;
		len = lens[(seed >> 8) & 3];
		reg = (seed >> 10) & 0x1ff;
		slot = (seed >> 20) & 3;
		seed = seed * 1103515245 + 12345;
		if (reg & 0x100)
			cf8_write(f, slot, reg & 0xff, seed, len > 4 ? 4 : len);
		else
			mmio_wr(f, ecam(slot, 0, reg), (uint64_t)seed << 32 | seed, len);
		if ((i & 1023) == 0) {
			uint64_t d0 = pci_bar_decode(&a->pci, 0), d2 = pci_bar_decode(&a->pci, 2);

			assert_int_equal(mmio_rd(f, ecam(1, 0, 0), 4), 0x00421234);
			assert_int_equal(mmio_rd(f, ecam(0, 0, 0), 4), 0x00081b36);
			assert_int_equal(d0 & 0xfff, 0);
			assert_int_equal(d2 & 0x3fff, 0);
			assert_true(!d0 || (d0 >= MEM32_BASE && d0 + 0x1000 <= MEM32_BASE + MEM32_SIZE));
			assert_int_equal(mmio_rd(f, ecam(1, 0, 0x10), 4) & 0xfff, 0);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_host_bridge_both_mechanisms, setup, teardown),
		cmocka_unit_test_setup_teardown(test_absent_functions_read_ones, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cf8_register, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_placement_and_sizing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_decode_follows_command_and_moves, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_read_only_header, setup, teardown),
		cmocka_unit_test_setup_teardown(test_capabilities, setup, teardown),
		cmocka_unit_test_setup_teardown(test_odd_accesses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bus_full_and_window_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_window_exhausted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_config_writes, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
