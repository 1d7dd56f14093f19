"""Interop with real third parties: chrony and ntpsec read cloudlab's server; cloudlab reads chrony's.

chronyd runs with ``-x`` (never touches the system clock) on a loopback port; ntpsec's
``ntpdate`` only speaks to port 123, so that test runs our server and ntpdate inside a
network namespace the test creates and removes.  Every process here is ended by its PID.
"""

import os
import re
import shutil
import subprocess
import sys
import time

import ntplib
import pytest

from cloudlab import config
from cloudlab.ntp import NTPServer, exchange, query
from cloudlab.process import stop_process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHRONYD = shutil.which("chronyd") or ("/usr/sbin/chronyd" if os.path.exists("/usr/sbin/chronyd") else None)
NTPDATE = shutil.which("ntpdate") or ("/usr/sbin/ntpdate" if os.path.exists("/usr/sbin/ntpdate") else None)
needs_chrony = pytest.mark.skipif(CHRONYD is None, reason="chronyd is not installed (Debian package chrony: make setup)")


def chrony_measure(port):
    """Offset (s) of the server on 127.0.0.1:port as ``chronyd -Q`` measures it (server minus us)."""
    out = subprocess.run([CHRONYD, "-Q", f"server 127.0.0.1 port {port} iburst maxsamples 1"],
                         capture_output=True, text=True, timeout=30)
    match = re.search(r"System clock wrong by (-?[\d.]+) seconds", out.stdout + out.stderr)
    assert match, f"chronyd -Q printed no offset: {out.stdout}{out.stderr}"
    return float(match.group(1))


def free_port():
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chrony_server(tmp_path_factory):
    """A real chronyd serving NTP on a loopback port (local stratum 10), ended by PID."""
    if CHRONYD is None:
        pytest.skip("chronyd is not installed (Debian package chrony: make setup)")
    folder = tmp_path_factory.mktemp(f"{config.prefix()}chrony")
    port = free_port()
    conf = folder / "chrony.conf"
    conf.write_text(f"port {port}\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 10\ncmdport 0\n"
                    f"pidfile {folder}/chronyd.pid\nbindcmdaddress {folder}/chronyd.sock\n")
    proc = subprocess.Popen([CHRONYD, "-f", str(conf), "-x", "-d", "-u", "root", "-L", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            query(f"127.0.0.1:{port}", timeout=0.2)
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"chronyd did not start: {proc.stderr.read().decode()}")
    yield port
    stop_process(proc)


@needs_chrony
def test_chronyd_reads_unskewed_and_skewed_servers():
    with NTPServer() as exact, NTPServer(offset=0.5) as fast, NTPServer(offset=-1.25) as slow:
        assert abs(chrony_measure(exact.port)) < 1e-3
        assert chrony_measure(fast.port) == pytest.approx(0.5, abs=1e-3)
        assert chrony_measure(slow.port) == pytest.approx(-1.25, abs=1e-3)


@needs_chrony
def test_chronyd_reads_a_synchronised_stratum2():
    with NTPServer(offset=0.2) as s1, NTPServer(upstreams=[s1.url], poll=0.2) as s2:
        deadline = time.monotonic() + 5
        while not (s2.synchronised and abs(s2.offset - 0.2) < 1e-3) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert chrony_measure(s2.port) == pytest.approx(0.2, abs=2e-3)


def test_our_client_reads_chronyd(chrony_server):
    stats = query(f"127.0.0.1:{chrony_server}")
    assert stats.mode == 4 and stats.stratum == 10 and stats.leap == 0
    assert abs(stats.offset) < 5e-3 and 0 <= stats.delay < 0.05
    # our exchange (kernel receive timestamps), on an unskewed clock
    sample = exchange("127.0.0.1", chrony_server)
    assert sample.stratum == 10 and abs(sample.offset) < 1e-3
    assert sample.t1 <= sample.t4 and sample.t2 <= sample.t3


def test_our_server_syncs_from_chronyd(chrony_server):
    with NTPServer(upstreams=[f"127.0.0.1:{chrony_server}"], offset=-3.0, poll=0.2) as ours:
        deadline = time.monotonic() + 5
        while not (ours.synchronised and abs(ours.offset) < 1e-3) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ours.stratum == 11 and abs(ours.offset) < 1e-3
        stats = ntplib.NTPClient().request("127.0.0.1", port=ours.port, version=4)
        assert stats.stratum == 11 and ntplib.ref_id_to_text(stats.ref_id, 11) == "127.0.0.1"


@pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace and port 123 need root")
@pytest.mark.skipif(NTPDATE is None or not shutil.which("ip"),
                    reason="ntpsec-ntpdate and iproute2 are needed (make setup)")
def test_ntpdate_reads_our_server_on_port_123_in_a_namespace():
    netns = f"{config.prefix()}ntp-test-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    proc = None
    try:
        subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"], check=True)
        proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-m", "cloudlab", "ntp", "serve",
                                 "--port", "123", "--offset", "-0.75"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=dict(os.environ, PYTHONPATH=ROOT))
        line = proc.stdout.readline()
        assert "serving NTP on 127.0.0.1:123" in line, line
        out = subprocess.run(["ip", "netns", "exec", netns, NTPDATE, "-q", "127.0.0.1"],
                             capture_output=True, text=True, timeout=30)
        # e.g. "2026-01-01 00:00:00.000000 (+0000) -0.749938 +/- 0.000122 127.0.0.1 s1 no-leap"
        match = re.search(r"\) ([+-][\d.]+) \+/- ([\d.]+) 127\.0\.0\.1 s(\d+) (\S+)", out.stdout)
        assert match, out.stdout + out.stderr
        # within 1 ms plus ntpdate's own error bound (it grows with loopback delay on a loaded machine)
        assert float(match.group(1)) == pytest.approx(-0.75, abs=1e-3 + float(match.group(2)))
        assert match.group(3) == "1" and match.group(4) == "no-leap"
    finally:
        if proc is not None:
            stop_process(proc)
        subprocess.run(["ip", "netns", "del", netns], check=False)
    assert netns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace and port 123 need root")
@pytest.mark.skipif(NTPDATE is None or not shutil.which("ip"),
                    reason="ntpsec-ntpdate and iproute2 are needed (make setup)")
def test_lab_serves_guests_on_port_123_in_its_namespace(tmp_path, monkeypatch):
    import cloudlab as cl
    monkeypatch.setenv("CLOUDLAB_HOME", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", ROOT)
    netns = f"{config.prefix()}ntp-guests-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    lab = cl.Lab(name="ntpguests")
    try:
        subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"], check=True)
        proc = lab.ntp.serve_guests("127.0.0.1", netns=netns)
        deadline = time.monotonic() + 10
        while True:
            out = subprocess.run(["ip", "netns", "exec", netns, NTPDATE, "-q", "127.0.0.1"],
                                 capture_output=True, text=True, timeout=30)
            if " s1 " in out.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert " 127.0.0.1 s1 no-leap" in out.stdout, out.stdout + out.stderr
    finally:
        lab.stop()
        subprocess.run(["ip", "netns", "del", netns], check=False)
    assert proc.poll() is not None, "the guest-facing server ended with the lab"
