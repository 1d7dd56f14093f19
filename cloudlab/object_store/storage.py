"""The object store on disk: "file + metadata", written so that it never lies.

Layout under the store's root (every name is hashed, so no user string ever
becomes part of a path and nothing can reach outside the root)::

    accounts/<sha256(account)[:32]>/account.json
    accounts/<..>/containers/<sha256(container)[:32]>/container.json
    accounts/<..>/containers/<..>/objects/<sha256(object name)>.obj
    accounts/<..>/containers/<..>/versions/<sha256(object name)>-<version id>.obj

An ``.obj`` file is the object's bytes followed by a trailer: its metadata as JSON
(real name, ETag, size, content type, timestamp, user metadata), the JSON's length
and a magic marker.  A write goes to a temporary file in the same directory, is
fsync'ed, then renamed over the final name: the rename is atomic, so a reader (or a
restart after a crash) sees either the old object or the new one, whole and with its
metadata, never a part.  Temporary files left by a crash start with ``.tmp-`` and
are ignored, and removed when their container is next loaded.  Small uploads (bodies
read whole) are made durable together: a group commit flushes every upload waiting at
that moment with one ``syncfs`` instead of one ``fsync`` each (``commit.py``).

What "acknowledged" guarantees: the object's bytes and trailer are on the disk (fsync,
or the group commit's flush) before the rename, so a killed server loses nothing it
acknowledged.  The rename's directory
entry reaches the disk with the file system's next journal commit (seconds on ext4);
after a *power failure* in that window the object may be missing (never partial),
unless the store runs with ``sync_dirs=True``, which fsyncs the directory too.

**Versioning** (S3's bucket versioning, Swift's ``X-Versions-Enabled``): in a container
whose versioning is ``Enabled``, every write gets a new *version id* and the object it
replaces is not removed but renamed into ``versions/`` (one rename, in the same commit,
under the same lock); a delete without a version id adds a *delete marker* (a trailer
with no bytes) instead of removing anything.  The current version always stays at
``objects/``, so reading the latest costs what it costs without versioning.  With
versioning ``Suspended`` a write is the ``null`` version, which replaces an older
``null`` version but keeps the others.  Deleting a version by its id removes it for
good; when it was the current one, the newest older version (not a delete marker)
is renamed back to ``objects/``.

Each container keeps a sorted in-memory index of its objects (name, ETag, size,
content type, timestamp, version id) and of its older versions, loaded from the
trailers on first use; listings with prefix/delimiter/marker are bisections in it.
One process owns a root at a time.

All methods of :class:`Store` that touch the disk are coroutines: blocking I/O
(fsync above all) runs in a thread pool or the group commit's thread, so that one
slow disk write never stalls the event loop, while small reads are done inline where
a thread hop would cost more than the read.  User metadata keys are stored lower-case, so Swift's
``X-Object-Meta-Color`` and S3's ``x-amz-meta-color`` name the same entry.
"""

import asyncio
import bisect
import hashlib
import itertools
import json
import logging
import os
import secrets
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..errors import Conflict, InvalidInput, NotFound, QuotaExceeded
from .commit import GroupCommitter
from .files import TMP_PREFIX, fsync_dir, fsync_write, tmp_name, unlink_if_exists, write_all

log = logging.getLogger(__name__)

MAGIC = b"CLOBJ1\n\0"
TRAILER = struct.Struct(">Q8s")      # JSON length, magic
CHUNK = 1 << 20                      # write and read granularity for large objects
INLINE_READ = 256 << 10              # objects up to this size are read without a thread hop
INLINE_HASH = 64 << 10               # bodies up to this size are hashed without a thread hop

# limits the store itself enforces (Swift's defaults); the HTTP views may add more
MAX_ACCOUNT_NAME = 256
MAX_CONTAINER_NAME = 256
MAX_OBJECT_NAME = 1024
MAX_FILE_SIZE = 5368709122

VERSIONING_STATES = ("Enabled", "Suspended")
NULL = "null"                        # the version id of an object written without versioning


class EtagMismatch(InvalidInput):
    """The ETag a client sent does not match the MD5 of the body received (HTTP 422)."""


class TooLarge(QuotaExceeded):
    """The object is larger than the store's maximum object size (HTTP 413)."""


class ContainerNotEmpty(Conflict):
    """A container that still holds objects (or older versions) cannot be deleted (HTTP 409)."""


class ContainerBusy(Conflict):
    """A container with writes under way cannot be deleted now (HTTP 409; try again)."""


class NoSuchVersion(NotFound):
    """The object has no version with that id (S3: NoSuchVersion)."""


class DeleteMarker(NotFound):
    """The version asked for, or the latest one, is a delete marker.

    Args:
        message: what was asked for.
        version_id: the delete marker's version id.
        addressed: True when the request named the marker's version id itself
            (S3 answers 405 then, 404 otherwise).
        timestamp: when the marker was made (S3's 405 carries it as Last-Modified).
    """

    def __init__(self, message, version_id, addressed=False, timestamp=None):
        super().__init__(message)
        self.version_id = version_id
        self.addressed = addressed
        self.timestamp = timestamp


@dataclass
class ObjectInfo:
    """What the store knows about one object (one version of it).

    ``metadata`` holds user metadata with lower-case keys; ``headers`` other HTTP
    headers kept with the object (``content-disposition``, ``content-encoding``,
    ``cache-control`` ...); ``system`` what the APIs keep about it besides (S3's ACL
    and tags); ``timestamp`` is the write time in seconds since the epoch;
    ``version_id`` is None for the ``null`` version.
    """
    name: str
    etag: str
    size: int
    content_type: str
    timestamp: float
    metadata: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    version_id: str = None
    system: dict = field(default_factory=dict)
    delete_marker: bool = False

    @property
    def last_modified(self):
        """Alias of ``timestamp`` (seconds since the epoch)."""
        return self.timestamp


@dataclass
class ContainerInfo:
    """A container (S3: bucket): name, creation time, metadata, usage and configuration.

    ``config`` holds what the APIs keep about the container besides metadata:
    ``versioning`` ("Enabled" / "Suspended"), ACLs, a bucket policy, CORS rules, tags.
    """
    name: str
    timestamp: float
    metadata: dict
    object_count: int
    bytes_used: int
    last_modified: float
    config: dict = field(default_factory=dict)


@dataclass
class AccountInfo:
    """An account: its metadata and usage summed over its containers."""
    name: str
    timestamp: float
    metadata: dict
    container_count: int
    object_count: int
    bytes_used: int
    config: dict = field(default_factory=dict)


@dataclass
class ListEntry:
    """One line of a listing: an object (``subdir`` False) or a common prefix (``subdir`` True).

    For a common prefix only ``name`` is set; for a container listing of an
    account, ``size`` is the bytes used and ``count`` the number of objects.  In a
    listing of versions, ``version_id``, ``is_latest`` and ``delete_marker`` are set.
    """
    name: str
    subdir: bool = False
    etag: str = ""
    size: int = 0
    content_type: str = ""
    timestamp: float = 0.0
    count: int = 0
    version_id: str = None
    is_latest: bool = True
    delete_marker: bool = False

    @property
    def last_modified(self):
        """Alias of ``timestamp``."""
        return self.timestamp


def _hash(name, length=32):
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def check_name(kind, name, max_bytes):
    """Validate an account, container or object name; returns it.

    Args:
        kind: "account", "container" or "object" (used in the message).
        name: the name to check.
        max_bytes: the longest allowed name in UTF-8 bytes.
    Raises:
        InvalidInput: empty, not text, not valid UTF-8, has a NUL, too long, or
            (accounts and containers) contains "/".
    """
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{kind} name must be a non-empty string, not {name!r}")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{kind} name {name!r} is not valid UTF-8",
                           fix="use a name made of valid Unicode text") from None
    if "\x00" in name:
        raise InvalidInput(f"{kind} name {name!r} contains a NUL character", fix="remove the NUL")
    if len(encoded) > max_bytes:
        raise InvalidInput(f"{kind} name is {len(encoded)} bytes long; the limit is {max_bytes}",
                           fix=f"use a {kind} name of at most {max_bytes} UTF-8 bytes")
    if kind != "object" and "/" in name:
        raise InvalidInput(f"{kind} name {name!r} contains '/'", fix=f"use a {kind} name without '/'")
    return name


def _lower_keys(metadata):
    return {str(k).lower(): str(v) for k, v in (metadata or {}).items()}


_clock_lock = threading.Lock()
_last_time = [0.0]


def now():
    """The time for a new write: the clock, but strictly after every earlier write of this process.

    Versions of one object are ordered by their timestamps, so two writes in the
    same microsecond must still differ.
    """
    with _clock_lock:
        t = max(time.time(), _last_time[0] + 1e-6)
        _last_time[0] = t
        return t


# version ids: opaque to clients; the time in microseconds, then random per process and a counter
_VID_SESSION = secrets.token_hex(4)
_vid_counter = itertools.count()


def new_version_id(timestamp):
    """A fresh version id for a write made at ``timestamp``; letters and digits only."""
    return f"{int(timestamp * 1e6):014x}{_VID_SESSION}{next(_vid_counter) & 0xffffff:06x}"


def _read_trailer(fd):
    """Read an .obj file's trailer; returns (metadata dict, data size) or raises ValueError."""
    total = os.fstat(fd).st_size
    if total < TRAILER.size:
        raise ValueError("too short")
    length, magic = TRAILER.unpack(os.pread(fd, TRAILER.size, total - TRAILER.size))
    if magic != MAGIC or length > total - TRAILER.size:
        raise ValueError("bad trailer")
    meta = json.loads(os.pread(fd, length, total - TRAILER.size - length))
    size = total - TRAILER.size - length
    if meta.get("size") != size:
        raise ValueError("size mismatch")
    return meta, size


def _info(meta):
    return ObjectInfo(name=meta["name"], etag=meta["etag"], size=meta["size"],
                      content_type=meta["content_type"], timestamp=meta["timestamp"],
                      metadata=meta.get("metadata", {}), headers=meta.get("headers", {}),
                      version_id=meta.get("vid"), system=meta.get("system", {}),
                      delete_marker=meta.get("marker", False))


def _trailer_bytes(info):
    meta = {"name": info.name, "etag": info.etag, "size": info.size,
            "content_type": info.content_type, "timestamp": info.timestamp,
            "metadata": info.metadata, "headers": info.headers}
    # only what is set: an object of an unversioned container has the trailer it always had
    if info.version_id is not None:
        meta["vid"] = info.version_id
    if info.system:
        meta["system"] = info.system
    if info.delete_marker:
        meta["marker"] = True
    data = json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    return data + TRAILER.pack(len(data), MAGIC)


@dataclass
class _Version:
    """An older version of an object, or a delete marker, as the index keeps it."""
    timestamp: float
    version_id: str          # None: the null version
    etag: str = ""
    size: int = 0
    content_type: str = ""
    marker: bool = False


class _Container:
    """In-memory state of one container: metadata, configuration and the sorted object index.

    ``entries`` maps each name whose latest version is an object to
    ``(etag, size, content_type, timestamp, version_id)``; ``versions`` maps a name to
    its older versions and delete markers, newest first.  When a name's latest version
    is a delete marker it is not in ``entries`` and the marker heads ``versions[name]``.
    """

    def __init__(self, name, path, meta):
        self.name = name
        self.path = path
        self.objects_dir = os.path.join(path, "objects")
        self.versions_dir = os.path.join(path, "versions")
        self.timestamp = meta["timestamp"]
        self.metadata = meta.get("metadata", {})
        self.config = meta.get("config", {})
        self.lock = threading.Lock()    # guards names/entries/versions/bytes and the renames of objects
        self.loaded = False
        self.deleted = False
        self.names = []                 # sorted object names
        self.entries = {}               # name -> (etag, size, content_type, timestamp, version id)
        self.versions = {}              # name -> [_Version, ...], newest first
        self.bytes_used = 0
        self.last_modified = max(self.timestamp, meta.get("modified", 0))
        self.writers = 0                # writes under way into objects/ (under lock)
        self.renames = 0                # renames committed so far (under lock)
        self.synced = 0                 # renames known to be durable (under sync_lock)
        self.sync_lock = threading.Lock()

    @property
    def versioning(self):
        """None (never enabled), "Enabled" or "Suspended"."""
        return self.config.get("versioning")

    def sync_dir(self, upto):
        """Make the directory entries of renames up to number ``upto`` durable (worker thread).

        Group commit: while one thread fsyncs the directory, others wait on the lock,
        and an fsync that started after their rename covers them, so N concurrent
        uploads cost far fewer than N directory fsyncs.
        """
        with self.sync_lock:
            if self.synced >= upto:
                return
            with self.lock:
                target = self.renames
            fsync_dir(self.objects_dir)
            if os.path.isdir(self.versions_dir):
                fsync_dir(self.versions_dir)
            self.synced = target

    def mark_synced(self, upto):
        """Record that the renames up to number ``upto`` are durable (flushed by a group commit)."""
        with self.sync_lock:
            self.synced = max(self.synced, upto)

    @staticmethod
    def _scan(folder):
        """Yield the trailers ``(file name, metadata, size)`` of the .obj files in ``folder``."""
        try:
            it = os.scandir(folder)
        except FileNotFoundError:
            return
        with it:
            for entry in it:
                if entry.name.startswith(TMP_PREFIX):
                    # a write that never finished (crash): never visible, so remove it
                    unlink_if_exists(entry.path)
                    continue
                if not entry.name.endswith(".obj"):
                    continue
                try:
                    fd = os.open(entry.path, os.O_RDONLY)
                except FileNotFoundError:
                    continue
                try:
                    meta, size = _read_trailer(fd)
                except (ValueError, KeyError, OSError):
                    continue            # not ours or damaged: ignore rather than serve it
                finally:
                    os.close(fd)
                yield entry.name, meta, size

    def load(self):
        """Scan the objects (and versions) folders and build the index (runs in a worker thread)."""
        with self.lock:
            if self.loaded:
                return
            entries = {}
            for fname, meta, size in self._scan(self.objects_dir):
                if fname != _hash(meta["name"], 64) + ".obj":
                    continue
                entries[meta["name"]] = (meta["etag"], size, meta["content_type"], meta["timestamp"],
                                         meta.get("vid"))
            versions = {}
            for fname, meta, size in self._scan(self.versions_dir):
                if fname != self._version_file(meta["name"], meta.get("vid")):
                    continue
                versions.setdefault(meta["name"], []).append(
                    _Version(meta["timestamp"], meta.get("vid"), meta["etag"], size, meta["content_type"],
                             meta.get("marker", False)))
            for older in versions.values():
                older.sort(key=lambda v: v.timestamp, reverse=True)
            self.entries = entries
            self.versions = versions
            self.names = sorted(entries)
            self.bytes_used = sum(e[1] for e in entries.values())
            # a crash between moving the current version aside and renaming its successor
            # into place (or writing a delete marker) leaves a name whose newest version is
            # an older one: that version is current again, as if the write never happened
            for name in [n for n, older in versions.items() if n not in entries and not older[0].marker]:
                self._promote(name)
            if entries:
                self.last_modified = max(self.last_modified, max(e[3] for e in entries.values()))
            self.loaded = True

    def object_path(self, name):
        """The file of object ``name``'s current version: its SHA-256, never the name itself."""
        return os.path.join(self.objects_dir, _hash(name, 64) + ".obj")

    @staticmethod
    def _version_file(name, version_id):
        return f"{_hash(name, 64)}-{version_id or NULL}.obj"

    def version_path(self, name, version_id):
        """The file of an older version (or delete marker) of ``name``."""
        return os.path.join(self.versions_dir, self._version_file(name, version_id))

    def begin_write(self):
        """Announce a write into this container; refused once the container is deleted.

        A deletion and a write are ordered by this: the deletion either comes first
        (the write gets NotFound before it creates anything) or finds the write under
        way and refuses whole (:class:`ContainerBusy`), so no upload ever lands in, or
        is lost with, a half-deleted container.
        Raises:
            NotFound: the container was deleted.
        """
        with self.lock:
            if self.deleted:
                raise NotFound(f"container {self.name!r} was deleted",
                               fix="create it again (Swift: PUT the container; S3: CreateBucket)")
            self.writers += 1

    def end_write(self):
        """The write announced by :meth:`begin_write` is over (committed or abandoned)."""
        with self.lock:
            self.writers -= 1

    # -- the version index (every method below runs with self.lock held) --------------------

    def _archive_current(self, name):
        """Move the current version of ``name`` into versions/ (lock held)."""
        etag, size, ctype, ts, vid = self.entries.pop(name)
        os.makedirs(self.versions_dir, exist_ok=True)
        os.rename(self.object_path(name), self.version_path(name, vid))
        self.versions.setdefault(name, []).insert(0, _Version(ts, vid, etag, size, ctype))
        self.bytes_used -= size
        del self.names[bisect.bisect_left(self.names, name)]

    def _drop_null_version(self, name):
        """Remove an older ``null`` version of ``name`` for good, if there is one (lock held)."""
        older = self.versions.get(name)
        if not older:
            return
        for i, v in enumerate(older):
            if v.version_id is None:
                unlink_if_exists(self.version_path(name, None))
                del older[i]
                if not older:
                    del self.versions[name]
                return

    def _promote(self, name):
        """After the current version went away: the newest older one (not a marker) becomes current."""
        older = self.versions.get(name)
        if not older or older[0].marker or name in self.entries:
            return
        v = older.pop(0)
        if not older:
            del self.versions[name]
        os.rename(self.version_path(name, v.version_id), self.object_path(name))
        self.entries[name] = (v.etag, v.size, v.content_type, v.timestamp, v.version_id)
        bisect.insort(self.names, name)
        self.bytes_used += v.size

    def commit(self, tmp, info):
        """Rename a finished temp file into place and index it (worker thread)."""
        name = info.name
        with self.lock:
            if self.deleted:
                os.unlink(tmp)
                raise NotFound(f"container {self.name!r} was deleted during the upload")
            old = self.entries.get(name)
            if self.versioning is not None or name in self.versions:
                if info.version_id is None:
                    self._drop_null_version(name)       # the null version is replaced, others kept
                if old is not None and (info.version_id is not None or old[4] is not None):
                    self._archive_current(name)
                    old = None
            os.replace(tmp, self.object_path(name))
            self.renames += 1
            number = self.renames
            if old is None:
                bisect.insort(self.names, name)
            else:
                self.bytes_used -= old[1]
            self.entries[name] = (info.etag, info.size, info.content_type, info.timestamp, info.version_id)
            self.bytes_used += info.size
            self.last_modified = max(self.last_modified, info.timestamp)
        return number

    def remove(self, name, version_id=None, any_version=False, marker_id=None):
        """Delete (worker thread): see :meth:`Store.delete_object`; returns ``(version id, is marker)``."""
        with self.lock:
            if any_version:
                return self._remove_version(name, version_id)
            if self.versioning is None and name not in self.versions:
                if name not in self.entries:
                    raise NotFound(f"object {name!r} not found in container {self.name!r}")
                unlink_if_exists(self.object_path(name))
                self.bytes_used -= self.entries.pop(name)[1]
                del self.names[bisect.bisect_left(self.names, name)]
                self.last_modified = max(self.last_modified, time.time())
                return None, False
            # versioned: the current version is kept as an older one and a delete marker is added
            suspended = self.versioning == "Suspended"
            old = self.entries.get(name)
            if old is not None:
                if suspended and old[4] is None:
                    unlink_if_exists(self.object_path(name))
                    self.bytes_used -= self.entries.pop(name)[1]
                    del self.names[bisect.bisect_left(self.names, name)]
                else:
                    self._archive_current(name)
            if suspended:
                self._drop_null_version(name)
            stamp = now()
            marker = ObjectInfo(name, "", 0, "", stamp, version_id=None if suspended else marker_id,
                                delete_marker=True)
            os.makedirs(self.versions_dir, exist_ok=True)
            fsync_write(self.version_path(name, marker.version_id), _trailer_bytes(marker))
            self.versions.setdefault(name, []).insert(0, _Version(stamp, marker.version_id, marker=True))
            self.last_modified = max(self.last_modified, stamp)
            return marker.version_id, True

    def _remove_version(self, name, version_id):
        """Remove one version (or delete marker) for good; returns ``(version id, was a marker)``."""
        current = self.entries.get(name)
        if current is not None and current[4] == version_id:
            unlink_if_exists(self.object_path(name))
            self.bytes_used -= self.entries.pop(name)[1]
            del self.names[bisect.bisect_left(self.names, name)]
            self._promote(name)
            self.last_modified = max(self.last_modified, time.time())
            return version_id, False
        older = self.versions.get(name, [])
        for i, v in enumerate(older):
            if v.version_id == version_id:
                unlink_if_exists(self.version_path(name, version_id))
                del older[i]
                if not older:
                    del self.versions[name]
                if i == 0 and current is None:
                    self._promote(name)     # the latest delete marker went: the object is back
                self.last_modified = max(self.last_modified, time.time())
                return version_id, v.marker
        raise NoSuchVersion(f"object {name!r} in container {self.name!r} has no version "
                            f"{version_id or NULL}")

    def locate(self, name, version_id=None, addressed=False):
        """The file holding a version of ``name``: the latest, or the one ``version_id`` names.

        Raises:
            NotFound: no such object; DeleteMarker: that version (or the latest) is a
            delete marker; NoSuchVersion: no version with that id.
        """
        current = self.entries.get(name)
        if not addressed:
            if current is not None:
                return self.object_path(name)
            older = self.versions.get(name)
            if older and older[0].marker:
                raise DeleteMarker(f"object {name!r} in container {self.name!r} was deleted (its latest "
                                   "version is a delete marker)", older[0].version_id,
                                   timestamp=older[0].timestamp)
            raise NotFound(f"object {name!r} not found in container {self.name!r}")
        if current is not None and current[4] == version_id:
            return self.object_path(name)
        for v in self.versions.get(name, ()):
            if v.version_id == version_id:
                if v.marker:
                    raise DeleteMarker(f"version {version_id or NULL} of {name!r} is a delete marker",
                                       version_id, addressed=True, timestamp=v.timestamp)
                return self.version_path(name, version_id)
        if current is None and name not in self.versions:
            raise NotFound(f"object {name!r} not found in container {self.name!r}")
        raise NoSuchVersion(f"object {name!r} in container {self.name!r} has no version {version_id or NULL}")

    def rewrite_target(self, name, version_id, addressed):
        """``(path, is current)`` of the file a metadata rewrite replaces (lock held by caller)."""
        path = self.locate(name, version_id, addressed)
        return path, path == self.object_path(name)

class _Account:
    def __init__(self, name, path, meta):
        self.name = name
        self.path = path
        self.timestamp = meta["timestamp"]
        self.metadata = meta.get("metadata", {})
        self.config = meta.get("config", {})
        self.containers = None          # name -> _Container, loaded on first use
        self.lock = threading.Lock()


class ObjectReader:
    """An open object being read: ``info`` plus its bytes as an async iterator.

    Use ``async for chunk in reader`` or ``await reader.read()``; ``offset`` and
    ``length`` are the byte range being read.  Close it (or use ``async with``)
    when not read to the end.
    """

    def __init__(self, store, fd, info, offset, length):
        self._store = store
        self._fd = fd
        self.info = info
        self.offset = offset
        self.length = length
        self._pos = offset
        self._end = offset + length

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._fd is None or self._pos >= self._end:
            self.close()
            raise StopAsyncIteration
        n = min(CHUNK, self._end - self._pos)
        if n <= INLINE_READ:
            data = os.pread(self._fd, n, self._pos)
        else:
            data = await self._store._run(os.pread, self._fd, n, self._pos)
        if not data:
            self.close()
            raise StopAsyncIteration
        self._pos += len(data)
        return data

    def restrict(self, offset, length):
        """Read only ``length`` bytes from ``offset`` (before reading starts), e.g. for a Range request.

        Raises:
            InvalidInput: the range is not inside the object.
        """
        if offset < 0 or length < 0 or offset + length > self.info.size:
            raise InvalidInput(f"range {offset}+{length} is outside an object of {self.info.size} bytes")
        self.offset = self._pos = offset
        self.length = length
        self._end = offset + length

    async def read_at(self, offset, length):
        """Read ``length`` bytes from ``offset`` of the object (inside it), whatever was read before.

        For answers made of several pieces of one object (multipart/byteranges).
        """
        if offset < 0 or length < 0 or offset + length > self.info.size:
            raise InvalidInput(f"range {offset}+{length} is outside an object of {self.info.size} bytes")
        if length <= INLINE_READ:
            return os.pread(self._fd, length, offset)
        return await self._store._run(os.pread, self._fd, length, offset)

    async def read(self):
        """Read the rest of the range into one bytes object."""
        return b"".join([chunk async for chunk in self])

    def close(self):
        """Release the file; safe to call twice."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        self.close()


class Store:
    """A directory of accounts, containers and objects; the shared core of the Swift and S3 views.

    Args:
        root: directory that holds the store (created if missing).
        workers: threads for blocking disk I/O of large objects, metadata and
            listings; more threads let more of them wait on the disk at once.
        max_object_size: the largest object accepted, in bytes.
        sync_dirs: also make the rename durable before acknowledging (directory fsync,
            or a second flush per group commit), so that it survives a power failure.
            Off by default: temp file + flush + rename already survives any crash of the
            server process.
        native: write small uploads with the C group commit (None: if a compiler can
            build it; False: in Python).  See :mod:`cloudlab.object_store.commit`.
    """

    def __init__(self, root, workers=16, max_object_size=MAX_FILE_SIZE, sync_dirs=False, native=None):
        self.root = os.path.abspath(os.fspath(root))
        self.sync_dirs = sync_dirs
        self.max_object_size = max_object_size
        self._accounts_dir = os.path.join(self.root, "accounts")
        os.makedirs(self._accounts_dir, exist_ok=True)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cloudlab-objstore")
        self._committer = GroupCommitter(self.root, sync_dirs=sync_dirs, native=native)
        self._accounts = {}
        self._all_loaded = False        # every account on disk is in _accounts (see container_owner)
        self._lock = threading.Lock()

    def close(self):
        """Commit the uploads in flight, then stop the I/O threads."""
        self._committer.close()
        self._pool.shutdown(wait=True)

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # ---- accounts ------------------------------------------------------------------

    def _account(self, account):
        """The _Account for a name, created on first use (Swift's account autocreate)."""
        acc = self._accounts.get(account)
        if acc is not None:
            return acc
        check_name("account", account, MAX_ACCOUNT_NAME)
        with self._lock:
            acc = self._accounts.get(account)
            if acc is None:
                path = os.path.join(self._accounts_dir, _hash(account))
                meta_path = os.path.join(path, "account.json")
                try:
                    with open(meta_path, "rb") as f:
                        meta = json.load(f)
                except (FileNotFoundError, ValueError):
                    meta = {"name": account, "timestamp": time.time(), "metadata": {}, "config": {}}
                    os.makedirs(os.path.join(path, "containers"), exist_ok=True)
                    fsync_write(meta_path, json.dumps(meta).encode())
                acc = self._accounts[account] = _Account(account, path, meta)
        return acc

    def _containers(self, acc):
        """Load (once) the account's containers from disk."""
        with acc.lock:
            if acc.containers is None:
                containers = {}
                cdir = os.path.join(acc.path, "containers")
                for entry in os.scandir(cdir):
                    try:
                        with open(os.path.join(entry.path, "container.json"), "rb") as f:
                            meta = json.load(f)
                    except (FileNotFoundError, NotADirectoryError, ValueError):
                        continue        # half-created or half-deleted container: not visible
                    if entry.name == _hash(meta["name"]):
                        containers[meta["name"]] = _Container(meta["name"], entry.path, meta)
                acc.containers = containers
            return acc.containers

    def _load_all(self):
        """Load every account on disk and its containers (once): S3 names buckets globally."""
        if self._all_loaded:
            return
        for entry in os.scandir(self._accounts_dir):
            try:
                with open(os.path.join(entry.path, "account.json"), "rb") as f:
                    name = json.load(f)["name"]
            except (OSError, ValueError, KeyError):
                continue
            if entry.name == _hash(name):
                self._containers(self._account(name))
        self._all_loaded = True

    async def container_owner(self, container):
        """The account holding a container of this name, or None; the oldest one if several do.

        S3 bucket names are global while Swift's container names are per account, so
        a bucket named by an anonymous request (or by another account) is looked up
        across every account.
        """
        await self._run(self._load_all)
        found = []
        for acc in list(self._accounts.values()):
            c = (acc.containers or {}).get(container)
            if c is not None:
                found.append((c.timestamp, acc.name))
        return min(found)[1] if found else None

    def _write_account_meta(self, acc):
        fsync_write(os.path.join(acc.path, "account.json"),
                     json.dumps({"name": acc.name, "timestamp": acc.timestamp,
                                 "metadata": acc.metadata, "config": acc.config}).encode())

    async def account_info(self, account):
        """Metadata and usage of an account (created empty on first use).

        Raises:
            InvalidInput: the account name is not valid.
        """
        acc = await self._run(self._account, account)
        containers = await self._run(self._containers, acc)
        count = nbytes = 0
        for c in list(containers.values()):
            if not c.loaded:
                await self._run(c.load)
            count += len(c.entries)
            nbytes += c.bytes_used
        return AccountInfo(account, acc.timestamp, dict(acc.metadata), len(containers), count, nbytes,
                           dict(acc.config))

    async def account_config(self, account):
        """The configuration of an account (e.g. Swift's account ACL), without counting its usage."""
        acc = self._accounts.get(account) or await self._run(self._account, account)
        return dict(acc.config)

    async def update_account_config(self, account, changes):
        """Merge ``changes`` into the account's configuration; a value of None removes the key."""
        acc = await self._run(self._account, account)

        def update():
            with acc.lock:
                acc.config = _merge_config(acc.config, changes)
                self._write_account_meta(acc)
        await self._run(update)

    async def update_account_metadata(self, account, metadata):
        """Merge ``metadata`` into the account's; a key whose value is "" is removed."""
        acc = await self._run(self._account, account)

        def update():
            with acc.lock:
                acc.metadata = _merge(acc.metadata, metadata)
                self._write_account_meta(acc)
        await self._run(update)

    async def list_containers(self, account, prefix="", delimiter=None, marker=None,
                              end_marker=None, limit=10000, reverse=False, subdirs=True):
        """List an account's containers in name order.

        Returns a list of :class:`ListEntry` with ``count`` (objects), ``size``
        (bytes) and ``timestamp`` (last modified) set, or common prefixes when
        ``delimiter`` is given (``subdirs=False`` leaves them out, as :meth:`list_objects`).
        """
        acc = await self._run(self._account, account)
        containers = await self._run(self._containers, acc)
        names = sorted(containers)
        out = []
        select = _select_reverse if reverse else _select
        for name in select(names, prefix, delimiter, marker, end_marker, limit, subdirs):
            if isinstance(name, tuple):
                out.append(ListEntry(name[0], subdir=True))
                continue
            c = containers[name]
            if not c.loaded:
                await self._run(c.load)
            out.append(ListEntry(name, size=c.bytes_used, count=len(c.entries),
                                 timestamp=c.last_modified))
        return out

    # ---- containers ----------------------------------------------------------------

    async def _container(self, account, container):
        check_name("container", container, MAX_CONTAINER_NAME)
        # the common case (account and container already in memory) costs no thread hop
        acc = self._accounts.get(account) or await self._run(self._account, account)
        containers = acc.containers if acc.containers is not None else await self._run(self._containers, acc)
        c = containers.get(container)
        if c is None:
            raise NotFound(f"container {container!r} not found in account {account!r}",
                           fix="create it first (Swift: PUT the container; S3: CreateBucket)")
        if not c.loaded:
            await self._run(c.load)
        return c

    async def create_container(self, account, container, metadata=None, config=None):
        """Create a container; if it exists, merge ``metadata`` into it.

        ``config`` (e.g. ``{"acl": ...}``) is the new container's configuration; it is
        not applied to a container that exists.

        Returns True when the container was created, False when it existed.
        Raises:
            InvalidInput: the account or container name is not valid.
        """
        check_name("container", container, MAX_CONTAINER_NAME)
        acc = await self._run(self._account, account)
        await self._run(self._containers, acc)

        def create():
            with acc.lock:
                existing = acc.containers.get(container)
                if existing is not None:
                    if metadata:
                        existing.metadata = _merge(existing.metadata, metadata)
                        self._write_container_meta(existing)
                    return False
                path = os.path.join(acc.path, "containers", _hash(container))
                os.makedirs(os.path.join(path, "objects"), exist_ok=True)
                meta = {"name": container, "timestamp": time.time(),
                        "metadata": {k: v for k, v in _lower_keys(metadata).items() if v != ""},
                        "config": dict(config or {})}
                # container.json is what makes the container exist; it is written last
                fsync_write(os.path.join(path, "container.json"), json.dumps(meta).encode())
                c = _Container(container, path, meta)
                c.loaded = True
                acc.containers[container] = c
                return True
        return await self._run(create)

    def _write_container_meta(self, c):
        fsync_write(os.path.join(c.path, "container.json"),
                     json.dumps({"name": c.name, "timestamp": c.timestamp, "modified": c.last_modified,
                                 "metadata": c.metadata, "config": c.config}).encode())

    async def container_info(self, account, container):
        """Metadata and usage of a container.

        Raises:
            NotFound: no such container.
        """
        c = await self._container(account, container)
        return ContainerInfo(c.name, c.timestamp, dict(c.metadata), len(c.entries),
                             c.bytes_used, c.last_modified, dict(c.config))

    async def update_container_metadata(self, account, container, metadata):
        """Merge ``metadata`` into the container's; a key whose value is "" is removed.

        Raises:
            NotFound: no such container.
        """
        c = await self._container(account, container)

        def update():
            with c.lock:
                c.metadata = _merge(c.metadata, metadata)
                c.last_modified = max(c.last_modified, now())    # a POST moves Last-Modified, as in Swift
                self._write_container_meta(c)
        await self._run(update)

    async def update_container_config(self, account, container, changes):
        """Merge ``changes`` into a container's configuration; a value of None removes the key.

        ``versioning`` may only be "Enabled" or "Suspended" (once enabled, versioning
        can be suspended but never switched off, as in S3).
        Raises:
            NotFound: no such container.
            InvalidInput: an unknown versioning state, or switching versioning off.
        """
        c = await self._container(account, container)
        if "versioning" in changes:
            state = changes["versioning"]
            if state not in VERSIONING_STATES and not (state is None and c.versioning is None):
                raise InvalidInput(f"versioning can be {' or '.join(VERSIONING_STATES)}, not {state!r}",
                                   fix="enable it, or suspend it once enabled")

        def update():
            with c.lock:
                if changes.get("versioning"):
                    os.makedirs(c.versions_dir, exist_ok=True)
                c.config = _merge_config(c.config, changes)
                self._write_container_meta(c)
        await self._run(update)

    async def delete_container(self, account, container):
        """Delete an empty container.

        Raises:
            NotFound: no such container.
            ContainerNotEmpty: it still holds objects.
        """
        c = await self._container(account, container)
        acc = self._accounts[account]

        def delete():
            with acc.lock, c.lock:
                if c.entries or c.versions:
                    held = f"{len(c.entries)} object(s)" + (
                        f" and older versions of {len(c.versions)}" if c.versions else "")
                    raise ContainerNotEmpty(f"container {container!r} holds {held}",
                                            fix="delete its objects (and their versions) first")
                if c.writers:
                    raise ContainerBusy(f"container {container!r} has {c.writers} write(s) under way",
                                        fix="try again once the uploads into it are over")
                # without container.json the directory is invisible, so this is the commit point
                os.unlink(os.path.join(c.path, "container.json"))
                c.deleted = True
                acc.containers.pop(container, None)
            # nobody writes here any more (begin_write refuses): only temp files of crashed
            # uploads can remain; a failure to remove them leaves an invisible folder, no error
            try:
                for folder in (c.objects_dir, c.versions_dir):
                    if os.path.isdir(folder):
                        for entry in os.scandir(folder):
                            os.unlink(entry.path)
                        os.rmdir(folder)
                os.rmdir(c.path)
            except OSError as exc:
                log.warning("container %r deleted, but its folder stays: %s", container, exc)
        await self._run(delete)

    # ---- objects -------------------------------------------------------------------

    async def put_object(self, account, container, name, body, content_type="application/octet-stream",
                         metadata=None, headers=None, expected_etag=None, etag=None, timestamp=None,
                         system=None):
        """Store an object from ``body``; visible only once complete (temp file, fsync, rename).

        Args:
            account, container, name: where to store it; the container must exist.
            body: ``bytes``, or an async iterable of ``bytes`` chunks (streamed to
                disk, so an object of any size takes little memory).
            content_type: MIME type kept with the object.
            metadata: user metadata (keys are stored lower-case).
            headers: other HTTP headers to keep (lower-case names), e.g. content-disposition.
            expected_etag: MD5 hex the client announced; a mismatch discards the upload.
            etag: ETag to record instead of the body's MD5 (S3 multipart uploads).
            timestamp: write time to record (defaults to now).
            system: what an API keeps with the object besides metadata (S3 ACL, tags).
        Returns:
            :class:`ObjectInfo` of the stored object (with its ``version_id`` in a
            container with versioning enabled).
        Raises:
            NotFound: no such container.
            InvalidInput: bad object name.
            EtagMismatch: ``expected_etag`` differs from the body's MD5.
            TooLarge: the body exceeds ``max_object_size``.
        """
        check_name("object", name, MAX_OBJECT_NAME)
        c = await self._container(account, container)
        c.begin_write()
        try:
            return await self._put(c, name, body, content_type, metadata, headers, expected_etag, etag,
                                   timestamp, system)
        finally:
            c.end_write()

    async def _put(self, c, name, body, content_type, metadata, headers, expected_etag, etag, timestamp,
                   system):
        md5 = hashlib.md5()
        tmp = os.path.join(c.objects_dir, tmp_name())
        stamp = timestamp or now()
        info = ObjectInfo(name, "", 0, content_type or "application/octet-stream",
                          stamp, _lower_keys(metadata), _lower_keys(headers),
                          version_id=new_version_id(stamp) if c.versioning == "Enabled" else None,
                          system=dict(system or {}))
        if isinstance(body, (bytes, bytearray, memoryview)):
            if len(body) > self.max_object_size:
                raise TooLarge(f"object is {len(body)} bytes; the limit is {self.max_object_size}")
            data = bytes(body)
            info.size = len(data)
            # hashing a few KiB costs less than a thread hop; a larger body is hashed in a
            # thread (hashlib lets go of the GIL) so that the event loop keeps serving
            if len(data) <= INLINE_HASH:
                md5.update(data)
            else:
                await self._run(md5.update, data)
            self._finish(info, md5, expected_etag, etag)
            await self._committer.write(c, tmp, data + _trailer_bytes(info), info)
            return info
        fd = await self._run(os.open, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            buf, buffered = [], 0
            async for chunk in body:
                if not chunk:
                    continue
                info.size += len(chunk)
                if info.size > self.max_object_size:
                    raise TooLarge(f"object is larger than the limit of {self.max_object_size} bytes")
                buf.append(chunk)
                buffered += len(chunk)
                if buffered >= CHUNK:
                    await self._run(_write_hashed, fd, md5, b"".join(buf))
                    buf, buffered = [], 0
            if buf:
                await self._run(_write_hashed, fd, md5, b"".join(buf))
            self._finish(info, md5, expected_etag, etag)
            sealing, fd = fd, None      # _seal owns (and closes) the file from here on
            await self._run(self._seal, sealing, c, tmp, info)
        except BaseException:
            if fd is not None:
                os.close(fd)
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
            raise
        return info

    @staticmethod
    def _finish(info, md5, expected_etag, etag):
        digest = md5.hexdigest()
        if expected_etag is not None and expected_etag.strip('"').lower() != digest:
            raise EtagMismatch(f"the ETag sent ({expected_etag}) is not the MD5 of the body received ({digest})",
                               fix="send the MD5 hex digest of the exact bytes uploaded, or no ETag")
        info.etag = etag or digest

    def _durable(self, c, number):
        if self.sync_dirs:
            c.sync_dir(number)

    def _seal(self, fd, c, tmp, info):
        """Append the trailer, fsync, close and commit; closes ``fd`` and removes ``tmp`` on failure."""
        try:
            write_all(fd, _trailer_bytes(info))
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        self._durable(c, c.commit(tmp, info))

    @staticmethod
    def _version_arg(version):
        """(version id, addressed) from an API's version argument: None latest, "null" the null version."""
        if version is None:
            return None, False
        return (None if version == NULL else version), True

    def _expired(self, c, info):
        """True when the object's X-Delete-At has passed (Swift's object expiry); it is then removed."""
        at = info.headers.get("x-delete-at")
        if at is None:
            return False
        try:
            expired = float(at) <= time.time()
        except ValueError:
            return False
        if expired and not info.version_id and info.name in c.entries:
            self._pool.submit(_remove_quietly, c, info.name)
        return expired

    def _open_version(self, c, name, version):
        """(fd, ObjectInfo) of a version of ``name`` (see :meth:`get_object`)."""
        version_id, addressed = self._version_arg(version)
        with c.lock:
            path = c.locate(name, version_id, addressed)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise NotFound(f"object {name!r} not found in container {c.name!r}") from None
        try:
            info = _info(_read_trailer(fd)[0])
        except BaseException:
            os.close(fd)
            raise
        if self._expired(c, info):
            os.close(fd)
            raise NotFound(f"object {name!r} in container {c.name!r} has expired (X-Delete-At)")
        return fd, info

    async def head_object(self, account, container, name, version=None):
        """Everything stored about an object except its bytes.

        Args:
            version: None for the latest version, or a version id ("null" for the null version).
        Raises:
            NotFound: no such container or object (DeleteMarker: the latest version, or
                the version asked for, is a delete marker; NoSuchVersion: no such version).
        """
        check_name("object", name, MAX_OBJECT_NAME)
        c = await self._container(account, container)
        fd, info = self._open_version(c, name, version)
        os.close(fd)
        return info

    async def get_object(self, account, container, name, offset=0, length=None, version=None):
        """Open an object for reading, whole or a byte range.

        Args:
            offset: first byte to read.
            length: number of bytes (None: to the end); clipped to the object's size.
            version: None for the latest version, or a version id ("null" for the null version).
        Returns:
            an :class:`ObjectReader` (``.info``, async iterator of chunks).
        Raises:
            NotFound: no such container or object (DeleteMarker, NoSuchVersion as for head_object).
            InvalidInput: ``offset`` is negative or past the end of a non-empty object.
        """
        check_name("object", name, MAX_OBJECT_NAME)
        c = await self._container(account, container)
        fd, info = self._open_version(c, name, version)
        try:
            if offset < 0 or (offset >= info.size and info.size > 0):
                raise InvalidInput(f"range starts at byte {offset}, outside an object of {info.size} bytes")
            end = info.size if length is None else min(info.size, offset + max(0, length))
        except BaseException:
            os.close(fd)
            raise
        return ObjectReader(self, fd, info, offset, max(0, end - offset))

    async def rewrite_object(self, account, container, name, version=None, metadata=None, content_type=None,
                             headers=None, system=None, touch=True):
        """Replace what is kept with an object (its bytes are copied into a new file, atomically).

        Args:
            version: None for the latest version, or a version id.
            metadata: the new user metadata (replaces all of the old), or None to keep it.
            content_type: new content type, or None to keep it.
            headers: new kept headers, or None to keep them.
            system: new API data (S3 ACL, tags), or None to keep it.
            touch: give the object a new timestamp (Swift's POST does; S3's tagging does not).
        Returns:
            the new :class:`ObjectInfo`.
        Raises:
            NotFound: no such container, object or version.
        """
        check_name("object", name, MAX_OBJECT_NAME)
        c = await self._container(account, container)
        version_id, addressed = self._version_arg(version)
        with c.lock:
            c.locate(name, version_id, addressed)
        c.begin_write()

        def rewrite():
            # the bytes are copied without the lock (a large object takes a while); the
            # swap happens under it, and only if the file is still the one copied
            for _ in range(5):
                with c.lock:
                    path, current = c.rewrite_target(name, version_id, addressed)
                src = os.open(path, os.O_RDONLY)
                try:
                    inode = os.fstat(src).st_ino
                    old, size = _read_trailer(src)
                    info = _info(old)
                    if metadata is not None:
                        info.metadata = _lower_keys(metadata)
                    if content_type:
                        info.content_type = content_type
                    if headers is not None:
                        info.headers = _lower_keys(headers)
                    if system is not None:
                        info.system = dict(system)
                    if touch and current:
                        info.timestamp = now()
                    tmp = os.path.join(os.path.dirname(path), tmp_name())
                    dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                    try:
                        _copy_range(src, dst, size)
                        write_all(dst, _trailer_bytes(info))
                        os.fsync(dst)
                    finally:
                        os.close(dst)
                finally:
                    os.close(src)
                with c.lock:
                    try:
                        same = c.rewrite_target(name, version_id, addressed)[0] == path and \
                            os.stat(path).st_ino == inode
                    except (NotFound, FileNotFoundError):
                        unlink_if_exists(tmp)
                        raise
                    if not same:
                        unlink_if_exists(tmp)       # replaced meanwhile: start again from the new one
                        continue
                    os.replace(tmp, path)
                    c.renames += 1
                    number = c.renames
                    if current:
                        etag, size, ctype, _, vid = c.entries[name]
                        c.entries[name] = (etag, size, info.content_type, info.timestamp, vid)
                        c.last_modified = max(c.last_modified, info.timestamp)
                self._durable(c, number)
                return info
            raise Conflict(f"object {name!r} kept changing while its metadata was being replaced",
                           fix="try again")

        try:
            return await self._run(rewrite)
        except FileNotFoundError:
            raise NotFound(f"object {name!r} not found in container {container!r}") from None
        finally:
            c.end_write()

    async def set_object_metadata(self, account, container, name, metadata, content_type=None, headers=None):
        """Replace an object's user metadata (Swift POST); the bytes are copied into a new file atomically.

        Args:
            metadata: the new user metadata (replaces all of the old).
            content_type: new content type, or None to keep it.
            headers: new kept headers, or None to keep them.
        Raises:
            NotFound: no such container or object.
        """
        return await self.rewrite_object(account, container, name, metadata=metadata or {},
                                         content_type=content_type, headers=headers)

    async def copy_object(self, src_account, src_container, src_name, account, container, name,
                          metadata=None, content_type=None, headers=None, version=None, offset=0,
                          length=None, system=None):
        """Copy an object (Swift COPY / X-Copy-From, S3 CopyObject); the copy gets a new timestamp.

        Args:
            metadata: user metadata of the copy; None keeps the source's.
            content_type, headers: None keeps the source's.
            version: the source's version (None: the latest).
            offset, length: copy only this byte range of the source (Swift's Range on a copy).
            system: API data of the copy (S3 ACL, tags); None: none.
        Raises:
            NotFound: no such source object or destination container.
        """
        reader = await self.get_object(src_account, src_container, src_name, offset=offset, length=length,
                                       version=version)
        async with reader:
            src = reader.info
            whole = reader.length == src.size
            return await self.put_object(
                account, container, name, reader,
                content_type=content_type or src.content_type,
                metadata=src.metadata if metadata is None else metadata,
                headers=src.headers if headers is None else headers,
                etag=src.etag if whole and src.etag and "-" in src.etag else None, system=system)

    async def delete_object(self, account, container, name, version=None):
        """Delete an object, or one version of it.

        Without ``version``: in a container that never had versioning the object is
        removed; with versioning the current version is kept as an older one and a
        delete marker becomes the latest (Suspended: the null version is removed and
        the marker is the null version).  With ``version`` that version (or delete
        marker) is removed for good.
        Returns:
            ``(version id, delete marker)``: the id of the marker made, or of the version
            removed ("null" for the null version; None without versioning), and whether
            it is a delete marker.
        Raises:
            NotFound: no such container, or (unversioned) no such object;
                NoSuchVersion: no version with that id.
        """
        check_name("object", name, MAX_OBJECT_NAME)
        c = await self._container(account, container)
        version_id, addressed = self._version_arg(version)
        if not addressed and c.versioning is None and name not in c.versions and name not in c.entries:
            raise NotFound(f"object {name!r} not found in container {container!r}")
        marker_id = new_version_id(time.time())
        vid, marker = await self._run(c.remove, name, version_id, addressed, marker_id)
        if vid is None and (addressed or c.versioning is not None):
            vid = NULL
        return vid, marker

    async def list_objects(self, account, container, prefix="", delimiter=None, marker=None,
                           end_marker=None, limit=10000, reverse=False, subdirs=True):
        """List a container's objects (their latest versions) in name (code point) order.

        Args:
            prefix: only names starting with it.
            delimiter: names with it after the prefix are rolled up into one common
                prefix entry (``subdir``), e.g. ``photos/`` for delimiter "/".
            marker: only names (and prefixes) after it; a marker that is itself a
                common prefix skips everything under it.
            end_marker: only names before it.
            limit: at most this many entries (objects plus prefixes).
            reverse: in descending name order (Swift's ``reverse=true``); ``marker`` is
                then an upper bound and ``end_marker`` a lower one.
            subdirs: False leaves the common prefixes out instead of listing them (and
                they do not count against ``limit``): Swift's ``path`` query lists only
                the objects directly inside a pseudo-directory.
        Returns:
            a list of :class:`ListEntry`.
        Raises:
            NotFound: no such container.
        """
        c = await self._container(account, container)
        select = _select_reverse if reverse else _select
        with c.lock:
            out = []
            for name in select(c.names, prefix, delimiter, marker, end_marker, limit, subdirs):
                if isinstance(name, tuple):
                    out.append(ListEntry(name[0], subdir=True))
                else:
                    etag, size, ctype, ts, vid = c.entries[name]
                    out.append(ListEntry(name, etag=etag, size=size, content_type=ctype, timestamp=ts,
                                         version_id=vid))
            return out

    async def list_versions(self, account, container, prefix="", delimiter=None, key_marker=None,
                            version_marker=None, limit=1000):
        """List every version and delete marker of a container's objects: names in order, newest first.

        Args:
            prefix, delimiter: as for :meth:`list_objects` (a common prefix counts as one entry).
            key_marker: start after this name, or, with ``version_marker``, after that
                version of this name.
            version_marker: a version id of ``key_marker`` ("null" for the null version).
            limit: at most this many entries.
        Returns:
            a list of :class:`ListEntry` with ``version_id`` ("null" for the null
            version), ``is_latest`` and ``delete_marker`` set.
        Raises:
            NotFound: no such container; NoSuchVersion: ``version_marker`` is not a
                version of ``key_marker``.
        """
        c = await self._container(account, container)
        with c.lock:
            names = sorted(set(c.names) | set(c.versions))
            out = []
            if key_marker and version_marker:
                start = bisect.bisect_left(names, key_marker)
            elif key_marker:
                start = bisect.bisect_right(names, key_marker)
            else:
                start = 0
            for item in _select(names[start:], prefix, delimiter, None, None, len(names) + 1):
                if len(out) >= limit:
                    break
                if isinstance(item, tuple):
                    if key_marker and item[0] == key_marker:
                        continue
                    out.append(ListEntry(item[0], subdir=True))
                    continue
                chain = []
                current = c.entries.get(item)
                if current is not None:
                    chain.append(ListEntry(item, etag=current[0], size=current[1], content_type=current[2],
                                           timestamp=current[3], version_id=current[4] or NULL))
                for v in c.versions.get(item, ()):
                    chain.append(ListEntry(item, etag=v.etag, size=v.size, content_type=v.content_type,
                                           timestamp=v.timestamp, version_id=v.version_id or NULL,
                                           delete_marker=v.marker, is_latest=False))
                if chain:
                    chain[0].is_latest = True
                if item == key_marker and version_marker:
                    ids = [e.version_id for e in chain]
                    if version_marker not in ids:
                        raise NoSuchVersion(f"{key_marker!r} has no version {version_marker}")
                    chain = chain[ids.index(version_marker) + 1:]
                for e in chain:
                    if len(out) >= limit:
                        break
                    out.append(e)
            return out



def _remove_quietly(c, name):
    """Remove an expired object in the background; a concurrent change simply wins."""
    try:
        c.remove(name)
    except (NotFound, OSError):
        pass


def _merge_config(old, changes):
    merged = dict(old)
    for k, v in changes.items():
        if v is None:
            merged.pop(k, None)
        else:
            merged[k] = v
    return merged


def _merge(old, new):
    merged = dict(old)
    for k, v in _lower_keys(new).items():
        if v == "":
            merged.pop(k, None)
        else:
            merged[k] = v
    return merged


def _write_hashed(fd, md5, data):
    # hashlib releases the GIL on large buffers, so hashing here keeps the loop free
    md5.update(data)
    write_all(fd, data)


def _copy_range(src, dst, size):
    offset = 0
    while offset < size:
        try:
            n = os.copy_file_range(src, dst, size - offset, offset)
        except OSError:
            n = 0
        if n <= 0:
            data = os.pread(src, min(CHUNK, size - offset), offset)
            if not data:
                raise ValueError("source object shorter than its trailer says")
            os.write(dst, data)
            n = len(data)
        offset += n


def _select(names, prefix, delimiter, marker, end_marker, limit, subdirs=True):
    """Yield names (str) and common prefixes (1-tuples) of a sorted list, as listings define them.

    With ``subdirs`` False (Swift's ``path``) the names under a common prefix are skipped
    without yielding it, and so is a name equal to the prefix (the pseudo-directory itself).
    """
    prefix = prefix or ""
    start = bisect.bisect_left(names, prefix)
    if marker:
        # (a common prefix is longer than the prefix: a marker equal to the prefix is not one)
        if delimiter and marker.startswith(prefix) and marker.endswith(delimiter) \
                and len(marker) >= len(prefix) + len(delimiter) \
                and delimiter not in marker[len(prefix):-len(delimiter)]:
            # the marker is a common prefix already returned: skip everything under it
            start = _skip(names, max(start, bisect.bisect_left(names, marker)), marker)
        else:
            start = max(start, bisect.bisect_right(names, marker))
    count = 0
    i = start
    n = len(names)
    while i < n and count < limit:
        name = names[i]
        if not name.startswith(prefix):
            break
        if end_marker and name >= end_marker:
            break
        if not subdirs and name == prefix:
            i += 1
            continue
        if delimiter:
            pos = name.find(delimiter, len(prefix))
            if pos >= 0:
                common = name[:pos + len(delimiter)]
                if common != marker and subdirs:    # equal: the last entry of the previous page
                    yield (common,)
                    count += 1
                # skip every name under this common prefix
                i = _skip(names, i, common)
                continue
        yield name
        count += 1
        i += 1


def _skip(names, i, common):
    """Index of the first name at or after ``i`` that does not start with ``common``."""
    if common[-1] < "\U0010ffff":
        # every name under the prefix sorts below prefix-with-last-character-bumped
        return max(i, bisect.bisect_left(names, common[:-1] + chr(ord(common[-1]) + 1)))
    while i < len(names) and names[i].startswith(common):
        i += 1
    return i


def _select_reverse(names, prefix, delimiter, marker, end_marker, limit, subdirs=True):
    """:func:`_select` in descending order: names below ``marker`` and above ``end_marker``."""
    prefix = prefix or ""
    hi = _skip(names, bisect.bisect_left(names, prefix), prefix) if prefix else len(names)
    if marker:
        hi = min(hi, bisect.bisect_left(names, marker))
    i, count = hi - 1, 0
    while i >= 0 and count < limit:
        name = names[i]
        if not name.startswith(prefix) or (end_marker and name <= end_marker):
            break
        if not subdirs and name == prefix:
            i -= 1
            continue
        if delimiter:
            pos = name.find(delimiter, len(prefix))
            if pos >= 0:
                common = name[:pos + len(delimiter)]
                if subdirs:
                    yield (common,)
                    count += 1
                # every name under the common prefix sorts just above it: jump below them all
                i = bisect.bisect_left(names, common) - 1
                continue
        yield name
        count += 1
        i -= 1
