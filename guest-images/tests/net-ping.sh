#!/bin/sh
# virtio-net: the link comes up with the MAC the VMM gave and the host answers pings.
. /tests/net-lib
net_up || exit 1
net_ping 3 || exit 1
net_counters
