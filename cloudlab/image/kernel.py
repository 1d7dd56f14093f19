"""The guest kernel, taken from Debian's ``linux-image-amd64`` package.

Nothing is installed on the host: the versioned package that the meta package
depends on is fetched with ``apt-get download`` into the cache and unpacked
with ``dpkg-deb -x`` into a scratch folder.  Two things are taken from it:

* the kernel.  ``vmlinuz`` is a bzImage whose payload is an XZ-compressed ELF
  ``vmlinux``; under software emulation decompressing it costs seconds, so the
  ELF is extracted here once and booted through PVH (Debian builds with
  CONFIG_PVH=y, and QEMU and libvirt boot such an ELF directly).
* the modules the guest needs (virtio and friends are modules in Debian), with
  their dependencies, read from each module's ``.modinfo`` ``depends=`` field,
  listed in an order where every module comes after what it depends on.
"""

import lzma
import os
import re
import shutil
import subprocess
from pathlib import Path

from ..errors import CloudlabError, MissingPrerequisite

META_PACKAGE = "linux-image-amd64"
XZ_MAGIC = b"\xfd7zXZ\x00"
ELF_MAGIC = b"\x7fELF"


def _run(args, **kwargs):
    try:
        return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs)
    except FileNotFoundError:
        raise MissingPrerequisite(f"{args[0]} is not installed",
                                  fix="run `make lab` (or `sudo apt-get install apt dpkg`)") from None
    except subprocess.CalledProcessError as exc:
        raise CloudlabError(f"`{' '.join(args)}` failed: {exc.stderr.strip()[-400:]}") from None


def resolve_package():
    """The versioned kernel package the meta package points at: ``(name, version)``.

    Raises:
        MissingPrerequisite: apt knows no ``linux-image-amd64`` (package lists missing).
    """
    out = _run(["apt-cache", "depends", "--important", META_PACKAGE]).stdout
    names = re.findall(r"Depends:\s*(linux-image-[\w.+-]+)", out)
    if not names:
        raise MissingPrerequisite(f"apt does not know {META_PACKAGE}",
                                  fix="run `sudo apt-get update`, then build again")
    name = names[0]
    show = _run(["apt-cache", "show", "--no-all-versions", name]).stdout
    version = re.search(r"^Version:\s*(\S+)", show, re.M)
    if not version:
        raise MissingPrerequisite(f"apt has no version of {name}", fix="run `sudo apt-get update`")
    return name, version.group(1)


def download(name, version, cache_dir, progress=print):
    """The cached ``.deb`` of ``name`` at ``version``, fetched with ``apt-get download`` if missing."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # apt writes the epoch's colon as %3a in file names
    pattern = f"{name}_{version.replace(':', '%3a')}_*.deb"
    found = sorted(cache_dir.glob(pattern))
    if found:
        return found[0]
    progress(f"downloading {name} {version} (about 70 MB, once)")
    scratch = cache_dir / f".download-{os.getpid()}"
    scratch.mkdir(exist_ok=True)
    try:
        _run(["apt-get", "download", f"{name}={version}"], cwd=scratch)
        debs = list(scratch.glob("*.deb"))
        if not debs:
            raise CloudlabError(f"apt-get download {name} produced no .deb")
        target = cache_dir / debs[0].name
        os.replace(debs[0], target)     # whole file or nothing in the cache
        return target
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def unpack(deb, target):
    """Unpack ``deb`` into ``target`` (no install, no root needed)."""
    _run(["dpkg-deb", "-x", str(deb), str(target)])


def find_kernel(root):
    """Paths ``(vmlinuz, modules_dir, release)`` in an unpacked kernel package."""
    root = Path(root)
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise CloudlabError(f"no boot/vmlinuz-* in the unpacked kernel package at {root}")
    release = kernels[-1].name[len("vmlinuz-"):]
    modules = root / "lib" / "modules" / release
    if not modules.is_dir():
        raise CloudlabError(f"no lib/modules/{release} in the unpacked kernel package")
    return kernels[-1], modules, release


def extract_vmlinux(vmlinuz):
    """The uncompressed ELF kernel inside a bzImage, or None when there is none to take.

    The bzImage's setup code and decompressor come first; the XZ stream starts at
    its magic and is followed by unrelated bytes, which the decompressor leaves
    in ``unused_data``.
    """
    data = Path(vmlinuz).read_bytes()
    start = data.find(XZ_MAGIC)
    if start < 0:
        return None
    try:
        elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
    except lzma.LZMAError:
        return None
    return elf if elf.startswith(ELF_MAGIC) else None


def _module_index(modules_dir):
    """Module name -> relative path, from modules.order (depmod has not run)."""
    index = {}
    order = modules_dir / "modules.order"
    for line in order.read_text().split():
        path = line.strip()
        name = Path(path).name
        name = name[:-3] if name.endswith(".ko") else name
        index[name.replace("-", "_")] = path
    return index


def _depends(path):
    """The ``depends=`` field of a module's .modinfo section."""
    data = Path(path).read_bytes()
    at = data.find(b"\0depends=")
    if at < 0:
        return []
    value = data[at + len(b"\0depends="):data.index(b"\0", at + 1)].decode()
    return [d.replace("-", "_") for d in value.split(",") if d]


def resolve_modules(modules_dir, wanted):
    """Relative paths of ``wanted`` modules and their dependencies, dependencies first.

    Raises:
        CloudlabError: a wanted module is not in this kernel (built in modules are skipped).
    """
    modules_dir = Path(modules_dir)
    index = _module_index(modules_dir)
    builtin = {Path(p).stem.replace("-", "_")
               for p in (modules_dir / "modules.builtin").read_text().split()}
    ordered, seen = [], set()

    def visit(name, chain):
        if name in seen or name in builtin:
            return
        if name not in index:
            raise CloudlabError(f"module {name} (needed by {' <- '.join(chain) or 'the guest'}) "
                                "is not in this kernel package")
        seen.add(name)
        for dep in _depends(modules_dir / index[name]):
            visit(dep, chain + [name])
        ordered.append(index[name])

    for name in wanted:
        visit(name.replace("-", "_"), [])
    return ordered
