#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "devices/serial.h"

static int irq_level, irq_edges;

static void fake_irq(void *opaque, int level)
{
	(void)opaque;
	if (level && !irq_level)
		irq_edges++;
	irq_level = level;
}

static uint8_t rd(struct serial *s, unsigned reg)
{
	uint8_t v;

	serial_io(s, reg, &v, 1, false);
	return v;
}

static void wr(struct serial *s, unsigned reg, uint8_t v)
{
	serial_io(s, reg, &v, 1, true);
}

static void test_transmit_reaches_the_fd(void **state)
{
	struct serial s;
	char buf[16] = "";
	int p[2];

	(void)state;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(serial_init(&s, p[1], fake_irq, NULL), 0);
	for (const char *c = "hi\n"; *c; c++)
		wr(&s, 0, (uint8_t)*c);
	assert_int_equal(read(p[0], buf, sizeof(buf)), 3);
	assert_string_equal(buf, "hi\n");
	assert_true(rd(&s, 5) & 0x60); /* THRE | TEMT: ready for more */
	serial_destroy(&s);
	close(p[0]);
	close(p[1]);
}

/* The console's reader goes away: no SIGPIPE death, the port works on, bytes are dropped. */
static void test_transmit_reader_gone(void **state)
{
	struct serial s;
	char buf[16];
	int p[2], q[2];

	(void)state;
	signal(SIGPIPE, SIG_IGN);  /* as vmm's main() does */
	assert_int_equal(pipe(p), 0);
	assert_int_equal(pipe(q), 0);
	close(p[0]);
	assert_int_equal(serial_init(&s, p[1], fake_irq, NULL), 0);
	for (const char *c = "gone\nstill\n"; *c; c++)
		wr(&s, 0, (uint8_t)*c);
	assert_true(s.out_gone);
	assert_true(rd(&s, 5) & 0x60);
	assert_string_equal(s.last_line, "still");
	/* Once gone, not tried again: a fresh fd in its place stays empty. */
	s.out_fd = q[1];
	wr(&s, 0, 'x');
	assert_true(fcntl(q[0], F_SETFL, O_NONBLOCK) == 0);
	assert_int_equal(read(q[0], buf, sizeof(buf)), -1);
	s.out_fd = p[1];
	serial_destroy(&s);
	close(p[1]);
	close(q[0]);
	close(q[1]);
}

static void test_probe_registers(void **state)
{
	struct serial s;

	(void)state;
	assert_int_equal(serial_init(&s, -1, fake_irq, NULL), 0);
	/* Scratch register round-trips. */
	wr(&s, 7, 0xa5);
	assert_int_equal(rd(&s, 7), 0xa5);
	/* IER keeps its 4 bits. */
	wr(&s, 1, 0x0f);
	assert_int_equal(rd(&s, 1), 0x0f);
	wr(&s, 1, 0);
	/* Divisor latch behind DLAB. */
	wr(&s, 3, 0x80);
	wr(&s, 0, 0x01);
	wr(&s, 1, 0x00);
	assert_int_equal(rd(&s, 0), 0x01);
	wr(&s, 3, 0x03);
	/* Loopback: MCR outputs show up in MSR (Linux's 8250 probe checks this). */
	wr(&s, 4, 0x10 | 0x0f);
	assert_int_equal(rd(&s, 6) & 0xf0, 0xf0);
	wr(&s, 4, 0x10);
	assert_int_equal(rd(&s, 6) & 0xf0, 0x00);
	wr(&s, 4, 0x0b);
	/* FIFO enabled: IIR's top bits say 16550A. */
	wr(&s, 2, 0x01);
	assert_int_equal(rd(&s, 2) & 0xc0, 0xc0);
	serial_destroy(&s);
}

static void test_rx_interrupt_and_fifo(void **state)
{
	uint8_t in[40];
	struct serial s;

	(void)state;
	irq_level = irq_edges = 0;
	memset(in, 'x', sizeof(in));
	assert_int_equal(serial_init(&s, -1, fake_irq, NULL), 0);
	wr(&s, 1, 0x01); /* RX interrupt on */
	assert_int_equal(irq_level, 0);
	assert_int_equal(serial_receive(&s, (const uint8_t *)"ab", 2), 2);
	assert_int_equal(irq_level, 1);
	assert_int_equal(rd(&s, 2) & 0x0f, 0x04); /* IIR: received data */
	assert_int_equal(rd(&s, 5) & 1, 1);
	assert_int_equal(rd(&s, 0), 'a');
	assert_int_equal(rd(&s, 0), 'b');
	assert_int_equal(rd(&s, 5) & 1, 0);
	assert_int_equal(irq_level, 0);
	/* The FIFO holds 16; the rest waits on the host side. */
	assert_int_equal(serial_receive(&s, in, sizeof(in)), SERIAL_FIFO_SIZE);
	assert_int_equal(serial_rx_room(&s), 0);
	assert_int_equal(serial_receive(&s, in, sizeof(in)), 0);
	serial_destroy(&s);
}

static void test_thr_interrupt(void **state)
{
	struct serial s;

	(void)state;
	irq_level = irq_edges = 0;
	assert_int_equal(serial_init(&s, -1, fake_irq, NULL), 0);
	wr(&s, 1, 0x02); /* THRI on, THR is empty: interrupt now */
	assert_int_equal(irq_level, 1);
	assert_int_equal(rd(&s, 2) & 0x0f, 0x02);
	/* Reading IIR acknowledged it. */
	assert_int_equal(irq_level, 0);
	wr(&s, 0, 'z');
	assert_int_equal(irq_level, 1);
	assert_int_equal(irq_edges, 2);
	serial_destroy(&s);
}

static void test_last_line(void **state)
{
	struct serial s;
	char line[64];

	(void)state;
	assert_int_equal(serial_init(&s, -1, fake_irq, NULL), 0);
	/* Nothing sent yet: an empty line and a count of 0 (the silent-guest hint). */
	assert_int_equal(serial_last_line(&s, line, sizeof(line)), 0);
	assert_string_equal(line, "");
	for (const char *c = "first\r\nsecond line\r\n"; *c; c++)
		wr(&s, 0, (uint8_t)*c);
	assert_int_equal(serial_last_line(&s, line, sizeof(line)), strlen("first\r\nsecond line\r\n"));
	assert_string_equal(line, "second line");
	for (const char *c = "partial"; *c; c++)
		wr(&s, 0, (uint8_t)*c);
	assert_int_equal(serial_last_line(&s, line, sizeof(line)), strlen("first\r\nsecond line\r\npartial"));
	assert_string_equal(line, "partial");
	serial_destroy(&s);
}

static void test_bad_offsets_and_widths(void **state)
{
	struct serial s;
	uint8_t v[4] = { 0xaa, 0xaa, 0xaa, 0xaa };

	(void)state;
	assert_int_equal(serial_init(&s, -1, fake_irq, NULL), 0);
	serial_io(&s, 9, v, 1, true);  /* outside the 8 registers: ignored */
	serial_io(&s, 5, v, 4, false); /* a 32-bit read of LSR: upper bytes zero */
	assert_int_equal(v[1] | v[2] | v[3], 0);
	serial_destroy(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_transmit_reaches_the_fd),
		cmocka_unit_test(test_transmit_reader_gone),
		cmocka_unit_test(test_probe_registers),
		cmocka_unit_test(test_rx_interrupt_and_fifo),
		cmocka_unit_test(test_thr_interrupt),
		cmocka_unit_test(test_last_line),
		cmocka_unit_test(test_bad_offsets_and_widths),
	};
	return cmocka_run_group_tests_name("serial", tests, NULL, NULL);
}
