"""The diagram base: graphviz renders SVG, save() writes it atomically, the text form lists what is drawn."""

import graphviz
import pytest

from cloudlab.teaching.diagrams import Diagram, diagrams_dir


def test_diagram_renders_saves_and_reads_as_text(tmp_path, monkeypatch):
    graph = graphviz.Digraph()
    graph.edge("account", "container")
    diagram = Diagram("demo", graph, lines=["account -> container"])
    assert "<svg" in diagram._repr_svg_() and "account" in diagram.svg()
    path = diagram.save(tmp_path)
    assert path == tmp_path / "demo.svg" and "<svg" in path.read_text()
    assert "account -> container" in (tmp_path / "demo.gv").read_text()
    assert not list(tmp_path.glob("*.tmp"))
    assert str(diagram) == "diagram demo:\n  account -> container"
    monkeypatch.setenv("CLOUDLAB_DIAGRAMS", str(tmp_path / "elsewhere"))
    assert diagrams_dir() == tmp_path / "elsewhere" and diagrams_dir().is_dir()


def _svg_sanitized(svg):
    """The SVG as nbval compares it: labs/sanitize.cfg's svg-text rule applied."""
    import configparser
    import re
    from pathlib import Path
    rules = configparser.ConfigParser()
    rules.read(Path(__file__).resolve().parent.parent / "labs" / "sanitize.cfg")
    return re.sub(rules["svg-text"]["regex"], rules["svg-text"]["replace"], svg)


def test_fixed_size_nodes_keep_the_layout_when_numbers_change():
    from cloudlab.teaching.diagrams import fixed_node
    svgs = []
    for size in ("0.4 MiB", "1234.5 MiB on the host, and much more text"):
        graph = graphviz.Digraph()
        fixed_node(graph, "server_web1", "server web1\nACTIVE")
        fixed_node(graph, "disk", f"overlay\n{size}")
        graph.edge("server_web1", "disk", label="root disk")
        svgs.append(Diagram("demo", graph).svg())
    assert svgs[0] != svgs[1]
    assert _svg_sanitized(svgs[0]) == _svg_sanitized(svgs[1])      # what nbval compares is equal
    kept = _svg_sanitized(svgs[0])      # lines without digits, ids and edge labels are still compared
    assert ">ACTIVE<" in kept and "root disk" in kept and "<title>server_web1</title>" in kept


def test_backing_chains_of_the_labs_servers(tmp_path, monkeypatch):
    """On libvirt's test driver: the overlays are real qcow2 files made by qemu-img on the real image."""
    import types
    import cloudlab as cl
    from cloudlab import compute as compute_mod
    from cloudlab.teaching.diagrams import compute as compute_diagram
    from tests.test_compute_api import NODE_XML, ready
    monkeypatch.setenv("CLOUDLAB_HOME", str(tmp_path / "home"))
    lab = cl.Lab(name="chain")
    node = tmp_path / "node.xml"
    node.write_text(NODE_XML)
    host = compute_mod.LibvirtHost(f"test://{node}")
    compute = compute_mod.Compute(lab, host=host).start()
    try:
        fake = types.SimpleNamespace(compute=compute, image=compute.images)
        assert compute_diagram.backing_chains(fake).lines == ["no servers"]
        web1 = compute.create_server("web1", wait=False)
        compute.create_server("web2", wait=False)
        ready(web1)
        web1.stop()
        web1.resize("m1.small")
        diagram = compute_diagram.backing_chains(fake)
        text = str(diagram)
        assert f"server web1 -> {lab.prefix}web1.qcow2 (root disk)" in text
        assert f"{lab.prefix}web1.qcow2 -> disk.qcow2 (backing file)" in text
        assert f"{lab.prefix}web2.qcow2 -> disk.qcow2 (backing file)" in text
        assert f"server web1 -> {lab.prefix}web1.pre-resize.qcow2 (kept for revert_resize)" in text
        assert text.count("image busybox: disk.qcow2:") == 1          # one base disk, shared
        svg = diagram.svg()
        assert svg.count("<title>image_busybox</title>") == 1 and "<title>server_web2</title>" in svg
        assert "/" not in "".join(diagram.lines).replace(" / ", "")   # file names, never machine paths
    finally:
        compute.stop()
        host.stop()


@pytest.mark.lab
def test_host_diagram_of_the_live_host():
    import cloudlab as cl
    from cloudlab import config
    if not config.netns():
        pytest.skip("lab tests run inside a network namespace: set CLOUDLAB_NETNS (make test does)")
    lab = cl.Lab(name="dhost")
    try:
        diagram = cl.diagrams.host.lab_host(lab)
        text = str(diagram)
        start, end = lab.host.dhcp_range()
        assert f"dhcp: {start} - {end}" in text and f"network {lab.host.network}: {lab.host.subnet}" in text
        assert f"in network namespace {config.netns()}" in text
        assert "service host (the hypervisor host): running" in text
        assert "<title>libvirtd</title>" in diagram.svg()
    finally:
        lab.stop()
