"""Storing a lab executed: ``python -m cloudlab store-notebook labs/NN_name.ipynb ...``.

Labs are kept in the repository *with* their outputs, so a learner can read the
expected results before running anything, and nbval compares a fresh run with
them.  After a change to a lab or to what it shows, run it again in place, the
way the tests run it (plain-text widgets, in the lab host's network namespace):
``make notebooks NB=labs/04_hypervisors.ipynb``.  A cell that raises stops the
run and nothing is written, so a half-run lab is never stored.
"""

import os
import sys
from pathlib import Path

from ..errors import CloudlabError, MissingPrerequisite
from .grade import read_notebook

DEFAULT_TIMEOUT_S = 900


def store(path, timeout=DEFAULT_TIMEOUT_S):
    """Execute the notebook at ``path`` top to bottom in a fresh kernel and write it back with its outputs.

    Raises:
        NotFound, InvalidInput: no such notebook, or not a notebook.
        CloudlabError: a cell raised (the notebook is left as it was).
    """
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError
    except ImportError:
        raise MissingPrerequisite("nbclient is not installed", fix="run `make lab`") from None
    path = Path(path)
    nb = read_notebook(path)
    # the text form of the widgets is what stored notebooks show (tests/conftest.py sets the same)
    os.environ["CLOUDLAB_WIDGETS"] = "text"
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.resolve().parent)}})
    try:
        client.execute()
    except CellExecutionError as exc:
        raise CloudlabError(f"{path.name}: a cell raised, so nothing was written:\n{str(exc)[-2000:]}",
                            fix="fix the cell (or the lab host: `python -m cloudlab doctor`) and run again") from None
    tmp = path.with_suffix(".ipynb.tmp")
    nbformat.write(nb, str(tmp))
    os.replace(tmp, path)


def add_arguments(parser):
    """Arguments of ``python -m cloudlab store-notebook``."""
    parser.add_argument("notebooks", nargs="+", metavar="NOTEBOOK", help="lab .ipynb files to run and store")
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S, help="seconds any one cell may take")


def main(args):
    """Run ``python -m cloudlab store-notebook``."""
    for notebook in args.notebooks:
        print(f"running {notebook} ...", file=sys.stderr, flush=True)
        store(notebook, timeout=args.timeout)
        print(f"stored {notebook}", file=sys.stderr, flush=True)
    return 0
