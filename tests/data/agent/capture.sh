#!/bin/sh
# Prints what the agent's collectors read, for tests/data/agent/unpack.py to turn into a
# sample tree. Run inside the agent image (boot it with rdinit=/bin/sh and paste this on
# the serial console, after mounting /proc, /sys and /dev and loading the modules).
put() {
    [ -e "$1" ] || return 0
    echo "@@FILE $1"
    base64 < "$1"
}
link() {
    [ -L "$1" ] && echo "@@LINK $1 $(readlink "$1")"
}
for b in /sys/block/*; do
    for f in size ro serial wwid queue/rotational device/model device/serial device/wwid \
             device/vpd_pg80; do
        put "$b/$f"
    done
    link "$b/device/driver"
    for p in "$b"/"$(basename "$b")"*; do
        for f in partition start size; do put "$p/$f"; done
    done
done
for n in /sys/class/net/*; do
    for f in address ifindex mtu operstate carrier; do put "$n/$f"; done
    [ -e "$n/device" ] && echo "@@DIR $n/device"
done
put /proc/cpuinfo
put /proc/meminfo
dmidecode -t 1,4,17 > /tmp/dmidecode.txt
put /tmp/dmidecode.txt
echo "@@END"
