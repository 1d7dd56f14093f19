"""Compute as a picture: the qcow2 backing chain of every server of the lab.

Each server's root disk is a qcow2 overlay whose *backing file* is the image's base
disk: reads of blocks the server never wrote go down the chain, writes stay in the
overlay.  The picture is read from ``qemu-img info --backing-chain`` of each running
disk, so servers made from one image all point at one base disk, and a server waiting
in VERIFY_RESIZE shows the old disk that a revert would bring back.
"""

from ...errors import CloudlabError
from . import Diagram, fixed_node, graphviz_module

SERVER = "#d8ecd0"
IMAGE = "#dce6f5"


def _mib(n):
    return f"{(n or 0) / 2**20:.1f} MiB"


def _size(entry):
    virtual = entry.get("virtual-size", 0)
    shown = f"{virtual // 2**30} GiB" if virtual >= 2**30 else f"{virtual // 2**20} MiB"
    return f"{entry.get('format', '?')}, {shown} virtual, {_mib(entry.get('actual-size'))} on the host"


def backing_chains(lab):
    """A :class:`Diagram` of the backing chain of every server of ``lab`` (overlay -> ... -> base disk)."""
    graphviz = graphviz_module()
    graph = graphviz.Digraph("backing-chain", graph_attr={"rankdir": "LR", "fontname": "Helvetica",
                                                          "fontsize": "11", "nodesep": "0.3"},
                             edge_attr={"fontname": "Helvetica", "fontsize": "9"})
    images = {image.disk: image.name for image in lab.image.list_images()}
    lines, seen = [], set()

    def file_node(entry, server=None):
        """The node of one file of a chain; base disks of images are shared by every server."""
        path = entry["filename"]
        name = path.rsplit("/", 1)[-1]
        if path in images:
            node, label, color = f"image_{images[path]}", f"image {images[path]}: {name}", IMAGE
        else:
            node, label, color = f"file_{name}", name, "white"
        if node not in seen:
            seen.add(node)
            fixed_node(graph, node, f"{label}\n{_size(entry)}", fillcolor=color, width="3.4")
            lines.append(f"{label}: {_size(entry)}")
        return node

    servers = lab.compute.list_servers()
    for server in servers:
        node = f"server_{server.name}"
        fixed_node(graph, node, f"server {server.name}\n{server.status}", fillcolor=SERVER, width="1.6")
        lines.append(f"server {server.name}: {server.status}")
        try:
            chain = server.backing_chain()
        except CloudlabError:
            chain = []          # a server in ERROR that never got a host has no disk
        if not chain:
            lines.append(f"server {server.name} has no disk")
            continue
        previous = None
        for depth, entry in enumerate(chain):
            current = file_node(entry)
            if depth == 0:
                graph.edge(node, current, label="root disk")
                lines.append(f"server {server.name} -> {entry['filename'].rsplit('/', 1)[-1]} (root disk)")
            else:
                graph.edge(previous, current, label="backing file")
                lines.append(f"{chain[depth - 1]['filename'].rsplit('/', 1)[-1]} -> "
                             f"{entry['filename'].rsplit('/', 1)[-1]} (backing file)")
            previous = current
        if server.resize_pending and server.pre_resize_disk.exists():
            old = {"filename": str(server.pre_resize_disk), "format": "qcow2"}
            try:
                from ...image import qemu_img_info
                old.update(qemu_img_info(server.pre_resize_disk))
            except CloudlabError:
                pass
            kept = file_node(old)
            graph.edge(node, kept, label="kept for revert", style="dashed")
            graph.edge(kept, file_node(chain[-1]), label="backing file", style="dashed")
            lines.append(f"server {server.name} -> {server.pre_resize_disk.name} (kept for revert_resize)")
    if not servers:
        fixed_node(graph, "none", "no servers")
        lines.append("no servers")
    return Diagram("backing-chain", graph, lines)
