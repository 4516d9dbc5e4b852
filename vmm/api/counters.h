/*
 * GET /api/v1/vm.counters: every virtio device's counters as JSON, keyed by
 * device id, Cloud Hypervisor's shape (an object of named u64 counters per
 * device) plus the transport's per queue and per MSI-X vector. docs/api.md
 * lists the members. Everything is read with relaxed atomic loads: no lock
 * a device or a vCPU takes on its hot path.
 */
#ifndef VMM_API_COUNTERS_H
#define VMM_API_COUNTERS_H

#include "vmm/util.h"

struct json_object;
struct virtio_pci;
struct vm;

/*
 * One device's counters, added to d: "requests", "errors", the device's
 * named data counters (read_ops/read_bytes/write_ops/write_bytes for a disk,
 * rx_/tx_packets and _bytes for net and vsock, read_bytes for rng),
 * "trapped_kicks", "dropped_interrupts", "config_interrupts", "needs_reset",
 * "queues" ([{"kicks", "interrupts", "vector"}]) and "interrupts" (delivered,
 * per MSI-X vector). What only a vhost-user back-end sees (requests, data,
 * kicks, used-buffer interrupts) is null, never 0. 0 or -ENOMEM.
 */
int api_counters_device(struct virtio_pci *vp, struct json_object *d) WUR;

/* {"<device id>": {"pci_slot": N, ...api_counters_device...}, ...} into out. 0 or -ENOMEM. */
int api_counters_vm(struct vm *vm, struct json_object *out) WUR;

#endif
