"""Lab layouts as plain data: which nodes exist and which services each runs.

A topology touches nothing: building one makes no libvirt call and starts no
server.  ``Lab(topology).start()`` makes it real.  The layouts follow the
OpenStack install guide's architectures that the source note lists:

* all-in-one: one node runs every service (controller, compute, storage);
* two-node: a controller (API services, NTP server, object store) and a compute node;
* three-node: controller, compute and a storage node (block and object storage).
"""

from dataclasses import dataclass, field

from .errors import InvalidInput

CONTROLLER = "controller"
COMPUTE = "compute"
STORAGE = "storage"
ROLES = (CONTROLLER, COMPUTE, STORAGE)


@dataclass(frozen=True)
class Node:
    """One node of a layout: a name and the roles it plays."""

    name: str
    roles: tuple

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

    def add_node(self, name, *roles):
        """Add a node playing ``roles``; returns it."""
        for role in roles:
            if role not in ROLES:
                raise InvalidInput(f"unknown role {role!r} for node {name!r}",
                                   fix=f"use one of {', '.join(ROLES)}")
        if any(node.name == name for node in self.nodes):
            raise InvalidInput(f"node {name!r} is already in the {self.name} layout")
        node = Node(name, tuple(roles))
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


class AllInOne(Topology):
    """One node runs the controller, compute and storage services."""

    def __init__(self):
        super().__init__(name="all-in-one")

    def build(self):
        """One node, every role."""
        self.add_node("controller", CONTROLLER, COMPUTE, STORAGE)


class TwoNode(Topology):
    """A controller (with storage) and a separate compute node."""

    def __init__(self):
        super().__init__(name="two-node")

    def build(self):
        """Controller plus storage on one node, compute on the other."""
        self.add_node("controller", CONTROLLER, STORAGE)
        self.add_node("compute1", COMPUTE)


class ThreeNode(Topology):
    """Controller, compute and storage each on its own node."""

    def __init__(self):
        super().__init__(name="three-node")

    def build(self):
        """One node per role."""
        self.add_node("controller", CONTROLLER)
        self.add_node("compute1", COMPUTE)
        self.add_node("block1", STORAGE)
