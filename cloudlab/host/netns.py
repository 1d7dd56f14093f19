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
