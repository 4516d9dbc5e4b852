#!/usr/bin/env bash
# Self-test of the nested KVM host harness (kvm-host.sh). Always goes through
# the nested host (KVM_HOST_FORCE_NESTED=1), even where /dev/kvm works.
# Checks: exit status, stdout/stderr kept apart and intact, argv quoting, cwd,
# environment passing, the read-write build/ share and the read-only root,
# a working /dev/kvm in L1 that kvm-probe finds fast, the retry after a dead L1 and after a wedged, silent or stalled one, no retry with
# --retries 0, the timeout, the
# interactive mode on a pseudo-terminal, and bad arguments. One "PASS|FAIL nested:selftest:CASE" line per case, also appended
# to $RESULTS (default build/results.txt); ends with "N passed, N failed".
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo" || exit 1
RESULTS=${RESULTS:-build/results.txt}
mkdir -p build/nested "$(dirname "$RESULTS")"
export KVM_HOST_FORCE_NESTED=1
host=$here/kvm-host.sh
work=$(mktemp -d "$repo/build/nested/selftest.XXXXXX")
trap 'rm -rf "$work"' EXIT
pass=0 fail=0

check() {  # check NAME CONDITION-STATUS [DETAIL]
	local name=$1 ok=$2 detail=${3:-}
	if [ "$ok" -eq 0 ]; then
		pass=$((pass + 1)); echo "PASS nested:selftest:$name" | tee -a "$RESULTS"
	else
		fail=$((fail + 1)); echo "FAIL nested:selftest:$name $detail" | tee -a "$RESULTS"
	fi
}
has_line() { grep -qxF -- "$2" "$1"; }

for prog in kvm-api-check kvm-probe; do
	cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -o "$work/$prog" "$here/$prog.c" ||
		{ echo "selftest: cannot build $prog"; exit 1; }
done

# 1. One boot: status, streams, argv, cwd, env, shares, /dev/kvm.
build_file=$work/from-l1.txt
(cd "$repo/tests" &&
	KVM_HOST_ENV="SELFTEST_VAR" SELFTEST_VAR='x y$z "q"' SELFTEST_HIDDEN=1 \
	"$host" --timeout 600 -- "$here/selftest-l1.sh" "$build_file" "$work/kvm-api-check" "$work/kvm-probe" \
		'a b' "c'd" '$x' '' '*' >"$work/out" 2>"$work/err")
rc=$?
check exit-status "$([ $rc -eq 7 ]; echo $?)" "rc=$rc, want 7"
check cwd "$(has_line "$work/out" "pwd=$repo/tests"; echo $?)"
args=$(grep '^arg=' "$work/out" | tr '\n' ' ')
check argv "$([ "$args" = "arg=[a b] arg=[c'd] arg=[\$x] arg=[] arg=[*] " ]; echo $?)" "got: $args"
check env-passed "$(has_line "$work/out" 'var=[x y$z "q"]'; echo $?)"
check env-not-passed "$(has_line "$work/out" 'hidden=[unset]'; echo $?)"
check env-nested-flag "$(has_line "$work/out" 'nested=[1]'; echo $?)"
check rw-build-share "$([ "$(cat "$build_file" 2>/dev/null)" = "written in L1" ]; echo $?)"
check ro-root "$(has_line "$work/out" 'root_write=refused' && [ ! -e "$here/.selftest-must-not-exist" ]; echo $?)"
check dev-kvm "$(grep -q '^kvm_api=12 create_vm=ok create_vcpu=ok$' "$work/out"; echo $?)" \
	"$(grep kvm-api-check "$work/out")"
# kvm-probe (kvm-usable.sh) passes L1's KVM, which runs guest code at speed,
# and fails it when given too small a time budget.
check kvm-probe-fast "$(grep -q '^probe=0 kvm-probe: /dev/kvm runs guest code at full speed' "$work/out"; echo $?)" \
	"$(grep '^probe=' "$work/out")"
check kvm-probe-slow "$(grep -q '^probe_slow=1 kvm-probe: /dev/kvm is too slow to boot Linux' "$work/out"; echo $?)" \
	"$(grep '^probe_slow=' "$work/out")"
check stderr-apart "$(has_line "$work/err" to-stderr && ! grep -q to-stderr "$work/out"; echo $?)"
want=$(seq 1 200000 | sed 's/^/bulk /' | md5sum)
got=$(grep '^bulk ' "$work/out" | md5sum)
check bulk-output-intact "$([ "$want" = "$got" ]; echo $?)"
check boot-reported "$(grep -q '^kvm-host: nested KVM host up after [0-9.]* s$' "$work/err"; echo $?)"
check no-marker-leak "$(! grep -q -e 'rc=' -e '^up$' "$work/out"; echo $?)"

# 2. A dead L1 (panic on purpose) is reported and retried once.
KVM_HOST_TEST_FAIL_ONCE=1 "$host" --timeout 600 -- sh -c 'echo second-try; exit 5' >"$work/out" 2>"$work/err"
rc=$?
check retry-status "$([ $rc -eq 5 ]; echo $?)" "rc=$rc, want 5"
check retry-message "$(grep -qF 'nested KVM host died before the command finished; retrying (1 of 2)' "$work/err"; echo $?)"
check retry-ran-once "$([ "$(grep -c second-try "$work/out")" -eq 1 ]; echo $?)"

# 2b. A wedged L1 (a soft lockup on its console) is stopped, reported and retried once.
KVM_HOST_TEST_WEDGE_ONCE=1 "$host" --timeout 600 -- sh -c 'echo after-wedge; exit 6' >"$work/out" 2>"$work/err"
rc=$?
check wedge-retry-status "$([ $rc -eq 6 ]; echo $?)" "rc=$rc, want 6"
check wedge-message "$(grep -qF 'the nested KVM host wedged' "$work/err"; echo $?)"
check wedge-ran-once "$([ "$(grep -c after-wedge "$work/out")" -eq 1 ]; echo $?)"

# 2c. A silent L1 (its heartbeat stopped, nothing on its console) is stopped,
# reported and retried once.
start=$SECONDS
KVM_HOST_TEST_SILENT_ONCE=1 KVM_HOST_HEARTBEAT_S=30 "$host" --timeout 600 -- sh -c 'sleep 40; echo after-silence; exit 7' \
	>"$work/out" 2>"$work/err"
rc=$?
check silent-retry-status "$([ $rc -eq 7 ]; echo $?)" "rc=$rc, want 7"
check silent-message "$(grep -qF 'no heartbeat for' "$work/err"; echo $?)" "$(tail -n 3 "$work/err")"
check silent-ran-once "$([ "$(grep -c after-silence "$work/out")" -eq 1 ]; echo $?)"

# 2d. With --retries 0, a dead L1 is the end: 125, said so, the command not run.
KVM_HOST_TEST_FAIL_ONCE=1 "$host" --retries 0 --timeout 600 -- sh -c 'echo ran-anyway; exit 5' >"$work/out" 2>"$work/err"
rc=$?
check no-retry-status "$([ $rc -eq 125 ]; echo $?)" "rc=$rc, want 125"
check no-retry-message "$(grep -qF 'died (no retries allowed); giving up' "$work/err" && ! grep -q retrying "$work/err"; echo $?)"
check no-retry-not-run "$(! grep -q ran-anyway "$work/out"; echo $?)"

# 2e. A stalled L1 (alive, idle, the command silent) is stopped, reported and
# retried once: the first run of the command idles; the retry finds its mark
# on the build/ share and ends.
KVM_HOST_STALL_S=40 "$host" --timeout 600 -- sh -c \
	"if [ -e '$work/stalled-once' ]; then echo after-stall; exit 8; fi; : >'$work/stalled-once'; sleep 400" \
	>"$work/out" 2>"$work/err"
rc=$?
check stall-retry-status "$([ $rc -eq 8 ]; echo $?)" "rc=$rc, want 8"
check stall-message "$(grep -qF 'the nested KVM host stalled (idle, and nothing from the command, for' "$work/err"; echo $?)" \
	"$(tail -n 3 "$work/err")"
check stall-ran-once "$([ "$(grep -c after-stall "$work/out")" -eq 1 ]; echo $?)"

# 3. The timeout kills QEMU and gives 124.
start=$SECONDS
"$host" --timeout 5 -- sleep 600 >"$work/out" 2>"$work/err"
rc=$?
check timeout-status "$([ $rc -eq 124 ]; echo $?)" "rc=$rc, want 124"
check timeout-prompt "$([ $((SECONDS - start)) -lt 60 ]; echo $?)" "took $((SECONDS - start)) s"
check timeout-message "$(grep -q 'timed out after 5 s' "$work/err"; echo $?)"

# 4. Interactive mode (run-vmm.sh) on a pseudo-terminal: the command gets a
# controlling tty of the same size, its status comes back, the terminal is restored.
# script's input stays open, as a terminal's does: at end of input script
# sends the pty a byte that L1's terminal echoes as "^@" into the output.
if command -v script >/dev/null; then
	mkfifo "$work/idle-input"
	sleep 900 >"$work/idle-input" &
	idle=$!
	script -qfec "stty rows 21 cols 93 -echoctl; stty -g >'$work/stty-before';
		'$here/run-vmm.sh' sh -c 'tty; stty size; [ -t 0 ] && ps -o tty= -p \$\$; exit 4';
		echo host-rc=\$?; stty -g >'$work/stty-after'" /dev/null <"$work/idle-input" >"$work/tty-out" 2>&1
	kill "$idle" 2>/dev/null; wait "$idle" 2>/dev/null
	tr -d '\r' <"$work/tty-out" >"$work/tty-clean"
	tty_seen="saw: $(head -c 600 "$work/tty-clean" | tr '\n' '|')"
	check tty-up-line "$(grep -qx 'kvm-host: nested KVM host up (L1 uptime [0-9.]* s)' "$work/tty-clean"; echo $?)" "$tty_seen"
	check tty-stdin "$(has_line "$work/tty-clean" /dev/hvc0; echo $?)" "$tty_seen"
	check tty-controlling "$(grep -qx ' *hvc0 *' "$work/tty-clean"; echo $?)" "$tty_seen"
	check tty-size "$(has_line "$work/tty-clean" '21 93'; echo $?)" "$tty_seen"
	check tty-status "$(has_line "$work/tty-clean" host-rc=4; echo $?)" "$(grep host-rc "$work/tty-clean")"
	check tty-restored "$(cmp -s "$work/stty-before" "$work/stty-after"; echo $?)"
else
	echo "selftest: no 'script' here: interactive mode not tested"
fi

# 5. Bad arguments fail fast with 125, before any boot.
"$host" --timeout abc -- true >/dev/null 2>&1; rc=$?
check bad-timeout "$([ $rc -eq 125 ]; echo $?)" "rc=$rc"
KVM_HOST_ENV='BAD-NAME' "$host" -- true >/dev/null 2>&1; rc=$?
check bad-env-name "$([ $rc -eq 125 ]; echo $?)" "rc=$rc"
"$host" --retries -1 -- true >/dev/null 2>&1; rc=$?
check bad-retries "$([ $rc -eq 125 ]; echo $?)" "rc=$rc"
"$host" --cpus 2 >/dev/null 2>&1; rc=$?
check no-command "$([ $rc -eq 125 ]; echo $?)" "rc=$rc"

echo "nested selftest: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
