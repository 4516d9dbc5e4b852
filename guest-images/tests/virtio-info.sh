#!/bin/sh
# Prints what the guest's virtio drivers negotiated, to compare one VMM's devices
# with another's: each virtio device's id and feature bits, each virtio disk's
# block-layer limits, and the virtio interrupt lines. With vmm.info_dmesg=1 the
# kernel log follows (its timestamps show where a boot spent its time).
for dev in /sys/bus/virtio/devices/virtio*; do
	[ -d "$dev" ] || continue
	echo "$(basename "$dev") device=$(cat "$dev/device") features=$(cat "$dev/features")"
done
for q in /sys/block/vd*/queue; do
	[ -d "$q" ] || continue
	disk=${q%/queue}
	line="$(basename "$disk"):"
	for f in nr_requests max_sectors_kb max_hw_sectors_kb max_segments max_segment_size \
		logical_block_size write_cache discard_max_bytes write_zeroes_max_bytes; do
		line="$line $f=$(cat "$q/$f" 2>/dev/null)"
	done
	echo "$line hw_queues=$(ls "$disk/mq" 2>/dev/null | wc -l)"
done
grep virtio /proc/interrupts
grep -q 'vmm.info_dmesg=1' /proc/cmdline && dmesg
exit 0
