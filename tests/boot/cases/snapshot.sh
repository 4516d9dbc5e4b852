# Snapshot and restore (docs/snapshot.md) on a real guest: a guest counts once
# a second; it is paused, snapshotted and its vmm killed; a new vmm restores
# it, paused, and on resume the count goes on from where it stopped, not from
# zero; the same snapshot restores a second time (--resume); a guest writing
# to its disk without pause is snapshotted mid-write, restored, and loses no
# acknowledged write; bad snapshots are refused with one line and exit 2.

SNAP_SOCK=
SNAP_PID=

snap_api() {
	"$VMM" ctl --api-socket "$SNAP_SOCK" "$@"
}

# The last count the guest printed in LOG, or -1.
snap_last_count() {
	local n
	n=$(grep -a '^count=[0-9]*' "$1" | tail -n 1 | tr -d '\r')
	echo "${n#count=}" | grep -E '^[0-9]+$' || echo -1
}

# The first count the guest printed in LOG, or -1.
snap_first_count() {
	local n
	n=$(grep -a -m1 '^count=[0-9]*' "$1" | tr -d '\r')
	echo "${n#count=}" | grep -E '^[0-9]+$' || echo -1
}

# snap_wait_count LOG N SECS: until the guest printed count=N or more (vmm still running).
snap_wait_count() {
	local i=0
	while [ "$(snap_last_count "$1")" -lt "$2" ]; do
		[ "$i" -lt "$3" ] || return 1
		kill -0 "$SNAP_PID" 2>/dev/null || return 1
		guest_silent "$1" "$i" && return 1
		sleep 1
		i=$((i + 1))
	done
}

# snap_start LOG SOCK ARGS...: vmm in the background with --api-socket SOCK; waits for the socket.
snap_start() {
	local log=$1 i
	SNAP_SOCK=$2
	shift 2
	rm -f "$log" "$log.silent" "$SNAP_SOCK"
	"$VMM" --serial "file=$log" --timeout 600 --api-socket "$SNAP_SOCK" "$@" \
		</dev/null >"$log.stderr" 2>&1 &
	SNAP_PID=$!
	for i in $(seq 100); do
		[ -S "$SNAP_SOCK" ] && return 0
		kill -0 "$SNAP_PID" 2>/dev/null || break
		sleep 0.1
	done
	return 1
}

snap_kill() {
	kill -KILL "$SNAP_PID" 2>/dev/null
	wait "$SNAP_PID" 2>/dev/null
}

# snap_power_off LOG: press the power button and wait for vmm to exit 0.
snap_power_off() {
	local log=$1 out i
	out=$(snap_api power-button 2>&1) || { snap_kill; boot_fail "vmm ctl power-button: $out" "$log"; return 1; }
	for i in $(seq 60); do kill -0 "$SNAP_PID" 2>/dev/null || break; sleep 1; done
	if kill -0 "$SNAP_PID" 2>/dev/null; then
		snap_kill
		boot_fail "the restored guest did not power off within 60 s of the power button" "$log"
		return 1
	fi
	wait "$SNAP_PID"
	RC=$?
	[ "$RC" -eq 0 ] || { boot_fail "vmm exited $RC after the power button: $(tail -n 2 "$log.stderr")" "$log"; return 1; }
}

# snap_restored LOG AT: the restored guest's console goes on from count=AT+1, with no complaint.
snap_continues() {
	local log=$1 at=$2 first
	first=$(snap_first_count "$log")
	[ "$first" -eq $((at + 1)) ] ||
		{ boot_fail "the restored guest counted from $first, not from $((at + 1)) (paused at $at)" "$log"; return 1; }
	[ "$(log_value "$log" lockups)" = 0 ] ||
		{ boot_fail "the restored guest complained: $(grep -a -e 'soft lockup' -e 'stall' "$log" | head -n 2)" "$log"; return 1; }
}

# snap_take DIR LOG SOCK: boots a counting guest, checks that a running VM
# is refused, pauses it and snapshots it into DIR, then kills its vmm. Sets
# SNAP_AT (the last count before the pause) and SNAP_MS (the snapshot's time).
snap_take() {
	local dir=$1 log=$2 out t0 t1
	rm -rf "$dir"
	if ! snap_start "$log" "$3" --kernel "$KERNEL" --initramfs "$INITRD" \
		--cmdline "$CMDLINE_BASE vmm.test=count" --cpus 2 --memory 256M --rng; then
		snap_kill
		boot_fail "vmm did not come up: $(tail -n 2 "$log.stderr")" "$log"
		return 1
	fi
	if ! snap_wait_count "$log" 3 "$BOOT_TIMEOUT"; then
		snap_kill
		boot_fail "the guest never counted to 3: $(tail -n 1 "$log.stderr")" "$log"
		return 1
	fi
	# A running VM is refused with 409, and nothing is written.
	out=$(snap_api snapshot "$dir" 2>&1) && { snap_kill; boot_fail "a snapshot of a running VM was accepted" "$log"; return 1; }
	grep -q "409 .*pause it" <<<"$out" || { snap_kill; boot_fail "snapshot of a running VM said: $out" "$log"; return 1; }
	[ ! -e "$dir/state.dtb" ] || { snap_kill; boot_fail "a refused snapshot wrote $dir/state.dtb" "$log"; return 1; }
	out=$(snap_api pause 2>&1) || { snap_kill; boot_fail "vmm ctl pause: $out" "$log"; return 1; }
	SNAP_AT=$(snap_last_count "$log")
	t0=$(date +%s%N)
	out=$(snap_api snapshot "$dir" 2>&1) || { snap_kill; boot_fail "vmm ctl snapshot: $out" "$log"; return 1; }
	t1=$(date +%s%N)
	SNAP_MS=$(((t1 - t0) / 1000000))
	[ -s "$dir/state.dtb" ] && [ "$(stat -c %s "$dir/memory")" -eq $((256 << 20)) ] ||
		{ snap_kill; boot_fail "the snapshot lacks state.dtb or a 256 MiB memory file: $(ls -l "$dir")" "$log"; return 1; }
	# Killed, not shut down: a restore owes nothing to the first process.
	snap_kill
	return 0
}

case_snapshot_restore() {
	local dir=$WORK/snap-count out at
	snap_take "$dir" "$WORK/snap-src.log" "$WORK/snap-src.sock" || return
	at=$SNAP_AT

	local rlog=$WORK/snap-restored.log
	if ! snap_start "$rlog" "$WORK/snap-dst.sock" --restore "source_url=file://$dir"; then
		snap_kill
		boot_fail "vmm --restore did not come up: $(tail -n 3 "$rlog.stderr")" "$rlog"
		return
	fi
	out=$(snap_api info 2>&1) || { snap_kill; boot_fail "vm.info after restore: $out" "$rlog"; return; }
	grep -q '^state: *Paused$' <<<"$out" || { snap_kill; boot_fail "restored VM is not Paused: $(head -n 1 <<<"$out")" "$rlog"; return; }
	grep -q 'vmm.test=count' <<<"$out" || { snap_kill; boot_fail "vm.info after restore lacks the command line: $out" "$rlog"; return; }
	sleep 3
	[ "$(snap_last_count "$rlog")" -eq -1 ] || { snap_kill; boot_fail "the restored VM ran before vm.resume" "$rlog"; return; }
	out=$(snap_api resume 2>&1) || { snap_kill; boot_fail "vmm ctl resume after restore: $out" "$rlog"; return; }
	snap_wait_count "$rlog" $((at + 3)) 60 ||
		{ snap_kill; boot_fail "the restored guest did not count on (last $(snap_last_count "$rlog"), paused at $at)" "$rlog"; return; }
	snap_power_off "$rlog" || return
	snap_continues "$rlog" "$at" || return
	grep -aq "count: power button pressed" "$rlog" || { boot_fail "the restored guest did not see the power button" "$rlog"; return; }

	# The same snapshot once more, straight to running.
	local rlog2=$WORK/snap-restored2.log
	if ! snap_start "$rlog2" "$WORK/snap-dst2.sock" --restore "source_url=file://$dir" --resume; then
		snap_kill
		boot_fail "the second vmm --restore did not come up: $(tail -n 3 "$rlog2.stderr")" "$rlog2"
		return
	fi
	snap_wait_count "$rlog2" $((at + 3)) 60 ||
		{ snap_kill; boot_fail "the second restore did not count on (last $(snap_last_count "$rlog2"))" "$rlog2"; return; }
	snap_power_off "$rlog2" || return
	snap_continues "$rlog2" "$at" || return
	boot_pass "paused at count=$at; snapshot in $SNAP_MS ms, $(du -k "$dir/memory" | cut -f1) KiB of 256 MiB on disk; restored twice, each counting on from $((at + 1))"
}

# expect_restore_refused WHAT DIR [ARGS...]: vmm --restore exits 2 with one line mentioning WHAT.
expect_restore_refused() {
	local what=$1 dir=$2 out rc
	shift 2
	out=$(timeout 60 "$VMM" --serial off --restore "source_url=file://$dir" "$@" 2>&1 </dev/null)
	rc=$?
	if [ "$rc" -ne 2 ] || ! grep -qF -- "$what" <<<"$out"; then
		boot_fail "restore of $dir: exit $rc (expected 2 and \"$what\"): $out"
		return 1
	fi
	[ "$(grep -c . <<<"$out")" -le 2 ] || { boot_fail "restore of $dir said more than one line: $out"; return 1; }
}

# Bad snapshots, spoilt copies of a good one: each refused with one line,
# exit 2. The good one is case_snapshot_restore's, or made here when that
# case did not run in this nested host (a filter, or a restarted host).
case_snapshot_bad_input() {
	local good=$WORK/snap-count bad=$WORK/snap-bad
	[ -s "$good/state.dtb" ] || snap_take "$good" "$WORK/snap-good.log" "$WORK/snap-good.sock" || return
	rm -rf "$bad"
	mkdir -p "$bad"
	cp --sparse=always "$good/memory" "$bad/memory"
	# Corrupt: one byte flipped in the middle of the state file.
	cp "$good/state.dtb" "$bad/state.dtb"
	printf '\x5a' | dd of="$bad/state.dtb" bs=1 seek=$(($(stat -c %s "$bad/state.dtb") / 2)) conv=notrunc status=none
	expect_restore_refused "state.dtb" "$bad" || return
	# Truncated state file.
	head -c 1000 "$good/state.dtb" >"$bad/state.dtb"
	expect_restore_refused "state.dtb" "$bad" || return
	# Not a snapshot at all.
	echo "hello" >"$bad/state.dtb"
	expect_restore_refused "state.dtb" "$bad" || return
	# A memory file of the wrong size.
	cp "$good/state.dtb" "$bad/state.dtb"
	truncate -s 128M "$bad/memory"
	expect_restore_refused "but the snapshot's guest has 256 MiB" "$bad" || return
	rm -f "$bad/memory"
	expect_restore_refused "memory" "$bad" || return
	expect_restore_refused "state.dtb" "$WORK/snap-nowhere" || return
	# Options the snapshot fixes, and URLs that are not file://.
	expect_usage_error "--restore: --kernel comes from the snapshot" --restore "source_url=file://$good" --kernel "$KERNEL" || return
	expect_usage_error "only file:// URLs" --restore "source_url=http://x/y" || return
	expect_usage_error "--resume goes with --restore" --kernel "$KERNEL" --resume || return
	boot_pass "corrupt, truncated, foreign and missing state files, wrong-size and missing memory, bad options: exit 2, one line each"
}

# A guest writing to its disk (4 MiB patterns, O_DIRECT, read back) is
# paused mid-loop, snapshotted and killed; the restore runs on to the end:
# no pass reads wrong bytes, and the image holds the last pattern written.
case_snapshot_blk_writes() {
	local img=$WORK/snap-disk.img dir=$WORK/snap-blk log=$WORK/snap-blk-src.log rlog=$WORK/snap-blk-dst.log i out last passes
	rm -rf "$dir"
	head -c $((16 << 20)) /dev/urandom >"$img"
	if ! snap_start "$log" "$WORK/snap-blk.sock" --kernel "$KERNEL" --initramfs "$INITRD" \
		--cmdline "$CMDLINE_BASE vmm.test=vhost-blk-loop vmm.loop_secs=30 vmm.loop_write=1" \
		--cpus 2 --memory 256M --disk "path=$img"; then
		snap_kill
		boot_fail "vmm did not come up: $(tail -n 2 "$log.stderr")" "$log"
		return
	fi
	if ! wait_line "$log" '^loop_started' "$SNAP_PID"; then
		snap_kill
		boot_fail "the guest's write loop never started" "$log"
		return
	fi
	sleep 6
	out=$(snap_api pause 2>&1) || { snap_kill; boot_fail "vmm ctl pause: $out" "$log"; return; }
	out=$(snap_api snapshot "$dir" 2>&1) || { snap_kill; boot_fail "vmm ctl snapshot: $out" "$log"; return; }
	snap_kill
	rm -f "$rlog"
	timeout 300 "$VMM" --serial "file=$rlog" --timeout 240 --restore "source_url=file://$dir" --resume \
		</dev/null >"$rlog.stderr" 2>&1
	RC=$?
	# A restored guest meets the nested host's flaws as a booting one does
	# (boot_fail looks for them in the log it is given).
	[ "$RC" -eq 0 ] || { boot_fail "the restored VM: vmm exit $RC: $(tail -n 2 "$rlog.stderr")" "$rlog"; return; }
	guest_ran "$rlog" vhost-blk-loop || return
	expect_value bad_passes 0 "$rlog" || return
	last=$(log_value "$rlog" last_written)
	passes=$(log_value "$rlog" passes)
	case $last in A|B) ;; *) boot_fail "the guest wrote no pattern (last_written=$last)" "$rlog"; return ;; esac
	[ "$(dd if="$img" bs=1M skip=8 count=4 status=none | sha256sum | cut -d' ' -f1)" = \
	  "$(awk -v p="$last" 'BEGIN { for (i = 0; i < 262144; i++) printf "%s%014d\n", p, i }' | sha256sum | cut -d' ' -f1)" ] ||
		{ boot_fail "image bytes [8 MiB, 12 MiB) are not pattern $last, the guest's last write" "$rlog"; return; }
	boot_pass "$passes read+write passes across the snapshot, 0 bad, the last pattern ($last) in the image"
}
