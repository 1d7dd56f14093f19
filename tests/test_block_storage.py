"""Block storage without a hypervisor: volumes, snapshots, quotas, statuses and errors on real files.

Volumes here are real qcow2 and raw files made by qemu-img in a temporary lab
home; nothing is attached (tests/test_block_storage_lab.py attaches to real guests).
"""

import json

import pytest

import cloudlab as cl
from cloudlab.block_storage import BlockStorage, check_size
from cloudlab.block_storage.backend import FileBackend
from cloudlab.block_storage.volume import AVAILABLE, ERROR, GIB
from cloudlab.image import qemu_img_info


@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDLAB_HOME", str(tmp_path / "home"))
    lab = cl.Lab(name="bstest")
    yield lab
    lab.stop()


def files(lab):
    return sorted(p.name for p in lab.home.iterdir())


def test_create_show_list_delete(lab):
    bs = lab.block_storage
    volume = bs.create_volume("data", size=2, description="my data")
    assert volume.status == AVAILABLE and volume.history == ["creating", "available"]
    assert volume.size == 2 and not volume.attachments and not volume.bootable
    path = bs.backend().path(volume.id)
    info = qemu_img_info(path)
    assert (info["format"], info["virtual-size"]) == ("qcow2", 2 * GIB)
    assert bs.allocated_bytes(volume) < 2 * 2**20          # thin: nothing written yet
    assert path.name.startswith(lab.prefix)               # clean-up finds it by the prefix
    assert bs.get_volume("data") is volume and bs.get_volume(volume.id) is volume
    assert [v.name for v in bs.list_volumes()] == ["data"]
    cinder = volume.to_cinder()
    assert (cinder["id"], cinder["status"], cinder["size"], cinder["attachments"]) == (volume.id, "available", 2, [])
    volume.delete()
    assert not path.exists() and bs.list_volumes() == []
    with pytest.raises(cl.NotFound):
        bs.get_volume("data")


def test_volume_from_image_is_bootable_copy_of_its_disk(lab):
    image = lab.image.get_image("busybox")
    volume = lab.block_storage.create_volume("root", image="busybox")
    assert volume.bootable and volume.source == {"image": "busybox"}
    assert volume.size == 1                                  # the image's 64 MiB rounded up to 1 GiB
    info = qemu_img_info(lab.block_storage.backend().path(volume.id))
    assert info["virtual-size"] == GIB and "backing-filename" not in info   # a copy, not an overlay
    assert lab.block_storage.allocated_bytes(volume) >= image.size // 2


def test_snapshot_and_volume_from_snapshot_and_cascade(lab):
    bs = lab.block_storage
    volume = bs.create_volume("data", size=1)
    snapshot = bs.create_snapshot(volume, "snap1")
    assert snapshot.status == AVAILABLE and snapshot.size == 1 and snapshot.volume_id == volume.id
    copy = bs.create_volume("copy", snapshot="snap1")
    assert copy.size == 1 and copy.source == {"snapshot": snapshot.id}
    with pytest.raises(cl.InvalidInput):
        bs.create_volume("tiny", snapshot="snap1", size=1, image="busybox")
    with pytest.raises(cl.Conflict, match="snapshot"):
        volume.delete()                                      # as Cinder: snapshots first
    volume.delete(cascade=True)
    assert bs.list_snapshots() == [] and [v.name for v in bs.list_volumes()] == ["copy"]
    assert not bs.backend().snapshot_path(snapshot.id).exists()
    assert bs.backend().path(copy.id).exists()               # a copy outlives its source


def test_multiattach_volumes_are_raw(lab):
    volume = lab.block_storage.create_volume("shared", size=1, multiattach=True)
    assert qemu_img_info(lab.block_storage.backend().path(volume.id))["format"] == "raw"
    assert volume.to_cinder()["multiattach"] is True


def test_extend_detached_volume(lab):
    bs = lab.block_storage
    volume = bs.create_volume("data", size=1)
    bs.extend_volume(volume, 3)
    assert volume.size == 3 and volume.status == AVAILABLE and "extending" in volume.history
    assert qemu_img_info(bs.backend().path(volume.id))["virtual-size"] == 3 * GIB
    with pytest.raises(cl.InvalidInput, match="only grow"):
        bs.extend_volume(volume, 2)


@pytest.mark.parametrize("size", [0, -1, 1.5, "1", True, None, 5000])
def test_bad_sizes_are_refused_and_leave_nothing(lab, size):
    before = files(lab)
    with pytest.raises(cl.InvalidInput, match="size"):
        lab.block_storage.create_volume("bad", size=size if size is not None else "x")
    assert files(lab) == before and lab.block_storage.list_volumes() == []
    assert check_size(1) == 1


def test_bad_names_duplicates_and_unknowns(lab):
    bs = lab.block_storage
    with pytest.raises(cl.InvalidInput):
        bs.create_volume("no spaces", size=1)
    bs.create_volume("data", size=1)
    with pytest.raises(cl.Conflict):
        bs.create_volume("data", size=1)
    with pytest.raises(cl.NotFound, match="data"):           # the message lists what exists
        bs.get_volume("nope")
    with pytest.raises(cl.NotFound):
        bs.create_volume("x", image="no-such-image")
    with pytest.raises(cl.NotFound):
        bs.create_volume("y", snapshot="no-such-snapshot")
    with pytest.raises(cl.InvalidInput, match="volume type"):
        bs.create_volume("z", size=1, volume_type="tape")
    with pytest.raises(cl.Conflict, match="not attached"):
        bs.detach_volume("data")


def test_quotas_on_count_and_gigabytes(lab):
    bs = lab.block_storage
    assert (bs.quotas.volumes, bs.quotas.gigabytes) == (10, 20)
    bs.set_quotas(volumes=2, gigabytes=3)
    bs.create_volume("a", size=2)
    with pytest.raises(cl.QuotaExceeded, match="gigabytes"):
        bs.create_volume("b", size=2)
    with pytest.raises(cl.QuotaExceeded, match="gigabytes"):
        bs.extend_volume("a", 4)
    with pytest.raises(cl.QuotaExceeded, match="gigabytes"):
        bs.create_snapshot("a", "s")                         # snapshots count in gigabytes, as in Cinder
    bs.create_volume("b", size=1)
    with pytest.raises(cl.QuotaExceeded, match="volumes"):
        bs.create_volume("c", size=1)
    assert bs.usage() == {"volumes": 2, "snapshots": 0, "gigabytes": 3}
    assert [v.name for v in bs.list_volumes()] == ["a", "b"]   # refused requests left nothing
    with pytest.raises(cl.InvalidInput, match="below"):
        bs.set_quotas(volumes=1)
    with pytest.raises(cl.InvalidInput):
        bs.set_quotas(gigabytes=-5)
    bs.set_quotas(gigabytes=-1)                              # no limit
    bs.create_snapshot("a", "s")


def test_records_survive_a_restart_and_interrupted_work_shows_as_error(lab):
    bs = lab.block_storage
    volume = bs.create_volume("data", size=1)
    bs.create_volume("busy", size=1)
    bs.set_quotas(volumes=5)
    records = lab.home / f"{lab.prefix}block-storage.json"
    data = json.loads(records.read_text())
    busy = next(v for v in data["volumes"].values() if v["name"] == "busy")
    busy["status"] = "attaching"                              # as if the kernel died mid-attach
    records.write_text(json.dumps(data))
    again = BlockStorage(lab).start()
    assert again.get_volume("data").id == volume.id and again.get_volume("data").status == AVAILABLE
    assert again.get_volume("busy").status == ERROR
    assert again.quotas.volumes == 5
    again.delete_volume("busy")                               # an error volume can be deleted


def test_a_failing_backend_leaves_no_volume(lab):
    class Broken(FileBackend):
        name = "file"

        def create_volume(self, volume_id, size, multiattach=False):
            super().create_volume(volume_id, size, multiattach)
            raise cl.CloudlabError("disk full")

    bs = lab.block_storage
    bs._backends["file"] = Broken(lab)
    with pytest.raises(cl.CloudlabError, match="disk full"):
        bs.create_volume("data", size=1)
    assert bs.list_volumes() == [] and not list(lab.home.glob(f"{lab.prefix}volume-*"))


def test_stop_removes_every_file_of_the_service(lab):
    bs = lab.block_storage
    bs.create_volume("a", size=1)
    bs.create_snapshot("a", "s")
    lab.stop()
    assert files(lab) == []
