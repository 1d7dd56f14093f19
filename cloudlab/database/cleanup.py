"""What the database service leaves on the machine, found and removed from the outside.

An instance's processes carry cloudlab's owner mark (``host leftovers`` and ``host
down`` find them) and its folder carries the lab's prefix (the files check finds
it).  Two kinds are the service's own: the **cgroups** that hold each instance's
limits, named ``PREFIXdatabase-ID8.HOSTID`` (the lab host's id, so that one host's
clean-up never touches another host's instances: cgroups are machine-wide), and the
**volume files**, FUSE mounts by ``qemu-storage-daemon`` under the lab's folder.
"""

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
MARK = "-database-"


def host_id(state_dir):
    """A short id of the lab host whose state folder is ``state_dir``."""
    return hashlib.sha1(str(state_dir).encode()).hexdigest()[:8]


def cgroup_name(lab_prefix, instance_id, state_dir):
    """The cgroup of an instance: ``PREFIXdatabase-ID8.HOSTID``."""
    return f"{lab_prefix}database-{instance_id[:8]}.{host_id(state_dir)}"


def cgroups(prefix, state_dir):
    """The instances' cgroup folders (under every hierarchy) of this host with ``prefix``."""
    suffix = "." + host_id(state_dir)
    found = []
    for base in (CGROUP_ROOT, CGROUP_ROOT / "memory", CGROUP_ROOT / "cpu"):
        try:
            for child in sorted(base.iterdir()):
                if (child.is_dir() and child.name.startswith(prefix) and MARK in child.name
                        and child.name.endswith(suffix)):
                    found.append(child)
        except OSError:
            continue
    return found


def volume_mounts(home, prefix):
    """FUSE-mounted volume files under ``home`` whose path carries ``prefix``."""
    home, mark = str(home), f"/{prefix}"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    return [p for p in (line.split()[4] for line in lines)
            if p.startswith(home) and mark in p and p.endswith("/volume.raw")]


def leftovers(scope):
    """The database service's own kinds still here (``host leftovers`` adds these)."""
    found = [f"cgroup {d}" for d in cgroups(scope.prefix, scope.state_dir)]
    found += [f"volume file {p} (qemu-storage-daemon's FUSE export)" for p in volume_mounts(scope.home, scope.prefix)]
    return found


def _pids(folder):
    try:
        return [int(p) for p in (folder / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def running(pid):
    """True while process ``pid`` runs (a zombie, ended but not yet reaped by its parent, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def _wait_gone(pids, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [p for p in pids if running(p)]:
            return True
        time.sleep(0.05)
    return False


def clean(prefix, home, state_dir):
    """End this host's instances with ``prefix`` (PostgreSQL's fast shutdown, then SIGKILL), release their volume
    files and remove their cgroups; returns what went.  Only processes inside the instances' own cgroups are signalled."""
    removed = []
    folders = cgroups(prefix, state_dir)
    pids = sorted({p for d in folders for p in _pids(d)})
    for pid in pids:
        try:
            os.kill(pid, signal.SIGINT)         # the postmaster: fast shutdown; its children end with it
        except ProcessLookupError:
            pass
    if not _wait_gone(pids, 15):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _wait_gone(pids, 5)
    removed += [f"database server process {p}" for p in pids]
    for path in volume_mounts(home, prefix):
        # the daemon that serves it was started by this host (its owner mark names the state folder)
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes()
                environ = (proc / "environ").read_bytes()
            except OSError:
                continue
            if f"mountpoint={path}".encode() in cmdline and f"CLOUDLAB_OWNER={state_dir}".encode() in environ:
                try:
                    os.kill(int(proc.name), signal.SIGTERM)
                except ProcessLookupError:
                    pass
                _wait_gone([int(proc.name)], 10)
        if path in volume_mounts(home, prefix):
            subprocess.run(["umount", "-l", path], capture_output=True)
        removed.append(f"volume file {path}")
    for folder in sorted(folders, key=lambda d: len(d.parts), reverse=True):
        try:
            folder.rmdir()
            removed.append(f"cgroup {folder}")
        except OSError:
            pass
    return removed
