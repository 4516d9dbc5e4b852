#!/usr/bin/env bash
# Runs every unit-test binary in the given folders (cmocka, TAP output) and
# appends one "PASS|FAIL <suite>/<case>" line per test case to $RESULTS
# (default: build/results.txt). Prints a per-folder summary. Exit 1 on failure.
set -u
RESULTS=${RESULTS:-build/results.txt}
mkdir -p "$(dirname "$RESULTS")"
status=0
for dir in "$@"; do
	label=$(basename "$(dirname "$dir")")
	pass=0 fail=0
	for bin in "$dir"/test_*; do
		[ -x "$bin" ] || continue
		name=$(basename "$bin")
		out=$(CMOCKA_MESSAGE_OUTPUT=TAP timeout 300 "$bin" 2>&1)
		rc=$?
		p=$(grep -c '^ok ' <<<"$out")
		f=$(grep -c '^not ok ' <<<"$out")
		grep -E '^(not )?ok ' <<<"$out" | sed -E "s/^ok [0-9]+ - (.*)/PASS $label:$name:\1/; s/^not ok [0-9]+ - (.*)/FAIL $label:$name:\1/" >>"$RESULTS"
		if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
			# Crashed (sanitizer report, signal) outside any counted case.
			echo "FAIL $label:$name:exit-status-$rc" >>"$RESULTS"
			f=$((f + 1))
		fi
		pass=$((pass + p)) fail=$((fail + f))
		if [ "$f" -ne 0 ]; then
			status=1
			echo "---- $label/$name failed (exit $rc):"
			grep -vE '^ok ' <<<"$out" | tail -40
		fi
	done
	echo "unit[$label]: $pass passed, $fail failed"
done
exit $status
