"""The lab host as a picture: the machine, its libvirt daemon and network, and the lab's services.

Drawn from what the lab reports now: whether libvirtd is cloudlab's own (and in which
network namespace), the lab network's subnet, bridge and DHCP range (libvirt's
dnsmasq), the servers plugged into it, and which of the lab's services have started.
Services that start on first use are summed up in one node, so the picture keeps its
shape as the course adds services.
"""

from . import Diagram, fixed_node, graphviz_module

# the OpenStack service each lab service stands for
OPENSTACK_NAMES = {"host": "the hypervisor host", "image": "Glance", "compute": "Nova",
                   "object_store": "Swift / S3", "ntp": "time (NTP)", "block_storage": "Cinder",
                   "shared_file_system": "Manila", "database": "Trove", "containers": "Zun"}
RUNNING = "#d8ecd0"
NOT_STARTED = "#eeeeee"


def lab_host(lab):
    """A :class:`Diagram` of ``lab``'s host: machine, namespace, libvirtd, network, DHCP, servers, services.

    Starts the lab host when it does not run yet (the picture is of a live host).
    """
    graphviz = graphviz_module()
    host = lab.host
    state = host.state
    graph = graphviz.Digraph("host", graph_attr={"rankdir": "LR", "fontname": "Helvetica", "fontsize": "11",
                                                 "nodesep": "0.25", "ranksep": "0.5"},
                             edge_attr={"fontname": "Helvetica", "fontsize": "9"})
    lines = []

    with graph.subgraph(name="cluster_machine") as machine:
        machine.attr(label=f"this machine (Linux; guests run with {state.accel.upper()})", style="rounded")
        where = machine
        if state.netns:
            inner = machine.subgraph(name="cluster_netns")
            where = inner.__enter__()
            where.attr(label=f"network namespace {state.netns}", style="dashed,rounded")
        daemon = "cloudlab's own, private" if state.private else "the system's"
        fixed_node(where, "libvirtd", f"libvirtd\n({daemon})")
        lines.append(f"libvirtd: {daemon}" + (f", in network namespace {state.netns}" if state.netns else ""))
        fixed_node(where, "network", f"lab network {host.network}\n{host.subnet}, isolated (no forwarding)")
        start, end = host.dhcp_range()
        fixed_node(where, "dhcp", f"dnsmasq: DHCP\n{start} - {end}")
        fixed_node(where, "bridge", f"bridge {host.bridge}\ngateway {host.gateway}")
        lines += [f"network {host.network}: {host.subnet}, isolated", f"dhcp: {start} - {end}",
                  f"bridge {host.bridge}: gateway {host.gateway}"]
        servers = lab.compute.list_servers() if "compute" in lab.services else []
        for server in servers:
            addresses = ", ".join(a for found in server.addresses.values() for a in found) or "no address yet"
            fixed_node(where, f"server_{server.name}", f"server {server.name} (QEMU)\n{server.status}, {addresses}",
                       fillcolor=RUNNING if server.status == "ACTIVE" else "white")
            lines.append(f"server {server.name}: {server.status}, {addresses}")
        if state.netns:
            inner.__exit__(None, None, None)

    with graph.subgraph(name="cluster_lab") as services:
        services.attr(label=f"cl.Lab(name={lab.name!r})", style="rounded")
        running = lab.services
        for name in running:
            fixed_node(services, f"service_{name}", f"lab.{name}\n{OPENSTACK_NAMES.get(name, name)}",
                       fillcolor=RUNNING)
            lines.append(f"service {name} ({OPENSTACK_NAMES.get(name, name)}): running")
        from ...lab import SERVICES
        waiting = [name for name in SERVICES if name not in running]
        if waiting:
            fixed_node(services, "service_others", f"{len(waiting)} more services\nstart on first use",
                       fillcolor=NOT_STARTED, style="rounded,filled,dashed")
            lines.append("other services: start on first use")

    graph.edge("libvirtd", "network", label="creates")
    graph.edge("network", "bridge")
    graph.edge("dhcp", "bridge", label="serves")
    lines += ["libvirtd -> network", "network -> bridge", "dhcp -> bridge"]
    for server in servers:
        graph.edge(f"server_{server.name}", "bridge", label="NIC")
        graph.edge("libvirtd", f"server_{server.name}", label="runs")
        lines += [f"server {server.name} -> bridge", f"libvirtd -> server {server.name}"]
    for name in lab.services:
        if name in ("host", "compute"):
            graph.edge(f"service_{name}", "libvirtd", label="talks to")
            lines.append(f"service {name} -> libvirtd")
    return Diagram("host", graph, lines)
