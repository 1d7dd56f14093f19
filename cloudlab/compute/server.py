"""Servers (인스턴스): one libvirt domain, its disk overlay, console log and agent socket.

A server's status is read from two places, as Nova reads it from the hypervisor
and its own records: libvirt says whether the domain runs (``dom.state()``),
and the serial console log says whether *this* boot has finished: the guest
prints ``cloudlab-ready`` once its agent listens.  Each boot (create, start,
reboot, resize) records where in the log it began, so the marker of an earlier
boot never makes a rebooting server look ACTIVE.

Status names are Nova's: BUILD, ACTIVE, SHUTOFF, REBOOT, RESIZE, VERIFY_RESIZE,
REVERT_RESIZE, PAUSED, ERROR, DELETED.  One difference from Nova, on purpose: Nova
calls a server ACTIVE as soon as the hypervisor runs its domain (``power_state``
RUNNING), while the guest may still be booting; cloudlab's ACTIVE also waits for the
guest's ``cloudlab-ready`` line, so that a command sent right after it works.
``power_state`` shows what Nova's ACTIVE alone means.

A resize, as in Nova, ends in VERIFY_RESIZE: the server runs (or stays off) with the
new flavor while the old disk is kept beside it (``<domain>.pre-resize.qcow2``), until
``confirm_resize()`` drops the old disk or ``revert_resize()`` brings back the old disk
and flavor.  The pending resize is written in the domain's metadata, so another
compute service object of the same lab sees it too.
"""

import contextlib
import json
import re
import subprocess
import threading
import time
from pathlib import Path

import libvirt

from .. import arguments
from . import domain as domain_xml, introspect
from ..image.agent import Agent
from ..errors import CloudlabError, Conflict, InvalidInput, MissingPrerequisite, NotFound, ResourceTimeout
from .flavor import Flavor

BUILD, ACTIVE, SHUTOFF, REBOOT, RESIZE, PAUSED, ERROR, DELETED = STATUSES = (
    "BUILD", "ACTIVE", "SHUTOFF", "REBOOT", "RESIZE", "PAUSED", "ERROR", "DELETED")
VERIFY_RESIZE, REVERT_RESIZE, MIGRATING = "VERIFY_RESIZE", "REVERT_RESIZE", "MIGRATING"
# Nova's status for a server whose compute host is down: what runs there cannot be asked
UNKNOWN = "UNKNOWN"
STATUSES = STATUSES + (VERIFY_RESIZE, REVERT_RESIZE, MIGRATING, UNKNOWN)
# the old disk a pending resize keeps, beside the server's own (".qcow2" so clean-up finds it)
PRE_RESIZE_SUFFIX = ".pre-resize.qcow2"
READY_MARKER = b"cloudlab-ready"
# the marker as a whole console line (the tty writes \r\n); the leading \n is
# supplied for the first line of a log by starting each scan with one
_READY_LINE = re.compile(rb"\n" + re.escape(READY_MARKER) + rb"\r?\n")
POLL_S = 0.02           # console log polling while waiting for the marker
STATE_POLL_S = 0.5      # libvirt state polling while waiting (one RPC each)
STOP_TIMEOUT_S = 10.0   # graceful shutdown before the power is cut
CONSOLE_LINES_SHOWN = 15

def convert_libvirt_error(exc, what):
    """A CloudlabError for a libvirtError raised while doing ``what``.

    A broken or refused connection is always :class:`~cloudlab.errors.HostUnreachable`
    with the one fix (``python -m cloudlab host up``), whatever call met it.
    """
    from .. import host
    code = exc.get_error_code()
    message = exc.get_error_message() or str(exc)
    if host.is_connection_error(exc) or code in host._PERMISSION_CODES:
        return host.libvirt_error(exc, what)
    if code == libvirt.VIR_ERR_NO_DOMAIN:
        return NotFound(f"{what}: the server's domain does not exist ({message})",
                        fix="list the servers with compute.list_servers()")
    if code == libvirt.VIR_ERR_NO_NETWORK:
        return NotFound(f"{what}: {message}", fix="use the lab's network (network=None)")
    if code == libvirt.VIR_ERR_OPERATION_INVALID:
        return Conflict(f"{what}: {message}", fix="check server.status first")
    return CloudlabError(f"{what}: libvirt says: {message}",
                         fix="python -m cloudlab doctor; the server's console_log() may tell more")


@contextlib.contextmanager
def libvirt_errors(what):
    """Turn a libvirtError raised inside the block into a CloudlabError (see above)."""
    try:
        yield
    except libvirt.libvirtError as exc:
        raise convert_libvirt_error(exc, what) from None


class Server:
    """A server of the compute service; get one from ``compute.create_server()``.

    Attributes:
        name: the name it was created with (its libvirt domain is ``prefix + name``).
        id: the domain's UUID.
        flavor: its :class:`~cloudlab.compute.flavor.Flavor`.
        image: name of the image it was created from.
        profile: device profile (``virtio`` or ``emulated``).
        accel: accelerator it runs under, ``kvm`` or ``tcg`` (None on libvirt's test driver).
        network: libvirt network of its NIC, or None.
        properties: the ``{str: str}`` given to ``create_server(properties=...)``.
        disk, console_path, agent_socket: its files under the lab's state folder.
    """

    def __init__(self, compute, name, dom, meta, node=None):
        self._compute = compute
        self._node = node or compute.host     # the compute host (node) whose libvirtd runs it
        self.name = name
        self.domain_name = dom.name()
        self.id = dom.UUIDString()
        self._dom = dom
        self.flavor = Flavor(meta["flavor"], int(meta["vcpus"]), int(meta["ram_mib"]), int(meta["disk_gib"]))
        self.image = meta.get("image", "?")
        self.profile = meta.get("profile", "virtio")
        self.accel = meta.get("accel") or None
        self.network = meta.get("network") or None
        self.created = float(meta.get("created", 0))
        try:
            self.properties = json.loads(meta.get("properties") or "{}")
        except ValueError:
            self.properties = {}
        self.disk = Path(meta["disk"])
        self.console_path = Path(meta["console"])
        self.agent_socket = Path(meta["socket"])
        self._lock = threading.RLock()
        self._agent = None
        self._task = None          # BUILD, REBOOT, RESIZE or REVERT_RESIZE while a boot is under way
        self._failed = None        # why the server is in ERROR
        self.fault = meta.get("fault") or None     # Nova's fault: why it never got a host
        self._resize_from = _flavor_from(meta.get("resize_from"))    # old flavor of a pending resize
        self._resize_was_on = meta.get("resize_power") == "on"
        self._deleted = False
        self._boot_offset = 0      # console log offset where the current boot began
        self._scan_pos = 0
        self._scan_tail = b"\n"
        self._ready = False

    @property
    def _dom(self):
        """The libvirt domain, looked up again by UUID when the host's connection was replaced.

        A libvirt domain object belongs to one connection.  When libvirtd restarts, the
        lab reconnects (``host.connect()``), and a server found before must not go on
        calling through the dead connection; the guest itself kept running, and the new
        daemon knows it by the same UUID.

        Raises:
            NotFound: the domain is gone (the new daemon does not know it).
            HostUnreachable: libvirtd does not answer.
        """
        conn = self._node.connect()
        dom = self._dom_handle
        if dom.connect() is not conn:
            try:
                dom = conn.lookupByUUIDString(self.id)
            except libvirt.libvirtError as exc:
                raise convert_libvirt_error(exc, f"finding server {self.name} again") from None
            self._dom_handle = dom
        return dom

    @_dom.setter
    def _dom(self, dom):
        self._dom_handle = dom

    # -- status ------------------------------------------------------------------------

    def _state(self):
        """libvirt's state of the domain, or None when it no longer exists."""
        try:
            return self._dom.state()[0]
        except NotFound:
            return None
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise convert_libvirt_error(exc, f"reading the state of server {self.name}") from None

    def _begin_boot(self, task, fresh_log):
        """Note that a boot starts now: the ready marker must appear after this point.

        Args:
            task: the status to show until the marker appears (BUILD, REBOOT, RESIZE).
            fresh_log: the domain is about to start, so its log starts empty (libvirt
                opens it with append='off'; we empty it too, so both agree).
        """
        with self._lock:
            if fresh_log:
                self.console_path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.console_path, "wb"):
                    pass
                offset = 0
            else:
                offset = self._log_size()
            self._boot_offset = self._scan_pos = offset
            self._scan_tail = b"\n"
            self._ready = False
            self._task = task
            self._failed = None
            if self._agent is not None:
                self._agent.close()

    def _log_size(self):
        try:
            return self.console_path.stat().st_size
        except FileNotFoundError:
            return 0

    def _marker_seen(self):
        """True once this boot's ``cloudlab-ready`` line is in the console log (reads only new bytes)."""
        with self._lock:
            if self._ready:
                return True
            try:
                with open(self.console_path, "rb") as f:
                    if f.seek(0, 2) < self._scan_pos:     # the log was restarted under us
                        self._scan_pos, self._scan_tail = 0, b"\n"
                    f.seek(self._scan_pos)
                    chunk = f.read()
            except FileNotFoundError:
                return False
            if not chunk:
                return False
            self._scan_pos += len(chunk)
            window = self._scan_tail + chunk
            if _READY_LINE.search(window):
                self._ready = True
                self._task = None
                return True
            self._scan_tail = window[-(len(READY_MARKER) + 4):]
            return False

    @property
    def status(self):
        """Nova's status name: BUILD, ACTIVE, SHUTOFF, REBOOT, RESIZE, VERIFY_RESIZE, REVERT_RESIZE,
        PAUSED, ERROR or DELETED."""
        if self._deleted:
            return DELETED
        if getattr(self._node, "stopped", False):
            return UNKNOWN
        if self._task == MIGRATING:
            return MIGRATING
        state = self._state()
        if state is None:
            return DELETED
        if self.fault or self._failed or state == libvirt.VIR_DOMAIN_CRASHED:
            return ERROR
        if state in (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_NOSTATE):
            if self._task in (RESIZE, REVERT_RESIZE):
                return self._task
            return VERIFY_RESIZE if self._resize_from else SHUTOFF
        if state in (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PMSUSPENDED):
            return PAUSED
        # running, blocked, or shutting down: the console log says whether this boot is done
        if self._marker_seen():
            return VERIFY_RESIZE if self._resize_from else ACTIVE
        return self._task or BUILD

    @property
    def power_state(self):
        """What the hypervisor says, in Nova's ``power_state`` names: RUNNING, SHUTDOWN, PAUSED, CRASHED,
        SUSPENDED or NOSTATE.

        Nova's ACTIVE means only RUNNING here; cloudlab's ACTIVE waits for the guest too.
        """
        if getattr(self._node, "stopped", False):
            return "NOSTATE"
        state = None if self._deleted else self._state()
        return {libvirt.VIR_DOMAIN_RUNNING: "RUNNING", libvirt.VIR_DOMAIN_BLOCKED: "RUNNING",
                libvirt.VIR_DOMAIN_SHUTDOWN: "RUNNING", libvirt.VIR_DOMAIN_PAUSED: "PAUSED",
                libvirt.VIR_DOMAIN_SHUTOFF: "SHUTDOWN", libvirt.VIR_DOMAIN_CRASHED: "CRASHED",
                libvirt.VIR_DOMAIN_PMSUSPENDED: "SUSPENDED"}.get(state, "NOSTATE")

    @property
    def host(self):
        """Name of the compute host (hypervisor) the server runs on: the lab host's, or a node's (``compute1``)."""
        return self._compute._hostname_of(self._node)

    @property
    def node(self):
        """The compute node the server runs on (``lab.nodes[server.host]``; the lab host in all-in-one)."""
        return self._node

    def live_migrate(self, host=None, timeout=60.0, watch=False):
        """Move the running server to another compute node while it runs (Nova's ``live-migrate``).

        See :meth:`cloudlab.compute.Compute.live_migrate` (``watch=True`` also says how long
        the guest did not answer).
        """
        return self._compute.live_migrate(self, host=host, timeout=timeout, watch=watch)

    @property
    def addresses(self):
        """IP addresses by network, from the network's DHCP leases: ``{network: [address, ...]}``.

        Empty while the guest has no lease yet (DHCP runs in the background after boot)
        or when the server is not running.
        """
        if not self.network:
            return {}
        leases = getattr(self._node, "lease_addresses", None)
        if leases is not None:
            # the tenant network's DHCP server is the controller's (Neutron's DHCP agent), not libvirt's
            if self.power_state != "RUNNING":
                return {}
            addresses = sorted(set(leases(self.mac_addresses).values()))
            return {self.network: addresses} if addresses else {}
        try:
            found = self._dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE)
        except libvirt.libvirtError as exc:
            from .. import host
            if host.is_connection_error(exc):
                raise convert_libvirt_error(exc, f"reading the addresses of server {self.name}") from None
            return {}   # not running, or no lease table: no addresses is the honest answer
        addresses = [a["addr"] for iface in (found or {}).values() for a in iface.get("addrs") or []]
        return {self.network: addresses} if addresses else {}

    @property
    def mac_addresses(self):
        """The MAC addresses of the server's NICs (libvirt chose them when it was defined)."""
        import xml.etree.ElementTree as ET
        with libvirt_errors(f"reading the XML of server {self.name}"):
            xml = self._dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        return [mac.get("address") for mac in ET.fromstring(xml).iter("mac") if mac.get("address")]

    def wait_for_address(self, timeout=30.0):
        """Wait until the guest has a DHCP lease and return :attr:`addresses`.

        Raises:
            InvalidInput: the server has no NIC (created with ``network=False``).
            ResourceTimeout: no lease in time; the message says why when it can tell (the
                server is not running, or the network's DHCP pool is full) and shows the
                last console lines.
        """
        timeout = arguments.seconds(timeout)
        if not self.network:
            raise InvalidInput(f"server {self.name} has no network interface",
                               fix="create it with network=None (the lab's network)")
        deadline = time.monotonic() + timeout
        while True:
            found = self.addresses
            # the lease is written when dnsmasq acknowledges it, a moment before the guest's
            # DHCP client sets the address: wait for the guest too, so it can be used at once
            if found and (self.status != ACTIVE or self._guest_has(found)):
                return found
            if time.monotonic() >= deadline:
                raise self._no_address(timeout)
            time.sleep(0.25)

    def _guest_has(self, found):
        """True when the guest's own interfaces carry every address in ``found``."""
        try:
            configured = self.agent.run("ip -4 -o addr show", timeout=5).stdout
        except CloudlabError:
            return False
        return all(f" {address}/" in configured for addresses in found.values() for address in addresses)

    def _no_address(self, timeout):
        """The ResourceTimeout of :meth:`wait_for_address`, saying what is wrong where it can tell."""
        what = f"server {self.name} got no address on {self.network} within {timeout:g} s"
        console = f"last console lines:\n{self._last_console()}"
        status = self.status
        if status != ACTIVE:
            return ResourceTimeout(f"{what}: it is {status}, and its DHCP client runs only once it has booted; "
                                   f"{console}", fix="compute.wait_for_server(server) first, or server.start()")
        pool_of = getattr(self._compute.host, "dhcp_pool", None)
        pool = pool_of(self.network) if pool_of else None
        if pool and pool["size"] and pool["leased"] >= pool["size"]:
            stale = (f", {pool['stale']} of them by MAC addresses no server has (deleted servers whose lease "
                     f"was not released)") if pool["stale"] else ""
            return ResourceTimeout(
                f"{what}: the network's DHCP pool is full: all {pool['size']} addresses "
                f"({pool['first']}-{pool['last']}) are leased{stale}",
                fix=f"delete servers you no longer need; a lease that was not released is free again "
                    f"{pool['lease_minutes']} minutes after its last renewal (a bigger pool for the next lab: "
                    f"CLOUDLAB_DHCP_POOL, shorter leases: CLOUDLAB_DHCP_LEASE_MINUTES)")
        return ResourceTimeout(f"{what}: the guest's DHCP client got no answer; {console}",
                               fix="read server.console_log(); `python -m cloudlab doctor` checks the lab host")

    def disk_info(self):
        """``qemu-img info`` of the server's disk (its copy-on-write overlay) as a dict.

        Keys as qemu-img prints them: ``format``, ``virtual-size``, ``actual-size``
        (bytes the overlay takes on the host), ``backing-filename``, ...
        """
        out = run_tool(["qemu-img", "info", "--output=json", "-U", str(self.disk)],
                       f"reading the disk of server {self.name}")
        return json.loads(out)

    def backing_chain(self):
        """The server's disk and every file it reads through, overlay first (``qemu-img info --backing-chain``).

        A list of dicts with qemu-img's keys (``filename``, ``format``, ``virtual-size``,
        ``actual-size``, ``backing-filename``); the last one is the image's base disk.
        """
        out = run_tool(["qemu-img", "info", "--backing-chain", "--output=json", "-U", str(self.disk)],
                       f"reading the backing chain of server {self.name}")
        return json.loads(out)

    @property
    def resize_pending(self):
        """True while a resize waits for ``confirm_resize()`` or ``revert_resize()`` (VERIFY_RESIZE)."""
        return self._resize_from is not None

    @property
    def pre_resize_disk(self):
        """Where a pending resize keeps the old disk (it exists only in VERIFY_RESIZE)."""
        return self.disk.with_name(self.domain_name + PRE_RESIZE_SUFFIX)

    def wait(self, status=ACTIVE, timeout=60.0):
        """Wait until the server has ``status`` (see :meth:`Compute.wait_for_server`)."""
        return self._compute.wait_for_server(self, status=status, timeout=timeout)

    # -- console and agent -------------------------------------------------------------

    def console_log(self, lines=None):
        """Text the guest wrote on its serial console (ttyS0) since the domain last started.

        Args:
            lines: only the last ``lines`` lines.
        """
        if lines is not None:
            arguments.number(lines, "lines", minimum=0, integer=True)
        try:
            text = self.console_path.read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return ""
        text = text.replace("\r\n", "\n").replace("\r", "")
        if lines is not None:
            text = "\n".join(text.splitlines()[-lines:])
        return text

    def _last_console(self):
        return self.console_log(lines=CONSOLE_LINES_SHOWN) or "(nothing on the console)"

    @property
    def agent(self):
        """The :class:`~cloudlab.image.agent.Agent` of this server (one connection, reused)."""
        with self._lock:
            if self._agent is None:
                self._agent = Agent(self.agent_socket)
            return self._agent

    def run(self, command, timeout=30, input=None):
        """Run a shell command inside the guest and return its :class:`~cloudlab.image.agent.CommandResult`.

        Args:
            command: a shell command line (or a list of arguments).
            timeout: seconds before the guest kills the command.
            input: text or bytes for the command's standard input.
        Raises:
            InvalidInput: ``command``, ``timeout`` or ``input`` of the wrong type.
            Conflict: the server is not ACTIVE (or VERIFY_RESIZE: booted with its new flavor).
            ResourceTimeout: the command did not finish in time.
        """
        if not isinstance(command, (list, tuple)):
            arguments.text(command, "command", accepts="a shell command line or a list of arguments")
        timeout = arguments.seconds(timeout)
        if input is not None and not isinstance(input, (str, bytes)):
            arguments.text(input, "input", accepts="a string, bytes or None")
        status = self.status
        if status not in (ACTIVE, VERIFY_RESIZE) or not self._running():
            raise Conflict(f"server {self.name} is {status}; commands run only in an ACTIVE server",
                           fix="server.start() or compute.wait_for_server(server)")
        return self.agent.run(command, timeout=timeout, input=input)

    def guest_view(self):
        """What the guest sees of its hardware: disks, PCI devices and drivers, hypervisor, clock, RNG.

        Returns a :class:`~cloudlab.compute.introspect.GuestView` (one command through the agent).

        Raises:
            Conflict: the server is not ACTIVE.
        """
        result = self.run(introspect.GUEST_PROBE, timeout=30)
        return introspect.parse_guest(result.stdout)

    def qemu_process(self):
        """The server as the host sees it: its QEMU process, threads (one per vCPU) and memory.

        Returns a :class:`~cloudlab.compute.introspect.QemuProcess`.

        Raises:
            NotFound: no QEMU process runs it (it is not running).
        """
        return introspect.qemu_process(introspect.find_qemu_pid(self.domain_name))

    def domain_xml(self):
        """The libvirt domain XML of this server, as ``virsh dumpxml`` shows it."""
        with libvirt_errors(f"reading the XML of server {self.name}"):
            return self._dom.XMLDesc(0)

    # -- lifecycle -----------------------------------------------------------------------

    def _running(self):
        return self._state() not in (None, libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_NOSTATE,
                                     libvirt.VIR_DOMAIN_CRASHED)

    def stop(self, timeout=STOP_TIMEOUT_S):
        """Shut the guest down (ACPI power button), cutting the power after ``timeout`` seconds.

        A guest that has not finished booting cannot handle the power button yet, so
        it is powered off at once.  Stopping a SHUTOFF server does nothing.

        Raises:
            Conflict: a resize waits to be confirmed or reverted (as in Nova).
        """
        timeout = arguments.seconds(timeout)
        self._check_no_pending_resize("stop")
        return self._power_off(timeout)

    def _check_no_pending_resize(self, action):
        if self._resize_from:
            raise Conflict(f"cannot {action} server {self.name} while it is VERIFY_RESIZE",
                           fix="server.confirm_resize() keeps the new flavor, server.revert_resize() the old one")

    def _power_off(self, timeout=STOP_TIMEOUT_S):
        """Shut down (see :meth:`stop`) whatever the server's status."""
        with self._lock:
            if not self._running():
                self._task = self._failed = None
                return self
            graceful = self.status == ACTIVE
            with libvirt_errors(f"stopping server {self.name}"):
                if graceful:
                    try:
                        self._dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
                    except libvirt.libvirtError:
                        graceful = False
                deadline = time.monotonic() + timeout
                while graceful and self._running() and time.monotonic() < deadline:
                    time.sleep(0.05)
                if self._running():
                    try:
                        self._dom.destroy()
                    except libvirt.libvirtError as exc:
                        if self._running():     # not just "it stopped meanwhile"
                            raise exc
            self._task = None
            self._failed = None     # off is off: an ERROR from a failed boot ends here
            if self._agent is not None:
                self._agent.close()
        return self

    def start(self, wait=True, timeout=60.0):
        """Power the server on; with ``wait``, return once it is ACTIVE.

        Raises:
            Conflict: it is already running, in ERROR since it never got a host, or a resize
                waits to be confirmed or reverted.
            NoValidHost: the host has not enough free memory for its flavor.
            ResourceTimeout: it did not become ready in time (shows the console).
        """
        wait, timeout = arguments.flag(wait, "wait"), arguments.seconds(timeout)
        with self._lock:
            if self.fault:
                raise Conflict(f"server {self.name} is ERROR: {self.fault}",
                               fix="delete it, then create it again with a flavor that fits")
            self._check_no_pending_resize("start")
            if self._running():
                raise Conflict(f"server {self.name} is already running ({self.status})",
                               fix="server.reboot() restarts it")
            self._compute._check_memory(self.flavor, on=self._node)
            self._begin_boot(BUILD, fresh_log=True)
            with libvirt_errors(f"starting server {self.name}"):
                self._dom.create()
        if wait:
            self._compute.wait_for_server(self, timeout=timeout)
        return self

    def reboot(self, hard=False, wait=True, timeout=60.0):
        """Restart the guest: soft (ACPI, the guest shuts down cleanly) or ``hard`` (reset).

        A soft reboot that does not finish within ``timeout`` becomes a hard one,
        as in Nova.

        Raises:
            Conflict: the server is not running, or a resize waits to be confirmed or reverted.
            ResourceTimeout: it did not become ready again in time.
        """
        hard, wait = arguments.flag(hard, "hard"), arguments.flag(wait, "wait")
        timeout = arguments.seconds(timeout)
        with self._lock:
            self._check_no_pending_resize("reboot")
            if not self._running():
                raise Conflict(f"server {self.name} is {self.status}; only a running server reboots",
                               fix="server.start()")
            self._begin_boot(REBOOT, fresh_log=False)
            with libvirt_errors(f"rebooting server {self.name}"):
                if hard:
                    self._dom.reset()
                else:
                    self._dom.reboot(libvirt.VIR_DOMAIN_REBOOT_ACPI_POWER_BTN)
        if wait:
            try:
                self._compute.wait_for_server(self, timeout=timeout)
            except ResourceTimeout:
                if hard:
                    raise
                return self.reboot(hard=True, wait=True, timeout=timeout)
        return self

    def resize(self, flavor, wait=True, timeout=60.0):
        """Give the server another flavor, as Nova does; it ends in VERIFY_RESIZE.

        The server is shut down, its disk copied aside (the old one is kept until you
        decide), its vCPUs and memory set, its disk grown, and, if it was running,
        booted with the new flavor.  Then :meth:`confirm_resize` or :meth:`revert_resize`.

        Args:
            flavor: a flavor name or :class:`~cloudlab.compute.flavor.Flavor`.
            wait: wait until the server has booted with the new flavor.
        Raises:
            NotFound: unknown flavor (the message lists the valid ones).
            InvalidInput: the new flavor's disk is smaller (disks only grow), or it is the same flavor.
            Conflict: a resize already waits to be confirmed or reverted.
            QuotaExceeded: the lab's quota has no room for the new flavor's cores or memory.
            NoValidHost: the host has not enough free memory for the new flavor.
        """
        return self._compute.resize_server(self, flavor, wait=wait, timeout=timeout)

    def confirm_resize(self):
        """Keep the new flavor: the old disk is deleted and the server is ACTIVE (or SHUTOFF) again.

        Raises:
            Conflict: the server is not VERIFY_RESIZE.
        """
        return self._compute.confirm_resize(self)

    def revert_resize(self, wait=True, timeout=60.0):
        """Go back to the old flavor and the old disk (what was written since the resize is lost).

        The server is powered on again if it was running before the resize.

        Raises:
            Conflict: the server is not VERIFY_RESIZE.
        """
        return self._compute.revert_resize(self, wait=wait, timeout=timeout)

    def delete(self):
        """Delete the server: power off, undefine the domain, remove its disk, log and socket."""
        self._compute.delete_server(self)

    # -- volumes: the compute side of attaching (see cloudlab.compute.volumes) ------------

    def attach_volume(self, connection, serial, timeout=15.0):
        """Hot-plug a volume described by block storage's connection info; returns ``(target, device)``.

        ``target`` is the name libvirt was asked for (``vdb``), ``device`` the one the
        guest gave the disk (None while the server is not ACTIVE).  See
        :func:`cloudlab.compute.volumes.attach` for the errors.
        """
        from . import volumes
        return volumes.attach(self, connection, serial, timeout=timeout)

    def detach_volume(self, serial, timeout=15.0):
        """Hot-unplug the volume with ``serial`` and wait until the guest released it."""
        from . import volumes
        volumes.detach(self, serial, timeout=timeout)

    def extend_volume(self, serial, size_bytes):
        """Tell QEMU the volume with ``serial`` grew to ``size_bytes``; the guest sees the new size."""
        from . import volumes
        volumes.extend(self, serial, size_bytes)

    def volume_device(self, serial):
        """The guest's name for the volume with ``serial`` (e.g. ``vdb``), read inside the guest; or None."""
        from . import volumes
        return volumes.guest_device(self, serial)

    def volume_target(self, serial):
        """libvirt's target name of the volume with ``serial`` on this server, or None when not attached."""
        from . import volumes
        return volumes.attached_target(self, serial)

    def _grow_disk(self, disk_gib):
        run_tool(["qemu-img", "resize", "-q", "-f", "qcow2", str(self.disk), f"{disk_gib}G"],
                 f"growing the disk of server {self.name}")

    def __repr__(self):
        return f"<Server {self.name} {self.status} {self.flavor.name} image={self.image}>"


def run_tool(args, what):
    """Run a command-line tool (qemu-img) and return its output; a failure becomes a CloudlabError."""
    try:
        return subprocess.run(args, check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        raise MissingPrerequisite(f"{what}: {args[0]} is not installed",
                                  fix="sudo apt-get install qemu-utils") from None
    except subprocess.CalledProcessError as exc:
        raise CloudlabError(f"{what}: {' '.join(args)} failed: {exc.stderr.strip()[-300:]}") from None


def _flavor_from(text):
    """The Flavor written as ``name,vcpus,ram_mib,disk_gib`` in a domain's metadata (None for none)."""
    if not text:
        return None
    name, vcpus, ram_mib, disk_gib = text.split(",")
    return Flavor(name, int(vcpus), int(ram_mib), int(disk_gib))


def flavor_text(flavor):
    """A Flavor as ``name,vcpus,ram_mib,disk_gib`` for a domain's metadata."""
    return f"{flavor.name},{flavor.vcpus},{flavor.ram_mib},{flavor.disk_gib}"


def metadata_of(dom):
    """cloudlab's metadata stored in a domain's XML ({} for domains cloudlab did not create)."""
    return domain_xml.read_metadata(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
