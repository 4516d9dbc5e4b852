/*
 * The VM's run state as the API sees it, and the rules for moving between
 * states: pure (no locks, no KVM), so every transition is unit-tested. The
 * caller serialises calls (vm.c holds vm->lock around them).
 *
 *   Running --pause--> Pausing --ok--> Paused --resume--> Resuming --ok--> Running
 *        (a failed transition goes back where it came from)
 *   any state but Shutdown --shutdown--> Shutdown (final)
 *
 * A snapshot is written from Paused and leaves it Paused; while it is being
 * written (busy) the VM cannot resume or start another snapshot.
 */
#ifndef VMM_API_STATE_H
#define VMM_API_STATE_H

#include <stdbool.h>

#include "vmm/util.h"

enum vm_run_state {
	VM_STATE_RUNNING,
	VM_STATE_PAUSING,
	VM_STATE_PAUSED,
	VM_STATE_RESUMING,
	VM_STATE_SHUTDOWN,
};

enum vm_op {
	VM_OP_PAUSE,
	VM_OP_RESUME,
	VM_OP_SHUTDOWN,
	VM_OP_POWER_BUTTON,  /* no state change: only allowed while running */
	VM_OP_SNAPSHOT,      /* Paused only; the state stays Paused, busy until it ends */
};

struct vm_runstate {
	enum vm_run_state state;
	bool snapshotting;   /* a snapshot is being written: resume waits (-EBUSY) */
};

/*
 * Start op. Returns 0 (the state is now the transition's, or Shutdown), or:
 * -EALREADY  pause of a paused VM, resume of a running one
 * -EBUSY     a pause, resume or snapshot is under way
 * -EAGAIN    power button while paused: the guest cannot see it;
 *            snapshot of a VM that is not paused
 * -ESHUTDOWN the VM is shut down
 */
int vm_runstate_begin(struct vm_runstate *rs, enum vm_op op) WUR;
/* The op started by vm_runstate_begin() ended; ok false goes back. A shutdown meanwhile wins. */
void vm_runstate_end(struct vm_runstate *rs, enum vm_op op, bool ok);
/* "Running", "Pausing", "Paused", "Resuming", "Shutdown". */
const char *vm_run_state_name(enum vm_run_state s);

#endif
