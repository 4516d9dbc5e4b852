/*
 * ACPI PM1a event and control blocks: SCI_EN reads as set, S5 powers the VM
 * off, and the fixed-feature power button (PWRBTN_STS/PWRBTN_EN) raises the
 * SCI, which the guest's ACPI core hands to its button driver.
 *
 * The global lock and RTC enable bits are kept too, though their events never
 * fire (no firmware ever holds the FACS lock; the RTC alarm is the CMOS
 * interrupt, not the fixed wake event): ACPICA enables both at boot and reads
 * them back, and a bit that does not stick is an "ACPI Error" line on every
 * boot ("Could not enable GlobalLock event", then the lock disabled).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "arch/x86_64/layout.h"
#include "devices/platform.h"
#include "vmm/snapshot/format.h"
#include "vmm/vm.h"

#define PM1_CNT_SCI_EN       0x0001
#define PM1_CNT_SLP_TYP_SHIFT 10
#define PM1_CNT_SLP_TYP_MASK (7u << PM1_CNT_SLP_TYP_SHIFT)
#define PM1_CNT_SLP_EN       (1u << 13)
#define PM1_STS_WAK          0x8000
/* The status bits we implement, which raise the SCI: the power button only. */
#define PM1_EVENTS           ACPI_PM1_PWRBTN
/* The enable bits kept: those, and the two ACPICA enables at boot (ACPI 6.4, 4.8.3.1). */
#define PM1_ENABLES          (PM1_EVENTS | ACPI_PM1_GBL | ACPI_PM1_RTC)
_Static_assert(X86_ACPI_PM1A_CNT - X86_ACPI_PM1A_EVT == 4, "PM1a_CNT follows the 4-byte event block");

/* The SCI is level-triggered: high while an enabled status bit is set. Call with pm->lock held. */
static void update_sci(struct acpi_pm *pm)
{
	bool level = (pm->sts & pm->en & PM1_EVENTS) != 0;

	if (level != pm->sci) {
		pm->sci = level;
		if (pm->set_sci)
			pm->set_sci(pm, level);
	}
}

/*
 * Register file, by byte offset from PM1a_EVT: status (write 1 to clear),
 * enable (kept, since ACPICA reads back what it enables), control (SCI_EN
 * always set: ACPI is on, SMI_CMD is 0).
 */
void acpi_pm_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	struct acpi_pm *pm = opaque;
	uint8_t regs[6];
	uint16_t cnt, sts_w1c;

	if (offset >= sizeof(regs) || len > sizeof(regs) - offset) {
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	pthread_mutex_lock(&pm->lock);
	memcpy(&regs[0], &pm->sts, sizeof(pm->sts));
	memcpy(&regs[2], &pm->en, sizeof(pm->en));
	memcpy(&regs[4], &pm->cnt, sizeof(pm->cnt));
	if (!is_write) {
		memcpy(data, &regs[offset], len);
		pthread_mutex_unlock(&pm->lock);
		return;
	}
	memset(regs, 0, 2);     /* status bytes not written clear nothing */
	memcpy(&regs[offset], data, len);
	memcpy(&sts_w1c, &regs[0], sizeof(sts_w1c));
	pm->sts &= (uint16_t)~sts_w1c;
	memcpy(&pm->en, &regs[2], sizeof(pm->en));
	pm->en &= PM1_ENABLES;
	memcpy(&cnt, &regs[4], sizeof(cnt));
	pm->cnt = (uint16_t)((cnt & ~PM1_CNT_SLP_EN) | PM1_CNT_SCI_EN);
	update_sci(pm);
	pthread_mutex_unlock(&pm->lock);

	if (offset + len > 4 && (cnt & PM1_CNT_SLP_EN) &&
	    ((cnt & PM1_CNT_SLP_TYP_MASK) >> PM1_CNT_SLP_TYP_SHIFT) == X86_ACPI_S5_SLP_TYP && pm->vm)
		vm_request_exit(pm->vm, VMM_EXIT_OK, "%s", "");
}

void acpi_pm_power_button(struct acpi_pm *pm)
{
	pthread_mutex_lock(&pm->lock);
	pm->sts |= ACPI_PM1_PWRBTN;
	pm->nr_presses++;
	update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

static void vm_set_sci(struct acpi_pm *pm, bool level)
{
	if (vm_irq_line(pm->vm, X86_ACPI_SCI_IRQ, level))
		pr_guest_err("acpi-pm: raising the SCI failed");
}

void acpi_pm_init(struct acpi_pm *pm, struct vm *vm)
{
	memset(pm, 0, sizeof(*pm));
	pthread_mutex_init(&pm->lock, NULL);
	pm->vm = vm;
	pm->cnt = PM1_CNT_SCI_EN;
	pm->set_sci = vm ? vm_set_sci : NULL;
}

/* ---- snapshots -------------------------------------------------------------------- */

#define R struct acpi_pm_regs
static const struct snap_field acpi_pm_snap_fields[] = {
	SNAP_UINT_R(R, sts, 0, PM1_EVENTS),
	SNAP_UINT_R(R, en, 0, PM1_ENABLES),
	SNAP_U(R, cnt),
};
#undef R

static int acpi_pm_snap_check(const void *obj, char *err, size_t errlen)
{
	const struct acpi_pm_regs *regs = obj;

	/* What acpi_pm_io leaves: known enable bits, SCI_EN set, SLP_EN never latched. */
	if (regs->en & ~PM1_ENABLES) {
		snprintf(err, errlen, "en: %#x: bits beyond %#x", regs->en, PM1_ENABLES);
		return -EINVAL;
	}
	if (!(regs->cnt & PM1_CNT_SCI_EN) || (regs->cnt & PM1_CNT_SLP_EN)) {
		snprintf(err, errlen, "cnt: %#x: SCI_EN must be set and SLP_EN clear", regs->cnt);
		return -EINVAL;
	}
	return 0;
}

const struct snap_desc acpi_pm_snap_desc =
	SNAP_DESC(struct acpi_pm_regs, "acpi-pm", 1, acpi_pm_snap_fields, acpi_pm_snap_check);

int acpi_pm_save(struct acpi_pm *pm, struct snap_writer *w)
{
	struct acpi_pm_regs regs;

	pthread_mutex_lock(&pm->lock);
	regs = (struct acpi_pm_regs){ .sts = pm->sts, .en = pm->en, .cnt = pm->cnt };
	pthread_mutex_unlock(&pm->lock);
	return snap_write(w, &acpi_pm_snap_desc, &regs);
}

int acpi_pm_load(struct acpi_pm *pm, struct snap_reader *r, int node)
{
	struct acpi_pm_regs regs = { 0 };
	int ret = snap_read(r, node, &acpi_pm_snap_desc, &regs);

	if (ret)
		return ret;
	pthread_mutex_lock(&pm->lock);
	pm->sts = regs.sts;
	pm->en = regs.en;
	pm->cnt = regs.cnt;
	/* Drive the line to the restored level: the irqchip's state came back, its sources did not. */
	pm->sci = !((pm->sts & pm->en & PM1_EVENTS) != 0);
	update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
	return 0;
}
