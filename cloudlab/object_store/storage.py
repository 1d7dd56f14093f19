"""The object store on disk: "file + metadata", written so that it never lies.

Layout under the store's root (every name is hashed, so no user string ever
becomes part of a path and nothing can reach outside the root)::

    accounts/<sha256(account)[:32]>/account.json
    accounts/<..>/containers/<sha256(container)[:32]>/container.json
    accounts/<..>/containers/<..>/objects/<sha256(object name)>.obj

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

Each container keeps a sorted in-memory index of its objects (name, ETag, size,
content type, timestamp), loaded from the trailers on first use; listings with
prefix/delimiter/marker are bisections in it.  One process owns a root at a time.

All methods of :class:`Store` that touch the disk are coroutines: blocking I/O
(fsync above all) runs in a thread pool or the group commit's thread, so that one
slow disk write never stalls the event loop, while small reads are done inline where
a thread hop would cost more than the read.  User metadata keys are stored lower-case, so Swift's
``X-Object-Meta-Color`` and S3's ``x-amz-meta-color`` name the same entry.
"""

import asyncio
import bisect
import hashlib
import json
import os
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..errors import Conflict, InvalidInput, NotFound, QuotaExceeded
from .commit import GroupCommitter
from .files import TMP_PREFIX, fsync_dir, fsync_write, tmp_name, write_all

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


class EtagMismatch(InvalidInput):
    """The ETag a client sent does not match the MD5 of the body received (HTTP 422)."""


class TooLarge(QuotaExceeded):
    """The object is larger than the store's maximum object size (HTTP 413)."""


class ContainerNotEmpty(Conflict):
    """A container that still holds objects cannot be deleted (HTTP 409)."""


@dataclass
class ObjectInfo:
    """What the store knows about one object.

    ``metadata`` holds user metadata with lower-case keys; ``headers`` other HTTP
    headers kept with the object (``content-disposition``, ``content-encoding``,
    ``cache-control`` ...); ``timestamp`` is the write time in seconds since the epoch.
    """
    name: str
    etag: str
    size: int
    content_type: str
    timestamp: float
    metadata: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)

    @property
    def last_modified(self):
        """Alias of ``timestamp`` (seconds since the epoch)."""
        return self.timestamp


@dataclass
class ContainerInfo:
    """A container (S3: bucket): name, creation time, metadata and usage."""
    name: str
    timestamp: float
    metadata: dict
    object_count: int
    bytes_used: int
    last_modified: float


@dataclass
class AccountInfo:
    """An account: its metadata and usage summed over its containers."""
    name: str
    timestamp: float
    metadata: dict
    container_count: int
    object_count: int
    bytes_used: int


@dataclass
class ListEntry:
    """One line of a listing: an object (``subdir`` False) or a common prefix (``subdir`` True).

    For a common prefix only ``name`` is set; for a container listing of an
    account, ``size`` is the bytes used and ``count`` the number of objects.
    """
    name: str
    subdir: bool = False
    etag: str = ""
    size: int = 0
    content_type: str = ""
    timestamp: float = 0.0
    count: int = 0

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
                      metadata=meta.get("metadata", {}), headers=meta.get("headers", {}))


def _trailer_bytes(info):
    meta = json.dumps({"name": info.name, "etag": info.etag, "size": info.size,
                       "content_type": info.content_type, "timestamp": info.timestamp,
                       "metadata": info.metadata, "headers": info.headers},
                      ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    return meta + TRAILER.pack(len(meta), MAGIC)


class _Container:
    """In-memory state of one container: metadata and the sorted object index."""

    def __init__(self, name, path, meta):
        self.name = name
        self.path = path
        self.objects_dir = os.path.join(path, "objects")
        self.timestamp = meta["timestamp"]
        self.metadata = meta.get("metadata", {})
        self.lock = threading.Lock()    # guards names/entries/bytes and the rename of objects
        self.loaded = False
        self.deleted = False
        self.names = []                 # sorted object names
        self.entries = {}               # name -> (etag, size, content_type, timestamp)
        self.bytes_used = 0
        self.last_modified = self.timestamp
        self.renames = 0                # renames committed so far (under lock)
        self.synced = 0                 # renames known to be durable (under sync_lock)
        self.sync_lock = threading.Lock()

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
            self.synced = target

    def mark_synced(self, upto):
        """Record that the renames up to number ``upto`` are durable (flushed by a group commit)."""
        with self.sync_lock:
            self.synced = max(self.synced, upto)

    def load(self):
        """Scan the objects directory and build the index (runs in a worker thread)."""
        with self.lock:
            if self.loaded:
                return
            entries = {}
            for entry in os.scandir(self.objects_dir):
                if entry.name.startswith(TMP_PREFIX):
                    # a write that never finished (crash): never visible, so remove it
                    try:
                        os.unlink(entry.path)
                    except FileNotFoundError:
                        pass
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
                if entry.name != _hash(meta["name"], 64) + ".obj":
                    continue
                entries[meta["name"]] = (meta["etag"], size, meta["content_type"], meta["timestamp"])
            self.entries = entries
            self.names = sorted(entries)
            self.bytes_used = sum(e[1] for e in entries.values())
            if entries:
                self.last_modified = max(self.timestamp, max(e[3] for e in entries.values()))
            self.loaded = True

    def object_path(self, name):
        """The file of object ``name``: its SHA-256, never the name itself."""
        return os.path.join(self.objects_dir, _hash(name, 64) + ".obj")

    def commit(self, tmp, info):
        """Rename a finished temp file into place and index it (worker thread)."""
        with self.lock:
            if self.deleted:
                os.unlink(tmp)
                raise NotFound(f"container {self.name!r} was deleted during the upload")
            os.replace(tmp, self.object_path(info.name))
            self.renames += 1
            number = self.renames
            old = self.entries.get(info.name)
            if old is None:
                bisect.insort(self.names, info.name)
            else:
                self.bytes_used -= old[1]
            self.entries[info.name] = (info.etag, info.size, info.content_type, info.timestamp)
            self.bytes_used += info.size
            self.last_modified = max(self.last_modified, info.timestamp)
        return number

    def remove(self, name):
        """Unlink an object and drop it from the index (worker thread)."""
        with self.lock:
            if name not in self.entries:
                raise NotFound(f"object {name!r} not found in container {self.name!r}")
            try:
                os.unlink(self.object_path(name))
            except FileNotFoundError:
                pass
            self.bytes_used -= self.entries.pop(name)[1]
            del self.names[bisect.bisect_left(self.names, name)]
            self.last_modified = max(self.last_modified, time.time())


class _Account:
    def __init__(self, name, path, meta):
        self.name = name
        self.path = path
        self.timestamp = meta["timestamp"]
        self.metadata = meta.get("metadata", {})
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
                    meta = {"name": account, "timestamp": time.time(), "metadata": {}}
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

    def _write_account_meta(self, acc):
        fsync_write(os.path.join(acc.path, "account.json"),
                     json.dumps({"name": acc.name, "timestamp": acc.timestamp,
                                 "metadata": acc.metadata}).encode())

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
        return AccountInfo(account, acc.timestamp, dict(acc.metadata), len(containers), count, nbytes)

    async def update_account_metadata(self, account, metadata):
        """Merge ``metadata`` into the account's; a key whose value is "" is removed."""
        acc = await self._run(self._account, account)

        def update():
            with acc.lock:
                acc.metadata = _merge(acc.metadata, metadata)
                self._write_account_meta(acc)
        await self._run(update)

    async def list_containers(self, account, prefix="", delimiter=None, marker=None,
                              end_marker=None, limit=10000):
        """List an account's containers in name order.

        Returns a list of :class:`ListEntry` with ``count`` (objects), ``size``
        (bytes) and ``timestamp`` (last modified) set, or common prefixes when
        ``delimiter`` is given.
        """
        acc = await self._run(self._account, account)
        containers = await self._run(self._containers, acc)
        names = sorted(containers)
        out = []
        for name in _select(names, prefix, delimiter, marker, end_marker, limit):
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

    async def create_container(self, account, container, metadata=None):
        """Create a container; if it exists, merge ``metadata`` into it.

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
                        "metadata": {k: v for k, v in _lower_keys(metadata).items() if v != ""}}
                # container.json is what makes the container exist; it is written last
                fsync_write(os.path.join(path, "container.json"), json.dumps(meta).encode())
                c = _Container(container, path, meta)
                c.loaded = True
                acc.containers[container] = c
                return True
        return await self._run(create)

    def _write_container_meta(self, c):
        fsync_write(os.path.join(c.path, "container.json"),
                     json.dumps({"name": c.name, "timestamp": c.timestamp,
                                 "metadata": c.metadata}).encode())

    async def container_info(self, account, container):
        """Metadata and usage of a container.

        Raises:
            NotFound: no such container.
        """
        c = await self._container(account, container)
        return ContainerInfo(c.name, c.timestamp, dict(c.metadata), len(c.entries),
                             c.bytes_used, c.last_modified)

    async def update_container_metadata(self, account, container, metadata):
        """Merge ``metadata`` into the container's; a key whose value is "" is removed.

        Raises:
            NotFound: no such container.
        """
        c = await self._container(account, container)

        def update():
            with c.lock:
                c.metadata = _merge(c.metadata, metadata)
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
                if c.entries:
                    raise ContainerNotEmpty(f"container {container!r} holds {len(c.entries)} object(s)",
                                            fix="delete its objects first")
                c.deleted = True
                # without container.json the directory is invisible, so this is the commit point
                os.unlink(os.path.join(c.path, "container.json"))
                for entry in os.scandir(c.objects_dir):
                    os.unlink(entry.path)     # only temp files of aborted uploads remain
                os.rmdir(c.objects_dir)
                os.rmdir(c.path)
                acc.containers.pop(container, None)
        await self._run(delete)

    # ---- objects -------------------------------------------------------------------

    async def put_object(self, account, container, name, body, content_type="application/octet-stream",
                         metadata=None, headers=None, expected_etag=None, etag=None, timestamp=None):
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
        Returns:
            :class:`ObjectInfo` of the stored object.
        Raises:
            NotFound: no such container.
            InvalidInput: bad object name.
            EtagMismatch: ``expected_etag`` differs from the body's MD5.
            TooLarge: the body exceeds ``max_object_size``.
        """
        check_name("object", name, MAX_OBJECT_NAME)
        c = await self._container(account, container)
        md5 = hashlib.md5()
        tmp = os.path.join(c.objects_dir, tmp_name())
        info = ObjectInfo(name, "", 0, content_type or "application/octet-stream",
                          timestamp or time.time(), _lower_keys(metadata), _lower_keys(headers))
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

    async def head_object(self, account, container, name):
        """Everything stored about an object except its bytes.

        Raises:
            NotFound: no such container or object.
        """
        check_name("object", name, MAX_OBJECT_NAME)
        c = await self._container(account, container)
        fd = self._open(c, name)
        try:
            return _info(_read_trailer(fd)[0])
        finally:
            os.close(fd)

    def _open(self, c, name):
        if name not in c.entries:
            raise NotFound(f"object {name!r} not found in container {c.name!r}")
        try:
            return os.open(c.object_path(name), os.O_RDONLY)
        except FileNotFoundError:
            raise NotFound(f"object {name!r} not found in container {c.name!r}") from None

    async def get_object(self, account, container, name, offset=0, length=None):
        """Open an object for reading, whole or a byte range.

        Args:
            offset: first byte to read.
            length: number of bytes (None: to the end); clipped to the object's size.
        Returns:
            an :class:`ObjectReader` (``.info``, async iterator of chunks).
        Raises:
            NotFound: no such container or object.
            InvalidInput: ``offset`` is negative or past the end of a non-empty object.
        """
        check_name("object", name, MAX_OBJECT_NAME)
        c = await self._container(account, container)
        fd = self._open(c, name)
        try:
            info = _info(_read_trailer(fd)[0])
            if offset < 0 or (offset >= info.size and info.size > 0):
                raise InvalidInput(f"range starts at byte {offset}, outside an object of {info.size} bytes")
            end = info.size if length is None else min(info.size, offset + max(0, length))
        except BaseException:
            os.close(fd)
            raise
        return ObjectReader(self, fd, info, offset, max(0, end - offset))

    async def set_object_metadata(self, account, container, name, metadata, content_type=None, headers=None):
        """Replace an object's user metadata (Swift POST); the bytes are copied into a new file atomically.

        Args:
            metadata: the new user metadata (replaces all of the old).
            content_type: new content type, or None to keep it.
            headers: new kept headers, or None to keep them.
        Raises:
            NotFound: no such container or object.
        """
        check_name("object", name, MAX_OBJECT_NAME)
        c = await self._container(account, container)
        fd = self._open(c, name)
        os.close(fd)

        def rewrite():
            src = os.open(c.object_path(name), os.O_RDONLY)
            try:
                old, size = _read_trailer(src)
                info = _info(old)
                info.metadata = _lower_keys(metadata)
                if content_type:
                    info.content_type = content_type
                if headers is not None:
                    info.headers = _lower_keys(headers)
                info.timestamp = time.time()
                tmp = os.path.join(c.objects_dir, tmp_name())
                dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    _copy_range(src, dst, size)
                    os.write(dst, _trailer_bytes(info))
                    os.fsync(dst)
                finally:
                    os.close(dst)
            finally:
                os.close(src)
            self._durable(c, c.commit(tmp, info))
            return info
        try:
            return await self._run(rewrite)
        except FileNotFoundError:
            raise NotFound(f"object {name!r} not found in container {container!r}") from None

    async def copy_object(self, src_account, src_container, src_name, account, container, name,
                          metadata=None, content_type=None, headers=None):
        """Copy an object (Swift COPY / X-Copy-From); the copy gets a new timestamp.

        Args:
            metadata: user metadata of the copy; None keeps the source's.
            content_type, headers: None keeps the source's.
        Raises:
            NotFound: no such source object or destination container.
        """
        reader = await self.get_object(src_account, src_container, src_name)
        async with reader:
            src = reader.info
            return await self.put_object(
                account, container, name, reader,
                content_type=content_type or src.content_type,
                metadata=src.metadata if metadata is None else metadata,
                headers=src.headers if headers is None else headers,
                etag=src.etag if src.etag and "-" in src.etag else None)

    async def delete_object(self, account, container, name):
        """Delete an object.

        Raises:
            NotFound: no such container or object.
        """
        check_name("object", name, MAX_OBJECT_NAME)
        c = await self._container(account, container)
        if name not in c.entries:
            raise NotFound(f"object {name!r} not found in container {container!r}")
        await self._run(c.remove, name)

    async def list_objects(self, account, container, prefix="", delimiter=None, marker=None,
                           end_marker=None, limit=10000):
        """List a container's objects in name (code point) order.

        Args:
            prefix: only names starting with it.
            delimiter: names with it after the prefix are rolled up into one common
                prefix entry (``subdir``), e.g. ``photos/`` for delimiter "/".
            marker: only names (and prefixes) after it; a marker that is itself a
                common prefix skips everything under it.
            end_marker: only names before it.
            limit: at most this many entries (objects plus prefixes).
        Returns:
            a list of :class:`ListEntry`.
        Raises:
            NotFound: no such container.
        """
        c = await self._container(account, container)
        with c.lock:
            out = []
            for name in _select(c.names, prefix, delimiter, marker, end_marker, limit):
                if isinstance(name, tuple):
                    out.append(ListEntry(name[0], subdir=True))
                else:
                    etag, size, ctype, ts = c.entries[name]
                    out.append(ListEntry(name, etag=etag, size=size, content_type=ctype, timestamp=ts))
            return out


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


def _select(names, prefix, delimiter, marker, end_marker, limit):
    """Yield names (str) and common prefixes (1-tuples) of a sorted list, as listings define them."""
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
        if delimiter:
            pos = name.find(delimiter, len(prefix))
            if pos >= 0:
                common = name[:pos + len(delimiter)]
                if common != marker:    # equal: the last entry of the previous page
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
