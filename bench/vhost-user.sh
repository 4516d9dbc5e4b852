#!/usr/bin/env bash
# vhost-user-blk throughput: vmm (--vhost-user type=blk) against QEMU's
# vhost-user-blk-pci, both attached in turn to the same qemu-storage-daemon
# export, same kernel, vCPUs and memory, alternated, RUNS each (default 3).
# The guest runs blkbench with O_DIRECT (as bench/blk.sh): sequential write and
# read of BLK_MIB MiB (default 64) in 1 MiB blocks, 4 KiB random reads from 4
# threads for BLK_SECS seconds (default 5). Prints medians and vmm / QEMU.
#
# Then the reconnect figure: the guest reads 4 MiB in a loop, the back-end is
# killed (SIGKILL) and started again OUTAGE_S seconds later (default 2); vmm
# runs with reconnect=1. Printed: the outage as the host saw it (kill to the
# new socket listening), vmm's own "back after" time, and the guest's longest
# read pass; the longest pass minus the outage is the time from the back-end's
# restart to the guest's next completed read (give or take one pass).
#
# Needs /dev/kvm: bench/run.sh runs it in the nested KVM host where there is
# none (emulated there: read the ratios, not the figures).
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
RUNS=${RUNS:-3}
CPUS=${CPUS:-2}
MEM=${MEM:-512}
BLK_MIB=${BLK_MIB:-64}
BLK_SECS=${BLK_SECS:-5}
OUTAGE_S=${OUTAGE_S:-2}
VHU_OPTS=${VHU_OPTS:+,$VHU_OPTS}  # more --vhost-user options for vmm's runs, e.g. queue-size=128
QSD=${QSD:-qemu-storage-daemon}
QEMU_MACHINE=${QEMU_MACHINE:-microvm,pcie=on,x-option-roms=off,rtc=on,isa-serial=on}
K=$BUILD/guest/vmlinuz-generic
I=$BUILD/guest/initramfs-generic.cpio.gz
DIR=$(mktemp -d "${BLK_BENCH_DIR:-/tmp}/vmm-vhu-bench.XXXXXX") || exit 1
QSD_PID=
cleanup() {
	[ -n "$QSD_PID" ] && kill "$QSD_PID" 2>/dev/null && wait "$QSD_PID" 2>/dev/null
	rm -rf "$DIR"
}
trap cleanup EXIT
IMG=$DIR/disk.img
SOCK=$DIR/blk.sock
CMDLINE="console=ttyS0 quiet panic=-1 reboot=k vmm.test=blk-bench vmm.blk_mib=$BLK_MIB vmm.blk_secs=$BLK_SECS"

command -v "$QSD" >/dev/null || { echo "bench/vhost-user: $QSD is not installed; skipped"; exit 0; }
truncate -s $(((BLK_MIB + 64) << 20)) "$IMG"
dd if=/dev/zero of="$IMG" bs=1M count=$((BLK_MIB + 64)) conv=notrunc status=none

start_qsd() {
	local i
	rm -f "$SOCK"
	"$QSD" --blockdev "driver=file,node-name=file0,filename=$IMG,cache.direct=off" \
		--export "type=vhost-user-blk,id=exp0,node-name=file0,addr.type=unix,addr.path=$SOCK,writable=on" \
		>>"$DIR/qsd.log" 2>&1 &
	QSD_PID=$!
	for i in $(seq 200); do
		[ -S "$SOCK" ] && return 0
		sleep 0.05
	done
	echo "bench/vhost-user: qemu-storage-daemon did not start: $(tail -n 2 "$DIR/qsd.log")"
	exit 1
}

run() {
	local log=$DIR/$1.log fig
	shift
	rm -f "$log"
	timeout 900 "$@" </dev/null >"$log.out" 2>&1
	fig=$(awk -F= '/^seqwrite MBps=/ { w = $2 } /^seqread MBps=/ { r = $2 } /^randread iops=/ { i = $2 }
		END { printf "%s %s %s\n", w + 0, r + 0, i + 0 }' "$log" 2>/dev/null || echo "0 0 0")
	echo "$fig"
	# A run that lost a figure says why (its last console line and the VMM's last words).
	case " $fig " in *" 0 "*)
		{ echo "  ($(basename "$log" .log) run without all figures: console '$(tail -n 1 "$log" 2>/dev/null | tr -d '\r')'," \
			"stderr '$(tail -n 2 "$log.out" | tr '\n' ' ')')"; } >>"$DIR/problems.txt" ;;
	esac
}

run_vmm() {
	run vmm "$BUILD/vmm" --kernel "$K" --initramfs "$I" --cpus "$CPUS" --memory "${MEM}M" \
		--cmdline "$CMDLINE" --serial "file=$DIR/vmm.log" --timeout 900 \
		--vhost-user "type=blk,socket=$SOCK$VHU_OPTS"
}

run_qemu() {
	run qemu qemu-system-x86_64 -M "$QEMU_MACHINE,memory-backend=mem" -accel kvm -cpu host \
		-smp "$CPUS" -m "${MEM}M" -object "memory-backend-memfd,id=mem,size=${MEM}M,share=on" \
		-nodefaults -no-user-config -display none -no-reboot \
		-kernel "$K" -initrd "$I" -append "$CMDLINE" -serial "file:$DIR/qemu.log" \
		-chardev "socket,id=c0,path=$SOCK" -device vhost-user-blk-pci,chardev=c0,num-queues=1
}

# shellcheck source=bench/lib.sh
. bench/lib.sh

start_qsd
: >"$DIR/vmm.txt"
: >"$DIR/qemu.txt"
echo "bench/vhost-user: $RUNS runs each, alternated, one qemu-storage-daemon export ($CPUS vCPUs, ${MEM} MiB, ${BLK_MIB} MiB sequential, ${BLK_SECS} s random)"
for i in $(seq 1 "$RUNS"); do
	# Odd rounds vmm first, even rounds QEMU first: neither always follows the other.
	if [ $((i % 2)) -eq 1 ]; then
		run_vmm >>"$DIR/vmm.txt"
		run_qemu >>"$DIR/qemu.txt"
	else
		run_qemu >>"$DIR/qemu.txt"
		run_vmm >>"$DIR/vmm.txt"
	fi
	printf '  run %d: vmm [%s], qemu [%s]  (seqwrite MB/s, seqread MB/s, randread IOPS)\n' \
		"$i" "$(tail -n1 "$DIR/vmm.txt")" "$(tail -n1 "$DIR/qemu.txt")"
done
[ -s "$DIR/problems.txt" ] && cat "$DIR/problems.txt"
printf '\n%-22s %12s %12s %12s\n' "vhost-user-blk" "vmm" "qemu" "vmm/qemu"
col=1
for row in "seq write (MB/s)" "seq read (MB/s)" "4K rand read (IOPS)"; do
	# Medians of the runs that produced the figure.
	v=$(cut -d' ' -f$col "$DIR/vmm.txt" | grep -v '^0$' | median)
	q=$(cut -d' ' -f$col "$DIR/qemu.txt" | grep -v '^0$' | median)
	printf '%-22s %12s %12s %12s\n' "$row" "$v" "$q" "$(ratio "$v" "$q")"
	col=$((col + 1))
done
echo "qemu: -M ${QEMU_MACHINE%%,*}, memory-backend-memfd share=on, vhost-user-blk-pci num-queues=1; vmm: --vhost-user type=blk$VHU_OPTS"

# --- back-end restart to the guest's next read -----------------------------------------
LOOP_LOG=$DIR/loop.log
rm -f "$LOOP_LOG"
"$BUILD/vmm" --kernel "$K" --initramfs "$I" --cpus "$CPUS" --memory "${MEM}M" \
	--cmdline "console=ttyS0 quiet panic=-1 reboot=k vmm.test=vhost-blk-loop vmm.loop_secs=20" \
	--serial "file=$LOOP_LOG" --timeout 600 --vhost-user "type=blk,socket=$SOCK,reconnect=1" \
	</dev/null >"$LOOP_LOG.out" 2>&1 &
VMM_PID=$!
for i in $(seq 3000); do
	grep -q '^loop_started' "$LOOP_LOG" 2>/dev/null && break
	kill -0 "$VMM_PID" 2>/dev/null || break
	sleep 0.1
done
sleep 3
t_kill=$(date +%s%N)
kill -KILL "$QSD_PID"
wait "$QSD_PID" 2>/dev/null
sleep "$OUTAGE_S"
start_qsd
t_up=$(date +%s%N)
wait "$VMM_PID"
rc=$?
outage=$(((t_up - t_kill) / 1000000))
back=$(grep -o 'is back after [0-9]*' "$LOOP_LOG.out" | grep -o '[0-9]*$' | head -n 1)
longest=$(sed -n 's/^longest_pass_ms=//p' "$LOOP_LOG" | tr -d '\r')
bad=$(sed -n 's/^bad_passes=//p' "$LOOP_LOG" | tr -d '\r')
echo
echo "back-end restart (reconnect=1, SIGKILL, restarted ${OUTAGE_S} s later; vmm exit $rc):"
printf '  outage seen by the host (kill to listening again)   %6s ms\n' "$outage"
printf '  vmm: back-end lost to set-up replayed                %6s ms\n' "${back:--}"
printf '  guest: longest read pass                             %6s ms\n' "${longest:--}"
if [ -n "$longest" ]; then
	printf '  restart to the guest'"'"'s next completed read         ~%5s ms\n' "$((longest - outage))"
fi
printf '  passes that read wrong bytes                         %6s\n' "${bad:--}"
