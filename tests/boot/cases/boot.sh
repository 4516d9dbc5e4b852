# Booting Linux: vCPU counts, memory sizes, both Debian kernels, power-off.

# check_info LOG CPUS MEM_MIB: the guest saw CPUS vCPUs and about MEM_MIB of RAM.
check_info() {
	local log=$1 cpus=$2 mem_mib=$3 got_cpus got_kb min_kb
	if [ "$RC" -ne 0 ]; then
		boot_fail "vmm exited $RC, expected 0 (power-off): $(tail -n 1 "$log.stderr")" "$log"
		return
	fi
	expect_marker "$log" info || { boot_fail "no VMMTEST-END info rc=0 marker" "$log"; return; }
	got_cpus=$(log_value "$log" cpus)
	got_kb=$(log_value "$log" memtotal_kb)
	# MemTotal excludes the kernel image and reserved areas: accept 85%.
	min_kb=$((mem_mib * 1024 * 85 / 100))
	[ "$got_cpus" = "$cpus" ] || { boot_fail "guest sees $got_cpus vCPUs, expected $cpus" "$log"; return; }
	[ "${got_kb:-0}" -ge "$min_kb" ] && [ "$got_kb" -le $((mem_mib * 1024)) ] ||
		{ boot_fail "guest MemTotal ${got_kb:-?} kB, expected about $((mem_mib * 1024)) kB" "$log"; return; }
	# The platform's tables and registers pass the kernel's ACPI core without a complaint
	# (with "quiet", its errors still reach the console).
	if grep -aq 'ACPI.*\(Error\|Warning\)' "$log"; then
		boot_fail "the guest's ACPI core complained: $(grep -a -m 1 'ACPI.*\(Error\|Warning\)' "$log" | tr -d '\r')" "$log"
		return
	fi
	boot_pass "cpus=$got_cpus memtotal_kb=$got_kb"
}

case_generic_1cpu() {
	guest_test info "$WORK/generic-1cpu.log" --cpus 1 --memory 512M
	check_info "$WORK/generic-1cpu.log" 1 512
}

case_generic_2cpu() {
	guest_test info "$WORK/generic-2cpu.log" --cpus 2 --memory 512M
	check_info "$WORK/generic-2cpu.log" 2 512
}

case_generic_4cpu() {
	guest_test info "$WORK/generic-4cpu.log" --cpus 4 --memory 1G
	check_info "$WORK/generic-4cpu.log" 4 1024
}

case_generic_5g() {
	guest_test info "$WORK/generic-5g.log" --cpus 2 --memory 5G
	check_info "$WORK/generic-5g.log" 2 5120
}

case_cloud_4cpu() {
	local log=$WORK/cloud-4cpu.log
	# The cloud kernel has no MP-table support: it finds its CPUs through ACPI alone.
	vmm_boot "$log" --kernel "$KERNEL_CLOUD" --initramfs "$INITRD_CLOUD" --cpus 4 --memory 512M \
		--cmdline "$CMDLINE_BASE vmm.test=info"
	check_info "$log" 4 512
}

# The same kernel as an uncompressed ELF vmlinux (guest-images/extract-vmlinux.sh),
# entered at its 64-bit entry with the zero page vmm makes for it.
case_cloud_vmlinux() {
	local log=$WORK/cloud-vmlinux.log
	vmm_boot "$log" --kernel "$VMLINUX_CLOUD" --initramfs "$INITRD_CLOUD" --cpus 2 --memory 512M \
		--cmdline "$CMDLINE_BASE vmm.test=info"
	check_info "$log" 2 512
}

# acpi=off: the kernel finds its CPUs and interrupt routing in the MP table
# alone, probes PCI through ports 0xCF8/0xCFC (no MCFG), and, having no way to
# power off, ends with a reboot (vmm.end=reboot, reboot=k: status 0). A disk
# read with one queue per vCPU shows all four CPUs and working interrupts.
case_generic_acpi_off() {
	local log=$WORK/generic-acpi-off.log img=$WORK/acpi-off.img sha
	head -c $((16 << 20)) /dev/urandom >"$img"
	sha=$(head -c $((8 << 20)) "$img" | sha256sum | cut -d' ' -f1)
	vmm_boot "$log" --kernel "$KERNEL" --initramfs "$INITRD" --cpus 4 --memory 512M \
		--disk "path=$img" --cmdline "$CMDLINE_BASE acpi=off vmm.end=reboot vmm.test=blk-read"
	rm -f "$img"
	guest_ran "$log" blk-read || return
	expect_value vda_queues 4 "$log" || return
	expect_value vda_sha256 "$sha" "$log" || return
	boot_pass "4 vCPUs from the MP table (4 disk queues), 8 MiB checksummed, ended by a reboot"
}

# A console whose reader goes away (`vmm --serial stdio ... | head -c 1`):
# vmm drops the console's output from then on, says so once, and the guest
# runs to its power-off: status 0, not death by SIGPIPE (as QEMU and
# Firecracker do). Status 0 says the guest got to its power-off unheard.
case_console_reader_gone() {
	local log=$WORK/console-gone.log rc
	rm -f "$log" "$log.stderr"
	timeout $((BOOT_TIMEOUT + 30)) "$VMM" --serial stdio --timeout "$BOOT_TIMEOUT" --kernel "$KERNEL" \
		--initramfs "$INITRD" --cpus 1 --memory 256M --cmdline "$CMDLINE_BASE vmm.test=info" \
		</dev/null 2>"$log.stderr" | head -c 1 >"$log"
	rc=${PIPESTATUS[0]}
	nested_flaw "$log.stderr" "$log"
	[ "$rc" -eq 0 ] ||
		{ boot_fail "vmm exited $rc after its console's reader went away, expected 0: $(tail -n 1 "$log.stderr")" "$log"; return; }
	grep -q "console's reader went away" "$log.stderr" ||
		{ boot_fail "vmm did not say that its console's reader went away: $(tail -n 1 "$log.stderr")" "$log"; return; }
	boot_pass "$(grep -m1 "reader went away" "$log.stderr")"
}
