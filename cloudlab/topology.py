"""Lab layouts as plain data: which nodes exist and which services each runs.

A topology touches nothing: building one makes no libvirt call and starts no
server.  ``Lab(topology).start()`` makes it real.  The layouts follow the
OpenStack install guide's architectures that the source note lists:

* all-in-one: one node runs every service (controller, compute, storage);
* two-node: a controller (API services, NTP server, object store) and a compute node;
* three-node: controller, compute and a storage node (block and object storage).

As the install guide says, more compute nodes can be added: ``cl.TwoNode(compute_nodes=2)``
or ``cl.ThreeNode(compute_nodes=2)`` have ``compute1`` and ``compute2``, between which
servers are scheduled and live-migrated.  A layout can also be built node by node::

    topo = cl.Topology("mine")
    topo.add_node("controller", "controller", "storage")
    topo.add_node("compute1", "compute", ram_mib=1024, vcpus=2)

A compute node can also be another machine of the classroom, reached through its
libvirt URI (``qemu+ssh://root@ADDR/system``): the lab connects to that machine's
libvirtd and creates the servers placed there over the connection (see
:class:`cloudlab.host.nodes.RemoteNode` for what that machine must provide)::

    topo.add_node("desk7", "compute", uri="qemu+ssh://root@192.168.1.27/system?keyfile=/root/.ssh/lab&no_verify=1")
"""

import re
from urllib.parse import urlsplit
from dataclasses import dataclass, field

from .errors import InvalidInput

CONTROLLER = "controller"
COMPUTE = "compute"
STORAGE = "storage"
ROLES = (CONTROLLER, COMPUTE, STORAGE)
NODE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")


@dataclass(frozen=True)
class Node:
    """One node of a layout: a name and the roles it plays."""

    name: str
    roles: tuple
    ram_mib: int = None     # what a compute node offers its guests (None: the lab's default)
    vcpus: int = None
    uri: str = None         # a remote machine's libvirt URI (qemu+ssh://root@ADDR/system)
    address: str = None     # that machine's address (default: the URI's host)

    def has(self, role):
        """True when this node plays ``role``."""
        return role in self.roles


@dataclass
class Topology:
    """A named list of nodes; subclasses fill it in ``build``."""

    name: str = "custom"
    nodes: list = field(default_factory=list)

    def __post_init__(self):
        if not self.nodes:
            self.build()

    def build(self):
        """Add this layout's nodes; the base class adds none."""

    def add_node(self, name, *roles, ram_mib=None, vcpus=None, uri=None, address=None):
        """Add a node playing ``roles``; returns it.

        Args:
            name: the node's name, also its host name (letters, digits and dashes, up to 20).
            roles: some of ``controller``, ``compute``, ``storage``.
            ram_mib, vcpus: what a compute node offers its guests (the scheduler's totals).
            uri: a remote machine's libvirt URI (``qemu+ssh://root@ADDR/system?keyfile=...``): the
                node is that machine, not a namespace of this one; compute nodes only.
            address: the remote machine's address (default: the URI's host).
        Raises:
            InvalidInput: a bad name or role, no role, a name already used, a bad size, a bad
                URI, or a URI on a node that is not a compute node only.
        """
        if not isinstance(name, str) or not NODE_NAME.match(name):
            raise InvalidInput(f"node name {name!r} is not usable",
                               fix="use up to 20 letters, digits and dashes, starting with a letter")
        if not roles:
            raise InvalidInput(f"node {name!r} has no role", fix=f"give it some of {', '.join(ROLES)}")
        for value, what in ((ram_mib, "ram_mib"), (vcpus, "vcpus")):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise InvalidInput(f"{what}={value!r} of node {name!r} is not a whole number >= 1")
        for role in roles:
            if role not in ROLES:
                raise InvalidInput(f"unknown role {role!r} for node {name!r}",
                                   fix=f"use one of {', '.join(ROLES)}")
        if any(node.name == name for node in self.nodes):
            raise InvalidInput(f"node {name!r} is already in the {self.name} layout")
        if uri is not None:
            address = _remote_address(name, roles, uri, address)
        elif address is not None:
            raise InvalidInput(f"node {name!r} has an address but no uri",
                               fix="the nodes of this machine get their addresses from the lab; give uri= "
                                   "for another machine")
        node = Node(name, tuple(roles), ram_mib=ram_mib, vcpus=vcpus, uri=uri, address=address)
        self.nodes.append(node)
        return node

    def validate(self):
        """Check that every role is played by some node; ``Lab`` calls this before using a layout."""
        for role in ROLES:
            if not self.nodes_with(role):
                raise InvalidInput(f"the {self.name} layout has no {role} node",
                                   fix=f"add a node with the {role!r} role")

    def nodes_with(self, role):
        """The nodes that play ``role``, in order."""
        return [node for node in self.nodes if node.has(role)]

    def node_for(self, role):
        """The first node that plays ``role``."""
        return self.nodes_with(role)[0]

    def __getitem__(self, name):
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


def _remote_address(name, roles, uri, address):
    """The address of remote node ``name`` (its URI's host when not given), or InvalidInput."""
    parts = urlsplit(uri) if isinstance(uri, str) else None
    if parts is None or not parts.scheme.startswith("qemu") or parts.path not in ("/system", "/session"):
        raise InvalidInput(f"uri={uri!r} of node {name!r} is not a libvirt URI of a remote QEMU host",
                           fix="give e.g. 'qemu+ssh://root@192.168.1.27/system' (or qemu+tcp://, qemu+tls://)")
    if not parts.hostname:
        raise InvalidInput(f"uri={uri!r} of node {name!r} names no machine",
                           fix="put the remote machine's address in it: qemu+ssh://root@ADDR/system")
    if tuple(roles) != (COMPUTE,):
        # the controller's and storage node's services are processes this machine runs
        raise InvalidInput(f"node {name!r} is a remote machine and plays {', '.join(roles)}: a remote node "
                           "can only be a compute node", fix=f"add_node({name!r}, 'compute', uri=...)")
    if address is not None and not isinstance(address, str):
        raise InvalidInput(f"address={address!r} of node {name!r} is not an address")
    return address or parts.hostname


class AllInOne(Topology):
    """One node runs the controller, compute and storage services."""

    def __init__(self):
        super().__init__(name="all-in-one")

    def build(self):
        """One node, every role."""
        self.add_node("controller", CONTROLLER, COMPUTE, STORAGE)


def _compute_count(value):
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 4:
        raise InvalidInput(f"compute_nodes={value!r} is not usable", fix="give 1 to 4 compute nodes")
    return value


class TwoNode(Topology):
    """A controller (with storage) and a separate compute node (or ``compute_nodes`` of them)."""

    def __init__(self, compute_nodes=1):
        self.compute_nodes = _compute_count(compute_nodes)
        super().__init__(name="two-node")

    def build(self):
        """Controller plus storage on one node, compute on the other(s)."""
        self.add_node("controller", CONTROLLER, STORAGE)
        for i in range(1, self.compute_nodes + 1):
            self.add_node(f"compute{i}", COMPUTE)


class ThreeNode(Topology):
    """Controller, compute and storage each on its own node (``compute_nodes`` compute nodes)."""

    def __init__(self, compute_nodes=1):
        self.compute_nodes = _compute_count(compute_nodes)
        super().__init__(name="three-node")

    def build(self):
        """One node per role."""
        self.add_node("controller", CONTROLLER)
        for i in range(1, self.compute_nodes + 1):
            self.add_node(f"compute{i}", COMPUTE)
        self.add_node("block1", STORAGE)
