"""Guest images, built on this machine from Debian packages, and a Glance-like registry.

An image is what a server boots: a kernel, an initramfs and a base disk.

* kernel: Debian's ``linux-image-amd64`` (see :mod:`cloudlab.image.kernel`), the ELF
  ``vmlinux`` taken out of its ``vmlinuz`` so that emulation skips decompression;
* initramfs: busybox-static, the virtio (and emulated-device) modules, and
  ``cloudlab/image/guest/init``, which loads them and switches to the root disk;
* base disk: an ext4 filesystem (made with ``mke2fs -d``, no root needed) with
  busybox, an init, DHCP, an SNTP client for the clock (Debian's busybox has no
  ntpd; ``guest/sntp.c`` is compiled statically), ``cloudlab-measure``
  (``guest/measure.c``: the workloads labs time) and the agent, stored
  as qcow2.  Servers never boot the base disk itself: each gets a copy-on-write
  overlay, so creating one copies nothing.

A build is keyed by the hash of everything that goes into it (package versions,
the guest scripts, the module list, this builder's version), made in a scratch
folder and renamed into the cache only when complete, so the cache never holds
half an image.  ``python -m cloudlab image build`` reuses a cached build in well
under a second.

Registry: like Glance, images have a name, a disk format, a size, a virtual
size and a checksum.  The default image is ``busybox``; more can be made with
:meth:`ImageService.create_image` (the same system on a base disk of another
size) or registered with :meth:`ImageService.import_image`.
"""

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from .. import config
from . import kernel
from ..errors import CloudlabError, Conflict, InvalidInput, MissingPrerequisite, NotFound
from .initramfs import Archive

DEFAULT_IMAGE = "busybox"
GUEST_DIR = Path(__file__).parent / "guest"
# Raise when the build changes in a way the inputs below do not show.
BUILDER_VERSION = 3
DISK_MIB = 64
# Modules by group; the initramfs loads a group only when its condition holds
# (PCI "vendor:device" ids present, or "!" ids absent), because every module
# costs boot time under emulation (probing the SATA controller alone takes
# hundreds of ms).  Dependencies are resolved from the kernel package.
MODULE_GROUPS = [
    # group, condition, modules
    ("core", "always", ["crc32c_generic", "ext4", "button", "evdev"]),
    # any virtio device (vendor 0x1af4): a fully emulated guest loads no virtio driver at all
    ("virtio", "1af4:*", ["virtio_pci", "virtio_blk", "virtio_console"]),
    ("virtio-net", "1af4:1000 1af4:1041", ["virtio_net"]),
    ("virtio-rng", "1af4:1005 1af4:1044", ["virtio_rng"]),
    # the "emulated" device profile: IDE (i440fx) or SATA (q35) disk, e1000 NIC
    ("emulated-disk", "!1af4:1001 !1af4:1042", ["ata_piix", "ahci", "sd_mod"]),
    ("e1000", "8086:100e", ["e1000"]),
    # shared folders (virtio-9p)
    ("9p", "1af4:1009 1af4:1049", ["9pnet_virtio", "9p"]),
]
MODULES = [m for _, _, modules in MODULE_GROUPS for m in modules]
# Modules kept on the root disk instead of the initramfs: nothing loads them at boot,
# the kernel asks for them when first needed (``mount -t nfs4`` makes it run
# /sbin/modprobe fs-nfs4, busybox's modprobe, which reads modules.dep and the alias in
# /etc/modprobe.d/), so a guest that never mounts a share pays nothing for them.
DISK_MODULES = {
    # the NFS client (shares of the shared file system service)
    "nfsv4": ["fs-nfs4", "nfs4"],
    # virtio's PCI transport and disk driver, for a volume hot-plugged into a guest that
    # booted with no virtio device (the emulated profile loads none from the initramfs)
    "virtio_pci": [],
    "virtio_blk": [],
}
# quiet: every console byte is a trap into the emulator; the guest's own lines still show.
# cryptomgr.notests: skip the kernel's self-tests of its crypto algorithms, which
# take a quarter of the kernel's boot under emulation (measured: 3.0 s -> 2.5 s to ready).
CMDLINE = "console=ttyS0 quiet cryptomgr.notests"
MIN_RAM_MIB = 96
READY_MARKER = "cloudlab-ready"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,39}$")
SBIN_PATHS = os.pathsep.join(["/usr/sbin", "/sbin", os.environ.get("PATH", "")])


@dataclasses.dataclass(frozen=True)
class Image:
    """A bootable image, as the registry shows it (Glance's fields plus what boots it)."""

    name: str
    format: str          # disk format of the base disk: qcow2 or raw
    size: int            # bytes the base disk takes on the host
    virtual_size: int    # bytes the guest sees
    checksum: str        # md5 of the base disk file, as Glance's `checksum`
    disk: str            # path of the base disk
    kernel: str
    initrd: str
    cmdline: str
    min_ram_mib: int = MIN_RAM_MIB
    created_at: float = 0.0
    properties: dict = dataclasses.field(default_factory=dict, compare=False)   # {str: str}, kept in image.json

    def to_json(self):
        """The image as a JSON-ready dict."""
        return dataclasses.asdict(self)

    def verify(self):
        """True when the base disk's MD5 is still the ``checksum`` recorded when the image was registered."""
        return md5_file(self.disk) == self.checksum

    def __str__(self):
        return (f"{self.name}: {self.format}, {self.size / 2**20:.1f} MiB on disk, "
                f"{self.virtual_size / 2**20:.0f} MiB virtual, md5 {self.checksum}")


def _tool(name):
    path = shutil.which(name, path=SBIN_PATHS)
    if not path:
        package = {"mke2fs": "e2fsprogs", "qemu-img": "qemu-utils", "busybox": "busybox-static",
                   "dpkg-deb": "dpkg", "apt-get": "apt", "gcc": "gcc libc6-dev"}.get(name, name)
        raise MissingPrerequisite(f"{name} is not installed",
                                  fix=f"run `make lab`, or `sudo apt-get install {package}`")
    return path


def _run(args):
    try:
        return subprocess.run(args, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        raise CloudlabError(f"`{' '.join(map(str, args))}` failed: {exc.stderr.strip()[-400:]}") from None


def qemu_img_info(path):
    """``qemu-img info`` of a disk as a dict (format, virtual-size, actual-size, backing...)."""
    out = _run([_tool("qemu-img"), "info", "--output=json", "-U", str(path)]).stdout
    return json.loads(out)


def md5_file(path):
    """Hex MD5 of a file, read in 1 MiB blocks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _busybox():
    path = Path(_tool("busybox")).resolve()
    head = path.read_bytes()[:4096]
    # a dynamically linked busybox would need a libc inside the guest
    if b"ld-linux" in head:
        raise MissingPrerequisite(f"{path} is dynamically linked",
                                  fix="`sudo apt-get install busybox-static`")
    version = subprocess.run([str(path)], capture_output=True, text=True).stdout.splitlines()[0]
    return path, version


def _guest_files():
    """(path in the guest, source file, mode) for everything from cloudlab/image/guest/."""
    return [
        ("etc/inittab", GUEST_DIR / "inittab", 0o644),
        ("etc/init.d/rcS", GUEST_DIR / "rcS", 0o755),
        ("etc/init.d/rcK", GUEST_DIR / "rcK", 0o755),
        ("etc/udhcpc.script", GUEST_DIR / "udhcpc.script", 0o755),
        ("etc/acpi/PWRF/00000080", GUEST_DIR / "acpi" / "PWRF" / "00000080", 0o755),
        ("usr/sbin/cloudlab-agent", GUEST_DIR / "agent", 0o755),
        ("usr/bin/lsblk", GUEST_DIR / "lsblk", 0o755),
    ]


def build_key(kernel_package, busybox_version):
    """Hash of every input of a build: a change to any of them means a new image."""
    digest = hashlib.sha256()
    digest.update(f"{BUILDER_VERSION}|{kernel_package}|{busybox_version}|{DISK_MIB}|{CMDLINE}|".encode())
    digest.update(repr(MODULE_GROUPS).encode())
    digest.update(repr(DISK_MODULES).encode())
    for source in sorted(GUEST_DIR.rglob("*")):
        if source.is_file():
            digest.update(str(source.relative_to(GUEST_DIR)).encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()[:16]


def _images_cache():
    return config.cache() / "images"


def _stage_rootfs(root, busybox):
    """Fill ``root`` with the guest's system: busybox, its applets, the guest scripts."""
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc/init.d", "etc/acpi/PWRF", "root",
              "proc", "sys", "dev", "run", "tmp", "mnt", "var/log"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    listing = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True).stdout
    for applet in listing.split():
        link = root / applet
        if applet == "bin/busybox" or link.exists():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(root / "bin" / "busybox", link.parent))
    for dest, source, mode in _guest_files():
        target = root / dest
        shutil.copyfile(source, target)
        target.chmod(mode)
    _compile_guest_tool("sntp.c", root / "usr" / "bin" / "cloudlab-sntp", "-Os")
    _compile_guest_tool("measure.c", root / "usr" / "bin" / "cloudlab-measure", "-O2")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    (root / "etc" / "motd").write_text("cloudlab guest: busybox on Debian's kernel\n")


def _stage_disk_modules(root, modules_dir, release):
    """Put :data:`DISK_MODULES` and their dependencies under ``lib/modules/RELEASE`` of the root disk.

    ``modules.dep`` is written in depmod's format (``path: dependency ...``, the
    dependency loaded last listed first), which busybox's modprobe reads; the
    aliases go to ``/etc/modprobe.d/cloudlab.conf``.  Returns the modules' paths.
    """
    target = root / "lib" / "modules" / release
    lines, aliases, staged = [], [], []
    for module, names in DISK_MODULES.items():
        ordered = kernel.resolve_modules(modules_dir, [module])   # dependencies first
        for index, rel in enumerate(ordered):
            if rel in staged:
                continue
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(modules_dir / rel, target / rel)
            deps = kernel.resolve_modules(modules_dir, [Path(rel).stem])[:-1]
            lines.append(f"{rel}: {' '.join(reversed(deps))}".rstrip())
            staged.append(rel)
        aliases += [f"alias {name} {module}" for name in names]
    (target / "modules.dep").write_text("\n".join(lines) + "\n")
    (root / "etc" / "modprobe.d").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "modprobe.d" / "cloudlab.conf").write_text("\n".join(aliases) + "\n")
    return staged


def _compile_guest_tool(source, target, optimise):
    """A small C program of guest/, compiled statically (no libc in the guest).

    ``sntp.c``: the guest's SNTP client (Debian's busybox has no ntpd).
    ``measure.c``: timed workloads (CPU loop, direct-I/O disk, TCP to the host) that
    the same binary runs in a guest, in a container and on the host.
    """
    gcc = _tool("gcc")
    _run([gcc, "-static", optimise, "-s", "-o", str(target), str(GUEST_DIR / source)])


# applets /init uses; the initramfs holds only these (the system is on the root disk)
INIT_APPLETS = ["sh", "mount", "umount", "insmod", "usleep", "switch_root", "poweroff", "echo", "["]


def _make_initramfs(path, busybox, modules_dir, module_paths):
    """The initramfs: busybox with the applets /init needs, /init, /dev/console and the modules."""
    archive = Archive()
    for d in ("bin", "dev", "proc", "sys", "newroot"):
        archive.directory(d)
    archive.file("bin/busybox", Path(busybox).read_bytes(), 0o755)
    for applet in INIT_APPLETS:
        archive.symlink(f"bin/{applet}", "busybox")
    archive.char_device("dev/console", 5, 1)
    archive.file("init", (GUEST_DIR / "init").read_bytes(), 0o755)
    archive.directory("lib")
    archive.directory("lib/modules")
    lines = []
    for group, condition, rel_paths in module_paths:
        for rel in rel_paths:
            name = Path(rel).name
            if f"lib/modules/{name}" not in archive:
                archive.file(f"lib/modules/{name}", (modules_dir / rel).read_bytes())
            lines.append(f"{group} {name}")
    conditions = [f"{group} {condition}" for group, condition, _ in MODULE_GROUPS]
    archive.file("lib/modules/modules.groups", ("\n".join(conditions) + "\n").encode())
    archive.file("lib/modules/modules.load", ("\n".join(lines) + "\n").encode())
    archive.write(path)


def _tree_bytes(root):
    """Bytes taken by the regular files under ``root`` (symlinks and folders count as nothing)."""
    return sum(p.lstat().st_size for p in Path(root).rglob("*") if p.is_file() and not p.is_symlink())


def _make_disk(path, rootfs, size_mib):
    """An ext4 filesystem holding ``rootfs``, as a qcow2 disk of ``size_mib`` MiB."""
    raw = Path(str(path) + ".raw")
    try:
        _run([_tool("mke2fs"), "-q", "-F", "-t", "ext4", "-L", "cloudlab-root",
              "-E", "root_owner=0:0", "-d", str(rootfs), str(raw), f"{size_mib}M"])
        _run([_tool("qemu-img"), "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path)])
    finally:
        raw.unlink(missing_ok=True)


def _image_from_dir(name, directory, manifest):
    disk = directory / manifest["disk"]
    try:
        size = disk.stat().st_size
    except FileNotFoundError:
        raise NotFound(f"the disk of image {name!r} is missing ({disk.name} in its folder)",
                       fix=f"delete the image (lab.image.delete_image({name!r})) and create or import it again"
                       if name != DEFAULT_IMAGE else "rebuild it: python -m cloudlab image build --force") from None
    return Image(name=name, format=manifest["format"], size=size,
                 virtual_size=manifest["virtual_size"], checksum=manifest["checksum"],
                 disk=str(disk), kernel=str(directory / "vmlinux"), initrd=str(directory / "initrd.img"),
                 cmdline=manifest["cmdline"], min_ram_mib=manifest.get("min_ram_mib", MIN_RAM_MIB),
                 created_at=manifest.get("created_at", 0.0), properties=dict(manifest.get("properties") or {}))


_build_lock = threading.Lock()


def _cached_builds():
    root = _images_cache()
    found = [d for d in root.glob(f"{DEFAULT_IMAGE}-*") if (d / "manifest.json").is_file()]
    return sorted(found, key=lambda d: (d / "manifest.json").stat().st_mtime)


def build(progress=None, force=False):
    """Build the default image if its inputs changed, and return it.

    Args:
        progress: callable taking one line of progress text (default: print).
        force: rebuild even when a build with the same inputs is cached.
    Raises:
        MissingPrerequisite: a tool or package is missing; the message names the fix.
    """
    say = progress or (lambda line: print(f"image: {line}", flush=True))
    with _build_lock:
        busybox, busybox_version = _busybox()
        try:
            package = kernel.resolve_package()
        except MissingPrerequisite:
            # offline or no apt lists: an image built earlier is still a good image
            builds = _cached_builds()
            if builds and not force:
                say("apt cannot resolve the kernel package; using the newest cached build")
                return _load_build(builds[-1])
            raise
        key = build_key(f"{package[0]}={package[1]}", busybox_version)
        target = _images_cache() / f"{DEFAULT_IMAGE}-{key}"
        if (target / "manifest.json").is_file() and not force:
            return _load_build(target)
        return _build_into(target, package, busybox, say)


def _load_build(directory):
    manifest = json.loads((directory / "manifest.json").read_text())
    return _image_from_dir(DEFAULT_IMAGE, directory, manifest)


def _build_into(target, package, busybox, say):
    started = time.monotonic()
    cache = _images_cache()
    cache.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
    try:
        deb = kernel.download(*package, config.cache() / "debs", progress=say)
        say(f"unpacking {deb.name}")
        unpacked = scratch / "pkg"
        kernel.unpack(deb, unpacked)
        vmlinuz, modules_dir, release = kernel.find_kernel(unpacked)
        out = scratch / "image"
        out.mkdir()
        say(f"kernel {release}: extracting the ELF vmlinux from vmlinuz (boots without decompression)")
        elf = kernel.extract_vmlinux(vmlinuz)
        if elf is None:
            say("no ELF payload found; the guest boots the compressed vmlinuz (slower under emulation)")
            shutil.copyfile(vmlinuz, out / "vmlinux")
        else:
            (out / "vmlinux").write_bytes(elf)
        module_paths, seen = [], set()
        for group, condition, wanted in MODULE_GROUPS:
            # a dependency shared by two groups is listed in both: loading it twice is harmless
            paths = kernel.resolve_modules(modules_dir, wanted)
            seen.update(paths)
            module_paths.append((group, condition, paths))
        say(f"initramfs: busybox and {len(seen)} modules")
        rootfs = out / "rootfs"
        _stage_rootfs(rootfs, busybox)
        disk_modules = _stage_disk_modules(rootfs, modules_dir, release)
        say(f"root disk: {len(disk_modules)} modules loaded on demand ({', '.join(DISK_MODULES)})")
        _make_initramfs(out / "initrd.img", busybox, modules_dir, module_paths)
        say(f"base disk: ext4, {DISK_MIB} MiB virtual, qcow2")
        _make_disk(out / "disk.qcow2", rootfs, DISK_MIB)
        info = qemu_img_info(out / "disk.qcow2")
        manifest = {
            "name": DEFAULT_IMAGE, "format": "qcow2", "disk": "disk.qcow2",
            "virtual_size": info["virtual-size"], "checksum": md5_file(out / "disk.qcow2"),
            "cmdline": CMDLINE, "min_ram_mib": MIN_RAM_MIB, "created_at": time.time(),
            "kernel_package": f"{package[0]}={package[1]}", "kernel_release": release,
            "modules": {group: [Path(p).name for p in paths] for group, _, paths in module_paths},
            "disk_modules": [Path(p).name for p in disk_modules],
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
        shutil.rmtree(unpacked)
        if target.exists():           # a forced rebuild replaces the old build
            shutil.rmtree(target)
        os.rename(out, target)        # the build appears whole or not at all
        say(f"built in {time.monotonic() - started:.0f} s")
        return _load_build(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


_default = None


def default_image():
    """The default image (``busybox``), built on first use and cached."""
    global _default
    if _default is None or not Path(_default.disk).exists():
        _default = build()
    return _default


class ImageService:
    """The lab's image registry (Glance's role): list, show, create, import, delete.

    Images other than the default live under ``config.home()/images/NAME/``, each
    with its base disk and an ``image.json``; they boot with the default image's
    kernel and initramfs.
    """

    def __init__(self, lab=None):
        self.lab = lab
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _locked(self):
        """This process's lock and the registry folder's (a Glance process on the controller node
        registers images in the same folder: the check for a taken name and the rename that
        takes it must not interleave with another process's)."""
        with self._lock, open(self.root / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    @property
    def root(self):
        """Folder of registered (non-default) images."""
        path = config.home() / "images"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start(self):
        """Make sure the default image exists (builds it the first time)."""
        default_image()

    def stop(self):
        """Images outlive labs, like Glance's; nothing to stop."""

    def rootfs(self):
        """The default image's root file system as a folder (what its disk holds).

        The container service makes its ``busybox`` container image from it, so a
        VM and a container of the lab run the very same files.
        """
        return Path(default_image().disk).parent / "rootfs"

    def list_images(self):
        """All images, the default first."""
        images = [default_image()]
        for manifest in sorted(self.root.glob("*/image.json")):
            images.append(self._load(manifest.parent))
        return images

    def names(self):
        """Names of all images."""
        return [image.name for image in self.list_images()]

    def get_image(self, name):
        """The image called ``name``.

        Raises:
            NotFound: no such image; the message lists the valid names.
        """
        if isinstance(name, Image):
            return name
        if not isinstance(name, str):
            raise InvalidInput(f"image must be an image name or an Image, not {type(name).__name__} {name!r}",
                               fix=f"use one of: {', '.join(i.name for i in self.list_images())}")
        if name == DEFAULT_IMAGE:
            return default_image()
        if isinstance(name, str) and NAME_RE.match(name) and (self.root / name / "image.json").is_file():
            return self._load(self.root / name)
        raise NotFound(f"no image named {name!r}",
                       fix=f"use one of: {', '.join(self.names())}")

    def _load(self, directory):
        manifest = json.loads((directory / "image.json").read_text())
        base = default_image()
        image = _image_from_dir(manifest["name"], directory, manifest)
        return dataclasses.replace(image, kernel=base.kernel, initrd=base.initrd)

    def _check_new_name(self, name):
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidInput(f"image name {name!r} is not valid",
                               fix="use 1-40 lower-case letters, digits, '.', '_' or '-'")
        if name == DEFAULT_IMAGE or (self.root / name).exists():
            raise Conflict(f"an image named {name!r} already exists", fix="choose another name")

    def _register(self, name, fill):
        """Create ``root/name`` via a scratch folder renamed into place when complete."""
        with self._locked():
            self._check_new_name(name)
            scratch = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=self.root))
            try:
                manifest = fill(scratch)
                manifest.update(name=name, created_at=time.time(), cmdline=CMDLINE,
                                min_ram_mib=MIN_RAM_MIB)
                (scratch / "image.json").write_text(json.dumps(manifest, indent=1))
                os.rename(scratch, self.root / name)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        return self.get_image(name)

    def create_image(self, name, size_mib):
        """A new image: the default system on a base disk of ``size_mib`` MiB.

        Raises:
            InvalidInput: the size is outside 8 MiB .. 64 GiB.
            Conflict: the name is taken.
        """
        if not isinstance(size_mib, int) or not 8 <= size_mib <= 65536:
            raise InvalidInput(f"size_mib={size_mib!r} is not usable", fix="give 8 to 65536 (MiB)")
        rootfs = self.rootfs()
        # ext4 needs room for its own metadata beside the files: ask for twice what they take
        needed = -(-2 * _tree_bytes(rootfs) // 2**20)
        if size_mib < needed:
            raise InvalidInput(f"size_mib={size_mib} is too small for the image's system "
                               f"({_tree_bytes(rootfs) / 2**20:.1f} MiB of files)",
                               fix=f"give at least {needed} (MiB)")

        def fill(scratch):
            _make_disk(scratch / "disk.qcow2", rootfs, size_mib)
            info = qemu_img_info(scratch / "disk.qcow2")
            return {"format": "qcow2", "disk": "disk.qcow2", "virtual_size": info["virtual-size"],
                    "checksum": md5_file(scratch / "disk.qcow2")}

        return self._register(name, fill)

    def import_image(self, name, path, properties=None):
        """Register an existing disk file (qcow2 or raw) as image ``name``; the file is copied.

        Args:
            name: the new image's name.
            path: a qcow2 or raw disk file.
            properties: ``{str: str}`` kept in the image's manifest and read back as
                ``image.properties`` (the OpenStack API keeps an image's owner there).
        Raises:
            NotFound: ``path`` does not exist.
            InvalidInput: the file is not a qcow2 or raw disk.
        """
        source = Path(path)
        if not source.is_file():
            raise NotFound(f"no disk file at {path}", fix="give the path of a qcow2 or raw disk")
        info = qemu_img_info(source)
        if info.get("format") not in ("qcow2", "raw"):
            raise InvalidInput(f"{path} is a {info.get('format')} disk",
                               fix="convert it: qemu-img convert -O qcow2 SOURCE TARGET")
        if info.get("backing-filename"):
            raise InvalidInput(f"{path} is an overlay on {info['backing-filename']}",
                               fix="flatten it first: qemu-img convert -O qcow2 SOURCE TARGET")

        if properties is not None and not (isinstance(properties, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in properties.items())):
            raise InvalidInput(f"properties must be a dict of strings, not {properties!r}")

        def fill(scratch):
            disk = scratch / f"disk.{info['format']}"
            shutil.copyfile(source, disk)
            return {"format": info["format"], "disk": disk.name, "properties": dict(properties or {}),
                    "virtual_size": info["virtual-size"], "checksum": md5_file(disk)}

        return self._register(name, fill)

    def delete_image(self, name):
        """Delete a registered image (the default one cannot be deleted).

        Raises:
            InvalidInput: ``name`` is the default image.
            NotFound: no such image.
        """
        if name == DEFAULT_IMAGE:
            raise InvalidInput("the default image cannot be deleted",
                               fix="delete images you created or imported")
        if not (isinstance(name, str) and NAME_RE.match(name) and (self.root / name / "image.json").is_file()):
            self.get_image(name)          # raises NotFound listing the valid names
        with self._locked():
            shutil.rmtree(self.root / name)


# -- command line: python -m cloudlab image build|list ---------------------------------

def add_arguments(parser):
    """Arguments of ``python -m cloudlab image``."""
    sub = parser.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build", help="build the default image (reuses the cached build)")
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    sub.add_parser("list", help="list images")


def main(args):
    """Run ``python -m cloudlab image``."""
    if args.action == "build":
        started = time.monotonic()
        image = build(force=args.force)
        print(f"image: {image} (ready in {time.monotonic() - started:.1f} s)")
        return 0
    for image in ImageService().list_images():
        print(image)
    return 0


