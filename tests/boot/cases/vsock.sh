# virtio-vsock through the Unix socket bridge (--vsock cid=3,socket=PATH):
# host -> guest and guest -> host, VSOCK_BYTES (256 MiB) each way checked on
# both sides, VSOCK_CONNS (64) connections at once echoed, SEQPACKET message
# boundaries; the guest powering off mid-transfer leaves vmm exiting 0 and no
# host client hanging; bad --vsock options are one-line errors, status 2.

VSOCK_BYTES=${VSOCK_BYTES:-268435456}
VSOCK_CONNS=${VSOCK_CONNS:-64}
VSOCK_MSGS=${VSOCK_MSGS:-200}
VSOCK_TOOL=$GUEST/tools/vsockt

# The sum a vsockt line printed (sum=HEX).
vsock_sum() {
	sed -n 's/.*sum=\([0-9a-f]*\).*/\1/p' "$1" | head -n 1
}

case_vsock_xfer() {
	local dir=$WORK/vsock-xfer log=$WORK/vsock-xfer.log sock hp=() h2g g2h seq echo p hsum gsum
	rm -rf "$dir"
	mkdir -p "$dir"
	sock=$dir/v.sock h2g=$dir/h2g.host g2h=$dir/g2h.host seq=$dir/seq.host echo=$dir/echo.host
	# The host's listeners first (guest -> host), then its clients, which retry
	# until the guest listens (host -> guest).
	"$VSOCK_TOOL" -t 900 ulisten "${sock}_6001" recv "$VSOCK_BYTES" >"$g2h" 2>&1 &
	hp+=($!)
	"$VSOCK_TOOL" -t 300 -s ulisten "${sock}_6002" seqrecv "$VSOCK_MSGS" >"$seq" 2>&1 &
	hp+=($!)
	(
		for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.2; done
		"$VSOCK_TOOL" -t 900 -r 200 uconnect "$sock" 5001 send "$VSOCK_BYTES" >"$h2g" 2>&1
	) &
	hp+=($!)
	(
		for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.2; done
		"$VSOCK_TOOL" -t 900 -r 200 -n "$VSOCK_CONNS" uconnect "$sock" 5002 echocheck 262144 >"$echo" 2>&1
	) &
	hp+=($!)
	vmm_boot "$log" --kernel "$KERNEL" --initramfs "$INITRD" --cpus 2 --memory 512M \
		--cmdline "$CMDLINE_BASE vmm.test=vsock-xfer vmm.vsock_bytes=$VSOCK_BYTES vmm.vsock_conns=$VSOCK_CONNS vmm.vsock_msgs=$VSOCK_MSGS" \
		--vsock "cid=3,socket=$sock"
	# vmm is gone: every host client must end now, whatever happened.
	for p in "${hp[@]}"; do
		timeout 20 tail --pid="$p" -f /dev/null || { kill "$p" 2>/dev/null; boot_fail "a host client still ran 20 s after vmm exited" "$log"; return; }
	done
	guest_ran "$log" vsock-xfer || return
	grep -q ' ok ' "$g2h" ||
		{ boot_fail "host received wrong bytes from the guest: $(tr '\n' ' ' <"$g2h")" "$log"; return; }
	grep -q "^h2g_ok" "$log" ||
		{ boot_fail "guest received wrong bytes from the host: $(grep '^h2g_' "$log" | tr '\n' ' ')" "$log"; return; }
	expect_value g2h_bytes "$VSOCK_BYTES" "$log" || return
	expect_value h2g_bytes "$VSOCK_BYTES" "$log" || return
	hsum=$(vsock_sum "$g2h") gsum=$(log_value "$log" g2h_sum)
	[ -n "$hsum" ] && [ "$hsum" = "$gsum" ] ||
		{ boot_fail "guest to host checksum: guest $gsum, host $hsum" "$log"; return; }
	hsum=$(vsock_sum "$h2g") gsum=$(log_value "$log" h2g_sum)
	[ -n "$hsum" ] && [ "$hsum" = "$gsum" ] ||
		{ boot_fail "host to guest checksum: host $hsum, guest $gsum" "$log"; return; }
	grep -q "^seqrecv=$VSOCK_MSGS ok" "$seq" ||
		{ boot_fail "SEQPACKET: $(tr '\n' ' ' <"$seq")" "$log"; return; }
	grep -q "^connections=$VSOCK_CONNS failed=0" "$echo" ||
		{ boot_fail "$VSOCK_CONNS echo connections: $(tail -n 3 "$echo" | tr '\n' ' ')" "$log"; return; }
	expect_value echo_served "$VSOCK_CONNS" "$log" || return
	boot_pass "$((VSOCK_BYTES >> 20)) MiB each way checked (host to guest $(sed -n 's/.*MBps=//p' "$h2g") MB/s, guest to host $(sed -n 's/.*MBps=//p' "$g2h") MB/s, emulated), $VSOCK_CONNS connections echoed, $VSOCK_MSGS SEQPACKET messages kept their boundaries"
}

case_vsock_poweroff() {
	local dir=$WORK/vsock-off log=$WORK/vsock-off.log sock p1 p2 t0 t1
	rm -rf "$dir"
	mkdir -p "$dir"
	sock=$dir/v.sock
	"$VSOCK_TOOL" -t 600 ulisten "${sock}_6003" recv 4294967296 >"$dir/g2h" 2>&1 &
	p1=$!
	(
		for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.2; done
		"$VSOCK_TOOL" -t 600 -r 200 uconnect "$sock" 5003 send 4294967296 >"$dir/h2g" 2>&1
	) &
	p2=$!
	vmm_boot "$log" --kernel "$KERNEL" --initramfs "$INITRD" --cpus 2 --memory 512M \
		--cmdline "$CMDLINE_BASE vmm.test=vsock-poweroff" --vsock "cid=3,socket=$sock"
	t0=$(date +%s)
	for p in $p1 $p2; do
		timeout 20 tail --pid="$p" -f /dev/null ||
			{ kill $p1 $p2 2>/dev/null; boot_fail "a host client still ran 20 s after vmm exited" "$log"; return; }
	done
	t1=$(date +%s)
	[ "$RC" -eq 0 ] || { boot_fail "vmm exited $RC, expected 0: $(tail -n 1 "$log.stderr")" "$log"; return; }
	grep -q 'powering off mid-transfer' "$log" || { boot_fail "the guest never started its transfers" "$log"; return; }
	grep -q 'bytes=' "$dir/g2h" || { boot_fail "the host never got guest data: $(cat "$dir/g2h")" "$log"; return; }
	[ -e "$sock" ] && { boot_fail "vmm left its socket $sock behind" "$log"; return; }
	boot_pass "vmm exited 0, both host clients ended within $((t1 - t0)) s ($(tr '\n' ' ' <"$dir/g2h"| cut -c1-60))"
}

case_vsock_bad_options() {
	local dir=$WORK/vsock-bad
	mkdir -p "$dir"
	: >"$dir/file"
	expect_usage_error "cid=2" --kernel "$KERNEL" --initramfs "$INITRD" --vsock cid=2 || return
	expect_usage_error "cid=N is required" --kernel "$KERNEL" --initramfs "$INITRD" --vsock socket="$dir/s" || return
	expect_usage_error "cid=4294967295" --kernel "$KERNEL" --initramfs "$INITRD" --vsock cid=4294967295 || return
	expect_usage_error "not a socket" --kernel "$KERNEL" --initramfs "$INITRD" --vsock "cid=3,socket=$dir/file" || return
	expect_usage_error "cannot listen" --kernel "$KERNEL" --initramfs "$INITRD" --vsock "cid=3,socket=$dir/missing/s" || return
	expect_usage_error "not repeatable" --kernel "$KERNEL" --initramfs "$INITRD" --vsock cid=3 --vsock cid=4 || return
	boot_pass
}
