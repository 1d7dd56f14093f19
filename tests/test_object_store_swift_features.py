"""The Swift API as its reference documents it, beyond plain objects: listing parameters and
formats, Accept negotiation, conditional and ranged requests (several ranges too), copies with
a Range and across accounts, container and account ACLs with anonymous reads, object expiry,
versioning, and the status codes of what is refused.  Driven by python-swiftclient and raw
``http.client`` where a client library would tidy the request.
"""

import email.parser
import json
import time
import urllib.request

import pytest
import swiftclient
from swiftclient import ClientException

from cloudlab.object_store import ObjectStoreServer
from tests.test_object_store import model, raw

USERS = {"test:tester": "testing", "other:bob": "secret"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ObjectStoreServer(tmp_path_factory.mktemp("swiftfeatures") / "root", users=USERS).start()
    yield srv
    srv.stop()


def connect(server, user="test:tester", key="testing"):
    return swiftclient.Connection(authurl=server.url + "/auth/v1.0", user=user, key=key, retries=0)


@pytest.fixture(scope="module")
def conn(server):
    return connect(server)


@pytest.fixture(scope="module")
def bob(server):
    return connect(server, "other:bob", "secret")


@pytest.fixture
def container(conn, request):
    name = "s-" + request.node.name[:50].replace("[", "-").replace("]", "")
    conn.put_container(name)
    yield name
    headers, listing = conn.get_container(name, query_string="versions")
    for obj in listing:
        query = f"version-id={obj['version_id']}" if obj.get("version_id") else None
        conn.delete_object(name, obj["name"], query_string=query)
    for obj in conn.get_container(name, full_listing=True)[1]:
        conn.delete_object(name, obj["name"])
    conn.delete_container(name)


def status_of(fn, *args, **kwargs):
    with pytest.raises(ClientException) as exc:
        fn(*args, **kwargs)
    return exc.value.http_status


# ---- listings ---------------------------------------------------------------------------------

NAMES = ["a", "a/b", "a/b/c", "a/c", "ab", "b/x", "b/y/z", "c", "photos/2024/1.jpg", "photos/2025/1.jpg", "z"]


def model_reverse(names, prefix="", delimiter=None, marker=None, end_marker=None, limit=10000):
    """Swift's reverse listing: names below ``marker``, above ``end_marker``, in descending order."""
    out = []
    for n in sorted(names, reverse=True):
        if not n.startswith(prefix) or (marker and n >= marker) or (end_marker and n <= end_marker):
            continue
        entry = n
        if delimiter:
            pos = n.find(delimiter, len(prefix))
            if pos >= 0:
                entry = n[:pos + len(delimiter)]
        if out and out[-1] == entry:
            continue
        out.append(entry)
    return out[:limit]


@pytest.fixture(scope="module")
def listed(conn):
    conn.put_container("listed")
    for n in NAMES:
        conn.put_object("listed", n, n.encode())
    yield "listed"
    for n in NAMES:
        conn.delete_object("listed", n)
    conn.delete_container("listed")


@pytest.mark.parametrize("params", [
    {}, {"delimiter": "/"}, {"prefix": "a", "delimiter": "/"}, {"marker": "b"}, {"end_marker": "b"},
    {"marker": "photos", "end_marker": "a/b", "limit": 3}, {"delimiter": "b/"}, {"prefix": "photos/", "delimiter": "/1"},
])
def test_listing_in_reverse_and_with_long_delimiters(conn, listed, params):
    _, forward = conn.get_container(listed, **params)
    assert [e.get("name", e.get("subdir")) for e in forward] == model(NAMES, **params)
    _, backward = conn.get_container(listed, query_string="reverse=true", **params)
    assert [e.get("name", e.get("subdir")) for e in backward] == model_reverse(NAMES, **params)


def test_account_listing_reverse_and_formats(server, conn):
    for n in ("rev-a", "rev-b", "rev-c"):
        conn.put_container(n)
    try:
        status, _, body = raw(server, "GET", "/v1/AUTH_test?prefix=rev-&reverse=on&format=json", conn=conn)
        assert [c["name"] for c in json.loads(body)] == ["rev-c", "rev-b", "rev-a"]
        status, h, body = raw(server, "GET", "/v1/AUTH_test?prefix=rev-&format=xml", conn=conn)
        assert status == 200 and h["content-type"].startswith("application/xml")
        assert body.count(b"<container><name>") == 3 and b'<account name="AUTH_test">' in body
    finally:
        for n in ("rev-a", "rev-b", "rev-c"):
            conn.delete_container(n)


@pytest.mark.parametrize("accept,expected", [
    ("application/json", "application/json"), ("application/xml", "application/xml"), ("text/xml", "application/xml"),
    ("*/*", "text/plain"), ("application/xml;q=0.5, application/json;q=0.9", "application/json"),
    ("text/*", "text/plain"), ("", "text/plain"),
])
def test_accept_negotiation(server, conn, listed, accept, expected):
    status, h, _ = raw(server, "GET", "/v1/AUTH_test/listed", {"Accept": accept} if accept else {}, conn=conn)
    assert status == 200 and h["content-type"].startswith(expected)


def test_unacceptable_accept_is_406_and_format_wins(server, conn, listed):
    assert raw(server, "GET", "/v1/AUTH_test/listed", {"Accept": "image/png"}, conn=conn)[0] == 406
    status, h, _ = raw(server, "GET", "/v1/AUTH_test/listed?format=json", {"Accept": "image/png"}, conn=conn)
    assert status == 200 and h["content-type"].startswith("application/json")


@pytest.mark.parametrize("path", ["/v1/AUTH_test/listed", "/v1/AUTH_test"])
def test_limits_as_swift_reads_them(server, conn, listed, path):
    # Swift's constrain_req_limit: a limit that is not a whole number is ignored, one above the maximum is 412
    whole = raw(server, "GET", path, conn=conn)
    for query in ("limit=-1", "limit=abc", "limit=", "limit=%EF%BC%91"):     # the last: a full-width digit 1
        assert raw(server, "GET", f"{path}?{query}", conn=conn)[::2] == whole[::2]
    status, _, body = raw(server, "GET", f"{path}?limit=10001", conn=conn)
    assert status == 412 and b"Maximum limit is 10000" in body
    assert raw(server, "GET", f"{path}?limit=1", conn=conn)[2].count(b"\n") == 1


def test_path_lists_only_what_is_directly_inside(server, conn, container):
    for name in ("top", "a/", "a/one", "a/two", "a/deeper/three", "b/four"):
        conn.put_object(container, name, b"x")
    names = lambda query: [e.get("name", e.get("subdir")) for e in conn.get_container(container, query_string=query)[1]]
    # Swift skips deeper names under path= instead of rolling them up into subdir entries,
    # and leaves out the object named like the pseudo-directory itself
    assert names("path=a") == ["a/one", "a/two"]
    assert names("path=a/") == ["a/one", "a/two"]
    assert names("path=") == ["top"]
    assert names("path=a&limit=1") == ["a/one"]
    assert names("delimiter=/") == ["a/", "b/", "top"]          # a delimiter still rolls them up


def test_account_listing_names_the_storage_policy(server, conn, listed):
    entry = [e for e in conn.get_account()[1] if e["name"] == "listed"][0]
    assert entry["storage_policy"] == "Policy-0"
    _, _, body = raw(server, "GET", "/v1/AUTH_test?format=xml", conn=conn)
    assert b"<name>listed</name>" in body and b"<storage_policy>Policy-0</storage_policy>" in body


# ---- conditional and ranged requests ------------------------------------------------------------------

def test_304_and_412_carry_etag_accept_ranges_and_last_modified(server, conn, container):
    etag = conn.put_object(container, "c", b"conditional", content_type="text/plain",
                           headers={"X-Object-Meta-Color": "blue"})
    path = f"/v1/AUTH_test/{container}/c"
    for headers, status in [({"If-None-Match": etag}, 304), ({"If-Match": "nope"}, 412),
                            ({"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}, 412)]:
        for method in ("GET", "HEAD"):
            got, h, body = raw(server, method, path, headers, conn=conn)
            assert got == status and body == b""
            assert h["etag"] == etag and h["accept-ranges"] == "bytes" and "last-modified" in h
            # as Swift's own: the object's type and metadata ride along on a 304 or 412
            assert h["content-type"] == "text/plain" and h["x-object-meta-color"] == "blue"
    # each condition is evaluated on its own, as Swift does (not RFC 9110's If-Match-first order)
    past, future = "Mon, 01 Jan 2001 00:00:00 GMT", "Fri, 01 Jan 2100 00:00:00 GMT"
    assert raw(server, "GET", path, {"If-Match": etag, "If-Unmodified-Since": past}, conn=conn)[0] == 412
    assert raw(server, "GET", path, {"If-None-Match": "other", "If-Modified-Since": future}, conn=conn)[0] == 304
    assert raw(server, "GET", path, {"If-Match": "other", "If-None-Match": etag}, conn=conn)[0] == 412
    assert raw(server, "GET", path, {"If-Match": etag, "If-Modified-Since": past}, conn=conn)[0] == 200
    status, h, _ = raw(server, "GET", path, {"Range": "bytes=100-200"}, conn=conn)
    assert status == 416 and h["content-range"] == "bytes */11" and h["etag"] == etag
    assert h["x-object-meta-color"] == "blue"
    assert raw(server, "PUT", path, {"If-None-Match": etag}, b"x", conn=conn)[0] == 400


def test_several_ranges_are_multipart_byteranges(server, conn, container):
    body = bytes(range(256)) * 4
    etag = conn.put_object(container, "r", body, content_type="application/x-test")
    status, h, got = raw(server, "GET", f"/v1/AUTH_test/{container}/r", {"Range": "bytes=0-9,100-109,-5"}, conn=conn)
    assert status == 206 and h["etag"] == etag
    assert h["content-type"].startswith("multipart/byteranges;boundary=")
    message = email.parser.BytesParser().parsebytes(b"Content-Type: " + h["content-type"].encode() + b"\r\n\r\n" + got)
    parts = [(p["Content-Range"], p.get_payload(decode=True)) for p in message.get_payload()]
    assert parts == [("bytes 0-9/1024", body[0:10]), ("bytes 100-109/1024", body[100:110]),
                     ("bytes 1019-1023/1024", body[-5:])]
    status, h, _ = raw(server, "GET", f"/v1/AUTH_test/{container}/r", {"Range": "bytes=5000-6000,7000-"}, conn=conn)
    assert status == 416 and h["content-range"] == "bytes */1024"
    # one satisfiable range among unsatisfiable ones: a plain 206 of that one
    status, h, got = raw(server, "GET", f"/v1/AUTH_test/{container}/r", {"Range": "bytes=5000-,10-19"}, conn=conn)
    assert status == 206 and got == body[10:20] and h["content-range"] == "bytes 10-19/1024"


def test_copy_honours_a_range(server, conn, container):
    conn.put_object(container, "whole", b"0123456789")
    status, _, _ = raw(server, "COPY", f"/v1/AUTH_test/{container}/whole",
                       {"Destination": f"{container}/part", "Range": "bytes=2-5"}, conn=conn)
    assert status == 201 and conn.get_object(container, "part")[1] == b"2345"
    conn.put_object(container, "tail", None, headers={"X-Copy-From": f"{container}/whole", "Range": "bytes=-3"})
    assert conn.get_object(container, "tail")[1] == b"789"
    assert raw(server, "COPY", f"/v1/AUTH_test/{container}/whole",
               {"Destination": f"{container}/x", "Range": "bytes=50-"}, conn=conn)[0] == 416


# ---- ACLs and anonymous access --------------------------------------------------------------------------

def test_public_container_read_by_anyone_and_listing_only_with_rlistings(server, conn, container):
    conn.put_object(container, "page.html", b"<p>public</p>", content_type="text/html")
    url = f"{server.url}/v1/AUTH_test/{container}/page.html"
    status, h, _ = raw(server, "GET", f"/v1/AUTH_test/{container}/page.html")
    assert status == 401 and h["www-authenticate"] == 'Swift realm="AUTH_test"'
    conn.post_container(container, {"X-Container-Read": ".r:*"})
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.read() == b"<p>public</p>"
    assert raw(server, "GET", f"/v1/AUTH_test/{container}")[0] == 401          # no listing without .rlistings
    conn.post_container(container, {"X-Container-Read": ".r:*,.rlistings"})
    status, _, body = raw(server, "GET", f"/v1/AUTH_test/{container}")
    assert status == 200 and body.decode().split() == ["page.html"]
    assert raw(server, "PUT", f"/v1/AUTH_test/{container}/vandal", {}, b"x")[0] == 401   # reading is not writing
    assert conn.head_container(container)["x-container-read"] == ".r:*,.rlistings"
    conn.post_container(container, {"X-Remove-Container-Read": "x"})
    assert raw(server, "GET", f"/v1/AUTH_test/{container}/page.html")[0] == 401


def test_referrer_acl(server, conn, container):
    conn.put_object(container, "img", b"picture")
    conn.post_container(container, {"X-Container-Read": ".r:.example.com,.r:-bad.example.com"})
    path = f"/v1/AUTH_test/{container}/img"
    assert raw(server, "GET", path, {"Referer": "http://www.example.com/page"})[0] == 200
    assert raw(server, "GET", path, {"Referer": "http://bad.example.com/page"})[0] == 401
    assert raw(server, "GET", path, {"Referer": "http://elsewhere.org/"})[0] == 401


def test_container_acls_for_another_account(server, conn, bob, container):
    conn.put_object(container, "doc", b"shared")
    bob_url = f"/v1/AUTH_test/{container}/doc"
    assert raw(server, "GET", bob_url, conn=bob)[0] == 403
    conn.post_container(container, {"X-Container-Read": "other:bob"})
    assert raw(server, "GET", bob_url, conn=bob)[2] == b"shared"
    assert raw(server, "PUT", f"/v1/AUTH_test/{container}/by-bob", {}, b"b", conn=bob)[0] == 403
    conn.post_container(container, {"X-Container-Write": "other"})
    assert raw(server, "PUT", f"/v1/AUTH_test/{container}/by-bob", {}, b"b", conn=bob)[0] == 201
    # only the owner changes ACLs
    assert raw(server, "POST", f"/v1/AUTH_test/{container}", {"X-Container-Read": ".r:*"}, b"", conn=bob)[0] == 403
    assert raw(server, "POST", f"/v1/AUTH_test/{container}", {"X-Container-Write": ".r:*"}, b"", conn=conn)[0] == 400


def test_cross_account_copy_needs_read_there_and_write_here(server, conn, bob, container):
    conn.put_object(container, "orig", b"cross")
    bob.put_container("bobs")
    try:
        headers = {"X-Copy-From": f"{container}/orig", "X-Copy-From-Account": "AUTH_test"}
        assert raw(server, "PUT", "/v1/AUTH_other/bobs/copy", headers, b"", conn=bob)[0] == 403
        conn.post_container(container, {"X-Container-Read": "other:bob"})
        assert raw(server, "PUT", "/v1/AUTH_other/bobs/copy", headers, b"", conn=bob)[0] == 201
        assert bob.get_object("bobs", "copy")[1] == b"cross"
        # the other way: test copies into bob's container only with bob's write grant
        dest = {"Destination": "bobs/pushed", "Destination-Account": "AUTH_other"}
        assert raw(server, "COPY", f"/v1/AUTH_test/{container}/orig", dest, conn=conn)[0] == 403
        bob.post_container("bobs", {"X-Container-Write": "test:tester"})
        status, h, _ = raw(server, "COPY", f"/v1/AUTH_test/{container}/orig", dest, conn=conn)
        assert status == 201 and h["x-copied-from-account"] == "AUTH_test"
        assert bob.get_object("bobs", "pushed")[1] == b"cross"
    finally:
        for o in bob.get_container("bobs")[1]:
            bob.delete_object("bobs", o["name"])
        bob.delete_container("bobs")


def test_account_acl(server, conn, bob, container):
    conn.put_object(container, "o", b"acct")
    assert raw(server, "GET", "/v1/AUTH_test", conn=bob)[0] == 403
    conn.post_account({"X-Account-Access-Control": json.dumps({"read-only": ["other:bob"]})})
    try:
        status, _, body = raw(server, "GET", "/v1/AUTH_test", conn=bob)
        assert status == 200 and container in body.decode().split()
        assert raw(server, "GET", f"/v1/AUTH_test/{container}/o", conn=bob)[2] == b"acct"
        assert raw(server, "PUT", f"/v1/AUTH_test/{container}/w", {}, b"w", conn=bob)[0] == 403
        conn.post_account({"X-Account-Access-Control": json.dumps({"read-write": ["other"]})})
        assert raw(server, "PUT", f"/v1/AUTH_test/{container}/w", {}, b"w", conn=bob)[0] == 201
        assert raw(server, "POST", "/v1/AUTH_test", {"X-Account-Meta-X": "y"}, b"", conn=bob)[0] == 403
        assert raw(server, "POST", "/v1/AUTH_test", {"X-Account-Access-Control": "not json"}, b"",
                   conn=conn)[0] == 400
        assert raw(server, "POST", "/v1/AUTH_test", {"X-Account-Access-Control": '{"superuser": ["x"]}'}, b"",
                   conn=conn)[0] == 400
    finally:
        conn.post_account({"X-Remove-Account-Access-Control": "x"})
    assert raw(server, "GET", "/v1/AUTH_test", conn=bob)[0] == 403


# ---- timestamps, expiry, versioning, refusals -------------------------------------------------------------

def test_container_post_moves_last_modified(conn, container):
    before = conn.head_container(container)["last-modified"]
    time.sleep(1.1)
    conn.post_container(container, {"X-Container-Meta-Touched": "yes"})
    after = conn.head_container(container)["last-modified"]
    assert time.mktime(time.strptime(after, "%a, %d %b %Y %H:%M:%S GMT")) > \
        time.mktime(time.strptime(before, "%a, %d %b %Y %H:%M:%S GMT"))


def test_object_expiry(server, conn, container):
    conn.put_object(container, "brief", b"soon gone", headers={"X-Delete-After": "1"})
    h = conn.head_object(container, "brief")
    assert abs(int(h["x-delete-at"]) - (time.time() + 1)) < 3
    time.sleep(2.2)
    assert status_of(conn.get_object, container, "brief") == 404
    path = f"/v1/AUTH_test/{container}/x"
    assert raw(server, "PUT", path, {"X-Delete-At": "1000"}, b"x", conn=conn)[0] == 400
    assert raw(server, "PUT", path, {"X-Delete-After": "soon"}, b"x", conn=conn)[0] == 400
    conn.put_object(container, "later", b"x", headers={"X-Delete-At": str(int(time.time()) + 3600)})
    conn.post_object(container, "later", {"X-Remove-Delete-At": "x"})
    assert "x-delete-at" not in conn.head_object(container, "later")


def test_versioned_container(server, conn, container):
    conn.post_container(container, {"X-Versions-Enabled": "true"})
    assert conn.head_container(container)["x-versions-enabled"] == "True"
    conn.put_object(container, "v", b"one")
    first = conn.head_object(container, "v")["x-object-version-id"]
    conn.put_object(container, "v", b"two")
    assert conn.get_object(container, "v")[1] == b"two"
    assert conn.get_object(container, "v", query_string=f"version-id={first}")[1] == b"one"
    conn.delete_object(container, "v")
    assert status_of(conn.get_object, container, "v") == 404
    assert conn.get_object(container, "v", query_string=f"version-id={first}")[1] == b"one"
    assert raw(server, "GET", f"/v1/AUTH_test/{container}/v?version-id=bogus", conn=conn)[0] == 400
    # a version id in Swift's own form (a timestamp) is well formed there: no such version, 404
    for method in ("GET", "HEAD", "DELETE"):
        assert raw(server, method, f"/v1/AUTH_test/{container}/v?version-id=1234567890.12345", conn=conn)[0] == 404
    assert conn.get_object(container, "v", query_string=f"version-id={first}")[1] == b"one"
    assert raw(server, "POST", f"/v1/AUTH_test/{container}", {"X-Versions-Location": "old"}, b"",
               conn=conn)[0] == 501


def test_large_object_manifests_are_501(server, conn, container):
    status, _, body = raw(server, "PUT", f"/v1/AUTH_test/{container}/dlo", {"X-Object-Manifest": f"{container}/seg"},
                          b"", conn=conn)
    assert status == 501 and b"dynamic large objects" in body
    status, _, body = raw(server, "PUT", f"/v1/AUTH_test/{container}/slo?multipart-manifest=put", {}, b"[]", conn=conn)
    assert status == 501 and b"static large objects" in body


@pytest.mark.parametrize("name", ["what?.txt", "100%.txt", "a%2Fb", "퍼센트 %25 물음표 ?", "tab\tand\u00a0space"])
def test_any_utf8_name_with_question_marks_and_percents(conn, container, name):
    conn.put_object(container, name, name.encode())
    assert conn.get_object(container, name)[1] == name.encode()
    assert name in [o["name"] for o in conn.get_container(container)[1]]
