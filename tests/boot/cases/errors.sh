# Bad input: each gets a one-line error naming what is wrong, and exit status 2.

# expect_usage_error NEEDLE ARGS...: vmm exits 2 and its message contains NEEDLE.
expect_usage_error() {
	local needle=$1 out rc
	shift
	out=$("$VMM" "$@" </dev/null 2>&1 >/dev/null)
	rc=$?
	if [ "$rc" -ne 2 ]; then
		boot_fail "'vmm $*' exited $rc, expected 2 ($out)"
		return 1
	fi
	if ! grep -qF -- "$needle" <<<"$out"; then
		boot_fail "'vmm $*' said '$out', expected it to mention '$needle'"
		return 1
	fi
	if [ "$(wc -l <<<"$out")" -ne 1 ]; then
		boot_fail "'vmm $*' printed more than one line: $out"
		return 1
	fi
	return 0
}

case_bad_input() {
	local cut=$WORK/cut-bzImage
	head -c 300000 "$KERNEL" >"$cut"
	expect_usage_error "--kernel $WORK/missing: No such file" --kernel "$WORK/missing" || return
	expect_usage_error "not a bzImage" --kernel /bin/sh || return
	expect_usage_error "truncated" --kernel "$cut" || return
	expect_usage_error "not a regular file" --kernel "$WORK" || return
	expect_usage_error "--initramfs $WORK/nope" --kernel "$KERNEL" --initramfs "$WORK/nope" || return
	expect_usage_error "memory too small" --kernel "$KERNEL" --initramfs "$INITRD" --memory 24M || return
	expect_usage_error "--cpus 255" --kernel "$KERNEL" --cpus 255 || return
	expect_usage_error "--memory 12Q" --kernel "$KERNEL" --memory 12Q || return
	expect_usage_error "--serial tcp" --kernel "$KERNEL" --serial tcp || return
	expect_usage_error "unknown option '--frobnicate'" --kernel "$KERNEL" --frobnicate || return
	boot_pass
}
