"""Block storage on the real lab host: volumes hot-plugged into running QEMU guests.

Two servers live through the module (two boots): ``a`` with virtio devices (its
root disk is vda, so a volume becomes vdb) and ``b`` with emulated ones (its
root disk is an IDE disk, sda, so the same volume, requested as vdb, is the
guest's first virtio disk: vda).  Data written in one guest is read in the other;
extending is seen in the guest; the rules on attaching, deleting and detaching
hold; a volume outlives a deleted server; the network (NBD) backend serves the
same API.
"""

import pytest

import cloudlab as cl
from cloudlab import config
from cloudlab.block_storage.volume import AVAILABLE, GIB, IN_USE

pytestmark = pytest.mark.lab
BOOT_TIMEOUT = 120


@pytest.fixture(scope="module")
def lab():
    if not config.netns():
        pytest.skip("lab tests run inside a network namespace: set CLOUDLAB_NETNS (make test does)")
    lab = cl.Lab(name="bstest")
    yield lab
    lab.stop()


@pytest.fixture(scope="module")
def servers(lab):
    a = lab.compute.create_server("a", timeout=BOOT_TIMEOUT, wait=False)
    b = lab.compute.create_server("b", profile="emulated", timeout=BOOT_TIMEOUT, wait=False)
    for server in (a, b):
        server.wait(timeout=BOOT_TIMEOUT)
    return a, b


def serials(server):
    """{guest device name: serial} read inside the guest."""
    out = server.run("for d in /sys/block/*; do echo ${d##*/} $(cat $d/serial 2>/dev/null); done").stdout
    return dict((line.split() + [""])[:2] for line in out.splitlines())


def test_attach_write_detach_attach_elsewhere_read(lab, servers):
    a, b = servers
    bs = lab.block_storage
    volume = bs.create_volume("data", size=1)

    attachment = volume.attach(a)
    assert volume.status == IN_USE and volume.servers == ["a"]
    assert (attachment.requested_device, attachment.device) == ("/dev/vdb", "/dev/vdb")
    assert serials(a)["vdb"] == volume.id[:20]          # the guest knows the disk by the volume's id
    assert volume.id[:20] in a.run("lsblk").stdout
    script = (f"mke2fs -F {attachment.device} >/dev/null 2>&1 && mkdir -p /mnt/v && "
              f"mount {attachment.device} /mnt/v && dd if=/dev/urandom of=/mnt/v/blob bs=64k count=16 2>/dev/null && "
              "md5sum /mnt/v/blob | cut -d' ' -f1 && umount /mnt/v")
    written = a.run(script)
    assert written.ok, written.stderr
    volume.detach()
    assert volume.status == AVAILABLE and not volume.attachments
    assert "vdb" not in serials(a)                      # gone from the guest, not only from libvirt
    assert volume.history[-4:] == ["attaching", "in-use", "detaching", "available"]

    attachment = volume.attach(b)
    # libvirt was asked for vdb; b's root disk is IDE, so its kernel calls the volume vda
    assert (attachment.requested_device, attachment.device) == ("/dev/vdb", "/dev/vda")
    read = b.run(f"mkdir -p /mnt/v && mount {attachment.device} /mnt/v && md5sum /mnt/v/blob | cut -d' ' -f1; "
                 "umount /mnt/v")
    assert read.stdout == written.stdout
    volume.detach(b)


def test_extending_an_attached_volume_is_seen_by_the_guest(lab, servers):
    a, _ = servers
    volume = lab.block_storage.create_volume("grow", size=1)
    attachment = volume.attach(a)
    name = attachment.device.rsplit("/", 1)[1]
    assert int(a.run(f"cat /sys/block/{name}/size").stdout) * 512 == GIB
    volume.extend(2)
    assert volume.size == 2 and volume.status == IN_USE
    assert int(a.run(f"cat /sys/block/{name}/size").stdout) * 512 == 2 * GIB
    volume.detach()
    volume.delete()


def test_attach_and_delete_rules(lab, servers):
    a, b = servers
    bs = lab.block_storage
    volume = bs.create_volume("one", size=1)
    volume.attach(a)
    with pytest.raises(cl.Conflict, match="already attached"):
        volume.attach(a)
    with pytest.raises(cl.Conflict, match="multi"):
        volume.attach(b)
    with pytest.raises(cl.Conflict, match="in-use"):
        volume.delete()
    with pytest.raises(cl.Conflict, match="not attached to server 'b'"):
        volume.detach(b)
    with pytest.raises(cl.NotFound):
        bs.attach_volume(volume, "no-such-server")
    volume.detach()
    with pytest.raises(cl.Conflict, match="not attached"):
        volume.detach()
    volume.delete()


def test_multiattach_volume_on_two_servers(lab, servers):
    a, b = servers
    volume = lab.block_storage.create_volume("shared", size=1, multiattach=True)
    on_a, on_b = volume.attach(a), volume.attach(b)
    assert sorted(volume.servers) == ["a", "b"]
    assert volume.id[:20] in serials(a).values() and volume.id[:20] in serials(b).values()
    assert "<shareable/>" in a.domain_xml().replace(" ", "")
    # raw blocks written by one guest are read by the other (no filesystem, no cache in between)
    assert a.run(f"echo from-a | dd of={on_a.device} bs=512 count=1 conv=fsync 2>/dev/null").ok
    assert b.run(f"dd if={on_b.device} bs=512 count=1 iflag=direct 2>/dev/null | head -c 6").stdout == "from-a"
    with pytest.raises(cl.InvalidInput, match="say which"):
        volume.detach()
    volume.detach(a)
    assert volume.status == IN_USE and volume.servers == ["b"]
    volume.detach(b)
    assert volume.status == AVAILABLE


def test_network_backend_serves_the_same_api(lab, servers):
    a, b = servers
    bs = lab.block_storage
    volume = bs.create_volume("net", size=1, volume_type="nbd")
    nbd = bs.backend("nbd")
    attachment = volume.attach(a)
    assert nbd.exports() == [f"volume-{volume.id}"]
    assert "protocol='nbd'" in a.domain_xml() and f"port='{nbd.port}'" in a.domain_xml()
    assert a.run(f"echo over-nbd | dd of={attachment.device} bs=512 count=1 conv=fsync 2>/dev/null").ok
    volume.detach()
    assert nbd.exports() == []                           # an export lives while a server uses it
    on_b = volume.attach(b)
    with pytest.raises(cl.Conflict, match="cannot extend"):
        volume.extend(2)                                 # an NBD client learns the size only when it connects
    assert b.run(f"dd if={on_b.device} bs=512 count=1 2>/dev/null | head -c 8").stdout == "over-nbd"
    volume.detach()
    volume.extend(2)                                     # detached, it grows
    assert volume.size == 2


def test_deleting_a_server_leaves_its_volume_and_data(lab, servers):
    a, b = servers
    volume = lab.block_storage.create_volume("keep", size=1)
    on_b = volume.attach(b)
    assert b.run(f"echo survives | dd of={on_b.device} bs=512 count=1 conv=fsync 2>/dev/null").ok
    b.delete()
    volume = volume.refresh()
    assert volume.status == AVAILABLE and volume.attachments == []
    with pytest.raises(cl.NotFound, match="deleted"):
        volume.attach(b)                                 # the Server object of a deleted server
    on_a = volume.attach(a)
    assert a.run(f"dd if={on_a.device} bs=512 count=1 2>/dev/null | head -c 8").stdout == "survives"
    volume.detach()
