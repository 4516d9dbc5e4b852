#!/usr/bin/env bash
# The reference for bench/smoke.sh: what tests/smoke/vmm-smoke does, driven
# through QEMU's microvm (PCIe; the same virtio devices, kernel command line,
# initramfs, disk, console parsing and checks, from tests/smoke/report.sh).
#
#   bench/qemu-smoke.sh --kernel PATH --initramfs PATH --disk PATH [--cpus N]
#                       [--memory MIB] [--timeout SECS]
#
# PATH.sha256 beside the disk holds its pattern's sha256 (vmm-smoke's cache
# has both). As root, QEMU gets a virtio-net on a private tap, as vmm-smoke's vmm does.
set -u
here=${BASH_SOURCE[0]%/*}
[ "$here" != "${BASH_SOURCE[0]}" ] || here=.
# shellcheck source=tests/smoke/report.sh
. "$here/../tests/smoke/report.sh" || exit 2
kernel= initramfs= disk= cpus=2 mem=512 timeout=300 tap= keep= work= version=
usage() { echo "usage: qemu-smoke.sh --kernel PATH --initramfs PATH --disk PATH [--cpus N] [--memory MIB] [--timeout SECS]" >&2; exit 2; }
while [ $# -gt 0 ]; do
	case $1 in
		--kernel)    [ $# -ge 2 ] || usage; kernel=$2; shift 2 ;;
		--initramfs) [ $# -ge 2 ] || usage; initramfs=$2; shift 2 ;;
		--disk)      [ $# -ge 2 ] || usage; disk=$2; shift 2 ;;
		--cpus)      [ $# -ge 2 ] || usage; cpus=$2; shift 2 ;;
		--memory)    [ $# -ge 2 ] || usage; mem=$2; shift 2 ;;
		--timeout)   [ $# -ge 2 ] || usage; timeout=$2; shift 2 ;;
		*) usage ;;
	esac
done
[ -r "$kernel" ] && [ -r "$initramfs" ] && [ -r "$disk" ] || usage
want_sha=
read -r want_sha _ <"$disk.sha256" || { echo "qemu-smoke: no $disk.sha256" >&2; exit 2; }

net=()
if [ "${EUID:-1}" -eq 0 ] && [ -c /dev/net/tun ]; then
	tap=qsmoke$$
	net=(-netdev "tap,id=n0,ifname=$tap,script=no,downscript=no" -device virtio-net-pci,netdev=n0)
fi
# QEMU has no timeout of its own: timeout(1) gives it one.
args=(-M microvm,pcie=on,x-option-roms=off,rtc=on,isa-serial=on -accel kvm -cpu host
	-smp "$cpus" -m "${mem}M" -nodefaults -no-user-config -display none -no-reboot
	-kernel "$kernel" -initrd "$initramfs" -append "console=ttyS0 quiet panic=-1 reboot=k vmm.test=smoke"
	-serial stdio -drive "if=none,id=d0,file=$disk,format=raw,readonly=on"
	-device virtio-blk-pci,drive=d0 -device virtio-rng-pci "${net[@]}")
start=${EPOCHREALTIME/,/.}
exec {con}< <(exec timeout "$timeout" qemu-system-x86_64 "${args[@]}" </dev/null 2>&1)
qemu_pid=$!
smoke_read "$con" "" "qemu-system-x86_64: "
exec {con}<&-
wait "$qemu_pid"
rc=$?
end=${EPOCHREALTIME/,/.}
secs=$((${end%.*} - ${start%.*}))
smoke_report qemu-smoke qemu
