"""Servers (인스턴스): one libvirt domain, its disk overlay, console log and agent socket.

A server's status is read from two places, as Nova reads it from the hypervisor
and its own records: libvirt says whether the domain runs (``dom.state()``),
and the serial console log says whether *this* boot has finished: the guest
prints ``cloudlab-ready`` once its agent listens.  Each boot (create, start,
reboot, resize) records where in the log it began, so the marker of an earlier
boot never makes a rebooting server look ACTIVE.

Status names are Nova's: BUILD, ACTIVE, SHUTOFF, REBOOT, RESIZE, PAUSED, ERROR, DELETED.
"""

import contextlib
import json
import re
import subprocess
import threading
import time
from pathlib import Path

import libvirt

from . import domain as domain_xml
from ..image.agent import Agent
from ..errors import CloudlabError, Conflict, InvalidInput, MissingPrerequisite, NotFound, ResourceTimeout
from .flavor import Flavor

BUILD, ACTIVE, SHUTOFF, REBOOT, RESIZE, PAUSED, ERROR, DELETED = (
    "BUILD", "ACTIVE", "SHUTOFF", "REBOOT", "RESIZE", "PAUSED", "ERROR", "DELETED")
READY_MARKER = b"cloudlab-ready"
# the marker as a whole console line (the tty writes \r\n); the leading \n is
# supplied for the first line of a log by starting each scan with one
_READY_LINE = re.compile(rb"\n" + re.escape(READY_MARKER) + rb"\r?\n")
POLL_S = 0.02           # console log polling while waiting for the marker
STATE_POLL_S = 0.5      # libvirt state polling while waiting (one RPC each)
STOP_TIMEOUT_S = 10.0   # graceful shutdown before the power is cut
CONSOLE_LINES_SHOWN = 15

# libvirt error codes that mean "libvirtd is not there"
_UNREACHABLE = {libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_RPC,
                libvirt.VIR_ERR_AUTH_FAILED}


def convert_libvirt_error(exc, what):
    """A CloudlabError for a libvirtError raised while doing ``what``."""
    code = exc.get_error_code()
    message = exc.get_error_message() or str(exc)
    if code == libvirt.VIR_ERR_NO_DOMAIN:
        return NotFound(f"{what}: the server's domain does not exist ({message})",
                        fix="list the servers with compute.list_servers()")
    if code == libvirt.VIR_ERR_NO_NETWORK:
        return NotFound(f"{what}: {message}", fix="use the lab's network (network=None)")
    if code == libvirt.VIR_ERR_OPERATION_INVALID:
        return Conflict(f"{what}: {message}", fix="check server.status first")
    if code in _UNREACHABLE:
        return MissingPrerequisite(f"{what}: libvirt is not reachable ({message})",
                                   fix="python -m cloudlab host up")
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
        network: libvirt network of its NIC, or None.
        disk, console_path, agent_socket: its files under the lab's state folder.
    """

    def __init__(self, compute, name, dom, meta):
        self._compute = compute
        self.name = name
        self.domain_name = dom.name()
        self.id = dom.UUIDString()
        self._dom = dom
        self.flavor = Flavor(meta["flavor"], int(meta["vcpus"]), int(meta["ram_mib"]), int(meta["disk_gib"]))
        self.image = meta.get("image", "?")
        self.profile = meta.get("profile", "virtio")
        self.network = meta.get("network") or None
        self.created = float(meta.get("created", 0))
        self.disk = Path(meta["disk"])
        self.console_path = Path(meta["console"])
        self.agent_socket = Path(meta["socket"])
        self._lock = threading.RLock()
        self._agent = None
        self._task = None          # BUILD, REBOOT or RESIZE while a boot is under way
        self._failed = None        # why the server is in ERROR
        self._deleted = False
        self._boot_offset = 0      # console log offset where the current boot began
        self._scan_pos = 0
        self._scan_tail = b"\n"
        self._ready = False

    # -- status ------------------------------------------------------------------------

    def _state(self):
        """libvirt's state of the domain, or None when it no longer exists."""
        try:
            return self._dom.state()[0]
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
        """Nova's status name: BUILD, ACTIVE, SHUTOFF, REBOOT, RESIZE, PAUSED, ERROR or DELETED."""
        if self._deleted:
            return DELETED
        state = self._state()
        if state is None:
            return DELETED
        if self._failed or state == libvirt.VIR_DOMAIN_CRASHED:
            return ERROR
        if state in (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_NOSTATE):
            return RESIZE if self._task == RESIZE else SHUTOFF
        if state in (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PMSUSPENDED):
            return PAUSED
        # running, blocked, or shutting down: the console log says whether this boot is done
        if self._marker_seen():
            return ACTIVE
        return self._task or BUILD

    @property
    def host(self):
        """Name of the lab host (hypervisor) the server runs on."""
        return self._compute.hostname

    @property
    def addresses(self):
        """IP addresses by network, from the network's DHCP leases: ``{network: [address, ...]}``.

        Empty while the guest has no lease yet (DHCP runs in the background after boot)
        or when the server is not running.
        """
        if not self.network:
            return {}
        try:
            found = self._dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE)
        except libvirt.libvirtError:
            return {}   # not running, or no lease table: no addresses is the honest answer
        addresses = [a["addr"] for iface in (found or {}).values() for a in iface.get("addrs") or []]
        return {self.network: addresses} if addresses else {}

    def wait_for_address(self, timeout=30.0):
        """Wait until the guest has a DHCP lease and return :attr:`addresses`.

        Raises:
            InvalidInput: the server has no NIC (created with ``network=False``).
            ResourceTimeout: no lease in time (the message shows the last console lines).
        """
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
                raise ResourceTimeout(f"server {self.name} got no address on {self.network} within "
                                      f"{timeout:g} s; last console lines:\n{self._last_console()}",
                                      fix="is the server ACTIVE? DHCP starts after the guest boots")
            time.sleep(0.25)

    def _guest_has(self, found):
        """True when the guest's own interfaces carry every address in ``found``."""
        try:
            configured = self.agent.run("ip -4 -o addr show", timeout=5).stdout
        except CloudlabError:
            return False
        return all(f" {address}/" in configured for addresses in found.values() for address in addresses)

    def disk_info(self):
        """``qemu-img info`` of the server's disk (its copy-on-write overlay) as a dict.

        Keys as qemu-img prints them: ``format``, ``virtual-size``, ``actual-size``
        (bytes the overlay takes on the host), ``backing-filename``, ...
        """
        out = run_tool(["qemu-img", "info", "--output=json", "-U", str(self.disk)],
                       f"reading the disk of server {self.name}")
        return json.loads(out)

    def wait(self, status=ACTIVE, timeout=60.0):
        """Wait until the server has ``status`` (see :meth:`Compute.wait_for_server`)."""
        return self._compute.wait_for_server(self, status=status, timeout=timeout)

    # -- console and agent -------------------------------------------------------------

    def console_log(self, lines=None):
        """Text the guest wrote on its serial console (ttyS0) since the domain last started.

        Args:
            lines: only the last ``lines`` lines.
        """
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
            Conflict: the server is not ACTIVE.
            ResourceTimeout: the command did not finish in time.
        """
        status = self.status
        if status != ACTIVE:
            raise Conflict(f"server {self.name} is {status}; commands run only in an ACTIVE server",
                           fix="server.start() or compute.wait_for_server(server)")
        return self.agent.run(command, timeout=timeout, input=input)

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
        """
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
            Conflict: it is already running.
            QuotaExceeded: the host has not enough free memory for its flavor.
            ResourceTimeout: it did not become ready in time (shows the console).
        """
        with self._lock:
            if self._running():
                raise Conflict(f"server {self.name} is already running ({self.status})",
                               fix="server.reboot() restarts it")
            self._compute._check_memory(self.flavor)
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
            Conflict: the server is not running.
            ResourceTimeout: it did not become ready again in time.
        """
        with self._lock:
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
        """Give the server another flavor: stop it, set vCPUs and memory, grow its disk, start it.

        Args:
            flavor: a flavor name or :class:`~cloudlab.compute.flavor.Flavor`.
        Raises:
            NotFound: unknown flavor (the message lists the valid ones).
            InvalidInput: the new flavor's disk is smaller (disks only grow), or it is the same flavor.
            QuotaExceeded: not enough free memory for the new flavor.
        """
        return self._compute.resize_server(self, flavor, wait=wait, timeout=timeout)

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


def metadata_of(dom):
    """cloudlab's metadata stored in a domain's XML ({} for domains cloudlab did not create)."""
    return domain_xml.read_metadata(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
