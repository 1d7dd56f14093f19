"""Lab 07 (block storage): the graded exercises' checks, read from the live lab.

Each check reads the lab as it is now: the block storage service's records, the
guest's own view of its disks (through the agent), and, for 07.2, the bytes in
the volume's file on the host, read without any server.
"""

import os
import subprocess
import tempfile

from ..exercise import Check, exercise

GIB = 2 ** 30


def _volume(lab, name):
    try:
        return lab.block_storage.get_volume(name)
    except Exception:
        return None


def _device(answer):
    """A device answer as ``/dev/NAME`` ("vdb", "/dev/vdb" and " vdb\\n" all mean the same)."""
    if not isinstance(answer, str) or not answer.strip():
        return None
    name = answer.strip()
    return name if name.startswith("/dev/") else f"/dev/{name}"


@exercise("07.1", title="The guest names the disk", points=2)
def guest_names_the_disk(lab, answer=None):
    """Volume ex1 attached to web1, and the name web1's kernel gave it."""
    volume = _volume(lab, "ex1")
    yield Check("a volume named ex1 exists", volume is not None,
                hint="lab.block_storage.create_volume('ex1', size=1)")
    yield Check("ex1 is attached to web1", volume.attachment_on("web1") is not None,
                hint="lab.block_storage.attach_volume('ex1', 'web1')")
    yield Check("answer names a device", _device(answer) is not None, hint='answer = "/dev/..."')
    web1 = lab.compute.get_server("web1")
    actual = web1.volume_device(volume.id)
    yield Check("answer is the device web1's kernel gave ex1 (find its serial in /sys/block/*/serial)",
                actual is not None and _device(answer) == f"/dev/{actual}",
                hint="ex1's serial is the first 20 characters of its id; lsblk shows it")


def _read_from_volume_file(lab, volume, path):
    """The file ``path`` inside the ext2/3/4 filesystem on ``volume``, read on the host (None if absent).

    The volume's qcow2 is converted to a temporary raw image (``-U``: it may be
    open in a QEMU) and e2fsprogs' debugfs reads the file out of it.
    """
    source = lab.block_storage.backend(volume.volume_type).path(volume.id)
    fd, raw = tempfile.mkstemp(prefix=".check-", suffix=".raw", dir=lab.home)
    os.close(fd)
    try:
        subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", str(source), raw], check=True,
                       capture_output=True)
        out = subprocess.run(["debugfs", "-R", f"cat {path}", raw], capture_output=True, text=True)
        # debugfs says what went wrong on stderr, after its version line, and exits 0 anyway
        complaints = [line for line in out.stderr.splitlines() if line.strip() and not line.startswith("debugfs ")]
        return None if out.returncode or complaints else out.stdout
    finally:
        os.unlink(raw)


@exercise("07.2", title="The data is on the volume, not in the server", points=2)
def data_on_the_volume(lab):
    """hello.txt with 'cloudlab' in it, on a filesystem on volume ex2, which is detached again."""
    volume = _volume(lab, "ex2")
    yield Check("a volume named ex2 exists", volume is not None,
                hint="lab.block_storage.create_volume('ex2', size=1)")
    yield Check("ex2 is detached (available) again", volume.status == "available" and not volume.attachments,
                hint="unmount it in the guest, then volume.detach()")
    text = _read_from_volume_file(lab, volume, "/hello.txt")
    yield Check("ex2's filesystem holds /hello.txt", text is not None,
                hint="attach, mke2fs, mount, write hello.txt at the top of the filesystem, umount, detach")
    yield Check("hello.txt says cloudlab", text.strip() == "cloudlab", hint=f"it says {text.strip()!r}")


@exercise("07.3", title="Grow a volume while it is in use", points=2)
def grow_in_use(lab, answer=None):
    """ex1 grown to 3 GiB while attached to web1, and the size web1's kernel reports for it."""
    volume = _volume(lab, "ex1")
    yield Check("a volume named ex1 exists", volume is not None, hint="do exercise 07.1 first")
    yield Check("ex1 is still attached to web1", volume.attachment_on("web1") is not None,
                hint="grow it while it is attached")
    yield Check("ex1 is 3 GiB", volume.size == 3, hint="lab.block_storage.extend_volume('ex1', 3)")
    yield Check("answer is a number of bytes", isinstance(answer, int) and not isinstance(answer, bool),
                hint="answer = <bytes>, e.g. blockdev --getsize64 /dev/NAME inside web1")
    web1 = lab.compute.get_server("web1")
    name = web1.volume_device(volume.id)
    seen = int(web1.run(f"cat /sys/block/{name}/size").stdout) * 512 if name else None
    yield Check("answer is the size web1's kernel reports for ex1", answer == seen,
                hint="read it inside the guest, after the extend")
    yield Check("that is 3 GiB", seen == 3 * GIB)


@exercise("07.4", title="What the quotas still allow", points=2)
def quota_left(lab, answer=None):
    """How many more 1 GiB volumes the lab's quotas allow now."""
    yield Check("answer is a whole number", isinstance(answer, int) and not isinstance(answer, bool),
                hint="answer = <number of volumes>")
    bs = lab.block_storage
    quotas, usage = bs.quotas, bs.usage()
    left = [getattr(quotas, key) - usage[key] for key in ("volumes", "gigabytes") if getattr(quotas, key) != -1]
    expected = max(0, min(left)) if left else None
    yield Check("the quotas limit the lab at all", expected is not None, hint="a quota of -1 means no limit")
    yield Check("answer is what both quotas (volumes and gigabytes) still allow", answer == expected,
                hint="compare bs.quotas with bs.usage(): the tighter limit decides")
