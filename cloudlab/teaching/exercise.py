"""Graded exercises: a short task, an answer cell, and a check that reads the live lab.

An exercise has three parts in a lab notebook:

1. a markdown cell with the task;
2. an **answer cell** the learner fills in.  In the stored notebook it holds a
   placeholder (``# YOUR CODE HERE`` for a task that changes the lab,
   ``answer = None  # YOUR ANSWER HERE`` for a value); its metadata is nbgrader's
   ``{"solution": true, "grade": false, "grade_id": "06.1-answer", ...}``;
3. a **check cell**, ``cl.check_exercise("06.1", lab, answer=answer)``, with
   nbgrader's ``{"grade": true, "solution": false, "points": 2, "grade_id": "06.1", ...}``.

The check itself lives in the package, not the notebook: ``cloudlab/teaching/exercises/labNN.py``
registers one function per exercise with :func:`exercise`.  Such a function takes
the lab and the learner's answers and *yields* :class:`Check` objects, so a later
check can use what an earlier one found::

    @exercise("06.1", points=2, title="Count the boots")
    def count_boots(lab, answer=None):
        yield Check("answer is a number", isinstance(answer, int), hint="answer = <a number>")
        server = lab.compute.get_server("web1")
        yield Check("it equals the ready lines in web1's console",
                    answer == server.console_log().count("cloudlab-ready"))

An exercise earns its points when every one of its checks holds (as nbgrader
scores a test cell: all or nothing).  An exception inside a checker is a failed
check that names the exception, never a traceback, and ends that exercise.
Checks marked ``hidden`` run only when a notebook is graded (nbgrader's hidden
tests): ``python -m cloudlab grade`` sets ``CLOUDLAB_GRADING=1``, nbgrader sets
``NBGRADER_EXECUTION``.  Under nbgrader a check cell that does not earn its points
raises ``AssertionError``, which is how nbgrader's autograder scores a cell.

When ``CLOUDLAB_GRADE_LOG`` names a file, every result is appended to it as one
JSON line; the grader (:mod:`cloudlab.teaching.grade`) reads it.
"""

import dataclasses
import importlib
import json
import os
import re

from ..errors import InvalidInput, NotFound
from .check import FAIL, PASS

ID_RE = re.compile(r"^(\d{2})\.(\d+)$")
GRADE_LOG_ENV = "CLOUDLAB_GRADE_LOG"
GRADING_ENV = "CLOUDLAB_GRADING"

_REGISTRY = {}


@dataclasses.dataclass
class Check:
    """One statement about the lab or the answer that should hold.

    Args:
        label: the statement, phrased as what should be true.
        ok: whether it holds (a bool; anything truthy counts).
        hint: what to look at when it does not hold.
        hidden: run only when graded (nbgrader's hidden tests).
    """

    label: str
    ok: bool
    hint: str = ""
    hidden: bool = False

    def __post_init__(self):
        self.ok = bool(self.ok)


@dataclasses.dataclass
class Exercise:
    """A registered exercise: its id (``NN.K``: lab NN, exercise K), title, points and checker."""

    id: str
    title: str
    points: int
    checker: object

    @property
    def lab_number(self):
        """The two-digit lab number, e.g. ``06``."""
        return self.id.split(".")[0]


@dataclasses.dataclass
class Result:
    """What checking one exercise found."""

    id: str
    title: str
    points: int
    out_of: int
    checks: list

    @property
    def passed(self):
        """True when the exercise earned its points."""
        return self.points == self.out_of

    def lines(self):
        """The result as the lines a learner sees: a headline, then one line per check."""
        mark = PASS if self.passed else FAIL
        out = [f"{mark} Exercise {self.id} · {self.title}: {self.points}/{self.out_of} points"]
        for check in self.checks:
            line = f"    {PASS if check.ok else FAIL} {check.label}"
            if not check.ok and check.hint:
                line += f": {check.hint}"
            out.append(line)
        return out

    def to_json(self):
        """A dict for the grade log."""
        return {"id": self.id, "title": self.title, "points": self.points, "out_of": self.out_of,
                "checks": [dataclasses.asdict(c) for c in self.checks]}


def exercise(id, title, points=1):
    """Register the decorated checker as exercise ``id`` (e.g. ``"06.1"``) worth ``points``.

    Raises:
        InvalidInput: a malformed id, a non-positive number of points, or an id registered twice.
    """
    if not isinstance(id, str) or not ID_RE.match(id):
        raise InvalidInput(f"exercise id {id!r} is not of the form NN.K", fix='use e.g. "06.1"')
    if not isinstance(points, int) or points <= 0:
        raise InvalidInput(f"exercise {id} must be worth a positive whole number of points, not {points!r}")

    def register(checker):
        if id in _REGISTRY and _REGISTRY[id].checker.__qualname__ != checker.__qualname__:
            raise InvalidInput(f"exercise {id} is registered twice ({_REGISTRY[id].checker.__qualname__} "
                               f"and {checker.__qualname__})")
        _REGISTRY[id] = Exercise(id, title, points, checker)
        return checker

    return register


def get_exercise(id):
    """The registered exercise ``id``, importing its lab's module on first use.

    Raises:
        NotFound: no such exercise; the message lists the lab's exercises.
    """
    match = ID_RE.match(str(id))
    if not match:
        raise NotFound(f"no exercise {id!r}: ids look like 06.1 (lab 06, exercise 1)")
    _import_lab(match.group(1))
    if id not in _REGISTRY:
        known = sorted(k for k in _REGISTRY if k.startswith(match.group(1) + "."))
        raise NotFound(f"no exercise {id!r}",
                       fix=f"lab {match.group(1)} has {', '.join(known)}" if known else
                       f"lab {match.group(1)} has no graded exercises")
    return _REGISTRY[id]


def _import_lab(lab_number):
    """Import lab ``lab_number``'s checkers, if it has a module of them."""
    module = f"{__package__}.exercises.lab{lab_number}"
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise


def exercises_of(lab_number):
    """The registered exercises of lab ``lab_number`` (e.g. ``"06"``), in order."""
    _import_lab(lab_number)
    return sorted((e for e in _REGISTRY.values() if e.lab_number == lab_number),
                  key=lambda e: int(e.id.split(".")[1]))


def grading():
    """True when a notebook is being graded (our grader or nbgrader's), so hidden checks run."""
    return bool(os.environ.get(GRADING_ENV)) or \
        os.environ.get("NBGRADER_EXECUTION", "").lower() in ("autograde", "validate")


def run_exercise(id, lab=None, **answers):
    """Check exercise ``id`` against ``lab`` and the learner's ``answers``; returns a :class:`Result`.

    Prints nothing: :func:`check_exercise` is what a notebook calls.
    """
    ex = get_exercise(id)
    show_hidden = grading()
    checks = []
    try:
        for check in ex.checker(lab, **answers):
            if not isinstance(check, Check):
                raise TypeError(f"exercise {id}'s checker yielded {check!r}, not a Check")
            if check.hidden and not show_hidden:
                continue
            checks.append(check)
            if not check.ok:
                break     # later checks usually build on this one
    except TypeError as exc:
        if "unexpected keyword argument" in str(exc):
            name = str(exc).rsplit(" ", 1)[-1]
            checks.append(Check(f"exercise {id} takes the answers it asks for", False,
                                hint=f"it has no answer called {name}"))
        else:
            checks.append(Check("the lab could be checked", False, hint=f"TypeError: {exc}"))
    except Exception as exc:  # a check reports; it never shows a learner a traceback
        checks.append(Check("the lab could be checked", False, hint=_describe(exc)))
    if not checks:
        checks.append(Check("the exercise has something to check", False, hint="no checks ran"))
    earned = ex.points if all(c.ok for c in checks) else 0
    return Result(ex.id, ex.title, earned, ex.points, checks)


def _describe(exc):
    # cloudlab's errors carry their fix on a second line; keep a check's line to one line
    message = getattr(exc, "message", None) or str(exc)
    fix = getattr(exc, "fix", None)
    text = f"{type(exc).__name__}: {message}"
    return f"{text} (fix: {fix})" if fix else text


def check_exercise(id, lab=None, **answers):
    """Check exercise ``id`` and print ``✔``/``✘`` with its points: the check cell of an exercise.

    Args:
        id: the exercise, e.g. ``"06.1"``.
        lab: the running :class:`~cloudlab.lab.Lab` the exercise reads (None for one that needs none).
        answers: the learner's answer variables, by name.
    Raises:
        AssertionError: only under nbgrader, when the exercise did not earn its points.
    """
    result = run_exercise(id, lab, **answers)
    print("\n".join(result.lines()), flush=True)
    log = os.environ.get(GRADE_LOG_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as out:
            out.write(json.dumps(result.to_json()) + "\n")
    if not result.passed and os.environ.get("NBGRADER_EXECUTION"):
        raise AssertionError(f"exercise {id}: {result.points}/{result.out_of} points")
    return None
