/*
 * KVM interrupt plumbing for devices: the GSI routing table, irqfds and
 * ioeventfds. Only vmm/ and arch/ issue KVM ioctls; the virtio transport (and
 * later vhost-user) asks for MSI routes, irqfds and ioeventfds through here.
 *
 * KVM_SET_GSI_ROUTING replaces the whole table, so every commit carries the
 * in-kernel irqchip routes KVM installs by default (GSI 0-15 on the PIC and
 * the IOAPIC, 16-23 on the IOAPIC) followed by one MSI route per routed GSI.
 * MSI GSIs are allocated from IRQ_FIRST_MSI_GSI up.
 *
 * The three KVM calls go through a small ops table so unit tests can run
 * the router, and the transport above it, without /dev/kvm.
 *
 * Thread-safe: one mutex guards the table; ioctls on irqfds and ioeventfds
 * need no lock.
 */
#ifndef VMM_IRQ_H
#define VMM_IRQ_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <linux/kvm.h>

#include "vmm/util.h"

#define IRQ_NR_IRQCHIP_GSI 24   /* IOAPIC pins; GSIs below are the irqchip's */
#define IRQ_FIRST_MSI_GSI  IRQ_NR_IRQCHIP_GSI
#define IRQ_MAX_MSI        1024 /* MSI GSIs per VM (KVM allows 4096 routes in all) */

/* The KVM calls the router makes; ctx is the VM fd for the real ones. */
struct irq_kvm_ops {
	int (*set_gsi_routing)(void *ctx, const struct kvm_irq_routing *table);
	int (*irqfd)(void *ctx, int fd, uint32_t gsi, bool assign);
	/* len 0: any width; pio: an I/O port rather than MMIO. No data match. */
	int (*ioeventfd)(void *ctx, int fd, uint64_t addr, uint32_t len, bool pio, bool assign);
};

struct irq_msi {
	bool allocated;
	bool routed;        /* part of the committed table */
	uint32_t addr_lo, addr_hi, data;
};

struct irq_router {
	pthread_mutex_t lock;
	const struct irq_kvm_ops *ops;
	void *ctx;
	struct irq_msi msi[IRQ_MAX_MSI];   /* index: gsi - IRQ_FIRST_MSI_GSI */
	struct kvm_irq_routing *table;     /* scratch for commits */
	unsigned nr_commits;               /* KVM_SET_GSI_ROUTING calls that succeeded */
};

/* The real thing: KVM ioctls on vm_fd. */
int irq_router_init(struct irq_router *r, int vm_fd) WUR;
/* Any ops (tests). Returns 0 or -ENOMEM. */
int irq_router_init_ops(struct irq_router *r, const struct irq_kvm_ops *ops, void *ctx) WUR;
void irq_router_destroy(struct irq_router *r);
/*
 * The VM is being destroyed: closing its fd drops every irqfd, ioeventfd and
 * route at once, so from now on the router tells KVM nothing (the devices'
 * teardown still releases their GSIs and eventfds). Spares one ioctl, and a
 * wait for an SRCU grace period in KVM, per queue and vector at exit.
 */
void irq_router_detach(struct irq_router *r);

/* A free MSI GSI, or -ENOSPC. The GSI has no route until irq_msi_route(). */
int irq_msi_alloc(struct irq_router *r, uint32_t *gsi) WUR;
/* Drops the route (committing if it had one) and frees the GSI. */
void irq_msi_free(struct irq_router *r, uint32_t gsi);

/*
 * Whether an MSI message is one the platform delivers: an address in the
 * LAPIC window 0xFEExxxxx with address_hi 0 (xAPIC ids), fixed or
 * lowest-priority delivery, a vector of at least 16, no reserved data bits.
 */
bool irq_msi_valid(uint32_t addr_lo, uint32_t addr_hi, uint32_t data);

/*
 * Point gsi at an MSI message and commit the table. -EINVAL when the message
 * is not valid (the old route is then dropped) or gsi is not allocated; the
 * error of KVM_SET_GSI_ROUTING otherwise. Unchanged routes are not recommitted.
 */
int irq_msi_route(struct irq_router *r, uint32_t gsi, uint32_t addr_lo, uint32_t addr_hi,
		  uint32_t data) WUR;
/* Remove gsi's route (signals on its irqfd are then dropped by KVM). */
int irq_msi_unroute(struct irq_router *r, uint32_t gsi);

/*
 * Fill t (room for IRQ_NR_IRQCHIP_GSI * 2 + IRQ_MAX_MSI entries) with the
 * table a commit would send: irqchip routes, then the routed MSIs. Caller
 * holds no lock; exposed for tests.
 */
void irq_build_routing(struct irq_router *r, struct kvm_irq_routing *t);
size_t irq_routing_table_size(void);

/* irqfd: a write to fd (an eventfd) injects gsi. */
int irq_irqfd_assign(struct irq_router *r, int fd, uint32_t gsi) WUR;
int irq_irqfd_deassign(struct irq_router *r, int fd, uint32_t gsi);

/* ioeventfd: a guest write of len bytes (0: any) at addr signals fd without a vCPU exit. */
int irq_ioeventfd_assign(struct irq_router *r, int fd, uint64_t addr, uint32_t len,
			 bool pio) WUR;
int irq_ioeventfd_deassign(struct irq_router *r, int fd, uint64_t addr, uint32_t len, bool pio);

#endif
