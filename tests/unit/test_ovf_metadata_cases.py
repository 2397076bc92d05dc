"""The descriptor shapes issue 33 found read wrongly, each on a minimal descriptor of that shape
(images/ovf.py): a disk that only one deployment option has, capacities in
`ovf:capacityAllocationUnits`, a second hard disk beside a CD-ROM, the CPUs an option raises."""

from __future__ import annotations

from onepane.images.ovf import parse

OPTIONS = ('<DeploymentOptionSection><Info>o</Info>'
           '<Configuration ovf:id="small" ovf:default="true"><Label>S</Label></Configuration>'
           '<Configuration ovf:id="large"><Label>L</Label></Configuration>'
           '</DeploymentOptionSection>')


def descriptor(disks: str, items: str, options: str = OPTIONS) -> str:
    return f'''<?xml version="1.0"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"
 xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
 xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
 <References><File ovf:id="f1" ovf:href="system.vmdk"/></References>
 <DiskSection><Info>d</Info>{disks}</DiskSection>
 <NetworkSection><Info>n</Info><Network ovf:name="VM Network"/></NetworkSection>
 {options}
 <VirtualSystem ovf:id="vm"><Info>s</Info>
  <VirtualHardwareSection><Info>h</Info>{items}</VirtualHardwareSection>
 </VirtualSystem></Envelope>'''


def item(instance: int, resource_type: int, body: str = "", configuration: str = "") -> str:
    only = f' ovf:configuration="{configuration}"' if configuration else ""
    return (f"<Item{only}><rasd:InstanceID>{instance}</rasd:InstanceID>"
            f"<rasd:ResourceType>{resource_type}</rasd:ResourceType>{body}</Item>")


DISKS = ('<Disk ovf:diskId="system" ovf:fileRef="f1" ovf:capacity="4" '
         'ovf:capacityAllocationUnits="byte * 2^30"/>'
         '<Disk ovf:diskId="data" ovf:capacity="512" ovf:capacityAllocationUnits="byte * 2^20"/>')
ITEMS = (item(1, 3, "<rasd:VirtualQuantity>1</rasd:VirtualQuantity>")
         + item(1, 3, "<rasd:VirtualQuantity>4</rasd:VirtualQuantity>", "large")
         + item(2, 4, "<rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>"
                      "<rasd:VirtualQuantity>512</rasd:VirtualQuantity>")
         + item(3, 17, "<rasd:HostResource>ovf:/disk/system</rasd:HostResource>")
         + item(4, 17, "<rasd:HostResource>ovf:/disk/data</rasd:HostResource>", "large")
         + item(5, 15)  # an empty CD-ROM drive: not a disk
         + item(6, 10, "<rasd:Connection>VM Network</rasd:Connection>"))


def test_capacities_in_allocation_units_are_read_in_those_units() -> None:
    pkg = parse(descriptor(DISKS, ITEMS))
    assert {d.id: d.capacity_bytes for d in pkg.disks} == {"system": 4 << 30, "data": 512 << 20}


def test_a_disk_only_one_option_has_belongs_to_that_option_only() -> None:
    vm = parse(descriptor(DISKS, ITEMS)).systems[0]
    assert vm.hardware().disks == ["system"] == vm.hardware("small").disks  # the default: small
    large = vm.hardware("large")
    assert large.disks == ["system", "data"] and large.cpus == 4
    assert vm.hardware("small").cpus == 1 and large.memory_bytes == 512 << 20


def test_a_second_hard_disk_is_kept_beside_a_cd_rom_and_the_nic_keeps_its_network() -> None:
    items = (item(1, 3, "<rasd:VirtualQuantity>1</rasd:VirtualQuantity>")
             + item(3, 17, "<rasd:HostResource>ovf:/disk/system</rasd:HostResource>")
             + item(4, 17, "<rasd:HostResource>ovf:/disk/data</rasd:HostResource>")
             + item(5, 15) + item(6, 10, "<rasd:Connection>VM Network</rasd:Connection>"))
    vm = parse(descriptor(DISKS, items, options="")).systems[0]
    assert vm.disks == ["system", "data"] and vm.nics == ["VM Network"]


VBOX_MACHINE = '''<vbox:Machine xmlns:vbox="http://www.virtualbox.org/ovf/machine" ovf:required="false"
 version="1.19-linux" name="web"><ovf:Info>VirtualBox's own</ovf:Info><Hardware><Network>
 <Adapter slot="1" enabled="true" type="82540EM"><InternalNetwork name="backend"/></Adapter>
 <Adapter slot="0" enabled="true" type="82540EM"><NAT/></Adapter>
 <Adapter slot="2" enabled="false" type="82540EM"><HostOnlyInterface name="vboxnet0"/></Adapter>
 <Adapter slot="3" enabled="true" type="82540EM"><HostOnlyInterface name="vboxnet1"/></Adapter>
 </Network></Hardware></vbox:Machine>'''


def test_a_network_named_only_in_a_vendor_section_keeps_its_name() -> None:
    """VirtualBox writes the attachment type ("Internal", "HostOnly") as the network and the
    network's name only in vbox:Machine; Ganeti leaves rasd:Connection empty and names the
    network in its GanetiSection. Both names were lost (issue 33)."""
    nics = "".join(item(10 + n, 10, f"<rasd:Connection>{c}</rasd:Connection>")
                   for n, c in enumerate(["NAT", "Internal", "HostOnly"]))
    vbox = descriptor(DISKS, ITEMS.replace(item(6, 10, "<rasd:Connection>VM Network"
                                                       "</rasd:Connection>"), nics))
    vbox = vbox.replace("</VirtualHardwareSection>", "</VirtualHardwareSection>" + VBOX_MACHINE)
    assert parse(vbox).systems[0].nics == ["NAT", "backend", "vboxnet1"]
    ganeti = descriptor(DISKS, ITEMS.replace("VM Network", "")).replace(
        "<NetworkSection>", '<gnt:GanetiSection xmlns:gnt="http://ganeti"><gnt:Network>'
        '<gnt:Nic ovf:name="routed"><gnt:Mode>bridged</gnt:Mode></gnt:Nic></gnt:Network>'
        "</gnt:GanetiSection><NetworkSection>")
    assert parse(ganeti).systems[0].nics == ["routed"]
    # a standard name is kept even where a vendor section says something else
    named = descriptor(DISKS, ITEMS).replace("</VirtualHardwareSection>",
                                             "</VirtualHardwareSection>" + VBOX_MACHINE)
    assert parse(named).systems[0].nics == ["VM Network"]
