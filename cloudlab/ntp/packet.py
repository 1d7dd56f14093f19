"""NTP on the wire: the 48-byte header, reply templates, kernel timestamps, one client exchange.

An NTP packet (RFC 5905) is 48 bytes: LI|VN|Mode, stratum, poll, precision, root
delay and root dispersion (16.16 fixed point seconds), reference ID, then four 64-bit
timestamps (32.32 fixed point seconds since 1900): reference, origin, receive, transmit.

A client sends mode 3 with its transmit time t1.  The server answers mode 4, copying
t1 into *origin*, and adds its receive time t2 and transmit time t3; the client notes
t4 when the reply arrives.  Then offset θ = ((t2-t1)+(t3-t4))/2 and delay
δ = (t4-t1)-(t3-t2).

ntplib encodes and decodes the packets (``ntplib.NTPPacket``/``NTPStats``).  Only the
server's hot path assembles replies itself: the first 24 bytes (everything but the
three per-request timestamps) depend on the server's state, not on the request, so
they are built once per state change (:func:`reply_header`) and each reply is that
header + the request's transmit timestamp + two packed timestamps.

Receive times come from the kernel (``SO_TIMESTAMPNS``): the time the packet reached
the socket, not the later moment Python got round to reading it.
"""

import math
import socket
import struct
import time

import ntplib

from ..errors import InvalidInput, ResourceTimeout
from .clock import ERA_S, NTP_DELTA, to_ntp

NTP_PORT = 123
PACKET_LEN = 48
MODE_CLIENT, MODE_SERVER, MODE_CONTROL, MODE_PRIVATE = 3, 4, 6, 7
LEAP_NONE, LEAP_UNSYNC = 0, 3
STRATUM_KOD, STRATUM_UNSYNC = 0, 16
# frequency tolerance of a clock (RFC 5905's PHI): dispersion grows 15 µs each second
PHI = 15e-6
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
TIMESPEC = struct.Struct("qq")
ANC_SIZE = socket.CMSG_SPACE(TIMESPEC.size)
# the three per-request fields of a reply: origin (copied), receive, transmit
REPLY_TAIL = struct.Struct("!8sQQ")


def measure_precision(samples=2000):
    """log2 of the smallest step between two readings of the host clock, as NTP's precision field."""
    best = 1.0
    for _ in range(samples):
        a = time.time()
        b = time.time()
        while b == a:
            b = time.time()
        best = min(best, b - a)
    return max(-32, min(0, math.floor(math.log2(best))))


PRECISION = measure_precision(200)


def short(seconds):
    """Encode seconds as NTP's 32-bit short format (16.16 fixed point), saturating.

    Rounded up, not down: root delay and dispersion are error bounds, and a bound
    of a few microseconds (a loopback upstream) must not be sent as zero, which
    would claim a perfect path (one unit is about 15 µs).
    """
    return max(0, min(0xFFFFFFFF, math.ceil(seconds * 65536.0)))


def nearest_era(timestamp, reference):
    """``timestamp`` (NTP seconds as read off the wire, era 0) moved to the era nearest ``reference``.

    The wire drops the era (a timestamp is the time modulo 2**32 s); RFC 5905 has a
    client take the era that puts the server's time nearest its own, which is right
    while the two clocks are less than 68 years apart.  A zero timestamp ("not set")
    stays zero.
    """
    if not timestamp:
        return timestamp
    return timestamp + ERA_S * round((reference - timestamp) / ERA_S)


def resolve_eras(stats, reference):
    """Move the origin, receive, transmit and reference timestamps of ntplib's ``stats`` to the eras nearest ``reference``.

    Args:
        stats: an ``ntplib.NTPStats`` decoded from a reply.
        reference: the client's own clock, in NTP seconds (any era).
    """
    for field in ("orig_timestamp", "recv_timestamp", "tx_timestamp", "ref_timestamp"):
        setattr(stats, field, nearest_era(getattr(stats, field), reference))
    return stats


def refid_bytes(refid):
    """Four reference-ID bytes: an IPv4 address becomes its octets, a text code is padded.

    Raises:
        InvalidInput: the text is longer than 4 characters.
    """
    if isinstance(refid, bytes):
        raw = refid
    else:
        try:
            return socket.inet_aton(refid) if refid.count(".") == 3 else refid.encode("ascii").ljust(4, b"\0")
        except OSError:
            raw = refid.encode("ascii")
    if len(raw) > 4:
        raise InvalidInput(f"reference ID {refid!r} is longer than 4 bytes",
                           fix="use a code such as 'LOCL' or an IPv4 address")
    return raw.ljust(4, b"\0")


def refid_text(raw, stratum):
    """Human form of a reference ID: a code for stratum 0/1, a dotted address above."""
    if stratum <= 1:
        return raw.rstrip(b"\0").decode("ascii", "replace")
    return socket.inet_ntoa(raw)


def reply_header(version, leap, stratum, poll, precision, root_delay, root_dispersion, refid, ref_time):
    """The first 32 bytes of a mode 4 reply, with the reference timestamp; 24 + 8 bytes.

    Everything here depends on the server's state only; a reply is this + the
    request's transmit timestamp (origin) + receive and transmit timestamps.
    """
    first = (leap << 6) | (version << 3) | MODE_SERVER
    return struct.pack("!BBbbII4sQ", first, stratum, poll, precision, short(root_delay),
                       short(root_dispersion), refid, to_ntp(ref_time) if ref_time else 0)


def kod_header(version, code=b"RATE"):
    """The first 32 bytes of a kiss-o'-death reply: stratum 0, the code as reference ID."""
    return struct.pack("!BBbbII4sQ", (LEAP_UNSYNC << 6) | (version << 3) | MODE_SERVER,
                       STRATUM_KOD, 0, 0, 0, 0, code, 0)


def enable_timestamps(sock):
    """Ask the kernel to attach its receive time to every datagram on ``sock``."""
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


def kernel_time(ancdata, fallback):
    """Receive time (Unix seconds) from ``recvmsg`` ancillary data, or ``fallback``."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            sec, nsec = TIMESPEC.unpack_from(data)
            return sec + nsec * 1e-9
    return fallback


def is_client_request(data):
    """True when ``data`` is something a server answers: 48+ bytes, mode 3, version 1-4."""
    if len(data) < PACKET_LEN:
        return False
    version = (data[0] >> 3) & 7
    return (data[0] & 7) == MODE_CLIENT and 1 <= version <= 4


class Sample:
    """One client exchange: the four timestamps and what they give.

    Attributes: ``t1``..``t4`` (Unix seconds on the client's/server's clocks), ``offset``,
    ``delay``, ``stratum``, ``leap``, ``refid`` (4 bytes), ``root_delay``,
    ``root_dispersion``, ``host_time`` (host clock at t4), ``stats`` (ntplib's NTPStats),
    ``request_data`` and ``reply_data`` (the two UDP payloads, bytes), ``client_port``
    (the UDP port the request left from) and ``server`` (the ``(address, port)`` that answered).
    """

    def __init__(self, stats, host_time, request_data=b"", reply_data=b"", client_port=None, server=None):
        self.stats = stats
        self.host_time = host_time
        self.request_data = request_data
        self.reply_data = reply_data
        self.client_port = client_port
        self.server = server
        self.t1 = stats.orig_timestamp - NTP_DELTA
        self.t2 = stats.recv_timestamp - NTP_DELTA
        self.t3 = stats.tx_timestamp - NTP_DELTA
        self.t4 = stats.dest_timestamp - NTP_DELTA
        self.offset = stats.offset
        self.delay = stats.delay
        self.stratum = stats.stratum
        self.leap = stats.leap
        self.version = stats.version
        self.mode = stats.mode
        self.poll = stats.poll
        self.precision = stats.precision
        self.refid = struct.pack("!I", stats.ref_id)
        self.root_delay = stats.root_delay
        self.root_dispersion = stats.root_dispersion

    @property
    def kiss_code(self):
        """The kiss-o'-death code (e.g. ``"RATE"``) when the server sent one, else None."""
        return self.refid.decode("ascii", "replace") if self.stratum == STRATUM_KOD else None

    @property
    def synchronised(self):
        """True when the server says its clock is synchronised (leap != 3, stratum 1-15)."""
        return self.leap != LEAP_UNSYNC and 1 <= self.stratum < STRATUM_UNSYNC

    @property
    def refid_text(self):
        """The reference ID as text: a code at stratum 0/1, an IPv4 address above."""
        return refid_text(self.refid, self.stratum)

    @property
    def request(self):
        """The request this client sent, decoded field by field (:class:`~cloudlab.ntp.fields.Packet`)."""
        from .fields import decode
        return decode(self.request_data)

    @property
    def reply(self):
        """The server's reply, decoded field by field (:class:`~cloudlab.ntp.fields.Packet`)."""
        from .fields import decode
        return decode(self.reply_data)

    def __repr__(self):
        return (f"<Sample offset={self.offset * 1e3:+.3f} ms delay={self.delay * 1e3:.3f} ms "
                f"stratum={self.stratum} refid={self.refid_text}>")


def exchange(host, port, clock=None, timeout=1.0, version=4):
    """Send one client request to ``host:port`` and return the :class:`Sample`.

    t1 and t4 are read from ``clock`` (a :class:`~cloudlab.ntp.clock.Clock`; the host clock
    when None), t4 from the kernel's receive timestamp.  The packet is encoded and decoded
    with ntplib.

    Raises:
        ResourceTimeout: no valid reply within ``timeout`` seconds.
        InvalidInput: ``host`` is not an address this machine can send to.
    """
    offset_at = clock.offset_at if clock is not None else (lambda h: 0.0)
    try:
        family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    except (socket.gaierror, OverflowError, TypeError) as exc:
        raise InvalidInput(f"cannot use NTP server address {host}:{port}: {exc}",
                           fix="give an IPv4 address (or name) and a port 1-65535") from None
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        enable_timestamps(sock)
        sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        h1 = time.time()
        t1 = h1 + offset_at(h1) + NTP_DELTA     # NTP seconds, in whatever era our clock is
        request = ntplib.NTPPacket(version=version, mode=MODE_CLIENT, tx_timestamp=t1 % ERA_S).to_data()
        try:
            sock.sendto(request, addr)
            client_port = sock.getsockname()[1]
            while True:
                sock.settimeout(max(1e-3, deadline - time.monotonic()))
                data, anc, _, src = sock.recvmsg(1024, ANC_SIZE)
                h4 = kernel_time(anc, time.time())
                # a reply is ours only if it echoes our transmit timestamp as its origin
                if src[0] == addr[0] and len(data) >= PACKET_LEN and data[24:32] == request[40:48]:
                    break
        except socket.timeout:
            raise ResourceTimeout(f"no NTP reply from {host}:{port} within {timeout} s",
                                  fix="check that an NTP server runs there (python -m cloudlab ntp query)") from None
        except OSError as exc:
            raise ResourceTimeout(f"NTP request to {host}:{port} failed: {exc}",
                                  fix="check that an NTP server runs there") from None
    stats = ntplib.NTPStats()
    stats.from_data(data)
    resolve_eras(stats, t1)
    stats.orig_timestamp = t1      # exactly what we sent, era included
    stats.dest_timestamp = h4 + offset_at(h4) + NTP_DELTA
    return Sample(stats, h4, request_data=request, reply_data=data[:PACKET_LEN], client_port=client_port, server=src[:2])
