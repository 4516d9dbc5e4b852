# Bad input: each gets a one-line error naming what is wrong, and exit status 2.

case_bad_input() {
	local cut=$WORK/cut-bzImage
	head -c 300000 "$KERNEL" >"$cut"
	expect_usage_error "--kernel $WORK/missing: No such file" --kernel "$WORK/missing" || return
	expect_usage_error "not a bzImage" --kernel "$REPO/README.md" || return
	expect_usage_error "not a vmlinux" --kernel /bin/sh || return
	expect_usage_error "truncated" --kernel "$cut" || return
	head -c 3000000 "$VMLINUX_CLOUD" >"$cut"
	expect_usage_error "beyond the end of the file" --kernel "$cut" || return
	expect_usage_error "not a regular file" --kernel "$WORK" || return
	expect_usage_error "--initramfs $WORK/nope" --kernel "$KERNEL" --initramfs "$WORK/nope" || return
	expect_usage_error "memory too small" --kernel "$KERNEL" --initramfs "$INITRD" --memory 24M || return
	expect_usage_error "--cpus 255" --kernel "$KERNEL" --cpus 255 || return
	expect_usage_error "--memory 12Q" --kernel "$KERNEL" --memory 12Q || return
	expect_usage_error "--serial tcp" --kernel "$KERNEL" --serial tcp || return
	expect_usage_error "unknown option '--frobnicate'" --kernel "$KERNEL" --frobnicate || return
	boot_pass
}
