"""The one entry object: ``Lab`` turns a topology into running services.

    import cloudlab as cl
    with cl.Lab(cl.AllInOne()) as lab:
        server = lab.compute.create_server("web1", image="cirros-like", flavor="m1.tiny")
        lab.object_store.url

``lab.nodes`` makes the topology's nodes real (each node of a multi-node layout a host
of its own, see :mod:`cloudlab.host.nodes`); ``lab.diagram()`` draws the layout.
Services are named as OpenStack names them (``compute``, ``image``, ``containers``,
``block_storage``, ``object_store``, ``shared_file_system``, ``database``, ``ntp``) and start on
first use, so a lab that only teaches object storage never needs a hypervisor.
``stop()`` stops every service this lab started and removes what it created.
"""

import importlib
import threading

from . import config
from .errors import CloudlabError, Conflict, InvalidInput
from .topology import AllInOne, Topology

# attribute -> "module:Class"; imported on first use so that a missing optional
# dependency of one service (libvirt, say) never breaks the others.
SERVICES = {
    "host": "cloudlab.host:LabHost",
    "nodes": "cloudlab.host.nodes:Nodes",
    "image": "cloudlab.image:ImageService",
    "compute": "cloudlab.compute:Compute",
    "block_storage": "cloudlab.block_storage:BlockStorage",
    "containers": "cloudlab.containers:Containers",
    "object_store": "cloudlab.object_store:ObjectStore",
    "shared_file_system": "cloudlab.shared_file_system:SharedFileSystem",
    "database": "cloudlab.database:Database",
    "ntp": "cloudlab.ntp:TimeService",
    "identity": "cloudlab.api.identity:Identity",
    "platform": "cloudlab.platform:Platform",
    "projects": "cloudlab.projects:Projects",
    "api": "cloudlab.api:OpenStackAPI",
}


class Lab:
    """A running (or startable) lab built from a topology.

    Args:
        topology: a :class:`~cloudlab.topology.Topology`; all-in-one by default.
        name: short name of this lab; part of every resource name it creates.
    """

    def __init__(self, topology=None, name="lab"):
        if topology is None:
            topology = AllInOne()
        if not isinstance(topology, Topology):
            raise InvalidInput(f"Lab() needs a topology such as cl.AllInOne(), not {topology!r}",
                               fix="cl.Lab(cl.AllInOne()), cl.Lab(cl.TwoNode()) or cl.Lab(cl.ThreeNode())")
        if not isinstance(name, str):
            raise InvalidInput(f"lab name must be a string, not {type(name).__name__} {name!r}",
                               fix="e.g. cl.Lab(name='lab')")
        if not name.replace("-", "").isalnum() or not name[0].isalpha() or len(name) > 20:
            raise InvalidInput(f"lab name {name!r} is not usable",
                               fix="use up to 20 letters, digits and dashes, starting with a letter")
        topology.validate()
        self.topology = topology
        self.name = name
        self._services = {}
        self._lock = threading.RLock()
        self._stop_lock = threading.RLock()
        self._stopping = False
        self.started = False

    @property
    def prefix(self):
        """Prefix of every resource this lab creates, e.g. ``cloudlab-lab-``."""
        return f"{config.prefix()}{self.name}-"

    @property
    def home(self):
        """Directory for this lab's state (disks, sockets, logs): ``HOME/NAME``, or ``HOME/TAGNAME`` under another prefix."""
        path = config.home() / f"{config.folder_tag()}{self.name}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def services(self):
        """Names of the services that run now, in the order they started (e.g. ``["host", "compute"]``)."""
        with self._lock:
            return list(self._services)

    def service(self, attribute):
        """The service object for ``attribute`` (see ``SERVICES``), started on first use."""
        with self._lock:
            if attribute not in self._services:
                if self._stopping:
                    # a service's thread asking for one that already stopped must not start it again
                    raise Conflict(f"lab {self.name} is stopping: its {attribute} service is not started again",
                                   fix="start the lab again once it has stopped")
                if attribute not in SERVICES:
                    raise InvalidInput(f"the lab has no service {attribute!r}",
                                       fix=f"use one of {', '.join(sorted(SERVICES))}")
                module_name, class_name = SERVICES[attribute].split(":")
                cls = getattr(importlib.import_module(module_name), class_name)
                svc = cls(self)
                svc.start()
                self._services[attribute] = svc
                self.started = True
            return self._services[attribute]

    def started_service(self, attribute):
        """The service for ``attribute`` if it has been started, else None (never starts one)."""
        with self._lock:
            return self._services.get(attribute)

    @property
    def running(self):
        """Names of the services started so far, in the order they started."""
        with self._lock:
            return list(self._services)

    def __getattr__(self, attribute):
        # only called for attributes not found normally: the lazily started services
        if attribute in SERVICES:
            return self.service(attribute)
        raise AttributeError(attribute)

    def diagram(self, save=True):
        """The layout drawn from the live lab: nodes, services per node, networks, servers, volumes.

        Args:
            save: also write it to ``diagrams/architecture-<layout>.svg`` (one file per layout).
        Returns:
            a :class:`~cloudlab.teaching.diagrams.Diagram` (shown inline in a notebook).
        """
        from .teaching.diagrams import architecture
        picture = architecture.layout(self)
        if save:
            picture.save()
        return picture

    def start(self):
        """Start the lab; services start on first use, so this only marks it started."""
        self.home  # noqa: B018 - creates the state directory
        self.started = True
        return self

    def stop(self):
        """Stop every service this lab started, newest first, removing what they created."""
        errors = []
        # Each service stops without the lab's lock held: a service's own thread (the
        # platform's watcher, say) may hold the service's lock and be asking the lab for
        # another service, and would wait for the lab's lock forever.  A stopping service
        # still finds the older ones it uses (they stop after it); none starts anew.
        with self._stop_lock:
            with self._lock:
                self._stopping = True
                order = list(reversed(list(self._services.items())))
            try:
                for attribute, svc in order:
                    try:
                        svc.stop()
                    except CloudlabError as exc:
                        errors.append(f"{attribute}: {exc}")
                    finally:
                        with self._lock:
                            self._services.pop(attribute, None)
            finally:
                with self._lock:
                    self._stopping = False
                    self.started = False
        if errors:
            raise CloudlabError("some services did not stop cleanly: " + "; ".join(errors))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def __repr__(self):
        running = ", ".join(self._services) or "nothing yet"
        return f"<Lab {self.name!r} {self.topology.name}: {running}>"
