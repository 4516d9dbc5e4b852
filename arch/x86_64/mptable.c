/* MP tables (Intel MP spec 1.4, chapter 4), shaped after what Linux's mpparse accepts. */
#include <errno.h>
#include <string.h>

#include "arch/x86_64/layout.h"
#include "arch/x86_64/mptable.h"

struct mpf_intel {               /* 4.1 MP floating pointer structure */
	char signature[4];           /* "_MP_" */
	le32 physptr;                /* MP configuration table */
	uint8_t length;              /* in 16-byte units: 1 */
	uint8_t spec_rev;            /* 4: version 1.4 */
	uint8_t checksum;
	uint8_t feature1;            /* 0: a configuration table is present */
	uint8_t feature2;            /* bit 7 clear: virtual wire mode, no IMCR */
	uint8_t feature3[3];
} __attribute__((packed));
_Static_assert(sizeof(struct mpf_intel) == 16, "MP floating pointer size");

struct mpc_table {               /* 4.2 MP configuration table header */
	char signature[4];           /* "PCMP" */
	le16 length;                 /* base table, header included */
	uint8_t spec_rev;
	uint8_t checksum;
	char oem[8];
	char product[12];
	le32 oem_ptr;
	le16 oem_size;
	le16 entry_count;
	le32 lapic_address;
	le16 ext_length;
	uint8_t ext_checksum;
	uint8_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct mpc_table) == 44, "MP config header size");

enum { MP_PROCESSOR = 0, MP_BUS = 1, MP_IOAPIC = 2, MP_INTSRC = 3, MP_LINTSRC = 4 };

struct mpc_cpu {                 /* 4.3.1 */
	uint8_t type;
	uint8_t apic_id;
	uint8_t apic_ver;
	uint8_t cpu_flags;           /* bit 0 enabled, bit 1 bootstrap processor */
	le32 signature;              /* family / model / stepping */
	le32 features;               /* CPUID.1:EDX */
	le32 reserved[2];
} __attribute__((packed));
_Static_assert(sizeof(struct mpc_cpu) == 20, "MP processor entry size");

struct mpc_bus {                 /* 4.3.2 */
	uint8_t type;
	uint8_t bus_id;
	char bus_type[6];
} __attribute__((packed));
_Static_assert(sizeof(struct mpc_bus) == 8, "MP bus entry size");

struct mpc_ioapic {              /* 4.3.3 */
	uint8_t type;
	uint8_t apic_id;
	uint8_t apic_ver;
	uint8_t flags;               /* bit 0 usable */
	le32 address;
} __attribute__((packed));
_Static_assert(sizeof(struct mpc_ioapic) == 8, "MP IOAPIC entry size");

struct mpc_intsrc {              /* 4.3.4 I/O and 4.3.5 local interrupt assignment */
	uint8_t type;
	uint8_t irq_type;            /* 0 INT, 1 NMI, 2 SMI, 3 ExtINT */
	le16 irq_flags;              /* 0: conforms to the bus */
	uint8_t src_bus;
	uint8_t src_bus_irq;
	uint8_t dst_apic;            /* IOAPIC id, or 0xff for all local APICs */
	uint8_t dst_pin;             /* INTIN# or LINTIN# */
} __attribute__((packed));
_Static_assert(sizeof(struct mpc_intsrc) == 8, "MP interrupt entry size");

enum { MP_INT = 0, MP_NMI = 1, MP_EXTINT = 3 };

#define MP_CPU_ENABLED  0x01
#define MP_CPU_BSP      0x02
#define MP_APIC_ALL     0xff
#define LAPIC_VERSION   0x14     /* integrated xAPIC, as KVM reports */
#define IOAPIC_VERSION  0x11     /* as KVM's in-kernel IOAPIC reports */
#define CPU_SIGNATURE   0x600    /* family 6; informational only */
#define CPU_FEATURES    0x201    /* CPUID.1:EDX FPU | APIC */
#define BUS_PCI         0
#define BUS_ISA         1
#define ISA_IRQS        16
#define PCI_SLOTS       32
#define PCI_PINS        4

static size_t count_entries(unsigned ncpus, size_t *bytes)
{
	size_t n_intsrc = (ISA_IRQS - 1) + PCI_SLOTS * PCI_PINS; /* IRQ2 is the cascade */
	size_t n = ncpus + 2 + 1 + n_intsrc + 2;

	*bytes = ncpus * sizeof(struct mpc_cpu) + 2 * sizeof(struct mpc_bus) +
		 sizeof(struct mpc_ioapic) + (n_intsrc + 2) * sizeof(struct mpc_intsrc);
	return n;
}

size_t mptable_size(unsigned ncpus)
{
	size_t bytes;

	count_entries(ncpus, &bytes);
	return sizeof(struct mpf_intel) + sizeof(struct mpc_table) + bytes;
}

static uint8_t *put_intsrc(uint8_t *q, uint8_t type, uint8_t irq_type, uint8_t bus,
			   uint8_t bus_irq, uint8_t dst, uint8_t pin)
{
	struct mpc_intsrc e = { .type = type, .irq_type = irq_type, .irq_flags = 0,
		.src_bus = bus, .src_bus_irq = bus_irq, .dst_apic = dst, .dst_pin = pin };

	memcpy(q, &e, sizeof(e));
	return q + sizeof(e);
}

int mptable_build(const struct x86_platform *p, void *buf, size_t len, uint64_t gpa)
{
	size_t body, entries, total;
	uint8_t *b = buf, *q;
	uint8_t ioapic_id;

	if (!p || !buf || p->ncpus == 0 || p->ncpus > X86_MAX_CPUS)
		return -EINVAL;
	entries = count_entries(p->ncpus, &body);
	total = sizeof(struct mpf_intel) + sizeof(struct mpc_table) + body;
	if (!IS_ALIGNED(gpa, 16) || gpa >= 0x100000000ULL || total > 0x100000000ULL - gpa)
		return -EINVAL;
	if (len < total)
		return -ENOSPC;
	memset(buf, 0, total);
	ioapic_id = (uint8_t)p->ncpus; /* distinct from every LAPIC id */

	struct mpf_intel *mpf = (struct mpf_intel *)b;

	memcpy(mpf->signature, "_MP_", 4);
	mpf->physptr = cpu_to_le32((uint32_t)(gpa + sizeof(*mpf)));
	mpf->length = 1;
	mpf->spec_rev = 4;
	mpf->checksum = fw_checksum(mpf, sizeof(*mpf));

	struct mpc_table *mpc = (struct mpc_table *)(b + sizeof(*mpf));

	memcpy(mpc->signature, "PCMP", 4);
	mpc->length = cpu_to_le16((uint16_t)(sizeof(*mpc) + body));
	mpc->spec_rev = 4;
	memcpy(mpc->oem, "VMMVMM  ", 8);
	memcpy(mpc->product, "VMM MPTABLE ", 12);
	mpc->entry_count = cpu_to_le16((uint16_t)entries);
	mpc->lapic_address = cpu_to_le32((uint32_t)X86_LAPIC_BASE);
	q = (uint8_t *)(mpc + 1);

	for (unsigned i = 0; i < p->ncpus; i++) {
		struct mpc_cpu c = { .type = MP_PROCESSOR, .apic_id = (uint8_t)i,
			.apic_ver = LAPIC_VERSION,
			.cpu_flags = MP_CPU_ENABLED | (i == 0 ? MP_CPU_BSP : 0),
			.signature = cpu_to_le32(CPU_SIGNATURE),
			.features = cpu_to_le32(CPU_FEATURES) };

		memcpy(q, &c, sizeof(c));
		q += sizeof(c);
	}

	struct mpc_bus bus = { .type = MP_BUS, .bus_id = BUS_PCI };

	memcpy(bus.bus_type, "PCI   ", sizeof(bus.bus_type));
	memcpy(q, &bus, sizeof(bus));
	q += sizeof(bus);
	bus.bus_id = BUS_ISA;
	memcpy(bus.bus_type, "ISA   ", sizeof(bus.bus_type));
	memcpy(q, &bus, sizeof(bus));
	q += sizeof(bus);

	struct mpc_ioapic io = { .type = MP_IOAPIC, .apic_id = ioapic_id,
		.apic_ver = IOAPIC_VERSION, .flags = 1,
		.address = cpu_to_le32((uint32_t)X86_IOAPIC_BASE) };

	memcpy(q, &io, sizeof(io));
	q += sizeof(io);

	/* ISA IRQs, flags conforming to the bus (edge, active high): IRQ0 on INTIN2, the rest identity. */
	for (unsigned irq = 0; irq < ISA_IRQS; irq++) {
		if (irq == 2)
			continue; /* the 8259 cascade; never an ISA device */
		q = put_intsrc(q, MP_INTSRC, MP_INT, BUS_ISA, (uint8_t)irq, ioapic_id,
			       (uint8_t)(irq == 0 ? 2 : irq));
	}
	/* PCI INTx as the DSDT's _PRT routes it; source irq = slot << 2 | pin, level, active low. */
	for (unsigned slot = 0; slot < PCI_SLOTS; slot++)
		for (unsigned pin = 0; pin < PCI_PINS; pin++)
			q = put_intsrc(q, MP_INTSRC, MP_INT, BUS_PCI, (uint8_t)(slot << 2 | pin),
				       ioapic_id, (uint8_t)x86_pci_intx_gsi(slot, pin));

	q = put_intsrc(q, MP_LINTSRC, MP_EXTINT, BUS_ISA, 0, MP_APIC_ALL, 0);
	q = put_intsrc(q, MP_LINTSRC, MP_NMI, BUS_ISA, 0, MP_APIC_ALL, 1);

	mpc->checksum = fw_checksum(mpc, (size_t)(q - (uint8_t *)mpc));
	return 0;
}
