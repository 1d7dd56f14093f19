"""The NTP server: a UDP socket answered by one tight loop in a thread of its own.

Each server has its own :class:`~cloudlab.ntp.clock.Clock`.  Without upstreams it is a
stratum 1 server whose reference clock is the host clock (reference ID ``LOCL``, an
uncalibrated local clock, as ntpd names it); with upstreams a
:class:`~cloudlab.ntp.sync.Syncer` polls them and the server serves what it learned
(stratum + 1, the upstream's address as reference ID, leap 3 and stratum 16 while
unsynchronised).

Why a blocking loop in a thread instead of asyncio: per datagram, an event loop costs a
callback, a transport and a future; a loop of ``recvmsg_into`` (into one preallocated
buffer) and ``sendto`` costs two system calls and a few bytecodes, several times faster.
The reply's first 32 bytes are rebuilt only when the state changes (or every 0.25 s, so
that the root dispersion grows), each request patches in its three timestamps.  The
receive timestamp t2 is the kernel's (``SO_TIMESTAMPNS``), so time spent waiting for the
interpreter does not show up as offset.

What is not answered: datagrams shorter than 48 bytes, modes other than 3 (client) --
control (6) and private (7) requests included, which have carried amplification attacks
-- and versions other than 1-4.  A reply is always 48 bytes, so never larger than the
request it answers.  With a :class:`RateLimit`, a client address over its rate gets a
``RATE`` kiss-o'-death at most once a second and silence otherwise.
"""

import socket
import threading
import time

from ..errors import Conflict, InvalidInput
from .clock import Clock, NTP_DELTA
from .packet import (ANC_SIZE, LEAP_NONE, LEAP_UNSYNC, MODE_CLIENT, PACKET_LEN, PHI, PRECISION,
                     REPLY_TAIL, SO_TIMESTAMPNS, STRATUM_UNSYNC, TIMESPEC, enable_timestamps,
                     kod_header, refid_bytes, refid_text, reply_header)
from .sync import Syncer

REFRESH = 0.25  # seconds between rebuilds of the reply header (root dispersion grows)
FRAC = 4294967296.0
MASK64 = 2**64 - 1  # a timestamp past 2036 goes out in era 1: modulo 2**64, as on the wire


class RateLimit:
    """Per-client-address token bucket: ``rate`` requests a second on average, bursts of ``burst``.

    Args:
        rate: average requests per second allowed from one address.
        burst: how many may come at once.
        kod_interval: seconds between two RATE kiss-o'-death replies to one address.
    Raises:
        InvalidInput: rate or burst not positive.
    """

    def __init__(self, rate=8.0, burst=16, kod_interval=1.0):
        if rate <= 0 or burst < 1:
            raise InvalidInput(f"rate limit needs rate > 0 and burst >= 1, not {rate}/{burst}",
                               fix="e.g. RateLimit(rate=8, burst=16)")
        self.rate = float(rate)
        self.burst = float(burst)
        self.kod_interval = kod_interval
        self.buckets = {}  # address -> [tokens, last refill (host s), last KoD (host s)]

    def admit(self, address, h):
        """Decide for one request: ``"answer"``, ``"kod"`` or ``"drop"``."""
        bucket = self.buckets.get(address)
        if bucket is None:
            if len(self.buckets) > 65536:  # bounded memory under a spoofed-source flood
                self.buckets.clear()
            bucket = self.buckets[address] = [self.burst, h, -1e9]
        tokens = min(self.burst, bucket[0] + (h - bucket[1]) * self.rate)
        bucket[1] = h
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return "answer"
        bucket[0] = tokens
        if h - bucket[2] >= self.kod_interval:
            bucket[2] = h
            return "kod"
        return "drop"


class NTPServer:
    """One NTP server with its own clock, on a UDP port.

    Args:
        address: address to bind; ``127.0.0.1`` by default (the traffic rule).
        port: UDP port; 0 picks a free one (123 needs root).
        upstreams: servers to sync from (``"host:port"`` strings or lab servers); none makes a stratum 1 server.
        offset: initial clock error in seconds (the clock reads host + offset).
        ppm: initial frequency error in ppm.
        poll: seconds between polls of the upstreams.
        rate_limit: a :class:`RateLimit`, or None to answer everyone.
        refid: reference ID of a stratum 1 server (``"LOCL"``: the host clock).
        name: a label for plots and reprs.
        **sync: passed to :class:`~cloudlab.ntp.sync.Syncer` (step_threshold, max_slew_ppm...).
    Raises:
        InvalidInput: bad address, port or upstream.
    """

    def __init__(self, address="127.0.0.1", port=0, upstreams=None, offset=0.0, ppm=0.0, poll=1.0,
                 rate_limit=None, refid="LOCL", name=None, **sync):
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise InvalidInput(f"NTP port must be 0-65535, not {port!r}", fix="use 0 for any free port, 123 as root")
        self.address = address
        self._port = port
        self.clock = Clock(offset, ppm)
        self.rate_limit = rate_limit
        self.name = name or "ntp"
        self.local_refid = refid_bytes(refid)
        self.syncer = Syncer(self.clock, upstreams, poll=poll, on_update=self._state_changed, **sync) \
            if upstreams else None
        self.poll = poll
        self._counts = [0, 0, 0, 0]  # received, answered, dropped, kod
        self._sock = None
        self._thread = None
        self._running = False
        self.failure = None        # why the serving thread died, if it did
        self._generation = 0
        self._headers = None
        self._kod_headers = [kod_header(v) for v in range(8)]
        self._ref_time = 0.0

    # --- life cycle -----------------------------------------------------------------

    def start(self):
        """Bind the socket and start answering (and polling upstreams, if any).

        A server whose serving thread died (see :attr:`failure`) starts afresh, on the same port.

        Raises:
            Conflict: the port is already in use.
            InvalidInput: the address is not on this machine, or the port needs root.
        """
        if self._sock is not None and self._running:
            return self
        if self._sock is not None:
            self.stop()         # what is left of a server whose thread died
        self.failure = None
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            sock.bind((self.address, self._port))
        except PermissionError:
            sock.close()
            raise InvalidInput(f"binding UDP port {self._port} needs root",
                               fix="use port=0 (any free port) or run as root") from None
        except OSError as exc:
            sock.close()
            if exc.errno == 98:
                raise Conflict(f"UDP port {self._port} on {self.address} is already in use",
                               fix="choose another port, or port=0 for any free one") from None
            raise InvalidInput(f"cannot serve NTP on {self.address}:{self._port}: {exc.strerror}",
                               fix="use 127.0.0.1 or an address of this machine (or of the lab namespace)") from None
        enable_timestamps(sock)
        self._sock = sock
        self._port = sock.getsockname()[1]
        self._ref_time = self.clock.now()
        self._rebuild()
        self._running = True
        self._thread = threading.Thread(target=self._serve, name=f"cloudlab-ntp-{self._port}", daemon=True)
        self._thread.start()
        if self.syncer:
            self.syncer.start()
        return self

    def stop(self):
        """Stop polling and answering, and close the socket."""
        if self.syncer:
            self.syncer.stop()
        sock, self._sock = self._sock, None
        if sock is None:
            return
        self._running = False
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked recvmsg_into
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # --- what it serves -------------------------------------------------------------

    @property
    def port(self):
        """The UDP port served (known after start when 0 was asked for)."""
        return self._port

    @property
    def url(self):
        """``address:port`` of this server, the form upstreams are given in."""
        return f"{self.address}:{self._port}"

    @property
    def running(self):
        """True while the server answers requests (False once its thread died: see :attr:`failure`)."""
        return self._running

    @property
    def synchronised(self):
        """True when this server's clock is synchronised (always, for stratum 1)."""
        return self.syncer is None or self.syncer.synchronised

    @property
    def stratum(self):
        """The stratum this server announces: 1 for a reference, upstream + 1, or 16 unsynchronised."""
        return 1 if self.syncer is None else self.syncer.stratum

    @property
    def leap(self):
        """Leap indicator it announces: 0, or 3 when unsynchronised."""
        return LEAP_NONE if self.syncer is None else self.syncer.leap

    @property
    def refid(self):
        """Reference ID as text: ``LOCL`` for stratum 1, the upstream's address above."""
        return refid_text(self.local_refid, 1) if self.syncer is None else self.syncer.refid_text

    @property
    def offset(self):
        """How far this server's clock is from the host clock now, in seconds."""
        return self.clock.offset()

    def now(self):
        """This server's clock now (Unix seconds)."""
        return self.clock.now()

    def sources(self):
        """Its upstreams as ``chronyc sources`` shows them (see :meth:`Syncer.sources`); empty at stratum 1."""
        from .sync import Sources
        return self.syncer.sources() if self.syncer else Sources()

    def set_time(self, when):
        """Set this server's clock, as an administrator does (see :meth:`Clock.set_time`).

        Raises:
            InvalidInput: ``when`` is neither a datetime nor Unix seconds.
        """
        self.clock.set_time(when)
        self._state_changed()

    def skew(self, offset=0.0, ppm=0.0):
        """Make this server's clock read host + ``offset`` seconds, drifting ``ppm``."""
        self.clock.skew(offset, ppm)
        self._state_changed()

    def __repr__(self):
        if self.failure:
            return f"<NTPServer {self.name} {self.url} FAILED: {self.failure}>"
        return (f"<NTPServer {self.name} {self.url} stratum={self.stratum} refid={self.refid} "
                f"offset={self.offset * 1e3:+.3f} ms>")

    # --- the reply header -----------------------------------------------------------

    def _state_changed(self):
        self._generation += 1

    def _rebuild(self):
        if self.syncer is None:
            # a local reference clock is read afresh every refresh
            leap, stratum, refid = LEAP_NONE, 1, self.local_refid
            now = self.clock.now()
            if now - self._ref_time > 1.0 or now < self._ref_time:
                self._ref_time = now
            ref_time, root_delay = self._ref_time, 0.0
            root_disp = 2.0 ** PRECISION + PHI * (now - self._ref_time)
        else:
            s = self.syncer
            leap, stratum, refid = s.leap, s.stratum, s.refid
            ref_time, root_delay, root_disp = s.ref_time, s.root_delay, s.dispersion_now()
            if leap == LEAP_UNSYNC:
                stratum, ref_time = STRATUM_UNSYNC, s.ref_time
        poll = max(-6, min(17, round(self.poll).bit_length() - 1)) if self.poll >= 1 else 0
        self._headers = [reply_header(v, leap, stratum, poll, PRECISION, root_delay, root_disp, refid, ref_time)
                         for v in range(8)]

    # --- the hot path ---------------------------------------------------------------

    def _serve(self):
        """Answer until stopped; if anything kills the loop, the server is marked failed with the reason."""
        try:
            self._answer()
        except BaseException as exc:     # noqa: B036 - the reason must outlive the thread
            self.failure = f"the serving thread died: {type(exc).__name__}: {exc}"
            self._running = False

    def _answer(self):
        sock = self._sock
        buf = bytearray(2048)
        bufs = [memoryview(buf)]
        recv, send = sock.recvmsg_into, sock.sendto
        pack_tail = REPLY_TAIL.pack
        unpack_ts = TIMESPEC.unpack_from
        host_time = time.time
        clock = self.clock
        kods = self._kod_headers
        delta = float(NTP_DELTA)
        generation = -1
        next_refresh = 0.0
        headers = self._headers
        counts = self._counts
        while self._running:
            try:
                n, anc, _flags, addr = recv(bufs, ANC_SIZE)
            except OSError:
                if not self._running:
                    break
                continue
            if not n:
                # shutdown() wakes us with an empty read; an empty datagram is ignored
                continue
            counts[0] += 1
            first = buf[0]
            version = (first >> 3) & 7
            if n < PACKET_LEN or (first & 7) != MODE_CLIENT or not 1 <= version <= 4:
                counts[2] += 1
                continue
            if anc and anc[0][1] == SO_TIMESTAMPNS:
                sec, nsec = unpack_ts(anc[0][2])
                h2 = sec + nsec * 1e-9
            else:
                h2 = host_time()
            if h2 > next_refresh or generation != self._generation:
                generation = self._generation
                self._rebuild()
                headers = self._headers
                next_refresh = h2 + REFRESH
            origin = buf[40:48]
            if self.rate_limit is not None:
                verdict = self.rate_limit.admit(addr[0], h2)
                if verdict != "answer":
                    if verdict == "kod":
                        # a KoD carries no time: every timestamp is the client's own
                        counts[3] += 1
                        self._send(send, kods[version] + origin + origin + origin, addr)
                    else:
                        counts[2] += 1
                    continue
            h0, a, b, h_end, a_end, b_end = clock.params
            off2 = a + b * (h2 - h0) if h2 < h_end else a_end + b_end * (h2 - h_end)
            h3 = host_time()
            off3 = a + b * (h3 - h0) if h3 < h_end else a_end + b_end * (h3 - h_end)
            try:
                send(headers[version] + pack_tail(origin, int((h2 + off2 + delta) * FRAC) & MASK64,
                                                  int((h3 + off3 + delta) * FRAC) & MASK64), addr)
                counts[1] += 1
            except OSError:
                counts[2] += 1

    @staticmethod
    def _send(send, data, addr):
        try:
            send(data, addr)
        except OSError:
            pass

    def stats(self):
        """Counters: requests received, answered, dropped, and RATE kiss-o'-death replies sent."""
        received, answered, dropped, kod = self._counts
        return {"received": received, "answered": answered, "dropped": dropped, "kod": kod}
