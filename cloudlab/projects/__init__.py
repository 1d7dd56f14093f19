"""Projects (테넌트, Keystone's projects): who owns which resource, within which quota, and what it used.

    blue = lab.projects.create_project("blue", quotas={"servers": 2, "vcpus": 2})
    web = blue.create_server("web")              # a real server, owned by blue
    red = lab.projects.create_project("red")
    red.get_server("web")                        # NotFound: blue's server is not red's to see
    blue.usage()                                 # {"server_hours": ..., "gib_hours": ..., "requests": ...}
    blue.bill(cl.projects.PRICES)                # the usage records priced: measured service

A project is the unit of *resource pooling*: many projects share one host, each
sees only what it owns, and each is held to its own quotas.  Here a project's
resources are the lab's own servers, volumes, shares, containers and objects (made through the
lab's services), named ``PROJECT.NAME``; a project looks up only names under its
own, so another project's resource is NotFound, never visible, exactly as Nova
answers 404 for a server of another project.  When the lab speaks OpenStack's APIs
these projects are Keystone's (:mod:`cloudlab.api.identity`).

Every call a project makes is counted (``requests``), and every resource it holds is
recorded from creation to deletion (:mod:`~cloudlab.projects.metering`): the records
become server-hours, vCPU-hours and GiB-hours, and a bill.
"""

import re
import threading
import time

from ..errors import Conflict, InvalidInput, NotFound, QuotaExceeded
from .comparison import WAYS, comparison_template
from .metering import PRICES, Bill, Meter, UsageRecord
from .tickets import TicketQueue

__all__ = ["Projects", "Project", "PRICES", "Bill", "UsageRecord", "TicketQueue", "DEFAULT_QUOTAS", "WAYS",
           "comparison_template"]

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,15}$")
DEFAULT_QUOTAS = {"servers": 4, "vcpus": 4, "ram_mib": 1024, "containers": 6, "volumes": 4, "gigabytes": 10,
                  "shares": 2, "share_gigabytes": 10}


class Project:
    """One project: its quotas, its resources (servers, volumes, containers) and its usage records.

    Use :meth:`Projects.create_project` to make one.
    """

    def __init__(self, service, name, quotas, clock):
        self._service = service
        self.lab = service.lab
        self.name = name
        self.quotas = dict(quotas)
        self.meter = Meter(clock)
        self._lock = threading.RLock()
        self.keystone_id = None       # the project's id in Keystone, when the lab's identity service runs

    def _full(self, name):
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"name {name!r} is not usable", fix="give a short name such as 'web'")
        return f"{self.name}.{name}"

    def _own(self, full_names):
        cut = len(self.name) + 1
        return sorted(n[cut:] for n in full_names if n.startswith(self.name + "."))

    # -- quotas -------------------------------------------------------------------------

    def set_quota(self, **limits):
        """Change quotas (``servers``, ``vcpus``, ``ram_mib``, ``containers``, ``volumes``, ``gigabytes``).

        Raises:
            InvalidInput: an unknown quota or a value that is not a whole number >= 0.
        """
        for key, value in limits.items():
            if key not in DEFAULT_QUOTAS:
                raise InvalidInput(f"there is no quota called {key!r}", fix=f"use {', '.join(DEFAULT_QUOTAS)}")
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInput(f"quota {key}={value!r} is not a whole number >= 0")
        self.quotas.update(limits)
        return dict(self.quotas)

    def quota_usage(self):
        """What the project holds now, against each quota: ``{quota: in use}``."""
        servers = [self.lab.compute.get_server(self._full(n)) for n in self.list_servers()]
        containers = [self.lab.containers.get_container(self._full(n)) for n in self.list_containers()]
        flavors = [s.flavor for s in servers] + [self.lab.compute.get_flavor(c.flavor) for c in containers
                                                  if c.flavor]
        volumes = [self.lab.block_storage.get_volume(self._full(n)) for n in self.list_volumes()]
        shares = ([self.lab.shared_file_system.get_share(self._full(n)) for n in self.list_shares()]
                  if self.lab.started_service("shared_file_system") else [])
        return {"servers": len(servers), "containers": len(containers),
                "vcpus": sum(f.vcpus for f in flavors), "ram_mib": sum(f.ram_mib for f in flavors),
                "volumes": len(volumes), "gigabytes": sum(v.size for v in volumes),
                "shares": len(shares), "share_gigabytes": sum(sh.size for sh in shares)}

    def _check(self, **asked):
        used = self.quota_usage()
        for key, amount in asked.items():
            limit = self.quotas.get(key)
            if limit is not None and used[key] + amount > limit:
                raise QuotaExceeded(f"project {self.name}: quota '{key}' is {limit}, {used[key]} in use, "
                                    f"and {amount} more were asked for",
                                    fix=f"delete something of project {self.name}, or raise the quota: "
                                        f"project.set_quota({key}=...)")

    # -- servers ------------------------------------------------------------------------

    def create_server(self, name, flavor="m1.tiny", **options):
        """Create a server owned by this project (``compute.create_server``'s options); checks the quotas first.

        Raises:
            QuotaExceeded: the project's ``servers``, ``vcpus`` or ``ram_mib`` quota would be passed
                (the message names the quota and its use).
        """
        self.meter.request("create_server")
        flavor_obj = self.lab.compute.get_flavor(flavor)
        with self._lock:
            self._check(servers=1, vcpus=flavor_obj.vcpus, ram_mib=flavor_obj.ram_mib)
            server = self.lab.compute.create_server(self._full(name), flavor=flavor, **options)
            self.meter.start("server", name, vcpus=flavor_obj.vcpus)
        return server

    def list_servers(self):
        """Names of this project's servers (without the project's part)."""
        return self._own(s.name for s in self.lab.compute.list_servers())

    def get_server(self, name):
        """This project's server ``name``.

        Raises:
            NotFound: it is not this project's (whether or not another project has one so named).
        """
        self.meter.request("get_server")
        if name in self.list_servers():
            return self.lab.compute.get_server(self._full(name))
        raise NotFound(f"no server named {name!r} in project {self.name}",
                       fix=f"this project's servers: {', '.join(self.list_servers()) or '(none)'}")

    def delete_server(self, name):
        """Delete this project's server ``name`` (its usage record ends now)."""
        server = self.get_server(name)
        self.lab.compute.delete_server(server)
        self.meter.stop("server", name)

    # -- containers ---------------------------------------------------------------------

    def create_container(self, name, flavor="m1.tiny", **options):
        """Create a container owned by this project (``containers.create_container``'s options); quotas first.

        Raises:
            QuotaExceeded: the ``containers``, ``vcpus`` or ``ram_mib`` quota would be passed.
        """
        self.meter.request("create_container")
        flavor_obj = self.lab.compute.get_flavor(flavor)
        with self._lock:
            self._check(containers=1, vcpus=flavor_obj.vcpus, ram_mib=flavor_obj.ram_mib)
            container = self.lab.containers.create_container(self._full(name), flavor=flavor, **options)
            self.meter.start("container", name, vcpus=flavor_obj.vcpus)
        return container

    def list_containers(self):
        """Names of this project's containers."""
        return self._own(c.name for c in self.lab.containers.list_containers())

    def get_container(self, name):
        """This project's container ``name``.

        Raises:
            NotFound: it is not this project's.
        """
        self.meter.request("get_container")
        if name in self.list_containers():
            return self.lab.containers.get_container(self._full(name))
        raise NotFound(f"no container named {name!r} in project {self.name}",
                       fix=f"this project's containers: {', '.join(self.list_containers()) or '(none)'}")

    def delete_container(self, name):
        """Delete this project's container ``name``."""
        container = self.get_container(name)
        self.lab.containers.delete_container(container)
        self.meter.stop("container", name)

    # -- volumes ------------------------------------------------------------------------

    def create_volume(self, name, size=1):
        """Create a volume of ``size`` GiB owned by this project.

        Raises:
            QuotaExceeded: the ``volumes`` or ``gigabytes`` quota would be passed.
        """
        self.meter.request("create_volume")
        with self._lock:
            self._check(volumes=1, gigabytes=size)
            volume = self.lab.block_storage.create_volume(self._full(name), size=size)
            self.meter.start("volume", name, gib=size)
        return volume

    def list_volumes(self):
        """Names of this project's volumes."""
        return self._own(v.name for v in self.lab.block_storage.list_volumes())

    def get_volume(self, name):
        """This project's volume ``name``.

        Raises:
            NotFound: it is not this project's.
        """
        self.meter.request("get_volume")
        if name in self.list_volumes():
            return self.lab.block_storage.get_volume(self._full(name))
        raise NotFound(f"no volume named {name!r} in project {self.name}",
                       fix=f"this project's volumes: {', '.join(self.list_volumes()) or '(none)'}")

    def delete_volume(self, name):
        """Delete this project's volume ``name``."""
        volume = self.get_volume(name)
        self.lab.block_storage.delete_volume(volume)
        self.meter.stop("volume", name)

    # -- shares -------------------------------------------------------------------------

    def create_share(self, name, size=1):
        """Create an NFS share of ``size`` GiB owned by this project.

        Raises:
            QuotaExceeded: the ``shares`` or ``share_gigabytes`` quota would be passed.
        """
        self.meter.request("create_share")
        with self._lock:
            self._check(shares=1, share_gigabytes=size)
            share = self.lab.shared_file_system.create_share(self._full(name), size)
            self.meter.start("share", name, gib=size)
        return share

    def list_shares(self):
        """Names of this project's shares."""
        return self._own(sh.name for sh in self.lab.shared_file_system.list_shares())

    def get_share(self, name):
        """This project's share ``name``.

        Raises:
            NotFound: it is not this project's.
        """
        self.meter.request("get_share")
        if name in self.list_shares():
            return self.lab.shared_file_system.get_share(self._full(name))
        raise NotFound(f"no share named {name!r} in project {self.name}",
                       fix=f"this project's shares: {', '.join(self.list_shares()) or '(none)'}")

    def delete_share(self, name):
        """Delete this project's share ``name``."""
        share = self.get_share(name)
        self.lab.shared_file_system.delete_share(share)
        self.meter.stop("share", name)

    # -- objects ------------------------------------------------------------------------

    def _swift(self):
        return self.lab.object_store.connection()

    def put_object(self, container, name, data):
        """Store ``data`` (bytes or text) as object ``name`` in this project's object-store container ``container``.

        The object store holds it in a Swift container named ``PROJECT.CONTAINER``; returns its ETag.
        """
        self.meter.request("put_object")
        conn = self._swift()
        try:
            conn.put_container(self._full(container))
            return conn.put_object(self._full(container), name, data)
        finally:
            conn.close()

    def list_objects(self, container):
        """Names of the objects in this project's container ``container``.

        Raises:
            NotFound: the project has no such container.
        """
        import swiftclient
        self.meter.request("list_objects")
        conn = self._swift()
        try:
            _, listing = conn.get_container(self._full(container))
            return [entry["name"] for entry in listing]
        except swiftclient.ClientException:
            raise NotFound(f"no object container named {container!r} in project {self.name}",
                           fix="put_object() makes one") from None
        finally:
            conn.close()

    def get_object(self, container, name):
        """The bytes of object ``name`` in this project's container ``container``.

        Raises:
            NotFound: it is not this project's (or does not exist).
        """
        import swiftclient
        self.meter.request("get_object")
        conn = self._swift()
        try:
            return conn.get_object(self._full(container), name)[1]
        except swiftclient.ClientException:
            raise NotFound(f"no object {container}/{name} in project {self.name}",
                           fix=f"list them with list_objects({container!r})") from None
        finally:
            conn.close()

    # -- measured service ---------------------------------------------------------------

    def usage(self, until=None):
        """Usage so far: ``{"server_hours", "vcpu_hours", "gib_hours", "requests"}`` (up to ``until``, a time)."""
        return self.meter.totals(until)

    def bill(self, prices=None, until=None):
        """The usage priced: a :class:`~cloudlab.projects.metering.Bill` (lines and total)."""
        return Bill.of(self.name, self.usage(until), PRICES if prices is None else prices)

    def delete_all(self):
        """Delete every resource of the project (the lab's stop does it too)."""
        for name in self.list_containers():
            self.delete_container(name)
        for name in self.list_servers():
            self.delete_server(name)
        for name in self.list_volumes():
            self.delete_volume(name)
        if self.lab.started_service("shared_file_system"):
            for name in self.list_shares():
                self.delete_share(name)

    def __repr__(self):
        return f"<Project {self.name}>"


class Projects:
    """The lab's projects (``lab.projects``).

    Args:
        lab: the :class:`~cloudlab.lab.Lab` whose services hold the projects' resources.
        clock: the clock usage is recorded by (``time.time``; tests give their own).
    """

    def __init__(self, lab, clock=time.time):
        self.lab = lab
        self.clock = clock
        self._projects = {}
        self._lock = threading.RLock()

    def start(self):
        """Nothing to start: projects are records; their resources belong to the lab's services."""
        return self

    def stop(self):
        """Forget the projects (the lab's services remove their resources when they stop)."""
        self._projects.clear()

    def create_project(self, name, quotas=None, keystone=None):
        """Create project ``name`` with ``quotas`` (missing ones take :data:`DEFAULT_QUOTAS`).

        With ``keystone`` (default: when the lab's identity service already runs) the
        project is made in Keystone too, and ``project.keystone_id`` is its id there: the
        same tenant that OpenStack's APIs and the ``openstack`` CLI know.

        Raises:
            InvalidInput: a bad name or quota.
            Conflict: a project of that name exists.
        """
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidInput(f"project name {name!r} is not valid",
                               fix="use 1-16 lower-case letters, digits and '-', starting with a letter")
        with self._lock:
            if name in self._projects:
                raise Conflict(f"a project named {name!r} exists", fix="choose another name")
            project = Project(self, name, DEFAULT_QUOTAS, self.clock)
            project.set_quota(**(quotas or {}))
            if keystone or (keystone is None and self.lab is not None and self.lab.started_service("identity")):
                identity = self.lab.identity
                try:
                    project.keystone_id = identity.create_project(name, f"cloudlab project {name}")
                except Conflict:
                    project.keystone_id = identity.project_id(name)      # made by an earlier run: the same one
            self._projects[name] = project
            return project

    def get_project(self, name):
        """The project called ``name``.

        Raises:
            NotFound: no such project.
        """
        with self._lock:
            if name in self._projects:
                return self._projects[name]
        raise NotFound(f"no project named {name!r}", fix=f"projects: {', '.join(self._projects) or '(none)'}")

    def list_projects(self):
        """The projects, by name."""
        with self._lock:
            return [self._projects[n] for n in sorted(self._projects)]

    def delete_project(self, name):
        """Delete project ``name`` and everything it owns."""
        project = self.get_project(name)
        project.delete_all()
        with self._lock:
            self._projects.pop(name, None)

    def __repr__(self):
        return f"<Projects of lab {self.lab.name!r}: {', '.join(self._projects) or 'none'}>"
