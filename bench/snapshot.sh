#!/usr/bin/env bash
# Snapshot and restore (docs/snapshot.md) against a cold boot of the same
# guest, in one run: for 256 MiB and 1 GiB guests (SIZES, in MiB), ROUNDS
# rounds (default 5), each round and size in this order:
#   boot:     exec of vmm to the guest's init (VMMTEST-BEGIN on the console),
#             and on to the count test's first line (count=0);
#   snapshot: when it has counted to 2, vmm ctl pause, then the wall time of
#             vmm ctl snapshot DIR (the memory file is fsynced before the
#             answer), DIR/memory's size on disk (du) and apparent, and
#             state.dtb's; the source vmm is then killed;
#   restore:  exec of vmm --restore source_url=file://DIR --resume to the
#             restored guest's first console line (count=N+1), twice: warm
#             (the memory file as the snapshot left it in the page cache) and
#             cold (its pages dropped first with dd iflag=nocache; the
#             restore maps it privately, so the guest reads it lazily).
# Prints medians and the ratio restore / boot-to-init. Target: at most 0.10x.
#
# The console is a FIFO read with bash builtins and timestamped with
# EPOCHREALTIME: no process is started while a time runs. The guest's kvmclock
# runs while it is paused, and the snapshot is taken at least 1.5 s after its
# last count line, so its one-second sleep has run out in guest time: the
# restored guest prints its next line as soon as it runs.
#
# The snapshot directory is on ext4 on a loop device over a file in TMPDIR
# (a tmpfs in the nested host) when run as root, so the page cache can be
# dropped; otherwise (or with SNAP_DIR) on TMPDIR or SNAP_DIR as it is, and
# the header says which. The host's THP settings are printed, never changed.
# Needs /dev/kvm: bench/run.sh runs it in the nested KVM host where there is
# none (emulated: read the ratios, not the times).
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
ROUNDS=${ROUNDS:-5}
SIZES=${SIZES:-256 1024}
CPUS=${CPUS:-1}
VMM=$BUILD/vmm
K=$BUILD/guest/vmlinuz-generic
I=$BUILD/guest/initramfs-generic.cpio.gz
CMDLINE="console=ttyS0 quiet panic=-1 reboot=k vmm.test=count"
W=$(mktemp -d "${TMPDIR:-/tmp}/bench-snapshot.XXXXXX") || exit 1
PID=
MOUNTED=

cleanup() {
	[ -z "$PID" ] || { kill -KILL "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }
	[ -z "$MOUNTED" ] || umount "$MOUNTED"
	[ -z "${SNAP_DIR:-}" ] || [ -z "${SNAP:-}" ] || rm -rf "$SNAP"
	rm -rf "$W"
}
trap cleanup EXIT

[ -x "$VMM" ] || { echo "bench/snapshot: $VMM is missing (make all)" >&2; exit 1; }

# The snapshot's file system: see the header comment.
if [ -n "${SNAP_DIR:-}" ]; then
	SNAP=$SNAP_DIR/bench-snapshot.$$
	FS="$(stat -f -c %T "$SNAP_DIR") at $SNAP_DIR"
elif [ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null && command -v losetup >/dev/null &&
	{ grep -qw ext4 /proc/filesystems ||
		# The nested host's kernel is the guest kernel, with a few modules loaded.
		modprobe -q -d "$BUILD/guest/kernel-generic/root" ext4; } &&
	truncate -s 3G "$W/fs.img" &&
	mkfs.ext4 -q -F -N 256 -E lazy_itable_init=0,lazy_journal_init=0 "$W/fs.img" &&
	mkdir -p "$W/fs" && mount -o loop "$W/fs.img" "$W/fs"; then
	MOUNTED=$W/fs
	SNAP=$W/fs/snap
	FS="ext4 on a loop device over a file on $(stat -f -c %T "$W")"
else
	SNAP=$W/snap
	FS="$(stat -f -c %T "$W") at $W"
fi
COLD=1
[ -n "$MOUNTED" ] || [ "$(stat -f -c %T "$(dirname "$SNAP")")" != tmpfs ] || COLD=
[ -n "$COLD" ] || FS="$FS (its pages cannot be dropped: no cold restore)"

# vm_start ARGS...: vmm with its console on a FIFO open on fd 3; T0 is the exec's time (us).
vm_start() {
	rm -f "$W/con"
	mkfifo "$W/con" || exit 1
	T0=${EPOCHREALTIME/./}
	"$VMM" --serial stdio --timeout 900 "$@" </dev/null >"$W/con" 2>"$W/vmm.err" &
	PID=$!
	exec 3<"$W/con"
}

vm_kill() {
	kill -KILL "$PID" 2>/dev/null
	wait "$PID" 2>/dev/null
	PID=
	exec 3<&-
}

# con_wait GLOB MS: reads console lines until one matches GLOB, for at most MS
# milliseconds; LINE is it, T its time (us).
con_wait() {
	local end=$((${EPOCHREALTIME/./} + $2 * 1000)) left t
	while :; do
		left=$((end - ${EPOCHREALTIME/./}))
		[ "$left" -gt 0 ] || return 1
		printf -v t '%d.%06d' $((left / 1000000)) $((left % 1000000))
		IFS= read -r -t "$t" -u 3 LINE || return 1
		T=${EPOCHREALTIME/./}
		LINE=${LINE%$'\r'}
		# shellcheck disable=SC2053  # the pattern is a glob on purpose
		[[ $LINE == $1 ]] && return 0
	done
}

ms() { echo $((($1 + 500) / 1000)); }

median() { sort -n | awk 'NF { a[++n] = $1 } END { if (!n) print "-"; else if (n % 2) print a[(n + 1) / 2]; else print int((a[n / 2] + a[n / 2 + 1]) / 2) }'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "-" && b != "-" && b) printf "%.3fx", a / b; else print "-" }'; }

thp() { cat "/sys/kernel/mm/transparent_hugepage/$1" 2>/dev/null || echo "(none)"; }

resident_mib() { fincore -b -n -o RES "$1" 2>/dev/null | awk '{ printf "%d", $1 / 1048576 }'; }

# restore KIND SIZE AT: one restore to running; appends its ms to $W/KIND.SIZE.
restore() {
	local kind=$1 size=$2 at=$3 res
	res=$(resident_mib "$SNAP/memory")
	vm_start --restore "source_url=file://$SNAP" --resume
	if ! con_wait '?*' 120000; then
		vm_kill
		echo "    $kind restore: no console line within 120 s: $(tail -n 2 "$W/vmm.err")"
		return 1
	fi
	vm_kill
	ms $((T - T0)) >>"$W/$kind.$size"
	printf '    %s restore: %d ms to "%s" (%s MiB of the memory file resident before)\n' \
		"$kind" "$(ms $((T - T0)))" "$LINE" "${res:-?}"
	[ "$LINE" = "count=$((at + 1))" ] || echo "    note: the restored guest's first line is not count=$((at + 1))"
}

# round SIZE N: one boot, snapshot and restores of a SIZE MiB guest.
round() {
	local size=$1 n=$2 t_init t_count last at out t1 t2 disk app dtb
	rm -rf "$SNAP"
	vm_start --kernel "$K" --initramfs "$I" --cmdline "$CMDLINE" --cpus "$CPUS" \
		--memory "${size}M" --api-socket "$W/api.sock"
	if ! con_wait 'VMMTEST-BEGIN*' 600000; then
		vm_kill
		echo "  ${size}M round $n: the guest never reached init (left out): $(tail -n 2 "$W/vmm.err")"
		return
	fi
	t_init=$((T - T0))
	con_wait 'count=0' 600000 || { vm_kill; echo "  ${size}M round $n: the guest never counted (left out)"; return; }
	t_count=$((T - T0))
	con_wait 'count=2' 60000 || { vm_kill; echo "  ${size}M round $n: the guest stopped counting (left out)"; return; }
	last=$T at=2
	out=$("$VMM" ctl --api-socket "$W/api.sock" pause 2>&1) ||
		{ vm_kill; echo "  ${size}M round $n: vmm ctl pause: $out"; return; }
	# A line printed before the pause took: the guest is paused after it.
	while con_wait 'count=*' 300; do last=$T at=${LINE#count=}; done
	# The guest's next line is due 1 s after its last in guest time, which runs while paused.
	while [ $((${EPOCHREALTIME/./} - last)) -lt 1500000 ]; do sleep 0.1; done
	t1=${EPOCHREALTIME/./}
	out=$("$VMM" ctl --api-socket "$W/api.sock" snapshot "$SNAP" 2>&1) ||
		{ vm_kill; echo "  ${size}M round $n: vmm ctl snapshot: $out"; return; }
	t2=${EPOCHREALTIME/./}
	vm_kill
	disk=$(du -k "$SNAP/memory" | cut -f1)
	app=$(stat -c %s "$SNAP/memory")
	dtb=$(stat -c %s "$SNAP/state.dtb")
	echo "$(ms "$t_init") $(ms "$t_count")" >>"$W/boot.$size"
	echo "$(ms $((t2 - t1))) $((disk / 1024)) $((app >> 20)) $((dtb / 1024))" >>"$W/snap.$size"
	echo "  ${size}M round $n: boot to init $(ms "$t_init") ms, to count=0 $(ms "$t_count") ms;" \
		"paused at count=$at; snapshot $(ms $((t2 - t1))) ms, memory $((disk / 1024)) MiB on disk of" \
		"$((app >> 20)) MiB, state.dtb $((dtb / 1024)) KiB"
	restore warm "$size" "$at"
	if [ -n "$COLD" ]; then
		dd if="$SNAP/memory" iflag=nocache count=0 status=none
		restore cold "$size" "$at"
	fi
	rm -rf "$SNAP"
}

echo "bench/snapshot: $ROUNDS rounds, each size in turn: boot, snapshot, restore ($CPUS vCPU, $(basename "$K"), vmm.test=count)"
echo "host THP: enabled: $(thp enabled); shmem_enabled: $(thp shmem_enabled); defrag: $(thp defrag)"
echo "snapshot files: $FS"
if [ -n "$COLD" ]; then
	echo "page cache: not dropped system-wide; kernel and initramfs read once before the first round;" \
		"warm restore: the memory file as the snapshot wrote it (fsynced, resident); cold restore: its pages" \
		"dropped first (dd iflag=nocache), read back through the loop device from memory"
else
	echo "page cache: not dropped; kernel and initramfs read once before the first round;" \
		"the memory file stays resident (tmpfs): warm restores only"
fi
cat "$K" "$I" >/dev/null
for n in $(seq 1 "$ROUNDS"); do
	for size in $SIZES; do
		round "$size" "$n"
	done
done

printf '\n%-8s %8s %9s %9s %14s %9s %9s %8s %9s %8s\n' "guest" "boot to" "to first" "snapshot" "memory file" "state" \
	"restore" "ratio" "restore" "ratio"
printf '%-8s %8s %9s %9s %14s %9s %9s %8s %9s %8s\n' "" "init" "count" "" "disk/apparent" "file" \
	"warm" "warm" "cold" "cold"
for size in $SIZES; do
	[ -s "$W/boot.$size" ] || { printf '%-8s no complete round\n' "${size} MiB"; continue; }
	bi=$(cut -d' ' -f1 "$W/boot.$size" | median)
	bc=$(cut -d' ' -f2 "$W/boot.$size" | median)
	st=$(cut -d' ' -f1 "$W/snap.$size" | median)
	dk=$(cut -d' ' -f2 "$W/snap.$size" | median)
	ap=$(cut -d' ' -f3 "$W/snap.$size" | median)
	dt=$(cut -d' ' -f4 "$W/snap.$size" | median)
	rw=$(median <"$W/warm.$size" 2>/dev/null)
	rc=-
	[ -z "$COLD" ] || rc=$(median <"$W/cold.$size" 2>/dev/null)
	printf '%-8s %8s %9s %9s %14s %9s %9s %8s %9s %8s\n' "${size} MiB" "$bi ms" "$bc ms" "$st ms" \
		"$dk/$ap MiB" "$dt KiB" "${rw:--} ms" "$(ratio "${rw:--}" "$bi")" "${rc:--} ms" "$(ratio "${rc:--}" "$bi")"
done
echo "medians of $ROUNDS rounds (a round that failed is left out, and said above); ratio: restore / boot to init"
echo "target: restore to running <= 0.10x boot to init"
