"""Property-based tests of the Swift view: whatever name, metadata, byte range or
listing query hypothesis invents, the store answers as the model says.

Requests go through http.client with every path character percent-encoded, so that
no client library tidies a name (python-swiftclient's HTTP stack resolves ``..``
segments) before the server sees it.
"""

import hashlib
import http.client
import json
import uuid
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cloudlab.object_store import ObjectStoreServer
from tests.test_object_store import model

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    srv = ObjectStoreServer(tmp_path_factory.mktemp("props")).start()
    h = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    h.request("GET", "/auth/v1.0", headers={"X-Auth-User": "test:tester", "X-Auth-Key": "testing"})
    r = h.getresponse()
    r.read()
    token = r.getheader("X-Auth-Token")

    def call(method, path, headers=None, body=None):
        hdrs = {"X-Auth-Token": token, **(headers or {})}
        if body is not None:
            hdrs["Content-Length"] = str(len(body))
        h.request(method, path, body=body, headers=hdrs)
        resp = h.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()

    call("PUT", "/v1/AUTH_test/props", body=b"")
    yield call
    h.close()
    srv.stop()


def path(container, name=""):
    return f"/v1/AUTH_test/{quote(container, safe='')}" + (f"/{quote(name, safe='')}" if name else "")


# any Unicode text without NUL or surrogates, at most 1024 bytes in UTF-8
names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1,
                max_size=120).filter(lambda s: len(s.encode()) <= 1024)


@SETTINGS
@given(name=names, body=st.binary(max_size=2048))
def test_any_name_round_trips(api, name, body):
    status, h, _ = api("PUT", path("props", name), body=body)
    assert status == 201
    assert h["etag"] == hashlib.md5(body).hexdigest()
    status, h, got = api("GET", path("props", name))
    assert status == 200 and got == body
    _, _, listing = api("GET", path("props") + "?format=json&prefix=" + quote(name, safe="") + "&limit=5")
    assert name in [e["name"] for e in json.loads(listing)]
    assert api("DELETE", path("props", name))[0] == 204
    assert api("GET", path("props", name))[0] == 404


meta_names = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=40)
# header values: visible ASCII with inner spaces (HTTP trims the ends)
meta_values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=1, max_size=60) | \
    st.builds(lambda a, b: f"{a} {b}", st.text("xyz", min_size=1, max_size=5), st.text("xyz", min_size=1, max_size=5))


@SETTINGS
@given(meta=st.dictionaries(meta_names, meta_values, max_size=12))
def test_metadata_headers_round_trip(api, meta):
    name = uuid.uuid4().hex
    headers = {f"X-Object-Meta-{k}": v for k, v in meta.items()}
    assert api("PUT", path("props", name), headers, b"m")[0] == 201
    _, h, _ = api("HEAD", path("props", name))
    got = {k[len("x-object-meta-"):]: v for k, v in h.items() if k.startswith("x-object-meta-")}
    assert got == {k.lower(): v for k, v in meta.items()}
    # POST replaces the whole set
    assert api("POST", path("props", name), {"X-Object-Meta-Only": "this"}, b"")[0] == 202
    _, h, _ = api("HEAD", path("props", name))
    assert {k for k in h if k.startswith("x-object-meta-")} == {"x-object-meta-only"}
    api("DELETE", path("props", name))


def expected_range(size, first, last, suffix):
    """Model of one byte range: (status, slice) with Python slicing semantics."""
    if suffix is not None:
        if suffix == 0 or size == 0:
            return 416, None
        return 206, slice(max(0, size - suffix), size)
    if last is not None and last < first:
        return 200, slice(0, size)          # malformed: ignored
    if first >= size:
        return 416, None
    return 206, slice(first, size if last is None else min(last, size - 1) + 1)


@SETTINGS
@given(size=st.integers(0, 3000), first=st.integers(0, 3500), last=st.one_of(st.none(), st.integers(0, 3500)),
       suffix=st.one_of(st.none(), st.integers(0, 3500)))
def test_single_ranges_follow_rfc7233(api, size, first, last, suffix):
    body = bytes(i % 251 for i in range(size))
    name = f"range-{size}"
    api("PUT", path("props", name), body=body)
    spec = f"bytes=-{suffix}" if suffix is not None else f"bytes={first}-{'' if last is None else last}"
    status, h, got = api("GET", path("props", name), {"Range": spec})
    want_status, want = expected_range(size, first, last, suffix)
    assert status == want_status, spec
    if status == 206:
        assert got == body[want] and h["content-range"] == f"bytes {want.start}-{want.stop - 1}/{size}"
    elif status == 416:
        assert h["content-range"] == f"bytes */{size}"
    else:
        assert got == body


listing_names = st.lists(st.text("ab/", min_size=1, max_size=5), min_size=0, max_size=15, unique=True)
queries = st.fixed_dictionaries({}, optional={
    "prefix": st.text("ab/", max_size=3), "delimiter": st.just("/"), "marker": st.text("ab/", max_size=4),
    "end_marker": st.text("ab/", min_size=1, max_size=4), "limit": st.integers(1, 20)})


@SETTINGS
@given(names=listing_names, query=queries)
# found by hypothesis in CI: a marker equal to the prefix is not a rolled-up common prefix
@example(names=["/a"], query={"delimiter": "/", "prefix": "/", "end_marker": "a", "marker": "/"})
def test_listings_match_the_model(api, names, query):
    container = "list-" + uuid.uuid4().hex[:8]
    api("PUT", path(container), body=b"")
    for n in names:
        api("PUT", path(container, n), body=b"")
    qs = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in query.items())
    status, _, body = api("GET", path(container) + "?format=json&" + qs)
    assert status == 200
    got = [e.get("name", e.get("subdir")) for e in json.loads(body)]
    assert got == model(names, **query)
    for n in names:
        api("DELETE", path(container, n))
    assert api("DELETE", path(container))[0] == 204
