#!/bin/sh
# virtio-blk read test: what the guest sees of /dev/vda (size, serial, queues,
# read-only flag, discard limits) and checksums of its first 8 MiB, read once
# straight and once by four parallel O_DIRECT readers; and, when there is one,
# what it sees of a second disk /dev/vdb. The host compares.
set -e
dev=/dev/vda
[ -b $dev ] || { echo "blk-read: no $dev"; ls /sys/block; exit 1; }
q=/sys/block/vda/queue
echo "vda_sectors=$(cat /sys/block/vda/size)"
echo "vda_ro=$(cat /sys/block/vda/ro)"
echo "vda_serial=$(cat /sys/block/vda/serial 2>/dev/null || echo none)"
echo "vda_queues=$(ls /sys/block/vda/mq | wc -l)"
echo "vda_lbs=$(cat $q/logical_block_size)"
echo "vda_discard_max=$(cat $q/discard_max_bytes)"
echo "vda_wz_max=$(cat $q/write_zeroes_max_bytes)"
echo "vda_sha256=$(dd if=$dev bs=1M count=8 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)"
for i in 0 1 2 3; do
	dd if=$dev bs=64k skip=$((i * 32)) count=32 iflag=direct 2>/dev/null | sha256sum >/tmp/part$i &
done
wait
echo "vda_par_sha256=$(cat /tmp/part0 /tmp/part1 /tmp/part2 /tmp/part3 | sha256sum | cut -d' ' -f1)"
# The last sector.
sectors=$(cat /sys/block/vda/size)
echo "vda_last_sha256=$(dd if=$dev bs=512 skip=$((sectors - 1)) count=1 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)"
if [ -b /dev/vdb ]; then
	echo "vdb_ro=$(cat /sys/block/vdb/ro)"
	echo "vdb_serial=$(cat /sys/block/vdb/serial 2>/dev/null || echo none)"
	echo "vdb_sha256=$(dd if=/dev/vdb bs=1M count=1 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)"
fi
