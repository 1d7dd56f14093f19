"""The store's version index on its own (no HTTP): what a restart finds after versioned writes,
deletes and a crash in the middle of one, and listings of versions with prefixes and delimiters."""

import asyncio

from cloudlab.object_store.storage import Store


def run(coro):
    return asyncio.run(coro)


def test_versions_and_markers_survive_a_restart(tmp_path):
    async def go():
        store = Store(tmp_path)
        await store.create_container("A", "c")
        await store.update_container_config("A", "c", {"versioning": "Enabled"})
        one = await store.put_object("A", "c", "k", b"one")
        two = await store.put_object("A", "c", "k", b"two")
        marker, is_marker = await store.delete_object("A", "c", "k")
        assert is_marker
        store.close()
        again = Store(tmp_path)
        listed = await again.list_versions("A", "c")
        assert [(e.version_id, e.delete_marker, e.is_latest) for e in listed] == \
            [(marker, True, True), (two.version_id, False, False), (one.version_id, False, False)]
        reader = await again.get_object("A", "c", "k", version=one.version_id)
        assert await reader.read() == b"one"
        reader.close()
        assert (await again.container_info("A", "c")).config["versioning"] == "Enabled"
        again.close()
    run(go())


def test_a_crash_between_archiving_and_renaming_leaves_the_old_version_current(tmp_path):
    async def go():
        store = Store(tmp_path)
        await store.create_container("A", "c")
        await store.update_container_config("A", "c", {"versioning": "Enabled"})
        await store.put_object("A", "c", "k", b"one")
        two = await store.put_object("A", "c", "k", b"two")
        c = store._accounts["A"].containers["c"]
        with c.lock:
            c._archive_current("k")         # as if the server died right after this step of a third PUT
        store.close()
        again = Store(tmp_path)
        reader = await again.get_object("A", "c", "k")
        assert await reader.read() == b"two" and reader.info.version_id == two.version_id
        reader.close()
        assert [e.is_latest for e in await again.list_versions("A", "c")] == [True, False]
        again.close()
    run(go())


def test_version_listing_with_prefix_and_delimiter(tmp_path):
    async def go():
        store = Store(tmp_path)
        await store.create_container("A", "c")
        await store.update_container_config("A", "c", {"versioning": "Enabled"})
        for name in ("a/1", "a/1", "a/2", "b", "b"):
            await store.put_object("A", "c", name, name.encode())
        top = await store.list_versions("A", "c", delimiter="/")
        assert [(e.name, e.subdir) for e in top] == [("a/", True), ("b", False), ("b", False)]
        under = await store.list_versions("A", "c", prefix="a/")
        assert [e.name for e in under] == ["a/1", "a/1", "a/2"]
        first = under[0]
        rest = await store.list_versions("A", "c", prefix="a/", key_marker="a/1", version_marker=first.version_id)
        assert [e.name for e in rest] == ["a/1", "a/2"]
        store.close()
    run(go())
