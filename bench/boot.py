"""Boot benchmark: the compute service against a raw QEMU boot of the same guest.

Prints one ``name value`` line per figure (issue 2's targets in brackets):

    boot_ratio        median(create_server -> ready) / median(raw qemu -> ready)   [<= 1.2]
    ready_s           median seconds from create_server to ready                   [<= 3 under emulation]
    raw_ready_s       median seconds of the raw QEMU boot, for reference
    cow_ratio         median create time from a 1 GiB base image / from a 24 MiB one [<= 1.2]
    concurrent_ready  servers of 10 created at once that reached ready and were all
                      deleted with nothing left                                   [10]

Both boots use the same kernel, initramfs, disk overlay and agent channel and
wait for the same console line; they alternate so that a noisy neighbour slows
both alike.  Run with ``make bench`` or ``python bench/boot.py`` (which keeps the
lab host in its own network namespace, like the tests).
"""

import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("CLOUDLAB_NETNS", "cloudlab-bench")

import cloudlab as cl  # noqa: E402
from cloudlab import host as host_mod  # noqa: E402
from cloudlab.host.qemu import raw_boot  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
CONCURRENT = 10


def figure(name, value):
    """Print one figure as ``name value``."""
    print(f"{name} {value:.3f}" if isinstance(value, float) else f"{name} {value}", flush=True)


def boot_ratio(lab):
    """Alternate compute boots and raw boots; return (median compute, median raw)."""
    compute, image = lab.compute, lab.image.get_image("busybox")
    raw_boot(image, timeout=60)                      # warm the page cache for both
    ours, raw = [], []
    for i in range(ROUNDS):
        started = time.monotonic()
        server = compute.create_server(f"boot{i}", image="busybox", flavor="m1.tiny", timeout=120)
        ours.append(time.monotonic() - started)
        server.delete()
        raw.append(raw_boot(image, timeout=120))
    return statistics.median(ours), statistics.median(raw)


def cow_ratio(lab):
    """Median create time (API call, not boot) from a 1 GiB base over a 24 MiB base."""
    images = lab.image
    for name in ("bench-1g", "bench-24m"):
        if name in images.names():
            images.delete_image(name)
    images.create_image("bench-1g", size_mib=1024)
    images.create_image("bench-24m", size_mib=24)
    times = {"bench-1g": [], "bench-24m": []}
    try:
        for i in range(ROUNDS):
            for name in times:
                started = time.monotonic()
                server = lab.compute.create_server(f"cow{i}-{name[6:]}", image=name, flavor="m1.small",
                                                   wait=False)
                times[name].append(time.monotonic() - started)
                server.delete()
    finally:
        for name in times:
            images.delete_image(name)
    return statistics.median(times["bench-1g"]) / statistics.median(times["bench-24m"])


def concurrent_ready(lab):
    """Create CONCURRENT servers at once; count those ready, then delete all and look for leftovers."""
    compute = lab.compute
    ready, errors = [], []

    def create(i):
        try:
            compute.create_server(f"many{i}", flavor="m1.tiny", timeout=300)
            ready.append(i)
        except cl.CloudlabError as exc:
            errors.append(f"many{i}: {exc}")

    threads = [threading.Thread(target=create, args=(i,)) for i in range(CONCURRENT)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for server in compute.list_servers():
        server.delete()
    conn = lab.host.connect()
    leftovers = [d.name() for d in conn.listAllDomains() if d.name().startswith(lab.prefix)]
    leftovers += [p.name for p in lab.home.iterdir() if p.name.startswith(lab.prefix)]
    for line in errors + [f"left behind: {item}" for item in leftovers]:
        print(f"# {line}", file=sys.stderr)
    return len(ready) if not leftovers else 0


def main():
    """Run every figure and print it."""
    was_up = host_mod.load_state() is not None and host_mod._healthy(host_mod.load_state())
    lab = cl.Lab(name="bench")
    try:
        ours, raw = boot_ratio(lab)
        figure("boot_ratio", ours / raw)
        figure("ready_s", ours)
        figure("raw_ready_s", raw)
        figure("cow_ratio", cow_ratio(lab))
        figure("concurrent_ready", concurrent_ready(lab))
    finally:
        lab.stop()
        if not was_up:
            host_mod.down(quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
