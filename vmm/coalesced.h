/*
 * KVM's coalesced I/O ring. Writes to a port or MMIO range registered with
 * KVM_REGISTER_COALESCED_MMIO do not exit to us: KVM appends them to a ring
 * page shared with user space and lets the vCPU run on. They must be replayed,
 * in order, before any exit is handled (a later access may depend on them) and
 * before device state is saved. Worth it for a register the guest writes only
 * to set up the access that follows, such as the PCI address port 0xCF8: one
 * exit per type-1 config access instead of two (QEMU does the same).
 */
#ifndef VMM_COALESCED_H
#define VMM_COALESCED_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "vmm/bus.h"

struct coalesced {
	struct kvm_coalesced_mmio_ring *ring; /* NULL: not in use */
	unsigned max;                         /* entries the ring holds */
	pthread_mutex_t lock;                 /* one vCPU thread drains at a time */
	struct bus *pio, *mmio;
	bool warned;                          /* a bad ring index was reported */
};

/* Not in use until coalesced_attach. */
void coalesced_init(struct coalesced *c, struct bus *pio, struct bus *mmio);
/* Use the ring in ring_page (page_size bytes; KVM writes it, we read it). Before any vCPU runs. */
void coalesced_attach(struct coalesced *c, void *ring_page, size_t page_size);
void coalesced_destroy(struct coalesced *c);
/*
 * Replay the queued writes on the buses, oldest first. Cheap when the ring is
 * empty or not in use; any thread may call it. Returns how many were replayed.
 */
unsigned coalesced_drain(struct coalesced *c);

#endif
