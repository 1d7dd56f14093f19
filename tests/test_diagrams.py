"""The diagram base: graphviz renders SVG, save() writes it atomically, the text form lists what is drawn."""

import graphviz

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
