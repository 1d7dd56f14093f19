"""The compute service's API on libvirt's ``test:///default`` driver.

The test driver is a real libvirt driver (here fed a node description shaped like
the lab host) that keeps domains in memory and runs
no guest, so these tests check everything but the boot itself: flavors, names and
prefixes, copy-on-write disks (made with the real qemu-img on the real image),
errors, the status machine, clean-up and concurrency.  Guests never print the
ready marker here; where a test needs a finished boot it appends the marker line
to the console log, which is exactly what QEMU would do (tests/test_compute_lab.py
boots real guests).
"""

import itertools
import threading
from pathlib import Path

import pytest

import cloudlab as cl
from cloudlab import compute as compute_mod
from cloudlab.image import qemu_img_info
from cloudlab.compute.server import ACTIVE, BUILD, DELETED, ERROR, REBOOT, SHUTOFF, VERIFY_RESIZE

_labs = itertools.count(1)


@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDLAB_HOME", str(tmp_path / "home"))
    return cl.Lab(name=f"api{next(_labs)}")


# A test node shaped like the lab host (2 cores, 24 GiB) with a DHCP network and one
# domain that is not the lab's; each connection to a node file gets private state.
NODE_XML = """<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads>
    <active>2</active><mhz>2000</mhz><model>x86_64</model></cpu>
  <memory>25165824</memory>
  <network><name>default</name><bridge name='virbr0'/>
    <ip address='192.168.122.1' netmask='255.255.255.0'>
      <dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp></ip></network>
  <domain type='test'><name>test</name><memory>8192</memory><os><type>hvm</type></os></domain>
</node>
"""


@pytest.fixture
def node_uri(tmp_path):
    path = tmp_path / "node.xml"
    path.write_text(NODE_XML)
    return f"test://{path}"


@pytest.fixture
def compute(lab, node_uri):
    host = compute_mod.LibvirtHost(node_uri)
    service = compute_mod.Compute(lab, host=host).start()
    yield service
    service.stop()
    host.stop()


def ready(server):
    """Append the ready line to the console log, as the guest's init does on ttyS0."""
    with open(server.console_path, "ab") as f:
        f.write(b"cloudlab: web up\r\ncloudlab-ready\r\n")


def domain_names(compute):
    return {d.name() for d in compute.conn.listAllDomains()}


# -- flavors -----------------------------------------------------------------------------

def test_default_flavors(compute):
    names = [f.name for f in compute.list_flavors()]
    assert names == ["m1.tiny", "m1.small", "m1.medium"]
    tiny = compute.get_flavor("m1.tiny")
    assert (tiny.vcpus, tiny.ram_mib, tiny.disk_gib) == (1, 128, 1)


def test_create_flavor_and_errors(compute):
    flavor = compute.create_flavor("m1.wide", vcpus=2, ram_mib=192, disk_gib=1)
    assert compute.get_flavor("m1.wide") == flavor
    assert "m1.wide" in [f.name for f in compute.list_flavors()]
    with pytest.raises(cl.Conflict):
        compute.create_flavor("m1.wide", 1, 128, 1)
    with pytest.raises(cl.InvalidInput):
        compute.create_flavor("bad name", 1, 128, 1)
    with pytest.raises(cl.NotFound) as err:
        compute.get_flavor("m1.huge")
    assert "m1.tiny" in err.value.fix and "m1.wide" in err.value.fix
    compute.delete_flavor("m1.wide")
    with pytest.raises(cl.NotFound):
        compute.get_flavor("m1.wide")


# -- create, list, show, delete ----------------------------------------------------------

def test_create_makes_prefixed_domain_and_cow_overlay(compute, lab):
    server = compute.create_server("web1", wait=False)
    # BUILD although the domain runs: Nova would say ACTIVE here, cloudlab waits for the guest
    assert (server.status, server.power_state) == (BUILD, "RUNNING")
    assert server.domain_name == lab.prefix + "web1"
    assert lab.prefix + "web1" in domain_names(compute)
    for path in (server.disk, server.console_path):
        assert path.name.startswith(lab.prefix)
    assert server.agent_socket.name.startswith(lab.prefix)
    image = compute.images.get_image("busybox")
    info = qemu_img_info(server.disk)
    # a copy-on-write overlay on the image's disk, sized by the flavor, holding almost nothing
    assert info["format"] == "qcow2"
    assert info["full-backing-filename"] == image.disk
    assert info["backing-filename-format"] == "qcow2"
    assert info["virtual-size"] == 1 * 2**30
    assert server.disk.stat().st_size < image.size / 4
    # show
    assert server.flavor.name == "m1.tiny"
    assert server.image == "busybox"
    assert server.host == compute.conn.getHostname()
    assert server.addresses == {"default": server.addresses["default"]}
    assert server.addresses["default"][0].count(".") == 3
    xml = server.domain_xml()
    assert "cloudlab.hostname=web1" in xml and "<kernel>" in xml


def test_addresses_disk_info_and_no_network(compute):
    server = compute.create_server("web1", wait=False)
    assert server.wait_for_address(timeout=2) == server.addresses
    info = server.disk_info()
    assert info["format"] == "qcow2" and info["backing-filename"].endswith("disk.qcow2")
    isolated = compute.create_server("alone", network=False, wait=False)
    assert "<interface" not in isolated.domain_xml()
    assert isolated.addresses == {}
    with pytest.raises(cl.InvalidInput):
        isolated.wait_for_address(timeout=0.1)


def test_list_and_get(compute):
    a = compute.create_server("a1", wait=False)
    b = compute.create_server("b1", wait=False, flavor="m1.small", profile="emulated")
    assert [s.name for s in compute.list_servers()] == ["a1", "b1"]
    assert compute.get_server("b1") is b
    assert compute.get_server(a) is a
    assert "<model type='e1000'/>" in b.domain_xml()
    with pytest.raises(cl.NotFound) as err:
        compute.get_server("c1")
    assert "a1" in err.value.fix and "b1" in err.value.fix


def test_another_service_sees_the_same_servers(compute, lab):
    compute.create_flavor("m1.odd", 1, 160, 1)
    compute.create_server("web1", flavor="m1.odd", wait=False)
    other = compute_mod.Compute(lab, host=compute.host).start()
    [server] = other.list_servers()
    assert server.name == "web1"
    assert (server.flavor.name, server.flavor.ram_mib) == ("m1.odd", 160)
    assert server.status == BUILD


def test_other_labs_and_foreign_domains_are_not_listed(compute, lab, tmp_path):
    compute.create_server("web1", wait=False)
    other_lab = cl.Lab(name=lab.name + "x")
    other = compute_mod.Compute(other_lab, host=compute.host).start()
    try:
        other.create_server("web1", wait=False)
        assert [s.name for s in compute.list_servers()] == ["web1"]
        assert [s.domain_name for s in other.list_servers()] == [other_lab.prefix + "web1"]
    finally:
        other.stop()
    assert "test" in domain_names(compute)   # the test driver's own domain: never touched


def test_delete_leaves_nothing(compute, lab):
    server = compute.create_server("web1", wait=False)
    ready(server)
    files = [server.disk, server.console_path]
    assert all(p.exists() for p in files)
    server.delete()
    assert server.status == DELETED
    assert lab.prefix + "web1" not in domain_names(compute)
    assert not any(p.exists() for p in files)
    assert list(compute.server_dir.iterdir()) == []
    with pytest.raises(cl.NotFound):
        compute.get_server("web1")
    # the name is free again
    compute.create_server("web1", wait=False).delete()


def test_stop_of_the_service_deletes_the_labs_servers(lab, node_uri):
    host = compute_mod.LibvirtHost(node_uri)
    service = compute_mod.Compute(lab, host=host).start()
    service.create_server("a1", wait=False)
    service.create_server("a2", wait=False)
    service.stop()
    assert not [n for n in domain_names(service) if n.startswith(lab.prefix)]
    assert list(service.server_dir.iterdir()) == []
    host.stop()


# -- errors a learner can act on ---------------------------------------------------------

def test_unknown_flavor_and_image_list_the_valid_ones(compute):
    with pytest.raises(cl.NotFound) as err:
        compute.create_server("web1", flavor="m1.giant", wait=False)
    assert "m1.tiny" in err.value.fix and "m1.medium" in err.value.fix
    with pytest.raises(cl.NotFound) as err:
        compute.create_server("web1", image="ubuntu", wait=False)
    assert "busybox" in err.value.fix
    with pytest.raises(cl.NotFound) as err:
        compute.create_server("web1", network="nope", wait=False)
    assert "default" in err.value.fix
    with pytest.raises(cl.InvalidInput) as err:
        compute.create_server("web1", profile="xen", wait=False)
    assert "virtio" in err.value.fix
    assert compute.list_servers() == []


def test_duplicate_name_is_a_conflict(compute):
    compute.create_server("web1", wait=False)
    with pytest.raises(cl.Conflict):
        compute.create_server("web1", wait=False, flavor="m1.small")
    assert len(compute.list_servers()) == 1
    assert compute.get_server("web1").flavor.name == "m1.tiny"


@pytest.mark.parametrize("name", ["", "web 1", "-web", "a" * 41, None, "x/y"])
def test_bad_names(compute, name):
    with pytest.raises(cl.InvalidInput):
        compute.create_server(name, wait=False)


def test_a_flavor_no_host_fits_is_no_valid_host_and_an_error_server(compute, lab):
    compute.create_flavor("m1.huge", 1, 1 << 20, 1)
    with pytest.raises(cl.NoValidHost) as err:
        compute.create_server("big", flavor="m1.huge", wait=False)
    assert str(err.value).startswith("No valid host was found")
    assert "MiB" in str(err.value) and "m1.tiny" in err.value.fix
    assert isinstance(err.value, cl.QuotaExceeded)        # code that caught QuotaExceeded still does
    # as in Nova: the server exists, in ERROR, with the scheduler's fault; no disk, never started
    server = err.value.server
    assert (server.status, server.power_state) == (ERROR, "SHUTDOWN")
    assert server.fault.startswith("No valid host was found")
    assert not server.disk.exists()
    assert [s.name for s in compute.list_servers()] == ["big"]
    other = compute_mod.Compute(compute.lab, host=compute.host)      # read back from the domain
    assert other.get_server("big").status == ERROR
    with pytest.raises(cl.Conflict, match="ERROR"):
        server.start()
    server.delete()
    assert compute.list_servers() == [] and list(compute.server_dir.iterdir()) == []


def test_quota_is_a_per_lab_limit_checked_before_anything_is_made(compute):
    assert compute.set_quota(instances=1) == {"instances": 1, "cores": None, "ram_mib": None}
    web1 = compute.create_server("web1", wait=False)
    with pytest.raises(cl.QuotaExceeded) as err:
        compute.create_server("web2", wait=False)
    assert not isinstance(err.value, cl.NoValidHost)
    assert "Quota exceeded for instances: requested 1, but already used 1 of 1" in str(err.value)
    assert "set_quota(instances=" in err.value.fix
    assert [s.name for s in compute.list_servers()] == ["web1"]       # nothing made for web2
    assert compute.quota_usage() == {"instances": 1, "cores": 1, "ram_mib": 128}
    compute.set_quota(instances=None, ram_mib=200)
    ready(web1)
    with pytest.raises(cl.QuotaExceeded, match="ram_mib"):
        web1.resize("m1.small")       # +128 MiB: 256 > 200
    assert web1.flavor.name == "m1.tiny" and web1.status == ACTIVE
    with pytest.raises(cl.InvalidInput, match="no quota called"):
        compute.set_quota(servers=3)
    with pytest.raises(cl.InvalidInput, match="whole number"):
        compute.set_quota(cores=-1)


def test_flavor_too_small_for_image(compute):
    compute.create_flavor("m1.nano", 1, 32, 1)
    with pytest.raises(cl.InvalidInput) as err:
        compute.create_server("web1", flavor="m1.nano", wait=False)
    assert "MiB" in str(err.value)


def test_wait_timeout_shows_the_console(compute):
    server = compute.create_server("web1", wait=False)
    with open(server.console_path, "ab") as f:
        f.write(b"Linux version 6.1\r\nKernel panic - not syncing: VFS\r\n")
    with pytest.raises(cl.ResourceTimeout) as err:
        compute.wait_for_server(server, timeout=0.2)
    assert "Kernel panic - not syncing" in str(err.value)
    assert server.console_log(lines=1) == "Kernel panic - not syncing: VFS"


def test_a_guest_that_never_gets_ready_is_left_in_error(compute):
    with pytest.raises(cl.ResourceTimeout) as err:
        compute.create_server("web1", timeout=0.2)
    assert "last console lines" in str(err.value)
    server = compute.get_server("web1")
    assert server.status == "ERROR"
    server.stop()
    assert server.status == SHUTOFF
    server.delete()
    assert compute.list_servers() == []


def test_a_failed_create_leaves_nothing(compute, lab, tmp_path):
    # an image whose base disk was overwritten with junk: qemu-img refuses it as a backing file
    disk = tmp_path / "small.qcow2"
    compute_mod.run_tool(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "8M"], "test disk")
    image = compute.images.import_image("vanishing", disk)
    Path(image.disk).write_bytes(b"not a disk" * 100)
    with pytest.raises(cl.CloudlabError) as err:
        compute.create_server("web1", image="vanishing", wait=False)
    assert "qemu-img" in str(err.value)
    assert not [n for n in domain_names(compute) if n.startswith(lab.prefix)]
    assert list(compute.server_dir.glob(lab.prefix + "*")) == []
    compute.images.delete_image("vanishing")


def test_run_needs_an_active_server(compute):
    server = compute.create_server("web1", wait=False)
    with pytest.raises(cl.Conflict) as err:
        server.run("true")
    assert "BUILD" in str(err.value)


def test_libvirt_unreachable_names_the_fix(lab):
    host = compute_mod.LibvirtHost("qemu+unix:///system?socket=/nonexistent/libvirt-sock")
    with pytest.raises(cl.MissingPrerequisite) as err:
        compute_mod.Compute(lab, host=host).start()
    assert "cloudlab host up" in err.value.fix


# -- the status machine ------------------------------------------------------------------

def test_ready_marker_makes_it_active_once_per_boot(compute):
    server = compute.create_server("web1", wait=False)
    assert server.status == BUILD
    ready(server)
    assert compute.wait_for_server(server, timeout=2) is server
    assert server.status == ACTIVE
    # a reboot keeps the log (same QEMU process): the old marker must not count
    server.reboot(wait=False)
    assert server.status == REBOOT
    ready(server)
    assert server.status == ACTIVE


def test_stop_start_and_a_fresh_log(compute):
    server = compute.create_server("web1", wait=False)
    ready(server)
    server.stop()
    assert server.status == SHUTOFF
    server.stop()                       # stopping a stopped server does nothing
    with pytest.raises(cl.Conflict):
        server.reboot(wait=False)
    server.start(wait=False)
    assert server.status == BUILD
    assert "cloudlab-ready" not in server.console_log()
    with pytest.raises(cl.Conflict):
        server.start(wait=False)
    ready(server)
    assert server.status == ACTIVE


def test_resize_ends_in_verify_resize_then_confirm(compute):
    server = compute.create_server("web1", wait=False)
    ready(server)
    with pytest.raises(cl.InvalidInput):
        server.resize("m1.tiny")
    with pytest.raises(cl.Conflict, match="not VERIFY_RESIZE"):
        server.confirm_resize()
    server.resize("m1.medium", wait=False)
    assert server.status == "RESIZE"          # booting with the new flavor
    assert server.flavor.name == "m1.medium"
    xml = server.domain_xml()
    assert ">2</vcpu>" in xml and "<memory unit='KiB'>524288</memory>" in xml
    assert qemu_img_info(server.disk)["virtual-size"] == 4 * 2**30
    assert qemu_img_info(server.pre_resize_disk)["virtual-size"] == 1 * 2**30     # the old disk, kept
    ready(server)
    assert server.status == VERIFY_RESIZE
    # another service reads the new flavor and the pending resize from the domain's metadata
    other = compute_mod.Compute(compute.lab, host=compute.host)
    assert (other.get_server("web1").flavor.name, other.get_server("web1").status) == ("m1.medium", VERIFY_RESIZE)
    for action in (server.stop, server.reboot, lambda: server.resize("m1.small")):
        with pytest.raises(cl.Conflict, match="confirm_resize"):
            action()
    server.confirm_resize()
    assert server.status == ACTIVE and not server.pre_resize_disk.exists()
    assert compute_mod.Compute(compute.lab, host=compute.host).get_server("web1").status == ACTIVE
    with pytest.raises(cl.InvalidInput) as err:
        server.resize("m1.small")       # 4 GiB -> 2 GiB: disks only grow
    assert "only grow" in str(err.value)


def test_revert_resize_brings_back_the_old_flavor_and_disk(compute):
    server = compute.create_server("web1", wait=False)
    ready(server)
    server.stop()
    old_disk = server.disk.read_bytes()
    server.resize("m1.small")
    assert (server.status, server.power_state) == (VERIFY_RESIZE, "SHUTDOWN")    # resized while off
    assert qemu_img_info(server.disk)["virtual-size"] == 2 * 2**30
    with pytest.raises(cl.Conflict, match="VERIFY_RESIZE"):
        server.start()
    server.revert_resize()
    assert (server.status, server.flavor.name) == (SHUTOFF, "m1.tiny")      # off before, off again
    assert server.disk.read_bytes() == old_disk and not server.pre_resize_disk.exists()
    assert "<memory unit='KiB'>131072</memory>" in server.domain_xml()
    # a running server is running again after the revert, on its old flavor
    server.start(wait=False)
    ready(server)
    server.resize("m1.small", wait=False)
    ready(server)
    assert server.status == VERIFY_RESIZE
    server.revert_resize(wait=False)
    assert server.status == "REVERT_RESIZE" and server.power_state == "RUNNING"
    ready(server)
    assert (server.status, server.flavor.name) == (ACTIVE, "m1.tiny")
    with pytest.raises(cl.Conflict, match="not VERIFY_RESIZE"):
        server.revert_resize()


def test_deleting_a_server_in_verify_resize_removes_its_old_disk_too(compute, lab):
    server = compute.create_server("web1", wait=False)
    server.stop()
    server.resize("m1.small")
    assert server.pre_resize_disk.exists()
    server.delete()
    assert list(compute.server_dir.glob(lab.prefix + "*")) == []


# -- concurrency and clean-up ------------------------------------------------------------

def test_ten_servers_created_at_once(compute):
    errors = []

    def create(i):
        try:
            compute.create_server(f"s{i}", wait=False)
        except cl.CloudlabError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [s.name for s in compute.list_servers()] == sorted(f"s{i}" for i in range(10))


def test_racing_duplicate_names_one_wins(compute):
    results = []

    def create():
        try:
            results.append(compute.create_server("same", wait=False))
        except cl.Conflict as exc:
            results.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(r, cl.Conflict) for r in results) == 5
    assert [s.name for s in compute.list_servers()] == ["same"]


def test_cleanup_removes_the_prefix_and_nothing_else(compute, lab, tmp_path):
    compute.create_server("web1", wait=False)
    compute.create_server("web2", wait=False)
    other_lab = cl.Lab(name=lab.name + "y")
    other = compute_mod.Compute(other_lab, host=compute.host).start()
    kept = other.create_server("web1", wait=False)
    stranger = compute.server_dir / "notes.log"
    stranger.write_text("not ours")
    removed = compute_mod.cleanup(compute.conn, lab.prefix, tmp_path / "home")
    assert {lab.prefix + "web1", lab.prefix + "web2"} <= set(removed)
    assert not [n for n in domain_names(compute) if n.startswith(lab.prefix)]
    assert sorted(p.name for p in compute.server_dir.iterdir()) == ["notes.log"]
    assert kept.status == BUILD and kept.disk.exists()
    # with the global prefix: domains and their files, but not files of domains elsewhere
    elsewhere = compute.server_dir / f"{lab.prefix}ghost.qcow2"
    elsewhere.write_text("a server of a lab host in another namespace")
    removed = compute_mod.cleanup(compute.conn, "cloudlab-", tmp_path / "home")
    assert other_lab.prefix + "web1" in removed and not kept.disk.exists()
    assert elsewhere.exists()
    other.stop()
