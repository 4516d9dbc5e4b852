/*
 * Snapshot and restore of a whole VM, into a directory:
 *
 *   DIR/memory     guest RAM as one flat, page-aligned, sparse image (gmem_save_file)
 *   DIR/state.dtb  everything else (vmm/snapshot/format.h): the command line's
 *                  configuration, every vCPU, the in-kernel PIC/IOAPIC/PIT and
 *                  kvmclock, and each virtio device: its transport's state and
 *                  its own (virtio_pci_save)
 *
 * state.dtb is written last, through a temporary name and rename(): a
 * directory with a state.dtb holds a whole snapshot.
 *
 * Restore runs in two phases so that nothing is applied from a bad snapshot:
 * vm_snapshot_load() reads and validates everything (state file, every node,
 * the memory file's size) and gives the configuration to build the VM from;
 * vm_snapshot_apply() then puts the state into the new, not yet started VM.
 */
#ifndef VMM_SNAPSHOT_SNAPSHOT_H
#define VMM_SNAPSHOT_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/snapshot/cpu.h"
#include "vmm/snapshot/format.h"
#include "vmm/util.h"

#define SNAP_STATE_FILE  "state.dtb"
#define SNAP_MEMORY_FILE "memory"
#define SNAP_MAX_DEVICES 32      /* VMM_MAX_DEVICES */

struct vm;

/* The numbers of struct vm_config a restore needs (node "config"). */
struct snap_config {
	uint32_t ncpus;
	uint64_t mem_size;
	uint8_t mem_shared;      /* enum mem_share */
	uint8_t mem_hugepages;
	uint8_t serial;          /* enum serial_mode */
};
extern const struct snap_desc snap_config_desc;

/* A whole snapshot, validated, not applied. Strings and device states point into reader. */
struct vm_snapshot {
	struct snap_reader reader;
	struct snap_config cfg;
	const char *kernel, *initramfs, *cmdline, *serial_path;  /* NULL when absent */
	unsigned ndevices;
	struct {
		const char *option;  /* "disk", "net", ...: the --OPTION of struct vm_device_arg */
		const char *args;    /* its "k=v,..." */
	} devices[SNAP_MAX_DEVICES];
	struct snap_kvm_vm kvm;
	struct snap_vcpu *vcpus; /* cfg.ncpus of them */
	unsigned nstates;
	struct {
		const char *id;      /* vdev->id: "blk0" */
		int node;            /* its node: the transport's fields and the device's own */
	} states[SNAP_MAX_DEVICES];
};

/*
 * Whether every device of vm can be saved: -ENOTSUP with err naming the first
 * that cannot ("blk0 (virtio-blk) cannot be saved"), else 0. Nothing is written.
 */
int vm_snapshot_check_devices(struct vm *vm, char *err, size_t errlen) WUR;

/*
 * Save vm, which must be paused (vm_sleep), into dir (created if missing);
 * vm_wake waits (-EBUSY) until it is written. Returns 0, or -errno with one
 * line in err:
 *   -EAGAIN   the VM is running: pause it first (the API's 409)
 *   -EBUSY    a pause, resume or other snapshot is under way (409)
 *   -ESHUTDOWN the VM is shutting down (409)
 *   -ENOTSUP  a device cannot be saved (nothing written)
 *   other     the capture or a file failed
 * The VM stays paused either way.
 */
int vm_snapshot_save(struct vm *vm, const char *dir, char *err, size_t errlen) WUR;

/*
 * Parse and validate a state file held in memory (as vm_snapshot_load does,
 * without the memory file): every node, every field, the vCPU count against
 * the vCPU nodes, no unknown node. -EINVAL with err naming the node and field.
 */
int vm_snapshot_parse(const void *buf, size_t len, struct vm_snapshot **out, char *err,
		      size_t errlen) WUR;

/*
 * Phase one of a restore: read dir/state.dtb and validate all of it, and open
 * dir/memory and check it is exactly the snapshot's RAM size. On success
 * *mem_fd is the memory file, read-only, for gmem_create_from_file().
 * -EINVAL (a bad snapshot) or -errno, with one line in err.
 */
int vm_snapshot_load(const char *dir, struct vm_snapshot **out, int *mem_fd, char *err,
		     size_t errlen) WUR;
void vm_snapshot_free(struct vm_snapshot *s);

/*
 * The machine of s into cfg: vCPUs, memory, the kernel's names and command
 * line, the devices (each opened again by vm_create_restored, as on the
 * command line). Console, timeout and API stay the caller's. cfg's strings
 * point into s: keep s until the VM is gone. -EINVAL for a device kind this
 * vmm lacks, with err.
 */
struct vm_config;
int vm_snapshot_config(const struct vm_snapshot *s, struct vm_config *cfg, char *err, size_t errlen) WUR;

/*
 * Phase two: put s into vm, made from s's configuration with its memory from
 * the memory file, before any vCPU ran. VM-wide state first, then each vCPU,
 * then each device's load hook. 0 or -errno with err; on error the VM must be
 * destroyed (part of it may hold the snapshot's state).
 */
int vm_snapshot_apply(struct vm *vm, struct vm_snapshot *s, char *err, size_t errlen) WUR;

#endif
