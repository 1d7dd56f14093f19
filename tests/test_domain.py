"""Domain XML of every default flavor x device profile, compared with golden files.

The golden files in tests/golden/ are what libvirt is given for each server
shape.  After an intended change to cloudlab/compute/domain.py, regenerate them and
review the diff before committing:

    CLOUDLAB_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/test_domain.py -o addopts=""
    git diff tests/golden/
"""

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cloudlab.compute import domain
from cloudlab.image.agent import AGENT_CHANNEL, channel_xml
from cloudlab.errors import InvalidInput
from cloudlab.compute.flavor import DEFAULT_FLAVORS, Flavor

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("CLOUDLAB_REGEN_GOLDEN") == "1"
STATE = "/var/lib/cloudlab/lab/servers"


def build(flavor, profile, domain_type="qemu", network="cloudlab-net", **extra):
    """The domain of server 'web1' with fixed paths, as compute would build it."""
    name = "cloudlab-lab-web1"
    return domain.server_domain(
        name, domain_type=domain_type, vcpus=flavor.vcpus, ram_mib=flavor.ram_mib, profile=profile,
        kernel="/var/cache/cloudlab/images/busybox/vmlinux",
        initrd="/var/cache/cloudlab/images/busybox/initrd.img",
        cmdline="console=ttyS0 quiet cloudlab.hostname=web1",
        disk=f"{STATE}/{name}.qcow2", disk_format="qcow2", console_log=f"{STATE}/{name}.log",
        agent_socket=f"{STATE}/{name}.sock", network=network,
        uuid="6c3b1f0e-2c55-4a4e-9a51-3f0d6f2e8b10",
        metadata={"lab": "lab", "name": "web1", "flavor": flavor.name}, **extra)


@pytest.mark.parametrize("profile", sorted(domain.PROFILES))
@pytest.mark.parametrize("flavor", DEFAULT_FLAVORS, ids=lambda f: f.name)
def test_golden(flavor, profile):
    xml = build(flavor, profile).to_xml()
    path = GOLDEN / f"{flavor.name}-{profile}.xml"
    if REGEN:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(xml)
    assert path.exists(), f"missing golden file {path}; regenerate (see this module's docstring)"
    assert xml == path.read_text()


@pytest.mark.parametrize("profile", sorted(domain.PROFILES))
def test_golden_under_kvm(profile):
    # the accelerator is the domain type; under KVM the emulated profile also hides kvm-clock
    xml = build(DEFAULT_FLAVORS[0], profile, domain_type="kvm").to_xml()
    path = GOLDEN / f"m1.tiny-{profile}-kvm.xml"
    if REGEN:
        path.write_text(xml)
    assert path.exists(), f"missing golden file {path}; regenerate (see this module's docstring)"
    assert xml == path.read_text()


def test_emulated_profile_has_no_virtio_device_at_all():
    emulated = build(DEFAULT_FLAVORS[0], "emulated", domain_type="kvm").to_xml()
    root = ET.fromstring(emulated)
    assert "virtio" not in ET.tostring(root.find("devices"), encoding="unicode")
    # the agent is on the second emulated UART, and the guest is told so
    serials = root.findall("devices/serial")
    assert [s.find("target").get("port") for s in serials] == ["0", "1"]
    assert serials[1].get("type") == "unix" and serials[1].find("source").get("path").endswith(".sock")
    assert "cloudlab.agent=ttyS1" in root.find("os/cmdline").text.split()
    assert root.find("clock/timer").attrib == {"name": "kvmclock", "present": "no"}
    virtio = ET.fromstring(build(DEFAULT_FLAVORS[0], "virtio", domain_type="kvm").to_xml())
    assert virtio.find("clock/timer") is None            # kvm-clock stays on: the paravirtual clock
    assert virtio.find("devices/rng").get("model") == "virtio"
    assert virtio.find("devices/rng/backend").text == "/dev/urandom"
    assert "cloudlab.agent" not in virtio.find("os/cmdline").text
    # under TCG there is no kvm-clock to hide
    assert ET.fromstring(build(DEFAULT_FLAVORS[0], "emulated").to_xml()).find("clock/timer") is None


def test_agent_xml_follows_the_profile():
    assert "<channel" in domain.agent_xml("virtio", "/s.sock")
    assert domain.agent_xml("emulated", "/s.sock").startswith("<serial type='unix'>")
    with pytest.raises(InvalidInput):
        domain.server_domain("n", domain_type="qemu", vcpus=1, ram_mib=128, profile="virtio", kernel="k",
                             initrd="i", cmdline="", disk="d", disk_format="qcow2", console_log="l")


@pytest.mark.parametrize("flavor", DEFAULT_FLAVORS, ids=lambda f: f.name)
def test_profiles_differ_in_devices_only(flavor):
    virtio = ET.fromstring(build(flavor, "virtio").to_xml())
    emulated = ET.fromstring(build(flavor, "emulated").to_xml())
    assert virtio.find("os/type").get("machine") == "q35"
    assert emulated.find("os/type").get("machine") == "pc"
    assert virtio.find("devices/disk/target").attrib == {"dev": "vda", "bus": "virtio"}
    assert emulated.find("devices/disk/target").attrib == {"dev": "hda", "bus": "ide"}
    assert virtio.find("devices/interface/model").get("type") == "virtio"
    assert emulated.find("devices/interface/model").get("type") == "e1000"
    for root in (virtio, emulated):
        assert root.find("memory").text == str(flavor.ram_mib)
        assert root.find("memory").get("unit") == "MiB"
        assert root.find("vcpu").text == str(flavor.vcpus)
        assert root.find("os/kernel").text == virtio.find("os/kernel").text     # the same guest
    # the agent: a virtio-serial channel, or (no virtio at all) the second UART
    assert virtio.find("devices/channel/target").get("name") == AGENT_CHANNEL
    assert emulated.find("devices/channel") is None and len(emulated.findall("devices/serial")) == 2


def test_direct_kernel_boot_and_console_file():
    root = ET.fromstring(build(DEFAULT_FLAVORS[0], "virtio").to_xml())
    assert root.find("os/kernel").text.endswith("/vmlinux")
    assert root.find("os/initrd").text.endswith("/initrd.img")
    assert "console=ttyS0" in root.find("os/cmdline").text
    serial = root.find("devices/serial")
    assert serial.get("type") == "file"
    assert serial.find("source").get("path").endswith("cloudlab-lab-web1.log")
    assert serial.find("source").get("append") == "off"
    assert root.find("features/acpi") is not None


def test_cpu_follows_domain_type():
    flavor = DEFAULT_FLAVORS[0]
    assert ET.fromstring(build(flavor, "virtio", "kvm").to_xml()).find("cpu").get("mode") == "host-passthrough"
    emulated = ET.fromstring(build(flavor, "virtio", "qemu").to_xml()).find("cpu")
    assert emulated.get("mode") == "custom" and emulated.find("model").text == "qemu64"
    assert ET.fromstring(build(flavor, "virtio", "test").to_xml()).find("cpu") is None


def test_no_network_means_no_interface():
    root = ET.fromstring(build(DEFAULT_FLAVORS[0], "virtio", network=None).to_xml())
    assert root.find("devices/interface") is None
    assert root.find("devices/disk") is not None


def test_metadata_round_trip():
    xml = build(DEFAULT_FLAVORS[1], "virtio").to_xml()
    assert domain.read_metadata(xml) == {"lab": "lab", "name": "web1", "flavor": "m1.small"}
    assert domain.read_metadata("<domain type='qemu'><name>x</name></domain>") == {}


def test_resized_xml_changes_size_and_metadata_only():
    xml = build(DEFAULT_FLAVORS[0], "virtio").to_xml()
    bigger = domain.resized_xml(xml, 2, 512, metadata={"flavor": "m1.medium"})
    before, after = ET.fromstring(xml), ET.fromstring(bigger)
    assert after.find("vcpu").text == "2"
    assert after.find("memory").text == "512" and after.find("currentMemory").text == "512"
    assert domain.read_metadata(bigger)["flavor"] == "m1.medium"
    assert after.find("uuid").text == before.find("uuid").text
    assert ET.tostring(after.find("devices")) == ET.tostring(before.find("devices"))


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(InvalidInput) as err:
        build(DEFAULT_FLAVORS[0], "paravirt")
    assert "virtio" in err.value.fix and "emulated" in err.value.fix


@pytest.mark.parametrize("vcpus, ram_mib", [(0, 128), (1, 0), (1, "128"), (True, 128)])
def test_bad_sizes_rejected(vcpus, ram_mib):
    with pytest.raises(InvalidInput):
        domain.server_domain("n", domain_type="qemu", vcpus=vcpus, ram_mib=ram_mib, profile="virtio",
                             kernel="k", initrd="i", cmdline="", disk="d", disk_format="qcow2",
                             console_log="l", channel_xml=channel_xml("/s.sock"))


@pytest.mark.parametrize("kwargs", [
    {"name": "m1 tiny", "vcpus": 1, "ram_mib": 128, "disk_gib": 1},
    {"name": "m1.x", "vcpus": 0, "ram_mib": 128, "disk_gib": 1},
    {"name": "m1.x", "vcpus": 1, "ram_mib": -5, "disk_gib": 1},
    {"name": "m1.x", "vcpus": 1, "ram_mib": 128, "disk_gib": 1.5},
    {"name": "m1.x", "vcpus": True, "ram_mib": 128, "disk_gib": 1},
])
def test_bad_flavors_rejected(kwargs):
    with pytest.raises(InvalidInput):
        Flavor(**kwargs)


def test_default_flavors_fit_ten_servers_on_a_small_host():
    # the boot benchmark runs 10 servers at once on a 2-core, 24 GiB machine
    tiny = DEFAULT_FLAVORS[0]
    assert tiny.vcpus == 1 and 10 * tiny.ram_mib <= 2048
    assert [f.name for f in DEFAULT_FLAVORS] == ["m1.tiny", "m1.small", "m1.medium"]


def test_device_lines_show_what_differs_between_profiles():
    virtio = domain.device_lines(build(DEFAULT_FLAVORS[0], "virtio").to_xml())
    emulated = domain.device_lines(build(DEFAULT_FLAVORS[0], "emulated", domain_type="kvm").to_xml())
    assert virtio[:3] == ["domain type qemu (TCG: emulated CPU)", "machine q35", "disk vda on bus virtio"]
    assert "NIC model virtio" in virtio and "RNG virtio" in virtio
    assert f"channel virtio {AGENT_CHANNEL} (the agent)" in virtio
    assert emulated[:3] == ["domain type kvm (KVM: hardware-assisted)", "machine pc", "disk hda on bus ide"]
    assert "NIC model e1000" in emulated and "serial port 1: unix (the agent)" in emulated
    assert "clock timer kvmclock present=no" in emulated
    assert not any("virtio" in line for line in emulated)
