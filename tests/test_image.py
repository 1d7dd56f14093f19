"""The guest image: initramfs format, kernel modules, build cache, and the Glance-like registry.

The initramfs and module tests use real tools (GNU cpio lists the archive we
write; the kernel package's own modules are resolved).  The registry tests make
real qcow2 disks with mke2fs and qemu-img.
"""

import json
import subprocess
from pathlib import Path

import pytest

from cloudlab import image as image_mod
from cloudlab.image import kernel
from cloudlab.errors import CloudlabError, Conflict, InvalidInput, NotFound
from cloudlab.image import DEFAULT_IMAGE, ImageService, default_image
from cloudlab.image.initramfs import Archive


def test_initramfs_is_read_by_gnu_cpio(tmp_path):
    archive = Archive()
    archive.directory("bin")
    archive.file("bin/hello", b"#!/bin/sh\necho hi\n", 0o755)
    archive.symlink("bin/sh", "busybox")
    archive.char_device("dev/console", 5, 1)
    path = tmp_path / "initrd"
    archive.write(path)
    listing = subprocess.run(["cpio", "-itv", "--quiet"], stdin=open(path, "rb"),
                             capture_output=True, text=True, check=True).stdout
    names = [line.split()[-1] if "->" not in line else line.split()[-3] for line in listing.splitlines()]
    assert names == ["bin", "bin/hello", "bin/sh", "dev/console"]
    assert "crw-------" in listing            # a device node, written without root
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--quiet", "bin/hello"], stdin=open(path, "rb"), cwd=out, check=True)
    assert (out / "bin" / "hello").read_bytes() == b"#!/bin/sh\necho hi\n"


def test_initramfs_is_reproducible_and_rejects_duplicates():
    def make():
        a = Archive()
        a.directory("etc")
        a.file("etc/motd", b"x")
        return a.to_bytes()
    assert make() == make()                   # fixed times and owners: the cache key holds
    a = Archive()
    a.directory("etc")
    with pytest.raises(ValueError):
        a.directory("/etc/")


def test_default_image_has_what_a_server_boots():
    img = default_image()
    assert img.name == DEFAULT_IMAGE and img.format == "qcow2"
    with open(img.kernel, "rb") as f:
        assert f.read(4) == b"\x7fELF"        # the uncompressed kernel, booted through PVH
    info = image_mod.qemu_img_info(img.disk)
    assert info["format"] == "qcow2" and info["virtual-size"] == img.virtual_size
    assert img.checksum == image_mod.md5_file(img.disk)
    assert "console=ttyS0" in img.cmdline
    listing = subprocess.run(["cpio", "-it", "--quiet"], stdin=open(img.initrd, "rb"),
                             capture_output=True, text=True, check=True).stdout.split()
    for needed in ("init", "lib/modules/virtio_blk.ko", "lib/modules/ext4.ko",
                   "lib/modules/modules.load", "bin/switch_root", "dev/console"):
        assert needed in listing
    assert "usr/sbin/cloudlab-agent" not in listing     # the system lives on the disk, not in RAM


def test_module_list_puts_dependencies_first():
    # this checkout's build, not the newest in the cache: the cache is shared with other checkouts
    build = Path(default_image().disk).parent
    load = (build / "manifest.json").read_text()
    groups = json.loads(load)["modules"]
    core = groups["core"]
    for before, after in [("virtio_ring.ko", "virtio.ko"), ("virtio.ko", "virtio_blk.ko"),
                          ("jbd2.ko", "ext4.ko"), ("mbcache.ko", "ext4.ko")]:
        assert core.index(before) < core.index(after)
    assert "net_failover.ko" in groups["virtio-net"]


def test_build_is_cached_by_its_inputs(monkeypatch):
    first = image_mod.build(progress=lambda line: None)
    again = image_mod.build(progress=lambda line: pytest.fail(f"rebuilt: {line}"))
    assert again == first
    key = image_mod.build_key("linux-image-x=1", "BusyBox v1")
    monkeypatch.setattr(image_mod, "BUILDER_VERSION", image_mod.BUILDER_VERSION + 1)
    assert image_mod.build_key("linux-image-x=1", "BusyBox v1") != key


def _fake_module(directory, rel, depends):
    path = directory / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    # what the kernel build puts in a module's .modinfo section: NUL-separated key=value
    path.write_bytes(b"\x7fELF...\0license=GPL\0depends=" + depends.encode() + b"\0vermagic=6.1\0")


def test_kernel_module_resolution_orders_and_reports(tmp_path):
    mods = tmp_path / "lib" / "modules" / "6.1.0-test"
    _fake_module(mods, "kernel/a/virtio_ring.ko", "")
    _fake_module(mods, "kernel/a/virtio.ko", "virtio_ring")
    _fake_module(mods, "kernel/b/virtio_blk.ko", "virtio,virtio_ring")
    _fake_module(mods, "kernel/c/needs-builtin.ko", "crc32c")
    (mods / "modules.order").write_text("kernel/a/virtio_ring.ko\nkernel/a/virtio.ko\n"
                                        "kernel/b/virtio_blk.ko\nkernel/c/needs-builtin.ko\n")
    (mods / "modules.builtin").write_text("kernel/crypto/crc32c.ko\n")
    assert kernel.resolve_modules(mods, ["virtio_blk"]) == [
        "kernel/a/virtio_ring.ko", "kernel/a/virtio.ko", "kernel/b/virtio_blk.ko"]
    # dashes and underscores name the same module; built-in dependencies need no file
    assert kernel.resolve_modules(mods, ["needs_builtin"]) == ["kernel/c/needs-builtin.ko"]
    with pytest.raises(CloudlabError) as err:
        kernel.resolve_modules(mods, ["ext4"])
    assert "ext4" in str(err.value)


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDLAB_HOME", str(tmp_path / "home"))
    default_image()
    return ImageService()


def test_registry_create_show_delete(registry):
    assert registry.names() == [DEFAULT_IMAGE]
    small = registry.create_image("tiny10", size_mib=10)
    assert small.virtual_size == 10 * 2**20
    assert small.kernel == default_image().kernel      # same system, another disk
    assert registry.get_image("tiny10") == small
    assert registry.names() == [DEFAULT_IMAGE, "tiny10"]
    with pytest.raises(Conflict):
        registry.create_image("tiny10", size_mib=10)
    registry.delete_image("tiny10")
    with pytest.raises(NotFound) as err:
        registry.get_image("tiny10")
    assert DEFAULT_IMAGE in str(err.value)              # the error lists the valid names


def test_registry_rejects_bad_input(registry, tmp_path):
    with pytest.raises(InvalidInput):
        registry.create_image("Bad Name", size_mib=10)
    with pytest.raises(InvalidInput):
        registry.create_image("ok", size_mib=1)
    with pytest.raises(InvalidInput):
        registry.delete_image(DEFAULT_IMAGE)
    with pytest.raises(NotFound):
        registry.import_image("x", tmp_path / "missing.qcow2")
    overlay = tmp_path / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                    default_image().disk, str(overlay)], check=True)
    with pytest.raises(InvalidInput) as err:
        registry.import_image("x", overlay)
    assert "flatten" in str(err.value)
    assert not (registry.root / "x").exists()          # nothing half-registered


def test_registry_imports_raw_disk(registry, tmp_path):
    raw = tmp_path / "disk.raw"
    with open(raw, "wb") as f:
        f.truncate(8 * 2**20)
    img = registry.import_image("rawdisk", raw)
    assert img.format == "raw" and img.virtual_size == 8 * 2**20
    assert img.checksum == image_mod.md5_file(raw)


def test_image_with_a_lost_disk_is_reported_and_deletable(registry):
    img = registry.create_image("lost", size_mib=10)
    __import__("os").unlink(img.disk)
    with pytest.raises(NotFound) as err:
        registry.get_image("lost")
    assert "missing" in str(err.value) and "delete_image" in str(err.value)
    registry.delete_image("lost")
    assert "lost" not in [p.name for p in registry.root.iterdir()]


def test_root_disk_has_modules_loaded_on_demand():
    # the NFS client is not in the initramfs (nothing loads it at boot) but on the root
    # disk, where busybox's modprobe finds it when `mount -t nfs4` asks for fs-nfs4
    img = default_image()
    rootfs = Path(img.disk).parent / "rootfs"
    manifest = json.loads((Path(img.disk).parent / "manifest.json").read_text())
    modules = rootfs / "lib" / "modules" / manifest["kernel_release"]
    deps = dict(line.split(":", 1) for line in (modules / "modules.dep").read_text().splitlines())
    nfsv4 = next(path for path in deps if path.endswith("/nfsv4.ko"))
    assert "sunrpc.ko" in deps[nfsv4] and "nfs.ko" in deps[nfsv4]
    assert all((modules / path).is_file() for path in deps)
    assert "alias fs-nfs4 nfsv4" in (rootfs / "etc/modprobe.d/cloudlab.conf").read_text()
    assert "nfsv4.ko" in manifest["disk_modules"]
    assert (rootfs / "usr/bin/lsblk").stat().st_mode & 0o111
    listing = subprocess.run(["cpio", "-it", "--quiet"], stdin=open(img.initrd, "rb"),
                             capture_output=True, text=True, check=True).stdout.split()
    assert "lib/modules/nfsv4.ko" not in listing        # no boot pays for it
