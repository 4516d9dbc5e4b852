#!/bin/sh
# virtio-vsock across a snapshot (tests/boot/cases/vsock.sh, case
# snapshot_vsock, runs the host's side). Setting: vmm.vsock_bytes=N (each way
# on every connection, default 8 MiB).
# Before the snapshot: the host connects to our port 5010 and both sides
# exchange N bytes, checked, and keep the connection open; we also listen on
# 5011. The host pauses, snapshots, kills vmm and restores in a new one.
# After: the transport reset ends the old connection with ECONNRESET
# ("old: then=error:ECONNRESET"); the host's new connection to 5011 and ours
# to CID 2 port 6010 each carry N bytes both ways at once, checked on both
# sides, then close (vsockt trade: no half-close).
. /tests/vsock-lib
rc=0
vsockt -t 900 listen 5011 trade "$vsock_bytes" >/tmp/h2g.out 2>&1 &
p_h2g=$!
# Each line at once on the console: the host waits for "old: hold ... ok" before it pauses.
( vsockt -t 900 listen 5010 hold "$vsock_bytes" 2>&1; echo "rc=$?" ) |
	while IFS= read -r line; do echo "old: $line"; done &
p_old=$!
sleep 0.5
echo "snapvsock: listening"
wait $p_old
# The old connection has seen the reset: a new one from here, without retries.
vsockt -t 300 connect 2 6010 trade "$vsock_bytes" >/tmp/g2h.out 2>&1 || rc=1
wait $p_h2g || rc=1
sed "s/^/g2h: /" /tmp/g2h.out
sed "s/^/h2g: /" /tmp/h2g.out
exit $rc
