"""The lab host: private libvirtd in the test's network namespace, lab networks, clean-up, doctor.

These run against the real daemon `make test` brings up (or that the first
test brings up itself) inside the namespace named by CLOUDLAB_NETNS.
"""

import ipaddress
import subprocess

import pytest

import cloudlab as cl
from cloudlab import config, host
from cloudlab.errors import MissingPrerequisite

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab():
    lab = cl.Lab(name="hosttest")
    lab.host  # noqa: B018 - starts the host service
    yield lab
    lab.stop()


def test_host_lives_in_the_test_namespace(lab):
    h = lab.host
    assert h.netns and h.netns == config.netns()      # make test and conftest always set one
    # the lab's bridge exists inside the namespace and not on the machine itself
    inside = subprocess.run(["ip", "-n", h.netns, "link", "show", h.bridge], capture_output=True)
    outside = subprocess.run(["ip", "link", "show", h.bridge], capture_output=True)
    assert inside.returncode == 0 and outside.returncode != 0
    assert h.domain_type in ("kvm", "qemu") and h.accel in ("kvm", "tcg")


def test_lab_network_is_isolated_with_dhcp(lab):
    h = lab.host
    xml = h.virsh("net-dumpxml", h.network)     # virsh, a real client, reaches the same daemon
    assert "<forward" not in xml                # isolated: nothing is routed off the host
    assert "<dhcp>" in xml
    assert h.subnet.subnet_of(ipaddress.ip_network("10.213.0.0/16"))
    assert h.network.startswith(lab.prefix)


def test_choose_subnet_skips_used_ones():
    used = [ipaddress.ip_network("10.213.0.0/24"), ipaddress.ip_network("10.213.1.0/25")]
    assert host.choose_subnet(used) == ipaddress.ip_network("10.213.2.0/24")
    with pytest.raises(cl.CloudlabError):
        host.choose_subnet([ipaddress.ip_network("10.0.0.0/8")])


def _stub_domain(name):
    # defined, never started: enough to see what clean() removes
    return (f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>"
            "<os><type arch='x86_64'>hvm</type></os></domain>")


def test_clean_removes_exactly_the_prefixed_resources(lab):
    conn = lab.host.connect()
    conn.defineXML(_stub_domain(f"{lab.prefix}leftover"))
    other = conn.defineXML(_stub_domain("someone-elses"))
    (lab.home / f"{lab.prefix}leftover.qcow2").write_bytes(b"x")
    (lab.home / "not-ours.txt").write_bytes(b"x")
    try:
        removed = host.clean(lab.prefix, conn=conn)
        names = [d.name() for d in conn.listAllDomains()]
        assert f"domain {lab.prefix}leftover" in removed
        assert f"{lab.prefix}leftover" not in names and "someone-elses" in names
        assert not (lab.home / f"{lab.prefix}leftover.qcow2").exists()
        assert (lab.home / "not-ours.txt").exists()
        assert f"network {lab.host.network}" in removed
    finally:
        other.undefine()
        (lab.home / "not-ours.txt").unlink()
        lab.host._ensure_network()             # the module's other tests keep their network


def test_unreachable_daemon_names_the_fix(tmp_path):
    with pytest.raises(MissingPrerequisite) as err:
        host.open_connection(f"qemu:///system?socket={tmp_path}/none")
    assert "host up" in str(err.value)


def test_doctor_passes_on_a_running_host(lab):
    report = cl.doctor()
    assert report.ok, str(report)
    names = [row.name for row in report.rows]
    for needed in ("qemu-system-x86_64", "gcc", "libvirtd", "guest image", "accelerator", "network namespace"):
        assert needed in names
    assert "<table>" in report._repr_html_()


def test_doctor_command_exit_status():
    ok = subprocess.run([*_python(), "-m", "cloudlab", "doctor"], capture_output=True, text=True)
    assert ok.returncode == 0 and "the lab can run" in ok.stdout
    env = {**__import__("os").environ, "CLOUDLAB_NETNS": "cloudlab-nonexistent-ns",
           "PATH": "/nonexistent"}
    bad = subprocess.run([*_python(), "-m", "cloudlab", "doctor"], capture_output=True, text=True, env=env)
    assert bad.returncode == 1
    assert "sudo apt-get install qemu-system-x86" in bad.stdout


def _python():
    import sys
    return [sys.executable]


def test_a_host_of_another_folder_is_refused_in_a_namespace_in_use(lab, tmp_path):
    """Another CLOUDLAB_HOME with the same CLOUDLAB_NETNS: refused, and the running host keeps its daemons."""
    before = host.load_state().pids
    env = {**__import__("os").environ, "CLOUDLAB_HOME": str(tmp_path / "other")}
    up = subprocess.run([*_python(), "-m", "cloudlab", "host", "up"], capture_output=True, text=True, env=env,
                        timeout=120)
    assert up.returncode != 0
    assert f"network namespace {lab.host.netns} is in use" in up.stdout + up.stderr
    down = subprocess.run([*_python(), "-m", "cloudlab", "host", "down"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert down.returncode == 0, down.stderr
    assert host.load_state().pids == before
    assert all(host._pid_alive(pid) for pid in before.values())
    assert lab.host.state.uri == host.up().uri        # still healthy: nothing was swept
