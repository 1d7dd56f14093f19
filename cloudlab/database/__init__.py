"""The database service (Trove's role): database servers provisioned on demand, backed up to the object store.

The note lists "database 기반" as the fourth kind of storage and leaves it there.
OpenStack's answer is **Trove, database as a service** (DBaaS): a learner asks for
a database server like any other cloud resource, and the service provisions it,
keeps it running, and backs it up, while the learner only ever speaks SQL to it.

    db = lab.database
    shop = db.create_instance("shop", flavor="m1.small", volume_size=1,
                              databases=["orders"], users=[{"name": "app", "password": "s3cret",
                                                            "databases": ["orders"]}])
    shop.status, shop.address, shop.port          # 'ACTIVE', '10.213.0.200', 5432
    with shop.connect("app", "s3cret", "orders") as conn:
        conn.execute("CREATE TABLE item (id serial PRIMARY KEY, name text)")
    backup = db.create_backup(shop, "nightly")     # a pg_dumpall streamed into the object store
    copy = db.create_instance("shop2", restore_point=backup)

What each instance is (:mod:`cloudlab.database.server`): a real PostgreSQL from
Debian in namespaces of its own (a node on the lab network at a fixed address,
port 5432; its own mounts), its data on a lab volume, its memory and CPU capped by
the flavor through cgroups.  What the service adds is the *control plane*: names,
statuses, flavors, users, backups; on the *data path* a client talks to
PostgreSQL directly.  ``stop()`` deletes every instance and backup of the lab.
"""

import contextlib
import re
import secrets
import shutil
import threading
import time
import uuid
from pathlib import Path

from ..errors import CloudlabError, Conflict, InvalidInput, NotFound, ResourceTimeout
from ..host import state_dir as host_state_dir
from ..records import Records
from ..topology import STORAGE
from . import accounts
from . import backup as backups
from . import datastore
from .cleanup import clean, cgroup_name, leftovers
from .instance import (ACTIVE, BUILD, BUSY, COMPLETED, ERROR, REBOOT, RESIZE, SHUTDOWN, Backup, Instance)
from .server import InstanceServer

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,29}$")
DEFAULT_FLAVOR = "m1.small"
MAX_VOLUME_GIB = 100
BACKUP_CONTAINER = "database_backups"       # Trove's default container for backups
CONNECT_TIMEOUT_S = 5


def _psycopg():
    try:
        import psycopg
    except ImportError:
        from ..errors import MissingPrerequisite
        raise MissingPrerequisite("psycopg is not installed", fix="run `make lab` (requirements.lock has it)") from None
    return psycopg


def _reason(exc):
    """What the server said, without libpq's preamble (which names the socket's path on this machine)."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return text.split("FATAL:", 1)[1].strip() if "FATAL:" in text else text


class Database:
    """The lab's database service: instances, their databases and users, backups.

    Args:
        lab: the :class:`~cloudlab.lab.Lab`; instances join its network, keep data on its volumes,
            back up into its object store.
    """

    def __init__(self, lab):
        self.lab = lab
        self._lock = threading.RLock()
        self._instances = {}
        self._servers = {}
        self._backups = {}
        self._threads = {}
        self._records = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self):
        """Start the service; the services it builds on start first, so they stop after it."""
        self.lab.host  # noqa: B018 - the lab network the instances join
        self.lab.block_storage  # noqa: B018 - their volumes
        self._records = Records(self.lab.home / f"{self.lab.prefix}database.json", {"instances": {}, "backups": {}})
        stale = self._records.load()
        # an earlier session of this lab that ended without stop() (a kernel that died) may have left servers
        # (this lab's own: a lab named "lab" must not end those of a lab named "lab-2")
        clean(f"{self.lab.prefix}database-", self.lab.home.parent, host_state_dir())
        for record in stale["instances"].values():
            # an earlier session ended without stop(): its servers were ended above; their folders
            # and volumes go now, so that the names are free again
            self._clean_folder(Path(record.get("folder", "")) if record.get("folder") else
                               self.folder_of_name(record["name"]))
            if record.get("volume_id"):
                storage = self.lab.block_storage
                for undo in (lambda: storage.disconnect_from_host(record["volume_id"],
                                                                  f"database instance {record['name']}"),
                             lambda: storage.delete_volume(record["volume_id"])):
                    try:
                        undo()
                    except CloudlabError:
                        pass
        self._records.save({"instances": {}, "backups": {}})
        return self

    def stop(self):
        """Delete every instance (servers, data, volumes, addresses) and backup of the lab.

        Raises:
            CloudlabError: something could not be removed (everything is tried).
        """
        errors = []
        for thread in list(self._threads.values()):
            thread.join(timeout=60)
        for instance in list(self._instances.values()):
            try:
                self.delete_instance(instance)
            except CloudlabError as exc:
                errors.append(f"instance {instance.name}: {exc.message}")
        # an object store that stopped first (it started after this service) took the backups' objects
        # with its data; asking lab.object_store now would only start a new one
        store_running = self.lab.started_service("object_store") is not None
        for backup in list(self._backups.values()):
            try:
                if store_running:
                    self.delete_backup(backup)
            except CloudlabError as exc:
                errors.append(f"backup {backup.name}: {exc.message}")
        self._backups.clear()
        if self._records is not None:
            self._records.remove()
        if errors:
            raise CloudlabError("the database service did not stop cleanly: " + "; ".join(errors),
                                fix="python -m cloudlab clean")

    def _save(self):
        with self._lock:
            self._records.save({
                "instances": {i.id: {**i.to_record(), "folder": str(self.folder_of(i))}
                              for i in self._instances.values()},
                "backups": {b.id: b.to_record() for b in self._backups.values()}})

    def folder_of_name(self, name):
        """The folder of the instance named ``name``."""
        return self.lab.home / f"{self.lab.prefix}database-{name}"

    def folder_of(self, instance):
        """An instance's folder: configuration, log, socket (and its data when it has no volume)."""
        return self.folder_of_name(instance.name)

    def _clean_folder(self, folder):
        """Remove what a crashed session left of an instance: its mounts' files, its folder."""
        if not folder.name.startswith(self.lab.prefix):
            return
        raw = folder / "volume.raw"
        if raw.exists():
            import subprocess
            subprocess.run(["umount", "-l", str(raw)], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)

    # -- catalogue -------------------------------------------------------------------

    def list_datastores(self):
        """``{datastore: [versions, newest first]}`` this lab can run, e.g. ``{"postgresql": ["15"]}``."""
        return datastore.versions()

    def server_of(self, instance):
        """The :class:`~cloudlab.database.server.InstanceServer` running ``instance``."""
        instance = self.get_instance(instance)
        return self._servers[instance.id]

    # -- lookups ---------------------------------------------------------------------

    def list_instances(self):
        """The lab's instances, by name."""
        with self._lock:
            return sorted(self._instances.values(), key=lambda i: i.name)

    def get_instance(self, instance):
        """The instance with this name or id (an Instance is looked up again by its id).

        Raises:
            NotFound: no such instance; the message lists the lab's instances.
        """
        key = instance.id if isinstance(instance, Instance) else instance
        with self._lock:
            found = self._instances.get(key) or next((i for i in self._instances.values() if i.name == key), None)
            names = sorted(i.name for i in self._instances.values())
        if found is None:
            raise NotFound(f"no database instance named {key!r}",
                           fix=f"use one of: {', '.join(names)}" if names else "create one with create_instance()")
        return found

    def wait_for_instance(self, instance, status=ACTIVE, timeout=60.0):
        """Wait until ``instance`` is ``status``; returns it.

        Raises:
            CloudlabError: it went to ERROR instead (its fault is quoted).
            ResourceTimeout: not there within ``timeout`` seconds.
        """
        instance = self.get_instance(instance)
        deadline = time.monotonic() + timeout
        while instance.status != status:
            if instance.status == ERROR and status != ERROR:
                raise CloudlabError(f"database instance {instance.name} is ERROR: {instance.fault}",
                                    fix="delete it and create it again")
            if time.monotonic() > deadline:
                raise ResourceTimeout(f"database instance {instance.name} is {instance.status}, "
                                      f"not {status}, after {timeout:g} s")
            time.sleep(0.05)
        return instance

    # -- instances -------------------------------------------------------------------

    def _flavor(self, flavor):
        return self.lab.compute.get_flavor(flavor or DEFAULT_FLAVOR)

    def create_instance(self, name, datastore_name="postgresql", datastore_version=None, flavor=None,
                        volume_size=1, databases=(), users=(), restore_point=None, configuration=None,
                        wait=True, project_id=None):
        """Provision a database instance: a real PostgreSQL server of its own.

        Args:
            name: 1-30 letters, digits, '.', '_' or '-'; unique in the lab.
            datastore_name, datastore_version: ``list_datastores()`` says what there is (newest by default).
            flavor: a compute flavor (``m1.small`` by default): its memory and vCPUs become the limits.
            volume_size: GiB of the block storage volume holding the data; None: no volume (data in the lab's folder).
            databases: names (or ``{"name": ...}``) to create.
            users: ``{"name", "password", "databases": [...]}`` each, to create with access to those databases.
            restore_point: a backup (name, id or Backup) to fill the new instance from.
            configuration: server settings of your own, ``{"work_mem": "8MB", ...}`` (Trove's
                configuration group), written after the ones the flavor gives.
            wait: return once it is ACTIVE (else at once, in BUILD; ``wait_for_instance()`` follows it).
            project_id: the Keystone project that owns it (Trove's API passes the caller's).
        Raises:
            InvalidInput: a bad name, size, database or user name (the rule is quoted), or password.
            NotFound: unknown datastore or version (the available ones are listed), flavor or backup.
            Conflict: an instance with that name exists.
            CloudlabError: the server did not start (the end of its log is quoted); nothing of it stays.
        """
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidInput(f"instance name {name!r} is not valid",
                               fix="use 1-30 letters, digits, '.', '_' or '-', starting with a letter or digit")
        source = None
        if restore_point is not None:
            source = self.get_backup(restore_point)
            if datastore_version is None:
                datastore_version = source.datastore_version
        store, version = datastore.resolve(datastore_name, datastore_version)
        if source is not None and (source.datastore, source.datastore_version) != (store, version):
            raise InvalidInput(f"backup {source.name} is of {source.datastore} {source.datastore_version}, "
                               f"not {store} {version}", fix="restore it into the same datastore version")
        if volume_size is not None and (isinstance(volume_size, bool) or not isinstance(volume_size, int)
                                        or not 1 <= volume_size <= MAX_VOLUME_GIB):
            raise InvalidInput(f"volume_size={volume_size!r} is not usable",
                               fix=f"give a whole number of GiB from 1 to {MAX_VOLUME_GIB}, or None for no volume")
        dbs = [datastore.check_name(d["name"] if isinstance(d, dict) else d, "database") for d in databases]
        wanted_users = self._check_users(users, dbs)
        configuration = datastore.check_configuration(configuration)
        fl = self._flavor(flavor)
        host = self.lab.host
        with self._lock:
            if any(i.name == name for i in self._instances.values()):
                raise Conflict(f"a database instance named {name!r} already exists",
                               fix="choose another name, or delete the existing instance first")
            used = {i.address_index for i in self._instances.values()}
            from ..host import node
            index = next((n for n in range(len(node.HOST_NUMBERS["database"])) if n not in used), None)
            address = node.address(host.subnet, "database", len(used) if index is None else index)
            # the node of the layout that keeps storage (the storage node of the three-node layout)
            node_name = next((n.name for n in self.lab.topology.nodes if n.has(STORAGE)), None)
            instance = Instance(id=str(uuid.uuid4()), name=name, datastore=store, datastore_version=version,
                                flavor=fl.name, ram_mib=fl.ram_mib, vcpus=fl.vcpus, address=address,
                                address_index=index, volume_size=volume_size,
                                restored_from=source.id if source else None, configuration=configuration,
                                node=node_name, project_id=project_id,
                                admin_password=secrets.token_urlsafe(18))
            instance._service = self
            folder = self.folder_of(instance)
            self._servers[instance.id] = InstanceServer(folder, version, address, host.subnet.prefixlen,
                                                        host.bridge, host.netns,
                                                        cgroup_name(self.lab.prefix, instance.id, host_state_dir()))
            self._instances[instance.id] = instance
            self._save()

        def build():
            try:
                self._build(instance, dbs, wanted_users, source)
            except BaseException as exc:
                message = exc.message if isinstance(exc, CloudlabError) else f"{type(exc).__name__}: {exc}"
                instance.set_status(ERROR, message)
                self._undo(instance)
                if wait:
                    raise
            finally:
                self._threads.pop(instance.id, None)

        if wait:
            try:
                build()
            except BaseException:
                with self._lock:
                    self._instances.pop(instance.id, None)
                    self._servers.pop(instance.id, None)
                    self._save()
                raise
            return instance
        thread = threading.Thread(target=build, name=f"database-build-{name}", daemon=True)
        self._threads[instance.id] = thread
        thread.start()
        return instance

    def _check_users(self, users, dbs):
        out = []
        for user in users:
            if not isinstance(user, dict) or "name" not in user or "password" not in user:
                raise InvalidInput(f"user {user!r} is not usable",
                                   fix='give {"name": "app", "password": "...", "databases": ["orders"]}')
            name = datastore.check_name(user["name"], "user")
            password = datastore.check_password(user["password"], name)
            grants = [d["name"] if isinstance(d, dict) else d for d in user.get("databases", ())]
            for d in grants:
                if d not in dbs:
                    raise InvalidInput(f"user {name}: database {d!r} is not among the instance's databases",
                                       fix=f"add it to databases= ({', '.join(dbs) or 'none given'})")
            out.append((name, password, grants))
        return out

    def _build(self, instance, dbs, users, source):
        """BUILD: volume, folder, first start (initdb), databases, users, restore -> ACTIVE."""
        server = self._servers[instance.id]
        folder = self.folder_of(instance)
        if folder.exists():
            shutil.rmtree(folder)
        connection = None
        if instance.volume_size:
            volume = self.lab.block_storage.create_volume(f"database-{instance.name}", instance.volume_size,
                                                          description=f"data of database instance {instance.name}")
            instance.volume_id = volume.id
            self._save()
            connection = self.lab.block_storage.connect_to_host(volume, f"database instance {instance.name}")
        server.prepare(connection, fresh=True)
        server.write_config(instance.ram_mib, instance.vcpus, admin_password=instance.admin_password,
                            extra=instance.configuration)
        server.start(instance.ram_mib, instance.vcpus, lambda: self._answers(instance))
        if source is not None:
            backups.restore(self, instance, source)
        for d in dbs:
            self.create_database(instance, d, _building=True)
        for name, password, grants in users:
            self.create_user(instance, name, password, grants, _building=True)
        with self._lock:
            instance.set_status(ACTIVE)
            self._save()

    def _undo(self, instance):
        """Remove what a failed build made: server, volume, folder (the record stays in ERROR for wait=False)."""
        server = self._servers.get(instance.id)
        if server is not None:
            try:
                server.stop()
            except CloudlabError:
                pass
        self._release_volume(instance, delete=True)
        shutil.rmtree(self.folder_of(instance), ignore_errors=True)
        with self._lock:
            self._save()

    def _release_volume(self, instance, delete):
        if not instance.volume_id:
            return
        storage = self.lab.block_storage
        try:
            storage.disconnect_from_host(instance.volume_id, f"database instance {instance.name}")
        except NotFound:
            pass
        if delete:
            try:
                storage.delete_volume(instance.volume_id)
            except NotFound:
                pass
            instance.volume_id = None

    def _answers(self, instance):
        """True once the server accepts the admin's connection over its Unix socket."""
        try:
            with self._admin(instance, timeout=1):
                return True
        except CloudlabError:
            return False

    def restart_instance(self, instance):
        """Restart the instance's server (REBOOT -> ACTIVE); its data and address stay.

        Raises:
            Conflict: the instance is busy (building, resizing, ...).
        """
        instance = self._take(instance, REBOOT)
        server = self._servers[instance.id]
        self._restart(instance, server)
        return instance

    def _take(self, instance, status):
        instance = self.get_instance(instance)
        with self._lock:
            if instance.status in BUSY:
                raise Conflict(f"database instance {instance.name} is {instance.status}",
                               fix="wait until it is ACTIVE: instance.wait()")
            instance.set_status(status)
            self._save()
        return instance

    def _restart(self, instance, server, before_start=None):
        try:
            server.stop()
            connection = None
            if instance.volume_id:
                storage = self.lab.block_storage
                storage.disconnect_from_host(instance.volume_id, f"database instance {instance.name}")
                if before_start:
                    before_start()
                connection = storage.connect_to_host(instance.volume_id, f"database instance {instance.name}")
            elif before_start:
                before_start()
            server.prepare(connection)
            if instance.volume_id and before_start:
                # the filesystem grows into the larger volume (offline: checked, then resized)
                from ..host import node
                node.run(["e2fsck", "-f", "-p", str(server.volume_path)], "checking the volume's filesystem")
                node.run(["resize2fs", str(server.volume_path)], "growing the volume's filesystem")
            server.write_config(instance.ram_mib, instance.vcpus, extra=instance.configuration)
            server.start(instance.ram_mib, instance.vcpus, lambda: self._answers(instance))
        except BaseException as exc:
            with self._lock:
                instance.set_status(ERROR, exc.message if isinstance(exc, CloudlabError) else str(exc))
                self._save()
            raise
        with self._lock:
            instance.set_status(ACTIVE)
            self._save()

    def resize_instance(self, instance, flavor=None, volume_size=None):
        """Give an instance a new flavor (memory and CPU limits, settings) and/or a larger volume (RESIZE -> ACTIVE).

        The server restarts: connections are closed, data stays.

        Raises:
            InvalidInput: nothing to change, or a volume that would not grow.
            NotFound: unknown flavor.
            Conflict: the instance is busy.
        """
        current = self.get_instance(instance)
        if flavor is None and volume_size is None:
            raise InvalidInput("resize_instance() needs flavor= or volume_size=",
                               fix="e.g. resize_instance('shop', flavor='m1.medium')")
        fl = self._flavor(flavor) if flavor is not None else None
        if volume_size is not None:
            if not current.volume_id:
                raise InvalidInput(f"database instance {current.name} has no volume to grow",
                                   fix="create instances with volume_size= to give them one")
            if (isinstance(volume_size, bool) or not isinstance(volume_size, int)
                    or not current.volume_size < volume_size <= MAX_VOLUME_GIB):
                raise InvalidInput(f"volume_size={volume_size!r} does not grow {current.name}'s "
                                   f"{current.volume_size} GiB volume (volumes only grow)",
                                   fix=f"give a whole number from {current.volume_size + 1} to {MAX_VOLUME_GIB}")
        instance = self._take(current, RESIZE)
        if fl is not None:
            instance.flavor, instance.ram_mib, instance.vcpus = fl.name, fl.ram_mib, fl.vcpus

        def grow():
            self.lab.block_storage.extend_volume(instance.volume_id, volume_size)
            instance.volume_size = volume_size

        self._restart(instance, self._servers[instance.id], grow if volume_size is not None else None)
        return instance

    def delete_instance(self, instance):
        """Delete an instance: its server process, its data (and volume), its address on the lab network.

        Backups taken from it stay (as in Trove).

        Raises:
            NotFound: no such instance.
            Conflict: it is being built or resized.
        """
        instance = self.get_instance(instance)
        thread = self._threads.get(instance.id)
        if thread is not None:
            thread.join(timeout=60)
        with self._lock:
            if instance.status in (REBOOT, RESIZE, SHUTDOWN):
                raise Conflict(f"database instance {instance.name} is {instance.status}",
                               fix="wait until it is ACTIVE")
            instance.set_status(SHUTDOWN)
            self._save()
        server = self._servers.get(instance.id)
        if server is not None:
            server.stop()
        self._release_volume(instance, delete=True)
        shutil.rmtree(self.folder_of(instance), ignore_errors=True)
        with self._lock:
            self._instances.pop(instance.id, None)
            self._servers.pop(instance.id, None)
            self._save()

    # -- connections -----------------------------------------------------------------

    def conninfo(self, instance, user, password, database="postgres", via="socket"):
        """A libpq connection string for ``user`` on ``instance`` (see :meth:`Instance.conninfo`)."""
        psycopg = _psycopg()
        instance = self.get_instance(instance)
        if via == "socket":
            host = str(self._servers[instance.id].socket_dir)
        elif via == "network":
            host = instance.address
        else:
            raise InvalidInput(f"via={via!r} is not a way to reach an instance", fix="use 'socket' or 'network'")
        return psycopg.conninfo.make_conninfo(host=host, port=instance.port, user=user, password=password,
                                              dbname=database, connect_timeout=CONNECT_TIMEOUT_S)

    def connect(self, instance, user, password, database="postgres", **options):
        """A psycopg connection to ``database`` on ``instance`` as ``user``, over its Unix socket.

        Raises:
            CloudlabError: the server refused (wrong password, unknown database) or does not answer.
        """
        psycopg = _psycopg()
        instance = self.get_instance(instance)
        try:
            return psycopg.connect(self.conninfo(instance, user, password, database), **options)
        except psycopg.OperationalError as exc:
            raise CloudlabError(f"database instance {instance.name} refused {user}@{database}: {_reason(exc)}",
                                fix="check the user, password and database (list_users(), list_databases())") from None

    def connect_as_admin(self, instance, database="postgres"):
        """A psycopg connection as the service's own superuser (``os_admin``): the operator's view.

        Trove keeps this account to itself (its guest agent manages users and databases
        with it); the lab's checks use it to read what a learner's user made.
        """
        psycopg = _psycopg()
        instance = self.get_instance(instance)
        try:
            return psycopg.connect(self.conninfo(instance, datastore.ADMIN_USER, instance.admin_password, database))
        except psycopg.OperationalError as exc:
            raise CloudlabError(f"database instance {instance.name} refused its admin: {_reason(exc)}",
                                fix="is it ACTIVE?") from None

    @contextlib.contextmanager
    def _admin(self, instance, database="postgres", timeout=CONNECT_TIMEOUT_S):
        """A connection as the service's own superuser (autocommit: CREATE DATABASE needs it)."""
        psycopg = _psycopg()
        server = self._servers[instance.id]
        try:
            conn = psycopg.connect(host=str(server.socket_dir), port=instance.port, user=datastore.ADMIN_USER,
                                   password=instance.admin_password, dbname=database, connect_timeout=timeout,
                                   autocommit=True)
        except psycopg.OperationalError as exc:
            raise CloudlabError(f"database instance {instance.name} does not answer: {str(exc).strip()[-200:]}",
                                fix="is it ACTIVE? restart_instance() it") from None
        try:
            yield conn
        finally:
            conn.close()

    def _ready(self, instance, building=False):
        instance = self.get_instance(instance)
        if instance.status != ACTIVE and not (building and instance.status == BUILD):
            raise Conflict(f"database instance {instance.name} is {instance.status}",
                           fix="wait until it is ACTIVE: instance.wait()")
        return instance

    # -- databases and users (accounts.py runs the SQL) ------------------------------

    def list_databases(self, instance):
        """The names of an instance's databases (not the server's own: postgres, template0/1)."""
        return accounts.list_databases(self._admin, self._ready(instance))

    def create_database(self, instance, name, _building=False):
        """Create database ``name`` on ``instance``.

        Raises:
            InvalidInput: a name the rule refuses (the rule is quoted).
            Conflict: it exists.
        """
        return accounts.create_database(self._admin, self._ready(instance, _building), name)

    def delete_database(self, instance, name):
        """Drop database ``name`` (connections to it are ended first).

        Raises:
            NotFound: no such database.
        """
        return accounts.delete_database(self._admin, self._ready(instance), name)

    def list_users(self, instance):
        """An instance's users: ``[{"name": ..., "databases": [...]}]`` (databases they may create in)."""
        return accounts.list_users(self._admin, self._ready(instance))

    def create_user(self, instance, name, password, databases=(), _building=False):
        """Create a user who logs in with ``password`` and may use (and create tables in) ``databases``.

        Raises:
            InvalidInput: a name the rule refuses (the rule is quoted), or an empty password.
            NotFound: one of ``databases`` does not exist.
            Conflict: the user exists.
        """
        return accounts.create_user(self._admin, self._ready(instance, _building), name, password, databases)

    def delete_user(self, instance, name):
        """Drop user ``name``; what it owned passes to the service's admin.

        Raises:
            NotFound: no such user.
        """
        return accounts.delete_user(self._admin, self._ready(instance), name)

    # -- backups ---------------------------------------------------------------------

    def list_backups(self, instance=None):
        """The lab's backups (of one instance, when given), oldest first."""
        with self._lock:
            found = list(self._backups.values())
        if instance is not None:
            key = instance.id if isinstance(instance, Instance) else instance
            found = [b for b in found if key in (b.instance_id, b.instance_name)]
        return sorted(found, key=lambda b: b.created)

    def get_backup(self, backup):
        """The backup with this name or id.

        Raises:
            NotFound: no such backup; the message names it and lists the lab's backups.
        """
        key = backup.id if isinstance(backup, Backup) else backup
        with self._lock:
            found = self._backups.get(key) or next((b for b in self._backups.values() if b.name == key), None)
            names = sorted(b.name for b in self._backups.values())
        if found is None:
            raise NotFound(f"no backup named {key!r}",
                           fix=f"use one of: {', '.join(names)}" if names else "take one with create_backup()")
        return found

    def create_backup(self, instance, name, description=""):
        """Back an instance up: its dump (``pg_dumpall``) streamed into the object store.

        Raises:
            InvalidInput: a bad name.
            Conflict: a backup with that name exists, or the instance is not ACTIVE.
            CloudlabError: the dump failed (nothing of it stays in the object store).
        """
        instance = self._ready(instance)
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidInput(f"backup name {name!r} is not valid",
                               fix="use 1-30 letters, digits, '.', '_' or '-', starting with a letter or digit")
        with self._lock:
            if any(b.name == name for b in self._backups.values()):
                raise Conflict(f"a backup named {name!r} already exists", fix="choose another name")
            backup_id = str(uuid.uuid4())
            backup = Backup(id=backup_id, name=name, instance_id=instance.id, instance_name=instance.name,
                            datastore=instance.datastore, datastore_version=instance.datastore_version,
                            container=BACKUP_CONTAINER, object_name=f"{backup_id}.sql",
                            description=description or "", project_id=instance.project_id)
            backup._service = self
            self._backups[backup.id] = backup
            self._save()
        try:
            backups.dump(self, instance, backup)
        except BaseException:
            with self._lock:
                self._backups.pop(backup.id, None)
                self._save()
            raise
        with self._lock:
            backup.status = COMPLETED
            self._save()
        return backup

    def delete_backup(self, backup):
        """Delete a backup and its object.

        Raises:
            NotFound: no such backup.
        """
        backup = self.get_backup(backup)
        backups.remove_object(self, backup)
        with self._lock:
            self._backups.pop(backup.id, None)
            self._save()

    def __repr__(self):
        return f"<Database: {len(self._instances)} instances, {len(self._backups)} backups>"


__all__ = ["Database", "Instance", "Backup", "leftovers", "clean"]
