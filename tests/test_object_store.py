"""The Swift view of the object store, driven by real clients: python-swiftclient
(library), the ``swift`` command line, and raw ``http.client`` where a client would
tidy the request (missing Content-Length, odd paths).  Every status code the view
promises is provoked at least once; listings are compared with a model.
"""

import hashlib
import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import swiftclient
from swiftclient import ClientException

from cloudlab.object_store import ObjectStoreServer, Users
from cloudlab.object_store.storage import Store

SWIFT_CLI = str(Path(sys.executable).with_name("swift"))
USERS = {"test:tester": "testing", "other:bob": "secret"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ObjectStoreServer(tmp_path_factory.mktemp("objstore") / "root", users=USERS).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def conn(server):
    return swiftclient.Connection(authurl=server.url + "/auth/v1.0", user="test:tester", key="testing",
                                  retries=0)


@pytest.fixture()
def container(conn, request):
    name = "c-" + request.node.name[:60].replace("[", "-").replace("]", "")
    conn.put_container(name)
    yield name
    for obj in conn.get_container(name, full_listing=True)[1]:
        conn.delete_object(name, obj["name"])
    conn.delete_container(name)


def raw(server, method, path, headers=None, body=None, token=None, conn=None):
    """Send one request with http.client (no client-side tidying); returns (status, headers, body)."""
    headers = dict(headers or {})
    if token is None and conn is not None:
        token = conn.get_auth()[1]
    if token:
        headers["X-Auth-Token"] = token
    h = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        h.putrequest(method, path, skip_accept_encoding=True)
        for k, v in headers.items():
            h.putheader(k, v)
        if body is not None and "Content-Length" not in headers and "Transfer-Encoding" not in headers:
            h.putheader("Content-Length", str(len(body)))
        h.endheaders(body)
        r = h.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        h.close()


def status_of(fn, *args, **kwargs):
    with pytest.raises(ClientException) as exc:
        fn(*args, **kwargs)
    return exc.value.http_status


# ---- auth and info ---------------------------------------------------------------------

def test_auth_returns_storage_url_token_and_expiry(server):
    status, h, _ = raw(server, "GET", "/auth/v1.0", {"X-Auth-User": "test:tester", "X-Auth-Key": "testing"})
    assert status == 200
    assert h["x-storage-url"] == f"{server.url}/v1/AUTH_test"
    assert h["x-auth-token"].startswith("AUTH_tk") and h["x-storage-token"] == h["x-auth-token"]
    assert 0 < int(h["x-auth-token-expires"]) <= 86400
    assert h["x-trans-id"].startswith("tx")


def test_auth_accepts_storage_user_headers(server):
    status, h, _ = raw(server, "GET", "/auth/v1.0", {"X-Storage-User": "other:bob", "X-Storage-Pass": "secret"})
    assert status == 200 and h["x-storage-url"].endswith("/v1/AUTH_other")


@pytest.mark.parametrize("headers", [
    {"X-Auth-User": "test:tester", "X-Auth-Key": "wrong"},
    {"X-Auth-User": "nobody:x", "X-Auth-Key": "testing"},
    {},
])
def test_auth_rejects_bad_credentials(server, headers):
    assert raw(server, "GET", "/auth/v1.0", headers)[0] == 401


def test_requests_without_or_with_bad_token_are_401(server):
    assert raw(server, "HEAD", "/v1/AUTH_test")[0] == 401
    assert raw(server, "HEAD", "/v1/AUTH_test", token="AUTH_tknotatoken")[0] == 401


def test_token_of_another_account_is_403(server, conn):
    assert raw(server, "HEAD", "/v1/AUTH_other", conn=conn)[0] == 403


def test_expired_token_is_401(tmp_path):
    srv = ObjectStoreServer(tmp_path, users=Users(token_ttl=0.3)).start()
    try:
        _, h, _ = raw(srv, "GET", "/auth/v1.0", {"X-Auth-User": "test:tester", "X-Auth-Key": "testing"})
        token = h["x-auth-token"]
        assert raw(srv, "HEAD", "/v1/AUTH_test", token=token)[0] == 204
        time.sleep(0.5)
        assert raw(srv, "HEAD", "/v1/AUTH_test", token=token)[0] == 401
    finally:
        srv.stop()


def test_info_is_public_and_lists_swift_limits(server, conn):
    status, h, body = raw(server, "GET", "/info")
    assert status == 200 and h["content-type"].startswith("application/json")
    swift = json.loads(body)["swift"]
    assert swift["max_file_size"] == 5368709122
    assert swift["max_meta_name_length"] == 128 and swift["max_meta_value_length"] == 256
    assert swift["max_meta_count"] == 90 and swift["max_meta_overall_size"] == 4096
    assert swift["max_object_name_length"] == 1024 and swift["container_listing_limit"] == 10000
    assert conn.get_capabilities()["swift"]["account_listing_limit"] == 10000


def test_a_path_outside_swifts_is_the_s3_views(server):
    status, h, body = raw(server, "GET", "/nothing-here")
    assert status in (403, 404) and h["content-type"].startswith("application/xml")
    assert b"<Error><Code>" in body


# ---- account ---------------------------------------------------------------------------

def test_account_head_counts_and_metadata(conn, container):
    conn.put_object(container, "one", b"12345")
    conn.post_account({"X-Account-Meta-Team": "blue"})
    h = conn.head_account()
    assert h["x-account-meta-team"] == "blue"
    assert int(h["x-account-container-count"]) >= 1
    assert int(h["x-account-object-count"]) >= 1 and int(h["x-account-bytes-used"]) >= 5
    assert "x-timestamp" in h
    conn.post_account({"X-Remove-Account-Meta-Team": "x"})
    assert "x-account-meta-team" not in conn.head_account()


def test_account_listing_formats_and_paging(server, conn):
    names = ["acct-a", "acct-b", "acct-c", "acct-d"]
    for n in names:
        conn.put_container(n)
    try:
        _, listing = conn.get_account(prefix="acct-")
        assert [c["name"] for c in listing] == names
        assert set(listing[0]) >= {"name", "count", "bytes"}
        assert [c["name"] for c in conn.get_account(prefix="acct-", marker="acct-a", limit=2)[1]] == \
            ["acct-b", "acct-c"]
        assert [c["name"] for c in conn.get_account(prefix="acct-", end_marker="acct-c")[1]] == ["acct-a", "acct-b"]
        status, h, body = raw(server, "GET", "/v1/AUTH_test?prefix=acct-", conn=conn)
        assert status == 200 and h["content-type"].startswith("text/plain")
        assert body.decode().splitlines() == names
        status, h, body = raw(server, "GET", "/v1/AUTH_test?prefix=acct-&format=xml", conn=conn)
        assert status == 200 and b"<name>acct-b</name>" in body and body.startswith(b"<?xml")
        assert raw(server, "GET", "/v1/AUTH_test?limit=10001", conn=conn)[0] == 412
    finally:
        for n in names:
            conn.delete_container(n)


def test_empty_plain_listing_is_204_json_is_200(server, conn):
    status, _, body = raw(server, "GET", "/v1/AUTH_test?prefix=nothing-matches", conn=conn)
    assert status == 204 and body == b""
    status, _, body = raw(server, "GET", "/v1/AUTH_test?prefix=nothing-matches&format=json", conn=conn)
    assert status == 200 and json.loads(body) == []


# ---- containers ------------------------------------------------------------------------

def test_container_lifecycle_and_codes(server, conn):
    assert raw(server, "PUT", "/v1/AUTH_test/life", {"X-Container-Meta-Owner": "ann"}, b"", conn=conn)[0] == 201
    assert raw(server, "PUT", "/v1/AUTH_test/life", {}, b"", conn=conn)[0] == 202
    h = conn.head_container("life")
    assert h["x-container-meta-owner"] == "ann" and h["x-container-object-count"] == "0"
    status, _, _ = raw(server, "HEAD", "/v1/AUTH_test/life", conn=conn)
    assert status == 204
    conn.post_container("life", {"X-Container-Meta-Owner": "bob", "X-Container-Meta-Colour": "red"})
    h = conn.head_container("life")
    assert h["x-container-meta-owner"] == "bob" and h["x-container-meta-colour"] == "red"
    conn.post_container("life", {"X-Remove-Container-Meta-Colour": "x"})
    assert "x-container-meta-colour" not in conn.head_container("life")
    assert raw(server, "GET", "/v1/AUTH_test/life", conn=conn)[0] == 204
    conn.put_object("life", "x", b"data")
    assert status_of(conn.delete_container, "life") == 409
    conn.delete_object("life", "x")
    conn.delete_container("life")
    assert status_of(conn.head_container, "life") == 404
    assert status_of(conn.get_container, "life") == 404
    assert status_of(conn.post_container, "life", {"X-Container-Meta-A": "b"}) == 404
    assert status_of(conn.delete_container, "life") == 404


def test_container_name_too_long_is_400(conn):
    assert status_of(conn.put_container, "c" * 257) == 400
    conn.put_container("c" * 256)
    conn.delete_container("c" * 256)


def test_accounts_are_isolated(server, conn, container):
    other = swiftclient.Connection(authurl=server.url + "/auth/v1.0", user="other:bob", key="secret", retries=0)
    conn.put_object(container, "private", b"mine")
    other.put_container(container)
    try:
        assert other.get_container(container)[1] == []
        assert status_of(other.get_object, container, "private") == 404
        assert status_of(other.get_object, container, "private") == 404
    finally:
        other.delete_container(container)


# ---- objects ---------------------------------------------------------------------------

def test_put_get_head_with_metadata_and_headers(conn, container):
    body = b"hello object storage"
    etag = conn.put_object(container, "notes/hello.txt", body, content_type="text/plain",
                           headers={"X-Object-Meta-Author": "ann", "Content-Disposition": "inline"})
    assert etag == hashlib.md5(body).hexdigest()
    h, got = conn.get_object(container, "notes/hello.txt")
    assert got == body
    assert h["etag"] == etag and h["content-type"] == "text/plain" and h["content-length"] == str(len(body))
    assert h["x-object-meta-author"] == "ann" and h["content-disposition"] == "inline"
    assert h["accept-ranges"] == "bytes"
    for name in ("last-modified", "x-timestamp", "x-trans-id"):
        assert name in h
    assert abs(float(h["x-timestamp"]) - time.time()) < 60
    assert conn.head_object(container, "notes/hello.txt")["x-object-meta-author"] == "ann"


def test_content_type_guessed_from_name_when_missing(server, conn, container):
    raw(server, "PUT", f"/v1/AUTH_test/{container}/pic.png", {}, b"png", conn=conn)
    assert conn.head_object(container, "pic.png")["content-type"] == "image/png"


@pytest.mark.parametrize("size", [10, 300 * 1024])
def test_content_type_with_parameters_is_kept_exactly(conn, container, size):
    ctype = "text/plain; charset=utf-8; format=flowed"
    conn.put_object(container, "typed", b"t" * size, content_type=ctype)
    headers, body = conn.get_object(container, "typed")
    assert headers["content-type"] == ctype and len(body) == size
    assert conn.head_object(container, "typed")["content-type"] == ctype


def test_etag_mismatch_is_422_and_nothing_stored(conn, container):
    assert status_of(conn.put_object, container, "bad", b"abc", etag="0" * 32) == 422
    assert status_of(conn.head_object, container, "bad") == 404
    assert conn.put_object(container, "good", b"abc", etag=hashlib.md5(b"abc").hexdigest())


def test_chunked_upload(conn, container):
    import io
    body = os.urandom(3 * 1024 * 1024 + 17)
    etag = conn.put_object(container, "chunked.bin", io.BytesIO(body), chunk_size=65536)
    assert etag == hashlib.md5(body).hexdigest()
    assert conn.get_object(container, "chunked.bin")[1] == body
    # a range across the 1 MiB read-chunk boundary of a large object (streamed answer)
    first, last = (1 << 20) - 100, (2 << 20) + 100
    h, part = conn.get_object(container, "chunked.bin", headers={"Range": f"bytes={first}-{last}"})
    assert part == body[first:last + 1] and h["content-range"] == f"bytes {first}-{last}/{len(body)}"


def test_missing_content_length_is_411(server, conn, container):
    assert raw(server, "PUT", f"/v1/AUTH_test/{container}/nolen", {}, None, conn=conn)[0] == 411


def test_too_large_content_length_is_413(server, conn, container):
    status, _, _ = raw(server, "PUT", f"/v1/AUTH_test/{container}/huge",
                       {"Content-Length": str(5368709123)}, None, conn=conn)
    assert status == 413


def test_object_name_too_long_is_400(conn, container):
    assert status_of(conn.put_object, container, "o" * 1025, b"x") == 400
    conn.put_object(container, "o" * 1024, b"x")
    assert conn.head_object(container, "o" * 1024)["content-length"] == "1"


def test_put_into_missing_container_is_404(conn):
    assert status_of(conn.put_object, "no-such-container", "x", b"x") == 404


@pytest.mark.parametrize("headers", [
    {"X-Object-Meta-" + "n" * 129: "v"},
    {"X-Object-Meta-Big": "v" * 257},
    {f"X-Object-Meta-K{i}": "v" for i in range(91)},
    {f"X-Object-Meta-K{i}": "v" * 200 for i in range(21)},
    {"X-Object-Meta-": "empty name"},
])
def test_metadata_limits_are_400(server, conn, container, headers):
    status, _, _ = raw(server, "PUT", f"/v1/AUTH_test/{container}/meta", headers, b"x", conn=conn)
    assert status == 400
    assert status_of(conn.head_object, container, "meta") == 404


def test_metadata_at_the_limits_is_accepted(conn, container):
    headers = {"X-Object-Meta-" + "n" * 128: "v" * 256}
    conn.put_object(container, "edge", b"x", headers=headers)
    assert conn.head_object(container, "edge")["x-object-meta-" + "n" * 128] == "v" * 256


def test_ranges(server, conn, container):
    body = bytes(range(256)) * 4
    conn.put_object(container, "r", body)
    for header, first, last in [("bytes=0-9", 0, 9), ("bytes=1000-", 1000, 1023), ("bytes=-5", 1019, 1023),
                                ("bytes=10-5000", 10, 1023)]:
        h, got = conn.get_object(container, "r", headers={"Range": header})
        assert got == body[first:last + 1], header
        assert h["content-range"] == f"bytes {first}-{last}/1024", header
    status, h, _ = raw(server, "GET", f"/v1/AUTH_test/{container}/r", {"Range": "bytes=5000-"}, conn=conn)
    assert status == 416 and h["content-range"] == f"bytes */{len(body)}"
    # a malformed range is ignored: the whole object comes back
    status, _, got = raw(server, "GET", f"/v1/AUTH_test/{container}/r", {"Range": "bytes=x-y"}, conn=conn)
    assert status == 200 and got == body


def test_conditional_requests(server, conn, container):
    etag = conn.put_object(container, "cond", b"v1")
    h = conn.head_object(container, "cond")
    lm = h["last-modified"]
    path = f"/v1/AUTH_test/{container}/cond"
    assert raw(server, "GET", path, {"If-Match": etag}, conn=conn)[0] == 200
    assert raw(server, "GET", path, {"If-Match": '"' + "0" * 32 + '"'}, conn=conn)[0] == 412
    assert raw(server, "GET", path, {"If-None-Match": etag}, conn=conn)[0] == 304
    assert raw(server, "GET", path, {"If-None-Match": "*"}, conn=conn)[0] == 304
    assert raw(server, "HEAD", path, {"If-None-Match": "0" * 32}, conn=conn)[0] == 200
    assert raw(server, "GET", path, {"If-Modified-Since": lm}, conn=conn)[0] == 304
    assert raw(server, "GET", path, {"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}, conn=conn)[0] == 200
    assert raw(server, "GET", path, {"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}, conn=conn)[0] == 412
    assert raw(server, "GET", path, {"If-Unmodified-Since": lm}, conn=conn)[0] == 200
    # PUT with If-None-Match: * refuses to overwrite
    assert raw(server, "PUT", path, {"If-None-Match": "*"}, b"v2", conn=conn)[0] == 412


def test_post_replaces_object_metadata(conn, container):
    conn.put_object(container, "p", b"body", headers={"X-Object-Meta-A": "1", "X-Object-Meta-B": "2"})
    conn.post_object(container, "p", {"X-Object-Meta-C": "3", "Content-Type": "text/x-new"})
    h, body = conn.get_object(container, "p")
    assert body == b"body" and h["x-object-meta-c"] == "3" and h["content-type"] == "text/x-new"
    assert "x-object-meta-a" not in h and "x-object-meta-b" not in h
    assert h["etag"] == hashlib.md5(b"body").hexdigest()
    assert status_of(conn.post_object, container, "missing", {"X-Object-Meta-A": "1"}) == 404


def test_post_status_is_202(server, conn, container):
    conn.put_object(container, "p202", b"x")
    assert raw(server, "POST", f"/v1/AUTH_test/{container}/p202", {"X-Object-Meta-A": "1"}, b"", conn=conn)[0] == 202


def test_delete_object(conn, container):
    conn.put_object(container, "gone", b"x")
    conn.delete_object(container, "gone")
    assert status_of(conn.get_object, container, "gone") == 404
    assert status_of(conn.delete_object, container, "gone") == 404


def test_copy_and_x_copy_from(server, conn, container):
    conn.put_object(container, "src", b"payload", content_type="text/plain",
                    headers={"X-Object-Meta-Keep": "yes"})
    status, h, _ = raw(server, "COPY", f"/v1/AUTH_test/{container}/src",
                       {"Destination": f"{container}/dst1", "X-Object-Meta-Extra": "1"}, conn=conn)
    assert status == 201 and h["x-copied-from"] == f"{container}/src"
    h1, b1 = conn.get_object(container, "dst1")
    assert b1 == b"payload" and h1["x-object-meta-keep"] == "yes" and h1["x-object-meta-extra"] == "1"
    assert h1["content-type"] == "text/plain"
    conn.put_object(container, "dst2", None, headers={"X-Copy-From": f"/{container}/src",
                                                       "X-Fresh-Metadata": "true"})
    h2, b2 = conn.get_object(container, "dst2")
    assert b2 == b"payload" and "x-object-meta-keep" not in h2
    assert status_of(conn.put_object, container, "dst3", None, headers={"X-Copy-From": f"{container}/nope"}) == 404
    assert raw(server, "COPY", f"/v1/AUTH_test/{container}/src", {}, conn=conn)[0] == 412


def test_disk_errors_answer_503_and_store_nothing(server, conn, container):
    """A container whose directory vanished behind the store's back: a clear 503, no traceback."""
    import shutil
    from cloudlab.object_store.storage import _hash
    objects = Path(server.root) / "accounts" / _hash("AUTH_test") / "containers" / _hash(container) / "objects"
    assert objects.is_dir()
    shutil.rmtree(objects)
    try:
        status, _, body = raw(server, "PUT", f"/v1/AUTH_test/{container}/lost", {}, b"data", conn=conn)
        assert status == 503 and b"could not write to its disk" in body
        assert status_of(conn.head_object, container, "lost") == 404
    finally:
        objects.mkdir()


def test_nul_and_bad_utf8_in_path_are_412(server, conn, container):
    assert raw(server, "PUT", f"/v1/AUTH_test/{container}/a%00b", {}, b"x", conn=conn)[0] == 412
    assert raw(server, "PUT", f"/v1/AUTH_test/{container}/a%ffb", {}, b"x", conn=conn)[0] == 412


def test_method_not_allowed_is_405(server, conn, container):
    assert raw(server, "PATCH", f"/v1/AUTH_test/{container}", {}, b"", conn=conn)[0] == 405


# ---- listings ----------------------------------------------------------------------------

NAMES = ["a", "a/b", "a/b/c", "a/c", "ab", "b/x", "b/y/z", "c", "d.txt", "photos/2024/1.jpg",
         "photos/2024/2.jpg", "photos/2025/1.jpg", "z"]


def model(names, prefix="", delimiter=None, marker=None, end_marker=None, limit=10000):
    """What a listing must return (as Swift answers), computed the slow obvious way.

    Names after ``marker`` and before ``end_marker`` are rolled up at the first
    delimiter after the prefix; a rolled-up prefix equal to the marker was the last
    entry of the previous page, so it is not repeated.
    """
    out = []
    for n in sorted(names):
        if not n.startswith(prefix) or (marker and n <= marker) or (end_marker and n >= end_marker):
            continue
        entry = n
        if delimiter:
            pos = n.find(delimiter, len(prefix))
            if pos >= 0:
                entry = n[:pos + len(delimiter)]
        if entry == marker or (out and out[-1] == entry):
            continue
        out.append(entry)
    return out[:limit]


@pytest.fixture(scope="module")
def listing_container(conn):
    conn.put_container("listing")
    for n in NAMES:
        conn.put_object("listing", n, n.encode())
    yield "listing"
    for n in NAMES:
        conn.delete_object("listing", n)
    conn.delete_container("listing")


@pytest.mark.parametrize("params", [
    {}, {"prefix": "a"}, {"prefix": "a/"}, {"delimiter": "/"}, {"prefix": "a/", "delimiter": "/"},
    {"prefix": "photos/", "delimiter": "/"}, {"marker": "a/b"}, {"marker": "b/", "delimiter": "/"},
    {"end_marker": "b"}, {"marker": "a", "end_marker": "c", "limit": 3}, {"limit": 1},
    {"prefix": "photos/2024/", "marker": "photos/2024/1.jpg"}, {"prefix": "nope"},
])
def test_listing_matches_model(conn, listing_container, params):
    _, got = conn.get_container(listing_container, **params)
    names = [e.get("name", e.get("subdir")) for e in got]
    assert names == model(NAMES, **params)
    for e in got:
        if "subdir" in e:
            assert params.get("delimiter") and e["subdir"].endswith("/")
        else:
            assert e["hash"] == hashlib.md5(e["name"].encode()).hexdigest() and e["bytes"] == len(e["name"])


def test_listing_path_and_xml_subdir(server, conn, listing_container):
    _, _, body = raw(server, "GET", "/v1/AUTH_test/listing?path=photos/2024", conn=conn)
    assert body.decode().splitlines() == ["photos/2024/1.jpg", "photos/2024/2.jpg"]
    _, _, body = raw(server, "GET", "/v1/AUTH_test/listing?delimiter=/&format=xml", conn=conn)
    assert b'<subdir name="photos/"><name>photos/</name></subdir>' in body
    # a delimiter of several characters rolls up at the whole string, as in Swift
    _, _, body = raw(server, "GET", "/v1/AUTH_test/listing?delimiter=/1&prefix=photos/", conn=conn)
    assert body.decode().splitlines() == ["photos/2024/1", "photos/2024/2.jpg", "photos/2025/1"]


def test_full_listing_pages_through_many_objects(conn):
    """More objects than one page (limit): the client pages with markers and gets each once."""
    conn.put_container("many")
    names = [f"obj-{i:05d}" for i in range(120)]
    try:
        for n in names:
            conn.put_object("many", n, b"")
        pages = []
        marker = ""
        while True:
            _, page = conn.get_container("many", marker=marker, limit=50)
            if not page:
                break
            pages.append([e["name"] for e in page])
            marker = page[-1]["name"]
        assert [len(p) for p in pages] == [50, 50, 20]
        assert sum(pages, []) == names
    finally:
        for n in names:
            conn.delete_object("many", n)
        conn.delete_container("many")


# ---- the swift command line ------------------------------------------------------------------

def swift_cli(server, *args, cwd=None):
    cmd = [SWIFT_CLI, "-A", server.url + "/auth/v1.0", "-U", "test:tester", "-K", "testing", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_swift_cli_upload_list_stat_download_post_delete(server, conn, tmp_path):
    src = tmp_path / "up"
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "a.txt").write_text("alpha\n")
    (src / "b.bin").write_bytes(os.urandom(70000))
    swift_cli(server, "upload", "cli", "docs/a.txt", "b.bin", cwd=src)
    assert swift_cli(server, "list", "cli").split() == ["b.bin", "docs/a.txt"]
    assert swift_cli(server, "list", "cli", "--delimiter", "/").split() == ["b.bin", "docs/"]
    stat = swift_cli(server, "stat", "cli", "docs/a.txt")
    assert hashlib.md5(b"alpha\n").hexdigest() in stat and "Content Length: 6" in stat
    swift_cli(server, "post", "cli", "docs/a.txt", "-m", "Color:blue")
    assert conn.head_object("cli", "docs/a.txt")["x-object-meta-color"] == "blue"
    account = swift_cli(server, "stat")
    assert "Account: AUTH_test" in account and "Containers:" in account
    out = tmp_path / "down"
    out.mkdir()
    swift_cli(server, "download", "cli", cwd=out)
    assert (out / "docs" / "a.txt").read_text() == "alpha\n"
    assert (out / "b.bin").read_bytes() == (src / "b.bin").read_bytes()
    swift_cli(server, "delete", "cli")
    assert status_of(conn.head_container, "cli") == 404


# ---- names can never leave the root ------------------------------------------------------------

ESCAPES = ["../escape", "../../../../etc/passwd", "/etc/passwd", "a/../../b", "..", ".", "%2e%2e/x",
           "..\\..\\win", "~/x", "a" * 1024, "\u00e9t\u00e9/\u2603/..", "x/" * 300]


def test_hostile_object_names_stay_inside_the_root(server, conn, tmp_path_factory):
    conn.put_container("escape")
    token = conn.get_auth()[1]
    before = set(os.listdir(Path(server.root).parent))
    try:
        for i, name in enumerate(ESCAPES):
            body = f"escape {i}".encode()
            path = "/v1/AUTH_test/escape/" + quote(name, safe="/")
            status, _, _ = raw(server, "PUT", path, {}, body, token=token)
            assert status == 201, name
            status, h, got = raw(server, "GET", path, {}, token=token)
            assert status == 200 and got == body, name
        # percent-encoded dots reach the store as a name, never as a directory step
        assert raw(server, "PUT", "/v1/AUTH_test/escape/%2e%2e/%2E%2E/dots", {}, b"d", token=token)[0] == 201
        assert raw(server, "GET", "/v1/AUTH_test/escape/../../dots", {}, token=token)[2] == b"d"
        listed = {e["name"] for e in conn.get_container("escape", full_listing=True)[1]}
        assert "%2e%2e/x" in listed and "../../../../etc/passwd" in listed and "/etc/passwd" in listed
        # nothing appeared next to the root, and every file under it has a hashed name
        assert set(os.listdir(Path(server.root).parent)) == before
        for dirpath, dirnames, filenames in os.walk(server.root):
            for f in filenames:
                assert f in ("account.json", "container.json") or \
                    (len(f) == 68 and f.endswith(".obj")), f
        assert raw(server, "GET", "/v1/AUTH_test/escape/..%2F..%2Fetc%2Fshadow", {}, token=token)[0] == 404
    finally:
        # raw requests: client libraries would resolve the dot segments of these names
        for e in conn.get_container("escape", full_listing=True)[1]:
            raw(server, "DELETE", "/v1/AUTH_test/escape/" + quote(e["name"], safe="/"), token=token)
        conn.delete_container("escape")


def test_storage_rejects_nul_and_overlong_names(tmp_path):
    import asyncio
    from cloudlab.errors import InvalidInput

    async def go():
        store = Store(tmp_path)
        await store.create_container("AUTH_t", "c")
        for bad in ["a\x00b", "x" * 1025, ""]:
            with pytest.raises(InvalidInput):
                await store.put_object("AUTH_t", "c", bad, b"x")
        for bad in ["a/b", "c" * 257, "\x00"]:
            with pytest.raises(InvalidInput):
                await store.create_container("AUTH_t", bad)
        with pytest.raises(InvalidInput):
            await store.account_info("a\x00")
        store.close()
    asyncio.run(go())
    assert {p.name for p in tmp_path.iterdir()} == {"accounts"}


# ---- the lab service and the command line ------------------------------------------------------

def test_lab_service_starts_serves_and_cleans_up(tmp_path, monkeypatch):
    import cloudlab as cl
    monkeypatch.setenv("CLOUDLAB_HOME", str(tmp_path))
    lab = cl.Lab(name="objtest")
    store = lab.object_store
    assert store.url.startswith("http://127.0.0.1:") and store.auth_url == store.url + "/auth/v1.0"
    assert store.storage_url("test") == store.url + "/v1/AUTH_test"
    assert store.users == {"test:tester": "testing"}
    assert Path(store.root).is_relative_to(tmp_path)
    conn = store.connection()
    conn.put_container("lab")
    conn.put_object("lab", "x", b"from the lab")
    assert conn.get_object("lab", "x")[1] == b"from the lab"
    assert conn.get_auth()[0] == store.storage_url()
    assert store.s3_client().meta.endpoint_url == store.url
    with pytest.raises(cl.NotFound):
        store.connection("nobody:here")
    lab.stop()
    assert not Path(store.root).exists()
    with pytest.raises(OSError):
        http.client.HTTPConnection("127.0.0.1", store.server.port, timeout=2).request("GET", "/info")


def test_cli_rejects_bad_user_and_busy_port(server, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "cloudlab", "object-store", "--root", str(tmp_path), *args],
                              capture_output=True, text=True, timeout=30,
                              cwd=Path(__file__).resolve().parent.parent)
    bad = run("--user", "nokey")
    assert bad.returncode == 2 and "ACCOUNT:USER=KEY" in bad.stderr
    busy = run("--port", str(server.port))
    assert busy.returncode == 2 and "choose another --port" in busy.stderr


def test_cli_serves_inherited_sockets_and_stops_with_its_parent(tmp_path):
    """``--fd N`` (repeatable): one store on sockets the starting process bound, as a node's process gets them."""
    import socket
    first, second = socket.create_server(("127.0.0.1", 0)), socket.create_server(("127.0.0.1", 0))
    read_end, write_end = os.pipe()
    fds = (first.fileno(), second.fileno(), read_end)
    proc = subprocess.Popen([sys.executable, "-m", "cloudlab", "object-store", "--root", str(tmp_path / "root"),
                             "--fd", str(first.fileno()), "--fd", str(second.fileno()),
                             "--parent-fd", str(read_end), "--user", "lab:learner=sesame"],
                            pass_fds=fds, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    os.close(read_end)
    try:
        urls = [f"http://127.0.0.1:{s.getsockname()[1]}" for s in (first, second)]
        line = proc.stdout.readline()
        assert f"listening on {urls[0]} and {urls[1]}" in line, proc.stderr.read()
        # one store behind both sockets: written through one, read through the other
        put = swiftclient.Connection(authurl=urls[0] + "/auth/v1.0", user="lab:learner", key="sesame", retries=0)
        put.put_container("fds")
        put.put_object("fds", "note", b"one store, two sockets")
        get = swiftclient.Connection(authurl=urls[1] + "/auth/v1.0", user="lab:learner", key="sesame", retries=0)
        assert get.get_object("fds", "note")[1] == b"one store, two sockets"
        assert get.get_auth()[0] == urls[1] + "/v1/AUTH_lab"      # each client is told its own address
        # the starting process is gone (its end of the pipe closes): the store stops by itself
        os.close(write_end)
        write_end = None
        assert proc.wait(timeout=10) == 0
    finally:
        if write_end is not None:
            os.close(write_end)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        first.close()
        second.close()


def test_cli_rejects_fds_that_are_not_listening_sockets(tmp_path):
    import socket
    connected, peer = socket.socketpair()
    with open(tmp_path / "file", "w") as plain, connected, peer:
        def run(*args, fds=()):
            env = {k: v for k, v in os.environ.items() if k != "CLOUDLAB_KEYSTONE_PASSWORD"}
            return subprocess.run([sys.executable, "-m", "cloudlab", "object-store", "--root", str(tmp_path),
                                   *args], capture_output=True, text=True, timeout=30, pass_fds=fds, env=env,
                                  cwd=Path(__file__).resolve().parent.parent)
        cases = [(("--fd", "97"), (), "--fd 97 is not a socket"),
                 (("--fd", str(plain.fileno())), (plain.fileno(),), "is not a socket"),
                 (("--fd", str(connected.fileno())), (connected.fileno(),), "is not a listening TCP socket"),
                 (("--fd", str(plain.fileno()), "--port", "0"), (plain.fileno(),), "--host and --port do not apply"),
                 (("--parent-fd", str(plain.fileno())), (plain.fileno(),), "--parent-fd"),
                 (("--keystone-url", "http://127.0.0.1:9"), (), "CLOUDLAB_KEYSTONE_PASSWORD")]
        for args, fds, message in cases:
            result = run(*args, fds=fds)
            assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
            assert "Traceback" not in result.stderr


def test_the_proxy_passes_swift_and_s3_on_unchanged_and_says_502_without_its_object_server(tmp_path):
    """``--upstream``: the controller's proxy in front of an object server (both real processes, on loopback)."""
    import socket
    import boto3
    import requests
    from botocore.config import Config
    repo = Path(__file__).resolve().parent.parent
    backend_sock, front_sock = socket.create_server(("127.0.0.1", 0)), socket.create_server(("127.0.0.1", 0))
    backend_url = f"http://127.0.0.1:{backend_sock.getsockname()[1]}"
    front_url = f"http://127.0.0.1:{front_sock.getsockname()[1]}"
    backend = subprocess.Popen([sys.executable, "-m", "cloudlab", "object-store", "--root", str(tmp_path / "root"),
                                "--fd", str(backend_sock.fileno())], pass_fds=(backend_sock.fileno(),),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=repo)
    backend_sock.close()        # the object server's alone: once it ends, its port refuses
    front = subprocess.Popen([sys.executable, "-m", "cloudlab", "object-store", "--upstream", backend_url,
                              "--fd", str(front_sock.fileno())], pass_fds=(front_sock.fileno(),),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=repo)
    try:
        assert "listening on" in backend.stdout.readline()
        assert f"passing requests to {backend_url}" in front.stdout.readline(), front.stderr.read()
        swift = swiftclient.Connection(authurl=front_url + "/auth/v1.0", user="test:tester", key="testing",
                                       retries=0)
        assert swift.get_auth()[0] == front_url + "/v1/AUTH_test"     # the Host the client used goes through
        big = os.urandom(3 << 20)
        swift.put_container("via")
        swift.put_object("via", "big.bin", big)
        headers, body = swift.get_object("via", "big.bin")
        assert body == big and headers["etag"] == hashlib.md5(big).hexdigest()
        assert swift.head_object("via", "big.bin")["content-length"] == str(len(big))
        part = requests.get(f"{front_url}/v1/AUTH_test/via/big.bin", headers={"X-Auth-Token": swift.token,
                                                                             "Range": "bytes=10-19"}, timeout=10)
        assert part.status_code == 206 and part.content == big[10:20]
        # an S3 signature covers the Host, the path and the headers: all reach the object server as signed
        s3 = boto3.client("s3", endpoint_url=front_url, aws_access_key_id="test:tester",
                          aws_secret_access_key="testing", region_name="us-east-1",
                          config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                        request_checksum_calculation="when_required",
                                        response_checksum_validation="when_required", retries={"max_attempts": 1}))
        s3.put_object(Bucket="via", Key="s3 name.txt", Body=b"signed", Metadata={"colour": "blue"})
        got = s3.get_object(Bucket="via", Key="s3 name.txt")
        assert got["Body"].read() == b"signed" and got["Metadata"] == {"colour": "blue"}
        assert requests.get(f"{front_url}/v1/AUTH_test/via/big.bin", timeout=10).status_code == 401
        # the object server gone: the proxy answers 502 naming it, after trying for a few seconds
        backend.terminate()
        backend.wait(timeout=10)
        gone = requests.get(f"{front_url}/info", timeout=30)
        assert gone.status_code == 502 and backend_url in gone.text
    finally:
        for proc in (front, backend):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
        front_sock.close()


def test_the_proxy_refuses_what_belongs_to_the_object_server(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "cloudlab", "object-store", *args], capture_output=True,
                              text=True, timeout=30, cwd=Path(__file__).resolve().parent.parent)
    for args, message in ((("--upstream", "http://127.0.0.1:9", "--root", str(tmp_path)), "--root"),
                          (("--upstream", "http://127.0.0.1:9", "--user", "a:b=c"), "--user"),
                          (("--upstream", "ftp://127.0.0.1:9"), "not an object server's base URL"),
                          (("--upstream", "http://127.0.0.1:9/v1"), "not an object server's base URL"),
                          ((), "needs --root")):
        result = run(*args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_wire_exchange_shows_request_and_response(server, conn, container):
    from cloudlab.errors import InvalidInput, NotFound
    from cloudlab.object_store.wire import exchange
    token = conn.get_auth()[1]
    ex = exchange("PUT", f"{server.url}/v1/AUTH_test/{container}/wire note.txt",
                  {"X-Auth-Token": token, "X-Object-Meta-Color": "blue"}, "hello")
    assert ex.status == 201 and ex.header("etag") == hashlib.md5(b"hello").hexdigest()
    text = ex.transcript()
    assert f"> PUT /v1/AUTH_test/{container}/wire%20note.txt HTTP/1.1" in text
    assert "> X-Object-Meta-Color: blue" in text and "< HTTP/1.1 201 Created" in text
    got = exchange("GET", f"{server.url}/v1/AUTH_test/{container}/wire note.txt", {"X-Auth-Token": token})
    assert got.body == b"hello" and "< hello" in str(got)
    with pytest.raises(InvalidInput):
        exchange("GET", "http://192.0.2.1/")
    with pytest.raises(NotFound):
        exchange("GET", "http://127.0.0.1:1/")


def test_store_with_directory_sync_writes_and_rewrites(tmp_path):
    """sync_dirs=True: the same results, with each rename made durable (group commit's second flush, or a directory fsync) before the answer."""
    import asyncio

    async def go():
        store = Store(tmp_path, sync_dirs=True)
        await store.create_container("AUTH_t", "c")
        infos = await asyncio.gather(*(store.put_object("AUTH_t", "c", f"o{i}", b"x" * i) for i in range(20)))
        assert [i.etag for i in infos] == [hashlib.md5(b"x" * i).hexdigest() for i in range(20)]
        c = store._accounts["AUTH_t"].containers["c"]
        assert c.synced == c.renames == 20     # the group commits flushed every rename
        await store.set_object_metadata("AUTH_t", "c", "o3", {"k": "v"})
        c = store._accounts["AUTH_t"].containers["c"]
        assert c.synced == c.renames == 21
        store.close()
        again = Store(tmp_path)
        assert (await again.head_object("AUTH_t", "c", "o3")).metadata == {"k": "v"}
        assert len(await again.list_objects("AUTH_t", "c")) == 20
        again.close()
    asyncio.run(go())
