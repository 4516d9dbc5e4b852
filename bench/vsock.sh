#!/usr/bin/env bash
# virtio-vsock: vmm's in-process device through its Unix socket bridge against
# QEMU's vhost-vsock-pci (the kernel's vhost-vsock, the host's AF_VSOCK) with
# the same kernel, vCPUs and memory, alternated, RUNS each (default 3). The
# guest (guest-images/tests/vsock-bench.sh) and the host run vsockt with
# 64 KiB writes: VSOCK_MIB MiB (default 256) guest to host, then host to
# guest, each measured by the host; then the mean of VSOCK_PINGS (default 200)
# connect + 64-byte echo round trips from the host. Prints medians and the
# ratios vmm / QEMU. Needs /dev/kvm and /dev/vhost-vsock: bench/run.sh runs it
# in the nested KVM host where there is none (emulated there: read the
# ratios, not the figures).
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
RUNS=${RUNS:-3}
CPUS=${CPUS:-2}
MEM=${MEM:-512}
VSOCK_MIB=${VSOCK_MIB:-256}
VSOCK_PINGS=${VSOCK_PINGS:-200}
QEMU_MACHINE=${QEMU_MACHINE:-microvm,pcie=on,x-option-roms=off,rtc=on,isa-serial=on}
K=$BUILD/guest/vmlinuz-generic
I=$BUILD/guest/initramfs-generic.cpio.gz
TOOL=${VSOCK_TOOL:-$BUILD/guest/tools/vsockt}  # the host's copy (the guest has its own)
BYTES=$((VSOCK_MIB << 20))
CMDLINE="console=ttyS0 quiet panic=-1 reboot=k vmm.test=vsock-bench vmm.vsock_bytes=$BYTES vmm.vsock_pings=$VSOCK_PINGS"
CID=3

for f in "$BUILD/vmm" "$K" "$I" "$TOOL"; do
	[ -e "$f" ] || { echo "bench/vsock: $f is missing (make all guest-images)"; exit 1; }
done
qemu_ok=1
if [ ! -c /dev/vhost-vsock ]; then
	modprobe vhost_vsock 2>/dev/null
	[ -c /dev/vhost-vsock ] || { echo "bench/vsock: no /dev/vhost-vsock here: QEMU's column is skipped"; qemu_ok=; }
fi

DIR=$(mktemp -d "${TMPDIR:-/tmp}/vmm-vsock-bench.XXXXXX") || exit 1
trap 'rm -rf "$DIR"' EXIT

# run NAME KIND CMD...: boots the guest while the host's side runs;
# prints "g2h_MBps h2g_MBps rtt_us" as the host measured them (0 on failure).
# KIND "bridge": the host goes through vmm's socket $DIR/v.sock;
# KIND "vsock": the host uses AF_VSOCK to CID $CID (vhost-vsock).
run() {
	local name=$1 kind=$2 g2h h2g rtt vm hp
	shift 2
	g2h=$DIR/$name.g2h h2g=$DIR/$name.h2g rtt=$DIR/$name.rtt
	: >"$g2h"; : >"$h2g"; : >"$rtt"
	rm -f "$DIR"/v.sock*
	if [ "$kind" = bridge ]; then
		"$TOOL" -t 900 ulisten "$DIR/v.sock_6001" recv "$BYTES" >"$g2h" 2>&1 &
	else
		"$TOOL" -t 900 listen 6001 recv "$BYTES" >"$g2h" 2>&1 &
	fi
	hp=$!
	timeout 1200 "$@" </dev/null >"$DIR/$name.out" 2>&1 &
	vm=$!
	# One thing at a time, so the figures do not disturb each other. A VMM
	# that ends first (its guest failed) ends the wait.
	while kill -0 "$hp" 2>/dev/null; do
		kill -0 "$vm" 2>/dev/null || { sleep 2; kill "$hp" 2>/dev/null; }
		sleep 1
	done
	wait "$hp"
	if ! kill -0 "$vm" 2>/dev/null; then
		:  # nothing left to measure
	elif [ "$kind" = bridge ]; then
		"$TOOL" -t 900 -r 120 uconnect "$DIR/v.sock" 5001 send "$BYTES" >"$h2g" 2>&1
		"$TOOL" -t 600 -r 120 uconnect "$DIR/v.sock" 5003 pingpong "$VSOCK_PINGS" >"$rtt" 2>&1
	else
		"$TOOL" -t 900 -r 120 connect "$CID" 5001 send "$BYTES" >"$h2g" 2>&1
		"$TOOL" -t 600 -r 120 connect "$CID" 5003 pingpong "$VSOCK_PINGS" >"$rtt" 2>&1
	fi
	wait "$vm"
	set -- "$(sed -n 's/.*MBps=//p' "$g2h" | head -n1)" "$(sed -n 's/.*MBps=//p' "$h2g" | head -n1)" \
		"$(sed -n 's/.* us=\([0-9]*\).*/\1/p' "$rtt" | head -n1)"
	if [ -z "$1" ] || [ -z "$2" ] || [ -z "$3" ]; then
		# Said now, while this run's files are still there.
		echo "  $name: a run without all its figures; its end:" >&2
		tail -n 6 "$DIR/$name.out" "$DIR/$name.log" "$g2h" "$h2g" "$rtt" 2>/dev/null | sed 's/^/  | /' >&2
	fi
	echo "${1:-0} ${2:-0} ${3:-0}"
}

run_vmm() {
	run vmm bridge "$BUILD/vmm" --kernel "$K" --initramfs "$I" --cpus "$CPUS" --memory "${MEM}M" \
		--cmdline "$CMDLINE" --serial "file=$DIR/vmm.log" --timeout 1200 \
		--vsock "cid=$CID,socket=$DIR/v.sock"
}

run_qemu() {
	run qemu vsock qemu-system-x86_64 -M "$QEMU_MACHINE" -accel kvm -cpu host -smp "$CPUS" -m "${MEM}M" \
		-nodefaults -no-user-config -display none -no-reboot \
		-kernel "$K" -initrd "$I" -append "$CMDLINE" -serial "file:$DIR/qemu.log" \
		-device "vhost-vsock-pci,guest-cid=$CID"
}

# shellcheck source=bench/lib.sh
. bench/lib.sh

: >"$DIR/vmm.txt"
: >"$DIR/qemu.txt"
echo "bench/vsock: $RUNS runs each, alternated ($CPUS vCPUs, ${MEM} MiB, ${VSOCK_MIB} MiB each way in 64 KiB writes, $VSOCK_PINGS connect+echo round trips)"
for i in $(seq 1 "$RUNS"); do
	# Odd rounds vmm first, even rounds QEMU first: neither always follows the other.
	[ $((i % 2)) -eq 0 ] && [ -n "$qemu_ok" ] && run_qemu >>"$DIR/qemu.txt"
	run_vmm >>"$DIR/vmm.txt"
	[ $((i % 2)) -eq 1 ] && [ -n "$qemu_ok" ] && run_qemu >>"$DIR/qemu.txt"
	printf '  run %d: vmm [%s], qemu [%s]  (guest->host MB/s, host->guest MB/s, round trip us)\n' \
		"$i" "$(tail -n1 "$DIR/vmm.txt")" "$(tail -n1 "$DIR/qemu.txt")"
	printf '         round trips: vmm %s; qemu %s\n' "$(cat "$DIR/vmm.rtt")" "$(cat "$DIR/qemu.rtt" 2>/dev/null)"
done
printf '\n%-34s %12s %12s %12s\n' "" "vmm" "qemu" "vmm/qemu"
col=1
for row in "guest->host (MB/s)" "host->guest (MB/s)" "connect + echo round trip (us)"; do
	# A failed run's 0 is no figure: left out of the medians (and said above).
	v=$(cut -d' ' -f$col "$DIR/vmm.txt" | grep -vx 0 | median)
	q=$(cut -d' ' -f$col "$DIR/qemu.txt" | grep -vx 0 | median)
	printf '%-34s %12s %12s %12s\n' "$row" "$v" "$q" "$(ratio "$v" "$q")"
	col=$((col + 1))
done
echo "qemu: -M ${QEMU_MACHINE%%,*}, vhost-vsock-pci (host side: AF_VSOCK); vmm: --vsock cid=$CID,socket=PATH (host side: the Unix socket bridge)"
echo "targets: throughput >= 1.00x, round trip <= 1.00x"
