#!/bin/sh
# virtio-vsock benchmark, guest side (bench/vsock.sh runs the host's side, for
# vmm's bridge and for QEMU's vhost-vsock-pci alike):
#   1. guest -> host: vmm.vsock_bytes (default 256 MiB) to CID 2 port 6001;
#   2. host -> guest: the same amount arrives on port 5001;
#   3. latency: 1 + vmm.vsock_pings (default 200) connections to port 5003,
#      each echoing 64 bytes, served one after another.
# 64 KiB writes; every byte is checked by the receiver.
bytes=268435456 pings=200
for word in $(cat /proc/cmdline); do
	case $word in
		vmm.vsock_bytes=*) bytes=${word#*=} ;;
		vmm.vsock_pings=*) pings=${word#*=} ;;
	esac
done
[ -e /dev/vsock ] || { echo "vsock: no /dev/vsock (driver not bound)"; exit 1; }
rc=0
vsockt -t 900 -r 60 connect 2 6001 send "$bytes" >/tmp/g2h.out 2>&1 || rc=1
vsockt -t 900 listen 5001 recv "$bytes" >/tmp/h2g.out 2>&1 || rc=1
vsockt -t 600 -q -n $((pings + 1)) listen 5003 echo >/dev/null 2>&1 || rc=1
sed 's/^/g2h_/; s/ / g2h_/g' /tmp/g2h.out | tr ' ' '\n'
sed 's/^/h2g_/; s/ / h2g_/g' /tmp/h2g.out | tr ' ' '\n'
# Where the device's interrupts landed, per vCPU (the console only; the host ignores it).
grep -e virtio -e CPU /proc/interrupts | sed 's/^/irq: /'
exit $rc
