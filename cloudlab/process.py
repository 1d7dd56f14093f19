"""The processes cloudlab starts: handing them their sockets and a parent to watch, and ending them.

Every server, daemon and peer that a lab, a test or a benchmark starts is ended
through here, by its own ``Popen`` handle (hence by its PID), never by name.

A service the lab runs as a process of a node (the object store, Glance's API) gets
its listening sockets bound by the lab (``--fd N``: :func:`inherited_socket`), as
systemd's socket activation hands a daemon its sockets, and the read end of a pipe
whose write end the lab keeps (``--parent-fd N``: :func:`parent_pipe`): end of file
on it means the lab is gone, and the service ends too.  A pid cannot say that: in
the node's PID namespace the lab's pid names no process.
"""

import asyncio
import http.client
import os
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

from .errors import CloudlabError, InvalidInput, ResourceTimeout

# the folder holding the cloudlab package: a node's process runs the code this process runs
PACKAGE_PARENT = str(Path(__file__).resolve().parents[1])


def package_env():
    """Environment for ``python -m cloudlab ...`` started elsewhere: this cloudlab package on its path."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [PACKAGE_PARENT, os.environ.get("PYTHONPATH")]))}


def inherited_socket(fd):
    """The listening TCP socket this process inherited as file descriptor ``fd``.

    Raises:
        InvalidInput: ``fd`` is not open, not a socket, or not a listening TCP socket.
    """
    fix = "pass the number of a listening socket the process inherits (Popen(..., pass_fds=(N,)))"
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise InvalidInput(f"--fd {fd} is not a socket ({exc.strerror})", fix=fix) from None
    try:
        listening = sock.type == socket.SOCK_STREAM and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    except OSError:
        listening = False
    if not listening or sock.family not in (socket.AF_INET, socket.AF_INET6):
        sock.detach()       # not ours to close: it is whatever the parent left at that number
        raise InvalidInput(f"--fd {fd} is not a listening TCP socket", fix=fix)
    return sock


def inherited_sockets(fds):
    """The listening sockets of ``--fd N`` options (:func:`inherited_socket` each).

    Raises:
        InvalidInput: one is named twice, or is no listening TCP socket.
    """
    if len(set(fds)) != len(fds):
        raise InvalidInput(f"--fd names one socket twice: {fds}", fix="give each inherited socket once")
    return [inherited_socket(fd) for fd in fds]


def parent_pipe(fd):
    """``fd`` (or None) once checked to be the read end of a pipe: the ``--parent-fd`` to watch.

    Raises:
        InvalidInput: ``fd`` is not open, or not a pipe.
    """
    if fd is None:
        return None
    try:
        is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError as exc:
        raise InvalidInput(f"--parent-fd {fd} is not open: {exc.strerror}",
                           fix="pass the read end of a pipe the process inherits") from None
    if not is_pipe:
        raise InvalidInput(f"--parent-fd {fd} is not a pipe", fix="pass the read end of a pipe the process inherits")
    return fd


def stop_process(proc, timeout=5.0):
    """End ``proc`` (a ``subprocess.Popen``): SIGTERM, then SIGKILL after ``timeout`` seconds.

    Returns its exit status; does nothing to a process that has already exited.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


async def until_stopped(parent_fd=None):
    """Return on SIGTERM, SIGINT, or once the starting process is gone (``parent_fd``: see :func:`parent_pipe`).

    For a service's ``asyncio`` main: start serving, ``await until_stopped(fd)``, clean up.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if parent_fd is not None:
        # nobody writes to the pipe: readable means its last writer has closed it
        loop.add_reader(parent_fd, stop.set)
    await stop.wait()


def wait_answering(url, processes, what, log_tail, fix, timeout=30.0):
    """Return once ``GET url`` answers 200, while each of ``processes`` runs.

    A service started on a socket the lab bound queues the requests until it serves
    them, so one answer means it is up.

    Args:
        url: e.g. ``http://127.0.0.1:PORT/versions``.
        processes: ``[(name, Popen), ...]`` that must keep running meanwhile.
        what: the service, as the errors name it; log_tail: ``() -> str``, the end of its log.
        fix: what the errors tell the learner to do (``see its log, PATH``).
    Raises:
        CloudlabError: one of the processes exited.  ResourceTimeout: no answer within ``timeout`` s.
    """
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    while True:
        for name, proc in processes:
            if proc.poll() is not None:
                raise CloudlabError(f"{name} exited (status {proc.returncode}):\n{log_tail()}", fix=fix)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
        try:
            conn.request("GET", parts.path or "/")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        if time.monotonic() > deadline:
            raise ResourceTimeout(f"{what} did not answer within {timeout:g} s:\n{log_tail()}", fix=fix)
        time.sleep(0.05)


class Handover:
    """What the lab hands a node's service process: listening sockets bound here, and the parent pipe.

    ``sockets`` are served by the process (``--fd N`` each, :attr:`socket_fds`); the
    pipe's read end is its ``--parent-fd`` (:attr:`parent_fd`), and this process keeps
    the write end until :meth:`close`: the service ends once the lab is gone.
    """

    def __init__(self, sockets=()):
        self.sockets = list(sockets)
        self._pipe = os.pipe()

    @property
    def parent_fd(self):
        """The pipe's read end, for ``--parent-fd``."""
        return self._pipe[0]

    @property
    def socket_fds(self):
        """The sockets' file descriptors, for ``--fd`` (and ``pass_fds``)."""
        return [sock.fileno() for sock in self.sockets]

    def close(self):
        """Close the sockets and both ends of the pipe (a process still serving them keeps its own copies)."""
        for sock in self.sockets:
            sock.close()
        self.sockets = []
        for fd in self._pipe:
            try:
                os.close(fd)
            except OSError:
                pass
        self._pipe = ()
