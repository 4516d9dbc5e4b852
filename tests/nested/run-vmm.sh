#!/usr/bin/env bash
# Runs the VMM interactively (used by `make run`).
#
#   tests/nested/run-vmm.sh VMM [ARGS...]
#
# With a usable /dev/kvm, execs VMM. Without one, runs it inside the nested KVM
# host (kvm-host.sh --tty): this terminal is put in raw mode and passed through
# to a controlling tty in L1 with the same size, so the guest console, Ctrl-C
# and Ctrl-A x all reach the VMM. L1 powers off when VMM exits; its exit
# status becomes ours and the terminal is restored however it ends.
set -u
[ $# -ge 1 ] || { echo "usage: run-vmm.sh VMM [ARGS...]" >&2; exit 2; }
# shellcheck source=tests/nested/kvm-usable.sh
. "$(dirname "${BASH_SOURCE[0]}")/kvm-usable.sh" || exit 2
kvm_usable && exec "$@"
echo "run-vmm: $kvm_reason: the guest runs inside the nested KVM host (software-emulated, slow)" >&2
exec "$(dirname "${BASH_SOURCE[0]}")/kvm-host.sh" --tty -- "$@"
