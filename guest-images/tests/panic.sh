#!/bin/sh
# Crash the kernel on purpose: vmm must report a panic, not a clean exit.
echo 1 >/proc/sys/kernel/sysrq
echo c >/proc/sysrq-trigger
sleep 60
