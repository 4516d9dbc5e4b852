#!/usr/bin/env bash
# Builds a reproducible busybox initramfs (newc cpio, gzip) for one kernel.
#
#   mkinitramfs.sh --kernel DIR --modules LIST --init FILE --out FILE.cpio.gz
#                  [--file SRC=DEST]... [--dir SRC=DEST]...
#
# DIR is what fetch-kernel.sh unpacked (DIR/root/lib/modules/VER, DIR/version).
# LIST names one module per line ('#' starts a comment), in load order. Each is
# copied with every module it depends on (hard and soft dependencies, as kmod
# resolves them); built-in and missing ones are skipped. Compressed modules are
# decompressed so busybox modprobe/insmod can load them. The image gets
# modules.dep (depmod) and /etc/modules: the closure in load order, one per line.
# --file copies one file (mode kept), --dir copies a folder's regular files.
# File lists are sorted and every mtime is SOURCE_DATE_EPOCH (default 0), so the
# same inputs give the same bytes.
set -euo pipefail

kernel='' modules='' init='' out=''
extra_files=() extra_dirs=()
while [ $# -gt 0 ]; do
	case $1 in
		--kernel)  kernel=$2; shift 2 ;;
		--modules) modules=$2; shift 2 ;;
		--init)    init=$2; shift 2 ;;
		--out)     out=$2; shift 2 ;;
		--file)    extra_files+=("$2"); shift 2 ;;
		--dir)     extra_dirs+=("$2"); shift 2 ;;
		*) echo "mkinitramfs: unknown argument '$1'" >&2; exit 2 ;;
	esac
done
[ -n "$kernel" ] && [ -n "$modules" ] && [ -n "$init" ] && [ -n "$out" ] ||
	{ echo "usage: mkinitramfs.sh --kernel DIR --modules LIST --init FILE --out FILE" >&2; exit 2; }

# Absolute: modprobe -d prints the modules' paths under it, and we strip it off them.
[[ $kernel == /* ]] || kernel=$PWD/$kernel
epoch=${SOURCE_DATE_EPOCH:-0}
version=$(cat "$kernel/version")
kroot=$kernel/root
busybox=${BUSYBOX:-/bin/busybox}
if ! [ -x "$busybox" ] || readelf -l "$busybox" 2>/dev/null | grep -q 'program interpreter'; then
	echo "mkinitramfs: $busybox is not a static busybox (install busybox-static)" >&2
	exit 1
fi

stage=$out.d
rm -rf "$stage"
mkdir -p "$stage"
for d in bin sbin usr/bin usr/sbin etc proc sys dev tmp run root mnt lib/modules; do
	mkdir -p "$stage/$d"
done

# busybox and one symlink per applet.
cp "$busybox" "$stage/bin/busybox"
for applet in $("$busybox" --list-full); do
	[ "$applet" = bin/busybox ] && continue
	[ -e "$stage/$applet" ] || ln -s /bin/busybox "$stage/$applet"
done

# Modules: the dependency closure of the list, in load order, without repeats.
# No lib/modules/VERSION: a kernel whose drivers are built in; no modules then.
: >"$stage/etc/modules"
if [ -d "$kroot/lib/modules/$version" ]; then
	mkdir -p "$stage/lib/modules/$version"
	declare -A seen=()
	while read -r name _; do
		case $name in ''|'#'*) continue ;; esac
		deps=$(modprobe -d "$kroot" -S "$version" --show-depends "$name" 2>/dev/null) || {
			echo "mkinitramfs: note: module $name not in $version, skipped" >&2
			continue
		}
		while read -r kind path _; do
			[ "$kind" = insmod ] || continue   # "builtin NAME" needs nothing
			rel=${path#"$kroot"/}
			case $rel in
				*.ko.xz)  dst=${rel%.xz} ;;
				*.ko.zst) dst=${rel%.zst} ;;
				*.ko.gz)  dst=${rel%.gz} ;;
				*)        dst=$rel ;;
			esac
			[ -z "${seen[$dst]:-}" ] || continue
			seen[$dst]=1
			mkdir -p "$stage/$(dirname "$dst")"
			case $rel in
				*.ko.xz)  xz -dc "$path" >"$stage/$dst" ;;
				*.ko.zst) zstd -qdc "$path" >"$stage/$dst" ;;
				*.ko.gz)  gzip -dc "$path" >"$stage/$dst" ;;
				*)        cp "$path" "$stage/$dst" ;;
			esac
			mod=$(basename "$dst" .ko)
			echo "${mod//-/_}" >>"$stage/etc/modules"
		done <<<"$deps"
	done <"$modules"
	for f in modules.builtin modules.builtin.modinfo modules.order; do
		[ -f "$kroot/lib/modules/$version/$f" ] && cp "$kroot/lib/modules/$version/$f" "$stage/lib/modules/$version/"
	done
	depmod -b "$stage" "$version"
else
	echo "mkinitramfs: no $kroot/lib/modules/$version: no modules (the kernel's built-in drivers only)" >&2
fi

install -m 0755 "$init" "$stage/init"
for spec in "${extra_files[@]}"; do
	src=${spec%%=*} dst=${spec#*=}
	mkdir -p "$stage/$(dirname "$dst")"
	cp -p "$src" "$stage/$dst"
done
for spec in "${extra_dirs[@]}"; do
	src=${spec%%=*} dst=${spec#*=}
	mkdir -p "$stage/$dst"
	cp -pr "$src/." "$stage/$dst/"
done

# The kernel opens /dev/console for init before anything is mounted; a node in
# the archive needs root to create (init copes without it).
mknod -m 600 "$stage/dev/console" c 5 1 2>/dev/null || true

find "$stage" -exec touch -h -d "@$epoch" {} +
tmp=$out.tmp
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort |
	cpio --quiet -o -H newc --reproducible -R 0:0) | gzip -n -9 >"$tmp"
mv "$tmp" "$out"
nmods=$(wc -l <"$stage/etc/modules")
rm -rf "$stage"
echo "mkinitramfs: $(basename "$out"): kernel $version, $nmods modules, $(du -k "$out" | cut -f1) KiB"
