#!/bin/sh
# Helpers for the net-* guest tests (sourced as /tests/net-lib). Run alone it
# just brings the link up. Settings from the kernel command line:
#   vmm.net_ip=ADDR/LEN   the guest's address (default 10.0.2.15/24)
#   vmm.net_host=ADDR     the host's end of the tap (default 10.0.2.1)
#   vmm.net_bytes=N       bytes to move each way (default 64 MiB)
net_ip=10.0.2.15/24 net_host=10.0.2.1 net_bytes=67108864
for word in $(cat /proc/cmdline); do
	case $word in
		vmm.net_ip=*)    net_ip=${word#*=} ;;
		vmm.net_host=*)  net_host=${word#*=} ;;
		vmm.net_bytes=*) net_bytes=${word#*=} ;;
	esac
done

# net_up: the first virtio-net interface, up with net_ip; sets net_if. Prints mac= and features=.
net_up() {
	net_if=
	for d in /sys/class/net/*; do
		case $(readlink "$d/device/driver" 2>/dev/null) in
			*/virtio_net) net_if=${d##*/}; break ;;
		esac
	done
	[ -n "$net_if" ] || { echo "net: no virtio-net interface"; ls /sys/class/net; return 1; }
	ip link set lo up
	ip link set "$net_if" up || return 1
	ip addr add "$net_ip" dev "$net_if" || return 1
	echo "ifname=$net_if"
	echo "mac=$(cat "/sys/class/net/$net_if/address")"
	# The virtio feature bits the driver accepted, bit 0 first.
	echo "features=$(cat "/sys/class/net/$net_if/device/features")"
	# The kernel's link watcher sets operstate after the device opened, up to
	# a second later (longer under emulation): give it 10 s.
	n=0
	while [ "$(cat "/sys/class/net/$net_if/operstate")" != up ] && [ $n -lt 100 ]; do
		sleep 0.1
		n=$((n + 1))
	done
	echo "operstate=$(cat "/sys/class/net/$net_if/operstate")"
}

# net_ping COUNT: ping the host; prints ping=ok or ping=fail.
net_ping() {
	if ping -c "$1" -W 10 "$net_host" >/tmp/ping.out 2>&1; then
		echo "ping=ok"
	else
		cat /tmp/ping.out
		echo "ping=fail"
		return 1
	fi
}

# net_counters: the interface's packet counters, for the log.
net_counters() {
	for c in rx_packets tx_packets rx_dropped tx_dropped rx_errors tx_errors; do
		echo "$c=$(cat "/sys/class/net/$net_if/statistics/$c")"
	done
}

if [ "${0##*/}" = net-lib ]; then
	net_up
fi
