"""Run commands inside a running guest through its agent.

Each guest has a virtio-serial port named ``org.cloudlab.agent.0``; QEMU
exposes the host end as a unix socket (libvirt's ``<channel>``).  A guest with
no virtio at all (the ``emulated`` profile) has its agent on an emulated UART,
ttyS1, whose host end is a unix socket too (:func:`serial_xml`).  Inside the
guest a small busybox shell script (``cloudlab/image/guest/agent``) reads one request
per line and answers one line::

    PING <id>                          ->  PONG <id>
    RUN <id> <timeout> <cmd> <stdin>   ->  RESULT <id> <exit status> <stdout> <stderr>

Command, input and outputs travel base64-encoded (``-`` when empty), so any
bytes survive a line protocol.  This is the same idea as qemu-guest-agent, cut
down to what a lab needs, and with no network: it works before the guest has an
address and on servers with no network at all.
"""

import base64
import itertools
import shlex
import socket
import threading
import time
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from ..errors import CloudlabError, InvalidInput, ResourceTimeout

AGENT_CHANNEL = "org.cloudlab.agent.0"
# sun_path is 108 bytes with the terminating NUL
MAX_SOCKET_PATH = 107
# the kernel argument that moves the agent to the second serial port (see serial_xml)
SERIAL_KERNEL_ARG = "cloudlab.agent=ttyS1"
# exit status of a command killed by the guest's `timeout -s KILL`
KILLED = 137


@dataclass(frozen=True)
class CommandResult:
    """What a command run in a guest returned."""

    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self):
        """True when the command exited with status 0."""
        return self.exit_status == 0

    def __str__(self):
        return self.stdout


def channel_xml(socket_path):
    """The libvirt ``<channel>`` element that connects ``socket_path`` to the guest's agent port.

    Raises:
        InvalidInput: the path is too long for a unix socket.
    """
    check_socket_path(socket_path)
    return (f"<channel type='unix'><source mode='bind' path={quoteattr(str(socket_path))}/>"
            f"<target type='virtio' name='{AGENT_CHANNEL}'/></channel>")


def serial_xml(socket_path, port=1):
    """The libvirt ``<serial>`` element that connects ``socket_path`` to the guest's ``ttyS<port>``.

    For a guest that has no virtio device at all (the ``emulated`` profile): the
    agent then reads and writes an emulated 16550 UART, told so by
    ``cloudlab.agent=ttyS1`` on the kernel command line (:data:`SERIAL_KERNEL_ARG`).

    Raises:
        InvalidInput: the path is too long for a unix socket.
    """
    check_socket_path(socket_path)
    return (f"<serial type='unix'><source mode='bind' path={quoteattr(str(socket_path))}/>"
            f"<target port='{int(port)}'/></serial>")


def check_socket_path(socket_path):
    """Raise InvalidInput when ``socket_path`` cannot be a unix socket's address."""
    if len(str(socket_path).encode()) > MAX_SOCKET_PATH:
        raise InvalidInput(f"agent socket path is {len(str(socket_path))} bytes, over the "
                           f"{MAX_SOCKET_PATH}-byte limit of unix sockets: {socket_path}",
                           fix="set CLOUDLAB_HOME to a shorter folder")


def _b64(data):
    return base64.b64encode(data).decode() if data else "-"


def _unb64(text):
    return b"" if text == "-" else base64.b64decode(text)


class Agent:
    """The host end of one guest's agent channel.

    Args:
        socket_path: the unix socket QEMU listens on for this guest's channel.
    """

    _ids = itertools.count(1)

    def __init__(self, socket_path):
        check_socket_path(socket_path)
        self.socket_path = str(socket_path)
        self._lock = threading.Lock()
        self._sock = None
        self._file = None

    def close(self):
        """Drop the connection (the guest side keeps running)."""
        with self._lock:
            self._close()

    def _close(self):
        for item in (self._file, self._sock):
            if item is not None:
                try:
                    item.close()
                except OSError:
                    pass
        self._sock = self._file = None

    def _connect(self):
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.socket_path)
            except OSError as exc:
                sock.close()
                raise CloudlabError(f"cannot reach the guest agent at {self.socket_path}: {exc.strerror}",
                                    fix="is the server running? (server.status should be ACTIVE)") from None
            self._sock = sock
            self._file = sock.makefile("rb")

    def _request(self, line, reply_verb, request_id, timeout):
        """Send ``line`` and return the fields of the reply with ``request_id``."""
        deadline = time.monotonic() + timeout
        self._connect()
        try:
            self._sock.sendall(line.encode() + b"\n")
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise socket.timeout
                self._sock.settimeout(remaining)
                raw = self._file.readline()
                if not raw:
                    raise ConnectionError("the agent channel closed")
                fields = raw.decode(errors="replace").split()
                # replies to requests abandoned earlier (a timeout) are skipped
                if len(fields) >= 2 and fields[0] == reply_verb and fields[1] == str(request_id):
                    return fields
                if len(fields) >= 2 and fields[0] == "ERROR" and fields[1] == str(request_id):
                    raise CloudlabError(f"the guest agent refused the request: {' '.join(fields[2:])}")
        except (socket.timeout, ConnectionError, OSError):
            # the stream may hold half a reply now; start clean next time
            self._close()
            raise

    def ping(self, timeout=5.0):
        """True when the agent answers within ``timeout`` seconds (retrying while the guest boots)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                request_id = next(self._ids)
                try:
                    self._request(f"PING {request_id}", "PONG", request_id,
                                  min(0.5, max(0.05, deadline - time.monotonic())))
                    return True
                except (socket.timeout, OSError, CloudlabError):
                    if time.monotonic() >= deadline:
                        return False
                    time.sleep(0.05)

    def run(self, command, timeout=30, input=None):
        """Run ``command`` with ``sh`` in the guest and return its :class:`CommandResult`.

        Args:
            command: a shell command line, or a list of arguments (quoted for you).
            timeout: seconds before the guest kills the command.
            input: bytes or str given to the command's standard input.
        Raises:
            ResourceTimeout: the command did not finish within ``timeout``.
            CloudlabError: the agent cannot be reached.
        """
        if isinstance(command, (list, tuple)):
            command = shlex.join(str(a) for a in command)
        if not isinstance(command, str) or not command.strip():
            raise InvalidInput(f"command {command!r} is empty", fix="give a shell command, e.g. 'uname -a'")
        if isinstance(input, str):
            input = input.encode()
        timeout = max(1, int(timeout))
        with self._lock:
            request_id = next(self._ids)
            started = time.monotonic()
            try:
                fields = self._request(
                    f"RUN {request_id} {timeout} {_b64(command.encode())} {_b64(input or b'')}",
                    "RESULT", request_id, timeout + 5)
            except socket.timeout:
                raise ResourceTimeout(f"no answer from the guest agent within {timeout + 5} s "
                                      f"for {command!r}") from None
            except (ConnectionError, OSError) as exc:
                raise CloudlabError(f"lost the guest agent while running {command!r}: {exc}",
                                    fix="check the server's console log; it may have stopped") from None
        status = int(fields[2])
        if status == KILLED and time.monotonic() - started >= timeout:
            raise ResourceTimeout(f"{command!r} did not finish within {timeout} s in the guest",
                                  fix="give run() a larger timeout")
        stdout = _unb64(fields[3]) if len(fields) > 3 else b""
        stderr = _unb64(fields[4]) if len(fields) > 4 else b""
        return CommandResult(status, stdout.decode(errors="replace"), stderr.decode(errors="replace"))
