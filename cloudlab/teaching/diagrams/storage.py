"""Which server sees which volume or share, drawn from the live lab.

``volumes(lab)`` draws each volume (a cylinder) with an edge to every server it
is attached to, labelled with the name libvirt was asked for and the name the
guest gave the disk.  ``shares(lab)`` draws the share server, its shares (folders)
and the servers: a solid edge where a server has the share mounted now (read from
the guest's ``/proc/mounts``), a dashed one where an access rule would let it mount.
"""

from . import Diagram, graphviz_module


def _servers(lab):
    compute = lab.running("compute")
    return compute.list_servers() if compute is not None else []


def volumes(lab):
    """The lab's volumes and the servers they are attached to (a :class:`Diagram`)."""
    graphviz = graphviz_module()
    graph = graphviz.Digraph("volumes", graph_attr={"rankdir": "LR"}, node_attr={"fontname": "Helvetica"})
    lines = []
    for server in _servers(lab):
        graph.node(f"server {server.name}", f"server {server.name}\n({server.status})", shape="box")
        lines.append(f"server {server.name} ({server.status})")
    storage = lab.running("block_storage")
    for volume in (storage.list_volumes() if storage is not None else []):
        node = f"volume {volume.name}"
        graph.node(node, f"volume {volume.name}\n{volume.size} GiB, {volume.status}", shape="cylinder")
        lines.append(f"volume {volume.name} ({volume.size} GiB, {volume.status})")
        for attachment in volume.attachments:
            seen = attachment.device or "not seen yet"
            graph.edge(node, f"server {attachment.server_name}",
                       label=f"asked {attachment.requested_device}\nguest {seen}")
            lines.append(f"volume {volume.name} -> server {attachment.server_name}: "
                         f"asked {attachment.requested_device}, guest sees {seen}")
    return Diagram("volumes", graph, lines)


def _mounted(server):
    """{export location: (mount point, "rw" or "ro")} of the NFS mounts inside ``server``."""
    if server.status != "ACTIVE":
        return {}
    out = server.run("cat /proc/mounts", timeout=10).stdout
    found = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2].startswith("nfs"):
            found[fields[0]] = (fields[1], "ro" if "ro" in fields[3].split(",") else "rw")
    return found


def shares(lab):
    """The share server, its shares, and which servers mount them or may (a :class:`Diagram`)."""
    graphviz = graphviz_module()
    graph = graphviz.Digraph("shares", graph_attr={"rankdir": "LR"}, node_attr={"fontname": "Helvetica"})
    lines = []
    sfs = lab.running("shared_file_system")
    all_shares = sfs.list_shares() if sfs is not None else []
    if sfs is not None:
        graph.node("share server", f"share server\nNFS-Ganesha {sfs.address}", shape="box3d")
        lines.append(f"share server NFS-Ganesha at {sfs.address}")
    for share in all_shares:
        node = f"share {share.name}"
        graph.node(node, f"share {share.name}\n{share.size} GiB NFS", shape="folder")
        graph.edge("share server", node, label="exports")
        lines.append(f"share {share.name} ({share.size} GiB) exported as {share.export_location}")
    for server in _servers(lab):
        graph.node(f"server {server.name}", f"server {server.name}", shape="box")
        addresses = [a for found in server.addresses.values() for a in found]
        mounted = _mounted(server)
        for share in all_shares:
            rule = next((share.rule_for(a) for a in addresses if share.rule_for(a)), None)
            if share.export_location in mounted:
                point, level = mounted[share.export_location]
                graph.edge(f"share {share.name}", f"server {server.name}", label=f"mounted {point} ({level})")
                lines.append(f"share {share.name} -> server {server.name}: mounted at {point} ({level})")
            elif rule is not None:
                graph.edge(f"share {share.name}", f"server {server.name}", style="dashed",
                           label=f"may mount ({rule.access_level})")
                lines.append(f"share {share.name} -> server {server.name}: may mount ({rule.access_level})")
    return Diagram("shares", graph, lines)
