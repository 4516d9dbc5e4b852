/*
 * libFuzzer harness for the legacy PC devices every guest gets
 * (devices/platform.c: the 16550A UART, the i8042, the CMOS RTC, the ACPI
 * PM1a registers, the exit device and port 0x80), as the guest reaches them:
 * port I/O of any width at any offset, through the same bus as KVM_EXIT_IO.
 *
 * Every input builds a fresh VM without KVM (no VM fd: interrupt lines go
 * nowhere) and the platform devices, the console going to a pipe the harness
 * drains. Operations, 4 bytes each:
 *
 *   [0] op   [1] port selector   [2] width code   [3] value
 *   op 0: write [value] (repeated to the width) to the port
 *   op 1: read the port
 *   op 2: the host types [value] bytes into the UART
 *   op 3: snapshot: save the devices' state, load it back, save again
 *   op 4: press the power button
 *
 * The port selector picks one of the devices' ports or the ones just around
 * them (0xff: a port outside every device). Beyond ASan/UBSan: a read changes
 * only the bytes of its width; a state saved, loaded and saved again is the
 * same; the pipe never gets more console bytes than the guest wrote to the
 * transmit register; and only the exit device (with the status written), the
 * i8042's reset, the ACPI sleep command and a kernel panic's report on the
 * console end the VM.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "arch/x86_64/layout.h"
#include "devices/platform.h"
#include "devices/serial.h"
#include "vmm/snapshot/format.h"
#include "vmm/vm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_OPS 1024

static const uint16_t ports[] = {
	X86_COM1_PORT, X86_COM1_PORT + 1, X86_COM1_PORT + 2, X86_COM1_PORT + 3,
	X86_COM1_PORT + 4, X86_COM1_PORT + 5, X86_COM1_PORT + 6, X86_COM1_PORT + 7,
	X86_COM1_PORT + 8, X86_COM1_PORT - 1,
	X86_I8042_PORT_DATA, X86_I8042_PORT_DATA + 1, X86_I8042_PORT_DATA + 2,
	X86_I8042_PORT_DATA + 3, X86_I8042_PORT_CMD, X86_I8042_PORT_CMD + 1,
	X86_RTC_PORT, X86_RTC_PORT + 1, X86_RTC_PORT + 2,
	X86_ACPI_PM1A_EVT, X86_ACPI_PM1A_EVT + 1, X86_ACPI_PM1A_EVT + 2, X86_ACPI_PM1A_EVT + 3,
	X86_ACPI_PM1A_CNT, X86_ACPI_PM1A_CNT + 1, X86_ACPI_PM1A_CNT + 2,
	X86_EXIT_PORT - 1, X86_EXIT_PORT, X86_EXIT_PORT + 1, X86_EXIT_PORT + 3, X86_EXIT_PORT + 4,
	0x80, 0x81,
};

struct fz {
	struct vm vm;
	struct vm_config cfg;
	int pipe_rd;
	uint64_t drained;
};

/* The platform's state as a snapshot blob (malloc'd), or NULL. */
static void *save(struct fz *f, size_t *len)
{
	struct snap_writer w;
	const void *blob;
	void *copy = NULL;

	if (snap_writer_init(&w))
		abort();
	if (!platform_save(&f->vm, &w) && !snap_writer_finish(&w, &blob, len)) {
		copy = malloc(*len);
		if (!copy)
			abort();
		memcpy(copy, blob, *len);
	}
	snap_writer_free(&w);
	return copy;
}

static void snapshot_round_trip(struct fz *f)
{
	struct snap_reader r;
	size_t len1, len2;
	void *one = save(f, &len1), *two;

	if (!one)
		abort();  /* the devices' own state always saves */
	if (snap_reader_open(&r, one, len1) || platform_snap_check(&r) || platform_load(&f->vm, &r))
		abort();  /* and loads back */
	snap_reader_close(&r);
	two = save(f, &len2);
	if (!two || len1 != len2 || memcmp(one, two, len1))
		abort();
	free(one);
	free(two);
}

static void drain(struct fz *f)
{
	uint8_t buf[4096];
	ssize_t n;

	while ((n = read(f->pipe_rd, buf, sizeof(buf))) > 0)
		f->drained += (uint64_t)n;
}

static void port_io(struct fz *f, uint16_t port, unsigned width, uint8_t value, bool is_write)
{
	uint8_t buf[16];
	unsigned i;

	memset(buf, 0xa5, sizeof(buf));
	if (is_write)
		memset(buf + 4, value, width);
	(void)bus_access(&f->vm.pio, port, buf + 4, width, is_write);
	for (i = 0; i < 4; i++) {
		if (buf[i] != 0xa5 || buf[4 + width + i] != 0xa5)
			abort();  /* a handler wrote outside the access */
	}
}

/* Whether `width` bytes at `port` include port `reg` (an outl to 0x602 writes 0x602-0x605). */
static bool covers(uint16_t port, unsigned width, uint16_t reg)
{
	return reg >= port && reg < port + width;
}

/*
 * The VM just ended, during a write to `port` (0: not a write). Only the exit
 * device (its own status: the value, or 1 above 255), the i8042's reset line
 * and the ACPI sleep command end it, with 0 (125 once the console printed a
 * kernel panic line), and the console's transmit register with 125 (the end
 * of a panic's report).
 */
static void check_exit(struct fz *f, uint16_t port, unsigned width, uint8_t value)
{
	uint32_t status = 0;

	if (port == X86_EXIT_PORT) {
		for (unsigned i = 0; i < width && i < 4; i++)
			status |= (uint32_t)value << (8 * i);
		if (f->vm.exit_status != (status > 255 ? VMM_EXIT_FAILURE : (int)status))
			abort();
	} else if (port == X86_COM1_PORT && f->vm.exit_status == VMM_EXIT_PANIC) {
		return;  /* the console printed the end of a kernel panic's report */
	} else if ((covers(port, width, X86_I8042_PORT_DATA) || covers(port, width, X86_I8042_PORT_CMD) ||
		    covers(port, width, X86_ACPI_PM1A_CNT) || covers(port, width, X86_ACPI_PM1A_CNT + 1)) &&
		   (f->vm.exit_status == VMM_EXIT_OK || f->vm.exit_status == VMM_EXIT_PANIC)) {
		return;
	} else {
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned widths[4] = { 1, 2, 4, 1 };  /* what KVM_EXIT_IO carries */
	struct fz *f = calloc(1, sizeof(*f));
	int p[2];

	if (!f || pipe2(p, O_CLOEXEC | O_NONBLOCK))
		abort();
	f->pipe_rd = p[0];
	f->cfg.serial = SERIAL_FILE;
	f->cfg.serial_path = "/dev/null";
	f->vm.cfg = &f->cfg;
	f->vm.kvm_fd = f->vm.vm_fd = -1;
	pthread_mutex_init(&f->vm.lock, NULL);
	f->vm.exit_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (f->vm.exit_efd < 0 || bus_init(&f->vm.pio, "pio") || platform_devices_init(&f->vm))
		abort();
	/* The console to our pipe instead of /dev/null, to count what comes out. */
	f->vm.serial->out_fd = p[1];

	for (size_t i = 0; i + 4 <= size && i / 4 < MAX_OPS; i += 4) {
		uint16_t port = data[i + 1] == 0xff ? 0x1234 : ports[data[i + 1] % ARRAY_SIZE(ports)];
		unsigned width = widths[data[i + 2] % 4];
		uint8_t value = data[i + 3];
		bool ended = f->vm.exit_set;

		switch (data[i] % 5) {
		case 0:
			port_io(f, port, width, value, true);
			break;
		case 1:
			port_io(f, port, width, value, false);
			break;
		case 2: {
			uint8_t typed[256];

			memset(typed, 'a' + value % 26, value);
			(void)serial_receive(f->vm.serial, typed, value);
			break;
		}
		case 3:
			snapshot_round_trip(f);
			break;
		case 4:
			if (platform_power_button(&f->vm))
				abort();
			break;
		}
		drain(f);
		if (f->drained > f->vm.serial->tx_bytes)
			abort();  /* console bytes the guest never sent */
		if (!ended && f->vm.exit_set)
			check_exit(f, data[i] % 5 == 0 ? port : 0, width, value);
	}

	platform_devices_destroy(&f->vm);
	bus_destroy(&f->vm.pio);
	close(f->vm.exit_efd);
	close(p[0]);
	close(p[1]);
	pthread_mutex_destroy(&f->vm.lock);
	free(f);
	return 0;
}
