#!/usr/bin/env bash
# The command selftest.sh runs inside the nested KVM host: reports what it sees
# as key=value lines, writes a file into the build share, and exits 7.
#   selftest-l1.sh BUILD_FILE KVM_API_CHECK [ARGS...]
build_file=$1 api_check=$2
shift 2
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
echo "to-stderr" >&2
seq 1 200000 | sed 's/^/bulk /'
exit 7
