/* The legacy PC devices every guest gets: COM1, i8042, CMOS RTC, ACPI PM, the exit device. */
#ifndef DEVICES_PLATFORM_H
#define DEVICES_PLATFORM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/util.h"

struct vm;

int platform_devices_init(struct vm *vm) WUR;
void platform_devices_destroy(struct vm *vm);
/* The guest reset its CPUs (reboot, or the reboot after a panic): end the VM with the right status. */
void platform_guest_reset(struct vm *vm);
/* Whether the guest printed a kernel panic; if so, copy the panic line. */
bool platform_guest_panicked(struct vm *vm, char *line, size_t len);
/* Press the ACPI fixed-feature power button (PM1 PWRBTN_STS, then the SCI). */
int platform_power_button(struct vm *vm) WUR;

/* Device I/O handlers, exposed for unit tests. */
void i8042_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write);
void rtc_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write);
void acpi_pm_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write);
void exit_dev_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write);

/* CMOS RTC state: the index register and NMI mask; time comes from the host clock. */
struct rtc {
	uint8_t index;
	uint8_t regs[128];
};
uint8_t rtc_read_reg(struct rtc *rtc, uint8_t index, long long now);

/* ACPI PM1a event + control blocks. */
struct acpi_pm {
	pthread_mutex_t lock;
	struct vm *vm;
	uint16_t sts;  /* PM1 status: PWRBTN_STS once the button was pressed */
	uint16_t en;   /* PM1 enable */
	uint16_t cnt;  /* PM1 control */
	bool sci;      /* the SCI line's level: (sts & en) != 0 */
	/* How the SCI reaches the guest (vm_irq_line on IRQ 9); tests replace it. */
	void (*set_sci)(struct acpi_pm *pm, bool level);
	unsigned nr_presses;
};
void acpi_pm_init(struct acpi_pm *pm, struct vm *vm);
/* The power button: set PWRBTN_STS and raise the SCI if the OS enabled it. */
void acpi_pm_power_button(struct acpi_pm *pm);

struct snap_desc;
struct snap_writer;
struct snap_reader;

/*
 * Snapshots of PM1 status, enable and control (vmm/snapshot/format.h).
 * acpi_pm_load checks every field first, then drives the SCI to the restored
 * level: call it after the in-kernel irqchip is restored.
 */
struct acpi_pm_regs {           /* the node's fields; the SCI's level follows from them */
	uint16_t sts, en, cnt;
};
extern const struct snap_desc acpi_pm_snap_desc;
int acpi_pm_save(struct acpi_pm *pm, struct snap_writer *w) WUR;
int acpi_pm_load(struct acpi_pm *pm, struct snap_reader *r, int node) WUR;

/*
 * The platform devices' state, as root nodes "serial", "rtc" and "acpi-pm" of
 * a snapshot: platform_save writes them at the writer's current node;
 * platform_snap_check validates them in a parsed file without a VM;
 * platform_load applies them (after the in-kernel irqchip, before any vCPU
 * runs). 0, or -errno (-EINVAL with one line in r->err).
 */
extern const char *const platform_snap_nodes[];  /* NULL-terminated */
int platform_save(struct vm *vm, struct snap_writer *w) WUR;
int platform_snap_check(struct snap_reader *r) WUR;
int platform_load(struct vm *vm, struct snap_reader *r) WUR;
#define ACPI_PM1_PWRBTN 0x0100   /* PM1 status and enable: power button (ACPI 6.4, 4.8.3.1) */
#define ACPI_PM1_GBL    0x0020   /* PM1 enable: global lock (GBL_EN) */
#define ACPI_PM1_RTC    0x0400   /* PM1 enable: RTC wake (RTC_EN) */

/* i8042: enough of the keyboard controller for probing and reboot=k. */
struct i8042 {
	struct vm *vm;
	uint8_t ctr;         /* controller configuration byte */
	uint8_t out;         /* output buffer */
	bool out_full;
	uint8_t pending_cmd; /* a command waiting for its data byte */
};

#endif
