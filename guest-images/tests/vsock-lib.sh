#!/bin/sh
# What the vsock-xchg and vsock-snapshot guest tests share (sourced as
# /tests/vsock-lib): vsock_bytes, the bytes each way on every connection
# (vmm.vsock_bytes=N on the kernel command line, default 8 MiB), and the
# check that the virtio-vsock driver bound (no /dev/vsock: the test fails at
# once). Run alone it makes only that check.
vsock_bytes=8388608
for word in $(cat /proc/cmdline); do
	case $word in
		vmm.vsock_bytes=*) vsock_bytes=${word#*=} ;;
	esac
done
[ -e /dev/vsock ] || { echo "vsock: no /dev/vsock (driver not bound)"; exit 1; }
