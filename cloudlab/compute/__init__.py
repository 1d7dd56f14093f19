"""The compute service (Nova's role): flavors and servers on libvirt.

Creating a server does what Nova's libvirt driver does, in miniature:

1. pick the flavor (size) and image; check the project's quota (a limit per lab:
   :class:`~cloudlab.errors.QuotaExceeded`, nothing is created), then let the
   scheduler find a host with the memory (none: Nova's "No valid host was found",
   :class:`~cloudlab.errors.NoValidHost`, and the server is left in ERROR, as in Nova);
2. make the server's root disk a copy-on-write *overlay* on the image's disk:
   ``qemu-img create -f qcow2 -F qcow2 -b BASE OVERLAY`` writes a small qcow2 file
   whose unwritten blocks are read from BASE, so nothing is copied and creating
   a server from a 1 GiB image costs the same as from a 10 MiB one;
3. write the domain XML (:mod:`cloudlab.compute.domain`): direct kernel boot of the image's
   kernel and initramfs, the overlay as first disk, a NIC on the lab's network,
   the serial console written to a file, the agent's virtio-serial channel;
4. ``defineXML`` (a persistent domain, so it can be stopped and started) and
   ``create`` (boot it).  Until the boot is done the server is BUILD (see it with
   ``wait=False``); it is ACTIVE once its console shows ``cloudlab-ready`` (see
   :mod:`cloudlab.compute.server` for how that differs from Nova's ACTIVE).

Addresses are not the compute service's: as in OpenStack, where Neutron allocates a
port's address and programs dnsmasq with it, the lab's network (libvirt's dnsmasq)
hands out the addresses, and a server's ``addresses`` only reads them.

Every domain and file carries the lab's prefix (``cloudlab-<lab>-``), so
:func:`cleanup` can remove exactly the lab's own and nothing else.
"""

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import libvirt

from .. import arguments, config
from . import domain as domain_xml
from ..image.agent import check_socket_path
from ..errors import (CloudlabError, Conflict, InvalidInput, MissingPrerequisite, NotFound, NoValidHost,
                      QuotaExceeded, ResourceTimeout)
from .flavor import DEFAULT_FLAVORS, NAME_RE, Flavor
from . import scheduler
from .server import (ACTIVE, BUILD, DELETED, ERROR, MIGRATING, POLL_S, PRE_RESIZE_SUFFIX, RESIZE, REVERT_RESIZE, SHUTOFF,
                     STATE_POLL_S, STATUSES, UNKNOWN, VERIFY_RESIZE, Server, convert_libvirt_error, flavor_text, libvirt_errors,
                     metadata_of, run_tool)

DEFAULT_TIMEOUT_S = 60.0
ACCELERATORS = ("kvm", "tcg")
SERVER_SUFFIXES = (".qcow2", ".log", ".sock")
MIGRATED_SOCKET_SUFFIX = ".migrated.sock"   # the agent's socket after a live migration (see live_migrate)
NO_VALID_HOST = "No valid host was found. There are not enough hosts available."
QUOTA_KEYS = ("instances", "cores", "ram_mib")

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
        self._creating_flavors = {}    # name -> Flavor, for the quota while it is being created
        self._lock = threading.RLock()
        self._hostname = None
        self._quota = dict.fromkeys(QUOTA_KEYS)     # None: no limit (Nova's -1)
        self._creating_on = {}   # name -> the host chosen for it while it is being created
        self.weigher = scheduler.SPREAD

    # -- wiring ---------------------------------------------------------------------------

    @property
    def host(self):
        """The (first) host this service runs servers on: the lab host, or the first compute node."""
        return self.hosts[0]

    @property
    def multi_node(self):
        """True when the lab's layout has compute nodes of their own (``lab.nodes``), not the lab host."""
        return self._host is None and self.lab is not None and len(self.lab.topology.nodes) > 1

    @property
    def hosts(self):
        """The compute hosts servers are placed on: the lab host (all-in-one) or every compute node."""
        if self.multi_node:
            return self.lab.nodes.compute_nodes
        if self._host is None:
            self._host = self.lab.host
        return [self._host]

    def _up_hosts(self):
        return [h for h in self.hosts if not getattr(h, "stopped", False)]

    def find_host(self, name):
        """The compute host called ``name`` (a node's name, or the lab host's host name).

        Raises:
            NotFound: no compute host of that name; the message lists them.
        """
        arguments.text(name, "host", accepts="a compute node's name, e.g. 'compute1'")
        for host in self.hosts:
            if name in (getattr(host, "name", None), self._hostname_of(host)):
                return host
        raise NotFound(f"there is no compute host called {name!r}",
                       fix=f"use one of: {', '.join(self._hostname_of(h) for h in self.hosts)}")

    def _hostname_of(self, host):
        if host is self.hosts[0] and not self.multi_node:
            return self.hostname
        return host.hostname

    def set_weigher(self, weigher):
        """How the scheduler orders the hosts that fit: ``spread`` (most free memory first, Nova's default) or ``pack``.

        Raises:
            InvalidInput: another name.
        """
        arguments.one_of(weigher, "weigher", scheduler.WEIGHERS)
        self.weigher = weigher
        return weigher

    def hypervisors(self):
        """Each compute host and what it has: ``[{"host", "state", "servers", "ram_mib", "free_ram_mib",
        "vcpus", "used_vcpus"}, ...]`` (as ``openstack hypervisor list --long`` shows them)."""
        rows = []
        servers = self.list_servers()
        for host in self.hosts:
            name = self._hostname_of(host)
            up = not getattr(host, "stopped", False)
            mine = [s.name for s in servers if s._node is host]
            rows.append({"host": name, "state": "up" if up else "down", "servers": mine,
                         "ram_mib": getattr(host, "ram_mib", None),
                         "free_ram_mib": host.free_memory_mib() if up else None,
                         "vcpus": getattr(host, "vcpus", None),
                         "used_vcpus": host.used_vcpus() if up and hasattr(host, "used_vcpus") else None})
        return rows

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

    # -- quotas and the scheduler ------------------------------------------------------

    def set_quota(self, **limits):
        """Set the lab's (the project's) limits: ``instances``, ``cores``, ``ram_mib``; None lifts one.

        Like Nova's quotas, they count every server of the lab, running or not, and are
        checked before anything is created.  Returns the quotas now in force.

        Raises:
            InvalidInput: an unknown limit, or a value that is not a whole number >= 0.
        """
        for key, value in limits.items():
            if key not in QUOTA_KEYS:
                raise InvalidInput(f"there is no quota called {key!r}", fix=f"use {', '.join(QUOTA_KEYS)}")
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise InvalidInput(f"quota {key}={value!r} is not a whole number >= 0", fix="or None for no limit")
        with self._lock:
            self._quota.update(limits)
            return dict(self._quota)

    @property
    def quotas(self):
        """The lab's quotas now: ``{"instances": n or None, "cores": ..., "ram_mib": ...}`` (None: no limit)."""
        with self._lock:
            return dict(self._quota)

    def quota_usage(self):
        """What the lab's servers use against its quotas: ``{"instances": n, "cores": n, "ram_mib": n}``."""
        servers = self.list_servers()
        with self._lock:
            creating = [f for n, f in self._creating_flavors.items() if n not in {s.name for s in servers}]
        flavors = [s.flavor for s in servers] + creating
        return {"instances": len(flavors), "cores": sum(f.vcpus for f in flavors),
                "ram_mib": sum(f.ram_mib for f in flavors)}

    def _check_quota(self, instances, cores, ram_mib):
        """Raise QuotaExceeded when adding these to the lab's usage goes past a quota (Nova's 403)."""
        with self._lock:
            quota = dict(self._quota)
        if all(v is None for v in quota.values()):
            return
        used = self.quota_usage()
        for key, asked in (("instances", instances), ("cores", cores), ("ram_mib", ram_mib)):
            limit = quota[key]
            if limit is not None and asked > 0 and used[key] + asked > limit:
                raise QuotaExceeded(
                    f"Quota exceeded for {key}: requested {asked}, but already used {used[key]} of {limit} {key}",
                    fix="delete a server you no longer need, or raise the quota: "
                        f"compute.set_quota({key}=...)")

    def _schedule(self, flavor, needed_mib=None, action="create", host=None, on=None, exclude=None):
        """The scheduler: the host that gets the server, or NoValidHost when none can take it.

        Args:
            flavor: the flavor asked for.
            needed_mib: MiB the host must still give (default: the flavor's memory).
            action: what is being placed, for the message.
            host: the one host asked for (a name), or None for any.
            on: the host the server is on already (a start or resize is placed there).
            exclude: a host not to choose (a live migration's source), or a list of them.
        Returns:
            the chosen host.
        Raises:
            NotFound: ``host`` names no compute host.
            NoValidHost: no host fits (the message says why each was refused).
        """
        needed = flavor.ram_mib if needed_mib is None else needed_mib
        if self.multi_node:
            return self._schedule_nodes(flavor, needed, action, host, on, exclude)
        with self._lock:
            reserved = sum(self._creating.values())
            free = self.host.free_memory_mib() - reserved
        if needed > free:
            smaller = [f.name for f in self.list_flavors() if f.ram_mib <= free]
            raise NoValidHost(
                f"{NO_VALID_HOST} (to {action} with flavor {flavor.name}: it needs {needed} MiB of memory, "
                f"and host {self.hostname} has {max(free, 0)} MiB free)",
                fix=(f"choose a smaller flavor ({', '.join(smaller)}) or " if smaller else "") +
                    "delete servers you no longer need")
        return self.host

    def _schedule_nodes(self, flavor, needed, action, wanted, on, exclude=None):
        """Filter and weigh the compute nodes (:mod:`cloudlab.compute.scheduler`)."""
        if wanted is not None:
            wanted_host = self.find_host(wanted)
            if getattr(wanted_host, "stopped", False):
                raise Conflict(f"compute node {wanted} is stopped: no server can be placed on it",
                               fix=f"lab.nodes[{wanted!r}].start(), or leave host= out")
        candidates = []
        excluded = exclude if isinstance(exclude, list) else [exclude]
        hosts = [on] if on is not None else [h for h in self.hosts if h not in excluded]
        with self._lock:
            for host in hosts:
                up = not getattr(host, "stopped", False)
                reserved = [n for n, h in self._creating_on.items() if h is host]
                ram = sum(self._creating.get(n, 0) for n in reserved)
                cpus = sum(self._creating_flavors[n].vcpus for n in reserved if n in self._creating_flavors)
                free_ram = host.free_memory_mib() - ram if up else 0
                free_vcpus = host.vcpus - host.used_vcpus() - cpus if up else 0
                candidates.append(scheduler.Candidate(host, host.hostname, up, free_ram, free_vcpus))
        chosen, refused = scheduler.select(candidates, needed, flavor.vcpus, self.weigher,
                                           wanted=wanted if on is None else None)
        if chosen is None:
            reasons = "; ".join(f"{name}: {why}" for name, why in refused.items())
            smaller = [f.name for f in self.list_flavors() if f.ram_mib < flavor.ram_mib]
            raise NoValidHost(f"{NO_VALID_HOST} (to {action} with flavor {flavor.name}: {reasons})",
                              fix=(f"choose a smaller flavor ({', '.join(smaller)}), " if smaller else "") +
                                  "delete servers you no longer need, or start a stopped node")
        return chosen.host

    def _check_memory(self, flavor, on=None):
        """Raise NoValidHost when the server's host cannot give ``flavor.ram_mib`` more MiB (starting a server)."""
        self._schedule(flavor, action="start", on=on if self.multi_node else None)

    def _resolve_network(self, network):
        if network is False:
            return None
        if network is None:
            return self.host.network
        arguments.text(network, "network", accepts="a network name, None (the lab's) or False (no NIC)")
        conn = self._up_hosts()[0].connect() if self.multi_node and self._up_hosts() else self.conn
        try:
            conn.networkLookupByName(network)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_NETWORK:
                raise convert_libvirt_error(exc, f"looking up network {network!r}") from None
            with libvirt_errors("listing networks"):
                names = [n.name() for n in conn.listAllNetworks()]
            raise NotFound(f"no network named {network!r}",
                           fix=f"use one of: {', '.join(names) or '(none defined)'}") from None
        return network

    def domain_type_for(self, accel=None):
        """libvirt's domain type for accelerator ``accel``: ``kvm``, ``qemu`` (TCG), or the host's own when None.

        Raises:
            InvalidInput: an accelerator other than ``kvm`` or ``tcg``.
            MissingPrerequisite: ``kvm`` on a host where KVM does not work (the message
                is the doctor's finding).
        """
        host_type = self.host.domain_type
        if accel is None or host_type == "test":
            return host_type
        if accel not in ACCELERATORS:
            raise InvalidInput(f"no accelerator {accel!r}", fix=f"use one of: {', '.join(ACCELERATORS)}")
        if accel == "kvm" and host_type != "kvm":
            from ..doctor import kvm_finding
            raise MissingPrerequisite(f"KVM is not usable on this host: {kvm_finding()} "
                                      "(the doctor's accelerator row)",
                                      fix="use accel='tcg' (emulation), or run the lab on a machine whose CPU "
                                          "gives it VT-x/AMD-V; `python -m cloudlab doctor` shows why")
        return "kvm" if accel == "kvm" else "qemu"

    def create_server(self, name, image="busybox", flavor="m1.tiny", network=None, profile="virtio",
                      wait=True, timeout=DEFAULT_TIMEOUT_S, kernel_args="", accel=None, properties=None,
                      host=None):
        """Create and boot a server; with ``wait``, return once it is ACTIVE.

        Args:
            name: server name (letters, digits, '.', '_', '-'); the domain is ``prefix + name``.
            image: image name (see ``lab.image.list_images()``).
            flavor: flavor name or :class:`~cloudlab.compute.flavor.Flavor`.
            network: libvirt network name; None for the lab's network, False for no NIC.
            profile: device profile, ``virtio`` or ``emulated`` (see :mod:`cloudlab.compute.domain`).
            accel: ``kvm`` (hardware-assisted) or ``tcg`` (emulation); None for the host's
                choice (``lab.host.accel``).
            wait: wait until the guest is ready.
            timeout: seconds to wait for ready.
            kernel_args: extra kernel command-line arguments (e.g. ``cloudlab.ntp=ADDR``; by
                default the lab's NTP server for guests, once ``lab.ntp.serve_guests()`` runs).
            properties: extra ``{str: str}`` kept with the server in its domain's metadata and
                read back as ``server.properties`` (the OpenStack API keeps each server's
                project and user there).
            host: the compute node to put it on (Nova's ``--host``); None lets the scheduler
                choose (``compute.set_weigher``: spread or pack).
        Raises:
            InvalidInput: a bad name, profile or accelerator, or a flavor too small for the image.
            MissingPrerequisite: ``accel="kvm"`` on a host without working KVM (says why).
            NotFound: unknown image, flavor, network or host (the message lists the valid ones).
            Conflict: a server with that name exists, or ``host`` names a stopped node.
            QuotaExceeded: the lab's quota has no room for another server of this flavor
                (nothing is created).
            NoValidHost: no host has the flavor's memory free; as in Nova, the server is
                left in ERROR (``err.server``; its ``fault`` says why) until you delete it.
            ResourceTimeout: the guest did not become ready in time (the message shows
                the last console lines; the server is left in ERROR for inspection).
        """
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidInput(f"server name {name!r} is not valid",
                               fix="use 1-40 letters, digits, '.', '_' or '-', starting with a letter or digit")
        wait, timeout = arguments.flag(wait, "wait"), arguments.seconds(timeout)
        arguments.text(kernel_args, "kernel_args", accepts="a string of kernel arguments, e.g. 'quiet'")
        if host is not None:
            self.find_host(host)
        flavor = self.get_flavor(flavor)
        image = self.images.get_image(image)
        profile = domain_xml.get_profile(profile)
        domain_type = self.domain_type_for(accel)
        if flavor.ram_mib < image.min_ram_mib:
            raise InvalidInput(f"flavor {flavor.name} has {flavor.ram_mib} MiB of memory; image "
                               f"{image.name} needs at least {image.min_ram_mib} MiB", fix="choose a bigger flavor")
        if image.virtual_size > flavor.disk_gib * 2**30:
            raise InvalidInput(f"flavor {flavor.name}'s {flavor.disk_gib} GiB disk is smaller than image "
                               f"{image.name} ({image.virtual_size / 2**30:.1f} GiB)", fix="choose a bigger flavor")
        lab_network = network is None
        network = self._resolve_network(network)
        properties = _check_properties(properties)
        domain_name = self.prefix + name
        disk = self.server_dir / f"{domain_name}.qcow2"
        console = self.server_dir / f"{domain_name}.log"
        socket_path = self.server_dir / f"{domain_name}.sock"
        check_socket_path(socket_path)

        with self._lock:
            if name in self._creating or self._known(name):
                raise Conflict(f"a server named {name!r} already exists",
                               fix="choose another name, or delete the existing server first")
            self._check_quota(1, flavor.vcpus, flavor.ram_mib)
            try:
                node = self._schedule(flavor, host=host)
                fault = None
            except NoValidHost as exc:
                fault = exc
                # as in Nova, the server exists in ERROR; its record has to live on some host
                node = (self._up_hosts() or self.hosts)[0]
            if lab_network and self.multi_node:
                # the lab's network as this node has it: none on a remote machine, which the tenant network
                # does not reach (cloudlab.host.nodes.RemoteNode)
                network = node.network
            self._creating[name] = flavor.ram_mib if fault is None else 0
            self._creating_flavors[name] = flavor
            self._creating_on[name] = node
        dom = None
        try:
            if fault is None:
                run_tool(["qemu-img", "create", "-q", "-f", "qcow2", "-F", image.format,
                          "-b", image.disk, str(disk), f"{flavor.disk_gib}G"],
                         f"creating the disk of server {name}")
            meta = {"lab": self.lab.name, "name": name, "flavor": flavor.name, "vcpus": flavor.vcpus,
                    "ram_mib": flavor.ram_mib, "disk_gib": flavor.disk_gib, "image": image.name,
                    "profile": profile.name, "accel": {"kvm": "kvm", "qemu": "tcg"}.get(domain_type, domain_type),
                    "network": network or "", "created": f"{time.time():.3f}",
                    "disk": str(disk), "console": str(console), "socket": str(socket_path)}
            if properties:
                meta["properties"] = json.dumps(properties, sort_keys=True)
            if fault is not None:
                meta["fault"] = NO_VALID_HOST
            cmdline = f"{image.cmdline} cloudlab.hostname={name} {kernel_args}".strip()
            # the lab's time server, when it serves guests: every node syncs from the controller
            guest_ntp = getattr(self.lab._services.get("ntp"), "guest_ntp", None) if self.lab else None
            guest_ntp = guest_ntp or getattr(node, "guest_ntp", None)     # a node's: the controller's
            if guest_ntp and "cloudlab.ntp=" not in cmdline:
                cmdline += f" cloudlab.ntp={guest_ntp}"
            xml = domain_xml.server_domain(
                domain_name, domain_type=domain_type, vcpus=flavor.vcpus, ram_mib=flavor.ram_mib,
                profile=profile, kernel=image.kernel, initrd=image.initrd, cmdline=cmdline,
                disk=disk, disk_format="qcow2", console_log=console, agent_socket=socket_path,
                network=network, metadata={k: str(v) for k, v in meta.items()}).to_xml()
            with libvirt_errors(f"defining server {name}"):
                dom = node.connect().defineXML(xml)
            server = Server(self, name, dom, meta, node=node)
            if fault is None:
                server._begin_boot(BUILD, fresh_log=True)
                with libvirt_errors(f"starting server {name}"):
                    dom.create()
        except BaseException:
            try:
                self._remove(dom, domain_name, node)
            except CloudlabError:
                pass    # the first error is the one to report; clean-up removes leftovers
            raise
        finally:
            with self._lock:
                self._creating.pop(name, None)
                self._creating_flavors.pop(name, None)
                self._creating_on.pop(name, None)
        with self._lock:
            self._servers[name] = server
        if fault is not None:
            # as in Nova: the server exists, in ERROR, with the scheduler's fault; no disk, no boot
            raise NoValidHost(fault.message, fix=f"{fault.fix}; then server.delete() this one", server=server)
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
        for host in self._up_hosts():
            try:
                host.connect().lookupByName(self.prefix + name)
                return True
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise convert_libvirt_error(exc, f"looking up server {name}") from None
        return False

    def _adopt(self, dom, node=None):
        """The Server for a domain of this lab, or None when the domain is not one of ours."""
        meta = metadata_of(dom)
        if meta.get("lab") != self.lab.name or not dom.name().startswith(self.prefix):
            return None
        name = meta["name"]
        with self._lock:
            server = self._servers.get(name)
            if server is None or server._deleted or server.id != dom.UUIDString():
                server = self._servers[name] = Server(self, name, dom, meta, node=node)
            elif node is not None and server._node is not node and dom.isActive():
                server._node, server._dom = node, dom      # it moved (a live migration elsewhere)
            return server

    def list_servers(self):
        """This lab's servers, by name (those of a stopped node too: their status is UNKNOWN)."""
        servers = {}
        with libvirt_errors("listing servers"):
            for host in self._up_hosts():
                doms = [d for d in host.connect().listAllDomains() if d.name().startswith(self.prefix)]
                # a migrated server's domain may be defined on both ends for a moment: the running one wins
                for dom in sorted(doms, key=lambda d: d.isActive()):
                    server = self._adopt(dom, host)
                    if server is not None:
                        servers[server.name] = server
        with self._lock:
            for name, server in self._servers.items():
                if name not in servers and not server._deleted and getattr(server._node, "stopped", False):
                    servers[name] = server
        return sorted(servers.values(), key=lambda s: s.name)

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
        server = None
        for host in self._up_hosts():
            try:
                dom = host.connect().lookupByName(self.prefix + str(name))
                server = self._adopt(dom, host)
                break
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise convert_libvirt_error(exc, f"looking up server {name}") from None
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
        # ACTIVE needs a running guest; so does VERIFY_RESIZE when the resize booted it
        booting = status == ACTIVE or (status == VERIFY_RESIZE and server._running())
        while True:
            now = time.monotonic()
            if booting and server._marker_seen():
                current = server.status     # one RPC: is it still running?
                if current == status:
                    return server
            if now >= next_state:
                current = server.status
                next_state = now + STATE_POLL_S
                running = server._running() if booting else False
                if current == status and (not booting or running):
                    return server
                if current in (ERROR, DELETED):
                    raise CloudlabError(f"server {server.name} is {current} while waiting for {status}"
                                        + (f" ({server.fault})" if server.fault else "") +
                                        f"; last console lines:\n{server._last_console()}",
                                        fix="server.console_log() shows the whole boot")
                if booting and not running:
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
        """Give ``server`` another flavor; it ends in VERIFY_RESIZE (see :meth:`Server.resize`)."""
        wait, timeout = arguments.flag(wait, "wait"), arguments.seconds(timeout)
        server = self.get_server(server)
        new = self.get_flavor(flavor)
        old = server.flavor
        if server._resize_from:
            raise Conflict(f"server {server.name} is VERIFY_RESIZE: the last resize waits for your decision",
                           fix="server.confirm_resize() or server.revert_resize() first")
        if server.fault:
            raise Conflict(f"server {server.name} is ERROR: {server.fault}", fix="delete it and create it again")
        if new == old:
            raise InvalidInput(f"server {server.name} already has flavor {new.name}", fix="choose another flavor")
        if new.disk_gib < old.disk_gib:
            raise InvalidInput(f"flavor {new.name} has a {new.disk_gib} GiB disk, smaller than the server's "
                               f"{old.disk_gib} GiB; disks only grow",
                               fix=f"choose a flavor with at least {old.disk_gib} GiB of disk")
        with server._lock:
            was_running = server._running()
            self._check_quota(0, new.vcpus - old.vcpus, new.ram_mib - old.ram_mib)
            needed = new.ram_mib - old.ram_mib if was_running else new.ram_mib
            if needed > 0:
                self._schedule(new, needed_mib=needed, action=f"resize server {server.name}",
                               on=server._node if self.multi_node else None)
            server._power_off()
            server._task = RESIZE
            backup = server.pre_resize_disk
            try:
                # the old disk stays as it is until the resize is confirmed or reverted
                run_tool(["cp", "--sparse=always", str(server.disk), str(backup)],
                         f"keeping the old disk of server {server.name}")
                if new.disk_gib > old.disk_gib:
                    server._grow_disk(new.disk_gib)
                self._redefine(server, new, resize_from=flavor_text(old),
                               resize_power="on" if was_running else "off")
                server.flavor = new
                server._resize_from, server._resize_was_on = old, was_running
            except BaseException:
                if backup.exists():
                    os.replace(backup, server.disk)     # nothing half-done: the old disk is the disk
                server._task = None
                raise
            server._task = None
            if was_running:
                server._begin_boot(RESIZE, fresh_log=True)
                with libvirt_errors(f"starting server {server.name}"):
                    server._dom.create()
        if was_running and wait:
            self.wait_for_server(server, status=VERIFY_RESIZE, timeout=timeout)
        return server

    def live_migrate(self, server, host=None, timeout=DEFAULT_TIMEOUT_S, watch=False):
        """Move a running server to another compute node while it runs (Nova's ``live-migrate``).

        The source node's libvirtd connects to the destination's over TCP on the
        management network (peer to peer, ``qemu+tcp://ADDR/system``), a QEMU is started
        there waiting for the guest, and the guest's memory is copied across while it
        keeps running; pages it writes meanwhile are copied again, until what is left is
        small enough to send during a short pause (the *downtime*).  The disk is not
        copied: every node sees the same disk file, as on shared storage; libvirt cannot
        tell that a local filesystem is shared, hence ``VIR_MIGRATE_UNSAFE``.  The
        console log goes on in the same file (the destination appends to it).

        Args:
            host: the destination node's name; None lets the scheduler choose among the others.
            timeout: seconds the migration may take before it is cancelled.
            watch: meanwhile send the guest an ICMP echo request every 50 ms from the
                controller over the tenant network, and return what was seen.
        Returns:
            the server, now on the destination (``server.host``); with ``watch``, a dict:
            ``source``, ``destination``, ``seconds``, ``answers`` (replies during the
            migration) and ``downtime_ms`` (the longest gap between two answers).
        Raises:
            InvalidInput: ``host`` is the node the server is on already.
            NotFound: no compute node called ``host``.
            Conflict: the layout has one compute node, the server is not ACTIVE, or ``host``
                is stopped.
            NoValidHost: no other node has the memory and vCPUs free.
        """
        timeout = arguments.seconds(timeout)
        server = self.get_server(server)
        if not self.multi_node or len(self.hosts) < 2:
            raise Conflict(f"server {server.name} has nowhere to go: the {self.lab.topology.name} layout has "
                           f"{len(self.hosts)} compute host", fix="cl.Lab(cl.ThreeNode(compute_nodes=2))")
        source = server._node
        # a remote machine's libvirtd is reached over its own URI, not the nodes' TCP listeners, and
        # sees the disks only through a share: live migration stays between this machine's nodes
        remotes = [h for h in self.hosts if getattr(h, "remote", None)]
        if source in remotes:
            raise Conflict(f"server {server.name} is on remote node {source.name}: the lab does not live-migrate "
                           "to or from another machine", fix="migrate servers of this machine's compute nodes")
        if host is not None:
            target = self.find_host(host)
            if target in remotes:
                raise Conflict(f"{host} is a remote node: the lab does not live-migrate to another machine",
                               fix=f"choose one of {', '.join(h.name for h in self.hosts if h not in remotes)}")
            if target is source:
                raise InvalidInput(f"server {server.name} is on {host} already: a migration needs another node",
                                   fix=f"choose one of {', '.join(h.name for h in self.hosts if h is not source)},"
                                       " or host=None")
        watcher = None
        if watch:
            found = server.addresses.get(server.network or "") or []
            if not found:
                raise Conflict(f"server {server.name} has no address to watch",
                               fix="server.wait_for_address() first, or watch=False")
            from ..host.probe import Watcher
            watcher = Watcher(self.lab.nodes.controller, found[0], seconds=timeout + 10)
            time.sleep(1.0)      # a few answers before it starts
        with server._lock:
            status = server.status
            if status != ACTIVE:
                if watcher:
                    watcher.stop()
                raise Conflict(f"server {server.name} is {status}; only an ACTIVE server is live-migrated",
                               fix="server.start(), or wait for it")
            dest = self._schedule(server.flavor, action=f"live-migrate server {server.name}", host=host,
                                  exclude=[source] + remotes)
            dom = server._dom
            with libvirt_errors(f"reading server {server.name} for its migration"):
                live = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE)
                persistent = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE | libvirt.VIR_DOMAIN_XML_INACTIVE)
            # the agent's socket moves to another name: the source QEMU removes its own when it
            # ends, which would take the destination's with it if both had one path
            old_socket = str(server.agent_socket)
            new_socket = (old_socket[:-len(MIGRATED_SOCKET_SUFFIX)] + ".sock"
                          if old_socket.endswith(MIGRATED_SOCKET_SUFFIX)
                          else old_socket[:-len(".sock")] + MIGRATED_SOCKET_SUFFIX)
            params = {
                libvirt.VIR_MIGRATE_PARAM_URI: f"tcp://{dest.address}",
                # the running guest's console log continues; a later boot starts a fresh one
                libvirt.VIR_MIGRATE_PARAM_DEST_XML: live.replace("append='off'", "append='on'").replace(
                    old_socket, new_socket),
                libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: persistent.replace(old_socket, new_socket),
            }
            flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_PERSIST_DEST
                     | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE | libvirt.VIR_MIGRATE_UNSAFE)
            if server._agent is not None:
                server._agent.close()
            server._task = MIGRATING
            timer = threading.Timer(timeout, _abort_job, (dom,))
            timer.start()
            began = time.monotonic()
            try:
                with libvirt_errors(f"live-migrating server {server.name} from {source.name} to {dest.name}"):
                    dom.migrateToURI3(f"qemu+tcp://{dest.address}/system", params, flags)
                with libvirt_errors(f"finding server {server.name} on {dest.name}"):
                    new = dest.connect().lookupByUUIDString(server.id)
                server._node, server._dom = dest, new
                server.agent_socket = Path(new_socket)
                server._agent = None        # the next command connects to the new socket
                Path(old_socket).unlink(missing_ok=True)
            finally:
                timer.cancel()
                server._task = None
                ended = time.monotonic()
                if watcher is not None:
                    time.sleep(1.0)      # the first answers from the new node
                    replies = watcher.stop()
        if watcher is None:
            return server
        from ..host.probe import longest_gap_ms
        return {"source": source.name, "destination": dest.name, "seconds": round(ended - began, 2),
                "answers": sum(1 for r in replies if began <= r <= ended),
                "downtime_ms": round(longest_gap_ms(replies, began, ended))}

    def _redefine(self, server, flavor, **metadata):
        """Redefine ``server``'s domain with ``flavor``'s vCPUs and memory, and these metadata changes."""
        with libvirt_errors(f"redefining server {server.name}"):
            xml = server._dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            changed = domain_xml.resized_xml(xml, flavor.vcpus, flavor.ram_mib, metadata={
                "flavor": flavor.name, "vcpus": flavor.vcpus, "ram_mib": flavor.ram_mib,
                "disk_gib": flavor.disk_gib, **metadata})
            server._dom = server._node.connect().defineXML(changed)

    def _pending_resize(self, server, action):
        server = self.get_server(server)
        if not server._resize_from:
            raise Conflict(f"server {server.name} is {server.status}, not VERIFY_RESIZE: no resize to {action}",
                           fix="server.resize(flavor) first")
        return server

    def confirm_resize(self, server):
        """Keep a resized server's new flavor and drop its old disk (Nova's ``resize confirm``).

        Raises:
            Conflict: the server is not VERIFY_RESIZE.
        """
        server = self._pending_resize(server, "confirm")
        with server._lock:
            self._redefine(server, server.flavor, resize_from=None, resize_power=None)
            server.pre_resize_disk.unlink(missing_ok=True)
            server._resize_from = None
        return server

    def revert_resize(self, server, wait=True, timeout=DEFAULT_TIMEOUT_S):
        """Put a resized server back on its old flavor and old disk (Nova's ``resize revert``).

        Raises:
            Conflict: the server is not VERIFY_RESIZE.
            ResourceTimeout: it was running before the resize and did not boot again in time.
        """
        server = self._pending_resize(server, "revert")
        with server._lock:
            old, power_on = server._resize_from, server._resize_was_on
            server._task = REVERT_RESIZE
            try:
                if server._running():
                    with libvirt_errors(f"powering off server {server.name}"):
                        server._dom.destroy()       # its disk is about to be thrown away
                if server._agent is not None:
                    server._agent.close()
                os.replace(server.pre_resize_disk, server.disk)
                self._redefine(server, old, resize_from=None, resize_power=None)
                server.flavor = old
                server._resize_from = None
            finally:
                server._task = None
            if power_on:
                server._begin_boot(REVERT_RESIZE, fresh_log=True)
                with libvirt_errors(f"starting server {server.name}"):
                    server._dom.create()
        if power_on and wait:
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
        release = getattr(server._node, "release_leases", None)
        if getattr(server._node, "stopped", False):
            # its node is down: the domain went with the node's daemons; its files still go
            with server._lock:
                self._remove(None, server.domain_name, server._node)
                server._deleted = True
            with self._lock:
                if self._servers.get(server.name) is server:
                    del self._servers[server.name]
            return
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
            self._remove(dom, server.domain_name, server._node)
            server._deleted = True
        if macs:
            release(macs, server.network)
        with self._lock:
            if self._servers.get(server.name) is server:
                del self._servers[server.name]

    def _remove(self, dom, domain_name, node=None):
        """Destroy and undefine ``dom`` (when given) and remove the files of ``domain_name``."""
        conn = (node or self.host).connect() if dom is not None else None
        if dom is not None and dom.connect() is not conn:
            # the connection was replaced meanwhile (libvirtd restarted): find it on the new one
            try:
                dom = conn.lookupByName(domain_name)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise convert_libvirt_error(exc, f"looking up {domain_name}") from None
                dom = None
        if dom is not None:
            _destroy_and_undefine(dom)
        for suffix in SERVER_SUFFIXES + (PRE_RESIZE_SUFFIX, MIGRATED_SOCKET_SUFFIX):
            (self.server_dir / f"{domain_name}{suffix}").unlink(missing_ok=True)


def _abort_job(dom):
    """Cancel a migration that takes too long (the guest stays on its source)."""
    try:
        dom.abortJob()
    except libvirt.libvirtError:
        pass


def _check_properties(properties):
    """``properties`` as a dict of strings, or InvalidInput naming the entry that is not one."""
    if properties is None:
        return {}
    if not isinstance(properties, dict):
        raise InvalidInput(f"properties must be a dict of strings, not {type(properties).__name__}")
    for key, value in properties.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key or len(key) > 255 or len(value) > 65535:
            raise InvalidInput(f"property {key!r}={value!r} is not usable",
                               fix="give string keys (1-255 characters) and string values")
    return dict(properties)


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
        # a pending resize's old disk is DOMAIN.pre-resize.qcow2: its stem starts with the domain's name
        domain = path.stem
        for suffix in (PRE_RESIZE_SUFFIX, MIGRATED_SOCKET_SUFFIX):
            if path.name.endswith(suffix):
                domain = path.name[: -len(suffix)]
        if path.suffix not in SERVER_SUFFIXES or not (whole_lab or domain in removed):
            continue
        if path.is_file() or path.is_socket():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed
