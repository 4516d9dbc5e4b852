/*
 * A small AML (ACPI Machine Language) encoder, enough to generate a DSDT.
 *
 * Every call appends to a caller-supplied byte buffer. Errors are sticky: the
 * first failure (-ENOSPC when the buffer is full, -EINVAL for a bad name,
 * string or nesting) is recorded, every later call is a no-op, and
 * aml_finish() reports it. Nothing is ever written past the buffer.
 *
 * Objects with a PkgLength (Scope, Device, Method, Package, Buffer) are
 * opened with aml_*_begin() and closed with aml_end(); the encoder inserts the
 * minimal PkgLength, a Package's NumElements (counted for you) and a
 * ResourceTemplate's BufferSize and EndTag when the object is closed.
 *
 *	aml_device_begin(a, "\\_SB.COM1");
 *	  aml_name_eisaid(a, "_HID", "PNP0501");
 *	  aml_name_begin(a, "_CRS");
 *	    aml_restemplate_begin(a);
 *	      aml_res_io(a, 0x3f8, 0x3f8, 0, 8);
 *	      aml_res_irq_noflags(a, 1u << 4);
 *	    aml_end(a);
 *	aml_end(a);
 *
 * Encodings follow ACPI 6.4, chapter 20 (AML) and section 6.4 (resources).
 */
#ifndef ARCH_X86_64_AML_H
#define ARCH_X86_64_AML_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/util.h"

/* AML opcodes used by the encoder (ACPI 6.4, 20.3). */
#define AML_ZERO_OP          0x00
#define AML_ONE_OP           0x01
#define AML_NAME_OP          0x08
#define AML_BYTE_PREFIX      0x0a
#define AML_WORD_PREFIX      0x0b
#define AML_DWORD_PREFIX     0x0c
#define AML_STRING_PREFIX    0x0d
#define AML_QWORD_PREFIX     0x0e
#define AML_SCOPE_OP         0x10
#define AML_BUFFER_OP        0x11
#define AML_PACKAGE_OP       0x12
#define AML_METHOD_OP        0x14
#define AML_DUAL_NAME_PREFIX 0x2e
#define AML_MULTI_NAME_PREFIX 0x2f
#define AML_EXT_OP_PREFIX    0x5b
#define AML_DEVICE_OP        0x82 /* after AML_EXT_OP_PREFIX */
#define AML_ROOT_CHAR        0x5c /* '\' */
#define AML_PARENT_CHAR      0x5e /* '^' */
#define AML_ARG0_OP          0x68
#define AML_LOCAL0_OP        0x60
#define AML_RETURN_OP        0xa4
#define AML_ONES_OP          0xff

#define AML_PKGLEN_MAX       0x0fffffffu /* 28 bits */
#define AML_MAX_DEPTH        16          /* nested open objects */

enum aml_kind {
	AML_KIND_SCOPE,
	AML_KIND_DEVICE,
	AML_KIND_METHOD,
	AML_KIND_PACKAGE,
	AML_KIND_RESTEMPLATE,
};

struct aml_open {
	size_t mark;        /* offset where the PkgLength goes */
	unsigned count;     /* elements so far (packages) */
	enum aml_kind kind;
};

struct aml {
	uint8_t *buf;
	size_t cap;
	size_t len;
	int err;            /* first error, 0 if none */
	unsigned depth;
	struct aml_open open[AML_MAX_DEPTH];
};

void aml_init(struct aml *a, void *buf, size_t cap);
/* 0 and *len = bytes written, or the first error (also for unclosed objects). */
int aml_finish(const struct aml *a, size_t *len) WUR;

/* Encode a PkgLength whose value (including its own bytes) is total: 1-4 bytes, or -EINVAL. */
int aml_pkglen_encode(uint8_t out[4], uint32_t total) WUR;
/* Encode "PNP0A08"-style ids (3 letters, 4 hex digits) as the 32-bit EISA id, or -EINVAL. */
int aml_eisaid_encode(const char *id, uint32_t *out) WUR;

/* Raw bytes (for opcodes the encoder lacks); not counted as a package element. */
void aml_bytes(struct aml *a, const void *p, size_t n);

/* Data objects; each counts as one element inside a Package. */
void aml_integer(struct aml *a, uint64_t v);      /* Zero, One or the smallest *Const */
void aml_string(struct aml *a, const char *s);    /* ASCII 0x01-0x7f */
void aml_eisaid(struct aml *a, const char *id);   /* DWordConst of the EISA id */
void aml_buffer(struct aml *a, const void *data, size_t n);
/* A NameString: "\\_SB.PCI0", "^PCI0.FOO", "_HID"; segments of 1-4 chars are padded with '_'. */
void aml_namestring(struct aml *a, const char *path);

/* Name (path, <data object>): the caller emits exactly one data object next. */
void aml_name_begin(struct aml *a, const char *path);
void aml_name_integer(struct aml *a, const char *path, uint64_t v);
void aml_name_string(struct aml *a, const char *path, const char *s);
void aml_name_eisaid(struct aml *a, const char *path, const char *id);

/* Objects closed by aml_end(). */
void aml_scope_begin(struct aml *a, const char *path);
void aml_device_begin(struct aml *a, const char *path);
void aml_method_begin(struct aml *a, const char *path, unsigned nargs, int serialized);
void aml_package_begin(struct aml *a);
void aml_restemplate_begin(struct aml *a); /* Buffer with resource descriptors + EndTag */
void aml_end(struct aml *a);

/* Return (<data object>): the caller emits the operand next. */
void aml_return(struct aml *a);

/* Resource descriptors (ACPI 6.4, 6.4.2 small and 6.4.3 large); only inside a ResourceTemplate. */
#define AML_RES_RW           1   /* Memory32Fixed / address space: read-write */
#define AML_RES_CACHEABLE    1   /* _MEM for DWord/QWordMemory */
#define AML_RES_NONCACHEABLE 0
void aml_res_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len);
void aml_res_irq_noflags(struct aml *a, uint16_t irq_mask);
void aml_res_memory32_fixed(struct aml *a, int rw, uint32_t base, uint32_t len);
/* Address space descriptors as a bus producer (bridge windows): MinFixed, MaxFixed, PosDecode. */
void aml_res_word_bus_number(struct aml *a, uint16_t min, uint16_t max);
void aml_res_word_io(struct aml *a, uint16_t min, uint16_t max);
void aml_res_dword_memory(struct aml *a, int cacheable, uint32_t min, uint32_t max);
void aml_res_qword_memory(struct aml *a, int cacheable, uint64_t min, uint64_t max);

#endif
