"""The ``swift`` command line (python-swiftclient's), run as a learner would run it in a terminal.

``swift -A AUTH_URL -U ACCOUNT:USER -K KEY stat|list|upload|download|post|delete ...``
logs in with TempAuth and sends the same HTTP requests a notebook sends by hand.  The
command is the one installed beside this Python (the lab's venv), so the notebook and
the terminal run the same client.
"""

import subprocess
import sys
from pathlib import Path

from ..errors import MissingPrerequisite, ResourceTimeout


class SwiftRun:
    """One run of the ``swift`` command: ``args``, ``returncode``, ``stdout``, ``stderr``.

    Prints as the terminal would show it: ``$ swift ARGS`` and then the output.
    """

    def __init__(self, args, returncode, stdout, stderr):
        self.args = list(args)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    @property
    def ok(self):
        """True when the command exited with status 0."""
        return self.returncode == 0

    def __str__(self):
        return f"$ swift {' '.join(self.args)}\n{self.stdout}{self.stderr}".rstrip("\n")

    def __repr__(self):
        return f"<SwiftRun swift {' '.join(self.args)} -> {self.returncode}>"


def swift_command():
    """Path of the ``swift`` program beside this Python.

    Raises:
        MissingPrerequisite: python-swiftclient is not installed here.
    """
    path = Path(sys.executable).with_name("swift")
    if not path.exists():
        raise MissingPrerequisite("the swift command line is not installed beside this Python",
                                  fix="run `make lab` (it installs python-swiftclient into .venv)")
    return path


def run_swift(auth_url, user, key, args, cwd, timeout=60):
    """Run ``swift -A auth_url -U user -K key ARGS`` in folder ``cwd``; returns a :class:`SwiftRun`.

    Raises:
        MissingPrerequisite: no swift command.
        ResourceTimeout: it ran longer than ``timeout`` seconds.
    """
    command = [str(swift_command()), "-A", auth_url, "-U", user, "-K", key, *map(str, args)]
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ResourceTimeout(f"swift {' '.join(map(str, args))} took more than {timeout} s",
                              fix="check that the store still answers: lab.object_store.url") from None
    return SwiftRun(args, done.returncode, done.stdout, done.stderr)
