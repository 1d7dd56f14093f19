"""Group commit: many small uploads made durable by one flush of the disk.

A durable small write used to be temp file, ``fsync``, rename, once per object, each
from a worker thread.  Under load that costs more than the disk: every ``fsync`` of a
new file also writes its directory, and on a two-core machine each of a worker's
syscalls gives Python's GIL up and then waits for the busy event loop to hand it back.

The :class:`GroupCommitter` is one thread that takes every small upload waiting at that
moment (a *batch*), writes their temp files and makes all of them durable with a single
``syncfs`` of the file system; then each file is renamed into place and indexed
(``_Container.commit``, under the container's lock, as every other write), and the
uploads are acknowledged.  While a batch is on the disk the next one gathers, so the
busier the store, the more uploads share one flush (databases call this group commit).

What is promised is unchanged: an upload is acknowledged only once its bytes and
metadata are on the disk, and it becomes visible only whole, by the rename.  With
``sync_dirs`` a second ``syncfs`` after the renames makes them durable too, one per
batch rather than one directory ``fsync`` per object.  The price: ``syncfs`` flushes
everything dirty on that file system, so a store that shares its disk with a program
writing a lot waits for that program's data as well.

The writing and the flush run in C (``groupcommit.c``, built with ``cc`` into the cache
on first use) so that the whole batch is one call without the GIL.  Where no compiler
is found the same steps run in Python: correct, only slower.
"""

import asyncio
import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import threading
from pathlib import Path

from .. import config
from .files import unlink_if_exists, write_all

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("groupcommit.c")
MAX_BATCH = 256                 # uploads per batch
MAX_BATCH_BYTES = 64 << 20      # ... and bytes per batch: a batch is held in memory


@functools.lru_cache(maxsize=None)
def _libc():
    return ctypes.CDLL(None, use_errno=True)


def syncfs(fd):
    """Flush everything dirty on the file system that ``fd`` is on, and wait for it.

    Raises:
        OSError: the flush failed (an I/O error: nothing written since the last
            successful flush is known to be on the disk).
    """
    func = getattr(_libc(), "syncfs", None)
    if func is None:            # not glibc: sync every file system, the same guarantee and more
        os.sync()
        return
    if func(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def native_library(cache=None):
    """Path of ``groupcommit.c`` built as a shared library, building it if needed; None without a compiler.

    The library is cached by a hash of its source and of the machine's architecture,
    under ``<cache>/native/`` (``config.cache()`` by default), and renamed into place
    only once built, so processes building it at the same time never load half a file.
    """
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + platform.machine().encode()).hexdigest()[:16]
    out = Path(cache or config.cache()) / "native" / f"groupcommit-{digest}.so"
    if out.exists():
        return out
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        log.warning("no C compiler (cc): the object store commits in Python, which is slower "
                    "(install gcc: make lab does)")
        return None
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(tmp), str(SOURCE)],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            os.replace(tmp, out)
            return out
        problem = proc.stderr
    except OSError as exc:      # e.g. a cache folder that cannot be written: the store still works
        problem = str(exc)
    if tmp.parent.is_dir():
        unlink_if_exists(tmp)
    log.warning("building %s failed, the object store commits in Python (slower):\n%s", SOURCE.name, problem)
    return None


@functools.lru_cache(maxsize=None)
def _native_writer():
    path = native_library()
    if path is None:
        return None
    func = ctypes.CDLL(str(path)).cl_write_batch
    func.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_char_p),
                     ctypes.POINTER(ctypes.c_size_t), ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    func.restype = ctypes.c_int

    def write(tmps, datas, syncfd):
        n = len(tmps)
        errs = (ctypes.c_int * n)()
        # ctypes passes pointers into the bytes objects themselves: no copy of the data
        sync_err = func(n, (ctypes.c_char_p * n)(*map(os.fsencode, tmps)), (ctypes.c_char_p * n)(*datas),
                        (ctypes.c_size_t * n)(*map(len, datas)), syncfd, errs)
        return list(errs), sync_err

    return write


def _python_writer(tmps, datas, syncfd):
    """``cl_write_batch`` in Python: the same steps and results, each syscall a GIL hand-off."""
    errs = []
    for tmp, data in zip(tmps, datas):
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            errs.append(exc.errno)
            continue
        err = 0
        try:
            write_all(fd, data)
        except OSError as exc:
            err = exc.errno
        try:
            os.close(fd)
        except OSError as exc:
            err = err or exc.errno
        if err:
            unlink_if_exists(tmp)
        errs.append(err)
    sync_err = 0
    if syncfd >= 0 and not all(errs):
        try:
            syncfs(syncfd)
        except OSError as exc:
            sync_err = exc.errno
    return errs, sync_err


class _Job:
    __slots__ = ("container", "tmp", "data", "info", "loop", "future")

    def __init__(self, container, tmp, data, info, loop, future):
        self.container, self.tmp, self.data, self.info = container, tmp, data, info
        self.loop, self.future = loop, future


class GroupCommitter:
    """One thread that makes small uploads durable in batches (see the module's docstring).

    Args:
        root: a directory on the store's file system (the one ``syncfs`` flushes).
        sync_dirs: flush again after the renames, before acknowledging.
        native: use the C batch writer (None: when a compiler can build it; False: never).
    """

    def __init__(self, root, sync_dirs=False, native=None):
        self.sync_dirs = sync_dirs
        self._write = (_native_writer() if native is not False else None) or _python_writer
        self._syncfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._jobs = []
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="cloudlab-objstore-commit", daemon=True)
        self._thread.start()

    @property
    def native(self):
        """True when batches are written by the C library, False when by Python."""
        return self._write is not _python_writer

    async def write(self, container, tmp, data, info):
        """Write ``data`` (bytes) to ``tmp``, make it durable, then commit it as ``info`` into ``container``.

        Returns once the object is on the disk and visible.
        Raises:
            OSError: creating, writing or flushing failed (nothing was committed).
            NotFound: the container was deleted meanwhile (see ``_Container.commit``).
        """
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._cv:
            if self._closed:
                raise RuntimeError("the object store is closed")
            self._jobs.append(_Job(container, tmp, data, info, loop, future))
            self._cv.notify()
        return await future

    def close(self):
        """Commit what is queued, then stop the thread."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join()
        os.close(self._syncfd)

    def _take(self):
        with self._cv:
            while not self._jobs and not self._closed:
                self._cv.wait()
            batch, size = [], 0
            for job in self._jobs:
                if batch and (len(batch) >= MAX_BATCH or size + len(job.data) > MAX_BATCH_BYTES):
                    break
                batch.append(job)
                size += len(job.data)
            del self._jobs[:len(batch)]
            return batch

    def _run(self):
        while True:
            batch = self._take()
            if not batch:
                return          # closed and drained
            try:
                results = self._commit(batch)
            except BaseException as exc:     # a bug: fail the batch rather than hang its uploads
                log.exception("group commit failed")
                for job in batch:
                    unlink_if_exists(job.tmp)
                results = [exc] * len(batch)
            self._resolve(batch, results)

    def _commit(self, batch):
        """Write, flush, rename and index one batch; returns a result (None or an exception) per job."""
        errs, sync_err = self._write([job.tmp for job in batch], [job.data for job in batch], self._syncfd)
        results, renamed = [], {}
        for job, err in zip(batch, errs):
            if not err and sync_err:
                err = sync_err
                unlink_if_exists(job.tmp)
            if err:
                results.append(OSError(err, os.strerror(err)))
                continue
            try:
                renamed[job.container] = job.container.commit(job.tmp, job.info)
                results.append(None)
            except BaseException as exc:
                results.append(exc)
        if self.sync_dirs and renamed:
            try:
                syncfs(self._syncfd)
            except OSError as exc:
                # renamed, so visible, but not known to be durable: not acknowledged
                return [exc if r is None else r for r in results]
            for container, number in renamed.items():
                container.mark_synced(number)
        return results

    @staticmethod
    def _resolve(batch, results):
        by_loop = {}
        for job, result in zip(batch, results):
            by_loop.setdefault(job.loop, []).append((job.future, result))
        for loop, pairs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, pairs)
            except RuntimeError:
                pass            # that event loop is closed: nobody waits for these answers


def _settle(pairs):
    for future, result in pairs:
        if future.done():
            continue            # the upload's request was cancelled (client gone)
        if result is None:
            future.set_result(None)
        else:
            future.set_exception(result)
