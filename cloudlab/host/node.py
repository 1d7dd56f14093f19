"""A node on the lab network: a process of the lab host with a network (and mount) namespace of its own.

Some services of the lab are servers that guests reach over the lab network, as
they would reach a storage or database node of a real cloud: the share server
(NFS-Ganesha) and each database instance.  Each runs as one process started with
``unshare -m -n``: a **network namespace** of its own whose only link is a veth
pair, one end (``eth0``) inside with an address of its own on the lab network, the
other end plugged into the lab network's bridge like a NIC into a switch; and a
**mount namespace** of its own, so that what it mounts (a share's filesystem, a
database's volume) appears in no other process's mount table and vanishes with it.

How a node starts (:func:`script` and :func:`plug`):

1. the lab starts ``unshare -m -n --propagation private sh -c SCRIPT``; the
   script's first lines wait until ``eth0`` appears;
2. the lab makes the veth pair with one end created straight inside the node's
   namespace (``ip link add ... peer name eth0 netns PID``) and joins the other to
   the bridge;
3. the script gives ``eth0`` its address, brings it up, runs the service's own
   lines and ``exec``s the server, whose exit takes the namespaces, the mounts
   and the cable with it.

Addresses: the lab network is a /24 whose DHCP pool is ``.100``-``.199``; nodes take
fixed host numbers above it: the share server ``.250``, database instances
``.200``-``.239`` (:data:`HOST_NUMBERS`).
"""

import hashlib
import subprocess

from ..errors import CloudlabError, MissingPrerequisite

# who takes which host numbers of the lab's /24 (outside the DHCP pool .100-.199)
HOST_NUMBERS = {"share server": range(250, 251), "database": range(200, 240)}
WAIT_FOR_CABLE = ("i=0; while ! ip link show eth0 >/dev/null 2>&1; do "
                  "i=$((i + 1)); [ $i -lt 400 ] || exit 3; sleep 0.025; done")


def run(args, what):
    """Run a command; a failure becomes a CloudlabError that says what was being done."""
    try:
        return subprocess.run(args, check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        raise MissingPrerequisite(f"{what}: {args[0]} is not installed",
                                  fix="run `make lab` (it installs the lab's system packages)") from None
    except subprocess.CalledProcessError as exc:
        raise CloudlabError(f"{what}: `{' '.join(args)}` failed: {(exc.stderr or exc.stdout).strip()[-300:]}") from None


def address(subnet, kind, index=0):
    """The fixed address number ``index`` of ``kind`` (see :data:`HOST_NUMBERS`) on the lab's ``subnet``.

    Raises:
        CloudlabError: ``index`` is past the numbers ``kind`` has.
    """
    numbers = HOST_NUMBERS[kind]
    if not 0 <= index < len(numbers):
        raise CloudlabError(f"the lab network has no more addresses for the {kind} "
                            f"({len(numbers)} at most)", fix=f"delete a {kind} you no longer need")
    return str(subnet.network_address + numbers[index])


def link_name(folder, suffix):
    """A name for the lab-side end of a node's cable: unique per folder, at most 15 characters."""
    return "cl" + hashlib.sha1(str(folder).encode()).hexdigest()[:8] + suffix[:5]


def script(address, prefixlen, lines):
    """The shell script a node runs: wait for its cable, take ``address``, then ``lines`` (the last one execs)."""
    return "\n".join(["set -e", WAIT_FOR_CABLE, "ip link set lo up",
                      f"ip addr add {address}/{prefixlen} dev eth0", "ip link set eth0 up", *lines])


def command(address, prefixlen, lines):
    """The argv that starts a node (its own mount and network namespaces) running :func:`script`."""
    return ["unshare", "-m", "-n", "--propagation", "private", "sh", "-c", script(address, prefixlen, lines)]


def plug(pid, link, bridge, netns=None, what="the node"):
    """Connect node ``pid``'s network namespace to the lab's ``bridge`` with a veth pair.

    One end is made straight inside the node's namespace (``netns PID``) as its
    ``eth0``; the other, ``link``, joins the lab network's bridge, like a NIC in a switch.

    Args:
        pid: the node's process (any process in its network namespace).
        link: the lab-side end's name (:func:`link_name`).
        bridge: the lab network's bridge.
        netns: the lab's network namespace (where the bridge is), or None for the host's network.
    """
    ip = ["ip"] + (["-n", netns] if netns else [])
    # The name is this folder's own (link_name): one still there is the cable of an earlier node
    # of the same folder, whose namespace the kernel has not finished tearing down (that runs
    # asynchronously after its last process ends), or of one that died unplugged.  It goes first.
    if subprocess.run(ip + ["link", "show", link], capture_output=True).returncode == 0:
        subprocess.run(ip + ["link", "del", link], capture_output=True)
    run(ip + ["link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", str(pid)],
        f"plugging {what} into the lab network")
    run(ip + ["link", "set", link, "master", bridge, "up"], f"joining {what} to bridge {bridge}")
