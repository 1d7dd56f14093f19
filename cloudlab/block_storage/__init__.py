"""The block storage service (Cinder's role): volumes hot-attached to running servers.

A **volume (볼륨)** is a virtual disk that lives apart from any server: the
note's "server가 EBS, client가 EC2" (Cinder is to Nova what EBS is to EC2).
It is attached to a server *as a device* ("장치명 형태로 붙는다"): the guest sees
one more disk, partitions it, makes a filesystem, mounts it; detached and
attached to another server, it brings its data along; the server can be deleted
and the volume stays.

How an attach goes, as between Cinder and Nova:

1. the volume is *reserved* (``attaching``): no other attach can take it;
2. the backend gives **connection info**, how a hypervisor reaches the volume
   (:mod:`cloudlab.block_storage.backend`: a file here, a network export on a
   storage node);
3. the compute side hot-plugs a virtio disk built from it into the running
   guest, with the volume's id as the disk's serial
   (:mod:`cloudlab.compute.volumes`), and reads back the name the **guest**
   gave the disk: the guest's kernel names disks in the order it finds them, so
   the ``/dev/vdb`` libvirt was asked for can be ``/dev/vda`` inside;
4. the volume is ``in-use``, with an attachment naming the server and both names.

Quotas limit the lab's number of volumes and snapshots and their total GiB, as
Cinder's per-project quotas do.  Records are kept in the lab's state folder
(:mod:`cloudlab.records`); ``stop()`` detaches and deletes every volume of the lab.
"""

import importlib
import math
import re
import threading
import uuid

from .. import arguments
from ..errors import CloudlabError, Conflict, InvalidInput, NotFound, QuotaExceeded
from ..records import Records
from .backend import Backend, FileBackend
from .volume import (ATTACHING, AVAILABLE, CREATING, DELETING, DETACHING, ERROR, EXTENDING, GIB, IN_USE,
                     TRANSITIONAL, Attachment, Quotas, Snapshot, Volume)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
MAX_SIZE_GIB = 1024
ATTACH_TIMEOUT_S = 15.0
# an attachment whose server_id starts so is a consumer on the lab host, not a server
HOST_CONSUMER = "host:"


# volume type -> backend ("module:Class"), imported on first use; a type is Cinder's way
# to let a request choose among several backends (`enabled_backends` in cinder.conf)
VOLUME_TYPES = {
    "file": "cloudlab.block_storage.backend:FileBackend",
    "nbd": "cloudlab.block_storage.nbd:NbdBackend",
}


def check_size(size, what="size"):
    """``size`` as a whole number of GiB >= 1.

    Raises:
        InvalidInput: anything else (0, negative, a fraction, a string, a bool).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size > MAX_SIZE_GIB:
        raise InvalidInput(f"{what}={size!r} is not a usable volume size",
                           fix=f"give a whole number of GiB from 1 to {MAX_SIZE_GIB}, e.g. size=1")
    return size


class BlockStorage:
    """The lab's block storage service: volumes, snapshots, attachments, quotas.

    Args:
        lab: the :class:`~cloudlab.lab.Lab`; its prefix names every file.
        default_type: the volume type (backend) of volumes created without one: ``file`` or ``nbd``;
            None: ``file`` on the all-in-one layout, ``nbd`` (served by the storage node) on the others.
    """

    def __init__(self, lab, default_type=None):
        self.lab = lab
        if default_type is None:
            multi = lab is not None and len(lab.topology.nodes) > 1
            default_type = "nbd" if multi else "file"
        self.default_type = default_type
        self._backends = {}         # volume type -> started Backend
        self._lock = threading.RLock()
        self._volumes = {}
        self._snapshots = {}
        self._busy = set()          # ids of volumes being snapshotted
        self._quotas = Quotas()
        self._records = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self):
        """Load the lab's records (volumes left by an earlier session come back); backends start on first use."""
        if self.default_type not in VOLUME_TYPES:
            raise InvalidInput(f"no volume type {self.default_type!r}", fix=f"use one of: {', '.join(VOLUME_TYPES)}")
        home, prefix = self.lab.home, self.lab.prefix
        self._records = Records(home / f"{prefix}block-storage.json",
                                {"volumes": {}, "snapshots": {}, "quotas": Quotas().to_record()})
        data = self._records.load()
        with self._lock:
            self._quotas = Quotas(**data["quotas"])
            for record in data["volumes"].values():
                volume = Volume(**record)
                volume._service = self
                if volume.status in TRANSITIONAL:     # interrupted: say so, as Cinder would
                    volume.set_status(ERROR)
                self._volumes[volume.id] = volume
            for record in data["snapshots"].values():
                snapshot = Snapshot(**record)
                snapshot._service = self
                self._snapshots[snapshot.id] = snapshot
        return self

    def list_volume_types(self):
        """The volume types (one per backend, as Cinder's multi-backend volume types): ``file``, ``nbd``."""
        return list(VOLUME_TYPES)

    def backend(self, volume_type=None):
        """The started :class:`~cloudlab.block_storage.backend.Backend` of ``volume_type`` (default type if None).

        Raises:
            InvalidInput: no such volume type.
        """
        volume_type = volume_type or self.default_type
        with self._lock:
            if volume_type not in self._backends:
                if volume_type not in VOLUME_TYPES:
                    raise InvalidInput(f"no volume type {volume_type!r}",
                                       fix=f"use one of: {', '.join(VOLUME_TYPES)}")
                module_name, class_name = VOLUME_TYPES[volume_type].split(":")
                cls = getattr(importlib.import_module(module_name), class_name)
                backend = cls(self.lab)
                backend.start()
                self._backends[volume_type] = backend
            return self._backends[volume_type]

    @property
    def storage_node(self):
        """The node whose daemon serves the volumes over the network (multi-node layouts), or None."""
        if self.lab is None or len(self.lab.topology.nodes) < 2:
            return None
        return self.lab.nodes.storage

    def resume(self):
        """Start the backends' daemons again after their node's power cut (:meth:`cloudlab.host.nodes.Node.start`)."""
        for backend in list(self._backends.values()):
            resume = getattr(backend, "resume", None)
            if resume is not None:
                resume()
        return self

    def _backend_of(self, item):
        """The backend holding a volume's (or a snapshot's volume's) bytes."""
        if isinstance(item, Snapshot):
            volume = self._volumes.get(item.volume_id)
            return self.backend(item.volume_type or (volume.volume_type if volume else None))
        return self.backend(item.volume_type)

    def stop(self):
        """Detach and delete every volume and snapshot of the lab, then stop the backend.

        Raises:
            CloudlabError: something could not be removed (everything is tried).
        """
        errors = []
        compute = self.lab.started_service("compute")
        for volume in list(self._volumes.values()):
            for attachment in list(volume.attachments):
                try:
                    if compute is not None:
                        server = compute.get_server(attachment.server_name)
                        if server.id == attachment.server_id and server.volume_target(volume.id):
                            server.detach_volume(volume.id)
                except NotFound:
                    pass
                except CloudlabError as exc:
                    errors.append(f"detaching {volume.name} from {attachment.server_name}: {exc.message}")
                volume.attachments.remove(attachment)
            self._backend_of(volume).delete_volume(volume.id)
        for snapshot in list(self._snapshots.values()):
            self._backend_of(snapshot).delete_snapshot(snapshot.id)
        with self._lock:
            self._volumes.clear()
            self._snapshots.clear()
        self._records.remove()
        for backend in list(self._backends.values()):
            backend.stop()
        self._backends.clear()
        if errors:
            raise CloudlabError("block storage did not stop cleanly: " + "; ".join(errors),
                                fix="python -m cloudlab clean")

    def _save(self):
        with self._lock:
            self._records.save({
                "volumes": {v.id: v.to_record() for v in self._volumes.values()},
                "snapshots": {s.id: s.to_record() for s in self._snapshots.values()},
                "quotas": self._quotas.to_record()})

    def _set(self, volume, status):
        with self._lock:
            volume.set_status(status)
            self._save()

    # -- quotas ----------------------------------------------------------------------

    @property
    def quotas(self):
        """The lab's :class:`~cloudlab.block_storage.volume.Quotas` (volumes, snapshots, gigabytes)."""
        return self._quotas

    def usage(self):
        """What counts against the quotas now: ``{"volumes": n, "snapshots": n, "gigabytes": n}``."""
        with self._lock:
            return {"volumes": len(self._volumes), "snapshots": len(self._snapshots),
                    "gigabytes": sum(v.size for v in self._volumes.values()) +
                    sum(s.size for s in self._snapshots.values())}

    def set_quotas(self, volumes=None, snapshots=None, gigabytes=None):
        """Change the lab's limits (-1 means no limit, as in Cinder); returns the new quotas.

        Raises:
            InvalidInput: a limit that is not a whole number >= -1, or below what is in use now.
        """
        changes = {"volumes": volumes, "snapshots": snapshots, "gigabytes": gigabytes}
        usage = self.usage()
        with self._lock:
            for key, value in changes.items():
                if value is None:
                    continue
                if isinstance(value, bool) or not isinstance(value, int) or value < -1:
                    raise InvalidInput(f"quota {key}={value!r} is not usable",
                                       fix="give a whole number, or -1 for no limit")
                if value != -1 and value < usage[key]:
                    raise InvalidInput(f"quota {key}={value} is below the {usage[key]} already in use",
                                       fix="delete volumes or snapshots first, or choose a larger limit")
            for key, value in changes.items():
                if value is not None:
                    setattr(self._quotas, key, value)
            self._save()
        return self._quotas

    def _check_quota(self, volumes=0, snapshots=0, gigabytes=0):
        """Raise QuotaExceeded when adding these would pass a limit (Cinder's wording)."""
        usage = self.usage()
        for key, more, unit in (("volumes", volumes, ""), ("snapshots", snapshots, ""),
                                ("gigabytes", gigabytes, " GiB")):
            limit = getattr(self._quotas, key)
            if more and limit != -1 and usage[key] + more > limit:
                raise QuotaExceeded(
                    f"the request needs {more}{unit} more {key}, but the lab's quota is {limit}{unit} "
                    f"and {usage[key]}{unit} are in use",
                    fix=f"delete volumes or snapshots you no longer need, or raise the quota: "
                        f"lab.block_storage.set_quotas({key}=...)")

    # -- lookups ---------------------------------------------------------------------

    def list_volumes(self):
        """The lab's volumes, by name (attachments checked against the servers)."""
        with self._lock:
            volumes = list(self._volumes.values())
        for volume in volumes:
            self._reconcile(volume)
        return sorted(volumes, key=lambda v: v.name)

    def get_volume(self, volume):
        """The volume with this name or id (a Volume is looked up again by its id).

        Raises:
            NotFound: no such volume; the message lists the lab's volumes.
        """
        key = volume.id if isinstance(volume, Volume) else volume
        with self._lock:
            found = self._volumes.get(key) or next((v for v in self._volumes.values() if v.name == key), None)
            names = sorted(v.name for v in self._volumes.values())
        if found is None:
            raise NotFound(f"no volume named {key!r}",
                           fix=f"use one of: {', '.join(names)}" if names else "create one with create_volume()")
        self._reconcile(found)
        return found

    def list_snapshots(self, volume=None):
        """The lab's snapshots (of ``volume`` only, when given), by name."""
        volume_id = self.get_volume(volume).id if volume is not None else None
        with self._lock:
            return sorted((s for s in self._snapshots.values() if volume_id in (None, s.volume_id)),
                          key=lambda s: s.name)

    def get_snapshot(self, snapshot):
        """The snapshot with this name or id.

        Raises:
            NotFound: no such snapshot.
        """
        key = snapshot.id if isinstance(snapshot, Snapshot) else snapshot
        with self._lock:
            found = self._snapshots.get(key) or next((s for s in self._snapshots.values() if s.name == key), None)
            names = sorted(s.name for s in self._snapshots.values())
        if found is None:
            raise NotFound(f"no snapshot named {key!r}",
                           fix=f"use one of: {', '.join(names)}" if names else "create one with create_snapshot()")
        return found

    def _server(self, server):
        """The compute service's live server for ``server`` (a name or a Server).

        Raises:
            NotFound: no such server, or it was deleted.
        """
        compute = self.lab.compute
        name = getattr(server, "name", server)
        if not isinstance(server, str) and getattr(server, "status", None) == "DELETED":
            raise NotFound(f"server {name!r} was deleted", fix="use a server that exists: compute.list_servers()")
        found = compute.get_server(name)
        if getattr(server, "id", found.id) != found.id or found.status == "DELETED":
            raise NotFound(f"server {name!r} was deleted", fix="use a server that exists: compute.list_servers()")
        return found

    def _reconcile(self, volume):
        """Drop attachments whose server was deleted (Nova detaches a deleted server's volumes)."""
        if volume.status != IN_USE or not volume.attachments:
            return
        if all(a.server_id.startswith(HOST_CONSUMER) for a in volume.attachments):
            return      # only consumers on the lab host (connect_to_host): no server to ask about
        compute = self.lab.compute
        keep = []
        for attachment in volume.attachments:
            if attachment.server_id.startswith(HOST_CONSUMER):
                keep.append(attachment)
                continue
            try:
                server = compute.get_server(attachment.server_name)
            except NotFound:
                continue
            if server.id != attachment.server_id or not server.volume_target(volume.id):
                continue
            if attachment.device is None:
                found = server.volume_device(volume.id)
                attachment.device = f"/dev/{found}" if found else None
            keep.append(attachment)
        with self._lock:
            if len(keep) != len(volume.attachments):
                volume.attachments = keep
                if not keep:
                    volume.set_status(AVAILABLE)
            self._save()

    # -- volumes ---------------------------------------------------------------------

    def create_volume(self, name, size=None, image=None, snapshot=None, multiattach=False, description="",
                      volume_type=None, properties=None):
        """Create a volume: empty, a copy of an image's disk, or a copy of a snapshot.

        Args:
            name: 1-40 letters, digits, '.', '_' or '-'; unique in the lab.
            size: GiB (whole number >= 1); from an image or snapshot it defaults to theirs.
            image: an image name (``lab.image.list_images()``): the volume holds its disk and is bootable.
            snapshot: a snapshot name or id: the volume holds its copy.
            multiattach: allow several servers to attach it at once (stored raw, see the backend).
            description: free text.
            volume_type: the backend (``list_volume_types()``); default the service's, or the snapshot's.
            properties: ``{str: str}`` kept with the volume (``volume.properties``).
        Raises:
            InvalidInput: a bad name, size, volume type or properties, both image and snapshot, or a size below
                the source's.
            NotFound: unknown image or snapshot.
            Conflict: a volume with that name exists.
            QuotaExceeded: the lab's volumes or gigabytes quota would be passed.
        """
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidInput(f"volume name {name!r} is not valid",
                               fix="use 1-40 letters, digits, '.', '_' or '-', starting with a letter or digit")
        if image is not None and snapshot is not None:
            raise InvalidInput("a volume is made from an image or from a snapshot, not both",
                               fix="give only one of image= and snapshot=")
        properties = arguments.properties(properties)
        if description is not None and not isinstance(description, str):
            raise InvalidInput(f"description must be a string, not {type(description).__name__}")
        source, minimum, img, snap = {}, 1, None, None
        if image is not None:
            img = self.lab.image.get_image(image)
            minimum = max(1, math.ceil(img.virtual_size / GIB))
            source = {"image": img.name}
        if snapshot is not None:
            snap = self.get_snapshot(snapshot)
            minimum = snap.size
            source = {"snapshot": snap.id}
            source_type = self._backend_of(snap).name
            if volume_type not in (None, source_type):
                raise InvalidInput(f"snapshot {snap.name} is on the {source_type} backend, not {volume_type}",
                                   fix=f"make the volume with volume_type={source_type!r} (or leave it out)")
            volume_type = source_type
        backend = self.backend(volume_type)
        size = check_size(minimum if size is None else size)
        if size < minimum:
            raise InvalidInput(f"size={size} GiB is smaller than its source ({minimum} GiB)",
                               fix=f"give size >= {minimum}")
        volume = Volume(id=str(uuid.uuid4()), name=name, size=size, multiattach=bool(multiattach),
                        bootable=img is not None, source=source, volume_type=backend.name,
                        description=description or "", properties=properties)
        volume._service = self
        with self._lock:
            if any(v.name == name for v in self._volumes.values()):
                raise Conflict(f"a volume named {name!r} already exists",
                               fix="choose another name, or delete the existing volume first")
            self._check_quota(volumes=1, gigabytes=size)
            self._volumes[volume.id] = volume          # counted in the quota from now on
            self._save()
        try:
            if img is not None:
                backend.create_volume_from_image(volume.id, size, img, multiattach=volume.multiattach)
            elif snap is not None:
                backend.create_volume_from_snapshot(volume.id, size, snap.id, multiattach=volume.multiattach)
            else:
                backend.create_volume(volume.id, size, multiattach=volume.multiattach)
        except BaseException:
            # nothing half-created stays behind: no file, no record
            backend.delete_volume(volume.id)
            with self._lock:
                self._volumes.pop(volume.id, None)
                self._save()
            raise
        self._set(volume, AVAILABLE)
        return volume

    def extend_volume(self, volume, new_size):
        """Grow a volume to ``new_size`` GiB; an attached volume's guest sees the new size at once.

        Raises:
            InvalidInput: ``new_size`` is not larger than the volume (volumes only grow).
            Conflict: the volume is busy, or attached on a backend that cannot extend online.
            QuotaExceeded: the gigabytes quota would be passed.
        """
        volume = self.get_volume(volume)
        new_size = check_size(new_size, "new_size")
        backend = self._backend_of(volume)
        if new_size <= volume.size:
            raise InvalidInput(f"new_size={new_size} GiB is not larger than volume {volume.name}'s "
                               f"{volume.size} GiB; volumes only grow", fix=f"give new_size > {volume.size}")
        with self._lock:
            if volume.status not in (AVAILABLE, IN_USE) or volume.id in self._busy:
                raise Conflict(f"volume {volume.name} is {volume.status}", fix="wait until it is available or in-use")
            if volume.attachments and not backend.online_extend:
                raise Conflict(f"the {backend.name} backend cannot extend volume {volume.name} while it is "
                               "attached", fix="detach it, extend it, attach it again")
            self._check_quota(gigabytes=new_size - volume.size)
            previous = volume.status
            volume.set_status(EXTENDING)
            self._save()
        try:
            running = [self._server(a.server_name) for a in volume.attachments]
            running = [s for s in running if s.status not in ("SHUTOFF", "DELETED")]
            if backend.extend_volume(volume.id, new_size, attached=bool(running)):
                # the file is open in QEMU: each QEMU resizes it (the first grows the file,
                # the others only learn the new size) and tells its guest
                for server in running:
                    server.extend_volume(volume.id, new_size * GIB)
        except BaseException:
            self._set(volume, previous)
            raise
        with self._lock:
            volume.size = new_size
            volume.set_status(previous)
            self._save()
        return volume

    def delete_volume(self, volume, cascade=False):
        """Delete a volume and its data.

        Args:
            cascade: also delete its snapshots (else a volume with snapshots is refused, as in Cinder).
        Raises:
            Conflict: it is attached (in-use), busy, or has snapshots.
        """
        volume = self.get_volume(volume)
        with self._lock:
            if volume.attachments:
                raise Conflict(f"volume {volume.name} is in-use on {', '.join(volume.servers)}",
                               fix=f"detach it first: lab.block_storage.detach_volume({volume.name!r})")
            if volume.id in self._busy or (volume.status != AVAILABLE and not volume.status.startswith("error")):
                raise Conflict(f"volume {volume.name} is {volume.status}", fix="wait until it is available")
            snapshots = [s for s in self._snapshots.values() if s.volume_id == volume.id]
            if snapshots and not cascade:
                raise Conflict(f"volume {volume.name} has {len(snapshots)} snapshot(s): "
                               f"{', '.join(s.name for s in snapshots)}",
                               fix="delete them first, or delete_volume(..., cascade=True)")
            volume.set_status(DELETING)
            self._save()
        for snapshot in snapshots:
            self.delete_snapshot(snapshot)
        self._backend_of(volume).delete_volume(volume.id)
        with self._lock:
            self._volumes.pop(volume.id, None)
            self._save()

    # -- attachments -----------------------------------------------------------------

    def attach_volume(self, volume, server, timeout=ATTACH_TIMEOUT_S):
        """Hot-plug a volume into a server (running, or stopped: then it appears at the next boot).

        Returns the :class:`~cloudlab.block_storage.volume.Attachment`; its ``device`` is the
        name the guest gave the disk, its ``requested_device`` the one libvirt was asked for.

        Raises:
            NotFound: unknown volume or server, or the server was deleted.
            Conflict: the volume is attached already (and not multi-attach), busy, or the server is
                not ACTIVE or SHUTOFF, or has no free slot.
            ResourceTimeout: the guest did not see the disk (the attach is undone).
        """
        volume = self.get_volume(volume)
        server = self._server(server)
        with self._lock:
            if volume.attachment_on(server.name):
                raise Conflict(f"volume {volume.name} is already attached to server {server.name}",
                               fix=f"it is {volume.device_on(server.name) or 'there'} in the guest")
            if volume.status == IN_USE and not volume.multiattach:
                raise Conflict(f"volume {volume.name} is in-use on {', '.join(volume.servers)} and is not "
                               "multi-attach", fix="detach it first, or create the volume with multiattach=True")
            if volume.status not in (AVAILABLE, IN_USE) or volume.id in self._busy:
                raise Conflict(f"volume {volume.name} is {volume.status}"
                               + (" and being snapshotted" if volume.id in self._busy else ""),
                               fix="wait until it is available")
            status = server.status
            if status not in ("ACTIVE", "SHUTOFF"):
                raise Conflict(f"server {server.name} is {status}; volumes attach to ACTIVE or SHUTOFF servers",
                               fix="wait for the server: compute.wait_for_server(server)")
            previous = volume.status
            volume.set_status(ATTACHING)
            self._save()
        connector = {"host": server.host, "server_id": server.id}
        backend = self._backend_of(volume)
        try:
            connection = backend.initialize_connection(volume.id, connector)
            if volume.multiattach:
                connection["data"]["shareable"] = True
            target, device = server.attach_volume(connection, volume.id, timeout=timeout)
        except BaseException:
            try:
                backend.terminate_connection(volume.id, connector)
            finally:
                self._set(volume, previous)
            raise
        attachment = Attachment(id=str(uuid.uuid4()), server_id=server.id, server_name=server.name,
                                requested_device=f"/dev/{target}", device=f"/dev/{device}" if device else None)
        with self._lock:
            volume.attachments.append(attachment)
            volume.set_status(IN_USE)
            self._save()
        return attachment

    def detach_volume(self, volume, server=None, timeout=ATTACH_TIMEOUT_S):
        """Hot-unplug a volume from a server (the only one, or ``server``); returns the volume.

        Unmount it inside the guest first, as you would eject a USB disk: the guest
        loses the device at once.

        Raises:
            NotFound: unknown volume or server.
            Conflict: the volume is not attached (to that server), or is busy.
            InvalidInput: it is attached to several servers and ``server`` was not given.
            ResourceTimeout: the guest did not release the disk (it stays in-use).
        """
        volume = self.get_volume(volume)
        with self._lock:
            if not volume.attachments:
                raise Conflict(f"volume {volume.name} is not attached to any server ({volume.status})",
                               fix="attach_volume() it first; there is nothing to detach")
            if server is None:
                if len(volume.attachments) > 1:
                    raise InvalidInput(f"volume {volume.name} is attached to {', '.join(volume.servers)}",
                                       fix="say which: detach_volume(volume, server)")
                attachment = volume.attachments[0]
            else:
                attachment = volume.attachment_on(server)
                if attachment is None:
                    name = getattr(server, "name", server)
                    raise Conflict(f"volume {volume.name} is not attached to server {name!r}; it is on "
                                   f"{', '.join(volume.servers)}", fix="detach it from the server it is on")
            if volume.status != IN_USE:
                raise Conflict(f"volume {volume.name} is {volume.status}", fix="wait until it is in-use")
            volume.set_status(DETACHING)
            self._save()
        try:
            try:
                live = self._server(attachment.server_name)
                if live.id == attachment.server_id and live.volume_target(volume.id):
                    live.detach_volume(volume.id, timeout=timeout)
            except NotFound:
                pass        # the server is gone, and the disk with it
            self._backend_of(volume).terminate_connection(volume.id, {"server_id": attachment.server_id})
        except BaseException:
            self._set(volume, IN_USE)
            raise
        with self._lock:
            volume.attachments.remove(attachment)
            volume.set_status(IN_USE if volume.attachments else AVAILABLE)
            self._save()
        return volume

    # -- consumers on the lab host -----------------------------------------------------

    def connect_to_host(self, volume, consumer):
        """Reserve a volume for a consumer on the lab host that is not a server, and say how to reach it.

        The database service keeps each instance's data on a volume this way, as Trove
        has Nova attach a Cinder volume to its database VM: the volume is ``in-use``,
        its attachment names ``consumer``, and the returned *connection info* (the
        backend's, as a hypervisor gets it) names the file or network export that the
        consumer opens itself (e.g. with ``qemu-storage-daemon``).

        Args:
            consumer: who uses it, in the learner's words (``database instance shop``).
        Raises:
            Conflict: the volume is attached or busy.
        """
        volume = self.get_volume(volume)
        server_id = f"{HOST_CONSUMER}{consumer}"
        with self._lock:
            if volume.attachments or volume.status != AVAILABLE or volume.id in self._busy:
                users = ", ".join(volume.servers) or volume.status
                raise Conflict(f"volume {volume.name} is {volume.status} ({users})",
                               fix="detach it first, or wait until it is available")
            attachment = Attachment(id=str(uuid.uuid4()), server_id=server_id, server_name=consumer,
                                    requested_device="file", device="(a file on the lab host)")
            volume.attachments.append(attachment)
            volume.set_status(IN_USE)
            self._save()
        try:
            return self._backend_of(volume).initialize_connection(volume.id, {"server_id": server_id,
                                                                              "host": "lab host"})
        except BaseException:
            with self._lock:
                volume.attachments.remove(attachment)
                volume.set_status(AVAILABLE)
                self._save()
            raise

    def disconnect_from_host(self, volume, consumer):
        """Release a volume that :meth:`connect_to_host` gave ``consumer`` (it must have closed it).

        Raises:
            NotFound: no such volume, or ``consumer`` does not hold it.
        """
        volume = self.get_volume(volume)
        server_id = f"{HOST_CONSUMER}{consumer}"
        with self._lock:
            attachment = next((a for a in volume.attachments if a.server_id == server_id), None)
            if attachment is None:
                raise NotFound(f"volume {volume.name} is not connected to {consumer}")
        self._backend_of(volume).terminate_connection(volume.id, {"server_id": server_id, "host": "lab host"})
        with self._lock:
            volume.attachments.remove(attachment)
            if not volume.attachments:
                volume.set_status(AVAILABLE)
            self._save()

    # -- snapshots -------------------------------------------------------------------

    def create_snapshot(self, volume, name, description="", properties=None):
        """Snapshot a detached volume: a copy of its contents now, from which volumes can be made.

        Args:
            description: free text.
            properties: ``{str: str}`` kept with the snapshot (``snapshot.properties``).
        Raises:
            InvalidInput: a bad name, description or properties.
            Conflict: the volume is attached (a guest could be writing it) or busy; a snapshot
                with that name exists.
            QuotaExceeded: the snapshots or gigabytes quota would be passed.
        """
        volume = self.get_volume(volume)
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidInput(f"snapshot name {name!r} is not valid",
                               fix="use 1-40 letters, digits, '.', '_' or '-'")
        properties = arguments.properties(properties)
        if description is not None and not isinstance(description, str):
            raise InvalidInput(f"description must be a string, not {type(description).__name__}")
        snapshot = Snapshot(id=str(uuid.uuid4()), name=name, volume_id=volume.id, size=volume.size,
                            volume_type=volume.volume_type, volume_name=volume.name, description=description or "",
                            properties=properties)
        backend = self._backend_of(volume)
        snapshot._service = self
        with self._lock:
            if volume.status != AVAILABLE:
                raise Conflict(f"volume {volume.name} is {volume.status}; cloudlab snapshots detached volumes",
                               fix="unmount and detach it first (Cinder needs --force for an in-use volume)")
            if any(s.name == name for s in self._snapshots.values()):
                raise Conflict(f"a snapshot named {name!r} already exists", fix="choose another name")
            if volume.id in self._busy:
                raise Conflict(f"volume {volume.name} is being snapshotted", fix="wait until that finishes")
            self._check_quota(snapshots=1, gigabytes=volume.size)
            self._snapshots[snapshot.id] = snapshot
            self._busy.add(volume.id)     # the volume stays "available" (as in Cinder) but cannot attach
            self._save()
        try:
            backend.create_snapshot(snapshot.id, volume.id)
        except BaseException:
            backend.delete_snapshot(snapshot.id)
            with self._lock:
                self._snapshots.pop(snapshot.id, None)
                self._save()
            raise
        finally:
            with self._lock:
                self._busy.discard(volume.id)
        with self._lock:
            snapshot.status = AVAILABLE
            self._save()
        return snapshot

    def delete_snapshot(self, snapshot):
        """Delete a snapshot (volumes made from it are copies and stay).

        Raises:
            NotFound: no such snapshot.
        """
        snapshot = self.get_snapshot(snapshot)
        with self._lock:
            snapshot.status = DELETING
            self._save()
        self._backend_of(snapshot).delete_snapshot(snapshot.id)
        with self._lock:
            self._snapshots.pop(snapshot.id, None)
            self._save()

    def allocated_bytes(self, volume):
        """Bytes the volume takes on the backend now (thin: what has been written)."""
        volume = self.get_volume(volume)
        return self._backend_of(volume).allocated_bytes(volume.id)

    def __repr__(self):
        return f"<BlockStorage default type {self.default_type}: {len(self._volumes)} volumes>"


def leftovers(home, prefix):
    """Storage daemons (qemu-storage-daemon) of any lab still running; ``host leftovers`` adds these.

    Volume and snapshot files carry the lab's prefix, so the host's own scan of the
    labs' folders already finds them.

    Args:
        home: ``config.home()``.
        prefix: the global prefix (``cloudlab-``).
    """
    from .nbd import leftovers as nbd_leftovers
    return nbd_leftovers(home, prefix)


__all__ = ["BlockStorage", "Volume", "Snapshot", "Attachment", "Quotas", "Backend", "FileBackend",
           "CREATING", "AVAILABLE", "ATTACHING", "IN_USE", "DETACHING", "EXTENDING", "DELETING", "ERROR"]
