#!/bin/sh
# Guest half of bench/net.sh: TCP guest to host, vmm.net_bytes of stream 1 to
# port 5001 (the host measures); then host to guest from port 5002.
. /tests/net-lib
net_up || exit 1
net_ping 1 || exit 1
netxfer send "$net_host:5001" "$net_bytes" 1 | sed 's/^/g2h_/; s/ / g2h_/g' | tr ' ' '\n'
netxfer recv "$net_host:5002" | sed 's/^/h2g_/; s/ / h2g_/g' | tr ' ' '\n'
