"""`python -m cloudlab host leftovers`: the lab's processes are found whichever namespace they ended up in.

The lab host is up while these run, so the check also lists the host's own daemons;
each test looks for the one process it planted.  The planted processes are real
ones (``sleep``) placed the way the lab's own end up: started by the lab's private
libvirtd (its mount namespace) or by cloudlab itself (its environment mark), in a
network namespace that has since been deleted -- which is how an earlier `host up`
left two dnsmasq processes behind while the check printed "0 leftovers".
"""

import os
import subprocess
import sys
import time

import pytest

import cloudlab as cl
from cloudlab import config, host
from cloudlab.host import netns, ownership
from cloudlab.process import stop_process

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab():
    if not config.netns():
        pytest.skip("lab tests run inside a network namespace: set CLOUDLAB_NETNS (make test does)")
    lab = cl.Lab(name="lefttest")
    lab.host  # noqa: B018 - starts the host service
    yield lab
    lab.stop()


@pytest.fixture
def gone_namespace():
    """A network namespace of this test, deleted once a process is inside (the process keeps it alive)."""
    name = f"{config.netns()}-gone"
    netns.create(name)
    yield name
    netns.delete(name)


def _cli_leftovers():
    result = subprocess.run([sys.executable, "-m", "cloudlab", "host", "leftovers"], capture_output=True, text=True)
    lines = [line.removeprefix("left behind: ") for line in result.stdout.splitlines()]
    return result.returncode, lines


def _listed(pid, lines):
    return any(line.startswith(f"process {pid} ") for line in lines)


def _wait_exec(proc, program="sleep"):
    """Wait until ``proc`` has exec'd ``program`` (nsenter replaces itself with it)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
                if f.read().split(b"\0")[0].endswith(program.encode()):
                    return
        except OSError:
            pass
        time.sleep(0.02)


def test_a_process_of_the_private_libvirtd_in_a_deleted_namespace_is_found(lab, gone_namespace):
    libvirtd = host.load_state().pids["libvirtd"]
    # like the dnsmasq libvirtd starts: its mount namespace, but a network namespace that is gone
    proc = subprocess.Popen(["nsenter", f"--mount=/proc/{libvirtd}/ns/mnt", f"--net={netns.path(gone_namespace)}",
                             "sleep", "300"])
    try:
        _wait_exec(proc)
        netns.delete(gone_namespace)
        assert _listed(proc.pid, host.leftovers())
        status, out = _cli_leftovers()
        assert status == 1 and _listed(proc.pid, out)
    finally:
        stop_process(proc)
    assert not _listed(proc.pid, host.leftovers())


def test_a_process_cloudlab_started_is_found_by_its_environment(lab, gone_namespace):
    proc = subprocess.Popen(["ip", "netns", "exec", gone_namespace, "sleep", "300"], env=ownership.child_env())
    try:
        _wait_exec(proc)
        netns.delete(gone_namespace)
        assert _listed(proc.pid, host.leftovers())
    finally:
        stop_process(proc)
    # the same program without the mark, elsewhere, is not the lab's
    other = subprocess.Popen(["sleep", "300"])
    try:
        assert not _listed(other.pid, host.leftovers())
    finally:
        stop_process(other)


def test_a_pid_file_of_the_lab_names_a_leftover(lab):
    proc = subprocess.Popen(["sleep", "300"])
    pidfile = lab.home / f"{lab.prefix}share.pid"
    try:
        pidfile.write_text(f"{proc.pid}\n")
        assert _listed(proc.pid, host.leftovers())
    finally:
        stop_process(proc)
        pidfile.unlink()


def test_a_pid_file_older_than_its_process_names_nobody(lab):
    # the pid was reused: the process now holding it started after the file was written
    proc = subprocess.Popen(["sleep", "300"])
    pidfile = lab.home / f"{lab.prefix}old.pid"
    try:
        pidfile.write_text(f"{proc.pid}\n")
        os.utime(pidfile, (time.time() - 3600,) * 2)
        assert not _listed(proc.pid, host.leftovers())
    finally:
        stop_process(proc)
        pidfile.unlink()


def test_services_register_what_they_own(lab):
    def finder(scope):
        assert scope.prefix == config.prefix() and scope.home == config.home()
        yield "volume cloudlab-lab-vol1"

    def broken(scope):
        raise RuntimeError("podman is not answering")
        yield   # noqa: unreachable - a generator

    saved = dict(ownership.FINDERS)
    ownership.register("volumes", finder)
    ownership.register("containers", broken)
    try:
        found = ownership.find(only=["volumes", "containers"])
        assert "volume cloudlab-lab-vol1" in found
        # a check that cannot run is reported, never taken for "nothing left"
        assert any(line.startswith("containers:") and "podman is not answering" in line for line in found)
    finally:
        # the real finders come back: later tests (and their leftovers checks) use them
        ownership.FINDERS.clear()
        ownership.FINDERS.update(saved)
    with pytest.raises(cl.InvalidInput):
        ownership.find(only=["no-such-kind"])


def test_registered_by_name_in_the_table(lab):
    # the table form services use: "module:function", imported only when the check runs
    ownership.FINDERS["probe"] = "tests.test_leftovers:_probe_finder"
    try:
        assert ownership.find(only=["probe"]) == ["probe cloudlab-probe"]
    finally:
        del ownership.FINDERS["probe"]


def _probe_finder(scope):
    return ["probe cloudlab-probe"]
