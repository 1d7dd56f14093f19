"""A lab guest sets its clock from the lab's NTP server (issue 4's hook in the guest image).

`lab.ntp.serve_guests()` runs an NTP server inside the test's network namespace
on the lab bridge's address, port 123 (the only port guest clients use), here
with its clock set +30 s off; servers created afterwards get `cloudlab.ntp=ADDR`
on their kernel command line, and the image's SNTP client steps the guest's
clock by that much.
"""

import os
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
    lab.ntp.serve_guests(host.gateway, offset=SKEW)
    vm = lab.compute.create_server("clock", timeout=120)
    assert f"cloudlab.ntp={host.gateway}" in vm.run("cat /proc/cmdline").stdout
    deadline = time.monotonic() + 60
    while "cloudlab-sntp: server" not in vm.console_log() and time.monotonic() < deadline:
        time.sleep(0.5)
    log = vm.console_log()
    lines = [line for line in log.splitlines() if line.startswith("cloudlab-sntp: server")]
    assert lines, log[-2000:]
    assert "stratum 1" in lines[0]
    offset = float(lines[0].split("offset ")[1].split()[0])
    assert abs(offset - SKEW) < 2.0, lines[0]
    guest_now = float(vm.run("date +%s").stdout)
    assert abs(guest_now - (time.time() + SKEW)) < 3.0
    vm.delete()


def test_servers_without_a_guest_time_server_get_no_ntp_argument():
    lab = cl.Lab(name="clocknone")
    try:
        vm = lab.compute.create_server("plain", timeout=120)
        assert "cloudlab.ntp=" not in vm.run("cat /proc/cmdline").stdout
        assert "cloudlab-sntp" not in vm.console_log()
    finally:
        lab.stop()
