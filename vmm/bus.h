/*
 * I/O port and MMIO dispatch. A device registers a range with a handler;
 * vCPU threads look up the range on every exit. Ranges may be added or
 * moved while vCPUs run (PCI BAR programming), so lookups take a read lock.
 */
#ifndef VMM_BUS_H
#define VMM_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/util.h"

/* offset is relative to the start of the registered range; len is 1, 2, 4 or 8. */
typedef void (*bus_io_fn)(void *opaque, uint64_t offset, uint8_t *data, unsigned len,
			  bool is_write);

struct bus_range {
	uint64_t base, len;
	bus_io_fn fn;
	void *opaque;
	const char *name;
};

struct bus {
	const char *name;         /* "pio" or "mmio", for messages */
	pthread_rwlock_t lock;
	unsigned nr, cap;
	struct bus_range *ranges; /* sorted by base, never overlapping */
};

int bus_init(struct bus *bus, const char *name) WUR;
void bus_destroy(struct bus *bus);
/* -EEXIST when the range overlaps one already registered, -EINVAL for an empty or wrapping range. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_io_fn fn, void *opaque,
		 const char *name) WUR;
/* Removes the range registered at exactly base by opaque; -ENOENT if none. */
int bus_unregister(struct bus *bus, uint64_t base, void *opaque);
/*
 * Dispatch an access. Returns 0 when a device handled it; -ENOENT when no
 * range covers the whole access, in which case reads return all ones.
 */
int bus_access(struct bus *bus, uint64_t addr, uint8_t *data, unsigned len, bool is_write);

#endif
