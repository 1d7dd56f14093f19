"""The share server: NFS-Ganesha, a user-space NFS server, serving the lab's shares.

Manila does not serve files itself: a *share server* does, and Manila tells it
what to export to whom.  Here the share server is NFS-Ganesha (the server of
Manila's own CephFS and GlusterFS drivers).  It runs in user space, so it needs no
NFS server in the host's kernel (a lab host may have none), and speaks NFSv4 only:
one TCP port (2049), no rpcbind, no mountd.

How the lab runs it:

* **network**: it runs in a network namespace of its own whose only link is a
  veth pair plugged into the lab network's bridge, with an address of its own on
  the lab network (like Manila's share server, a node on the tenant's network):
  nothing else can reach it, whatever addresses Ganesha binds (it binds IPv6's
  ``::`` when the ``Bind_addr`` it is given does not resolve for IPv6);
* **storage**: each share is an XFS filesystem in an image file of the share's
  size, loop-mounted inside the server's **own mount namespace** (``unshare -m``):
  the share's size is a real limit (a full share says "No space left on device"),
  and none of these mounts appears in the machine's mount table; they vanish
  with the process, and their loop devices with them (``autoclear``).  XFS,
  because it grows while mounted with only the right to mount (``xfs_growfs``);
  ext4's online resize also needs CAP_SYS_RESOURCE, which a lab host running in
  a container may not have;
* **exports**: one ``EXPORT`` block per share, with one ``CLIENT`` block per access
  rule (``Access_Type = RW`` or ``RO``); a client that matches no rule matches the
  export's own ``Access_Type = None``, so it cannot even see the export.  Ganesha
  takes the first ``CLIENT`` block that matches, so the most specific address is
  written first;
* **changes**: the whole configuration is rewritten and Ganesha re-reads its exports
  on ``SIGHUP``: exports appear, change their client lists, or go, without a restart.
"""

import ipaddress
import os
import signal
import subprocess
import time

from ..errors import CloudlabError, MissingPrerequisite, ResourceTimeout
from ..host import node, ownership
from ..process import stop_process

NFS_PORT = 2049
# the share server's host number on the lab's /24: outside the DHCP range (.100-.199)
HOST_NUMBER = node.HOST_NUMBERS["share server"][0]
START_TIMEOUT_S = 20.0
RELOAD_TIMEOUT_S = 10.0
READY_LINE = b"NFS SERVER INITIALIZED"
RELOADED_LINE = b"Reread exports complete"

CORE = """\
# written by cloudlab: the lab's share server (NFS-Ganesha); see cloudlab/shared_file_system/ganesha.py
NFS_CORE_PARAM {{
    Protocols = 4;
    Bind_addr = {address};
    NFS_Port = {port};
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_UDP = false;
}}
NFSV4 {{
    # no grace period at start: the lab's shares have no clients to wait for
    Graceless = true;
    Lease_Lifetime = 10;
    Minor_Versions = 0, 1, 2;
    RecoveryBackend = fs;
    RecoveryRoot = {recovery};
    # owners as numbers (uid 0 is "0"): no idmapd on either side
    Allow_Numeric_Owners = true;
    Only_Numeric_Owners = true;
}}
NFS_KRB5 {{ Active_krb5 = false; }}
EXPORT_DEFAULTS {{ Access_Type = None; }}
LOG {{ Default_Log_Level = EVENT; }}
"""

EXPORT = """\
EXPORT {{
    # share {name} ({share_id})
    Export_Id = {export_id};
    Path = {path};
    Pseudo = {pseudo};
    Protocols = 4;
    Transports = TCP;
    SecType = sys;
    Squash = No_Root_Squash;
    # whom no rule names gets nothing
    Access_Type = None;
    FSAL {{ Name = VFS; }}
{clients}}}
"""


def client_blocks(rules):
    """``CLIENT`` blocks for access rules ``[(address or CIDR, "rw" | "ro")]``, most specific first.

    Ganesha uses the first block that matches a client, so a rule for one address
    must come before a rule for its whole network, whatever order they were added in.
    """
    def key(rule):
        """Longest prefix first, then by address, so the order never depends on insertion."""
        network = ipaddress.ip_network(rule[0], strict=False)
        return (-network.prefixlen, network.version, int(network.network_address))

    lines = []
    for address, level in sorted(rules, key=key):
        lines.append(f"    CLIENT {{ Clients = {address}; Access_Type = {level.upper()}; }}\n")
    return "".join(lines)


def render(address, port, recovery, exports):
    """The whole configuration: the core blocks and one ``EXPORT`` per share.

    Args:
        address: the address to listen on (the lab network's gateway).
        port: the TCP port (2049 unless taken).
        recovery: folder for NFSv4 client recovery records.
        exports: dicts with ``share_id``, ``name``, ``export_id``, ``path``, ``pseudo`` and
            ``rules`` (``[(address, level)]``).
    """
    text = CORE.format(address=address, port=port, recovery=recovery)
    for export in sorted(exports, key=lambda e: e["export_id"]):
        text += EXPORT.format(clients=client_blocks(export["rules"]), **{k: v for k, v in export.items()
                                                                         if k != "rules"})
    return text


def make_filesystem(image, size_gib):
    """A sparse image file of ``size_gib`` GiB holding an empty XFS filesystem."""
    with open(image, "wb") as f:
        f.truncate(size_gib * 2**30)
    # -K: no discard pass over a fresh file
    node.run(["mkfs.xfs", "-q", "-f", "-K", "-L", "share", str(image)], f"making the filesystem of {image.name}")


class ShareServer:
    """One NFS-Ganesha process serving a lab's shares.

    Args:
        folder: where its configuration, log, pid file and mount points live (carries the lab's prefix).
        address: its own address on the lab network (outside the DHCP range).
        prefixlen: the lab network's prefix length (24).
        bridge: the lab network's bridge, which its cable (a veth pair) joins.
        link: the name of the cable's lab-side end (at most 15 characters).
        netns: the lab's network namespace (where the bridge is), or None for the host's network.
    """

    def __init__(self, folder, address, prefixlen, bridge, link, netns=None):
        self.folder = folder
        self.address = address
        self.prefixlen = prefixlen
        self.bridge = bridge
        self.link = link
        self.netns = netns
        self.port = None
        self._proc = None
        self.config_path = folder / "ganesha.conf"
        self.log_path = folder / "ganesha.log"
        self.pid_path = folder / "ganesha.pid"
        self.stderr_path = folder / "ganesha.stderr"
        self.mounts = folder / "exports"
        self.recovery = folder / "recovery"
        self._exports = []

    @property
    def pid(self):
        """The server's process id, or None when it does not run."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def mount_point(self, share_id):
        """Where a share's filesystem is mounted (inside the server's mount namespace)."""
        return self.mounts / share_id

    def start(self, exports, images):
        """Start Ganesha with ``exports`` (see :func:`render`), mounting ``images`` ({share id: image}) first.

        Raises:
            MissingPrerequisite: NFS-Ganesha is not installed, or this is not root.
            CloudlabError: it did not start (the end of its log is quoted).
        """
        if self.pid:
            return
        if os.geteuid() != 0:
            raise MissingPrerequisite("the share server (NFS-Ganesha) needs root: it mounts each share's "
                                      "filesystem and serves files of any owner",
                                      fix="run the lab as root (as `make lab` does on a lab machine)")
        if not os.path.exists("/usr/bin/ganesha.nfsd"):
            raise MissingPrerequisite("NFS-Ganesha is not installed",
                                      fix="run `make lab`, or `sudo apt-get install nfs-ganesha nfs-ganesha-vfs`")
        self._stop_stale()
        for sub in (self.mounts, self.recovery):
            sub.mkdir(parents=True, exist_ok=True)
        lines = []
        for share_id, image in images.items():
            self.mount_point(share_id).mkdir(exist_ok=True)
            lines.append(f"mount -o loop {image} {self.mount_point(share_id)}")
        lines.append(f"exec ganesha.nfsd -F -f {self.config_path} -L {self.log_path} -p {self.pid_path}")
        self.port = NFS_PORT
        self._exports = list(exports)
        self._write_config()
        self.log_path.write_bytes(b"")
        # unshare -m -n: a mount namespace and a network namespace of its own; sh sets both up
        # and becomes ganesha.nfsd, whose exit takes the namespaces, mounts and cable with it
        args = node.command(self.address, self.prefixlen, lines)
        with open(self.stderr_path, "wb") as err:
            # the owner mark: a server whose lab died without stopping it is ended by `host down`
            self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                          env=ownership.child_env())
        try:
            self._plug(self._proc.pid)
            if self._wait_for(READY_LINE, 0, START_TIMEOUT_S):
                return
        except BaseException:
            self.stop()
            raise
        log = self.log_path.read_bytes().decode(errors="replace")
        stderr = self.stderr_path.read_text(errors="replace")
        self.stop()
        raise CloudlabError(f"the share server did not start: {(stderr + log).strip()[-600:]}",
                            fix=f"read {self.log_path}")

    def _plug(self, pid):
        """Connect the server's network namespace to the lab's bridge (:func:`cloudlab.host.node.plug`)."""
        node.plug(pid, self.link, self.bridge, self.netns, what="the share server")

    def _stop_stale(self):
        """End a share server an earlier session of this lab left running (found by its pid file)."""
        try:
            pid = int(self.pid_path.read_text())
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except (OSError, ValueError):
            return
        if str(self.config_path).encode() in cmdline:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                time.sleep(0.05)

    def _wait_for(self, line, offset, timeout):
        """True once ``line`` appears in the log after ``offset``; False if the process ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(self.log_path, "rb") as f:
                    f.seek(offset)
                    if line in f.read():
                        return True
            except FileNotFoundError:
                pass
            if self._proc.poll() is not None:
                return False
            time.sleep(0.02)
        raise ResourceTimeout(f"the share server did not log {line.decode()!r} within {timeout:g} s",
                              fix=f"read {self.log_path}")

    def _write_config(self):
        text = render(self.address, self.port, self.recovery, self._exports)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)

    def configure(self, exports):
        """Serve exactly ``exports`` from now on: rewrite the configuration and make Ganesha re-read it.

        Raises:
            CloudlabError: the server is not running, or it rejected the configuration.
        """
        if not self.pid:
            raise CloudlabError("the share server is not running", fix="lab.shared_file_system.start()")
        self._exports = list(exports)
        self._write_config()
        offset = self.log_path.stat().st_size
        os.kill(self.pid, signal.SIGHUP)
        if not self._wait_for(RELOADED_LINE, offset, RELOAD_TIMEOUT_S):
            raise CloudlabError("the share server stopped while re-reading its exports",
                                fix=f"read {self.log_path}")
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            news = f.read().decode(errors="replace")
        errors = [line for line in news.splitlines() if ":CONFIG :CRIT" in line]
        if errors:
            raise CloudlabError(f"the share server rejected its new exports: {errors[0][-300:]}")

    def _in_namespace(self, args, what):
        """Run ``args`` inside the server's mount namespace (where the shares are mounted)."""
        return node.run(["nsenter", "-t", str(self.pid), "-m", *args], what)

    def mount(self, share_id, image):
        """Loop-mount a share's filesystem inside the server's mount namespace."""
        self.mount_point(share_id).mkdir(parents=True, exist_ok=True)
        self._in_namespace(["mount", "-o", "loop", str(image), str(self.mount_point(share_id))],
                           f"mounting share {share_id}")

    def unmount(self, share_id):
        """Unmount a share's filesystem (its loop device is freed with it)."""
        point = str(self.mount_point(share_id))
        if not self.pid:
            return
        try:
            self._in_namespace(["umount", point], f"unmounting share {share_id}")
        except CloudlabError:
            # Ganesha may hold a file open a moment longer: detach now, free when closed
            self._in_namespace(["umount", "-l", point], f"unmounting share {share_id}")
        try:
            self.mount_point(share_id).rmdir()
        except OSError:
            pass

    def grow(self, share_id, image, size_gib):
        """Grow a mounted share's image to ``size_gib`` GiB and its filesystem with it (online)."""
        with open(image, "r+b") as f:
            f.truncate(size_gib * 2**30)
        device = node.run(["losetup", "-j", str(image), "-O", "NAME", "-n"], f"finding the loop device of {image.name}")
        device = device.split()[0] if device.split() else None
        if device is None:
            raise CloudlabError(f"share {share_id} has no loop device", fix="is the share server running?")
        # the loop device learns the file's new size, then XFS grows into it while mounted
        self._in_namespace(["losetup", "-c", device], f"resizing {device}")
        self._in_namespace(["xfs_growfs", str(self.mount_point(share_id))], f"growing the filesystem of share {share_id}")

    def usage(self, share_id):
        """``(used, total)`` bytes of a mounted share, as the server sees its filesystem."""
        out = self._in_namespace(["df", "-B1", "--output=used,size", str(self.mount_point(share_id))],
                                 f"reading the usage of share {share_id}")
        used, total = out.splitlines()[-1].split()
        return int(used), int(total)

    def stop(self):
        """Stop Ganesha; its mount namespace, the shares' mounts and their loop devices go with it."""
        if self._proc is not None:
            stop_process(self._proc, timeout=10)
            self._proc = None
        self.pid_path.unlink(missing_ok=True)
