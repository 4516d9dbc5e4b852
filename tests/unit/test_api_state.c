/* vmm/api/state: the pause / resume / shutdown state machine, every transition. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/api/state.h"

static void test_pause_resume_cycle(void **state)
{
	struct vm_runstate rs = { VM_STATE_RUNNING };

	(void)state;
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_PAUSE), 0);
	assert_int_equal(rs.state, VM_STATE_PAUSING);
	vm_runstate_end(&rs, VM_OP_PAUSE, true);
	assert_int_equal(rs.state, VM_STATE_PAUSED);
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_RESUME), 0);
	assert_int_equal(rs.state, VM_STATE_RESUMING);
	vm_runstate_end(&rs, VM_OP_RESUME, true);
	assert_int_equal(rs.state, VM_STATE_RUNNING);
	assert_string_equal(vm_run_state_name(rs.state), "Running");
}

static void test_conflicts(void **state)
{
	struct vm_runstate rs = { VM_STATE_RUNNING };

	(void)state;
	/* Resume while running. */
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_RESUME), -EALREADY);
	assert_int_equal(rs.state, VM_STATE_RUNNING);
	/* Pause while pausing, resume while pausing, power button while pausing. */
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_PAUSE), 0);
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_PAUSE), -EBUSY);
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_RESUME), -EBUSY);
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_POWER_BUTTON), -EBUSY);
	assert_int_equal(rs.state, VM_STATE_PAUSING);
	vm_runstate_end(&rs, VM_OP_PAUSE, true);
	/* Pause while paused; power button while paused. */
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_PAUSE), -EALREADY);
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_POWER_BUTTON), -EAGAIN);
	assert_int_equal(rs.state, VM_STATE_PAUSED);
	/* Resume while resuming. */
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_RESUME), 0);
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_RESUME), -EBUSY);
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_PAUSE), -EBUSY);
	vm_runstate_end(&rs, VM_OP_RESUME, true);
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_POWER_BUTTON), 0);
	assert_int_equal(rs.state, VM_STATE_RUNNING);
}

static void test_failed_transitions_go_back(void **state)
{
	struct vm_runstate rs = { VM_STATE_RUNNING };

	(void)state;
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_PAUSE), 0);
	vm_runstate_end(&rs, VM_OP_PAUSE, false);
	assert_int_equal(rs.state, VM_STATE_RUNNING);
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_PAUSE), 0);
	vm_runstate_end(&rs, VM_OP_PAUSE, true);
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_RESUME), 0);
	vm_runstate_end(&rs, VM_OP_RESUME, false);
	assert_int_equal(rs.state, VM_STATE_PAUSED);
}

static void test_shutdown_from_every_state(void **state)
{
	static const enum vm_run_state from[] = { VM_STATE_RUNNING, VM_STATE_PAUSING, VM_STATE_PAUSED,
						  VM_STATE_RESUMING };

	(void)state;
	for (size_t i = 0; i < sizeof(from) / sizeof(from[0]); i++) {
		struct vm_runstate rs = { from[i] };

		assert_int_equal(vm_runstate_begin(&rs, VM_OP_SHUTDOWN), 0);
		assert_int_equal(rs.state, VM_STATE_SHUTDOWN);
		/* A pause or resume that was under way ends without undoing the shutdown. */
		vm_runstate_end(&rs, VM_OP_PAUSE, true);
		vm_runstate_end(&rs, VM_OP_RESUME, false);
		assert_int_equal(rs.state, VM_STATE_SHUTDOWN);
		/* Everything after it is refused, shutdown included. */
		assert_int_equal(vm_runstate_begin(&rs, VM_OP_SHUTDOWN), -ESHUTDOWN);
		assert_int_equal(vm_runstate_begin(&rs, VM_OP_PAUSE), -ESHUTDOWN);
		assert_int_equal(vm_runstate_begin(&rs, VM_OP_RESUME), -ESHUTDOWN);
		assert_int_equal(vm_runstate_begin(&rs, VM_OP_POWER_BUTTON), -ESHUTDOWN);
		assert_string_equal(vm_run_state_name(rs.state), "Shutdown");
	}
}

/* A snapshot is written from Paused, stays Paused, and holds off resume and a second snapshot. */
static void test_snapshot(void **state)
{
	struct vm_runstate rs = { VM_STATE_RUNNING, false };

	(void)state;
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_SNAPSHOT), -EAGAIN);
	assert_false(rs.snapshotting);
	rs.state = VM_STATE_PAUSING;
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_SNAPSHOT), -EBUSY);
	rs.state = VM_STATE_PAUSED;
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_SNAPSHOT), 0);
	assert_int_equal(rs.state, VM_STATE_PAUSED);
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_RESUME), -EBUSY);
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_SNAPSHOT), -EBUSY);
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_PAUSE), -EALREADY);
	vm_runstate_end(&rs, VM_OP_SNAPSHOT, false);
	assert_false(rs.snapshotting);
	assert_int_equal(rs.state, VM_STATE_PAUSED);
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_RESUME), 0);
	vm_runstate_end(&rs, VM_OP_RESUME, true);
	assert_int_equal(rs.state, VM_STATE_RUNNING);
	/* Shutdown wins during a snapshot too. */
	rs = (struct vm_runstate){ VM_STATE_PAUSED, false };
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_SNAPSHOT), 0);
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_SHUTDOWN), 0);
	vm_runstate_end(&rs, VM_OP_SNAPSHOT, true);
	assert_int_equal(rs.state, VM_STATE_SHUTDOWN);
	assert_int_equal(vm_runstate_begin(&rs, VM_OP_SNAPSHOT), -ESHUTDOWN);
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(vm_run_state_name(VM_STATE_PAUSED), "Paused");
	assert_string_equal(vm_run_state_name(VM_STATE_PAUSING), "Pausing");
	assert_string_equal(vm_run_state_name(VM_STATE_RESUMING), "Resuming");
	assert_string_equal(vm_run_state_name((enum vm_run_state)99), "Unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pause_resume_cycle),
		cmocka_unit_test(test_conflicts),
		cmocka_unit_test(test_failed_transitions_go_back),
		cmocka_unit_test(test_shutdown_from_every_state),
		cmocka_unit_test(test_snapshot),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
