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
OUT=$WORK/suite-out
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

# Runs the selected cases of one file; each case's report is printed whole when it ends.
run_file() {
	local file=$1 name rc
	shift
	for name in $(grep -o '^case_[A-Za-z0-9_]*' "$file" | sed 's/^case_//'); do
		selected "$name" "$@" || continue
		# Already decided: this is a rerun after the nested host died mid-suite.
		grep -q "^[A-Z]* boot:$name\(:\|$\)" "$RESULTS" 2>/dev/null && continue
		# Each case in its own shell under a deadline, so one that hangs fails alone.
		timeout -k 10 "$CASE_TIMEOUT" bash -c \
			'source "$1"; source "$2"; run_case "$3"' _ "$REPO/tests/boot/lib.sh" "$file" "$name" \
			>"$OUT/$name.txt" 2>&1
		rc=$?
		if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
			echo "FAIL boot:$name: no verdict within $CASE_TIMEOUT s (hung)" >>"$RESULTS"
			echo "  FAIL $name: no verdict within $CASE_TIMEOUT s (hung)" >>"$OUT/$name.txt"
		fi
		{ echo "boot: $name"; cat "$OUT/$name.txt"; } | flock "$OUT/.print" cat
	done
}

running=0
for f in "$REPO"/tests/boot/cases/*.sh; do
	run_file "$f" "$@" &
	running=$((running + 1))
	if [ "$running" -ge "$BOOT_JOBS" ]; then
		wait -n
		running=$((running - 1))
	fi
done
wait
echo "boot: done"
