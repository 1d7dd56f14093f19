"""Lab 06's graded exercises: servers from images and flavors, copy-on-write disks, resize, scheduler vs quota."""

from pathlib import Path

from ...errors import NotFound
from ..exercise import Check, exercise

BOOT_TIMEOUT_S = 90


def _server(lab, name):
    """The server ``name`` of the lab, or None."""
    try:
        return lab.compute.get_server(name)
    except NotFound:
        return None


@exercise("06.1", title="Boot a second server", points=2)
def second_server(lab):
    """web2 exists, from busybox and m1.tiny, boots, and its disk is an overlay on the image's."""
    web2 = _server(lab, "web2")
    yield Check("the lab has a server web2", web2 is not None,
                hint='compute.create_server("web2", image="busybox", flavor="m1.tiny")')
    yield Check("it was made from the busybox image", web2.image == "busybox")
    yield Check("it has the m1.tiny flavor", web2.flavor.name == "m1.tiny",
                hint=f"it has {web2.flavor.name}; delete it and create it again")
    if web2.status == "BUILD":
        web2.wait(timeout=BOOT_TIMEOUT_S)       # created without waiting: let it finish booting
    yield Check("it is ACTIVE", web2.status == "ACTIVE", hint=f"it is {web2.status}; web2.start()?")
    yield Check("its disk is a copy-on-write overlay on the image's disk",
                web2.disk_info().get("backing-filename") == lab.image.get_image("busybox").disk)
    yield Check("the guest calls itself web2", web2.run("hostname").stdout.strip() == "web2")


@exercise("06.2", title="Where does an unwritten block come from?", points=1)
def backing_file(lab, answer=None):
    """The file web1's overlay reads unwritten blocks from: the last file of its backing chain."""
    yield Check("answer is a path (a string)", isinstance(answer, (str, Path)), hint='answer = "/.../something.qcow2"')
    web1 = lab.compute.get_server("web1")
    base = web1.backing_chain()[-1]["filename"]
    yield Check("it is the backing file of web1's disk", Path(answer).resolve() == Path(base).resolve(),
                hint="server.disk_info() shows the backing file of web1's overlay")


@exercise("06.3", title="Resize and confirm", points=3)
def resize_confirmed(lab):
    """web2 runs with m1.small, confirmed (no old disk kept), and its guest sees the memory."""
    web2 = _server(lab, "web2")
    yield Check("the lab has a server web2", web2 is not None, hint="do exercise 06.1 first")
    yield Check("web2 has the m1.small flavor", web2.flavor.name == "m1.small", hint='web2.resize("m1.small")')
    yield Check("the resize is confirmed (not VERIFY_RESIZE)", not web2.resize_pending,
                hint="web2.confirm_resize() keeps the new flavor")
    yield Check("the old disk is gone", not web2.pre_resize_disk.exists())
    yield Check("web2 is ACTIVE", web2.status == "ACTIVE", hint=f"it is {web2.status}")
    mem_kib = int(web2.run("awk '/MemTotal/ {print $2}' /proc/meminfo").stdout)
    yield Check("the guest sees more memory than m1.tiny's 128 MiB", mem_kib > 128 * 1024,
                hint="was it resized while running, or started after the resize?")
    yield Check("the disk grew to m1.small's 2 GiB", web2.disk_info()["virtual-size"] == 2 * 2**30, hidden=True)


@exercise("06.4", title="Scheduler or quota?", points=2)
def quota_not_scheduler(lab, answer=None):
    """A per-lab limit of 2 servers refuses web3 with QuotaExceeded, and nothing of web3 is made."""
    limit = lab.compute.quotas["instances"]
    yield Check("the lab has a quota of 2 instances", limit == 2, hint="compute.set_quota(instances=2)")
    yield Check("the lab is full: 2 servers", lab.compute.quota_usage()["instances"] == 2,
                hint="web1 and web2 (exercise 06.1) should be there")
    yield Check("there is no server web3 (the quota refused it before anything was made)",
                _server(lab, "web3") is None)
    yield Check("answer is the name of the error create_server raised", isinstance(answer, str),
                hint='answer = "TheErrorsClassName"')
    yield Check("it is the quota's error, not the scheduler's", answer == "QuotaExceeded",
                hint="NoValidHost is the scheduler finding no host with room; a per-lab limit is a quota")
