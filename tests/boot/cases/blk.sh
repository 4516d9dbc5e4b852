# virtio-blk: the guest reads a host-written disk, writes one the host checks
# after power-off (on each guest memory backing), uses an ext4 file system made
# on the host, and cannot write to a read-only disk. Bad --disk and --memory
# options are one-line errors with status 2.

BLK_WORK=$WORK/blk

# blk_pattern LINES: numbered 16-byte lines, the same the guest tests write.
blk_pattern() {
	awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) printf "%015d\n", i }'
}

# blk_range_sha FILE OFFSET LEN: sha256 of LEN bytes of FILE at byte OFFSET.
blk_range_sha() {
	dd if="$1" bs=64k iflag=skip_bytes,count_bytes skip="$2" count="$3" status=none |
		sha256sum | cut -d' ' -f1
}

# blk_same FILE1 FILE2 OFFSET LEN: the byte ranges are identical.
blk_same() {
	cmp -s -n "$4" -i "$3:$3" "$1" "$2"
}

blk_setup() {
	rm -rf "$BLK_WORK"
	mkdir -p "$BLK_WORK"
}

case_blk_read() {
	local img=$BLK_WORK/read.img img2=$BLK_WORK/read2.img log=$WORK/blk-read.log parts i
	blk_setup
	head -c $((16 << 20)) /dev/urandom >"$img"
	head -c $((1 << 20)) /dev/urandom >"$img2"
	guest_test blk-read "$log" --cpus 2 --memory 512M \
		--disk "path=$img,serial=vmm-test-disk" \
		--disk "path=$img2,readonly=on,serial=second,queues=1"
	guest_ran "$log" blk-read || return
	expect_value vda_sectors 32768 "$log" || return
	expect_value vda_ro 0 "$log" || return
	expect_value vda_serial vmm-test-disk "$log" || return
	expect_value vda_queues 2 "$log" || return
	expect_value vda_lbs 512 "$log" || return
	[ "$(log_value "$log" vda_discard_max)" -gt 0 ] 2>/dev/null ||
		{ boot_fail "no discard support seen by the guest" "$log"; return; }
	[ "$(log_value "$log" vda_wz_max)" -gt 0 ] 2>/dev/null ||
		{ boot_fail "no write-zeroes support seen by the guest" "$log"; return; }
	expect_value vda_sha256 "$(blk_range_sha "$img" 0 $((8 << 20)))" "$log" || return
	parts=$(for i in 0 1 2 3; do
		dd if="$img" bs=64k skip=$((i * 32)) count=32 status=none | sha256sum
	done | sha256sum | cut -d' ' -f1)
	expect_value vda_par_sha256 "$parts" "$log" || return
	expect_value vda_last_sha256 "$(blk_range_sha "$img" $(((16 << 20) - 512)) 512)" "$log" || return
	expect_value vdb_ro 1 "$log" || return
	expect_value vdb_serial second "$log" || return
	expect_value vdb_sha256 "$(sha256sum <"$img2" | cut -d' ' -f1)" "$log" || return
	boot_pass "8 MiB checksummed, 2 queues, serial and second disk seen"
}

# blk_write_on MEMORY BACKING: the guest, its RAM given by --memory MEMORY,
# writes a disk the host checks after power-off; --verbose must name BACKING
# as the RAM's backing (and with HUGE "huge", say that 2 MiB or more of it
# were in huge pages at exit). Guest memory is what every virtio buffer lives in, so
# a backing that maps it wrong shows here as wrong bytes on the disk.
blk_write_on() {
	local memory=$1 backing=$2 huge=${3:-}
	local img=$BLK_WORK/write.img orig=$BLK_WORK/write.orig log=$WORK/blk-write.log
	local want zero marker in_huge in_huge_mib
	blk_setup
	head -c $((16 << 20)) /dev/urandom >"$orig"
	cp "$orig" "$img"
	guest_test blk-write "$log" --cpus 2 --memory "$memory" --disk "path=$img" --verbose
	guest_ran "$log" blk-write || return
	grep -q "guest RAM: [0-9]* MiB $backing" "$log.stderr" ||
		{ boot_fail "--verbose did not say '$backing': $(grep 'guest RAM' "$log.stderr" | head -n 1)" "$log"; return; }
	want=$(blk_pattern 262144 | sha256sum | cut -d' ' -f1)
	expect_value pattern_sha256 "$want" "$log" || return
	expect_value readback_sha256 "$want" "$log" || return
	zero=$(head -c $((1 << 20)) /dev/zero | sha256sum | cut -d' ' -f1)
	expect_value zero_sha256 "$zero" "$log" || return
	# After power-off, the data is in the file.
	[ "$(blk_range_sha "$img" $((1 << 20)) $((4 << 20)))" = "$want" ] ||
		{ boot_fail "image bytes [1 MiB, 5 MiB) are not the guest's pattern" "$log"; return; }
	marker=$({ printf 'vmm-blk-marker'; head -c $((512 - 14)) /dev/zero; } | sha256sum | cut -d' ' -f1)
	[ "$(blk_range_sha "$img" $((777 * 512)) 512)" = "$marker" ] ||
		{ boot_fail "sector 777 does not hold the guest's marker" "$log"; return; }
	[ "$(blk_range_sha "$img" $((8 << 20)) $((1 << 20)))" = "$zero" ] ||
		{ boot_fail "image bytes [8 MiB, 9 MiB) are not zero after BLKZEROOUT" "$log"; return; }
	blk_same "$img" "$orig" 0 $((777 * 512)) &&
		blk_same "$img" "$orig" $((778 * 512)) $(((1 << 20) - 778 * 512)) &&
		blk_same "$img" "$orig" $((5 << 20)) $((3 << 20)) &&
		blk_same "$img" "$orig" $((9 << 20)) $((1 << 20)) &&
		blk_same "$img" "$orig" $((11 << 20)) $((5 << 20)) ||
		{ boot_fail "bytes the guest did not write have changed" "$log"; return; }
	[ "$(stat -c %s "$img")" -eq $((16 << 20)) ] ||
		{ boot_fail "the image changed size: $(stat -c %s "$img")" "$log"; return; }
	# "132 of 512 MiB", from --verbose's last word on guest RAM
	in_huge=$(sed -n 's/.*guest RAM: \([0-9]* of [0-9]* MiB\) were in huge pages.*/\1/p' "$log.stderr")
	in_huge_mib=${in_huge%% *}
	if [ "$huge" = huge ] && [ "${in_huge_mib:-0}" -lt 2 ]; then
		boot_fail "${in_huge:-no MiB} of guest RAM were in huge pages at exit" "$log"
		return
	fi
	boot_pass "$backing RAM: 4 MiB pattern, marker sector, write-zeroes and discard reached the file; ${in_huge:+$in_huge in huge pages}"
}

# The default backing: private anonymous memory.
case_blk_write() {
	blk_write_on 512M "private anonymous"
}

# Shared RAM gets huge pages on a stock host: where shmem_enabled is "never"
# (the default) it is a file on a huge=always tmpfs of vmm's own.
case_blk_write_shared() {
	if grep -q '\[never\]' /sys/kernel/mm/transparent_hugepage/shmem_enabled 2>/dev/null; then
		blk_write_on size=512M,shared=on "shared (shared=on), a file on a tmpfs of vmm's own mounted with huge=always" huge
	else
		blk_write_on size=512M,shared=on "shared (shared=on), a memfd"
	fi
}

# hugetlbfs needs huge pages reserved on the host: the nested host is ours to
# reserve them in; elsewhere a host without them is a skip, said as such.
case_blk_write_hugetlbfs() {
	local want=160 free
	free=$(awk '/^HugePages_Free/ { print $2 }' /proc/meminfo)
	if [ "${free:-0}" -lt "$want" ] && [ -n "${KVM_HOST_NESTED:-}" ]; then
		echo $(( $(awk '/^HugePages_Total/ { print $2 }' /proc/meminfo) + want - ${free:-0} )) \
			>/proc/sys/vm/nr_hugepages 2>/dev/null
		free=$(awk '/^HugePages_Free/ { print $2 }' /proc/meminfo)
	fi
	if [ "${free:-0}" -lt "$want" ]; then
		boot_pass "SKIPPED: the host has ${free:-0} free 2 MiB huge pages, $want needed (sysctl vm.nr_hugepages)"
		return
	fi
	blk_write_on size=256M,hugepages=on "hugetlbfs (hugepages=on)"
}

case_memory_bad_options() {
	local short
	expect_usage_error "--memory size=1G,shared=maybe: shared=maybe: use on or off" --kernel "$KERNEL" --memory size=1G,shared=maybe || return
	expect_usage_error "unknown key 'frob'" --kernel "$KERNEL" --memory size=1G,frob=1 || return
	expect_usage_error "multiple of 2M" --kernel "$KERNEL" --memory size=1025M,hugepages=on || return
	# More huge pages than any host has reserved: one line naming the shortfall.
	short=$(timeout 60 "$VMM" --kernel "$KERNEL" --initramfs "$INITRD" --memory size=900G,hugepages=on \
		</dev/null 2>&1 >/dev/null)
	grep -q "hugepages=on: the host has [0-9]* too few free 2 MiB huge pages" <<<"$short" &&
		[ "$(wc -l <<<"$short")" -eq 1 ] ||
		{ boot_fail "900G of hugetlbfs said: $short"; return; }
	boot_pass
}

case_blk_ext4() {
	local img=$BLK_WORK/ext4.img tree=$BLK_WORK/tree log=$WORK/blk-ext4.log data_sha out
	blk_setup
	mkdir -p "$tree"
	echo "hello from the host" >"$tree/hello.txt"
	head -c $((1 << 20)) /dev/urandom >"$tree/data.bin"
	data_sha=$(sha256sum <"$tree/data.bin" | cut -d' ' -f1)
	mke2fs -q -F -t ext4 -d "$tree" "$img" 32M >/dev/null 2>&1 ||
		{ boot_fail "mke2fs -d failed on the host"; return; }
	guest_test blk-ext4 "$log" --cpus 2 --memory 512M --disk "path=$img,serial=ext4"
	guest_ran "$log" blk-ext4 || return
	expect_value hello "hello from the host" "$log" || return
	expect_value data_sha256 "$data_sha" "$log" || return
	expect_value umount ok "$log" || return
	out=$(e2fsck -fn "$img" 2>&1) || { boot_fail "e2fsck -fn found problems: $(tail -n 3 <<<"$out")"; return; }
	[ "$(debugfs -R 'cat /guest.txt' "$img" 2>/dev/null)" = "written by the guest" ] ||
		{ boot_fail "debugfs: /guest.txt is not what the guest wrote" "$log"; return; }
	[ "$(debugfs -R 'cat /copy.bin' "$img" 2>/dev/null | sha256sum | cut -d' ' -f1)" = "$data_sha" ] ||
		{ boot_fail "debugfs: /copy.bin differs from data.bin" "$log"; return; }
	[ "$(debugfs -R 'cat /dir/pattern.txt' "$img" 2>/dev/null | sha256sum | cut -d' ' -f1)" = \
	  "$(blk_pattern 131072 | sha256sum | cut -d' ' -f1)" ] ||
		{ boot_fail "debugfs: /dir/pattern.txt is not the guest's 2 MiB pattern" "$log"; return; }
	debugfs -R 'stat /hello.txt' "$img" 2>&1 | grep -q 'not found' ||
		{ boot_fail "debugfs: /hello.txt still exists after the guest removed it" "$log"; return; }
	boot_pass "read, wrote, removed files; e2fsck clean; fstrim=$(log_value "$log" fstrim)"
}

case_blk_readonly() {
	local img=$BLK_WORK/ro.img tree=$BLK_WORK/tree log=$WORK/blk-ro.log before
	blk_setup
	mkdir -p "$tree"
	echo "read-only" >"$tree/ro.txt"
	mke2fs -q -F -t ext4 -d "$tree" "$img" 8M >/dev/null 2>&1 ||
		{ boot_fail "mke2fs -d failed on the host"; return; }
	before=$(sha256sum <"$img" | cut -d' ' -f1)
	guest_test blk-ro "$log" --cpus 1 --memory 512M --disk "path=$img,readonly=on"
	guest_ran "$log" blk-ro || return
	expect_value vda_ro 1 "$log" || return
	expect_value vda_sha256 "$(blk_range_sha "$img" 0 $((4 << 20)))" "$log" || return
	expect_value write refused "$log" || return
	expect_value write_setrw refused "$log" || return
	expect_value mount_opts ro "$log" || return
	expect_value ro_txt read-only "$log" || return
	expect_value fs_write refused "$log" || return
	[ "$(sha256sum <"$img" | cut -d' ' -f1)" = "$before" ] ||
		{ boot_fail "the read-only image changed" "$log"; return; }
	boot_pass "reads work; raw and file-system writes refused; image unchanged"
}

case_blk_bad_options() {
	local img=$BLK_WORK/opt.img
	blk_setup
	head -c $((1 << 20)) /dev/zero >"$img"
	: >"$BLK_WORK/empty.img"
	expect_usage_error "$BLK_WORK/missing.img: No such file" --kernel "$KERNEL" --initramfs "$INITRD" --disk "path=$BLK_WORK/missing.img" || return
	expect_usage_error "path=" --kernel "$KERNEL" --initramfs "$INITRD" --disk "readonly=on" || return
	expect_usage_error "readonly=maybe" --kernel "$KERNEL" --initramfs "$INITRD" --disk "path=$img,readonly=maybe" || return
	expect_usage_error "frob" --kernel "$KERNEL" --initramfs "$INITRD" --disk "path=$img,frob=1" || return
	expect_usage_error "queues=0" --kernel "$KERNEL" --initramfs "$INITRD" --disk "path=$img,queues=0" || return
	expect_usage_error "serial=" --kernel "$KERNEL" --initramfs "$INITRD" --disk "path=$img,serial=0123456789abcdefghijk" || return
	expect_usage_error "smaller than one" --kernel "$KERNEL" --initramfs "$INITRD" --disk "path=$BLK_WORK/empty.img" || return
	expect_usage_error "Is a directory" --kernel "$KERNEL" --initramfs "$INITRD" --disk "path=$BLK_WORK" || return
	boot_pass
}
