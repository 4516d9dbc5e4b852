#!/bin/sh
# virtio-vsock through the VMM's Unix socket bridge (tests/boot/cases/vsock.sh
# runs the host's side). Settings from the kernel command line:
#   vmm.vsock_bytes=N   bytes each way (default 256 MiB)
#   vmm.vsock_conns=N   connections at once (default 64)
#   vmm.vsock_msgs=N    SEQPACKET messages (default 200)
# host -> guest: the host sends vsock_bytes to our port 5001, and opens
# vsock_conns connections to port 5002 that we echo; guest -> host: we send
# vsock_bytes to CID 2 port 6001 and vsock_msgs messages to port 6002
# (SEQPACKET). Every byte and message boundary is checked on the receiving side.
bytes=268435456 conns=64 msgs=200
for word in $(cat /proc/cmdline); do
	case $word in
		vmm.vsock_bytes=*) bytes=${word#*=} ;;
		vmm.vsock_conns=*) conns=${word#*=} ;;
		vmm.vsock_msgs=*)  msgs=${word#*=} ;;
	esac
done
[ -e /dev/vsock ] || { echo "vsock: no /dev/vsock (driver not bound)"; exit 1; }
rc=0
vsockt -t 900 listen 5001 recv "$bytes" >/tmp/h2g.out 2>&1 &
p1=$!
vsockt -t 900 -n "$conns" listen 5002 echo >/tmp/echo.out 2>&1 &
p2=$!
vsockt -t 900 -r 30 connect 2 6001 send "$bytes" >/tmp/g2h.out 2>&1 || rc=1
vsockt -t 300 -r 30 -s connect 2 6002 seqsend "$msgs" >/tmp/seq.out 2>&1 || rc=1
wait $p1 || rc=1
wait $p2 || rc=1
sed 's/^/h2g_/; s/ / h2g_/g' /tmp/h2g.out | tr ' ' '\n'
sed 's/^/g2h_/; s/ / g2h_/g' /tmp/g2h.out | tr ' ' '\n'
sed 's/^/seq_/' /tmp/seq.out
grep -v '^echoed=' /tmp/echo.out | sed 's/^/echo_/'
echo "echo_served=$(grep -c '^echoed=' /tmp/echo.out)"
exit $rc
