#!/usr/bin/env bash
# Boot-to-init time and VMM memory overhead: vmm against QEMU's microvm on the
# same kernel, initramfs, vCPUs and memory, alternated, RUNS each (default 5),
# in two rows:
#   default: each as users run it: vmm's default guest RAM (private anonymous)
#            against QEMU's -m (anonymous RAM);
#   shared:  vmm --memory size=N,shared=on against QEMU with
#            memory-backend-memfd (what vhost-user needs on both).
# BOOT_ROWS picks rows (default "default shared"). The host's transparent
# huge page settings are printed, never changed.
# Prints medians and ratios. Needs /dev/kvm: bench/run.sh runs it in the
# nested KVM host where there is none (emulated: read the ratios, not the times).
#
# boot-to-init: from starting the VMM to the guest's init printing its first
# marker (VMMTEST-BEGIN), seen in the serial log.
# RSS at init: the VMM's RssAnon + RssFile at that moment. Private guest RAM
# (both sides in the default row) is in RssAnon, so that row counts the RAM
# the guest touched too; shared RAM is RssShmem, not counted, so the shared
# row is the VMMs' own overhead.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
RUNS=${RUNS:-5}
BOOT_ROWS=${BOOT_ROWS:-default shared}  # the rows to run
CPUS=${CPUS:-1}
MEM=${MEM:-512}
K=$BUILD/guest/vmlinuz-generic
I=$BUILD/guest/initramfs-generic.cpio.gz
# The serial logs on a local file system, where tail follows them through inotify.
W=$(mktemp -d "${TMPDIR:-/tmp}/bench-boot.XXXXXX") || exit 1
trap 'rm -rf "$W"' EXIT
CMDLINE="console=ttyS0 quiet panic=-1 reboot=k vmm.test=idle"

now_ms() { date +%s%3N; }

# measure LOG CMD...: prints "boot_ms rss_kb". The marker is awaited by one
# tail following LOG (inotify): a polling loop's forks would take the host's
# CPUs from the VMM it times (in the nested host, a grep and a sleep every
# 10 ms made both VMMs' boots 5-30 % slower and their spread wider).
measure() {
	local log=$1
	shift
	: >"$log"  # tail follows it from the start
	local start pid t=0 rss=0
	start=$(now_ms)
	"$@" </dev/null >/dev/null 2>&1 &
	pid=$!
	# grep ends at the marker, or at end of input: the VMM exited (tail --pid)
	# or 600 s passed. Its input's tail is not waited for; it ends with the VMM.
	if grep -q -m1 VMMTEST-BEGIN < <(exec timeout 600 tail -n +1 -s 0.05 -F --pid="$pid" "$log" 2>/dev/null); then
		t=$(($(now_ms) - start))
		rss=$(awk '/^RssAnon|^RssFile/ { s += $2 } END { print s }' "/proc/$pid/status" 2>/dev/null)
	fi
	[ "$t" -gt 0 ] || kill "$pid" 2>/dev/null  # it never got there in 600 s
	wait "$pid" 2>/dev/null
	echo "$t ${rss:-0}"
}

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print int((a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }

# run_vmm MEMORY_OPTION, run_qemu MEMORY_ARGS...
run_vmm() {
	measure "$W/vmm.log" "$BUILD/vmm" --kernel "$K" --initramfs "$I" --cpus "$CPUS" \
		--memory "$1" --cmdline "$CMDLINE" --serial "file=$W/vmm.log" --timeout 600
}

run_qemu() {
	measure "$W/qemu.log" qemu-system-x86_64 -M microvm,x-option-roms=off,rtc=on,isa-serial=on \
		-accel kvm -cpu host -smp "$CPUS" "$@" -nodefaults -no-user-config \
		-display none -no-reboot -kernel "$K" -initrd "$I" -append "$CMDLINE" \
		-serial "file:$W/qemu.log"
}

thp() { cat "/sys/kernel/mm/transparent_hugepage/$1" 2>/dev/null || echo "(none)"; }

# shellcheck source=bench/lib.sh
. bench/lib.sh

# row NAME VMM_MEMORY QEMU_ARGS...: RUNS alternated pairs, then the row's medians.
row() {
	local name=$1 vmem=$2 i n side vb qb vr qr
	shift 2
	: >"$W/vmm.txt"
	: >"$W/qemu.txt"
	echo "$name: vmm --memory $vmem; qemu $*"
	for i in $(seq 1 "$RUNS"); do
		# Odd runs vmm first, even runs QEMU first: neither always follows the other.
		[ $((i % 2)) -eq 0 ] && run_qemu "$@" >>"$W/qemu.txt"
		run_vmm "$vmem" >>"$W/vmm.txt"
		[ $((i % 2)) -eq 1 ] && run_qemu "$@" >>"$W/qemu.txt"
		printf '  run %d: vmm %s ms, qemu %s ms\n' "$i" "$(tail -n1 "$W/vmm.txt" | cut -d' ' -f1)" \
			"$(tail -n1 "$W/qemu.txt" | cut -d' ' -f1)"
	done
	# A run that never reached init (0 ms: in the nested host, the emulation
	# sometimes wrecks an early boot, QEMU's as well as ours) is left out, and said.
	for side in vmm qemu; do
		n=$(grep -c '^0 ' "$W/$side.txt")
		[ "$n" -eq 0 ] || echo "  note: $n $side run(s) never reached init; left out of the medians"
		grep -v '^0 ' "$W/$side.txt" >"$W/$side.ok"
	done
	vb=$(cut -d' ' -f1 "$W/vmm.ok" | median)
	qb=$(cut -d' ' -f1 "$W/qemu.ok" | median)
	vr=$(cut -d' ' -f2 "$W/vmm.ok" | median)
	qr=$(cut -d' ' -f2 "$W/qemu.ok" | median)
	ROWS+=("$(printf '%-30s %10s %14s %8s' "boot-to-init, $name (ms)" "$vb" "$qb" "$(ratio "$vb" "$qb")")")
	ROWS+=("$(printf '%-30s %10s %14s %8s' "RSS at init, $name (KiB)" "$vr" "$qr" "$(ratio "$vr" "$qr")")")
}

ROWS=()
# Both VMMs read the kernel and initramfs from a warm page cache, the first run too.
cat "$K" "$I" "$BUILD/vmm" "$(command -v qemu-system-x86_64)" >/dev/null 2>&1
echo "bench/boot: $RUNS runs each, alternated ($CPUS vCPU, ${MEM} MiB, $(basename "$K"))"
echo "host THP: enabled: $(thp enabled); shmem_enabled: $(thp shmem_enabled); defrag: $(thp defrag)"
case " $BOOT_ROWS " in *" default "*) row default "${MEM}M" -m "${MEM}M" ;; esac
case " $BOOT_ROWS " in *" shared "*) row shared "size=${MEM}M,shared=on" -m "${MEM}M" \
	-object "memory-backend-memfd,id=ram,size=${MEM}M" -machine memory-backend=ram ;; esac
printf '\n%-30s %10s %14s %8s\n' "" "vmm" "qemu microvm" "ratio"
printf '%s\n' "${ROWS[@]}"
echo "targets: boot-to-init <= 0.80x QEMU microvm in both rows; RSS: private guest RAM counts in the default row"
