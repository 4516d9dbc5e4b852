# vmm as a CI test runner: the guest's verdict is vmm's exit status.

expect_rc() {
	local want=$1 log=$2 what=$3
	if [ "$RC" -ne "$want" ]; then
		boot_fail "$what: vmm exited $RC, expected $want ($(tail -n 1 "$log.stderr" 2>/dev/null))" "$log"
		return 1
	fi
	return 0
}

case_exit_status_0_3_77() {
	local n
	for n in 0 3 77; do
		guest_test "exit$n" "$WORK/exit$n.log" || true
		expect_rc "$n" "$WORK/exit$n.log" "vmm-exit $n" || return
	done
	boot_pass
}

case_panic_status() {
	local log=$WORK/panic.log
	# panic=1 (vmm's default) reboots after the panic: still a panic, not a clean reboot.
	vmm_boot "$log" --kernel "$KERNEL" --initramfs "$INITRD" \
		--cmdline "console=ttyS0 quiet reboot=k panic=1 vmm.test=panic"
	expect_rc 125 "$log" "kernel panic, panic=1" || return
	grep -q "guest kernel panic: Kernel panic - not syncing" "$log.stderr" ||
		{ boot_fail "no panic message on stderr: $(cat "$log.stderr")" "$log"; return; }
	# panic=0: the kernel halts forever after the panic; vmm must still end it.
	vmm_boot "$log" --kernel "$KERNEL" --initramfs "$INITRD" \
		--cmdline "console=ttyS0 quiet reboot=k panic=0 vmm.test=panic"
	expect_rc 125 "$log" "kernel panic, panic=0" || return
	boot_pass
}

case_timeout_status() {
	local log=$WORK/hang.log start end
	start=$(date +%s)
	"$VMM" --kernel "$KERNEL" --initramfs "$INITRD" --cmdline "$CMDLINE_BASE vmm.test=hang" \
		--serial "file=$log" --timeout 120 </dev/null >"$log.stderr" 2>&1
	RC=$?
	end=$(date +%s)
	nested_flaw "$log.stderr" "$log"
	expect_rc 124 "$log" "a hanging guest with --timeout 120" || return
	grep -q 'timeout 120 s expired' "$log.stderr" && grep -q 'last console line: "hang: sleeping forever"' "$log.stderr" ||
		{ boot_fail "timeout message does not say where the boot stopped: $(cat "$log.stderr")"; return; }
	# ... and where each vCPU waits: the hang guest sleeps in the idle loop, halted.
	grep -q '^vmm: vCPU 0: [a-z-]* rip=0xffffffff[0-9a-f]* rflags.IF=[01]; LAPIC ' "$log.stderr" ||
		{ boot_fail "no vCPU state in the timeout report: $(cat "$log.stderr")"; return; }
	[ $((end - start)) -lt 180 ] || { boot_fail "took $((end - start)) s to honour --timeout 120"; return; }
	boot_pass
}

case_sigterm_status() {
	local log=$WORK/sigterm.log pid
	"$VMM" --kernel "$KERNEL" --initramfs "$INITRD" --cmdline "$CMDLINE_BASE vmm.test=hang" \
		--serial "file=$log" </dev/null >"$log.stderr" 2>&1 &
	pid=$!
	sleep 5
	kill -TERM "$pid"
	wait "$pid"
	RC=$?
	expect_rc 143 "$log" "SIGTERM" || return
	grep -q 'stopped by signal' "$log.stderr" || { boot_fail "no message for SIGTERM: $(cat "$log.stderr")"; return; }
	boot_pass
}

# SIGQUIT: 131, and first where each vCPU was, as --timeout reports it.
case_sigquit_status() {
	local log=$WORK/sigquit.log pid
	"$VMM" --kernel "$KERNEL" --initramfs "$INITRD" --cmdline "$CMDLINE_BASE vmm.test=hang" \
		--cpus 2 --serial "file=$log" </dev/null >"$log.stderr" 2>&1 &
	pid=$!
	sleep 5
	kill -QUIT "$pid"
	wait "$pid"
	RC=$?
	expect_rc 131 "$log" "SIGQUIT" || return
	grep -q '^vmm: stopped by signal Quit' "$log.stderr" &&
		grep -qE '^vmm: vCPU 0: [a-z-]+ rip=0x[0-9a-f]+ rflags\.IF=[01]; LAPIC .*tsc-deadline' "$log.stderr" &&
		grep -qE '^vmm: vCPU 1: [a-z-]+ rip=0x' "$log.stderr" ||
		{ boot_fail "SIGQUIT's report: $(tr '\n' ' ' <"$log.stderr")"; return; }
	boot_pass "$(grep -c '^vmm: vCPU [0-9]*:' "$log.stderr") vCPU lines"
}
