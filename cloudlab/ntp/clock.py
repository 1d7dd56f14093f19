"""A server's own clock: the host clock plus an error the lab sets plus a discipline NTP steers.

Every NTP server or client in the lab reads time through a :class:`Clock`, never by
changing the host's clock.  A reading is ``host + offset(host)`` where the offset is
piecewise linear in host time and has two parts kept apart on purpose:

* the *error*: what an administrator or the lab imposed (``set_time``, ``skew``): a
  fixed offset plus a frequency error in ppm, as a badly set or drifting quartz clock has;
* the *discipline*: what NTP did to correct it: steps (a jump), slews (a bounded extra
  rate for a while, like the kernel's ``adjtime``) and a frequency correction.

Keeping the discipline separate lets the clock filter re-express old samples in the
current clock ("what would this sample say now"), as ntpd does after it adjusts.

Every change is also logged in ``events`` (:class:`ClockEvent`: a skew or set_time
imposed from outside, a step or slew NTP made), so that a plot can mark when a clock
was stepped or slewed and a check can read what was done to it.

The hot path (the server answering requests) reads one tuple, ``params``, and computes
``offset = a + b*(h - h0)`` before ``h_end`` and ``a_end + b_end*(h - h_end)`` after it,
so a reading costs a few float operations and no lock.

What a clock may be set to is bounded by what NTP carries.  A timestamp counts seconds
since 1900 in 32 bits, so it wraps every 2**32 s (136 years): era 0 ends on 2036-02-07,
and a clock past that is sent in era 1 (the timestamp modulo 2**64, as on the wire).
A client tells the eras apart by taking the one nearest its own clock (RFC 5905), which
works while the two clocks are less than 68 years (2**31 s) apart; so offsets are
refused from there on, and rates beyond chrony's ``maxdrift`` (500,000 ppm), and
anything that is not a finite number.
"""

import collections
import dataclasses
import datetime
import math
import numbers
import threading
import time

# seconds between the NTP era 0 epoch (1900) and the Unix epoch (1970)
NTP_DELTA = 2208988800
ERA_S = 2**32
# a client resolves the server's era only within half an era of its own clock
MAX_OFFSET_S = 2**31 - 1
MAX_PPM = 500_000.0        # chrony's maxdrift: beyond it a clock is not a clock
_MASK64 = 2**64 - 1


def to_ntp(seconds):
    """Convert Unix seconds (float) to a 64-bit NTP timestamp (an int, 2**-32 s units), era dropped."""
    return int((seconds + NTP_DELTA) * 4294967296.0) & _MASK64


def check_seconds(value, what, limit=MAX_OFFSET_S):
    """``value`` as a float when it is a finite number within ±``limit`` seconds.

    Raises:
        InvalidInput: not a number, not finite, or too large for NTP (the message names ``what``).
    """
    from ..errors import InvalidInput
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise InvalidInput(f"{what} must be a number of seconds, not {value!r}", fix="e.g. 2.5 or -0.3")
    value = float(value)
    if not math.isfinite(value):
        raise InvalidInput(f"{what} must be a finite number of seconds, not {value!r}", fix="e.g. 2.5 or -0.3")
    if abs(value) > limit and limit == MAX_OFFSET_S:
        raise InvalidInput(
            f"{what} of {value:g} s is beyond what NTP carries: a client reads a server's time only "
            f"within ±{limit:,.0f} s (68 years) of its own clock",
            fix="use a smaller offset; to show the 2036 rollover, an offset of a few hundred million seconds works")
    if abs(value) > limit:
        raise InvalidInput(f"{what} must be within ±{limit:g} s, not {value:g}", fix="use a smaller value")
    return value


def check_ppm(value, what="ppm"):
    """``value`` as a float when it is a finite frequency error within ±``MAX_PPM``.

    Raises:
        InvalidInput: not a number, not finite, or beyond what a clock can drift.
    """
    from ..errors import InvalidInput
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(float(value)) \
            or abs(float(value)) > MAX_PPM:
        raise InvalidInput(f"{what} must be a frequency error from {-MAX_PPM:,.0f} to {MAX_PPM:,.0f} ppm, "
                           f"not {value!r}", fix="e.g. ppm=50 (a quartz clock drifts by tens of ppm)")
    return float(value)


def from_ntp(timestamp):
    """Convert a 64-bit NTP timestamp (int) to Unix seconds (float)."""
    return timestamp / 4294967296.0 - NTP_DELTA


MAX_EVENTS = 1000     # a clock keeps its last this many events


@dataclasses.dataclass(frozen=True)
class ClockEvent:
    """One change of a clock.

    Attributes:
        t: host time of the change (Unix seconds).
        kind: ``"skew"`` or ``"set_time"`` (imposed on the clock), ``"step"`` or ``"slew"`` (NTP's corrections).
        amount: seconds the change moves the clock by (a slew: in total, over ``duration``).
        offset: the clock's offset from the host clock right after the change (a slew: before it runs).
        duration: seconds a slew takes (0 for the others).
    """

    t: float
    kind: str
    amount: float
    offset: float
    duration: float = 0.0


class Clock:
    """A clock that reads the host clock plus an adjustable error and an NTP discipline.

    Args:
        offset: initial error in seconds (the clock reads ``host + offset``).
        ppm: initial frequency error in parts per million (positive runs fast).
        host: function returning host time in Unix seconds; ``time.time`` by default.
    """

    def __init__(self, offset=0.0, ppm=0.0, host=time.time):
        offset, ppm = check_seconds(offset, "offset"), check_ppm(ppm)
        self._host = host
        self._lock = threading.Lock()
        h = host()
        self._h0 = h
        self._err_off = offset
        self._err_rate = ppm * 1e-6
        self._disc_off = 0.0
        self._disc_freq = 0.0
        self._slew_rate = 0.0
        self._slew_end = h
        self.steps = 0
        self.epoch = 0  # bumped by every jump (step, skew, set_time): older samples are void
        self.events = collections.deque(maxlen=MAX_EVENTS)
        self._publish()

    # --- reading --------------------------------------------------------------------

    def host(self):
        """The host clock now, in Unix seconds (the clock this one is derived from)."""
        return self._host()

    def offset_at(self, h):
        """This clock's offset from the host clock at host time ``h``, in seconds."""
        h0, a, b, h_end, a_end, b_end = self.params
        return a + b * (h - h0) if h < h_end else a_end + b_end * (h - h_end)

    def now(self):
        """This clock's reading now, in Unix seconds."""
        h = self._host()
        return h + self.offset_at(h)

    def datetime(self):
        """This clock's reading now as an aware UTC ``datetime``."""
        return datetime.datetime.fromtimestamp(self.now(), datetime.timezone.utc)

    def offset(self):
        """How far this clock is from the host clock now, in seconds (positive: ahead)."""
        return self.offset_at(self._host())

    def discipline_at(self, h):
        """Total correction NTP has applied by host time ``h`` (steps, slews, frequency)."""
        with self._lock:
            return self._discipline_at(h)

    @property
    def frequency_error_ppm(self):
        """The imposed frequency error, in ppm."""
        return self._err_rate * 1e6

    @property
    def frequency_correction_ppm(self):
        """The frequency correction the discipline has learned, in ppm."""
        return self._disc_freq * 1e6

    @property
    def slewing(self):
        """True while a slew is still being applied."""
        return self._host() < self._slew_end

    # --- changing -------------------------------------------------------------------

    def set_time(self, when):
        """Set this clock to read ``when`` now, as an administrator does with ``date -s``.

        Args:
            when: an aware ``datetime`` (a naive one is taken as UTC) or Unix seconds.
        Raises:
            InvalidInput: ``when`` is neither a datetime nor a number, or 68 years or more
                from the host clock (see the module docstring).
        """
        from ..errors import InvalidInput
        if isinstance(when, datetime.datetime):
            if when.tzinfo is None:
                when = when.replace(tzinfo=datetime.timezone.utc)
            target = when.timestamp()
        elif isinstance(when, (int, float)) and not isinstance(when, bool):
            target = float(when)
        else:
            raise InvalidInput(f"set_time needs a datetime or Unix seconds, not {when!r}",
                               fix="e.g. set_time(datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc))")
        check_seconds(target - self._host() if math.isfinite(target) else target, "the time set (as an offset)")
        with self._lock:
            h = self._rebase()
            jump = target - (h + self._offset_now(h))
            self._err_off += jump
            self.epoch += 1
            self._publish()
            self._log(h, "set_time", jump)

    def skew(self, offset=0.0, ppm=0.0):
        """Make this clock read ``host + offset`` now and drift by ``ppm``; forgets NTP's corrections.

        Args:
            offset: seconds ahead of the host clock (negative: behind).
            ppm: frequency error in parts per million.
        Raises:
            InvalidInput: not finite numbers, or beyond what NTP carries (see the module docstring).
        """
        offset, ppm = check_seconds(offset, "offset"), check_ppm(ppm)
        with self._lock:
            # from the clock's own state, not the published tuple (which a failure may have spoiled)
            before = self._offset_now(self._host())
            self._h0 = self._host()
            self._err_off = offset
            self._err_rate = ppm * 1e-6
            self._disc_off = self._disc_freq = self._slew_rate = 0.0
            self._slew_end = self._h0
            self.epoch += 1
            self._publish()
            self._log(self._h0, "skew", float(offset) - before)

    def step(self, amount):
        """Jump the clock by ``amount`` seconds now (NTP's step for a large offset).

        Raises:
            InvalidInput: ``amount`` is not a finite number, or the clock would end up
                68 years or more from the host clock.
        """
        check_seconds(self.offset() + check_seconds(amount, "step"), "the offset after the step")
        with self._lock:
            self._rebase()
            self._disc_off += amount
            self._slew_rate = 0.0
            self._slew_end = self._h0
            self.steps += 1
            self.epoch += 1
            self._publish()
            self._log(self._h0, "step", amount)

    def slew(self, amount, duration):
        """Add ``amount`` seconds gradually over ``duration`` seconds, replacing any slew under way.

        Raises:
            InvalidInput: ``amount`` or ``duration`` is not a finite number of seconds.
        """
        amount = check_seconds(amount, "slew")
        duration = check_seconds(duration, "slew duration", limit=1e9)
        with self._lock:
            self._rebase()
            duration = max(duration, 1e-6)
            self._slew_rate = amount / duration
            self._slew_end = self._h0 + duration
            self._publish()
            self._log(self._h0, "slew", amount, duration)

    def adjust_frequency(self, delta_ppm, limit_ppm):
        """Change the learned frequency correction by ``delta_ppm``, clamped to ±``limit_ppm``.

        Raises:
            InvalidInput: either is not a finite number within ±``MAX_PPM``.
        """
        delta_ppm, limit_ppm = check_ppm(delta_ppm, "frequency change"), check_ppm(limit_ppm, "frequency limit")
        with self._lock:
            self._rebase()
            f = self._disc_freq + delta_ppm * 1e-6
            limit = limit_ppm * 1e-6
            self._disc_freq = max(-limit, min(limit, f))
            self._publish()

    # --- internals ------------------------------------------------------------------

    def _log(self, h, kind, amount, duration=0.0):
        # the offset right after a change; a slew's is the offset it starts from
        self.events.append(ClockEvent(h, kind, amount, self._offset_now(h), duration))

    def _discipline_at(self, h):
        slewed = self._slew_rate * (min(h, self._slew_end) - self._h0) if h > self._h0 else 0.0
        return self._disc_off + self._disc_freq * (h - self._h0) + slewed

    def _offset_now(self, h):
        return self._err_off + self._err_rate * (h - self._h0) + self._discipline_at(h)

    def _rebase(self):
        # move the anchor to now, folding everything accumulated so far into the
        # offsets; a slew still under way goes on from the new anchor at its rate
        h = self._host()
        self._err_off += self._err_rate * (h - self._h0)
        self._disc_off = self._discipline_at(h)
        if h >= self._slew_end:
            self._slew_rate = 0.0
            self._slew_end = h
        self._h0 = h
        return h

    def _publish(self):
        h0 = self._h0
        a = self._err_off + self._disc_off
        base_rate = self._err_rate + self._disc_freq
        if self._slew_end > h0:
            b = base_rate + self._slew_rate
            h_end = self._slew_end
            a_end = a + b * (h_end - h0)
        else:
            b = base_rate
            h_end = h0
            a_end = a
        # one tuple assignment: readers in other threads see old or new, never a mix
        self.params = (h0, a, b, h_end, a_end, base_rate)
