"""Named network namespaces (``ip netns``): a private network stack for the lab.

With ``CLOUDLAB_NETNS=NAME`` the whole lab host - libvirtd, its bridges, dnsmasq,
the guests - runs inside namespace NAME, which has only its own loopback and the
lab's bridges: nothing the lab does can send a packet anywhere else.  Tests and
CI always work this way (see HOST.md's traffic rule).
"""

import os
import subprocess

from ..errors import CloudlabError, MissingPrerequisite

NETNS_DIR = "/run/netns"


def path(name):
    """The namespace's file, which ``nsenter --net=`` takes."""
    return os.path.join(NETNS_DIR, name)


def exists(name):
    """True when namespace ``name`` exists."""
    return os.path.exists(path(name))


def _ip(*args):
    try:
        return subprocess.run(["ip", *args], check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise MissingPrerequisite("the `ip` command is missing",
                                  fix="`sudo apt-get install iproute2`") from None
    except subprocess.CalledProcessError as exc:
        hint = "run as root (network namespaces need CAP_SYS_ADMIN)" if os.geteuid() else None
        raise CloudlabError(f"`ip {' '.join(args)}` failed: {exc.stderr.strip()}", fix=hint) from None


def create(name):
    """Create namespace ``name`` with its loopback up; returns True if it was created now."""
    if exists(name):
        return False
    _ip("netns", "add", name)
    _ip("-n", name, "link", "set", "lo", "up")
    return True


def delete(name):
    """Delete namespace ``name`` if it exists."""
    if exists(name):
        _ip("netns", "delete", name)


def enter_args(name):
    """Command prefix that runs a command inside namespace ``name`` (or nothing when None)."""
    return ["nsenter", f"--net={path(name)}"] if name else []


_CLONE_NEWNET = 0x40000000


def _setns(fd):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise CloudlabError(f"entering a network namespace failed: {os.strerror(errno)}",
                            fix="run as root (entering a namespace needs CAP_SYS_ADMIN)")


def socket_in(name, family=None, kind=None):
    """A new socket that lives in namespace ``name`` (None: the caller's own network).

    A socket belongs to the namespace of the thread that created it, for its whole
    life.  So a short-lived thread enters ``name`` (``setns`` changes only the calling
    thread), creates the socket and ends; the socket then connects to addresses inside
    the namespace from any thread, while the rest of the program stays where it was.
    """
    import socket
    import threading
    family = socket.AF_INET if family is None else family
    kind = socket.SOCK_STREAM if kind is None else kind
    if not name:
        return socket.socket(family, kind)
    result = {}

    def make():
        try:
            with open(path(name)) as ns_file:
                _setns(ns_file.fileno())
            result["socket"] = socket.socket(family, kind)
        except (OSError, CloudlabError) as exc:
            result["error"] = exc

    # the thread ends inside the namespace: a thread is never reused, so nothing else runs there
    worker = threading.Thread(target=make, name=f"netns-{name}")
    worker.start()
    worker.join()
    if "error" in result:
        exc = result["error"]
        if isinstance(exc, CloudlabError):
            raise exc
        raise CloudlabError(f"no socket in network namespace {name}: {exc}",
                            fix="python -m cloudlab host up") from None
    return result["socket"]


def listening_socket_in(name, address, port, backlog=128):
    """A TCP socket listening on ``address:port`` inside namespace ``name``, to hand to a process there.

    ``SO_REUSEADDR`` is set, so a port a stopped process held can be taken again at once.
    Raises OSError (the port is taken, say); the socket is then closed.
    """
    import socket
    sock = socket_in(name)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def free_port(name, address):
    """A TCP port nobody listens on at ``address`` inside namespace ``name`` (the kernel picks it)."""
    sock = socket_in(name)
    try:
        sock.bind((address, 0))
        return sock.getsockname()[1]
    finally:
        sock.close()
