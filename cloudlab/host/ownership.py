"""What belongs to the lab host, found from the outside: the classroom's "is anything left" check.

``python -m cloudlab host leftovers`` (:func:`find`) lists every process, namespace,
file and resource of the lab host that is still here; after ``host down`` it must list
nothing, and ``make test`` fails when it does.  ``host down`` uses the same marks to end
the lab's processes that no daemon took with it.

A process is the lab's, whichever network namespace it ended up in, when one of these holds:

* it runs in the host's network namespace, compared by inode: the namespace as it
  exists now, or the one recorded by the last ``host down`` (then only for processes
  older than that record: the kernel gives a freed namespace's inode number to the
  next namespace anyone creates);
* its ``/run/libvirt`` is this host's ``run`` folder (seen through ``/proc/PID/root``):
  it lives in the private libvirtd's mount namespace, as libvirtd, virtlogd and
  everything they start (dnsmasq, QEMU) do;
* its environment carries ``CLOUDLAB_OWNER=<this host's state folder>``, which every
  process cloudlab starts itself gets from :func:`child_env`;
* a pid file under the host's state folder or a lab's folder names it, and it started
  before the file was written (a pid is reused once its process is gone);
* without a network namespace, where the machine's own libvirtd runs the guests: its
  command line names a guest or a DHCP server of a lab network (the lab prefix).

Services register what else they own in :data:`FINDERS` (one line each, as in
``cloudlab.lab.SERVICES``)::

    # cloudlab/host/ownership.py
    FINDERS = {..., "containers": "cloudlab.containers:leftovers"}

    # cloudlab/containers/__init__.py
    def leftovers(scope):
        '''Containers and images of the labs that are still here (for `host leftovers`).'''
        for name in _podman_names():
            if name.startswith(scope.prefix):
                yield f"container {name}"

A finder takes a :class:`Scope` and yields one line per leftover, in the learner's words
(``container cloudlab-lab-web``).  It must only look, never change anything, and be
quick; when it cannot look (its tool is missing, its daemon does not answer) it
raises, and the check reports that line instead of taking it for "nothing left".
:func:`register` adds one at run time (tests do).

A service that starts processes of its own (a share or database server) passes
``env=child_env()`` to ``subprocess.Popen`` so that they carry the owner mark, and its
tests check their own kinds once their lab stopped, while the host is still up::

    from cloudlab import host
    lab.stop()
    assert host.leftovers(prefix=lab.prefix, only=["containers", "files"]) == []
"""

import dataclasses
import functools
import importlib
import json
import os
import time
from pathlib import Path

from .. import config
from ..errors import InvalidInput
from . import netns

OWNER_VARIABLE = "CLOUDLAB_OWNER"

# kind -> "module:function" (imported when the check runs) or a callable taking a Scope
FINDERS = {
    "processes": "cloudlab.host.ownership:find_processes",
    "network namespaces": "cloudlab.host.ownership:find_namespaces",
    "nodes": "cloudlab.host.nodes:leftovers",
    "libvirt": "cloudlab.host.ownership:find_libvirt",
    "files": "cloudlab.host.ownership:find_files",
    "containers": "cloudlab.host.ownership:find_containers",
    "block storage": "cloudlab.host.ownership:find_block_storage",
    "shared file system": "cloudlab.host.ownership:find_shared_file_system",
    "database": "cloudlab.database:leftovers",
}

_TICKS = os.sysconf("SC_CLK_TCK")
RECORDED_WHY = "in the lab's network namespace, which has been deleted"
PREFIX_WHY = "a guest or DHCP server of a lab network"
# folders of a lab's home that are not a lab's (the host's state, the image registry)
NOT_LABS = ("host", "images")


def register(kind, finder):
    """Add (or replace) the finder for ``kind``.

    Args:
        kind: what it finds, e.g. ``"containers"``; shown when the finder fails.
        finder: a callable taking a :class:`Scope` and yielding lines, or ``"module:function"``.
    """
    FINDERS[kind] = finder


def child_env(env=None, state_dir=None):
    """The environment for a process cloudlab starts: ``env`` (default: ours) plus the owner mark.

    Pass it as ``subprocess.Popen(..., env=child_env())``: the process is then the lab's
    to :func:`find` and to ``host down``, even in a namespace that no longer exists.
    """
    from . import state_dir as host_state_dir
    env = dict(os.environ if env is None else env)
    env[OWNER_VARIABLE] = str(state_dir or host_state_dir())
    return env


def boot_ticks():
    """Now, in the clock ticks since boot that ``/proc/PID/stat`` counts process start times in."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * _TICKS)


@dataclasses.dataclass
class Process:
    """One process as ``/proc`` shows it."""

    pid: int
    ppid: int
    state: str
    start_ticks: int
    cmdline: str
    net_inode: int
    mnt_inode: int

    @property
    def name(self):
        """The program's name, e.g. ``dnsmasq``."""
        return os.path.basename(self.cmdline.split(" ", 1)[0]) if self.cmdline else "?"

    def environ_has(self, entry):
        """True when the environment holds ``entry`` (``NAME=value``, exactly)."""
        return entry.encode() in _environ(self.pid)


def _environ(pid):
    """Process ``pid``'s environment as ``[b"NAME=value", ...]`` (empty when it is gone or unreadable)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def owner_of(pid):
    """The owner mark (a lab host's state folder) in process ``pid``'s environment, or None."""
    mark = f"{OWNER_VARIABLE}=".encode()
    return next((e[len(mark):].decode(errors="replace") for e in _environ(pid) if e.startswith(mark)), None)


def read_process(pid):
    """The :class:`Process` with ``pid``, or None when it is gone or unreadable."""
    base = f"/proc/{pid}"
    try:
        with open(f"{base}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        with open(f"{base}/cmdline", "rb") as f:
            cmdline = f.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
        net = os.stat(f"{base}/ns/net").st_ino
        mnt = os.stat(f"{base}/ns/mnt").st_ino
    except OSError:
        return None
    # the command name in parentheses may itself hold spaces and parentheses
    fields = stat[stat.rindex(")") + 2:].split()
    return Process(int(pid), int(fields[1]), fields[0], int(fields[19]), cmdline, net, mnt)


def all_processes():
    """Every process of the machine but this one and its ancestors (zombies left out: they run nothing)."""
    mine = set()
    pid = os.getpid()
    while pid > 1:
        mine.add(pid)
        proc = read_process(pid)
        pid = proc.ppid if proc else 0
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) not in mine:
            proc = read_process(entry.name)
            if proc is not None and proc.state != "Z":
                found.append(proc)
    return found


@dataclasses.dataclass
class Scope:
    """Whose leftovers to look for: one lab host (a home folder and a network namespace).

    Attributes:
        prefix: resources carry it (``cloudlab-``, or one lab's ``cloudlab-NAME-``).
        home: ``CLOUDLAB_HOME``.
        netns: the host's network namespace name, or None.
        state_dir: the host's state folder (``home/host/NAME``).
        state: the host's saved state (a dict) while it is up, else None.
        last_down: what the last ``host down`` recorded (a dict, maybe empty).
    """

    prefix: str
    home: Path
    netns: str
    state_dir: Path
    state: dict = None
    last_down: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def current(cls, prefix=None):
        """The scope of the lab host that ``CLOUDLAB_HOME`` and ``CLOUDLAB_NETNS`` name."""
        from . import state_dir
        sd = state_dir()
        return cls(prefix=prefix or config.prefix(), home=config.home(), netns=config.netns(), state_dir=sd,
                   state=_read_json(sd / "state.json"), last_down=_read_json(sd / "last-down.json") or {})

    @property
    def lab_dirs(self):
        """The labs' folders under the home (one per lab name)."""
        if not self.home.is_dir():
            return []
        return [d for d in self.home.iterdir() if d.is_dir() and d.name not in NOT_LABS]

    @functools.cached_property
    def processes(self):
        """The lab's processes: ``[(Process, why), ...]`` (see the module docstring for the marks)."""
        return [(proc, why) for proc in all_processes() if (why := self.owns(proc))]

    def processes_to_end(self):
        """The lab's processes that ``host down`` may end, by the marks that only this host's processes carry.

        An inode recorded at an earlier ``host down``, or the lab prefix in a command
        line (guests of the machine's own libvirtd), is good enough to *report* a
        process, never to kill one.
        """
        return [(proc, why) for proc, why in self.processes if why not in (RECORDED_WHY, PREFIX_WHY)]

    def owns(self, proc):
        """Why ``proc`` is the lab's (a short phrase), or None when it is not."""
        if proc.net_inode in self._live_namespaces:
            return "in the lab's network namespace"
        why = self._other_marks(proc)
        if why:
            return why
        old = self._recorded_namespace
        if old and proc.net_inode == old[0] and proc.start_ticks < old[1]:
            return RECORDED_WHY
        return None

    def _other_marks(self, proc):
        if self._private_mounts(proc):
            return "started by the lab's libvirtd"
        if proc.environ_has(f"{OWNER_VARIABLE}={self.state_dir}"):
            return "started by cloudlab"
        pidfile = self._pidfiles.get(proc.pid)
        if pidfile is not None and _started_before(proc, pidfile):
            return f"named in {pidfile}"
        if self.netns is None and any(mark in proc.cmdline for mark in self._cmdline_marks):
            return PREFIX_WHY
        return None

    # -- the marks, each computed once per scope ---------------------------------------

    @functools.cached_property
    def _live_namespaces(self):
        found = set()
        if self.netns and netns.exists(self.netns):
            try:
                found.add(os.stat(netns.path(self.netns)).st_ino)
            except OSError:
                pass
        from .nodes import node_inodes
        return found | node_inodes()      # the nodes of a multi-node lab (cloudlab.host.nodes)

    @functools.cached_property
    def _recorded_namespace(self):
        """(inode, boot ticks when recorded) of the namespace the last ``host down`` left, if this boot."""
        last = self.last_down
        if not last.get("netns_inode") or last.get("boot_id") != _boot_id():
            return None
        return last["netns_inode"], last.get("down_ticks") or 0

    @functools.cached_property
    def _run_dirs(self):
        """(device, inode) of the host's private ``run`` folder and of every node's."""
        found = set()
        for folder in [self.state_dir / "run", *(self.state_dir / "nodes").glob("*/run")]:
            try:
                st = os.stat(folder)
                found.add((st.st_dev, st.st_ino))
            except OSError:
                pass
        return found

    @functools.cached_property
    def _mount_verdicts(self):
        return {}

    def _private_mounts(self, proc):
        """True when the process's /run/libvirt is this host's run folder (one look per mount namespace)."""
        if not self._run_dirs:
            return False
        verdict = self._mount_verdicts.get(proc.mnt_inode)
        if verdict is None:
            try:
                st = os.stat(f"/proc/{proc.pid}/root/run/libvirt")
                verdict = (st.st_dev, st.st_ino) in self._run_dirs
            except OSError:
                verdict = False
            self._mount_verdicts[proc.mnt_inode] = verdict
        return verdict

    @functools.cached_property
    def _pidfiles(self):
        """pid -> pid file, for the pid files under the host's state folder and the labs' folders."""
        files = list(self.state_dir.glob("*.pid")) + list(self.state_dir.glob("run/**/*.pid")) + \
            list(self.state_dir.glob("nodes/*/*.pid"))
        for lab_dir in self.lab_dirs:
            files += lab_dir.glob("*.pid")
        found = {}
        for path in files:
            try:
                pid = int(path.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            if pid > 1:
                found[pid] = path
        return found

    @property
    def _cmdline_marks(self):
        return (f"guest={self.prefix}", f"/dnsmasq/{self.prefix}")


def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _boot_id():
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _started_before(proc, path):
    """True when ``proc`` started before ``path`` was last written (1 s slack for clock granularity)."""
    try:
        age_s = time.time() - path.stat().st_mtime
    except OSError:
        return False
    written_ticks = boot_ticks() - age_s * _TICKS
    return proc.start_ticks <= written_ticks + _TICKS


def recorded_down(inode):
    """What ``host down`` writes to ``last-down.json`` about the namespace ``inode`` it leaves."""
    return {"netns_inode": inode, "down_ticks": boot_ticks(), "boot_id": _boot_id()}


# -- the built-in finders ------------------------------------------------------------

def find_processes(scope):
    """The lab's processes (see the module docstring for how they are told from others)."""
    for proc, why in scope.processes:
        yield f"process {proc.pid} ({proc.name}, {why}): {proc.cmdline[:160]}"


def find_namespaces(scope):
    """The host's network namespace, when it exists."""
    if scope.netns and netns.exists(scope.netns):
        when = "the lab host is up" if scope.state else "the lab host is down"
        yield f"network namespace {scope.netns} ({when})"


def find_libvirt(scope):
    """Definitions a private libvirtd would load on its next start; domains and networks of the machine's libvirtd."""
    for sub, what in (("etc/qemu", "domain definition"), ("etc/storage", "storage pool definition"),
                      ("run/qemu", "running domain record"), ("run/network", "network record")):
        folder = scope.state_dir / sub
        if folder.is_dir():
            for item in sorted(folder.glob("*.xml")):
                yield f"{what} {item}"
    state = scope.state or scope.last_down
    if state and not state.get("private", True) and state.get("uri"):
        from . import libvirt_module, open_connection
        from ..errors import MissingPrerequisite
        libvirt = libvirt_module()
        try:
            conn = open_connection(state["uri"])
        except MissingPrerequisite:
            return      # the machine's libvirtd is stopped: it runs nothing of ours
        try:
            for dom in conn.listAllDomains():
                if dom.name().startswith(scope.prefix):
                    yield f"domain {dom.name()}"
            for net in conn.listAllNetworks():
                if net.name().startswith(scope.prefix):
                    yield f"network {net.name()}"
        except libvirt.libvirtError as exc:
            raise RuntimeError(f"libvirt did not answer: {exc.get_error_message()}") from None
        finally:
            conn.close()


def find_files(scope):
    """Files with the prefix in the labs' folders (disks, console logs, sockets, pid files)."""
    for lab_dir in scope.lab_dirs:
        for item in sorted(lab_dir.iterdir()):
            if item.name.startswith(scope.prefix):
                yield f"file {item}"


# -- the check -------------------------------------------------------------------------

def _resolve(finder):
    if callable(finder):
        return finder
    module_name, _, function = finder.partition(":")
    return getattr(importlib.import_module(module_name), function)


def find(prefix=None, only=None, scope=None):
    """Everything of the lab host still here, one line each (empty when all is clean).

    Args:
        prefix: only resources with this prefix (default: every lab's, ``CLOUDLAB_PREFIX``).
        only: kinds of :data:`FINDERS` to run (default: all).
        scope: a :class:`Scope` (default: the host ``CLOUDLAB_HOME`` and ``CLOUDLAB_NETNS`` name).
    Raises:
        InvalidInput: ``only`` names a kind no finder is registered for.
    """
    scope = scope or Scope.current(prefix)
    kinds = list(FINDERS) if only is None else list(only)
    unknown = [k for k in kinds if k not in FINDERS]
    if unknown:
        raise InvalidInput(f"no leftovers finder for {', '.join(map(repr, unknown))}",
                           fix=f"use some of: {', '.join(FINDERS)}")
    found = []
    for kind in kinds:
        try:
            found += list(_resolve(FINDERS[kind])(scope) or ())
        except Exception as exc:     # a check that cannot look must not read as "nothing left"
            found.append(f"{kind}: could not check ({type(exc).__name__}: {exc})")
    return found


# -- the services' own kinds -------------------------------------------------------------
# each service's leftovers() predates the Scope; these pass it what it takes

def find_containers(scope):
    """Containers, images, networks and cgroups of the labs (cloudlab.containers)."""
    from ..containers import leftovers
    return leftovers(scope.prefix)


def find_block_storage(scope):
    """Storage daemons (qemu-storage-daemon NBD exports) of the labs (cloudlab.block_storage)."""
    from ..block_storage import leftovers
    return leftovers(scope.home, scope.prefix)


def find_shared_file_system(scope):
    """Share servers, loop devices and mounts of the labs (cloudlab.shared_file_system)."""
    from ..shared_file_system import leftovers
    return leftovers(scope.home, scope.prefix)
