/*
 * The snapshot state file: a flattened device tree (libfdt), so that
 * `dtc -I dtb -O dts state.dtb` shows it to a human.
 *
 *   / {
 *       magic = "vmm-snapshot";
 *       format-version = <1>;
 *       checksum = /bits/ 64 <CRC-64 of the whole blob, this value read as 0>;
 *       arch = "x86_64";
 *       vcpu@0 { version = <1>; regs.rax = /bits/ 64 <...>; ... };
 *       pit { version = <1>; ... };
 *       ...
 *   };
 *
 * One node per vCPU and per device, each with its own version. A node's
 * properties are its fields, described once (struct snap_desc) and used by
 * both snap_write() and snap_read(), so save and load cannot drift apart
 * (bhyve's SNAPSHOT_VAR_OR_LEAVE, as a table). Integers are big-endian, as
 * FDT cells are, at the width of the struct member: a u8 member is a 1-byte
 * property, a u64 member an 8-byte one.
 *
 * A snapshot is untrusted input. snap_reader_open() checks, before anything
 * is read: the size, fdt_check_full(), the magic, the format version and the
 * checksum, and that the blob ends where the file ends. snap_read() decodes a
 * node into a copy, checks every field (size, range, the node's version, no
 * unknown or duplicate property, then the struct's own cross-field check)
 * and only then copies it to the caller's struct: all or nothing. Every
 * failure is -EINVAL with one line naming the node and the field.
 */
#ifndef VMM_SNAPSHOT_FORMAT_H
#define VMM_SNAPSHOT_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/util.h"

#define SNAP_MAGIC          "vmm-snapshot"
#define SNAP_FORMAT_VERSION 1u
#define SNAP_ARCH           "x86_64"
/* A state file is a few hundred KiB at most (a vCPU is ~30 KiB); refuse anything absurd. */
#define SNAP_MAX_FILE       (64u * 1024 * 1024)
#define SNAP_ERR_LEN        256

enum snap_kind {
	SNAP_UINT,   /* one unsigned integer of 1, 2, 4 or 8 bytes */
	SNAP_ARRAY,  /* a fixed array of such integers: the property has all of them */
	SNAP_VARRAY, /* up to size/elem of them; how many is the uint32_t at count_off */
};

/* One field of a struct, as it appears in the file. */
struct snap_field {
	const char *name;    /* the property name: [a-z0-9,._+-] */
	size_t off;          /* offsetof() in the struct */
	uint32_t size;       /* bytes of the member in the struct */
	uint8_t kind;        /* enum snap_kind */
	uint8_t elem;        /* bytes per integer: == size for SNAP_UINT */
	uint32_t since;      /* the node version that added it: older nodes keep the default */
	size_t count_off;    /* SNAP_VARRAY: offsetof() its uint32_t element count */
	uint64_t min, max;   /* inclusive range of every integer */
};

/* One struct's layout in the file: the node's version and its fields. */
struct snap_desc {
	const char *name;           /* for messages and tests: "vcpu", "pit" */
	uint32_t version;           /* written; loads accept [min_version, version] */
	uint32_t min_version;
	size_t size;                /* sizeof the struct */
	const struct snap_field *fields;
	size_t nfields;
	/* Other properties the node may carry, read by the caller (strings); NULL-terminated, or NULL. */
	const char *const *extra;
	/*
	 * Checks between fields, after each field passed its own, on the decoded
	 * copy; NULL: none. Returns 0, or -EINVAL with a line in err naming the field.
	 */
	int (*check)(const void *obj, char *err, size_t errlen);
};

/* --- building the tables: one line per field ------------------------------------- */

#define SNAP_MEMBER_SIZE(T, m) sizeof(((T *)0)->m)
#define SNAP_MEMBER_ELEM(T, m) sizeof(((T *)0)->m[0])
#define SNAP_UMAX(bytes) (~0ULL >> (64 - 8 * (bytes)))  /* bytes: 1, 2, 4 or 8 */

/* An integer member named "name" in the file, with the range [lo, hi]. */
#define SNAP_UINT_NR(T, m, nm, lo, hi)                                                  \
	{ .name = (nm), .off = offsetof(T, m), .size = SNAP_MEMBER_SIZE(T, m),          \
	  .kind = SNAP_UINT, .elem = SNAP_MEMBER_SIZE(T, m), .min = (lo), .max = (hi) }
/* An integer member, named after its C member designator ("regs.rip"). */
#define SNAP_UINT_R(T, m, lo, hi) SNAP_UINT_NR(T, m, #m, lo, hi)
#define SNAP_UINT_N(T, m, nm) SNAP_UINT_NR(T, m, nm, 0, SNAP_UMAX(SNAP_MEMBER_SIZE(T, m)))
#define SNAP_U(T, m) SNAP_UINT_N(T, m, #m)
#define SNAP_BOOL(T, m) SNAP_UINT_R(T, m, 0, 1)
/* A fixed array of integers (a byte array when its elements are bytes). */
#define SNAP_ARRAY_N(T, m, nm)                                                          \
	{ .name = (nm), .off = offsetof(T, m), .size = SNAP_MEMBER_SIZE(T, m),          \
	  .kind = SNAP_ARRAY, .elem = SNAP_MEMBER_ELEM(T, m), .min = 0,                 \
	  .max = SNAP_UMAX(SNAP_MEMBER_ELEM(T, m)) }
#define SNAP_ARR(T, m) SNAP_ARRAY_N(T, m, #m)
/* An array of up to ARRAY_SIZE(m) integers; the uint32_t member cnt says how many. */
#define SNAP_VARRAY_N(T, m, cnt, nm)                                                    \
	{ .name = (nm), .off = offsetof(T, m), .size = SNAP_MEMBER_SIZE(T, m),          \
	  .kind = SNAP_VARRAY, .elem = SNAP_MEMBER_ELEM(T, m), .count_off = offsetof(T, cnt), \
	  .min = 0, .max = SNAP_UMAX(SNAP_MEMBER_ELEM(T, m)) }
#define SNAP_VARR(T, m, cnt) SNAP_VARRAY_N(T, m, cnt, #m)

#define SNAP_DESC(T, nm, ver, table, chk)                                               \
	{ .name = (nm), .version = (ver), .min_version = 1, .size = sizeof(T),          \
	  .fields = (table), .nfields = ARRAY_SIZE(table), .check = (chk) }

/*
 * Whether a description is well formed: names valid and unique, every field
 * inside the struct with a legal size, counts are uint32_t inside the struct,
 * min <= max. A bug if not (the unit tests check every table); err says why.
 */
bool snap_desc_valid(const struct snap_desc *d, char *err, size_t errlen);

/* --- writing ------------------------------------------------------------------------ */

struct snap_writer {
	void *fdt;      /* sequential-write tree, grown as needed */
	size_t cap;
	int err;        /* the first error: later calls do nothing and return it */
	unsigned depth; /* nodes open below the root */
	bool finished;
};

/* Start a state file: the root node with magic, format version, checksum slot and arch. */
int snap_writer_init(struct snap_writer *w) WUR;
void snap_writer_free(struct snap_writer *w);
/* Open a child of the current node ("vcpu@0"); close it with snap_end_node(). */
int snap_begin_node(struct snap_writer *w, const char *name) WUR;
int snap_end_node(struct snap_writer *w) WUR;
/* The current node's "version" and every field of obj as d describes them. */
int snap_write(struct snap_writer *w, const struct snap_desc *d, const void *obj) WUR;
/* One more property of the current node. */
int snap_write_prop(struct snap_writer *w, const char *name, const void *val, size_t len) WUR;
int snap_write_string(struct snap_writer *w, const char *name, const char *s) WUR;
int snap_write_u32(struct snap_writer *w, const char *name, uint32_t v) WUR;
int snap_write_u64(struct snap_writer *w, const char *name, uint64_t v) WUR;
/*
 * Close the root, pack the tree and fill in the checksum. *blob and *len stay
 * valid until snap_writer_free(). Every node must be closed.
 */
int snap_writer_finish(struct snap_writer *w, const void **blob, size_t *len) WUR;

/* --- reading ------------------------------------------------------------------------ */

struct snap_reader {
	void *fdt;                  /* our own aligned copy of the file */
	size_t len;
	char err[SNAP_ERR_LEN];     /* the last error: one line naming node and field */
};

/*
 * Check a whole state file before anything in it is used: size, structure
 * (fdt_check_full), nothing after the tree, magic, format version, checksum,
 * arch. The bytes are copied; buf may go afterwards. 0 or -EINVAL (-ENOMEM).
 */
int snap_reader_open(struct snap_reader *r, const void *buf, size_t len) WUR;

/*
 * Whether every tag of the (whole, version 17) device tree fdt of total
 * bytes lies inside its structure block and the walk reaches FDT_END: what
 * libfdt 1.6's fdt_check_full() needs first, or a property length near
 * 4 GiB makes it loop for ever. snap_reader_open() does it; so must anyone
 * else who hands untrusted bytes to fdt_check_full().
 */
bool snap_fdt_struct_walks(const void *fdt, size_t total) WUR;
void snap_reader_close(struct snap_reader *r);
/* The child `name` of node parent (0: the root): its offset, or -EINVAL "missing node". */
int snap_node(struct snap_reader *r, int parent, const char *name) WUR;
/* Whether node parent has a child called name (no error when not). */
bool snap_has_node(struct snap_reader *r, int parent, const char *name);
/*
 * Decode node into obj as d describes it. obj holds the defaults for fields
 * newer than the node's version; it is written only when every field and the
 * struct's check passed. 0 or -EINVAL.
 */
int snap_read(struct snap_reader *r, int node, const struct snap_desc *d, void *obj) WUR;
/* A NUL-terminated string property; *s points into the reader. */
int snap_read_string(struct snap_reader *r, int node, const char *name, const char **s) WUR;
int snap_read_u32(struct snap_reader *r, int node, const char *name, uint32_t *v) WUR;
int snap_read_u64(struct snap_reader *r, int node, const char *name, uint64_t *v) WUR;
/* A property of any length; *val points into the reader. */
int snap_read_blob(struct snap_reader *r, int node, const char *name, const void **val,
		   size_t *len) WUR;
/* Fail with a message of the caller's about node (prefixed with its path): returns -EINVAL. */
int snap_fail(struct snap_reader *r, int node, const char *fmt, ...) PRINTF_FMT(3, 4);

/* CRC-64/XZ (the ECMA-182 polynomial, reflected, as xz uses it); exposed for tests. */
uint64_t snap_crc64(uint64_t crc, const void *buf, size_t len);

#endif
