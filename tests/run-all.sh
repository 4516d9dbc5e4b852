#!/usr/bin/env bash
# Everything `make test` runs once the build is done: unit tests (plain and
# under ASan+UBSan), short fuzz runs, host-side checks, the boot-smoke suite.
# Every stage appends PASS/FAIL lines to build/results.txt; the last line is
# the summary "N passed, N failed". Exit status 0 only if nothing failed.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export RESULTS=$BUILD/results.txt
rm -f "$RESULTS"
mkdir -p "$BUILD"

stage() { echo; echo "== $*"; }

stage "unit tests (plain, then ASan+UBSan)"
tests/run-unit.sh "$BUILD/test/bin" "$BUILD/asan/bin"

stage "fuzz smoke (${FUZZ_SECONDS:-10} s each)"
fuzzers=$(ls "$BUILD"/fuzz/bin/fuzz_* 2>/dev/null)
if [ -n "$fuzzers" ]; then
	# shellcheck disable=SC2086
	tests/run-fuzz.sh "${FUZZ_SECONDS:-10}" $fuzzers
fi

stage "host checks"
tests/host-checks.sh

stage "nested KVM host self-test"
tests/nested/selftest.sh

stage "boot-smoke tests"
tests/boot/run.sh

pass=$(grep -c '^PASS' "$RESULTS")
fail=$(grep -c '^FAIL' "$RESULTS")
if [ "$fail" -ne 0 ]; then
	echo
	echo "failures:"
	grep '^FAIL' "$RESULTS" | sed 's/^/  /'
fi
echo
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
