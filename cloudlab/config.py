"""Where the lab keeps its state, and the settings a learner or CI can change.

Settings come from environment variables so that ``make``, notebooks, tests and
the command line all agree without passing flags around:

``CLOUDLAB_HOME``
    state of running labs (disks, sockets, pid files, logs); default ``~/.local/share/cloudlab``.
``CLOUDLAB_CACHE``
    built guest images and downloaded packages, keyed by the hash of their inputs;
    default ``~/.cache/cloudlab``.  Safe to delete: it is rebuilt on demand.
``CLOUDLAB_NETNS``
    when set, the whole lab host (libvirtd, bridges, dnsmasq, guests) lives in a network
    namespace of that name, which cloudlab creates and removes.  Tests and CI always set it,
    so that no packet of the lab leaves the machine.
``CLOUDLAB_PREFIX``
    prefix of every resource the lab creates (default ``cloudlab-``); clean-up removes
    exactly the resources that carry it.
"""

import os
from pathlib import Path

DEFAULT_PREFIX = "cloudlab-"


def home():
    """Directory for the state of running labs; created on first use."""
    path = Path(os.environ.get("CLOUDLAB_HOME") or Path.home() / ".local/share/cloudlab")
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache():
    """Directory for built images and fetched packages; created on first use."""
    path = Path(os.environ.get("CLOUDLAB_CACHE") or Path.home() / ".cache/cloudlab")
    path.mkdir(parents=True, exist_ok=True)
    return path


def netns():
    """Name of the network namespace the lab host lives in, or None for the host's own network."""
    return os.environ.get("CLOUDLAB_NETNS") or None


def prefix():
    """Prefix carried by every libvirt domain, volume, network and file the lab creates."""
    return os.environ.get("CLOUDLAB_PREFIX") or DEFAULT_PREFIX
