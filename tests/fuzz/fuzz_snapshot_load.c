/*
 * libFuzzer harness for snapshot loading (vmm/snapshot/): the input is a
 * state file from anyone. It goes through vm_snapshot_parse() as it is, and,
 * when it is a well-formed tree with a checksum slot, once more with the
 * checksum made right, so mutations reach past the checksum into the nodes.
 * Then every root node whose name says what it is (vcpu@N, pit, ...) is
 * decoded alone with its table, so a small input exercises every field of
 * every table without needing a whole snapshot (a vCPU alone is ~10 KiB).
 *
 * Beyond ASan/UBSan: a parse that succeeds must describe a consistent VM
 * (vCPUs 1..254, page-aligned RAM, no more device states than devices).
 * Seeds: tests/fuzz/corpus/snapshot_load/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libfdt.h>

#include "vmm/snapshot/cpu.h"
#include "vmm/snapshot/format.h"
#include "vmm/snapshot/snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                      \
	do {                             \
		if (!(cond))             \
			__builtin_trap(); \
	} while (0)

static void parse(const void *buf, size_t len)
{
	struct vm_snapshot *s = NULL;
	char err[SNAP_ERR_LEN];

	err[0] = '\0';
	if (vm_snapshot_parse(buf, len, &s, err, sizeof(err)) == 0) {
		CHECK(s->cfg.ncpus >= 1 && s->cfg.ncpus <= 254);
		CHECK(s->cfg.mem_size % 4096 == 0);
		CHECK(s->nstates <= s->ndevices && s->ndevices <= SNAP_MAX_DEVICES);
		for (uint32_t i = 0; i < s->cfg.ncpus; i++)
			CHECK(s->vcpus[i].xsave_len >= SNAP_XSAVE_LEGACY &&
			      s->vcpus[i].xsave_len <= SNAP_XSAVE_MAX &&
			      s->vcpus[i].nmsrs <= SNAP_VCPU_MAX_MSRS);
		vm_snapshot_free(s);
	} else {
		CHECK(err[0] != '\0'); /* every refusal says why */
	}
}

/* Each root node decoded alone, by the table its name calls for. */
static void decode_nodes(const void *buf, size_t len)
{
	static const struct {
		const char *prefix;
		const struct snap_desc *desc;
		size_t size;
	} kinds[] = {
		{ "vcpu@", &snap_vcpu_desc, sizeof(struct snap_vcpu) },
		{ "pic-", &snap_pic_desc, sizeof(struct kvm_pic_state) },
		{ "ioapic", &snap_ioapic_desc, sizeof(struct kvm_ioapic_state) },
		{ "pit", &snap_pit_desc, sizeof(struct kvm_pit_state2) },
		{ "kvmclock", &snap_clock_desc, sizeof(struct kvm_clock_data) },
		{ "config", &snap_config_desc, sizeof(struct snap_config) },
	};
	struct snap_reader r;
	void *obj, *before;
	int node;

	if (snap_reader_open(&r, buf, len))
		return;
	obj = malloc(sizeof(struct snap_vcpu));
	before = malloc(sizeof(struct snap_vcpu));
	CHECK(obj && before);
	fdt_for_each_subnode(node, r.fdt, 0) {
		const char *name = fdt_get_name(r.fdt, node, NULL);

		for (size_t i = 0; name && i < sizeof(kinds) / sizeof(kinds[0]); i++) {
			if (strncmp(name, kinds[i].prefix, strlen(kinds[i].prefix)))
				continue;
			memset(obj, 0xa5, kinds[i].size);
			memcpy(before, obj, kinds[i].size);
			/* All or nothing: a refused node leaves the struct exactly as it was. */
			if (snap_read(&r, node, kinds[i].desc, obj))
				CHECK(memcmp(obj, before, kinds[i].size) == 0);
		}
	}
	free(obj);
	free(before);
	snap_reader_close(&r);
}

/* A copy of the input with its checksum recomputed, or NULL when it has no slot for one. */
static uint8_t *fix_checksum(const uint8_t *data, size_t size)
{
	static const uint8_t zero[8];
	const uint8_t *sum;
	uint8_t *copy;
	uint64_t crc;
	size_t off;
	int plen;

	if (size < sizeof(struct fdt_header))
		return NULL;
	copy = malloc(size);
	CHECK(copy);
	memcpy(copy, data, size);
	/* The reader's own order: libfdt only sees whole version-17 trees. */
	if (fdt_magic(copy) != FDT_MAGIC || fdt_totalsize(copy) != size || fdt_version(copy) != 17 ||
	    fdt_last_comp_version(copy) > 17 || !snap_fdt_struct_walks(copy, size) ||
	    fdt_check_full(copy, size) ||
	    !(sum = fdt_getprop(copy, 0, "checksum", &plen)) || plen != 8) {
		free(copy);
		return NULL;
	}
	off = (size_t)(sum - copy);
	crc = snap_crc64(0, copy, off);
	crc = snap_crc64(crc, zero, 8);
	crc = snap_crc64(crc, copy + off + 8, size - off - 8);
	for (int i = 0; i < 8; i++)
		copy[off + (size_t)i] = (uint8_t)(crc >> (56 - 8 * i));
	return copy;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *fixed;

	parse(data, size);
	fixed = fix_checksum(data, size);
	if (fixed) {
		parse(fixed, size);
		decode_nodes(fixed, size);
		free(fixed);
	}
	return 0;
}
