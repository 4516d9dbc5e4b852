# virtio-rng over the modern virtio-pci transport: PCI enumeration (host
# bridge, BARs, capabilities), MSI-X through KVM routes and irqfds, kicks
# through ioeventfds, and the device's bytes reaching /dev/hwrng.

case_rng() {
	local log=$WORK/rng.log v
	guest_test rng "$log" --cpus 2 --memory 512M --rng
	if [ "$RC" -ne 0 ]; then
		boot_fail "vmm exited $RC, expected 0 (power-off): $(tail -n 1 "$log.stderr")" "$log"
		return
	fi
	expect_marker "$log" rng || { boot_fail "no VMMTEST-END rng rc=0 marker" "$log"; return; }
	v=$(log_value "$log" rng_current)
	case $v in virtio_rng*) ;; *) boot_fail "rng_current=$v" "$log"; return ;; esac
	[ "$(log_value "$log" host_bridge)" = "0x1b36:0x0008" ] ||
		{ boot_fail "host bridge 00:00.0 is $(log_value "$log" host_bridge)" "$log"; return; }
	[ "$(log_value "$log" pci_driver)" = "virtio-pci" ] ||
		{ boot_fail "virtio-rng bound to '$(log_value "$log" pci_driver)'" "$log"; return; }
	[ "$(log_value "$log" msix_irqs)" -ge 1 ] 2>/dev/null ||
		{ boot_fail "no MSI-X interrupts" "$log"; return; }
	# The guest must not have made the VMM complain (bad accesses are logged).
	if grep -q 'vmm: rng0' "$log.stderr"; then
		boot_fail "vmm logged guest errors: $(grep 'vmm: rng0' "$log.stderr" | head -n 2)" "$log"
		return
	fi
	boot_pass "$(log_value "$log" rng_distinct) distinct of $(log_value "$log" rng_bytes) bytes, msix_req_count=$(log_value "$log" msix_req_count)"
}

case_rng_args() {
	local out rc
	out=$("$VMM" --kernel "$KERNEL" --rng bogus=1 </dev/null 2>&1 >/dev/null)
	rc=$?
	[ "$rc" -eq 2 ] || { boot_fail "'vmm --rng bogus=1' exited $rc, expected 2 ($out)"; return; }
	grep -qF -- "--rng bogus=1" <<<"$out" ||
		{ boot_fail "'vmm --rng bogus=1' said '$out'"; return; }
	[ "$(wc -l <<<"$out")" -eq 1 ] || { boot_fail "more than one line: $out"; return; }
	boot_pass
}
