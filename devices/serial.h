/* A 16550A UART (COM1): what Linux's 8250 driver probes as "16550A", with a 16-byte FIFO. */
#ifndef DEVICES_SERIAL_H
#define DEVICES_SERIAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/util.h"

#define SERIAL_FIFO_SIZE 16
#define SERIAL_TAIL_SIZE 256

typedef void (*serial_irq_fn)(void *opaque, int level);
/* Called with each complete line the guest prints (without CR/LF), under the UART lock. */
typedef void (*serial_line_fn)(void *opaque, const char *line);

struct serial {
	pthread_mutex_t lock;
	int out_fd;                  /* transmitted bytes go here; -1 discards them */
	bool out_gone;               /* out_fd's reader went away (EPIPE): bytes are dropped */
	serial_irq_fn set_irq;
	void *irq_opaque;
	int irq_level;
	int room_efd;                /* eventfd, signalled when the guest drains the RX FIFO */

	uint8_t ier, lcr, mcr, lsr, msr, scr, dll, dlm, fcr;
	bool thr_irq;                /* THR-empty interrupt pending (cleared by reading IIR) */
	uint8_t rx[SERIAL_FIFO_SIZE];
	unsigned rx_head, rx_count;

	uint64_t tx_bytes;           /* bytes the guest has sent (not in loopback) */
	char tail[SERIAL_TAIL_SIZE]; /* the last line the guest printed, for error messages */
	size_t tail_len;
	char last_line[SERIAL_TAIL_SIZE];
	serial_line_fn line_fn;
	void *line_opaque;
};

int serial_init(struct serial *s, int out_fd, serial_irq_fn set_irq, void *opaque);
void serial_destroy(struct serial *s);

/* The I/O handler for the 8 registers (offset 0..7). */
void serial_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write);

/* Host input: queue up to len bytes; returns how many fit in the FIFO. */
size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len);
size_t serial_rx_room(struct serial *s);

/*
 * The last complete (or current partial) line of output, NUL-terminated.
 * Returns how many bytes the guest has sent in all (0: nothing, ever).
 */
uint64_t serial_last_line(struct serial *s, char *buf, size_t len);

/*
 * Snapshots (vmm/snapshot/format.h): the registers the guest sees (IER, LCR,
 * MCR, LSR, MSR, SCR, divisor, FCR), the receive FIFO and the pending
 * interrupt state, in the current node of w / from node, one table for both.
 * serial_load checks every field before it changes anything, then drives
 * the IRQ line to the restored level (call it after the in-kernel irqchip is
 * restored, before any vCPU runs). 0, or -EINVAL with one line in r->err.
 */
struct snap_desc;
struct snap_writer;
struct snap_reader;
extern const struct snap_desc serial_snap_desc;
int serial_save(struct serial *s, struct snap_writer *w) WUR;
int serial_load(struct serial *s, struct snap_reader *r, int node) WUR;

#endif
