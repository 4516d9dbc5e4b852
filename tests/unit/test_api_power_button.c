/*
 * devices/acpi_pm: the fixed-feature power button behind PUT vm.power-button.
 * PWRBTN_STS is set by a press, the SCI is high exactly while an enabled
 * status bit is set, status bits clear on writing 1, S5 still powers off.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "devices/platform.h"
#include "vmm/snapshot/format.h"

#define STS 0
#define EN  2
#define CNT 4

struct sci_log {
	struct acpi_pm pm;   /* first: the callback gets &pm */
	int raises, lowers;
	bool level;
};

static void log_sci(struct acpi_pm *pm, bool level)
{
	struct sci_log *l = (struct sci_log *)pm;

	l->level = level;
	if (level)
		l->raises++;
	else
		l->lowers++;
}

static uint16_t rd16(struct acpi_pm *pm, unsigned off)
{
	uint16_t v;

	acpi_pm_io(pm, off, (uint8_t *)&v, 2, false);
	return v;
}

static void wr16(struct acpi_pm *pm, unsigned off, uint16_t v)
{
	acpi_pm_io(pm, off, (uint8_t *)&v, 2, true);
}

static void setup_log(struct sci_log *l)
{
	memset(l, 0, sizeof(*l));
	acpi_pm_init(&l->pm, NULL);
	l->pm.set_sci = log_sci;
}

static void test_press_with_event_enabled(void **state)
{
	struct sci_log l;

	(void)state;
	setup_log(&l);
	/* ACPICA enables the power-button event when the button driver binds. */
	wr16(&l.pm, EN, ACPI_PM1_PWRBTN);
	assert_int_equal(rd16(&l.pm, EN), ACPI_PM1_PWRBTN);
	assert_int_equal(l.raises, 0);
	acpi_pm_power_button(&l.pm);
	assert_int_equal(rd16(&l.pm, STS) & ACPI_PM1_PWRBTN, ACPI_PM1_PWRBTN);
	assert_true(l.level);
	assert_int_equal(l.raises, 1);
	/* A second press before the OS looked: still one level-triggered SCI. */
	acpi_pm_power_button(&l.pm);
	assert_int_equal(l.raises, 1);
	/* Writing 0 to status clears nothing; writing the bit clears it and drops the SCI. */
	wr16(&l.pm, STS, 0);
	assert_true(l.level);
	wr16(&l.pm, STS, ACPI_PM1_PWRBTN);
	assert_int_equal(rd16(&l.pm, STS), 0);
	assert_false(l.level);
	assert_int_equal(l.lowers, 1);
	/* The enable register is kept across the status write. */
	assert_int_equal(rd16(&l.pm, EN), ACPI_PM1_PWRBTN);
	assert_int_equal(l.pm.nr_presses, 2);
}

static void test_press_before_enable(void **state)
{
	struct sci_log l;
	uint32_t both;

	(void)state;
	setup_log(&l);
	acpi_pm_power_button(&l.pm);
	assert_int_equal(l.raises, 0); /* no driver yet: status only */
	assert_int_equal(rd16(&l.pm, STS), ACPI_PM1_PWRBTN);
	/* Enabling with the status pending raises the SCI at once. */
	wr16(&l.pm, EN, ACPI_PM1_PWRBTN);
	assert_true(l.level);
	/* A 32-bit write over status and enable: clear status, disable the event. */
	both = ACPI_PM1_PWRBTN;
	acpi_pm_io(&l.pm, STS, (uint8_t *)&both, 4, true);
	assert_false(l.level);
	assert_int_equal(rd16(&l.pm, EN), 0);
	/* Unknown enable bits are not kept; GBL_EN and RTC_EN are (ACPICA reads them back). */
	wr16(&l.pm, EN, 0xffff);
	assert_int_equal(rd16(&l.pm, EN), ACPI_PM1_PWRBTN | ACPI_PM1_GBL | ACPI_PM1_RTC);
}

static void test_control_and_bounds(void **state)
{
	struct sci_log l;
	uint8_t b[4] = { 0xaa, 0xaa, 0xaa, 0xaa };

	(void)state;
	setup_log(&l);
	assert_int_equal(rd16(&l.pm, CNT) & 1, 1); /* SCI_EN */
	wr16(&l.pm, CNT, 0);
	assert_int_equal(rd16(&l.pm, CNT) & 1, 1);
	/* S5 with no VM attached: nothing to end, and nothing crashes. */
	wr16(&l.pm, CNT, (uint16_t)(5u << 10 | 1u << 13));
	/* Out-of-range accesses read as zero and write nothing. */
	acpi_pm_io(&l.pm, 6, b, 2, false);
	assert_int_equal(b[0], 0);
	acpi_pm_io(&l.pm, 5, b, 2, false);
	acpi_pm_io(&l.pm, 5, b, 4, true);
	assert_int_equal(l.raises, 0);
}

/* A state file with one acpi-pm node holding regs (written through the table, unchecked). */
static void *pm_blob(const struct acpi_pm_regs *regs, size_t *len)
{
	struct snap_writer w;
	const void *blob;
	void *copy;

	assert_int_equal(snap_writer_init(&w), 0);
	assert_int_equal(snap_begin_node(&w, "acpi-pm"), 0);
	assert_int_equal(snap_write(&w, &acpi_pm_snap_desc, regs), 0);
	assert_int_equal(snap_end_node(&w), 0);
	assert_int_equal(snap_writer_finish(&w, &blob, len), 0);
	copy = malloc(*len);
	memcpy(copy, blob, *len);
	snap_writer_free(&w);
	return copy;
}

static int pm_load(struct acpi_pm *pm, const void *blob, size_t len, char *err, size_t errlen)
{
	struct snap_reader r;
	int ret;

	assert_int_equal(snap_reader_open(&r, blob, len), 0);
	ret = acpi_pm_load(pm, &r, snap_node(&r, 0, "acpi-pm"));
	snprintf(err, errlen, "%s", r.err);
	snap_reader_close(&r);
	return ret;
}

/* Save, load into a fresh PM: the registers come back and the SCI is driven to their level. */
static void test_snapshot_round_trip(void **state)
{
	struct sci_log a, b;
	struct snap_writer w;
	struct acpi_pm_regs bad;
	const void *blob;
	char err[SNAP_ERR_LEN];
	size_t len;
	void *copy;
	char desc_err[128];

	(void)state;
	assert_true(snap_desc_valid(&acpi_pm_snap_desc, desc_err, sizeof(desc_err)));
	setup_log(&a);
	wr16(&a.pm, EN, ACPI_PM1_PWRBTN);
	acpi_pm_power_button(&a.pm);   /* pressed, not yet acknowledged: SCI high */
	assert_true(a.level);
	assert_int_equal(snap_writer_init(&w), 0);
	assert_int_equal(snap_begin_node(&w, "acpi-pm"), 0);
	assert_int_equal(acpi_pm_save(&a.pm, &w), 0);
	assert_int_equal(snap_end_node(&w), 0);
	assert_int_equal(snap_writer_finish(&w, &blob, &len), 0);
	copy = malloc(len);
	memcpy(copy, blob, len);
	snap_writer_free(&w);

	setup_log(&b);
	assert_int_equal(pm_load(&b.pm, copy, len, err, sizeof(err)), 0);
	free(copy);
	assert_int_equal(rd16(&b.pm, STS) & ACPI_PM1_PWRBTN, ACPI_PM1_PWRBTN);
	assert_int_equal(rd16(&b.pm, EN), ACPI_PM1_PWRBTN);
	assert_true(b.level);
	assert_int_equal(b.raises, 1);
	/* The guest acknowledges on the restored side: the line drops. */
	wr16(&b.pm, STS, ACPI_PM1_PWRBTN);
	assert_false(b.level);

	/* Refused, and nothing changed: SCI_EN clear, SLP_EN latched, unknown status bits. */
	setup_log(&b);
	bad = (struct acpi_pm_regs){ .cnt = 0 };
	copy = pm_blob(&bad, &len);
	assert_int_equal(pm_load(&b.pm, copy, len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "SCI_EN"));
	free(copy);
	bad = (struct acpi_pm_regs){ .cnt = 1 | 1u << 13 };
	copy = pm_blob(&bad, &len);
	assert_int_equal(pm_load(&b.pm, copy, len, err, sizeof(err)), -EINVAL);
	free(copy);
	bad = (struct acpi_pm_regs){ .sts = 0x8001, .cnt = 1 };
	copy = pm_blob(&bad, &len);
	assert_int_equal(pm_load(&b.pm, copy, len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "sts"));
	free(copy);
	bad = (struct acpi_pm_regs){ .en = 0x0001, .cnt = 1 };   /* TMR_EN: in range, not kept */
	copy = pm_blob(&bad, &len);
	assert_int_equal(pm_load(&b.pm, copy, len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "en"));
	free(copy);
	assert_int_equal(rd16(&b.pm, STS), 0);
	assert_int_equal(b.raises, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_press_with_event_enabled),
		cmocka_unit_test(test_press_before_enable),
		cmocka_unit_test(test_control_and_bounds),
		cmocka_unit_test(test_snapshot_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
