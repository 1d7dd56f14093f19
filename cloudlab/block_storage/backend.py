"""Volume backends: where a volume's bytes live and how a hypervisor reaches them.

The block storage service (its API, quotas, statuses and attachments) never
touches a volume's bytes; it asks a backend, as Cinder's volume manager asks its
volume driver.  A backend answers these calls, each naming volumes and snapshots
by id and sizes in GiB:

``create_volume(id, size, multiattach)``, ``create_volume_from_image(id, size, image, multiattach)``,
``create_volume_from_snapshot(id, size, snapshot_id, multiattach)``
    make the volume's storage (empty, a copy of an image's disk, a copy of a snapshot);
``extend_volume(id, size, attached)``
    grow it; with ``attached`` the backend only does its part and returns whether the
    hypervisor must resize its open disk (``True`` for a file QEMU has open);
``delete_volume(id)``, ``create_snapshot(id, volume_id)``, ``delete_snapshot(id)``;
``initialize_connection(id, connector)`` / ``terminate_connection(id, connector)``
    what a hypervisor needs to reach the volume: Cinder's *connection info*, a plain
    dict ``{"driver_volume_type": "file" | "nbd" | ..., "data": {...}}`` that the
    compute side turns into a libvirt ``<disk>`` (:mod:`cloudlab.compute.volumes`);
``allocated_bytes(id)``, ``start()``, ``stop()``, ``leftovers()``.

Capabilities a backend declares: ``online_extend`` (a volume can grow while
attached) and ``name`` (shown as the volume's type).

For what builds on this interface: statuses are Cinder's (``volume.py``), ids are
UUIDs, sizes whole GiB, and ``Volume.to_cinder()`` / ``Snapshot.to_cinder()`` give
Cinder v3's JSON shapes for a REST API over the service; quotas use Cinder's names
(volumes, snapshots, gigabytes).  A consumer that is not a guest (a database on the
lab host, say) can reach a volume the same way QEMU does: the connection info names
the file or the NBD export, which ``qemu-storage-daemon --export type=fuse`` or
``qemu-nbd`` can present as a plain file.  The storage-node layout of
the architectures lab adds a backend that serves the same volumes over the
network (:mod:`cloudlab.block_storage.nbd`), and nothing above this interface
changes.

:class:`FileBackend` keeps each volume as one file in the lab's state folder:
qcow2 (thin: only written clusters take space), or raw for a multi-attach volume,
because a qcow2 file's metadata cannot be written by two QEMU processes at once,
while a raw file is only blocks (the guests must then share it with a cluster
filesystem, as with any shared disk).  A snapshot is a qcow2 copy of the volume
taken while it is detached, and a volume made from a snapshot is a copy of it, so
volumes and snapshots never depend on each other's files (as on Cinder's LVM driver).
"""

import shutil
import subprocess

from ..errors import CloudlabError, MissingPrerequisite

GIB = 2 ** 30


def run_qemu_img(args, what):
    """Run ``qemu-img ARGS``; a failure becomes a CloudlabError that says what was being done."""
    try:
        return subprocess.run(["qemu-img", *args], check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        raise MissingPrerequisite(f"{what}: qemu-img is not installed",
                                  fix="run `make lab`, or `sudo apt-get install qemu-utils`") from None
    except subprocess.CalledProcessError as exc:
        raise CloudlabError(f"{what}: qemu-img {' '.join(args[:2])} failed: {exc.stderr.strip()[-300:]}") from None


class Backend:
    """The interface every volume backend implements (see the module docstring)."""

    name = "abstract"
    online_extend = False

    def start(self):
        """Start whatever serves the volumes (nothing for files on this host)."""

    def stop(self):
        """Stop what ``start`` started."""

    def create_volume(self, volume_id, size, multiattach=False):
        """Make an empty volume of ``size`` GiB."""
        raise NotImplementedError

    def create_volume_from_image(self, volume_id, size, image, multiattach=False):
        """Make a volume of ``size`` GiB holding a copy of ``image``'s disk (an :class:`~cloudlab.image.Image`)."""
        raise NotImplementedError

    def create_volume_from_snapshot(self, volume_id, size, snapshot_id, multiattach=False):
        """Make a volume of ``size`` GiB holding a copy of snapshot ``snapshot_id``."""
        raise NotImplementedError

    def extend_volume(self, volume_id, size, attached=False):
        """Grow a volume to ``size`` GiB; returns True when the hypervisor must resize its open disk."""
        raise NotImplementedError

    def delete_volume(self, volume_id):
        """Remove a volume's storage (a volume that is already gone is fine)."""
        raise NotImplementedError

    def create_snapshot(self, snapshot_id, volume_id):
        """Copy a (detached) volume's current contents into snapshot ``snapshot_id``."""
        raise NotImplementedError

    def delete_snapshot(self, snapshot_id):
        """Remove a snapshot's storage."""
        raise NotImplementedError

    def initialize_connection(self, volume_id, connector):
        """Connection info for attaching the volume to the host described by ``connector``."""
        raise NotImplementedError

    def terminate_connection(self, volume_id, connector):
        """Undo ``initialize_connection`` for that host."""

    def allocated_bytes(self, volume_id):
        """Bytes the volume really takes on the backend (thin volumes take only what was written)."""
        raise NotImplementedError

    def leftovers(self):
        """What of this backend is still there (files, processes), as lines; empty when clean."""
        return []


class FileBackend(Backend):
    """Volumes as qcow2 (or raw, for multi-attach) files in the lab's state folder, named ``PREFIXvolume-ID.FORMAT``.

    Args:
        lab: the :class:`~cloudlab.lab.Lab`; its home holds the files, its prefix starts their names.
    """

    name = "file"
    online_extend = True

    def __init__(self, lab):
        self.folder = lab.home
        self.prefix = lab.prefix

    # -- paths -----------------------------------------------------------------------

    def path(self, volume_id):
        """The volume's file (whichever format it has), or the qcow2 name when there is none yet."""
        for fmt in ("qcow2", "raw"):
            candidate = self.folder / f"{self.prefix}volume-{volume_id}.{fmt}"
            if candidate.exists():
                return candidate
        return self.folder / f"{self.prefix}volume-{volume_id}.qcow2"

    def snapshot_path(self, snapshot_id):
        """A snapshot's file."""
        return self.folder / f"{self.prefix}snapshot-{snapshot_id}.qcow2"

    def format(self, volume_id):
        """``qcow2`` or ``raw``: the format of the volume's file."""
        return self.path(volume_id).suffix[1:]

    def _new_path(self, volume_id, multiattach):
        return self.folder / f"{self.prefix}volume-{volume_id}.{'raw' if multiattach else 'qcow2'}"

    # -- volumes ---------------------------------------------------------------------

    def create_volume(self, volume_id, size, multiattach=False):
        """Make an empty, thin volume file of ``size`` GiB."""
        target = self._new_path(volume_id, multiattach)
        fmt = target.suffix[1:]
        self._whole(target, lambda tmp: run_qemu_img(
            ["create", "-q", "-f", fmt, str(tmp), f"{size}G"], f"creating volume {volume_id}"))

    def create_volume_from_image(self, volume_id, size, image, multiattach=False):
        """Copy ``image``'s disk into a new volume file and grow it to ``size`` GiB."""
        self._copy_into(volume_id, size, image.disk, image.format, multiattach, f"image {image.name}")

    def create_volume_from_snapshot(self, volume_id, size, snapshot_id, multiattach=False):
        """Copy snapshot ``snapshot_id`` into a new volume file of ``size`` GiB."""
        source = self.snapshot_path(snapshot_id)
        if not source.exists():
            raise CloudlabError(f"the file of snapshot {snapshot_id} is missing ({source.name})")
        self._copy_into(volume_id, size, source, "qcow2", multiattach, f"snapshot {snapshot_id}")

    def _copy_into(self, volume_id, size, source, source_format, multiattach, what):
        target = self._new_path(volume_id, multiattach)
        fmt = target.suffix[1:]

        def fill(tmp):
            """Write the copy into ``tmp`` (convert writes only allocated data, so it stays thin)."""
            run_qemu_img(["convert", "-q", "-f", source_format, "-O", fmt, str(source), str(tmp)],
                         f"copying {what} into volume {volume_id}")
            run_qemu_img(["resize", "-q", "-f", fmt, str(tmp), f"{size}G"], f"sizing volume {volume_id}")

        self._whole(target, fill)

    @staticmethod
    def _whole(target, fill):
        """Make ``target`` through a temporary name, renamed into place only when complete."""
        tmp = target.with_name(target.name + ".part")
        try:
            fill(tmp)
            tmp.rename(target)
        finally:
            tmp.unlink(missing_ok=True)

    def extend_volume(self, volume_id, size, attached=False):
        """Grow the file to ``size`` GiB; when attached, QEMU (which holds it open) must do it instead."""
        if attached:
            return True
        path = self.path(volume_id)
        run_qemu_img(["resize", "-q", "-f", path.suffix[1:], str(path), f"{size}G"],
                     f"extending volume {volume_id}")
        return False

    def delete_volume(self, volume_id):
        """Remove the volume's file."""
        for fmt in ("qcow2", "raw"):
            (self.folder / f"{self.prefix}volume-{volume_id}.{fmt}").unlink(missing_ok=True)

    def create_snapshot(self, snapshot_id, volume_id):
        """Copy the volume's file (detached, so nothing writes it meanwhile) into the snapshot's."""
        source = self.path(volume_id)
        target = self.snapshot_path(snapshot_id)
        self._whole(target, lambda tmp: run_qemu_img(
            ["convert", "-q", "-f", source.suffix[1:], "-O", "qcow2", str(source), str(tmp)],
            f"snapshotting volume {volume_id}"))

    def delete_snapshot(self, snapshot_id):
        """Remove the snapshot's file."""
        self.snapshot_path(snapshot_id).unlink(missing_ok=True)

    def initialize_connection(self, volume_id, connector):
        """A file on this host: QEMU opens it directly (Cinder's ``driver_volume_type: file``)."""
        path = self.path(volume_id)
        if not path.exists():
            raise CloudlabError(f"the file of volume {volume_id} is missing ({path.name})",
                                fix="delete the volume and create it again")
        return {"driver_volume_type": "file", "data": {"path": str(path), "format": path.suffix[1:]}}

    def allocated_bytes(self, volume_id):
        """Bytes the file takes on the host's disk (not its virtual size)."""
        try:
            return self.path(volume_id).stat().st_blocks * 512
        except FileNotFoundError:
            return 0

    def leftovers(self):
        """Volume and snapshot files of this lab still in its folder."""
        if not self.folder.is_dir():
            return []
        return [f"file {p}" for p in sorted(self.folder.glob(f"{self.prefix}volume-*"))] + \
            [f"file {p}" for p in sorted(self.folder.glob(f"{self.prefix}snapshot-*"))]


def disk_free_gib(folder):
    """GiB free on the filesystem holding ``folder``."""
    return shutil.disk_usage(folder).free / GIB
