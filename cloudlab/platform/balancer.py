"""The load balancer: a real HAProxy (Debian's), started by the lab inside its network namespace.

OpenStack's load balancer service (Octavia) runs HAProxy in "amphorae"; here one
HAProxy process per lab plays that part.  Each app gets a *frontend* (an address
and port: its route) and a *backend* (its instances' addresses), balanced round
robin, with a health check every second that takes a dead instance out of the
rotation until it answers again.

HAProxy runs in master-worker mode (``-W``): changing the configuration is a
SIGUSR2 to the master, which starts new workers with the new file while the old
ones finish their connections, so a route keeps answering while an app scales.
The runtime API on a Unix socket (``show stat``) says which servers each backend
has, whether they are UP, and how many requests each one answered.
"""

import csv
import io
import shutil
import signal
import socket
import subprocess
import time

from ..errors import CloudlabError, MissingPrerequisite, ResourceTimeout
from ..host import netns as netns_mod
from ..host import ownership

HEALTH = "check inter 500ms fall 2 rise 1"


def render(routes, stats_socket):
    """HAProxy's configuration text for ``routes``: ``{app: (address, port, [(server, addr, port)])}``."""
    lines = ["global",
             f"    stats socket {stats_socket} mode 600 level admin expose-fd listeners",
             "    maxconn 512",          # small: the file-descriptor limit follows it, and it cannot be raised here
             "    ulimit-n 1100",
             "defaults",
             "    mode http",
             "    timeout connect 2s",
             "    timeout client 30s",
             "    timeout server 30s",
             "    timeout queue 10s",
             "    retries 2",
             "    option redispatch",     # a request sent to an instance that just died goes to another
             ]
    for app, (address, port, servers) in sorted(routes.items()):
        lines += ["", f"frontend {app}", f"    bind {address}:{port}", f"    default_backend {app}",
                  "", f"backend {app}", "    balance roundrobin",
                  "    http-response set-header X-Served-By %s"]
        lines += [f"    server {name} {addr}:{sport} {HEALTH}" for name, addr, sport in servers]
    return "\n".join(lines) + "\n"


class Balancer:
    """One HAProxy process of a lab: its configuration file, its runtime socket, its routes.

    Args:
        home: folder for the configuration, socket and log.
        prefix: the lab's prefix; every file here carries it.
        netns: the lab's network namespace (None: the machine's network).
    """

    def __init__(self, home, prefix, netns=None):
        self.netns = netns
        self.config_path = home / f"{prefix}haproxy.cfg"
        self.socket_path = home / f"{prefix}haproxy.sock"
        self.log_path = home / f"{prefix}haproxy.log"
        self.routes = {}
        self._proc = None
        self._log = None

    @property
    def pid(self):
        """The HAProxy master's PID (None when it does not run)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _write(self):
        self.config_path.write_text(render(self.routes, self.socket_path))
        check = subprocess.run(netns_mod.enter_args(self.netns) + ["haproxy", "-c", "-q", "-f", str(self.config_path)],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise CloudlabError(f"HAProxy refused the configuration: {(check.stderr or check.stdout).strip()[-400:]}")

    def start(self):
        """Start HAProxy with the current routes.

        Raises:
            MissingPrerequisite: haproxy is not installed.
        """
        if shutil.which("haproxy") is None:
            raise MissingPrerequisite("HAProxy is not installed", fix="make system  (or: apt-get install haproxy)")
        if self.pid:
            return
        self._write()
        self.socket_path.unlink(missing_ok=True)
        self._log = open(self.log_path, "ab")
        # -W: master-worker (reload by SIGUSR2); -db: stay in the foreground, a child of ours
        self._proc = subprocess.Popen(netns_mod.enter_args(self.netns) +
                                      ["haproxy", "-W", "-db", "-f", str(self.config_path)],
                                      stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=ownership.child_env())
        self._wait_for(lambda names: True, what="HAProxy to open its runtime socket")

    def stop(self):
        """Stop HAProxy and remove its files."""
        if self._proc is not None:
            from ..process import stop_process
            stop_process(self._proc, timeout=5)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        for path in (self.config_path, self.socket_path, self.log_path):
            path.unlink(missing_ok=True)

    def set_route(self, app, address, port, servers):
        """Add or change the route of ``app``: frontend ``address:port`` to ``servers`` [(name, addr, port)]."""
        self.routes[app] = (address, port, list(servers))
        self.reload()

    def remove_route(self, app):
        """Remove the route of ``app`` (its frontend and backend)."""
        if self.routes.pop(app, None) is not None and self.pid:
            self.reload()

    def reload(self):
        """Write the configuration and have HAProxy take it, without dropping the routes."""
        if not self.pid:
            return self.start()
        self._write()
        self._proc.send_signal(signal.SIGUSR2)
        want = {(app, name) for app, (_, _, servers) in self.routes.items() for name, _, _ in servers}
        self._wait_for(lambda names: names == want, what="HAProxy to take the new configuration")

    def _wait_for(self, condition, what, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise CloudlabError(f"HAProxy ended (status {self._proc.returncode}): "
                                    f"{self.log_path.read_text(errors='replace')[-500:]}",
                                    fix="read the message above; is another program on the route's port?")
            try:
                names = {(row["pxname"], row["svname"]) for row in self.stat()
                         if row["svname"] not in ("FRONTEND", "BACKEND")}
                if condition(names):
                    return
            except OSError:
                pass                 # the new worker has not opened the socket yet
            if time.monotonic() > deadline:
                raise ResourceTimeout(f"waited {timeout:g} s for {what}", fix=f"read {self.log_path}")
            time.sleep(0.02)

    def command(self, line):
        """Send one line to HAProxy's runtime API and return its answer (text)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def stat(self):
        """HAProxy's ``show stat``: one dict per frontend, backend and server (pxname, svname, status, stot...)."""
        text = self.command("show stat").lstrip("# ")
        return [row for row in csv.DictReader(io.StringIO(text)) if row.get("pxname")]
