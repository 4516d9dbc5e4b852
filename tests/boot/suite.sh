#!/usr/bin/env bash
# The boot-smoke suite. Runs every case (or those matching the arguments, as
# shell patterns) and appends PASS/FAIL lines to build/boot-results.txt. Needs
# a usable /dev/kvm: tests/boot/run.sh provides one.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for f in "$REPO"/tests/boot/cases/*.sh; do
	source "$f"
done

cases=$(declare -F | sed -n 's/^declare -f case_//p' | sort)
for name in $cases; do
	if [ $# -gt 0 ]; then
		match=
		for pat in "$@"; do
			# shellcheck disable=SC2053
			[[ $name == $pat ]] && match=1
		done
		[ -n "$match" ] || continue
	fi
	echo "boot: $name"
	run_case "$name"
done
echo "boot: done"
