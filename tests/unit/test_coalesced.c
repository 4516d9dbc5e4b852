#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/coalesced.h"

#define PAGE 4096

/* What the devices saw, in order. */
struct log {
	unsigned n;
	struct {
		char dev;
		uint64_t offset;
		unsigned len;
		uint32_t value;
	} e[16];
};

static struct log seen;

static void record(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	uint32_t v = 0;

	assert_true(is_write);
	memcpy(&v, data, len < 4 ? len : 4);
	assert_true(seen.n < 16);
	seen.e[seen.n].dev = *(const char *)opaque;
	seen.e[seen.n].offset = offset;
	seen.e[seen.n].len = len;
	seen.e[seen.n].value = v;
	seen.n++;
}

struct fixture {
	struct bus pio, mmio;
	struct coalesced c;
	union {
		struct kvm_coalesced_mmio_ring ring;
		uint8_t bytes[PAGE];
	} page;
};

static struct fixture fx;
static const char dev_port = 'p', dev_mmio = 'm';

static int setup(void **state)
{
	(void)state;
	memset(&fx, 0, sizeof(fx));
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(bus_init(&fx.pio, "pio"), 0);
	assert_int_equal(bus_init(&fx.mmio, "mmio"), 0);
	assert_int_equal(bus_register(&fx.pio, 0xcf8, 8, record, (void *)&dev_port, "cf8"), 0);
	assert_int_equal(bus_register(&fx.mmio, 0xd0000000, 0x1000, record, (void *)&dev_mmio, "m"), 0);
	coalesced_init(&fx.c, &fx.pio, &fx.mmio);
	coalesced_attach(&fx.c, fx.page.bytes, PAGE);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	coalesced_destroy(&fx.c);
	bus_destroy(&fx.pio);
	bus_destroy(&fx.mmio);
	return 0;
}

/* What KVM does: fill the slot at last, then move last on. */
static void kvm_push(uint64_t addr, unsigned len, bool pio, uint32_t value)
{
	struct kvm_coalesced_mmio *e = &fx.page.ring.coalesced_mmio[fx.page.ring.last];

	memset(e, 0, sizeof(*e));
	e->phys_addr = addr;
	e->len = len;
	e->pio = pio;
	memcpy(e->data, &value, sizeof(value));
	fx.page.ring.last = (fx.page.ring.last + 1) % fx.c.max;
}

static void test_ring_size_is_kvms(void **state)
{
	(void)state;
	/* KVM_COALESCED_MMIO_MAX for a 4 KiB page. */
	assert_int_equal(fx.c.max, (PAGE - sizeof(struct kvm_coalesced_mmio_ring)) /
					   sizeof(struct kvm_coalesced_mmio));
}

static void test_empty_ring_replays_nothing(void **state)
{
	(void)state;
	assert_int_equal(coalesced_drain(&fx.c), 0);
	assert_int_equal(seen.n, 0);
}

static void test_replays_in_order_on_the_right_bus(void **state)
{
	(void)state;
	kvm_push(0xcf8, 4, true, 0x80000800);
	kvm_push(0xd0000010, 2, false, 0xbeef);
	kvm_push(0xcfb, 1, true, 0x01);
	assert_int_equal(coalesced_drain(&fx.c), 3);
	assert_int_equal(seen.n, 3);
	assert_int_equal(seen.e[0].dev, 'p');
	assert_int_equal(seen.e[0].offset, 0);
	assert_int_equal(seen.e[0].len, 4);
	assert_int_equal(seen.e[0].value, 0x80000800);
	assert_int_equal(seen.e[1].dev, 'm');
	assert_int_equal(seen.e[1].offset, 0x10);
	assert_int_equal(seen.e[1].value, 0xbeef);
	assert_int_equal(seen.e[2].dev, 'p');
	assert_int_equal(seen.e[2].offset, 3);
	assert_int_equal(seen.e[2].len, 1);
	/* The slots are KVM's again; a second drain has nothing to do. */
	assert_int_equal(fx.page.ring.first, fx.page.ring.last);
	assert_int_equal(coalesced_drain(&fx.c), 0);
	assert_int_equal(seen.n, 3);
}

static void test_wraps_around(void **state)
{
	(void)state;
	fx.page.ring.first = fx.page.ring.last = fx.c.max - 1;
	kvm_push(0xcf8, 4, true, 1);
	kvm_push(0xcf8, 4, true, 2);
	assert_int_equal(fx.page.ring.last, 1);
	assert_int_equal(coalesced_drain(&fx.c), 2);
	assert_int_equal(seen.e[0].value, 1);
	assert_int_equal(seen.e[1].value, 2);
	assert_int_equal(fx.page.ring.first, 1);
}

static void test_bad_length_is_consumed_not_replayed(void **state)
{
	(void)state;
	kvm_push(0xcf8, 0, true, 7);
	kvm_push(0xcf8, 9, true, 8);
	kvm_push(0xcf8, 4, true, 9);
	assert_int_equal(coalesced_drain(&fx.c), 3);
	assert_int_equal(seen.n, 1);
	assert_int_equal(seen.e[0].value, 9);
	assert_int_equal(fx.page.ring.first, fx.page.ring.last);
}

static void test_bad_indices_reset_without_reading_outside(void **state)
{
	(void)state;
	fx.page.ring.first = fx.c.max + 100;
	fx.page.ring.last = 2;
	assert_int_equal(coalesced_drain(&fx.c), 0);
	assert_int_equal(seen.n, 0);
	assert_int_equal(fx.page.ring.first, 2);
	fx.page.ring.first = 0;
	fx.page.ring.last = 0xffffffffu;
	assert_int_equal(coalesced_drain(&fx.c), 0);
	assert_int_equal(fx.page.ring.first, 0);
	/* Usable again once the indices are sane. */
	fx.page.ring.last = 0;
	kvm_push(0xcf8, 4, true, 5);
	assert_int_equal(coalesced_drain(&fx.c), 1);
	assert_int_equal(seen.e[0].value, 5);
}

static void test_unattached_or_tiny_page_is_unused(void **state)
{
	struct coalesced c;
	uint8_t tiny[sizeof(struct kvm_coalesced_mmio_ring) + sizeof(struct kvm_coalesced_mmio)];

	(void)state;
	coalesced_init(&c, &fx.pio, &fx.mmio);
	assert_int_equal(coalesced_drain(&c), 0);
	memset(tiny, 0, sizeof(tiny));
	((struct kvm_coalesced_mmio_ring *)(void *)tiny)->last = 1;
	coalesced_attach(&c, tiny, sizeof(tiny));
	assert_null(c.ring);
	assert_int_equal(coalesced_drain(&c), 0);
	assert_int_equal(seen.n, 0);
	coalesced_destroy(&c);
	coalesced_destroy(&c); /* twice is harmless */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ring_size_is_kvms, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_ring_replays_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replays_in_order_on_the_right_bus, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wraps_around, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_length_is_consumed_not_replayed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_indices_reset_without_reading_outside, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_unattached_or_tiny_page_is_unused, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
