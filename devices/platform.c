/* Wires the legacy PC devices onto the I/O port bus; one table, so main never grows a switch. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch/x86_64/layout.h"
#include "devices/platform.h"
#include "devices/rtc.h"
#include "devices/serial.h"
#include "vmm/snapshot/format.h"
#include "vmm/vm.h"

struct platform {
	struct serial serial;
	struct i8042 i8042;
	struct rtc rtc;
	struct acpi_pm pm;
	int serial_fd;       /* the --serial file we opened, or -1 */
	char panic_line[160];/* set once the guest printed "Kernel panic - not syncing" */
	bool serial_ready;
};

static struct platform *platform_of(struct vm *vm)
{
	return (struct platform *)vm->platform;
}

/*
 * A kernel panic is recognised by the line every Linux panic prints, so it
 * works for any kernel with a serial console and no guest driver. The end
 * marker follows the backtrace; waiting for it keeps the whole report.
 */
static void serial_line(void *opaque, const char *line)
{
	struct vm *vm = opaque;
	struct platform *p = platform_of(vm);
	const char *at;

	if (!p->panic_line[0]) {
		at = strstr(line, "Kernel panic - not syncing");
		if (at)
			snprintf(p->panic_line, sizeof(p->panic_line), "%s", at);
		return;
	}
	if (strstr(line, "---[ end Kernel panic"))
		vm_request_exit(vm, VMM_EXIT_PANIC, "guest kernel panic: %s", p->panic_line);
}

bool platform_guest_panicked(struct vm *vm, char *line, size_t len)
{
	struct platform *p = platform_of(vm);

	if (!p || !p->panic_line[0])
		return false;
	snprintf(line, len, "%s", p->panic_line);
	return true;
}

int platform_power_button(struct vm *vm)
{
	struct platform *p = platform_of(vm);

	if (!p)
		return -ENODEV;
	acpi_pm_power_button(&p->pm);
	return 0;
}

void platform_guest_reset(struct vm *vm)
{
	char line[160];

	/* panic=N reboots after a panic: that reboot is the panic's verdict, not a clean one. */
	if (platform_guest_panicked(vm, line, sizeof(line)))
		vm_request_exit(vm, VMM_EXIT_PANIC, "guest kernel panic: %s", line);
	else
		vm_request_exit(vm, VMM_EXIT_OK, "guest rebooted");
}

static void serial_irq(void *opaque, int level)
{
	struct vm *vm = opaque;

	vm_irq_line(vm, X86_COM1_IRQ, level);
}

/* Port 0x80 (POST codes, Linux's I/O delay) and friends: accepted and ignored. */
static void sink_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	(void)opaque;
	(void)offset;
	if (!is_write)
		memset(data, 0xff, len);
}

static int open_serial_output(struct vm *vm, struct platform *p, int *fd)
{
	switch (vm->cfg->serial) {
	case SERIAL_STDIO:
		*fd = STDOUT_FILENO;
		return 0;
	case SERIAL_OFF:
		*fd = -1;
		return 0;
	case SERIAL_FILE:
		p->serial_fd = open(vm->cfg->serial_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (p->serial_fd < 0) {
			pr_err("--serial file=%s: %s", vm->cfg->serial_path, strerror(errno));
			return -errno;
		}
		*fd = p->serial_fd;
		return 0;
	}
	return -EINVAL;
}

int platform_devices_init(struct vm *vm)
{
	struct platform *p = calloc(1, sizeof(*p));
	const struct {
		uint64_t port, len;
		bus_io_fn fn;
		void *opaque;
		const char *name;
	} ranges[] = {
		{ X86_COM1_PORT, 8, serial_io, &p->serial, "serial" },
		{ X86_I8042_PORT_DATA, 5, i8042_io, &p->i8042, "i8042" },
		{ X86_RTC_PORT, 2, rtc_io, &p->rtc, "rtc" },
		{ X86_ACPI_PM1A_EVT, 6, acpi_pm_io, &p->pm, "acpi-pm" },
		{ X86_EXIT_PORT, 4, exit_dev_io, vm, "exit" },
		{ 0x80, 1, sink_io, NULL, "post" },
	};
	int out_fd = -1, ret;

	if (!p)
		return -ENOMEM;
	p->serial_fd = -1;
	vm->platform = p;
	p->i8042.vm = vm;
	acpi_pm_init(&p->pm, vm);

	ret = open_serial_output(vm, p, &out_fd);
	if (ret)
		return ret;
	ret = serial_init(&p->serial, out_fd, serial_irq, vm);
	if (ret)
		return ret;
	p->serial_ready = true;
	p->serial.line_fn = serial_line;
	p->serial.line_opaque = vm;
	vm->serial = &p->serial;

	for (size_t i = 0; i < ARRAY_SIZE(ranges); i++) {
		ret = bus_register(&vm->pio, ranges[i].port, ranges[i].len, ranges[i].fn,
				   ranges[i].opaque, ranges[i].name);
		if (ret) {
			pr_err("registering %s at port %#llx failed: %s", ranges[i].name,
			       (unsigned long long)ranges[i].port, strerror(-ret));
			return ret;
		}
	}
	/* The RTC's index register, written before every CMOS access. */
	vm_coalesce_pio(vm, X86_RTC_PORT, 1);
	return 0;
}

void platform_devices_destroy(struct vm *vm)
{
	struct platform *p = platform_of(vm);

	if (!p)
		return;
	if (p->serial_ready)
		serial_destroy(&p->serial);
	if (p->serial_fd >= 0)
		close(p->serial_fd);
	free(p);
	vm->platform = NULL;
	vm->serial = NULL;
}

/* ---- snapshots -------------------------------------------------------------------- */

const char *const platform_snap_nodes[] = { "serial", "rtc", "acpi-pm", NULL };

int platform_save(struct vm *vm, struct snap_writer *w)
{
	struct platform *p = platform_of(vm);

	if (snap_begin_node(w, "serial") || serial_save(&p->serial, w) || snap_end_node(w) ||
	    snap_begin_node(w, "rtc") || rtc_save(&p->rtc, w) || snap_end_node(w) ||
	    snap_begin_node(w, "acpi-pm") || acpi_pm_save(&p->pm, w) || snap_end_node(w))
		return w->err ? w->err : -EIO;
	return 0;
}

static const struct snap_desc *const platform_descs[] = { &serial_snap_desc, &rtc_snap_desc,
							   &acpi_pm_snap_desc };

int platform_snap_check(struct snap_reader *r)
{
	for (size_t i = 0; i < ARRAY_SIZE(platform_descs); i++) {
		int node = snap_node(r, 0, platform_snap_nodes[i]), ret;
		void *scratch;

		if (node < 0)
			return node;
		/* Every field against its table, into a scratch copy: nothing is applied. */
		scratch = calloc(1, platform_descs[i]->size);
		if (!scratch)
			return -ENOMEM;
		ret = snap_read(r, node, platform_descs[i], scratch);
		free(scratch);
		if (ret)
			return ret;
	}
	return 0;
}

int platform_load(struct vm *vm, struct snap_reader *r)
{
	struct platform *p = platform_of(vm);
	int ret, node;

	node = snap_node(r, 0, "rtc");
	ret = node < 0 ? node : rtc_load(&p->rtc, r, node);
	if (!ret) {
		node = snap_node(r, 0, "acpi-pm");
		ret = node < 0 ? node : acpi_pm_load(&p->pm, r, node);
	}
	if (!ret) {
		node = snap_node(r, 0, "serial");
		ret = node < 0 ? node : serial_load(&p->serial, r, node);
	}
	return ret;
}
