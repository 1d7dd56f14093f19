"""Soak benchmark: a classroom's day of servers in a few minutes (issue 9's targets in brackets).

Prints one ``name value`` line per figure:

    cycles_ok          of 100 create -> address -> delete cycles, how many got an address   [100]
    recover_s          libvirtd killed (kill -9) with a server running -> the same process's
                       create_server succeeds again, in seconds                             [<= 30]
    leaked             processes, domains, volumes, files, leases or namespaces of the lab
                       left after the run (host down, then host leftovers)                  [0]
    pool               addresses in the lab network's DHCP pool during the run: fewer than
                       the cycles, so a lease that is not released shows as a failed cycle
    cycle_s            median seconds of one cycle
    recover_over_boot  recover_s over the median create_server of the cycles, measured in
                       the same run: what a crash costs beyond one ordinary boot

The run has a lab host of its own, in network namespace ``CLOUDLAB_NETNS-soak``
(``cloudlab-bench-soak`` by default), so that killing its libvirtd disturbs nothing
else and its leftovers are its own.  ``BENCH_SOAK_CYCLES`` and ``BENCH_SOAK_POOL`` change
the counts (defaults 100 and 20).
"""

import os
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["CLOUDLAB_NETNS"] = os.environ.get("CLOUDLAB_NETNS", "cloudlab-bench") + "-soak"
CYCLES = int(os.environ.get("BENCH_SOAK_CYCLES", "100"))
POOL = int(os.environ.get("BENCH_SOAK_POOL", "20"))
os.environ["CLOUDLAB_DHCP_POOL"] = str(POOL)

import cloudlab as cl  # noqa: E402
from cloudlab import host  # noqa: E402

BOOT_TIMEOUT = 120


def figure(name, value):
    """Print one figure as ``name value``."""
    print(f"{name} {value:.3f}" if isinstance(value, float) else f"{name} {value}", flush=True)


def note(line):
    """A line for the reader, on stderr (stdout holds only figures)."""
    print(f"# {line}", file=sys.stderr, flush=True)


def snapshot(lab):
    """Domains, storage volumes, leases and files of the lab: what the cycles must leave as they found it."""
    conn = lab.host.connect()
    net = conn.networkLookupByName(lab.host.network)
    return {
        "domain": {d.name() for d in conn.listAllDomains()},
        "volume": {v for pool in conn.listAllStoragePools() for v in pool.listVolumes()},
        "lease": {(lease["ipaddr"], lease["mac"]) for lease in net.DHCPLeases()},
        "file": {p.name for p in lab.home.iterdir()},
    }


def cycles(lab):
    """Create a server, wait for its address, delete it, CYCLES times; returns (ok, seconds per cycle, create seconds)."""
    ok, cycle_s, create_s = 0, [], []
    for i in range(CYCLES):
        started = time.monotonic()
        server = None
        try:
            server = lab.compute.create_server(f"s{i}", timeout=BOOT_TIMEOUT)
            create_s.append(time.monotonic() - started)
            server.wait_for_address(timeout=30)
            ok += 1
        except cl.CloudlabError as exc:
            note(f"cycle {i}: {exc.message.splitlines()[0]}")
        finally:
            if server is not None:
                server.delete()
        cycle_s.append(time.monotonic() - started)
        if (i + 1) % 10 == 0:
            note(f"{i + 1} cycles, {ok} with an address")
    return ok, statistics.median(cycle_s), statistics.median(create_s) if create_s else float("nan")


def recover(lab):
    """Kill libvirtd with a server running; seconds until create_server works again (the guest must still answer)."""
    running = lab.compute.create_server("running", timeout=BOOT_TIMEOUT)
    os.kill(host.load_state().pids["libvirtd"], signal.SIGKILL)
    killed = time.monotonic()
    while True:
        try:
            after = lab.compute.create_server("after", timeout=BOOT_TIMEOUT)
            break
        except cl.HostUnreachable:
            if time.monotonic() - killed > 120:
                raise
            time.sleep(0.2)
    recover_s = time.monotonic() - killed
    if not running.run("true").ok:
        note("the server that ran through the crash does not answer")
        recover_s = float("inf")
    after.delete()
    running.delete()
    return recover_s


def main():
    """Run the cycles and the crash, then take the host down and count what is left."""
    if host.load_state() is not None:
        host.down(quiet=True)         # an earlier run's host: start from nothing
    host.up(progress=note)
    lab = cl.Lab(name="soakbench")    # not tests/test_soak.py's lab: a lab's files live in a folder named after it
    leaked = []
    try:
        before = snapshot(lab)
        ok, cycle_s, create_s = cycles(lab)
        recover_s = recover(lab)
        time.sleep(0.5)               # a released lease leaves dnsmasq's table a moment later
        after = snapshot(lab)
        for kind in before:
            leaked += [f"{kind} {item}" for item in sorted(map(str, after[kind] - before[kind]))]
    finally:
        lab.stop()
        host.down(quiet=True)
    leaked += host.leftovers()
    for item in leaked:
        note(f"left behind: {item}")
    figure("cycles_ok", ok)
    figure("recover_s", recover_s)
    figure("leaked", len(leaked))
    figure("pool", POOL)
    figure("cycle_s", cycle_s)
    figure("recover_over_boot", recover_s / create_s)
    return 0 if ok == CYCLES and recover_s <= 30 and not leaked else 1


if __name__ == "__main__":
    sys.exit(main())
