# vmm-smoke, the boot-smoke runner for users' kernels: passes on both Debian
# kernels (with their modules), fails on a kernel image that is cut short.

smoke_run() {
	local out=$1
	shift
	local extra=()
	[ -n "${BOOT_CMDLINE_EXTRA:-}" ] && extra=(--append "$BOOT_CMDLINE_EXTRA")
	"$BUILD/vmm-smoke" --vmm "$VMM" --timeout "$BOOT_TIMEOUT" --keep "${extra[@]}" "$@" >"$out" 2>&1
	RC=$?
	# --keep: the console log and vmm's stderr, for nested_flaw and for the reader.
	local kept
	kept=$(sed -n 's/^vmm-smoke: kept \([^ ]*\) .*/\1/p' "$out")
	[ -n "$kept" ] && nested_flaw "$kept/vmm.err" "$kept/console.log"
}

# smoke_passes FLAVOUR KERNEL: vmm-smoke passes every check on a Debian kernel with its modules.
smoke_passes() {
	local out=$WORK/smoke-$1.out
	smoke_run "$out" --kernel "$2" --modules "$GUEST/kernel-$1/root" --cpus 2 --memory 512
	[ "$RC" -eq 0 ] && tail -n1 "$out" | grep -q '^[1-9][0-9]* passed, 0 failed$' ||
		{ boot_fail "vmm-smoke exited $RC: $(grep -E '^FAIL' "$out" | head -n3 | tr '\n' ';')" "$out"; return; }
	boot_pass "$(tail -n1 "$out")"
}

case_smoke_generic() {
	smoke_passes generic "$KERNEL"
}

case_smoke_cloud() {
	smoke_passes cloud "$KERNEL_CLOUD"
}

case_smoke_cut_kernel() {
	local out=$WORK/smoke-cut.out cut=$WORK/cut-for-smoke
	head -c 2000000 "$KERNEL" >"$cut"
	smoke_run "$out" --kernel "$cut" --cpus 1 --memory 256
	[ "$RC" -ne 0 ] || { boot_fail "vmm-smoke passed a kernel cut short" "$out"; return; }
	grep -q '^FAIL init started' "$out" && grep -q 'truncated' "$out" ||
		{ boot_fail "no clear verdict for a cut kernel" "$out"; return; }
	tail -n1 "$out" | grep -q '^0 passed, [1-9][0-9]* failed$' ||
		{ boot_fail "summary line missing: $(tail -n1 "$out")" "$out"; return; }
	boot_pass
}
