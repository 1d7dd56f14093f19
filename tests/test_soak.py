"""Soak: servers created and deleted again and again, and the lab ends where it started.

A classroom creates and deletes servers by the hundred.  A deleted server used to keep
its DHCP lease for the whole lease time (an hour), so after about as many cycles as the
pool has addresses a new server reached ACTIVE with no address.  Here the lab network's
pool is made small (``CLOUDLAB_DHCP_POOL``) so that a lease not released on delete
exhausts it within a few cycles: each cycle must get an address, and afterwards the
pool, the lab's folder, libvirt's domains, storage volumes, the leases and the lab's
processes are as they were before.  ``bench/soak.py`` runs the full 100 cycles.

The pool is also filled on purpose, by real DHCP clients (busybox ``udhcpc`` on veth
pairs plugged into the lab bridge, inside the lab's namespace), to check that a server
without an address is told why.
"""

import collections
import contextlib
import os
import subprocess
import time

import pytest

import cloudlab as cl
from cloudlab import config
from cloudlab.compute.server import ACTIVE
from cloudlab.host import netns, ownership

pytestmark = [pytest.mark.lab, pytest.mark.slow]

POOL = 2
CYCLES = int(os.environ.get("CLOUDLAB_SOAK_CYCLES", 2 * POOL))   # a leak fails cycle POOL + 1
LEASE_MINUTES = 30
BOOT_TIMEOUT = 90


@pytest.fixture(scope="module")
def lab():
    if not config.netns():
        pytest.skip("lab tests run inside a network namespace: set CLOUDLAB_NETNS (make test does)")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CLOUDLAB_DHCP_POOL", str(POOL))
        env.setenv("CLOUDLAB_DHCP_LEASE_MINUTES", str(LEASE_MINUTES))
        lab = cl.Lab(name="soak")
        lab.host  # noqa: B018 - creates the lab network with the settings above
    yield lab
    lab.stop()


def snapshot(lab):
    """What a cycle must leave as it found it."""
    conn = lab.host.connect()
    net = conn.networkLookupByName(lab.host.network)
    processes = collections.Counter(proc.name for proc, _ in ownership.Scope.current().processes
                                    if proc.name != "libvirt_leaseshelper")    # dnsmasq's short-lived helper
    return {
        "domains": sorted(d.name() for d in conn.listAllDomains()),
        "volumes": sorted(v for pool in conn.listAllStoragePools() for v in pool.listVolumes()),
        "leases": sorted((lease["ipaddr"], lease["mac"]) for lease in net.DHCPLeases()),
        "files": sorted(p.name for p in lab.home.iterdir()),
        "processes": dict(processes),
    }


def _same_as(lab, before, timeout=5.0):
    """Wait until the snapshot equals ``before``; returns what still differs ({} when all is back)."""
    deadline = time.monotonic() + timeout
    while True:
        now = snapshot(lab)
        differs = {key: (before[key], now[key]) for key in before if now[key] != before[key]}
        if not differs or time.monotonic() > deadline:
            return differs
        time.sleep(0.1)


def _leases(lab):
    net = lab.host.connect().networkLookupByName(lab.host.network)
    return {lease["mac"]: lease["ipaddr"] for lease in net.DHCPLeases()}


def _wait_until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@contextlib.contextmanager
def _dhcp_clients(lab, count):
    """``count`` real DHCP clients holding leases of the lab network; their leases released afterwards."""
    ns, bridge = lab.host.netns, lab.host.bridge
    ip = ["ip", "-n", ns]
    names, macs = [], []
    try:
        for i in range(count):
            name = f"clsoak{i}"
            names.append(name)
            subprocess.run([*ip, "link", "add", name, "type", "veth", "peer", "name", f"{name}p"], check=True)
            subprocess.run([*ip, "link", "set", f"{name}p", "master", bridge, "up"], check=True)
            subprocess.run([*ip, "link", "set", name, "up"], check=True)
            # -q: quit once leased, without releasing; the script does nothing (no address is set)
            subprocess.run(netns.enter_args(ns) + ["busybox", "udhcpc", "-i", name, "-n", "-q", "-f",
                                                   "-t", "10", "-T", "1", "-s", "/bin/true"],
                           check=True, capture_output=True, timeout=30)
            mac = subprocess.run(["ip", "netns", "exec", ns, "cat", f"/sys/class/net/{name}/address"],
                                 capture_output=True, text=True, check=True).stdout.strip()
            macs.append(mac)
        yield macs
    finally:
        lab.host.release_leases(macs)
        for name in names:
            subprocess.run([*ip, "link", "delete", name], capture_output=True)


def test_pool_size_and_lease_time_are_settings(lab):
    pool = lab.host.dhcp_pool()
    assert pool["size"] == POOL and pool["lease_minutes"] == LEASE_MINUTES
    assert pool["first"].endswith(".100") and pool["last"].endswith(f".{99 + POOL}")
    assert pool["leased"] == 0


def test_a_server_in_a_full_pool_is_told_why_and_gets_an_address_once_one_is_free(lab):
    compute = lab.compute
    before = snapshot(lab)
    with _dhcp_clients(lab, POOL) as macs:
        assert set(macs) <= set(_leases(lab))
        server = compute.create_server("full", timeout=BOOT_TIMEOUT)
        assert server.status == ACTIVE
        with pytest.raises(cl.ResourceTimeout) as err:
            server.wait_for_address(timeout=5)
        message = str(err.value)
        assert "pool is full" in message and f"all {POOL} addresses" in message
        assert "no server has" in message           # the clients' MACs belong to no server
        assert "CLOUDLAB_DHCP_POOL" in err.value.fix
    # the clients' leases were released: the server's DHCP client, still trying, gets one
    assert server.wait_for_address(timeout=30)
    server.delete()
    assert _same_as(lab, before) == {}


def test_create_address_delete_cycles_leave_nothing(lab):
    compute = lab.compute
    before = snapshot(lab)
    got = []
    for cycle in range(CYCLES):
        server = compute.create_server(f"c{cycle}", timeout=BOOT_TIMEOUT)
        addresses = server.wait_for_address(timeout=30)[lab.host.network]
        got.append(addresses[0])
        mac = server.mac_addresses[0]
        server.delete()
        # released at once, not after the lease time
        assert _wait_until(lambda: mac not in _leases(lab)), f"cycle {cycle}: the lease of {mac} is still held"
    assert len(got) == CYCLES > POOL
    assert len(set(got)) <= POOL          # addresses were reused, not new ones taken
    assert _same_as(lab, before) == {}        # (before, now) of whatever differs
    assert lab.host.dhcp_pool()["leased"] == 0
