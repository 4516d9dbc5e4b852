#!/bin/sh
# Guest half of bench/blk.sh: O_DIRECT sequential read and write and 4 KiB
# random reads on /dev/vda with blkbench. MiB and seconds come from the kernel
# command line (vmm.blk_mib=N, vmm.blk_secs=N).
set -e
mib=64 secs=5
for word in $(cat /proc/cmdline); do
	case $word in
		vmm.blk_mib=*) mib=${word#vmm.blk_mib=} ;;
		vmm.blk_secs=*) secs=${word#vmm.blk_secs=} ;;
	esac
done
dev=/dev/vda
[ -b $dev ] || { echo "blk-bench: no $dev"; exit 1; }
blkbench $dev seqwrite "$mib"
blkbench $dev seqread "$mib"
blkbench $dev randread "$secs" 4
