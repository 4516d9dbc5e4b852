#!/bin/sh
# A zero verdict through the exit device, before any power-off: vmm must exit 0.
exec vmm-exit 0
