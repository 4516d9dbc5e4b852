#!/usr/bin/env bash
# Usage: tests/run-fuzz.sh SECONDS BIN...
#
# Runs each libFuzzer binary for SECONDS, seeded from a temporary copy of
# tests/fuzz/corpus/<name without fuzz_>/ (when it exists) so the repository
# is never modified. Appends "PASS fuzz:<name>" or "FAIL fuzz:<name>" to
# $RESULTS (default build/results.txt), prints one line per fuzzer with the
# runs executed, and exits 1 if any fuzzer crashed, leaked, timed out or ran
# out of memory. Crash inputs and the fuzzer's log are kept under
# $FUZZ_ARTIFACTS (default build/fuzz/artifacts/).
#
# FUZZ_MAX_LEN (default 4096) caps the input size; the harnesses read
# whatever prefix they need and treat the rest as payload.
set -u

if [ $# -lt 2 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then
	echo "usage: $0 SECONDS BIN..." >&2
	exit 2
fi
seconds=$1
shift

root=$(cd "$(dirname "$0")/.." && pwd)
RESULTS=${RESULTS:-build/results.txt}
artifacts=${FUZZ_ARTIFACTS:-build/fuzz/artifacts}
max_len=${FUZZ_MAX_LEN:-4096}
mkdir -p "$(dirname "$RESULTS")" "$artifacts"
artifacts=$(cd "$artifacts" && pwd)

tmproot=$(mktemp -d "${TMPDIR:-/tmp}/run-fuzz.XXXXXX")
trap 'rm -rf "$tmproot"' EXIT

status=0
for bin in "$@"; do
	name=$(basename "$bin")
	short=${name#fuzz_}
	if [ ! -x "$bin" ]; then
		echo "fuzz:$name: FAIL (no such binary: $bin)"
		echo "FAIL fuzz:$name" >>"$RESULTS"
		status=1
		continue
	fi

	work=$tmproot/$short
	mkdir -p "$work/corpus"
	if [ -d "$root/tests/fuzz/corpus/$short" ]; then
		cp -R "$root/tests/fuzz/corpus/$short/." "$work/corpus/"
	fi
	seeds=$(find "$work/corpus" -type f | wc -l)
	log=$work/log

	# -max_total_time bounds the fuzzing; the outer timeout catches a hang
	# in startup or in a single input beyond libFuzzer's own -timeout.
	timeout -k 10 $((seconds + 120)) "$bin" \
		-max_total_time="$seconds" -max_len="$max_len" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$artifacts/$name-" \
		"$work/corpus" >"$log" 2>&1
	rc=$?

	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
	corpus=$(find "$work/corpus" -type f | wc -l)
	if [ "$rc" -eq 0 ]; then
		echo "PASS fuzz:$name" >>"$RESULTS"
		echo "fuzz:$name: PASS, ${runs:-?} runs in ${seconds}s (${rate:-?} exec/s, ${cov:-cov: ?}, corpus $seeds -> $corpus)"
	else
		status=1
		echo "FAIL fuzz:$name" >>"$RESULTS"
		cp "$log" "$artifacts/$name.log"
		echo "fuzz:$name: FAIL (exit $rc) after ${runs:-?} runs; log and crash input in $artifacts/"
		grep -E '^(==[0-9]+==ERROR|SUMMARY|artifact_prefix|Test unit written)|runtime error' "$log" | head -10
		ls "$artifacts"/"$name"-* 2>/dev/null | head -5
	fi
	rm -rf "$work"
done
exit $status
