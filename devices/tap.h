/*
 * Linux tap devices for virtio-net: attach to (or create) a tap interface
 * with a virtio-net header in front of every frame, and switch its offloads.
 *
 * The fd is non-blocking and close-on-exec. Frames read from it start with
 * the vnet header the kernel fills; frames written to it must start with one.
 */
#ifndef DEVICES_TAP_H
#define DEVICES_TAP_H

#include <stdbool.h>
#include <stddef.h>

#include "vmm/util.h"

/* Offload bits of TUNSETOFFLOAD (linux/if_tun.h), repeated so callers need not include it. */
#define TAP_OFFLOAD_CSUM 0x01u
#define TAP_OFFLOAD_TSO4 0x02u
#define TAP_OFFLOAD_TSO6 0x04u
#define TAP_OFFLOAD_ECN  0x08u
#define TAP_OFFLOAD_UFO  0x10u

/*
 * Attach to the tap interface `name` (created, and brought up, when it does not
 * exist and we may create it), with IFF_VNET_HDR and a vnet header of
 * vnet_hdr_size bytes. On success returns the fd and sets *created; on
 * failure returns -errno and writes one line saying why into err.
 */
int tap_open(const char *name, int vnet_hdr_size, bool *created, char *err, size_t errlen) WUR;

/* TUNSETOFFLOAD with TAP_OFFLOAD_* bits. Returns 0 or -errno. */
int tap_set_offload(int fd, unsigned offloads) WUR;

/*
 * Which of `wanted` the kernel accepts: tries them all, then without UFO
 * (removed from some kernels). Leaves the offloads off. Returns the subset.
 */
unsigned tap_probe_offloads(int fd, unsigned wanted);

#endif
