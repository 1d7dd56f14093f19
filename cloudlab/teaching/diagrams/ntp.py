"""The NTP hierarchy drawn from the live servers: who syncs from whom, at which stratum, how far off.

Stratum 0 is a reference clock (GPS, an atomic clock, a radio receiver; in the lab the
host clock stands in for one); a stratum 1 server reads it; every server below syncs
from the one above and announces its stratum + 1.  Each box shows what the member
announces now (stratum, reference ID) and its offset from stratum 1, read from its
clock at drawing time; each arrow, the delay δ of the member's last exchange.

Offsets and delays change every moment, so the SVG does too.  The text form (``str()``)
says only what is stable: who syncs from whom, at which stratum, and whether the
offset is within a tolerance (1 ms by default), so it can be compared between runs.
"""

from . import Diagram, graphviz_module


def _seconds(value):
    magnitude = abs(value)
    if magnitude >= 0.1:
        return f"{value:+.3f} s"
    if magnitude >= 1e-4:
        return f"{value * 1e3:+.2f} ms"
    return f"{value * 1e6:+.1f} µs"


def _closeness(offset, tolerance):
    if abs(offset) < tolerance:
        return f"within {tolerance * 1e3:g} ms of stratum 1"
    return f"{offset:+.1f} s from stratum 1"


def hierarchy(h, tolerance=1e-3):
    """The members of a :class:`~cloudlab.ntp.Hierarchy`, as a tree from the reference clock down.

    Args:
        h: a running hierarchy (``lab.ntp.hierarchy(...)``).
        tolerance: offsets below this (seconds) read "within ... of stratum 1" in the text form.
    Raises:
        MissingPrerequisite: graphviz is not installed.
    """
    graphviz = graphviz_module()
    graph = graphviz.Digraph("ntp_hierarchy", graph_attr={"rankdir": "TB", "fontname": "Helvetica"},
                             node_attr={"fontname": "Helvetica", "fontsize": "10"},
                             edge_attr={"fontname": "Helvetica", "fontsize": "9"})
    graph.node("ref", "reference clock\n(stratum 0: here the host clock)", shape="ellipse", style="dashed")
    by_url = {m.url: m for m in h.members if hasattr(m, "url")}
    reference = h.stratum1.clock.offset()
    lines = ["reference clock (stratum 0) -> s1"]
    ranks = {}
    for i, member in enumerate(h.members):
        node = f"m{i}"
        ranks.setdefault(member.stratum, []).append(node)
        offset = member.clock.offset() - reference
        serves = hasattr(member, "url")
        role = "server" if serves else "client (serves nobody)"
        refid = member.refid if serves else "-"
        announces = f"stratum {member.stratum} · refid {refid}" if serves else f"stratum {member.stratum} (announced to nobody)"
        label = f"{member.name} · {role}\n{announces}\noffset {_seconds(offset)}"
        graph.node(node, label, shape="box", style="rounded,filled",
                   fillcolor="#dbe9f6" if serves else "#e8f5e9")
        syncer = getattr(member, "syncer", None)
        if syncer is None:
            graph.edge("ref", node, label="reads")
            lines.append(f"{member.name}: stratum {member.stratum}, {role}, refid {refid}, the reference")
            continue
        upstream_names = []
        for up in syncer.upstreams:
            parent = by_url.get(f"{up.host}:{up.port}")
            if parent is None:
                continue
            upstream_names.append(parent.name)
            delay = f"δ {_seconds(up.last.delay).lstrip('+')}" if up.last is not None else "no answer yet"
            graph.edge(f"m{h.members.index(parent)}", node, label=delay)
        lines.append(f"{member.name}: stratum {member.stratum}, {role}, syncs from {', '.join(upstream_names)}, "
                     f"{_closeness(offset, tolerance)}")
    for nodes in ranks.values():
        with graph.subgraph() as same:
            same.attr(rank="same")
            for node in nodes:
                same.node(node)
    return Diagram("ntp_hierarchy", graph, lines)
