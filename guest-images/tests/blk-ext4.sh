#!/bin/sh
# virtio-blk with a file system: mount the host-made ext4 image on /dev/vda,
# read its files, write new ones, unmount. The host reads them back (debugfs)
# and checks the file system (e2fsck).
set -e
mkdir -p /mnt/disk
mount -t ext4 /dev/vda /mnt/disk
echo "hello=$(cat /mnt/disk/hello.txt)"
echo "data_sha256=$(sha256sum </mnt/disk/data.bin | cut -d' ' -f1)"
echo "written by the guest" >/mnt/disk/guest.txt
cp /mnt/disk/data.bin /mnt/disk/copy.bin
mkdir /mnt/disk/dir
awk 'BEGIN { for (i = 0; i < 131072; i++) printf "%015d\n", i }' >/mnt/disk/dir/pattern.txt
echo "pattern_sha256=$(sha256sum </mnt/disk/dir/pattern.txt | cut -d' ' -f1)"
rm /mnt/disk/hello.txt
fstrim /mnt/disk 2>/dev/null && echo "fstrim=ok" || echo "fstrim=failed"
sync
umount /mnt/disk
echo "umount=ok"
