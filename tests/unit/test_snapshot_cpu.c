/*
 * vCPU and in-kernel device state for snapshots (vmm/snapshot/cpu.h): the
 * field tables cover the KVM structs, every struct survives the state file
 * unchanged, bad values are refused with their node and field, and, through
 * a fake KVM, capture and restore make the right ioctls in the right order
 * (MSRs KVM cannot read are dropped, MSRs it refuses are named, a different
 * TSC rate is scaled or refused before anything is applied).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "vmm/snapshot/cpu.h"

/* ---- helpers ------------------------------------------------------------------------ */

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64*: deterministic synthetic state */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

static void store(void *p, unsigned n, uint64_t v)
{
	uint8_t u8 = (uint8_t)v;
	uint16_t u16 = (uint16_t)v;
	uint32_t u32 = (uint32_t)v;

	switch (n) {
	case 1: memcpy(p, &u8, 1); break;
	case 2: memcpy(p, &u16, 2); break;
	case 4: memcpy(p, &u32, 4); break;
	default: memcpy(p, &v, 8); break;
	}
}

/*
 * Fill every described field of obj with random values inside its range
 * (arrays sharing a count get one count); bytes no field describes stay 0.
 */
static void fill(const struct snap_desc *d, void *obj, uint64_t seed)
{
	uint8_t *base = obj;
	uint64_t s = seed | 1;

	memset(obj, 0, d->size);
	for (size_t i = 0; i < d->nfields; i++) {
		const struct snap_field *f = &d->fields[i];
		size_t n = f->size / f->elem;
		uint32_t count;

		if (f->kind == SNAP_VARRAY) {
			bool shared = false;

			for (size_t j = 0; j < i; j++)
				shared |= d->fields[j].kind == SNAP_VARRAY &&
					  d->fields[j].count_off == f->count_off;
			if (!shared) {
				count = (uint32_t)(rng_next(&s) % (n + 1));
				memcpy(base + f->count_off, &count, sizeof(count));
			}
			memcpy(&count, base + f->count_off, sizeof(count));
			n = count;
		}
		for (size_t k = 0; k < n; k++) {
			uint64_t span = f->max - f->min, v = rng_next(&s);

			v = span == UINT64_MAX ? v : f->min + v % (span + 1);
			store(base + f->off + k * f->elem, f->elem, v);
		}
	}
}

/* Bytes of [off, off + len) of d's struct that no field describes. */
static size_t uncovered(const struct snap_desc *d, size_t off, size_t len)
{
	size_t n = 0;

	for (size_t b = off; b < off + len; b++) {
		bool hit = false;

		for (size_t i = 0; i < d->nfields && !hit; i++)
			hit = b >= d->fields[i].off && b < d->fields[i].off + d->fields[i].size;
		n += !hit;
	}
	return n;
}

static void *write_vcpus(const struct snap_vcpu *s, unsigned n, size_t *len)
{
	struct snap_writer w;
	const void *blob;
	void *copy;

	assert_int_equal(snap_writer_init(&w), 0);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(snap_vcpu_write(&w, i, &s[i]), 0);
	assert_int_equal(snap_writer_finish(&w, &blob, len), 0);
	copy = malloc(*len);
	memcpy(copy, blob, *len);
	snap_writer_free(&w);
	return copy;
}

static void *write_vm(const struct snap_kvm_vm *s, size_t *len)
{
	struct snap_writer w;
	const void *blob;
	void *copy;

	assert_int_equal(snap_writer_init(&w), 0);
	assert_int_equal(snap_kvm_vm_write(&w, s), 0);
	assert_int_equal(snap_writer_finish(&w, &blob, len), 0);
	copy = malloc(*len);
	memcpy(copy, blob, *len);
	snap_writer_free(&w);
	return copy;
}

static void assert_err_has(const char *err, const char *what)
{
	if (!strstr(err, what))
		fail_msg("error \"%s\" does not mention \"%s\"", err, what);
}

/* Make a random vCPU satisfy the cross-field rules. */
static void vcpu_plausible(struct snap_vcpu *s)
{
	s->xsave_len = SNAP_XSAVE_LEGACY + 64 * (s->xsave_len % 8);
	memset(s->xsave + s->xsave_len, 0, SNAP_XSAVE_MAX - s->xsave_len);
	if (s->ncpuid == 0)
		s->ncpuid = 1;
}

static void vm_plausible(struct snap_kvm_vm *s)
{
	for (int i = 0; i < 3; i++) {
		s->pit.channels[i].mode %= 6;
		s->pit.channels[i].count_load_time &= INT64_MAX;
	}
}

/* ---- field tables ------------------------------------------------------------------- */

static void test_tables_are_well_formed(void **state)
{
	const struct snap_desc *all[] = { &snap_vcpu_desc, &snap_pic_desc, &snap_ioapic_desc,
					  &snap_pit_desc, &snap_clock_desc };
	char err[128];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(all); i++)
		if (!snap_desc_valid(all[i], err, sizeof(err)))
			fail_msg("%s", err);
}

static void test_tables_cover_the_kvm_structs(void **state)
{
	(void)state;
	/* Every register; sregs but its padding (a byte per segment, 3 u16 per table). */
	assert_int_equal(uncovered(&snap_vcpu_desc, offsetof(struct snap_vcpu, regs),
				   sizeof(struct kvm_regs)), 0);
	assert_int_equal(uncovered(&snap_vcpu_desc, offsetof(struct snap_vcpu, sregs),
				   sizeof(struct kvm_sregs)), 8 + 2 * 6);
	/* Events but nmi.pad and reserved[26]; debug registers but reserved[9]. */
	assert_int_equal(uncovered(&snap_vcpu_desc, offsetof(struct snap_vcpu, events),
				   sizeof(struct kvm_vcpu_events)), 1 + 26);
	assert_int_equal(uncovered(&snap_vcpu_desc, offsetof(struct snap_vcpu, debugregs),
				   sizeof(struct kvm_debugregs)), 9 * 8);
	assert_int_equal(uncovered(&snap_vcpu_desc, offsetof(struct snap_vcpu, lapic),
				   sizeof(struct kvm_lapic_state)), 0);
	assert_int_equal(uncovered(&snap_pic_desc, 0, sizeof(struct kvm_pic_state)), 0);
	/* The IOAPIC but its pad word; the PIT but reserved[9]. */
	assert_int_equal(uncovered(&snap_ioapic_desc, 0, sizeof(struct kvm_ioapic_state)), 4);
	assert_int_equal(uncovered(&snap_pit_desc, 0, sizeof(struct kvm_pit_state2)),
			 9 * 4 + 3 * (sizeof(struct kvm_pit_channel_state) - 24));
}

/* ---- round trips -------------------------------------------------------------------- */

static void test_vcpu_round_trip(void **state)
{
	struct snap_vcpu *in = calloc(3, sizeof(*in)), *out = calloc(1, sizeof(*out));
	struct snap_reader r;
	size_t len;
	void *blob;

	(void)state;
	for (unsigned i = 0; i < 3; i++) {
		fill(&snap_vcpu_desc, &in[i], 0x1234 + i);
		vcpu_plausible(&in[i]);
	}
	blob = write_vcpus(in, 3, &len);
	assert_int_equal(snap_reader_open(&r, blob, len), 0);
	for (unsigned i = 0; i < 3; i++) {
		memset(out, 0, sizeof(*out));
		assert_int_equal(snap_vcpu_read(&r, i, out), 0);
		assert_memory_equal(&in[i], out, sizeof(*out));
	}
	assert_int_equal(snap_vcpu_read(&r, 3, out), -EINVAL);
	assert_err_has(r.err, "missing node vcpu@3");
	snap_reader_close(&r);
	free(blob);
	free(in);
	free(out);
}

static void test_vcpu_round_trip_at_the_limits(void **state)
{
	struct snap_vcpu *in = calloc(1, sizeof(*in)), *out = calloc(1, sizeof(*out));
	struct snap_reader r;
	size_t len;
	void *blob;

	(void)state;
	fill(&snap_vcpu_desc, in, 99);
	in->nmsrs = SNAP_VCPU_MAX_MSRS;
	in->ncpuid = SNAP_VCPU_MAX_CPUID;
	in->nxcrs = KVM_MAX_XCRS;
	in->xsave_len = SNAP_XSAVE_MAX;
	for (unsigned i = 0; i < SNAP_XSAVE_MAX; i++)
		in->xsave[i] = (uint8_t)(i * 13);
	for (unsigned i = 0; i < SNAP_VCPU_MAX_MSRS; i++) {
		in->msr_index[i] = 0xc0000000u + i;
		in->msr_data[i] = ~(uint64_t)i;
	}
	blob = write_vcpus(in, 1, &len);
	assert_int_equal(snap_reader_open(&r, blob, len), 0);
	assert_int_equal(snap_vcpu_read(&r, 0, out), 0);
	assert_memory_equal(in, out, sizeof(*out));
	snap_reader_close(&r);
	free(blob);
	free(in);
	free(out);
}

static void test_vm_devices_round_trip(void **state)
{
	struct snap_kvm_vm in, out;
	struct snap_reader r;
	size_t len;
	void *blob;

	(void)state;
	fill(&snap_pic_desc, &in.pic[0], 1);
	fill(&snap_pic_desc, &in.pic[1], 2);
	fill(&snap_ioapic_desc, &in.ioapic, 3);
	fill(&snap_pit_desc, &in.pit, 4);
	fill(&snap_clock_desc, &in.clock, 5);
	vm_plausible(&in);
	in.pit.channels[1].mode = 0xff; /* a channel never programmed */
	blob = write_vm(&in, &len);
	memset(&out, 0, sizeof(out));
	assert_int_equal(snap_reader_open(&r, blob, len), 0);
	assert_int_equal(snap_kvm_vm_read(&r, &out), 0);
	assert_memory_equal(&in, &out, sizeof(in));
	snap_reader_close(&r);
	free(blob);
}

/* ---- bad values ---------------------------------------------------------------------- */

/* Write s as vcpu@0 and expect its load to fail naming `what`, leaving out as it was. */
static void expect_bad_vcpu(const struct snap_vcpu *s, const char *what)
{
	struct snap_vcpu *out = malloc(sizeof(*out)), *before = malloc(sizeof(*before));
	struct snap_reader r;
	size_t len;
	void *blob = write_vcpus(s, 1, &len);

	memset(out, 0x5a, sizeof(*out));
	memcpy(before, out, sizeof(*out));
	assert_int_equal(snap_reader_open(&r, blob, len), 0);
	assert_int_equal(snap_vcpu_read(&r, 0, out), -EINVAL);
	assert_err_has(r.err, what);
	assert_memory_equal(out, before, sizeof(*out));
	snap_reader_close(&r);
	free(blob);
	free(out);
	free(before);
}

static void test_bad_vcpu_values_are_named(void **state)
{
	struct snap_vcpu *s = malloc(sizeof(*s));

	(void)state;
	fill(&snap_vcpu_desc, s, 7);
	vcpu_plausible(s);
	s->mp.mp_state = 7;
	expect_bad_vcpu(s, "/vcpu@0: mp.mp_state: 0x7 is out of range [0, 0x4]");
	s->mp.mp_state = 0;
	s->regs.rflags = 1ULL << 63;
	expect_bad_vcpu(s, "/vcpu@0: regs.rflags: 0x8000000000000000 is out of range");
	s->regs.rflags = 2;
	s->sregs.cs.dpl = 4;
	expect_bad_vcpu(s, "sregs.cs.dpl");
	s->sregs.cs.dpl = 0;
	s->events.exception.nr = 32;
	expect_bad_vcpu(s, "events.exception.nr");
	s->events.exception.nr = 14;
	s->xsave_len = 100;
	expect_bad_vcpu(s, "/vcpu@0: xsave: 100 bytes");
	s->xsave_len = SNAP_XSAVE_LEGACY;
	s->ncpuid = 0;
	expect_bad_vcpu(s, "no CPUID entries");
	s->ncpuid = 3;
	s->tsc_khz = 0;
	expect_bad_vcpu(s, "tsc_khz");
	free(s);
}

static void test_vm_devices_load_all_or_nothing(void **state)
{
	struct snap_kvm_vm in, out, before;
	struct snap_reader r;
	size_t len;
	void *blob;

	(void)state;
	fill(&snap_pic_desc, &in.pic[0], 1);
	fill(&snap_pic_desc, &in.pic[1], 2);
	fill(&snap_ioapic_desc, &in.ioapic, 3);
	fill(&snap_pit_desc, &in.pit, 4);
	fill(&snap_clock_desc, &in.clock, 5);
	vm_plausible(&in);
	in.pit.channels[0].count = 0x10001; /* the PIT node is bad; the PICs before it are good */
	blob = write_vm(&in, &len);
	memset(&out, 0x33, sizeof(out));
	before = out;
	assert_int_equal(snap_reader_open(&r, blob, len), 0);
	assert_int_equal(snap_kvm_vm_read(&r, &out), -EINVAL);
	assert_err_has(r.err, "/pit: ch0.count: 0x10001 is out of range");
	assert_memory_equal(&out, &before, sizeof(out));
	snap_reader_close(&r);
	free(blob);

	in.pit.channels[0].count = 0;
	in.pit.channels[2].mode = 6;
	blob = write_vm(&in, &len);
	assert_int_equal(snap_reader_open(&r, blob, len), 0);
	assert_int_equal(snap_kvm_vm_read(&r, &out), -EINVAL);
	assert_err_has(r.err, "/pit: ch2.mode: 6 is no 8254 mode");
	assert_memory_equal(&out, &before, sizeof(out));
	snap_reader_close(&r);
	free(blob);
}

/* ---- a fake KVM ---------------------------------------------------------------------- */

#define FK_KVM   100
#define FK_VM    101   /* capture from */
#define FK_VM2   102   /* restore into */
#define FK_SRC   200
#define FK_DST   201
#define FK_NMSR  6
#define FK_NCPUID 3

static const uint32_t fk_msrs[FK_NMSR] = { 0x10, 0x174, 0x6e0, 0xc0000080, 0xc0000102,
					   0x4b564d01 };

struct fake_vcpu {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_debugregs dbg;
	struct kvm_vcpu_events ev;
	struct kvm_mp_state mp;
	struct kvm_lapic_state lapic;
	struct kvm_xcrs xcrs;
	uint8_t xsave[8192];
	uint32_t ncpuid;
	struct kvm_cpuid_entry2 cpuid[FK_NCPUID];
	uint32_t tsc_khz;
	uint64_t msr[FK_NMSR];
	bool msr_unreadable[FK_NMSR];
	bool msr_refused[FK_NMSR];
};

struct fake_vm {
	struct kvm_pic_state pic[2];
	struct kvm_ioapic_state ioapic;
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
};

static struct {
	struct fake_vcpu v[2]; /* FK_SRC, FK_DST */
	struct fake_vm vm[2];  /* FK_VM, FK_VM2 */
	int xsave2;            /* KVM_CAP_XSAVE2's answer: 0 (none) or a size */
	bool tsc_scaling;
	unsigned long log[64]; /* requests on FK_DST, in order */
	unsigned nlog;
	unsigned get_msrs_calls;
	struct kvm_run run;    /* FK_SRC's */
	unsigned run_completed_io;
} fk;

static int fk_err(int e)
{
	errno = e;
	return -1;
}

static int fk_msr_slot(uint32_t index)
{
	for (int i = 0; i < FK_NMSR; i++)
		if (fk_msrs[i] == index)
			return i;
	return -1;
}

static int fk_vcpu(struct fake_vcpu *v, unsigned long req, void *arg)
{
	size_t xlen = fk.xsave2 > 4096 ? (size_t)fk.xsave2 : 4096;

	switch (req) {
	case KVM_GET_REGS: memcpy(arg, &v->regs, sizeof(v->regs)); return 0;
	case KVM_SET_REGS: memcpy(&v->regs, arg, sizeof(v->regs)); return 0;
	case KVM_GET_SREGS: memcpy(arg, &v->sregs, sizeof(v->sregs)); return 0;
	case KVM_SET_SREGS: memcpy(&v->sregs, arg, sizeof(v->sregs)); return 0;
	case KVM_GET_DEBUGREGS: memcpy(arg, &v->dbg, sizeof(v->dbg)); return 0;
	case KVM_SET_DEBUGREGS: memcpy(&v->dbg, arg, sizeof(v->dbg)); return 0;
	case KVM_GET_VCPU_EVENTS: memcpy(arg, &v->ev, sizeof(v->ev)); return 0;
	case KVM_SET_VCPU_EVENTS: memcpy(&v->ev, arg, sizeof(v->ev)); return 0;
	case KVM_GET_MP_STATE: memcpy(arg, &v->mp, sizeof(v->mp)); return 0;
	case KVM_SET_MP_STATE: memcpy(&v->mp, arg, sizeof(v->mp)); return 0;
	case KVM_GET_LAPIC: memcpy(arg, &v->lapic, sizeof(v->lapic)); return 0;
	case KVM_SET_LAPIC: memcpy(&v->lapic, arg, sizeof(v->lapic)); return 0;
	case KVM_GET_XCRS: memcpy(arg, &v->xcrs, sizeof(v->xcrs)); return 0;
	case KVM_SET_XCRS: memcpy(&v->xcrs, arg, sizeof(v->xcrs)); return 0;
	case KVM_GET_XSAVE: memcpy(arg, v->xsave, 4096); return 0;
	case KVM_GET_XSAVE2:
		if (!fk.xsave2)
			return fk_err(EINVAL);
		memcpy(arg, v->xsave, xlen);
		return 0;
	case KVM_SET_XSAVE: memcpy(v->xsave, arg, xlen); return 0; /* KVM reads the CAP_XSAVE2 size */
	case KVM_GET_TSC_KHZ: return (int)v->tsc_khz;
	case KVM_SET_TSC_KHZ:
		if (!fk.tsc_scaling)
			return fk_err(ENOTSUP);
		v->tsc_khz = (uint32_t)(uintptr_t)arg;
		return 0;
	case KVM_GET_CPUID2: {
		struct kvm_cpuid2 *c = arg;

		if (c->nent < v->ncpuid)
			return fk_err(E2BIG);
		c->nent = v->ncpuid;
		memcpy(c->entries, v->cpuid, v->ncpuid * sizeof(v->cpuid[0]));
		return 0;
	}
	case KVM_SET_CPUID2: {
		struct kvm_cpuid2 *c = arg;

		if (c->nent > FK_NCPUID)
			return fk_err(E2BIG);
		v->ncpuid = c->nent;
		memcpy(v->cpuid, c->entries, c->nent * sizeof(v->cpuid[0]));
		return 0;
	}
	case KVM_GET_MSRS:
	case KVM_SET_MSRS: {
		struct kvm_msrs *m = arg;
		uint32_t i;

		fk.get_msrs_calls += req == KVM_GET_MSRS;
		/* As KVM's __msr_io(): stop at the first MSR that fails, return how many went. */
		for (i = 0; i < m->nmsrs; i++) {
			int slot = fk_msr_slot(m->entries[i].index);

			if (slot < 0)
				break;
			if (req == KVM_GET_MSRS) {
				if (v->msr_unreadable[slot])
					break;
				m->entries[i].data = v->msr[slot];
			} else {
				if (v->msr_refused[slot])
					break;
				v->msr[slot] = m->entries[i].data;
			}
		}
		return (int)i;
	}
	default:
		return fk_err(ENOTTY);
	}
}

static int fk_vm(struct fake_vm *vm, unsigned long req, void *arg)
{
	struct kvm_irqchip *chip = arg;

	switch (req) {
	case KVM_CHECK_EXTENSION:
		return (uintptr_t)arg == KVM_CAP_XSAVE2 ? fk.xsave2 : 0;
	case KVM_GET_IRQCHIP:
		if (chip->chip_id == KVM_IRQCHIP_IOAPIC)
			chip->chip.ioapic = vm->ioapic;
		else if (chip->chip_id < 2)
			chip->chip.pic = vm->pic[chip->chip_id];
		else
			return fk_err(EINVAL);
		return 0;
	case KVM_SET_IRQCHIP:
		if (chip->chip_id == KVM_IRQCHIP_IOAPIC)
			vm->ioapic = chip->chip.ioapic;
		else if (chip->chip_id < 2)
			vm->pic[chip->chip_id] = chip->chip.pic;
		else
			return fk_err(EINVAL);
		return 0;
	case KVM_GET_PIT2: memcpy(arg, &vm->pit, sizeof(vm->pit)); return 0;
	case KVM_SET_PIT2: memcpy(&vm->pit, arg, sizeof(vm->pit)); return 0;
	case KVM_GET_CLOCK: memcpy(arg, &vm->clock, sizeof(vm->clock)); return 0;
	case KVM_SET_CLOCK: {
		const struct kvm_clock_data *c = arg;

		if (c->flags & ~(uint32_t)KVM_CLOCK_REALTIME)
			return fk_err(EINVAL); /* as KVM since 5.16 */
		vm->clock = *c;
		return 0;
	}
	default:
		return fk_err(ENOTTY);
	}
}

static int fake_ioctl(int fd, unsigned long req, void *arg)
{
	switch (fd) {
	case FK_KVM:
		if (req == KVM_GET_MSR_INDEX_LIST) {
			struct kvm_msr_list *l = arg;
			uint32_t room = l->nmsrs;

			l->nmsrs = FK_NMSR;
			if (room < FK_NMSR)
				return fk_err(E2BIG);
			memcpy(l->indices, fk_msrs, sizeof(fk_msrs));
			return 0;
		}
		return fk_err(ENOTTY);
	case FK_VM: return fk_vm(&fk.vm[0], req, arg);
	case FK_VM2: return fk_vm(&fk.vm[1], req, arg);
	case FK_SRC:
		if (req == KVM_RUN) {
			/* KVM completes the pending I/O, then sees immediate_exit. */
			fk.run_completed_io += fk.run.immediate_exit == 1;
			return fk_err(EINTR);
		}
		return fk_vcpu(&fk.v[0], req, arg);
	case FK_DST:
		if (fk.nlog < ARRAY_SIZE(fk.log))
			fk.log[fk.nlog++] = req;
		return fk_vcpu(&fk.v[1], req, arg);
	default:
		return fk_err(EBADF);
	}
}

static void fake_vcpu_fill(struct fake_vcpu *v, uint64_t seed)
{
	uint64_t s = seed | 1;
	uint8_t *p;

	memset(v, 0, sizeof(*v));
	/* Registers and friends as raw random bytes, then what KVM would never report fixed up. */
	p = (uint8_t *)&v->regs;
	for (size_t i = 0; i < sizeof(v->regs); i++)
		p[i] = (uint8_t)rng_next(&s);
	v->regs.rflags = 0x246;
	v->sregs.cr0 = 0x80050033;
	v->sregs.cr3 = rng_next(&s) & ~0xfffULL;
	v->sregs.cr4 = 0x3606f0;
	v->sregs.efer = 0xd01;
	v->sregs.apic_base = 0xfee00900;
	v->sregs.cs.selector = 0x10;
	v->sregs.cs.type = 11;
	v->sregs.cs.present = v->sregs.cs.s = v->sregs.cs.l = v->sregs.cs.g = 1;
	v->sregs.cs.limit = 0xffffffff;
	v->sregs.tr.type = 11;
	v->sregs.tr.present = 1;
	v->sregs.gdt.base = 0xfffffe0000001000ULL;
	v->sregs.gdt.limit = 0x7f;
	v->sregs.interrupt_bitmap[1] = 1ULL << 3;
	v->dbg.dr6 = 0xffff0ff0;
	v->dbg.dr7 = 0x400;
	v->ev.exception.injected = 1;
	v->ev.exception.nr = 14;
	v->ev.exception.has_error_code = 1;
	v->ev.exception.error_code = 2;
	v->ev.interrupt.shadow = 1;
	v->ev.nmi.masked = 1;
	v->ev.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW;
	v->mp.mp_state = KVM_MP_STATE_HALTED;
	for (size_t i = 0; i < sizeof(v->lapic.regs); i++)
		v->lapic.regs[i] = (char)rng_next(&s);
	v->xcrs.nr_xcrs = 1;
	v->xcrs.xcrs[0].xcr = 0;
	v->xcrs.xcrs[0].value = 0x7;
	for (size_t i = 0; i < sizeof(v->xsave); i++)
		v->xsave[i] = (uint8_t)rng_next(&s);
	v->ncpuid = FK_NCPUID;
	for (unsigned i = 0; i < FK_NCPUID; i++) {
		v->cpuid[i].function = i;
		v->cpuid[i].eax = (uint32_t)rng_next(&s);
		v->cpuid[i].edx = (uint32_t)rng_next(&s);
	}
	v->tsc_khz = 2995200;
	for (int i = 0; i < FK_NMSR; i++)
		v->msr[i] = rng_next(&s);
}

static int fake_setup(void **state)
{
	(void)state;
	memset(&fk, 0, sizeof(fk));
	fake_vcpu_fill(&fk.v[0], 11);
	memset(&fk.v[1], 0, sizeof(fk.v[1]));
	fk.v[1].tsc_khz = fk.v[0].tsc_khz;
	fk.v[1].ncpuid = 0;
	snap_cpu_set_ioctl(fake_ioctl);
	return 0;
}

static int fake_teardown(void **state)
{
	(void)state;
	snap_cpu_set_ioctl(NULL);
	return 0;
}

static const struct snap_kvm_fds fk_src_fds = { .kvm_fd = FK_KVM, .vm_fd = FK_VM };
static const struct snap_kvm_fds fk_dst_fds = { .kvm_fd = FK_KVM, .vm_fd = FK_VM2 };

/* Capture FK_SRC, pass it through a state file, and return what was read back. */
static struct snap_vcpu *capture_through_file(void)
{
	struct snap_vcpu *s = malloc(sizeof(*s)), *back = calloc(1, sizeof(*back));
	struct snap_reader r;
	char err[256] = "";
	size_t len;
	void *blob;

	assert_int_equal(snap_vcpu_capture(&fk_src_fds, FK_SRC, s, err, sizeof(err)), 0);
	blob = write_vcpus(s, 1, &len);
	assert_int_equal(snap_reader_open(&r, blob, len), 0);
	assert_int_equal(snap_vcpu_read(&r, 0, back), 0);
	assert_memory_equal(s, back, sizeof(*s));
	snap_reader_close(&r);
	free(blob);
	free(s);
	return back;
}

static int log_pos(unsigned long req)
{
	for (unsigned i = 0; i < fk.nlog; i++)
		if (fk.log[i] == req)
			return (int)i;
	return -1;
}

static void test_capture_restore_through_a_file(void **state)
{
	struct fake_vcpu *src = &fk.v[0], *dst = &fk.v[1];
	struct snap_vcpu *s;
	char err[256] = "";

	(void)state;
	s = capture_through_file();
	assert_int_equal(s->nmsrs, FK_NMSR);
	assert_int_equal(s->xsave_len, 4096);
	assert_int_equal(snap_vcpu_restore(&fk_dst_fds, FK_DST, s, err, sizeof(err)), 0);

	assert_memory_equal(&dst->regs, &src->regs, sizeof(src->regs));
	assert_memory_equal(&dst->sregs, &src->sregs, sizeof(src->sregs));
	assert_memory_equal(&dst->dbg, &src->dbg, sizeof(src->dbg));
	assert_memory_equal(&dst->ev, &src->ev, sizeof(src->ev));
	assert_memory_equal(&dst->mp, &src->mp, sizeof(src->mp));
	assert_memory_equal(&dst->lapic, &src->lapic, sizeof(src->lapic));
	assert_memory_equal(&dst->xcrs, &src->xcrs, sizeof(src->xcrs));
	assert_memory_equal(dst->xsave, src->xsave, 4096);
	assert_int_equal(dst->ncpuid, FK_NCPUID);
	assert_memory_equal(dst->cpuid, src->cpuid, sizeof(src->cpuid));
	assert_memory_equal(dst->msr, src->msr, sizeof(src->msr));
	free(s);
}

static void test_restore_order(void **state)
{
	struct snap_vcpu *s;
	char err[256] = "";
	static const unsigned long want[] = {
		KVM_GET_TSC_KHZ, KVM_SET_CPUID2, KVM_SET_MP_STATE, KVM_SET_REGS, KVM_SET_SREGS,
		KVM_SET_XSAVE, KVM_SET_XCRS, KVM_SET_DEBUGREGS, KVM_SET_LAPIC, KVM_SET_MSRS,
		KVM_SET_VCPU_EVENTS,
	};

	(void)state;
	s = capture_through_file();
	assert_int_equal(snap_vcpu_restore(&fk_dst_fds, FK_DST, s, err, sizeof(err)), 0);
	assert_int_equal(fk.nlog, ARRAY_SIZE(want));
	for (unsigned i = 0; i < ARRAY_SIZE(want); i++)
		assert_true(fk.log[i] == want[i]);
	/* The rules behind it, spelled out. */
	assert_true(log_pos(KVM_SET_REGS) < log_pos(KVM_SET_VCPU_EVENTS));
	assert_true(log_pos(KVM_SET_SREGS) < log_pos(KVM_SET_LAPIC));
	assert_true(log_pos(KVM_SET_LAPIC) < log_pos(KVM_SET_MSRS));
	assert_int_equal(log_pos(KVM_SET_VCPU_EVENTS), (int)fk.nlog - 1);
	free(s);
}

static void test_unreadable_msr_is_dropped(void **state)
{
	struct snap_vcpu *s;

	(void)state;
	fk.v[0].msr_unreadable[2] = true; /* 0x6e0 */
	s = capture_through_file();
	assert_int_equal(s->nmsrs, FK_NMSR - 1);
	for (uint32_t i = 0; i < s->nmsrs; i++) {
		int slot = fk_msr_slot(s->msr_index[i]);

		assert_int_not_equal(s->msr_index[i], 0x6e0);
		assert_true(slot >= 0);
		assert_true(s->msr_data[i] == fk.v[0].msr[slot]);
	}
	/* One call up to the bad MSR, one for the rest: not one per MSR. */
	assert_int_equal(fk.get_msrs_calls, 2);
	free(s);
}

static void test_refused_msr_is_named(void **state)
{
	struct snap_vcpu *s;
	char err[256] = "";

	(void)state;
	s = capture_through_file();
	fk.v[1].msr_refused[2] = true;
	assert_int_equal(snap_vcpu_restore(&fk_dst_fds, FK_DST, s, err, sizeof(err)), -EINVAL);
	assert_err_has(err, "KVM_SET_MSRS: this host refuses MSR 0x6e0");
	/* Nothing after it ran: the events are not set on a half-restored vCPU. */
	assert_int_equal(log_pos(KVM_SET_VCPU_EVENTS), -1);
	free(s);
}

static void test_other_tsc_rate_is_scaled_or_refused(void **state)
{
	struct snap_vcpu *s;
	char err[256] = "";

	(void)state;
	s = capture_through_file();
	fk.v[1].tsc_khz = 3600000;
	fk.tsc_scaling = false;
	assert_int_equal(snap_vcpu_restore(&fk_dst_fds, FK_DST, s, err, sizeof(err)), -ENOTSUP);
	assert_err_has(err, "TSC ran at 2995200 kHz, this host's at 3600000 kHz");
	/* Refused before any state went in. */
	assert_int_equal(log_pos(KVM_SET_CPUID2), -1);
	assert_int_equal(log_pos(KVM_SET_REGS), -1);

	fk.nlog = 0;
	fk.tsc_scaling = true;
	assert_int_equal(snap_vcpu_restore(&fk_dst_fds, FK_DST, s, err, sizeof(err)), 0);
	assert_int_equal(fk.v[1].tsc_khz, 2995200);
	assert_true(log_pos(KVM_SET_TSC_KHZ) < log_pos(KVM_SET_MSRS));
	free(s);
}

static void test_xsave2_areas(void **state)
{
	struct snap_vcpu *s;
	char err[256] = "";

	(void)state;
	/* A host with a larger XSAVE area (AMX): KVM_GET_XSAVE2 and all of it. */
	fk.xsave2 = 8192;
	s = capture_through_file();
	assert_int_equal(s->xsave_len, 8192);
	assert_memory_equal(s->xsave, fk.v[0].xsave, 8192);
	assert_int_equal(snap_vcpu_restore(&fk_dst_fds, FK_DST, s, err, sizeof(err)), 0);
	assert_memory_equal(fk.v[1].xsave, fk.v[0].xsave, 8192);
	free(s);

	/* A 4 KiB snapshot into that host: the rest reaches KVM as zeros. */
	fk.xsave2 = 0;
	s = capture_through_file();
	fk.xsave2 = 8192;
	memset(fk.v[1].xsave, 0xff, sizeof(fk.v[1].xsave));
	assert_int_equal(snap_vcpu_restore(&fk_dst_fds, FK_DST, s, err, sizeof(err)), 0);
	assert_memory_equal(fk.v[1].xsave, fk.v[0].xsave, 4096);
	for (int i = 4096; i < 8192; i++)
		assert_int_equal(fk.v[1].xsave[i], 0);
	free(s);
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void test_vm_devices_capture_restore(void **state)
{
	struct snap_kvm_vm s, back;
	struct snap_reader r;
	char err[256] = "";
	size_t len;
	void *blob;
	int64_t t0;

	(void)state;
	fill(&snap_pic_desc, &fk.vm[0].pic[0], 1);
	fill(&snap_pic_desc, &fk.vm[0].pic[1], 2);
	fill(&snap_ioapic_desc, &fk.vm[0].ioapic, 3);
	fill(&snap_pit_desc, &fk.vm[0].pit, 4);
	fk.vm[0].clock.clock = 123456789;
	fk.vm[0].clock.flags = KVM_CLOCK_TSC_STABLE;
	fk.vm[0].clock.host_tsc = 42;
	t0 = now_ns();
	for (int i = 0; i < 3; i++) {
		fk.vm[0].pit.channels[i].mode = (uint8_t)i;
		fk.vm[0].pit.channels[i].count_load_time = t0 - 5000000; /* loaded 5 ms ago */
	}
	assert_int_equal(snap_kvm_vm_capture(&fk_src_fds, &s, err, sizeof(err)), 0);
	for (int i = 0; i < 3; i++) {
		assert_true(s.pit.channels[i].count_load_time >= 5000000);
		assert_true(s.pit.channels[i].count_load_time < 5000000 + 1000000000LL);
	}
	assert_true(s.clock.host_tsc == 0);
	blob = write_vm(&s, &len);
	memset(&back, 0, sizeof(back));
	assert_int_equal(snap_reader_open(&r, blob, len), 0);
	assert_int_equal(snap_kvm_vm_read(&r, &back), 0);
	assert_memory_equal(&s, &back, sizeof(s));
	snap_reader_close(&r);
	free(blob);

	t0 = now_ns();
	assert_int_equal(snap_kvm_vm_restore(&fk_dst_fds, &back, err, sizeof(err)), 0);
	assert_memory_equal(&fk.vm[1].pic, &fk.vm[0].pic, sizeof(fk.vm[0].pic));
	assert_memory_equal(&fk.vm[1].ioapic, &fk.vm[0].ioapic, sizeof(fk.vm[0].ioapic));
	/* The clock as it was, with no flags KVM_SET_CLOCK would refuse. */
	assert_true(fk.vm[1].clock.clock == 123456789);
	assert_int_equal(fk.vm[1].clock.flags, 0);
	for (int i = 0; i < 3; i++) {
		/* Loaded the same time before "now" as at the capture. */
		int64_t age = t0 - fk.vm[1].pit.channels[i].count_load_time;

		assert_true(age >= 5000000 - 1000000000LL && age <= 5000000 + 1000000000LL);
		assert_int_equal(fk.vm[1].pit.channels[i].count, fk.vm[0].pit.channels[i].count);
		assert_int_equal(fk.vm[1].pit.channels[i].mode, i);
	}
}

static void test_capture_failure_names_the_ioctl(void **state)
{
	struct snap_vcpu *s = malloc(sizeof(*s));
	char err[256] = "";

	(void)state;
	assert_int_not_equal(snap_vcpu_capture(&fk_src_fds, 999, s, err, sizeof(err)), 0);
	assert_err_has(err, "KVM_GET_MP_STATE");
	free(s);
}

static void test_pending_io_is_completed_without_running(void **state)
{
	(void)state;
	/* The vCPU was kicked for the pause: immediate_exit already 1, and stays so. */
	fk.run.immediate_exit = 1;
	assert_int_equal(snap_vcpu_complete_io(FK_SRC, &fk.run), 0);
	assert_int_equal(fk.run_completed_io, 1);
	assert_int_equal(fk.run.immediate_exit, 1);
	/* Or not kicked: set for the call, then put back. */
	fk.run.immediate_exit = 0;
	assert_int_equal(snap_vcpu_complete_io(FK_SRC, &fk.run), 0);
	assert_int_equal(fk.run_completed_io, 2);
	assert_int_equal(fk.run.immediate_exit, 0);
	/* A vCPU fd KVM refuses: the error comes back. */
	assert_int_equal(snap_vcpu_complete_io(999, &fk.run), -EBADF);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tables_are_well_formed),
		cmocka_unit_test(test_tables_cover_the_kvm_structs),
		cmocka_unit_test(test_vcpu_round_trip),
		cmocka_unit_test(test_vcpu_round_trip_at_the_limits),
		cmocka_unit_test(test_vm_devices_round_trip),
		cmocka_unit_test(test_bad_vcpu_values_are_named),
		cmocka_unit_test(test_vm_devices_load_all_or_nothing),
		cmocka_unit_test_setup_teardown(test_capture_restore_through_a_file, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_restore_order, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_unreadable_msr_is_dropped, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_refused_msr_is_named, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_other_tsc_rate_is_scaled_or_refused, fake_setup,
						fake_teardown),
		cmocka_unit_test_setup_teardown(test_xsave2_areas, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_vm_devices_capture_restore, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_capture_failure_names_the_ioctl, fake_setup,
						fake_teardown),
		cmocka_unit_test_setup_teardown(test_pending_io_is_completed_without_running,
						fake_setup, fake_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
