#include "vmm/vcpu.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/x86_64/vcpu.h"
#include "devices/platform.h"
#include "vmm/vm.h"

/* The kick: a real-time signal whose handler does nothing; its only job is EINTR. */
#define SIG_VCPU_KICK (SIGRTMIN + 1)

static void kick_handler(int sig)
{
	(void)sig;
}

int vcpu_signals_init(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: KVM_RUN must come back with EINTR. */
	if (sigaction(SIG_VCPU_KICK, &sa, NULL) < 0)
		return -errno;
	return 0;
}

int vcpu_create(struct vm *vm, struct vcpu *v, unsigned index)
{
	void *run;

	memset(v, 0, sizeof(*v));
	v->vm = vm;
	v->index = index;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (v->fd < 0)
		return -errno;
	run = mmap(NULL, (size_t)vm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (run == MAP_FAILED) {
		int ret = -errno;

		close(v->fd);
		v->fd = -1;
		return ret;
	}
	v->run = run;
	return 0;
}

void vcpu_destroy(struct vcpu *v)
{
	if (v->run)
		munmap(v->run, (size_t)v->vm->vcpu_mmap_size);
	if (v->fd >= 0)
		close(v->fd);
	v->run = NULL;
	v->fd = -1;
}

void vcpu_kick(struct vcpu *v)
{
	/* immediate_exit covers the window between the request check and KVM_RUN. */
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (v->started)
		pthread_kill(v->thread, SIG_VCPU_KICK);
}

static void handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;

	/* The data area lies within the kvm_run page KVM gave us: size * count fits by construction. */
	for (uint32_t i = 0; i < run->io.count; i++) {
		bus_access(&v->vm->pio, run->io.port, data, run->io.size, is_write);
		data += run->io.size;
	}
}

static void handle_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;

	if (run->mmio.len > sizeof(run->mmio.data))
		return;
	bus_access(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len,
		   run->mmio.is_write);
}

/* Returns false when the vCPU must stop. */
static bool handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	char regs[256];

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		handle_io(v);
		return true;
	case KVM_EXIT_MMIO:
		handle_mmio(v);
		return true;
	case KVM_EXIT_INTR:
	case KVM_EXIT_IRQ_WINDOW_OPEN:
	case KVM_EXIT_HLT:
		return true;
	case KVM_EXIT_SHUTDOWN:
		x86_vcpu_describe(v->fd, regs, sizeof(regs));
		vm_request_exit(v->vm, VMM_EXIT_FAILURE,
				"guest triple fault on vCPU %u (%s); the kernel crashed early", v->index,
				regs);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		switch (run->system_event.type) {
		case KVM_SYSTEM_EVENT_SHUTDOWN:
			vm_request_exit(v->vm, VMM_EXIT_OK, "%s", "");
			break;
		case KVM_SYSTEM_EVENT_RESET:
			platform_guest_reset(v->vm);
			break;
		case KVM_SYSTEM_EVENT_CRASH:
			vm_request_exit(v->vm, VMM_EXIT_PANIC, "guest reported a crash");
			break;
		default:
			vm_request_exit(v->vm, VMM_EXIT_FAILURE, "unknown KVM system event %u",
					run->system_event.type);
			break;
		}
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		vm_request_exit(v->vm, VMM_EXIT_FAILURE,
				"KVM could not enter vCPU %u (hardware reason %#llx)", v->index,
				(unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		x86_vcpu_describe(v->fd, regs, sizeof(regs));
		vm_request_exit(v->vm, VMM_EXIT_FAILURE, "KVM internal error on vCPU %u (suberror %u, %s)",
				v->index, run->internal.suberror, regs);
		return false;
	default:
		vm_request_exit(v->vm, VMM_EXIT_FAILURE, "unhandled KVM exit reason %u on vCPU %u",
				run->exit_reason, v->index);
		return false;
	}
}

enum run_result { RUN_EXITED, RUN_INTERRUPTED, RUN_STOP };

/* One KVM_RUN and the exit it came back with (handled). */
static enum run_result vcpu_run_once(struct vcpu *v)
{
	if (ioctl(v->fd, KVM_RUN, 0) < 0) {
		if (errno == EINTR || errno == EAGAIN) {
			__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
			return RUN_INTERRUPTED;
		}
		vm_request_exit(v->vm, VMM_EXIT_FAILURE, "KVM_RUN failed on vCPU %u: %s", v->index,
				strerror(errno));
		return RUN_STOP;
	}
	/* Queued writes first: this exit may depend on them (0xCF8 before 0xCFC). */
	coalesced_drain(&v->vm->coalesced);
	return handle_exit(v) ? RUN_EXITED : RUN_STOP;
}

/*
 * KVM finishes an I/O or MMIO exit (a value read lands in its register, rip
 * moves past the instruction) only on the next KVM_RUN; until then the vCPU's
 * registers are those of a half-done instruction, which a snapshot would save
 * and a restore execute again (a second OUT to a device). Before parking,
 * enter once with immediate_exit: KVM completes the operation and returns
 * EINTR without running guest code (Documentation/virt/kvm/api.rst, "pending
 * operations"). Completing may need another exit (the next fragment of a
 * split MMIO access, the next round of a string I/O instruction): handled.
 * Returns false when the vCPU must stop.
 */
static bool vcpu_finish_io(struct vcpu *v)
{
	enum run_result r;

	do {
		__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		r = vcpu_run_once(v);
	} while (r == RUN_EXITED);
	return r == RUN_INTERRUPTED;
}

/*
 * Park while a pause is requested; io_pending: the last exit was I/O or MMIO,
 * which KVM completes first. Returns false when the vCPU must stop.
 */
static bool vcpu_check_requests(struct vcpu *v, bool io_pending)
{
	struct vm *vm = v->vm;
	bool keep_running;

	pthread_mutex_lock(&vm->lock);
	if (io_pending && vm->pause_requested && !vm->stop_requested) {
		pthread_mutex_unlock(&vm->lock);
		if (!vcpu_finish_io(v))
			return false;
		pthread_mutex_lock(&vm->lock);
	}
	if (vm->pause_requested && !vm->stop_requested) {
		vm->nr_parked++;
		pthread_cond_broadcast(&vm->cond);
		while (vm->pause_requested && !vm->stop_requested)
			pthread_cond_wait(&vm->cond, &vm->lock);
		vm->nr_parked--;
	}
	keep_running = !vm->stop_requested;
	pthread_mutex_unlock(&vm->lock);
	return keep_running;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	bool io_pending = false;

	while (vcpu_check_requests(v, io_pending)) {
		enum run_result r = vcpu_run_once(v);

		if (r == RUN_STOP)
			break;
		io_pending = r == RUN_EXITED && (v->run->exit_reason == KVM_EXIT_IO ||
						 v->run->exit_reason == KVM_EXIT_MMIO);
	}

	/* Count an exited vCPU as parked so a concurrent pause does not wait for it forever. */
	pthread_mutex_lock(&vm->lock);
	vm->nr_parked++;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

int vcpu_start(struct vcpu *v)
{
	char name[16];
	int ret;

	snprintf(name, sizeof(name), "vcpu%u", v->index);
	ret = vmm_thread_create(&v->thread, vcpu_thread, v, name);
	if (ret)
		return ret;
	v->started = true;
	return 0;
}
