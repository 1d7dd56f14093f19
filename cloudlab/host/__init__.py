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

import dataclasses
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from .. import config
from . import netns
from ..errors import CloudlabError, MissingPrerequisite

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
    try:
        os.kill(pid, 0)
        return True
    except (ProcessLookupError, TypeError):
        return False
    except PermissionError:
        return True


def open_connection(uri, timeout=None):
    """A libvirt connection to ``uri``.

    Raises:
        MissingPrerequisite: libvirtd does not answer; the message names the fix.
    """
    libvirt = libvirt_module()
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise MissingPrerequisite(f"libvirtd does not answer at {uri}: {exc.get_error_message()}",
                                  fix="run `python -m cloudlab host up` (or `make lab`); on a machine "
                                      "with systemd: `sudo systemctl start libvirtd`") from None


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


def _start_private_daemons(state_path, accel, ns):
    """Start virtlogd and libvirtd in a private mount namespace (inside ``ns`` if set)."""
    if os.geteuid() != 0:
        raise MissingPrerequisite("no libvirtd is running and only root can start a private one",
                                  fix="start libvirtd (`sudo systemctl start libvirtd`) and join the "
                                      "libvirt group (`sudo usermod -aG libvirt $USER`), or run as root")
    libvirtd, virtlogd = _tool("libvirtd"), _tool("virtlogd")
    for sub in PRIVATE_DIRS.values():
        (state_path / sub).mkdir(parents=True, exist_ok=True)
    (state_path / "etc" / "qemu.conf").write_text(QEMU_CONF)
    (state_path / "etc" / "libvirtd.conf").write_text(
        LIBVIRTD_CONF.format(log=state_path / "log" / "libvirtd.log"))
    (state_path / "etc" / "virtlogd.conf").write_text("# written by cloudlab\n")
    cover = state_path / "kvm-cover"
    cover.touch()
    cover.chmod(0)
    for name in ("libvirtd.pid", "virtlogd.pid"):
        (state_path / name).unlink(missing_ok=True)
    lines = ["set -e"]
    for target, sub in PRIVATE_DIRS.items():
        lines.append(f"mkdir -p {target} && mount --bind {state_path / sub} {target}")
    if accel != "kvm" and os.path.exists("/dev/kvm"):
        # read-only as well: libvirt asks access(R_OK|W_OK), which root passes on any
        # mode but not on a read-only mount, so KVM reads as unusable and is not re-probed
        lines.append(f"mount --bind {cover} /dev/kvm && mount -o remount,bind,ro /dev/kvm")
    lines.append(f"{virtlogd} -d -p {state_path / 'virtlogd.pid'}")
    lines.append(f"exec {libvirtd} -d -p {state_path / 'libvirtd.pid'}")
    args = netns.enter_args(ns) + ["unshare", "-m", "--propagation", "private",
                                   "sh", "-c", "\n".join(lines)]
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        raise CloudlabError(f"could not start the private libvirtd: {result.stderr.strip()[-500:]}",
                            fix=f"see {state_path / 'log' / 'libvirtd.log'}")
    uri = f"{SYSTEM_URI}?socket={state_path / 'run' / 'libvirt-sock'}"
    libvirt = libvirt_module()
    deadline = time.monotonic() + 30
    while True:
        try:
            libvirt.open(uri).close()
            break
        except libvirt.libvirtError:
            if time.monotonic() > deadline:
                raise CloudlabError("the private libvirtd did not answer within 30 s",
                                    fix=f"see {state_path / 'log' / 'libvirtd.log'}") from None
            time.sleep(0.1)
    pids = {}
    for name in ("libvirtd", "virtlogd"):
        try:
            pids[name] = int((state_path / f"{name}.pid").read_text())
        except (OSError, ValueError):
            pass
    return uri, pids


def _healthy(state):
    if state.private and not all(_pid_alive(pid) for pid in state.pids.values()):
        return False
    if state.netns and not netns.exists(state.netns):
        return False
    try:
        open_connection(state.uri).close()
        return True
    except MissingPrerequisite:
        return False


_up_lock = threading.Lock()


def up(progress=None):
    """Make the lab host available and return its :class:`HostState` (a no-op when it is up).

    Raises:
        MissingPrerequisite: libvirt is missing or cannot be started; the message names the fix.
    """
    say = progress or (lambda line: print(f"host: {line}", flush=True))
    with _up_lock:
        state = load_state()
        if state and _healthy(state):
            return state
        if state:
            down(quiet=True)          # half-dead leftovers of an earlier run
        ns = config.netns()
        accel = kvm_decision()
        if not ns and _system_libvirtd_running():
            state = HostState(uri=SYSTEM_URI, accel=accel, private=False)
            say(f"using the running libvirtd ({SYSTEM_URI}), accelerator {accel}")
        else:
            created = netns.create(ns) if ns else False
            sp = state_dir()
            try:
                uri, pids = _start_private_daemons(sp, accel, ns)
            except CloudlabError:
                if created:
                    netns.delete(ns)
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
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            os.waitpid(pid, os.WNOHANG)   # only reaps when it is our child
        except ChildProcessError:
            pass
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def down(quiet=False):
    """Undo ``up()``: remove cloudlab's domains and networks, stop daemons cloudlab started, remove its namespace."""
    state = load_state()
    if state is None:
        return
    try:
        conn = open_connection(state.uri)
    except MissingPrerequisite:
        conn = None
    if conn is not None:
        # a private daemon holds only cloudlab's resources; a shared one also others'
        clean(config.prefix(), conn=conn, everything=state.private)
        conn.close()
    if state.private:
        for name in ("libvirtd", "virtlogd"):
            if name in state.pids:
                _stop_pid(state.pids[name])
    if state.netns and state.netns_created:
        netns.delete(state.netns)
    # leftovers() compares what is still running with what this host was
    (state_dir() / "last-down.json").write_text(json.dumps(dataclasses.asdict(state)))
    _state_file().unlink(missing_ok=True)
    if not quiet:
        print("host: down", flush=True)


def leftovers(prefix=None):
    """What of the lab host is still here after ``down()`` (empty when all is clean).

    Processes count when they run in the namespace the host had (compared by
    inode, so other labs in other namespaces are not mistaken for ours), or,
    without a namespace, when they are QEMU guests or dnsmasq instances named
    with the prefix; also the daemons ``up()`` started, the namespace itself, and
    files with the prefix under the labs' state folders.
    """
    prefix = prefix or config.prefix()
    found = []
    try:
        last = json.loads((state_dir() / "last-down.json").read_text())
    except (OSError, ValueError):
        last = {}
    inode = last.get("netns_inode") or 0
    marks = [f"guest={prefix}", f"/dnsmasq/{prefix}"]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ns_inode = os.stat(proc / "ns" / "net").st_ino
        except OSError:
            continue
        ours = (ns_inode == inode) if inode else any(mark in cmdline for mark in marks)
        if ours or int(proc.name) in (last.get("pids") or {}).values():
            found.append(f"process {proc.name}: {cmdline[:120]}")
    ns = config.netns()
    if ns and netns.exists(ns) and load_state() is None:
        found.append(f"network namespace {ns}")
    home = config.home()
    for lab_dir in (home.iterdir() if home.is_dir() else []):
        if lab_dir.is_dir() and lab_dir.name not in ("host", "images"):
            found += [f"file {item}" for item in lab_dir.iterdir() if item.name.startswith(prefix)]
    # the storage services' own: daemons, loop devices, mounts (their files are found above)
    from ..block_storage import leftovers as block_storage_leftovers
    from ..shared_file_system import leftovers as shared_file_system_leftovers
    for item in block_storage_leftovers(home, prefix) + shared_file_system_leftovers(home, prefix):
        if item not in found:
            found.append(item)
    return found


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
    removed = []
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
    home = config.home()
    if home.is_dir():
        for lab_dir in home.iterdir():
            if not lab_dir.is_dir() or lab_dir.name in ("host", "images"):
                continue
            for item in lab_dir.iterdir():
                if (lab_prefix and item.name.startswith(lab_prefix)) or \
                        any(item.name.startswith(d + ".") or item.name.startswith(d + "-") for d in gone):
                    if item.is_dir() and not item.is_symlink():
                        shutil.rmtree(item, ignore_errors=True)
                    else:
                        item.unlink(missing_ok=True)
                    removed.append(f"file {item.name}")
    return removed


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


def network_xml(name, subnet):
    """An isolated libvirt network (no forwarding: nothing leaves the host) with DHCP."""
    hosts = list(subnet.hosts())
    gateway, first, last = hosts[0], hosts[99], hosts[198]
    return (f"<network><name>{name}</name><bridge stp='off' delay='0'/>"
            f"<ip address='{gateway}' netmask='{subnet.netmask}'>"
            f"<dhcp><range start='{first}' end='{last}'/></dhcp></ip></network>")


class LabHost:
    """The lab host as one lab sees it: a libvirt connection and the lab's own network.

    Args:
        lab: the :class:`~cloudlab.lab.Lab` this host serves.
    """

    def __init__(self, lab):
        self.lab = lab
        self.state = None
        self._conn = None
        self._lock = threading.Lock()
        self.network = f"{lab.prefix}net"
        self.subnet = None

    def start(self):
        """Bring the host up if needed and create the lab's network."""
        self.state = up()
        self._ensure_network()

    def stop(self):
        """Remove this lab's network and anything else left with its prefix (daemons stay up)."""
        if self._conn is not None:
            clean(self.lab.prefix, conn=self._conn)
            self._conn.close()
            self._conn = None

    def connect(self):
        """The libvirt connection (one per lab; libvirt connections are thread-safe)."""
        with self._lock:
            if self._conn is None or not self._conn.isAlive():
                if self.state is None:
                    self.state = up()
                self._conn = open_connection(self.state.uri)
            return self._conn

    def _ensure_network(self):
        libvirt = libvirt_module()
        conn = self.connect()
        try:
            net = conn.networkLookupByName(self.network)
            if not net.isActive():
                net.create()
        except libvirt.libvirtError:
            subnet = choose_subnet(_used_subnets(conn))
            try:
                net = conn.networkCreateXML(network_xml(self.network, subnet))
            except libvirt.libvirtError as exc:
                raise CloudlabError(f"could not create the lab network {self.network}: "
                                    f"{exc.get_error_message()}",
                                    fix="run `python -m cloudlab doctor`") from None
        import xml.etree.ElementTree as ET
        ip = ET.fromstring(net.XMLDesc()).find("ip")
        self.subnet = ipaddress.ip_network(f"{ip.get('address')}/{ip.get('netmask')}", strict=False)
        self.gateway = ip.get("address")
        self.bridge = net.bridgeName()

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
