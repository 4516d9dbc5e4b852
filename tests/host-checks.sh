#!/usr/bin/env bash
# Checks that need no KVM: run on the host itself, results to $RESULTS.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RESULTS=${RESULTS:-$BUILD/results.txt}
VMM=$BUILD/vmm
status=0

check() {
	local name=$1
	shift
	if "$@"; then
		echo "PASS host:$name" >>"$RESULTS"
		echo "  PASS $name"
	else
		echo "FAIL host:$name" >>"$RESULTS"
		echo "  FAIL $name"
		status=1
	fi
}

help_and_version() {
	"$VMM" --help | grep -q -- '--kernel PATH' && "$VMM" --version | grep -q '^vmm [0-9]'
}

# Without KVM, vmm must say so in one line and exit 2 (on a KVM host: skipped).
no_kvm_message() {
	local out rc
	[ -e /dev/kvm ] && return 0
	out=$("$VMM" --kernel "$BUILD/guest/vmlinuz-generic" 2>&1 </dev/null)
	rc=$?
	[ "$rc" -eq 2 ] && grep -q '/dev/kvm does not exist' <<<"$out" && [ "$(wc -l <<<"$out")" -eq 1 ]
}

check help-and-version help_and_version
check no-kvm-message no_kvm_message
exit $status
