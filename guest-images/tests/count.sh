#!/bin/sh
# Count once a second on the console, for the API's boot test (tests/boot/cases/api.sh):
# the host pauses and resumes the guest and watches the count stop and go on.
# Ends on the ACPI power button (the kernel's button driver reports KEY_POWER;
# busybox acpid runs /etc/acpi/PWRF/00000080 for it), or after COUNT_MAX lines.
# At the end it reports the kernel's soft-lockup and RCU-stall complaints.
max=${COUNT_MAX:-900}
mkdir -p /etc/acpi/PWRF /var/log /var/run
cat >/etc/acpi/PWRF/00000080 <<'HANDLER'
#!/bin/sh
: >/tmp/power-button
HANDLER
chmod 0755 /etc/acpi/PWRF/00000080
acpid -c /etc/acpi -l /var/log/acpid.log
echo "count: power button device: $(grep -l 'Power Button' /sys/class/input/*/name 2>/dev/null | head -n 1)"
i=0
while [ "$i" -lt "$max" ] && ! [ -e /tmp/power-button ]; do
	echo "count=$i"
	i=$((i + 1))
	sleep 1
done
[ -e /tmp/power-button ] && echo "count: power button pressed"
echo "lockups=$(dmesg | grep -c -e 'soft lockup' -e 'rcu.*stall' -e 'hung_task')"
dmesg | grep -e 'soft lockup' -e 'rcu.*stall' -e 'hung_task' | head -n 5
exit 0
