"""Synchronising a clock to upstream servers: polling, the clock filter, step or slew.

Every ``poll`` seconds the syncer sends one request to each upstream and keeps the
last few samples per upstream.  The clock filter re-expresses each kept sample in the
current clock (subtracting what the discipline changed since it was taken) and picks
the one with the lowest delay (plus a small penalty for age, since drift makes old
samples stale): a packet that waited in a queue has both a larger delay and a less
trustworthy offset.  A sample is used once (ntpd's rule: only a newer best
sample changes the clock).  Then, like ntpd and chrony:

* ``|θ| > step_threshold`` (0.128 s): **step**, jump the clock, and forget older samples;
* otherwise **slew**: add θ gradually at a bounded rate (``max_slew_ppm``).  The kernel
  caps ``adjtime`` at 500 ppm (a 1 ms correction takes 2 s); the lab default is
  50,000 ppm (5 %), so a learner sees a 100 ms slew finish in a few seconds;
* the offset left over after a slew, divided by the time since the last update, is a
  frequency error: a fraction of it is added to the clock's frequency correction (a
  frequency-locked loop), so a clock that drifts by some ppm stops drifting.

With several upstreams, the intersection algorithm (:mod:`cloudlab.ntp.select`) first
sorts out **falsetickers**: sources whose interval θ ± root distance misses the one a
majority shares are ignored (and with no majority nobody is followed).  ``sources()``
shows each upstream's state as ``chronyc sources`` does: ``*`` followed, ``+`` a
truechimer, ``x`` a falseticker, ``?`` no usable sample.  Of the truechimers, the best
(lowest stratum, then lowest root distance) gives this clock its stratum (+1), reference ID (the upstream's IPv4 address), root delay
(upstream's + δ) and root dispersion (upstream's + δ/2 + precision + PHI·age).  With
no usable upstream in the last ``unreachable_after`` polls the clock is unsynchronised:
leap 3, stratum 16, as chrony reports it.
"""

import socket
import threading
import time

from ..errors import CloudlabError, InvalidInput
from .packet import LEAP_NONE, LEAP_UNSYNC, PHI, PRECISION, STRATUM_UNSYNC, exchange
from .select import MIN_DISTANCE, intersect

STEP_THRESHOLD = 0.128
MAX_SLEW_PPM = 50_000
FILTER_SIZE = 4
# a kept sample's offset may be off by drift since it was taken: it scores as if its
# delay were larger by this much per second of age (100 µs/s, a clock 100 ppm off)
AGE_PENALTY = 1e-4
FLL_GAIN = 0.3
MAX_FREQ_PPM = 500  # the most frequency error the loop corrects, as the kernel's limit


class Upstream:
    """One upstream server as a syncer sees it: address, reachability, recent samples.

    Args:
        host: address (or name) of the server.
        port: its UDP port.
        name: what to call it in ``sources()`` (``host:port`` by default).
    Raises:
        InvalidInput: the name does not resolve to an IPv4 address.
    """

    def __init__(self, host, port, name=None):
        self.host = host
        self.port = int(port)
        self.name = name or f"{host}:{self.port}"
        self.state = "?"        # as chronyc shows it: * followed, + truechimer, x falseticker, ? no sample
        try:
            # the reference ID of whoever syncs from this upstream is its IPv4 address
            self.address = socket.gethostbyname(host)
        except (socket.gaierror, UnicodeError) as exc:
            raise InvalidInput(f"cannot resolve NTP server {host!r}: {exc}",
                               fix="give an IPv4 address such as 127.0.0.1") from None
        self.reach = 0          # 8-bit shift register, 1 = answered, newest in bit 0
        self.samples = []       # (sample, discipline at sample time)
        self.last = None        # the newest Sample
        self.last_used = None   # the Sample last used to adjust the clock
        self.error = None       # why the last poll failed

    @property
    def reachable(self):
        """True when the upstream answered any of the last 8 polls."""
        return self.reach != 0

    def __repr__(self):
        return f"<Upstream {self.host}:{self.port} reach={self.reach:03o}>"


def parse_address(text, default_port=123):
    """Split ``HOST[:PORT]`` into (host, port).

    Raises:
        InvalidInput: the port is not a number in 1-65535.
    """
    host, _, port = str(text).rpartition(":") if ":" in str(text) else (str(text), "", "")
    if not host:
        raise InvalidInput(f"no host in NTP server address {text!r}", fix="write HOST or HOST:PORT, e.g. 127.0.0.1:12300")
    try:
        port = int(port) if port else default_port
        if not 1 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise InvalidInput(f"bad port in NTP server address {text!r}", fix="use a port 1-65535, e.g. 127.0.0.1:12300") from None
    return host, port


class Syncer:
    """Keeps a :class:`~cloudlab.ntp.clock.Clock` in step with upstream NTP servers.

    Args:
        clock: the clock to discipline.
        upstreams: list of ``"host:port"`` strings or ``(host, port)`` pairs.
        poll: seconds between polls (the lab default of 1 s is far shorter than NTP's 64 s).
        step_threshold: offsets larger than this (seconds) are stepped, smaller ones slewed.
        max_slew_ppm: the fastest a slew may change the clock, in ppm.
        filter_size: how many recent samples per upstream the clock filter keeps.
        unreachable_after: polls without a usable answer before the clock is unsynchronised.
        on_update: called with no arguments after every poll (a server rebuilds its replies).
    Raises:
        InvalidInput: a bad upstream address or poll interval.
    """

    def __init__(self, clock, upstreams, poll=1.0, step_threshold=STEP_THRESHOLD,
                 max_slew_ppm=MAX_SLEW_PPM, filter_size=FILTER_SIZE, unreachable_after=3,
                 on_update=None, timeout=None):
        if not poll or poll <= 0:
            raise InvalidInput(f"poll interval must be positive, not {poll!r}", fix="e.g. poll=1.0")
        self.clock = clock
        self.upstreams = [_upstream(u) for u in upstreams]
        if not self.upstreams:
            raise InvalidInput("a syncer needs at least one upstream server", fix="e.g. upstreams=['127.0.0.1:12300']")
        self.poll = float(poll)
        self.timeout = timeout if timeout is not None else min(0.5, self.poll / 2)
        self.step_threshold = step_threshold
        self.max_slew_ppm = max_slew_ppm
        self.filter_size = filter_size
        self.unreachable_after = unreachable_after
        self.on_update = on_update
        self.polls = 0
        self.missed = 0                 # consecutive polls with no usable sample
        self.synchronised = False
        self.stratum = STRATUM_UNSYNC
        self.leap = LEAP_UNSYNC
        self.refid = b"INIT"
        self.root_delay = 0.0
        self.root_dispersion = 0.0
        self.ref_time = 0.0            # own clock at the last update
        self.last_offset = None         # θ of the last sample used
        self.last_delay = None
        self.system_peer = None
        self._last_update_host = None
        self._epoch = clock.epoch
        self._thread = None
        self._stop = threading.Event()
        self.failure = None             # why the polling thread died, if it did

    # --- the loop -------------------------------------------------------------------

    def start(self):
        """Poll in a background thread until :meth:`stop`."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="cloudlab-ntp-sync", daemon=True)
            self._thread.start()
        return self

    def stop(self):
        """Stop polling and wait for the thread to end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.poll + self.timeout + 1)
            self._thread = None

    def _run(self):
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.poll_once()
            except CloudlabError:  # a bad moment (e.g. interface gone) must not kill the loop
                pass
            except Exception as exc:
                # anything else is a bug: say so, and stop claiming to be synchronised
                self.failure = f"the polling thread died: {type(exc).__name__}: {exc}"
                self._unsynchronise()
                if self.on_update:
                    self.on_update()
                return
            self._stop.wait(max(0.0, self.poll - (time.monotonic() - started)))

    # --- one poll -------------------------------------------------------------------

    def poll_once(self):
        """Poll every upstream once, filter, and step or slew the clock; returns the θ used or None."""
        self.polls += 1
        for up in self.upstreams:
            self._poll_upstream(up)
        used = self._select_and_adjust()
        if used is None:
            self.missed += 1
            if self.missed >= self.unreachable_after:
                self._unsynchronise()
        if self.on_update:
            self.on_update()
        return used

    def _poll_upstream(self, up):
        if self.clock.epoch != self._epoch:
            # the clock jumped (step, skew, set_time): samples taken before say nothing now
            self._epoch = self.clock.epoch
            self._last_update_host = None
            for other in self.upstreams:
                other.samples.clear()
        up.reach = (up.reach << 1) & 0xFF
        try:
            sample = exchange(up.host, up.port, clock=self.clock, timeout=self.timeout)
        except CloudlabError as exc:
            up.error = str(exc).splitlines()[0]
            return
        up.last = sample
        if sample.kiss_code:
            up.error = f"kiss-o'-death {sample.kiss_code}"
            return
        up.reach |= 1
        if not sample.synchronised:
            up.error = "upstream is unsynchronised (leap 3 / stratum 16)"
            return
        up.error = None
        up.samples.append((sample, self.clock.discipline_at(sample.host_time)))
        del up.samples[:-self.filter_size]

    def _best(self, up):
        # clock filter: each kept sample re-expressed in today's clock, lowest delay wins
        if not up.samples:
            return None, None
        h = self.clock.host()
        now_disc = self.clock.discipline_at(h)
        sample, disc = min(up.samples, key=lambda pair: pair[0].delay + AGE_PENALTY * (h - pair[0].host_time))
        return sample, sample.offset - (now_disc - disc)

    def _select_and_adjust(self):
        candidates = []
        for up in self.upstreams:
            up.state = "?"
            if up.reach & 1 and up.samples:
                sample, theta = self._best(up)
                distance = sample.root_delay / 2 + sample.root_dispersion + sample.delay / 2
                candidates.append((sample.stratum, distance, up, sample, theta))
        if not candidates:
            return None
        chimers, _ = intersect([(c[4], c[1]) for c in candidates])
        for i, c in enumerate(candidates):
            c[2].state = "+" if i in chimers else "x"
        if not chimers:
            return None         # no majority agrees: follow nobody rather than a liar
        candidates = sorted((candidates[i] for i in chimers), key=lambda c: (c[0], c[1]))
        _, _, up, sample, theta = candidates[0]
        up.state = "*"
        self.missed = 0
        self.system_peer = up
        fresh = sample is not up.last_used
        if fresh:
            up.last_used = sample
            self._adjust(theta, up)
            self._take_reference(up, sample)
        self.last_offset, self.last_delay = theta, sample.delay
        return theta if fresh else None

    def _adjust(self, theta, up):
        h = self.clock.host()
        if abs(theta) > self.step_threshold:
            self.clock.step(theta)
            self._epoch = self.clock.epoch
            for other in self.upstreams:
                other.samples.clear()
            h = None
        else:
            if self._last_update_host is not None and self.synchronised:
                interval = h - self._last_update_host
                drift_ppm = theta / interval * 1e6 if interval > 0.2 else None
                # what is left after the last correction is drift: learn part of it,
                # unless it is too large to be a frequency error (a phase jump)
                if drift_ppm is not None and abs(drift_ppm) <= 2 * MAX_FREQ_PPM:
                    self.clock.adjust_frequency(FLL_GAIN * drift_ppm, MAX_FREQ_PPM)
            duration = max(abs(theta) / (self.max_slew_ppm * 1e-6), min(0.5 * self.poll, 0.5))
            self.clock.slew(theta, duration)
        self._last_update_host = h

    def _take_reference(self, up, sample):
        self.synchronised = True
        self.leap = LEAP_NONE
        self.stratum = min(sample.stratum + 1, STRATUM_UNSYNC)
        self.refid = socket.inet_aton(up.address)
        self.root_delay = sample.root_delay + max(sample.delay, 0.0)
        self.root_dispersion = sample.root_dispersion + max(sample.delay, 0.0) / 2 + 2.0 ** PRECISION
        self.ref_time = self.clock.now()

    def _unsynchronise(self):
        self.synchronised = False
        self.leap = LEAP_UNSYNC
        self.stratum = STRATUM_UNSYNC
        self.system_peer = None

    def sources(self):
        """Every upstream as ``chronyc sources`` lists it: a :class:`Sources` table (a list of dicts).

        Each row: ``name``, ``state`` (``*``, ``+``, ``x`` or ``?``), ``stratum``, ``reach`` (octal,
        as chronyc prints it), ``offset`` (θ of its best sample, seconds, or None) and ``error``
        (the ± its interval spans: root distance, at least the selection's minimum).
        """
        rows = []
        for up in self.upstreams:
            sample, theta = self._best(up) if up.samples else (up.last, None)
            distance = None if sample is None or theta is None else \
                max(sample.root_delay / 2 + sample.root_dispersion + sample.delay / 2, MIN_DISTANCE)
            rows.append({"name": up.name, "state": up.state, "stratum": sample.stratum if sample else None,
                         "reach": f"{up.reach:o}", "offset": theta, "error": distance})
        return Sources(rows)

    @property
    def refid_text(self):
        """Reference ID as text: the upstream's address, or ``INIT`` before the first sync."""
        return self.refid.decode("ascii") if self.refid == b"INIT" else socket.inet_ntoa(self.refid)

    def dispersion_now(self):
        """Root dispersion now: the last update's, grown by PHI for every second since."""
        if not self.synchronised:
            return self.root_dispersion
        return self.root_dispersion + PHI * max(0.0, self.clock.now() - self.ref_time)


def _upstream(spec):
    """An :class:`Upstream` from ``"host:port"``, ``(host, port)`` or a lab server (anything with ``url`` and ``name``)."""
    if isinstance(spec, tuple):
        return Upstream(*spec)
    if hasattr(spec, "url"):
        return Upstream(*parse_address(spec.url), name=getattr(spec, "name", None))
    return Upstream(*parse_address(spec))


def _seconds(value):
    if value is None:
        return "-"
    magnitude = abs(value)
    if magnitude < 5e-7:
        return "0 µs"
    if magnitude >= 0.1:
        return f"{value:+.3f} s"
    if magnitude >= 1e-4:
        return f"{value * 1e3:+.1f} ms"
    return f"{value * 1e6:+.0f} µs"


class Sources(list):
    """The rows of :meth:`Syncer.sources`; prints as a table like ``chronyc sources``."""

    def __str__(self):
        width = max([len("source")] + [len(r["name"]) for r in self])
        lines = [f"S {'source'.ljust(width)}  stratum  reach  offset      ± error",
                 "-" * (width + 40)]
        for r in self:
            stratum = "-" if r["stratum"] is None else str(r["stratum"])
            error = "" if r["error"] is None else _seconds(r["error"]).lstrip("+")
            lines.append(f"{r['state']} {r['name'].ljust(width)}  {stratum:>7}  {r['reach']:>5}  "
                         f"{_seconds(r['offset']):<10}  {error}")
        lines.append("state: * followed, + truechimer (agrees), x falseticker (rejected), ? no usable sample")
        return "\n".join(lines)
