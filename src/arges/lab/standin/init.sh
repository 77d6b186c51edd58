#!/bin/sh
# /init of the lab's Talos stand-in image: the agent's /init (kept as /init-agent) with the
# stand-in's Talos API (python3 -m arges.lab.standin.apid) started beside it, and started
# again after a delay whenever it stops. The apid waits until the agent has installed the
# machine config; its messages go to the console.
(
    while [ ! -e /proc/cmdline ] || [ ! -e /dev/console ]; do /bin/busybox sleep 1; done
    while true; do
        PYTHONPATH=/usr/lib/arges:/usr/lib/arges-vendor /usr/bin/python3 -S -u \
            -m arges.lab.standin.apid > /dev/console 2>&1
        /bin/busybox sleep 10
    done
) &
exec /bin/busybox sh /init-agent
