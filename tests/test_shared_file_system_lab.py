"""The shared file system on the real lab host: NFS-Ganesha serving shares that two QEMU guests mount.

The guests' own Linux NFS client (``mount -t nfs4``) is the third-party client.
Two servers live through the module (two boots).  Checked: the share server is
a node of its own on the lab network (its own network and mount namespaces); a file written and closed by one
guest is read whole by the other; a read-only rule makes writes fail; an address
without a rule cannot mount; the share's size is enforced and grows while
mounted; denying a rule cuts a client off; bad requests change nothing; a deleted
share leaves no export, mount, loop device or file.
"""

import ipaddress
import subprocess

import pytest

import cloudlab as cl
from cloudlab import config
from cloudlab.host import ownership
from cloudlab.shared_file_system import leftovers

pytestmark = pytest.mark.lab
BOOT_TIMEOUT = 120
NFS_TIMEOUT = 60


@pytest.fixture(scope="module")
def lab():
    if not config.netns():
        pytest.skip("lab tests run inside a network namespace: set CLOUDLAB_NETNS (make test does)")
    lab = cl.Lab(name="sfstest")
    yield lab
    lab.stop()


@pytest.fixture(scope="module")
def servers(lab):
    a = lab.compute.create_server("a", timeout=BOOT_TIMEOUT, wait=False)
    b = lab.compute.create_server("b", timeout=BOOT_TIMEOUT, wait=False)
    for server in (a, b):
        server.wait(timeout=BOOT_TIMEOUT)
        server.wait_for_address(timeout=60)     # NFS needs the guest's address, leased and configured
    return a, b


def address(lab, server):
    return server.wait_for_address(timeout=60)[lab.host.network][0]


def run(server, command):
    return server.run(command, timeout=NFS_TIMEOUT)


def size_kib(server, path):
    """The size of the filesystem at ``path`` as the guest's df reports it, in KiB."""
    return int(run(server, f"df -Pk {path} | tail -1").stdout.split()[1])


def test_share_server_is_a_node_of_its_own_on_the_lab_network(lab):
    sfs = lab.shared_file_system
    assert ipaddress.ip_address(sfs.address) in lab.host.subnet and sfs.address != lab.host.gateway
    assert sfs.port == 2049
    # its network namespace has only loopback and its cable to the lab's bridge
    links = subprocess.run(["nsenter", "-t", str(sfs.server.pid), "-n", "ip", "-o", "-4", "addr"],
                           capture_output=True, text=True, check=True).stdout
    assert sorted(line.split()[1] for line in links.splitlines()) == ["eth0", "lo"]
    assert f"{sfs.address}/{lab.host.subnet.prefixlen}" in links
    master = subprocess.run(["ip", "-n", lab.host.netns, "-o", "link", "show", sfs.server.link],
                            capture_output=True, text=True, check=True).stdout
    assert f"master {lab.host.bridge}" in master
    # the shares are mounted in its own mount namespace, not in the machine's
    assert str(sfs.folder) not in open("/proc/self/mountinfo").read()
    # it lives outside the lab's namespace, so only cloudlab's mark in its environment lets
    # `host down` end it when its lab died without stopping it
    ours = {proc.pid: why for proc, why in ownership.Scope.current().processes}
    assert ours.get(sfs.server.pid) == "started by cloudlab"


def test_two_servers_share_files_and_rules_are_enforced(lab, servers):
    a, b = servers
    sfs = lab.shared_file_system
    share = sfs.create_share("team", size=1)
    assert share.status == "available" and share.export_location == f"{lab.shared_file_system.address}:/share-{share.id}"

    # no rule yet: nobody can mount
    denied = run(a, share.mount_command("/mnt/team"))
    assert not denied.ok and "No such file or directory" in denied.stderr   # the export is hidden from it

    rule_a = share.allow(address(lab, a), "rw")
    rule_b = share.allow(address(lab, b), "ro")
    assert (rule_a.state, rule_b.state) == ("active", "active")
    for server in (a, b):
        mounted = run(server, share.mount_command("/mnt/team"))
        assert mounted.ok, mounted.stderr
        assert f"{share.export_location} on /mnt/team type nfs4" in run(server, "mount").stdout

    # close-to-open: written and closed on a, read whole on b
    written = run(a, "dd if=/dev/urandom of=/mnt/team/report bs=64k count=32 2>/dev/null && "
                     "md5sum /mnt/team/report | cut -d' ' -f1")
    assert written.ok
    assert run(b, "md5sum /mnt/team/report | cut -d' ' -f1").stdout == written.stdout

    # b's rule is read-only
    refused = run(b, "echo no > /mnt/team/from-b")
    assert not refused.ok and "Read-only file system" in refused.stderr
    assert not run(a, "test -e /mnt/team/from-b").ok

    # the size is a limit: the share holds no more than its 1 GiB
    assert 0.9 * 2**20 < size_kib(a, "/mnt/team") <= 2**20
    full = run(a, "fallocate -l 1100M /mnt/team/too-big")
    assert not full.ok and "No space left on device" in full.stderr

    # it grows while mounted
    share.extend(2)
    assert share.size == 2 and share.status == "available" and "extending" in share.history
    assert size_kib(a, "/mnt/team") > 1.8 * 2**20
    assert run(a, "fallocate -l 1100M /mnt/team/fits && rm /mnt/team/fits").ok

    # denying b's rule cuts b off
    share.deny(rule_b)
    assert [r.access_to for r in share.access_rules] == [rule_a.access_to]
    assert not run(b, "cat /mnt/team/report > /dev/null").ok
    run(b, "umount -f /mnt/team")
    assert not run(b, share.mount_command("/mnt/team")).ok
    assert run(a, "umount /mnt/team").ok


def test_a_network_rule_and_the_most_specific_rule_wins(lab, servers):
    a, b = servers
    share = lab.shared_file_system.create_share("net", size=1)
    share.allow(str(lab.host.subnet), "ro")          # the whole lab network may read
    share.allow(address(lab, a), "rw")               # a may also write
    for server in (a, b):
        assert run(server, share.mount_command("/mnt/net")).ok
    assert run(a, "echo from-a > /mnt/net/note").ok
    assert not run(b, "echo from-b > /mnt/net/note").ok
    assert run(b, "cat /mnt/net/note").stdout == "from-a\n"
    for server in (a, b):
        assert run(server, "umount /mnt/net").ok
    share.delete()


def test_bad_requests_change_nothing(lab, servers):
    sfs = lab.shared_file_system
    share = sfs.create_share("strict", size=1)
    before = (sfs.server.config_path.read_text(), sorted(p.name for p in lab.home.iterdir()))
    for bad in ("10.213.0", "300.1.1.1", "10.213.0.5/24", ""):
        with pytest.raises(cl.InvalidInput):
            share.allow(bad, "rw")
    with pytest.raises(cl.InvalidInput, match="rw, ro"):
        share.allow("10.213.0.9", "write")
    share.allow("10.213.0.9", "ro")
    with pytest.raises(cl.Conflict):
        share.allow("10.213.0.9", "rw")
    share.deny("10.213.0.9")
    with pytest.raises(cl.NotFound):
        share.deny("10.213.0.9")
    for size in (0, -1, 1.5, "1", 1000):
        with pytest.raises(cl.InvalidInput):
            sfs.create_share("bad", size=size)
    with pytest.raises(cl.InvalidInput):
        sfs.create_share("cifs", size=1, share_proto="CIFS")
    with pytest.raises(cl.Conflict):
        sfs.create_share("strict", size=1)
    with pytest.raises(cl.InvalidInput, match="grow"):
        share.extend(1)
    with pytest.raises(cl.NotFound):
        sfs.get_share("nope")
    assert (sfs.server.config_path.read_text(), sorted(p.name for p in lab.home.iterdir())) == before


def test_deleting_a_share_removes_its_export_mount_loop_device_and_file(lab, servers):
    a, _ = servers
    sfs = lab.shared_file_system
    share = sfs.create_share("gone", size=1)
    share.allow(address(lab, a), "rw")
    image = sfs.image_path(share)
    assert image.exists()
    assert any(str(image) in line for line in leftovers(config.home(), config.prefix()))   # its loop device
    share.delete()
    assert not image.exists() and f"share-{share.id}" not in sfs.server.config_path.read_text()
    assert not any(share.id in line for line in leftovers(config.home(), config.prefix()))
    assert not run(a, share.mount_command("/mnt/gone")).ok
    assert "gone" not in [s.name for s in sfs.list_shares()]
