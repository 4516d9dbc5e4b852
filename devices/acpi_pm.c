/* ACPI PM1a event and control blocks: SCI_EN reads as set, and S5 powers the VM off. */
#include <string.h>

#include "arch/x86_64/layout.h"
#include "devices/platform.h"
#include "vmm/vm.h"

#define PM1_CNT_SCI_EN       0x0001
#define PM1_CNT_SLP_TYP_SHIFT 10
#define PM1_CNT_SLP_TYP_MASK (7u << PM1_CNT_SLP_TYP_SHIFT)
#define PM1_CNT_SLP_EN       (1u << 13)
#define PM_CNT_OFFSET        (X86_ACPI_PM1A_CNT - X86_ACPI_PM1A_EVT)

void acpi_pm_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	struct vm *vm = opaque;
	uint16_t v = 0;

	if (!is_write) {
		memset(data, 0, len);
		/* ACPI is always enabled (SMI_CMD = 0): the OS checks SCI_EN. */
		if (offset == PM_CNT_OFFSET)
			data[0] = PM1_CNT_SCI_EN;
		return;
	}
	if (offset != PM_CNT_OFFSET)
		return; /* status/enable bits: no events to report */
	memcpy(&v, data, MIN(len, sizeof(v)));
	if ((v & PM1_CNT_SLP_EN) &&
	    ((v & PM1_CNT_SLP_TYP_MASK) >> PM1_CNT_SLP_TYP_SHIFT) == X86_ACPI_S5_SLP_TYP && vm)
		vm_request_exit(vm, VMM_EXIT_OK, "%s", "");
}
