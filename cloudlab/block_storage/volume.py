"""Volumes (볼륨), snapshots and attachments as the block storage service shows them.

The statuses are Cinder's own names, so what a learner sees here is what
``openstack volume show`` prints::

    creating -> available -> attaching -> in-use -> detaching -> available
                          -> extending -> available      -> deleting (gone)
    error, error_extending, error_deleting: an operation failed half-way

A volume's ``history`` lists the statuses it went through, in order.  An
:class:`Attachment` records which server the volume is on, the name libvirt was
asked for (``requested_device``: what Nova's API reports) and the name the
**guest** gave the disk (``device``), which can differ: the guest's kernel names
disks in the order it finds them.  ``to_cinder()`` gives the record in the shape of
Cinder's v3 API (``GET /v3/{project}/volumes/{id}``).
"""

import dataclasses
import time

CREATING, AVAILABLE, RESERVED, ATTACHING, IN_USE, DETACHING = (
    "creating", "available", "reserved", "attaching", "in-use", "detaching")
EXTENDING, DELETING, ERROR, ERROR_EXTENDING, ERROR_DELETING = (
    "extending", "deleting", "error", "error_extending", "error_deleting")
VOLUME_STATUSES = (CREATING, AVAILABLE, RESERVED, ATTACHING, IN_USE, DETACHING, EXTENDING, DELETING,
                   ERROR, ERROR_EXTENDING, ERROR_DELETING)
# statuses of an operation under way: a volume found in one of them after a restart
# was interrupted (Cinder leaves such volumes for `cinder reset-state`)
TRANSITIONAL = (CREATING, RESERVED, ATTACHING, DETACHING, EXTENDING, DELETING)
GIB = 2 ** 30


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000000"


def _record(obj):
    """A dataclass's public fields as plain data (never the service it points back to)."""
    out = {}
    for field in dataclasses.fields(obj):
        if field.name.startswith("_"):
            continue
        value = getattr(obj, field.name)
        if isinstance(value, list):
            value = [dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for v in value]
        elif isinstance(value, dict):
            value = dict(value)
        out[field.name] = value
    return out


@dataclasses.dataclass
class Attachment:
    """A volume on a server.

    Attributes:
        id: the attachment's id (Cinder's ``attachment_id``).
        server_id, server_name: the server (its libvirt domain's UUID and its name).
        requested_device: the name libvirt was asked for, e.g. ``/dev/vdb``.
        device: the name the guest's kernel gave the disk, e.g. ``/dev/vda``; None until
            the guest has seen it (the server was off when the volume was attached).
        attached_at: when, as Cinder writes times.
    """

    id: str
    server_id: str
    server_name: str
    requested_device: str
    device: str = None
    attached_at: str = dataclasses.field(default_factory=_now)

    def to_cinder(self, volume_id, host_name=None):
        """This attachment as an entry of a Cinder volume's ``attachments``."""
        return {"id": volume_id, "attachment_id": self.id, "volume_id": volume_id,
                "server_id": self.server_id, "host_name": host_name, "device": self.requested_device,
                "attached_at": self.attached_at}


@dataclasses.dataclass
class Volume:
    """One volume; get it from ``lab.block_storage.create_volume()`` or ``get_volume()``.

    Attributes:
        id: a UUID, as Cinder's.
        name: the name it was created with (unique in the lab).
        size: GiB.
        status: one of :data:`VOLUME_STATUSES`.
        attachments: list of :class:`Attachment` (more than one only when ``multiattach``).
        multiattach: whether several servers may have it attached at once.
        bootable: True when made from an image.
        source: ``{"image": name}``, ``{"snapshot": id}`` or ``{}`` for an empty volume.
        volume_type: the backend holding its bytes (``file``, ``nbd``), as Cinder's volume types choose one.
        history: the statuses it went through, oldest first.
        properties: ``{str: str}`` kept with it (the OpenStack API keeps the owning project there).
    """

    id: str
    name: str
    size: int
    status: str = CREATING
    attachments: list = dataclasses.field(default_factory=list)
    multiattach: bool = False
    bootable: bool = False
    source: dict = dataclasses.field(default_factory=dict)
    volume_type: str = "file"
    description: str = ""
    created_at: str = dataclasses.field(default_factory=_now)
    updated_at: str = None
    history: list = dataclasses.field(default_factory=list)
    properties: dict = dataclasses.field(default_factory=dict)
    _service: object = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self):
        self.attachments = [a if isinstance(a, Attachment) else Attachment(**a) for a in self.attachments]
        if not self.history:
            self.history = [self.status]

    def set_status(self, status):
        """Move to ``status`` (recorded in ``history``)."""
        if status != self.status:
            self.status = status
            self.history.append(status)
        self.updated_at = _now()

    @property
    def size_bytes(self):
        """The size in bytes."""
        return self.size * GIB

    @property
    def servers(self):
        """Names of the servers the volume is attached to."""
        return [a.server_name for a in self.attachments]

    def attachment_on(self, server):
        """The :class:`Attachment` on ``server`` (a name or a Server), or None."""
        name = getattr(server, "name", server)
        return next((a for a in self.attachments if a.server_name == name), None)

    def device_on(self, server):
        """The guest's device path for this volume on ``server`` (``/dev/vdb``), or None."""
        attachment = self.attachment_on(server)
        return attachment.device if attachment else None

    # -- conveniences: the service does the work ---------------------------------------

    def attach(self, server, **options):
        """Attach to ``server`` (see :meth:`BlockStorage.attach_volume`)."""
        return self._service.attach_volume(self, server, **options)

    def detach(self, server=None, **options):
        """Detach from ``server`` (see :meth:`BlockStorage.detach_volume`)."""
        return self._service.detach_volume(self, server, **options)

    def extend(self, new_size):
        """Grow to ``new_size`` GiB (see :meth:`BlockStorage.extend_volume`)."""
        return self._service.extend_volume(self, new_size)

    def delete(self, **options):
        """Delete the volume (see :meth:`BlockStorage.delete_volume`)."""
        return self._service.delete_volume(self, **options)

    def refresh(self):
        """This volume as the service sees it now (attachments checked against the servers)."""
        return self._service.get_volume(self.id)

    def to_record(self):
        """The volume as saved in the service's records."""
        return _record(self)

    def to_cinder(self, host_name=None):
        """The volume in the shape of Cinder's v3 API (``volume`` of ``GET /v3/.../volumes/{id}``)."""
        return {
            "id": self.id, "name": self.name, "size": self.size, "status": self.status,
            "attachments": [a.to_cinder(self.id, host_name) for a in self.attachments],
            "multiattach": self.multiattach, "bootable": "true" if self.bootable else "false",
            "snapshot_id": self.source.get("snapshot"),
            "volume_image_metadata": {"image_name": self.source["image"]} if "image" in self.source else {},
            "volume_type": self.volume_type, "description": self.description or None,
            "created_at": self.created_at, "updated_at": self.updated_at,
            "availability_zone": "nova", "encrypted": False, "metadata": {},
        }

    def __str__(self):
        where = ", ".join(f"{a.server_name} as {a.device or a.requested_device}" for a in self.attachments)
        return f"volume {self.name}: {self.size} GiB, {self.status}" + (f", on {where}" if where else "")


@dataclasses.dataclass
class Snapshot:
    """A point-in-time copy of a volume; new volumes can be made from it.

    Statuses: creating, available, deleting, error (Cinder's).  ``properties`` as a volume's.
    """

    id: str
    name: str
    volume_id: str
    size: int
    status: str = CREATING
    volume_type: str = None
    volume_name: str = ""
    created_at: str = dataclasses.field(default_factory=_now)
    description: str = ""
    properties: dict = dataclasses.field(default_factory=dict)
    _service: object = dataclasses.field(default=None, repr=False, compare=False)

    def delete(self):
        """Delete the snapshot (see :meth:`BlockStorage.delete_snapshot`)."""
        return self._service.delete_snapshot(self)

    def to_record(self):
        """The snapshot as saved in the service's records."""
        return _record(self)

    def to_cinder(self):
        """The snapshot in the shape of Cinder's v3 API."""
        return {"id": self.id, "name": self.name, "volume_id": self.volume_id, "size": self.size,
                "status": self.status, "created_at": self.created_at, "metadata": {}}

    def __str__(self):
        return f"snapshot {self.name}: {self.size} GiB copy of volume {self.volume_name or self.volume_id}, {self.status}"


@dataclasses.dataclass
class Quotas:
    """Limits of the lab's project, with Cinder's quota names.

    Cinder's defaults are 10 volumes, 10 snapshots and 1000 GiB; a lab host's disk
    is smaller, so ``gigabytes`` (volumes and snapshots together, as in Cinder) is 20.
    """

    volumes: int = 10
    snapshots: int = 10
    gigabytes: int = 20

    def to_record(self):
        """The quotas as a dict."""
        return dataclasses.asdict(self)
