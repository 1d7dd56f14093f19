"""A lab guest sets its clock from the lab's NTP server (issue 4's hook in the guest image).

The NTP server runs inside the test's network namespace on the lab bridge's
address, port 123 - the only port the guest's client (like busybox's ntpd) uses -
with its clock skewed by +30 s; the guest, told `cloudlab.ntp=ADDR` on its kernel
command line, must step its clock by that much.
"""

import os
import subprocess
import sys
import time

import pytest

import cloudlab as cl

pytestmark = pytest.mark.lab

SKEW = 30.0


@pytest.fixture(scope="module")
def lab():
    lab = cl.Lab(name="clocktest")
    yield lab
    lab.stop()


def test_guest_clock_follows_the_lab_ntp_server(lab):
    if os.geteuid() != 0:
        pytest.skip("serving port 123 inside the lab namespace needs root")
    host = lab.host
    server = subprocess.Popen(
        ["ip", "netns", "exec", host.netns, sys.executable, "-m", "cloudlab", "ntp", "serve",
         "--address", host.gateway, "--port", "123", "--offset", str(SKEW)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        vm = lab.compute.create_server("clock", kernel_args=f"cloudlab.ntp={host.gateway}", timeout=120)
        deadline = time.monotonic() + 60
        while "cloudlab-sntp: server" not in vm.console_log() and time.monotonic() < deadline:
            time.sleep(0.5)
        log = vm.console_log()
        assert "cloudlab-sntp: server" in log, log[-2000:]
        line = [l for l in log.splitlines() if l.startswith("cloudlab-sntp: server")][0]
        assert "stratum 1" in line
        offset = float(line.split("offset ")[1].split()[0])
        assert abs(offset - SKEW) < 2.0, line
        guest_now = float(vm.run("date +%s").stdout)
        assert abs(guest_now - (time.time() + SKEW)) < 3.0
        vm.delete()
    finally:
        server.kill()        # ip netns exec runs the server in its own process: ours, by PID
        server.wait()
