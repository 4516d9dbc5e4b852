#!/bin/sh
# virtio-blk write test on /dev/vda (16 MiB or more): the host checks the image
# after power-off.
#   [1 MiB, 5 MiB)   a pattern of numbered 16-byte lines, written with O_DIRECT
#   sector 777       "vmm-blk-marker" padded with zeroes, through the page cache
#   [8 MiB, 9 MiB)   zeroed with BLKZEROOUT (WRITE_ZEROES requests)
#   [10 MiB, 11 MiB) discarded
# Everything else must be unchanged.
set -e
dev=/dev/vda
[ -b $dev ] || { echo "blk-write: no $dev"; exit 1; }
awk 'BEGIN { for (i = 0; i < 262144; i++) printf "%015d\n", i }' >/tmp/pattern
echo "pattern_sha256=$(sha256sum </tmp/pattern | cut -d' ' -f1)"
dd if=/tmp/pattern of=$dev bs=64k seek=16 oflag=direct 2>/dev/null
printf 'vmm-blk-marker' | dd of=$dev bs=512 seek=777 conv=sync,notrunc 2>/dev/null
blkbench $dev zeroout 8192 1024
blkdiscard -o $((10 * 1024 * 1024)) -l $((1024 * 1024)) $dev
sync
blockdev --flushbufs $dev
# Read back what was written, bypassing the page cache.
echo "readback_sha256=$(dd if=$dev bs=64k skip=16 count=64 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)"
echo "zero_sha256=$(dd if=$dev bs=64k skip=128 count=16 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)"
