/* One thread per vCPU: KVM_RUN, exit dispatch, and the pause/stop protocol. */
#ifndef VMM_VCPU_H
#define VMM_VCPU_H

#include <pthread.h>
#include <stdbool.h>
#include <linux/kvm.h>

#include "vmm/util.h"

struct vm;

struct vcpu {
	struct vm *vm;
	unsigned index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
};

int vcpu_create(struct vm *vm, struct vcpu *v, unsigned index) WUR;
void vcpu_destroy(struct vcpu *v);
int vcpu_start(struct vcpu *v) WUR;
/* Make KVM_RUN return now (or refuse to enter) so the thread sees a new request. */
void vcpu_kick(struct vcpu *v);
/* Install the kick signal's handler; once per process, before any vCPU starts. */
int vcpu_signals_init(void) WUR;

#endif
