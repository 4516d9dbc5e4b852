#include "vmm/coalesced.h"

#include <string.h>

void coalesced_init(struct coalesced *c, struct bus *pio, struct bus *mmio)
{
	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
	c->pio = pio;
	c->mmio = mmio;
}

void coalesced_attach(struct coalesced *c, void *ring_page, size_t page_size)
{
	if (!ring_page || page_size < sizeof(struct kvm_coalesced_mmio_ring) +
					  sizeof(struct kvm_coalesced_mmio) * 2)
		return;
	/* KVM_COALESCED_MMIO_MAX, which the uapi header spells with the kernel's PAGE_SIZE. */
	c->max = (unsigned)((page_size - sizeof(struct kvm_coalesced_mmio_ring)) /
			    sizeof(struct kvm_coalesced_mmio));
	c->ring = ring_page;
}

void coalesced_destroy(struct coalesced *c)
{
	c->ring = NULL;
	if (c->pio || c->mmio)
		pthread_mutex_destroy(&c->lock);
	c->pio = c->mmio = NULL;
}

unsigned coalesced_drain(struct coalesced *c)
{
	struct kvm_coalesced_mmio_ring *ring = c->ring;
	unsigned n = 0, first, last;

	if (!ring || __atomic_load_n(&ring->first, __ATOMIC_RELAXED) ==
			     __atomic_load_n(&ring->last, __ATOMIC_RELAXED))
		return 0;
	pthread_mutex_lock(&c->lock);
	first = __atomic_load_n(&ring->first, __ATOMIC_RELAXED);
	/* Acquire: the entries KVM wrote before it moved last are visible. */
	last = __atomic_load_n(&ring->last, __ATOMIC_ACQUIRE);
	if (first >= c->max || last >= c->max) {
		/* Not KVM's doing: the page is shared; reset rather than index out of it. */
		if (!c->warned)
			pr_err("coalesced I/O ring: bad indices first=%u last=%u (of %u); reset",
			       first, last, c->max);
		c->warned = true;
		__atomic_store_n(&ring->first, last < c->max ? last : 0, __ATOMIC_RELEASE);
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	while (first != last) {
		struct kvm_coalesced_mmio e = ring->coalesced_mmio[first];

		if (e.len >= 1 && e.len <= sizeof(e.data))
			bus_access(e.pio ? c->pio : c->mmio, e.phys_addr, e.data, e.len, true);
		first = (first + 1) % c->max;
		/* Release: the slot is KVM's again only after we have read it. */
		__atomic_store_n(&ring->first, first, __ATOMIC_RELEASE);
		n++;
	}
	pthread_mutex_unlock(&c->lock);
	return n;
}
