#!/usr/bin/env bash
# virtio-net throughput: vmm against QEMU's virtio-net-pci (userspace, no
# vhost) on the same tap, kernel, vCPUs and memory, alternated, RUNS each
# (default 3). The guest runs netxfer over TCP: NET_MIB MiB (default 256)
# guest to host, then the same host to guest; the host's end measures both.
# Prints medians and the ratio vmm / QEMU. Needs root (a private network
# namespace and a tap at 10.0.2.1/24 in it; nothing leaves it) and /dev/kvm:
# bench/run.sh runs it in the nested KVM host where there is none (emulated
# there: read the ratios, not the figures).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RUNS=${RUNS:-3}
CPUS=${CPUS:-2}
MEM=${MEM:-512}
NET_MIB=${NET_MIB:-256}
QEMU_MACHINE=${QEMU_MACHINE:-microvm,pcie=on,x-option-roms=off,rtc=on,isa-serial=on}
K=$BUILD/guest/vmlinuz-generic
I=$BUILD/guest/initramfs-generic.cpio.gz
TOOL=$BUILD/guest/tools/netxfer
NS=vmmbench-net$$
TAP=vmmbtap0
MAC=02:00:0a:00:02:0f
BYTES=$((NET_MIB << 20))
CMDLINE="console=ttyS0 quiet panic=-1 reboot=k vmm.test=net-bench vmm.net_bytes=$BYTES"

if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null; then
	echo "bench/net: skipped (needs root and iproute2 for a network namespace and a tap)"
	exit 0
fi
for f in "$BUILD/vmm" "$K" "$I" "$TOOL"; do
	[ -e "$f" ] || { echo "bench/net: $f is missing (make all guest-images)"; exit 1; }
done

DIR=$(mktemp -d "${TMPDIR:-/tmp}/vmm-net-bench.XXXXXX") || exit 1
cleanup() {
	ip netns del "$NS" 2>/dev/null
	rm -rf "$DIR"
}
trap cleanup EXIT
ns() { ip netns exec "$NS" "$@"; }
ip netns add "$NS" && ns ip link set lo up && ns ip tuntap add "$TAP" mode tap &&
	ns ip addr add 10.0.2.1/24 dev "$TAP" && ns ip link set "$TAP" up ||
	{ echo "bench/net: cannot set up namespace $NS with tap $TAP"; exit 1; }

# run NAME CMD...: boots (in the namespace) with the host's ends listening;
# prints "g2h_mbit h2g_mbit" as the host measured them (0 on failure).
run() {
	local name=$1 g2h h2g p1 p2
	shift
	g2h=$DIR/$name.g2h
	h2g=$DIR/$name.h2g
	NETXFER_TIMEOUT=900 ns "$TOOL" recv :5001 >"$g2h" 2>&1 &
	p1=$!
	NETXFER_TIMEOUT=900 ns "$TOOL" send :5002 "$BYTES" 2 >"$h2g" 2>&1 &
	p2=$!
	timeout 900 ip netns exec "$NS" "$@" </dev/null >"$DIR/$name.out" 2>&1
	# A guest that failed leaves the listeners waiting.
	sleep 1
	kill "$p1" "$p2" 2>/dev/null
	wait "$p1" "$p2" 2>/dev/null
	printf '%s %s\n' "$(sed -n 's/.*mbit=//p' "$g2h" | head -n1)" "$(sed -n 's/.*mbit=//p' "$h2g" | head -n1)" |
		awk '{ printf "%s %s\n", $1 + 0, $2 + 0 }'
}

run_vmm() {
	run vmm "$BUILD/vmm" --kernel "$K" --initramfs "$I" --cpus "$CPUS" --memory "${MEM}M" \
		--cmdline "$CMDLINE" --serial "file=$DIR/vmm.log" --timeout 900 --net "tap=$TAP,mac=$MAC"
}

run_qemu() {
	run qemu qemu-system-x86_64 -M "$QEMU_MACHINE" -accel kvm -cpu host -smp "$CPUS" -m "${MEM}M" \
		-nodefaults -no-user-config -display none -no-reboot \
		-kernel "$K" -initrd "$I" -append "$CMDLINE" -serial "file:$DIR/qemu.log" \
		-netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no,vhost=off" \
		-device "virtio-net-pci,netdev=n0,mac=$MAC"
}

# shellcheck source=bench/lib.sh
. bench/lib.sh

: >"$DIR/vmm.txt"
: >"$DIR/qemu.txt"
echo "bench/net: $RUNS runs each, alternated ($CPUS vCPUs, ${MEM} MiB, ${NET_MIB} MiB each way over TCP on a tap)"
for i in $(seq 1 "$RUNS"); do
	# Odd rounds vmm first, even rounds QEMU first: neither always follows the other.
	[ $((i % 2)) -eq 0 ] && run_qemu >>"$DIR/qemu.txt"
	run_vmm >>"$DIR/vmm.txt"
	[ $((i % 2)) -eq 1 ] && run_qemu >>"$DIR/qemu.txt"
	printf '  run %d: vmm [%s], qemu [%s]  (guest->host, host->guest Mbit/s)\n' \
		"$i" "$(tail -n1 "$DIR/vmm.txt")" "$(tail -n1 "$DIR/qemu.txt")"
done
for f in vmm qemu; do
	if grep -q '^0 ' "$DIR/$f.txt"; then
		echo "  warning: some $f runs produced no figures; the end of the last one:"
		tail -n 5 "$DIR/$f.out" "$DIR/$f.log" 2>/dev/null | sed 's/^/  | /'
	fi
done

printf '\n%-26s %12s %12s %12s\n' "" "vmm" "qemu" "vmm/qemu"
col=1
for row in "TCP guest->host (Mbit/s)" "TCP host->guest (Mbit/s)"; do
	v=$(cut -d' ' -f$col "$DIR/vmm.txt" | median)
	q=$(cut -d' ' -f$col "$DIR/qemu.txt" | median)
	printf '%-26s %12s %12s %12s\n' "$row" "$v" "$q" "$(ratio "$v" "$q")"
	col=$((col + 1))
done
echo "qemu: -M ${QEMU_MACHINE%%,*}, virtio-net-pci on -netdev tap (vhost=off); vmm: --net tap=$TAP"
