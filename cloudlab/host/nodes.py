"""Nodes that are hosts of their own: the controller, compute and storage nodes of a layout.

As Mininet makes hosts on one machine, each node of a multi-node layout is a set of
kernel namespaces, not a virtual machine:

* a **network namespace** (``ip netns add HOSTNS.LAB.NODE``) with its own interfaces,
  addresses, routes and ports; its ``eth0`` is one end of a veth pair whose other end
  is plugged into the lab's **management bridge** in the lab host's namespace, so the
  nodes reach each other at ``10.214.N.11``, ``.12``, ... as machines on one switch do;
* a **PID namespace**, whose PID 1 is the node's own init (:mod:`cloudlab.host.node_init`),
  with a **mount namespace** (its own ``/proc``, so ``ps`` in the node lists only the
  node's processes) and a **UTS namespace** (its own host name, ``compute1``, which its
  libvirtd reports and ``server.host`` shows).  Every process of the node is started
  inside all four (:meth:`Node.enter_args`), the lab host's recipe for a private
  libvirtd (:func:`cloudlab.host._start_private_daemons`) makes a compute node's
  /etc/libvirt, /run/libvirt and /var/lib/libvirt its own in that mount namespace, and
  stopping a node (a power cut) ends its init: the kernel then ends everything in it.
  The lab keeps the machine's pids of what runs there (a daemon's pid file says the
  pid it has inside the node; :func:`host_pid` translates), and finds leftovers by
  the network namespace's inode (:mod:`cloudlab.host.ownership`).

The nodes share the machine's kernel, clock and disk;
a server's disk file is therefore visible on every compute node, as on shared storage
(NFS or Ceph under Nova's instance folder), which is what lets a server move between
them with libvirt's live migration.

The **tenant network** the guests use spans the compute nodes as Neutron's Linux
bridge agent builds it: on every compute node and on the controller a bridge
(``brq``) with a VXLAN port (VNI 100, UDP 4789) that sends each frame for an unknown
MAC to every other node's management address (head-end replication, as Neutron's
l2population programs it).  The guests' NICs are plugged into it through a libvirt
network in bridge mode; their addresses come from one dnsmasq on the controller's
bridge (Neutron's DHCP agent).  The management network's veths carry a larger MTU
(1600) so that a full 1500-byte guest frame still fits once wrapped in VXLAN.

The controller also runs the NTP server every other node syncs from (UDP 123 on its
addresses) and the API-facing services that are processes of their own, started with
:meth:`Node.popen`: Keystone (gunicorn, port 5000) and the object store's Swift and S3
proxy (``cloudlab object-store``, port 8080), each serving a socket bound on the node's
addresses and one the lab bound on the machine's loopback; every other node runs an NTP server of its own that follows it (its own
clock, stratum 2), so the lab shows each node's offset.  The storage node serves block
volumes over NBD (qemu-storage-daemon bound to its management address, see
:mod:`cloudlab.block_storage.nbd`).

The all-in-one layout has one node, the lab host itself: no namespace is made and the
lab host's libvirtd and network are used, exactly as before nodes existed.
"""

import fcntl
import hashlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

from .. import config
from ..errors import (CloudlabError, Conflict, HostUnreachable, InvalidInput, MissingPrerequisite, NotFound,
                      ResourceTimeout)
from ..topology import COMPUTE, CONTROLLER, STORAGE
from . import netns

MGMT_NET = "10.214.{n}.0/24"      # the management network of one lab
TENANT_NET = "10.215.{n}.0/24"    # its tenant (guest) network, carried over VXLAN
FIRST_NODE = 11                   # the first node's management address ends in .11
VNI = 100
VXLAN_PORT = 4789
MGMT_MTU = 1600                   # 1500-byte guest frames + 50 bytes of VXLAN fit
NTP_PORT = 123
DEFAULT_NODE_RAM_MIB = 2048       # what a compute node offers its guests (Nova's resource tracker total)
DEFAULT_NODE_VCPUS = 4
INIT = Path(__file__).with_name("node_init.py")    # PID 1 of each node's PID namespace
INIT_TIMEOUT_S = 10.0
TENANT_BRIDGE = "brq"             # in each node's own namespace: the name need not be unique machine-wide
VXLAN_DEVICE = f"vxlan-{VNI}"

# programs seen in a node's processes, and the OpenStack service each stands for
SERVICE_OF = {
    "libvirtd": "libvirtd (the hypervisor's daemon; nova-compute drives it)",
    "virtlogd": "virtlogd (guests' console logs)",
    "qemu-system-x86_64": "QEMU (a guest)",
    "dnsmasq": "dnsmasq (DHCP: Neutron's DHCP agent)",
    "qemu-storage-daemon": "qemu-storage-daemon (NBD target: cinder-volume)",
    "ntp": "NTP server",
    "init": "init (PID 1 of the node's PID namespace)",
    "gunicorn": "Keystone (identity, under gunicorn)",
    "object-store": "object store (the Swift and S3 proxy)",
    "object-server": "object server (the objects' bytes and metadata: swift-object-server)",
    "glance-api": "glance-api (the image registry's API: Glance)",
}


def _ip(*args, ns=None, check=True):
    """Run ``ip [-n NS] ARGS``; a failure is a CloudlabError quoting ip's message."""
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise CloudlabError(f"`{' '.join(cmd)}` failed: {result.stderr.strip()}",
                            fix="nodes need root (network namespaces, veths, bridges)")
    return result


def namespace_prefix():
    """The start of every node namespace's name of this lab host: ``HOSTNS.`` (``cloudlab.`` without one)."""
    return f"{config.netns() or 'cloudlab'}."


def nodes_dir():
    """Folder of the nodes' state (their libvirtd folders, pid files), under the lab host's."""
    from . import state_dir
    return state_dir() / "nodes"


def _short(*parts, length=8):
    """A short stable name part (interface names have at most 15 characters)."""
    return hashlib.sha1(".".join(parts).encode()).hexdigest()[:length]


def _inode(path):
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _children(pid):
    """The pids of ``pid``'s children (its main thread's), read from /proc; [] once it is gone."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _first_child(proc, timeout, accept=lambda pid: True):
    """The first child of Popen ``proc`` that ``accept`` takes, waited for up to ``timeout`` s; None if none came."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        found = _children(proc.pid)
        if found and accept(found[0]):
            return found[0]
        if time.monotonic() > deadline:
            return None
        time.sleep(0.005)
    return None


def _innermost_pid(pid):
    """The pid that process ``pid`` (this machine's) has in its own, innermost PID namespace, or None.

    The kernel lists every pid a process has, outermost first, in ``NSpid`` of ``/proc/PID/status``.
    """
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[-1]) for line in status if line.startswith("NSpid:"))
    except (OSError, ValueError, StopIteration):
        return None


def host_pid(ns_pid, pidns_inode):
    """This machine's pid of the process that is ``ns_pid`` inside the PID namespace ``pidns_inode``, or None.

    A daemon in a node writes its pid as the node sees it (libvirtd's pid file says 9).
    """
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/pid").st_ino != pidns_inode:
                continue
        except OSError:
            continue
        if _innermost_pid(entry) == ns_pid:
            return int(entry)
    return None


class _Entered(subprocess.Popen):
    """A process started through ``nsenter`` into a node's PID namespace.

    nsenter must fork to put a command into a PID namespace (the namespace is for its
    children), and it passes no signal on to that child.  So signals go to the child
    itself, whose pid on this machine is :attr:`service_pid`; nsenter exits when it does,
    with its status, so ``wait()`` and ``returncode`` work as for any Popen.
    """

    def __init__(self, *args, **kwargs):
        self._service_pid = None
        super().__init__(*args, **kwargs)

    @property
    def service_pid(self):
        """The command's own pid on this machine (nsenter's child)."""
        if self._service_pid is None:
            self._service_pid = _first_child(self, timeout=2)
        return self._service_pid or self.pid

    def send_signal(self, sig):
        """Send ``sig`` to the command (not to nsenter)."""
        if self.poll() is not None:
            return
        try:
            os.kill(self.service_pid, sig)
        except ProcessLookupError:
            pass


def _used_third_octets(ns):
    """Third octets of 10.214.N.0/24 networks already routed in namespace ``ns`` (other labs' nodes)."""
    out = _ip("-j", "route", ns=ns, check=False).stdout
    used = set()
    try:
        for route in json.loads(out or "[]"):
            dst = route.get("dst", "")
            if dst.startswith("10.214.") or dst.startswith("10.215."):
                used.add(int(dst.split(".")[2]))
    except (ValueError, IndexError):
        pass
    for item in nodes_dir().glob("*/node.json"):     # labs of this host whose bridge is not up yet
        try:
            used.add(json.loads(item.read_text())["n"])
        except (OSError, ValueError, KeyError):
            pass
    return used


class _LibvirtNode:
    """What a node of this machine and a remote machine share: roles, a host name, one cached libvirt connection."""

    def has(self, role):
        """True when this node plays ``role``."""
        return role in self.roles

    @property
    def hostname(self):
        """The node's name in the topology, as ``server.host`` shows it."""
        return self.name

    def _cached_connection(self, open_connection):
        """The open connection while it is alive, else a new one from ``open_connection()`` (lock held)."""
        from . import libvirt_module
        if self._conn is not None:
            try:
                if self._conn.isAlive():
                    return self._conn
            except libvirt_module().libvirtError:
                pass
        self._conn = open_connection()
        return self._conn

    def _close(self):
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None


class Node(_LibvirtNode):
    """One node of a layout, made real: a name, roles, an address, and what runs on it.

    Attributes:
        name: the node's name in the topology (``compute1``), also its host name.
        roles: the roles it plays (``controller``, ``compute``, ``storage``).
        address: its address on the management network.
        tenant_address: its bridge's address on the tenant network (controller only), or None.
        netns: the name of its network namespace (None for the all-in-one node: the lab host's).
        ram_mib, vcpus: what a compute node offers its guests (the scheduler's totals).
    """

    local = False

    def __init__(self, nodes, spec, index):
        self._nodes = nodes
        self.lab = nodes.lab
        self.name = spec.name
        self.roles = tuple(spec.roles)
        self.remote = None
        self.ram_mib = getattr(spec, "ram_mib", None) or DEFAULT_NODE_RAM_MIB
        self.vcpus = getattr(spec, "vcpus", None) or DEFAULT_NODE_VCPUS
        self.address = str(nodes.mgmt_subnet.network_address + FIRST_NODE + index)
        self.tenant_address = str(nodes.tenant_subnet.network_address + 1) if CONTROLLER in self.roles else None
        self.netns = f"{namespace_prefix()}{nodes.key}.{self.name}"
        self.veth = f"cl{_short(self.netns)}"
        self.state_path = nodes_dir() / f"{nodes.key}.{self.name}"
        self.pids = {}
        self.uri = None
        self.stopped = True
        self._conn = None
        self._lock = threading.RLock()
        self._procs = []        # Popen handles of what this node runs besides libvirt (NTP, dnsmasq)
        self._init = None       # the Popen of `unshare` whose child is the node's init
        self.init_pid = None    # that init: PID 1 inside the node, this pid on the machine
        self.network = f"{self.lab.prefix}net"

    # -- what the node is -----------------------------------------------------------

    @property
    def accel(self):
        """``kvm`` or ``tcg``: the lab host's choice, which every node of this machine shares."""
        return self._nodes.accel

    @property
    def domain_type(self):
        """libvirt's domain type on this node: ``kvm`` or ``qemu``."""
        return "kvm" if self.accel == "kvm" else "qemu"

    @property
    def is_up(self):
        """True while the node runs (its namespace exists and, on a compute node, its libvirtd answers)."""
        if self.stopped or not netns.exists(self.netns):
            return False
        from . import _pid_alive
        if not _pid_alive(self.init_pid):
            return False
        if self.has(COMPUTE):
            return all(_pid_alive(self.pids.get(name)) for name in ("libvirtd", "virtlogd"))
        return True

    @property
    def netns_inode(self):
        """The inode of the node's network namespace (how its processes are told apart), or None."""
        return _inode(netns.path(self.netns)) if self.netns else None

    @property
    def pidns_inode(self):
        """The inode of the node's PID namespace (its init's), or None while the node is stopped."""
        try:
            return os.stat(f"/proc/{self.init_pid}/ns/pid").st_ino if self.init_pid else None
        except OSError:
            return None

    def enter_args(self):
        """Command prefix that runs a command inside this node: its network, mount, UTS and PID namespaces.

        Before its init runs (and after a power cut), only its network namespace.
        """
        if self.init_pid and self._init is not None and self._init.poll() is None:
            return ["nsenter", "-t", str(self.init_pid), "-n", "-m", "-u", "-p", "--"]
        return netns.enter_args(self.netns)

    def start_init(self):
        """Start the node's init: PID 1 of a PID namespace of the node's own, with its own mount and UTS
        namespaces (and so its own ``/proc`` and host name), inside its network namespace.

        Every process of the node is then started inside all four (:meth:`enter_args`), so
        ``ps`` in the node lists only the node's processes, and ending the init ends them all.

        Raises:
            CloudlabError: the init did not start (its log is quoted).
        """
        from .ownership import child_env
        log = self.state_path / "init.log"
        script = f"hostname {shlex.quote(self.name)} && exec {shlex.quote(sys.executable)} -I {shlex.quote(str(INIT))}"
        # --kill-child: should unshare end (the lab ends it to cut the node's power), its child, the init,
        # is killed by the kernel, and every process of the namespace with it
        args = netns.enter_args(self.netns) + ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc",
                                               "--uts", "--propagation", "private", "sh", "-c", script]
        with open(log, "ab") as out:
            self._init = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True, env=child_env())
        from .ownership import read_process

        def execed(pid):            # the host name and /proc are set once the shell has exec'd the init
            proc = read_process(pid)
            return proc is not None and str(INIT) in proc.cmdline

        init = _first_child(self._init, INIT_TIMEOUT_S, accept=execed)
        if init is None:
            if self._init.poll() is not None:
                raise CloudlabError(f"the init of node {self.name} did not start: "
                                    f"{log.read_text(errors='replace')[-300:]}", fix=f"see {log}")
            raise ResourceTimeout(f"the init of node {self.name} did not start within {INIT_TIMEOUT_S:g} s",
                                  fix=f"see {log}")
        self.init_pid = init
        self.pids["init"] = self.init_pid
        self._save()

    def _stop_init(self):
        """End the init, and with it (the kernel's doing) every process left in the node's PID namespace."""
        from ..process import stop_process
        from . import _pid_alive
        if _pid_alive(self.init_pid):
            # the init itself: unshare, its parent, ignores SIGTERM while it waits for it
            try:
                os.kill(self.init_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if self._init is not None:
            stop_process(self._init)      # returns as soon as the init is gone (unshare exits with it)
            self._init = None
        deadline = time.monotonic() + 5
        while _pid_alive(self.init_pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.init_pid = None

    def run(self, command, timeout=30):
        """Run ``command`` (a list) inside the node's network namespace; returns the CompletedProcess."""
        from .ownership import child_env
        return subprocess.run(self.enter_args() + list(command), capture_output=True, text=True,
                              timeout=timeout, env=child_env())

    # -- bringing it up and down ---------------------------------------------------------

    def create(self):
        """Make the node's namespace and plug it into the management bridge (and the tenant network)."""
        ns = self.netns
        if netns.exists(ns):
            raise Conflict(f"network namespace {ns} exists already: a node of that name runs",
                           fix="stop the other lab (lab.stop()), or `python -m cloudlab host down`")
        self.state_path.mkdir(parents=True, exist_ok=True)
        (self.state_path / "node.json").write_text(json.dumps({"n": self._nodes.n, "netns": ns}))
        netns.create(ns)
        host_ns = config.netns()
        try:
            _ip("link", "add", self.veth, "mtu", str(MGMT_MTU), "type", "veth", "peer", "name", "eth0",
                "mtu", str(MGMT_MTU), "netns", ns, ns=host_ns)
            _ip("link", "set", self.veth, "master", self._nodes.bridge, "up", ns=host_ns)
            _ip("addr", "add", f"{self.address}/{self._nodes.mgmt_subnet.prefixlen}", "dev", "eth0", ns=ns)
            _ip("link", "set", "eth0", "up", ns=ns)
        except BaseException:
            self.destroy()       # nothing half-made: the namespace and its veth go again
            raise
        self.stopped = False

    def build_tenant_port(self, peers):
        """The node's part of the tenant network: bridge ``brq`` and a VXLAN port flooding to ``peers``."""
        ns = self.netns
        _ip("link", "add", TENANT_BRIDGE, "type", "bridge", "stp_state", "0", ns=ns)
        _ip("link", "add", VXLAN_DEVICE, "type", "vxlan", "id", str(VNI), "local", self.address, "dev", "eth0",
            "dstport", str(VXLAN_PORT), ns=ns)
        for peer in peers:
            result = subprocess.run(["bridge", "-netns", ns, "fdb", "append", "00:00:00:00:00:00", "dev",
                                     VXLAN_DEVICE, "dst", peer], capture_output=True, text=True)
            if result.returncode != 0:
                raise CloudlabError(f"could not add the VXLAN flood entry to {peer}: {result.stderr.strip()}")
        _ip("link", "set", VXLAN_DEVICE, "master", TENANT_BRIDGE, "up", ns=ns)
        if self.tenant_address:
            _ip("addr", "add", f"{self.tenant_address}/{self._nodes.tenant_subnet.prefixlen}", "dev",
                TENANT_BRIDGE, ns=ns)
        _ip("link", "set", TENANT_BRIDGE, "up", ns=ns)

    def start_libvirt(self):
        """Start the node's own virtlogd and libvirtd (listening on its address for migrations)."""
        from . import _start_private_daemons, state_dir
        socket_path = self.state_path / "run" / "libvirt-sock"
        if len(str(socket_path)) > 107:        # a unix socket's path has at most 108 bytes
            raise InvalidInput(f"the libvirt socket of node {self.name} would be {socket_path}, longer than a "
                               "unix socket's path may be (108 bytes)",
                               fix="set CLOUDLAB_HOME to a shorter folder, or give the lab a shorter name")
        pidns = self.pidns_inode
        self.uri, pids = _start_private_daemons(self.state_path, self.accel, self.netns, hostname=self.name,
                                                owner=state_dir(), listen=self.address,
                                                fresh="libvirtd" not in self.pids, enter=self.enter_args(),
                                                host_pid=lambda pid: host_pid(pid, pidns))
        self.pids.update(pids)
        self._save()
        conn = self.connect()
        try:
            conn.networkLookupByName(self.network)
        except Exception:
            # a libvirt network over the node's own tenant bridge: libvirt plugs the guests' taps into it
            conn.networkCreateXML(f"<network><name>{self.network}</name><forward mode='bridge'/>"
                                  f"<bridge name='{TENANT_BRIDGE}'/></network>")

    def popen(self, command, log, pass_fds=(), env=None):
        """Start ``command`` (a list) as a process of this node; returns its ``subprocess.Popen``.

        Args:
            log: path of the file its output goes to (appended).
            pass_fds: file descriptors it inherits: a socket bound elsewhere (on the machine's
                loopback, say) keeps the namespace it was made in, so a service of the node can
                also answer there, as systemd's socket activation hands a service its socket.
            env: extra environment; the lab's owner mark is always set.
        Its ``service_pid`` is the command's own pid on this machine (``pid`` may be the
        nsenter that entered the node's PID namespace for it).  Stop it with
        :func:`cloudlab.process.stop_process`; a power cut (:meth:`stop`) ends it too.
        """
        from .ownership import child_env
        environment = child_env()
        environment.update(env or {})
        enter = self.enter_args()
        kind = _Entered if "-p" in enter else subprocess.Popen
        with open(log, "ab") as out:
            proc = kind(enter + list(command), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                        start_new_session=True, env=environment, pass_fds=tuple(pass_fds))
        if kind is subprocess.Popen:
            proc.service_pid = proc.pid      # no nsenter in between: the command is the process
        return proc

    def listen(self, address, port, backlog=128):
        """A TCP socket listening on ``address:port`` inside this node, made here, to hand to one of its processes.

        Raises:
            Conflict: the port is taken there.
        """
        try:
            return netns.listening_socket_in(self.netns, address, port, backlog=backlog)
        except OSError as exc:
            raise Conflict(f"port {port} on node {self.name} is taken: {exc.strerror}",
                           fix="stop what listens there (lab.stop() of another lab)") from None

    def start_process(self, name, command):
        """Start ``command`` inside the node (marked as the lab's), remembered as ``name`` in its pids."""
        proc = self.popen(command, self.state_path / f"{name}.log")
        self._procs.append(proc)
        self.pids[name] = proc.service_pid
        self._save()
        return proc

    def _save(self):
        if self.state_path.is_dir():        # not once the node is removed
            (self.state_path / "pids.json").write_text(json.dumps(self.pids))

    def stop(self):
        """Stop the node as a power cut would: its guests, its daemons and processes end; its namespace stays.

        Servers on a stopped compute node show status ``UNKNOWN`` (as Nova shows servers of
        a compute host that is down); :meth:`start` brings the node back with its servers
        powered off, to be started again.
        """
        with self._lock:
            if self.stopped:
                return
            self.stopped = True
            self._close()
            self._end_processes()

    def start(self):
        """Start a stopped node again (its daemons; on the controller Keystone, the object store's proxy and
        Glance's API; on the storage node the object server and the NBD target; its servers stay powered
        off until started).

        Raises:
            Conflict: the node is not stopped.
        """
        with self._lock:
            if not self.stopped:
                raise Conflict(f"node {self.name} is running", fix=f"lab.nodes[{self.name!r}].stop() first")
            self.stopped = False
            self._nodes._start_services(self)
            # as a machine starts its services when it boots: what the lab runs on this node as
            # processes of their own (Keystone, the object store, Glance's API, the NBD target) comes back
            for attribute in ("identity", "object_store", "api", "block_storage"):
                service = self.lab.started_service(attribute)
                if service is not None and self in (getattr(service, "node", None),
                                                    getattr(service, "storage_node", None)):
                    service.resume()

    def _end_processes(self):
        """End every process of this node: what it started, then whatever else lives in its namespace."""
        from . import _stop_pid
        from ..process import stop_process
        for proc in self._procs:
            stop_process(proc)
        self._procs = []
        for name in ("libvirtd", "virtlogd"):
            if name in self.pids:
                _stop_pid(self.pids[name])
        self._stop_init()
        inode = self.netns_inode
        if inode:
            from .ownership import all_processes
            left = [p for p in all_processes() if p.net_inode == inode]
            for proc in left:          # guests (QEMU), dnsmasq: a power cut takes them too
                _stop_pid(proc.pid, timeout=5)
        for name in [n for n in self.pids if n not in ("libvirtd", "virtlogd")]:
            self.pids.pop(name)
        self._save()

    def destroy(self):
        """Remove the node: end everything in it, delete its namespace (its veth goes with it) and its folder."""
        with self._lock:
            self._close()
            self._end_processes()
            self.stopped = True
            netns.delete(self.netns)
            _ip("link", "del", self.veth, ns=config.netns(), check=False)
            shutil.rmtree(self.state_path, ignore_errors=True)

    # -- what a compute service needs (the same attributes as cloudlab.host.LabHost) ----------

    def connect(self):
        """The libvirt connection to this node's libvirtd.

        Raises:
            Conflict: the node is stopped.
            HostUnreachable: its libvirtd does not answer.
        """
        from . import open_connection
        with self._lock:
            if self.stopped:
                raise Conflict(f"node {self.name} is stopped", fix=f"lab.nodes[{self.name!r}].start()")
            if not self.has(COMPUTE):
                raise InvalidInput(f"node {self.name} is not a compute node: it runs no hypervisor")
            try:
                return self._cached_connection(lambda: open_connection(self.uri))
            except MissingPrerequisite as exc:
                raise HostUnreachable(f"the libvirtd of node {self.name} does not answer: {exc.message}",
                                      fix=f"lab.nodes[{self.name!r}].stop(), then .start()") from None

    def free_memory_mib(self):
        """Memory this node can still give guests: its total less what its running guests have, within the machine's."""
        from . import libvirt_module
        libvirt = libvirt_module()
        used = 0
        try:
            for dom in self.connect().listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                used += dom.info()[2] // 1024
        except libvirt.libvirtError:
            pass
        return max(0, min(self.ram_mib - used, self._nodes._machine_free()))

    def used_vcpus(self):
        """vCPUs of the guests running on this node."""
        from . import libvirt_module
        libvirt = libvirt_module()
        try:
            return sum(dom.info()[3] for dom in self.connect().listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE))
        except libvirt.libvirtError:
            return 0

    @property
    def guest_ntp(self):
        """The NTP server guests on the tenant network sync from: the controller's tenant address."""
        return self._nodes.controller.tenant_address

    def lease_addresses(self, macs):
        """Addresses the controller's DHCP server leased to ``macs``: ``{mac: address}``."""
        return self._nodes.leases(macs)

    def release_leases(self, macs, network=None):
        """Give back the DHCP leases of ``macs`` (a real DHCPRELEASE, sent on the controller's bridge)."""
        return self._nodes.release_leases(macs)

    # -- what runs on it ---------------------------------------------------------------

    def processes(self):
        """The processes running in this node: ``[(pid, program, service), ...]``, read from /proc."""
        from .ownership import all_processes
        inode = self.netns_inode
        if inode is None:
            return []
        found = []
        for proc in all_processes():
            if proc.net_inode != inode:
                continue
            program = proc.name
            if program in ("ip", "nsenter", "unshare"):
                continue
            if "cloudlab ntp serve" in proc.cmdline:
                program = "ntp"
            elif "cloudlab object-store" in proc.cmdline:
                # the proxy passes requests on (--upstream); the object server keeps the data
                program = "object-store" if "--upstream" in proc.cmdline else "object-server"
            elif str(INIT) in proc.cmdline:
                program = "init"
            elif "cloudlab_keystone_wsgi" in proc.cmdline:
                program = "gunicorn"
            elif "cloudlab api-service image" in proc.cmdline:
                program = "glance-api"
            service = SERVICE_OF.get(program)
            if service is None:
                continue
            found.append((proc.pid, program, service))
        return sorted(found, key=lambda item: (item[1], item[0]))

    def process_table(self):
        """What ``ps`` inside the node would list of the lab's programs: ``[{pid, host_pid, program, service}]``.

        ``pid`` is the process's pid inside the node's PID namespace (its init is 1),
        ``host_pid`` the same process's pid on this machine; sorted by ``pid``.
        """
        rows = []
        for pid, program, service in self.processes():
            inside = _innermost_pid(pid)
            if inside is not None:
                rows.append({"pid": inside, "host_pid": pid, "program": program, "service": service})
        return sorted(rows, key=lambda row: row["pid"])

    def services(self):
        """Names of the services this node runs now (one per program, in the learner's words)."""
        seen = []
        for _, program, service in self.processes():
            if program in ("qemu-system-x86_64", "init"):
                continue
            if service not in seen:
                seen.append(service)
        return seen

    def __repr__(self):
        state = "stopped" if self.stopped else "up"
        return f"<Node {self.name} {'+'.join(self.roles)} {self.address} {state}>"


class LocalNode:
    """The all-in-one layout's one node: the lab host itself (its libvirtd, network and namespace)."""

    local = True

    def __init__(self, nodes, spec):
        self._nodes = nodes
        self.lab = nodes.lab
        self.name = spec.name
        self.roles = tuple(spec.roles)
        self.remote = None
        self.stopped = False

    def has(self, role):
        """True when this node plays ``role``."""
        return role in self.roles

    @property
    def host(self):
        """The lab host (:class:`cloudlab.host.LabHost`), which is this node."""
        return self.lab.host

    @property
    def hostname(self):
        """The machine's host name."""
        return self.host.hostname

    @property
    def address(self):
        """The lab network's gateway address (the lab host's own on its bridge)."""
        return self.host.gateway

    @property
    def netns(self):
        """The lab host's network namespace, or None."""
        return self.host.netns

    @property
    def is_up(self):
        """True: the all-in-one node is up while the lab host is."""
        return True

    def processes(self):
        """The lab host's processes in its network namespace: ``[(pid, program, service), ...]``."""
        from .ownership import all_processes
        inode = _inode(netns.path(self.netns)) if self.netns else None
        found = []
        for proc in all_processes():
            if inode is not None and proc.net_inode != inode:
                continue
            program = "ntp" if "cloudlab ntp serve" in proc.cmdline else proc.name
            service = SERVICE_OF.get(program)
            if service is not None and (inode is not None or self.lab.prefix in proc.cmdline):
                found.append((proc.pid, program, service))
        return sorted(found, key=lambda item: (item[1], item[0]))

    def services(self):
        """Names of the services the lab host runs now."""
        seen = []
        for _, program, service in self.processes():
            if program != "qemu-system-x86_64" and service not in seen:
                seen.append(service)
        return seen

    def stop(self):
        """The all-in-one node is the lab host: stopping it is ``lab.stop()``."""
        raise Conflict("the all-in-one node is the lab host itself", fix="lab.stop() stops the whole lab")

    def __repr__(self):
        return f"<Node {self.name} {'+'.join(self.roles)} (the lab host)>"


SSH_CONNECT_TIMEOUT_S = 10        # an address that does not answer fails in this time, not TCP's minutes


class RemoteNode(_LibvirtNode):
    """A compute node that is another machine, reached through its libvirt URI (``qemu+ssh://root@ADDR/system``).

    A classroom with several machines runs the same layouts across them: the controller
    (and storage) stay on this machine, and a compute node may be a classmate's or the
    teacher's machine whose libvirtd the lab drives over the URI, as nova-compute drives
    its own.  The lab does not make or tear down that machine (it is someone else's): it
    checks that its libvirtd answers and reports it, and the servers placed there are
    created, started and deleted over the connection.

    What the remote machine must provide, and what it does not get:

    * **key-based ssh, no prompt**: the lab never asks for a password; it adds
      ``no_tty=1`` and runs ssh with ``BatchMode=yes`` and a 10 s connect timeout (a
      wrapper given as the URI's ``command=``); give ``keyfile=/path/to/key`` and, for a
      machine whose host key this one has not seen, ``no_verify=1``.  When the lab lives
      in a network namespace (``CLOUDLAB_NETNS``), the ssh client runs inside it, so
      the remote must be reachable from there.
    * **the same files at the same paths**: a server's disk is an overlay on the image,
      and its kernel, initramfs and console log are files; the remote's QEMU opens them
      by the paths this machine gives.  So the lab's folder (``CLOUDLAB_HOME``) and the
      image cache (``CLOUDLAB_CACHE``) must be mounted at the same paths there (an NFS
      share of both, as Nova's instance folder is shared for migration).  At start the
      lab checks this: it writes a marker file into each folder and asks the remote's
      libvirtd to list that folder (a transient storage pool, removed at once); a remote
      that does not see it is refused, with nothing made.  Copying disks over instead
      (``virsh vol-upload``) is not done: the console log the lab waits on and the guest
      agent's socket would still be files on the other machine.
    * **no tenant network**: the lab's tenant network (VXLAN between this machine's node
      namespaces, DHCP on the controller) is not built on another machine, so a server
      there has no NIC unless ``network=`` names a libvirt network of that machine.
    * **no live migration** to or from it (that needs the two libvirtds to reach each
      other directly), and its clock is not part of ``lab.nodes.time()``.
    * **the guest agent** (``server.run``) works only when the agent's socket file is
      reachable from here (a shared machine, as in the tests), not over NFS.
    """

    local = False

    def __init__(self, nodes, spec):
        self._nodes = nodes
        self.lab = nodes.lab
        self.name = spec.name
        self.roles = tuple(spec.roles)
        self.remote = spec.uri
        self.uri = spec.uri
        self.address = spec.address
        self.tenant_address = None
        self.netns = None
        self.pids = {}
        self.network = None          # no NIC on the lab's tenant network: it does not reach that machine
        self.machine_hostname = None
        self.stopped = True
        self.state_path = nodes_dir() / f"{nodes.key}.{self.name}"
        self._spec_ram, self._spec_vcpus = spec.ram_mib, spec.vcpus
        self.ram_mib, self.vcpus = spec.ram_mib, spec.vcpus
        self._domain_type = "qemu"
        self._conn = None
        self._lock = threading.RLock()

    @property
    def is_up(self):
        """True while the lab is connected to the remote machine's libvirtd."""
        return not self.stopped and self._conn is not None

    @property
    def netns_inode(self):
        """None: the remote machine's namespaces are not this machine's."""
        return None

    @property
    def domain_type(self):
        """``kvm`` when the remote's libvirt offers KVM, else ``qemu`` (read at start)."""
        return self._domain_type

    @property
    def accel(self):
        """``kvm`` or ``tcg``, as the remote machine's libvirt offers."""
        return "kvm" if self._domain_type == "kvm" else "tcg"

    # -- reaching it ------------------------------------------------------------------

    def connection_uri(self):
        """The URI the lab opens: the node's, with the non-interactive ssh options added (see the class docstring)."""
        parts = urlsplit(self.uri)
        if "ssh" not in parts.scheme.split("+", 1)[-1]:
            return self.uri
        query = parse_qs(parts.query)
        extra = []
        if "no_tty" not in query:
            extra.append("no_tty=1")
        if "command" not in query:
            extra.append(f"command={self._ssh_wrapper()}")
        if not extra:
            return self.uri
        return urlunsplit(parts._replace(query="&".join(filter(None, [parts.query] + extra))))

    def _ssh_wrapper(self):
        """A script libvirt runs instead of ``ssh``: no prompt, a short connect timeout, in the lab's namespace."""
        ssh = shutil.which("ssh")
        if ssh is None:
            raise MissingPrerequisite(f"remote node {self.name} is reached over ssh, and ssh is not installed",
                                      fix="`sudo apt-get install openssh-client`")
        self.state_path.mkdir(parents=True, exist_ok=True)
        wrapper = self.state_path / "ssh"
        enter = " ".join(netns.enter_args(config.netns()))
        wrapper.write_text("#!/bin/sh\n# written by cloudlab: libvirt's ssh transport runs this (the URI's command=)\n"
                           f"exec {enter} {ssh} -o BatchMode=yes -o ConnectTimeout={SSH_CONNECT_TIMEOUT_S} \"$@\"\n")
        wrapper.chmod(0o755)
        return wrapper

    def start(self):
        """Connect to the remote machine's libvirtd and check it: it answers, and it sees the lab's files.

        Raises:
            HostUnreachable: its libvirtd does not answer over the URI (the message says how to fix it).
            MissingPrerequisite: it does not see the lab's folders at the same paths.
        """
        from . import libvirt_module
        libvirt = libvirt_module()
        with self._lock:
            self.stopped = False
            try:
                conn = self.connect()
                try:
                    self.machine_hostname = conn.getHostname()
                    _, memory_mib, cpus = conn.getInfo()[:3]
                    caps = conn.getCapabilities()
                except libvirt.libvirtError as exc:
                    raise self._unreachable(exc.get_error_message()) from None
                self.ram_mib = self._spec_ram or memory_mib
                self.vcpus = self._spec_vcpus or cpus
                kvm = "<domain type='kvm'" in caps and os.environ.get("CLOUDLAB_ACCEL") != "tcg"
                self._domain_type = "kvm" if kvm else "qemu"
                for folder in (self.lab.home, config.cache()):
                    self._check_sees(conn, Path(folder))
            except BaseException:
                self.destroy()
                raise
        return self

    def _unreachable(self, detail):
        return HostUnreachable(
            f"remote node {self.name} ({self.uri}) does not answer: {detail}",
            fix=f"check from this machine that `virsh -c '{self.connection_uri()}' hostname` answers: the machine "
                "is on, its libvirtd runs, and ssh logs in with a key and no prompt (give ?keyfile=/path/to/key, "
                "and no_verify=1 for a host key not seen yet; the key in root's authorized_keys there)")

    def _check_sees(self, conn, folder):
        """Raise MissingPrerequisite unless the remote's libvirtd lists a marker file just written into ``folder``."""
        from . import libvirt_module
        libvirt = libvirt_module()
        marker = folder / f"{self.lab.prefix}seen-by-{self.name}-{os.getpid()}"
        marker.write_text("cloudlab: does the remote machine see this folder?\n")
        pool_xml = (f"<pool type='dir'><name>{self.lab.prefix}check-{self.name}</name>"
                    f"<target><path>{folder}</path></target></pool>")
        detail = "its libvirtd does not list the marker file written there"
        try:
            pool = conn.storagePoolCreateXML(pool_xml, 0)      # transient: gone once destroyed
            try:
                seen = marker.name in pool.listVolumes()
            finally:
                pool.destroy()
        except libvirt.libvirtError as exc:
            seen, detail = False, exc.get_error_message()
        finally:
            marker.unlink(missing_ok=True)
        if not seen:
            raise MissingPrerequisite(
                f"remote node {self.name} ({self.uri}) does not see {folder} ({detail}): its guests' disks, kernels "
                "and console logs are files there, which its QEMU must open by the same paths",
                fix=f"mount {folder} at the same path on that machine (an NFS share of it), then start the lab again")

    def connect(self):
        """The libvirt connection to the remote machine's libvirtd.

        Raises:
            Conflict: the node is not started.
            HostUnreachable: it does not answer over its URI.
        """
        from . import libvirt_module
        libvirt = libvirt_module()
        with self._lock:
            if self.stopped:
                raise Conflict(f"remote node {self.name} is not connected", fix="start the lab (lab.nodes)")
            try:
                return self._cached_connection(lambda: libvirt.open(self.connection_uri()))
            except libvirt.libvirtError as exc:
                raise self._unreachable(exc.get_error_message()) from None

    def free_memory_mib(self):
        """Memory the remote can still give guests: its total less its running guests', within its free memory."""
        from . import libvirt_module
        libvirt = libvirt_module()
        try:
            conn = self.connect()
            used = sum(dom.info()[2] // 1024 for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE))
            free = conn.getFreeMemory() // 2**20
        except (libvirt.libvirtError, CloudlabError):
            return 0
        return max(0, min(self.ram_mib - used, free))

    def used_vcpus(self):
        """vCPUs of the guests running on the remote machine."""
        from . import libvirt_module
        libvirt = libvirt_module()
        try:
            return sum(dom.info()[3] for dom in self.connect().listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE))
        except (libvirt.libvirtError, CloudlabError):
            return 0

    guest_ntp = None          # the controller's tenant address is not reachable from that machine's guests

    def lease_addresses(self, macs):
        """No leases: the lab's DHCP server is on its tenant network, which the remote's guests are not on."""
        return {}

    def release_leases(self, macs, network=None):
        """Nothing to release (see :meth:`lease_addresses`)."""
        return []

    def processes(self):
        """Nothing: the remote machine's processes cannot be read from this machine's /proc."""
        return []

    def services(self):
        """What the lab knows runs there: the libvirtd it is connected to."""
        return [f"libvirtd at {self.address} (a remote machine, reached by {urlsplit(self.uri).scheme})"] \
            if self.is_up else []

    def stop(self):
        """Refused: the remote machine is someone else's, the lab does not power it off.

        Raises:
            Conflict: always.
        """
        raise Conflict(f"node {self.name} is a remote machine ({self.uri}): the lab does not stop it",
                       fix="delete its servers (server.delete()), or stop it on that machine")

    def destroy(self):
        """Disconnect from the remote machine and remove the node's folder here (the machine itself is left alone)."""
        with self._lock:
            self._close()
            self.stopped = True
            shutil.rmtree(self.state_path, ignore_errors=True)

    def __repr__(self):
        state = "connected" if self.is_up else "not connected"
        return f"<Node {self.name} {'+'.join(self.roles)} remote {self.address} {state}>"


class Nodes:
    """The lab's nodes, made real from its topology (``lab.nodes``).

    ``lab.nodes["compute1"]`` is one :class:`Node`; iterating gives them in the
    topology's order.  Starting this service makes every node of a multi-node layout
    (namespaces, management bridge, tenant network, each compute node's libvirtd, the
    controller's DHCP and NTP servers, every node's NTP follower); stopping it removes
    all of that.  In the all-in-one layout it only names the lab host as the one node.
    """

    def __init__(self, lab):
        self.lab = lab
        self.topology = lab.topology
        self._nodes = {}
        self._remote = {}        # name -> RemoteNode: the machines of the layout that are not this one
        self.n = None
        self.mgmt_subnet = self.tenant_subnet = None
        self.bridge = None
        self.started_s = None
        self.accel = None
        # names every namespace, folder and bridge of this lab's nodes: the lab's prefix, so that
        # two labs of one name under different prefixes (the grader's) never meet
        self.key = lab.prefix.rstrip("-")

    @property
    def multi(self):
        """True for a layout of more than one node (each a host of its own)."""
        return len(self.topology.nodes) > 1

    def start(self):
        """Make the layout's nodes real (see the class docstring).

        Raises:
            MissingPrerequisite: a multi-node layout without root.
            CloudlabError: a step failed; everything made so far is removed again.
        """
        t0 = time.monotonic()
        if not self.multi:
            spec = self.topology.nodes[0]
            self._nodes = {spec.name: LocalNode(self, spec)}
            return self
        if os.geteuid() != 0:
            raise MissingPrerequisite("nodes of a multi-node layout are network namespaces: only root can make them",
                                      fix="run the lab as root (make lab does), or use cl.AllInOne()")
        # the remote machines first: one that does not answer is refused before anything is made here
        remotes = [RemoteNode(self, spec) for spec in self.topology.nodes if getattr(spec, "uri", None)]
        try:
            for node in remotes:
                node.start()
        except BaseException:
            for node in remotes:
                node.destroy()
            raise
        self._remote = {node.name: node for node in remotes}
        # the lab host (and its namespace) first: the nodes' switch lives there.  Read here, not in the
        # threads below: the lab holds its lock while this service starts
        self.accel = self.lab.host.accel
        self._machine_free = self.lab.host.free_memory_mib
        nodes_dir().mkdir(parents=True, exist_ok=True)
        # two labs starting at once must not take the same management network: one at a time
        # from choosing it until its bridge (and so its route) exists
        lock = open(nodes_dir() / "lock", "a")
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            self._start_locked()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()
        self.started_s = time.monotonic() - t0
        return self

    def _start_locked(self):
        self.n = self._choose_n()
        self.mgmt_subnet = ipaddress.ip_network(MGMT_NET.format(n=self.n))
        self.tenant_subnet = ipaddress.ip_network(TENANT_NET.format(n=self.n))
        bridge = f"clm{_short(namespace_prefix(), self.key)}"
        if _ip("link", "show", bridge, ns=config.netns(), check=False).returncode == 0:
            raise Conflict(f"the management bridge of a lab called {self.lab.name!r} exists already: that lab runs",
                           fix="stop it first (lab.stop()), or give this lab another name: cl.Lab(..., name=...)")
        try:
            self._make_bridge(bridge)
            self.bridge = bridge
            index = 0
            for spec in self.topology.nodes:
                if spec.name in self._remote:
                    self._nodes[spec.name] = self._remote[spec.name]
                    continue
                node = Node(self, spec, index)
                index += 1
                node.create()              # registered once it exists: a clash removes nothing of another's
                self._nodes[spec.name] = node
            made = [n for n in self._nodes.values() if isinstance(n, Node)]
            peers = [n for n in made if n.has(COMPUTE) or n.has(CONTROLLER)]
            for node in peers:
                node.build_tenant_port([p.address for p in peers if p is not node])
            # the compute nodes' libvirtds start at once: each takes about a second
            with ThreadPoolExecutor(len(made)) as pool:
                list(pool.map(self._start_services, [self.controller] +
                              [n for n in made if n is not self.controller]))
        except BaseException:
            for node in self._remote.values():
                if node.name not in self._nodes:     # not registered yet: stop() would not see it
                    node.destroy()
            self.stop()
            raise

    def _choose_n(self):
        used = _used_third_octets(config.netns())
        for n in range(0, 256):
            if n not in used:
                return n
        raise CloudlabError("no free management network left in 10.214.0.0/16", fix="stop other labs")

    def _make_bridge(self, bridge):
        host_ns = config.netns()
        _ip("link", "add", bridge, "mtu", str(MGMT_MTU), "type", "bridge", "stp_state", "0", ns=host_ns)
        gateway = self.mgmt_subnet.network_address + 1
        try:
            _ip("addr", "add", f"{gateway}/{self.mgmt_subnet.prefixlen}", "dev", bridge, ns=host_ns)
            _ip("link", "set", bridge, "up", ns=host_ns)
        except BaseException:
            _ip("link", "del", bridge, ns=host_ns, check=False)
            raise

    @property
    def mgmt_gateway(self):
        """The lab host's own address on the management network (the bridge's)."""
        return str(self.mgmt_subnet.network_address + 1) if self.mgmt_subnet else None

    def _start_services(self, node):
        """Start what ``node`` runs: libvirt on a compute node, DHCP and the NTP server on the controller,
        an NTP follower on every other node (all of it under the node's own init)."""
        node.start_init()
        if node.has(COMPUTE):
            node.start_libvirt()
        python = [sys.executable, "-m", "cloudlab", "ntp", "serve", "--port", str(NTP_PORT)]
        if node.has(CONTROLLER):
            self._start_dhcp(node)
            node.start_process("ntp", python + ["--address", "0.0.0.0", "--stratum1"])
        else:
            node.start_process("ntp", python + ["--address", node.address, "--upstream",
                                                f"{self.controller.address}:{NTP_PORT}", "--poll", "1"])

    # -- DHCP on the tenant network (the controller's dnsmasq) --------------------------

    @property
    def lease_file(self):
        """The controller's dnsmasq lease file."""
        return self.controller.state_path / "dnsmasq.leases"

    def _start_dhcp(self, controller):
        net = self.tenant_subnet
        first, last = net.network_address + 100, net.network_address + 199
        self.lease_file.unlink(missing_ok=True)
        controller.start_process("dnsmasq", [
            shutil.which("dnsmasq", path="/usr/sbin:/sbin:" + os.environ.get("PATH", "")) or "dnsmasq",
            "--keep-in-foreground", "--port=0", "--bind-interfaces", f"--interface={TENANT_BRIDGE}",
            "--except-interface=lo", f"--dhcp-range={first},{last},{net.netmask},{config.dhcp_lease_minutes()}m",
            f"--dhcp-leasefile={self.lease_file}", "--dhcp-authoritative", "--no-ping", "--conf-file=",
            f"--pid-file={controller.state_path / 'dnsmasq.pid'}"])

    def leases(self, macs=None):
        """The tenant network's DHCP leases: ``{mac: address}`` (only ``macs`` when given)."""
        wanted = {m.lower() for m in macs} if macs is not None else None
        found = {}
        try:
            lines = self.lease_file.read_text().splitlines()
        except OSError:
            return found
        for line in lines:
            parts = line.split()
            if len(parts) >= 3 and (wanted is None or parts[1].lower() in wanted):
                found[parts[1].lower()] = parts[2]
        return found

    def release_leases(self, macs):
        """Release the leases of ``macs`` with ``dhcp_release`` on the controller's bridge; returns the addresses."""
        tool = shutil.which("dhcp_release")
        if tool is None:
            return []
        released = []
        for mac, address in self.leases(macs).items():
            if self.controller.run([tool, TENANT_BRIDGE, address, mac]).returncode == 0:
                released.append(address)
        return released

    # -- the nodes -------------------------------------------------------------------

    def __getitem__(self, name):
        try:
            return self._nodes[name]
        except KeyError:
            raise NotFound(f"the {self.topology.name} layout has no node {name!r}",
                           fix=f"its nodes are: {', '.join(self._nodes)}") from None

    def __iter__(self):
        return iter(list(self._nodes.values()))

    def __len__(self):
        return len(self._nodes)

    def names(self):
        """The nodes' names, in the topology's order."""
        return list(self._nodes)

    def with_role(self, role):
        """The nodes that play ``role``."""
        return [n for n in self._nodes.values() if n.has(role)]

    @property
    def controller(self):
        """The controller node."""
        return self.with_role(CONTROLLER)[0]

    @property
    def compute_nodes(self):
        """The compute nodes, in order."""
        return self.with_role(COMPUTE)

    @property
    def storage(self):
        """The (first) storage node."""
        return self.with_role(STORAGE)[0]

    def time(self, timeout=2.0, settle=20.0):
        """Each node's clock against the controller's NTP server: ``{node: {"stratum", "offset_s", "delay_s", "up"}}``.

        The controller's own row is its NTP server (stratum 1); every other node's is the
        NTP server it runs, which syncs from the controller (stratum 2).  Each is asked
        from the lab host's side of the management network with the lab's NTP client.
        A node whose server has not synced yet (just started) is asked again, for up to
        ``settle`` seconds; a stopped node's row has ``up: False`` and no figures.
        """
        deadline = time.monotonic() + settle
        found = {}
        pending = [node for node in self if not node.local and not isinstance(node, RemoteNode)]
        for node in self:
            if isinstance(node, RemoteNode):
                # another machine keeps its own time; the lab's NTP servers are not on it
                found[node.name] = {"stratum": None, "offset_s": None, "delay_s": None, "up": node.is_up,
                                    "remote": True}
        while True:
            for node in pending:
                if node.stopped:
                    found[node.name] = {"stratum": None, "offset_s": None, "delay_s": None, "up": False}
                else:
                    sample = _exchange_in(config.netns(), node.address, NTP_PORT, timeout)
                    found[node.name] = {**sample, "up": True}
            pending = [node for node in pending if found[node.name]["up"] and
                       found[node.name]["stratum"] not in (1, 2)]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        return {node.name: found[node.name] for node in self if node.name in found}

    def stop(self):
        """Remove every node (namespaces, veths, the bridge, daemons, folders)."""
        errors = []
        for node in reversed(list(self._nodes.values())):
            if node.local:
                continue
            try:
                node.destroy()
            except CloudlabError as exc:
                errors.append(f"{node.name}: {exc}")
        self._nodes = {} if self.multi else self._nodes
        self._remote = {}
        if self.bridge:
            _ip("link", "del", self.bridge, ns=config.netns(), check=False)
            self.bridge = None
        if errors:
            raise CloudlabError("some nodes did not stop cleanly: " + "; ".join(errors))

    def __repr__(self):
        return f"<Nodes {self.topology.name}: {', '.join(self._nodes) or 'not started'}>"


def _exchange_in(ns, address, port, timeout):
    """One NTP exchange with ``address:port`` from inside namespace ``ns`` (a child process: a thread
    cannot change namespace); returns stratum, offset and delay."""
    code = ("import json,sys\nfrom cloudlab.ntp.packet import exchange\n"
            f"s = exchange({address!r}, {port}, timeout={timeout})\n"
            "print(json.dumps({'stratum': s.stratum, 'offset_s': s.offset, 'delay_s': s.delay}))")
    from .ownership import child_env
    result = subprocess.run(netns.enter_args(ns) + [sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=timeout + 10, env=child_env())
    if result.returncode != 0:
        return {"stratum": None, "offset_s": None, "delay_s": None, "error": result.stderr.strip()[-200:]}
    return json.loads(result.stdout)


# -- leftovers and clean-up (host down) ------------------------------------------------

def node_namespaces():
    """Names of the node namespaces of this lab host that exist now."""
    prefix = namespace_prefix()
    try:
        return sorted(name for name in os.listdir(netns.NETNS_DIR) if name.startswith(prefix))
    except OSError:
        return []


def node_inodes():
    """Inodes of those namespaces (processes in them are the lab's)."""
    return {ino for ino in (_inode(netns.path(n)) for n in node_namespaces()) if ino}


def leftovers(scope):
    """Node namespaces, node folders and management bridges of this lab host still here (``host leftovers``).

    Only those of labs whose prefix starts with ``scope.prefix`` (one lab's, or every lab's);
    the bridges, whose names are hashes, only when every lab's are asked for.
    """
    def ours(key):
        return (key + "-").startswith(scope.prefix)

    start = len(namespace_prefix())
    for name in node_namespaces():
        if ours(name[start:].rsplit(".", 1)[0]):
            yield f"node network namespace {name}"
    folder = scope.state_dir / "nodes"
    if folder.is_dir():
        for item in sorted(folder.iterdir()):
            # the lock that orders labs' starts is no leftover
            if item.name != "lock" and ours(item.name.rsplit(".", 1)[0]):
                yield f"node folder {item}"
    if len(scope.prefix) > len(config.prefix()):
        return
    out = _ip("-j", "link", "show", "type", "bridge", ns=scope.netns, check=False).stdout
    try:
        for link in json.loads(out or "[]"):
            if link.get("ifname", "").startswith("clm"):
                yield f"management bridge {link['ifname']}" + (f" in {scope.netns}" if scope.netns else "")
    except ValueError:
        pass


def down():
    """Remove every node of this lab host that is still here (``host down``): processes, namespaces, folders."""
    from . import _stop_pid
    from .ownership import all_processes
    inodes = node_inodes()
    if inodes:
        for proc in all_processes():
            if proc.net_inode in inodes:
                _stop_pid(proc.pid, timeout=5)
    for name in node_namespaces():
        netns.delete(name)
    folder = nodes_dir()
    if folder.is_dir():
        for item in folder.iterdir():
            try:
                pids = json.loads((item / "pids.json").read_text())
            except (OSError, ValueError):
                pids = {}
            for pid in pids.values():
                from . import _pid_alive
                if _pid_alive(pid) and _mine(pid, item):
                    _stop_pid(pid)
        shutil.rmtree(folder, ignore_errors=True)
    out = _ip("-j", "link", "show", "type", "bridge", ns=config.netns(), check=False).stdout
    try:
        for link in json.loads(out or "[]"):
            if link.get("ifname", "").startswith("clm"):
                _ip("link", "del", link["ifname"], ns=config.netns(), check=False)
    except ValueError:
        pass


def _mine(pid, folder):
    """True when process ``pid`` is a daemon of the node whose folder is ``folder`` (its /run/libvirt is there)."""
    try:
        st = os.stat(f"/proc/{pid}/root/run/libvirt")
        own = os.stat(folder / "run")
        return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)
    except OSError:
        return False
