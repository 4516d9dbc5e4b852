#!/usr/bin/env bash
# The boot-smoke suite. Runs every case (or those matching the arguments, as
# shell patterns) and appends PASS/FAIL lines to build/boot-results.txt. Needs
# a usable /dev/kvm: tests/boot/run.sh provides one.
#
# Cases of one file run one after another (they may share images, taps,
# namespaces); files run BOOT_JOBS at a time (default 2), since a guest boot
# leaves most of a host CPU idle waiting on the emulated one. Cases that already
# have a verdict in the results file are skipped, so when the nested host dies
# and tests/nested/kvm-host.sh runs the suite again, it resumes.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BOOT_JOBS=${BOOT_JOBS:-2}
CASE_TIMEOUT=${CASE_TIMEOUT:-900}
# An L2 boot wrecked by the emulation came 1-2 times in 20 boots: with ~30 boots
# a suite, one retry left a case failing twice in a row in a few runs of 100.
FLAW_RETRIES=${FLAW_RETRIES:-2}
OUT=$WORK/suite-out
FLAWS=$BUILD/boot-flaws.txt
rm -rf "$OUT"
mkdir -p "$OUT"

selected() {
	local name=$1 pat
	[ $# -gt 1 ] || return 0
	shift
	for pat in "$@"; do
		# shellcheck disable=SC2053
		[[ $name == $pat ]] && return 0
	done
	return 1
}

# Runs one case in its own shell under a deadline, so one that hangs fails
# alone; its verdict goes to VERDICT.
attempt() {
	local file=$1 name=$2 verdict=$3 rc tpid
	rm -f "$verdict" "$WORK/flaw.$name"
	timeout -k 10 "$CASE_TIMEOUT" bash -c \
		'source "$1"; source "$2"; RESULTS=$4; run_case "$3"' _ "$REPO/tests/boot/lib.sh" "$file" "$name" "$verdict" \
		>>"$OUT/$name.txt" 2>&1 &
	tpid=$!
	wait "$tpid"
	rc=$?
	# timeout leads a process group of its own: whatever the case left running
	# there (a host client still waiting for a guest that died early) goes now,
	# so it cannot meet the next attempt's guest on the same socket path.
	kill -KILL -- "-$tpid" 2>/dev/null
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		echo "FAIL boot:$name: no verdict within $CASE_TIMEOUT s (hung)" >>"$verdict"
		echo "  FAIL $name: no verdict within $CASE_TIMEOUT s (hung)" >>"$OUT/$name.txt"
	fi
}

# Runs the selected cases of one file; each case's report is printed whole when it ends.
run_file() {
	local file=$1 name verdict flaw tries
	shift
	for name in $(grep -o '^case_[A-Za-z0-9_]*' "$file" | sed 's/^case_//'); do
		selected "$name" "$@" || continue
		# Already decided: this is a rerun after the nested host died mid-suite.
		grep -q "^[A-Z]* boot:$name\(:\| \|$\)" "$RESULTS" 2>/dev/null && continue
		verdict=$OUT/$name.verdict
		: >"$OUT/$name.txt"
		attempt "$file" "$name" "$verdict"
		# The nested host's emulation sometimes wrecks an L2 boot (QEMU's own
		# KVM guests too; see docs/testing.md): a failure that carries that
		# signature, and only in the nested host, is tried again, at most
		# FLAW_RETRIES times, and says so.
		tries=0
		while [ "$tries" -lt "$FLAW_RETRIES" ] && grep -qs '^FAIL' "$verdict" && [ -s "$WORK/flaw.$name" ]; do
			flaw=$(head -n 1 "$WORK/flaw.$name")
			echo "  RETRY $name: nested-host emulation flaw: $flaw" >>"$OUT/$name.txt"
			echo "$name: $flaw" >>"$FLAWS"
			attempt "$file" "$name" "$verdict"
			tries=$((tries + 1))
		done
		if [ "$tries" -gt 0 ]; then
			{ IFS= read -r first; printf '%s (retried %s: nested-host emulation flaw)\n' "$first" \
				"$([ "$tries" -eq 1 ] && echo once || echo "$tries times")"; cat; } \
				<"$verdict" >"$verdict.new" && mv "$verdict.new" "$verdict"
		fi
		# A skipped case has no verdict.
		[ -f "$verdict" ] && flock "$OUT/.print" sh -c 'cat "$1" >>"$2"' _ "$verdict" "$RESULTS"
		{ echo "boot: $name"; cat "$OUT/$name.txt"; } | flock "$OUT/.print" cat
	done
}

running=0
for f in "${BOOT_CASES:-$REPO/tests/boot/cases}"/*.sh; do
	run_file "$f" "$@" &
	running=$((running + 1))
	if [ "$running" -ge "$BOOT_JOBS" ]; then
		wait -n
		running=$((running - 1))
	fi
done
wait
echo "boot: done"
