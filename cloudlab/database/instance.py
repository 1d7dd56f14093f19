"""Database instances (인스턴스) and backups as the database service shows them.

Names are Trove's, so what a learner sees here is what ``openstack database
instance show`` prints.  An instance's status::

    BUILD -> ACTIVE -> REBOOT -> ACTIVE          (restart)
                    -> RESIZE -> ACTIVE          (a new flavor or a larger volume)
                    -> SHUTDOWN (deleting, then gone)
    ERROR: a start failed; ``fault`` says why (with the end of the server's log)

A backup's status: ``NEW -> BUILDING -> COMPLETED`` (or ``FAILED``); its
``location`` is the object in the object store that holds the dump.
"""

import dataclasses
import time

BUILD, ACTIVE, REBOOT, RESIZE, SHUTDOWN, ERROR = "BUILD", "ACTIVE", "REBOOT", "RESIZE", "SHUTDOWN", "ERROR"
BUSY = (BUILD, REBOOT, RESIZE, SHUTDOWN)
NEW, BUILDING, COMPLETED, FAILED = "NEW", "BUILDING", "COMPLETED", "FAILED"


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


@dataclasses.dataclass
class Instance:
    """One database instance; get it from ``lab.database.create_instance()`` or ``get_instance()``.

    Attributes:
        id: a UUID, as Trove's.
        name: unique in the lab.
        datastore, datastore_version: e.g. ``postgresql`` and ``15``.
        flavor: the flavor's name; ``ram_mib`` and ``vcpus`` are its limits.
        volume_size: GiB of its data volume, or None (data in the lab's folder).
        volume_id: the block storage volume holding its data.
        address, port: where servers on the lab network reach it.
        status: see the module docstring; ``history`` the statuses it went through.
        fault: why it is in ERROR.
        restored_from: the backup it was made from, if any.
        configuration: server settings given at create (Trove's configuration group).
        node: the layout's node that runs it: the one with the storage role (``storage`` in the
            three-node layout). Every node is this one machine until the architectures lab makes them real.
        project_id: the Keystone project that owns it (Trove's API shows it to that project only);
            None for an instance made through the Python API (the lab's default project).
    """

    id: str
    name: str
    datastore: str
    datastore_version: str
    flavor: str
    ram_mib: int
    vcpus: int
    address: str
    address_index: int
    volume_size: int = None
    volume_id: str = None
    port: int = 5432
    status: str = BUILD
    fault: str = None
    restored_from: str = None
    configuration: dict = dataclasses.field(default_factory=dict)
    node: str = None
    project_id: str = None
    created: str = dataclasses.field(default_factory=_now)
    updated: str = None
    history: list = dataclasses.field(default_factory=list)
    admin_password: str = dataclasses.field(default=None, repr=False)
    _service: object = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if not self.history:
            self.history = [self.status]

    def set_status(self, status, fault=None):
        """Move to ``status`` (recorded in ``history``)."""
        if status != self.status:
            self.status = status
            self.history.append(status)
        self.fault = fault
        self.updated = _now()

    @property
    def socket_dir(self):
        """The folder of the instance's Unix socket (how the notebook reaches it)."""
        return str(self._service.server_of(self).socket_dir)

    @property
    def log_path(self):
        """The server's log file."""
        return str(self._service.server_of(self).log_path)

    def conninfo(self, user, password, database="postgres", via="socket"):
        """A libpq connection string for ``user``.

        Args:
            via: ``"socket"`` (the instance's Unix socket, from the lab host: the notebook)
                or ``"network"`` (its address on the lab network: what a server uses).
        """
        return self._service.conninfo(self, user, password, database, via)

    def connect(self, user, password, database="postgres", **options):
        """A psycopg connection to a database of this instance, as ``user`` (over its Unix socket)."""
        return self._service.connect(self, user, password, database, **options)

    # -- conveniences: the service does the work ---------------------------------------

    def refresh(self):
        """The instance as the service knows it now."""
        return self._service.get_instance(self.id)

    def wait(self, status=ACTIVE, timeout=60.0):
        """Wait until the instance is ``status`` (see :meth:`Database.wait_for_instance`)."""
        return self._service.wait_for_instance(self, status, timeout)

    def restart(self):
        """Restart its server (see :meth:`Database.restart_instance`)."""
        return self._service.restart_instance(self)

    def resize(self, flavor=None, volume_size=None):
        """A new flavor or a larger volume (see :meth:`Database.resize_instance`)."""
        return self._service.resize_instance(self, flavor=flavor, volume_size=volume_size)

    def delete(self):
        """Delete the instance, its data and its address (see :meth:`Database.delete_instance`)."""
        return self._service.delete_instance(self)

    def create_database(self, name):
        """Create a database (see :meth:`Database.create_database`)."""
        return self._service.create_database(self, name)

    def list_databases(self):
        """Its databases' names (see :meth:`Database.list_databases`)."""
        return self._service.list_databases(self)

    def create_user(self, name, password, databases=()):
        """Create a user (see :meth:`Database.create_user`)."""
        return self._service.create_user(self, name, password, databases)

    def list_users(self):
        """Its users (see :meth:`Database.list_users`)."""
        return self._service.list_users(self)

    def limits(self):
        """The memory and CPU limits the kernel enforces on its server now."""
        return self._service.server_of(self).limits_now()

    def to_record(self):
        """The instance as saved in the service's records."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}

    def to_trove(self):
        """The instance in the shape of Trove's API (``instance`` of ``GET /v1.0/{project}/instances/{id}``)."""
        out = {"id": self.id, "name": self.name, "status": self.status,
               "datastore": {"type": self.datastore, "version": self.datastore_version},
               "flavor": {"id": self.flavor}, "ip": [self.address],
               "addresses": [{"address": self.address, "type": "private"}],
               "created": self.created, "updated": self.updated}
        if self.volume_size:
            out["volume"] = {"size": self.volume_size}
        if self.fault:
            out["fault"] = {"message": self.fault}
        return out

    def __str__(self):
        where = f"{self.address}:{self.port}"
        disk = f"{self.volume_size} GiB volume" if self.volume_size else "no volume"
        return (f"instance {self.name}: {self.datastore} {self.datastore_version}, {self.flavor} "
                f"({self.vcpus} vCPU, {self.ram_mib} MiB), {disk}, {self.status}, {where}")


@dataclasses.dataclass
class Backup:
    """A dump of an instance, kept as one object in the object store.

    Attributes:
        id, name: a UUID and the name it was given.
        instance_id, instance_name: the instance it was taken from.
        datastore, datastore_version: what made it (a restore needs the same).
        container, object_name: where it is (``location`` joins them).
        size: bytes; ``etag`` the object store's MD5 of them.
        status: ``NEW``, ``BUILDING``, ``COMPLETED`` or ``FAILED``.
        project_id: the project of the instance it was taken from.
    """

    id: str
    name: str
    instance_id: str
    instance_name: str
    datastore: str
    datastore_version: str
    container: str
    object_name: str
    status: str = NEW
    size: int = 0
    etag: str = None
    description: str = ""
    project_id: str = None
    created: str = dataclasses.field(default_factory=_now)
    updated: str = None
    _service: object = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def location(self):
        """``CONTAINER/OBJECT`` in the object store."""
        return f"{self.container}/{self.object_name}"

    def delete(self):
        """Delete the backup and its object (see :meth:`Database.delete_backup`)."""
        return self._service.delete_backup(self)

    def to_record(self):
        """The backup as saved in the service's records."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}

    def __str__(self):
        return (f"backup {self.name} of {self.instance_name}: {self.status}, {self.size} bytes at "
                f"{self.location}")
