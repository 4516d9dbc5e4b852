#!/usr/bin/env bash
# Pause and resume latency: vmm's PUT /api/v1/vm.pause and vm.resume against
# QEMU's QMP stop and cont, on the same kernel and initramfs (the guest counts
# once a second: vmm.test=count), with 2 and 8 vCPUs (CPU_COUNTS), CYCLES
# cycles each (default 100), the guest running GAP_MS (50) between requests.
# Latency is the client's: request sent to answer read (build/bench/pause).
# vmm's client opens a connection per request (as vmm ctl and curl do); QMP
# keeps one. Prints p50 and p99 per side and the ratio. Needs /dev/kvm:
# bench/run.sh runs it in the nested KVM host where there is none (emulated:
# read the ratios, not the times).
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
CYCLES=${CYCLES:-100}
GAP_MS=${GAP_MS:-50}
CPU_COUNTS=${CPU_COUNTS:-2 8}
K=$BUILD/guest/vmlinuz-generic
I=$BUILD/guest/initramfs-generic.cpio.gz
W=${TMPDIR:-/tmp}/bench-pause.$$
CLIENT=$BUILD/bench/pause
CMDLINE="console=ttyS0 quiet panic=-1 reboot=k vmm.test=count"
mkdir -p "$W"
trap 'rm -rf "$W"' EXIT

[ -x "$CLIENT" ] || { echo "bench/pause: $CLIENT is missing (make $CLIENT)" >&2; exit 1; }

# wait_count LOG PID: until the guest counted twice (it is up), or 600 s.
wait_count() {
	local _
	for _ in $(seq 6000); do
		grep -aq '^count=2' "$1" 2>/dev/null && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b) printf "%.2fx", a / b; else print "-" }'; }

ROWS=()
for cpus in $CPU_COUNTS; do
	rm -f "$W"/*
	"$BUILD/vmm" --kernel "$K" --initramfs "$I" --cmdline "$CMDLINE" --cpus "$cpus" --memory 512M \
		--serial "file=$W/vmm.log" --timeout 900 --api-socket "$W/api.sock" </dev/null >"$W/vmm.err" 2>&1 &
	pid=$!
	if wait_count "$W/vmm.log" "$pid" && "$CLIENT" --vmm "$W/api.sock" "$CYCLES" "$GAP_MS" >"$W/vmm.txt"; then
		"$BUILD/vmm" ctl --api-socket "$W/api.sock" shutdown >/dev/null
	else
		echo "bench/pause: vmm with $cpus vCPUs failed: $(tail -n 2 "$W/vmm.err")" >&2
		kill "$pid" 2>/dev/null
	fi
	wait "$pid"

	qemu-system-x86_64 -M microvm,x-option-roms=off,rtc=on,isa-serial=on -accel kvm -cpu host \
		-smp "$cpus" -m 512M -nodefaults -no-user-config -display none -no-reboot \
		-kernel "$K" -initrd "$I" -append "$CMDLINE" -serial "file:$W/qemu.log" \
		-qmp "unix:$W/qmp.sock,server=on,wait=off" </dev/null >"$W/qemu.err" 2>&1 &
	pid=$!
	if ! wait_count "$W/qemu.log" "$pid" || ! "$CLIENT" --qmp "$W/qmp.sock" "$CYCLES" "$GAP_MS" >"$W/qemu.txt"; then
		echo "bench/pause: QEMU with $cpus vCPUs failed: $(tail -n 2 "$W/qemu.err")" >&2
	fi
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null

	for op in pause resume; do
		v=$(sed -n "s/^$op //p" "$W/vmm.txt" 2>/dev/null)
		q=$(sed -n "s/^$op //p" "$W/qemu.txt" 2>/dev/null)
		ROWS+=("$(printf '%-24s %8s %8s %10s %10s %8s %8s' "$op, $cpus vCPUs (us)" \
			"${v% *}" "${v#* }" "${q% *}" "${q#* }" "$(ratio "${v% *}" "${q% *}")" "$(ratio "${v#* }" "${q#* }")")")
	done
done
echo "bench/pause: $CYCLES pause/resume cycles each, ${GAP_MS} ms apart ($(basename "$K"))"
printf '\n%-24s %8s %8s %10s %10s %8s %8s\n' "" "vmm p50" "vmm p99" "qemu p50" "qemu p99" "p50" "p99"
printf '%s\n' "${ROWS[@]}"
echo "target: vmm <= 1.0x QEMU's QMP stop/cont"
