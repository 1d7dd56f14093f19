"""Backups to the object store, as Trove takes them: a dump streamed into a container, restored into a new instance.

Trove's guest agent runs the datastore's own backup tool and streams its output
into a Swift container (``database_backups``) without a copy on local disk; a
restore is a new instance whose first start pours the object back in.  Here:

* **dump**: ``pg_dumpall`` (every database, and the users with their password
  hashes) writes SQL to a pipe; python-swiftclient reads the pipe and uploads it
  with ``Transfer-Encoding: chunked``, so the dump's size never needs to be known
  and nothing is written to the lab host's disk on the way.  The object carries
  metadata naming the instance and datastore version.  If the dump fails, the
  partial object is deleted;
* **restore**: the object is read in chunks into ``psql`` on the new instance.  The
  dump re-creates the service's own superuser too (``os_admin``), with the old
  instance's password: those lines are left out on the way in (the new instance
  has its own admin), and any error psql reports fails the restore, in psql's words.
"""

import subprocess
import threading

from ..errors import CloudlabError, NotFound
from . import datastore

CHUNK = 64 * 1024


def _env(service, instance):
    from ..host import ownership
    env = ownership.child_env()
    server = service.server_of(instance)
    env.update(PGHOST=str(server.socket_dir), PGPORT=str(instance.port), PGUSER=datastore.ADMIN_USER,
               PGPASSWORD=instance.admin_password, PGCONNECT_TIMEOUT="5")
    return env


def dump(service, instance, backup):
    """Stream ``pg_dumpall`` of ``instance`` into ``backup``'s object; fills its size and ETag.

    Raises:
        CloudlabError: the dump or the upload failed (the partial object is removed).
    """
    store = service.lab.object_store
    conn = store.connection()
    conn.put_container(backup.container)
    tool = str(datastore.bin_dir(instance.datastore_version) / "pg_dumpall")
    proc = subprocess.Popen([tool, "--no-password"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env(service, instance))
    stderr = []
    reader = threading.Thread(target=lambda: stderr.append(proc.stderr.read()), daemon=True)
    reader.start()
    headers = {"X-Object-Meta-Instance": instance.name, "X-Object-Meta-Instance-Id": instance.id,
               "X-Object-Meta-Datastore": instance.datastore,
               "X-Object-Meta-Datastore-Version": instance.datastore_version,
               "Content-Type": "application/sql"}
    try:
        etag = conn.put_object(backup.container, backup.object_name, contents=proc.stdout, chunk_size=CHUNK,
                               headers=headers)
    except Exception as exc:
        proc.kill()
        proc.wait()
        _delete_quietly(conn, backup)
        raise CloudlabError(f"backup {backup.name}: the upload to the object store failed: {exc}") from None
    code = proc.wait()
    reader.join()
    if code != 0:
        _delete_quietly(conn, backup)
        raise CloudlabError(f"backup {backup.name}: pg_dumpall failed: "
                            f"{b''.join(stderr).decode(errors='replace').strip()[-400:]}")
    head = conn.head_object(backup.container, backup.object_name)
    backup.size = int(head.get("content-length", 0))
    backup.etag = etag


def _delete_quietly(conn, backup):
    try:
        conn.delete_object(backup.container, backup.object_name)
    except Exception:       # never there, or gone: nothing to remove
        pass


def remove_object(service, backup):
    """Delete a backup's object (a missing object is not an error: it is what we want)."""
    from swiftclient.exceptions import ClientException
    store = service.lab.object_store
    try:
        store.connection().delete_object(backup.container, backup.object_name)
    except ClientException as exc:
        if exc.http_status != 404:
            raise CloudlabError(f"backup {backup.name}: the object store refused the delete: {exc}") from None


def skip_admin_role(chunks):
    """The dump's bytes without its lines about the service's superuser (the new instance has its own).

    ``pg_dumpall`` writes the roles first, before its first ``\\connect``: only there
    are lines dropped, so no row of data can ever be taken for one.
    """
    roles = (f"CREATE ROLE {datastore.ADMIN_USER};".encode(), f"ALTER ROLE {datastore.ADMIN_USER} ".encode())
    pending, in_roles = b"", True
    for chunk in chunks:
        if not in_roles:
            yield chunk
            continue
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        kept = []
        for line in lines:
            if line.startswith(b"\\connect"):
                in_roles = False
            if not (in_roles and line.startswith(roles)):
                kept.append(line + b"\n")
        if not in_roles:
            kept.append(pending)        # the rest of this chunk, then every chunk as it comes
            pending = b""
        yield b"".join(kept)
    if pending:
        yield pending


def restore(service, instance, backup):
    """Pour ``backup``'s object into the new ``instance`` (running, empty) through ``psql``.

    Raises:
        NotFound: the backup's object is gone from the object store.
        CloudlabError: psql reported an error other than the expected one.
    """
    from swiftclient.exceptions import ClientException
    conn = service.lab.object_store.connection()
    try:
        _, body = conn.get_object(backup.container, backup.object_name, resp_chunk_size=CHUNK)
    except ClientException as exc:
        if exc.http_status == 404:
            raise NotFound(f"backup {backup.name}: its object {backup.location} is not in the object store",
                           fix="delete the backup record (delete_backup) and take a new one") from None
        raise CloudlabError(f"backup {backup.name}: the object store refused the download: {exc}") from None
    tool = str(datastore.bin_dir(instance.datastore_version) / "psql")
    proc = subprocess.Popen([tool, "-X", "-q", "--no-password", "-d", "postgres", "-f", "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=_env(service, instance))
    stderr = []
    reader = threading.Thread(target=lambda: stderr.append(proc.stderr.read()), daemon=True)
    reader.start()
    try:
        for chunk in skip_admin_role(body):
            proc.stdin.write(chunk)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    code = proc.wait()
    reader.join()
    errors = [line for line in b"".join(stderr).decode(errors="replace").splitlines() if "ERROR" in line]
    if code != 0 or errors:
        raise CloudlabError(f"restoring backup {backup.name} into {instance.name} failed: "
                            + ("; ".join(errors[:3]) or f"psql exited with {code}"))


__all__ = ["dump", "restore", "remove_object"]
