/* ACPI tables for x86_64 guests; structure layouts from ACPI 6.4 chapter 5. */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "arch/x86_64/acpi.h"
#include "arch/x86_64/layout.h"

#define ACPI_OEM_ID        "VMMVMM"
#define ACPI_OEM_TABLE_ID  "VMMACPI "
#define ACPI_OEM_REVISION  1
#define ACPI_CREATOR_ID    "VMMC"
#define ACPI_CREATOR_REV   1

/* ---- wire formats ---------------------------------------------------------- */

struct acpi_rsdp {               /* 5.2.5.3 */
	char signature[8];
	uint8_t checksum;            /* first 20 bytes */
	char oem_id[6];
	uint8_t revision;
	le32 rsdt_address;
	le32 length;
	le64 xsdt_address;
	uint8_t extended_checksum;   /* whole structure */
	uint8_t reserved[3];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP size");
_Static_assert(offsetof(struct acpi_rsdp, xsdt_address) == 24, "RSDP layout");

struct acpi_header {             /* 5.2.6 */
	char signature[4];
	le32 length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	le32 oem_revision;
	char creator_id[4];
	le32 creator_revision;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_header) == 36, "SDT header size");

struct acpi_gas {                /* 5.2.3.2 Generic Address Structure */
	uint8_t space_id;
	uint8_t bit_width;
	uint8_t bit_offset;
	uint8_t access_size;
	le64 address;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_gas) == 12, "GAS size");

#define ACPI_GAS_SYSTEM_IO 1
#define ACPI_GAS_ACCESS_BYTE 1
#define ACPI_GAS_ACCESS_WORD 2

struct acpi_fadt {               /* 5.2.9, revision 6 */
	struct acpi_header h;
	le32 firmware_ctrl;
	le32 dsdt;
	uint8_t reserved0;
	uint8_t preferred_pm_profile;
	le16 sci_int;
	le32 smi_cmd;
	uint8_t acpi_enable;
	uint8_t acpi_disable;
	uint8_t s4bios_req;
	uint8_t pstate_cnt;
	le32 pm1a_evt_blk;
	le32 pm1b_evt_blk;
	le32 pm1a_cnt_blk;
	le32 pm1b_cnt_blk;
	le32 pm2_cnt_blk;
	le32 pm_tmr_blk;
	le32 gpe0_blk;
	le32 gpe1_blk;
	uint8_t pm1_evt_len;
	uint8_t pm1_cnt_len;
	uint8_t pm2_cnt_len;
	uint8_t pm_tmr_len;
	uint8_t gpe0_blk_len;
	uint8_t gpe1_blk_len;
	uint8_t gpe1_base;
	uint8_t cst_cnt;
	le16 p_lvl2_lat;
	le16 p_lvl3_lat;
	le16 flush_size;
	le16 flush_stride;
	uint8_t duty_offset;
	uint8_t duty_width;
	uint8_t day_alrm;
	uint8_t mon_alrm;
	uint8_t century;
	le16 iapc_boot_arch;
	uint8_t reserved1;
	le32 flags;
	struct acpi_gas reset_reg;
	uint8_t reset_value;
	le16 arm_boot_arch;
	uint8_t minor_version;
	le64 x_firmware_ctrl;
	le64 x_dsdt;
	struct acpi_gas x_pm1a_evt_blk;
	struct acpi_gas x_pm1b_evt_blk;
	struct acpi_gas x_pm1a_cnt_blk;
	struct acpi_gas x_pm1b_cnt_blk;
	struct acpi_gas x_pm2_cnt_blk;
	struct acpi_gas x_pm_tmr_blk;
	struct acpi_gas x_gpe0_blk;
	struct acpi_gas x_gpe1_blk;
	struct acpi_gas sleep_control_reg;
	struct acpi_gas sleep_status_reg;
	le64 hypervisor_vendor_id;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_fadt) == 276, "FADT rev 6 size");
_Static_assert(offsetof(struct acpi_fadt, sci_int) == 46, "FADT layout");
_Static_assert(offsetof(struct acpi_fadt, pm1a_evt_blk) == 56, "FADT layout");
_Static_assert(offsetof(struct acpi_fadt, iapc_boot_arch) == 109, "FADT layout");
_Static_assert(offsetof(struct acpi_fadt, flags) == 112, "FADT layout");
_Static_assert(offsetof(struct acpi_fadt, x_dsdt) == 140, "FADT layout");
_Static_assert(offsetof(struct acpi_fadt, x_pm1a_cnt_blk) == 172, "FADT layout");
_Static_assert(offsetof(struct acpi_fadt, hypervisor_vendor_id) == 268, "FADT layout");

#define FADT_WBINVD        (1u << 0)
#define FADT_PROC_C1       (1u << 2)
#define FADT_PWR_BUTTON    (1u << 4)  /* set: no fixed-feature power button */
#define FADT_SLP_BUTTON    (1u << 5)  /* set: no fixed-feature sleep button */
#define FADT_RESET_REG_SUP (1u << 10)
#define BOOT_ARCH_LEGACY_DEVICES (1u << 0)
#define BOOT_ARCH_VGA_NOT_PRESENT (1u << 2)

struct acpi_facs {               /* 5.2.10 */
	char signature[4];
	le32 length;
	le32 hardware_signature;
	le32 firmware_waking_vector;
	le32 global_lock;
	le32 flags;
	le64 x_firmware_waking_vector;
	uint8_t version;
	uint8_t reserved0[3];
	le32 ospm_flags;
	uint8_t reserved1[24];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_facs) == 64, "FACS size");

struct acpi_madt {               /* 5.2.12 */
	struct acpi_header h;
	le32 lapic_address;
	le32 flags;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_madt) == 44, "MADT size");

#define MADT_PCAT_COMPAT 1u

struct madt_lapic {              /* 5.2.12.2, type 0 */
	uint8_t type, length;
	uint8_t processor_uid;
	uint8_t apic_id;
	le32 flags;                  /* bit 0: enabled */
} __attribute__((packed));
_Static_assert(sizeof(struct madt_lapic) == 8, "MADT LAPIC size");

struct madt_ioapic {             /* 5.2.12.3, type 1 */
	uint8_t type, length;
	uint8_t ioapic_id;
	uint8_t reserved;
	le32 address;
	le32 gsi_base;
} __attribute__((packed));
_Static_assert(sizeof(struct madt_ioapic) == 12, "MADT IOAPIC size");

struct madt_iso {                /* 5.2.12.5, type 2 */
	uint8_t type, length;
	uint8_t bus;                 /* 0: ISA */
	uint8_t source;
	le32 gsi;
	le16 flags;                  /* MPS INTI flags */
} __attribute__((packed));
_Static_assert(sizeof(struct madt_iso) == 10, "MADT ISO size");

struct madt_lapic_nmi {          /* 5.2.12.7, type 4 */
	uint8_t type, length;
	uint8_t processor_uid;       /* 0xff: all processors */
	le16 flags;
	uint8_t lint;
} __attribute__((packed));
_Static_assert(sizeof(struct madt_lapic_nmi) == 6, "MADT LAPIC NMI size");

/* MPS INTI flags: polarity in bits 0-1, trigger mode in bits 2-3. */
#define INTI_POLARITY_HIGH 0x1
#define INTI_TRIGGER_EDGE  0x4
#define INTI_TRIGGER_LEVEL 0xc

struct acpi_mcfg {               /* PCI Firmware Specification 3.2, 4.1.2 */
	struct acpi_header h;
	uint8_t reserved[8];
	le64 base;
	le16 segment;
	uint8_t start_bus;
	uint8_t end_bus;
	uint8_t reserved1[4];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_mcfg) == 60, "MCFG size");

#define XSDT_ENTRIES 3 /* FADT, MADT, MCFG; the FADT points at the FACS and DSDT */

/* ---- helpers --------------------------------------------------------------- */

static void header_init(struct acpi_header *h, const char *sig, uint32_t length, uint8_t rev)
{
	memcpy(h->signature, sig, 4);
	h->length = cpu_to_le32(length);
	h->revision = rev;
	memcpy(h->oem_id, ACPI_OEM_ID, 6);
	memcpy(h->oem_table_id, ACPI_OEM_TABLE_ID, 8);
	h->oem_revision = cpu_to_le32(ACPI_OEM_REVISION);
	memcpy(h->creator_id, ACPI_CREATOR_ID, 4);
	h->creator_revision = cpu_to_le32(ACPI_CREATOR_REV);
}

static void header_seal(struct acpi_header *h)
{
	h->checksum = 0;
	h->checksum = fw_checksum(h, le32_to_cpu(h->length));
}

static struct acpi_gas gas_io(uint64_t port, uint8_t bytes, uint8_t access)
{
	return (struct acpi_gas){
		.space_id = ACPI_GAS_SYSTEM_IO,
		.bit_width = (uint8_t)(8 * bytes),
		.access_size = access,
		.address = cpu_to_le64(port),
	};
}

/* Bump allocator over buf; offsets are relative to buf (and gpa). */
struct alloc {
	size_t len, used;
};

static int alloc_at(struct alloc *al, size_t size, size_t align, size_t *off)
{
	size_t o = ALIGN_UP(al->used, align);

	if (o < al->used || o > al->len || size > al->len - o)
		return -ENOSPC;
	*off = o;
	al->used = o + size;
	return 0;
}

/* ---- DSDT ------------------------------------------------------------------ */

static void dsdt_pci0(const struct x86_platform *p, struct aml *a)
{
	aml_device_begin(a, "PCI0");
	aml_name_eisaid(a, "_HID", "PNP0A08"); /* PCI Express root bridge */
	aml_name_eisaid(a, "_CID", "PNP0A03"); /* compatible: PCI root bridge */
	aml_name_integer(a, "_SEG", 0);
	aml_name_integer(a, "_BBN", 0);
	aml_name_integer(a, "_UID", 0);

	aml_name_begin(a, "_CRS");
	aml_restemplate_begin(a);
	aml_res_word_bus_number(a, 0, 0);
	aml_res_io(a, 0xcf8, 0xcf8, 1, 8); /* legacy configuration mechanism #1 */
	aml_res_word_io(a, 0x0000, 0x0cf7);
	aml_res_word_io(a, 0x0d00, 0xffff);
	aml_res_dword_memory(a, AML_RES_NONCACHEABLE, (uint32_t)X86_PCI_MMIO32_BASE,
			     (uint32_t)(X86_PCI_MMIO32_BASE + X86_PCI_MMIO32_SIZE - 1));
	if (p->mmio64_size)
		aml_res_qword_memory(a, AML_RES_CACHEABLE, p->mmio64_base,
				     p->mmio64_base + p->mmio64_size - 1);
	aml_end(a);

	/* _PRT: Package { Address (slot << 16 | 0xffff), Pin, Source 0 (GSI), SourceIndex GSI }. */
	aml_name_begin(a, "_PRT");
	aml_package_begin(a);
	for (unsigned slot = 0; slot < 32; slot++) {
		for (unsigned pin = 0; pin < 4; pin++) {
			aml_package_begin(a);
			aml_integer(a, (uint64_t)slot << 16 | 0xffff);
			aml_integer(a, pin);
			aml_integer(a, 0);
			aml_integer(a, x86_pci_intx_gsi(slot, pin));
			aml_end(a);
		}
	}
	aml_end(a);
	aml_end(a); /* PCI0 */
}

static void dsdt_legacy(struct aml *a)
{
	aml_device_begin(a, "COM1");
	aml_name_eisaid(a, "_HID", "PNP0501"); /* 16550A-compatible UART */
	aml_name_integer(a, "_UID", 1);
	aml_name_begin(a, "_CRS");
	aml_restemplate_begin(a);
	aml_res_io(a, X86_COM1_PORT, X86_COM1_PORT, 1, 8);
	aml_res_irq_noflags(a, 1u << X86_COM1_IRQ);
	aml_end(a);
	aml_end(a);

	aml_device_begin(a, "RTC");
	aml_name_eisaid(a, "_HID", "PNP0B00"); /* AT CMOS real-time clock */
	aml_name_begin(a, "_CRS");
	aml_restemplate_begin(a);
	aml_res_io(a, X86_RTC_PORT, X86_RTC_PORT, 1, 2);
	aml_res_irq_noflags(a, 1u << 8);
	aml_end(a);
	aml_end(a);

	/* Motherboard resources: Linux trusts MCFG only if ECAM is reserved here or in e820. */
	aml_device_begin(a, "MBRD");
	aml_name_eisaid(a, "_HID", "PNP0C02");
	aml_name_integer(a, "_UID", 0);
	aml_name_begin(a, "_CRS");
	aml_restemplate_begin(a);
	aml_res_memory32_fixed(a, AML_RES_RW, (uint32_t)X86_PCI_ECAM_BASE,
			       (uint32_t)X86_PCI_ECAM_SIZE);
	aml_res_io(a, X86_ACPI_PM1A_EVT, X86_ACPI_PM1A_EVT, 1, 4);
	aml_res_io(a, X86_ACPI_PM1A_CNT, X86_ACPI_PM1A_CNT, 1, 2);
	aml_end(a);
	aml_end(a);
}
_Static_assert(X86_PCI_ECAM_BASE + X86_PCI_ECAM_SIZE <= 0x100000000ULL,
	       "ECAM must be below 4 GiB for Memory32Fixed");
_Static_assert(X86_PCI_MMIO32_BASE + X86_PCI_MMIO32_SIZE <= 0x100000000ULL,
	       "the 32-bit PCI window must be below 4 GiB");

void acpi_dsdt_body(const struct x86_platform *p, struct aml *a)
{
	/* \_S5: SLP_TYPa, SLP_TYPb, reserved, reserved (ACPI 6.4, 7.4.2). */
	aml_name_begin(a, "\\_S5");
	aml_package_begin(a);
	aml_integer(a, X86_ACPI_S5_SLP_TYP);
	aml_integer(a, X86_ACPI_S5_SLP_TYP);
	aml_integer(a, 0);
	aml_integer(a, 0);
	aml_end(a);

	aml_scope_begin(a, "\\_SB");
	dsdt_pci0(p, a);
	dsdt_legacy(a);
	if (p->dsdt_extra)
		p->dsdt_extra(a, p->dsdt_extra_opaque);
	aml_end(a);
}

/* ---- tables ------------------------------------------------------------------ */

static void build_fadt(struct acpi_fadt *f, uint64_t facs_gpa, uint64_t dsdt_gpa)
{
	header_init(&f->h, "FACP", sizeof(*f), 6);
	f->minor_version = 3; /* ACPI 6.3 */
	f->firmware_ctrl = cpu_to_le32((uint32_t)facs_gpa); /* X_FIRMWARE_CTRL stays 0 */
	f->dsdt = cpu_to_le32((uint32_t)dsdt_gpa);
	f->x_dsdt = cpu_to_le64(dsdt_gpa);
	f->sci_int = cpu_to_le16(X86_ACPI_SCI_IRQ);
	f->smi_cmd = 0; /* no SMM: the platform is always in ACPI mode */

	f->pm1a_evt_blk = cpu_to_le32(X86_ACPI_PM1A_EVT);
	f->pm1_evt_len = 4;
	f->x_pm1a_evt_blk = gas_io(X86_ACPI_PM1A_EVT, 4, ACPI_GAS_ACCESS_WORD);
	f->pm1a_cnt_blk = cpu_to_le32(X86_ACPI_PM1A_CNT);
	f->pm1_cnt_len = 2;
	f->x_pm1a_cnt_blk = gas_io(X86_ACPI_PM1A_CNT, 2, ACPI_GAS_ACCESS_WORD);

	/* C2/C3 unsupported: latencies above 100 / 1000 us say so. */
	f->p_lvl2_lat = cpu_to_le16(101);
	f->p_lvl3_lat = cpu_to_le16(1001);

	/*
	 * No 8042 flag, and no PNP0303 in the DSDT: the guest does not probe for a
	 * keyboard (there is none to type on: probing it cost a Linux guest 0.4 s
	 * of keyboard-command timeouts). The i8042 ports stay, as the reset line.
	 */
	f->iapc_boot_arch = cpu_to_le16(BOOT_ARCH_LEGACY_DEVICES | BOOT_ARCH_VGA_NOT_PRESENT);
	/*
	 * PWR_BUTTON clear: the power button is the fixed-feature one (PM1
	 * PWRBTN_STS/EN and the SCI), which Linux's button driver binds as
	 * LNXPWRBN with no AML at all. No sleep button.
	 */
	f->flags = cpu_to_le32(FADT_WBINVD | FADT_PROC_C1 | FADT_SLP_BUTTON | FADT_RESET_REG_SUP);
	/* Reset through the i8042: pulse the reset line with command 0xfe. */
	f->reset_reg = gas_io(X86_I8042_PORT_CMD, 1, ACPI_GAS_ACCESS_BYTE);
	f->reset_value = 0xfe;
}

static void build_facs(struct acpi_facs *f)
{
	memcpy(f->signature, "FACS", 4);
	f->length = cpu_to_le32(sizeof(*f));
	f->version = 2;
}

static size_t madt_size(unsigned ncpus)
{
	return sizeof(struct acpi_madt) + ncpus * sizeof(struct madt_lapic) +
	       sizeof(struct madt_ioapic) + 2 * sizeof(struct madt_iso) +
	       sizeof(struct madt_lapic_nmi);
}

static void build_madt(const struct x86_platform *p, uint8_t *base)
{
	struct acpi_madt *m = (struct acpi_madt *)base;
	uint8_t *q = base + sizeof(*m);

	header_init(&m->h, "APIC", (uint32_t)madt_size(p->ncpus), 5);
	m->lapic_address = cpu_to_le32((uint32_t)X86_LAPIC_BASE);
	m->flags = cpu_to_le32(MADT_PCAT_COMPAT);

	for (unsigned i = 0; i < p->ncpus; i++) {
		struct madt_lapic *l = (struct madt_lapic *)q;

		*l = (struct madt_lapic){ .type = 0, .length = sizeof(*l),
			.processor_uid = (uint8_t)i, .apic_id = (uint8_t)i,
			.flags = cpu_to_le32(1) };
		q += sizeof(*l);
	}

	struct madt_ioapic *io = (struct madt_ioapic *)q;

	*io = (struct madt_ioapic){ .type = 1, .length = sizeof(*io),
		.ioapic_id = (uint8_t)p->ncpus,
		.address = cpu_to_le32((uint32_t)X86_IOAPIC_BASE), .gsi_base = 0 };
	q += sizeof(*io);

	static const struct { uint8_t irq; uint32_t gsi; uint16_t flags; } isos[2] = {
		{ 0, 2, INTI_POLARITY_HIGH | INTI_TRIGGER_EDGE },    /* PIT on IOAPIC pin 2 */
		{ X86_ACPI_SCI_IRQ, X86_ACPI_SCI_IRQ, INTI_POLARITY_HIGH | INTI_TRIGGER_LEVEL },
	};
	for (size_t i = 0; i < ARRAY_SIZE(isos); i++) {
		struct madt_iso *s = (struct madt_iso *)q;

		*s = (struct madt_iso){ .type = 2, .length = sizeof(*s), .bus = 0,
			.source = isos[i].irq, .gsi = cpu_to_le32(isos[i].gsi),
			.flags = cpu_to_le16(isos[i].flags) };
		q += sizeof(*s);
	}

	struct madt_lapic_nmi *n = (struct madt_lapic_nmi *)q;

	*n = (struct madt_lapic_nmi){ .type = 4, .length = sizeof(*n), .processor_uid = 0xff,
		.flags = cpu_to_le16(INTI_POLARITY_HIGH | INTI_TRIGGER_EDGE), .lint = 1 };
	header_seal(&m->h);
}

static void build_mcfg(struct acpi_mcfg *m)
{
	header_init(&m->h, "MCFG", sizeof(*m), 1);
	m->base = cpu_to_le64(X86_PCI_ECAM_BASE);
	m->segment = 0;
	m->start_bus = 0;
	m->end_bus = (uint8_t)(X86_PCI_ECAM_SIZE / MiB - 1); /* 1 MiB of ECAM per bus */
	header_seal(&m->h);
}
_Static_assert(X86_PCI_ECAM_SIZE % MiB == 0 && X86_PCI_ECAM_SIZE / MiB <= 256,
	       "ECAM covers whole buses");

static int platform_valid(const struct x86_platform *p)
{
	if (p->ncpus == 0 || p->ncpus > X86_MAX_CPUS)
		return 0;
	if (p->mmio64_size) {
		/* Above the 32-bit hole and not wrapping. */
		if (p->mmio64_base < X86_MEM_HOLE_END ||
		    p->mmio64_size - 1 > UINT64_MAX - p->mmio64_base)
			return 0;
	}
	return 1;
}

int acpi_build(const struct x86_platform *p, void *buf, size_t len, uint64_t gpa,
	       uint64_t *rsdp_gpa)
{
	struct alloc al = { .len = len };
	size_t rsdp_off, xsdt_off, fadt_off, facs_off, dsdt_off, madt_off, mcfg_off;
	size_t xsdt_size = sizeof(struct acpi_header) + XSDT_ENTRIES * sizeof(le64);
	uint8_t *b = buf;
	struct aml a;
	size_t aml_len;
	int ret;

	if (!p || !buf || !rsdp_gpa || !platform_valid(p))
		return -EINVAL;
	/* The RSDP must be where the legacy scan looks (ACPI 6.4, 5.2.5.1), and every table below 4 GiB. */
	if (!IS_ALIGNED(gpa, 16) || gpa < 0xe0000 || gpa > 0xfffff - sizeof(struct acpi_rsdp) + 1)
		return -EINVAL;
	if (len > 0x100000000ULL - gpa)
		return -EINVAL;

	memset(buf, 0, len);
	if ((ret = alloc_at(&al, sizeof(struct acpi_rsdp), 16, &rsdp_off)) ||
	    (ret = alloc_at(&al, xsdt_size, 16, &xsdt_off)) ||
	    (ret = alloc_at(&al, sizeof(struct acpi_fadt), 16, &fadt_off)) ||
	    (ret = alloc_at(&al, sizeof(struct acpi_facs), 64, &facs_off)) ||
	    (ret = alloc_at(&al, sizeof(struct acpi_header), 16, &dsdt_off)))
		return ret;

	/* The DSDT body goes straight after its header, into whatever room is left. */
	aml_init(&a, b + al.used, len - al.used);
	acpi_dsdt_body(p, &a);
	ret = aml_finish(&a, &aml_len);
	if (ret)
		return ret == -ENOSPC ? -ENOSPC : -EINVAL;
	if (aml_len > UINT32_MAX - sizeof(struct acpi_header))
		return -ENOSPC;
	al.used += aml_len;

	if ((ret = alloc_at(&al, madt_size(p->ncpus), 16, &madt_off)) ||
	    (ret = alloc_at(&al, sizeof(struct acpi_mcfg), 16, &mcfg_off)))
		return ret;

	struct acpi_header *dsdt = (struct acpi_header *)(b + dsdt_off);

	header_init(dsdt, "DSDT", (uint32_t)(sizeof(*dsdt) + aml_len), 2); /* rev 2: 64-bit integers */
	header_seal(dsdt);

	build_facs((struct acpi_facs *)(b + facs_off));
	build_fadt((struct acpi_fadt *)(b + fadt_off), gpa + facs_off, gpa + dsdt_off);
	header_seal(&((struct acpi_fadt *)(b + fadt_off))->h);
	build_madt(p, b + madt_off);
	build_mcfg((struct acpi_mcfg *)(b + mcfg_off));

	struct acpi_header *xsdt = (struct acpi_header *)(b + xsdt_off);
	uint64_t entries[XSDT_ENTRIES] = { gpa + fadt_off, gpa + madt_off, gpa + mcfg_off };

	header_init(xsdt, "XSDT", (uint32_t)xsdt_size, 1);
	for (size_t i = 0; i < XSDT_ENTRIES; i++) {
		le64 e = cpu_to_le64(entries[i]);

		memcpy(b + xsdt_off + sizeof(*xsdt) + i * sizeof(e), &e, sizeof(e));
	}
	header_seal(xsdt);

	struct acpi_rsdp *r = (struct acpi_rsdp *)(b + rsdp_off);

	memcpy(r->signature, "RSD PTR ", 8);
	memcpy(r->oem_id, ACPI_OEM_ID, 6);
	r->revision = 2;
	r->rsdt_address = 0; /* XSDT only */
	r->length = cpu_to_le32(sizeof(*r));
	r->xsdt_address = cpu_to_le64(gpa + xsdt_off);
	r->checksum = fw_checksum(r, 20);
	r->extended_checksum = fw_checksum(r, sizeof(*r));

	*rsdp_gpa = gpa + rsdp_off;
	return 0;
}
