"""Container images made on this machine: from a root file system, or from a base plus files.

An OCI image is a stack of file-system layers (tar archives) and a configuration
(the command to run, environment, working directory).  No registry is needed to
make one:

* ``podman import ROOTFS.tar NAME`` makes a one-layer image from a tarball of a
  root file system; a folder is packed into such a tarball first.  The lab's
  ``busybox`` container image is the very root the guest image's disk holds.
* a *build* adds a layer: create a (never started) container from the base,
  copy the files into it (``podman cp`` takes a tar stream), and ``podman
  commit`` it with the new command and environment.  Nothing runs, so building
  needs no network and no runtime.

Images are named ``localhost/<lab prefix><name>:latest`` in the engine, so each
lab's images are its own and clean-up finds them.
"""

import dataclasses
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path

from ..errors import InvalidInput, NotFound

DEFAULT_IMAGE = "busybox"
REGISTRY = "localhost"
TAG = "latest"
# The default image's command: PID 1 must handle SIGTERM itself (the kernel gives a
# namespace's PID 1 only the signals it handles), so a plain `sleep` would be killed
# only when `podman stop` gives up; this one exits at once.
IDLE_COMMAND = ["/bin/sh", "-c", "trap 'exit 0' TERM INT; sleep 2147483647 & wait"]


@dataclasses.dataclass(frozen=True)
class ContainerImage:
    """An image of the lab's container engine."""

    name: str          # the lab's name for it (no prefix)
    ref: str           # the engine's name: localhost/<prefix><name>:latest
    id: str            # the image id (sha256 of its configuration), 12 hex digits
    size: int          # bytes
    created: float     # unix time

    def __str__(self):
        return f"{self.name}: {self.size / 2**20:.1f} MiB, id {self.id}"


def ref(prefix, name):
    """The engine's name of the lab's image ``name``."""
    return f"{REGISTRY}/{prefix}{name}:{TAG}"


def name_of(prefix, reference):
    """The lab's name of an engine image name, or None when it is not one of the lab's images."""
    head = f"{REGISTRY}/{prefix}"
    if not reference.startswith(head):
        return None
    rest = reference[len(head):]
    name, _, tag = rest.rpartition(":") if ":" in rest else (rest, "", TAG)
    return name if tag == TAG and name else None


def from_listing(prefix, entry):
    """The :class:`ContainerImage`s of one ``podman images --format json`` entry that belong to the lab."""
    found = []
    for reference in entry.get("Names") or []:
        name = name_of(prefix, reference)
        if name:
            created = entry.get("Created") or 0
            found.append(ContainerImage(name, reference, entry["Id"][:12], int(entry.get("Size") or 0),
                                        float(created) if isinstance(created, (int, float)) else 0.0))
    return found


def changes(command=None, env=None, workdir=None, ports=None):
    """``--change`` instructions (Dockerfile syntax) for import and commit.

    Raises:
        InvalidInput: a malformed command, environment, folder or port.
    """
    out = []
    if command is not None:
        from .container import shell_command
        out.append("CMD " + json.dumps(shell_command(command)))
    for key, value in (env or {}).items():
        if not isinstance(key, str) or not key or "=" in key or any(c.isspace() for c in key):
            raise InvalidInput(f"environment variable name {key!r} is not usable", fix="use names like APP_PORT")
        out.append(f"ENV {key}={json.dumps(str(value))}")
    if workdir is not None:
        if not isinstance(workdir, str) or not workdir.startswith("/"):
            raise InvalidInput(f"workdir {workdir!r} is not an absolute path", fix="e.g. workdir='/app'")
        out.append(f"WORKDIR {workdir}")
    for port in ports or ():
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise InvalidInput(f"port {port!r} is not a port number", fix="give whole numbers 1..65535")
        out.append(f"EXPOSE {port}")
    return out


def _reset_owner(info):
    # the image's files belong to root inside, whoever built the folder
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def pack_folder(folder, target):
    """Write a tar archive of ``folder``'s contents (as the root of a file system) to ``target``.

    Raises:
        NotFound: the folder does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotFound(f"no folder at {folder}", fix="give a root file system folder or a .tar file")
    with tarfile.open(target, "w") as tar:
        for entry in sorted(folder.iterdir()):
            tar.add(entry, arcname=entry.name, filter=_reset_owner)
    return Path(target)


def files_tar(files):
    """A tar archive (bytes) holding ``files``: ``{path in the image: str | bytes | Path}``.

    Paths are absolute; text is stored as UTF-8; a ``Path`` is a file or folder of
    this machine, copied in; parent folders are created.  A path ending in a
    shell-like mode, e.g. ``("/app/run.sh", 0o755)`` as key, sets the file's mode.

    Raises:
        InvalidInput: a relative path, or content of another type.
        NotFound: a ``Path`` that does not exist.
    """
    buffer = io.BytesIO()
    made = set()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        def folder(path):
            parts = Path(path).parts[1:-1]
            for i in range(1, len(parts) + 1):
                name = "/".join(parts[:i])
                if name not in made:
                    made.add(name)
                    info = tarfile.TarInfo(name)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)

        for key, content in (files or {}).items():
            path, mode = key if isinstance(key, tuple) else (key, None)
            if not isinstance(path, str) or not path.startswith("/") or path == "/":
                raise InvalidInput(f"file path {path!r} is not an absolute path in the image",
                                   fix="use paths like '/app/server.py'")
            folder(path)
            arcname = path.lstrip("/")
            if isinstance(content, Path):
                if not content.exists():
                    raise NotFound(f"no file or folder at {content}", fix="give an existing path")
                tar.add(content, arcname=arcname, filter=_reset_owner)
                continue
            if isinstance(content, str):
                content = content.encode()
            if not isinstance(content, (bytes, bytearray)):
                raise InvalidInput(f"content of {path} is a {type(content).__name__}",
                                   fix="give text, bytes or a pathlib.Path")
            info = tarfile.TarInfo(arcname)
            info.size, info.mode = len(content), mode if mode is not None else 0o644
            tar.addfile(info, io.BytesIO(bytes(content)))
    return buffer.getvalue()


def scratch_tar(directory):
    """A temporary .tar path in ``directory`` (the caller removes it)."""
    fd, name = tempfile.mkstemp(prefix=".import-", suffix=".tar", dir=directory)
    os.close(fd)
    return Path(name)
