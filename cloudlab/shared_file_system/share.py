"""Shares (공유) and access rules as the shared file system service shows them.

Names are Manila's, so what a learner sees here is what ``openstack share show``
prints.  A share's status::

    creating -> available -> extending -> available -> deleting (gone)
    error, error_deleting, extending_error: an operation failed half-way

An **access rule** lets one address or network reach a share: ``access_type``
``ip``, ``access_to`` an address (``10.213.0.105``) or a network in CIDR form
(``10.213.0.0/24``), ``access_level`` ``rw`` (read-write) or ``ro`` (read-only).
Its ``state`` goes ``queued_to_apply -> applying -> active``, and
``queued_to_deny -> denying`` when it is removed.  An address that no rule
names cannot mount the share at all.  ``to_manila()`` gives the records in the
shape of Manila's v2 API.
"""

import dataclasses
import ipaddress
import time

CREATING, AVAILABLE, EXTENDING, DELETING = "creating", "available", "extending", "deleting"
ERROR, ERROR_DELETING, EXTENDING_ERROR = "error", "error_deleting", "extending_error"
TRANSITIONAL = (CREATING, EXTENDING, DELETING)
QUEUED_TO_APPLY, APPLYING, ACTIVE, QUEUED_TO_DENY, DENYING = (
    "queued_to_apply", "applying", "active", "queued_to_deny", "denying")
ACCESS_LEVELS = ("rw", "ro")
GIB = 2 ** 30


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000000"


@dataclasses.dataclass
class AccessRule:
    """Who may mount a share, and how (see the module docstring)."""

    id: str
    access_to: str
    access_level: str
    access_type: str = "ip"
    state: str = QUEUED_TO_APPLY
    created_at: str = dataclasses.field(default_factory=_now)

    def matches(self, address):
        """True when ``address`` (an IP) falls under this rule."""
        return ipaddress.ip_address(address) in ipaddress.ip_network(self.access_to, strict=False)

    def to_manila(self):
        """The rule in the shape of Manila's ``share_access_rules`` API."""
        return dataclasses.asdict(self)

    def __str__(self):
        return f"{self.access_to} {self.access_level} ({self.state})"


@dataclasses.dataclass
class Share:
    """One NFS share; get it from ``lab.shared_file_system.create_share()`` or ``get_share()``.

    Attributes:
        id: a UUID, as Manila's.
        name: the name it was created with (unique in the lab).
        size: GiB; the filesystem behind it holds no more.
        status: see the module docstring.
        share_proto: ``NFS``.
        export_location: ``ADDRESS:/PATH``, what a client mounts.
        access_rules: list of :class:`AccessRule`.
        export_id: the share server's number for the export.
        history: the statuses it went through, oldest first.
        properties: ``{str: str}`` kept with it (the OpenStack API keeps the owning project there).
    """

    id: str
    name: str
    size: int
    export_id: int
    status: str = CREATING
    share_proto: str = "NFS"
    export_location: str = None
    access_rules: list = dataclasses.field(default_factory=list)
    description: str = ""
    created_at: str = dataclasses.field(default_factory=_now)
    updated_at: str = None
    history: list = dataclasses.field(default_factory=list)
    properties: dict = dataclasses.field(default_factory=dict)
    _service: object = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self):
        self.access_rules = [r if isinstance(r, AccessRule) else AccessRule(**r) for r in self.access_rules]
        if not self.history:
            self.history = [self.status]

    def set_status(self, status):
        """Move to ``status`` (recorded in ``history``)."""
        if status != self.status:
            self.status = status
            self.history.append(status)
        self.updated_at = _now()

    @property
    def path(self):
        """The export's path on the share server (after the colon of the export location)."""
        return self.export_location.split(":", 1)[1] if self.export_location else None

    @property
    def server_address(self):
        """The share server's address (before the colon of the export location)."""
        return self.export_location.split(":", 1)[0] if self.export_location else None

    def rule_for(self, address):
        """The access rule that decides for ``address`` (the most specific that matches), or None."""
        matching = [r for r in self.access_rules if r.matches(address)]
        if not matching:
            return None
        return max(matching, key=lambda r: ipaddress.ip_network(r.access_to, strict=False).prefixlen)

    def mount_command(self, mountpoint="/mnt/share", options=""):
        """The shell command that mounts this share inside a guest, at ``mountpoint``.

        ``addr=`` names the server for the kernel: Debian's own ``mount.nfs`` (nfs-common)
        would fill it in from the export location; busybox's ``mount`` passes options
        to the kernel as they are.

        Args:
            mountpoint: the guest's directory (made if missing).
            options: more mount options, e.g. ``ro`` or ``lookupcache=none``.
        """
        port = getattr(self._service, "port", None)
        opts = ["vers=4.2", f"addr={self.server_address}"]
        if port and port != 2049:
            opts.append(f"port={port}")
        if options:
            opts.append(options)
        return (f"mkdir -p {mountpoint} && mount -t nfs4 -o {','.join(opts)} "
                f"{self.export_location} {mountpoint}")

    # -- conveniences: the service does the work ---------------------------------------

    def allow(self, access_to, access_level="rw"):
        """Add an access rule (see :meth:`SharedFileSystem.allow_access`)."""
        return self._service.allow_access(self, access_to, access_level)

    def deny(self, rule):
        """Remove an access rule (see :meth:`SharedFileSystem.deny_access`)."""
        return self._service.deny_access(self, rule)

    def extend(self, new_size):
        """Grow to ``new_size`` GiB (see :meth:`SharedFileSystem.extend_share`)."""
        return self._service.extend_share(self, new_size)

    def delete(self):
        """Delete the share and its files (see :meth:`SharedFileSystem.delete_share`)."""
        return self._service.delete_share(self)

    def usage(self):
        """``(used, total)`` bytes of the share's filesystem, as the share server sees it."""
        return self._service.usage(self)

    def to_record(self):
        """The share as saved in the service's records."""
        out = {}
        for field in dataclasses.fields(self):
            if field.name.startswith("_"):
                continue
            value = getattr(self, field.name)
            if field.name == "access_rules":
                value = [dataclasses.asdict(r) for r in value]
            out[field.name] = value
        return out

    def to_manila(self):
        """The share in the shape of Manila's v2 API (``share`` of ``GET /v2/shares/{id}``)."""
        return {
            "id": self.id, "name": self.name, "size": self.size, "status": self.status,
            "share_proto": self.share_proto, "description": self.description or None,
            "export_locations": [self.export_location] if self.export_location else [],
            "access_rules_status": "active" if all(r.state == ACTIVE for r in self.access_rules) else "syncing",
            "created_at": self.created_at, "updated_at": self.updated_at,
            "share_type_name": "default", "availability_zone": "nova", "is_public": False, "metadata": {},
        }

    def __str__(self):
        rules = ", ".join(str(r) for r in self.access_rules) or "no access rules"
        return f"share {self.name}: {self.size} GiB {self.share_proto}, {self.status}, {self.export_location}; {rules}"
