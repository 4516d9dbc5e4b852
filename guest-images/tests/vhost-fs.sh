#!/bin/sh
# virtio-fs through a vhost-user back-end (virtiofsd): mounts the tag given as
# vmm.fs_tag= (default vmmfs), reads what the host wrote, writes a file and a
# 1 MiB pattern the host checks after power-off.
set -e
tag=vmmfs
for word in $(cat /proc/cmdline); do
	case $word in
		vmm.fs_tag=*) tag=${word#vmm.fs_tag=} ;;
	esac
done
mkdir -p /mnt/fs
mount -t virtiofs "$tag" /mnt/fs || { echo "mount=failed"; cat /proc/filesystems | grep -i virtio; exit 1; }
echo "mount=ok"
echo "host_txt=$(cat /mnt/fs/host.txt)"
echo "host_bin_sha256=$(sha256sum </mnt/fs/host.bin | cut -d' ' -f1)"
echo "written by the guest" >/mnt/fs/guest.txt
awk 'BEGIN { for (i = 0; i < 65536; i++) printf "%015d\n", i }' >/mnt/fs/pattern.txt
mkdir -p /mnt/fs/gdir
echo inner >/mnt/fs/gdir/inner.txt
sync
echo "pattern_sha256=$(sha256sum </mnt/fs/pattern.txt | cut -d' ' -f1)"
echo "listing=$(ls /mnt/fs | tr '\n' ' ')"
umount /mnt/fs
echo "umount=ok"
