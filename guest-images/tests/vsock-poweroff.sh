#!/bin/sh
# virtio-vsock: the guest powers off in the middle of two transfers (one each
# way through the bridge); the host's side checks that vmm exits 0 and that no
# host client is left waiting.
[ -e /dev/vsock ] || { echo "vsock: no /dev/vsock (driver not bound)"; exit 1; }
vsockt -t 600 listen 5003 recv 4294967296 >/dev/null 2>&1 &
vsockt -t 600 -r 30 connect 2 6003 send 4294967296 >/dev/null 2>&1 &
sleep 4
echo "vsock: powering off mid-transfer"
poweroff -f
