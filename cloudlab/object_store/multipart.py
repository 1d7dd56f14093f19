"""S3 multipart uploads: an object sent in numbered parts, assembled into one when complete.

A client starts an upload (and gets an *upload id*), sends parts 1..10000 in any order
and in parallel, each of at least 5 MiB but the last, then *completes* it with the list
of parts and their ETags.  Only then does the object appear, whole; until then the parts
live beside the store, never visible as objects::

    <store root>/multipart/<upload id>/upload.json          who, where, content type, metadata
    <store root>/multipart/<upload id>/part-00001-<md5>     the bytes of part 1 (name holds its ETag)

Every file is written the way the store writes objects (temporary file, fsync, rename), and
an upload's folder is renamed into place only once ``upload.json`` is in it, so a crash
leaves either a whole upload, a whole part, or nothing.  The final object is streamed from
the part files into the store, so assembling 5 GiB needs no more memory than a few MiB.
Its ETag is the MD5 of the parts' binary MD5s followed by ``-<number of parts>``, as S3's.
"""

import asyncio
import hashlib
import json
import os
import shutil
import time
import uuid

from ..errors import CloudlabError
from .files import TMP_PREFIX, fsync_dir, fsync_write

MIN_PART_SIZE = 5 << 20          # every part but the last must be at least this big
MAX_PART_NUMBER = 10000
READ_CHUNK = 1 << 20


class MultipartError(CloudlabError):
    """A multipart request that S3 would refuse; carries the S3 error code and HTTP status.

    Args:
        code: S3 error code (``NoSuchUpload``, ``InvalidPart`` ...).
        message: what was wrong.
        status: HTTP status.
    """

    def __init__(self, code, message, status=400):
        super().__init__(message)
        self.code = code
        self.status = status


class Uploads:
    """The multipart uploads in progress under one store root.

    Args:
        root: the store's root directory; uploads live in its ``multipart`` folder.
    """

    def __init__(self, root):
        self.dir = os.path.join(os.fspath(root), "multipart")
        os.makedirs(self.dir, exist_ok=True)
        # folders of uploads that were being created when a crash came are never visible
        for entry in os.scandir(self.dir):
            if entry.name.startswith(TMP_PREFIX):
                shutil.rmtree(entry.path, ignore_errors=True)

    @staticmethod
    async def _run(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def _path(self, upload_id):
        # upload ids are our own uuid hex; anything else cannot name a folder here
        if not (isinstance(upload_id, str) and len(upload_id) == 32
                and all(c in "0123456789abcdef" for c in upload_id)):
            raise MultipartError("NoSuchUpload", f"upload id {upload_id!r} does not exist", 404)
        return os.path.join(self.dir, upload_id)

    async def create(self, account, bucket, key, content_type, metadata, headers):
        """Start an upload; returns its id.

        Args:
            account, bucket, key: where the object will appear.
            content_type, metadata, headers: kept for the final object.
        """
        upload_id = uuid.uuid4().hex
        meta = {"account": account, "bucket": bucket, "key": key, "content_type": content_type,
                "metadata": metadata, "headers": headers, "initiated": time.time()}

        def create():
            tmp = os.path.join(self.dir, TMP_PREFIX + upload_id)
            os.mkdir(tmp)
            fsync_write(os.path.join(tmp, "upload.json"), json.dumps(meta).encode())
            os.rename(tmp, self._path(upload_id))
            fsync_dir(self.dir)
        await self._run(create)
        return upload_id

    def _load(self, upload_id, account, bucket, key):
        path = self._path(upload_id)
        try:
            with open(os.path.join(path, "upload.json"), "rb") as f:
                meta = json.load(f)
        except (FileNotFoundError, NotADirectoryError, ValueError):
            raise MultipartError("NoSuchUpload", f"upload {upload_id} does not exist: it was completed, "
                                 "aborted, or never started", 404) from None
        # another account (or another key) cannot see or touch an upload
        if (meta["account"], meta["bucket"], meta["key"]) != (account, bucket, key):
            raise MultipartError("NoSuchUpload", f"upload {upload_id} does not exist for "
                                 f"{bucket}/{key}", 404)
        return path, meta

    async def info(self, upload_id, account, bucket, key):
        """The upload's saved request (content type, metadata ...).

        Raises:
            MultipartError: NoSuchUpload.
        """
        return (await self._run(self._load, upload_id, account, bucket, key))[1]

    async def put_part(self, upload_id, account, bucket, key, number, chunks, expected_md5=None):
        """Store one part from an async iterable of bytes; returns its ETag (MD5 hex).

        A part sent again replaces the earlier one with that number.

        Args:
            upload_id, account, bucket, key: which upload.
            number: part number, 1 to 10000.
            chunks: async iterable of ``bytes``.
            expected_md5: MD5 hex the client announced (Content-MD5); a mismatch stores nothing.

        Raises:
            MultipartError: NoSuchUpload, InvalidArgument (part number), BadDigest.
        """
        if not 1 <= number <= MAX_PART_NUMBER:
            raise MultipartError("InvalidArgument",
                                 f"part number {number} is outside 1..{MAX_PART_NUMBER}", 400)
        path, _ = await self._run(self._load, upload_id, account, bucket, key)
        tmp = os.path.join(path, f"{TMP_PREFIX}{uuid.uuid4().hex}")
        md5 = hashlib.md5()
        f = await self._run(open, tmp, "wb")
        try:
            async for chunk in chunks:
                md5.update(chunk)
                await self._run(f.write, chunk)
            await self._run(f.flush)
            await self._run(os.fsync, f.fileno())
            f.close()
            etag = md5.hexdigest()
            if expected_md5 is not None and expected_md5 != etag:
                raise MultipartError("BadDigest", "the Content-MD5 you specified did not match what we "
                                     "received", 400)

            def commit():
                final = os.path.join(path, f"part-{number:05d}-{etag}")
                os.replace(tmp, final)
                for entry in os.scandir(path):
                    if entry.name.startswith(f"part-{number:05d}-") and entry.path != final:
                        os.unlink(entry.path)
            await self._run(commit)
            return etag
        except BaseException:
            f.close()
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    @staticmethod
    def _parts(path):
        parts = {}
        for entry in os.scandir(path):
            if not entry.name.startswith("part-"):
                continue
            _, number, etag = entry.name.split("-", 2)
            st = entry.stat()
            # two files for one number only after a crash between rename and unlink: newest wins
            if int(number) not in parts or st.st_mtime_ns > parts[int(number)][3]:
                parts[int(number)] = (etag, st.st_size, entry.path, st.st_mtime_ns)
        return parts

    async def list_parts(self, upload_id, account, bucket, key):
        """The parts stored so far: a sorted list of (number, etag, size, last modified).

        Raises:
            MultipartError: NoSuchUpload.
        """
        path, _ = await self._run(self._load, upload_id, account, bucket, key)
        parts = await self._run(self._parts, path)
        return [(n, p[0], p[1], p[3] / 1e9) for n, p in sorted(parts.items())]

    async def complete(self, upload_id, account, bucket, key, requested, store):
        """Assemble the listed parts into the object and end the upload; returns its ObjectInfo.

        Args:
            upload_id, account, bucket, key: which upload.
            requested: list of (part number, etag) from the client, in its order.
            store: the :class:`~cloudlab.object_store.storage.Store` to write the object to.

        Raises:
            MultipartError: NoSuchUpload, InvalidPart, InvalidPartOrder, EntityTooSmall.
        """
        path, meta = await self._run(self._load, upload_id, account, bucket, key)
        stored = await self._run(self._parts, path)
        if not requested:
            raise MultipartError("MalformedXML", "the completion lists no parts", 400)
        numbers = [n for n, _ in requested]
        if numbers != sorted(set(numbers)):
            raise MultipartError("InvalidPartOrder", "the list of parts was not in ascending order: "
                                 "list each part once, by increasing part number", 400)
        chosen = []
        for i, (number, etag) in enumerate(requested):
            part = stored.get(number)
            if part is None or part[0] != etag.strip().strip('"').lower():
                raise MultipartError("InvalidPart", f"part {number} was not uploaded, or its ETag is not "
                                     f"{etag}", 400)
            if i < len(requested) - 1 and part[1] < MIN_PART_SIZE:
                raise MultipartError("EntityTooSmall", f"part {number} is {part[1]} bytes; every part but "
                                     f"the last must be at least {MIN_PART_SIZE} bytes", 400)
            chosen.append(part)
        digest = hashlib.md5(b"".join(bytes.fromhex(p[0]) for p in chosen)).hexdigest()

        async def body():
            for _, size, part_path, _ in chosen:
                f = await self._run(open, part_path, "rb")
                try:
                    while data := await self._run(f.read, READ_CHUNK):
                        yield data
                finally:
                    f.close()

        info = await store.put_object(account, bucket, key, body(), content_type=meta["content_type"],
                                      metadata=meta["metadata"], headers=meta["headers"],
                                      etag=f"{digest}-{len(chosen)}")
        await self._run(self._remove, path)
        return info

    async def abort(self, upload_id, account, bucket, key):
        """Drop an upload and its parts.

        Raises:
            MultipartError: NoSuchUpload.
        """
        path, _ = await self._run(self._load, upload_id, account, bucket, key)
        await self._run(self._remove, path)

    def _remove(self, path):
        # renamed away first, so that a crash mid-removal never leaves a half upload visible
        doomed = os.path.join(self.dir, f"{TMP_PREFIX}{uuid.uuid4().hex}")
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    async def list_uploads(self, account, bucket):
        """Uploads in progress for one bucket: a list of (key, upload id, initiated time), sorted."""
        def scan():
            out = []
            for entry in os.scandir(self.dir):
                if entry.name.startswith(TMP_PREFIX):
                    continue
                try:
                    with open(os.path.join(entry.path, "upload.json"), "rb") as f:
                        meta = json.load(f)
                except (OSError, ValueError):
                    continue
                if meta["account"] == account and meta["bucket"] == bucket:
                    out.append((meta["key"], entry.name, meta["initiated"]))
            return sorted(out)
        return await self._run(scan)

    async def abort_bucket(self, account, bucket):
        """Drop every upload of a bucket (when the bucket is deleted)."""
        for _, upload_id, _ in await self.list_uploads(account, bucket):
            await self._run(self._remove, self._path(upload_id))
