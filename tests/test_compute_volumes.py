"""The compute side of attaching volumes: connection info to libvirt <disk> XML (no hypervisor needed)."""

import xml.etree.ElementTree as ET

import pytest

import cloudlab as cl
from cloudlab.compute import domain, volumes

VOLUME_ID = "0f8e2b6c-1d2a-4c3b-9e8f-7a6b5c4d3e2f"


def test_file_connection_becomes_a_file_disk_with_the_volume_id_as_serial():
    xml = volumes.disk_xml({"driver_volume_type": "file",
                            "data": {"path": "/state/lab/cloudlab-lab-volume-x.qcow2", "format": "qcow2"}},
                           "vdb", VOLUME_ID)
    disk = ET.fromstring(xml)
    assert disk.get("type") == "file"
    assert disk.find("source").get("file") == "/state/lab/cloudlab-lab-volume-x.qcow2"
    assert disk.find("driver").get("type") == "qcow2"
    assert disk.find("target").attrib == {"dev": "vdb", "bus": "virtio"}
    # virtio-blk carries 20 bytes of serial: what the guest reads in /sys/block/*/serial
    assert disk.find("serial").text == VOLUME_ID[:20] == volumes.guest_serial(VOLUME_ID)
    assert disk.find("shareable") is None and disk.find("readonly") is None


def test_nbd_connection_becomes_a_network_disk():
    xml = volumes.disk_xml({"driver_volume_type": "nbd",
                            "data": {"host": "10.213.0.1", "port": 10809, "export": "volume-x",
                                     "format": "raw", "shareable": True}}, "vdc", VOLUME_ID)
    disk = ET.fromstring(xml)
    assert disk.get("type") == "network"
    source = disk.find("source")
    assert (source.get("protocol"), source.get("name")) == ("nbd", "volume-x")
    assert source.find("host").attrib == {"name": "10.213.0.1", "port": "10809"}
    assert disk.find("shareable") is not None       # a multi-attach volume


def test_unknown_or_incomplete_connection_info_is_refused():
    with pytest.raises(cl.InvalidInput, match="iscsi"):
        volumes.disk_xml({"driver_volume_type": "iscsi", "data": {}}, "vdb", VOLUME_ID)
    with pytest.raises(cl.InvalidInput, match="path"):
        volumes.disk_xml({"driver_volume_type": "file", "data": {}}, "vdb", VOLUME_ID)


def test_next_target_skips_names_in_live_and_persistent_xml():
    live = "<domain><devices><disk><target dev='vda'/></disk><disk><target dev='vdb'/></disk></devices></domain>"
    persistent = "<domain><devices><disk><target dev='vda'/><serial>x</serial></disk>" \
                 "<disk><target dev='vdc'/></disk></devices></domain>"
    assert volumes.next_target(live) == "vdc"
    assert volumes.next_target(live, persistent) == "vdd"
    full = "<domain><devices>" + "".join(f"<disk><target dev='vd{c}'/></disk>"
                                         for c in "abcdefghijklmnopqrstuvwxyz") + "</devices></domain>"
    with pytest.raises(cl.Conflict):
        volumes.next_target(full)


def test_q35_servers_get_free_root_ports_for_hot_plug_and_pc_servers_need_none():
    def build(profile):
        return ET.fromstring(domain.server_domain(
            "cloudlab-lab-web1", domain_type="qemu", vcpus=1, ram_mib=128, profile=profile, kernel="k",
            initrd="i", cmdline="c", disk="d.qcow2", disk_format="qcow2", console_log="c.log",
            channel_xml="<channel type='unix'/>", network="net").to_xml())

    ports = [c for c in build("virtio").iter("controller") if c.get("model") == "pcie-root-port"]
    assert len(ports) == domain.PCIE_ROOT_PORTS > 3       # the server's own devices take three
    assert [c.get("model") for c in build("virtio").iter("controller") if c.get("index") == "0"] == ["pcie-root"]
    assert not [c for c in build("emulated").iter("controller") if c.get("type") == "pci"]
