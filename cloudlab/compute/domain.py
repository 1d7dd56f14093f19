"""libvirt domain XML for a server, built from small declarative pieces.

libvirt describes a virtual machine (a *domain*) as one XML document: how much
memory and how many vCPUs, what the machine boots (here: a kernel, an initramfs
and a command line given straight to QEMU, no bootloader), and its devices.
As in virt-manager's virtinst, each XML element has one small class here that
knows only how to write itself; :func:`server_domain` assembles them.

Two *device profiles* give the same guest two kinds of hardware, so labs can
measure them side by side:

``virtio`` (para-virtualisation, 반가상화)
    q35 machine, virtio-blk disk (``vda``), virtio-net NIC: the guest knows it is
    virtual and talks to QEMU through shared-memory queues.
``emulated`` (full virtualisation, 전가상화)
    i440fx (``pc``) machine, IDE disk, Intel e1000 NIC: QEMU imitates real
    hardware register by register and the guest needs no special driver.

In both profiles the agent channel stays a virtio-serial port: it is how
cloudlab talks to the guest, not part of what is being compared.
"""

import dataclasses
import xml.etree.ElementTree as ET

from ..errors import InvalidInput

# Namespace of cloudlab's own data inside a domain's <metadata> (flavor, image, ...).
METADATA_NS = "https://cloudlab.dev/xmlns/server/1"
ET.register_namespace("cloudlab", METADATA_NS)


@dataclasses.dataclass(frozen=True)
class DeviceProfile:
    """What hardware a guest sees: machine type, disk bus and NIC model."""

    name: str
    machine: str
    disk_bus: str
    disk_target: str
    nic_model: str
    description: str


PROFILES = {
    "virtio": DeviceProfile("virtio", "q35", "virtio", "vda", "virtio",
                            "para-virtualised: virtio-blk disk, virtio-net NIC, q35 machine"),
    "emulated": DeviceProfile("emulated", "pc", "ide", "hda", "e1000",
                              "fully emulated: IDE disk, e1000 NIC, i440fx (pc) machine"),
}


def get_profile(name):
    """The :class:`DeviceProfile` called ``name``.

    Raises:
        InvalidInput: no such profile; the message lists the valid ones.
    """
    if isinstance(name, DeviceProfile):
        return name
    try:
        return PROFILES[name]
    except (KeyError, TypeError):
        raise InvalidInput(f"no device profile {name!r}",
                           fix=f"use one of: {', '.join(PROFILES)}") from None


def _sub(parent, tag, text=None, **attrs):
    """Append ``<tag attrs>text</tag>`` to ``parent``; None-valued attributes are left out."""
    el = ET.SubElement(parent, tag, {k: str(v) for k, v in attrs.items() if v is not None})
    if text is not None:
        el.text = str(text)
    return el


class Element:
    """One libvirt XML element; subclasses write themselves in :meth:`build`."""

    def build(self, parent):
        """Append this element to ``parent`` (an ``ET.Element``) and return it."""
        raise NotImplementedError


@dataclasses.dataclass
class OS(Element):
    """``<os>``: machine type and direct kernel boot (kernel, initrd, command line)."""

    machine: str
    kernel: str
    initrd: str
    cmdline: str
    arch: str = "x86_64"

    def build(self, parent):
        """Append ``<os>`` to ``parent``."""
        el = _sub(parent, "os")
        _sub(el, "type", "hvm", arch=self.arch, machine=self.machine)
        _sub(el, "kernel", self.kernel)
        _sub(el, "initrd", self.initrd)
        _sub(el, "cmdline", self.cmdline)
        return el


@dataclasses.dataclass
class CPU(Element):
    """``<cpu>``: ``host-passthrough`` (KVM), or a named ``custom`` model such as ``qemu64``."""

    mode: str
    model: str = None

    def build(self, parent):
        """Append ``<cpu>`` to ``parent``."""
        el = _sub(parent, "cpu", mode=self.mode, check="none" if self.mode != "host-passthrough" else None)
        if self.model:
            _sub(el, "model", self.model, fallback="forbid")
        return el


@dataclasses.dataclass
class Disk(Element):
    """``<disk>``: a disk file (the server's qcow2 overlay) on a bus."""

    source: str
    target: str
    bus: str
    format: str = "qcow2"

    def build(self, parent):
        """Append ``<disk>`` to ``parent``."""
        el = _sub(parent, "disk", type="file", device="disk")
        # cache=unsafe would be faster, but data written in a guest must survive stop/start
        _sub(el, "driver", name="qemu", type=self.format, discard="unmap")
        _sub(el, "source", file=self.source)
        _sub(el, "target", dev=self.target, bus=self.bus)
        return el


@dataclasses.dataclass
class Interface(Element):
    """``<interface>``: a NIC plugged into a libvirt network."""

    network: str
    model: str
    mac: str = None

    def build(self, parent):
        """Append ``<interface>`` to ``parent``."""
        el = _sub(parent, "interface", type="network")
        if self.mac:
            _sub(el, "mac", address=self.mac)
        _sub(el, "source", network=self.network)
        _sub(el, "model", type=self.model)
        return el


@dataclasses.dataclass
class SerialLog(Element):
    """``<serial type='file'>``: the guest's ttyS0 written to a file (the console log).

    ``append='off'``: each start of the domain begins a fresh log, so the ready
    marker of an earlier boot is never mistaken for the current one.
    """

    path: str

    def build(self, parent):
        """Append ``<serial>`` to ``parent``."""
        el = _sub(parent, "serial", type="file")
        _sub(el, "source", path=self.path, append="off")
        _sub(el, "target", port=0)
        return el


@dataclasses.dataclass
class RawElement(Element):
    """An element given as XML text by another module (the agent's ``<channel>``)."""

    xml: str

    def build(self, parent):
        """Parse the text and append it to ``parent``."""
        el = ET.fromstring(self.xml)
        parent.append(el)
        return el


@dataclasses.dataclass
class PCIeRootPorts(Element):
    """``<controller model='pcie-root-port'>`` x ``count``: the slots a q35 guest can hot-plug into.

    On q35 every PCIe device sits behind a root port and ports cannot be added to
    a running machine, so a volume can be attached live only where a free port
    was there from the start.  libvirt gives the devices of the XML their ports
    and leaves one spare; Nova's ``[libvirt] num_pcie_ports`` asks for more, and
    so does this (the i440fx ``pc`` machine hot-plugs into its plain PCI bus).
    """

    count: int

    def build(self, parent):
        """Append the PCIe root (index 0) and ``count`` root ports to ``parent``; returns the root."""
        # libvirt numbers PCI controllers; index 0 must be the root when others are given
        root = _sub(parent, "controller", type="pci", index=0, model="pcie-root")
        for index in range(1, self.count + 1):
            _sub(parent, "controller", type="pci", index=index, model="pcie-root-port")
        return root


@dataclasses.dataclass
class NoDevice(Element):
    """A device libvirt would add by default, switched off (USB controller, balloon, video)."""

    tag: str
    attrs: dict

    def build(self, parent):
        """Append the disabling element to ``parent``."""
        if self.tag == "video":
            el = _sub(parent, "video")
            _sub(el, "model", type="none")
            return el
        return _sub(parent, self.tag, **self.attrs)


@dataclasses.dataclass
class Metadata(Element):
    """``<metadata>`` with one ``<cloudlab:server>`` element holding string attributes."""

    values: dict

    def build(self, parent):
        """Append ``<metadata>`` to ``parent``."""
        el = _sub(parent, "metadata")
        _sub(el, f"{{{METADATA_NS}}}server", **self.values)
        return el


@dataclasses.dataclass
class Domain(Element):
    """``<domain>``: the whole virtual machine."""

    name: str
    type: str
    memory_mib: int
    vcpus: int
    os: OS
    devices: list
    cpu: CPU = None
    uuid: str = None
    metadata: Metadata = None
    features: tuple = ("acpi",)

    def build(self, parent=None):
        """The ``<domain>`` element (appended to ``parent`` when given)."""
        el = ET.Element("domain", type=self.type) if parent is None else _sub(parent, "domain", type=self.type)
        _sub(el, "name", self.name)
        if self.uuid:
            _sub(el, "uuid", self.uuid)
        if self.metadata:
            self.metadata.build(el)
        _sub(el, "memory", self.memory_mib, unit="MiB")
        _sub(el, "currentMemory", self.memory_mib, unit="MiB")
        _sub(el, "vcpu", self.vcpus)
        self.os.build(el)
        # ACPI: the power button is how a graceful shutdown (stop) reaches the guest
        feats = _sub(el, "features")
        for feature in self.features:
            _sub(feats, feature)
        if self.cpu:
            self.cpu.build(el)
        _sub(el, "clock", offset="utc")
        _sub(el, "on_poweroff", "destroy")
        _sub(el, "on_reboot", "restart")
        _sub(el, "on_crash", "destroy")
        devs = _sub(el, "devices")
        for device in self.devices:
            device.build(devs)
        return el

    def to_xml(self):
        """The domain as an indented XML string (what ``virsh dumpxml`` would show)."""
        el = self.build()
        ET.indent(el)
        return ET.tostring(el, encoding="unicode") + "\n"


# root ports of a q35 server: its own devices (disk, NIC, agent channel) take three,
# the rest are free for volumes attached while it runs (see PCIeRootPorts)
PCIE_ROOT_PORTS = 8


def cpu_for(domain_type):
    """The CPU model for a domain type: the host's own CPU under KVM, ``qemu64`` under TCG.

    Under emulation, QEMU's default model boots about 0.3 s sooner than ``maximum``
    (measured: 2.2 s against 2.5 s to the ready marker): the kernel has fewer
    features (AVX-512, AMX state...) to set up in software.  The raw QEMU boot of
    ``cloudlab.host.qemu`` uses the same model, so the two stay comparable.
    """
    if domain_type == "kvm":
        return CPU("host-passthrough")
    if domain_type == "qemu":
        return CPU("custom", model="qemu64")
    return None   # other drivers (libvirt's test driver) choose for themselves


def server_domain(name, *, domain_type, vcpus, ram_mib, profile, kernel, initrd, cmdline,
                  disk, disk_format, console_log, channel_xml, network=None, uuid=None,
                  metadata=None):
    """The :class:`Domain` of one server, ready for ``to_xml()``.

    Args:
        name: libvirt domain name (already carrying the lab prefix).
        domain_type: ``kvm``, ``qemu`` (TCG emulation) or ``test``.
        vcpus, ram_mib: the flavor's size.
        profile: a device profile name (``virtio`` or ``emulated``) or :class:`DeviceProfile`.
        kernel, initrd, cmdline: direct kernel boot.
        disk, disk_format: the server's overlay disk and its format.
        console_log: file the serial console is written to.
        channel_xml: the agent's ``<channel>`` element as text.
        network: libvirt network for the NIC, or None for no NIC.
        uuid: keep a domain's identity when redefining it.
        metadata: dict of strings stored under ``<metadata>``.
    Raises:
        InvalidInput: unknown profile, or sizes that are not positive integers.
    """
    profile = get_profile(profile)
    for label, value in (("vcpus", vcpus), ("ram_mib", ram_mib)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidInput(f"{label}={value!r} is not a positive whole number", fix=f"give {label} >= 1")
    devices = [Disk(str(disk), profile.disk_target, profile.disk_bus, disk_format)]
    if network:
        devices.append(Interface(network, profile.nic_model))
    devices += [
        SerialLog(str(console_log)),
        RawElement(channel_xml),
    ]
    if profile.machine == "q35":
        devices.append(PCIeRootPorts(PCIE_ROOT_PORTS))
    devices += [
        # nothing the guest does not use: each device costs probing time under emulation
        NoDevice("controller", {"type": "usb", "model": "none"}),
        NoDevice("video", {}),
        NoDevice("memballoon", {"model": "none"}),
    ]
    return Domain(
        name=name, type=domain_type, memory_mib=ram_mib, vcpus=vcpus,
        os=OS(profile.machine, str(kernel), str(initrd), cmdline),
        devices=devices, cpu=cpu_for(domain_type), uuid=uuid,
        metadata=Metadata(metadata) if metadata else None)


def read_metadata(xml):
    """The ``<cloudlab:server>`` attributes of a domain's XML as a dict ({} when absent)."""
    root = ET.fromstring(xml)
    el = root.find(f"metadata/{{{METADATA_NS}}}server")
    return dict(el.attrib) if el is not None else {}


def resized_xml(xml, vcpus, ram_mib, metadata=None):
    """A domain's XML with new vCPU and memory sizes (and updated metadata), for redefining it."""
    root = ET.fromstring(xml)
    for tag in ("memory", "currentMemory"):
        el = root.find(tag)
        if el is None:
            el = _sub(root, tag)
        el.text, el.attrib = str(ram_mib), {"unit": "MiB"}
    vcpu = root.find("vcpu")
    vcpu.text = str(vcpus)
    vcpu.attrib.pop("current", None)
    if metadata:
        meta = root.find(f"metadata/{{{METADATA_NS}}}server")
        if meta is not None:
            meta.attrib.update({k: str(v) for k, v in metadata.items()})
    return ET.tostring(root, encoding="unicode")
