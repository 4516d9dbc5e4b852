#!/bin/sh
# Prints what the guest sees: online CPUs, memory, kernel and virtio devices, one
# key=value a line.
set -e
count=0
online=$(cat /sys/devices/system/cpu/online)
old_ifs=$IFS
IFS=,
for range in $online; do
	case $range in
		*-*) count=$((count + ${range#*-} - ${range%-*} + 1)) ;;
		*)   count=$((count + 1)) ;;
	esac
done
IFS=$old_ifs
echo "cpus=$count"
echo "memtotal_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
echo "kernel=$(uname -r)"
echo "virtio_devices=$(ls /sys/bus/virtio/devices 2>/dev/null | wc -l)"
