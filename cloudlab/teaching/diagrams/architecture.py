"""A layout as a picture: its nodes, the services each runs, its networks, servers and volumes.

The note's three lost pictures (all-in-one, two-node, three-node), drawn again from what
runs: each node is a box holding the services found among its processes (libvirtd,
dnsmasq, qemu-storage-daemon, the NTP server: :meth:`cloudlab.host.nodes.Node.services`),
the servers running on each compute node and the volumes each storage node serves.  The
management network joins every node; the tenant network (VXLAN) joins the compute nodes
and the controller.  The API services found among the controller's processes (in a
multi-node layout the object store, Keystone and Glance's API run there) are drawn from
them too; the ones the lab runs in its own Python process (the other REST APIs, and
every API of the all-in-one layout) are drawn on the controller, where the install
guide puts them, and say that they are reached on loopback.
"""

from . import Diagram, fixed_node, graphviz_module
from ...host.nodes import SERVICE_OF

API_SERVICES = {"object_store": "object store proxy (Swift / S3), in the lab's process",
                "image": "image registry (Glance), in the lab's process",
                "identity": "identity (Keystone), in the lab's process",
                "api": "OpenStack REST APIs, in the lab's process", "ntp": "lab NTP servers, in the lab's process"}
# a program found on a node, as the picture names it (short: the boxes have one size)
SHORT = {"libvirtd": "libvirtd (hypervisor daemon)", "virtlogd": "virtlogd (console logs)",
         "dnsmasq": "dnsmasq (DHCP agent)", "qemu-storage-daemon": "qemu-storage-daemon (NBD)",
         "ntp": "NTP server", "object-store": "Swift / S3 proxy", "object-server": "Swift object server",
         "gunicorn": "Keystone (gunicorn)", "glance-api": "glance-api (images)"}
# the lab's services that are a node's process in a multi-node layout: drawn from the processes found
API_PROGRAM = {"object_store": "object-store", "identity": "gunicorn", "image": "glance-api"}
API_SHORT = {"object_store": "Swift / S3 proxy", "image": "Glance (images)", "identity": "Keystone",
             "api": "OpenStack APIs", "ntp": "lab NTP"}
ROLE_COLOURS = {"controller": "#e3ecf7", "compute": "#e6f2df", "storage": "#f7eedf"}


def _colour(node):
    for role in ("controller", "compute", "storage"):
        if node.has(role):
            return ROLE_COLOURS[role]
    return "white"


def layout(lab):
    """A :class:`Diagram` of ``lab``'s layout, read from the live lab (starts its nodes if needed).

    Named ``architecture-<layout>`` (e.g. ``architecture-three-node``) so that ``save()``
    keeps one picture per layout in ``diagrams/``.
    """
    graphviz = graphviz_module()
    nodes = lab.nodes
    topo = lab.topology
    graph = graphviz.Digraph("architecture", graph_attr={"rankdir": "LR", "fontname": "Helvetica",
                                                         "fontsize": "11", "compound": "true",
                                                         "nodesep": "0.3", "ranksep": "0.6"},
                             edge_attr={"fontname": "Helvetica", "fontsize": "9", "arrowhead": "none"})
    lines = [f"layout {topo.name}: {len(topo.nodes)} nodes"]
    compute = lab.started_service("compute")
    servers = compute.list_servers() if compute is not None else []
    storage = lab.started_service("block_storage")
    volumes = storage.list_volumes() if storage is not None else []
    api = [name for name in lab.services if name in API_SERVICES]

    for node in nodes:
        roles = " + ".join(node.roles)
        remote = getattr(node, "remote", None)
        where = ("this machine (the lab host)" if node.local else
                 f"another machine, {node.address}\nreached by {remote.split(':', 1)[0]}" if remote else f"{node.address}")
        state = "" if node.is_up else " - STOPPED"
        with graph.subgraph(name=f"cluster_{node.name}") as box:
            box.attr(label=f"{node.name} ({roles})\n{where}{state}", style="rounded,filled",
                     fillcolor=_colour(node), fontname="Helvetica")
            fixed_node(box, f"{node.name}_anchor", f"{node.name}\nhost name {node.hostname}",
                       width="2.6", height="0.5")
            lines.append(f"node {node.name} ({roles})" + (" stopped" if not node.is_up else ""))
            programs = []
            for _, program, _ in (node.processes() if node.is_up else []):
                if program in SHORT and program not in programs:
                    programs.append(program)
            services = [(SHORT[p], SERVICE_OF[p]) for p in programs]
            if node.has("controller"):
                services += [(f"{API_SHORT[name]}\n(in the lab's process)", API_SERVICES[name]) for name in api
                             if API_PROGRAM.get(name) not in programs]
            for i, (label, service) in enumerate(services):
                fixed_node(box, f"{node.name}_svc{i}", label, width="2.6", height="0.5")
                lines.append(f"  service {service}")
            for server in servers:
                if server.host == node.hostname or (node.local and server.node is lab.host):
                    fixed_node(box, f"{node.name}_server_{server.name}", f"server {server.name}\n{server.status}",
                               width="2.6", height="0.5", fillcolor="#d8ecd0" if server.status == "ACTIVE" else "white")
                    lines.append(f"  server {server.name} ({server.status})")
            if node.has("storage"):
                for volume in volumes:
                    fixed_node(box, f"{node.name}_volume_{volume.name}",
                               f"volume {volume.name}\n{volume.size} GiB, {volume.status}",
                               width="2.6", height="0.5", shape="cylinder")
                    lines.append(f"  volume {volume.name} ({volume.size} GiB, {volume.status})")

    if nodes.multi:
        fixed_node(graph, "mgmt", f"management network {nodes.mgmt_subnet}\n(bridge {nodes.bridge}, veths)",
                   fillcolor="#f0f0f0")
        fixed_node(graph, "tenant", f"tenant network {nodes.tenant_subnet}\nVXLAN VNI 100 between the nodes",
                   fillcolor="#fff6d5")
        lines += [f"network management {nodes.mgmt_subnet}", f"network tenant {nodes.tenant_subnet} (VXLAN)"]
        for node in nodes:
            if getattr(node, "remote", None):
                # not on the management bridge nor the tenant VXLAN: the lab reaches it over its URI
                lines.append(f"{node.name} -- remote (libvirt over {node.remote.split(':', 1)[0]})")
                continue
            graph.edge(f"{node.name}_anchor", "mgmt", ltail=f"cluster_{node.name}")
            lines.append(f"{node.name} -- management")
            if node.has("compute") or node.has("controller"):
                graph.edge(f"{node.name}_anchor", "tenant", ltail=f"cluster_{node.name}", style="dashed")
                lines.append(f"{node.name} -- tenant (VXLAN)")
    else:
        fixed_node(graph, "tenant", "lab network (libvirt bridge + dnsmasq)", fillcolor="#fff6d5")
        lines.append("network lab (libvirt)")
        for node in nodes:
            graph.edge(f"{node.name}_anchor", "tenant", ltail=f"cluster_{node.name}")
            lines.append(f"{node.name} -- lab network")
    return Diagram(f"architecture-{topo.name}", graph, lines)
