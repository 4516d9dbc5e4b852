/* ACPI PM1a event and control blocks: SCI_EN reads as set, and S5 powers the VM off. */
#include <string.h>

#include "arch/x86_64/layout.h"
#include "devices/platform.h"
#include "vmm/vm.h"

#define PM1_CNT_SCI_EN       0x0001
#define PM1_CNT_SLP_TYP_SHIFT 10
#define PM1_CNT_SLP_TYP_MASK (7u << PM1_CNT_SLP_TYP_SHIFT)
#define PM1_CNT_SLP_EN       (1u << 13)
_Static_assert(X86_ACPI_PM1A_CNT - X86_ACPI_PM1A_EVT == 4, "PM1a_CNT follows the 4-byte event block");

/*
 * Register file, by byte offset from PM1a_EVT: status (write 1 to clear; we
 * never raise events, so it reads 0), enable (kept, since ACPICA reads back
 * what it enables), control (SCI_EN always set: ACPI is on, SMI_CMD is 0).
 */
void acpi_pm_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	struct acpi_pm *pm = opaque;
	uint8_t regs[6];
	uint16_t cnt;

	if (offset >= sizeof(regs) || len > sizeof(regs) - offset) {
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	pthread_mutex_lock(&pm->lock);
	memset(regs, 0, sizeof(regs));
	memcpy(&regs[2], &pm->en, sizeof(pm->en));
	memcpy(&regs[4], &pm->cnt, sizeof(pm->cnt));
	if (!is_write) {
		memcpy(data, &regs[offset], len);
		pthread_mutex_unlock(&pm->lock);
		return;
	}
	memcpy(&regs[offset], data, len);
	memcpy(&pm->en, &regs[2], sizeof(pm->en));
	memcpy(&cnt, &regs[4], sizeof(cnt));
	pm->cnt = (uint16_t)((cnt & ~PM1_CNT_SLP_EN) | PM1_CNT_SCI_EN);
	pthread_mutex_unlock(&pm->lock);

	if ((cnt & PM1_CNT_SLP_EN) &&
	    ((cnt & PM1_CNT_SLP_TYP_MASK) >> PM1_CNT_SLP_TYP_SHIFT) == X86_ACPI_S5_SLP_TYP && pm->vm)
		vm_request_exit(pm->vm, VMM_EXIT_OK, "%s", "");
}

void acpi_pm_init(struct acpi_pm *pm, struct vm *vm)
{
	memset(pm, 0, sizeof(*pm));
	pthread_mutex_init(&pm->lock, NULL);
	pm->vm = vm;
	pm->cnt = PM1_CNT_SCI_EN;
}
