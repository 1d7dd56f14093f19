"""A stratum hierarchy (계층): stratum 1 → stratum 2 servers → clients, recorded over time.

    h = Hierarchy(stratum2=2, clients=2).start()
    h["s2a"].skew(2.0)           # a stratum 2 server's clock is now 2 s fast
    h.record(10)                 # ten rounds: every member's offset, delay, stratum
    h.plot()

Every member is a real NTP server (or client) on a loopback UDP port with its own clock;
the stratum 1 server's reference is the host clock, so a member's *true* offset is its
clock minus stratum 1's.  ``history`` holds one plain dict per member per round: no pandas.
"""

import time

from ..errors import InvalidInput, NotFound
from .client import Client
from .server import NTPServer


class Hierarchy:
    """Stratum 1 → ``stratum2`` servers → ``clients`` (spread over the stratum 2 servers).

    Args:
        stratum2: how many stratum 2 servers.
        clients: how many clients.
        poll: seconds between polls for everyone.
        address: address every server binds (127.0.0.1; a lab namespace address as root).
        port: first UDP port; 0 picks free ports (123 is possible for stratum 1 as root only).
        **sync: passed to every syncer (step_threshold, max_slew_ppm...).
    Raises:
        InvalidInput: negative counts.
    """

    def __init__(self, stratum2=2, clients=2, poll=1.0, address="127.0.0.1", port=0, **sync):
        if stratum2 < 1 or clients < 0:
            raise InvalidInput(f"a hierarchy needs at least one stratum 2 server and 0+ clients, not {stratum2}/{clients}",
                               fix="e.g. Hierarchy(stratum2=2, clients=2)")
        self.poll = poll
        self.stratum1 = NTPServer(address, port, name="s1")
        self.stratum2 = []
        self.clients = []
        self._spec = (stratum2, clients, address, sync)
        self.history = []
        self.started_at = None

    @property
    def members(self):
        """Every member, top of the tree first."""
        return [self.stratum1, *self.stratum2, *self.clients]

    def __getitem__(self, name):
        for member in self.members:
            if member.name == name:
                return member
        raise NotFound(f"no member {name!r} in this hierarchy",
                       fix=f"use one of {', '.join(m.name for m in self.members)}")

    def start(self):
        """Start stratum 1, then the stratum 2 servers syncing from it, then the clients."""
        stratum2, clients, address, sync = self._spec
        self.stratum1.start()
        for i in range(stratum2):
            name = f"s2{chr(ord('a') + i)}"
            self.stratum2.append(NTPServer(address, 0, upstreams=[self.stratum1.url], poll=self.poll,
                                           name=name, **sync).start())
        for i in range(clients):
            parent = self.stratum2[i % len(self.stratum2)]
            self.clients.append(Client([parent.url], poll=self.poll, name=f"c{i + 1}", **sync).start())
        self.started_at = time.time()
        return self

    def stop(self):
        """Stop every member, clients first."""
        for member in reversed(self.members):
            member.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def snapshot(self):
        """Append one row per member to ``history`` and return them.

        Each row: ``t`` (seconds since start), ``member``, ``stratum``, ``offset`` (true
        offset from stratum 1, seconds), ``measured`` (θ of its last sample, or None),
        ``delay`` (δ of its last sample), ``synchronised``.
        """
        reference = self.stratum1.clock.offset()
        t = time.time() - (self.started_at or time.time())
        rows = []
        for member in self.members:
            syncer = getattr(member, "syncer", None)
            rows.append({
                "t": t, "member": member.name, "stratum": member.stratum,
                "offset": member.clock.offset() - reference,
                "measured": syncer.last_offset if syncer else None,
                "delay": syncer.last_delay if syncer else None,
                "synchronised": member.synchronised,
            })
        self.history.extend(rows)
        return rows

    def record(self, polls=10, every=None):
        """Take a snapshot every ``every`` seconds (one poll interval by default), ``polls`` times."""
        every = every or self.poll
        for _ in range(polls):
            self.snapshot()
            time.sleep(every)
        return self.snapshot()

    def series(self, member, field="offset"):
        """(times, values) of one member's ``field`` from ``history``, for plotting."""
        rows = [r for r in self.history if r["member"] == member]
        return [r["t"] for r in rows], [r[field] for r in rows]

    def plot(self, members=None, log=True):
        """A matplotlib figure: |offset| (and stratum) of each member over time; returns the figure."""
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
        names = members or [m.name for m in self.members if m is not self.stratum1]
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True,
                                       gridspec_kw={"height_ratios": [3, 1]})
        for name in names:
            t, off = self.series(name, "offset")
            ax1.plot(t, [max(abs(v), 1e-7) for v in off] if log else off, marker=".", label=name)
            ax2.step(t, self.series(name, "stratum")[1], where="post", label=name)
        if log:
            ax1.set_yscale("log")
            ax1.axhline(1e-3, color="grey", linestyle="--", linewidth=0.8)
            ax1.set_ylabel("|offset from stratum 1| (s)")
        else:
            ax1.set_ylabel("offset from stratum 1 (s)")
        ax1.legend(loc="upper right")
        ax1.set_title("NTP hierarchy: offset from stratum 1 and stratum, over time")
        ax2.set_ylabel("stratum")
        ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax2.set_xlabel("seconds since start")
        fig.tight_layout()
        return fig

    def __repr__(self):
        return f"<Hierarchy {', '.join(f'{m.name}:{m.stratum}' for m in self.members)}>"
