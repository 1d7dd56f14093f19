"""The labs as an nbgrader course: ``python -m cloudlab nbgrader-source COURSE [LAB...]``.

nbgrader (https://nbgrader.readthedocs.io) starts from *source* notebooks, the
instructor's version with the solutions in, kept as ``COURSE/source/ASSIGNMENT/NAME.ipynb``;
``nbgrader generate_assignment ASSIGNMENT`` then makes the learners' version from it,
where every region between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` is replaced by a
stub and every cell marked ``locked`` is protected by a checksum.

The stored labs already carry nbgrader's cell metadata (see
:mod:`cloudlab.teaching.exercise`): answer cells are ``solution: true``, check cells are
``grade: true`` with their ``points`` and ``locked: true``.  What they lack is the
solutions, which live beside the tests (``tests/solutions/NN_name.py``).  This module
writes, for each lab, a source notebook whose answer cells hold the stored placeholder
followed by the reference solution between the two markers::

    answer = None  # YOUR ANSWER HERE
    ### BEGIN SOLUTION
    answer = lab.host.accel
    ### END SOLUTION

so the released notebook shows the placeholder (and nbgrader's stub), and the source
notebook itself, run top to bottom, scores every point.  The placeholder comes first so
that ``answer`` exists even when a learner runs the stub as it is (nbgrader's default
stub raises ``NotImplementedError``; the check then reports ✘ instead of a NameError).
The lab's other cells stay plain cells a learner may edit and rerun: locking them would
make nbgrader restore them at grading, which a course may want (add ``locked: true``).

nbgrader's cell ids may hold only letters, digits, ``_`` and ``-``, so the labs'
``grade_id`` ``06.1`` becomes ``06_1`` here (and ``06.1-answer`` ``06_1-answer``); the
grader of this package reads both spellings.

Each assignment is one lab: ``source/06_compute/06_compute.ipynb``.  Check cells raise
``AssertionError`` under nbgrader's autograder when an exercise does not earn its points,
which is how nbgrader scores a test cell; hidden checks run only there.
"""

import json
import re
from pathlib import Path

from ..errors import InvalidInput, NotFound
from . import grade

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
LAB_RE = re.compile(r"^\d{2}_[A-Za-z0-9_]+$")
# the checkout's folders, when the package runs from one (make lab installs it editable)
_REPO = Path(__file__).resolve().parents[2]
# nbgrader's default stub raises NotImplementedError; the labs' placeholders already say what to do
CONFIG = '''\
# written by `python -m cloudlab nbgrader-source`; nbgrader reads it from the course folder
c = get_config()  # noqa: F821 - nbgrader provides get_config
# the labs' answer cells already hold a placeholder ("answer = None  # YOUR ANSWER HERE")
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE"}
# a lab boots real servers: give a cell the time the labs' own tests give it
c.ExecutePreprocessor.timeout = 600
'''


def source_notebook(nb, solutions):
    """An nbgrader source version of lab notebook ``nb``, given its ``solutions`` (exercise id -> code).

    Raises:
        InvalidInput: an answer cell without a solution, or a solution without an answer cell.
    """
    nbformat = grade._nbformat()
    source = nbformat.from_dict(json.loads(json.dumps(nb)))
    answers = grade.answer_cells(source)
    missing = sorted(set(answers) - set(solutions))
    if missing:
        raise InvalidInput(f"no reference solution for exercise {', '.join(missing)}",
                           fix="add a '# %% solution NN.K' section to the lab's tests/solutions file")
    extra = sorted(set(solutions) - set(answers))
    if extra:
        raise InvalidInput(f"solutions for {', '.join(extra)} have no answer cell in the notebook")
    for cell in source.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        if meta and meta.get("grade_id"):
            meta["grade_id"] = nbgrader_id(meta["grade_id"])
            meta.setdefault("task", False)
        if meta and meta.get("solution"):
            exercise_id = grade.exercise_of_grade_id(meta["grade_id"][: -len("-answer")])
            # code in the placeholder stays (it defines the answer variables); a comment-only
            # placeholder goes, since nbgrader's stub says the same
            placeholder = "\n".join(line for line in cell.source.rstrip("\n").splitlines()
                                    if line.strip() and not line.lstrip().startswith("#"))
            body = f"{BEGIN}\n{solutions[exercise_id].rstrip()}\n{END}"
            cell.source = f"{placeholder}\n{body}" if placeholder else body
            continue
        if meta and meta.get("grade"):
            meta["locked"] = True
        if cell.cell_type == "code":
            # a source notebook is the instructor's text; outputs come from running it
            cell.outputs = []
            cell.execution_count = None
    return source


def nbgrader_id(grade_id):
    """``grade_id`` spelled as nbgrader accepts it: ``06.1`` -> ``06_1``, ``06.1-answer`` -> ``06_1-answer``."""
    return re.sub(r"^(\d{2})\.(\d+)", r"\1_\2", grade_id)


def default_solutions_dir():
    """The checkout's ``tests/solutions`` folder, or None outside a checkout."""
    path = _REPO / "tests" / "solutions"
    return path if path.is_dir() else None


def default_labs_dir():
    """The checkout's ``labs`` folder, or None outside a checkout."""
    path = _REPO / "labs"
    return path if path.is_dir() else None


def write_course(course, labs_dir=None, solutions_dir=None, labs=None):
    """Write ``COURSE/source/NN_name/NN_name.ipynb`` for each graded lab; returns the paths written.

    Args:
        course: the nbgrader course folder (created if missing).
        labs_dir: folder of the lab notebooks (default: the checkout's ``labs/``).
        solutions_dir: folder of the reference solutions (default: the checkout's ``tests/solutions/``).
        labs: lab names (``06_compute``) or notebook paths; default: every lab with graded exercises.
    Raises:
        NotFound: no labs or solutions folder, or an unknown lab.
        InvalidInput: a lab without graded exercises or with incomplete solutions.
    """
    labs_dir = Path(labs_dir) if labs_dir else default_labs_dir()
    solutions_dir = Path(solutions_dir) if solutions_dir else default_solutions_dir()
    if labs_dir is None or not labs_dir.is_dir():
        raise NotFound(f"no labs folder at {labs_dir}", fix="give --labs DIR (the checkout's labs/)")
    if solutions_dir is None or not solutions_dir.is_dir():
        raise NotFound(f"no solutions folder at {solutions_dir}",
                       fix="give --solutions DIR (the checkout's tests/solutions/)")
    if labs:
        paths = []
        for lab in labs:
            path = Path(lab)
            if path.suffix != ".ipynb":
                path = labs_dir / f"{lab}.ipynb"
            if not path.is_file():
                known = ", ".join(p.stem for p in sorted(labs_dir.glob("[0-9][0-9]_*.ipynb")))
                raise NotFound(f"no lab {lab}", fix=f"the labs are: {known}")
            paths.append(path)
    else:
        paths = [p for p in sorted(labs_dir.glob("[0-9][0-9]_*.ipynb"))
                 if (solutions_dir / f"{p.stem}.py").is_file()]
        if not paths:
            raise NotFound(f"no lab in {labs_dir} has reference solutions in {solutions_dir}")
    course = Path(course)
    written = []
    for path in paths:
        nb = grade.read_notebook(path)
        if not grade.check_cells(nb):
            raise InvalidInput(f"{path.name} has no graded exercises")
        solutions_file = solutions_dir / f"{path.stem}.py"
        solutions = grade.load_solutions(solutions_file)
        source = source_notebook(nb, solutions)
        target = course / "source" / path.stem / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".ipynb.tmp")
        grade._nbformat().write(source, str(tmp))
        tmp.replace(target)
        written.append(target)
    config_file = course / "nbgrader_config.py"
    if not config_file.exists():
        config_file.write_text(CONFIG, encoding="utf-8")
    return written


def add_arguments(parser):
    """Arguments of ``python -m cloudlab nbgrader-source``."""
    parser.add_argument("course", metavar="COURSE", help="the nbgrader course folder (source/ is written in it)")
    parser.add_argument("labs", nargs="*", metavar="LAB", help="labs to write (default: every graded lab)")
    parser.add_argument("--labs-dir", default=None, help="folder of the lab notebooks (default: the checkout's labs/)")
    parser.add_argument("--solutions", default=None,
                        help="folder of the reference solutions (default: the checkout's tests/solutions/)")


def main(args):
    """Run ``python -m cloudlab nbgrader-source``."""
    for path in write_course(args.course, args.labs_dir, args.solutions, args.labs or None):
        print(f"wrote {path}")
    print(f"next: cd {args.course} && nbgrader generate_assignment ASSIGNMENT (e.g. 00_start_here)")
    return 0
