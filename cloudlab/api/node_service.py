"""An OpenStack API served by a process of the controller node, as an install guide runs glance-api there.

In the all-in-one layout every REST API of the lab is an aiohttp application in the
lab's own process (:class:`~cloudlab.api.http.ApiServer`).  In a multi-node layout the
APIs that need nothing but their own state on disk run as processes of the controller
node instead (:data:`SERVED`; today Glance's, whose state is the image registry's
folder and the queued records' files)::

    python -m cloudlab api-service image --fd 5 --fd 6 --parent-fd 7 --base URL \\
        --keystone-url http://CONTROLLER:5000 --auth-url URL --admin-project ID \\
        --lab-home DIR --lab-prefix PREFIX --journal FILE

The lab binds its two sockets, as for Keystone and the object store: one on the
machine's loopback, where the learner's clients connect (the catalog's URL), and one
on port 9292 of the controller's addresses, where the other nodes connect
(:attr:`ApiProcess.node_url`).  The process checks tokens itself, as the ``glance``
service user (keystonemiddleware's way; the password comes through its environment),
at Keystone's address on the controller.  It writes one JSON line per request to its
journal file, which the lab reads into ``api.requests()``, so ``api.trace`` shows its
requests beside the others'.

Nova's and Cinder's APIs, in the lab's process, still look images up (a server's
image, a volume made from one): they read the same registry and queued records
(:class:`~cloudlab.api.image.ImageAPI` over the same files), where a real Nova asks
glance-api over HTTP.  The others (Nova, Neutron, Cinder, Manila, Trove) stay in the
lab's process: they drive the lab's Python objects (libvirt connections, volumes).
"""

import asyncio
import json
import logging
import os
import sys
import threading
from pathlib import Path

from ..errors import InvalidInput
from ..process import (Handover, inherited_sockets, package_env, parent_pipe, stop_process, until_stopped,
                       wait_answering)
from .auth import KEYSTONE_PASSWORD_VARIABLE

# the APIs that may run as a node's process: name -> ("module:Class", port on the node, program)
SERVED = {"image": ("cloudlab.api.image:ImageAPI", 9292, "glance-api")}
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
BACKLOG = 256


def _api_class(name):
    import importlib
    module_name, class_name = SERVED[name][0].split(":")
    return getattr(importlib.import_module(module_name), class_name)


class JournalFile:
    """The journal of a node's API process: one JSON line per request, appended to ``path``.

    Offers ``append(entry)`` as the lab's in-memory journal (a deque) does.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, entry):
        """Write ``entry`` (a dict) as one line; a line is written whole, with one ``write``."""
        line = (json.dumps(entry) + "\n").encode()
        with self._lock, open(self.path, "ab") as out:
            out.write(line)


class JournalReader:
    """Reads the lines a :class:`JournalFile` appended since the last read."""

    def __init__(self, path):
        self.path = Path(path)
        self._offset = 0

    def new_entries(self):
        """The entries written since the last call (a line still being written waits for the next)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        complete = data[:data.rfind(b"\n") + 1]
        self._offset += len(complete)
        entries = []
        for line in complete.splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
        return entries


class ApiProcess:
    """One of the lab's APIs (:data:`SERVED`) as a process of ``node``, the lab's side of it.

    Args:
        api: the :class:`~cloudlab.api.OpenStackAPI`.
        name: the API's name in :data:`SERVED` (``image``).
        node: the node to run it on (the controller).
    """

    def __init__(self, api, name, node):
        if name not in SERVED:
            raise InvalidInput(f"no API called {name!r} can run as a node's process",
                               fix=f"use one of: {', '.join(SERVED)}")
        self.api = api
        self.lab = api.lab
        self.name = name
        self.node = node
        self.program = SERVED[name][2]
        self.port = SERVED[name][1]
        self.process = None
        self._handover = None        # its (loopback, node) sockets, bound here, and the parent pipe
        self._journal = None
        self._lock = threading.RLock()

    # -- where

    @property
    def url(self):
        """Its URL on the machine's loopback (the catalog's: the learner's clients use it)."""
        return f"http://127.0.0.1:{self._handover.sockets[0].getsockname()[1]}" if self._handover else None

    @property
    def node_url(self):
        """Its URL on the controller's address (what the other nodes reach)."""
        return f"http://{self.node.address}:{self.port}"

    @property
    def log_path(self):
        """Its log, in the node's folder."""
        return self.node.state_path / f"{self.program}.log"

    @property
    def journal_path(self):
        """The file it writes its requests to (with the lab's prefix: removed when the lab stops)."""
        return self.lab.home / f"{self.lab.prefix}{self.program}-journal.jsonl"

    @property
    def running(self):
        """True while its process runs."""
        return self.process is not None and self.process.poll() is None

    # -- lifecycle

    def start(self):
        """Bind its sockets, start the process on the node, return once it answers.

        Raises:
            Conflict: its port on the node is taken.
            CloudlabError, ResourceTimeout: the process exited or did not answer (its log is quoted).
        """
        import socket
        with self._lock:
            try:
                self._handover = Handover([socket.create_server(("127.0.0.1", 0), backlog=BACKLOG)])
                self._handover.sockets.append(self.node.listen("0.0.0.0", self.port, backlog=BACKLOG))
                self.journal_path.unlink(missing_ok=True)
                self._journal = JournalReader(self.journal_path)
                self._spawn()
            except BaseException:
                self.stop()
                raise
        return self

    def _spawn(self):
        identity = self.lab.identity
        user = _api_class(self.name).service_user
        password, project = identity.credentials(user)
        fds, parent = self._handover.socket_fds, self._handover.parent_fd
        command = [sys.executable, "-m", "cloudlab", "api-service", self.name, "--parent-fd", str(parent),
                   "--base", self.url, "--keystone-url", identity.node_url, "--auth-url", identity.auth_url,
                   "--keystone-project", project, "--admin-project", self.api.admin_project_id,
                   "--lab-home", str(self.lab.home), "--lab-prefix", self.lab.prefix, "--journal", str(self.journal_path)]
        for fd in fds:
            command += ["--fd", str(fd)]
        env = {**package_env(), KEYSTONE_PASSWORD_VARIABLE: password}
        self.process = self.node.popen(command, self.log_path, pass_fds=fds + [parent], env=env)
        self._wait_ready()

    def _log_tail(self, lines=8):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:]) or "(empty log)"
        except OSError:
            return "(no log)"

    def _wait_ready(self):
        wait_answering(f"{self.url}/versions", [(self.program, self.process)], self.program, self._log_tail,
                       fix=f"see its log, {self.log_path}", timeout=START_TIMEOUT_S)

    def resume(self):
        """Start the process again after its node's power cut, on the same sockets (does nothing while it runs)."""
        with self._lock:
            if self._handover is not None and not self.running and self.node.is_up:
                self._spawn()
        return self

    def new_entries(self):
        """The requests it served since the last call (journal entries)."""
        return self._journal.new_entries() if self._journal is not None else []

    def stop(self):
        """End the process, close its sockets, remove its journal."""
        with self._lock:
            if self.process is not None:
                stop_process(self.process, timeout=STOP_TIMEOUT_S)
                self.process = None
            if self._handover is not None:
                self._handover.close()
                self._handover = None
            self.journal_path.unlink(missing_ok=True)

    def __repr__(self):
        where = f"on {self.node.name}, pid {self.process.service_pid}" if self.running else "not running"
        return f"<ApiProcess {self.program} {where}>"


# -- the node's side: python -m cloudlab api-service NAME ---------------------------------

class _LabView:
    """What a served API reads of its lab in a node's process: its folder and its prefix."""

    def __init__(self, home, prefix, image):
        self.home = Path(home)
        self.prefix = prefix
        self.image = image


class _ApiView:
    """What a served API reads of the lab's ``OpenStackAPI`` in a node's process."""

    def __init__(self, lab, admin_project_id, journal):
        self.lab = lab
        self.admin_project_id = admin_project_id
        self.journal = journal


def add_arguments(parser):
    """Arguments of ``python -m cloudlab api-service``."""
    parser.add_argument("name", choices=sorted(SERVED), help="the API to serve")
    parser.add_argument("--fd", type=int, action="append", required=True, metavar="N",
                        help="serve the listening socket inherited as file descriptor N (repeatable)")
    parser.add_argument("--parent-fd", type=int, metavar="N",
                        help="read end of a pipe from the starting process: stop when that process is gone")
    parser.add_argument("--base", required=True, metavar="URL", help="the URL clients reach it at (the catalog's)")
    parser.add_argument("--keystone-url", required=True, metavar="URL",
                        help="Keystone as this process reaches it, to validate tokens as the service user "
                             f"(its password is read from ${KEYSTONE_PASSWORD_VARIABLE})")
    parser.add_argument("--auth-url", metavar="URL", help="Keystone as clients reach it (WWW-Authenticate)")
    parser.add_argument("--keystone-project", default="service", help="the service user's project")
    parser.add_argument("--admin-project", required=True, metavar="ID",
                        help="the admin project's id (it owns the lab's own images)")
    parser.add_argument("--lab-home", required=True, metavar="DIR", help="the lab's folder")
    parser.add_argument("--lab-prefix", required=True, metavar="PREFIX", help="the lab's resource prefix")
    parser.add_argument("--journal", metavar="FILE", help="append one JSON line per request to FILE")


def main(args):
    """Serve one API (``python -m cloudlab api-service NAME``) until SIGTERM, SIGINT or its parent's end."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sockets = inherited_sockets(args.fd)
    parent_fd = parent_pipe(args.parent_fd)
    if not os.path.isdir(args.lab_home):
        raise InvalidInput(f"--lab-home {args.lab_home} is not a folder", fix="give the lab's folder (lab.home)")
    from ..image import ImageService
    from .auth import ServiceLogin, TokenCheck, TokenValidator
    cls = _api_class(args.name)
    login = ServiceLogin.from_environment(args.keystone_url, cls.service_user, project=args.keystone_project)
    auth = TokenCheck(TokenValidator(login, cls.service_user), args.auth_url or args.keystone_url)
    journal = JournalFile(args.journal) if args.journal else None
    lab = _LabView(args.lab_home, args.lab_prefix, ImageService())
    served = cls(_ApiView(lab, args.admin_project, journal), auth)
    served.base = args.base
    asyncio.run(_serve(served.app(), sockets, parent_fd, SERVED[args.name][2]))
    print(f"{SERVED[args.name][2]} stopped", file=sys.stderr)
    return 0


async def _serve(app, sockets, parent_fd, program):
    from aiohttp import web
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    for sock in sockets:
        await web.SockSite(runner, sock).start()
    where = " and ".join("http://%s:%d" % sock.getsockname()[:2] for sock in sockets)
    print(f"{program} listening on {where}", flush=True)
    try:
        await until_stopped(parent_fd)
    finally:
        await runner.cleanup()
