"""Time (NTP, UDP 123): servers with their own clocks, a stratum hierarchy, a client, a CLI.

NTP keeps every server and network device on one time.  Servers form a hierarchy
(계층, *stratum*): stratum 1 reads a reference clock, stratum 2 syncs from stratum 1,
and so on; a machine can be an NTP client (syncs from above), a server (answers
below), or both.  Here each server is a real UDP server with a clock of its own (host
clock + an offset and drift the lab sets), so learners skew clocks and watch them
converge without touching the host's clock.

    lab.ntp.server                       # the lab's stratum 1 server (loopback, free port)
    s2 = lab.ntp.add_server(upstreams=[lab.ntp.server.url], offset=2.0)
    h = lab.ntp.hierarchy(stratum2=2, clients=2)

``python -m cloudlab ntp serve --port N [--stratum1 | --upstream HOST:PORT] [--offset S]``
runs one server in the foreground; ``python -m cloudlab ntp query HOST[:PORT]`` asks one.
"""

import os
import signal
import subprocess
import sys
import threading

from ..errors import InvalidInput, MissingPrerequisite, NotFound
from ..process import stop_process
from .client import Client, describe, query
from .clock import Clock, ClockEvent
from .fields import Packet, decode
from .hierarchy import Hierarchy
from .packet import NTP_PORT, Sample, exchange
from .server import NTPServer, RateLimit
from .sync import Sources, Syncer, parse_address

__all__ = ["TimeService", "NTPServer", "RateLimit", "Client", "Clock", "ClockEvent", "Hierarchy", "Syncer",
           "Sources", "Sample", "Packet", "exchange", "query", "describe", "decode", "add_arguments", "main",
           "NTP_PORT"]


class TimeService:
    """The lab's time service: its stratum 1 server and every NTP server the lab builds.

    Args:
        lab: the :class:`~cloudlab.lab.Lab` it belongs to.
    """

    def __init__(self, lab):
        self.lab = lab
        self.server = None
        self.servers = []
        self.hierarchies = []
        self.guest_servers = []
        self.guest_ntp = None      # "ADDR[:PORT]" guests sync from, once serve_guests() runs

    def start(self):
        """Start the lab's stratum 1 server on 127.0.0.1 (a free port)."""
        if self.server is None:
            self.server = self.add_server(name="stratum1")
        return self

    def add_server(self, upstreams=None, offset=0.0, ppm=0.0, name=None, **options):
        """Build, start and track one more NTP server (see :class:`NTPServer` for options).

        Raises:
            InvalidInput: bad options; Conflict: the port is taken.
        """
        server = NTPServer(upstreams=upstreams, offset=offset, ppm=ppm,
                           name=name or f"ntp{len(self.servers) + 1}", **options).start()
        self.servers.append(server)
        return server

    def add_client(self, upstreams, **options):
        """Build, start and track a client that syncs from ``upstreams`` and serves nobody.

        Args:
            upstreams: servers to sync from: lab servers (their names show in ``sources()``) or ``"host:port"``.
            options: see :class:`Client` (offset, ppm, poll, name, step_threshold...).
        Raises:
            InvalidInput: no upstream, or a bad address.
        """
        client = Client(upstreams, **options).start()
        self.servers.append(client)
        return client

    def hierarchy(self, stratum2=2, clients=2, **options):
        """Build, start and track a :class:`Hierarchy` (stratum 1 → stratum 2 → clients)."""
        h = Hierarchy(stratum2=stratum2, clients=clients, **options).start()
        self.hierarchies.append(h)
        return h

    def exchange(self, server, timeout=1.0):
        """One client exchange with ``server`` (a lab server or ``"host:port"``), timed by the host clock.

        Returns a :class:`Sample`: t1..t4, offset, delay, and both packets (``sample.request``,
        ``sample.reply``) decoded field by field.

        Raises:
            ResourceTimeout: no reply in time.  InvalidInput: a bad address.
        """
        host, port = parse_address(getattr(server, "url", server))
        return exchange(host, port, timeout=timeout)

    def query(self, server, timeout=2.0):
        """Ask ``server`` (a lab server or ``"host:port"``) with ntplib's own client; returns its ``NTPStats``.

        Raises:
            ResourceTimeout: no reply in time.  InvalidInput: a bad address.
        """
        return query(getattr(server, "url", server), timeout=timeout)

    def find(self, name):
        """The server or client called ``name`` that this service (or one of its hierarchies) runs.

        Raises:
            NotFound: no member of that name.
        """
        members = [*self.servers, *(m for h in self.hierarchies for m in h.members)]
        for member in reversed(members):       # the newest of a name wins
            if member.name == name:
                return member
        raise NotFound(f"the lab runs no NTP server or client called {name!r}",
                       fix=f"these run: {', '.join(sorted({m.name for m in members})) or 'none'}")

    def serve_guests(self, address, netns=None, port=NTP_PORT, offset=0.0):
        """Serve stratum 1 NTP on ``address:port`` inside the lab's network namespace, for guests.

        Guests (the image's ``cloudlab-sntp``, told by ``cloudlab.ntp=ADDR`` on the kernel
        command line) reach UDP 123 on the lab bridge's address, which lives in the lab
        namespace; a thread cannot enter another namespace, so this runs
        ``python -m cloudlab ntp serve`` there as a child process, ended by its PID on stop.
        Servers the lab's compute service creates afterwards sync from it, as OpenStack's
        install guide has every node sync from the controller.

        Args:
            address: the address guests reach (e.g. the lab bridge's, ``lab.host.gateway``).
            netns: network namespace name; the lab's (``CLOUDLAB_NETNS``) by default.
            port: UDP port, 123 by default.
            offset: seconds this server's clock is set off (to watch guests follow).
        Raises:
            MissingPrerequisite: not root, or no namespace given.
        """
        from .. import config
        netns = netns or config.netns()
        if os.geteuid() != 0:
            raise MissingPrerequisite("serving NTP on port 123 in a network namespace needs root",
                                      fix="run the lab as root (make lab) or use a loopback port")
        if not netns:
            raise MissingPrerequisite("no lab network namespace to serve guests in",
                                      fix="set CLOUDLAB_NETNS or pass netns=")
        log = open(self.lab.home / f"{self.lab.prefix}ntp-guests.log", "ab")
        cmd = ["ip", "netns", "exec", netns, sys.executable, "-m", "cloudlab", "ntp", "serve",
               "--address", address, "--port", str(port), "--stratum1", "--offset", str(float(offset))]
        from ..host.ownership import child_env      # marked as the lab's, for `host leftovers` and `host down`
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=child_env())
        log.close()
        self.guest_servers.append(proc)
        self.guest_ntp = address if port == NTP_PORT else f"{address}:{port}"
        return proc

    def stop(self):
        """Stop every server, client, hierarchy and guest-facing process this service started."""
        for h in self.hierarchies:
            h.stop()
        for s in reversed(self.servers):
            s.stop()
        for proc in self.guest_servers:
            stop_process(proc)
        self.hierarchies, self.servers, self.guest_servers, self.server = [], [], [], None
        self.guest_ntp = None

    def __repr__(self):
        return f"<TimeService {len(self.servers)} servers, stratum 1 at {self.server.url if self.server else '-'}>"


# --- command line -----------------------------------------------------------------

def add_arguments(parser):
    """Add the ``ntp serve`` and ``ntp query`` sub-commands to ``parser``."""
    sub = parser.add_subparsers(dest="ntp_command", required=True)
    serve = sub.add_parser("serve", help="run an NTP server in the foreground")
    serve.add_argument("--address", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=12300, help="UDP port (123 needs root)")
    mode = serve.add_mutually_exclusive_group()
    mode.add_argument("--stratum1", action="store_true", help="serve the host clock as stratum 1 (default)")
    mode.add_argument("--upstream", action="append", metavar="HOST:PORT", help="sync from this server (repeatable)")
    serve.add_argument("--offset", type=float, default=0.0, help="start the clock this many seconds off")
    serve.add_argument("--ppm", type=float, default=0.0, help="frequency error of the clock, ppm")
    serve.add_argument("--poll", type=float, default=1.0, help="seconds between polls of upstreams")
    serve.add_argument("--ratelimit", metavar="RATE[/BURST]",
                       help="per-client limit, e.g. 8/16 (requests/s and burst); off by default, like chrony")
    q = sub.add_parser("query", help="ask an NTP server for the time")
    q.add_argument("server", metavar="HOST[:PORT]")
    q.add_argument("--timeout", type=float, default=2.0)


def _rate_limit(text):
    if not text:
        return None
    rate, _, burst = text.partition("/")
    try:
        return RateLimit(float(rate), float(burst) if burst else 2 * float(rate))
    except ValueError:
        raise InvalidInput(f"bad --ratelimit {text!r}", fix="write RATE or RATE/BURST, e.g. 8/16") from None


def main(args):
    """Run ``ntp serve`` (until interrupted) or ``ntp query``; returns the exit status."""
    if args.ntp_command == "query":
        stats = query(args.server, timeout=args.timeout)
        print(describe(stats))
        return 0
    server = NTPServer(args.address, args.port, upstreams=args.upstream, offset=args.offset, ppm=args.ppm,
                       poll=args.poll, rate_limit=_rate_limit(args.ratelimit), name="cli")
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    server.start()
    print(f"serving NTP on {server.url} stratum {server.stratum} (Ctrl-C stops)", flush=True)
    try:
        done.wait()
    finally:
        server.stop()
    return 0
