"""Grading learners' notebooks headless against the live lab: ``python -m cloudlab grade NOTEBOOK...``.

The grader runs each notebook top to bottom in a fresh kernel (nbclient), with
errors allowed so that a failing cell costs only its own exercise, and reads
what every check cell (nbgrader metadata ``grade: true``) found.  An exercise
scores its points when its check cell ran without error and
:func:`~cloudlab.teaching.exercise.check_exercise` logged full points for it; it
scores 0 when the cell raised, never ran, or logged less.  The points an
exercise is worth come from the check cell's metadata, as in nbgrader.

One notebook never spoils another's grade: a cell that runs too long is
interrupted (an error in that cell only), a kernel that dies ends only its own
notebook, and a notebook that cannot be read scores 0 on its lab's exercises
while the others are graded.  Each notebook's lab runs under a prefix of its own
(``CLOUDLAB_PREFIX=cloudlab-gXXXX-``), and whatever it left behind is removed
afterwards, so a learner who forgot to clean up cannot make the next learner's
``create_server("web1")`` a Conflict.

Reference solutions live beside the tests (``tests/solutions/NN_name.py``), one
section per exercise, in the percent format editors know::

    # %% solution 06.1
    answer = server.console_log().count("cloudlab-ready")

:func:`fill_solutions` puts each section into the answer cell whose ``grade_id`` is
``06.1-answer``; the test suite grades every lab solved that way and expects full points.
"""

import csv
import dataclasses
import io
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

from .. import config
from ..errors import CloudlabError, InvalidInput, MissingPrerequisite, NotFound
from .exercise import GRADE_LOG_ENV, GRADING_ENV, ID_RE, exercises_of

SOLUTION_HEADER = re.compile(r"^# %% solution (\d{2}\.\d+)\s*$")
DEFAULT_TIMEOUT_S = 600


@dataclasses.dataclass
class Score:
    """One exercise of one notebook, as graded."""

    notebook: str
    exercise: str
    title: str
    points: int
    out_of: int
    note: str = ""      # why it scored 0 when it did: the error, or "not run"


def _nbformat():
    try:
        import nbformat
    except ImportError:
        raise MissingPrerequisite("nbformat is not installed", fix="run `make lab`") from None
    return nbformat


def read_notebook(path):
    """A notebook read from ``path``.

    Raises:
        NotFound: no such file.
        InvalidInput: the file is not a notebook.
    """
    nbformat = _nbformat()
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"no notebook at {path}", fix="give the path of an .ipynb file, e.g. labs/06_compute.ipynb")
    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as exc:  # nbformat raises several kinds for a file that is not a notebook
        raise InvalidInput(f"{path} is not a readable notebook ({type(exc).__name__}: {exc})",
                           fix="give the .ipynb file the lab saved") from None


def _nbgrader(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def exercise_of_grade_id(grade_id):
    """The exercise id a cell's ``grade_id`` names: ``06.1`` for ``06.1`` or ``06_1`` (nbgrader's spelling)."""
    match = re.fullmatch(r"(\d{2})[._](\d+)", grade_id or "")
    return f"{match.group(1)}.{match.group(2)}" if match else grade_id


def check_cells(nb):
    """The check cells of ``nb``: a list of ``(index, exercise id, points)`` in notebook order."""
    found = []
    for index, cell in enumerate(nb.cells):
        meta = _nbgrader(cell)
        if cell.cell_type == "code" and meta.get("grade") and meta.get("grade_id"):
            found.append((index, exercise_of_grade_id(meta["grade_id"]), int(meta.get("points", 0))))
    return found


def answer_cells(nb):
    """The answer cells of ``nb``: exercise id -> cell index (grade_id ``NN.K-answer`` or ``NN_K-answer``)."""
    found = {}
    for index, cell in enumerate(nb.cells):
        meta = _nbgrader(cell)
        grade_id = meta.get("grade_id", "")
        if cell.cell_type == "code" and meta.get("solution") and grade_id.endswith("-answer"):
            found[exercise_of_grade_id(grade_id[: -len("-answer")])] = index
    return found


def load_solutions(path):
    """Exercise id -> source, from a solutions file (see the module docstring).

    Raises:
        NotFound: no such file.
        InvalidInput: text before the first section, or an exercise given twice.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"no solutions file at {path}")
    solutions, current, lines = {}, None, []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = SOLUTION_HEADER.match(line)
        if match:
            if current:
                solutions[current] = "\n".join(lines).strip() + "\n"
            current, lines = match.group(1), []
            if current in solutions:
                raise InvalidInput(f"{path}:{number}: exercise {current} has two solutions")
        elif current:
            lines.append(line)
        elif line.strip() and not line.startswith("#"):
            raise InvalidInput(f"{path}:{number}: code before the first '# %% solution NN.K' line")
    if current:
        solutions[current] = "\n".join(lines).strip() + "\n"
    return solutions


def fill_solutions(nb, solutions):
    """A copy of ``nb`` whose answer cells hold ``solutions`` (exercise id -> source).

    Raises:
        InvalidInput: a solution for an exercise that has no answer cell.
    """
    filled = _nbformat().from_dict(json.loads(json.dumps(nb)))
    cells = answer_cells(filled)
    for exercise_id, source in solutions.items():
        if exercise_id not in cells:
            raise InvalidInput(f"the solution for exercise {exercise_id} has no answer cell "
                               f"(grade_id {exercise_id}-answer) in the notebook",
                               fix=f"the notebook's answer cells are: {', '.join(sorted(cells)) or 'none'}")
        filled.cells[cells[exercise_id]].source = source
    return filled


def execute(nb, cwd, timeout=DEFAULT_TIMEOUT_S, prefix=None):
    """Run ``nb`` in a fresh kernel with errors allowed; returns the grade log's records by exercise id.

    The notebook's cells get their outputs in place.  A cell that runs longer than
    ``timeout`` seconds is interrupted and shows a ``CellTimeout`` error; a kernel
    that dies stops the run (the cells after it keep no outputs, so their
    exercises did not run).

    Args:
        nb: the notebook (changed in place).
        cwd: folder the kernel starts in.
        timeout: seconds any one cell may take.
        prefix: ``CLOUDLAB_PREFIX`` for the kernel (None: the caller's).
    """
    try:
        from nbclient import NotebookClient
        from nbclient.exceptions import DeadKernelError
    except ImportError:
        raise MissingPrerequisite("nbclient is not installed", fix="run `make lab`") from None
    env = {GRADING_ENV: "1"}
    if prefix:
        env["CLOUDLAB_PREFIX"] = prefix
    with tempfile.TemporaryDirectory(prefix="cloudlab-grade-") as tmp:
        log = Path(tmp) / "grades.jsonl"
        log.touch()
        env[GRADE_LOG_ENV] = str(log)
        client = NotebookClient(
            nb, timeout=timeout, kernel_name="python3", allow_errors=True, interrupt_on_timeout=True,
            error_on_timeout={"ename": "CellTimeout", "evalue": f"the cell ran longer than {timeout} s",
                              "traceback": []},
            resources={"metadata": {"path": str(cwd)}})
        try:
            # the kernel's own environment: this process's stays as it is (grading may run in a thread)
            client.execute(env={**os.environ, **env})
        except DeadKernelError:
            pass        # what ran until then is in the log; the rest scores "did not run"
        records = {}
        for line in log.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            records[record.get("id")] = record      # the last check of an exercise counts
    return records


def _clean_prefix(prefix):
    """Remove what a graded notebook left under ``prefix`` (nothing when no lab host is up)."""
    try:
        from .. import host
        if host.load_state() is not None:
            host.clean(prefix)
    except CloudlabError as exc:
        print(f"cloudlab grade: could not clean up {prefix}*: {exc}", file=sys.stderr)
        return
    # the graded labs' own folders (config.folder_tag): only this run's, by their tag
    tag = config.folder_tag(prefix)
    for folder in config.home().glob(f"{tag}*") if tag else ():
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


def _cell_error(cell):
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output.get('ename')}: {output.get('evalue')}"
    return None


def score_notebook(nb, records, name):
    """The scores of an executed notebook ``nb`` given its grade log ``records``."""
    scores = []
    for index, exercise_id, points in check_cells(nb):
        record = records.get(exercise_id)
        title = record.get("title", "") if record else ""
        error = _cell_error(nb.cells[index])
        if error:
            scores.append(Score(name, exercise_id, title, 0, points, f"the check cell raised {error}"))
        elif record is None:
            ran = nb.cells[index].get("execution_count") is not None
            scores.append(Score(name, exercise_id, title, 0, points,
                                "the check did not run" if ran else "the check did not run (the kernel stopped before it)"))
        else:
            earned = points if record.get("points") == record.get("out_of") else 0
            failed = [c["label"] for c in record.get("checks", []) if not c.get("ok")]
            scores.append(Score(name, exercise_id, title, earned, points,
                                "" if earned else f"not yet: {failed[0]}" if failed else "not yet"))
    return scores


def grade(path_or_nb, cwd=None, timeout=DEFAULT_TIMEOUT_S, name=None, isolate=True):
    """Run a notebook against the live lab and return one :class:`Score` per exercise.

    Args:
        path_or_nb: an .ipynb path, or a notebook object (then give ``cwd``).
        cwd: folder the notebook runs in (default: the notebook's own).
        timeout: seconds any one cell may take.
        name: the notebook's name in the scores (default: the file's name).
        isolate: run the notebook's lab under a prefix of its own and remove what it
            left behind afterwards (see the module docstring).
    Raises:
        NotFound, InvalidInput: no such notebook, or not a notebook.
        InvalidInput: the notebook has no graded exercises.
    """
    if isinstance(path_or_nb, (str, Path)):
        path = Path(path_or_nb)
        nb = read_notebook(path)
        cwd = cwd or path.resolve().parent
        name = name or path.name
    else:
        nb = path_or_nb
        cwd = cwd or Path.cwd()
        name = name or "notebook"
    if not check_cells(nb):
        raise InvalidInput(f"{name} has no graded exercises (no cell with nbgrader metadata grade: true)",
                           fix="grade a lab notebook such as labs/06_compute.ipynb")
    prefix = f"{config.prefix()}g{secrets.token_hex(2)}-" if isolate else None
    try:
        records = execute(nb, cwd, timeout=timeout, prefix=prefix)
    finally:
        if prefix:
            _clean_prefix(prefix)
    return score_notebook(nb, records, name)


def ungraded_scores(path, note):
    """Zero scores for a notebook that could not be graded at all.

    A notebook named like a lab (``06_compute.ipynb``, or ``alice-06_compute.ipynb``)
    gets one row per exercise of that lab, so a class's CSV keeps its shape; any
    other gets one row ``(not graded)``.
    """
    name = Path(path).name
    match = re.search(r"(?:^|[^0-9])(\d{2})_[A-Za-z]", name)
    exercises = exercises_of(match.group(1)) if match else []
    if not exercises:
        return [Score(name, "(not graded)", "", 0, 0, note)]
    return [Score(name, e.id, e.title, 0, e.points, note) for e in exercises]


def format_table(scores):
    """Scores as an aligned text table with a total per notebook.

    With more than one notebook a second table follows: per exercise, how many
    notebooks earned it (what an instructor reads to see which exercise a class
    found hard).
    """
    rows = [("notebook", "exercise", "title", "points", "note")]
    by_notebook = {}
    for s in scores:
        rows.append((s.notebook, s.exercise, s.title, f"{s.points}/{s.out_of}", s.note))
        total = by_notebook.setdefault(s.notebook, [0, 0])
        total[0] += s.points
        total[1] += s.out_of
    for notebook, (earned, out_of) in by_notebook.items():
        rows.append((notebook, "total", "", f"{earned}/{out_of}", ""))
    text = _aligned(rows)
    if len(by_notebook) > 1:
        per = {}
        for s in scores:
            if ID_RE.match(s.exercise):
                entry = per.setdefault(s.exercise, [s.title, 0, 0])
                entry[0] = entry[0] or s.title
                entry[1] += s.points == s.out_of
                entry[2] += 1
        summary = [("exercise", "title", "earned by", "", "")]
        for exercise_id in sorted(per, key=lambda e: tuple(int(p) for p in e.split("."))):
            title, earned, graded = per[exercise_id]
            summary.append((exercise_id, title, f"{earned} of {graded} notebooks", "", ""))
        text += "\n\n" + _aligned(summary)
    return text


def _aligned(rows):
    """Rows of 5 columns as text: the first 4 padded, the 5th (a note) only where present."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
    return "\n".join("  ".join(str(col).ljust(w) for col, w in zip(r[:4], widths)).rstrip()
                     + (f"  {r[4]}" if r[4] else "") for r in rows)


def format_csv(scores):
    """Scores as CSV: ``notebook,exercise,points,out_of``, one row per exercise."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["notebook", "exercise", "points", "out_of"])
    for s in scores:
        writer.writerow([s.notebook, s.exercise, s.points, s.out_of])
    return out.getvalue()


def add_arguments(parser):
    """Arguments of ``python -m cloudlab grade``."""
    parser.add_argument("notebooks", nargs="+", metavar="NOTEBOOK", help="learners' .ipynb files")
    parser.add_argument("--csv", action="store_true", help="one row per exercise: notebook,exercise,points,out_of")
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S, help="seconds any one cell may take")


def main(args):
    """Run ``python -m cloudlab grade``.

    Every notebook is graded even when another could not be; one that could not
    be graded at all (no such file, not a notebook, no exercises) scores 0 and its
    error goes to stderr.  Exit status: 0 when every notebook could be graded, 2 otherwise.
    """
    scores, failed = [], 0
    for path in args.notebooks:
        print(f"grading {path} ...", file=sys.stderr, flush=True)
        try:
            scores += grade(path, timeout=args.timeout)
        except CloudlabError as exc:
            failed += 1
            print(f"cloudlab: {exc}", file=sys.stderr, flush=True)
            scores += ungraded_scores(path, f"not graded: {exc.message}")
    print(format_csv(scores) if args.csv else format_table(scores), end="" if args.csv else "\n")
    return 2 if failed else 0
