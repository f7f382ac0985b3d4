#!/bin/busybox sh
# /init of the lab guest (pv-migration-kit).  It loads the virtio modules,
# runs the workload named by kit.workload= on the kernel command line, prints
# KIT-READY and then a heartbeat every second on the serial console, forever.
/bin/busybox mkdir -p /proc /sys /dev /tmp /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

workload=idle
hog=90
dirty="25 100"
stress=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        kit.workload=*) workload="${arg#kit.workload=}" ;;
        kit.hog=*) hog="${arg#kit.hog=}" ;;
        kit.stress=*) stress="${arg#kit.stress=}" ;;
        kit.dirty=*) dirty="$(echo "${arg#kit.dirty=}" | tr ',' ' ')" ;;
    esac
done

# The virtio modules, in dependency order (computed on the host).
for m in $(cat /kit/modules.order); do
    insmod "/kit/modules/$m.ko" || echo "KIT-ERROR insmod $m failed"
done
echo "KIT-BOOT kernel=$(uname -r) workload=$workload"
if [ -d /sys/bus/virtio/drivers/virtio_balloon ]; then
    echo "KIT-BALLOON features=$(cat /sys/bus/virtio/devices/*/features 2>/dev/null | tr '\n' ' ')"
fi

case "$workload" in
    idle) ;;
    hog) /kit/kitmem hog "$hog" || echo "KIT-ERROR hog failed" ;;
    dirtying) /kit/kitmem dirty $dirty || echo "KIT-ERROR dirty failed" ;;
    stress) exec /kit/kitmem stress $(echo "$stress" | tr ',' ' ') ;;
    *) echo "KIT-ERROR unknown workload $workload" ;;
esac
free_kib=$(grep MemFree /proc/meminfo | tr -s ' ' | cut -d' ' -f2)
echo "KIT-READY workload=$workload memfree_kib=$free_kib"
i=0
while true; do
    echo "KIT-HB $i"
    i=$((i + 1))
    sleep 1
done
