#!/bin/sh
# virtio-rng over virtio-pci: the device is found on PCI, the driver uses
# MSI-X, rng_current names virtio, and /dev/hwrng gives bytes that are not
# all the same. Prints key=value lines the boot case checks.
fail() { echo "rng: $*"; exit 1; }

# 1af4:1044 is a modern (non-transitional) virtio-rng.
dev=
for d in /sys/bus/pci/devices/*; do
	if [ "$(cat "$d/vendor")" = 0x1af4 ] && [ "$(cat "$d/device")" = 0x1044 ]; then
		dev=$d
	fi
done
[ -n "$dev" ] || fail "no 1af4:1044 device in /sys/bus/pci/devices"
echo "pci_dev=${dev##*/}"
echo "host_bridge=$(cat /sys/bus/pci/devices/0000:00:00.0/vendor):$(cat /sys/bus/pci/devices/0000:00:00.0/device)"
echo "pci_driver=$(basename "$(readlink "$dev/driver")")"

cur=$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)
echo "rng_current=$cur"
case $cur in
	virtio_rng*) ;;
	*) fail "rng_current is '$cur', not virtio_rng" ;;
esac

# 4 KiB from the device: not all equal, and not a short read.
bytes=$(dd if=/dev/hwrng bs=512 count=8 2>/dev/null | od -An -v -tx1 | tr -s ' \n' '\n\n' | grep -v '^$')
n=$(echo "$bytes" | wc -l)
distinct=$(echo "$bytes" | sort -u | wc -l)
echo "rng_bytes=$n"
echo "rng_distinct=$distinct"
[ "$n" -eq 4096 ] || fail "read $n bytes from /dev/hwrng, expected 4096"
[ "$distinct" -gt 1 ] || fail "all 4096 bytes are equal"

# MSI-X: the device's vectors are listed as msix in sysfs (config + request queue).
msix=0
for f in "$dev"/msi_irqs/*; do
	[ "$(cat "$f" 2>/dev/null)" = msix ] && msix=$((msix + 1))
done
echo "msix_irqs=$msix"
grep 'virtio' /proc/interrupts | sed 's/^ */irq: /'
[ "$msix" -ge 2 ] || fail "expected at least 2 MSI-X vectors (config, queue), found $msix"
# The request queue's vector fired: its counts (one column per CPU) sum above 0.
fired=$(grep 'virtio.*-input' /proc/interrupts | awk '{ s = 0; for (i = 2; i <= NF; i++) { if ($i !~ /^[0-9]+$/) break; s += $i } print s }' | head -n 1)
echo "msix_req_count=${fired:-0}"
[ "${fired:-0}" -ge 1 ] || fail "the request queue's interrupt never fired"
exit 0
