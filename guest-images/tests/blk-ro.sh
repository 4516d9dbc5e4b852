#!/bin/sh
# A read-only virtio-blk disk holding an ext4 file system: the guest sees it
# read-only, reads work, raw and file-system writes fail (the host checks the
# image is unchanged).
dev=/dev/vda
[ -b $dev ] || { echo "blk-ro: no $dev"; exit 1; }
echo "vda_ro=$(cat /sys/block/vda/ro)"
echo "vda_sha256=$(dd if=$dev bs=1M count=4 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)"
if dd if=/dev/zero of=$dev bs=4k count=1 oflag=direct 2>/dev/null; then
	echo "write=accepted"
else
	echo "write=refused"
fi
# A rw mount falls back to read-only; the file system reads but takes no writes.
mkdir -p /mnt/disk
if mount -t ext4 -o rw /dev/vda /mnt/disk 2>/dev/null; then
	echo "mount_opts=$(awk '$2 == "/mnt/disk" { split($4, o, ","); print o[1] }' /proc/mounts)"
	echo "ro_txt=$(cat /mnt/disk/ro.txt)"
	if touch /mnt/disk/new 2>/dev/null; then
		echo "fs_write=accepted"
	else
		echo "fs_write=refused"
	fi
	umount /mnt/disk
else
	echo "mount_opts=failed"
fi
# Last: on older kernels (5.10 here) --setrw makes the kernel treat a
# read-only disk as writable, and a rw mount after it would write and fail.
# The device must still refuse the write.
blockdev --setrw $dev 2>/dev/null
if dd if=/dev/zero of=$dev bs=4k count=1 seek=1 oflag=direct 2>/dev/null; then
	echo "write_setrw=accepted"
else
	echo "write_setrw=refused"
fi
exit 0
