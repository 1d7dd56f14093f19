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
``CLOUDLAB_DHCP_POOL``
    addresses in each lab network's DHCP pool (default 100, from .100 of its /24; at most 250).
    A deleted server's lease is released at once, so the pool only has to hold the servers
    that exist at one time; tests make it small so that a lease that is not released shows.
``CLOUDLAB_DHCP_LEASE_MINUTES``
    how long a lease lasts unless renewed (default 60; dnsmasq's shortest is 2).  Guests
    renew at half of it; a lease that could not be released is free again after it.
"""

import os
from pathlib import Path

DEFAULT_PREFIX = "cloudlab-"
DEFAULT_DHCP_POOL = 100
MAX_DHCP_POOL = 250
DEFAULT_DHCP_LEASE_MINUTES = 60


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


def folder_tag(of_prefix=None):
    """What the folders of labs under ``of_prefix`` (default: :func:`prefix`) start with in the home.

    Empty for the default prefix (lab ``lab03`` lives in ``HOME/lab03``); ``g1a2b-``
    for ``cloudlab-g1a2b-``, so that a graded copy of a lab never shares a folder
    (its object store, its uploads) with the learner's lab of the same name.
    """
    value = of_prefix or prefix()
    if value == DEFAULT_PREFIX:
        return ""
    return value[len(DEFAULT_PREFIX):] if value.startswith(DEFAULT_PREFIX) else value


def _whole_number(variable, default, minimum, maximum, what):
    text = os.environ.get(variable)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not minimum <= value <= maximum:
        from .errors import InvalidInput
        raise InvalidInput(f"{variable}={text!r} is not usable: it is {what}",
                           fix=f"set it to a whole number from {minimum} to {maximum}, or unset it "
                               f"(default {default})")
    return value


def dhcp_pool():
    """Addresses in each lab network's DHCP pool (``CLOUDLAB_DHCP_POOL``, default 100).

    Raises:
        InvalidInput: the variable is not a whole number from 1 to 250.
    """
    return _whole_number("CLOUDLAB_DHCP_POOL", DEFAULT_DHCP_POOL, 1, MAX_DHCP_POOL,
                         "the number of addresses in a lab network's DHCP pool")


def dhcp_lease_minutes():
    """Lease time of the lab networks' DHCP addresses, in minutes (``CLOUDLAB_DHCP_LEASE_MINUTES``, default 60).

    Raises:
        InvalidInput: the variable is not a whole number from 2 (dnsmasq's shortest) to 10080 (a week).
    """
    return _whole_number("CLOUDLAB_DHCP_LEASE_MINUTES", DEFAULT_DHCP_LEASE_MINUTES, 2, 7 * 24 * 60,
                         "a lease time in minutes")
