#!/bin/sh
# The guest's verdict through the paravirtual exit device: vmm must exit 3.
exec vmm-exit 3
