#!/bin/sh
# vhost-user-blk whose back-end dies for good (no reconnect=): a reader loops
# on /dev/vda in the background; after vmm.loop_secs seconds (default 12) the
# test prints whether the reader is still making progress, the virtio status
# of vda's device (0x40 set: DEVICE_NEEDS_RESET), and that the guest is alive.
secs=12
for word in $(cat /proc/cmdline); do
	case $word in
		vmm.loop_secs=*) secs=${word#vmm.loop_secs=} ;;
	esac
done
dev=/dev/vda
[ -b $dev ] || { echo "vhost-blk-crash: no $dev"; exit 1; }
(
	while :; do
		dd if=$dev of=/dev/null bs=1M count=4 iflag=direct 2>/dev/null
		echo x >>/tmp/passes
	done
) &
echo "loop_started"
sleep "$secs"
a=$(wc -l </tmp/passes)
sleep 2
b=$(wc -l </tmp/passes)
echo "reader_progress=$([ "$b" -gt "$a" ] && echo yes || echo no)"
echo "vda_status=$(cat /sys/block/vda/device/status 2>/dev/null || echo none)"
echo "alive=yes"
