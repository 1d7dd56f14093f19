"""The object store's group commit (cloudlab/object_store/commit.py), in C and in Python.

Both writers must give the same results: every acknowledged upload is on the disk and
listed, concurrent uploads share flushes, one upload's failure does not fail the others
of its batch, and nothing temporary is left behind.  The crash test
(test_object_store_crash.py) kills a server that uses it.
"""

import asyncio
import hashlib
import os
import shutil

import pytest

from cloudlab.object_store import commit
from cloudlab.object_store.storage import TMP_PREFIX, Store

WRITERS = [pytest.param(None, id="native"), pytest.param(False, id="python")]


def files_under(root):
    return [os.path.join(d, f) for d, _, names in os.walk(root) for f in names]


def test_native_library_is_built_once_into_the_cache(tmp_path):
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler here: the store commits in Python (checked by the tests below)")
    built = commit.native_library(cache=tmp_path)
    assert built is not None and built.parent == tmp_path / "native" and built.suffix == ".so"
    stamp = built.stat().st_mtime_ns
    assert commit.native_library(cache=tmp_path) == built and built.stat().st_mtime_ns == stamp
    assert [p.name for p in built.parent.iterdir()] == [built.name]     # no temporary file left
    # and a store made where a compiler exists really uses it
    store = Store(tmp_path / "store")
    try:
        assert store._committer.native
    finally:
        store.close()


def test_a_cache_that_cannot_hold_the_library_means_python_not_an_error(tmp_path, caplog):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    assert commit.native_library(cache=blocker) is None
    assert "commits in Python" in caplog.text


@pytest.mark.parametrize("native", WRITERS)
def test_concurrent_uploads_share_flushes_and_all_land(tmp_path, native):
    bodies = {f"dir/o{i:03d}": os.urandom(4096 + i) for i in range(200)}

    async def go():
        store = Store(tmp_path, native=native)
        assert store._committer.native is (native is None and commit._native_writer() is not None)
        calls = []
        write = store._committer._write
        store._committer._write = lambda *a: calls.append(len(a[0])) or write(*a)
        await store.create_container("AUTH_t", "c")
        infos = await asyncio.gather(*(store.put_object("AUTH_t", "c", name, body, metadata={"n": name})
                                       for name, body in bodies.items()))
        store.close()
        return infos, calls

    infos, calls = asyncio.run(go())
    assert [i.etag for i in infos] == [hashlib.md5(b).hexdigest() for b in bodies.values()]
    assert sum(calls) == len(bodies)
    assert len(calls) < len(bodies), "every upload had a flush of its own: nothing was grouped"

    async def reopen():
        store = Store(tmp_path, native=native)
        listed = await store.list_objects("AUTH_t", "c")
        read = {}
        for e in listed:
            async with await store.get_object("AUTH_t", "c", e.name) as reader:
                read[e.name] = (await reader.read(), reader.info.metadata)
        store.close()
        return listed, read

    listed, read = asyncio.run(reopen())
    assert [e.name for e in listed] == sorted(bodies)
    assert all(read[n] == (b, {"n": n}) for n, b in bodies.items())
    assert not [f for f in files_under(tmp_path) if os.path.basename(f).startswith(TMP_PREFIX)]


@pytest.mark.parametrize("native", WRITERS)
def test_a_failed_upload_does_not_fail_its_batch(tmp_path, native):
    """Uploads to a container whose folder vanished fail with the OS's error; the rest of the batch lands."""

    async def go():
        store = Store(tmp_path, native=native)
        await store.create_container("AUTH_t", "good")
        await store.create_container("AUTH_t", "broken")
        await store.put_object("AUTH_t", "broken", "before", b"x")
        broken = store._accounts["AUTH_t"].containers["broken"]
        shutil.rmtree(broken.objects_dir)      # the disk changed behind the store's back
        results = await asyncio.gather(
            *(store.put_object("AUTH_t", "good" if i % 2 else "broken", f"o{i}", b"y" * 100) for i in range(40)),
            return_exceptions=True)
        good = await store.list_objects("AUTH_t", "good")
        broken_listing = await store.list_objects("AUTH_t", "broken")
        store.close()
        return results, good, broken_listing

    results, good, broken_listing = asyncio.run(go())
    for i, r in enumerate(results):
        if i % 2:
            assert r.etag == hashlib.md5(b"y" * 100).hexdigest()
        else:
            assert isinstance(r, FileNotFoundError), r
    assert len(good) == 20
    assert [e.name for e in broken_listing] == ["before"]     # no failed upload was indexed
    assert not [f for f in files_under(tmp_path) if os.path.basename(f).startswith(TMP_PREFIX)]


def test_closing_the_store_commits_what_is_queued(tmp_path):
    """close() waits for the uploads already handed to the committer; later ones are refused."""

    async def go():
        store = Store(tmp_path)
        await store.create_container("AUTH_t", "c")
        tasks = [asyncio.ensure_future(store.put_object("AUTH_t", "c", f"o{i}", b"z" * 10)) for i in range(30)]
        await asyncio.sleep(0)      # every task has queued its upload
        await asyncio.get_running_loop().run_in_executor(None, store.close)
        done = await asyncio.gather(*tasks)
        with pytest.raises(RuntimeError, match="closed"):
            await store.put_object("AUTH_t", "c", "late", b"z")
        return done

    assert len(asyncio.run(go())) == 30

    async def count():
        store = Store(tmp_path)
        n = len(await store.list_objects("AUTH_t", "c"))
        store.close()
        return n

    assert asyncio.run(count()) == 30
