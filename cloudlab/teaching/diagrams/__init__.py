"""Pictures drawn from the live lab with graphviz: one module per topic, one base here.

A diagram is built from what the lab reports *now* (its servers, disks, objects,
clocks), never drawn by hand, so it always shows what really runs.  Each topic's
module (``host``, ``compute``, ``object_store``, ``ntp``, ...) has functions that
take a lab or a service and return a :class:`Diagram`.  A Diagram shows itself
inline in a notebook as SVG, has a plain-text form for terminals and nbval
(``str(diagram)``: the same nodes and edges as lines), and ``save()`` writes it
into the repository's ``diagrams/`` folder (or ``CLOUDLAB_DIAGRAMS``).
"""

import importlib
import os
from pathlib import Path

from ...errors import MissingPrerequisite

# the repository's diagrams/ folder, when the package runs from a checkout (make lab installs it editable)
_REPO_DIAGRAMS = Path(__file__).resolve().parents[3] / "diagrams"


def graphviz_module():
    """The ``graphviz`` Python module.

    Raises:
        MissingPrerequisite: the graphviz package is not installed.
    """
    try:
        import graphviz
    except ImportError:
        raise MissingPrerequisite("the graphviz Python package is not installed",
                                  fix="run `make lab` (it installs graphviz into .venv)") from None
    return graphviz


def diagrams_dir():
    """Where ``Diagram.save()`` writes: ``CLOUDLAB_DIAGRAMS``, else the checkout's ``diagrams/``, else the lab home's."""
    configured = os.environ.get("CLOUDLAB_DIAGRAMS")
    if configured:
        path = Path(configured)
    elif _REPO_DIAGRAMS.is_dir():
        path = _REPO_DIAGRAMS
    else:
        from ... import config
        path = config.home() / "diagrams"
    path.mkdir(parents=True, exist_ok=True)
    return path


class Diagram:
    """A graphviz graph with a name and a text form.

    Args:
        name: file name stem for ``save()`` (e.g. ``host``).
        graph: a ``graphviz.Digraph`` or ``graphviz.Graph``.
        lines: the diagram as text, one line per node or edge (what ``str()`` shows).
    """

    def __init__(self, name, graph, lines=()):
        self.name = name
        self.graph = graph
        self.lines = list(lines)

    def svg(self):
        """The diagram rendered as SVG text.

        Raises:
            MissingPrerequisite: graphviz's ``dot`` program is missing.
        """
        graphviz = graphviz_module()
        try:
            data = self.graph.pipe(format="svg")
        except graphviz.ExecutableNotFound:
            raise MissingPrerequisite("graphviz's dot program is not installed",
                                      fix="run `make lab`, or `sudo apt-get install graphviz`") from None
        return data.decode("utf-8")

    def _repr_svg_(self):
        return self.svg()

    def save(self, folder=None):
        """Write ``NAME.svg`` (and the graphviz source, ``NAME.gv``) into ``folder``; returns the SVG's path."""
        folder = Path(folder) if folder else diagrams_dir()
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{self.name}.svg"
        tmp = target.with_suffix(".svg.tmp")
        tmp.write_text(self.svg(), encoding="utf-8")
        os.replace(tmp, target)
        (folder / f"{self.name}.gv").write_text(self.graph.source, encoding="utf-8")
        return target

    def __str__(self):
        return "\n".join([f"diagram {self.name}:"] + [f"  {line}" for line in self.lines])

    def __repr__(self):
        return f"<Diagram {self.name}: {len(self.lines)} lines>"


def __getattr__(name):
    # topic modules load on first use (``cl.diagrams.object_store.account(store)``), so that
    # importing cloudlab costs nothing and a topic's dependencies load only when it is drawn
    if name.startswith("_"):
        raise AttributeError(name)
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"cloudlab.diagrams has no topic {name!r}") from None
