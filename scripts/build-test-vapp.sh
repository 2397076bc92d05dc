#!/usr/bin/env bash
# Build a three-tier application OVA in the shape of a vSphere vApp export, from the test guest:
#
#   scripts/build-test-vapp.sh OUTDIR     -> OUTDIR/shop.ova (and the test guest in OUTDIR)
#
# tests/data/ovf/vsphere-vapp-3tier.ovf (a VirtualSystemCollection "shop": shop-db with a blank
# data disk, shop-app, shop-web, and a StartupSection starting them in that order) with each
# tier's disk the test guest as a streamOptimized VMDK, a 64 MiB data disk instead of 1 GiB and
# start delays of 2 s and 1 s instead of 30 s and 10 s (they would only slow a demonstration). The descriptor comes first in the
# archive, as OVF requires.
set -euo pipefail
OUT=${1:?usage: build-test-vapp.sh OUTDIR}
HERE=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
[ -f "$OUT/guest.qcow2" ] || "$HERE/scripts/build-test-disk.sh" "$OUT" >/dev/null
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
desc=$(cat "$HERE/tests/data/ovf/vsphere-vapp-3tier.ovf")
for t in web app db; do
  qemu-img convert -q -O vmdk -o subformat=streamOptimized "$OUT/guest.qcow2" "$WORK/shop-$t-disk1.vmdk"
  desc=${desc//\{${t}_size\}/$(stat -c %s "$WORK/shop-$t-disk1.vmdk")}
done
desc=${desc//ovf:capacity=\"8\"/ovf:capacity=\"24\"}
desc=${desc//ovf:capacity=\"1\" ovf:capacityAllocationUnits=\"byte \* 2^30\"/ovf:capacity=\"64\" ovf:capacityAllocationUnits=\"byte * 2^20\"}
desc=${desc//ovf:startDelay=\"30\"/ovf:startDelay=\"2\"}
desc=${desc//ovf:startDelay=\"10\"/ovf:startDelay=\"1\"}
printf '%s\n' "$desc" > "$WORK/shop.ovf"
tar -C "$WORK" --format=ustar -cf "$OUT/shop.ova" shop.ovf shop-web-disk1.vmdk shop-app-disk1.vmdk shop-db-disk1.vmdk
echo "$OUT/shop.ova"
