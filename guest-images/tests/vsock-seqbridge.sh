#!/bin/sh
# SEQPACKET connections the host opens through the bridge's SOCK_SEQPACKET
# socket (--vsock ...,type=seqpacket; tests/boot/cases/vsock.sh runs the
# host's side): the host sends vmm.vsock_msgs messages to our port 5030 and
# receives as many from our port 5031, each size and byte checked by the
# receiver; and our byte-stream connection to CID 2 port 6030 still reaches
# the host's SOCK_STREAM socket PATH_6030 (the guest's socket type picks the
# type of PATH_<port>, whatever the bridge's own socket is).
. /tests/vsock-lib
rc=0
vsockt -t 300 -s listen 5030 seqrecv "$vsock_msgs" >/tmp/h2g.out 2>&1 &
p1=$!
vsockt -t 300 -s listen 5031 seqsend "$vsock_msgs" >/tmp/g2h.out 2>&1 &
p2=$!
vsockt -t 300 -r 120 connect 2 6030 send "$vsock_bytes" >/tmp/stream.out 2>&1 || rc=1
wait $p1 || rc=1
wait $p2 || rc=1
sed 's/^/h2g: /' /tmp/h2g.out
sed 's/^/g2h: /' /tmp/g2h.out
sed 's/^/stream: /' /tmp/stream.out
exit $rc
