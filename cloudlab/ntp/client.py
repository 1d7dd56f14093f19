"""The NTP client side: ask a server what time it is, as ``ntpdate -q`` or ``chronyd -Q`` do.

:func:`query` uses ntplib's own client (``ntplib.NTPClient``) against the host clock,
so what it prints is exactly what the library computes from t1..t4.  :class:`Client`
is a lab member that only *consumes* time: a clock of its own disciplined by a
:class:`~cloudlab.ntp.sync.Syncer`, serving nobody (an NTP client setting, where a
server setting would also answer others).
"""

import socket

import ntplib

from ..errors import InvalidInput, ResourceTimeout
from .clock import Clock
from .packet import NTP_DELTA, refid_text, resolve_eras
from .sync import Syncer, parse_address


def query(server, port=None, timeout=2.0, version=4):
    """Ask ``server`` for the time once; returns ntplib's ``NTPStats`` (offset, delay, stratum...).

    Args:
        server: ``"host"`` or ``"host:port"``.
        port: UDP port, if not in ``server`` (default 123).
        timeout: seconds to wait for the reply.
        version: NTP version to send (3 or 4).
    Raises:
        ResourceTimeout: no reply in time.
        InvalidInput: a bad address.
    """
    host, parsed_port = parse_address(server)
    port = port or parsed_port
    try:
        stats = ntplib.NTPClient().request(host, version=version, port=port, timeout=timeout)
        # ntplib reads every timestamp in era 0; a server past 2036 sends era 1
        return resolve_eras(stats, stats.dest_timestamp)
    except ntplib.NTPException as exc:
        raise ResourceTimeout(f"no NTP reply from {host}:{port}: {exc}",
                              fix="check the server runs: python -m cloudlab ntp serve --port N") from None
    except (socket.gaierror, OverflowError) as exc:
        raise InvalidInput(f"cannot use NTP server address {host}:{port}: {exc}",
                           fix="give an IPv4 address and a port 1-65535") from None
    except OSError as exc:
        raise ResourceTimeout(f"NTP request to {host}:{port} failed: {exc}", fix="check the address") from None


def describe(stats):
    """One line for a query result: offset, delay, stratum, leap and reference ID."""
    import struct
    refid = refid_text(struct.pack("!I", stats.ref_id), stats.stratum)
    return (f"offset {stats.offset:+.6f} s  delay {stats.delay:.6f} s  stratum {stats.stratum}  "
            f"leap {stats.leap}  refid {refid}")


def transmit_time(stats):
    """The server's transmit time t3 of a query result, in Unix seconds."""
    return stats.tx_timestamp - NTP_DELTA


class Client:
    """A lab member that syncs its own clock from upstreams and serves nobody.

    Args:
        upstreams: servers to sync from: ``"host:port"`` strings or lab servers.
        offset: initial clock error (seconds).
        ppm: frequency error (ppm).
        poll: seconds between polls.
        name: label for plots.
        **sync: passed to :class:`~cloudlab.ntp.sync.Syncer`.
    """

    def __init__(self, upstreams, offset=0.0, ppm=0.0, poll=1.0, name=None, **sync):
        self.clock = Clock(offset, ppm)
        self.name = name or "client"
        self.syncer = Syncer(self.clock, upstreams, poll=poll, **sync)

    def start(self):
        """Start polling."""
        self.syncer.start()
        return self

    def stop(self):
        """Stop polling."""
        self.syncer.stop()

    stratum = property(lambda self: self.syncer.stratum, doc="Stratum it would announce (upstream + 1).")
    synchronised = property(lambda self: self.syncer.synchronised, doc="True once synchronised.")
    offset = property(lambda self: self.clock.offset(), doc="Its clock minus the host clock, seconds.")

    def skew(self, offset=0.0, ppm=0.0):
        """Make its clock read host + ``offset``, drifting ``ppm``."""
        self.clock.skew(offset, ppm)

    def sources(self):
        """Its upstreams as ``chronyc sources`` shows them: followed, truechimer, falseticker (see :meth:`Syncer.sources`)."""
        return self.syncer.sources()

    def set_time(self, when):
        """Set its clock, as an administrator would.

        Raises:
            InvalidInput: ``when`` is neither a datetime nor Unix seconds.
        """
        self.clock.set_time(when)

    def __repr__(self):
        return f"<Client {self.name} stratum={self.stratum} offset={self.offset * 1e3:+.3f} ms>"
