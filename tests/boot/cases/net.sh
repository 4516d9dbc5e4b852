# virtio-net: a guest on a tap in a private network namespace (10.0.2.0/24,
# nothing leaves it) gets the MAC it was given, pings the host, and moves
# 64 MiB each way over TCP, every byte checked on both sides. Bad --net
# options and taps that cannot be opened are one-line errors with status 2.

NET_NS=vmmtest-net$$
NET_TAP=vmmtap0
NET_MAC=02:00:0a:00:02:0f
NET_BYTES=${NET_BYTES:-67108864}
NET_TOOL=$GUEST/tools/netxfer

net_in_ns() {
	ip netns exec "$NET_NS" "$@"
}

net_ns_down() {
	ip netns del "$NET_NS" 2>/dev/null
	return 0
}

# net_ns_up: the namespace, its loopback and a tap at 10.0.2.1/24.
net_ns_up() {
	net_ns_down
	ip netns add "$NET_NS" &&
		net_in_ns ip link set lo up &&
		net_in_ns ip tuntap add "$NET_TAP" mode tap &&
		net_in_ns ip addr add 10.0.2.1/24 dev "$NET_TAP" &&
		net_in_ns ip link set "$NET_TAP" up
}

# net_guest TEST LOG EXTRA_CMDLINE [vmm args]: vmm_boot, inside the namespace
# (ip netns exec execs vmm in place, so a silent guest is stopped as anywhere).
net_guest() {
	local name=$1 log=$2 extra=$3
	local -a VMM_WRAP=(ip netns exec "$NET_NS")
	shift 3
	vmm_boot "$log" --kernel "$KERNEL" --initramfs "$INITRD" \
		--cmdline "$CMDLINE_BASE vmm.test=$name $extra" "$@"
}

# net_feature LOG BIT: the driver accepted virtio feature BIT (sysfs string, bit 0 first).
net_feature() {
	local bits
	bits=$(log_value "$1" features)
	[ "${bits:$2:1}" = 1 ]
}

net_ping_body() {
	local log=$WORK/net-ping.log seen=$WORK/net-ping.neigh bit watch
	rm -f "$seen"
	# While the guest runs, the host learns its address on the wire (the entry goes with the link).
	(
		for _ in $(seq 1 $((BOOT_TIMEOUT * 2))); do
			net_in_ns ip neigh show 10.0.2.15 dev "$NET_TAP" 2>/dev/null | grep -qi "lladdr $NET_MAC" &&
				{ echo seen >"$seen"; exit 0; }
			sleep 0.5
		done
	) &
	watch=$!
	net_guest net-ping "$log" "" --cpus 1 --memory 256M --net "tap=$NET_TAP,mac=$NET_MAC"
	kill "$watch" 2>/dev/null
	wait "$watch" 2>/dev/null
	guest_ran "$log" net-ping || return
	expect_value mac "$NET_MAC" "$log" || return
	expect_value ping ok "$log" || return
	expect_value operstate up "$log" || return
	# CSUM, GUEST_CSUM, MAC, GUEST_TSO4, HOST_TSO4, MRG_RXBUF, STATUS, EVENT_IDX, VERSION_1.
	for bit in 0 1 5 7 11 15 16 29 32; do
		net_feature "$log" $bit || { boot_fail "the driver did not accept feature bit $bit" "$log"; return; }
	done
	[ -f "$seen" ] || { boot_fail "the host never saw 10.0.2.15 at $NET_MAC on the tap" "$log"; return; }
	boot_pass "mac $NET_MAC seen by the host, ping ok, offloads and MRG_RXBUF negotiated"
}

case_net_ping() {
	net_ns_up || { boot_fail "cannot set up namespace $NET_NS with tap $NET_TAP"; net_ns_down; return; }
	net_ping_body
	net_ns_down
}

net_xfer_body() {
	local log=$WORK/net-xfer.log g2h=$WORK/net-g2h.host h2g=$WORK/net-h2g.host
	local p1 p2
	rm -f "$g2h" "$h2g"
	# The host's ends listen first: stream 1 comes in on 5001, stream 2 goes out on 5002.
	NETXFER_TIMEOUT=$BOOT_TIMEOUT net_in_ns "$NET_TOOL" recv :5001 "$NET_BYTES" 1 >"$g2h" 2>&1 &
	p1=$!
	NETXFER_TIMEOUT=$BOOT_TIMEOUT net_in_ns "$NET_TOOL" send :5002 "$NET_BYTES" 2 >"$h2g" 2>&1 &
	p2=$!
	net_guest net-xfer "$log" "vmm.net_bytes=$NET_BYTES" --cpus 2 --memory 512M --net "tap=$NET_TAP"
	if ! guest_ran "$log" net-xfer; then
		kill "$p1" "$p2" 2>/dev/null
		wait "$p1" "$p2" 2>/dev/null
		return
	fi
	wait "$p1" "$p2"
	netxfer_checked "$log" "$g2h" "$h2g" "$NET_BYTES" || return
	boot_pass "$((NET_BYTES >> 20)) MiB each way checked; guest to host $(sed -n 's/.*mbit=//p' "$g2h") Mbit/s, host to guest $(log_value "$log" h2g_mbit) Mbit/s (emulated)"
}

case_net_xfer() {
	net_ns_up || { boot_fail "cannot set up namespace $NET_NS with tap $NET_TAP"; net_ns_down; return; }
	net_xfer_body
	net_ns_down
}

case_net_bad_options() {
	expect_usage_error "'lo' is not a single-queue tap" --kernel "$KERNEL" --initramfs "$INITRD" --net tap=lo || return
	expect_usage_error "mac=02:00:00:00:00" --kernel "$KERNEL" --initramfs "$INITRD" --net tap=vmmx0,mac=02:00:00:00:00 || return
	expect_usage_error "multicast" --kernel "$KERNEL" --initramfs "$INITRD" --net tap=vmmx0,mac=03:00:00:00:00:01 || return
	expect_usage_error "unknown key 'speed'" --kernel "$KERNEL" --initramfs "$INITRD" --net tap=vmmx0,speed=10 || return
	expect_usage_error "tap=NAME is required" --kernel "$KERNEL" --initramfs "$INITRD" --net mac=02:00:00:00:00:01 || return
	expect_usage_error "1 to 15 characters" --kernel "$KERNEL" --initramfs "$INITRD" --net tap=abcdefghijklmnopq || return
	boot_pass
}
