#!/bin/sh
# virtio-vsock against socat on the host, used as the README shows it
# (tests/boot/cases/vsock.sh runs the host's side): the host's
# `socat - UNIX-CONNECT:PATH` says "CONNECT 5040" and sends vmm.vsock_bytes,
# which our port 5040 echoes back; we connect to CID 2 port 52, where the
# host's `socat UNIX-LISTEN:PATH_52,fork EXEC:/usr/bin/cat` echoes what we
# send, and check every byte of the echo.
. /tests/vsock-lib
vsock_pair "-t 600 listen 5040 echo" "-t 600 -r 120 connect 2 52 echocheck $vsock_bytes"
