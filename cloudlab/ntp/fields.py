"""One NTP packet, field by field: what each of its 48 bytes says.

    0      1        2      3          4-7         8-11             12-15          16-47
    LI|VN|Mode  stratum  poll  precision  root delay  root dispersion  reference ID   4 timestamps

* **LI|VN|Mode**, one byte: leap indicator (2 bits: 0 no warning, 3 clock unsynchronised),
  version (3 bits: 4 today) and mode (3 bits: 3 client, 4 server);
* **stratum**: 1 for a server reading a reference clock (stratum 0: GPS, an atomic clock,
  a radio receiver), upstream + 1 below it, 16 unsynchronised, 0 in a kiss-o'-death;
* **poll** and **precision**: log2 seconds, signed (poll 6 = 64 s; precision -20 ≈ 1 µs);
* **root delay**, **root dispersion**: 16.16 fixed-point seconds to the reference clock;
* **reference ID**: 4 ASCII letters at stratum 0/1 (``GPS``, ``PPS``, ``LOCL``), the
  upstream's IPv4 address above;
* four 64-bit timestamps, 32.32 fixed-point seconds since 1900: reference (last set),
  origin (the client's t1, copied), receive (t2) and transmit (t3; in a request: t1).
"""

import datetime
import struct

from ..errors import InvalidInput
from .clock import NTP_DELTA
from .packet import PACKET_LEN, refid_text

LEAPS = {0: "no warning", 1: "last minute has 61 s", 2: "last minute has 59 s", 3: "clock unsynchronised"}
MODES = {1: "symmetric active", 2: "symmetric passive", 3: "client", 4: "server", 5: "broadcast",
         6: "control", 7: "private"}


class Field:
    """One field of a packet: where it is, its raw bytes, its value and what it means."""

    def __init__(self, start, end, name, raw, value, meaning):
        self.start, self.end, self.name = start, end, name
        self.raw, self.value, self.meaning = raw, value, meaning

    @property
    def where(self):
        """The field's bytes as ``"4-7"`` (or ``"0"`` for one byte)."""
        return str(self.start) if self.end - self.start == 1 else f"{self.start}-{self.end - 1}"

    def __repr__(self):
        return f"<Field {self.name} = {self.value!r}>"


def _timestamp(raw):
    value = struct.unpack("!Q", raw)[0]
    if value == 0:
        return 0.0, "0 (not set)"
    unix = value / 2 ** 32 - NTP_DELTA
    when = datetime.datetime.fromtimestamp(unix, datetime.timezone.utc)
    return unix, when.strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def _stratum_meaning(stratum):
    if stratum == 0:
        return "0: kiss-o'-death (no time in it)"
    if stratum == 1:
        return "1: primary, reads a reference clock (stratum 0)"
    if stratum == 16:
        return "16: unsynchronised"
    return f"{stratum}: {stratum - 1} hop(s) below a reference clock"


class Packet:
    """A decoded 48-byte NTP header: ``fields`` in wire order, ``field(name)`` by name; prints as a table."""

    def __init__(self, data):
        self.data = bytes(data)
        self.fields = list(_fields(self.data))

    def field(self, name):
        """The :class:`Field` called ``name`` (e.g. ``"stratum"``).

        Raises:
            InvalidInput: no field of that name.
        """
        for f in self.fields:
            if f.name == name:
                return f
        raise InvalidInput(f"an NTP packet has no field {name!r}",
                           fix=f"use one of {', '.join(f.name for f in self.fields)}")

    @property
    def mode(self):
        """3 for a client request, 4 for a server reply."""
        return self.data[0] & 7

    def __len__(self):
        return len(self.data)

    def __str__(self):
        rows = [("bytes", "field", "raw (hex)", "means")]
        rows += [(f.where, f.name, f.raw.hex(" "), f.meaning) for f in self.fields]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        return "\n".join("  ".join(col.ljust(w) for col, w in zip(r[:3], widths)) + "  " + r[3] for r in rows)

    def __repr__(self):
        return f"<Packet {len(self.data)} bytes mode {self.mode} ({MODES.get(self.mode, '?')})>"


def decode(data):
    """Decode the first 48 bytes of an NTP packet into a :class:`Packet`.

    Raises:
        InvalidInput: fewer than 48 bytes.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) < PACKET_LEN:
        raise InvalidInput(f"an NTP packet has at least {PACKET_LEN} bytes, not {len(data) if hasattr(data, '__len__') else data!r}",
                           fix="decode the bytes a request or reply carried, e.g. sample.reply_data")
    return Packet(bytes(data[:PACKET_LEN]))


def _fields(data):
    first, stratum, poll, precision = struct.unpack("!BBbb", data[:4])
    leap, version, mode = first >> 6, (first >> 3) & 7, first & 7
    request = mode == 3
    yield Field(0, 1, "LI | VN | Mode", data[0:1], (leap, version, mode),
                f"leap {leap} ({LEAPS[leap]}), version {version}, mode {mode} ({MODES.get(mode, 'reserved')})")
    yield Field(1, 2, "stratum", data[1:2], stratum,
                "0: not set by a client" if request and stratum == 0 else _stratum_meaning(stratum))
    yield Field(2, 3, "poll", data[2:3], poll, f"2^{poll} s between polls")
    yield Field(3, 4, "precision", data[3:4], precision, f"2^{precision} s ≈ {2.0 ** precision * 1e6:.3g} µs")
    root_delay, root_disp = (v / 65536 for v in struct.unpack("!II", data[4:12]))
    yield Field(4, 8, "root delay", data[4:8], root_delay, f"{root_delay * 1e3:.3f} ms round trip to the reference")
    yield Field(8, 12, "root dispersion", data[8:12], root_disp, f"{root_disp * 1e3:.3f} ms error bound to the reference")
    refid = data[12:16]
    text = refid_text(refid, stratum) if any(refid) else "(none)"
    yield Field(12, 16, "reference ID", refid, text,
                f"{text!r}: " + ("a code for the reference clock" if stratum <= 1 else "the upstream's IPv4 address")
                if any(refid) else "(none)")
    names = [("reference timestamp", "when the clock was last set"),
             ("origin timestamp", "t1 copied from the request" if not request else "unused in a request"),
             ("receive timestamp", "t2: the request reached the server" if not request else "unused in a request"),
             ("transmit timestamp", "t3: the reply left the server" if not request else "t1: the request left the client")]
    for i, (name, role) in enumerate(names):
        start = 16 + 8 * i
        value, when = _timestamp(data[start:start + 8])
        yield Field(start, start + 8, name, data[start:start + 8], value, f"{when}: {role}" if value else when)
