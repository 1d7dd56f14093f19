"""The graded-exercise framework: checkers, results, the grade log, solutions, the grader on a real kernel."""

import json
import subprocess
import sys

import nbformat
import pytest

import cloudlab as cl
from cloudlab.teaching import exercise as ex
from cloudlab.teaching import grade


@pytest.fixture
def registry(monkeypatch):
    """A private registry with two exercises of a lab "99" that exists only in this test."""
    monkeypatch.setattr(ex, "_REGISTRY", {})

    @ex.exercise("99.1", title="Say a number", points=2)
    def say_a_number(lab, answer=None):
        yield ex.Check("answer is a number", isinstance(answer, int), hint="answer = <a number>")
        yield ex.Check("it is 42", answer == 42, hint="count again")
        yield ex.Check("hidden: it is even", answer % 2 == 0, hidden=True)

    @ex.exercise("99.2", title="Reads the lab", points=1)
    def reads_the_lab(lab):
        yield ex.Check("the lab has a server web1", lab["web1"] == "ACTIVE")

    return ex._REGISTRY


def test_unanswered_fails_and_answered_passes(registry, capsys, monkeypatch):
    monkeypatch.delenv("CLOUDLAB_GRADING", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    unsolved = ex.run_exercise("99.1", None, answer=None)
    assert (unsolved.points, unsolved.out_of, unsolved.passed) == (0, 2, False)
    assert [c.label for c in unsolved.checks] == ["answer is a number"]     # stops at the first failure
    wrong = ex.run_exercise("99.1", None, answer=41)
    assert wrong.points == 0 and "count again" in "\n".join(wrong.lines())
    solved = ex.run_exercise("99.1", None, answer=42)
    assert solved.passed and solved.points == 2
    assert len(solved.checks) == 2          # the hidden check is not run for the learner
    ex.check_exercise("99.1", None, answer=42)
    out = capsys.readouterr().out
    assert out.startswith("\u2714 Exercise 99.1 \u00b7 Say a number: 2/2 points\n")


def test_hidden_checks_run_when_graded(registry, monkeypatch):
    monkeypatch.setenv("CLOUDLAB_GRADING", "1")
    result = ex.run_exercise("99.1", None, answer=42)
    assert result.passed and len(result.checks) == 3
    monkeypatch.delenv("CLOUDLAB_GRADING")
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert not ex.run_exercise("99.1", None, answer=40).passed    # even, but not 42


def test_nbgrader_sees_a_failed_check_as_an_error(registry, monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    with pytest.raises(AssertionError, match="99.1: 0/2"):
        ex.check_exercise("99.1", None, answer=None)
    ex.check_exercise("99.1", None, answer=42)      # full points: no error
    monkeypatch.delenv("NBGRADER_EXECUTION")
    ex.check_exercise("99.1", None, answer=None)     # outside nbgrader a failure only prints
    assert "\u2718 Exercise 99.1" in capsys.readouterr().out


def test_exceptions_and_wrong_answers_are_failed_checks(registry, capsys):
    result = ex.run_exercise("99.2", {})            # KeyError inside the checker
    assert not result.passed and "KeyError" in result.checks[-1].hint
    result = ex.run_exercise("99.2", {}, answer=1)  # an answer the exercise does not take
    assert not result.passed and "answer" in result.checks[-1].hint
    err = cl.NotFound("no server named 'web1'", fix="create it")
    result = ex.run_exercise("99.2", type("Lab", (), {"__getitem__": lambda self, k: (_ for _ in ()).throw(err)})())
    assert result.checks[-1].hint == "NotFound: no server named 'web1' (fix: create it)"


def test_grade_log_records_every_result(registry, tmp_path, monkeypatch, capsys):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("CLOUDLAB_GRADE_LOG", str(log))
    ex.check_exercise("99.1", None, answer=1)
    ex.check_exercise("99.2", {"web1": "ACTIVE"})
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["id"], r["points"], r["out_of"]) for r in records] == [("99.1", 0, 2), ("99.2", 1, 1)]


def test_registration_and_lookup_errors(registry):
    with pytest.raises(cl.InvalidInput, match="NN.K"):
        ex.exercise("6.1", title="x")
    with pytest.raises(cl.InvalidInput, match="positive"):
        ex.exercise("99.3", title="x", points=0)
    with pytest.raises(cl.NotFound, match="lab 99 has 99.1, 99.2"):
        ex.get_exercise("99.7")
    with pytest.raises(cl.NotFound, match="has no graded exercises"):
        ex.get_exercise("98.1")
    with pytest.raises(cl.NotFound, match="ids look like"):
        ex.get_exercise("first")
    assert [e.id for e in ex.exercises_of("99")] == ["99.1", "99.2"]


def test_solutions_file_parsing(tmp_path):
    path = tmp_path / "99_demo.py"
    path.write_text("# Reference solutions of lab 99\n\n# %% solution 99.1\nanswer = 42\n\n"
                    "# %% solution 99.2\nlab['web1'] = 'ACTIVE'\n")
    assert grade.load_solutions(path) == {"99.1": "answer = 42\n", "99.2": "lab['web1'] = 'ACTIVE'\n"}
    path.write_text("x = 1\n# %% solution 99.1\n")
    with pytest.raises(cl.InvalidInput, match="before the first"):
        grade.load_solutions(path)
    path.write_text("# %% solution 99.1\na\n# %% solution 99.1\nb\n")
    with pytest.raises(cl.InvalidInput, match="two solutions"):
        grade.load_solutions(path)


def demo_notebook():
    """A notebook shaped like a lab: setup, two exercises (answer + check cells), one cell that fails."""
    def code(source, **nbgrader):
        cell = nbformat.v4.new_code_cell(source)
        if nbgrader:
            cell.metadata["nbgrader"] = {"schema_version": 3, "locked": not nbgrader.get("solution"), **nbgrader}
        return cell
    setup = ("from cloudlab.teaching import exercise as ex\n"
             "@ex.exercise('97.1', title='Say 42', points=2)\n"
             "def _a(lab, answer=None):\n    yield ex.Check('answer is 42', answer == 42)\n"
             "@ex.exercise('97.2', title='Fill the lab', points=3)\n"
             "def _b(lab):\n    yield ex.Check('lab has web1', 'web1' in lab)\n"
             "import cloudlab as cl\nlab = {}")
    return nbformat.v4.new_notebook(cells=[
        code(setup),
        code("answer = None  # YOUR ANSWER HERE", solution=True, grade=False, grade_id="97.1-answer"),
        code("cl.check_exercise('97.1', lab, answer=answer)", solution=False, grade=True, grade_id="97.1", points=2),
        code("# YOUR CODE HERE", solution=True, grade=False, grade_id="97.2-answer"),
        code("cl.check_exercise('97.2', lab)", solution=False, grade=True, grade_id="97.2", points=3),
    ])


@pytest.mark.slow
def test_grader_runs_a_notebook_unsolved_and_solved(tmp_path):
    nb = demo_notebook()
    unsolved = grade.grade(nb, cwd=tmp_path, name="demo.ipynb", timeout=120)
    assert [(s.exercise, s.points, s.out_of) for s in unsolved] == [("97.1", 0, 2), ("97.2", 0, 3)]
    # a solution that raises costs only its own exercise
    # (and each graded notebook's lab gets a prefix of its own)
    solved = grade.fill_solutions(nb, {"97.1": "answer = 6 * 7\n", "97.2": "import os\n"
                                       "assert os.environ['CLOUDLAB_PREFIX'].startswith('cloudlab-g')\n"
                                       "lab['web1'] = 1\nraise RuntimeError('oops')\n"})
    scores = grade.grade(solved, cwd=tmp_path, name="demo.ipynb", timeout=120)
    assert [(s.exercise, s.points) for s in scores] == [("97.1", 2), ("97.2", 3)]
    solved = grade.fill_solutions(nb, {"97.1": "answer = 6 * 7\n"})
    solved.cells[4].source = "raise RuntimeError('the check cell itself fails')"
    scores = grade.grade(solved, cwd=tmp_path, name="demo.ipynb", timeout=120)
    assert [(s.exercise, s.points) for s in scores] == [("97.1", 2), ("97.2", 0)]
    assert "RuntimeError" in scores[1].note
    with pytest.raises(cl.InvalidInput, match="no answer cell"):
        grade.fill_solutions(nb, {"97.5": "x = 1\n"})


@pytest.mark.slow
def test_grade_command_prints_a_table_and_csv(tmp_path):
    nb = grade.fill_solutions(demo_notebook(), {"97.1": "answer = 42\n"})
    path = tmp_path / "learner.ipynb"
    nbformat.write(nb, str(path))
    table = subprocess.run([sys.executable, "-m", "cloudlab", "grade", str(path)],
                           capture_output=True, text=True, timeout=300)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["notebook", "exercise", "title", "points", "note"]
    assert lines[1].split()[:2] == ["learner.ipynb", "97.1"] and "2/2" in lines[1]
    assert "0/3" in lines[2] and "not yet: lab has web1" in lines[2]
    assert lines[3].split() == ["learner.ipynb", "total", "2/5"]
    out = subprocess.run([sys.executable, "-m", "cloudlab", "grade", "--csv", str(path)],
                         capture_output=True, text=True, timeout=300)
    assert out.stdout == "notebook,exercise,points,out_of\nlearner.ipynb,97.1,2,2\nlearner.ipynb,97.2,0,3\n"
    missing = subprocess.run([sys.executable, "-m", "cloudlab", "grade", str(tmp_path / "nope.ipynb")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no notebook at" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.slow
def test_one_bad_notebook_does_not_stop_the_others(tmp_path):
    """A corrupt file, a cell that hangs and a kernel that dies each cost only their own notebook's points."""
    good = tmp_path / "alice-97_demo.ipynb"
    nbformat.write(grade.fill_solutions(demo_notebook(), {"97.1": "answer = 42\n"}), str(good))
    hangs = demo_notebook()
    hangs.cells[1].source = "import time\ntime.sleep(60)"           # 97.1's answer never finishes
    hangs.cells[3].source = "lab['web1'] = 1"
    nbformat.write(hangs, str(tmp_path / "bob-97_demo.ipynb"))
    dies = grade.fill_solutions(demo_notebook(), {"97.1": "answer = 42\n",
                                                  "97.2": "import os\nos._exit(1)\n"})
    nbformat.write(dies, str(tmp_path / "carol-97_demo.ipynb"))
    (tmp_path / "dave-97_demo.ipynb").write_text("{not json")
    names = ["alice", "bob", "carol", "dave"]
    out = subprocess.run([sys.executable, "-m", "cloudlab", "grade", "--timeout", "5",
                          *[str(tmp_path / f"{n}-97_demo.ipynb") for n in names]],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr          # dave's notebook could not be graded
    assert "dave-97_demo.ipynb is not a readable notebook" in out.stderr and "Traceback" not in out.stderr
    rows = {(line.split()[0], line.split()[1]): line for line in out.stdout.splitlines() if line.strip()}
    assert "2/2" in rows["alice-97_demo.ipynb", "97.1"] and "0/3" in rows["alice-97_demo.ipynb", "97.2"]
    assert "0/2" in rows["bob-97_demo.ipynb", "97.1"]       # the hanging answer cell was interrupted...
    assert "3/3" in rows["bob-97_demo.ipynb", "97.2"]       # ...and the cells after it still ran
    assert "2/2" in rows["carol-97_demo.ipynb", "97.1"]
    assert "kernel stopped" in rows["carol-97_demo.ipynb", "97.2"]
    # the demo lab "97" registers its exercises only inside the notebook, so dave's row is one line
    assert "not graded" in rows["dave-97_demo.ipynb", "(not"]
    # the class view: per exercise, how many notebooks earned it
    assert any(line.split()[:2] == ["97.1", "Say"] and "2 of 3 notebooks" in line for line in out.stdout.splitlines())


def test_ungraded_notebook_of_a_known_lab_keeps_its_rows(registry):
    scores = grade.ungraded_scores("submissions/eve-99_demo.ipynb", "not graded: broken")
    assert [(s.exercise, s.points, s.out_of) for s in scores] == [("99.1", 0, 2), ("99.2", 0, 1)]
    assert grade.format_csv(scores) == "notebook,exercise,points,out_of\neve-99_demo.ipynb,99.1,0,2\n" \
                                       "eve-99_demo.ipynb,99.2,0,1\n"


def test_nbgrader_source_holds_the_solutions_between_markers(tmp_path):
    from cloudlab.teaching import nbgrader as nbg
    labs, solutions = tmp_path / "labs", tmp_path / "solutions"
    labs.mkdir()
    solutions.mkdir()
    nbformat.write(demo_notebook(), str(labs / "97_demo.ipynb"))
    (solutions / "97_demo.py").write_text("# %% solution 97.1\nanswer = 42\n# %% solution 97.2\nlab['web1'] = 1\n")
    out = subprocess.run([sys.executable, "-m", "cloudlab", "nbgrader-source", str(tmp_path / "course"),
                          "--labs-dir", str(labs), "--solutions", str(solutions)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    source = nbformat.read(str(tmp_path / "course" / "source" / "97_demo" / "97_demo.ipynb"), as_version=4)
    assert source.cells[1].source == "answer = None  # YOUR ANSWER HERE\n### BEGIN SOLUTION\nanswer = 42\n" \
                                     "### END SOLUTION"
    assert source.cells[3].source == "### BEGIN SOLUTION\nlab['web1'] = 1\n### END SOLUTION"  # "# YOUR CODE HERE" is the stub
    check = source.cells[2].metadata.nbgrader
    assert (check["grade"], check["locked"], check["points"], check["grade_id"]) == (True, True, 2, "97_1")
    assert source.cells[1].metadata.nbgrader["grade_id"] == "97_1-answer"     # nbgrader allows no dots
    assert [e for _, e, _ in grade.check_cells(source)] == ["97.1", "97.2"]   # our grader reads both
    assert all(not c.get("outputs") for c in source.cells if c.cell_type == "code")
    assert "code_stub" in (tmp_path / "course" / "nbgrader_config.py").read_text()
    (solutions / "97_demo.py").write_text("# %% solution 97.1\nanswer = 42\n")
    incomplete = subprocess.run([sys.executable, "-m", "cloudlab", "nbgrader-source", str(tmp_path / "c2"),
                                 "--labs-dir", str(labs), "--solutions", str(solutions)],
                                capture_output=True, text=True, timeout=60)
    assert incomplete.returncode == 2 and "no reference solution for exercise 97.2" in incomplete.stderr
