/*
 * The paravirtual exit device: a guest writes its verdict to I/O port 0x501
 * and vmm exits with exactly that status. Unlike QEMU's isa-debug-exit, the
 * value passes through unchanged; values above 255 cannot be an exit status
 * and end the VM with a failure that says so.
 */
#include <string.h>

#include "devices/platform.h"
#include "vmm/vm.h"

void exit_dev_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	struct vm *vm = opaque;
	uint32_t status = 0;

	if (!is_write) {
		memset(data, 0, len);
		return;
	}
	if (offset != 0)
		return;
	memcpy(&status, data, MIN(len, sizeof(status)));
	if (!vm)
		return;
	if (status > 255)
		vm_request_exit(vm, VMM_EXIT_FAILURE,
				"guest wrote exit status %u to the exit device; statuses are 0..255",
				status);
	else if (status)
		vm_request_exit(vm, (int)status, "guest verdict through the exit device: status %u",
				status);
	else
		vm_request_exit(vm, VMM_EXIT_OK, "%s", "");
}
