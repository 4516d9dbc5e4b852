#include "devices/serial.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vmm/snapshot/format.h"

/* Register offsets and bits (PC16550D datasheet). */
#define UART_RBR_THR 0
#define UART_IER     1
#define UART_IIR_FCR 2
#define UART_LCR     3
#define UART_MCR     4
#define UART_LSR     5
#define UART_MSR     6
#define UART_SCR     7

#define IER_RDI      0x01 /* received data available */
#define IER_THRI     0x02 /* transmitter holding register empty */
#define IER_RLSI     0x04
#define IER_MSI      0x08
#define IIR_NO_INT   0x01
#define IIR_THRI     0x02
#define IIR_RDI      0x04
#define IIR_FIFO_ON  0xc0
#define FCR_ENABLE   0x01
#define FCR_CLEAR_RX 0x02
#define LCR_DLAB     0x80
#define MCR_DTR      0x01
#define MCR_RTS      0x02
#define MCR_OUT1     0x04
#define MCR_OUT2     0x08
#define MCR_LOOP     0x10
#define LSR_DR       0x01
#define LSR_THRE     0x20
#define LSR_TEMT     0x40
#define MSR_CTS      0x10
#define MSR_DSR      0x20
#define MSR_RI       0x40
#define MSR_DCD      0x80

int serial_init(struct serial *s, int out_fd, serial_irq_fn set_irq, void *opaque)
{
	memset(s, 0, sizeof(*s));
	s->out_fd = out_fd;
	s->set_irq = set_irq;
	s->irq_opaque = opaque;
	s->lsr = LSR_THRE | LSR_TEMT;
	s->msr = MSR_DCD | MSR_DSR | MSR_CTS;
	s->room_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->room_efd < 0)
		return -errno;
	pthread_mutex_init(&s->lock, NULL);
	return 0;
}

void serial_destroy(struct serial *s)
{
	if (s->room_efd >= 0)
		close(s->room_efd);
	s->room_efd = -1;
	pthread_mutex_destroy(&s->lock);
}

static uint8_t serial_iir(const struct serial *s)
{
	uint8_t fifo = (s->fcr & FCR_ENABLE) ? IIR_FIFO_ON : 0;

	if ((s->ier & IER_RDI) && s->rx_count)
		return fifo | IIR_RDI;
	if ((s->ier & IER_THRI) && s->thr_irq)
		return fifo | IIR_THRI;
	return fifo | IIR_NO_INT;
}

/* Called with the lock held. ISA interrupts are edges: drop the line before raising it again. */
static void serial_update_irq(struct serial *s)
{
	int level = !(serial_iir(s) & IIR_NO_INT);

	if (level != s->irq_level && s->set_irq)
		s->set_irq(s->irq_opaque, level);
	s->irq_level = level;
}

static void serial_remember(struct serial *s, uint8_t c)
{
	s->tx_bytes++;
	if (c == '\n') {
		s->tail[s->tail_len] = 0;
		if (s->tail_len)
			memcpy(s->last_line, s->tail, s->tail_len + 1);
		s->tail_len = 0;
		if (s->line_fn)
			s->line_fn(s->line_opaque, s->last_line);
		return;
	}
	if (c == '\r')
		return;
	if (s->tail_len < sizeof(s->tail) - 1)
		s->tail[s->tail_len++] = (char)c;
}

static void serial_push_rx(struct serial *s, uint8_t c)
{
	if (s->rx_count == SERIAL_FIFO_SIZE)
		return; /* overrun: the byte is lost, as on hardware */
	s->rx[(s->rx_head + s->rx_count) % SERIAL_FIFO_SIZE] = c;
	s->rx_count++;
	s->lsr |= LSR_DR;
}

static void serial_transmit(struct serial *s, uint8_t c)
{
	if (s->mcr & MCR_LOOP) {
		serial_push_rx(s, c);
	} else {
		serial_remember(s, c);
		if (s->out_fd >= 0 && !s->out_gone) {
			ssize_t n;

			/* A console that cannot keep up loses bytes rather than stalling a vCPU forever. */
			do
				n = write(s->out_fd, &c, 1);
			while (n < 0 && errno == EINTR);
			/* Its reader went away (SIGPIPE is ignored): the guest runs on, unheard. */
			if (n < 0 && errno == EPIPE) {
				s->out_gone = true;
				pr_err("serial: the console's reader went away (EPIPE); its output is dropped from here, the guest runs on");
			}
		}
	}
	/* The byte left at once: THR is empty again. */
	s->lsr |= LSR_THRE | LSR_TEMT;
	s->thr_irq = true;
}

static uint8_t serial_read_reg(struct serial *s, unsigned reg)
{
	uint8_t v, iir;
	uint64_t one = 1;

	switch (reg) {
	case UART_RBR_THR:
		if (s->lcr & LCR_DLAB)
			return s->dll;
		if (!s->rx_count)
			return 0;
		v = s->rx[s->rx_head];
		s->rx_head = (s->rx_head + 1) % SERIAL_FIFO_SIZE;
		if (--s->rx_count == 0) {
			s->lsr &= (uint8_t)~LSR_DR;
			if (write(s->room_efd, &one, sizeof(one)) < 0) {
				/* Counter saturated: the reader is already due to wake. */
			}
		}
		return v;
	case UART_IER:
		return (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
	case UART_IIR_FCR:
		iir = serial_iir(s);
		/* Reading IIR acknowledges a THR-empty interrupt it reports. */
		if ((iir & 0x0f) == IIR_THRI)
			s->thr_irq = false;
		return iir;
	case UART_LCR:
		return s->lcr;
	case UART_MCR:
		return s->mcr;
	case UART_LSR:
		return s->lsr;
	case UART_MSR:
		if (s->mcr & MCR_LOOP) {
			/* Loopback: the modem outputs come back as inputs (8250 probe relies on it). */
			v = 0;
			v |= (s->mcr & MCR_DTR) ? MSR_DSR : 0;
			v |= (s->mcr & MCR_RTS) ? MSR_CTS : 0;
			v |= (s->mcr & MCR_OUT1) ? MSR_RI : 0;
			v |= (s->mcr & MCR_OUT2) ? MSR_DCD : 0;
			return v;
		}
		return s->msr;
	default:
		return s->scr;
	}
}

static void serial_write_reg(struct serial *s, unsigned reg, uint8_t v)
{
	switch (reg) {
	case UART_RBR_THR:
		if (s->lcr & LCR_DLAB)
			s->dll = v;
		else
			serial_transmit(s, v);
		break;
	case UART_IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = v;
		} else {
			/* Enabling THRI with THR empty raises the interrupt at once. */
			if (!(s->ier & IER_THRI) && (v & IER_THRI) && (s->lsr & LSR_THRE))
				s->thr_irq = true;
			s->ier = v & 0x0f;
		}
		break;
	case UART_IIR_FCR:
		s->fcr = v & 0xc9;
		if (v & FCR_CLEAR_RX) {
			s->rx_count = 0;
			s->lsr &= (uint8_t)~LSR_DR;
		}
		break;
	case UART_LCR:
		s->lcr = v;
		break;
	case UART_MCR:
		s->mcr = v & 0x1f;
		break;
	case UART_LSR:
	case UART_MSR:
		break; /* read-only */
	default:
		s->scr = v;
		break;
	}
}

void serial_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	struct serial *s = opaque;

	if (offset > UART_SCR)
		return;
	pthread_mutex_lock(&s->lock);
	if (is_write)
		serial_write_reg(s, (unsigned)offset, data[0]);
	else
		data[0] = serial_read_reg(s, (unsigned)offset);
	/* Wider accesses are not meaningful on an 8-bit UART: the upper bytes read as zero. */
	if (!is_write && len > 1)
		memset(data + 1, 0, len - 1);
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

size_t serial_rx_room(struct serial *s)
{
	size_t room;

	pthread_mutex_lock(&s->lock);
	room = SERIAL_FIFO_SIZE - s->rx_count;
	pthread_mutex_unlock(&s->lock);
	return room;
}

size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	while (n < len && s->rx_count < SERIAL_FIFO_SIZE)
		serial_push_rx(s, buf[n++]);
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

uint64_t serial_last_line(struct serial *s, char *buf, size_t len)
{
	uint64_t sent;

	pthread_mutex_lock(&s->lock);
	s->tail[s->tail_len] = 0;
	snprintf(buf, len, "%s", s->tail_len ? s->tail : s->last_line);
	sent = s->tx_bytes;
	pthread_mutex_unlock(&s->lock);
	return sent;
}

/* ---- snapshots -------------------------------------------------------------------- */

struct serial_snap {
	uint8_t ier, lcr, mcr, lsr, msr, scr, dll, dlm, fcr;
	uint8_t thr_irq;             /* THR-empty interrupt pending */
	uint8_t irq_level;           /* the line as the guest's interrupt controller saw it */
	uint8_t rx[SERIAL_FIFO_SIZE];
	uint32_t rx_head, rx_count;
};

#define S struct serial_snap
static const struct snap_field serial_snap_fields[] = {
	SNAP_UINT_R(S, ier, 0, 0x0f),
	SNAP_U(S, lcr),
	SNAP_UINT_R(S, mcr, 0, 0x1f),
	SNAP_U(S, lsr),
	SNAP_U(S, msr),
	SNAP_U(S, scr),
	SNAP_U(S, dll),
	SNAP_U(S, dlm),
	SNAP_U(S, fcr),
	SNAP_BOOL(S, thr_irq),
	SNAP_BOOL(S, irq_level),
	SNAP_ARR(S, rx),
	SNAP_UINT_R(S, rx_head, 0, SERIAL_FIFO_SIZE - 1),
	SNAP_UINT_R(S, rx_count, 0, SERIAL_FIFO_SIZE),
};
#undef S

/* The UART a snapshot describes, with nothing else in it: for the checks below. */
static void serial_from_snap(struct serial *u, const struct serial_snap *st)
{
	memset(u, 0, sizeof(*u));
	u->ier = st->ier;
	u->lcr = st->lcr;
	u->mcr = st->mcr;
	u->lsr = st->lsr;
	u->msr = st->msr;
	u->scr = st->scr;
	u->dll = st->dll;
	u->dlm = st->dlm;
	u->fcr = st->fcr;
	u->thr_irq = st->thr_irq;
	u->irq_level = st->irq_level;
	memcpy(u->rx, st->rx, sizeof(u->rx));
	u->rx_head = st->rx_head;
	u->rx_count = st->rx_count;
}

static int serial_snap_check(const void *obj, char *err, size_t errlen)
{
	const struct serial_snap *st = obj;
	struct serial u;

	if (st->fcr & ~0xc9) {
		snprintf(err, errlen, "fcr: %#x has bits the UART does not keep", st->fcr);
		return -EINVAL;
	}
	if (!(st->lsr & LSR_DR) != !st->rx_count) {
		snprintf(err, errlen, "lsr: %#x says data %s, but the FIFO holds %u bytes", st->lsr,
			 st->lsr & LSR_DR ? "ready" : "not ready", st->rx_count);
		return -EINVAL;
	}
	serial_from_snap(&u, st);
	if (st->irq_level != !(serial_iir(&u) & IIR_NO_INT)) {
		snprintf(err, errlen, "irq_level: %u, but the registers say %u", st->irq_level,
			 !(serial_iir(&u) & IIR_NO_INT));
		return -EINVAL;
	}
	return 0;
}

const struct snap_desc serial_snap_desc =
	SNAP_DESC(struct serial_snap, "serial", 1, serial_snap_fields, serial_snap_check);

int serial_save(struct serial *s, struct snap_writer *w)
{
	struct serial_snap st;

	pthread_mutex_lock(&s->lock);
	st = (struct serial_snap){
		.ier = s->ier, .lcr = s->lcr, .mcr = s->mcr, .lsr = s->lsr, .msr = s->msr,
		.scr = s->scr, .dll = s->dll, .dlm = s->dlm, .fcr = s->fcr,
		.thr_irq = s->thr_irq, .irq_level = (uint8_t)s->irq_level,
		.rx_head = s->rx_head, .rx_count = s->rx_count,
	};
	memcpy(st.rx, s->rx, sizeof(st.rx));
	pthread_mutex_unlock(&s->lock);
	return snap_write(w, &serial_snap_desc, &st);
}

int serial_load(struct serial *s, struct snap_reader *r, int node)
{
	struct serial_snap st;
	int ret;

	memset(&st, 0, sizeof(st));
	ret = snap_read(r, node, &serial_snap_desc, &st);
	if (ret)
		return ret;
	pthread_mutex_lock(&s->lock);
	s->ier = st.ier;
	s->lcr = st.lcr;
	s->mcr = st.mcr;
	s->lsr = st.lsr;
	s->msr = st.msr;
	s->scr = st.scr;
	s->dll = st.dll;
	s->dlm = st.dlm;
	s->fcr = st.fcr;
	s->thr_irq = st.thr_irq;
	memcpy(s->rx, st.rx, sizeof(s->rx));
	s->rx_head = st.rx_head;
	s->rx_count = st.rx_count;
	/* A new VM's line is low: raise it again if an interrupt is pending (the 8250 driver
	 * takes a repeated one in its stride). */
	s->irq_level = 0;
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}
