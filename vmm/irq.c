#include "vmm/irq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86_64/layout.h"

#define NR_IRQCHIP_ROUTES (16 * 2 + (IRQ_NR_IRQCHIP_GSI - 16))

/* ---- the real KVM calls -------------------------------------------------------- */

static int kvm_set_gsi_routing(void *ctx, const struct kvm_irq_routing *table)
{
	return ioctl((int)(intptr_t)ctx, KVM_SET_GSI_ROUTING, table) < 0 ? -errno : 0;
}

static int kvm_irqfd(void *ctx, int fd, uint32_t gsi, bool assign)
{
	struct kvm_irqfd f = {
		.fd = (uint32_t)fd,
		.gsi = gsi,
		.flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN,
	};

	return ioctl((int)(intptr_t)ctx, KVM_IRQFD, &f) < 0 ? -errno : 0;
}

static int kvm_ioeventfd(void *ctx, int fd, uint64_t addr, uint32_t len, bool pio, bool assign)
{
	struct kvm_ioeventfd e = {
		.addr = addr,
		.len = len,
		.fd = fd,
		.flags = (pio ? KVM_IOEVENTFD_FLAG_PIO : 0) |
			 (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
	};

	return ioctl((int)(intptr_t)ctx, KVM_IOEVENTFD, &e) < 0 ? -errno : 0;
}

static const struct irq_kvm_ops kvm_ops = {
	.set_gsi_routing = kvm_set_gsi_routing,
	.irqfd = kvm_irqfd,
	.ioeventfd = kvm_ioeventfd,
};

static int detached_set_gsi_routing(void *ctx, const struct kvm_irq_routing *table)
{
	(void)ctx;
	(void)table;
	return 0;
}

static int detached_irqfd(void *ctx, int fd, uint32_t gsi, bool assign)
{
	(void)ctx;
	(void)fd;
	(void)gsi;
	return assign ? -ENODEV : 0;
}

static int detached_ioeventfd(void *ctx, int fd, uint64_t addr, uint32_t len, bool pio, bool assign)
{
	(void)ctx;
	(void)fd;
	(void)addr;
	(void)len;
	(void)pio;
	return assign ? -ENODEV : 0;
}

/* After irq_router_detach(): removals succeed silently, additions fail. */
static const struct irq_kvm_ops detached_ops = {
	.set_gsi_routing = detached_set_gsi_routing,
	.irqfd = detached_irqfd,
	.ioeventfd = detached_ioeventfd,
};

/* ---- router -------------------------------------------------------------------- */

/* irq_router_detach() may swap the ops while another thread calls them. */
static const struct irq_kvm_ops *ops_of(struct irq_router *r)
{
	return __atomic_load_n(&r->ops, __ATOMIC_ACQUIRE);
}

size_t irq_routing_table_size(void)
{
	return sizeof(struct kvm_irq_routing) +
	       (NR_IRQCHIP_ROUTES + IRQ_MAX_MSI) * sizeof(struct kvm_irq_routing_entry);
}

int irq_router_init_ops(struct irq_router *r, const struct irq_kvm_ops *ops, void *ctx)
{
	memset(r, 0, sizeof(*r));
	r->table = calloc(1, irq_routing_table_size());
	if (!r->table)
		return -ENOMEM;
	r->ops = ops;
	r->ctx = ctx;
	pthread_mutex_init(&r->lock, NULL);
	return 0;
}

int irq_router_init(struct irq_router *r, int vm_fd)
{
	return irq_router_init_ops(r, &kvm_ops, (void *)(intptr_t)vm_fd);
}

void irq_router_detach(struct irq_router *r)
{
	__atomic_store_n(&r->ops, &detached_ops, __ATOMIC_RELEASE);
}

void irq_router_destroy(struct irq_router *r)
{
	if (!r->table)
		return;
	free(r->table);
	r->table = NULL;
	pthread_mutex_destroy(&r->lock);
}

static void add_irqchip(struct kvm_irq_routing *t, uint32_t gsi, uint32_t chip, uint32_t pin)
{
	struct kvm_irq_routing_entry *e = &t->entries[t->nr++];

	memset(e, 0, sizeof(*e));
	e->gsi = gsi;
	e->type = KVM_IRQ_ROUTING_IRQCHIP;
	e->u.irqchip.irqchip = chip;
	e->u.irqchip.pin = pin;
}

/* Caller holds r->lock. */
static void build_locked(struct irq_router *r, struct kvm_irq_routing *t)
{
	t->nr = 0;
	t->flags = 0;
	/* The routes KVM_CREATE_IRQCHIP installs: legacy IRQs reach both PIC and IOAPIC. */
	for (uint32_t gsi = 0; gsi < IRQ_NR_IRQCHIP_GSI; gsi++) {
		add_irqchip(t, gsi, KVM_IRQCHIP_IOAPIC, gsi);
		if (gsi < 16)
			add_irqchip(t, gsi, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
				    gsi % 8);
	}
	for (uint32_t i = 0; i < IRQ_MAX_MSI; i++) {
		const struct irq_msi *m = &r->msi[i];
		struct kvm_irq_routing_entry *e;

		if (!m->allocated || !m->routed)
			continue;
		e = &t->entries[t->nr++];
		memset(e, 0, sizeof(*e));
		e->gsi = IRQ_FIRST_MSI_GSI + i;
		e->type = KVM_IRQ_ROUTING_MSI;
		e->u.msi.address_lo = m->addr_lo;
		e->u.msi.address_hi = m->addr_hi;
		e->u.msi.data = m->data;
	}
}

void irq_build_routing(struct irq_router *r, struct kvm_irq_routing *t)
{
	pthread_mutex_lock(&r->lock);
	build_locked(r, t);
	pthread_mutex_unlock(&r->lock);
}

static int commit_locked(struct irq_router *r)
{
	int ret;

	build_locked(r, r->table);
	ret = ops_of(r)->set_gsi_routing(r->ctx, r->table);
	if (!ret)
		r->nr_commits++;
	return ret;
}

static struct irq_msi *msi_of(struct irq_router *r, uint32_t gsi)
{
	if (gsi < IRQ_FIRST_MSI_GSI || gsi - IRQ_FIRST_MSI_GSI >= IRQ_MAX_MSI)
		return NULL;
	return &r->msi[gsi - IRQ_FIRST_MSI_GSI];
}

int irq_msi_alloc(struct irq_router *r, uint32_t *gsi)
{
	int ret = -ENOSPC;

	pthread_mutex_lock(&r->lock);
	for (uint32_t i = 0; i < IRQ_MAX_MSI; i++) {
		if (!r->msi[i].allocated) {
			memset(&r->msi[i], 0, sizeof(r->msi[i]));
			r->msi[i].allocated = true;
			*gsi = IRQ_FIRST_MSI_GSI + i;
			ret = 0;
			break;
		}
	}
	pthread_mutex_unlock(&r->lock);
	return ret;
}

void irq_msi_free(struct irq_router *r, uint32_t gsi)
{
	struct irq_msi *m = msi_of(r, gsi);

	if (!m)
		return;
	pthread_mutex_lock(&r->lock);
	if (m->allocated) {
		bool was_routed = m->routed;

		memset(m, 0, sizeof(*m));
		if (was_routed && commit_locked(r))
			pr_err("irq: dropping the route of GSI %u failed", gsi);
	}
	pthread_mutex_unlock(&r->lock);
}

bool irq_msi_valid(uint32_t addr_lo, uint32_t addr_hi, uint32_t data)
{
	unsigned mode = (data >> 8) & 7;

	if (addr_hi != 0 || (addr_lo & 0xfff00000u) != (uint32_t)X86_LAPIC_BASE)
		return false;
	if (data >> 16)
		return false;
	/* Intel SDM 11.11.2: fixed (0) or lowest priority (1); vectors 0-15 are reserved. */
	return (mode == 0 || mode == 1) && (data & 0xff) >= 16;
}

int irq_msi_route(struct irq_router *r, uint32_t gsi, uint32_t addr_lo, uint32_t addr_hi,
		  uint32_t data)
{
	struct irq_msi *m = msi_of(r, gsi);
	bool valid = irq_msi_valid(addr_lo, addr_hi, data);
	int ret = 0;

	if (!m)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	if (!m->allocated) {
		ret = -EINVAL;
		goto out;
	}
	if (!valid) {
		if (m->routed) {
			m->routed = false;
			commit_locked(r);
		}
		ret = -EINVAL;
		goto out;
	}
	if (m->routed && m->addr_lo == addr_lo && m->addr_hi == addr_hi && m->data == data)
		goto out;
	m->addr_lo = addr_lo;
	m->addr_hi = addr_hi;
	m->data = data;
	m->routed = true;
	ret = commit_locked(r);
	if (ret)
		m->routed = false;
out:
	pthread_mutex_unlock(&r->lock);
	return ret;
}

int irq_msi_unroute(struct irq_router *r, uint32_t gsi)
{
	struct irq_msi *m = msi_of(r, gsi);
	int ret = 0;

	if (!m)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	if (m->allocated && m->routed) {
		m->routed = false;
		ret = commit_locked(r);
	}
	pthread_mutex_unlock(&r->lock);
	return ret;
}

int irq_irqfd_assign(struct irq_router *r, int fd, uint32_t gsi)
{
	return ops_of(r)->irqfd(r->ctx, fd, gsi, true);
}

int irq_irqfd_deassign(struct irq_router *r, int fd, uint32_t gsi)
{
	return ops_of(r)->irqfd(r->ctx, fd, gsi, false);
}

int irq_ioeventfd_assign(struct irq_router *r, int fd, uint64_t addr, uint32_t len, bool pio)
{
	if (len != 0 && len != 1 && len != 2 && len != 4 && len != 8)
		return -EINVAL;
	return ops_of(r)->ioeventfd(r->ctx, fd, addr, len, pio, true);
}

int irq_ioeventfd_deassign(struct irq_router *r, int fd, uint64_t addr, uint32_t len, bool pio)
{
	return ops_of(r)->ioeventfd(r->ctx, fd, addr, len, pio, false);
}
