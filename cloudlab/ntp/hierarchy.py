"""A stratum hierarchy (계층): stratum 1 → stratum 2 servers → clients, recorded over time.

    h = Hierarchy(stratum2=2, clients=2).start()
    h["s2a"].skew(2.0)           # a stratum 2 server's clock is now 2 s fast
    h.record(10)                 # ten rounds: every member's offset, delay, stratum
    h.plot()

Every member is a real NTP server (or client) on a loopback UDP port with its own clock;
the stratum 1 server's reference is the host clock (standing in for a stratum 0
reference clock such as GPS), so a member's *true* offset is its clock minus stratum 1's.  ``history`` holds one plain dict per member per round: no pandas.
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

    def plot(self, members=None, log=True, linthresh=1e-4, slew_mark=1e-3):
        """A matplotlib figure of ``history``: each member's signed offset, delay and stratum over time.

        The offset panel is *symlog*: linear within ±``linthresh`` seconds (100 µs), logarithmic
        beyond, so a 2 s error and a 20 µs residue both read, with their sign.  On it, the
        changes each clock logged are marked: ✕ a skew or set_time imposed on it, ▼ a step
        NTP made, ▶ a slew NTP started (those of at least ``slew_mark`` seconds; every poll
        slews a few µs), each on the member's curve where it happened.  The grey band is ±1 ms.
        The delay panel shows δ of each member's latest sample; in the stratum panel lines of
        one stratum are nudged apart so that none hides another.  Returns the figure.

        Args:
            members: names to draw (every member but stratum 1 by default).
            log: symlog offset axis (False: linear).
            linthresh: half-width of the symlog axis's linear band, seconds.
            slew_mark: the smallest slew marked, seconds.
        """
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
        from matplotlib.ticker import MaxNLocator
        names = members or [m.name for m in self.members if m is not self.stratum1]
        fig, (ax_off, ax_delay, ax_strat) = plt.subplots(3, 1, figsize=(8, 7.5), sharex=True,
                                                        gridspec_kw={"height_ratios": [3, 1.2, 1.2]})
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        styles = ["-", "--", "-.", ":"]
        start = self.started_at or 0.0
        times = [r["t"] for r in self.history]
        # marks from one poll before the first snapshot (a skew just before recording) to the last
        window = (min(times, default=0.0) - self.poll, max(times, default=0.0))
        strata = set()
        for i, name in enumerate(names):
            color = colors[i % len(colors)]
            t, offsets = self.series(name, "offset")
            ax_off.plot(t, offsets, marker=".", markersize=4, color=color, label=name)
            td, delays = self.series(name, "delay")
            kept = [(x, d * 1e3) for x, d in zip(td, delays) if d is not None]
            if kept:
                ax_delay.plot(*zip(*kept), marker=".", markersize=4, color=color)
            ts, st = self.series(name, "stratum")
            strata.update(st)
            nudge = (i - (len(names) - 1) / 2) * 0.08
            ax_strat.step(ts, [v + nudge for v in st], where="post", color=color, linestyle=styles[i % len(styles)])
            self._mark_events(ax_off, self[name], color, start, window, slew_mark)
        ax_off.axhline(0, color="black", linewidth=0.6)
        ax_off.axhspan(-1e-3, 1e-3, color="grey", alpha=0.12, linewidth=0)
        if log:
            ax_off.set_yscale("symlog", linthresh=linthresh)
        ax_off.set_ylabel("offset from stratum 1 (s)")
        members_legend = ax_off.legend(loc="upper right", fontsize=8, title="member", title_fontsize=8)
        ax_off.add_artist(members_legend)
        marks = [Line2D([], [], marker=m, linestyle="none", color="grey", markeredgecolor="black", label=label)
                 for m, label in (("X", "skewed / set"), ("v", "stepped"), (">", "slewed"))]
        ax_off.legend(handles=marks, loc="lower right", fontsize=8)
        ax_off.set_title("NTP hierarchy: offset from stratum 1, delay and stratum over time")
        ax_delay.set_ylabel("delay δ (ms)")
        ax_strat.set_ylabel("stratum")
        ax_strat.yaxis.set_major_locator(MaxNLocator(integer=True))
        if strata:
            ax_strat.set_ylim(max(strata) + 0.5, min(strata) - 0.5)      # stratum 1 on top, as in the tree
        ax_strat.set_xlabel("seconds since the hierarchy started")
        fig.tight_layout()
        return fig

    def _mark_events(self, ax, member, color, start, window, slew_mark):
        # each mark sits on the member's own curve: its offset from stratum 1 just before the change
        reference = self.stratum1.clock
        for event in list(member.clock.events):
            x = event.t - start
            if not window[0] <= x <= window[1]:
                continue
            before = event.offset - (event.amount if event.kind != "slew" else 0.0)
            y = (event.offset if event.kind in ("skew", "set_time") else before) - reference.offset_at(event.t)
            style = {"color": color, "markeredgecolor": "black", "linestyle": "none", "zorder": 5}
            if event.kind in ("skew", "set_time"):
                ax.plot(x, y, marker="X", markersize=9, **style)
            elif event.kind == "step":
                ax.plot(x, y, marker="v", markersize=9, **style)
            elif event.kind == "slew" and abs(event.amount) >= slew_mark:
                ax.plot(x, y, marker=">", markersize=7, **style)

    def __repr__(self):
        return f"<Hierarchy {', '.join(f'{m.name}:{m.stratum}' for m in self.members)}>"
