"""The lab host: a libvirt daemon that runs the lab's guests, and the lab's network.

``up()`` makes a lab host available and ``down()`` takes away what ``up()`` made.

* A learner's machine usually runs libvirtd already (systemd); cloudlab uses it
  through ``qemu:///system`` and only adds its own networks and domains.
* Where none runs (no systemd, as on CI), or when the lab must live in a network
  namespace (``CLOUDLAB_NETNS``), cloudlab starts a private ``virtlogd`` and
  ``libvirtd`` by hand.  They run in a mount namespace of their own where
  /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/log/libvirt and
  /var/cache/libvirt are folders under cloudlab's state directory, so the
  host's libvirt configuration is never read or written, and their socket is
  reached as ``qemu:///system?socket=...``.
* KVM is chosen by booting the lab's guest with it (``cloudlab.host.qemu.kvm_usable``);
  the answer is cached per boot of the host and QEMU version.  Where KVM is
  unusable but /dev/kvm exists, libvirt re-probes QEMU on every domain start
  (22-45 s each, HOST.md); the private daemon's mount namespace covers /dev/kvm
  with an inaccessible, read-only file and its qemu.conf says ``namespaces = []``, which
  brings a start down to a fraction of a second.

Every resource carries the lab prefix, and ``clean(prefix)`` removes exactly
the domains, networks (with their DHCP leases) and files that carry it.
"""

import contextlib
import dataclasses
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .. import config
from . import netns
from ..errors import CloudlabError, Conflict, HostUnreachable, MissingPrerequisite, NotFound

SYSTEM_URI = "qemu:///system"
PRIVATE_DIRS = {
    "/etc/libvirt": "etc",
    "/run/libvirt": "run",
    "/var/lib/libvirt": "lib",
    "/var/log/libvirt": "log",
    "/var/cache/libvirt": "cache",
}
# qemu.conf of the private daemon; see the module docstring for why
QEMU_CONF = """\
# written by cloudlab for its private libvirtd; the host's /etc/libvirt is untouched
# QEMU runs as root so it can read images and disks under the lab's home
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
# no private /dev per guest: it would try to bind the covered /dev/kvm (HOST.md)
namespaces = [ ]
"""
LIBVIRTD_CONF = """\
# written by cloudlab for its private libvirtd
log_outputs = "3:file:{log}"
unix_sock_group = "root"
unix_sock_rw_perms = "0770"
"""
KVM_PROBE_TIMEOUT = 6.0

_libvirt = None


def libvirt_module():
    """The ``libvirt`` Python module, with libvirt's own stderr error printing silenced.

    Raises:
        MissingPrerequisite: libvirt-python is not installed.
    """
    global _libvirt
    if _libvirt is None:
        try:
            import libvirt
        except ImportError:
            raise MissingPrerequisite("the libvirt Python binding is not installed",
                                      fix="run `make lab` (it installs libvirt-python into .venv)") from None
        # errors reach us as exceptions; libvirt's default handler would also print them
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        _libvirt = libvirt
    return _libvirt


def state_dir():
    """Folder of the host's state: one per network namespace, so a test run never meets a learner's lab."""
    name = config.netns() or "default"
    path = config.home() / "host" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclasses.dataclass
class HostState:
    """What ``up()`` set up, as saved in ``state.json``."""

    uri: str
    accel: str                 # "kvm" or "tcg"
    private: bool              # True: cloudlab started the daemons below
    netns: str = None
    netns_created: bool = False
    pids: dict = dataclasses.field(default_factory=dict)
    netns_inode: int = 0       # identifies the namespace even after it is deleted
    dnsmasq_restarts: dict = dataclasses.field(default_factory=dict)   # network -> when libvirtd was restarted for it

    @property
    def domain_type(self):
        """libvirt's domain type for this accelerator: ``kvm`` or ``qemu``."""
        return "kvm" if self.accel == "kvm" else "qemu"


def _state_file():
    return state_dir() / "state.json"


def load_state():
    """The saved HostState, or None."""
    try:
        return HostState(**json.loads(_state_file().read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _save_state(state):
    tmp = _state_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(state), indent=1))
    os.replace(tmp, _state_file())


def _pid_alive(pid):
    """True while process ``pid`` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, TypeError):
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


# the one fix of every libvirt connection error (HostUnreachable)
HOST_UP_FIX = ("run `python -m cloudlab host up` (it restarts the lab's libvirtd if it died; on a machine "
               "with systemd, `sudo systemctl start libvirtd`); cloudlab reconnects by itself afterwards")
PERMISSION_FIX = ("join the libvirt group (`sudo usermod -aG libvirt $USER`, then log in again), "
                  "or run as root")


def is_connection_error(exc):
    """True when ``exc`` (a libvirtError) says the daemon is gone or the connection to it broke.

    Such errors come from libvirt's client side (the RPC layer: "client socket is
    closed", "Cannot write data: Broken pipe", "Failed to connect socket", "End of
    file while reading data") or say the connection itself is invalid.
    """
    libvirt = libvirt_module()
    code, domain = exc.get_error_code(), exc.get_error_domain()
    if code in _PERMISSION_CODES:
        return False
    return code in (libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_INVALID_CONN, libvirt.VIR_ERR_RPC) or \
        domain in (libvirt.VIR_FROM_RPC, libvirt.VIR_FROM_REMOTE)


_PERMISSION_CODES = (45, 94, 79, 88)   # AUTH_FAILED, AUTH_UNAVAILABLE, AUTH_CANCELLED, ACCESS_DENIED


def unreachable(what, detail):
    """The :class:`~cloudlab.errors.HostUnreachable` for ``what`` failing because libvirt did not answer."""
    return HostUnreachable(f"{what}: the lab host's libvirt daemon does not answer ({detail})", fix=HOST_UP_FIX)


def libvirt_error(exc, what):
    """A CloudlabError for a libvirtError raised while doing ``what``: connection errors are all one kind.

    Returns:
        HostUnreachable for a broken or refused connection, MissingPrerequisite for a
        permission problem, NotFound for a missing network, CloudlabError otherwise.
    """
    libvirt = libvirt_module()
    message = exc.get_error_message() or str(exc)
    if is_connection_error(exc):
        return unreachable(what, message)
    if exc.get_error_code() in _PERMISSION_CODES:
        return MissingPrerequisite(f"{what}: libvirt refused the connection ({message})", fix=PERMISSION_FIX)
    if exc.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
        return NotFound(f"{what}: {message}", fix="use the lab's network (network=None)")
    return CloudlabError(f"{what}: libvirt says: {message}", fix="python -m cloudlab doctor")


def open_connection(uri, timeout=None):
    """A libvirt connection to ``uri``.

    Raises:
        HostUnreachable: libvirtd does not answer (a MissingPrerequisite; the fix is ``host up``).
        MissingPrerequisite: libvirt refused us (permissions).
    """
    libvirt = libvirt_module()
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise libvirt_error(exc, f"connecting to {uri}") from None


def _system_libvirtd_running():
    if not os.path.exists("/run/libvirt/libvirt-sock") and not os.path.exists("/var/run/libvirt/libvirt-sock"):
        return False
    try:
        open_connection(SYSTEM_URI).close()
        return True
    except MissingPrerequisite:
        return False


def kvm_decision(image=None):
    """``"kvm"`` or ``"tcg"``, decided by booting the lab's guest, cached per host boot and QEMU.

    Set ``CLOUDLAB_ACCEL=tcg`` (or ``kvm``) to skip the probe.
    """
    forced = os.environ.get("CLOUDLAB_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced
    from . import qemu
    from ..image import default_image
    if not os.path.exists("/dev/kvm"):
        return "tcg"
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = "unknown"
    key = f"{boot_id}|{qemu.qemu_version()}"
    cache = config.home() / "host" / "kvm.json"
    try:
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            return saved["accel"]
    except (OSError, ValueError):
        pass
    accel = "kvm" if qemu.kvm_usable(image or default_image(), timeout=KVM_PROBE_TIMEOUT) else "tcg"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"key": key, "accel": accel}))
    return accel


def _tool(name):
    path = shutil.which(name, path=os.pathsep.join(["/usr/sbin", "/sbin", os.environ.get("PATH", "")]))
    if not path:
        raise MissingPrerequisite(f"{name} is not installed",
                                  fix="run `make lab`, or `sudo apt-get install libvirt-daemon-system`")
    return path


DAEMONS = ("virtlogd", "libvirtd")     # in the order they start


def _private_uri(state_path):
    return f"{SYSTEM_URI}?socket={state_path / 'run' / 'libvirt-sock'}"


def _reset_private_dirs(state_path):
    """Empty the runtime state a private libvirtd left (a fresh host starts with none).

    ``run`` and ``lib`` hold what a daemon knows about running guests and networks, and
    ``etc/qemu`` the definitions of domains: left from a host that died without
    ``down()``, they would make a fresh daemon adopt guests and networks of a
    namespace that is gone.  The capabilities cache (``cache``) and the logs stay.
    """
    for sub in ("run", "lib", "etc"):
        shutil.rmtree(state_path / sub, ignore_errors=True)


def _start_private_daemons(state_path, accel, ns, only=DAEMONS, fresh=True, hostname=None, owner=None,
                           listen=None, enter=None, host_pid=None):
    """Start virtlogd and libvirtd (or ``only`` some of them) in a private mount namespace, inside ``ns`` if set.

    Args:
        fresh: a new host: reset the private folders and write the configuration first.
            A repair (``fresh=False``) keeps them, so a restarted libvirtd finds the
            guests and networks still running and adopts them.
        hostname: give the daemons a UTS namespace of their own with this host name (a
            node of a multi-node lab: libvirt reports it as the hypervisor's name).
        owner: the state folder named in the daemons' owner mark (default ``state_path``).
        listen: an address on which libvirtd also accepts unauthenticated TCP connections
            (``qemu+tcp://ADDR/system``, port 16509), for peer-to-peer live migration
            between nodes; only ever an address inside the lab's own namespaces.
        enter: a command prefix that enters namespaces made already (a node's, held by its
            init: :meth:`cloudlab.host.nodes.Node.enter_args`): the daemons' mounts are then
            made in that mount namespace, and ``ns`` and ``hostname`` are not used.
        host_pid: turns a pid the daemons wrote (in their own PID namespace) into this
            machine's; by default the pid files hold this machine's pids already.
    Returns:
        the URI and ``{daemon: pid}`` of the daemons started.
    """
    if os.geteuid() != 0:
        raise MissingPrerequisite("no libvirtd is running and only root can start a private one",
                                  fix="start libvirtd (`sudo systemctl start libvirtd`) and join the "
                                      "libvirt group (`sudo usermod -aG libvirt $USER`), or run as root")
    programs = {name: _tool(name) for name in only}
    if fresh:
        _reset_private_dirs(state_path)
    for sub in PRIVATE_DIRS.values():
        (state_path / sub).mkdir(parents=True, exist_ok=True)
    (state_path / "etc" / "qemu.conf").write_text(QEMU_CONF)
    conf = LIBVIRTD_CONF.format(log=state_path / "log" / "libvirtd.log")
    if listen:
        # inside a node's private network namespace only: nobody but the lab's nodes can connect
        conf += f'listen_tls = 0\nlisten_tcp = 1\nlisten_addr = "{listen}"\nauth_tcp = "none"\n'
    (state_path / "etc" / "libvirtd.conf").write_text(conf)
    (state_path / "etc" / "virtlogd.conf").write_text("# written by cloudlab\n")
    cover = state_path / "kvm-cover"
    cover.touch()
    cover.chmod(0)
    for name in only:
        (state_path / f"{name}.pid").unlink(missing_ok=True)
    lines = ["set -e"]
    if hostname and not enter:
        lines.append(f"hostname {hostname}")
    for target, sub in PRIVATE_DIRS.items():
        lines.append(f"mkdir -p {target} && mount --bind {state_path / sub} {target}")
    if accel != "kvm" and os.path.exists("/dev/kvm"):
        # read-only as well: libvirt asks access(R_OK|W_OK), which root passes on any
        # mode but not on a read-only mount, so KVM reads as unusable and is not re-probed
        lines.append(f"mount --bind {cover} /dev/kvm && mount -o remount,bind,ro /dev/kvm")
    lines += [f"{programs[name]} -d{' --listen' if listen and name == 'libvirtd' else ''} "
              f"-p {state_path / (name + '.pid')}" for name in DAEMONS if name in only]
    if enter:
        args = list(enter) + ["sh", "-c", "\n".join(lines)]
    else:
        args = netns.enter_args(ns) + ["unshare", "-m", *(["-u"] if hostname else []), "--propagation", "private",
                                       "sh", "-c", "\n".join(lines)]
    from .ownership import child_env
    result = subprocess.run(args, capture_output=True, text=True, env=child_env(state_dir=owner or state_path))
    if result.returncode != 0:
        raise CloudlabError(f"could not start the private libvirtd: {result.stderr.strip()[-500:]}",
                            fix=f"see {state_path / 'log' / 'libvirtd.log'}")
    uri = _private_uri(state_path)
    libvirt = libvirt_module()
    deadline = time.monotonic() + 30
    while "libvirtd" in only:
        try:
            libvirt.open(uri).close()
            break
        except libvirt.libvirtError:
            if time.monotonic() > deadline:
                raise CloudlabError("the private libvirtd did not answer within 30 s",
                                    fix=f"see {state_path / 'log' / 'libvirtd.log'}") from None
            time.sleep(0.1)
    pids = {}
    for name in only:
        # a daemon writes its pid file once it has detached: wait for it
        while True:
            try:
                pid = int((state_path / f"{name}.pid").read_text())
                pid = host_pid(pid) if host_pid else pid
            except (OSError, ValueError):
                pid = None
            if pid:
                pids[name] = pid
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
    return uri, pids


DNSMASQ_RETRY_S = 60.0     # a dnsmasq that dies again this soon after a restart is not restarted again


def _dead_dnsmasq(state):
    """Networks of a private host whose dnsmasq (DHCP and DNS) is dead: libvirt does not restart it.

    A network whose dnsmasq was brought back less than ``DNSMASQ_RETRY_S`` ago is left
    out: one that dies as soon as it starts must not restart libvirtd on every call.
    """
    if not state.private:
        return []
    dead = []
    for status in sorted((state_dir() / "run" / "network").glob("*.xml")):
        # an active network has a status file; libvirt leaves the pid files of destroyed ones
        pidfile = status.with_suffix(".pid")
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        recent = time.time() - state.dnsmasq_restarts.get(pidfile.stem, 0) < DNSMASQ_RETRY_S
        if not _pid_alive(pid) and not recent:
            dead.append(pidfile.stem)
    return dead


def _namespace_inode(name):
    try:
        return os.stat(netns.path(name)).st_ino
    except OSError:
        return None


# Which namespace this host's folder created, kept apart from state.json: a host whose
# record went (or that came up again over a namespace an earlier host of this folder
# made and could not remove) still removes the namespace it made, and only that one.
_MADE_NAMESPACE = "netns-made.json"


def _create_namespace(ns):
    """Create ``ns`` (or adopt it when this folder made it earlier); returns True when it is ours."""
    if netns.create(ns):
        (state_dir() / _MADE_NAMESPACE).write_text(json.dumps({"name": ns, "inode": _namespace_inode(ns)}))
        return True
    return _made_here(ns)


def _made_here(ns):
    """True when namespace ``ns`` as it exists now is the one this host's folder created."""
    try:
        made = json.loads((state_dir() / _MADE_NAMESPACE).read_text())
    except (OSError, ValueError):
        return False
    return made.get("name") == ns and made.get("inode") == _namespace_inode(ns) is not None


def _foreign_processes(ns):
    """Processes living in namespace ``ns`` when this host's folder did not make it, else ``[]``.

    Such a namespace is another lab host's (another ``CLOUDLAB_HOME`` with the same
    ``CLOUDLAB_NETNS``): this host must neither start daemons beside that host's nor
    sweep its processes as leftovers of its own.
    """
    if not ns or not netns.exists(ns) or _made_here(ns):
        return []
    from .ownership import all_processes
    inode = _namespace_inode(ns)
    return [proc for proc in all_processes() if proc.net_inode == inode]


def _delete_namespace(ns):
    netns.delete(ns)
    (state_dir() / _MADE_NAMESPACE).unlink(missing_ok=True)


def _healthy(state):
    if state.private and not all(_pid_alive(state.pids.get(name)) for name in DAEMONS):
        return False
    if state.netns and _namespace_inode(state.netns) != (state.netns_inode or _namespace_inode(state.netns)):
        return False
    if _dead_dnsmasq(state):
        return False
    try:
        open_connection(state.uri).close()
        return True
    except MissingPrerequisite:
        return False


_up_lock = threading.RLock()
_lock_depth = threading.local()


@contextlib.contextmanager
def _host_lock():
    """One ``up()`` or ``down()`` at a time for this host, across threads and processes (re-entrant)."""
    with _up_lock:
        depth = getattr(_lock_depth, "n", 0)
        if depth:
            _lock_depth.n = depth + 1
            try:
                yield
            finally:
                _lock_depth.n = depth
            return
        with open(state_dir() / "lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            _lock_depth.n = 1
            try:
                yield
            finally:
                _lock_depth.n = 0
                fcntl.flock(f, fcntl.LOCK_UN)


def _namespace_holder(state):
    """A lab process still living in the host's namespace (by inode) after its name was deleted, or None."""
    from .ownership import Scope
    scope = Scope.current()
    for proc, _ in scope.processes:
        if proc.net_inode == state.netns_inode:
            return proc.pid
    return None


def _repair(state, say):
    """Bring a private host back without losing what runs in it; returns the state, or None if it cannot.

    The namespace stays (or gets its name back, when the name was deleted while lab
    processes still live in it), only the daemons that died are started again, in the
    same namespace and with the same folders, so a new libvirtd adopts the running
    guests and networks (and starts a network's dead dnsmasq again).
    """
    ns = state.netns
    if ns:
        inode = _namespace_inode(ns)
        if inode is None:
            holder = _namespace_holder(state)
            if holder is None:
                return None                     # nothing of it is left: start afresh
            subprocess.run(["ip", "netns", "attach", ns, str(holder)], capture_output=True, check=False)
            inode = _namespace_inode(ns)
            if inode == state.netns_inode:
                say(f"network namespace {ns} was deleted while the lab still ran in it: its name is back")
        if inode != state.netns_inode:
            return None                         # another namespace took the name
    dead = [name for name in DAEMONS if not _pid_alive(state.pids.get(name))]
    networks = _dead_dnsmasq(state)
    if "libvirtd" not in dead:
        if networks or not _answers(state.uri, timeout=10):
            # libvirt starts a network's dnsmasq again only when it starts itself
            _stop_pid(state.pids["libvirtd"])
            dead.append("libvirtd")
    state.dnsmasq_restarts.update({name: time.time() for name in networks})
    if not dead:
        return state
    _, pids = _start_private_daemons(state_dir(), state.accel, ns, only=dead, fresh=False)
    state.pids.update(pids)
    say(f"restarted {' and '.join(dead)}" + (f" in network namespace {ns}" if ns else "") +
        "; running servers and networks are kept")
    return state


def _answers(uri, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            open_connection(uri).close()
            return True
        except MissingPrerequisite:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)


def up(progress=None):
    """Make the lab host available and return its :class:`HostState` (a no-op when it is up).

    A host that is partly down is repaired, not rebuilt: daemons that died are started
    again in the same network namespace, which is kept while anything lives in it, and
    running servers and networks are kept (see :func:`_repair`).

    Raises:
        MissingPrerequisite: libvirt is missing or cannot be started; the message names the fix.
    """
    say = progress or (lambda line: print(f"host: {line}", flush=True))
    with _host_lock():
        state = load_state()
        if state and _healthy(state):
            return state
        if state and state.private:
            # raises when a daemon cannot be started again: then nothing is torn down either
            repaired = _repair(state, say)
            if repaired is not None:
                _save_state(repaired)
                return repaired
        if state:
            down(quiet=True)          # half-dead leftovers of an earlier run
        ns = config.netns()
        accel = kvm_decision()
        if not ns and _system_libvirtd_running():
            state = HostState(uri=SYSTEM_URI, accel=accel, private=False)
            say(f"using the running libvirtd ({SYSTEM_URI}), accelerator {accel}")
        else:
            foreign = _foreign_processes(ns)
            if foreign:
                names = ", ".join(sorted({f"{p.name} ({p.pid})" for p in foreign})[:4])
                raise Conflict(f"network namespace {ns} is in use by a lab host this folder "
                               f"({config.home()}) did not start: {names}",
                               fix="set another CLOUDLAB_NETNS, or the CLOUDLAB_HOME of the lab host that runs there")
            _sweep(quiet=True)        # processes of an earlier host of this folder that nothing knows of
            created = _create_namespace(ns) if ns else False
            sp = state_dir()
            try:
                uri, pids = _start_private_daemons(sp, accel, ns)
            except CloudlabError:
                if created:
                    _delete_namespace(ns)
                raise
            state = HostState(uri=uri, accel=accel, private=True, netns=ns, netns_created=created, pids=pids,
                              netns_inode=os.stat(netns.path(ns)).st_ino if ns else 0)
            where = f" in network namespace {ns}" if ns else ""
            say(f"started libvirtd (pid {pids.get('libvirtd')}) and virtlogd{where}, accelerator {accel}")
        _save_state(state)
        return state


def _stop_pid(pid, timeout=10.0):
    if not _pid_alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            os.waitpid(pid, os.WNOHANG)   # only reaps when it is our child
        except ChildProcessError:
            pass
    if _pid_alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _sweep(quiet=False):
    """End the lab's processes that no daemon took with it (found as ``host leftovers`` finds them).

    Only this host's: its namespace, its private libvirtd's mounts, cloudlab's mark in
    their environment (see :mod:`cloudlab.host.ownership`).  SIGTERM, then SIGKILL.
    Returns the processes ended.
    """
    from .ownership import Scope
    procs = [proc for proc, _ in Scope.current().processes_to_end()]
    for proc in procs:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while any(_pid_alive(p.pid) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    for proc in procs:
        if _pid_alive(proc.pid):
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if procs and not quiet:
        print(f"host: ended {len(procs)} processes left by the lab: "
              + ", ".join(f"{p.name} ({p.pid})" for p in procs), flush=True)
    return procs


def _down_without_record(quiet):
    """``down()`` for a host whose state file is gone but whose private daemon left things behind."""
    sp = state_dir()
    if not (sp / "run").is_dir() and not config.netns():
        return                    # no private daemon ever ran here: nothing of ours to look for
    if _foreign_processes(config.netns()):
        return                    # the namespace is another host's: nothing in it is ours to end
    gone = _domains_on_record(sp)
    ended = _sweep(quiet=quiet)
    _remove_files(gone)
    _reset_private_dirs(sp)
    ns = config.netns()
    if ns and netns.exists(ns) and not _sweep(quiet=True):
        _delete_namespace(ns)
    if (ended or gone) and not quiet:
        print("host: down (it had no record; ended what was left of it)", flush=True)


def down(quiet=False):
    """Undo ``up()``: remove cloudlab's domains and networks, stop daemons cloudlab started, remove its namespace.

    A private daemon that died is started again first, so that it removes its guests
    and networks itself; whatever is still running of the lab afterwards is ended by
    its PID, and the private folders are emptied, so ``host leftovers`` finds nothing.
    """
    with _host_lock():
        from . import nodes
        nodes.down()          # nodes of multi-node labs first: their guests and daemons live in the host's namespace
        state = load_state()
        if state is None:
            _down_without_record(quiet)
            return
        try:
            conn = open_connection(state.uri)
        except MissingPrerequisite:
            conn = None
        if conn is None and state.private:
            try:
                if _repair(state, lambda line: None) is not None:
                    conn = open_connection(state.uri)
            except CloudlabError:
                conn = None       # the sweep below ends what the daemon would have
        if conn is not None:
            # a private daemon holds only cloudlab's resources; a shared one also others'
            try:
                clean(config.prefix(), conn=conn, everything=state.private)
            except libvirt_module().libvirtError as exc:
                if not state.private:
                    raise libvirt_error(exc, "removing the labs' domains and networks") from None
                # the daemon went away meanwhile: the sweep below ends what it would have
            finally:
                try:
                    conn.close()
                except libvirt_module().libvirtError:
                    pass
        if conn is None:
            _clean_containers(config.prefix())      # podman needs no libvirtd; clean() does it otherwise
            _clean_databases(config.prefix())
        if state.private:
            for name in DAEMONS[::-1]:
                if name in state.pids:
                    _stop_pid(state.pids[name])
            # what the daemon could not remove: guests still running, their files
            gone = _domains_on_record(state_dir())
            _sweep(quiet=quiet)
            _remove_files(gone)
            _reset_private_dirs(state_dir())
        if state.netns and _namespace_inode(state.netns) == state.netns_inode and (
                state.netns_created or _made_here(state.netns)):
            _delete_namespace(state.netns)
        # leftovers() compares what is still running with what this host was
        from .ownership import recorded_down
        record = {**dataclasses.asdict(state), **recorded_down(state.netns_inode)}
        (state_dir() / "last-down.json").write_text(json.dumps(record))
        _state_file().unlink(missing_ok=True)
    if not quiet:
        print("host: down", flush=True)


def leftovers(prefix=None, only=None):
    """What of the lab host is still here (empty when all is clean): ``python -m cloudlab host leftovers``.

    Every process the lab started, whichever network namespace it lives in, the
    namespace itself, libvirt definitions and the labs' files; services add their
    own kinds (see :mod:`cloudlab.host.ownership`).

    Args:
        prefix: only files and resources with this prefix (default: every lab's).
        only: kinds to look for (default: all; see ``ownership.FINDERS``).
    """
    from . import ownership
    return ownership.find(prefix=prefix, only=only)


def _clean_containers(prefix):
    """Remove the container service's resources with ``prefix``; returns what went."""
    try:
        from ..containers import clean as clean_containers
    except ImportError:
        return []
    removed, _ = clean_containers(prefix)
    return removed


def _clean_databases(prefix):
    """End this host's database instances with ``prefix`` and remove their cgroups; returns what went."""
    try:
        from ..database import clean as clean_databases
    except ImportError:
        return []
    return clean_databases(prefix, config.home(), state_dir())


def clean(prefix, conn=None, everything=False):
    """Remove the domains, networks and files whose names start with ``prefix``; returns what went.

    Args:
        prefix: e.g. ``cloudlab-`` for every lab, or a lab's ``cloudlab-NAME-``.
        conn: a libvirt connection (default: the lab host's).
        everything: also remove resources without the prefix (only for a private daemon).
    """
    libvirt = libvirt_module()
    own = conn is None
    if own:
        state = load_state()
        if state is None:
            return []
        conn = open_connection(state.uri)
    # containers and database instances first: they are plugged into the lab network's bridge
    removed = _clean_containers(prefix) + _clean_databases(prefix)
    try:
        for dom in conn.listAllDomains():
            name = dom.name()     # read before the object goes stale
            if everything or name.startswith(prefix):
                try:
                    persistent = dom.isPersistent()
                    if dom.isActive():
                        dom.destroy()
                    if persistent:
                        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                                          | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                                          | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
                    removed.append(f"domain {name}")
                except libvirt.libvirtError:
                    pass
        for net in conn.listAllNetworks():
            name = net.name()
            if everything or name.startswith(prefix):
                try:
                    persistent = net.isPersistent()   # a transient one is gone once destroyed
                    if net.isActive():
                        net.destroy()     # stops its dnsmasq; its leases go with it
                    if persistent:
                        net.undefine()
                    removed.append(f"network {name}")
                except libvirt.libvirtError:
                    pass
    finally:
        if own:
            conn.close()
    # Files: those of the domains removed here, and, for one lab's own prefix, all
    # files with it.  Never every file with the global prefix: labs of another host
    # (another namespace) share CLOUDLAB_HOME and their servers may be running.
    gone = [r.split(" ", 1)[1] for r in removed if r.startswith("domain ")]
    lab_prefix = prefix if len(prefix) > len(config.prefix()) else None
    return removed + _remove_files(gone, lab_prefix)


def _remove_files(domains, lab_prefix=None):
    """Remove the lab files of ``domains`` (``NAME.qcow2``, ``NAME-...``) and, given one, every file with ``lab_prefix``."""
    removed = []
    home = config.home()
    if home.is_dir():
        for lab_dir in home.iterdir():
            if not lab_dir.is_dir() or lab_dir.name in ("host", "images"):
                continue
            for item in lab_dir.iterdir():
                if (lab_prefix and item.name.startswith(lab_prefix)) or \
                        any(item.name.startswith(d + ".") or item.name.startswith(d + "-") for d in domains):
                    if item.is_dir() and not item.is_symlink():
                        shutil.rmtree(item, ignore_errors=True)
                    else:
                        item.unlink(missing_ok=True)
                    removed.append(f"file {item.name}")
    return removed


def _domains_on_record(state_path):
    """Names of the domains a private libvirtd knew (its definitions and running records), read from its folders."""
    names = set()
    for sub in ("etc/qemu", "run/qemu"):
        names.update(p.stem for p in (state_path / sub).glob("*.xml"))
    return sorted(names)


# -- the lab service ---------------------------------------------------------------

def _used_subnets(conn):
    """IPv4 networks already routed here or used by libvirt networks."""
    used = []
    ns = config.netns()
    try:
        out = subprocess.run(["ip", *(["-n", ns] if ns else []), "-j", "route"],
                             capture_output=True, text=True, check=True).stdout
        for route in json.loads(out or "[]"):
            dst = route.get("dst")
            if dst and dst != "default":
                used.append(ipaddress.ip_network(dst, strict=False))
    except (OSError, subprocess.CalledProcessError, ValueError):
        pass
    for net in conn.listAllNetworks():
        try:
            import xml.etree.ElementTree as ET
            for ip in ET.fromstring(net.XMLDesc()).iter("ip"):
                if ip.get("address") and ip.get("netmask"):
                    used.append(ipaddress.ip_network(f"{ip.get('address')}/{ip.get('netmask')}", strict=False))
        except Exception:     # a network that vanished meanwhile
            continue
    return used


def choose_subnet(used):
    """The first /24 of 10.213.0.0/16 that overlaps none of ``used``."""
    for third in range(0, 256):
        candidate = ipaddress.ip_network(f"10.213.{third}.0/24")
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise CloudlabError("no free /24 left in 10.213.0.0/16 for the lab network",
                        fix="remove old labs: `python -m cloudlab clean`")


def dhcp_range(subnet, pool=config.DEFAULT_DHCP_POOL):
    """First and last address of a DHCP pool of ``pool`` addresses in ``subnet`` (a /24).

    The pool starts at .100 when it fits below .255, else it ends at .254.
    """
    hosts = list(subnet.hosts())            # .1 (the gateway) to .254
    start = 99 if 99 + pool <= len(hosts) else len(hosts) - pool
    return hosts[start], hosts[start + pool - 1]


DNSMASQ_XMLNS = "http://libvirt.org/schemas/network/dnsmasq/1.0"


def network_xml(name, subnet, pool=config.DEFAULT_DHCP_POOL, lease_minutes=config.DEFAULT_DHCP_LEASE_MINUTES):
    """An isolated libvirt network (no forwarding: nothing leaves the host) with DHCP.

    Args:
        pool: addresses in the DHCP pool (``CLOUDLAB_DHCP_POOL``).
        lease_minutes: lease time (``CLOUDLAB_DHCP_LEASE_MINUTES``).
    """
    gateway = next(subnet.hosts())
    first, last = dhcp_range(subnet, pool)
    # no-ping: dnsmasq pings an address before it first offers it and waits 3 s for an answer
    # (its PING_WAIT), so every new guest got its address 3 s late; only dnsmasq hands out
    # addresses on this isolated network, so nothing else can hold one
    return (f"<network xmlns:dnsmasq='{DNSMASQ_XMLNS}'><name>{name}</name><bridge stp='off' delay='0'/>"
            f"<ip address='{gateway}' netmask='{subnet.netmask}'>"
            f"<dhcp><range start='{first}' end='{last}'><lease expiry='{lease_minutes}' unit='minutes'/>"
            f"</range></dhcp></ip>"
            f"<dnsmasq:options><dnsmasq:option value='no-ping'/></dnsmasq:options></network>")


class LabHost:
    """The lab host as one lab sees it: a libvirt connection and the lab's own network.

    Args:
        lab: the :class:`~cloudlab.lab.Lab` this host serves.
    """

    def __init__(self, lab):
        self.lab = lab
        self.state = None
        self._conn = None
        self._lock = threading.RLock()
        self.network = f"{lab.prefix}net"
        self.subnet = None
        self.pool_size = config.DEFAULT_DHCP_POOL
        self.lease_minutes = config.DEFAULT_DHCP_LEASE_MINUTES
        self.reconnects = 0        # how often the connection was replaced (libvirtd restarted)
        self._conn_pid = None      # the libvirtd the connection was opened to
        self._dnsmasq_pidfile = None
        self._network_xml = None   # the lab network as libvirt made it, to make it again the same

    def start(self):
        """Bring the host up if needed and create the lab's network.

        Raises:
            InvalidInput: ``CLOUDLAB_DHCP_POOL`` or ``CLOUDLAB_DHCP_LEASE_MINUTES`` is not usable.
            MissingPrerequisite: libvirt is missing or cannot be started.
        """
        self.pool_size = config.dhcp_pool()
        self.lease_minutes = config.dhcp_lease_minutes()
        self.state = up()
        self._ensure_network()

    def stop(self):
        """Remove this lab's network and anything else left with its prefix (daemons stay up).

        Raises:
            HostUnreachable: libvirtd does not answer and could not be restarted.
        """
        libvirt = libvirt_module()
        with self._lock:
            if self._conn is None:
                return
            conn = self.connect()     # a new one if libvirtd died meanwhile
            try:
                clean(self.lab.prefix, conn=conn)
            except libvirt.libvirtError as exc:
                raise libvirt_error(exc, f"removing the network of lab {self.lab.name}") from None
            finally:
                self._conn = None
                try:
                    conn.close()
                except libvirt.libvirtError:
                    pass

    def connect(self):
        """The libvirt connection (one per lab; libvirt connections are thread-safe).

        Checked on every call, cheaply (is the connection open, do the private daemons
        and the lab network's dnsmasq still run): when something died, the host is
        repaired (:func:`up`), the connection replaced and the lab network recreated if
        it is gone, so the same notebook kernel goes on working.  Servers look their
        domain up again on the new connection.

        Raises:
            HostUnreachable: libvirtd does not answer and could not be restarted; the
                fix is ``python -m cloudlab host up``.
        """
        with self._lock:
            if self._conn is not None and self._usable():
                return self._conn
            return self._reconnect()

    def _usable(self):
        if not self._alive(self._conn):
            return False
        if self.state.private:
            if not all(_pid_alive(self.state.pids.get(name)) for name in DAEMONS):
                return False
            if self._dnsmasq_pidfile is not None:
                try:
                    if not _pid_alive(int(self._dnsmasq_pidfile.read_text().split()[0])):
                        return False
                except (OSError, ValueError, IndexError):
                    return False      # the network is gone: make it again
        return True

    def _reconnect(self):
        """Repair the host if it needs it, then reuse the connection if its daemon is the same, else open a new one."""
        libvirt = libvirt_module()
        old = self._conn
        if self.state is None or self.state.private:
            try:
                # a repair is news to whoever is working in the lab: said on stderr, apart from results
                self.state = up(progress=lambda line: print(f"host: {line}", file=sys.stderr, flush=True))
            except HostUnreachable:
                raise
            except CloudlabError as exc:
                raise HostUnreachable(f"the lab host's libvirt daemon does not answer and could not be "
                                      f"restarted: {exc.message}", fix=HOST_UP_FIX) from None
        same_daemon = self.state.pids.get("libvirtd") == self._conn_pid
        if old is not None and same_daemon and self._alive(old):
            conn = old        # only the lab network needed care
        else:
            self._conn = None
            if old is not None:
                try:
                    old.close()
                except libvirt.libvirtError:
                    pass
            # the machine's libvirtd (not private) can only come back by itself: this fails until it does
            conn = open_connection(self.state.uri)
            self._conn_pid = self.state.pids.get("libvirtd")
            if old is not None:
                self.reconnects += 1
        self._conn = conn
        if self.subnet is not None:
            self._ensure_network(conn)
        return conn

    @staticmethod
    def _alive(conn):
        try:
            return bool(conn.isAlive())
        except libvirt_module().libvirtError:
            return False

    def _ensure_network(self, conn=None):
        libvirt = libvirt_module()
        conn = conn or self.connect()
        try:
            net = conn.networkLookupByName(self.network)
            if not net.isActive():
                net.create()
        except libvirt.libvirtError as exc:
            if is_connection_error(exc):
                raise libvirt_error(exc, f"looking up the lab network {self.network}") from None
            used = _used_subnets(conn)
            if self._network_xml is not None and not any(self.subnet.overlaps(u) for u in used):
                # the network it was, again (subnet, bridge name and MAC): servers still running
                # keep their addresses, and their ARP entries for the gateway stay right
                xml = self._network_xml
            else:
                xml = None
            try:
                try:
                    if xml is None:
                        raise LookupError("a new network")
                    net = conn.networkCreateXML(xml)
                except (LookupError, libvirt.libvirtError):
                    # a new network (or the old one's bridge name was taken meanwhile).  Two labs
                    # starting at once can pick the same free subnet; libvirt refuses the second
                    # ("already in use"), which then takes the next one
                    tried = []
                    while True:
                        subnet = choose_subnet(_used_subnets(conn) + tried)
                        try:
                            net = conn.networkCreateXML(network_xml(self.network, subnet, self.pool_size,
                                                                    self.lease_minutes))
                            break
                        except libvirt.libvirtError as exc:
                            tried.append(subnet)
                            if "in use" not in (exc.get_error_message() or "") or len(tried) >= 8:
                                raise
            except libvirt.libvirtError as exc:
                raise CloudlabError(f"could not create the lab network {self.network}: "
                                    f"{exc.get_error_message()}",
                                    fix="run `python -m cloudlab doctor`") from None
            if self._network_xml is not None:
                self._replug(conn, net.bridgeName())
        import xml.etree.ElementTree as ET
        self._network_xml = net.XMLDesc()
        ip = ET.fromstring(net.XMLDesc()).find("ip")
        self.subnet = ipaddress.ip_network(f"{ip.get('address')}/{ip.get('netmask')}", strict=False)
        self.gateway = ip.get("address")
        self.bridge = net.bridgeName()
        if self.state.private:
            self._dnsmasq_pidfile = state_dir() / "run" / "network" / f"{self.network}.pid"

    def _replug(self, conn, bridge):
        """Plug the NICs of running guests on the lab network into its new bridge (as libvirtd does when it starts).

        Destroying a network deletes its bridge, which lets go of the guests' tap
        devices; a network made again has a new, empty bridge.
        """
        import xml.etree.ElementTree as ET
        libvirt = libvirt_module()
        try:
            doms = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            taps = [iface.find("target").get("dev") for dom in doms
                    for iface in ET.fromstring(dom.XMLDesc()).iter("interface")
                    if iface.find("source") is not None and iface.find("source").get("network") == self.network
                    and iface.find("target") is not None]
        except libvirt.libvirtError:
            return
        ns = self.state.netns
        for tap in taps:
            subprocess.run(["ip", *(["-n", ns] if ns else []), "link", "set", tap, "master", bridge],
                           capture_output=True)

    # -- DHCP: the pool and its leases --------------------------------------------------

    def dhcp_pool(self, network=None):
        """The DHCP pool of ``network`` (default: the lab's) and how full it is.

        Returns:
            a dict: ``size`` (addresses in the pool), ``leased`` (leases held now), ``stale``
            (leases held by MAC addresses no domain has: servers deleted within the lease
            time whose lease was not released), ``first``, ``last``, ``lease_minutes``.
        Raises:
            NotFound: no such network.
        """
        import xml.etree.ElementTree as ET
        libvirt = libvirt_module()
        conn = self.connect()
        try:
            net = conn.networkLookupByName(network or self.network)
            root = ET.fromstring(net.XMLDesc())
            leases = net.DHCPLeases()
            macs = set()
            for dom in conn.listAllDomains():
                macs.update(m.get("address") for m in ET.fromstring(dom.XMLDesc()).iter("mac"))
        except libvirt.libvirtError as exc:
            raise libvirt_error(exc, f"reading the DHCP pool of network {network or self.network}") from None
        size, first, last, minutes = 0, None, None, None
        for rng in root.iter("range"):
            first, last = rng.get("start"), rng.get("end")
            size += int(ipaddress.ip_address(last)) - int(ipaddress.ip_address(first)) + 1
            lease = rng.find("lease")
            if lease is not None:
                minutes = int(lease.get("expiry")) // (60 if lease.get("unit") == "seconds" else 1) \
                    * (60 if lease.get("unit") == "hours" else 1)
        in_pool = [lease for lease in leases if lease.get("type", 0) == 0]
        return {"size": size, "leased": len(in_pool), "stale": sum(1 for lease in in_pool if lease["mac"] not in macs),
                "first": first, "last": last, "lease_minutes": minutes or 60}

    def release_leases(self, macs, network=None):
        """Give back the DHCP leases of ``macs`` on ``network`` (default: the lab's); returns the addresses released.

        Used when a server is deleted: without it its address stays leased for the whole
        lease time, and a class that creates and deletes servers runs the pool dry.  The
        release is a real DHCPRELEASE, sent to the network's dnsmasq on its bridge by
        ``dhcp_release`` (Debian's dnsmasq-utils), inside the lab's network namespace.  Best
        effort: without root or without the tool the lease simply runs out later.
        """
        libvirt = libvirt_module()
        macs = {m.lower() for m in macs}
        tool = shutil.which("dhcp_release")
        if not macs or tool is None:
            return []
        try:
            net = self.connect().networkLookupByName(network or self.network)
            bridge = net.bridgeName()
            leases = [lease for lease in net.DHCPLeases() if lease["mac"].lower() in macs]
        except libvirt.libvirtError:
            return []
        released = []
        for lease in leases:
            result = subprocess.run(netns.enter_args(self.state.netns) +
                                    [tool, bridge, lease["ipaddr"], lease["mac"]], capture_output=True)
            if result.returncode == 0:
                released.append(lease["ipaddr"])
        return released

    def dhcp_range(self):
        """The first and last address the lab network's DHCP server (libvirt's dnsmasq) hands out, read live."""
        import xml.etree.ElementTree as ET
        libvirt = libvirt_module()
        try:
            xml = self.connect().networkLookupByName(self.network).XMLDesc()
        except libvirt.libvirtError as exc:
            raise CloudlabError(f"could not read the lab network {self.network}: {exc.get_error_message()}",
                                fix="lab.host.start(), or `python -m cloudlab host up`") from None
        found = ET.fromstring(xml).find("ip/dhcp/range")
        if found is None:
            raise CloudlabError(f"the lab network {self.network} has no DHCP range")
        return ipaddress.ip_address(found.get("start")), ipaddress.ip_address(found.get("end"))

    @property
    def uri(self):
        """The libvirt URI (``virsh -c URI`` reaches the same daemon)."""
        return self.state.uri

    @property
    def accel(self):
        """``kvm`` or ``tcg``."""
        return self.state.accel

    @property
    def domain_type(self):
        """libvirt domain type: ``kvm`` or ``qemu``."""
        return self.state.domain_type

    @property
    def netns(self):
        """The network namespace the host lives in, or None."""
        return self.state.netns

    @property
    def hostname(self):
        """The hypervisor host's name, as Nova's ``host`` shows it."""
        return socket.gethostname()

    def free_memory_mib(self):
        """Memory the host can still give to guests (MemAvailable), in MiB."""
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
        return 0

    def virsh(self, *args):
        """Run ``virsh -c URI ARGS`` and return its output (for notebooks: the same daemon, seen by virsh)."""
        result = subprocess.run(["virsh", "-c", self.uri, *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise CloudlabError(f"virsh {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def __repr__(self):
        if self.state is None:
            return "<LabHost (not started)>"
        return f"<LabHost {self.uri} accel={self.accel} network={self.network}>"


# -- command line ---------------------------------------------------------------------

def add_host_arguments(parser):
    """Arguments of ``python -m cloudlab host``."""
    parser.add_argument("action", choices=["up", "down", "status", "leftovers"],
                        help="leftovers: list what of the lab is still here, exit 1 if anything")


def main_host(args):
    """Run ``python -m cloudlab host up|down|status``."""
    if args.action == "up":
        state = up()
        print(f"host: up, {state.uri}, accelerator {state.accel}"
              + (f", network namespace {state.netns}" if state.netns else ""))
    elif args.action == "down":
        down()
    elif args.action == "leftovers":
        found = leftovers()
        for item in found:
            print(f"left behind: {item}")
        print(f"host: {len(found)} leftovers")
        return 1 if found else 0
    else:
        state = load_state()
        if state is None or not _healthy(state):
            print("host: down")
            return 1
        print(f"host: up, {state.uri}, accelerator {state.accel}, pids {state.pids}")
    return 0


def add_clean_arguments(parser):
    """Arguments of ``python -m cloudlab clean``."""
    parser.add_argument("--prefix", default=None, help="only resources with this prefix (default: every lab's)")


def main_clean(args):
    """Run ``python -m cloudlab clean``: remove every resource the labs created."""
    removed = clean(args.prefix or config.prefix())
    for item in removed:
        print(f"removed {item}")
    print(f"clean: {len(removed)} resources removed")
    return 0
