# kvm_usable: can guests boot on this machine's /dev/kvm? Sourced by
# kvm-host.sh and run-vmm.sh. Returns 0 if so; otherwise 1, with the reason in
# $kvm_reason. Besides opening /dev/kvm, it runs kvm-probe (built on first use
# into $KVM_HOST_BUILD or build/nested), which times a guest loop: some hosts
# offer /dev/kvm but emulate guest code in software, far too slowly to boot.
#
# KVM_HOST_FORCE_NESTED=1 answers "not usable" without looking.
kvm_usable() {
	local src build probe out
	kvm_reason=
	if [ -n "${KVM_HOST_FORCE_NESTED:-}" ]; then
		kvm_reason="KVM_HOST_FORCE_NESTED is set"
		return 1
	fi
	if [ ! -c /dev/kvm ]; then
		kvm_reason="there is no /dev/kvm"
		return 1
	fi
	if ! { : <>/dev/kvm; } 2>/dev/null; then
		kvm_reason="/dev/kvm cannot be opened by $(id -un) (run as root, or join the group that owns it)"
		return 1
	fi
	src=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kvm-probe.c
	build=${KVM_HOST_BUILD:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build}
	probe=$build/nested/kvm-probe
	if [ ! -x "$probe" ] || [ "$src" -nt "$probe" ]; then
		mkdir -p "$build/nested" &&
			cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -o "$probe.$$" "$src" &&
			mv "$probe.$$" "$probe" ||
			{ kvm_reason="cannot build $probe from $src (is a C compiler installed?)"; return 1; }
	fi
	out=$("$probe")
	case $? in
		0) return 0 ;;
		*) kvm_reason=${out#kvm-probe: }; [ -n "$kvm_reason" ] || kvm_reason="$probe failed"; return 1 ;;
	esac
}
