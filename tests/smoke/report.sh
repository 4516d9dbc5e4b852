# shellcheck shell=bash
# What a boot-smoke run reads from a boot and how it reports it, for
# bench/qemu-smoke.sh (the same checks as vmm-smoke, driven through QEMU).
# vmm-smoke applies the same rules in C (smoke/report.c); the host check
# smoke-same-verdicts (tests/host-checks.sh) holds the two to the same output.
# Only bash builtins: a process costs tens of milliseconds in an emulated host.

# smoke_read FD LOGFD PREFIX: read a boot's console (and the VMM's messages,
# lines starting with PREFIX, not empty) from FD as it arrives, copying it to
# LOGFD unless that is empty. Sets:
#   val[KEY]   the guest's KEY=value report lines (the first of each KEY)
#   began ended_ok   the test's BEGIN marker, its END marker with rc=0
#   vmm_err    the first line starting with PREFIX: the VMM's verdict
#   power_off  the guest's clock at "reboot: Power down", in seconds
#   last_line  the last non-empty line; tail20, nlines: the last 20 lines
smoke_read() {
	local fd=$1 logfd=$2 prefix=$3 line key
	declare -gA val=()
	tail20=() nlines=0
	began= ended_ok= last_line= vmm_err= power_off=
	while IFS= read -r -u "$fd" line || [ -n "$line" ]; do
		[ -z "$logfd" ] || printf '%s\n' "$line" >&"$logfd"
		line=${line%$'\r'}
		case $line in
			'VMMTEST-BEGIN smoke'*) began=1 ;;
			'VMMTEST-END smoke rc=0') ended_ok=1 ;;
			"$prefix"*) [ -n "$vmm_err" ] || vmm_err=$line ;;
			'['*'] reboot: Power down'*)
				[[ $line =~ ^\[\ *([0-9]+\.[0-9]{1,3}) ]] && power_off=${BASH_REMATCH[1]} ;;
			*=*)
				key=${line%%=*}
				[[ $key =~ ^[a-z_0-9]+$ ]] && [ -z "${val[$key]+set}" ] && val[$key]=${line#*=} ;;
		esac
		[ -n "$line" ] && last_line=$line
		tail20[nlines++ % 20]=$line
	done
	return 0
}

# smoke_report NAME VMM: one line per check, a summary; status 0 only if all
# passed. Uses what smoke_read set and kernel, version, cpus, mem, secs, tap,
# want_sha, rc (the VMM's exit status), keep and work.
smoke_report() {
	local name=$1 vmm_name=$2 pass=0 fail=0 got kb ids dev id i clock
	check() { # check NAME ok|no DETAIL
		if [ "$2" = ok ]; then
			pass=$((pass + 1)); echo "PASS $1${3:+: $3}"
		else
			fail=$((fail + 1)); echo "FAIL $1${3:+: $3}"
		fi
	}
	clock=${val[uptime_at_init]:+tests began at ${val[uptime_at_init]} s}
	[ -z "$power_off" ] || clock+="${clock:+, }power-off at $power_off s"
	echo "$name: ${kernel##*/}${version:+ ($version)}, $cpus vCPUs, $mem MiB, $secs s${clock:+ ($clock of guest time)}"
	[ -n "$keep" ] && echo "$name: kept $work (console.log, $vmm_name.err)"
	[ -n "$began" ] && check "init started" ok "${val[kernel]:-}" || check "init started" no "$vmm_err"
	got=${val[cpus]:-}
	[ "$got" = "$cpus" ] && check "vCPUs online" ok "$got of $cpus (${val[online]:-})" ||
		check "vCPUs online" no "${got:-?} of $cpus"
	kb=${val[memtotal_kb]:-}
	[[ $kb =~ ^[0-9]+$ ]] && [ "$kb" -ge $((mem * 1024 * 80 / 100)) ] && [ "$kb" -le $((mem * 1024)) ] &&
		check "memory" ok "$((kb / 1024)) MiB of $mem MiB" || check "memory" no "${kb:-?} kB of $mem MiB"
	ids=" ${val[virtio_ids]:-} "
	for dev in "virtio-blk 0x0002" "virtio-rng 0x0004" ${tap:+"virtio-net 0x0001"}; do
		id=${dev#* }
		[[ $ids == *" $id "* ]] && check "${dev% *} probed" ok || check "${dev% *} probed" no "driver not bound (virtio ids:$ids)"
	done
	[ -z "$tap" ] && echo "note: virtio-net not checked: no --tap given and not root ($vmm_name could not create one)"
	[ "${val[vda_sha256]:-}" = "$want_sha" ] && check "disk read" ok "4 MiB pattern matches" ||
		check "disk read" no "sha256 ${val[vda_sha256]:-none} != $want_sha"
	[ "$rc" -eq 0 ] && [ -n "$ended_ok" ] && check "power-off" ok "$vmm_name exited 0" ||
		check "power-off" no "$vmm_name exited $rc: $vmm_err"
	if [ "$fail" -ne 0 ]; then
		echo "---- last console lines:"
		for ((i = nlines > 20 ? nlines - 20 : 0; i < nlines; i++)); do echo "| ${tail20[i % 20]}"; done
		[ -n "$last_line" ] || echo "| (none)"
	fi
	echo "$pass passed, $fail failed"
	[ "$fail" -eq 0 ]
}
