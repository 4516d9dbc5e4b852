# virtio-vsock through the Unix socket bridge (--vsock cid=3,socket=PATH):
# host -> guest and guest -> host, VSOCK_BYTES (256 MiB) each way checked on
# both sides, VSOCK_CONNS (64) connections at once echoed, SEQPACKET message
# boundaries; the guest powering off mid-transfer leaves vmm exiting 0 and no
# host client hanging; bad --vsock options are one-line errors, status 2;
# across a snapshot and restore the old connection ends on both sides (the
# guest's with the transport reset) and new ones work at once both ways; socat
# on the host, as the README shows it, works both ways.

VSOCK_BYTES=${VSOCK_BYTES:-268435456}
VSOCK_CONNS=${VSOCK_CONNS:-64}
VSOCK_MSGS=${VSOCK_MSGS:-200}
VSOCK_SNAP_BYTES=${VSOCK_SNAP_BYTES:-8388608}
VSOCK_TOOL=$GUEST/tools/vsockt
VSOCK_CASES=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The sum a vsockt line printed (sum=HEX).
vsock_sum() {
	sed -n 's/.*sum=\([0-9a-f]*\).*/\1/p' "$1" | head -n 1
}

# vsock_clients_end LOG PID...: vmm has exited, which closed every bridged
# connection, so each host client must end within 20 s, whatever happened.
# Not when the nested host's emulation wrecked the boot: a listener whose guest
# never connected waits on (suite.sh stops what an attempt leaves running).
# Fails the case naming the client that did not end.
vsock_clients_end() {
	local log=$1 p cmd why
	shift
	if why=$(flaw_noted); then
		boot_fail "$why" "$log"
		return 1
	fi
	for p in "$@"; do
		timeout 20 tail --pid="$p" -f /dev/null && continue
		cmd=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)
		kill "$@" 2>/dev/null
		boot_fail "a host client still ran 20 s after vmm exited: ${cmd:-pid $p}" "$log"
		return 1
	done
}

case_vsock_xfer() {
	local dir=$WORK/vsock-xfer log=$WORK/vsock-xfer.log sock hp=() h2g g2h seq echo hsum gsum
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
		exec "$VSOCK_TOOL" -t 900 -r 200 uconnect "$sock" 5001 send "$VSOCK_BYTES" >"$h2g" 2>&1
	) &
	hp+=($!)
	(
		for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.2; done
		exec "$VSOCK_TOOL" -t 900 -r 200 -n "$VSOCK_CONNS" uconnect "$sock" 5002 echocheck 262144 >"$echo" 2>&1
	) &
	hp+=($!)
	vmm_boot "$log" --kernel "$KERNEL" --initramfs "$INITRD" --cpus 2 --memory 512M \
		--cmdline "$CMDLINE_BASE vmm.test=vsock-xfer vmm.vsock_bytes=$VSOCK_BYTES vmm.vsock_conns=$VSOCK_CONNS vmm.vsock_msgs=$VSOCK_MSGS" \
		--vsock "cid=3,socket=$sock"
	vsock_clients_end "$log" "${hp[@]}" || return
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
		exec "$VSOCK_TOOL" -t 600 -r 200 uconnect "$sock" 5003 send 4294967296 >"$dir/h2g" 2>&1
	) &
	p2=$!
	vmm_boot "$log" --kernel "$KERNEL" --initramfs "$INITRD" --cpus 2 --memory 512M \
		--cmdline "$CMDLINE_BASE vmm.test=vsock-poweroff" --vsock "cid=3,socket=$sock"
	t0=$(date +%s)
	vsock_clients_end "$log" "$p1" "$p2" || return
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
	expect_usage_error "type=dgram" --kernel "$KERNEL" --initramfs "$INITRD" --vsock "cid=3,socket=$dir/s,type=dgram" || return
	expect_usage_error "needs socket=PATH" --kernel "$KERNEL" --initramfs "$INITRD" --vsock cid=3,type=seqpacket || return
	boot_pass
}

# xchg_field FILE KEY: KEY's value on the xchg/trade/hold line in FILE (sent, sent_sum, recv, recv_sum).
xchg_field() {
	grep -a -o "\(xchg\|trade\|hold\) sent=.*" "$1" | head -n 1 | tr ' ' '\n' | sed -n "s/^$2=//p" | tr -d '\r'
}

# xchg_agree WHAT HOSTFILE GUESTFILE BYTES: both ends moved BYTES each way, and
# what one sent (its checksum) is what the other received.
xchg_agree() {
	local what=$1 h=$2 g=$3 bytes=$4 k
	grep -aq "sent=$bytes .*recv=$bytes .* ok" "$h" ||
		{ echo "$what: host side: $(tr '\n' ' ' <"$h")"; return 1; }
	grep -aq "sent=$bytes .*recv=$bytes .* ok" "$g" ||
		{ echo "$what: guest side: $(tr '\n' ' ' <"$g")"; return 1; }
	for k in sent:recv recv:sent; do
		[ "$(xchg_field "$h" "${k%:*}_sum")" = "$(xchg_field "$g" "${k#*:}_sum")" ] ||
			{ echo "$what: host ${k%:*}_sum $(xchg_field "$h" "${k%:*}_sum") != guest ${k#*:}_sum $(xchg_field "$g" "${k#*:}_sum")"; return 1; }
	done
}

# Snapshot and restore with a connection open (docs/snapshot.md, issue 19): a
# host -> guest connection exchanges VSOCK_SNAP_BYTES each way and stays open;
# the VM is paused, snapshotted and its vmm killed (its socket file stays
# behind); vmm --restore --resume reopens the same socket path. The old host
# connection died with the old process, the guest's end fails with
# ECONNRESET (VIRTIO_VSOCK_EVENT_TRANSPORT_RESET), and a new host -> guest and
# a new guest -> host connection, neither retried, each carry the bytes both
# ways, checked on both sides; the guest powers off and vmm exits 0.
case_snapshot_vsock() {
	local dir=$WORK/snap-vsock log=$WORK/snap-vsock-src.log rlog=$WORK/snap-vsock-dst.log
	local sock snap bytes=$VSOCK_SNAP_BYTES lp op i out why t0 t1 g
	# snap_start, snap_api, snap_kill
	source "$VSOCK_CASES/snapshot.sh"
	rm -rf "$dir"
	mkdir -p "$dir"
	sock=$dir/v.sock snap=$dir/snap
	# guest -> host after the restore: PATH_6010 listens from the start.
	"$VSOCK_TOOL" -t 800 ulisten "${sock}_6010" trade "$bytes" >"$dir/g2h.host" 2>&1 &
	lp=$!
	if ! snap_start "$log" "$dir/api.sock" --kernel "$KERNEL" --initramfs "$INITRD" --cpus 2 --memory 256M \
		--cmdline "$CMDLINE_BASE vmm.test=vsock-snapshot vmm.vsock_bytes=$bytes" --vsock "cid=3,socket=$sock"; then
		snap_kill
		kill "$lp" 2>/dev/null
		boot_fail "vmm did not come up: $(tail -n 2 "$log.stderr")" "$log"
		return
	fi
	if ! wait_line "$log" '^snapvsock: listening' "$SNAP_PID"; then
		snap_kill
		kill "$lp" 2>/dev/null
		boot_fail "the guest never listened: $(tail -n 1 "$log.stderr")" "$log"
		return
	fi
	# The connection that lives across the snapshot.
	"$VSOCK_TOOL" -t 800 -r 30 uconnect "$sock" 5010 hold "$bytes" >"$dir/old.host" 2>&1 &
	op=$!
	for i in $(seq 120); do
		grep -aq '^hold .* ok' "$dir/old.host" && grep -aq '^old: hold .* ok' "$log" && break
		kill -0 "$op" 2>/dev/null || break
		sleep 1
	done
	if ! grep -aq '^hold .* ok' "$dir/old.host" || ! grep -aq '^old: hold .* ok' "$log"; then
		snap_kill
		kill "$lp" "$op" 2>/dev/null
		boot_fail "the first connection did not exchange its bytes: host: $(tr '\n' ' ' <"$dir/old.host"); guest: $(grep -a '^old:' "$log" | tr '\n' ' ')" "$log"
		return
	fi
	grep -a '^old: hold' "$log" >"$dir/old.guest"
	why=$(xchg_agree "the connection before the snapshot" "$dir/old.host" "$dir/old.guest" "$bytes") ||
		{ snap_kill; kill "$lp" "$op" 2>/dev/null; boot_fail "$why" "$log"; return; }
	out=$(snap_api pause 2>&1) || { snap_kill; kill "$lp" "$op" 2>/dev/null; boot_fail "vmm ctl pause: $out" "$log"; return; }
	out=$(snap_api snapshot "$snap" 2>&1) || { snap_kill; kill "$lp" "$op" 2>/dev/null; boot_fail "vmm ctl snapshot: $out" "$log"; return; }
	snap_kill
	# The old host connection belonged to the killed process: it ends now.
	timeout 10 tail --pid="$op" -f /dev/null ||
		{ kill "$lp" "$op" 2>/dev/null; boot_fail "the old host connection outlived its vmm by 10 s"; return; }
	grep -aq '^then=\(eof\|error:.*\)$' "$dir/old.host" ||
		{ kill "$lp" 2>/dev/null; boot_fail "the old host connection: $(tr '\n' ' ' <"$dir/old.host")"; return; }
	[ -S "$sock" ] || { kill "$lp" 2>/dev/null; boot_fail "the killed vmm left no socket file behind (expected a stale one)"; return; }

	t0=$(date +%s%N)
	if ! snap_start "$rlog" "$dir/api2.sock" --restore "source_url=file://$snap" --resume; then
		snap_kill
		kill "$lp" 2>/dev/null
		boot_fail "vmm --restore did not come up: $(tail -n 3 "$rlog.stderr")" "$rlog"
		return
	fi
	# Served once the VM runs: the bridge listens on the same path by then.
	out=$(snap_api info 2>&1) || { snap_kill; kill "$lp" 2>/dev/null; boot_fail "vm.info after restore: $out" "$rlog"; return; }
	# host -> guest at once, no retry.
	"$VSOCK_TOOL" -t 300 uconnect "$sock" 5011 trade "$bytes" >"$dir/h2g.host" 2>&1
	t1=$(date +%s%N)
	for i in $(seq 120); do kill -0 "$SNAP_PID" 2>/dev/null || break; sleep 1; done
	if kill -0 "$SNAP_PID" 2>/dev/null; then
		snap_kill
		kill "$lp" 2>/dev/null
		boot_fail "the restored guest did not power off within 120 s: host -> guest: $(tr '\n' ' ' <"$dir/h2g.host")" "$rlog"
		return
	fi
	wait "$SNAP_PID"
	RC=$?
	timeout 20 tail --pid="$lp" -f /dev/null || { kill "$lp" 2>/dev/null; boot_fail "the host's listener still ran 20 s after vmm exited" "$rlog"; return; }
	guest_ran "$rlog" vsock-snapshot || return
	grep -aq '^old: then=error:ECONNRESET' "$rlog" ||
		{ boot_fail "the guest's old connection did not see the transport reset: $(grep -a '^old:' "$rlog" | tr '\n' ' ')" "$rlog"; return; }
	grep -a '^h2g:' "$rlog" >"$dir/h2g.guest"
	grep -a '^g2h:' "$rlog" >"$dir/g2h.guest"
	why=$(xchg_agree "host -> guest after restore" "$dir/h2g.host" "$dir/h2g.guest" "$bytes") ||
		{ boot_fail "$why; vmm: $(grep -a -m2 vsock "$rlog.stderr" | tr '\n' ' ')" "$rlog"; return; }
	why=$(xchg_agree "guest -> host after restore" "$dir/g2h.host" "$dir/g2h.guest" "$bytes") ||
		{ boot_fail "$why; vmm: $(grep -a -m2 vsock "$rlog.stderr" | tr '\n' ' ')" "$rlog"; return; }
	boot_pass "old connection: host $(sed -n 's/^then=//p' "$dir/old.host"), guest $(sed -n 's/^old: then=//p' "$rlog" | tr -d '\r'); stale socket replaced; new connections both ways $((bytes >> 20)) MiB each way checked; restore to host -> guest done $(((t1 - t0) / 1000000)) ms"
}

# Both ways at once on one connection, then a half-close from each side, in
# both directions of connecting: every byte arrives, checked on both sides
# (the peer's end-of-file ends only the receiving: each side finishes its own
# sending after it).
case_vsock_half_close() {
	local dir=$WORK/vsock-xchg log=$WORK/vsock-xchg.log sock g2h h2g hp=() bytes=$VSOCK_SNAP_BYTES
	rm -rf "$dir"
	mkdir -p "$dir"
	sock=$dir/v.sock g2h=$dir/g2h.host h2g=$dir/h2g.host
	"$VSOCK_TOOL" -t 600 ulisten "${sock}_6020" xchg "$bytes" >"$g2h" 2>&1 &
	hp+=($!)
	(
		for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.2; done
		exec "$VSOCK_TOOL" -t 600 -r 200 uconnect "$sock" 5020 xchg "$bytes" >"$h2g" 2>&1
	) &
	hp+=($!)
	vmm_boot "$log" --kernel "$KERNEL" --initramfs "$INITRD" --cpus 2 --memory 512M \
		--cmdline "$CMDLINE_BASE vmm.test=vsock-xchg vmm.vsock_bytes=$bytes" --vsock "cid=3,socket=$sock"
	vsock_clients_end "$log" "${hp[@]}" || return
	guest_ran "$log" vsock-xchg || return
	grep -q " ok$" "$g2h" && grep -q " ok$" "$h2g" ||
		{ boot_fail "host side: $(cat "$g2h" "$h2g" | tr '\n' ' ')" "$log"; return; }
	[ "$(tr -d '\r' <"$log" | grep -c -e '^h2g: xchg .* ok$' -e '^g2h: xchg .* ok$')" -eq 2 ] ||
		{ boot_fail "guest side: $(grep -a -e '^h2g:' -e '^g2h:' "$log" | tr '\n' ' ')" "$log"; return; }
	boot_pass "$((bytes >> 20)) MiB each way at once, then half-closes, on a host -> guest and a guest -> host connection; every byte checked on both sides"
}

# socat on the host, as the README shows it, both ways: `socat - UNIX-CONNECT:PATH`
# sends "CONNECT 5040" and its payload in one go (the bridge keeps what follows
# the line for the guest) and gets "OK <port>" then the guest's echo;
# `socat UNIX-LISTEN:PATH_52,fork EXEC:/usr/bin/cat` echoes the guest's
# connection to port 52, which the guest checks byte for byte.
case_vsock_socat() {
	local dir=$WORK/vsock-socat log=$WORK/vsock-socat.log sock pay out lp cp bytes=$((1 << 20)) first
	command -v socat >/dev/null || { boot_fail "no socat on this host (scripts/setup.sh installs it)" "$log"; return; }
	rm -rf "$dir"
	mkdir -p "$dir"
	sock=$dir/v.sock pay=$dir/payload out=$dir/h2g.out
	head -c "$bytes" /dev/urandom >"$pay"
	socat UNIX-LISTEN:"${sock}_52",fork EXEC:/usr/bin/cat 2>"$dir/listen.err" &
	lp=$!
	# Until the guest listens, the bridge refuses (socat prints nothing): try
	# again while vmm's socket is there.
	(
		for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.2; done
		while [ -S "$sock" ]; do
			{ printf 'CONNECT 5040\n'; cat "$pay"; } |
				socat -t 120 - UNIX-CONNECT:"$sock" >"$out" 2>"$dir/connect.err"
			[ -s "$out" ] && exit 0
			sleep 0.5
		done
	) &
	cp=$!
	vmm_boot "$log" --kernel "$KERNEL" --initramfs "$INITRD" --cpus 2 --memory 512M \
		--cmdline "$CMDLINE_BASE vmm.test=vsock-socat vmm.vsock_bytes=$bytes" --vsock "cid=3,socket=$sock"
	vsock_clients_end "$log" "$cp" || { kill "$lp" 2>/dev/null; return; }
	kill "$lp" 2>/dev/null
	wait "$lp" 2>/dev/null
	guest_ran "$log" vsock-socat || return
	first=$(head -n 1 "$out")
	[[ $first =~ ^OK\ [0-9]+$ ]] ||
		{ boot_fail "host to guest: socat's first line is '$first', expected 'OK <port>'" "$log"; return; }
	tail -c +$((${#first} + 2)) "$out" | cmp -s - "$pay" ||
		{ boot_fail "host to guest: the echo socat got differs from what it sent ($(($(wc -c <"$out") - ${#first} - 1)) of $bytes bytes)" "$log"; return; }
	grep -aq "^g2h: echocheck=$bytes ok" "$log" ||
		{ boot_fail "guest to host: $(grep -a '^g2h:' "$log" | tr -d '\r' | tr '\n' ' ')" "$log"; return; }
	boot_pass "host to guest: '$first' then $((bytes >> 20)) MiB echoed intact; guest to host: $((bytes >> 20)) MiB echoed by socat's EXEC:cat, checked"
}

# SEQPACKET from the host (--vsock cid=3,socket=PATH,type=seqpacket): PATH is
# a SOCK_SEQPACKET socket, as in Firecracker's SEQPACKET mode. The host's
# client sends "CONNECT <port>\n" as one message and reads "OK <port>\n" as
# one; then VSOCK_MSGS messages go to the guest on one connection and come
# from it on another, every size and byte checked by the receiver. A
# byte-stream client is refused by the socket itself (EPROTOTYPE), and the
# guest's own stream connection still reaches the host's SOCK_STREAM PATH_6030.
case_vsock_seqpacket_bridge() {
	local dir=$WORK/vsock-seq log=$WORK/vsock-seq.log sock hp=() bytes=$((1 << 20)) h2g g2h st
	command -v socat >/dev/null || { boot_fail "no socat on this host (scripts/setup.sh installs it)" "$log"; return; }
	rm -rf "$dir"
	mkdir -p "$dir"
	sock=$dir/v.sock h2g=$dir/h2g.host g2h=$dir/g2h.host st=$dir/stream.host
	"$VSOCK_TOOL" -t 300 ulisten "${sock}_6030" recv "$bytes" >"$st" 2>&1 &
	hp+=($!)
	(
		for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.2; done
		# A byte-stream client cannot even connect: the socket is SOCK_SEQPACKET.
		printf 'CONNECT 5030\n' | socat -t 5 - UNIX-CONNECT:"$sock" >"$dir/wrongtype.host" 2>&1
		exec "$VSOCK_TOOL" -t 300 -r 200 -s uconnect "$sock" 5030 seqsend "$VSOCK_MSGS" >"$h2g" 2>&1
	) &
	hp+=($!)
	(
		for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.2; done
		exec "$VSOCK_TOOL" -t 300 -r 200 -s uconnect "$sock" 5031 seqrecv "$VSOCK_MSGS" >"$g2h" 2>&1
	) &
	hp+=($!)
	vmm_boot "$log" --kernel "$KERNEL" --initramfs "$INITRD" --cpus 2 --memory 512M \
		--cmdline "$CMDLINE_BASE vmm.test=vsock-seqbridge vmm.vsock_msgs=$VSOCK_MSGS vmm.vsock_bytes=$bytes" \
		--vsock "cid=3,socket=$sock,type=seqpacket"
	vsock_clients_end "$log" "${hp[@]}" || return
	guest_ran "$log" vsock-seqbridge || return
	grep -q "Protocol wrong type" "$dir/wrongtype.host" ||
		{ boot_fail "a byte-stream client (socat) was not refused by the SEQPACKET socket: $(tr '\n' ' ' <"$dir/wrongtype.host")" "$log"; return; }
	grep -q "^seqsent=$VSOCK_MSGS" "$h2g" && grep -aq "^h2g: seqrecv=$VSOCK_MSGS ok" "$log" ||
		{ boot_fail "host to guest messages: host: $(tr '\n' ' ' <"$h2g"); guest: $(grep -a '^h2g:' "$log" | tr '\n' ' ')" "$log"; return; }
	grep -q "^seqrecv=$VSOCK_MSGS ok" "$g2h" && grep -aq "^g2h: seqsent=$VSOCK_MSGS" "$log" ||
		{ boot_fail "guest to host messages: host: $(tr '\n' ' ' <"$g2h"); guest: $(grep -a '^g2h:' "$log" | tr '\n' ' ')" "$log"; return; }
	grep -q " ok " "$st" ||
		{ boot_fail "the guest's stream connection to PATH_6030: $(tr '\n' ' ' <"$st")" "$log"; return; }
	boot_pass "$VSOCK_MSGS messages each way on host-opened SEQPACKET connections, boundaries and bytes checked; a byte-stream client refused by the socket; the guest's stream connection bridged to PATH_6030"
}

# Across a pause and resume over the API, as Firecracker's bare pause/resume
# test does it: host connections echoed by the guest before the pause; host
# clients killed with data in flight (vmm must not die of it: no SIGPIPE);
# a host connection opened while the guest is paused, whose handshake waits
# for the resume and then completes; new host connections after the resume;
# and a guest connection to the host after it. Every echo checked.
case_vsock_pause_resume() {
	local dir=$WORK/vsock-pause log=$WORK/vsock-pause.log sock bytes=$((1 << 20)) i out kp=() during lp
	# snap_start, snap_api, snap_kill
	source "$VSOCK_CASES/snapshot.sh"
	rm -rf "$dir"
	mkdir -p "$dir"
	sock=$dir/v.sock
	if ! snap_start "$log" "$dir/api.sock" --kernel "$KERNEL" --initramfs "$INITRD" --cpus 2 --memory 512M \
		--cmdline "$CMDLINE_BASE vmm.test=vsock-pause vmm.vsock_bytes=$bytes" --vsock "cid=3,socket=$sock"; then
		snap_kill
		boot_fail "vmm did not come up: $(tail -n 2 "$log.stderr")" "$log"
		return
	fi
	wait_line "$log" '^vsockpause: listening' "$SNAP_PID" ||
		{ snap_kill; boot_fail "the guest never listened: $(tail -n 1 "$log.stderr")" "$log"; return; }
	"$VSOCK_TOOL" -t 300 -r 60 -n 4 uconnect "$sock" 5050 echocheck "$bytes" >"$dir/before" 2>&1
	grep -q '^connections=4 failed=0' "$dir/before" ||
		{ snap_kill; boot_fail "before the pause: $(tail -n 3 "$dir/before" | tr '\n' ' ')" "$log"; return; }
	# Clients that vanish mid-transfer, the guest still echoing to them.
	for i in 1 2 3 4; do
		"$VSOCK_TOOL" -t 300 uconnect "$sock" 5050 echocheck 268435456 >/dev/null 2>&1 &
		kp+=($!)
	done
	sleep 3
	kill -KILL "${kp[@]}" 2>/dev/null
	wait "${kp[@]}" 2>/dev/null
	kill -0 "$SNAP_PID" 2>/dev/null ||
		{ wait "$SNAP_PID"; boot_fail "vmm died ($?) when host clients vanished mid-transfer: $(tail -n 2 "$log.stderr")" "$log"; return; }
	out=$(snap_api pause 2>&1) || { snap_kill; boot_fail "vmm ctl pause: $out" "$log"; return; }
	# The bridge takes this client's line, but the paused guest cannot answer.
	"$VSOCK_TOOL" -t 300 uconnect "$sock" 5050 echocheck "$bytes" >"$dir/during" 2>&1 &
	during=$!
	sleep 3
	if ! kill -0 "$during" 2>/dev/null; then
		snap_kill
		boot_fail "a connection opened while paused ended before the resume: $(tr '\n' ' ' <"$dir/during")" "$log"
		return
	fi
	out=$(snap_api resume 2>&1) || { snap_kill; kill "$during" 2>/dev/null; boot_fail "vmm ctl resume: $out" "$log"; return; }
	timeout 120 tail --pid="$during" -f /dev/null
	grep -q "^echocheck=$bytes ok" "$dir/during" ||
		{ snap_kill; kill "$during" 2>/dev/null; boot_fail "the connection opened while paused: $(tr '\n' ' ' <"$dir/during")" "$log"; return; }
	"$VSOCK_TOOL" -t 300 -n 4 uconnect "$sock" 5050 echocheck "$bytes" >"$dir/after" 2>&1
	grep -q '^connections=4 failed=0' "$dir/after" ||
		{ snap_kill; boot_fail "after the resume: $(tail -n 3 "$dir/after" | tr '\n' ' ')" "$log"; return; }
	# Now the guest's own connection, which it has been retrying: echoed here.
	"$VSOCK_TOOL" -t 300 ulisten "${sock}_6050" echo >"$dir/g2h.host" 2>&1 &
	lp=$!
	for i in $(seq 120); do kill -0 "$SNAP_PID" 2>/dev/null || break; sleep 1; done
	if kill -0 "$SNAP_PID" 2>/dev/null; then
		snap_kill
		kill "$lp" 2>/dev/null
		boot_fail "the guest did not finish within 120 s of the resume: $(grep -a '^g2h:' "$log" | tr '\n' ' ')" "$log"
		return
	fi
	wait "$SNAP_PID"
	RC=$?
	kill "$lp" 2>/dev/null
	guest_ran "$log" vsock-pause || return
	grep -aq "^g2h: echocheck=$bytes ok" "$log" ||
		{ boot_fail "guest to host after the resume: $(grep -a '^g2h:' "$log" | tr '\n' ' ')" "$log"; return; }
	boot_pass "4 connections echoed before the pause, 4 dropped mid-transfer, one opened while paused completed after the resume, 4 after it, and the guest's own after it: $((bytes >> 20)) MiB each, checked; the guest echoed $(log_value "$log" echo_served) connections"
}
