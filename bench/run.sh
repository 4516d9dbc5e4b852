#!/usr/bin/env bash
# Runs every benchmark that has been built; each prints its own table.
# Others append their lines below.
set -u
BUILD=${BUILD:-build}
status=0

if [ -x "$BUILD/bench/channel" ]; then
	"$BUILD/bench/channel" || status=1
fi

# Guest benchmarks need /dev/kvm: run them in the nested KVM host if there is none.
if [ -x "$BUILD/vmm" ]; then
	tests/nested/kvm-host.sh -- sh -c 'bench/boot.sh; bench/smoke.sh; bench/blk.sh' || status=1
	tests/nested/kvm-host.sh -- bench/net.sh || status=1
	tests/nested/kvm-host.sh -- bench/pause.sh || status=1
	tests/nested/kvm-host.sh -- bench/vhost-user.sh || status=1
	tests/nested/kvm-host.sh -- bench/vsock.sh || status=1
	tests/nested/kvm-host.sh -- bench/snapshot.sh || status=1
fi

exit $status
