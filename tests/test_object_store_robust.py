"""Requests the store cannot serve get a 4xx that says why, never a 500 or a dropped connection.

Each test here reproduces one finding of probing the server as a hostile or clumsy client
would (raw bytes on a socket, no client library to tidy them), and failed before its fix:
header values that are not UTF-8, a Range with thousands of digits, copying an object whose
name holds CR or LF, a container deleted while an upload races into it, S3 buckets whose
names begin like a Swift path, and a traceback in the log for every malformed request.
"""

import http.client
import logging
import socket
import threading

import pytest

from cloudlab.object_store import ObjectStoreServer
from tests.test_object_store_s3 import make_client

USERS = {"test:tester": "testing", "other:bob": "secret"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ObjectStoreServer(tmp_path_factory.mktemp("robust") / "root", users=USERS).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def token(server):
    h = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    h.request("GET", "/auth/v1.0", headers={"X-Auth-User": "test:tester", "X-Auth-Key": "testing"})
    r = h.getresponse()
    r.read()
    h.close()
    return r.getheader("X-Auth-Token")


def send(server, method, path, headers=b"", body=b"", token=None):
    """Send raw bytes (headers as bytes, so any byte can be in them); returns (status, headers, body).

    The answer must be a whole HTTP response: a dropped connection fails the test.
    """
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".encode()
    if token:
        head += f"X-Auth-Token: {token}\r\n".encode()
    head += f"Content-Length: {len(body)}\r\n".encode() + headers + b"\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(head + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 "), f"no answer to {method} {path}: {data[:200]!r}"
    top, _, rest = data.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        fields[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), fields, rest


@pytest.fixture(scope="module")
def container(server, token):
    assert send(server, "PUT", "/v1/AUTH_test/robust", token=token)[0] == 201
    assert send(server, "PUT", "/v1/AUTH_test/robust/obj", body=b"0123456789", token=token)[0] == 201
    return "robust"


# ---- header values that are not UTF-8 ------------------------------------------------------------

@pytest.mark.parametrize("method,path,header", [
    ("PUT", "/v1/AUTH_test/robust/meta", b"X-Object-Meta-Colour: \xff"),
    ("POST", "/v1/AUTH_test", b"X-Account-Meta-Team: \xff"),
    ("POST", "/v1/AUTH_test/robust", b"X-Container-Meta-Team: caf\xe9"),
    ("COPY", "/v1/AUTH_test/robust/obj", b"Destination: robust/o2\r\nDestination-Account: \xff"),
    ("PUT", "/v1/AUTH_test/robust/etag", b"ETag: \xff"),
])
def test_header_value_that_is_not_utf8_is_400_naming_it(server, token, container, method, path, header):
    status, _, body = send(server, method, path, header + b"\r\n", b"x" if method == "PUT" else b"",
                           token=token)
    name = header.rsplit(b"\r\n", 1)[-1].split(b":")[0].decode()
    assert status == 400, body
    assert name.lower() in body.decode().lower() and b"UTF-8" in body


def test_auth_key_that_is_not_utf8_is_400(server):
    status, _, body = send(server, "GET", "/auth/v1.0", b"X-Auth-User: test:tester\r\nX-Auth-Key: \xe9\r\n")
    assert status == 400 and b"X-Auth-Key" in body


def test_s3_header_that_is_not_utf8_is_an_s3_error(server):
    status, h, body = send(server, "GET", "/somebucket/key", b"x-amz-meta-a: \xff\r\n")
    assert status == 400 and h["content-type"].startswith("application/xml")
    assert b"<Code>InvalidArgument</Code>" in body and b"x-amz-meta-a" in body


# ---- ranges with more digits than int() takes -----------------------------------------------------

def test_range_with_thousands_of_digits(server, token, container):
    huge = "9" * 5000
    status, h, body = send(server, "GET", "/v1/AUTH_test/robust/obj", f"Range: bytes=0-{huge}\r\n".encode(),
                           token=token)
    assert status == 206 and body == b"0123456789" and h["content-range"] == "bytes 0-9/10"
    status, h, _ = send(server, "GET", "/v1/AUTH_test/robust/obj", f"Range: bytes={huge}-\r\n".encode(),
                        token=token)
    assert status == 416 and h["content-range"] == "bytes */10"
    status, _, body = send(server, "GET", "/v1/AUTH_test/robust/obj", f"Range: bytes=-{huge}\r\n".encode(),
                           token=token)
    assert status == 206 and body == b"0123456789"


def test_s3_range_with_thousands_of_digits(server):
    s3 = make_client(server, "test:tester", "testing")
    s3.create_bucket(Bucket="digits")
    try:
        s3.put_object(Bucket="digits", Key="k", Body=b"0123456789")
        got = s3.get_object(Bucket="digits", Key="k", Range="bytes=2-" + "9" * 5000)
        assert got["Body"].read() == b"23456789"
    finally:
        s3.delete_object(Bucket="digits", Key="k")
        s3.delete_bucket(Bucket="digits")


# ---- names with CR or LF in copy answers ------------------------------------------------------------

@pytest.mark.parametrize("name", ["line%0Abreak", "carriage%0Dreturn", "both%0D%0Aend"])
def test_copying_an_object_named_with_cr_or_lf_answers_whole(server, token, container, name):
    assert send(server, "PUT", f"/v1/AUTH_test/robust/{name}", body=b"crlf", token=token)[0] == 201
    status, h, _ = send(server, "COPY", f"/v1/AUTH_test/robust/{name}", b"Destination: robust/copied\r\n",
                        token=token)
    assert status == 201
    assert h["x-copied-from"] == f"robust/{name}"          # percent-encoded, as Swift sends it
    status, _, _ = send(server, "PUT", "/v1/AUTH_test/robust/copied2",
                        f"X-Copy-From: robust/{name}\r\n".encode(), token=token)
    assert status == 201
    assert send(server, "GET", "/v1/AUTH_test/robust/copied2", token=token)[2] == b"crlf"


# ---- a container deleted while uploads race into it ---------------------------------------------------

def test_container_delete_racing_uploads_is_all_or_nothing(server, token):
    """The delete wins whole (uploads get 404) or fails whole (409, container intact); never a 503."""
    body = b"r" * 200_000
    outcomes = set()
    for round_ in range(40):
        name = f"race-{round_}"
        assert send(server, "PUT", f"/v1/AUTH_test/{name}", token=token)[0] == 201
        puts, deletes = [], []
        barrier = threading.Barrier(4)

        def put(i):
            barrier.wait()
            puts.append((i, send(server, "PUT", f"/v1/AUTH_test/{name}/o{i}", body=body, token=token)[0]))

        def delete():
            barrier.wait()
            for _ in range(3):
                deletes.append(send(server, "DELETE", f"/v1/AUTH_test/{name}", token=token)[0])

        threads = [threading.Thread(target=put, args=(i,)) for i in range(3)] + [threading.Thread(target=delete)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(s in (201, 404) for _, s in puts), puts
        assert all(s in (204, 404, 409) for s in deletes), deletes
        stored = sorted(i for i, s in puts if s == 201)
        head = send(server, "HEAD", f"/v1/AUTH_test/{name}", token=token)[0]
        if 204 in deletes:
            # deleted: gone for every request, and it can be made anew and used
            assert head == 404 and not stored
            assert send(server, "PUT", f"/v1/AUTH_test/{name}/late", body=b"x", token=token)[0] == 404
            assert send(server, "PUT", f"/v1/AUTH_test/{name}", token=token)[0] == 201
            assert send(server, "PUT", f"/v1/AUTH_test/{name}/again", body=b"x", token=token)[0] == 201
            stored = ["again"]
            outcomes.add("deleted")
        else:
            assert head == 204
            _, _, listing = send(server, "GET", f"/v1/AUTH_test/{name}", token=token)
            assert sorted(listing.decode().split()) == [f"o{i}" for i in stored]
            outcomes.add("kept")
        for obj in stored:
            obj = obj if isinstance(obj, str) else f"o{obj}"
            assert send(server, "DELETE", f"/v1/AUTH_test/{name}/{obj}", token=token)[0] == 204
        assert send(server, "DELETE", f"/v1/AUTH_test/{name}", token=token)[0] == 204
    assert send(server, "GET", "/info")[0] == 200


# ---- S3 buckets named like the start of a Swift path ----------------------------------------------------

@pytest.mark.parametrize("bucket", ["information", "authors", "info-bucket", "auth0", "v1data"])
def test_s3_buckets_named_like_swift_paths_are_s3s(server, bucket):
    s3 = make_client(server, "test:tester", "testing")
    s3.create_bucket(Bucket=bucket)
    try:
        s3.put_object(Bucket=bucket, Key="k", Body=b"routed")
        assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"routed"
        assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]
        s3.delete_object(Bucket=bucket, Key="k")
    finally:
        s3.delete_bucket(Bucket=bucket)


# ---- one log line per rejected request -------------------------------------------------------------------

def test_each_rejected_request_logs_one_line_and_no_traceback(server, token, container, caplog):
    bad = [("PUT", "/v1/AUTH_test/robust/m", b"X-Object-Meta-A: \xff\r\n"),
           ("GET", "/v1/AUTH_test/robust/missing", b""),
           ("PUT", "/v1/AUTH_test/robust/a%00b", b""),
           ("GET", "/v1/AUTH_test/robust/obj", b"Range: bytes=" + b"1" * 6000 + b"-\r\n")]
    with caplog.at_level(logging.INFO):
        for method, path, headers in bad:
            caplog.clear()
            status = send(server, method, path, headers, token=token)[0]
            assert 400 <= status < 500
            records = [r for r in caplog.records if r.name.startswith(("cloudlab", "aiohttp"))]
            assert len(records) == 1, [r.getMessage() for r in records]
            assert records[0].exc_info is None and "\n" not in records[0].getMessage()
            assert str(status) in records[0].getMessage()
