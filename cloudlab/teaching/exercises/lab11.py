"""Lab 11 · time (NTP): checks that read the live servers and clocks.

11.1 compares the learner's θ and δ with a fresh exchange with the same server; 11.2
reads the events a clock logged (the skew the learner made, the step or slew NTP
answered with); 11.3 reads which source a client rejected as a falseticker.  Offsets
are read from the servers' clocks, never from the learner's variables.
"""

from ...errors import NotFound
from ..exercise import Check, exercise

TOLERANCE = 2e-3        # an offset computed by hand may be off by a few loopback round trips


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _member(lab, name):
    try:
        return lab.ntp.find(name)
    except NotFound:    # the caller reports it as a failed check with a hint
        return None


@exercise("11.1", title="Offset and delay from t1..t4, by hand", points=3)
def offset_by_hand(lab, offset=None, delay=None):
    """θ and δ computed from one exchange with the server ``mystery`` agree with what it answers now."""
    yield Check("offset and delay are numbers (seconds)", _number(offset) and _number(delay),
                hint="offset = ((t2 - t1) + (t3 - t4)) / 2 and delay = (t4 - t1) - (t3 - t2), from one sample")
    mystery = _member(lab, "mystery")
    yield Check("the lab runs the server mystery", mystery is not None and mystery.running,
                hint="run the cell above the answer cell: it starts mystery")
    live = lab.ntp.exchange(mystery)
    yield Check("delay is a round trip: not negative, and small on loopback", 0 <= delay < 0.05,
                hint=f"you have {delay!r} s; subtract the time the server held the request (t3 - t2) "
                     "from the whole round trip (t4 - t1)")
    flipped = abs(offset + live.offset) < TOLERANCE and abs(live.offset) > TOLERANCE
    yield Check("offset is how far mystery's clock is ahead of ours, as it answers now",
                abs(offset - live.offset) < TOLERANCE,
                hint="the sign is flipped: θ is the server's clock minus ours" if flipped else
                f"you have {offset:+.6f} s; use t1..t4 of one lab.ntp.exchange(mystery)")


def _skews(clock):
    return [e for e in list(clock.events) if e.kind in ("skew", "set_time")]


@exercise("11.2", title="Skew a clock and watch NTP correct it", points=2)
def skew_and_correct(lab, answer=None):
    """``s2b`` was set 3 s behind, NTP brought it back, and the learner says whether by a step or a slew."""
    yield Check('answer is "step" or "slew"', answer in ("step", "slew"), hint='answer = "step" or answer = "slew"')
    yield Check("the lab runs the hierarchy of section 3", bool(lab.ntp.hierarchies),
                hint="run section 3 first: h = lab.ntp.hierarchy(...)")
    h = lab.ntp.hierarchies[-1]
    s2b, reference = h["s2b"], h.stratum1.clock
    skews = _skews(s2b.clock)
    last = skews[-1] if skews else None
    behind = last.offset - reference.offset_at(last.t) if last else 0.0
    yield Check('h["s2b"] was set 3 s behind stratum 1', last is not None and abs(behind + 3.0) < 0.05,
                hint='h["s2b"].skew(-3.0) (or set_time) makes its clock read 3 s less than stratum 1\'s'
                + (f"; its last change left it {behind:+.3f} s off" if last else ""))
    yield Check("NTP brought it back within 1 ms of stratum 1", abs(s2b.offset - reference.offset()) < 1e-3,
                hint="wait a few polls (time.sleep(2)) after the skew, then check")
    after = [e for e in list(s2b.clock.events) if e.t >= last.t and e.kind in ("step", "slew")]
    how = "step" if any(e.kind == "step" for e in after) else "slew"
    yield Check("answer says how it was corrected", answer == how,
                hint="compare 3 s with the step threshold (128 ms); h[\"s2b\"].clock.events lists what happened")


@exercise("11.3", title="A majority decides: falsetickers", points=3)
def majority_decides(lab, answer=None):
    """A client ``voter`` with one right source and two that agree on a wrong time rejects the right one."""
    yield Check("answer is the name of a server", isinstance(answer, str) and bool(answer),
                hint='answer = "<the name of the server voter rejects>"')
    voter = _member(lab, "voter")
    yield Check("the lab runs a client called voter", voter is not None and hasattr(voter, "syncer"),
                hint='voter = lab.ntp.add_client([...three servers...], name="voter")')
    upstreams = voter.syncer.upstreams
    yield Check("voter syncs from three sources", len(upstreams) == 3,
                hint=f"it has {len(upstreams)}: give add_client a list of three servers")
    servers = {getattr(m, "url", None): m for m in [*lab.ntp.servers, *(x for h in lab.ntp.hierarchies for x in h.members)]}
    sources = [(up, servers.get(f"{up.host}:{up.port}")) for up in upstreams]
    yield Check("all three are servers of this lab", all(server is not None for _, server in sources),
                hint="start them with lab.ntp.add_server(name=..., offset=...)")
    right = [(up, s) for up, s in sources if abs(s.offset) < 0.01]
    wrong = [(up, s) for up, s in sources if abs(s.offset) >= 0.5]
    agree = len(wrong) == 2 and abs(wrong[0][1].offset - wrong[1][1].offset) < 0.01
    yield Check("one source is right and two agree on a time at least 0.5 s wrong", len(right) == 1 and agree,
                hint="e.g. offset=1.5 for two of them and 0 for the third; offsets now: "
                     + ", ".join(f"{s.name} {s.offset:+.3f} s" for _, s in sources))
    yield Check("voter marked the right source as a falseticker (x)", right[0][0].state == "x",
                hint=f"wait a few polls (time.sleep(2)); states now: {', '.join(f'{s.name} {up.state}' for up, s in sources)}")
    yield Check("voter followed the majority's wrong time", abs(voter.offset - wrong[0][1].offset) < 0.01,
                hint="wait a few polls: it steps to the time the majority agrees on")
    yield Check("answer names the rejected server", answer == right[0][1].name,
                hint="the server shown with x in voter.sources()")
