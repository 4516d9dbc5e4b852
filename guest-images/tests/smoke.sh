#!/bin/sh
# What a boot-smoke test checks, printed as key=value lines for vmm-smoke:
# CPUs online, memory, the virtio devices the kernel probed, a disk read.
read -r up _ </proc/uptime
echo "uptime_at_init=$up"
echo "kernel=$(uname -r)"
echo "cpus=$(grep -c ^processor /proc/cpuinfo)"
echo "online=$(cat /sys/devices/system/cpu/online)"
echo "memtotal_kb=$(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo)"
ids=
for d in /sys/bus/virtio/devices/*; do
	[ -e "$d/device" ] || continue
	# Count only devices a driver bound to: probed, not just enumerated.
	[ -e "$d/driver" ] || continue
	ids="$ids $(cat "$d/device")"
done
echo "virtio_ids=$ids"
if [ -b /dev/vda ]; then
	echo "vda_sha256=$(sha256sum /dev/vda | cut -d' ' -f1)"
fi
exit 0
