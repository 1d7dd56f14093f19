"""The shared file system service (Manila's role): NFS shares mounted by several servers.

The note: "N/W 기반으로, directory로 mount" (network based, mounted as a
directory).  Where a volume is a disk that one server owns at a time, a
**share (공유)** is a directory tree that a *file server* keeps, and any number
of servers mount it over the network at once: they see one another's files
because every read and write goes to the same server, over NFS.

What the service does, as Manila does with a share server:

* ``create_share(name, size)``: make a filesystem of ``size`` GiB for it on the
  share server (:mod:`cloudlab.shared_file_system.ganesha`: NFS-Ganesha, in user
  space, a node of its own on the lab network) and export it; its
  **export location** ``ADDRESS:/share-ID`` is what clients mount;
* ``allow_access(share, "10.213.0.105", "rw")`` / ``deny_access(share, rule)``:
  access rules by client address (or network), read-write or read-only; an
  address that no rule names cannot mount the share;
* ``extend_share``: grow it while mounted; ``delete_share``: unexport and remove it.

Inside a guest: ``mount -t nfs4 -o vers=4.2,addr=ADDRESS ADDRESS:/share-ID /mnt/share``
(``share.mount_command()`` writes it).  NFS promises *close-to-open* consistency:
a file written and closed by one client is read whole by any client that opens
it afterwards.  Records are kept in the lab's state folder; ``stop()`` stops the
share server and deletes every share of the lab.
"""

import ipaddress
import os
import re
import shutil
import threading
import uuid
from pathlib import Path

from .. import arguments
from ..errors import CloudlabError, Conflict, InvalidInput, NotFound
from ..host import node, ownership
from ..records import Records
from .ganesha import HOST_NUMBER, ShareServer, make_filesystem
from .share import (ACCESS_LEVELS, ACTIVE, APPLYING, AVAILABLE, CREATING, DELETING, DENYING, ERROR,
                    EXTENDING, QUEUED_TO_APPLY, QUEUED_TO_DENY, TRANSITIONAL, AccessRule, Share)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
MAX_SIZE_GIB = 100
PROTOCOLS = ("NFS",)


def check_address(access_to):
    """``access_to`` as the canonical text of an IP address or a network in CIDR form.

    Raises:
        InvalidInput: not an address or network, or a network with host bits set.
    """
    if not isinstance(access_to, str) or not access_to.strip():
        raise InvalidInput(f"access_to={access_to!r} is not an IP address",
                           fix="give one address (10.213.0.105) or a network (10.213.0.0/24)")
    try:
        if "/" in access_to:
            return str(ipaddress.ip_network(access_to.strip(), strict=True))
        return str(ipaddress.ip_address(access_to.strip()))
    except ValueError as exc:
        if "host bits set" in str(exc):
            network = ipaddress.ip_network(access_to.strip(), strict=False)
            raise InvalidInput(f"{access_to!r} names a network but has host bits set",
                               fix=f"write the network as {network} or one address as {access_to.split('/')[0]}") from None
        raise InvalidInput(f"access_to={access_to!r} is not an IP address or network ({exc})",
                           fix="give one address (10.213.0.105) or a network (10.213.0.0/24)") from None


class SharedFileSystem:
    """The lab's shared file system service: NFS shares with access rules, served by NFS-Ganesha.

    Args:
        lab: the :class:`~cloudlab.lab.Lab`; the share server listens on its network.
    """

    def __init__(self, lab):
        self.lab = lab
        self._lock = threading.RLock()
        self._shares = {}
        self._records = None
        self.server = None

    # -- lifecycle -------------------------------------------------------------------

    @property
    def folder(self):
        """The share server's folder: configuration, log, mount points."""
        return self.lab.home / f"{self.lab.prefix}share-server"

    def image_path(self, share):
        """The file holding a share's filesystem."""
        share_id = share.id if isinstance(share, Share) else share
        return self.lab.home / f"{self.lab.prefix}share-{share_id}.img"

    @property
    def address(self):
        """The share server's own address on the lab network (``.250``)."""
        return self.server.address

    @property
    def port(self):
        """The share server's NFS port (2049 unless another server had it)."""
        return self.server.port if self.server else None

    def start(self):
        """Start the share server on the lab network, serving the shares an earlier session left."""
        host = self.lab.host
        self._records = Records(self.lab.home / f"{self.lab.prefix}shared-file-system.json", {"shares": {}})
        data = self._records.load()
        with self._lock:
            for record in data["shares"].values():
                share = Share(**record)
                share._service = self
                if not self.image_path(share).exists():
                    continue
                if share.status in TRANSITIONAL:
                    share.set_status(ERROR)
                self._shares[share.id] = share
        self.folder.mkdir(exist_ok=True)
        address = host.subnet.network_address + HOST_NUMBER
        link = node.link_name(self.folder, "nfs")
        self.server = ShareServer(self.folder, str(address), host.subnet.prefixlen, host.bridge, link, host.netns)
        self.server.start(self._exports(), {s.id: self.image_path(s) for s in self._shares.values()})
        with self._lock:
            for share in self._shares.values():
                share.export_location = self._location(share)
            self._save()
        return self

    def stop(self):
        """Stop the share server and delete every share of the lab (their files and records)."""
        if self.server is not None:
            self.server.stop()
        with self._lock:
            for share in list(self._shares.values()):
                self.image_path(share).unlink(missing_ok=True)
            self._shares.clear()
            if self._records is not None:
                self._records.remove()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _save(self):
        with self._lock:
            self._records.save({"shares": {s.id: s.to_record() for s in self._shares.values()}})

    def _location(self, share):
        return f"{self.server.address}:/share-{share.id}"

    def _exports(self):
        """What the share server should export now: each share with its applied or applying rules."""
        with self._lock:
            return [{"share_id": s.id, "name": s.name, "export_id": s.export_id,
                     "path": str(self.server.mount_point(s.id) if self.server else ""),
                     "pseudo": f"/share-{s.id}",
                     "rules": [(r.access_to, r.access_level) for r in s.access_rules
                               if r.state in (QUEUED_TO_APPLY, APPLYING, ACTIVE)]}
                    for s in self._shares.values() if s.status != DELETING]

    def _apply(self):
        self.server.configure(self._exports())

    # -- lookups ---------------------------------------------------------------------

    def list_shares(self):
        """The lab's shares, by name."""
        with self._lock:
            return sorted(self._shares.values(), key=lambda s: s.name)

    def get_share(self, share):
        """The share with this name or id.

        Raises:
            NotFound: no such share; the message lists the lab's shares.
        """
        key = share.id if isinstance(share, Share) else share
        with self._lock:
            found = self._shares.get(key) or next((s for s in self._shares.values() if s.name == key), None)
            names = sorted(s.name for s in self._shares.values())
        if found is None:
            raise NotFound(f"no share named {key!r}",
                           fix=f"use one of: {', '.join(names)}" if names else "create one with create_share()")
        return found

    def list_access(self, share):
        """The access rules of ``share``."""
        return list(self.get_share(share).access_rules)

    def usage(self, share):
        """``(used, total)`` bytes of a share's filesystem."""
        return self.server.usage(self.get_share(share).id)

    # -- shares ----------------------------------------------------------------------

    def create_share(self, name, size, share_proto="NFS", description="", properties=None):
        """Create a share of ``size`` GiB and export it (nobody may mount it until a rule allows).

        Args:
            properties: ``{str: str}`` kept with the share (``share.properties``).
        Raises:
            InvalidInput: a bad name, size, description or properties, or a protocol other than NFS.
            Conflict: a share with that name exists.
        """
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidInput(f"share name {name!r} is not valid",
                               fix="use 1-40 letters, digits, '.', '_' or '-', starting with a letter or digit")
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_SIZE_GIB:
            raise InvalidInput(f"size={size!r} is not a usable share size",
                               fix=f"give a whole number of GiB from 1 to {MAX_SIZE_GIB}, e.g. size=1")
        if str(share_proto).upper() not in PROTOCOLS:
            raise InvalidInput(f"share_proto={share_proto!r} is not served here",
                               fix="use NFS (Manila also knows CIFS, CephFS, ...; this lab's share server speaks NFS)")
        properties = arguments.properties(properties)
        if description is not None and not isinstance(description, str):
            raise InvalidInput(f"description must be a string, not {type(description).__name__}")
        with self._lock:
            if any(s.name == name for s in self._shares.values()):
                raise Conflict(f"a share named {name!r} already exists", fix="choose another name")
            used = {s.export_id for s in self._shares.values()}
            export_id = next(i for i in range(1, 65536) if i not in used)
            share = Share(id=str(uuid.uuid4()), name=name, size=size, export_id=export_id,
                          description=description or "", properties=properties)
            share._service = self
            share.export_location = self._location(share)
            self._shares[share.id] = share
            self._save()
        image = self.image_path(share)
        mounted = False
        try:
            make_filesystem(image, size)
            self.server.mount(share.id, image)
            mounted = True
            with self._lock:
                self._apply()
        except BaseException:
            # nothing half-made stays: no export, no mount, no file, no record
            with self._lock:
                self._shares.pop(share.id, None)
                try:
                    self._apply()
                finally:
                    if mounted:
                        self.server.unmount(share.id)
                    image.unlink(missing_ok=True)
                    self._save()
            raise
        with self._lock:
            share.set_status(AVAILABLE)
            self._save()
        return share

    def extend_share(self, share, new_size):
        """Grow a share to ``new_size`` GiB, also while clients have it mounted.

        Raises:
            InvalidInput: ``new_size`` is not larger (shares only grow here).
            Conflict: the share is busy.
        """
        share = self.get_share(share)
        if isinstance(new_size, bool) or not isinstance(new_size, int) or not share.size < new_size <= MAX_SIZE_GIB:
            raise InvalidInput(f"new_size={new_size!r} does not grow share {share.name} ({share.size} GiB)",
                               fix=f"give a whole number of GiB from {share.size + 1} to {MAX_SIZE_GIB}")
        with self._lock:
            if share.status != AVAILABLE:
                raise Conflict(f"share {share.name} is {share.status}", fix="wait until it is available")
            share.set_status(EXTENDING)
            self._save()
        try:
            self.server.grow(share.id, self.image_path(share), new_size)
        except BaseException:
            with self._lock:
                share.set_status("extending_error")
                self._save()
            raise
        with self._lock:
            share.size = new_size
            share.set_status(AVAILABLE)
            self._save()
        return share

    def delete_share(self, share):
        """Unexport a share and delete its files (clients that still mount it get errors).

        Raises:
            NotFound: no such share.
            Conflict: the share is busy.
        """
        share = self.get_share(share)
        with self._lock:
            if share.status in (CREATING, EXTENDING, DELETING):
                raise Conflict(f"share {share.name} is {share.status}", fix="wait until it is available")
            share.set_status(DELETING)
            self._save()
            try:
                self._apply()
                self.server.unmount(share.id)
            except BaseException:
                share.set_status("error_deleting")
                self._save()
                raise
            self.image_path(share).unlink(missing_ok=True)
            self._shares.pop(share.id, None)
            self._save()

    # -- access rules ----------------------------------------------------------------

    def allow_access(self, share, access_to, access_level="rw", access_type="ip"):
        """Let ``access_to`` (an IP address or a CIDR network) mount ``share``, read-write or read-only.

        Returns the :class:`~cloudlab.shared_file_system.share.AccessRule`, ``active`` once the
        share server applied it.

        Raises:
            InvalidInput: a malformed address, an access level other than rw/ro, a type other than ip.
            Conflict: the share already has a rule for that address.
        """
        share = self.get_share(share)
        if access_type != "ip":
            raise InvalidInput(f"access_type={access_type!r} is not supported for NFS here",
                               fix="use access_type='ip' (NFS clients are told apart by address)")
        if access_level not in ACCESS_LEVELS:
            raise InvalidInput(f"access_level={access_level!r} is not one of rw, ro",
                               fix="use 'rw' (read-write) or 'ro' (read-only)")
        access_to = check_address(access_to)
        with self._lock:
            existing = next((r for r in share.access_rules if r.access_to == access_to), None)
            if existing:
                raise Conflict(f"share {share.name} already has a rule for {access_to} ({existing.access_level})",
                               fix="deny_access() it first to change its level")
            if share.status != AVAILABLE:
                raise Conflict(f"share {share.name} is {share.status}", fix="wait until it is available")
            rule = AccessRule(id=str(uuid.uuid4()), access_to=access_to, access_level=access_level)
            share.access_rules.append(rule)
            self._save()
            rule.state = APPLYING
            try:
                self._apply()
            except BaseException:
                share.access_rules.remove(rule)
                self._save()
                raise
            rule.state = ACTIVE
            self._save()
        return rule

    def deny_access(self, share, rule):
        """Remove an access rule (by the rule, its id, or its address); clients it let in lose access.

        Raises:
            NotFound: the share has no such rule.
        """
        share = self.get_share(share)
        with self._lock:
            key = rule.id if isinstance(rule, AccessRule) else rule
            found = next((r for r in share.access_rules if key in (r.id, r.access_to)), None)
            if found is None:
                rules = ", ".join(f"{r.access_to} ({r.id[:8]})" for r in share.access_rules) or "none"
                raise NotFound(f"share {share.name} has no access rule {key!r}", fix=f"its rules: {rules}")
            found.state = QUEUED_TO_DENY
            self._save()
            found.state = DENYING
            try:
                self._apply()
            except BaseException:
                found.state = "error"
                self._save()
                raise
            share.access_rules.remove(found)
            self._save()

    def __repr__(self):
        where = f" on {self.server.address}:{self.server.port}" if self.server and self.server.port else ""
        return f"<SharedFileSystem{where}: {len(self._shares)} shares>"


def _cmdline(proc):
    return (proc / "cmdline").read_bytes()


def leftovers(home, prefix):
    """Share servers, loop devices and mounts of any lab still there (``host leftovers`` adds these).

    Share images and the servers' folders carry the lab's prefix, so the host's own
    scan of the labs' folders already finds them.

    Args:
        home: ``config.home()``.
        prefix: the global prefix (``cloudlab-``).
    """
    found, home = [], str(home)
    mark = f"/{prefix}"
    namespaces = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            raw = _cmdline(proc)
            argv0 = raw.split(b"\0", 1)[0]
            if argv0.endswith(b"ganesha.nfsd"):
                text = raw.replace(b"\0", b" ").decode(errors="replace")
                if home in text and mark in text:
                    found.append(f"process {proc.name}: {text[:120]}")
            ns = os.stat(proc / "ns" / "mnt").st_ino
            if ns in namespaces:
                continue
            # a daemon of another lab host (another CLOUDLAB_HOME) made its private mount namespace
            # as a copy of the machine's while this lab's mounts were up: its copies are its own,
            # gone when it ends, and not this lab's to clean (two labs on one machine, as in class)
            owner = ownership.owner_of(proc.name)
            if owner and not owner.startswith(home.rstrip("/") + "/"):
                continue
            namespaces.add(ns)
            for line in (proc / "mountinfo").read_text(errors="replace").splitlines():
                point = line.split()[4]
                if point.startswith(home) and mark in point:
                    found.append(f"mount {point} (seen by process {proc.name})")
        except OSError:
            continue
    for backing in sorted(Path("/sys/block").glob("loop*/loop/backing_file")):
        try:
            target = backing.read_text().strip()
        except OSError:
            continue
        if target.startswith(home) and mark in target:
            found.append(f"loop device /dev/{backing.parent.parent.name}: {target}")
    return found


__all__ = ["SharedFileSystem", "Share", "AccessRule", "check_address", "leftovers"]
