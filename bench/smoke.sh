#!/usr/bin/env bash
# Wall time of a boot-smoke run (tests/smoke/vmm-smoke) on the Debian cloud
# kernel, against the same checks driven through QEMU's microvm (PCIe, the same
# virtio devices, initramfs and disk; a virtio-net on a fresh tap when root),
# alternated, RUNS each (default 5).
# Needs /dev/kvm: bench/run.sh runs it in the nested KVM host where there is
# none (emulated: read the ratio, not the times).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RUNS=${RUNS:-5}
K=$BUILD/guest/vmlinuz-cloud
I=$BUILD/guest/initramfs-cloud.cpio.gz
W=$BUILD/bench-work
mkdir -p "$W"
head -c $((4 * 1024 * 1024)) /dev/urandom >"$W/smoke-disk.img"
want=$(sha256sum "$W/smoke-disk.img" | cut -d' ' -f1)
CMDLINE="console=ttyS0 quiet panic=-1 reboot=k vmm.test=smoke"
# vmm-smoke adds a virtio-net on a tap of its own when it runs as root: so does QEMU here.
qemu_net=() want_ids="0x0002 0x0004"
if [ "$(id -u)" -eq 0 ] && [ -c /dev/net/tun ]; then
	qemu_net=(-netdev "tap,id=n0,ifname=qsmoke$$,script=no,downscript=no" -device virtio-net-pci,netdev=n0)
	want_ids+=" 0x0001"
fi

now_ms() { date +%s%3N; }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print int((a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }

# The checks vmm-smoke makes, on a console log (init, vCPUs, memory, probes, disk).
checks_pass() {
	local log=$1 ids
	grep -q '^VMMTEST-END smoke rc=0' "$log" || return 1
	[ "$(sed -n 's/^cpus=//p' "$log" | tr -d '\r')" = 2 ] || return 1
	ids=$(sed -n 's/^virtio_ids=//p' "$log")
	for id in $want_ids; do [[ $ids == *$id* ]] || return 1; done
	[ "$(sed -n 's/^vda_sha256=//p' "$log" | tr -d '\r')" = "$want" ]
}

# The guest's clock when it powered off ("[ 3.500073] reboot: Power down", printed
# even with quiet). Wall time minus that is what the guest's clock did not see:
# the VMM starting and ending, firmware, and the decompressor (before the clock starts).
guest_end() {
	sed -n 's/^\[ *\([0-9.]*\)\] reboot: Power down.*/\1/p' "$1" 2>/dev/null | head -n 1
}

run_vmm() {
	local t0 t1
	t0=$(now_ms)
	tests/smoke/vmm-smoke --keep --timeout 300 --kernel "$K" --modules "$BUILD/guest/kernel-cloud/root" --cpus 2 --memory 512 >"$W/smoke-vmm.out" 2>&1 || {
		echo "bench/smoke: vmm-smoke failed:" >&2; tail -n 12 "$W/smoke-vmm.out" >&2; }
	t1=$(now_ms)
	kept=$(sed -n 's/^vmm-smoke: kept \([^ ]*\) .*/\1/p' "$W/smoke-vmm.out")
	guest_end "$kept/console.log" >"$W/smoke-vmm.up"
	[ -n "$kept" ] && rm -rf "$kept"
	echo $((t1 - t0))
}

run_qemu() {
	local t0 t1
	t0=$(now_ms)
	timeout 300 qemu-system-x86_64 -M microvm,pcie=on,x-option-roms=off,rtc=on,isa-serial=on -accel kvm -cpu host \
		-smp 2 -m 512M -nodefaults -no-user-config -display none -no-reboot \
		-kernel "$K" -initrd "$I" -append "$CMDLINE" -serial "file:$W/smoke-qemu.log" \
		-drive "if=none,id=d0,file=$W/smoke-disk.img,format=raw,readonly=on" \
		-device virtio-blk-pci,drive=d0 -device virtio-rng-pci "${qemu_net[@]}" </dev/null >/dev/null 2>&1
	checks_pass "$W/smoke-qemu.log" || echo "bench/smoke: the QEMU run did not pass the checks" >&2
	t1=$(now_ms)
	guest_end "$W/smoke-qemu.log" >"$W/smoke-qemu.up"
	echo $((t1 - t0))
}

: >"$W/smoke-vmm.txt"
: >"$W/smoke-qemu.txt"
: >"$W/smoke-vmm.outside"
: >"$W/smoke-qemu.outside"
echo "bench/smoke: boot-smoke wall time, cloud kernel, 2 vCPUs, 512 MiB, $RUNS runs each, alternated"
echo "  warm-up (not counted): vmm-smoke fills its cache, both read the kernel once"
run_vmm >/dev/null
run_qemu >/dev/null
for i in $(seq 1 "$RUNS"); do
	run_vmm >>"$W/smoke-vmm.txt"
	run_qemu >>"$W/smoke-qemu.txt"
	for side in vmm qemu; do
		awk -v w="$(tail -n1 "$W/smoke-$side.txt")" -v g="$(cat "$W/smoke-$side.up")" \
			'BEGIN { if (g != "") print int(w - g * 1000) }' >>"$W/smoke-$side.outside"
	done
	printf '  run %d: vmm-smoke %s ms (guest clock at power-off %s s), qemu microvm %s ms (%s s)\n' "$i" \
		"$(tail -n1 "$W/smoke-vmm.txt")" "$(cat "$W/smoke-vmm.up")" "$(tail -n1 "$W/smoke-qemu.txt")" "$(cat "$W/smoke-qemu.up")"
done
v=$(median <"$W/smoke-vmm.txt")
q=$(median <"$W/smoke-qemu.txt")
printf '\n%-26s %10s %14s %8s\n' "" "vmm-smoke" "qemu microvm" "ratio"
printf '%-26s %10s %14s %8s\n' "wall time (median ms)" "$v" "$q" "$(awk -v a="$v" -v b="$q" 'BEGIN { printf "%.2fx", a / b }')"
v=$(median <"$W/smoke-vmm.outside")
q=$(median <"$W/smoke-qemu.outside")
printf '%-26s %10s %14s\n' "outside the guest's clock" "$v" "$q"
echo "(wall time minus the guest's clock at power-off: VMM start and exit, firmware, script, decompressor)"
echo "target: <= 0.80x (vmm-smoke's initramfs and disk are cached after its first run, which is not counted)"
