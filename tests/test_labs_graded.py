"""Every lab's graded exercises: shown unsolved in the stored notebook, full points with the reference solutions.

nbval (run on labs/ by `make test`) re-executes each stored notebook and compares
its outputs, so the stored "✘ Exercise ..." lines prove that each check fails
when the exercise is not done.  The test here proves the other half: filled
with the reference solutions in tests/solutions/, the same notebook scores every point.

Running every graded lab a second time is the costliest part of the suite, so it starts
as soon as pytest has collected the tests (tests/conftest.py), in one background process,
one lab after another, while the other tests run: the grader gives each solved lab a
resource prefix of its own (``cloudlab-gXXXX-``), so it never meets the servers of nbval's
run of the same lab.  A process, not a thread: its environment is the one of collection
time, while tests change this process's (a test of its own host sets ``CLOUDLAB_NETNS``
or ``CLOUDLAB_HOME`` for a while), and a lab kernel started meanwhile would take that host
for the lab's.
The test itself then only collects the result.  ``CLOUDLAB_SOLVED_IN_BACKGROUND=0`` runs
them in the test instead.
"""

import concurrent.futures
import multiprocessing
import re
from pathlib import Path

import pytest

from cloudlab.teaching import grade

LABS = Path(__file__).resolve().parent.parent / "labs"
SOLUTIONS = Path(__file__).resolve().parent / "solutions"
MIN_EXERCISES = 3
# labs whose graded exercises are still to be written; empty it as they arrive
NOT_YET_GRADED = set()

NOTEBOOKS = sorted(LABS.glob("[0-9][0-9]_*.ipynb"))


def graded_notebooks():
    return [nb for nb in NOTEBOOKS if nb.stem not in NOT_YET_GRADED]


_solved = {}        # lab stem -> Future of (missing solutions, scores)


def grade_solved(path):
    """Grade lab ``path`` with its reference solutions filled in: (exercises without a solution, scores)."""
    nb = grade.read_notebook(path)
    solutions = grade.load_solutions(SOLUTIONS / f"{path.stem}.py")
    missing = {e for _, e, _ in grade.check_cells(nb)} - set(solutions)
    if missing:
        return missing, []
    return missing, grade.grade(grade.fill_solutions(nb, solutions), cwd=LABS, name=path.name)


def start_solved_runs(paths):
    """Start grading ``paths`` solved, one after another, in a background process (see the module docstring)."""
    todo = [p for p in paths if p.stem not in _solved]
    if not todo:
        return
    # spawn: a fresh interpreter with this moment's environment, none of pytest's threads
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    for path in todo:
        _solved[path.stem] = pool.submit(grade_solved, path)
    pool.shutdown(wait=False)      # the submitted runs go on; the process ends after the last


def _ignored(cell):
    tags = cell.get("metadata", {}).get("tags", [])
    return "nbval-ignore-output" in tags or "NBVAL_IGNORE_OUTPUT" in cell.source or \
        "nbval-skip" in tags or "NBVAL_SKIP" in cell.source


@pytest.mark.parametrize("path", graded_notebooks(), ids=lambda p: p.stem)
def test_stored_notebook_shows_every_exercise_unsolved(path):
    nb = grade.read_notebook(path)
    checks = grade.check_cells(nb)
    assert len(checks) >= MIN_EXERCISES, f"{path.name} has {len(checks)} graded exercises"
    answers = grade.answer_cells(nb)
    number = path.stem[:2]
    for index, exercise_id, points in checks:
        cell = nb.cells[index]
        assert re.fullmatch(rf"{number}\.\d+", exercise_id), exercise_id
        assert points > 0
        assert exercise_id in answers, f"exercise {exercise_id} has no answer cell"
        assert answers[exercise_id] < index, f"exercise {exercise_id}'s answer cell comes after its check"
        # nbval compares this output on every run, so it must be compared, not ignored
        assert not _ignored(cell), f"the check cell of {exercise_id} is not compared by nbval"
        text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
        assert f"\u2718 Exercise {exercise_id} " in text and f": 0/{points} points" in text, \
            f"stored notebook shows exercise {exercise_id} as done, or not at all:\n{text}"


@pytest.mark.lab
@pytest.mark.slow
@pytest.mark.parametrize("path", graded_notebooks(), ids=lambda p: p.stem)
def test_reference_solutions_earn_every_point(path):
    future = _solved.get(path.stem)
    missing, scores = future.result(timeout=850) if future else grade_solved(path)
    assert not missing, f"no reference solution for {sorted(missing)}"
    lost = [f"{s.exercise} {s.points}/{s.out_of}: {s.note}" for s in scores if s.points < s.out_of]
    assert not lost, "\n".join(lost)


def test_every_lab_is_graded_or_listed_as_not_yet():
    stems = {nb.stem for nb in NOTEBOOKS}
    assert NOT_YET_GRADED <= stems, f"NOT_YET_GRADED names labs that do not exist: {NOT_YET_GRADED - stems}"
