"""The compute service on the real lab host: libvirt and QEMU boot real guests.

One server lives through the whole lifecycle, so the module costs five boots
(create, start after stop, reboot, a resize while running and its revert) of emulated
time: run a command inside and get its output and exit status, read the console, stop
gracefully, resize while off and confirm, start and find the data written before,
reboot, resize while running and revert (what was written meanwhile is gone, the old
size is back), delete and find nothing left.

Runs only inside the lab's network namespace (``CLOUDLAB_NETNS``, set by
``make test``), with the lab host up (``python -m cloudlab host up``).
"""

import pytest

import cloudlab as cl
from cloudlab import config
from cloudlab.image import md5_file, qemu_img_info
from cloudlab.compute.server import ACTIVE, DELETED, SHUTOFF, VERIFY_RESIZE

pytestmark = pytest.mark.lab
# under emulation on a loaded 2-core machine a boot takes 3-8 s
BOOT_TIMEOUT = 90


@pytest.fixture(scope="module")
def lab():
    if not config.netns():
        pytest.skip("lab tests run inside a network namespace: set CLOUDLAB_NETNS (make test does)")
    lab = cl.Lab(name="ctest")
    yield lab
    lab.stop()


def test_server_lifecycle(lab):
    compute = lab.compute
    image = compute.images.get_image("busybox")
    server = compute.create_server("life", flavor="m1.tiny", timeout=BOOT_TIMEOUT)

    # show
    assert server.status == ACTIVE
    assert server.host == lab.host.hostname
    assert lab.host.network in server.domain_xml()
    log = server.console_log()
    assert log.count("cloudlab-ready") == 1
    assert "cloudlab: root disk /dev/vda" in log

    # a command inside, through the agent: output, errors, exit status, input
    result = server.run("hostname; echo oops >&2; exit 3")
    assert (result.exit_status, result.stdout, result.stderr) == (3, "life\n", "oops\n")
    assert not result.ok
    assert server.run("tr a-z A-Z", input="hello").stdout == "HELLO"
    assert server.run("grep -c processor /proc/cpuinfo").stdout.strip() == "1"

    # writes go to the overlay; the image's base disk never changes
    overlay_before = qemu_img_info(server.disk)["actual-size"]
    assert server.run("dd if=/dev/urandom of=/root/data bs=1k count=2048 2>/dev/null && "
                      "md5sum /root/data > /root/data.md5 && sync").ok
    digest = server.run("cat /root/data.md5").stdout

    # stop: graceful (the guest's shutdown script runs), then SHUTOFF
    server.stop()
    assert server.status == SHUTOFF
    assert "cloudlab: shutting down" in server.console_log()
    assert qemu_img_info(server.disk)["actual-size"] > overlay_before + 2**20
    assert md5_file(image.disk) == image.checksum
    with pytest.raises(cl.Conflict):
        server.run("true")

    # resize while off: new vCPUs and memory, a bigger overlay, VERIFY_RESIZE until confirmed;
    # start is the second boot
    server.resize("m1.medium")
    assert (server.status, server.power_state) == (VERIFY_RESIZE, "SHUTDOWN")
    assert qemu_img_info(server.disk)["virtual-size"] == 4 * 2**30
    server.confirm_resize()
    assert server.status == SHUTOFF and not server.pre_resize_disk.exists()
    server.start(timeout=BOOT_TIMEOUT)
    assert server.status == ACTIVE
    log = server.console_log()
    assert log.count("cloudlab-ready") == 1 and "shutting down" not in log   # a fresh log per start
    assert server.run("cat /root/data.md5").stdout == digest
    assert server.run("md5sum -c /root/data.md5").ok
    assert server.run("grep -c processor /proc/cpuinfo").stdout.strip() == "2"
    mem_kib = int(server.run("awk '/MemTotal/ {print $2}' /proc/meminfo").stdout)
    assert 400 * 1024 < mem_kib <= 512 * 1024
    assert int(server.run("cat /sys/block/vda/size").stdout) * 512 == 4 * 2**30

    # reboot: the same QEMU process, so the log goes on; ACTIVE only after the new marker
    server.run("touch /run/before-reboot")
    server.reboot(timeout=BOOT_TIMEOUT)
    assert server.status == ACTIVE
    assert server.console_log().count("cloudlab-ready") == 2
    assert not server.run("test -e /run/before-reboot").ok      # tmpfs: a new boot
    assert server.run("md5sum -c /root/data.md5").ok            # disk: kept

    # resize while running: it boots with the new flavor and waits in VERIFY_RESIZE, where
    # commands run; revert brings back the old flavor and the old disk, running again
    compute.create_flavor("m1.wide", vcpus=2, ram_mib=640, disk_gib=4)
    server.resize("m1.wide", timeout=BOOT_TIMEOUT)
    assert (server.status, server.flavor.name) == (VERIFY_RESIZE, "m1.wide")
    mem_kib = int(server.run("awk '/MemTotal/ {print $2}' /proc/meminfo").stdout)
    assert 520 * 1024 < mem_kib <= 640 * 1024
    assert server.run("echo new > /root/after-resize && sync").ok
    server.revert_resize(timeout=BOOT_TIMEOUT)
    assert (server.status, server.flavor.name) == (ACTIVE, "m1.medium")
    mem_kib = int(server.run("awk '/MemTotal/ {print $2}' /proc/meminfo").stdout)
    assert 400 * 1024 < mem_kib <= 512 * 1024
    assert not server.run("test -e /root/after-resize").ok     # the old disk: written before the resize
    assert server.run("md5sum -c /root/data.md5").ok

    # delete: no domain, no disk, no log, no socket
    files = [server.disk, server.console_path, server.agent_socket]
    domain_name = server.domain_name
    server.delete()
    assert server.status == DELETED
    assert domain_name not in [d.name() for d in compute.conn.listAllDomains()]
    assert not any(p.exists() for p in files)
    assert md5_file(image.disk) == image.checksum
    assert compute.list_servers() == []


def test_lab_errors_before_boot(lab):
    compute = lab.compute
    compute.create_flavor("m1.too-big", 1, lab.host.free_memory_mib() + 1024, 1)
    with pytest.raises(cl.NoValidHost) as err:
        compute.create_server("big", flavor="m1.too-big")
    assert err.value.server.status == "ERROR" and [s.name for s in compute.list_servers()] == ["big"]
    assert lab.host.virsh("domstate", lab.prefix + "big").strip() == "shut off"   # defined, never started
    err.value.server.delete()
    assert compute.list_servers() == []
    assert not list(lab.home.glob(f"{lab.prefix}big*"))
