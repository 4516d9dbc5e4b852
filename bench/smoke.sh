#!/usr/bin/env bash
# Wall time of a boot-smoke run (tests/smoke/vmm-smoke) on the Debian cloud
# kernel, against the same checks driven through QEMU's microvm
# (bench/qemu-smoke.sh: the same virtio devices, initramfs, disk, console
# parsing and checks; a virtio-net on a private tap when root), alternated,
# RUNS each (default 5).
# Needs /dev/kvm: bench/run.sh runs it in the nested KVM host where there is
# none (emulated: read the ratio, not the times).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RUNS=${RUNS:-5}
K=$BUILD/guest/vmlinuz-cloud
M=$BUILD/guest/kernel-cloud/root
I=$BUILD/guest/initramfs-cloud.cpio.gz  # what vmm-smoke builds from the same sources and modules
D=${VMM_SMOKE_CACHE:-$BUILD/smoke-cache}/disk-4m.img  # vmm-smoke makes it on its first run
W=$BUILD/bench-work
mkdir -p "$W"

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print int((a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
ms_since() { local now=${EPOCHREALTIME/,/.}; awk -v a="$1" -v b="$now" 'BEGIN { printf "%d", (b - a) * 1000 }'; }

# run SIDE CMD...: one timed run; its wall time (ms) and the guest's clock at
# power-off (from the report's first line) go to $W/smoke-SIDE.{txt,up}.
run() {
	local side=$1 t0 ms
	shift
	t0=${EPOCHREALTIME/,/.}
	"$@" >"$W/smoke-$side.out" 2>&1
	ms=$(ms_since "$t0")
	# A run that failed its checks (a nested-host flaw, say) is shown, not counted.
	if ! tail -n1 "$W/smoke-$side.out" | grep -q '^[1-9][0-9]* passed, 0 failed$'; then
		echo "bench/smoke: the $side run did not pass its checks (not counted):" >&2
		tail -n 12 "$W/smoke-$side.out" >&2
		echo "failed" >"$W/smoke-$side.last"
		: >"$W/smoke-$side.up"
		return 1
	fi
	echo "$ms" >>"$W/smoke-$side.txt"
	echo "$ms" >"$W/smoke-$side.last"
	sed -n '1s/.*power-off at \([0-9.]*\) s.*/\1/p' "$W/smoke-$side.out" >"$W/smoke-$side.up"
}
run_vmm() {
	run vmm "$BUILD/vmm-smoke" --timeout 300 --kernel "$K" --modules "$M" --cpus 2 --memory 512
}
run_qemu() {
	run qemu bench/qemu-smoke.sh --timeout 300 --kernel "$K" --initramfs "$I" --disk "$D" --cpus 2 --memory 512
}

: >"$W/smoke-vmm.outside"
: >"$W/smoke-qemu.outside"
echo "bench/smoke: boot-smoke wall time, cloud kernel, 2 vCPUs, 512 MiB, $RUNS runs each, alternated"
echo "  warm-up (not counted): vmm-smoke fills its cache, both read the kernel once"
run_vmm
run_qemu
: >"$W/smoke-vmm.txt"
: >"$W/smoke-qemu.txt"
for i in $(seq 1 "$RUNS"); do
	run_vmm
	run_qemu
	for side in vmm qemu; do
		awk -v w="$(cat "$W/smoke-$side.last")" -v g="$(cat "$W/smoke-$side.up")" \
			'BEGIN { if (g != "") print int(w - g * 1000) }' >>"$W/smoke-$side.outside"
	done
	printf '  run %d: vmm-smoke %s ms (guest clock at power-off %s s), qemu microvm %s ms (%s s)\n' "$i" \
		"$(cat "$W/smoke-vmm.last")" "$(cat "$W/smoke-vmm.up")" "$(cat "$W/smoke-qemu.last")" "$(cat "$W/smoke-qemu.up")"
done
v=$(median <"$W/smoke-vmm.txt")
q=$(median <"$W/smoke-qemu.txt")
printf '\n%-26s %10s %14s %8s\n' "" "vmm-smoke" "qemu microvm" "ratio"
printf '%-26s %10s %14s %8s\n' "wall time (median ms)" "$v" "$q" "$(awk -v a="$v" -v b="$q" 'BEGIN { printf "%.2fx", a / b }')"
v=$(median <"$W/smoke-vmm.outside")
q=$(median <"$W/smoke-qemu.outside")
printf '%-26s %10s %14s\n' "outside the guest's clock" "$v" "$q"
echo "(wall time minus the guest's clock at power-off: the script, VMM start and exit, firmware, decompressor)"
echo "passed runs counted: vmm-smoke $(wc -l <"$W/smoke-vmm.txt") of $RUNS, qemu microvm $(wc -l <"$W/smoke-qemu.txt") of $RUNS"
echo "target: <= 0.80x (vmm-smoke's initramfs and disk are cached after its first run, which is not counted)"
