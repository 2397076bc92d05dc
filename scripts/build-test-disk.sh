#!/usr/bin/env bash
# Build the small BIOS-bootable disk that onepane's VM tests, drills and benches boot.
#
#   scripts/build-test-disk.sh OUTDIR     -> OUTDIR/guest.raw and OUTDIR/guest.qcow2
#
# Everything comes from Debian packages (no downloads besides `apt-get download` of the
# distribution kernel): an MBR, one FAT16 partition holding SYSLINUX, the Debian kernel and a
# busybox initramfs whose /init brings up the network and serves HTTP on port 80:
#   /              "onepane test guest"
#   /cgi-bin/state uptime, a counter that ticks every second and the guest's address: the
#                  same guest after a live move shows the uptime and counter continuing
#   /cgi-bin/stream?N  N lines, one every 0.1 s: a long-lived response to hold open across a move
#   /cgi-bin/fetch?[SECONDS@]HOST/PATH  the guest asks http://HOST/PATH itself and answers with
#                  what it got (502 when it got nothing within SECONDS, default 5): one tier of
#                  an application calling the next
# With a second disk (/dev/vdb) the counter lives on it: read back at boot, written through
# (fsync) at every tick, and shown as disk= in /cgi-bin/state, so data that travels with the
# VM (a database tier's volume) can be checked for lost writes.
# The guest takes a static address from the QEMU firmware config entry opt/onepane/net
# ("ADDRESS/PREFIX GATEWAY"), else asks DHCP. The ACPI power button powers it off, so a
# graceful stop works. No loop devices or mounts: mtools writes into the image file.
set -euo pipefail
OUT=${1:?usage: build-test-disk.sh OUTDIR}
for tool in busybox syslinux mcopy mkfs.vfat sfdisk cpio qemu-img dpkg-deb; do
  command -v "$tool" >/dev/null || { echo "build-test-disk: $tool is missing" >&2; exit 1; }
done
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The kernel: whatever linux-image-amd64 points at today.
KPKG=$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: \(linux-image-[0-9].*\)/\1/p' | head -1)
KVER=${KPKG#linux-image-}
DEBS=${ONEPANE_DEB_CACHE:-/var/cache/onepane/debs}
mkdir -p "$DEBS"
ls "$DEBS/${KPKG}"_*.deb >/dev/null 2>&1 || (cd "$DEBS" && apt-get download -q "$KPKG" >/dev/null)
dpkg-deb -x "$(ls "$DEBS/${KPKG}"_*.deb | head -1)" "$WORK/kernel"

# The initramfs.
ROOTFS=$WORK/rootfs
mkdir -p "$ROOTFS"/{bin,proc,sys,dev,tmp,etc,mods,www/cgi-bin,usr/share/udhcpc}
cp "$(command -v busybox)" "$ROOTFS/bin/busybox"
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net virtio_blk qemu_fw_cfg button evdev"
for mod in $MODULES; do
  found=$(find "$WORK/kernel/lib/modules/$KVER" -name "$mod.ko" | head -1)
  [ -n "$found" ] && cp "$found" "$ROOTFS/mods/"
done
echo "$MODULES" > "$ROOTFS/etc/modules"
cat > "$ROOTFS/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc none /proc; mount -t sysfs none /sys; mount -t devtmpfs none /dev
for mod in $(cat /etc/modules); do [ -f /mods/$mod.ko ] && insmod /mods/$mod.ko 2>/dev/null; done
hostname onepane-guest
ip link set lo up
n=0; while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 25 ]; do sleep 0.2; n=$((n+1)); done
ip link set eth0 up
NET=/sys/firmware/qemu_fw_cfg/by_name/opt/onepane/net/raw
if [ -r $NET ]; then
  read ADDR GW < $NET
  ip addr add "$ADDR" dev eth0
  [ -n "$GW" ] && ip route add default via "$GW"
else
  udhcpc -i eth0 -q -n -t 5 -T 1 -s /usr/share/udhcpc/default.script
fi
c=0
# (zero-padded on the disk: the zeros go, or the shell reads 056 as octal 46)
[ -b /dev/vdb ] && c=$(head -c 32 /dev/vdb | tr -dc 0-9 | sed 's/^0*//') && c=${c:-0}
echo $c > /tmp/counter
(while :; do c=$((c+1)); echo $c > /tmp/counter
  [ -b /dev/vdb ] && printf '%032d' $c | dd of=/dev/vdb bs=32 count=1 conv=notrunc,fsync 2>/dev/null
  sleep 1; done) &
mkdir -p /etc/acpi/PWRF
printf '#!/bin/sh\necho "onepane-guest: power button" > /dev/console\npoweroff -f\n' > /etc/acpi/PWRF/00000080
chmod 755 /etc/acpi/PWRF/00000080
mkdir -p /var/log /var/run  # acpid's log and pid files: without them it exits at start
acpid -c /etc/acpi
echo "onepane test guest" > /www/index.html
httpd -p 80 -h /www
echo "onepane-guest: ready $(ip -4 -o addr show eth0 | awk '{print $4}') uptime $(cut -d' ' -f1 /proc/uptime)" > /dev/console
while :; do sleep 3600; done
INIT
cat > "$ROOTFS/www/cgi-bin/state" <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
disk=none; [ -b /dev/vdb ] && disk=$(head -c 32 /dev/vdb | tr -dc 0-9 | sed 's/^0*//')
echo "uptime=$(cut -d' ' -f1 /proc/uptime) counter=$(cat /tmp/counter) ip=$(ip -4 -o addr show eth0 | awk '{print $4}') disk=${disk:-0}"
CGI
cat > "$ROOTFS/www/cgi-bin/fetch" <<'CGI'
#!/bin/sh
case "$QUERY_STRING" in [0-9]*@*) wait=${QUERY_STRING%%@*}; url=${QUERY_STRING#*@};;
  *) wait=5; url=$QUERY_STRING;; esac
if out=$(timeout "$wait" wget -q -O - "http://$url" 2>/dev/null); then
  printf 'Content-Type: text/plain\r\n\r\n%s\n' "$out"
else
  printf 'HTTP/1.0 502 Bad Gateway\r\nContent-Type: text/plain\r\n\r\nfetch failed: %s\n' "$QUERY_STRING"
fi
CGI
cat > "$ROOTFS/www/cgi-bin/stream" <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
lines=${QUERY_STRING:-50}
i=1; while [ $i -le $lines ]; do echo "line $i counter=$(cat /tmp/counter)"; i=$((i+1)); usleep 100000; done
echo "end"
CGI
cat > "$ROOTFS/usr/share/udhcpc/default.script" <<'DHCP'
#!/bin/sh
[ "$1" = bound ] || [ "$1" = renew ] || exit 0
ip addr flush dev "$interface"; ip addr add "$ip/${mask:-24}" dev "$interface"
[ -n "$router" ] && ip route add default via "${router%% *}"
DHCP
chmod 755 "$ROOTFS/init" "$ROOTFS"/www/cgi-bin/* "$ROOTFS/usr/share/udhcpc/default.script"
(cd "$ROOTFS" && find . | cpio -o -H newc --quiet | gzip -6) > "$WORK/initrd.gz"

# The disk: 24 MiB, one bootable FAT16 partition from sector 2048.
DISK=$OUT/guest.raw
rm -f "$DISK"; truncate -s 24M "$DISK"
echo 'start=2048, type=6, bootable' | sfdisk -q "$DISK"
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$DISK" bs=440 count=1 conv=notrunc status=none
truncate -s 23M "$WORK/part"
mkfs.vfat -F 16 -h 2048 -n ONEPANE "$WORK/part" >/dev/null
printf 'DEFAULT guest\nPROMPT 0\nTIMEOUT 0\nLABEL guest\n  KERNEL /vmlinuz\n  INITRD /initrd.gz\n  APPEND console=ttyS0,115200 quiet loglevel=3 mitigations=off tsc=unstable\n' > "$WORK/syslinux.cfg"
cp "$WORK/kernel/boot/vmlinuz-$KVER" "$WORK/vmlinuz"
MTOOLS_SKIP_CHECK=1 mcopy -i "$WORK/part" "$WORK/vmlinuz" "$WORK/initrd.gz" "$WORK/syslinux.cfg" ::/
syslinux --install "$WORK/part"
dd if="$WORK/part" of="$DISK" bs=1M seek=1 conv=notrunc status=none
qemu-img convert -q -f raw -O qcow2 "$DISK" "$OUT/guest.qcow2"
echo "$OUT/guest.qcow2"
