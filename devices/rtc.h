/*
 * MC146818 CMOS RTC snapshots. struct rtc (devices/platform.h) holds the
 * index register and the 128 bytes of CMOS, registers A-D among them; the
 * time itself is the host's clock, so a restored guest reads the time of
 * day it is now, as after a suspend to RAM.
 *
 * rtc_save writes the current node of w; rtc_load reads node and changes
 * rtc only when every field passed (0, or -EINVAL with one line in r->err).
 * One table (rtc_snap_desc) for both.
 */
#ifndef DEVICES_RTC_H
#define DEVICES_RTC_H

#include "vmm/util.h"

struct rtc;
struct snap_desc;
struct snap_writer;
struct snap_reader;

extern const struct snap_desc rtc_snap_desc;
int rtc_save(const struct rtc *rtc, struct snap_writer *w) WUR;
int rtc_load(struct rtc *rtc, struct snap_reader *r, int node) WUR;

#endif
