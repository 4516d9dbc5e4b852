#!/usr/bin/env bash
# Extracts the uncompressed ELF vmlinux from an x86 bzImage, for `vmm --kernel`
# (which boots either).
#
#   extract-vmlinux.sh BZIMAGE OUT
#
# The payload's place comes from the setup header (Documentation/arch/x86/
# boot.rst: payload_offset and payload_length at 0x248, counted from the
# protected-mode part, boot protocol 2.08+); its compression from its magic
# (gzip, xz, lzma, bzip2, lz4 or zstd), decompressed with the Debian tool.
# OUT is written whole or not at all. Exit status 0, or 1 with the reason.
set -u
[ $# -eq 2 ] || { echo "usage: extract-vmlinux.sh BZIMAGE OUT" >&2; exit 2; }
bz=$1 out=$2
fail() { echo "extract-vmlinux: $bz: $*" >&2; rm -f "$out.$$"; exit 1; }
hex() { od -An -tx1 -j "$1" -N "$2" "$bz" | tr -d ' \n'; }

[ -r "$bz" ] || fail "cannot read it"
size=$(stat -c %s "$bz")
[ "$size" -ge 1024 ] && [ "$(hex 510 2)" = 55aa ] && [ "$(hex 514 4)" = 48647253 ] ||
	fail "not a bzImage (no boot signature)"
read -r version < <(od -An -tu2 -j 518 -N 2 "$bz")
[ "$version" -ge $((0x208)) ] || fail "boot protocol older than 2.08 (no payload fields)"
read -r sects < <(od -An -tu1 -j $((0x1f1)) -N 1 "$bz")
[ "$sects" -gt 0 ] || sects=4
read -r poff plen < <(od -An -tu4 -j $((0x248)) -N 8 "$bz")
poff=$(((sects + 1) * 512 + poff))
[ "$plen" -gt 0 ] && [ $((poff + plen)) -le "$size" ] ||
	fail "its payload lies beyond the end of the file (truncated?)"
magic=$(hex "$poff" 6)
case $magic in
	1f8b*)        tool=(gzip -dc) ;;
	fd377a585a00) tool=(xz -dc) ;;
	5d00*)        tool=(xz --format=lzma -dc) ;;
	425a68*)      tool=(bzip2 -dc) ;;
	02214c18*)    tool=(lz4 -dc) ;;
	28b52ffd*)    tool=(zstd -qdc) ;;
	*) fail "its payload's compression (magic $magic) is not one this script knows" ;;
esac
command -v "${tool[0]}" >/dev/null || fail "${tool[0]} is not installed (scripts/setup.sh installs it)"
# The decompressors may complain about the size word after the stream: judge by the result.
tail -c +$((poff + 1)) "$bz" | head -c "$plen" | "${tool[@]}" >"$out.$$" 2>/dev/null
[ "$(od -An -tx1 -N 4 "$out.$$" | tr -d ' \n')" = 7f454c46 ] ||
	fail "decompressing its payload with ${tool[0]} gave no ELF file"
mv "$out.$$" "$out" || fail "cannot write $out"
