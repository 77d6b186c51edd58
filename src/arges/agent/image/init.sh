#!/bin/sh
# /init of the Arges agent image: busybox sh as PID 1. Mounts the kernel's filesystems,
# loads the disk and NIC drivers, then runs the agent (which brings up the network) and
# restarts it after a delay whenever it stops, so a Python crash shows its traceback on the
# console instead of panicking the kernel. Every message goes to each active console.
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev
# --install finds busybox through /proc/self/exe, so only now.
$bb --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

consoles=$(cat /sys/class/tty/console/active 2>/dev/null)
[ -n "$consoles" ] || consoles=console
ttys=""
for c in $consoles; do ttys="$ttys /dev/$c"; done
say() {
    for t in $ttys; do echo "arges-init: $*" > "$t" 2>/dev/null; done
}

say "mounted /proc, /sys and /dev; kernel $(uname -r)"
say "loading disk and network drivers"
for m in $(cat /etc/arges/modules); do
    modprobe "$m" 2>/dev/null || say "module $m did not load"
done
say "$(wc -l < /proc/modules) modules loaded"

while true; do
    say "starting the agent: python3 -m arges.agent"
    PYTHONPATH=/usr/lib/arges python3 -S -u -m arges.agent 2>&1 | tee $ttys > /dev/null
    say "the agent stopped (the lines above say why); starting it again in 10 s"
    sleep 10
done
