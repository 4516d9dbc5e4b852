#!/bin/sh
# The guest's verdict through the paravirtual exit device: vmm must exit 77.
exec vmm-exit 77
