/* MC146818 CMOS RTC: the wall-clock time in BCD, so the guest starts with the right date. */
#include <string.h>
#include <time.h>

#include "devices/platform.h"
#include "devices/rtc.h"
#include "vmm/snapshot/format.h"

#define RTC_SECONDS  0x00
#define RTC_MINUTES  0x02
#define RTC_HOURS    0x04
#define RTC_WEEKDAY  0x06
#define RTC_DAY      0x07
#define RTC_MONTH    0x08
#define RTC_YEAR     0x09
#define RTC_STATUS_A 0x0a
#define RTC_STATUS_B 0x0b
#define RTC_STATUS_C 0x0c
#define RTC_STATUS_D 0x0d
#define RTC_CENTURY  0x32
#define RTC_B_24H    0x02
#define RTC_D_VRT    0x80 /* valid RAM and time */

static uint8_t bcd(int v)
{
	return (uint8_t)(((v / 10) << 4) | (v % 10));
}

uint8_t rtc_read_reg(struct rtc *rtc, uint8_t index, long long now)
{
	time_t t = (time_t)now;
	struct tm tm;

	gmtime_r(&t, &tm);
	switch (index) {
	case RTC_SECONDS: return bcd(tm.tm_sec);
	case RTC_MINUTES: return bcd(tm.tm_min);
	case RTC_HOURS:   return bcd(tm.tm_hour);
	case RTC_WEEKDAY: return bcd(tm.tm_wday + 1);
	case RTC_DAY:     return bcd(tm.tm_mday);
	case RTC_MONTH:   return bcd(tm.tm_mon + 1);
	case RTC_YEAR:    return bcd(tm.tm_year % 100);
	case RTC_CENTURY: return bcd((tm.tm_year + 1900) / 100);
	case RTC_STATUS_A: return 0x26;     /* 32.768 kHz base, 1024 Hz; update not in progress */
	case RTC_STATUS_B: return RTC_B_24H | (rtc->regs[RTC_STATUS_B] & 0x70);
	case RTC_STATUS_C: return 0;        /* no interrupt flags */
	case RTC_STATUS_D: return RTC_D_VRT;
	default:          return rtc->regs[index & 0x7f];
	}
}

void rtc_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	struct rtc *rtc = opaque;

	if (!is_write)
		memset(data, 0, len);
	if (offset == 0) {
		if (is_write)
			rtc->index = data[0] & 0x7f; /* bit 7 masks NMIs; nothing to model */
		else
			data[0] = rtc->index;
		return;
	}
	if (is_write) {
		/* The guest may set alarms and the interrupt enables; it may not move our clock. */
		if (rtc->index >= RTC_STATUS_A)
			rtc->regs[rtc->index] = data[0];
	} else {
		data[0] = rtc_read_reg(rtc, rtc->index, (long long)time(NULL));
	}
}

/* ---- snapshots -------------------------------------------------------------------- */

static const struct snap_field rtc_snap_fields[] = {
	SNAP_UINT_R(struct rtc, index, 0, 0x7f),
	SNAP_ARRAY_N(struct rtc, regs, "cmos"),
};

const struct snap_desc rtc_snap_desc = SNAP_DESC(struct rtc, "rtc", 1, rtc_snap_fields, NULL);

int rtc_save(const struct rtc *rtc, struct snap_writer *w)
{
	return snap_write(w, &rtc_snap_desc, rtc);
}

int rtc_load(struct rtc *rtc, struct snap_reader *r, int node)
{
	/* snap_read writes rtc only once every field passed. */
	return snap_read(r, node, &rtc_snap_desc, rtc);
}
