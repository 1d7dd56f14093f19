"""The labs in a real nbgrader course: source notebooks written by cloudlab, released and autograded by nbgrader.

nbgrader (pinned in requirements-nbgrader.lock) runs from a venv of its own under the cache,
made once per lock, so its JupyterLab extensions never reach the learners' `make lab`.  The
notebooks it executes run in this checkout's kernel (a kernelspec pointing at this venv's
Python), against the live lab: lab 00 is autograded once solved (the source notebook, as an
instructor's test submission) and once as released (a learner who did nothing).
"""

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from cloudlab import config

pytestmark = [pytest.mark.lab, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements-nbgrader.lock"
LAB = "00_start_here"


@pytest.fixture(scope="module")
def nbgrader_bin():
    """The bin/ folder of a venv with nbgrader, made from the lock on first use and kept in the cache.

    venvs are not relocatable, so it is made where it lives; a file ``complete`` written last
    tells a finished venv from one an interrupted run left half-made (which is made again).
    """
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:12]
    venv = config.cache() / f"nbgrader-{digest}"
    if not (venv / "complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        pin = next(line for line in (ROOT / "requirements.lock").read_text().splitlines() if line.startswith("pip=="))
        subprocess.run(pip + [pin.split(";")[0].strip()], check=True)
        subprocess.run(pip + ["-r", str(LOCK)], check=True)
        (venv / "complete").write_text(LOCK.name + "\n")
    return venv / "bin"


def run(args, cwd, env):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_nbgrader_releases_and_autogrades_an_exported_lab(nbgrader_bin, tmp_path):
    if not config.netns():
        pytest.skip("lab tests run inside a network namespace: set CLOUDLAB_NETNS (make test does)")
    course = tmp_path / "course"
    run([sys.executable, "-m", "cloudlab", "nbgrader-source", str(course), LAB], cwd=ROOT, env=os.environ.copy())
    # nbgrader's kernel is this checkout's Python, which has cloudlab
    kernels = tmp_path / "jupyter" / "kernels" / "python3"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (cloudlab)", "language": "python"}))
    env = {**os.environ, "PATH": f"{nbgrader_bin}{os.pathsep}{os.environ['PATH']}",
           "JUPYTER_PATH": str(tmp_path / "jupyter"), "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
           "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data"), "CLOUDLAB_PREFIX": "cloudlab-nbg-"}
    env.pop("CLOUDLAB_WIDGETS", None)       # nbgrader's kernel is not a browser: text either way
    nbgrader = str(nbgrader_bin / "nbgrader")

    run([nbgrader, "generate_assignment", LAB, "--force"], cwd=course, env=env)
    release = nbformat.read(str(course / "release" / LAB / f"{LAB}.ipynb"), as_version=4)
    source = nbformat.read(str(course / "source" / LAB / f"{LAB}.ipynb"), as_version=4)
    graded = {c.metadata.nbgrader["grade_id"]: c for c in release.cells
              if c.get("metadata", {}).get("nbgrader", {}).get("grade")}
    assert sorted(graded) == ["00_1", "00_2", "00_3", "00_4"]
    assert [graded[k].metadata.nbgrader["points"] for k in sorted(graded)] == [1, 2, 2, 2]
    assert all(c.metadata.nbgrader["locked"] and c.metadata.get("editable") is False for c in graded.values())
    answers = [c.source for c in release.cells if c.get("metadata", {}).get("nbgrader", {}).get("solution")]
    assert answers and all("BEGIN SOLUTION" not in a and "lab.host.accel" not in a for a in answers)
    assert answers[0].startswith("answer = None  # YOUR ANSWER HERE")

    # two submissions: the instructor's solved source, and a learner who changed nothing
    for student, nb in (("alice", source), ("bob", release)):
        run([nbgrader, "db", "student", "add", student], cwd=course, env=env)
        target = course / "submitted" / student / LAB / f"{LAB}.ipynb"
        target.parent.mkdir(parents=True)
        nbformat.write(nb, str(target))
    run([nbgrader, "autograde", LAB, "--force"], cwd=course, env=env)
    run([nbgrader, "export", "--to", str(tmp_path / "grades.csv")], cwd=course, env=env)
    with open(tmp_path / "grades.csv") as f:
        grades = {row["student_id"]: row for row in csv.DictReader(f)}
    assert float(grades["alice"]["max_score"]) == 7.0
    assert float(grades["alice"]["score"]) == 7.0, "the solved lab must earn every point under nbgrader"
    assert float(grades["bob"]["score"]) == 0.0, "the unsolved lab must earn nothing"
    graded_alice = (course / "autograded" / "alice" / LAB / f"{LAB}.ipynb").read_text()
    assert "\u2714 Exercise 00.4" in graded_alice      # our checks ran, under nbgrader's execution
