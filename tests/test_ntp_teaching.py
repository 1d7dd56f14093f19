"""What lab 11 shows of NTP: packets field by field, clock events, source selection, the plot and the diagram.

The falseticker rule is proven twice: the intersection algorithm on plain numbers, and a
live client against real servers, which must reject the same source that chronyd (a real
third-party client, run with -x so it never touches the system clock) rejects.
"""

import os
import shutil
import subprocess
import time

import pytest

import cloudlab as cl
from cloudlab import config
from cloudlab.ntp import Client, Clock, NTPServer, decode, exchange
from cloudlab.ntp.select import MIN_DISTANCE, intersect
from cloudlab.process import stop_process
from cloudlab.teaching.exercise import run_exercise

CHRONYD = shutil.which("chronyd") or ("/usr/sbin/chronyd" if os.path.exists("/usr/sbin/chronyd") else None)
CHRONYC = shutil.which("chronyc") or ("/usr/bin/chronyc" if os.path.exists("/usr/bin/chronyc") else None)


def wait_until(condition, timeout=5.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


# --- selection ------------------------------------------------------------------------

def test_intersection_keeps_a_majority_and_names_falsetickers():
    assert intersect([(0.0, 1e-5), (2e-5, 1e-5), (1.0, 1e-5)])[0] == [0, 1]
    assert intersect([(0.0, 1e-5), (1.0, 1e-5), (1.0002, 1e-5)])[0] == [1, 2]      # a wrong majority wins
    assert intersect([(0.0, 1e-5), (1.0, 1e-5)]) == ([], None)                      # two that disagree: nobody
    chimers, (low, high) = intersect([(0.0, 0.0)])
    assert chimers == [0] and (low, high) == (-MIN_DISTANCE, MIN_DISTANCE)
    # intervals that only touch still overlap; four sources survive one liar
    assert intersect([(0.0, 0.01), (0.02, 0.01), (5.0, 0.0)])[0] == [0, 1]
    assert intersect([(0.0, 0.01), (0.001, 0.01), (-0.001, 0.01), (9.0, 0.01)])[0] == [0, 1, 2]


def test_client_rejects_a_liar_and_follows_a_wrong_majority():
    good, also_good = NTPServer(name="good").start(), NTPServer(name="also_good").start()
    liar, liar2 = NTPServer(name="liar", offset=1.0).start(), NTPServer(name="liar2", offset=1.0).start()
    clients = []
    try:
        careful = Client([good, also_good, liar], poll=0.2, name="careful").start()
        gullible = Client([good, liar, liar2], poll=0.2, name="gullible").start()
        torn = Client([good, liar], poll=0.2, name="torn").start()
        clients = [careful, gullible, torn]
        assert wait_until(lambda: careful.synchronised and gullible.synchronised and torn.syncer.polls >= 4)
        states = {r["name"]: r["state"] for r in careful.sources()}
        assert states["liar"] == "x" and sorted([states["good"], states["also_good"]]) == ["*", "+"]
        assert abs(careful.offset) < 1e-3
        assert {r["name"]: r["state"] for r in gullible.sources()}["good"] == "x"
        assert wait_until(lambda: abs(gullible.offset - 1.0) < 1e-3)
        assert not torn.synchronised and torn.stratum == 16
        assert {r["state"] for r in torn.sources()} == {"x"}
        table = str(careful.sources())
        assert "x liar" in table and "+1.000 s" in table and "falseticker" in table
    finally:
        for member in clients + [good, also_good, liar, liar2]:
            member.stop()


@pytest.mark.skipif(CHRONYD is None or CHRONYC is None or os.geteuid() != 0,
                    reason="chronyd (Debian package chrony) runs only as root")
def test_chronyd_rejects_the_same_falseticker(tmp_path):
    # chrony keys sources by address, so the three servers take three loopback addresses
    servers = [NTPServer("127.0.0.2", name="a").start(), NTPServer("127.0.0.3", name="b").start(),
               NTPServer("127.0.0.4", name="c", offset=1.0).start()]
    folder = tmp_path / f"{config.prefix()}chrony-select"
    folder.mkdir(mode=0o700)
    conf = folder / "chrony.conf"
    conf.write_text("port 0\ncmdport 0\n" f"bindcmdaddress {folder}/chronyd.sock\npidfile {folder}/chronyd.pid\n"
                    + "".join(f"server {s.address} port {s.port} iburst minpoll -4 maxpoll -4\n" for s in servers))
    proc = subprocess.Popen([CHRONYD, "-f", str(conf), "-x", "-d", "-u", "root", "-L", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ours = Client(servers, poll=0.2, name="ours").start()
    try:
        def chrony_states():
            out = subprocess.run([CHRONYC, "-h", f"{folder}/chronyd.sock", "-c", "-n", "sources"],
                                 capture_output=True, text=True, timeout=5).stdout
            return {line.split(",")[2]: line.split(",")[1] for line in out.splitlines() if line.count(",") > 3}
        assert wait_until(lambda: "x" in chrony_states().values() and "*" in chrony_states().values(), timeout=15)
        assert wait_until(lambda: ours.synchronised)
        theirs = chrony_states()
        mine = {r["name"]: r["state"] for r in ours.sources()}
        assert theirs["127.0.0.4"] == "x" and mine["c"] == "x"
        # the two truechimers: selected or combined ("*", "+"); chrony may also leave one out of its
        # combining ("-": acceptable, not combined, when its distance is far above the best's): never "x"
        assert {theirs["127.0.0.2"], theirs["127.0.0.3"]} <= {"*", "+", "-"} and {mine["a"], mine["b"]} <= {"*", "+"}
    finally:
        ours.stop()
        stop_process(proc)
        for s in servers:
            s.stop()


# --- packets --------------------------------------------------------------------------

def test_a_packet_decoded_field_by_field():
    server = NTPServer(name="s").start()
    try:
        sample = exchange("127.0.0.1", server.port)
    finally:
        server.stop()
    request, reply = sample.request, sample.reply
    assert len(request) == len(reply) == 48 and (request.mode, reply.mode) == (3, 4)
    assert [f.where for f in reply.fields] == ["0", "1", "2", "3", "4-7", "8-11", "12-15",
                                               "16-23", "24-31", "32-39", "40-47"]
    assert reply.field("LI | VN | Mode").value == (0, 4, 4)
    assert reply.field("stratum").value == 1 and reply.field("reference ID").value == "LOCL"
    assert reply.field("origin timestamp").raw == request.field("transmit timestamp").raw
    assert reply.field("receive timestamp").value == pytest.approx(sample.t2, abs=1e-6)
    assert reply.field("transmit timestamp").value == pytest.approx(sample.t3, abs=1e-6)
    assert "t3: the reply left the server" in str(reply) and "t1: the request left the client" in str(request)
    assert sample.server == ("127.0.0.1", server.port) and sample.client_port > 0
    with pytest.raises(cl.InvalidInput, match="at least 48"):
        decode(b"\x23" * 47)
    with pytest.raises(cl.InvalidInput, match="no field"):
        reply.field("colour")


# --- clock events, the plot, the diagram ------------------------------------------------

def test_clock_logs_what_was_done_to_it():
    clock = Clock()
    clock.skew(-3.0)
    clock.step(3.0)
    clock.slew(0.01, 0.5)
    clock.set_time(clock.now() + 60)
    kinds = [(e.kind, round(e.amount, 3)) for e in clock.events]
    assert kinds == [("skew", -3.0), ("step", 3.0), ("slew", 0.01), ("set_time", 60.0)]
    skew, step, slew, set_time = clock.events
    assert skew.offset == pytest.approx(-3.0, abs=1e-6) and step.offset == pytest.approx(0.0, abs=1e-3)
    assert slew.duration == 0.5 and set_time.offset == pytest.approx(60.0, abs=0.01)


def test_plot_marks_steps_and_slews_and_diagram_reads_the_hierarchy():
    import matplotlib
    matplotlib.use("Agg")
    lab = cl.Lab(name="teach11")
    try:
        h = lab.ntp.hierarchy(stratum2=2, clients=1, poll=0.3)
        assert wait_until(lambda: all(m.synchronised for m in h.members))
        h["s2a"].skew(1.0)
        h["s2b"].skew(0.05)
        h.record(polls=8, every=0.3)
        fig = h.plot()
        offset_ax, delay_ax, stratum_ax = fig.axes
        assert offset_ax.get_yscale() == "symlog" and delay_ax.get_ylabel() == "delay δ (ms)"
        markers = {line.get_marker() for line in offset_ax.lines if line.get_linestyle() == "None"}
        assert {"X", "v", ">"} <= markers           # skews, a step (s2a) and slews (s2b) are marked
        strata_lines = [line.get_ydata() for line in stratum_ax.lines]
        assert len({tuple(y) for y in strata_lines}) == len(strata_lines)   # none hides another
        picture = cl.diagrams.ntp.hierarchy(h)
        text = str(picture)
        assert "s2a: stratum 2, server, syncs from s1, within 1 ms of stratum 1" in text
        assert "c1: stratum 3, client (serves nobody), syncs from s2a" in text
        svg = picture.svg()
        assert "refid LOCL" in svg and "stratum 0" in svg and "δ " in svg
    finally:
        lab.stop()


# --- the graded checks ----------------------------------------------------------------

def test_lab11_checks_fail_on_mistakes_and_pass_on_other_right_answers():
    lab = cl.Lab(name="ex11")
    try:
        mystery = lab.ntp.add_server(name="mystery", offset=-0.7)
        sample = lab.ntp.exchange(mystery)
        theta = ((sample.t2 - sample.t1) + (sample.t3 - sample.t4)) / 2
        delta = (sample.t4 - sample.t1) - (sample.t3 - sample.t2)
        assert run_exercise("11.1", lab, offset=theta, delay=delta).passed
        flipped = run_exercise("11.1", lab, offset=-theta, delay=delta)
        assert not flipped.passed and "sign is flipped" in flipped.checks[-1].hint
        assert not run_exercise("11.1", lab, offset=theta, delay=-delta).passed
        assert not run_exercise("11.1", lab, offset=True, delay=delta).passed

        assert "hierarchy" in run_exercise("11.2", lab, answer="step").checks[-1].hint
        h = lab.ntp.hierarchy(stratum2=2, clients=0, poll=0.3)
        assert wait_until(lambda: h["s2b"].synchronised)
        assert not run_exercise("11.2", lab, answer="step").passed          # not skewed yet
        h["s2b"].set_time(h["s2b"].now() - 3.0)                              # set_time is as good as skew
        assert wait_until(lambda: abs(h["s2b"].offset - h.stratum1.offset) < 1e-3)
        assert run_exercise("11.2", lab, answer="step").passed
        assert "threshold" in run_exercise("11.2", lab, answer="slew").checks[-1].hint
        h["s2b"].skew(-2.0)                                                  # 2 s is not 3 s
        assert not run_exercise("11.2", lab, answer="step").passed

        right = lab.ntp.add_server(name="truth")
        wrong = [lab.ntp.add_server(name=f"w{i}", offset=2.0) for i in range(2)]
        assert "voter" in run_exercise("11.3", lab, answer="truth").checks[-1].hint
        voter = lab.ntp.add_client([right, *wrong], poll=0.2, name="voter")
        assert wait_until(lambda: abs(voter.offset - 2.0) < 1e-3)
        assert run_exercise("11.3", lab, answer="truth").passed
        assert not run_exercise("11.3", lab, answer="w0").passed
        lab.ntp.add_client([right, wrong[0]], poll=0.2, name="voter")         # the newest voter counts
        assert "three" in run_exercise("11.3", lab, answer="truth").checks[-1].hint
    finally:
        lab.stop()
