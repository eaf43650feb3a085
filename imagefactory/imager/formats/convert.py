"""Raw disk -> qcow2, vhd (fixed) and the ova (streamOptimized vmdk + OVF + SHA256 manifest).

qemu-img reads the raw by block status, so holes are never read. The random parts qemu-img writes
(the VHD footer's time and UUID, the vmdk descriptor's CID) are set from the epoch and a derived GUID.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import tarfile
from pathlib import Path

from imagefactory import tools
from imagefactory.errors import BuildError
from imagefactory.imager.disk.gpt import DISK_LABEL, guid_from_label
from imagefactory.platforms import DiskFormat
from imagefactory.units import MIB

VHD_FOOTER = 512
# VHD timestamps count seconds from 2000-01-01T00:00:00Z.
VHD_EPOCH = 946684800
# qemu-img prints a random CID with %x: one to eight digits.
_CID = re.compile(rb"\nCID=[0-9a-f]{1,8}\n")


def convert(raw: Path, out: Path, qemu_format: str, options: str, *, epoch: int) -> None:
    """qemu-img convert raw -> qcow2/vpc/vmdk with the profile's -o options."""
    argv: list[str | os.PathLike[str]] = ["qemu-img", "convert", "-f", "raw", "-O", qemu_format]
    if options:
        argv += ["-o", options]
    tools.run([*argv, raw, out])
    if qemu_format == DiskFormat.VHD.qemu_format:
        _fix_vhd_footer(out, epoch)


def _fix_vhd_footer(path: Path, epoch: int) -> None:
    with path.open("r+b") as f:
        f.seek(-VHD_FOOTER, os.SEEK_END)
        footer = bytearray(f.read(VHD_FOOTER))
        if footer[:8] != b"conectix":
            raise BuildError(f"{path}: no VHD footer")
        struct.pack_into(">I", footer, 24, max(0, epoch - VHD_EPOCH))
        footer[68:84] = guid_from_label(DISK_LABEL).bytes
        footer[64:68] = b"\0\0\0\0"
        struct.pack_into(">I", footer, 64, ~sum(footer) & 0xFFFFFFFF)
        f.seek(-VHD_FOOTER, os.SEEK_END)
        f.write(footer)


def _fix_vmdk_cid(path: Path) -> None:
    """Set the descriptor's CID; the text may grow by a few bytes into its zero-padded area."""
    cid = guid_from_label(DISK_LABEL).hex[:8].encode()
    with path.open("r+b") as f:
        header = f.read(512)
        if header[:4] != b"KDMV":
            raise BuildError(f"{path}: not a sparse vmdk")
        offset, sectors = struct.unpack_from("<QQ", header, 28)
        f.seek(offset * 512)
        area = f.read(sectors * 512)
        text = area.split(b"\0", 1)[0]
        fixed, count = _CID.subn(b"\nCID=" + cid + b"\n", text, count=1)
        if count != 1 or len(fixed) >= len(area):
            raise BuildError(f"{path}: no CID in the vmdk descriptor")
        f.seek(offset * 512)
        f.write(fixed.ljust(len(area), b"\0"))


_OVF = """\
<?xml version="1.0" encoding="UTF-8"?>
<Envelope vmw:buildId="build-000000" xmlns="http://schemas.dmtf.org/ovf/envelope/1" \
xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" \
xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" \
xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" \
xmlns:vmw="http://www.vmware.com/schema/ovf" \
xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href="disk.vmdk" ovf:id="file1" ovf:size="{vmdk_size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="{capacity_mib}" ovf:capacityAllocationUnits="byte * 2^20" \
ovf:diskId="vmdisk1" ovf:fileRef="file1" \
ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized" \
ovf:populatedSize="0"/>
  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="VM Network">
      <Description>The VM Network network</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="talos">
    <Info>A virtual machine</Info>
    <Name>talos</Name>
    <OperatingSystemSection ovf:id="101" vmw:osType="other3xLinux64Guest">
      <Info>The kind of installed guest operating system</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>talos</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-15</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of Virtual CPUs</rasd:Description>
        <rasd:ElementName>2 virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>2</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>2048MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>2048</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI Controller</rasd:Description>
        <rasd:ElementName>SCSI controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>7</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>VM Network</rasd:Connection>
        <rasd:Description>VmxNet3 ethernet adapter on &quot;VM Network&quot;</rasd:Description>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>
    </VirtualHardwareSection>
    <ProductSection ovf:required="false">
      <Info>Talos Linux</Info>
      <Product>Talos Linux</Product>
      <Property ovf:key="talos.config" ovf:type="string" ovf:userConfigurable="true" ovf:value="">
        <Label>Talos config data</Label>
        <Description>Inline Talos config</Description>
      </Property>
    </ProductSection>
  </VirtualSystem>
</Envelope>
"""


def ovf(vmdk_size: int, disk_size: int) -> str:
    return _OVF.format(vmdk_size=vmdk_size, capacity_mib=-(-disk_size // MIB))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def build_ova(raw: Path, out: Path, *, epoch: int) -> None:
    """disk.ovf, disk.mf, disk.vmdk in one tar, in that order (upstream's `tar -cvf`)."""
    work = out.parent
    vmdk = work / "disk.vmdk"
    convert(raw, vmdk, "vmdk", "subformat=streamOptimized", epoch=epoch)
    _fix_vmdk_cid(vmdk)
    descriptor = work / "disk.ovf"
    descriptor.write_text(ovf(vmdk.stat().st_size, raw.stat().st_size))
    manifest = work / "disk.mf"
    manifest.write_text(
        f"SHA256(disk.vmdk)= {_sha256(vmdk)}\nSHA256(disk.ovf)= {_sha256(descriptor)}\n"
    )
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
        for path in (descriptor, manifest, vmdk):
            info = tar.gettarinfo(path, arcname=path.name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
            info.mode = 0o644
            with path.open("rb") as f:
                tar.addfile(info, f)
    for path in (descriptor, manifest, vmdk):
        path.unlink()
