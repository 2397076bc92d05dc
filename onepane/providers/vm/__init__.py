"""The `vm` provider: libvirt/QEMU virtual machines in namespace data centers."""
