#!/usr/bin/env bash
# The command selftest.sh runs inside the nested KVM host: reports what it sees
# as key=value lines, writes a file into the build share, and exits 7.
#   selftest-l1.sh BUILD_FILE KVM_API_CHECK KVM_PROBE [ARGS...]
build_file=$1 api_check=$2 probe=$3
shift 3
echo "pwd=$PWD"
for a in "$@"; do printf 'arg=[%s]\n' "$a"; done
echo "var=[${SELFTEST_VAR-unset}]"
echo "hidden=[${SELFTEST_HIDDEN-unset}]"
echo "nested=[${KVM_HOST_NESTED-unset}]"
echo "written in L1" >"$build_file" && echo "build_write=ok"
if touch "$(dirname "$0")/.selftest-must-not-exist" 2>/dev/null; then
	echo "root_write=allowed"
else
	echo "root_write=refused"
fi
"$api_check"
out=$("$probe"); echo "probe=$? $out"
out=$("$probe" --budget-ms 1); echo "probe_slow=$? $out"
echo "to-stderr" >&2
seq 1 200000 | sed 's/^/bulk /'
exit 7
