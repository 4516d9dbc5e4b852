#!/bin/sh
# virtio-vsock, both ways at once on one connection, then half-close
# (tests/boot/cases/vsock.sh runs the host's side): the host connects to our
# port 5020 and we connect to CID 2 port 6020; on each connection both ends
# send vmm.vsock_bytes (default 8 MiB) while receiving, shut down their
# sending side once done and read to end-of-file; every byte is checked.
. /tests/vsock-lib
vsock_pair "-t 900 listen 5020 xchg $vsock_bytes" "-t 900 -r 30 connect 2 6020 xchg $vsock_bytes"
