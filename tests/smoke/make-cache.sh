#!/usr/bin/env bash
# vmm-smoke's cache, made on a miss (build/vmm-smoke decides when):
#
#   make-cache.sh initramfs OUT [VERSION root|dir PATH]
#       our busybox initramfs with the test scripts and guest tools, plus the
#       modules of VERSION: PATH/lib/modules/VERSION (root) or PATH itself
#       (dir); none given: the kernel's built-in drivers
#   make-cache.sh disk OUT
#       4 MiB of random pattern, and OUT.sha256 with its sha256
#
# OUT appears whole or not at all (a concurrent run sees the old file or the
# new one). BUILD (default: build/ beside this script's repository) holds
# guest/tools/.
set -u
here=${BASH_SOURCE[0]%/*}
[ "$here" != "${BASH_SOURCE[0]}" ] || here=.
repo=$(cd "$here/../.." && pwd) || exit 2
BUILD=${BUILD:-$repo/build}
usage() { echo "usage: make-cache.sh initramfs OUT [VERSION root|dir PATH] | disk OUT" >&2; exit 2; }
[ $# -ge 2 ] || usage
what=$1 out=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/vmm-smoke-cache.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT

case $what in
initramfs)
	version=${3:-} kind=${4:-} path=${5:-}
	mkdir -p "$work/kernel/root/lib/modules" "$work/stage/tests" "$work/stage/tools"
	echo "${version:-none}" >"$work/kernel/version"
	case $kind in
		root) rm -r "$work/kernel/root"; ln -s "$path" "$work/kernel/root" ;;
		dir)  ln -s "$path" "$work/kernel/root/lib/modules/$version" ;;
		'')   ;;
		*)    usage ;;
	esac
	for t in "$repo"/guest-images/tests/*.sh; do install -m 0755 "$t" "$work/stage/tests/$(basename "$t" .sh)"; done
	cp "$BUILD"/guest/tools/* "$work/stage/tools/" 2>/dev/null
	"$repo/guest-images/mkinitramfs.sh" --kernel "$work/kernel" --modules "$repo/guest-images/modules.list" \
		--init "$repo/guest-images/init" --file "$repo/guest-images/profile=etc/profile" \
		--dir "$work/stage/tests=tests" --dir "$work/stage/tools=usr/bin" \
		--out "$work/initramfs.cpio.gz" >"$work/mkinitramfs.log" 2>&1 ||
		{ echo "vmm-smoke: building the initramfs failed:" >&2; cat "$work/mkinitramfs.log" >&2; exit 2; }
	mv "$work/initramfs.cpio.gz" "$out.$$" && mv "$out.$$" "$out" ||
		{ echo "vmm-smoke: cannot write $out" >&2; rm -f "$out.$$"; exit 2; }
	;;
disk)
	head -c $((4 * 1024 * 1024)) /dev/urandom >"$out.$$" &&
		sha256sum "$out.$$" >"$out.sha256.$$" &&
		mv "$out.$$" "$out" && mv "$out.sha256.$$" "$out.sha256" ||
		{ echo "vmm-smoke: cannot make a disk image at $out" >&2; rm -f "$out.$$" "$out.sha256.$$"; exit 2; }
	;;
*) usage ;;
esac
