#!/bin/sh
# virtio-vsock across a pause and resume over the API (tests/boot/cases/vsock.sh,
# case vsock_pause_resume, runs the host's side). We echo every connection to
# our port 5050: the host's before the pause, the ones it drops mid-transfer,
# the one it opens while we are paused, the ones after the resume. Then we
# connect to CID 2 port 6050, retrying until the host listens there (it does
# once its own checks are done), and check the echo of vmm.vsock_bytes.
. /tests/vsock-lib
rc=0
vsockt -t 900 -n 1000 listen 5050 echo >/tmp/echo.out 2>&1 &
p_echo=$!
sleep 0.5
echo "vsockpause: listening"
vsockt -t 900 -r 900 connect 2 6050 echocheck "$vsock_bytes" >/tmp/g2h.out 2>&1 || rc=1
kill $p_echo 2>/dev/null
wait $p_echo 2>/dev/null
sed "s/^/g2h: /" /tmp/g2h.out
echo "echo_served=$(grep -c '^echoed=' /tmp/echo.out)"
exit $rc
