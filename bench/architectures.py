"""Architectures benchmark: a three-node lab against the all-in-one one (issue 13's targets).

Prints one ``name value`` line per figure (targets in brackets):

    three_node_up_s        a three-node lab from nothing to every service answering: the nodes'
                           libvirtds, every node's NTP server (synced from the controller), the
                           controller's DHCP, the storage node's NBD daemon, the object store
                           (proxy and object server), Keystone, glance-api and the other APIs   [<= 30]
    remote_create_ratio    median create -> ACTIVE of a server on a compute node of the three-node
                           lab / of one in the all-in-one lab, runs alternated                     [<= 1.3]
    migration_downtime_ms  longest gap between the guest's answers to ICMP echo requests sent every
                           50 ms from the controller over the tenant network, during a live
                           migration between the two compute nodes                                 [<= 1000]
    remote_volume_ratio    MB/s of a 32 MiB sequential direct write to a volume served by the storage
                           node over NBD / to a local (file) volume, same guest                       [>= 0.5]

with the figures behind each ratio (``*_s``, ``*_mb_s``).  The lab host stays in its own
network namespace (``CLOUDLAB_NETNS``, default ``cloudlab-bench``).
"""

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("CLOUDLAB_NETNS", "cloudlab-bench")

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
WRITE_MIB = 32
TIMEOUT = 120


def figure(name, value):
    """Print one figure as ``name value``."""
    print(f"{name} {value:.3f}" if isinstance(value, float) else f"{name} {value}", flush=True)


def write_mb_s(server, device):
    """MB/s of a 32 MiB sequential direct write to ``device`` in ``server`` (busybox's dd prints no rate: timed here)."""
    start = time.monotonic()
    result = server.run(f"dd if=/dev/zero of={device} bs=1M count={WRITE_MIB} oflag=direct 2>&1", timeout=TIMEOUT)
    seconds = time.monotonic() - start
    if not result.ok:
        raise RuntimeError(f"dd failed: {result.stdout} {result.stderr}")
    return WRITE_MIB * 1.048576 / seconds


def main():
    """Bring up the layouts, measure, print the figures."""
    import cloudlab as cl
    from cloudlab import host as host_mod
    host_mod.up(progress=lambda line: None)

    # three_node_up_s: from nothing to every service answering
    t0 = time.monotonic()
    three = cl.Lab(cl.ThreeNode(compute_nodes=2), name="bench3")
    aio = None
    try:
        nodes = three.nodes
        for node in nodes.compute_nodes:
            node.connect().getHostname()
        three.block_storage.backend("nbd")
        three.object_store  # noqa: B018
        three.api  # noqa: B018 - Keystone and glance-api on the controller, the other APIs here
        while not all(row["stratum"] for row in nodes.time().values()):
            time.sleep(0.1)
        figure("three_node_up_s", time.monotonic() - t0)

        # remote_create_ratio: alternate a server on a compute node and one in the all-in-one lab
        aio = cl.Lab(cl.AllInOne(), name="bench1")
        aio.compute  # noqa: B018
        remote, local = [], []
        for i in range(ROUNDS):
            for lab, times in ((three, remote), (aio, local)):
                t = time.monotonic()
                server = lab.compute.create_server(f"c{i}", timeout=TIMEOUT)
                times.append(time.monotonic() - t)
                server.delete()
        figure("remote_create_s", statistics.median(remote))
        figure("local_create_s", statistics.median(local))
        figure("remote_create_ratio", statistics.median(remote) / statistics.median(local))

        # migration_downtime_ms: ICMP from the controller over VXLAN, every 50 ms (cloudlab.host.probe)
        guest = three.compute.create_server("mig", host="compute1", timeout=TIMEOUT)
        guest.wait_for_address()
        report = guest.live_migrate("compute2", timeout=TIMEOUT, watch=True)
        figure("migration_s", report["seconds"])
        figure("migration_answers", report["answers"])
        figure("migration_downtime_ms", report["downtime_ms"])

        # remote_volume_ratio: NBD from the storage node vs a local file volume, same guest
        over_nbd = three.block_storage.create_volume("nbdvol", size=1, volume_type="nbd")
        local_file = three.block_storage.create_volume("filevol", size=1, volume_type="file")
        dev_nbd = three.block_storage.attach_volume(over_nbd, guest).device
        dev_file = three.block_storage.attach_volume(local_file, guest).device
        nbd_rates, file_rates = [], []
        for _ in range(ROUNDS):
            nbd_rates.append(write_mb_s(guest, dev_nbd))
            file_rates.append(write_mb_s(guest, dev_file))
        figure("remote_volume_mb_s", statistics.median(nbd_rates))
        figure("local_volume_mb_s", statistics.median(file_rates))
        figure("remote_volume_ratio", statistics.median(nbd_rates) / statistics.median(file_rates))
    finally:
        if aio is not None:
            aio.stop()
        three.stop()


if __name__ == "__main__":
    main()
