#!/bin/sh
# vhost-user-blk while the back-end dies and comes back: reads the first 4 MiB
# of /dev/vda with O_DIRECT again and again for vmm.loop_secs seconds (default
# 60) and compares every pass with the first. With vmm.loop_write=1 each pass
# also writes one of two 4 MiB patterns (A, B in turn) at 8 MiB and reads it
# back. Prints loop_started (the host kills the back-end then), the passes,
# the passes that read wrong bytes, the longest pass in ms (the pause while
# the back-end was away), and the pattern written last.
set -e
secs=60 write=0
for word in $(cat /proc/cmdline); do
	case $word in
		vmm.loop_secs=*) secs=${word#vmm.loop_secs=} ;;
		vmm.loop_write=*) write=${word#vmm.loop_write=} ;;
	esac
done
dev=/dev/vda
[ -b $dev ] || { echo "vhost-blk-loop: no $dev"; exit 1; }
ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }
if [ "$write" = 1 ]; then
	for p in A B; do
		awk -v p=$p 'BEGIN { for (i = 0; i < 262144; i++) printf "%s%014d\n", p, i }' >/tmp/pattern$p
	done
	sha_A=$(sha256sum </tmp/patternA | cut -d' ' -f1)
	sha_B=$(sha256sum </tmp/patternB | cut -d' ' -f1)
fi
first=$(dd if=$dev bs=1M count=4 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
echo "first_sha256=$first"
echo "loop_started"
start=$(ms)
passes=0 bad=0 longest=0 last=none
# A pass runs from the end of the one before (t0), so a pause that lands in
# the loop's own bookkeeping still counts in the pass it delays.
t0=$start
while [ $(( $(ms) - start )) -lt $((secs * 1000)) ]; do
	sha=$(dd if=$dev bs=1M count=4 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
	[ "$sha" = "$first" ] || bad=$((bad + 1))
	if [ "$write" = 1 ]; then
		p=A
		[ $((passes % 2)) -eq 0 ] || p=B
		dd if=/tmp/pattern$p of=$dev bs=1M seek=8 oflag=direct conv=notrunc 2>/dev/null
		last=$p
		got=$(dd if=$dev bs=1M skip=8 count=4 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
		case $p in A) want=$sha_A ;; *) want=$sha_B ;; esac
		[ "$got" = "$want" ] || bad=$((bad + 1))
	fi
	t1=$(ms)
	[ $((t1 - t0)) -le "$longest" ] || longest=$((t1 - t0))
	t0=$t1
	passes=$((passes + 1))
done
echo "passes=$passes"
echo "bad_passes=$bad"
echo "longest_pass_ms=$longest"
echo "last_written=$last"
echo "last_sha256=$(dd if=$dev bs=1M count=4 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)"
