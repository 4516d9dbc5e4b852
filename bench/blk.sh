#!/usr/bin/env bash
# virtio-blk throughput: vmm (io_uring and thread-pool engines) against QEMU's
# virtio-blk-pci on the same raw image, kernel, vCPUs and memory, alternated,
# RUNS each (default 3). The guest runs blkbench with O_DIRECT: sequential
# write and read of BLK_MIB MiB (default 64) in 1 MiB blocks, then 4 KiB
# random reads from 4 threads for BLK_SECS seconds (default 5). Prints medians
# and the ratio vmm / QEMU. Needs /dev/kvm: bench/run.sh runs it in the nested
# KVM host where there is none (emulated there: read the ratios, not the figures).
#
# Both VMMs use the host page cache (vmm opens the image buffered; QEMU's
# default cache=writeback), so the figures measure the virtualisation path.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RUNS=${RUNS:-3}
CPUS=${CPUS:-2}
MEM=${MEM:-512}
BLK_MIB=${BLK_MIB:-64}
BLK_SECS=${BLK_SECS:-5}
QEMU_MACHINE=${QEMU_MACHINE:-microvm,pcie=on,x-option-roms=off,rtc=on,isa-serial=on}
K=$BUILD/guest/vmlinuz-generic
I=$BUILD/guest/initramfs-generic.cpio.gz
# The image lives on the host's tmpfs when there is one, so the disk under it does not dominate.
DIR=$(mktemp -d "${BLK_BENCH_DIR:-/tmp}/vmm-blk-bench.XXXXXX") || exit 1
trap 'rm -rf "$DIR"' EXIT
IMG=$DIR/disk.img
CMDLINE="console=ttyS0 quiet panic=-1 reboot=k vmm.test=blk-bench vmm.blk_mib=$BLK_MIB vmm.blk_secs=$BLK_SECS"

truncate -s $(((BLK_MIB + 64) << 20)) "$IMG"
# Allocate every block first, so no run pays for it.
dd if=/dev/zero of="$IMG" bs=1M count=$((BLK_MIB + 64)) conv=notrunc status=none

# run NAME CMD...: boots, prints "seqwrite seqread randread" from the guest's log (0 on failure).
run() {
	local log=$DIR/$1.log
	shift
	rm -f "$log"
	timeout 900 "$@" </dev/null >"$log.out" 2>&1
	awk -F= '/^seqwrite MBps=/ { w = $2 } /^seqread MBps=/ { r = $2 } /^randread iops=/ { i = $2 }
		END { printf "%s %s %s\n", w + 0, r + 0, i + 0 }' "$log" 2>/dev/null || echo "0 0 0"
}

run_vmm() {
	run "vmm-$1" "$BUILD/vmm" --kernel "$K" --initramfs "$I" --cpus "$CPUS" --memory "${MEM}M" \
		--cmdline "$CMDLINE" --serial "file=$DIR/vmm-$1.log" --timeout 900 \
		--disk "path=$IMG,io=$1"
}

run_qemu() {
	run qemu qemu-system-x86_64 -M "$QEMU_MACHINE" -accel kvm -cpu host -smp "$CPUS" -m "${MEM}M" \
		-nodefaults -no-user-config -display none -no-reboot \
		-kernel "$K" -initrd "$I" -append "$CMDLINE" -serial "file:$DIR/qemu.log" \
		-drive "file=$IMG,if=none,id=d0,format=raw" -device virtio-blk-pci,drive=d0
}

# shellcheck source=bench/lib.sh
. bench/lib.sh

: >"$DIR/uring.txt"
: >"$DIR/threads.txt"
: >"$DIR/qemu.txt"
echo "bench/blk: $RUNS runs each, alternated ($CPUS vCPUs, ${MEM} MiB, ${BLK_MIB} MiB sequential, ${BLK_SECS} s random)"
for i in $(seq 1 "$RUNS"); do
	run_vmm uring >>"$DIR/uring.txt"
	run_vmm threads >>"$DIR/threads.txt"
	run_qemu >>"$DIR/qemu.txt"
	printf '  run %d: vmm io_uring [%s], vmm threads [%s], qemu [%s]  (seqwrite MB/s, seqread MB/s, randread IOPS)\n' \
		"$i" "$(tail -n1 "$DIR/uring.txt")" "$(tail -n1 "$DIR/threads.txt")" "$(tail -n1 "$DIR/qemu.txt")"
done
for f in uring threads qemu; do
	if grep -q '^0 ' "$DIR/$f.txt"; then
		echo "  warning: some $f runs produced no figures; their log:"
		tail -n 5 "$DIR/$( [ $f = qemu ] && echo qemu || echo vmm-$f ).log.out" 2>/dev/null | sed 's/^/  | /'
	fi
done

printf '\n%-22s %12s %12s %12s %14s %14s\n' "" "vmm uring" "vmm threads" "qemu" "uring/qemu" "threads/qemu"
col=1
for row in "seq write (MB/s)" "seq read (MB/s)" "4K rand read (IOPS)"; do
	u=$(cut -d' ' -f$col "$DIR/uring.txt" | median)
	t=$(cut -d' ' -f$col "$DIR/threads.txt" | median)
	q=$(cut -d' ' -f$col "$DIR/qemu.txt" | median)
	printf '%-22s %12s %12s %12s %14s %14s\n' "$row" "$u" "$t" "$q" "$(ratio "$u" "$q")" "$(ratio "$t" "$q")"
	col=$((col + 1))
done
echo "qemu: -M ${QEMU_MACHINE%%,*}, virtio-blk-pci, default aio and cache; vmm: --disk path=IMG,io=ENGINE"
