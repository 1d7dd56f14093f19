"""The Makefile's promises: `make lab` as root warns that JupyterLab's terminal is a root shell.

JupyterLab keeps listening on 127.0.0.1 with its token in every case; as root its
terminal (and anyone holding the token) gets a root shell, so `make lab` says so in
one line before starting it.  Run as a normal user (here: nobody, through setpriv)
the same step prints nothing.
"""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _make(*args, user=None):
    cmd = ["make", "-s", "--no-print-directory", "-C", ROOT, *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(os.geteuid() != 0, reason="the warning is about running as root")
def test_make_lab_as_root_warns_in_one_line():
    out = _make("jupyter-warning")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("warning:") and "root" in lines[0] and "libvirt group" in lines[0]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to become another user")
def test_make_lab_as_a_normal_user_does_not_warn():
    out = _make("jupyter-warning", user=65534)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""


def test_make_lab_keeps_loopback_and_the_token():
    recipe = _make("-n", "lab").stdout
    jupyter = [line for line in recipe.splitlines() if "jupyter lab" in line]
    assert len(jupyter) == 1
    assert "--ip=127.0.0.1" in jupyter[0]
    assert "token=" not in jupyter[0] and "password" not in jupyter[0]
    # the warning comes before JupyterLab starts
    assert recipe.index("jupyter-warning") < recipe.index("jupyter lab")
