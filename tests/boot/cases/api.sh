# The API socket and sleep/wake on a real guest (docs/api.md): a guest counts
# once a second on its console; the count stops while the VM is paused (10 s,
# then 60 s), goes on from where it stopped after resume, and the guest
# reports no soft lockup or RCU stall; vm.info and vm.counters answer
# throughout; a burst of hostile requests leaves it counting; the ACPI power
# button powers it off and vmm exits 0.

API_SOCK=
API_PID=

api() {
	"$VMM" ctl --api-socket "$API_SOCK" "$@"
}

# api_quit: stop a vmm whose guest stopped counting with SIGQUIT, which has it
# print where each vCPU waits; boot_fail then tells the nested host's flaws
# (an interrupt KVM never delivered) from a failure of vmm's.
api_quit() {
	kill -QUIT "$API_PID" 2>/dev/null
	wait "$API_PID" 2>/dev/null
}

# The last count the guest printed, or -1.
last_count() {
	local n
	n=$(grep -a '^count=[0-9]*' "$1" | tail -n 1 | tr -d '\r')
	echo "${n#count=}" | grep -E '^[0-9]+$' || echo -1
}

# wait_count LOG N SECS: until the guest printed count=N or more.
wait_count() {
	local i=0
	while [ "$(last_count "$1")" -lt "$2" ]; do
		[ "$i" -lt "$3" ] || return 1
		kill -0 "$API_PID" 2>/dev/null || return 1
		sleep 1
		i=$((i + 1))
	done
}

# expect_state LOG STATE: vm.info answers, with that state.
expect_state() {
	local out
	out=$(api info 2>&1) || { boot_fail "vmm ctl info failed: $out" "$1"; return 1; }
	grep -q "^state: *$2\$" <<<"$out" || { boot_fail "vm.info: expected state $2, got: $(head -n 1 <<<"$out")" "$1"; return 1; }
	api counters >/dev/null 2>&1 || { boot_fail "vmm ctl counters failed while $2" "$1"; return 1; }
}

# pause_for LOG SECS: pause, check the count stands still (asking info and counters meanwhile), resume.
pause_for() {
	local log=$1 secs=$2 before after t=0 out
	out=$(api pause 2>&1) || { boot_fail "vmm ctl pause: $out" "$log"; return 1; }
	before=$(last_count "$log")
	expect_state "$log" Paused || return 1
	out=$(api pause 2>&1) && { boot_fail "a second pause was accepted" "$log"; return 1; }
	grep -q "409 .*already paused" <<<"$out" || { boot_fail "second pause said: $out" "$log"; return 1; }
	while [ "$t" -lt "$secs" ]; do
		sleep 5
		t=$((t + 5))
		expect_state "$log" Paused || return 1
	done
	after=$(last_count "$log")
	[ "$after" -eq "$before" ] ||
		{ boot_fail "the count went on while paused: $before, then $after after $secs s" "$log"; return 1; }
	out=$(api resume 2>&1) || { boot_fail "vmm ctl resume: $out" "$log"; return 1; }
	expect_state "$log" Running || return 1
	wait_count "$log" $((before + 3)) 60 ||
		{ api_quit; boot_fail "no count after resume (stuck at $(last_count "$log"))" "$log"; return 1; }
	# Exactly where it stopped: every number once, none skipped.
	grep -aq "^count=$((before + 1))" "$log" ||
		{ boot_fail "after count=$before the guest went on with $(grep -a '^count=' "$log" | grep -A1 "^count=$before" | tail -n 1)" "$log"; return 1; }
	PAUSED_AT=$before
}

hostile_burst() {
	local big=$WORK/api-big.json i
	head -c 200000 /dev/zero | tr '\0' '{' >"$big"
	for i in 1 2 3; do
		curl -s --max-time 5 --unix-socket "$API_SOCK" -X DELETE http://vmm/api/v1/vm.pause
		curl -s --max-time 5 --unix-socket "$API_SOCK" -X PUT -d '{"x": [[[[[[[[[[[[1]]]]]]]]]]]]}' http://vmm/api/v1/vm.pause
		curl -s --max-time 5 --unix-socket "$API_SOCK" -X PUT -d 'not json' http://vmm/api/v1/vm.resume
		curl -s --max-time 5 --unix-socket "$API_SOCK" -X PUT --data-binary "@$big" http://vmm/api/v1/vm.pause
		curl -s --max-time 5 --unix-socket "$API_SOCK" -H "X-Big: $(head -c 20000 /dev/zero | tr '\0' a)" http://vmm/api/v1/vm.info
		curl -s --max-time 5 --unix-socket "$API_SOCK" --path-as-is http://vmm/api/v1/../../etc/passwd
		curl -s --max-time 5 --unix-socket "$API_SOCK" -X PUT -H 'Content-Length: -1' http://vmm/api/v1/vm.pause
	done >"$WORK/api-hostile.out" 2>&1
	# Twenty clients that start a chunked PUT and then send nothing, more than the bound on
	# connections (at its --max-time, curl ends the upload properly: a 405, as vm.info takes GET).
	local pids=
	for i in $(seq 20); do
		sleep 5 | curl -s --max-time 3 --unix-socket "$API_SOCK" -T - http://vmm/api/v1/vm.info \
			>/dev/null 2>&1 &
		pids="$pids $!"
	done
	# Not a bare wait: vmm is a child of this shell too.
	# shellcheck disable=SC2086
	wait $pids
}

case_api_sleep_wake() {
	local log=$WORK/api.log out rc i
	command -v curl >/dev/null || { boot_fail "curl is missing (scripts/setup.sh installs it)"; return; }
	API_SOCK=$WORK/api.sock
	rm -f "$log" "$API_SOCK"
	"$VMM" --kernel "$KERNEL" --initramfs "$INITRD" --cmdline "$CMDLINE_BASE vmm.test=count" \
		--cpus 2 --memory 512M --serial "file=$log" --timeout 900 --api-socket "$API_SOCK" \
		</dev/null >"$log.stderr" 2>&1 &
	API_PID=$!
	for i in $(seq 50); do [ -S "$API_SOCK" ] && break; sleep 0.1; done
	out=$(api ping 2>&1) || { kill "$API_PID"; wait "$API_PID"; boot_fail "vmm ctl ping: $out" "$log"; return; }
	if ! wait_count "$log" 3 "$BOOT_TIMEOUT"; then
		kill "$API_PID" 2>/dev/null
		wait "$API_PID"
		RC=$?
		boot_fail "the guest never counted to 3 (vmm exit $RC: $(tail -n 1 "$log.stderr"))" "$log"
		return
	fi
	expect_state "$log" Running || { kill "$API_PID"; return; }
	out=$(api resume 2>&1) && { kill "$API_PID"; boot_fail "resume of a running VM was accepted" "$log"; return; }
	pause_for "$log" 10 || { kill "$API_PID"; return; }
	local short=$PAUSED_AT
	pause_for "$log" 60 || { kill "$API_PID"; return; }
	local long=$PAUSED_AT
	hostile_burst
	i=$(last_count "$log")
	wait_count "$log" $((i + 2)) 30 ||
		{ api_quit; boot_fail "the guest stopped counting after the hostile burst ($(tail -n 3 "$WORK/api-hostile.out"))" "$log"; return; }
	grep -q '"error"' "$WORK/api-hostile.out" ||
		{ kill "$API_PID"; boot_fail "no JSON error among the hostile answers" "$log"; return; }
	expect_state "$log" Running || { kill "$API_PID"; return; }
	out=$(api power-button 2>&1) || { kill "$API_PID"; boot_fail "vmm ctl power-button: $out" "$log"; return; }
	for i in $(seq 60); do kill -0 "$API_PID" 2>/dev/null || break; sleep 1; done
	if kill -0 "$API_PID" 2>/dev/null; then
		kill "$API_PID"
		wait "$API_PID"
		boot_fail "the guest did not power off within 60 s of the power button" "$log"
		return
	fi
	wait "$API_PID"
	RC=$?
	guest_ran "$log" count || return
	grep -aq "count: power button pressed" "$log" ||
		{ boot_fail "the guest ended without seeing the power button" "$log"; return; }
	[ "$(log_value "$log" lockups)" = 0 ] ||
		{ boot_fail "the guest complained: $(grep -a -e 'soft lockup' -e 'stall' "$log" | head -n 2)" "$log"; return; }
	[ ! -e "$API_SOCK" ] || { boot_fail "vmm left its socket behind" "$log"; return; }
	boot_pass "paused at count=$short for 10 s and at count=$long for 60 s, then powered off by the button; $(grep -c . "$WORK/api-hostile.out") lines of hostile answers"
}

# No guest: --api-socket errors name the option; vmm ctl without a server says so.
case_api_errors() {
	local f=$WORK/api-not-a-socket out rc
	: >"$f"
	expect_usage_error "--api-socket $f: exists and is not a socket" \
		--kernel "$KERNEL" --api-socket "$f" || return
	[ -f "$f" ] || { boot_fail "vmm removed a regular file given as --api-socket"; return; }
	expect_usage_error "--api-socket fd=x" --kernel "$KERNEL" --api-socket fd=x || return
	out=$("$VMM" ctl --api-socket "$WORK/nobody.sock" ping 2>&1)
	rc=$?
	if [ "$rc" -ne 1 ] || ! grep -q -- "--api-socket $WORK/nobody.sock" <<<"$out"; then
		boot_fail "vmm ctl with no server: exit $rc, said '$out'"
		return
	fi
	out=$("$VMM" ctl --api-socket "$WORK/nobody.sock" frobnicate 2>&1)
	rc=$?
	[ "$rc" -eq 2 ] || { boot_fail "vmm ctl frobnicate: exit $rc, said '$out'"; return; }
	boot_pass
}
