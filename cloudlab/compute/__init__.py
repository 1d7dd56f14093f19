"""The compute service (Nova's role): flavors and servers on libvirt.

Creating a server does what Nova's libvirt driver does, in miniature:

1. pick the flavor (size) and image, and check the host has the memory;
2. make the server's root disk a copy-on-write *overlay* on the image's disk:
   ``qemu-img create -f qcow2 -F qcow2 -b BASE OVERLAY`` writes a small qcow2 file
   whose unwritten blocks are read from BASE, so nothing is copied and creating
   a server from a 1 GiB image costs the same as from a 10 MiB one;
3. write the domain XML (:mod:`cloudlab.compute.domain`): direct kernel boot of the image's
   kernel and initramfs, the overlay as first disk, a NIC on the lab's network,
   the serial console written to a file, the agent's virtio-serial channel;
4. ``defineXML`` (a persistent domain, so it can be stopped and started) and
   ``create`` (boot it); the server is ACTIVE once its console shows
   ``cloudlab-ready`` (see :mod:`cloudlab.compute.server`).

Every domain and file carries the lab's prefix (``cloudlab-<lab>-``), so
:func:`cleanup` can remove exactly the lab's own and nothing else.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import libvirt

from .. import arguments, config
from . import domain as domain_xml
from ..image.agent import channel_xml, check_socket_path
from ..errors import CloudlabError, Conflict, InvalidInput, NotFound, QuotaExceeded, ResourceTimeout
from .flavor import DEFAULT_FLAVORS, NAME_RE, Flavor
from .server import (ACTIVE, BUILD, DELETED, ERROR, POLL_S, RESIZE, SHUTOFF, STATE_POLL_S, STATUSES,
                     Server, convert_libvirt_error, libvirt_errors, metadata_of, run_tool)

DEFAULT_TIMEOUT_S = 60.0
SERVER_SUFFIXES = (".qcow2", ".log", ".sock")

# libvirt prints every error on stderr by default; errors are converted and raised instead
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


class LibvirtHost:
    """The part of a lab host the compute service uses, for any libvirt URI.

    The lab's own host (:class:`cloudlab.host.LabHost`) provides the same
    attributes; this one lets tests run the compute service on libvirt's
    ``test:///default`` driver, which keeps domains in memory and runs nothing.

    Args:
        uri: libvirt connection URI.
        network: libvirt network servers are plugged into by default.
    """

    def __init__(self, uri="test:///default", network="default"):
        self.uri = uri
        self.network = network
        self._conn = None
        self._lock = threading.Lock()

    def connect(self):
        """An open ``libvirt.virConnect`` (one, shared: libvirt connections are thread-safe)."""
        with self._lock:
            if self._conn is None or not self._conn.isAlive():
                with libvirt_errors(f"connecting to {self.uri}"):
                    self._conn = libvirt.open(self.uri)
            return self._conn

    @property
    def domain_type(self):
        """``test`` on the test driver, else ``qemu`` (emulation)."""
        return "test" if self.connect().getType() == "TEST" else "qemu"

    def free_memory_mib(self):
        """Memory of the (test) node not used by running domains, in MiB."""
        conn = self.connect()
        total = conn.getInfo()[1]
        used = sum(d.info()[2] // 1024 for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE))
        return total - used

    def start(self):
        """Nothing to start: the URI's daemon is someone else's."""

    def stop(self):
        """Close the connection."""
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except libvirt.libvirtError:
                    pass
                self._conn = None


class Compute:
    """The lab's compute service: flavors and servers.

    Args:
        lab: the :class:`~cloudlab.lab.Lab`; its prefix names every domain and file.
        host: the lab host (default: ``lab.host``, started on first use); anything with
            ``connect()``, ``domain_type``, ``network`` and ``free_memory_mib()``,
            e.g. ``LibvirtHost("test:///default")``.
        images: the image registry (default: ``lab.image``).
    """

    def __init__(self, lab, host=None, images=None):
        self.lab = lab
        self._host = host
        self._images = images
        self._flavors = {f.name: f for f in DEFAULT_FLAVORS}
        self._servers = {}       # name -> Server, for servers this service has seen
        self._creating = {}      # name -> MiB reserved while the server is being created
        self._lock = threading.RLock()
        self._hostname = None

    # -- wiring ---------------------------------------------------------------------------

    @property
    def host(self):
        """The lab host this service runs servers on."""
        if self._host is None:
            self._host = self.lab.host
        return self._host

    @property
    def images(self):
        """The image registry (Glance's role)."""
        if self._images is None:
            self._images = self.lab.image
        return self._images

    @property
    def conn(self):
        """The libvirt connection."""
        return self.host.connect()

    @property
    def hostname(self):
        """Name of the hypervisor host, as servers report it in ``server.host``."""
        if self._hostname is None:
            name = getattr(self.host, "hostname", None)
            if not name:
                with libvirt_errors("asking libvirt for the host name"):
                    name = self.conn.getHostname()
            self._hostname = name
        return self._hostname

    @property
    def prefix(self):
        """Prefix of this lab's domains and files, e.g. ``cloudlab-lab-``."""
        return self.lab.prefix

    @property
    def server_dir(self):
        """Folder holding the servers' overlays, console logs and agent sockets (the lab's home)."""
        return self.lab.home

    def start(self):
        """Connect to the lab host (starting it if needed)."""
        self.conn   # noqa: B018 - connects, so a missing libvirt shows up here
        return self

    def stop(self):
        """Delete every server of this lab.

        Raises:
            CloudlabError: some servers could not be deleted (all are tried).
        """
        errors = []

        def delete(server):
            """Delete one server, noting (not raising) its error so the others are still tried."""
            try:
                self.delete_server(server)
            except CloudlabError as exc:
                errors.append(f"{server.name}: {exc}")

        # in parallel: libvirt takes a second or two to tear down each QEMU process
        servers = self.list_servers()
        if servers:
            with ThreadPoolExecutor(min(len(servers), 10)) as pool:
                list(pool.map(delete, servers))
        if errors:
            raise CloudlabError("some servers could not be deleted: " + "; ".join(errors),
                                fix="python -m cloudlab clean")

    # -- flavors --------------------------------------------------------------------------

    def list_flavors(self):
        """All flavors, smallest first."""
        with self._lock:
            return sorted(self._flavors.values(), key=lambda f: (f.ram_mib, f.vcpus, f.disk_gib, f.name))

    def get_flavor(self, name):
        """The flavor called ``name`` (a Flavor is returned as is).

        Raises:
            NotFound: no such flavor; the message lists the valid names.
        """
        if isinstance(name, Flavor):
            return name
        arguments.text(name, "flavor", accepts="a flavor name or a Flavor",
                       fix=f"use one of: {', '.join(f.name for f in self.list_flavors())}")
        with self._lock:
            if name in self._flavors:
                return self._flavors[name]
        raise NotFound(f"no flavor named {name!r}",
                       fix=f"use one of: {', '.join(f.name for f in self.list_flavors())}")

    def create_flavor(self, name, vcpus, ram_mib, disk_gib):
        """Add a flavor.

        Raises:
            InvalidInput: a bad name or size.
            Conflict: a flavor with that name exists.
        """
        flavor = Flavor(name, vcpus, ram_mib, disk_gib)
        with self._lock:
            if name in self._flavors:
                raise Conflict(f"a flavor named {name!r} already exists ({self._flavors[name]})",
                               fix="choose another name, or delete_flavor() it first")
            self._flavors[name] = flavor
        return flavor

    def delete_flavor(self, name):
        """Remove a flavor (servers created with it keep their size).

        Raises:
            NotFound: no such flavor.
        """
        flavor = self.get_flavor(name)
        with self._lock:
            self._flavors.pop(flavor.name, None)

    # -- servers --------------------------------------------------------------------------

    def _check_memory(self, flavor):
        """Raise QuotaExceeded when the host cannot give ``flavor.ram_mib`` more MiB."""
        with self._lock:
            reserved = sum(self._creating.values())
            free = self.host.free_memory_mib() - reserved
        if flavor.ram_mib > free:
            smaller = [f.name for f in self.list_flavors() if f.ram_mib <= free]
            raise QuotaExceeded(
                f"flavor {flavor.name} needs {flavor.ram_mib} MiB of memory but the host has "
                f"{max(free, 0)} MiB free",
                fix=(f"choose a smaller flavor ({', '.join(smaller)}) or " if smaller else "") +
                    "delete servers you no longer need")

    def _resolve_network(self, network):
        if network is False:
            return None
        if network is None:
            return self.host.network
        arguments.text(network, "network", accepts="a network name, None (the lab's) or False (no NIC)")
        try:
            self.conn.networkLookupByName(network)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_NETWORK:
                raise convert_libvirt_error(exc, f"looking up network {network!r}") from None
            with libvirt_errors("listing networks"):
                names = [n.name() for n in self.conn.listAllNetworks()]
            raise NotFound(f"no network named {network!r}",
                           fix=f"use one of: {', '.join(names) or '(none defined)'}") from None
        return network

    def create_server(self, name, image="busybox", flavor="m1.tiny", network=None, profile="virtio",
                      wait=True, timeout=DEFAULT_TIMEOUT_S, kernel_args=""):
        """Create and boot a server; with ``wait``, return once it is ACTIVE.

        Args:
            name: server name (letters, digits, '.', '_', '-'); the domain is ``prefix + name``.
            image: image name (see ``lab.image.list_images()``).
            flavor: flavor name or :class:`~cloudlab.compute.flavor.Flavor`.
            network: libvirt network name; None for the lab's network, False for no NIC.
            profile: device profile, ``virtio`` or ``emulated`` (see :mod:`cloudlab.compute.domain`).
            wait: wait until the guest is ready.
            timeout: seconds to wait for ready.
            kernel_args: extra kernel command-line arguments (e.g. ``cloudlab.ntp=ADDR``; by
                default the lab's NTP server for guests, once ``lab.ntp.serve_guests()`` runs).
        Raises:
            InvalidInput: a bad name or profile, or a flavor too small for the image.
            NotFound: unknown image, flavor or network (the message lists the valid ones).
            Conflict: a server with that name exists.
            QuotaExceeded: the host has not enough free memory for the flavor.
            ResourceTimeout: the guest did not become ready in time (the message shows
                the last console lines; the server is left in ERROR for inspection).
        """
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidInput(f"server name {name!r} is not valid",
                               fix="use 1-40 letters, digits, '.', '_' or '-', starting with a letter or digit")
        wait, timeout = arguments.flag(wait, "wait"), arguments.seconds(timeout)
        arguments.text(kernel_args, "kernel_args", accepts="a string of kernel arguments, e.g. 'quiet'")
        flavor = self.get_flavor(flavor)
        image = self.images.get_image(image)
        profile = domain_xml.get_profile(profile)
        if flavor.ram_mib < image.min_ram_mib:
            raise InvalidInput(f"flavor {flavor.name} has {flavor.ram_mib} MiB of memory; image "
                               f"{image.name} needs at least {image.min_ram_mib} MiB", fix="choose a bigger flavor")
        if image.virtual_size > flavor.disk_gib * 2**30:
            raise InvalidInput(f"flavor {flavor.name}'s {flavor.disk_gib} GiB disk is smaller than image "
                               f"{image.name} ({image.virtual_size / 2**30:.1f} GiB)", fix="choose a bigger flavor")
        network = self._resolve_network(network)
        domain_name = self.prefix + name
        disk = self.server_dir / f"{domain_name}.qcow2"
        console = self.server_dir / f"{domain_name}.log"
        socket_path = self.server_dir / f"{domain_name}.sock"
        check_socket_path(socket_path)

        with self._lock:
            if name in self._creating or self._known(name):
                raise Conflict(f"a server named {name!r} already exists",
                               fix="choose another name, or delete the existing server first")
            self._check_memory(flavor)
            self._creating[name] = flavor.ram_mib
        dom = None
        try:
            run_tool(["qemu-img", "create", "-q", "-f", "qcow2", "-F", image.format,
                      "-b", image.disk, str(disk), f"{flavor.disk_gib}G"],
                     f"creating the disk of server {name}")
            meta = {"lab": self.lab.name, "name": name, "flavor": flavor.name, "vcpus": flavor.vcpus,
                    "ram_mib": flavor.ram_mib, "disk_gib": flavor.disk_gib, "image": image.name,
                    "profile": profile.name, "network": network or "", "created": f"{time.time():.3f}",
                    "disk": str(disk), "console": str(console), "socket": str(socket_path)}
            cmdline = f"{image.cmdline} cloudlab.hostname={name} {kernel_args}".strip()
            # the lab's time server, when it serves guests: every node syncs from the controller
            guest_ntp = getattr(self.lab._services.get("ntp"), "guest_ntp", None) if self.lab else None
            if guest_ntp and "cloudlab.ntp=" not in cmdline:
                cmdline += f" cloudlab.ntp={guest_ntp}"
            xml = domain_xml.server_domain(
                domain_name, domain_type=self.host.domain_type, vcpus=flavor.vcpus, ram_mib=flavor.ram_mib,
                profile=profile, kernel=image.kernel, initrd=image.initrd, cmdline=cmdline,
                disk=disk, disk_format="qcow2", console_log=console, channel_xml=channel_xml(socket_path),
                network=network, metadata={k: str(v) for k, v in meta.items()}).to_xml()
            with libvirt_errors(f"defining server {name}"):
                dom = self.conn.defineXML(xml)
            server = Server(self, name, dom, meta)
            server._begin_boot(BUILD, fresh_log=True)
            with libvirt_errors(f"starting server {name}"):
                dom.create()
        except BaseException:
            try:
                self._remove(dom, domain_name)
            except CloudlabError:
                pass    # the first error is the one to report; clean-up removes leftovers
            raise
        finally:
            with self._lock:
                self._creating.pop(name, None)
        with self._lock:
            self._servers[name] = server
        if wait:
            try:
                self.wait_for_server(server, timeout=timeout)
            except ResourceTimeout:
                server._failed = "did not become ready"
                raise
        return server

    def _known(self, name):
        """True when a server (domain) called ``name`` exists."""
        if name in self._servers and not self._servers[name]._deleted:
            return True
        try:
            self.conn.lookupByName(self.prefix + name)
            return True
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            raise convert_libvirt_error(exc, f"looking up server {name}") from None

    def _adopt(self, dom):
        """The Server for a domain of this lab, or None when the domain is not one of ours."""
        meta = metadata_of(dom)
        if meta.get("lab") != self.lab.name or not dom.name().startswith(self.prefix):
            return None
        name = meta["name"]
        with self._lock:
            server = self._servers.get(name)
            if server is None or server._deleted or server.id != dom.UUIDString():
                server = self._servers[name] = Server(self, name, dom, meta)
            return server

    def list_servers(self):
        """This lab's servers, by name."""
        with libvirt_errors("listing servers"):
            doms = [d for d in self.conn.listAllDomains() if d.name().startswith(self.prefix)]
            servers = [s for s in (self._adopt(d) for d in doms) if s is not None]
        return sorted(servers, key=lambda s: s.name)

    def get_server(self, name):
        """The server called ``name``.

        Raises:
            NotFound: no such server; the message lists this lab's servers.
        """
        if isinstance(name, Server):
            return name
        arguments.text(name, "server", accepts="a server name or a Server")
        with self._lock:
            server = self._servers.get(name)
        if server is not None and not server._deleted:
            return server
        try:
            dom = self.conn.lookupByName(self.prefix + str(name))
            server = self._adopt(dom)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise convert_libvirt_error(exc, f"looking up server {name}") from None
            server = None
        if server is None:
            names = [s.name for s in self.list_servers()]
            raise NotFound(f"no server named {name!r}",
                           fix=f"use one of: {', '.join(names)}" if names else "create one with create_server()")
        return server

    def wait_for_server(self, server, status=ACTIVE, timeout=DEFAULT_TIMEOUT_S):
        """Wait until ``server`` has ``status``; returns the server.

        The console log is checked every 20 ms (the ready marker), libvirt's state
        every 0.5 s.

        Raises:
            ResourceTimeout: not reached in time; the message shows the last console lines.
            CloudlabError: the server went to ERROR, was deleted, or powered off while booting.
        """
        arguments.one_of(status, "status", STATUSES)
        timeout = arguments.seconds(timeout)
        server = self.get_server(server)
        deadline = time.monotonic() + timeout
        next_state = 0.0
        off_since = None
        while True:
            now = time.monotonic()
            if status == ACTIVE and server._marker_seen():
                current = server.status     # one RPC: is it still running?
                if current == ACTIVE:
                    return server
            if now >= next_state:
                current = server.status
                next_state = now + STATE_POLL_S
                if current == status:
                    return server
                if current in (ERROR, DELETED):
                    raise CloudlabError(f"server {server.name} is {current} while waiting for {status}"
                                        f"; last console lines:\n{server._last_console()}",
                                        fix="server.console_log() shows the whole boot")
                if status == ACTIVE and current == SHUTOFF:
                    off_since = off_since or now
                    if now - off_since > 2 * STATE_POLL_S:
                        raise CloudlabError(f"server {server.name} powered off while booting; last "
                                            f"console lines:\n{server._last_console()}",
                                            fix="read server.console_log(), then server.start()")
                else:
                    off_since = None
            if now >= deadline:
                raise ResourceTimeout(
                    f"server {server.name} did not become {status} within {timeout:g} s "
                    f"(it is {server.status}); last console lines:\n{server._last_console()}",
                    fix="give a longer timeout, or read server.console_log() and delete the server")
            time.sleep(POLL_S)

    def resize_server(self, server, flavor, wait=True, timeout=DEFAULT_TIMEOUT_S):
        """Give ``server`` another flavor (see :meth:`Server.resize`)."""
        wait, timeout = arguments.flag(wait, "wait"), arguments.seconds(timeout)
        server = self.get_server(server)
        new = self.get_flavor(flavor)
        old = server.flavor
        if new == old:
            raise InvalidInput(f"server {server.name} already has flavor {new.name}", fix="choose another flavor")
        if new.disk_gib < old.disk_gib:
            raise InvalidInput(f"flavor {new.name} has a {new.disk_gib} GiB disk, smaller than the server's "
                               f"{old.disk_gib} GiB; disks only grow",
                               fix=f"choose a flavor with at least {old.disk_gib} GiB of disk")
        with server._lock:
            was_running = server._running()
            if new.ram_mib > old.ram_mib:
                self._check_memory(Flavor(new.name, new.vcpus, new.ram_mib - old.ram_mib if was_running
                                          else new.ram_mib, new.disk_gib))
            server.stop()
            server._task = RESIZE
            try:
                with libvirt_errors(f"redefining server {server.name}"):
                    xml = server._dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
                    changed = domain_xml.resized_xml(xml, new.vcpus, new.ram_mib, metadata={
                        "flavor": new.name, "vcpus": new.vcpus, "ram_mib": new.ram_mib, "disk_gib": new.disk_gib})
                    server._dom = self.conn.defineXML(changed)
                if new.disk_gib > old.disk_gib:
                    server._grow_disk(new.disk_gib)
                server.flavor = new
            finally:
                server._task = None
            if was_running:
                server._begin_boot(RESIZE, fresh_log=True)
                with libvirt_errors(f"starting server {server.name}"):
                    server._dom.create()
        if was_running and wait:
            self.wait_for_server(server, timeout=timeout)
        return server

    def delete_server(self, server):
        """Delete a server: power off, undefine, remove its disk, console log and socket, release its address.

        Its DHCP lease is given back at once (when the host can: ``release_leases``), as
        Neutron frees a deleted port's address; otherwise it would stay leased for the
        whole lease time and a class creating and deleting servers would empty the pool.

        Raises:
            NotFound: no such server.
        """
        server = self.get_server(server)
        release = getattr(self.host, "release_leases", None)
        with server._lock:
            try:
                macs = server.mac_addresses if release and server.network else []
            except CloudlabError:
                macs = []       # its domain is already gone: nothing to read the MAC from
            if server._agent is not None:
                server._agent.close()
            try:
                dom = server._dom
            except NotFound:
                dom = None      # its domain is already gone: its files still go
            self._remove(dom, server.domain_name)
            server._deleted = True
        if macs:
            release(macs, server.network)
        with self._lock:
            if self._servers.get(server.name) is server:
                del self._servers[server.name]

    def _remove(self, dom, domain_name):
        """Destroy and undefine ``dom`` (when given) and remove the files of ``domain_name``."""
        if dom is not None and dom.connect() is not self.conn:
            # the connection was replaced meanwhile (libvirtd restarted): find it on the new one
            try:
                dom = self.conn.lookupByName(domain_name)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise convert_libvirt_error(exc, f"looking up {domain_name}") from None
                dom = None
        if dom is not None:
            _destroy_and_undefine(dom)
        for suffix in SERVER_SUFFIXES:
            (self.server_dir / f"{domain_name}{suffix}").unlink(missing_ok=True)


def _destroy_and_undefine(dom):
    """Power off and undefine a domain; a domain that is already gone is fine."""
    try:
        if dom.isActive():
            dom.destroy()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID):
            raise convert_libvirt_error(exc, f"powering off {dom.name()}") from None
    try:
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                          libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise convert_libvirt_error(exc, f"undefining {dom.name()}") from None


def cleanup(conn, prefix, home):
    """Remove the server domains whose names start with ``prefix``, and their files; nothing else.

    Files go when their domain was removed here, or, for one lab's own prefix
    (``cloudlab-NAME-``), whenever they carry it.  Never every file with the global
    prefix: labs of another lab host (another network namespace) share the home
    folder and their servers may be running.  ``cloudlab.host.clean`` follows the
    same rule.

    Args:
        conn: an open ``libvirt.virConnect``.
        prefix: e.g. ``cloudlab-`` (every lab on this host) or ``cloudlab-lab-`` (one lab).
        home: ``config.home()``; server files live in ``home/<lab>/``.
    Returns:
        names of the domains and files removed.
    """
    removed = []
    with libvirt_errors("listing domains for clean-up"):
        doms = conn.listAllDomains()
    for dom in doms:
        name = dom.name()
        if name.startswith(prefix):
            _destroy_and_undefine(dom)
            removed.append(name)
    whole_lab = len(prefix) > len(config.prefix())
    for path in sorted(Path(home).glob(f"*/{prefix}*")):
        if path.suffix not in SERVER_SUFFIXES or not (whole_lab or path.stem in removed):
            continue
        if path.is_file() or path.is_socket():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed
