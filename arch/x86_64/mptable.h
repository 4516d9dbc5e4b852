/*
 * Intel MultiProcessor Specification 1.4 tables: the MP floating pointer
 * followed by the MP configuration table, describing the same platform as the
 * ACPI MADT (for guests booted with acpi=off, and for old kernels).
 */
#ifndef ARCH_X86_64_MPTABLE_H
#define ARCH_X86_64_MPTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "arch/x86_64/acpi.h"
#include "vmm/util.h"

/* Bytes the tables need for ncpus processors (floating pointer included). */
size_t mptable_size(unsigned ncpus);

/*
 * MP floating pointer + MP configuration table at gpa (16-byte aligned, the
 * whole table below 4 GiB); buf is the host view of [gpa, gpa+len). Linux
 * finds it by scanning 0xF0000-0xFFFFF (or the first KiB of the EBDA).
 * Returns 0, -EINVAL (bad platform or placement) or -ENOSPC.
 */
int mptable_build(const struct x86_platform *p, void *buf, size_t len, uint64_t gpa) WUR;

#endif
