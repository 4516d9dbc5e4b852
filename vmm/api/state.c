#include "vmm/api/state.h"

#include <errno.h>

int vm_runstate_begin(struct vm_runstate *rs, enum vm_op op)
{
	enum vm_run_state s = rs->state;

	if (s == VM_STATE_SHUTDOWN)
		return -ESHUTDOWN;
	switch (op) {
	case VM_OP_PAUSE:
		if (s == VM_STATE_PAUSED)
			return -EALREADY;
		if (s != VM_STATE_RUNNING)
			return -EBUSY;
		rs->state = VM_STATE_PAUSING;
		return 0;
	case VM_OP_RESUME:
		if (s == VM_STATE_RUNNING)
			return -EALREADY;
		if (s != VM_STATE_PAUSED || rs->snapshotting)
			return -EBUSY;
		rs->state = VM_STATE_RESUMING;
		return 0;
	case VM_OP_SHUTDOWN:
		/* Always possible: stopping wakes parked vCPUs, and a pause under way sees it. */
		rs->state = VM_STATE_SHUTDOWN;
		return 0;
	case VM_OP_POWER_BUTTON:
		if (s == VM_STATE_RUNNING)
			return 0;
		return s == VM_STATE_PAUSED ? -EAGAIN : -EBUSY;
	case VM_OP_SNAPSHOT:
		if (s == VM_STATE_RUNNING)
			return -EAGAIN;
		if (s != VM_STATE_PAUSED || rs->snapshotting)
			return -EBUSY;
		rs->snapshotting = true;
		return 0;
	}
	return -EINVAL;
}

void vm_runstate_end(struct vm_runstate *rs, enum vm_op op, bool ok)
{
	switch (op) {
	case VM_OP_PAUSE:
		if (rs->state == VM_STATE_PAUSING)
			rs->state = ok ? VM_STATE_PAUSED : VM_STATE_RUNNING;
		break;
	case VM_OP_RESUME:
		if (rs->state == VM_STATE_RESUMING)
			rs->state = ok ? VM_STATE_RUNNING : VM_STATE_PAUSED;
		break;
	case VM_OP_SNAPSHOT:
		rs->snapshotting = false;
		break;
	case VM_OP_SHUTDOWN:
	case VM_OP_POWER_BUTTON:
		break;
	}
}

const char *vm_run_state_name(enum vm_run_state s)
{
	switch (s) {
	case VM_STATE_RUNNING: return "Running";
	case VM_STATE_PAUSING: return "Pausing";
	case VM_STATE_PAUSED: return "Paused";
	case VM_STATE_RESUMING: return "Resuming";
	case VM_STATE_SHUTDOWN: return "Shutdown";
	}
	return "Unknown";
}
