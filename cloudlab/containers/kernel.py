"""What the host's kernel knows about a container: its namespaces and its cgroup limits.

A container is no machine: it is a process of the host, and everything that
makes it look separate is kept by the host's kernel, where anyone with root can
read it.

* **Namespaces** (``/proc/PID/ns/*``): each link names a namespace by inode.  A
  container's process has its own ``pid``, ``mnt``, ``net``, ``uts`` and ``ipc``
  namespaces; links that equal the host's (``user``, ``cgroup``, ``time`` here)
  are shared with the host.
* **cgroups** (``/proc/PID/cgroup``, then files under ``/sys/fs/cgroup``): the
  memory controller's ``memory.limit_in_bytes`` (cgroup v1) or ``memory.max``
  (v2) caps its memory; the cpu controller's CFS quota over period caps its CPU
  time (a quota of 100000 µs per 100000 µs period is one CPU).

The engine puts every container of a lab under one parent cgroup named with
the lab's prefix, so clean-up can find (and remove) exactly the lab's own.
"""

import os
from pathlib import Path

from ..errors import NotFound

CGROUP_ROOT = Path("/sys/fs/cgroup")
NAMESPACES = ("pid", "mnt", "net", "uts", "ipc", "user", "cgroup", "time")
UNLIMITED = 1 << 62     # cgroup v1 writes "no limit" as a huge number near 2**63


def namespaces(pid):
    """``{kind: inode}`` of the namespaces process ``pid`` is in.

    Raises:
        NotFound: no such process.
    """
    found = {}
    for kind in NAMESPACES:
        try:
            found[kind] = os.stat(f"/proc/{pid}/ns/{kind}").st_ino
        except FileNotFoundError:
            if not Path(f"/proc/{pid}").exists():
                raise NotFound(f"no process {pid}", fix="is the container running?") from None
    return found


def compare_namespaces(pid, other=None):
    """``{kind: (inode of pid, inode of other, shared)}``; ``other`` defaults to this process (the host)."""
    mine = namespaces(pid)
    theirs = namespaces(other or os.getpid())
    return {kind: (mine[kind], theirs.get(kind), mine[kind] == theirs.get(kind)) for kind in mine}


def cgroup_paths(pid):
    """``{controller: path}`` of process ``pid``'s cgroups, from ``/proc/PID/cgroup``.

    On cgroup v2 (one unified hierarchy) the single entry's controller is ``""``.
    """
    paths = {}
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except FileNotFoundError:
        raise NotFound(f"no process {pid}", fix="is the container running?") from None
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            paths[controller] = path
    return paths


def _read(path):
    try:
        return path.read_text().strip()
    except OSError:
        return None


def limits(pid):
    """The memory and CPU limits the kernel enforces on process ``pid``.

    Returns a dict: ``memory_bytes`` (None: no limit), ``cpu_quota_us`` and
    ``cpu_period_us`` (quota None: no limit), ``cpus`` (quota / period), and the
    files they were read from under ``files``.
    """
    paths = cgroup_paths(pid)
    out = {"memory_bytes": None, "cpu_quota_us": None, "cpu_period_us": None, "cpus": None, "files": {}}
    if "memory" in paths:                                   # cgroup v1
        mem = CGROUP_ROOT / "memory" / paths["memory"].lstrip("/") / "memory.limit_in_bytes"
        cpu_dir = CGROUP_ROOT / "cpu" / paths.get("cpu", paths.get("cpu,cpuacct", "/")).lstrip("/")
        quota, period = cpu_dir / "cpu.cfs_quota_us", cpu_dir / "cpu.cfs_period_us"
        value = _read(mem)
        if value is not None and int(value) < UNLIMITED:
            out["memory_bytes"] = int(value)
        q, p = _read(quota), _read(period)
        if q is not None and int(q) > 0:
            out["cpu_quota_us"] = int(q)
        out["cpu_period_us"] = int(p) if p else None
        out["files"] = {"memory": str(mem), "cpu_quota": str(quota), "cpu_period": str(period)}
    elif "" in paths:                                       # cgroup v2
        base = CGROUP_ROOT / paths[""].lstrip("/")
        value = _read(base / "memory.max")
        if value and value != "max":
            out["memory_bytes"] = int(value)
        cpu = (_read(base / "cpu.max") or "max 100000").split()
        out["cpu_quota_us"] = None if cpu[0] == "max" else int(cpu[0])
        out["cpu_period_us"] = int(cpu[1])
        out["files"] = {"memory": str(base / "memory.max"), "cpu": str(base / "cpu.max")}
    if out["cpu_quota_us"] and out["cpu_period_us"]:
        out["cpus"] = out["cpu_quota_us"] / out["cpu_period_us"]
    return out


def matching_dirs(prefix, suffix):
    """cgroup directories (under any hierarchy's root) whose names start with ``prefix`` and end with ``suffix``."""
    found = []
    if not CGROUP_ROOT.is_dir():
        return found
    for hierarchy in [CGROUP_ROOT] + sorted(CGROUP_ROOT.iterdir()):
        try:
            if not hierarchy.is_dir() or hierarchy.is_symlink():
                continue
            for child in hierarchy.iterdir():
                if child.is_dir() and child.name.startswith(prefix) and child.name.endswith(suffix):
                    found.append(child)
        except OSError:
            continue
    return found


def remove_tree(path):
    """Remove an empty cgroup directory and the empty ones below it (cgroups are removed with rmdir).

    Returns True when it is gone; a cgroup that still holds a process stays.
    """
    path = Path(path)
    for sub in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        try:
            sub.rmdir()
        except OSError:
            pass
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True
