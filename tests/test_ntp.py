"""cloudlab's NTP server, clock and hierarchy, read by ntplib and by raw UDP on loopback."""

import datetime
import os
import socket
import struct
import subprocess
import sys
import time

import ntplib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cloudlab as cl
from cloudlab.ntp import Clock, Hierarchy, NTPServer, RateLimit, exchange, query
from cloudlab.ntp.packet import NTP_DELTA, PRECISION

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def request_bytes(version=4, mode=3, tx=None):
    """A raw client request whose transmit timestamp is ``tx`` (an 8-byte tag)."""
    first = (version << 3) | mode
    return struct.pack("!BBbb9I", first, 0, 0, 0, *([0] * 9)) + (tx or os.urandom(8))


def wait_until(condition, timeout=5.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


@pytest.fixture(scope="module")
def stratum1():
    server = NTPServer(name="s1").start()
    yield server
    server.stop()


@pytest.fixture
def udp():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1.0)
    yield sock
    sock.close()


# --- the clock ------------------------------------------------------------------------

def test_clock_offsets_steps_and_slews():
    clock = Clock(offset=2.0)
    assert clock.offset() == pytest.approx(2.0, abs=1e-6)
    clock.step(-2.0)
    assert abs(clock.offset()) < 1e-6 and clock.steps == 1
    clock.slew(0.01, 0.2)
    assert 0 <= clock.offset() < 0.01
    time.sleep(0.25)
    assert clock.offset() == pytest.approx(0.01, abs=1e-6)
    assert clock.discipline_at(clock.host()) == pytest.approx(-1.99, abs=1e-6)


def test_clock_drifts_by_its_ppm():
    clock = Clock(ppm=1000)
    time.sleep(0.2)
    assert clock.offset() == pytest.approx(0.2e-3, rel=0.3)


def test_set_time_and_bad_input():
    clock = Clock()
    clock.set_time(datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc))
    assert clock.datetime().year == 2030
    clock.set_time(datetime.datetime(2031, 6, 1))  # naive: taken as UTC
    assert clock.datetime().strftime("%Y-%m") == "2031-06"
    with pytest.raises(cl.InvalidInput, match="datetime or Unix seconds"):
        clock.set_time("tomorrow")


# --- a stratum 1 server read by ntplib --------------------------------------------------

@pytest.mark.parametrize("version", [3, 4])
def test_ntplib_reads_stratum1_reply(stratum1, version):
    before = time.time()
    stats = ntplib.NTPClient().request("127.0.0.1", port=stratum1.port, version=version, timeout=2)
    assert stats.mode == 4
    assert stats.version == version
    assert stats.leap == 0
    assert stats.stratum == 1
    assert ntplib.ref_id_to_text(stats.ref_id, stats.stratum) == "uncalibrated local clock"
    assert stats.precision == PRECISION and -32 <= PRECISION <= 0
    assert stats.root_delay == 0
    assert 0 <= stats.root_dispersion < 0.01
    assert 0 < stats.ref_timestamp <= stats.recv_timestamp <= stats.tx_timestamp
    assert stats.recv_time >= before - 0.01
    assert abs(stats.offset) < 0.005 and 0 <= stats.delay < 0.05


def test_reply_copies_origin_and_is_never_larger(stratum1, udp):
    tag = os.urandom(8)
    request = request_bytes(tx=tag) + os.urandom(20)  # 68 bytes, as with a MAC
    udp.sendto(request, ("127.0.0.1", stratum1.port))
    reply, _ = udp.recvfrom(1024)
    assert len(reply) == 48 <= len(request)
    assert reply[24:32] == tag


@pytest.mark.parametrize("packet", [
    request_bytes(mode=6)[:12],            # a control (ntpq) request: 12 bytes
    request_bytes(mode=6),
    request_bytes(mode=7),                 # private (ntpdc monlist, the amplifier)
    request_bytes(mode=4),                 # a reply is not a request
    request_bytes(mode=1),                 # symmetric active: we do not peer
    request_bytes(version=0), request_bytes(version=5),
    request_bytes()[:47],                  # one byte short
    b"",
], ids=["ctl12", "ctl48", "private", "mode4", "mode1", "v0", "v5", "short", "empty"])
def test_dropped_packets_get_no_reply(stratum1, udp, packet):
    dropped = stratum1.stats()["dropped"]
    udp.sendto(packet, ("127.0.0.1", stratum1.port))
    good = request_bytes()
    udp.sendto(good, ("127.0.0.1", stratum1.port))
    reply, _ = udp.recvfrom(1024)
    assert reply[24:32] == good[40:48], "the first reply must answer the good request"
    if packet:
        assert stratum1.stats()["dropped"] == dropped + 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=120),
                 st.builds(lambda head, rest: bytes([head]) + rest, st.integers(0, 255), st.binary(min_size=47, max_size=80))))
def test_fuzzed_packets_never_crash_nor_amplify(stratum1, udp, packet):
    udp.sendto(packet, ("127.0.0.1", stratum1.port))
    good = request_bytes()
    udp.sendto(good, ("127.0.0.1", stratum1.port))
    while True:
        reply, _ = udp.recvfrom(1024)
        if reply[24:32] == good[40:48]:
            break
        # any other reply answers the fuzzed packet: never more bytes than it had
        assert len(reply) <= len(packet)
        assert len(packet) >= 48
    assert stratum1.running


def test_rate_limit_sends_rate_kiss_of_death(udp):
    with NTPServer(rate_limit=RateLimit(rate=1, burst=2)) as server:
        tags = [os.urandom(8) for _ in range(6)]
        for tag in tags:
            udp.sendto(request_bytes(tx=tag), ("127.0.0.1", server.port))
        replies = []
        udp.settimeout(0.3)
        try:
            while True:
                replies.append(udp.recvfrom(1024)[0])
        except socket.timeout:
            pass
        assert [r[1] for r in replies] == [1, 1, 0], "two answers, one KoD, then silence"
        kod = replies[2]
        assert kod[4 * 3:4 * 4] == b"RATE" and kod[0] >> 6 == 3 and len(kod) == 48
        assert kod[24:32] == tags[2]
        assert server.stats()["kod"] == 1 and server.stats()["dropped"] == 3
        # our client says what the kiss meant
        time.sleep(1.05)  # one token back, and a second since the last KoD
        assert exchange("127.0.0.1", server.port).stratum == 1
        sample = exchange("127.0.0.1", server.port)
        assert sample.kiss_code == "RATE" and not sample.synchronised


# --- servers with upstreams -------------------------------------------------------------

def test_stratum2_syncs_steps_and_announces_upstream(stratum1):
    s2 = NTPServer(upstreams=[stratum1.url], offset=2.0, poll=0.2)
    assert s2.leap == 3 and s2.stratum == 16  # not synchronised before its first poll
    with s2:
        assert wait_until(lambda: s2.synchronised and abs(s2.offset - stratum1.offset) < 1e-3)
        assert s2.clock.steps == 1, "a 2 s offset is stepped, once"
        stats = query(s2.url)
        assert stats.stratum == 2 and stats.leap == 0
        assert ntplib.ref_id_to_text(stats.ref_id, stats.stratum) == "127.0.0.1"
        assert 0 < stats.root_delay < 0.05 and stats.root_dispersion > 0
        assert stats.ref_timestamp <= stats.recv_timestamp
        assert abs(stats.offset) < 1e-3


def test_small_offset_is_slewed_and_drift_learned(stratum1):
    with NTPServer(upstreams=[stratum1.url], offset=0.05, ppm=300, poll=0.2) as s2:
        assert wait_until(lambda: s2.syncer.polls >= 8 and abs(s2.offset - stratum1.offset) < 1e-3, timeout=8)
        assert s2.clock.steps == 0, "50 ms is below the step threshold: slewed, not stepped"
        assert wait_until(lambda: s2.clock.frequency_correction_ppm < -150, timeout=8), \
            s2.clock.frequency_correction_ppm


def test_unreachable_upstream_means_unsynchronised(stratum1):
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))  # a port nobody answers on
    try:
        with NTPServer(upstreams=[f"127.0.0.1:{holder.getsockname()[1]}"], poll=0.2) as s2, \
                NTPServer(upstreams=[s2.url], poll=0.2) as s3:
            assert wait_until(lambda: s2.syncer.polls >= 3)
            stats = query(s2.url)
            assert (stats.leap, stats.stratum) == (3, 16)
            # and below it, nobody trusts an unsynchronised server either
            assert wait_until(lambda: s3.syncer.polls >= 4)
            assert (s3.leap, s3.stratum) == (3, 16)
            assert s3.syncer.upstreams[0].reachable
            assert "unsynchronised" in s3.syncer.upstreams[0].error
    finally:
        holder.close()


def test_upstream_lost_after_sync(stratum1):
    top = NTPServer().start()
    with NTPServer(upstreams=[top.url], poll=0.2) as s2:
        assert wait_until(lambda: s2.synchronised)
        top.stop()
        assert wait_until(lambda: s2.stratum == 16 and s2.leap == 3)
        assert not s2.syncer.upstreams[0].reach & 1


def test_administrator_sets_time(stratum1):
    with NTPServer() as server:
        server.set_time(datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc))
        stats = query(server.url)
        served = datetime.datetime.fromtimestamp(stats.tx_time, datetime.timezone.utc)
        assert served.strftime("%Y-%m-%d %H:%M") == "2030-01-02 03:04"
        server.skew(-0.5)
        assert query(server.url).offset == pytest.approx(-0.5, abs=0.01)


def test_hierarchy_records_and_plots():
    with Hierarchy(stratum2=1, clients=1, poll=0.2) as h:
        h["s2a"].skew(2.0)
        h.record(polls=10, every=0.2)
        strata = {m.name: m.stratum for m in h.members}
        assert strata == {"s1": 1, "s2a": 2, "c1": 3}
        t, offsets = h.series("s2a")
        assert offsets[0] > 1.9 and abs(offsets[-1]) < 1e-3
        assert {"t", "member", "stratum", "offset", "delay", "synchronised"} <= set(h.history[0])
        fig = h.plot()
        assert len(fig.axes) == 3 and fig.axes[0].get_lines()      # offset, delay, stratum
        with pytest.raises(cl.NotFound, match="s9"):
            h["s9"]


def test_bad_input_is_named():
    with pytest.raises(cl.InvalidInput, match="port"):
        NTPServer(port=70000)
    with pytest.raises(cl.InvalidInput, match="bad port"):
        NTPServer(upstreams=["127.0.0.1:x"])
    with pytest.raises(cl.InvalidInput, match="poll"):
        NTPServer(upstreams=["127.0.0.1:1"], poll=0)
    with NTPServer() as server, pytest.raises(cl.Conflict, match="already in use"):
        NTPServer(port=server.port).start()
    with pytest.raises(cl.ResourceTimeout, match="no NTP reply"):
        query("127.0.0.1:9", timeout=0.2)


def test_lab_time_service():
    lab = cl.Lab(name="ntptest")
    try:
        server = lab.ntp.server
        assert server.running and server.stratum == 1
        s2 = lab.ntp.add_server(upstreams=[server.url], poll=0.2)
        assert wait_until(lambda: s2.stratum == 2)
    finally:
        lab.stop()
    assert not server.running and not s2.running


def test_command_line_query_and_errors(stratum1):
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-m", "cloudlab", "ntp", "query", stratum1.url],
                         capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "stratum 1" in out.stdout and "refid LOCL" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "cloudlab", "ntp", "serve", "--port", "1",
                          "--upstream", "127.0.0.1:nope"], capture_output=True, text=True, env=env, timeout=30)
    assert bad.returncode == 2 and "bad port" in bad.stderr and "Traceback" not in bad.stderr


def test_ntp_time_is_not_unix_time():
    # the reason for NTP_DELTA: NTP counts from 1900, Unix from 1970
    assert NTP_DELTA == ntplib.NTP.NTP_DELTA == 70 * 365 * 86400 + 17 * 86400
