#!/usr/bin/env bash
# Checks that need no KVM: run on the host itself, results to $RESULTS.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RESULTS=${RESULTS:-$BUILD/results.txt}
VMM=$BUILD/vmm
status=0

check() {
	local name=$1
	shift
	if "$@"; then
		echo "PASS host:$name" >>"$RESULTS"
		echo "  PASS $name"
	else
		echo "FAIL host:$name" >>"$RESULTS"
		echo "  FAIL $name"
		status=1
	fi
}

help_and_version() {
	"$VMM" --help | grep -q -- '--kernel PATH' && "$VMM" --version | grep -q '^vmm [0-9]'
}

# Without KVM, vmm must say so in one line and exit 2 (on a KVM host: skipped).
no_kvm_message() {
	local out rc
	[ -e /dev/kvm ] && return 0
	out=$("$VMM" --kernel "$BUILD/guest/vmlinuz-generic" 2>&1 </dev/null)
	rc=$?
	[ "$rc" -eq 2 ] && grep -q '/dev/kvm does not exist' <<<"$out" && [ "$(wc -l <<<"$out")" -eq 1 ]
}

# The boot suite's retry rule (tests/boot/lib.sh, nested_flaw): only a stock
# guest that died silently, and only inside the nested host, counts as the
# emulation's flaw.
nested_flaw_signature() {
	(
		tmp=$(mktemp -d) || exit 1
		trap 'rm -rf "$tmp"' EXIT
		export TMPDIR=$tmp KVM_HOST_NESTED=1
		source tests/boot/lib.sh >/dev/null
		CURRENT_CASE=c
		flawed() { # flawed STDERR-TEXT CONSOLE-TEXT: did nested_flaw note it?
			rm -f "$WORK/flaw.c"
			printf '%s\n' "$1" >"$tmp/err"
			printf '%s' "$2" >"$tmp/log"
			nested_flaw "$tmp/err" "$tmp/log"
			[ -s "$WORK/flaw.c" ]
		}
		ie='vmm: KVM internal error on vCPU 0 (suberror 1, rip=0x3a200000 rsp=0x4f57e70 cr0=0x80000011 cr3=0x4f77000 cr4=0x1020 efer=0x500)'
		tf='vmm: guest triple fault on vCPU 0 (rip=0xfff0 rsp=0 cr0=0x10 cr3=0 cr4=0 efer=0); the kernel crashed early'
		to=$'vmm: --timeout 240 s expired; the guest\'s last console line: ""\nvmm: vCPU 0: runnable rip=0xffffffff81a5a1a9'
		to0=$'vmm: --timeout 240 s expired; the guest wrote nothing to its serial console (no console=ttyS0 on --cmdline? ...)\nvmm: vCPU 0: runnable rip=0x431b986'
		flawed "$tf" '' && flawed "$to" $'\r\n' && flawed "$to0" '' &&
			flawed "$tf" 'cpus=4' && grep -q 'after it printed' "$WORK/flaw.c" &&
			! flawed $'vmm: --timeout 240 s expired; the guest\'s last console line: "hang"' 'hang' &&
			! flawed 'vmm: KVM_RUN failed on vCPU 0: Bad address' '' &&
			flawed "$ie" '' && grep -q 'rip=0x3a200000' "$WORK/flaw.c" &&
			! flawed "$ie" 'Linux version' && ! KVM_HOST_NESTED= flawed "$ie" '' &&
			! KVM_HOST_NESTED= flawed "$tf" '' &&
			flawed $'vmm: --timeout 240 s expired; the guest\'s last console line: "x"\nvmm: vCPU 0: halted rip=0x1 rflags.IF=1; LAPIC tpr=0 isr=-1 irr=-1 lvtt=0x400ec tmict=0; tsc-deadline unarmed\nvmm: vCPU 1: runnable rip=0xffffffffc055c20c rflags.IF=1; LAPIC tpr=0 isr=-1 irr=251 lvtt=0x400ec tmict=0; tsc-deadline unarmed' 'x' &&
			! flawed $'vmm: --timeout 240 s expired; the guest\'s last console line: "x"\nvmm: vCPU 1: runnable rip=0x1 rflags.IF=0; LAPIC tpr=0 isr=-1 irr=251 lvtt=0 tmict=0; tsc-deadline unarmed' 'x' &&
			! flawed $'vmm: --timeout 240 s expired; the guest\'s last console line: "x"\nvmm: vCPU 1: runnable rip=0x1 rflags.IF=1; LAPIC tpr=0 isr=236 irr=251 lvtt=0 tmict=0; tsc-deadline unarmed' 'x' &&
			! flawed $'vmm: --timeout 240 s expired; the guest\'s last console line: "x"\nvmm: vCPU 1: runnable rip=0x1 rflags.IF=1; LAPIC tpr=0 isr=-1 irr=-1 lvtt=0 tmict=0; tsc-deadline unarmed' 'x' &&
			flawed $'vmm: stopped by signal Quit\nvmm: vCPU 1: runnable rip=0x1 rflags.IF=1; LAPIC tpr=0 isr=-1 irr=251 lvtt=0x400ec tmict=0; tsc-deadline unarmed' 'x' &&
			! flawed $'vmm: stopped by signal Terminated\nvmm: vCPU 1: runnable rip=0x1 rflags.IF=1; LAPIC tpr=0 isr=-1 irr=251 lvtt=0x400ec tmict=0; tsc-deadline unarmed' 'x' &&
			flawed $'vmm: stopped by signal Quit\nvmm: vCPU 0: halted rip=0x1 rflags.IF=1; LAPIC tpr=0x10 isr=-1 irr=-1 lvtt=0x400ec tmict=0; tsc-deadline armed, 1500 ms overdue' 'x' &&
			grep -q 'never delivered (vCPU 0: halted' "$WORK/flaw.c" &&
			flawed $'vmm: stopped by signal Quit\nvmm: vCPU 1: halted rip=0x1 rflags.IF=1; LAPIC tpr=0 isr=-1 irr=-1 lvtt=0x400ec tmict=0; tsc-deadline armed, 2500 ms overdue' 'x' &&
			flawed $'vmm: --timeout 240 s expired; the guest\'s last console line: "x"\nvmm: vCPU 0: halted rip=0x1 rflags.IF=1; LAPIC tpr=0x10 isr=-1 irr=-1 lvtt=0x400ec tmict=0; tsc-deadline armed, 92000 ms overdue' 'x' &&
			! flawed $'vmm: stopped by signal Quit\nvmm: vCPU 0: halted rip=0x1 rflags.IF=1; LAPIC tpr=0x10 isr=-1 irr=-1 lvtt=0x400ec tmict=0; tsc-deadline armed, 999 ms overdue' 'x' &&
			! flawed $'vmm: stopped by signal Quit\nvmm: vCPU 0: halted rip=0x1 rflags.IF=1; LAPIC tpr=0x10 isr=-1 irr=-1 lvtt=0x500ec tmict=0; tsc-deadline armed, 1500 ms overdue' 'x' &&
			! flawed $'vmm: stopped by signal Quit\nvmm: vCPU 0: halted rip=0x1 rflags.IF=0; LAPIC tpr=0x10 isr=-1 irr=-1 lvtt=0x400ec tmict=0; tsc-deadline armed, 1500 ms overdue' 'x' &&
			! flawed $'vmm: stopped by signal Quit\nvmm: vCPU 0: halted rip=0x1 rflags.IF=1; LAPIC tpr=0x10 isr=-1 irr=-1 lvtt=0x400ec tmict=0; tsc-deadline armed, 5000 ms ahead' 'x' &&
			flawed 'vmm: guest kernel panic: Kernel panic - not syncing: Fatal exception in interrupt' \
				$'[ 9.5] RIP: 0010:error_entry+0x10/0x130\n[ 9.5] RSP: 0000:fffffe0000009000 EFLAGS: 00000083' &&
			! flawed 'vmm: guest kernel panic: Kernel panic - not syncing: Fatal exception in interrupt' \
				$'[ 9.5] RIP: 0010:virtnet_poll+0x10/0x130\n[ 9.5] RSP: 0018:ffffb0c0000c3e38 EFLAGS: 00000083' &&
			! flawed 'vmm: guest kernel panic: Kernel panic - not syncing: Fatal exception' \
				$'[ 9.5] RIP: 0010:error_entry+0x10/0x130\n[ 9.5] RSP: 0018:ffffb0c0000c3e38 EFLAGS: 00000083' &&
			! KVM_HOST_NESTED= flawed 'vmm: guest kernel panic: Kernel panic - not syncing: Fatal exception in interrupt' \
				$'[ 9.5] RIP: 0010:error_entry+0x10/0x130\n[ 9.5] RSP: 0000:fffffe0000009000 EFLAGS: 00000083'
	)
}

# The boot suite retries a case whose failure carries the flaw signature, at
# most FLAW_RETRIES (2) times, says so on its verdict, and never retries a
# plain failure. Fake cases, so no KVM is needed.
suite_flaw_retries() {
	(
		tmp=$(mktemp -d) || exit 1
		trap 'rm -rf "$tmp"' EXIT
		mkdir -p "$tmp/cases" "$tmp/build"
		cat >"$tmp/cases/fake.sh" <<-'CASES'
			# Each case counts its attempts in $WORK/tries.NAME.
			tried() { echo x >>"$WORK/tries.$1"; wc -l <"$WORK/tries.$1"; }
			flaw() { echo "fake flaw" >>"$WORK/flaw.$CURRENT_CASE"; boot_fail "wrecked"; }
			case_twice() { [ "$(tried twice)" -le 2 ] && flaw || boot_pass; }
			case_always() { tried always >/dev/null; flaw; }
			case_plain() { tried plain >/dev/null; boot_fail "a real failure"; }
		CASES
		BUILD=$tmp/build TMPDIR=$tmp KVM_HOST_NESTED=1 BOOT_CASES=$tmp/cases tests/boot/suite.sh >"$tmp/out" 2>&1
		r=$tmp/build/boot-results.txt w=$tmp/boot-work
		grep -qx 'PASS boot:twice (retried 2 times: nested-host emulation flaw)' "$r" &&
			grep -qx 'FAIL boot:always: wrecked (retried 2 times: nested-host emulation flaw)' "$r" &&
			grep -qx 'FAIL boot:plain: a real failure' "$r" &&
			[ "$(wc -l <"$w/tries.twice")" -eq 3 ] && [ "$(wc -l <"$w/tries.always")" -eq 3 ] &&
			[ "$(wc -l <"$w/tries.plain")" -eq 1 ] &&
			[ "$(grep -c '^always: fake flaw' "$tmp/build/boot-flaws.txt")" -eq 2 ] || {
			echo "  suite output:"; sed 's/^/  | /' "$tmp/out" "$r"; exit 1; }
	)
}

# In the nested host, vmm_boot stops a guest that printed nothing for
# BOOT_SILENT_S s and notes the flaw; a guest that printed is left alone. Fake
# VMMs, so no KVM is needed.
silent_guest_stopped() {
	(
		tmp=$(mktemp -d) || exit 1
		trap 'rm -rf "$tmp"' EXIT
		export TMPDIR=$tmp KVM_HOST_NESTED=1 BOOT_SILENT_S=2
		source tests/boot/lib.sh >/dev/null
		CURRENT_CASE=c
		# The fake VMM takes --serial file=PATH, prints $1 there, then sleeps 6 s.
		printf '%s\n' '#!/bin/sh' 'for a; do case $a in file=*) log=${a#file=} ;; esac; done' \
			'printf "%s" "$FAKE_SAYS" >"$log"; exec sleep 6' >"$tmp/fake-vmm"
		chmod +x "$tmp/fake-vmm"
		VMM=$tmp/fake-vmm
		start=$SECONDS
		FAKE_SAYS='' vmm_boot "$tmp/quiet.log"
		[ "$RC" -eq 143 ] && [ $((SECONDS - start)) -lt 6 ] && grep -q 'silent for 2 s' "$WORK/flaw.c" || {
			echo "  silent guest: rc=$RC after $((SECONDS - start)) s, flaw: $(cat "$WORK/flaw.c" 2>/dev/null)"; exit 1; }
		rm -f "$WORK/flaw.c"
		FAKE_SAYS='Linux version 6.1' vmm_boot "$tmp/talks.log"
		[ "$RC" -eq 0 ] && [ ! -e "$WORK/flaw.c" ] || { echo "  talking guest: rc=$RC"; exit 1; }
		# Through a wrapper that execs vmm in place, as ip netns exec does (the net
		# cases): the wrapper silences the guest, and it is still stopped in time.
		wrapped() { local -a VMM_WRAP=(env FAKE_SAYS=); vmm_boot "$tmp/wrapped.log"; }
		start=$SECONDS
		FAKE_SAYS='Linux version 6.1' wrapped
		[ "$RC" -eq 143 ] && [ $((SECONDS - start)) -lt 6 ] && [ -e "$WORK/flaw.c" ] || {
			echo "  wrapped silent guest: rc=$RC after $((SECONDS - start)) s"; exit 1; }
		rm -f "$WORK/flaw.c"
		# Not in the nested host: no watchdog at all.
		start=$SECONDS
		KVM_HOST_NESTED='' FAKE_SAYS='' vmm_boot "$tmp/plain.log"
		[ "$RC" -eq 0 ] && [ $((SECONDS - start)) -ge 6 ] || { echo "  plain host: rc=$RC"; exit 1; }
	)
}

# smoke_fake_cache DIR SHA256: a vmm-smoke cache in DIR/cache (exported as
# VMM_SMOKE_CACHE) with an empty disk said to hash to SHA256 and an initramfs
# newer than every guest-image source, so vmm-smoke builds nothing.
smoke_fake_cache() {
	export VMM_SMOKE_CACHE=$1/cache
	mkdir -p "$VMM_SMOKE_CACHE"
	: >"$VMM_SMOKE_CACHE/disk-4m.img"
	echo "$2  disk" >"$VMM_SMOKE_CACHE/disk-4m.img.sha256"
	: >"$VMM_SMOKE_CACHE/initramfs-builtin.cpio.gz"
}

# vmm-smoke (C) and the QEMU reference's report.sh (bash, bench/qemu-smoke.sh)
# give the same verdicts, line for line, on the same consoles: a fake VMM
# prints each. No KVM needed.
smoke_same_verdicts() {
	(
		tmp=$(mktemp -d) || exit 1
		trap 'rm -rf "$tmp"' EXIT
		sha=89a99926cd5491b5ae4bf95614bae1dd230e918d4fbb86fc8d0912f7fa34c125
		smoke_fake_cache "$tmp" "$sha"
		printf '%s\n' '#!/bin/sh' 'cat "$FAKE_CONSOLE"; exit "$FAKE_RC"' >"$tmp/fake-vmm"
		chmod +x "$tmp/fake-vmm"
		printf 'VMMTEST-BEGIN smoke\r\nuptime_at_init=1.82\r\nkernel=6.1.0\r\ncpus=2\r\nonline=0-1\r\nmemtotal_kb=479000\r\nvirtio_ids= 0x0001 0x0002 0x0004\r\nvda_sha256=%s\r\nVMMTEST-END smoke rc=0\r\n[    2.141756] reboot: Power down\r\n' \
			"$sha" >"$tmp/good"
		printf 'noise\n\nVMMTEST-BEGIN smoke\ncpus=3\nCPUS=2\ncpus=2\nmemtotal_kb=4e5\nvirtio_ids= 0x0002\nvmm: stopped\nkernel==x\nVMMTEST-END smoke rc=1\n' >"$tmp/bad"
		for i in $(seq 1 30); do echo "line $i"; done >"$tmp/long"
		: >"$tmp/empty"
		for c in good:0 bad:0 bad:1 long:124 empty:1 good:3; do
			name=${c%:*} rc=${c#*:}
			FAKE_CONSOLE=$tmp/$name FAKE_RC=$rc "$BUILD/vmm-smoke" --vmm "$tmp/fake-vmm" --kernel "$tmp/fake-vmm" \
				--tap faketap --cpus 2 --memory 512 >"$tmp/c.out" 2>&1
			(
				# shellcheck source=tests/smoke/report.sh
				source tests/smoke/report.sh
				kernel=fake-vmm version= cpus=2 mem=512 secs=0 tap=faketap want_sha=$sha keep= work=
				exec 3<"$tmp/$name"
				smoke_read 3 "" "vmm: "
				smoke_report vmm-smoke vmm
			) >"$tmp/b.out" 2>&1
			diff <(tail -n +2 "$tmp/c.out") <(tail -n +2 "$tmp/b.out") >"$tmp/diff" ||
				{ echo "  console '$name', status $rc: vmm-smoke (<) and report.sh (>) differ:"; sed 's/^/  | /' "$tmp/diff"; exit 1; }
			# Only the good console with status 0 passes.
			if [ "$name:$rc" = good:0 ]; then
				[ "$(tail -n1 "$tmp/c.out")" = "8 passed, 0 failed" ] || { echo "  the good console did not pass"; exit 1; }
			else
				[ "$(tail -n1 "$tmp/c.out")" != "8 passed, 0 failed" ] ||
					{ echo "  console '$name', status $rc passed"; exit 1; }
			fi
		done
		# A stale cache: the boot vmm-smoke started on it is stopped unseen, the
		# initramfs is made again (a real one: busybox, no modules), and the
		# report is of the boot on the new image.
		touch -d 2000-01-01 "$VMM_SMOKE_CACHE/initramfs-builtin.cpio.gz"
		FAKE_CONSOLE=$tmp/good FAKE_RC=0 "$BUILD/vmm-smoke" --vmm "$tmp/fake-vmm" --kernel "$tmp/fake-vmm" \
			--tap faketap >"$tmp/stale.out" 2>&1
		grep -q '^vmm-smoke: building the initramfs (cached in ' "$tmp/stale.out" &&
			[ "$(grep -c '^vmm-smoke: fake-vmm' "$tmp/stale.out")" -eq 1 ] &&
			grep -q '^8 passed, 0 failed$' "$tmp/stale.out" &&
			[ -s "$VMM_SMOKE_CACHE/initramfs-builtin.cpio.gz" ] &&
			[ "$VMM_SMOKE_CACHE/initramfs-builtin.cpio.gz" -nt guest-images/init ] ||
			{ echo "  stale cache:"; sed 's/^/  | /' "$tmp/stale.out"; exit 1; }
	)
}

# vmm-smoke --append: the arguments reach vmm's --cmdline after vmm-smoke's
# own; control characters and over-long ones are refused with status 2.
smoke_append() {
	(
		tmp=$(mktemp -d) || exit 1
		trap 'rm -rf "$tmp"' EXIT
		smoke_fake_cache "$tmp" "$(printf '%064d' 0)"
		# The fake VMM keeps its arguments, one a line.
		printf '%s\n' '#!/bin/sh' "printf '%s\\n' \"\$@\" >$tmp/args" >"$tmp/fake-vmm"
		chmod +x "$tmp/fake-vmm"
		"$BUILD/vmm-smoke" --vmm "$tmp/fake-vmm" --kernel "$tmp/fake-vmm" --tap faketap \
			--append "noxsave  a=b c" >"$tmp/out" 2>&1
		grep -qx -- '--cmdline' "$tmp/args" &&
			[ "$(sed -n '/^--cmdline$/{n;p}' "$tmp/args")" = "console=ttyS0 quiet panic=-1 reboot=k vmm.test=smoke noxsave  a=b c" ] ||
			{ echo "  --append: vmm got:"; sed 's/^/  | /' "$tmp/args"; exit 1; }
		"$BUILD/vmm-smoke" --vmm "$tmp/fake-vmm" --kernel "$tmp/fake-vmm" --append "$(printf 'a\nb')" >"$tmp/out" 2>&1
		[ $? -eq 2 ] && grep -q "^vmm-smoke: --append: control characters" "$tmp/out" ||
			{ echo "  a newline in --append:"; sed 's/^/  | /' "$tmp/out"; exit 1; }
		"$BUILD/vmm-smoke" --vmm "$tmp/fake-vmm" --kernel "$tmp/fake-vmm" --append "$(printf '%01025d' 0)" >"$tmp/out" 2>&1
		[ $? -eq 2 ] && grep -q "^vmm-smoke: --append: longer than the 1024 bytes" "$tmp/out" ||
			{ echo "  a 1025-byte --append:"; sed 's/^/  | /' "$tmp/out"; exit 1; }
	)
}

check help-and-version help_and_version
check no-kvm-message no_kvm_message
check nested-flaw-signature nested_flaw_signature
check suite-flaw-retries suite_flaw_retries
check silent-guest-stopped silent_guest_stopped
check smoke-same-verdicts smoke_same_verdicts
check smoke-append smoke_append
exit $status
