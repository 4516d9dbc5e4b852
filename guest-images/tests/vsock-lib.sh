#!/bin/sh
# What the vsock-xchg, vsock-socat, vsock-snapshot, vsock-seqbridge and
# vsock-pause guest tests share (sourced as /tests/vsock-lib): vsock_bytes,
# the bytes each way on every connection (vmm.vsock_bytes=N on the kernel
# command line, default 8 MiB), vsock_msgs, the SEQPACKET messages
# (vmm.vsock_msgs=N, default 200), the check that the virtio-vsock driver
# bound (no /dev/vsock: the test fails at once), and vsock_pair (below). Run
# alone it makes only that check.
vsock_bytes=8388608
vsock_msgs=200
for word in $(cat /proc/cmdline); do
	case $word in
		vmm.vsock_bytes=*) vsock_bytes=${word#*=} ;;
		vmm.vsock_msgs=*)  vsock_msgs=${word#*=} ;;
	esac
done
[ -e /dev/vsock ] || { echo "vsock: no /dev/vsock (driver not bound)"; exit 1; }

# vsock_pair 'LISTEN_ARGS' 'CONNECT_ARGS': `vsockt LISTEN_ARGS` (the host ->
# guest side) in the background while `vsockt CONNECT_ARGS` (guest -> host)
# runs, then each one's lines prefixed "h2g: " and "g2h: ". Returns 1 when
# either failed. The arguments are split on blanks (none holds one).
vsock_pair() {
	pair_rc=0
	# shellcheck disable=SC2086
	vsockt $1 >/tmp/h2g.out 2>&1 &
	pair_pid=$!
	# shellcheck disable=SC2086
	vsockt $2 >/tmp/g2h.out 2>&1 || pair_rc=1
	wait $pair_pid || pair_rc=1
	sed 's/^/h2g: /' /tmp/h2g.out
	sed 's/^/g2h: /' /tmp/g2h.out
	return $pair_rc
}
