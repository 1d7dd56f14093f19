"""Volumes on servers: Nova's libvirt volume drivers, in miniature.

In OpenStack, attaching a volume is a request to Nova; Nova asks Cinder how the
hypervisor reaches the volume and Cinder answers with *connection info*, a
``driver_volume_type`` and its data::

    {"driver_volume_type": "file", "data": {"path": "/.../volume-ID.qcow2", "format": "qcow2"}}
    {"driver_volume_type": "nbd",  "data": {"host": "10.213.0.1", "port": 10809,
                                             "export": "volume-ID", "format": "raw"}}

Nova's libvirt driver turns that into a ``<disk>`` element and hot-plugs it into
the running guest (``virDomainAttachDeviceFlags`` with LIVE, and CONFIG so the
disk is still there after a stop and start).  The disk carries the volume's id as
its ``<serial>``: libvirt's target name (``vdb``) is only a request, because the
guest's kernel names disks itself, in the order it finds them, and the serial is
how the guest side (``/sys/block/*/serial``, udev's ``/dev/disk/by-id/virtio-ID``)
tells volumes apart.  These functions are the compute side of that exchange; the
block storage service calls them through :class:`~cloudlab.compute.server.Server`.
"""

import shlex
import string
import time
import xml.etree.ElementTree as ET
from xml.sax.saxutils import quoteattr

import libvirt

from ..errors import Conflict, InvalidInput, ResourceTimeout
from .server import ACTIVE, libvirt_errors

# virtio-blk carries at most 20 bytes of serial (VIRTIO_BLK_ID_BYTES); Nova gives the
# volume id and the guest sees its first 20 characters, as here
SERIAL_BYTES = 20
VISIBLE_TIMEOUT_S = 15.0
POLL_S = 0.02
DRIVER_TYPES = ("file", "nbd")


def guest_serial(serial):
    """The serial as the guest reads it: its first 20 characters."""
    return str(serial)[:SERIAL_BYTES]


def disk_xml(connection, target, serial):
    """The ``<disk>`` element (text) for a volume's connection info.

    Args:
        connection: ``{"driver_volume_type": ..., "data": {...}}`` (see the module docstring);
            ``data`` may hold ``shareable`` (a multi-attach volume) and ``read_only``.
        target: libvirt's target name, e.g. ``vdb``.
        serial: the volume id.
    Raises:
        InvalidInput: an unknown driver_volume_type or missing data.
    """
    kind = connection.get("driver_volume_type")
    data = connection.get("data") or {}
    fmt = data.get("format", "raw")
    try:
        if kind == "file":
            head = "<disk type='file' device='disk'>"
            source = f"<source file={quoteattr(str(data['path']))}/>"
        elif kind == "nbd":
            head = "<disk type='network' device='disk'>"
            source = (f"<source protocol='nbd' name={quoteattr(str(data['export']))}>"
                      f"<host name={quoteattr(str(data['host']))} port='{int(data['port'])}'/></source>")
        else:
            raise InvalidInput(f"cannot attach a volume of driver_volume_type {kind!r}",
                               fix=f"the compute side knows {', '.join(DRIVER_TYPES)}")
    except KeyError as exc:
        raise InvalidInput(f"connection info of type {kind} lacks {exc.args[0]!r}") from None
    # the same cache mode as the root disk: a guest's flush becomes an fdatasync of the file
    driver = f"<driver name='qemu' type={quoteattr(fmt)} discard='unmap'/>"
    flags = ("<shareable/>" if data.get("shareable") else "") + ("<readonly/>" if data.get("read_only") else "")
    return (f"{head}{driver}{source}<target dev={quoteattr(target)} bus='virtio'/>"
            f"<serial>{guest_serial(serial)}</serial>{flags}</disk>")


def _disks(xml):
    """``[(target, serial, element)]`` of a domain XML's disks."""
    found = []
    for disk in ET.fromstring(xml).iter("disk"):
        target = disk.find("target")
        serial = disk.find("serial")
        found.append((target.get("dev") if target is not None else None,
                      serial.text if serial is not None else None, disk))
    return found


def next_target(*xmls):
    """The first ``vdX`` name that no disk in any of ``xmls`` (live and persistent XML) uses."""
    used = {target for xml in xmls for target, _, _ in _disks(xml)}
    for letter in string.ascii_lowercase[1:]:
        if f"vd{letter}" not in used:
            return f"vd{letter}"
    raise Conflict("every virtio disk name vdb..vdz is taken on this server", fix="detach a volume first")


def attached_target(server, serial):
    """libvirt's target name of the disk with ``serial`` on ``server``, or None."""
    want = guest_serial(serial)
    for xml in _domain_xmls(server):
        for target, disk_serial, _ in _disks(xml):
            if disk_serial == want:
                return target
    return None


def _domain_xmls(server):
    """The live and the persistent XML of the server's domain (the persistent one alone when off)."""
    dom = server._dom
    with libvirt_errors(f"reading the disks of server {server.name}"):
        xmls = [dom.XMLDesc(0)]
        if dom.isActive() and dom.isPersistent():
            xmls.append(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    return xmls


def _flags(server):
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    if server._dom.isActive():
        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
    return flags


# a shell loop for the guest: the names of block devices whose serial is $1
_FIND = ('for d in /sys/block/*; do [ "$(cat "$d/serial" 2>/dev/null)" = {serial} ] && '
         'echo "${{d##*/}}"; done; true')


def guest_device(server, serial):
    """The name the guest's kernel gave the disk with ``serial`` (``vdb``), read inside the guest.

    None when the server is not ACTIVE or the guest has no such disk.
    """
    if server.status != ACTIVE:
        return None
    out = server.run(_FIND.format(serial=shlex.quote(guest_serial(serial))), timeout=10).stdout.split()
    return out[0] if out else None


def _wait_in_guest(server, serial, present, timeout):
    """Poll the guest until the disk with ``serial`` is (or is no longer) there; returns its name."""
    deadline = time.monotonic() + timeout
    while True:
        name = guest_device(server, serial)
        if bool(name) == present:
            return name
        if time.monotonic() >= deadline:
            return name
        time.sleep(POLL_S)


def attach(server, connection, serial, timeout=VISIBLE_TIMEOUT_S):
    """Hot-plug a volume into ``server`` (or add it to a stopped one's definition).

    Returns ``(target, device)``: the name libvirt was asked for and the name the
    guest gave the disk (None while the server is not ACTIVE).

    Raises:
        Conflict: the volume is already on this server, or the server has no free slot.
        ResourceTimeout: the guest did not see the disk in time (it is detached again).
    """
    if attached_target(server, serial):
        raise Conflict(f"a disk with serial {guest_serial(serial)} is already on server {server.name}")
    with server._lock:
        target = next_target(*_domain_xmls(server))
        xml = disk_xml(connection, target, serial)
        try:
            server._dom.attachDeviceFlags(xml, _flags(server))
        except libvirt.libvirtError as exc:
            message = exc.get_error_message() or str(exc)
            if "PCI slots" in message or "PCI address" in message:
                raise Conflict(f"server {server.name} has no free PCIe slot for another disk ({message})",
                               fix="detach a volume first: a q35 guest hot-plugs only into the root ports "
                                   "it booted with") from None
            with libvirt_errors(f"attaching a volume to server {server.name}"):
                raise
    if server.status != ACTIVE:
        return target, None
    device = _wait_in_guest(server, serial, True, timeout)
    if device is None:
        detach(server, serial, timeout=timeout)
        raise ResourceTimeout(f"server {server.name} did not see the attached disk within {timeout:g} s",
                              fix="is the guest's kernel able to hot-plug PCI devices? the disk was detached again")
    return target, device


def detach(server, serial, timeout=VISIBLE_TIMEOUT_S):
    """Hot-unplug the disk with ``serial`` from ``server`` and wait until the guest let it go.

    Raises:
        Conflict: no such disk on the server.
        ResourceTimeout: the guest did not release it in time (it stays attached).
    """
    want = guest_serial(serial)
    with server._lock:
        found = None
        for xml in _domain_xmls(server):
            for _, disk_serial, element in _disks(xml):
                if disk_serial == want:
                    found = ET.tostring(element, encoding="unicode")
                    break
            if found:
                break
        if found is None:
            raise Conflict(f"server {server.name} has no disk with serial {want}")
        with libvirt_errors(f"detaching a volume from server {server.name}"):
            server._dom.detachDeviceFlags(found, _flags(server))
        # libvirt returns once QEMU was asked; the guest releases the disk (ACPI eject) afterwards
        deadline = time.monotonic() + timeout
        while attached_target(server, serial):
            if time.monotonic() >= deadline:
                raise ResourceTimeout(f"server {server.name} did not release the disk within {timeout:g} s",
                                      fix="unmount it inside the guest and detach again")
            time.sleep(POLL_S)


def extend(server, serial, size_bytes):
    """Tell the hypervisor a volume grew to ``size_bytes`` (``virDomainBlockResize``); the guest sees it at once.

    QEMU resizes a file it has open itself (a qcow2 volume in use can be resized
    by no one else) and the virtio-blk device announces the new capacity.

    Raises:
        Conflict: the server is not running or has no such disk.
    """
    target = attached_target(server, serial)
    if target is None:
        raise Conflict(f"server {server.name} has no disk with serial {guest_serial(serial)}")
    if not server._dom.isActive():
        return
    with libvirt_errors(f"resizing a volume of server {server.name}"):
        server._dom.blockResize(target, int(size_bytes), libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
