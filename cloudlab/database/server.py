"""One database instance's server: a real PostgreSQL, a node of its own on the lab network.

Trove boots a virtual machine per instance and its guest agent runs the database
inside.  The lab gives each instance the parts of that machine that matter for a
database, without booting one (an emulated guest would take minutes to start
PostgreSQL here):

* **network**: a node on the lab network (:mod:`cloudlab.host.node`): its own
  network namespace whose ``eth0`` has a fixed address of the lab's /24, where the
  server listens on port 5432 (every instance on 5432, each at its own address, as
  each VM of Trove's would be);
* **storage**: a lab volume (:mod:`cloudlab.block_storage`), as Trove attaches a Cinder
  volume to its guest: ``qemu-storage-daemon`` opens the volume the way QEMU opens
  it for a guest and presents it as a plain file through FUSE; that file is
  loop-mounted (ext4) inside the instance's own mount namespace at
  ``/var/lib/postgresql/data``, so no other process of the host sees the mount,
  and it vanishes with the server.  Without a volume (``volume_size=None``) the
  data lives in the instance's folder;
* **limits**: the flavor's memory and vCPUs become cgroup limits on every process of
  the server (cgroup v2's ``memory.max``/``cpu.max`` where the host has them, else
  cgroup v1's ``memory.limit_in_bytes`` and CFS quota, as on this project's hosts);
  the server's own settings are sized to fit them (:func:`datastore.settings`);
* **users**: the server runs as the ``postgres`` system user (PostgreSQL refuses
  root); every connection, over the lab network or the instance's Unix socket,
  must give a password (``scram-sha-256``).

The notebook runs outside the lab network when the lab has a network namespace of
its own (as under the tests), so the service reaches each instance through its
Unix socket, ``<instance folder>/run``; servers reach it at ``ADDRESS:5432``.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

from ..errors import CloudlabError, MissingPrerequisite, ResourceTimeout
from ..host import node, ownership
from ..host import netns as host_netns
from ..process import stop_process
from . import datastore

INSIDE = Path("/var/lib/postgresql")        # where the instance sees its parts (its own mount namespace)
START_TIMEOUT_S = 30.0
CGROUP_ROOT = Path("/sys/fs/cgroup")
LOG_LINES = 15


def last_lines(path, count=LOG_LINES):
    """The last ``count`` lines of a log file ('' when there is none)."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-count:])
    except OSError:
        return ""


def cgroup_kind():
    """``"v2"`` when the unified hierarchy has the memory and cpu controllers, ``"v1"`` when the
    v1 hierarchies are there and writable, else None (limits then come only from the server's settings)."""
    controllers = CGROUP_ROOT / "cgroup.controllers"
    if controllers.exists():
        have = controllers.read_text().split()
        if "memory" in have and "cpu" in have and os.access(CGROUP_ROOT, os.W_OK):
            return "v2"
    if all(os.access(CGROUP_ROOT / c, os.W_OK) for c in ("memory", "cpu")):
        return "v1"
    return None


class Limits:
    """The cgroup that holds an instance's processes, with its flavor's memory and CPU limits.

    Args:
        name: the cgroup's directory name (carries the lab's prefix, so clean-up finds it).
    """

    def __init__(self, name):
        self.name = name
        self.kind = cgroup_kind()

    @property
    def dirs(self):
        """The cgroup directories (one per v1 controller, or the one v2 directory)."""
        if self.kind == "v2":
            return [CGROUP_ROOT / self.name]
        if self.kind == "v1":
            return [CGROUP_ROOT / "memory" / self.name, CGROUP_ROOT / "cpu" / self.name]
        return []

    def apply(self, pid, ram_mib, vcpus):
        """Make the cgroup (or change its limits) and move process ``pid`` into it."""
        if self.kind is None:
            return
        memory, quota, period = ram_mib * 2**20, vcpus * 100000, 100000
        for d in self.dirs:
            d.mkdir(exist_ok=True)
        if self.kind == "v2":
            d = self.dirs[0]
            (d / "memory.max").write_text(str(memory))
            (d / "cpu.max").write_text(f"{quota} {period}")
            (d / "cgroup.procs").write_text(str(pid))
        else:
            mem, cpu = self.dirs
            (mem / "memory.limit_in_bytes").write_text(str(memory))
            (cpu / "cpu.cfs_period_us").write_text(str(period))
            (cpu / "cpu.cfs_quota_us").write_text(str(quota))
            for d in (mem, cpu):
                (d / "cgroup.procs").write_text(str(pid))

    def remove(self):
        """Remove the cgroup (its processes must be gone; a moment's wait for the last to leave)."""
        deadline = time.monotonic() + 5
        for d in self.dirs:
            while d.exists():
                try:
                    d.rmdir()
                except OSError:
                    if time.monotonic() > deadline:
                        raise CloudlabError(f"cgroup {d} still holds processes",
                                            fix="python -m cloudlab host down ends them") from None
                    time.sleep(0.05)


class VolumeFile:
    """A lab volume presented as a plain file (FUSE, by ``qemu-storage-daemon``), to be loop-mounted.

    Args:
        connection: the block storage service's connection info for the volume.
        path: the file to present it at (an empty regular file is made there).
        netns: the lab's network namespace (a volume served over NBD is reached inside it).
    """

    def __init__(self, connection, path, netns=None):
        self.connection = connection
        self.path = Path(path)
        self.netns = netns
        self._proc = None

    def _blockdev(self):
        data = self.connection["data"]
        kind = self.connection["driver_volume_type"]
        if kind == "file":
            return [f"driver=file,filename={data['path']},node-name=file0",
                    f"driver={data['format']},file=file0,node-name=disk0"]
        if kind == "nbd":
            return [f"driver=nbd,server.type=inet,server.host={data['host']},server.port={data['port']},"
                    f"export={data['export']},node-name=disk0"]
        raise CloudlabError(f"a database volume cannot use a {kind} connection",
                            fix="use a volume of type file or nbd")

    def mounted(self):
        """True while the FUSE export is mounted at ``path``."""
        try:
            text = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return False
        return any(line.split()[4] == str(self.path) for line in text.splitlines())

    def start(self, timeout=10.0):
        """Start the daemon; returns once the file is there."""
        self.path.touch()
        args = ["qemu-storage-daemon"]
        for spec in self._blockdev():
            args += ["--blockdev", spec]
        args += ["--export", f"type=fuse,id=export0,node-name=disk0,mountpoint={self.path},writable=on"]
        if self.connection["driver_volume_type"] == "nbd":
            args = host_netns.enter_args(self.netns) + args
        err = self.path.with_suffix(".log")
        try:
            with open(err, "wb") as f:
                self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                                              env=ownership.child_env())
        except FileNotFoundError:
            raise MissingPrerequisite("qemu-storage-daemon is not installed",
                                      fix="run `make lab` (it comes with qemu-system-x86)") from None
        deadline = time.monotonic() + timeout
        while not self.mounted():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise CloudlabError(f"the volume could not be presented as a file: {last_lines(err)}",
                                    fix="is FUSE available (/dev/fuse)?")
            time.sleep(0.02)

    def stop(self):
        """Stop the daemon (the FUSE file goes with it) once no loop device holds the file any more."""
        deadline = time.monotonic() + 5
        while self._loop_devices() and time.monotonic() < deadline:
            time.sleep(0.02)
        if self._proc is not None:
            stop_process(self._proc, timeout=10)
            self._proc = None
        if self.mounted():
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
        self.path.unlink(missing_ok=True)
        self.path.with_suffix(".log").unlink(missing_ok=True)

    def _loop_devices(self):
        found = []
        for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
            try:
                if backing.read_text().strip() == str(self.path):
                    found.append(backing)
            except OSError:
                continue
        return found


class InstanceServer:
    """The running PostgreSQL of one instance (see the module docstring).

    Args:
        folder: the instance's folder (configuration, log, socket; the data without a volume).
        version: the PostgreSQL major version (``"15"``).
        address: its address on the lab network; ``prefixlen`` its network's prefix length.
        bridge, netns: the lab network's bridge and the namespace it is in.
        cgroup: the name of the instance's cgroup.
    """

    def __init__(self, folder, version, address, prefixlen, bridge, netns, cgroup):
        self.folder = Path(folder)
        self.version = version
        self.address = address
        self.prefixlen = prefixlen
        self.bridge = bridge
        self.netns = netns
        self.port = datastore.PORTS["postgresql"]
        self.limits = Limits(cgroup)
        self.volume = None
        self._proc = None

    # -- paths -----------------------------------------------------------------------

    @property
    def log_path(self):
        """The server's log (its stderr, and initdb's output on the first start)."""
        return self.folder / "postgresql.log"

    @property
    def socket_dir(self):
        """The folder holding the server's Unix socket (``.s.PGSQL.5432``)."""
        return self.folder / "run"

    @property
    def volume_path(self):
        """Where the volume is presented as a file."""
        return self.folder / "volume.raw"

    @property
    def pid(self):
        """The server's (postmaster's) process id, or None when it does not run."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    # -- starting and stopping -------------------------------------------------------

    def prepare(self, connection=None, fresh=False):
        """Make the folder; with a volume, present it as a file (and make its filesystem when ``fresh``)."""
        for sub in ("conf", "run", "data"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        os.chown(self.socket_dir, _uid(), _gid())
        if connection is not None:
            self.volume = VolumeFile(connection, self.volume_path, self.netns)
            self.volume.start()
            if fresh:
                node.run(["mkfs.ext4", "-q", "-F", "-L", "pgdata", "-E", "nodiscard", str(self.volume_path)],
                         "making the filesystem of the instance's volume")

    def write_config(self, ram_mib, vcpus, admin_password=None, extra=None):
        """Write the server's settings from the flavor (and, on a first start, the admin's password file)."""
        values = {"listen_addresses": self.address, "port": self.port,
                  "unix_socket_directories": str(INSIDE / "run"),
                  "hba_file": str(INSIDE / "conf" / "pg_hba.conf"),
                  "password_encryption": "scram-sha-256",
                  **datastore.settings(ram_mib, vcpus), **(extra or {})}
        conf = self.folder / "conf"
        (conf / "postgresql.conf").write_text(datastore.render_config(values))
        (conf / "pg_hba.conf").write_text(datastore.HBA)
        if admin_password is not None:
            pwfile = conf / "pwfile"
            pwfile.write_text(admin_password + "\n")
            os.chown(pwfile, _uid(), _gid())
            pwfile.chmod(0o600)

    def _script(self):
        bin_dir = datastore.bin_dir(self.version)
        as_postgres = "setpriv --reuid=postgres --regid=postgres --init-groups --"
        data = INSIDE / "data"
        lines = [
            # a small tmpfs over /var/lib/postgresql, seen only by this instance, holds its mount points
            f"mount -t tmpfs -o mode=0755,size=1m cloudlab-db {INSIDE}",
            f"mkdir -p {data} {INSIDE}/run {INSIDE}/conf",
            (f"mount -o loop {self.volume_path} {data}" if self.volume is not None
             else f"mount --bind {self.folder}/data {data}"),
            f"mount --bind {self.socket_dir} {INSIDE}/run",
            f"mount --bind {self.folder}/conf {INSIDE}/conf",
            f"chown postgres:postgres {data} && chmod 0700 {data}",
            f"if [ ! -f {data}/pgdata/PG_VERSION ]; then "
            f"{as_postgres} {bin_dir}/initdb -D {data}/pgdata -U {datastore.ADMIN_USER} "
            f"--pwfile={INSIDE}/conf/pwfile -A scram-sha-256 -E UTF8 --locale=C.UTF-8 "
            f">> {self.log_path} 2>&1; fi",
            f"rm -f {INSIDE}/conf/pwfile",
            f"exec {as_postgres} {bin_dir}/postgres -D {data}/pgdata "
            f"-c config_file={INSIDE}/conf/postgresql.conf >> {self.log_path} 2>&1",
        ]
        return lines

    def start(self, ram_mib, vcpus, ready, timeout=START_TIMEOUT_S):
        """Start the server and wait until ``ready()`` (a connection attempt) succeeds.

        Raises:
            MissingPrerequisite: not root, or no ``unshare``/``setpriv``.
            CloudlabError: the server stopped before it answered (the end of its log is quoted).
            ResourceTimeout: it did not answer within ``timeout`` seconds.
        """
        if self.pid:
            return
        if os.geteuid() != 0:
            raise MissingPrerequisite("a database instance needs root: it mounts its volume and joins the lab network",
                                      fix="run the lab as root (as `make lab` does on a lab machine)")
        args = node.command(self.address, self.prefixlen, self._script())
        link = node.link_name(self.folder, "db")
        with open(self.folder / "node.stderr", "wb") as err:
            self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                          env=ownership.child_env())
        try:
            self.limits.apply(self._proc.pid, ram_mib, vcpus)
            node.plug(self._proc.pid, link, self.bridge, self.netns, what="the database instance")
            deadline = time.monotonic() + timeout
            while True:
                if self._proc.poll() is not None:
                    raise CloudlabError("the database server stopped while starting; the end of its log:\n"
                                        + self.failure_lines(), fix=f"read {self.log_path}")
                if ready():
                    return
                if time.monotonic() > deadline:
                    raise ResourceTimeout(f"the database server did not accept connections within {timeout:g} s; "
                                          "the end of its log:\n" + self.failure_lines(),
                                          fix=f"read {self.log_path}")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    def failure_lines(self):
        """The end of the server's log and of its node's stderr: what a failed start said."""
        parts = [last_lines(self.log_path), last_lines(self.folder / "node.stderr", 5)]
        return "\n".join(p for p in parts if p.strip()) or "(the log is empty)"

    def stop(self, timeout=20.0):
        """Stop the server (fast shutdown: open transactions roll back), then release its volume and cgroup."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGINT)       # PostgreSQL's "fast" shutdown
                try:
                    self._proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    stop_process(self._proc, timeout=5)
            self._proc = None
        if self.volume is not None:
            self.volume.stop()
            self.volume = None
        self.limits.remove()

    def limits_now(self):
        """The memory and CPU limits the kernel enforces on the server now (see containers' kernel view)."""
        from ..containers import kernel
        if not self.pid:
            return None
        return kernel.limits(self.pid)


def _uid():
    import pwd
    try:
        return pwd.getpwnam("postgres").pw_uid
    except KeyError:
        raise MissingPrerequisite("there is no postgres system user",
                                  fix="install PostgreSQL: `make lab` (Debian's `postgresql` makes the user)") from None


def _gid():
    import pwd
    return pwd.getpwnam("postgres").pw_gid
