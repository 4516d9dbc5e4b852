#!/usr/bin/env bash
# Host side of the boot-smoke tests: runs tests/boot/suite.sh where /dev/kvm
# works (here, or in one boot of the nested KVM host), then folds its results
# into build/results.txt. Arguments select cases by shell pattern.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
RESULTS=${RESULTS:-$BUILD/results.txt}
rm -f "$BUILD/boot-results.txt" "$BUILD/boot-flaws.txt"
# The suite resumes where it stopped, so a dead L1 costs only the cases it was
# running: allow more L1 deaths than kvm-host.sh's default (docs/testing.md).
tests/nested/kvm-host.sh --timeout "${BOOT_SUITE_TIMEOUT:-4200}" --retries "${BOOT_L1_RETRIES:-10}" -- tests/boot/suite.sh "$@"
rc=$?
if [ ! -s "$BUILD/boot-results.txt" ]; then
	echo "FAIL boot:suite: no results (kvm-host exit $rc)" >>"$RESULTS"
	echo "boot: the suite produced no results (exit $rc)"
	exit 1
fi
cat "$BUILD/boot-results.txt" >>"$RESULTS"
pass=$(grep -c '^PASS' "$BUILD/boot-results.txt")
fail=$(grep -c '^FAIL' "$BUILD/boot-results.txt")
[ "$rc" -eq 0 ] || { echo "FAIL boot:suite: the nested host exited $rc" >>"$RESULTS"; fail=$((fail + 1)); }
if [ -s "$BUILD/boot-flaws.txt" ]; then
	echo "boot: retried after a nested-host emulation flaw (docs/testing.md):"
	sed 's/^/  /' "$BUILD/boot-flaws.txt"
fi
echo "boot: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
