"""The store's file primitives: temporary names, whole writes, durable replacement.

Every file the object store writes goes through a temporary name that starts with
:data:`TMP_PREFIX` (never visible, removed when its folder is next loaded) and is
renamed into place only once complete.  ``storage``, ``multipart`` and ``commit``
share these few functions so that they agree on what a temporary file is.
"""

import itertools
import os
import secrets

TMP_PREFIX = ".tmp-"

# temp names: random per process (a restarted server never meets its predecessor's
# names) plus a counter (no random bytes to fetch per write)
_TMP_SESSION = secrets.token_hex(8)
_tmp_counter = itertools.count()


def tmp_name():
    """A temporary file name, unique in this process and across restarts."""
    return f"{TMP_PREFIX}{_TMP_SESSION}-{next(_tmp_counter)}"


def write_all(fd, data):
    """Write all of ``data`` to ``fd`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fsync_write(path, data):
    """Replace ``path`` with ``data`` atomically and durably: temp file, fsync, rename."""
    tmp = os.path.join(os.path.dirname(path), tmp_name())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def fsync_dir(path):
    """Make the entries of directory ``path`` (creations, renames, removals) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_if_exists(path):
    """Remove a file; one that is already gone is not an error."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
