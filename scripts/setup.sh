#!/usr/bin/env bash
# Installs the Debian packages the project needs to build, test and run.
# Idempotent and quiet when everything is already there; needs root (or sudo).
set -euo pipefail

PACKAGES=(
	build-essential make pkg-config
	linux-libc-dev libfdt-dev libcmocka-dev liburing-dev libevent-dev libjson-c-dev libhttp-parser-dev
	clang libfuzzer-14-dev libclang-rt-14-dev
	acpica-tools
	qemu-system-x86 qemu-utils
	dpdk-dev  # dpdk-testpmd, the vhost-user net back-end of the boot tests (Debian 12's dpdk has only scripts)
	socat  # the README's vsock examples, run by the boot tests
	busybox-static cpio zstd xz-utils lz4 bzip2 kmod
	e2fsprogs iproute2 curl
)

missing=()
for p in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || { echo "setup: need root to install: ${missing[*]}" >&2; exit 1; }
	SUDO=sudo
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
