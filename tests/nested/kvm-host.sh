#!/usr/bin/env bash
# shellcheck disable=SC2054  # commas inside QEMU options are not array separators
# Runs a command on a machine with /dev/kvm.
#
#   tests/nested/kvm-host.sh [--timeout SECS] [--mem SIZE] [--cpus N] [--retries N] [--tty] -- CMD [ARGS...]
#
# With a usable /dev/kvm here (one that runs guest code at hardware speed:
# kvm-usable.sh), CMD is simply executed. Otherwise CMD runs inside
# a nested KVM host: an L1 Linux guest under QEMU's software emulation (TCG,
# -cpu max, which emulates AMD SVM with nested paging) whose kvm-amd gives it
# /dev/kvm. L1 sees this machine's root filesystem read-only over 9p and the
# repository's build/ read-write at the same path, and runs CMD as root in the
# caller's cwd. CMD's stdout and stderr come back on ours; its exit status
# becomes ours. Boot costs seconds: run many things in one call.
#
# Options:
#   --timeout SECS  give up after SECS (default 1800) in all: QEMU is killed, exit 124
#   --mem SIZE      L1 memory, QEMU syntax (default 8G: room for 5 GiB L2 guests)
#   --cpus N        L1 vCPUs (default 2)
#   --retries N     boot L1 again at most N times (default 2) when it dies or
#                   wedges before CMD finishes; CMD then runs again from the
#                   start, so give more only to a CMD that resumes its work
#   --tty           interactive: CMD gets this terminal (raw, passed through) as
#                   its controlling tty in L1; no timeout. Used by run-vmm.sh.
# Environment:
#   PATH HOME TERM LANG LC_ALL USER LOGNAME are passed to CMD; add more with
#   KVM_HOST_ENV="NAME ...". CMD also sees KVM_HOST_NESTED=1 when in L1.
#   KVM_HOST_FORCE_NESTED=1   use the nested host even if /dev/kvm works here
#   KVM_HOST_TEST_FAIL_ONCE=1 L1 panics on purpose on the first boot (self-test
#                             of the retry path)
#   KVM_HOST_TEST_WEDGE_ONCE=1 L1 hangs with a soft-lockup line instead (self-test
#                             of the wedge detection)
#   KVM_HOST_TEST_SILENT_ONCE=1 L1 hangs silently, its heartbeat stopped (self-test
#                             of the heartbeat watch)
#   KVM_HOST_HEARTBEAT_S=SECS an L1 silent for SECS (default 120) counts as wedged
#   KVM_HOST_STALL_S=SECS     an L1 that idles (QEMU under 10 % of a CPU) while the
#                             command prints nothing, for SECS (default 1000, more
#                             than a boot case's deadline), counts as wedged too
#   KVM_HOST_APPEND=WORDS     more L1 kernel command line (experiments)
#   KVM_HOST_ACCEL=tcg,...    QEMU's -accel for L1 (experiments; default tcg)
#   KVM_HOST_CPU=MODEL,...    QEMU's -cpu for L1 (experiments; default max,-erms,-fsrm)
#   KVM_HOST_DEBUG=1          verbose L1 kernel; its console log is kept and named
#   KVM_HOST_BUILD=DIR        the build/ folder shared read-write (default: the
#                             repository's build/); guest images come from DIR/guest
#   KVM_HOST_LOCK=FILE        the lock that keeps nested hosts one at a time on
#                             this machine (default /tmp/vmm-kvm-host.lock)
# Exit status: CMD's; 124 on timeout; 125 if the nested host could not run it
# (died 1 + --retries times, or could not be built or booted).
set -uo pipefail

prog=kvm-host
timeout_s=1800 mem=8G cpus=2 retries=2 tty=
heartbeat_s=${KVM_HOST_HEARTBEAT_S:-120}
stall_s=${KVM_HOST_STALL_S:-1000}
usage() {
	echo "usage: kvm-host.sh [--timeout SECS] [--mem SIZE] [--cpus N] [--retries N] [--tty] -- CMD [ARGS...]" >&2
	exit 125
}
while [ $# -gt 0 ]; do
	case $1 in
		--timeout) [ $# -ge 2 ] || usage; timeout_s=$2; shift 2 ;;
		--mem)     [ $# -ge 2 ] || usage; mem=$2; shift 2 ;;
		--cpus)    [ $# -ge 2 ] || usage; cpus=$2; shift 2 ;;
		--retries) [ $# -ge 2 ] || usage; retries=$2; shift 2 ;;
		--tty)     tty=1; shift ;;
		--)        shift; break ;;
		*)         usage ;;
	esac
done
[ $# -ge 1 ] || usage
[[ $timeout_s =~ ^[1-9][0-9]*$ ]] || { echo "$prog: bad --timeout '$timeout_s'" >&2; exit 125; }
[[ $cpus =~ ^[1-9][0-9]*$ ]] || { echo "$prog: bad --cpus '$cpus'" >&2; exit 125; }
[[ $retries =~ ^[0-9]$|^[1-9][0-9]$ ]] || { echo "$prog: bad --retries '$retries' (0 to 99)" >&2; exit 125; }
[[ $mem =~ ^[1-9][0-9]*[MGT]?$ ]] || { echo "$prog: bad --mem '$mem'" >&2; exit 125; }
[[ $heartbeat_s =~ ^[1-9][0-9]*$ ]] || { echo "$prog: bad KVM_HOST_HEARTBEAT_S '$heartbeat_s'" >&2; exit 125; }
[[ $stall_s =~ ^[1-9][0-9]*$ ]] || { echo "$prog: bad KVM_HOST_STALL_S '$stall_s'" >&2; exit 125; }

# shellcheck source=tests/nested/kvm-usable.sh
. "$(dirname "${BASH_SOURCE[0]}")/kvm-usable.sh" || exit 125
kvm_usable && exec "$@"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=${KVM_HOST_BUILD:-$repo/build}
mkdir -p "$build" && build=$(cd "$build" && pwd) || exit 125
guest=$build/guest
nested=$build/nested
kernel=$guest/vmlinuz-generic
initrd=$nested/initramfs-l1.cpio.gz
cwd=$PWD

for tool in qemu-system-x86_64 flock timeout; do
	command -v $tool >/dev/null || { echo "$prog: $tool is missing (run scripts/setup.sh)" >&2; exit 125; }
done

# Build (or just check) the L1 kernel and initramfs; serialised between callers.
mkdir -p "$nested"
if ! (
	flock 9
	if [ ! -f "$kernel" ] || [ ! -f "$guest/kernel-generic/version" ]; then
		make -s --no-print-directory -C "$repo/guest-images" BUILD="$guest" \
			"$kernel" "$guest/kernel-generic/version" >&2 || exit 1
	fi
	make -s --no-print-directory -C "$here" BUILD="$nested" GUEST="$guest" >&2
) 9>"$nested/.lock"; then
	echo "$prog: cannot build the nested KVM host's kernel and initramfs" >&2
	exit 125
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kvm-host.XXXXXX") || exit 125
case $tmp in *[[:space:]]*) echo "$prog: temporary folder '$tmp' has spaces" >&2; exit 125 ;; esac

# What L1 runs: the caller's environment essentials, cwd and argv, quoted for bash.
{
	echo "# written by kvm-host.sh"
	printf 'KVMHOST_BUILD=%q\n' "$build"
	printf 'KVMHOST_SHELL=%q\n' "$BASH"
} >"$tmp/env"
{
	echo "# written by kvm-host.sh: the command to run in the nested KVM host"
	for name in PATH HOME TERM LANG LC_ALL USER LOGNAME ${KVM_HOST_ENV:-}; do
		[[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { echo "$prog: bad name '$name' in KVM_HOST_ENV" >&2; rm -rf "$tmp"; exit 125; }
		[ -n "${!name+set}" ] && printf 'export %s=%q\n' "$name" "${!name}"
	done
	echo 'export KVM_HOST_NESTED=1 TMPDIR=/tmp'
	printf 'cd -- %q || { echo "kvm-host: cannot enter %q in the nested host" >&2; exit 125; }\n' "$cwd" "$cwd"
	printf 'exec'
	printf ' %q' "$@"
	printf '\n'
} >"$tmp/cmd.sh"

qemu_pid='' saved_stty='' cat_pids=()
cleanup() {
	[ -n "$qemu_pid" ] && kill -TERM "$qemu_pid" 2>/dev/null
	[ -n "$saved_stty" ] && stty "$saved_stty" 2>/dev/null
	for p in "${cat_pids[@]}"; do kill "$p" 2>/dev/null; done
	if [ -n "${KVM_HOST_DEBUG:-}" ]; then
		echo "$prog: debug: L1 console log and run files kept in $tmp" >&2
	else
		rm -rf "$tmp"
	fi
}
on_signal() {
	echo "$prog: interrupted, stopping the nested KVM host" >&2
	cleanup
	exit 130
}
trap cleanup EXIT
trap on_signal INT TERM HUP

now() { echo "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Boots L1 once. Sets attempt_rc to CMD's status, or 124 (timeout), or -1 (L1 died).
boot_l1() {
	local failonce=$1 deadline=$2 start remain cmdline
	local -a qemu
	# In debug mode the console log of an L1 that died is kept, numbered.
	[ -n "${KVM_HOST_DEBUG:-}" ] && [ -s "$tmp/console.log" ] && mv "$tmp/console.log" "$tmp/console.$boots.log"
	boots=$((boots + 1))
	rm -f "$tmp/ctl" "$tmp/console.log" "$tmp/out" "$tmp/err" "$tmp/wedged" "$tmp/silent" "$tmp/stalled"
	: >"$tmp/ctl"
	cmdline="console=ttyS0 panic=-1 kvmhost.run=$tmp"
	if [ -n "${KVM_HOST_DEBUG:-}" ]; then cmdline+=" printk.time=1"; else cmdline+=" quiet loglevel=1"; fi
	[ "$failonce" = panic ] && cmdline+=" kvmhost.failonce=1"
	[ "$failonce" = wedge ] && cmdline+=" kvmhost.wedgeonce=1"
	[ "$failonce" = silent ] && cmdline+=" kvmhost.silentonce=1"
	[ -n "${KVM_HOST_APPEND:-}" ] && cmdline+=" $KVM_HOST_APPEND"
	# No ERMS/FSRM: with them Linux clears and copies pages with "rep stosb" and
	# "rep movsb", which TCG runs one byte per iteration (docs/testing.md).
	qemu=(qemu-system-x86_64 -nodefaults -no-user-config -accel "${KVM_HOST_ACCEL:-tcg}" -cpu "${KVM_HOST_CPU:-max,-erms,-fsrm}"
		-smp "$cpus" -m "$mem" -display none -no-reboot
		-kernel "$kernel" -initrd "$initrd"
		-chardev "file,id=console,path=$tmp/console.log" -serial chardev:console
		-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap
		-virtfs "local,path=$build,mount_tag=hostbuild,security_model=none,multidevs=remap"
		-device virtio-rng-pci
		-device virtio-serial-pci,id=vser
		-chardev "file,id=ctl,path=$tmp/ctl" -device virtserialport,bus=vser.0,chardev=ctl,name=kvmhost.ctl)
	if [ -n "$tty" ]; then
		local rows cols size
		# A terminal of unknown size (a pty nobody sized) says "0 0": pass nothing then.
		size=$(stty size 2>/dev/null) && read -r rows cols <<<"$size" &&
			[[ $rows =~ ^[1-9][0-9]*$ && $cols =~ ^[1-9][0-9]*$ ]] && cmdline+=" kvmhost.rows=$rows kvmhost.cols=$cols"
		cmdline+=" kvmhost.mode=tty"
		qemu+=(-chardev stdio,id=con,mux=off,signal=off -device virtconsole,bus=vser.0,chardev=con)
	else
		cmdline+=" kvmhost.mode=batch"
		mkfifo "$tmp/out" "$tmp/err"
		cat "$tmp/out" & cat_pids+=($!)
		cat "$tmp/err" >&2 & cat_pids+=($!)
		qemu+=(-chardev "file,id=out,path=$tmp/out" -device virtserialport,bus=vser.0,chardev=out,name=kvmhost.stdout
			-chardev "file,id=err,path=$tmp/err" -device virtserialport,bus=vser.0,chardev=err,name=kvmhost.stderr)
	fi
	qemu+=(-append "$cmdline")

	start=$(now)
	if [ -n "$tty" ]; then
		saved_stty=$(stty -g 2>/dev/null)
		[ -n "$saved_stty" ] && stty raw -echo
		# A background job's stdin would be /dev/null: hand QEMU ours explicitly.
		exec 3<&0
		"${qemu[@]}" <&3 3<&- 2>"$tmp/qemu.err" &
		exec 3<&-
	else
		remain=$(awk -v d="$deadline" -v n="$(now)" 'BEGIN { r = int(d - n); print (r < 1 ? 1 : r) }')
		timeout -k 10 "$remain" "${qemu[@]}" </dev/null 2>"$tmp/qemu.err" &
	fi
	qemu_pid=$!
	# Report the boot time when L1 says it is up. (In tty mode L1 says so on
	# the terminal itself, before the command's output, so no line is torn.)
	(
		while kill -0 "$qemu_pid" 2>/dev/null; do
			if grep -q '^up' "$tmp/ctl" 2>/dev/null; then
				# QEMU's stdio chardev turned output processing back on; the
				# guest side already sends CR LF, so pass bytes through as they are.
				if [ -n "$tty" ]; then
					{ stty -opost </dev/tty; } 2>/dev/null
				else
					echo "$prog: nested KVM host up after $(elapsed "$start") s" >&2
				fi
				exit 0
			fi
			sleep 0.1
		done
	) &
	local watcher=$!
	# The emulation sometimes wedges L1 for good (docs/testing.md), in one of
	# two ways: every CPU in a soft lockup, which its console reports, or its
	# timers stopped, which nothing reports, so l1-init sends a heartbeat on
	# the control port every 15 s. After two minutes of lockup, or
	# $heartbeat_s s without a heartbeat, L1 is stopped and counted as dead,
	# so it is booted again (at most --retries times, below). A third way, seen
	# once in a boot suite: L1's timers ran and its heartbeat came, but the
	# command stopped, idle, in the middle of a line of output (a lost
	# interrupt in L1 can leave a writer waiting for good). So in batch mode an
	# L1 that idles while the command prints nothing for $stall_s s is stopped
	# the same way: every 10 s, QEMU's CPU time and the bytes the output
	# readers passed on are sampled; 1 s of CPU in 10 s, or any output, is life.
	(
		last_size=-1 last_change=$SECONDS
		vm_pid= tick=0 last_cpu=-1 last_out=-1 last_life=$SECONDS
		hz=$(getconf CLK_TCK 2>/dev/null) || hz=100
		while kill -0 "$qemu_pid" 2>/dev/null; do
			if grep -aqE 'soft lockup - CPU#[0-9]+ stuck for ([0-9]{4,}|[2-9][0-9]{2}|1[2-9][0-9])s' \
				"$tmp/console.log" 2>/dev/null; then
				: >"$tmp/wedged"
				kill -TERM "$qemu_pid" 2>/dev/null
				exit 0
			fi
			size=$(stat -c %s "$tmp/ctl" 2>/dev/null) || size=-1
			if [ "$size" != "$last_size" ]; then
				last_size=$size last_change=$SECONDS
			elif [ $((SECONDS - last_change)) -ge "$heartbeat_s" ]; then
				echo $((SECONDS - last_change)) >"$tmp/silent"
				kill -TERM "$qemu_pid" 2>/dev/null
				exit 0
			fi
			tick=$((tick + 1))
			if [ -z "$tty" ] && [ $((tick % 5)) -eq 0 ]; then
				# In batch mode $qemu_pid is timeout's; QEMU is its child.
				[ -n "$vm_pid" ] || vm_pid=$(pgrep -P "$qemu_pid" | head -n 1)
				cpu=$(awk '{ print $14 + $15 }' "/proc/$vm_pid/stat" 2>/dev/null)
				[[ $cpu =~ ^[0-9]+$ ]] || cpu=-1
				out=0
				for p in "${cat_pids[@]}"; do
					w=$(awk '/^wchar:/ { print $2 }' "/proc/$p/io" 2>/dev/null)
					[[ $w =~ ^[0-9]+$ ]] && out=$((out + w))
				done
				if [ "$out" != "$last_out" ] || [ "$last_cpu" -lt 0 ] || [ "$cpu" -lt 0 ] ||
					[ $((cpu - last_cpu)) -ge "$hz" ]; then
					last_life=$SECONDS
				elif [ $((SECONDS - last_life)) -ge "$stall_s" ]; then
					echo $((SECONDS - last_life)) >"$tmp/stalled"
					kill -TERM "$qemu_pid" 2>/dev/null
					exit 0
				fi
				last_cpu=$cpu last_out=$out
			fi
			sleep 2
		done
	) &
	local wedge_watcher=$!
	wait "$qemu_pid"
	local qrc=$?
	qemu_pid=
	kill "$watcher" "$wedge_watcher" 2>/dev/null; wait "$watcher" "$wedge_watcher" 2>/dev/null
	if [ -n "$saved_stty" ]; then stty "$saved_stty" 2>/dev/null; saved_stty=; fi
	for p in "${cat_pids[@]}"; do wait "$p" 2>/dev/null; done
	cat_pids=()

	local rcline
	rcline=$(grep -a '^rc=[0-9]*$' "$tmp/ctl" | tail -n1)
	if [ -n "$rcline" ]; then
		attempt_rc=${rcline#rc=}
	elif [ -e "$tmp/wedged" ]; then
		echo "$prog: the nested KVM host wedged (its CPUs in a soft lockup for 2 minutes); stopped it" >&2
		tr -d '\r' <"$tmp/console.log" | grep -a 'soft lockup' | tail -n 2 | sed "s/^/$prog:   /" >&2
		attempt_rc=-1
	elif [ -e "$tmp/silent" ]; then
		echo "$prog: the nested KVM host wedged (no heartbeat for $(cat "$tmp/silent") s: its clock stopped); stopped it" >&2
		attempt_rc=-1
	elif [ -e "$tmp/stalled" ]; then
		echo "$prog: the nested KVM host stalled (idle, and nothing from the command, for $(cat "$tmp/stalled") s); stopped it" >&2
		attempt_rc=-1
	elif [ -z "$tty" ] && [ "$qrc" -eq 124 ]; then
		echo "$prog: timed out after $timeout_s s; nested KVM host killed" >&2
		attempt_rc=124
	else
		local err
		err=$(grep -a '^error=' "$tmp/ctl" | tail -n1)
		[ -n "$err" ] && echo "$prog: nested KVM host: ${err#error=}" >&2
		if [ -s "$tmp/qemu.err" ]; then
			sed "s/^/$prog: qemu: /" "$tmp/qemu.err" | tail -n 10 >&2
		fi
		if [ -s "$tmp/console.log" ]; then
			# The reason (panic, BUG, oops, init's words) and how it ended.
			echo "$prog: from the L1 console:" >&2
			{
				tr -d '\r' <"$tmp/console.log" |
					grep -a -E 'Kernel panic|BUG:|Oops|general protection|sysrq: |l1-init:' | head -n 8
				echo "..."
				tr -d '\r' <"$tmp/console.log" | tail -n 3
			} | sed "s/^/$prog:   /" >&2
		fi
		attempt_rc=-1
	fi
}

# One nested host at a time on this machine: two share its CPUs, which doubles
# every emulated time and pushes tests past their deadlines. A second caller
# waits here (before its deadline starts) and says so. QEMU inherits the lock,
# so an L1 left running by a killed caller still holds it.
lock=${KVM_HOST_LOCK:-/tmp/vmm-kvm-host.lock}
if { exec 8>>"$lock"; } 2>/dev/null; then
	if ! flock -n 8; then
		echo "$prog: another nested KVM host runs on this machine (lock $lock); waiting for it to end" >&2
		flock 8
	fi
else
	echo "$prog: cannot open $lock; not waiting for other nested KVM hosts" >&2
fi
deadline=$(awk -v n="$(now)" -v t="$timeout_s" 'BEGIN { printf "%.3f", n + t }')
# (run-vmm.sh has already said why in tty mode.)
[ -n "$tty" ] || echo "$prog: $kvm_reason: booting the nested KVM host (QEMU TCG, $cpus CPUs, $mem)" >&2
attempt_rc=-1
test_flaw=
[ -n "${KVM_HOST_TEST_FAIL_ONCE:-}" ] && test_flaw=panic
[ -n "${KVM_HOST_TEST_WEDGE_ONCE:-}" ] && test_flaw=wedge
[ -n "${KVM_HOST_TEST_SILENT_ONCE:-}" ] && test_flaw=silent
# A dead or wedged L1 is the emulation's flaw, not the command's: boot it again,
# at most --retries times (measured: a panic in about 1 L1 boot of 10; up to
# three deaths within one 10-minute boot suite, which resumes and asks for more).
boots=0
boot_l1 "$test_flaw" "$deadline"
tries=1
while [ "$attempt_rc" -eq -1 ] && [ "$tries" -le "$retries" ]; do
	echo "$prog: nested KVM host died before the command finished; retrying ($tries of $retries)" >&2
	boot_l1 "" "$deadline"
	tries=$((tries + 1))
done
if [ "$attempt_rc" -eq -1 ]; then
	if [ "$tries" -eq 1 ]; then
		echo "$prog: nested KVM host died (no retries allowed); giving up" >&2
	else
		echo "$prog: nested KVM host died $tries times; giving up" >&2
	fi
	attempt_rc=125
fi
exit "$attempt_rc"
