"""Faults a classroom meets: libvirtd, virtlogd or a network's dnsmasq killed (``kill -9``) while a server runs.

The lab must recover in the same Python process, with the same objects: the next call
finds the dead daemon, starts it again in the same network namespace (which is kept,
with everything in it), reconnects, and the running guest is adopted by the new
libvirtd, never rebooted.  While a daemon cannot come back, every call fails the same
way: HostUnreachable, whose fix is ``python -m cloudlab host up``.  At the end ``host
down`` leaves nothing that ``host leftovers`` can find.

The module runs a lab host of its own (namespace ``CLOUDLAB_NETNS`` + ``-fault``, and a
home folder of its own), so that killing its daemons disturbs no other test and its
leftovers can be checked alone: the graded labs run in the background meanwhile
(tests/test_labs_graded.py), with their files in the shared home.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

import pytest

import cloudlab as cl
from cloudlab import config, host
from cloudlab.compute.server import ACTIVE
from cloudlab.host import netns, ownership

pytestmark = [pytest.mark.lab, pytest.mark.slow]

BOOT_TIMEOUT = 90
RECOVER_S = 30         # the target: libvirtd killed -> create_server works again


@pytest.fixture(scope="module")
def fault():
    if not config.netns():
        pytest.skip("lab tests run inside a network namespace: set CLOUDLAB_NETNS (make test does)")
    ns = f"{config.netns()}-fault"
    home = tempfile.mkdtemp(prefix="cl-", dir="/tmp")       # short: the host's libvirt sockets live under it
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CLOUDLAB_NETNS", ns)
        env.setenv("CLOUDLAB_HOME", home)
        host.up()
        lab = cl.Lab(name="fault")
        try:
            server = lab.compute.create_server("f1", timeout=BOOT_TIMEOUT)
            yield SimpleNamespace(lab=lab, server=server, ns=ns)
        finally:
            try:
                lab.stop()
            except cl.CloudlabError:
                pass
            host.down(quiet=True)
            shutil.rmtree(home, ignore_errors=True)


def _lab_processes():
    return [proc for proc, _ in ownership.Scope.current().processes]


def _qemu_pid(server):
    found = [p.pid for p in _lab_processes() if f"guest={server.domain_name}," in p.cmdline]
    assert len(found) == 1, found
    return found[0]


def _dnsmasq(lab):
    return sorted(p.pid for p in _lab_processes() if p.name == "dnsmasq" and f"/{lab.host.network}.conf" in p.cmdline)


def _all_in_the_namespace(ns):
    """Every process of the lab host lives in its namespace: none was left in an old one."""
    inode = os.stat(netns.path(ns)).st_ino
    outside = [(p.pid, p.name) for p in _lab_processes() if p.net_inode != inode]
    assert outside == []


def _create_until_it_works(lab, name, since):
    """create_server, retried while the host is unreachable; returns the server and the seconds since ``since``."""
    while True:
        try:
            server = lab.compute.create_server(name, timeout=BOOT_TIMEOUT)
            return server, time.monotonic() - since
        except cl.HostUnreachable:
            if time.monotonic() - since > RECOVER_S:
                raise
            time.sleep(0.5)


def test_killed_libvirtd_comes_back_and_the_same_objects_work(fault):
    lab, server = fault.lab, fault.server
    state = host.load_state()
    qemu, dnsmasq = _qemu_pid(server), _dnsmasq(lab)
    os.kill(state.pids["libvirtd"], signal.SIGKILL)
    killed = time.monotonic()
    second, recover_s = _create_until_it_works(lab, "f2", killed)
    assert recover_s <= RECOVER_S
    assert host.load_state().pids["libvirtd"] != state.pids["libvirtd"]
    # the same Server object, the same guest (adopted, not rebooted), the same namespace
    assert server.status == ACTIVE
    assert server.run("echo still here").stdout == "still here\n"
    assert _qemu_pid(server) == qemu
    assert [s.name for s in lab.compute.list_servers()] == ["f1", "f2"]
    assert host.load_state().netns_inode == os.stat(netns.path(fault.ns)).st_ino == state.netns_inode
    assert _dnsmasq(lab) == dnsmasq
    _all_in_the_namespace(fault.ns)
    assert second.wait_for_address(timeout=30)
    second.delete()


def test_killed_virtlogd_comes_back(fault):
    lab, server = fault.lab, fault.server
    state = host.load_state()
    os.kill(state.pids["virtlogd"], signal.SIGKILL)
    killed = time.monotonic()
    third, recover_s = _create_until_it_works(lab, "f3", killed)      # a domain start needs virtlogd
    assert recover_s <= RECOVER_S
    assert host.load_state().pids["virtlogd"] != state.pids["virtlogd"]
    assert server.run("true").ok
    _all_in_the_namespace(fault.ns)
    third.delete()


def test_killed_dnsmasq_comes_back_with_its_leases(fault):
    lab, server = fault.lab, fault.server
    address = server.wait_for_address(timeout=30)
    pidfile = host.state_dir() / "run" / "network" / f"{lab.host.network}.pid"
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    killed = time.monotonic()
    fourth, _ = _create_until_it_works(lab, "f4", killed)
    assert fourth.wait_for_address(timeout=30)           # DHCP answers again
    assert time.monotonic() - killed <= RECOVER_S + 30
    assert server.addresses == address                    # the lease survived in libvirt's status file
    assert len(_dnsmasq(lab)) == 2                        # dnsmasq and its lease helper, once
    _all_in_the_namespace(fault.ns)
    fourth.delete()


def test_while_libvirtd_cannot_come_back_every_call_fails_the_same_way(fault, monkeypatch):
    lab, server = fault.lab, fault.server
    state = host.load_state()
    qemu = _qemu_pid(server)

    def cannot_start(*args, **kwargs):
        raise cl.CloudlabError("libvirtd would not start (this test stops it)")

    monkeypatch.setattr(host, "_start_private_daemons", cannot_start)
    os.kill(state.pids["libvirtd"], signal.SIGKILL)
    calls = {
        "server.status": lambda: server.status,
        "server.addresses": lambda: server.addresses,
        "server.run": lambda: server.run("true"),
        "server.stop": lambda: server.stop(),
        "list_servers": lab.compute.list_servers,
        "get_server": lambda: lab.compute.get_server("f9"),     # not known yet: libvirt is asked
        "create_server": lambda: lab.compute.create_server("f5", timeout=BOOT_TIMEOUT),
        "dhcp_pool": lab.host.dhcp_pool,
    }
    for what, call in calls.items():
        try:
            call()
            pytest.fail(f"{what} did not raise while libvirtd is down")
        except cl.HostUnreachable as err:
            assert err.fix == host.HOST_UP_FIX, what
    monkeypatch.undo()
    # the learner's fix, from a terminal: the daemon comes back, nothing else changes
    env = {**os.environ, "CLOUDLAB_NETNS": fault.ns}
    result = subprocess.run([sys.executable, "-m", "cloudlab", "host", "up"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "restarted libvirtd" in result.stdout and "kept" in result.stdout
    # ... and the same objects of this process work again
    assert server.status == ACTIVE and server.run("true").ok
    assert _qemu_pid(server) == qemu
    assert not (host.state_dir() / "run" / "qemu" / "cloudlab-fault-f5.xml").exists()
    assert [s.name for s in lab.compute.list_servers()] == ["f1"]
    assert not list(lab.home.glob(f"{lab.prefix}f5*"))
    _all_in_the_namespace(fault.ns)


def test_a_lab_network_that_vanished_is_made_again_with_its_guests_plugged_in(fault):
    lab, server = fault.lab, fault.server
    subnet, gateway = lab.host.subnet, lab.host.gateway
    lab.host.virsh("net-destroy", lab.host.network)       # its bridge goes, and lets go of the guest's NIC
    assert server.status == ACTIVE                         # the next call notices and makes it again
    assert lab.host.connect().networkLookupByName(lab.host.network).isActive()
    assert (lab.host.subnet, lab.host.gateway) == (subnet, gateway)
    # the running guest reaches the new bridge (same address, same gateway MAC): nothing to redo inside
    assert server.run(f"ping -c 1 -W 5 {gateway}").ok


def test_down_leaves_nothing_behind(fault):
    lab = fault.lab
    lab.stop()
    host.down(quiet=True)
    assert not netns.exists(fault.ns)
    assert host.leftovers() == []
    env = {**os.environ, "CLOUDLAB_NETNS": fault.ns}
    result = subprocess.run([sys.executable, "-m", "cloudlab", "host", "leftovers"], capture_output=True, text=True,
                            env=env)
    assert result.returncode == 0 and "0 leftovers" in result.stdout, result.stdout
