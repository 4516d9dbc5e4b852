#!/usr/bin/env bash
# Runs the boot-smoke suite (or the cases named) with another Debian kernel in
# place of the generic one: the suite's own images otherwise.
#
#   tests/boot/with-kernel.sh IMAGE.deb [MORE.deb...] [CASE...]
#
# IMAGE.deb is a linux-image package of any Debian release (from `apt-get
# download`, or a release's pool on a mirror); where a release splits the
# kernel over several packages (Debian 14: linux-binary-*, linux-modules-* and
# linux-base-*), give them all. The kernel and an initramfs made from its
# modules by guest-images/mkinitramfs.sh go into
# build/kernels/<uname -r>/, beside links to everything else of build/, and the
# suite runs with BUILD pointing there (verdicts in its boot-results.txt).
# Cases that boot the cloud kernel keep it. BOOT_CMDLINE_EXTRA adds kernel
# arguments to every case's command line (vmm-smoke's through --append).
# Exit status: tests/boot/run.sh's.
set -euo pipefail
cd "$(dirname "$0")/../.."
debs=()
while [ $# -ge 1 ] && [[ $1 == *.deb ]]; do
	[ -r "$1" ] || { echo "with-kernel: cannot read $1" >&2; exit 2; }
	debs+=("$(realpath "$1")")
	shift
done
[ ${#debs[@]} -ge 1 ] || { echo "usage: tests/boot/with-kernel.sh IMAGE.deb [MORE.deb...] [CASE...]" >&2; exit 2; }
for f in build/vmm build/guest/vmlinuz-cloud build/guest/tools; do
	[ -e "$f" ] || { echo "with-kernel: $f is missing (make all guest-images)" >&2; exit 1; }
done

tmp=$(mktemp -d build/kernels.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
for deb in "${debs[@]}"; do
	dpkg-deb -x "$deb" "$tmp/root" || { echo "with-kernel: $deb is not a .deb dpkg can unpack" >&2; exit 1; }
done
# Releases with a merged /usr ship the modules under usr/lib only.
[ -d "$tmp/root/lib/modules" ] || ln -s usr/lib "$tmp/root/lib"
version=$(ls "$tmp/root/lib/modules" 2>/dev/null || true)
# Debian 14 keeps the kernel beside its modules, earlier releases in /boot.
image=$tmp/root/boot/vmlinuz-$version
[ -f "$image" ] || image=$tmp/root/lib/modules/$version/vmlinuz
if [ "$(echo "$version" | wc -w)" -ne 1 ] || [ ! -f "$image" ]; then
	echo "with-kernel: ${debs[*]} hold no single kernel and module tree (linux-image packages?)" >&2
	exit 1
fi
depmod -b "$tmp/root" "$version"

out=$PWD/build/kernels/$version
rm -rf "$out"
mkdir -p "$out/guest/kernel-generic"
mv "$tmp/root" "$out/guest/kernel-generic/root"
echo "$version" >"$out/guest/kernel-generic/version"
cp "$out/guest/kernel-generic/root/${image#"$tmp/root/"}" "$out/guest/vmlinuz-generic"
for f in build/*; do
	case ${f#build/} in guest|kernels|kernels.*|boot-*|results.txt) ;; *) ln -s "$PWD/$f" "$out/" ;; esac
done
for f in build/guest/*; do
	case ${f#build/guest/} in *generic*|stage-*) ;; *) ln -s "$PWD/$f" "$out/guest/" ;; esac
done
make -s -C guest-images BUILD="$out/guest" FLAVOURS=generic "$out/guest/initramfs-generic.cpio.gz"
echo "with-kernel: the suite with $version"
BUILD=$out KVM_HOST_ENV="${KVM_HOST_ENV:-} BUILD BOOT_CMDLINE_EXTRA" tests/boot/run.sh "$@"
