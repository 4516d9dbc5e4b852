#!/bin/sh
# virtio-net: vmm.net_bytes (default 64 MiB) each way over TCP with the host,
# every byte checked. The host listens with netxfer: on port 5001 it receives
# stream 1 (guest to host), on port 5002 it sends stream 2 (host to guest).
. /tests/net-lib
net_up || exit 1
net_ping 1 || exit 1
rc=0
netxfer send "$net_host:5001" "$net_bytes" 1 >/tmp/g2h.out 2>&1 || rc=1
sed 's/^/g2h_/; s/ / g2h_/g' /tmp/g2h.out | tr ' ' '\n'
netxfer recv "$net_host:5002" "$net_bytes" 2 >/tmp/h2g.out 2>&1 || rc=1
sed 's/^/h2g_/; s/ / h2g_/g' /tmp/h2g.out | tr ' ' '\n'
net_counters
exit $rc
