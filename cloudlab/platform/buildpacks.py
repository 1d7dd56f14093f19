"""Buildpacks: recognise an app by its files and say how to run it (as Heroku's and Cloud Foundry's do).

A platform (PaaS) takes only the code.  Each buildpack looks at the folder and either
recognises it or passes; the first that recognises it says which command serves the
app and on which port.  The platform then builds an image: the lab's base image
(busybox: a shell and its small web server, ``httpd``) plus the app's files in
``/app``.  What runs the app (the OS, the runtime, the web server) is the platform's
choice, not the developer's: that is the line between PaaS and IaaS.

Buildpacks, in the order they are tried:

* ``procfile``: a ``Procfile`` with a ``web: COMMAND`` line (the command serves HTTP on ``$PORT``);
* ``cgi``: a ``cgi-bin/`` folder of executable scripts, served by busybox ``httpd`` (CGI/1.1);
* ``static``: an ``index.html``, served by busybox ``httpd``.
"""

import dataclasses
import os
from pathlib import Path

from ..errors import InvalidInput, NotFound

PORT = 8080                     # where every app listens inside its container ($PORT)
APP_DIR = "/app"
HTTPD = f"httpd -f -v -p {PORT} -h {APP_DIR}"     # -f: stay in the foreground, the container's main process


@dataclasses.dataclass
class Detection:
    """What a buildpack found: its name, the command that serves the app, and why it chose it."""

    buildpack: str
    command: str
    reason: str
    port: int = PORT


def _procfile(folder):
    procfile = folder / "Procfile"
    if not procfile.is_file():
        return None
    for line in procfile.read_text(errors="replace").splitlines():
        kind, _, command = line.partition(":")
        if kind.strip() == "web" and command.strip():
            return Detection("procfile", command.strip(), "Procfile has a web: line")
    raise InvalidInput(f"{procfile} has no 'web: COMMAND' line",
                       fix="add a line such as  web: httpd -f -p $PORT -h /app")


def _cgi(folder):
    scripts = [p for p in sorted((folder / "cgi-bin").glob("*")) if p.is_file()] if (folder / "cgi-bin").is_dir() \
        else []
    if not scripts:
        return None
    not_executable = [p.name for p in scripts if not os.access(p, os.X_OK)]
    if not_executable:
        raise InvalidInput(f"CGI scripts in {folder / 'cgi-bin'} are not executable: {', '.join(not_executable)}",
                           fix=f"chmod +x {folder / 'cgi-bin'}/*")
    return Detection("cgi", HTTPD, f"cgi-bin/ holds {', '.join(p.name for p in scripts)}")


def _static(folder):
    if (folder / "index.html").is_file():
        return Detection("static", HTTPD, "index.html at the top")
    return None


# (name, what it looks for, detector): the order is the order they are tried
BUILDPACKS = (
    ("procfile", "a Procfile with a 'web:' line", _procfile),
    ("cgi", "a cgi-bin/ folder with executable scripts", _cgi),
    ("static", "an index.html", _static),
)


def detect(folder):
    """The :class:`Detection` for the app in ``folder``: the first buildpack that recognises it.

    Raises:
        NotFound: no such folder.
        InvalidInput: nothing recognisable (the message lists what each buildpack looked
            for), or a buildpack recognised the app but something in it is wrong.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotFound(f"no app folder at {folder}", fix="give the folder that holds the app's code")
    for _, _, detector in BUILDPACKS:
        found = detector(folder)
        if found is not None:
            return found
    present = ", ".join(sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())) or "(empty)"
    looked = "; ".join(f"{name}: {what}" for name, what, _ in BUILDPACKS)
    raise InvalidInput(f"no buildpack recognises the app in {folder} (it holds: {present}); looked for {looked}",
                       fix="add one of those, e.g. an index.html or a Procfile with 'web: COMMAND'")
