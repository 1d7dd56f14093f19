"""Object storage drawn from the live store: account → containers → objects.

Object storage has three levels and no directory tree: an *account* holds
*containers* (S3: buckets), a container holds *objects* (the bytes plus metadata)
under flat names.  A ``/`` in a name is only a character; the picture groups names
that share a first ``prefix/`` in a dashed box to show what a listing with
``delimiter="/"`` would call a pseudo-directory, and says it is not a folder.

Everything is read through the store's public API (python-swiftclient), as any
client would.  The labels hold only what the store keeps (names, sizes, content
types, ETags, user metadata), never times, so the same objects draw the same SVG.
"""

from . import Diagram, graphviz_module

MAX_OBJECTS = 12        # per container; more are summed up in one "... N more" node


def _size(n):
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


def _etag(etag):
    # the first 8 hex digits name an ETag well enough to compare; a multipart one keeps its -N
    core, dash, parts = etag.partition("-")
    return f"{core[:8]}…-{parts} (multipart)" if dash else f"{core[:8]}…"


def account(store, user=None, max_objects=MAX_OBJECTS):
    """The account of ``user`` (the store's first user by default): its containers and their objects.

    Args:
        store: the lab's object store (``lab.object_store``).
        user: a login such as ``test:tester``.
        max_objects: objects drawn per container.
    Raises:
        NotFound: no such user.  MissingPrerequisite: graphviz is not installed.
    """
    graphviz = graphviz_module()
    conn = store.connection(user)
    account_headers, containers = conn.get_account(full_listing=True)
    account_name = conn.url.rstrip("/").rsplit("/", 1)[-1]
    graph = graphviz.Digraph("object_store", graph_attr={"rankdir": "LR", "fontname": "Helvetica"},
                             node_attr={"fontname": "Helvetica", "fontsize": "10"})
    graph.node("account", f"account {account_name}\n{len(containers)} container(s)",
               shape="box3d", style="filled", fillcolor="#dbe9f6")
    lines = [f"account {account_name}: {len(containers)} container(s)"]
    for ci, info in enumerate(containers):
        cid = f"c{ci}"
        graph.node(cid, f"container {info['name']}\n{info['count']} object(s) · {_size(info['bytes'])}",
                   shape="folder", style="filled", fillcolor="#fdf0d5")
        graph.edge("account", cid)
        lines.append(f"{account_name} -> container {info['name']}: {info['count']} object(s), {info['bytes']} bytes")
        _, objects = conn.get_container(info["name"], full_listing=True)
        groups = {}
        for oi, obj in enumerate(objects[:max_objects]):
            oid = f"o{ci}_{oi}"
            meta = {k[len("x-object-meta-"):]: v for k, v in conn.head_object(info["name"], obj["name"]).items()
                    if k.startswith("x-object-meta-") and k != "x-object-meta-mtime"}
            label = [obj["name"], f"{_size(obj['bytes'])} · {obj['content_type']}", f"ETag {_etag(obj['hash'])}"]
            label += [f"{k}: {v}" for k, v in sorted(meta.items())]
            prefix = obj["name"].split("/", 1)[0] + "/" if "/" in obj["name"] else None
            groups.setdefault(prefix, []).append((oid, "\n".join(label)))
            graph.edge(cid, oid)
            metadata = ", ".join(f"{k}={v}" for k, v in sorted(meta.items()))
            lines.append(f"{info['name']} -> object {obj['name']}: {obj['bytes']} bytes, {obj['content_type']}, "
                         f"ETag {_etag(obj['hash'])}" + (f", {metadata}" if metadata else ""))
        for gi, (prefix, nodes) in enumerate(groups.items()):
            target = graph
            if prefix:
                target = graphviz.Digraph(f"cluster_{cid}_{gi}", graph_attr={
                    "label": f"names starting {prefix}\n(a prefix, not a folder)", "style": "dashed",
                    "fontsize": "9", "fontname": "Helvetica"})
            for oid, label in nodes:
                target.node(oid, label, shape="note", style="filled", fillcolor="#e8f5e9")
            if prefix:
                graph.subgraph(target)
        if len(objects) > max_objects:
            graph.node(f"{cid}_more", f"… {len(objects) - max_objects} more", shape="plaintext")
            graph.edge(cid, f"{cid}_more", style="dotted")
            lines.append(f"{info['name']} -> {len(objects) - max_objects} more object(s)")
    return Diagram("object_store", graph, lines)
