"""NTP clock values at and beyond what NTP timestamps carry, and a serving thread that dies.

An NTP timestamp counts seconds since 1900 in 32 bits, so it wraps every 2**32 s
(136 years; era 0 ends on 2036-02-07).  A clock set past 2036 is served in era 1 and
read back right by a client that resolves the era against its own clock, as RFC 5905
asks; an offset a client could not resolve (68 years or more) or that is not a number
is refused with InvalidInput.  A server whose thread dies for any other reason says so.
"""

import math
import subprocess
import sys
import time

import ntplib
import pytest

import cloudlab as cl
from cloudlab.ntp import Clock, NTPServer, exchange, query
from cloudlab.ntp.clock import MAX_OFFSET_S, to_ntp

ERA_1_OFFSET = 5e8     # from 2026, 2042: past the end of era 0 (2036-02-07)


@pytest.fixture
def server():
    s = NTPServer().start()
    yield s
    s.stop()


@pytest.mark.parametrize("bad", [1e10, -1e10, math.nan, math.inf, -math.inf, MAX_OFFSET_S + 1, "5", True, None])
def test_offsets_beyond_what_ntp_carries_are_refused(bad):
    with pytest.raises(cl.InvalidInput) as err:
        NTPServer(offset=bad)
    assert "offset" in str(err.value)
    with pytest.raises(cl.InvalidInput):
        Clock(offset=bad)
    clock = Clock()
    with pytest.raises(cl.InvalidInput):
        clock.skew(offset=bad)
    with pytest.raises(cl.InvalidInput):
        clock.step(bad)
    assert clock.offset() == 0.0       # nothing half-applied


@pytest.mark.parametrize("bad", [math.nan, math.inf, 2e6, -2e6, "1"])
def test_rates_beyond_a_clock_are_refused(bad):
    with pytest.raises(cl.InvalidInput) as err:
        NTPServer(ppm=bad)
    assert "ppm" in str(err.value)
    with pytest.raises(cl.InvalidInput):
        Clock().skew(ppm=bad)


def test_set_time_beyond_what_ntp_carries_is_refused():
    import datetime
    clock = Clock()
    with pytest.raises(cl.InvalidInput):
        clock.set_time(datetime.datetime(2300, 1, 1, tzinfo=datetime.timezone.utc))
    with pytest.raises(cl.InvalidInput):
        clock.set_time(math.nan)
    assert abs(clock.offset()) < 1e-6


def test_skew_refused_on_a_live_server_keeps_it_answering(server):
    with pytest.raises(cl.InvalidInput):
        server.skew(offset=1e10)
    assert abs(exchange("127.0.0.1", server.port).offset) < 0.1
    assert server.running


def test_a_clock_past_2036_is_served_in_era_1(server):
    server.skew(offset=ERA_1_OFFSET)
    sample = exchange("127.0.0.1", server.port)
    assert sample.offset == pytest.approx(ERA_1_OFFSET, abs=0.05)
    assert sample.t2 == pytest.approx(time.time() + ERA_1_OFFSET, abs=1)
    # ntplib's own client, through cloudlab's query, reads it too
    assert query(f"127.0.0.1:{server.port}").offset == pytest.approx(ERA_1_OFFSET, abs=0.05)
    assert server.running
    server.skew(0)
    assert abs(exchange("127.0.0.1", server.port).offset) < 0.05


def test_era_1_on_the_wire_is_the_timestamp_modulo_2_to_the_64():
    end_of_era_0 = 2**32 - 2208988800        # 2036-02-07T06:28:16Z in Unix seconds
    assert to_ntp(end_of_era_0 - 1) == (2**32 - 1) << 32
    assert to_ntp(end_of_era_0 + 1) == 1 << 32


def test_a_client_clock_in_era_1_syncs_from_era_0(server):
    follower = NTPServer(upstreams=[server.url], offset=ERA_1_OFFSET, poll=0.2).start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (follower.synchronised and abs(follower.offset) < 0.1):
            time.sleep(0.1)
        assert follower.synchronised and abs(follower.offset) < 0.1, follower
        assert follower.running and follower.syncer.failure is None
    finally:
        follower.stop()


def test_a_serving_thread_that_dies_marks_the_server_failed(server):
    assert server.failure is None
    server.clock.params = None          # what a bug in the hot path would look like
    with pytest.raises(cl.ResourceTimeout):
        exchange("127.0.0.1", server.port, timeout=0.5)
    deadline = time.monotonic() + 2
    while server.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not server.running
    assert "TypeError" in server.failure
    assert "FAILED" in repr(server)
    # start() serves again, on the same port
    port = server.port
    server.clock.skew(0)                # republishes the clock's parameters
    server.start()
    assert server.running and server.failure is None and server.port == port
    assert abs(exchange("127.0.0.1", server.port).offset) < 0.05


@pytest.mark.parametrize("value", ["1e10", "nan", "-inf"])
def test_command_line_refuses_the_offset_without_a_traceback(value):
    result = subprocess.run([sys.executable, "-m", "cloudlab", "ntp", "serve", "--port", "0", f"--offset={value}"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "offset" in result.stderr and "fix:" in result.stderr


def test_ntplib_parses_an_era_1_reply(server):
    # third-party view: the raw reply is a valid NTP packet whose receive timestamp wrapped
    server.skew(offset=ERA_1_OFFSET)
    stats = ntplib.NTPClient().request("127.0.0.1", port=server.port, timeout=2)
    era0_seconds = time.time() + ERA_1_OFFSET + 2208988800 - 2**32
    assert stats.recv_timestamp == pytest.approx(era0_seconds, abs=1)


@pytest.mark.skipif(not __import__("shutil").which("chronyd") and not __import__("os").path.exists("/usr/sbin/chronyd"),
                    reason="chronyd is not installed (Debian package chrony: make setup)")
def test_chrony_reads_an_era_1_server(server):
    from tests.test_ntp_interop import chrony_measure
    server.skew(offset=ERA_1_OFFSET)
    assert chrony_measure(server.port) == pytest.approx(ERA_1_OFFSET, abs=1)     # server minus us
