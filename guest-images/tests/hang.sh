#!/bin/sh
# Never finish: vmm's --timeout must end it with status 124.
echo "hang: sleeping forever"
while :; do sleep 1000; done
