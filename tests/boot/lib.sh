# Helpers for boot-smoke cases (sourced by tests/boot/suite.sh; runs where /dev/kvm works).
#
# A case is a file tests/boot/cases/NAME.sh defining functions case_<name>; each
# calls boot_pass or boot_fail once. Helpers:
#   vmm_boot LOG ARGS...      run build/vmm with --serial file=LOG and a timeout; sets RC
#   guest_test NAME LOG ARGS  boot the generic kernel + initramfs running /tests/NAME
#   expect_marker LOG NAME    the guest test NAME ran and ended with rc=0
#   log_value LOG KEY         the value of a "KEY=value" line the guest printed
#   expect_value KEY VAL LOG  the guest printed KEY=VAL (else the case fails)
#   guest_ran LOG NAME        vmm exited 0 and guest test NAME ended with rc=0
#   expect_usage_error NEEDLE ARGS...  vmm ARGS exits 2 with one line containing NEEDLE
#   nested_flaw STDERR LOG    note a boot the nested host's emulation wrecked (suite.sh retries once)
#   flaw_noted                nested_flaw noted this attempt's boot (prints why)
set -u

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-$REPO/build}
VMM=${VMM:-$BUILD/vmm}
GUEST=$BUILD/guest
KERNEL=$GUEST/vmlinuz-generic
INITRD=$GUEST/initramfs-generic.cpio.gz
KERNEL_CLOUD=$GUEST/vmlinuz-cloud
INITRD_CLOUD=$GUEST/initramfs-cloud.cpio.gz
VMLINUX_CLOUD=$GUEST/vmlinux-cloud  # the ELF inside vmlinuz-cloud
# Scratch images and logs. In the nested host, build/ is a 9p share: keep the
# heavy traffic on L1's own tmpfs and only the verdicts on the share.
if [ -n "${KVM_HOST_NESTED:-}" ]; then
	WORK=${TMPDIR:-/tmp}/boot-work
else
	WORK=$BUILD/boot-work
fi
RESULTS=$BUILD/boot-results.txt
# Emulated nested KVM is slow: budgets are generous, verdicts are not.
BOOT_TIMEOUT=${BOOT_TIMEOUT:-240}
BOOT_SILENT_S=${BOOT_SILENT_S:-90}
# quiet: every console byte is a VM exit, and in the nested host exits are dear.
# BOOT_CMDLINE_EXTRA: more kernel arguments for every case (tests/boot/with-kernel.sh;
# the smoke cases give it to vmm-smoke --append).
CMDLINE_BASE="console=ttyS0 quiet panic=-1 reboot=k${BOOT_CMDLINE_EXTRA:+ $BOOT_CMDLINE_EXTRA}"

mkdir -p "$WORK"
CURRENT_CASE=
CASE_DONE=

boot_pass() {
	echo "PASS boot:$CURRENT_CASE" >>"$RESULTS"
	echo "  PASS $CURRENT_CASE${1:+ ($1)}"
	CASE_DONE=1
}

# boot_skip WHY: the case does not run here, said as such; no verdict counted.
boot_skip() {
	echo "  SKIP $CURRENT_CASE ($1)"
	CASE_DONE=1
}

boot_fail() {
	# Found after the emulation wrecked the guest (a triple fault mid-case that
	# an API call then met as a missing VM): retried as when vmm_boot sees it.
	if [ -n "${2:-}" ] && ! flaw_noted >/dev/null; then
		nested_flaw "$2.stderr" "$2"
	fi
	echo "FAIL boot:$CURRENT_CASE: $1" >>"$RESULTS"
	echo "  FAIL $CURRENT_CASE: $1"
	if [ -n "${2:-}" ] && [ -f "$2" ]; then
		echo "  ---- last console lines ($2):"
		tail -n 15 "$2" | sed 's/^/  | /'
	fi
	# vmm's own last words (per-vCPU state on a timeout) say where a guest hung.
	if [ -n "${2:-}" ] && [ -s "$2.stderr" ]; then
		echo "  ---- vmm's last lines ($2.stderr):"
		grep -v 'timeline' "$2.stderr" | tail -n 8 | sed 's/^/  | /'
	fi
	CASE_DONE=1
}

# In the nested host, a guest that printed nothing for BOOT_SILENT_S s has met
# the emulation's flaw (nested_flaw, below; every case's guest prints within
# 30 s there): it is stopped then, not after the whole BOOT_TIMEOUT.
# A caller may set the array VMM_WRAP (local to it) to a command that execs
# vmm in place, such as "ip netns exec NS": the pid stays vmm's, to stop.
vmm_boot() {
	local log=$1 pid watch=
	shift
	rm -f "$log" "$log.silent"
	${VMM_WRAP[@]+"${VMM_WRAP[@]}"} "$VMM" --serial "file=$log" --timeout "$BOOT_TIMEOUT" "$@" \
		</dev/null >"$log.stderr" 2>&1 &
	pid=$!
	if [ -n "${KVM_HOST_NESTED:-}" ]; then
		(
			trap 'kill "$s" 2>/dev/null; exit 0' TERM
			sleep "$BOOT_SILENT_S" &
			s=$!
			wait "$s"
			if ! grep -q '[^[:space:]]' "$log" 2>/dev/null && kill -0 "$pid" 2>/dev/null; then
				: >"$log.silent"
				kill -TERM "$pid"
			fi
		) &
		watch=$!
	fi
	wait "$pid"
	RC=$?
	if [ -n "$watch" ]; then
		kill -TERM "$watch" 2>/dev/null
		wait "$watch" 2>/dev/null
	fi
	nested_flaw "$log.stderr" "$log"
	return 0
}

# nested_flaw STDERR LOG: inside the nested host only, a guest that triple
# faulted, or hung before printing a single byte (every case boots a stock,
# known-good kernel with "quiet"), is the emulation's flaw: QEMU's own KVM guests
# show it there too, at a few percent of boots (docs/testing.md). Note it so
# suite.sh runs the case again; on a real /dev/kvm it stays a failure.
#
# One more signature, console or not: at --timeout (or SIGQUIT), a vCPU runs
# with interrupts enabled, nothing in service, and an interrupt pending in its
# LAPIC that it never took; or it sits halted, interrupts enabled, with its
# TSC-deadline timer a second or more overdue. Delivering those was the
# hypervisor's job (vmm uses KVM's in-kernel LAPIC), and in the nested host the
# emulated SVM sometimes loses the kick that would make it (docs/testing.md).
#
# And a third: the guest kernel panicked inside its own exception entry code
# (error_entry, paranoid_entry, asm_exc_*) on a CPU entry-area stack
# (fffffe...), i.e. exceptions recursing until that stack ran out, the same
# corruption the emulation inflicts on L1 ("stack guard page was hit").
#
# A KVM internal error (failed emulation) before the guest printed anything is
# the triple fault's sibling: once seen in the decompressor of a known-good
# kernel (5-level paging on, rip inside the relocated decompressor).
nested_flaw() {
	local why undelivered=
	[ -n "${KVM_HOST_NESTED:-}" ] || return 0
	if grep -qE '^vmm: (--timeout [0-9]* s expired|stopped by signal Quit)' "$1" 2>/dev/null; then
		undelivered=$(grep -m1 -E '^vmm: vCPU [0-9]+: runnable rip=0x[0-9a-f]+ rflags\.IF=1; LAPIC tpr=0 isr=-1 irr=([3-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5]) ' "$1")
		# A halted vCPU, interrupts on, its TSC-deadline timer unmasked and a
		# second or more overdue: KVM's in-kernel LAPIC never fired it.
		[ -n "$undelivered" ] ||
			undelivered=$(grep -m1 -E '^vmm: vCPU [0-9]+: halted rip=0x[0-9a-f]+ rflags\.IF=1; LAPIC tpr=(0|0x[0-9a-f]+) isr=-1 irr=-1 lvtt=0x4[0-9a-f]{4} tmict=0; tsc-deadline armed, [0-9]{4,} ms overdue' "$1")
	fi
	if [ -n "${undelivered:-}" ]; then
		why="the L2 guest hung with an interrupt KVM never delivered (${undelivered#vmm: })"
	elif grep -q '^vmm: guest kernel panic' "$1" 2>/dev/null &&
		grep -aqE 'RIP: 0010:(error_entry|paranoid_entry|asm_exc_[a-z_]+)\+0x' "$2" &&
		grep -aqE 'RSP: [0-9a-f]{4}:fffffe' "$2"; then
		why="the L2 guest's exceptions recursed until its entry stack ran out ($(grep -aoE -m1 'RIP: 0010:[A-Za-z_]+' "$2"))"
	elif [ -e "$2.silent" ]; then
		why="the L2 guest hung before it printed anything (silent for $BOOT_SILENT_S s; stopped)"
	elif grep -q '^vmm: guest triple fault' "$1" 2>/dev/null; then
		if grep -q '[^[:space:]]' "$2" 2>/dev/null; then
			why="the L2 guest triple faulted ($(grep -o -m1 'on vCPU [0-9]*' "$1"), after it printed)"
		else
			why="the L2 guest triple faulted before it printed anything"
		fi
	elif grep -q '[^[:space:]]' "$2" 2>/dev/null; then
		return 0
	elif grep -q '^vmm: KVM internal error' "$1" 2>/dev/null; then
		why="KVM could not emulate an L2 instruction before the guest printed anything ($(grep -o -m1 'on vCPU [0-9]* (suberror [0-9]*, rip=0x[0-9a-f]*' "$1")))"
	elif grep -qE "^vmm: --timeout [0-9]+ s expired; the guest('s last console line: \"\"| wrote nothing to its serial console)" \
		"$1" 2>/dev/null; then
		why="the L2 guest hung before it printed anything ($(grep -m1 '^vmm: vCPU 0:' "$1"))"
	else
		return 0
	fi
	echo "$why" >>"$WORK/flaw.$CURRENT_CASE"
}

# guest_silent LOG SECS: for cases that start vmm themselves and wait for a
# console line (vmm_boot's watcher does this for its own): in the nested host,
# a guest that has printed nothing after SECS >= BOOT_SILENT_S seconds met the
# emulation's flaw. Marks LOG.silent (nested_flaw, from boot_fail, then notes
# it, and the suite tries the case again) and succeeds: stop waiting.
guest_silent() {
	[ -n "${KVM_HOST_NESTED:-}" ] && [ "$2" -ge "$BOOT_SILENT_S" ] &&
		! grep -q '[^[:space:]]' "$1" 2>/dev/null && : >"$1.silent"
}

# wait_line LOG PATTERN PID: for up to BOOT_TIMEOUT s, until LOG has a line
# matching PATTERN (grep's basic regex), while vmm PID runs and its guest is
# not silent (guest_silent). Succeeds once the line is there.
wait_line() {
	local i
	for i in $(seq "$BOOT_TIMEOUT"); do
		grep -aq "$2" "$1" 2>/dev/null && return 0
		kill -0 "$3" 2>/dev/null || break
		guest_silent "$1" "$i" && break
		sleep 1
	done
	grep -aq "$2" "$1" 2>/dev/null
}

# flaw_noted: nested_flaw has noted this attempt's boot as wrecked by the
# emulation; prints why.
flaw_noted() {
	[ -s "$WORK/flaw.$CURRENT_CASE" ] && head -n 1 "$WORK/flaw.$CURRENT_CASE"
}

# guest_test TEST LOG [vmm args...]: the generic kernel running /tests/TEST.
guest_test() {
	local name=$1 log=$2
	shift 2
	vmm_boot "$log" --kernel "$KERNEL" --initramfs "$INITRD" \
		--cmdline "$CMDLINE_BASE vmm.test=$name" "$@"
}

expect_marker() {
	grep -q "^VMMTEST-END $2 rc=0" "$1"
}

log_value() {
	sed -n "s/^$2=//p" "$1" | tr -d '\r' | head -n 1
}

expect_value() {
	local got
	got=$(log_value "$3" "$1")
	[ "$got" = "$2" ] && return 0
	boot_fail "guest $1='$got', expected '$2'" "$3"
	return 1
}

# netxfer_checked LOG G2H H2G BYTES: the net-xfer guest test against the
# host's netxfer (its output in G2H and H2G) moved BYTES each way, every byte
# verified, with the same checksum on both sides. Fails the case otherwise.
netxfer_checked() {
	local log=$1 g2h=$2 h2g=$3 bytes=$4 hsum gsum
	grep -q '^verify=ok' "$g2h" ||
		{ boot_fail "host received wrong bytes: $(tr '\n' ' ' <"$g2h")" "$log"; return 1; }
	expect_value h2g_verify ok "$log" || return 1
	expect_value g2h_bytes "$bytes" "$log" || return 1
	expect_value h2g_bytes "$bytes" "$log" || return 1
	hsum=$(sed -n 's/.*sum=\([0-9a-f]*\).*/\1/p' "$g2h")
	gsum=$(log_value "$log" g2h_sum)
	[ -n "$hsum" ] && [ "$hsum" = "$gsum" ] ||
		{ boot_fail "guest to host checksum: guest $gsum, host $hsum" "$log"; return 1; }
	hsum=$(sed -n 's/.*sum=\([0-9a-f]*\).*/\1/p' "$h2g")
	gsum=$(log_value "$log" h2g_sum)
	[ -n "$hsum" ] && [ "$hsum" = "$gsum" ] ||
		{ boot_fail "host to guest checksum: host $hsum, guest $gsum" "$log"; return 1; }
}

guest_ran() {
	if [ "$RC" -ne 0 ]; then
		boot_fail "vmm exited $RC, expected 0: $(tail -n 1 "$1.stderr")" "$1"
		return 1
	fi
	expect_marker "$1" "$2" && return 0
	boot_fail "no VMMTEST-END $2 rc=0 marker" "$1"
	return 1
}

expect_usage_error() {
	local needle=$1 out rc
	shift
	out=$(timeout 120 "$VMM" "$@" </dev/null 2>&1 >/dev/null)
	rc=$?
	if [ "$rc" -ne 2 ]; then
		boot_fail "'vmm $*' exited $rc, expected 2 ($out)"
		return 1
	fi
	if ! grep -qF -- "$needle" <<<"$out"; then
		boot_fail "'vmm $*' said '$out', expected it to mention '$needle'"
		return 1
	fi
	if [ "$(wc -l <<<"$out")" -ne 1 ]; then
		boot_fail "'vmm $*' printed more than one line: $out"
		return 1
	fi
	return 0
}

run_case() {
	local name=$1 start end
	CURRENT_CASE=$name
	CASE_DONE=
	start=$(date +%s)
	"case_$name"
	end=$(date +%s)
	[ -n "$CASE_DONE" ] || boot_fail "case ended without a verdict"
	echo "    ($((end - start)) s)"
}
