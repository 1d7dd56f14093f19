"""Storage benchmark: volumes and shares in real guests, against the disks beside them.

Prints one ``name value`` line per figure (issue 11's targets in brackets):

    attach_visible_s     median seconds from the attach call to the disk being visible in the guest  [<= 2]
    volume_write_ratio   sequential write MB/s to an attached volume / to the same guest's root disk [>= 0.8]
    share_read_ratio     MB/s reading 64 MiB from the NFS share / from an attached volume, same guest [>= 0.3]
    share_consistency    files of 20 written and closed on server A that server B reads whole at once [20]

and, for reference, the MB/s behind each ratio (``*_mb_s``).  Writes are 32 MiB
of zeros with ``dd ... conv=fsync`` into a file on an ext4 filesystem on each disk
(both qcow2 files on the host); reads follow a ``drop_caches`` in the guest, so
they come from the device or the network.  Runs alternate so that a
noisy neighbour slows both sides alike.  Run with ``make bench`` or
``python bench/storage.py`` (the lab host stays in its own network namespace).
"""

import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("CLOUDLAB_NETNS", "cloudlab-bench")

import cloudlab as cl  # noqa: E402
from cloudlab import host as host_mod  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
MIB = 64            # read: the 64 MiB file
WRITE_MIB = 32      # write: the root disk's filesystem (the image's 64 MiB ext4) has ~50 MiB free
FILES = 20
TIMEOUT = 300


def figure(name, value):
    """Print one figure as ``name value``."""
    print(f"{name} {value:.3f}" if isinstance(value, float) else f"{name} {value}", flush=True)


def run(server, command):
    """Run ``command`` in ``server`` and return its output; a failure stops the benchmark."""
    result = server.run(command, timeout=TIMEOUT)
    if not result.ok:
        raise cl.CloudlabError(f"{server.name}: {command!r} failed: {result.stderr.strip()}")
    return result.stdout


def mb_s(server, command, mib):
    """Run a dd moving ``mib`` MiB in the guest; MB/s by the guest's own clock (busybox adjtimex, in µs).

    Raises:
        CloudlabError: the dd failed (a full filesystem, say), so no figure is made of half a run.
    """
    clock = "$(adjtimex | awk '/tv_sec/ {s = $2} /tv_usec/ {u = $2} END {printf \"%d.%06d\", s, u}')"
    out = run(server, f"s={clock}; {command} 2>/dev/null || echo FAILED; e={clock}; echo $s $e")
    if "FAILED" in out:
        raise cl.CloudlabError(f"{server.name}: {command!r} did not complete")
    start, end = (float(x) for x in out.split()[-2:])
    return mib * 2**20 / 1e6 / max(end - start, 0.01)


def attach_visible(lab, server):
    """Median seconds of attach_volume (which returns once the guest sees the disk by its serial)."""
    volume = lab.block_storage.create_volume("bench-attach", size=1)
    times = []
    for _ in range(ROUNDS):
        started = time.monotonic()
        attachment = volume.attach(server)
        elapsed = time.monotonic() - started
        # checked independently of the API: the guest lists the volume's serial
        name = attachment.device.rsplit("/", 1)[1]
        assert run(server, f"cat /sys/block/{name}/serial").strip() == volume.id[:20]
        times.append(elapsed)
        volume.detach()
    volume.delete()
    return statistics.median(times)


def write_ratio(lab, server):
    """(volume MB/s, root disk MB/s): medians of alternating 64 MiB fsync'd writes into ext4 files.

    The volume is made from an image, so it holds an ext4 filesystem as the root disk
    does (busybox's mke2fs would make ext2, and the ratio would measure the filesystems).
    """
    if "bench-ext4" in lab.image.names():
        lab.image.delete_image("bench-ext4")
    lab.image.create_image("bench-ext4", size_mib=256)
    try:
        volume = lab.block_storage.create_volume("bench-write", image="bench-ext4")
    finally:
        lab.image.delete_image("bench-ext4")
    device = volume.attach(server).device
    run(server, f"mkdir -p /mnt/vol && mount {device} /mnt/vol")
    on_volume, on_root = [], []
    for _ in range(ROUNDS):
        for target, results in (("/mnt/vol/w", on_volume), ("/root/w", on_root)):
            run(server, f"rm -f {target}; sync")
            results.append(mb_s(server, f"dd if=/dev/zero of={target} bs=1M count={WRITE_MIB} conv=fsync",
                                WRITE_MIB))
            run(server, f"rm -f {target}; sync")
    return statistics.median(on_volume), statistics.median(on_root)


def read_ratio(lab, server, share):
    """(share MB/s, volume MB/s): medians of 64 MiB reads after dropping the guest's caches."""
    run(server, share.mount_command("/mnt/share"))
    for target in ("/mnt/share/r", "/mnt/vol/r"):
        run(server, f"dd if=/dev/zero of={target} bs=1M count={MIB} conv=fsync 2>/dev/null")
    on_share, on_volume = [], []
    for _ in range(ROUNDS):
        for target, results in (("/mnt/share/r", on_share), ("/mnt/vol/r", on_volume)):
            run(server, "sync; echo 3 > /proc/sys/vm/drop_caches")
            results.append(mb_s(server, f"dd if={target} of=/dev/null bs=1M", MIB))
    return statistics.median(on_share), statistics.median(on_volume)


def consistency(lab, writer, reader, share):
    """Of FILES files written and closed on ``writer``, how many ``reader`` reads whole right after."""
    run(reader, share.mount_command("/mnt/share"))
    run(reader, "ls /mnt/share > /dev/null")                 # the reader has the directory cached
    sums = run(writer, f"for i in $(seq {FILES}); do dd if=/dev/urandom of=/mnt/share/c$i bs=64k count=1 "
                       "2>/dev/null; md5sum /mnt/share/c$i; done")
    read = run(reader, f"for i in $(seq {FILES}); do md5sum /mnt/share/c$i 2>/dev/null; done")
    written = set(re.findall(r"^([0-9a-f]{32})\s", sums, re.M))
    return len(written & set(re.findall(r"^([0-9a-f]{32})\s", read, re.M)))


def main():
    """Run every figure and print it."""
    was_up = host_mod.load_state() is not None and host_mod._healthy(host_mod.load_state())
    lab = cl.Lab(name="bench-storage")
    try:
        a = lab.compute.create_server("a", flavor="m1.small", timeout=TIMEOUT, wait=False)
        b = lab.compute.create_server("b", flavor="m1.tiny", timeout=TIMEOUT, wait=False)
        for server in (a, b):
            server.wait(timeout=TIMEOUT)
        addresses = {s.name: s.wait_for_address(timeout=120)[lab.host.network][0] for s in (a, b)}
        figure("attach_visible_s", attach_visible(lab, a))
        volume_mb_s, root_mb_s = write_ratio(lab, a)
        figure("volume_write_ratio", volume_mb_s / root_mb_s)
        figure("volume_write_mb_s", volume_mb_s)
        figure("root_write_mb_s", root_mb_s)
        share = lab.shared_file_system.create_share("bench", size=1)
        for address in addresses.values():
            share.allow(address, "rw")
        share_mb_s, volume_read_mb_s = read_ratio(lab, a, share)
        figure("share_read_ratio", share_mb_s / volume_read_mb_s)
        figure("share_read_mb_s", share_mb_s)
        figure("volume_read_mb_s", volume_read_mb_s)
        figure("share_consistency", consistency(lab, a, b, share))
        for server in (a, b):
            server.run("umount /mnt/share; umount /mnt/vol", timeout=60)
    finally:
        lab.stop()
        if not was_up:
            host_mod.down(quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
