"""The S3 view of the object store, proven with real third-party clients.

boto3 (botocore's own SigV4 signer) drives every S3 operation against a real server on
127.0.0.1; python-swiftclient reads what boto3 wrote and the other way round; urllib
fetches presigned URLs.  The aws-chunked verifier is checked against the worked example
that AWS publishes in its Signature V4 documentation (Example: PUT Object, chunked).
"""

import asyncio
import base64
import calendar
import datetime
import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import boto3
import pytest
import swiftclient
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from cloudlab.object_store import sigv4
from cloudlab.object_store.server import ObjectStoreServer

USERS = {"test:tester": "testing", "other:user2": "secret2"}
MiB = 1 << 20


def client_config(**extra):
    """The boto3 configuration that works against a loopback endpoint (see PEERS.md)."""
    return Config(signature_version="s3v4", s3={"addressing_style": "path", **extra},
                  request_checksum_calculation="when_required",
                  response_checksum_validation="when_required", retries={"max_attempts": 1})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ObjectStoreServer(tmp_path_factory.mktemp("s3store"), users=USERS).start()
    yield srv
    srv.stop()


def make_client(server, key="test:tester", secret="testing", **extra):
    """A boto3 S3 client for ``server`` signing as ``key``/``secret``."""
    return boto3.client("s3", endpoint_url=server.url, aws_access_key_id=key, aws_secret_access_key=secret,
                        region_name="us-east-1", config=client_config(**extra))


@pytest.fixture(scope="module")
def s3(server):
    return make_client(server)


@pytest.fixture
def bucket(s3, request):
    name = "t-" + request.node.name.lower().replace("_", "-")[:50].strip("-[]")
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name)
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=obj["Key"])
    s3.delete_bucket(Bucket=name)


def error_code(exc_info):
    """The S3 error code of a ClientError caught by pytest.raises."""
    return exc_info.value.response["Error"]["Code"]


# ------------------------------------------------------------------ buckets

def test_bucket_lifecycle(s3):
    s3.create_bucket(Bucket="lifecycle")
    assert "lifecycle" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.head_bucket(Bucket="lifecycle")["ResponseMetadata"]["HTTPStatusCode"] == 200
    # us-east-1's legacy answer to re-creating a bucket one owns: 200 OK (see test_object_store_s3_features)
    assert s3.create_bucket(Bucket="lifecycle")["ResponseMetadata"]["HTTPStatusCode"] == 200
    s3.put_object(Bucket="lifecycle", Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket="lifecycle")
    assert error_code(exc) == "BucketNotEmpty"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    s3.delete_object(Bucket="lifecycle", Key="k")
    s3.delete_bucket(Bucket="lifecycle")
    assert "lifecycle" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket="lifecycle")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket="lifecycle")
    assert error_code(exc) == "NoSuchBucket"


@pytest.mark.parametrize("name", ["ab", "Upper", "-dash", "a" * 64, "under_score"])
def test_invalid_bucket_names(s3, name):
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name)
    assert error_code(exc) == "InvalidBucketName"


def test_accounts_cannot_see_each_other(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="private", Body=b"mine")
    other = make_client(server, "other:user2", "secret2")
    assert bucket not in [b["Name"] for b in other.list_buckets()["Buckets"]]
    # bucket names are global, as in S3: the bucket exists, but it is not theirs
    with pytest.raises(ClientError) as exc:
        other.get_object(Bucket=bucket, Key="private")
    assert error_code(exc) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        other.list_objects_v2(Bucket=bucket)
    assert error_code(exc) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        other.create_bucket(Bucket=bucket)
    assert error_code(exc) == "BucketAlreadyExists"
    with pytest.raises(ClientError) as exc:
        other.get_object(Bucket="no-such-bucket-anywhere", Key="private")
    assert error_code(exc) == "NoSuchBucket"


# ------------------------------------------------------------------ objects

def test_put_get_head_delete(s3, bucket):
    body = os.urandom(10000)
    put = s3.put_object(Bucket=bucket, Key="dir/file.bin", Body=body, ContentType="image/png",
                        Metadata={"color": "blue", "Owner": "ada"}, ContentDisposition="attachment")
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="dir/file.bin")
    assert got["Body"].read() == body
    assert got["ContentType"] == "image/png"
    assert got["Metadata"] == {"color": "blue", "owner": "ada"}
    assert got["ContentDisposition"] == "attachment"
    assert got["ETag"] == put["ETag"]
    head = s3.head_object(Bucket=bucket, Key="dir/file.bin")
    assert head["ContentLength"] == len(body) and head["Metadata"]["color"] == "blue"
    s3.delete_object(Bucket=bucket, Key="dir/file.bin")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="dir/file.bin")
    assert error_code(exc) == "NoSuchKey"
    # deleting what is not there succeeds, as in S3
    assert s3.delete_object(Bucket=bucket, Key="dir/file.bin")["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_large_streamed_object(s3, bucket):
    body = os.urandom(3 * MiB + 17)     # above the size the server reads whole: streamed both ways
    s3.put_object(Bucket=bucket, Key="big", Body=body)
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == body


def test_content_md5_checked(s3, bucket):
    good = base64.b64encode(hashlib.md5(b"payload").digest()).decode()
    s3.put_object(Bucket=bucket, Key="ok", Body=b"payload", ContentMD5=good)
    wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"payload", ContentMD5=wrong)
    assert error_code(exc) == "BadDigest"
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="bad")      # nothing half-written is visible
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"payload", ContentMD5="not-base64!")
    assert error_code(exc) == "InvalidDigest"


def test_ranges(s3, bucket):
    body = bytes(range(256)) * 4
    s3.put_object(Bucket=bucket, Key="r", Body=body)
    part = s3.get_object(Bucket=bucket, Key="r", Range="bytes=10-19")
    assert part["Body"].read() == body[10:20]
    assert part["ContentRange"] == f"bytes 10-19/{len(body)}"
    assert s3.get_object(Bucket=bucket, Key="r", Range="bytes=-5")["Body"].read() == body[-5:]
    assert s3.get_object(Bucket=bucket, Key="r", Range="bytes=1000-")["Body"].read() == body[1000:]
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="r", Range=f"bytes={len(body)}-")
    assert error_code(exc) == "InvalidRange"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=300), first=st.integers(0, 400), length=st.integers(1, 400))
def test_range_matches_python_slicing(s3, data, first, length):
    s3.put_object(Bucket="ranges", Key="obj", Body=data)
    if first >= len(data):
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket="ranges", Key="obj", Range=f"bytes={first}-{first + length - 1}")
        assert error_code(exc) == "InvalidRange"
    else:
        got = s3.get_object(Bucket="ranges", Key="obj", Range=f"bytes={first}-{first + length - 1}")
        assert got["Body"].read() == data[first:first + length]


@pytest.fixture(scope="module", autouse=True)
def ranges_bucket(s3):
    s3.create_bucket(Bucket="ranges")
    yield
    s3.delete_object(Bucket="ranges", Key="obj")
    s3.delete_bucket(Bucket="ranges")


def test_conditional_get(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="c", Body=b"v1")["ETag"]
    past = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"v1"
    for kwargs, status in [({"IfNoneMatch": etag}, 304), ({"IfModifiedSince": future}, 304),
                           ({"IfMatch": '"0000"'}, 412), ({"IfUnmodifiedSince": past}, 412)]:
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket=bucket, Key="c", **kwargs)
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == status, kwargs
    assert s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=past)["Body"].read() == b"v1"


def test_copy_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"data", Metadata={"a": "1"}, ContentType="text/plain")
    s3.copy_object(Bucket=bucket, Key="same-meta", CopySource={"Bucket": bucket, "Key": "src"})
    copied = s3.get_object(Bucket=bucket, Key="same-meta")
    assert copied["Body"].read() == b"data" and copied["Metadata"] == {"a": "1"}
    s3.copy_object(Bucket=bucket, Key="new-meta", CopySource={"Bucket": bucket, "Key": "src"},
                   MetadataDirective="REPLACE", Metadata={"b": "2"}, ContentType="text/csv")
    replaced = s3.head_object(Bucket=bucket, Key="new-meta")
    assert replaced["Metadata"] == {"b": "2"} and replaced["ContentType"] == "text/csv"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "missing"})
    assert error_code(exc) == "NoSuchKey"


def test_delete_objects(s3, bucket):
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"d{i}", Body=b"x")
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": f"d{i}"} for i in range(4)]})
    assert sorted(d["Key"] for d in result["Deleted"]) == ["d0", "d1", "d2", "d3"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["d4"]


def test_key_names_are_names_not_paths(s3, bucket, server):
    for key in ["../../escape", "a//b", "./dot", "sp ace+plus%25", "유니코드/키"]:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(keys) == sorted(["../../escape", "a//b", "./dot", "sp ace+plus%25", "유니코드/키"])
    # "../../escape" named an object, not a path: nothing appeared beside or above the store's root
    for up in (server.root, os.path.dirname(server.root), os.path.dirname(os.path.dirname(server.root))):
        assert not os.path.exists(os.path.join(up, "escape"))


# ------------------------------------------------------------------ listing

def test_list_with_delimiter_and_pagination(s3, bucket):
    keys = [f"photos/2024/img{i:02d}.jpg" for i in range(7)] + ["photos/2025/a.jpg", "notes.txt", "music/x.mp3"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"k")
    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["music/", "photos/"]
    assert [o["Key"] for o in top["Contents"]] == ["notes.txt"]
    assert top["KeyCount"] == 3 and top["IsTruncated"] is False
    years = s3.list_objects_v2(Bucket=bucket, Prefix="photos/", Delimiter="/")
    assert [p["Prefix"] for p in years["CommonPrefixes"]] == ["photos/2024/", "photos/2025/"]
    # pages of 3 keys, followed by continuation tokens, give every key exactly once, in order
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 3}))
    assert len(pages) == 4
    assert [p["IsTruncated"] for p in pages] == [True, True, True, False]
    assert [p["KeyCount"] for p in pages] == [3, 3, 3, 1]
    listed = [o["Key"] for p in pages for o in p["Contents"]]
    assert listed == sorted(keys)
    # a page boundary on a common prefix skips everything under it
    first = s3.list_objects_v2(Bucket=bucket, Delimiter="/", MaxKeys=1)
    assert first["IsTruncated"] and [p["Prefix"] for p in first["CommonPrefixes"]] == ["music/"]
    rest = s3.list_objects_v2(Bucket=bucket, Delimiter="/", ContinuationToken=first["NextContinuationToken"])
    assert [o["Key"] for o in rest.get("Contents", [])] == ["notes.txt"]
    assert [p["Prefix"] for p in rest["CommonPrefixes"]] == ["photos/"]
    after = s3.list_objects_v2(Bucket=bucket, StartAfter="photos/2024/img05.jpg")
    assert [o["Key"] for o in after["Contents"]] == ["photos/2024/img06.jpg", "photos/2025/a.jpg"]
    v1 = s3.list_objects(Bucket=bucket, Prefix="photos/2024/", MaxKeys=2)
    assert v1["IsTruncated"] and [o["Key"] for o in v1["Contents"]] == ["photos/2024/img00.jpg",
                                                                        "photos/2024/img01.jpg"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=60))
def test_any_key_round_trips_through_listing(s3, key):
    s3.put_object(Bucket="ranges", Key=key, Body=b"k")
    try:
        listed = [o["Key"] for o in s3.list_objects_v2(Bucket="ranges", Prefix=key)["Contents"]]
        assert key in listed
        assert s3.get_object(Bucket="ranges", Key=key)["Body"].read() == b"k"
    finally:
        s3.delete_object(Bucket="ranges", Key=key)


# ------------------------------------------------------------------ multipart

def test_multipart_upload(s3, bucket):
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB + 3), b"the end"]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="assembled", ContentType="video/mp4",
                                        Metadata={"camera": "x100"})
    uid = upload["UploadId"]
    etags = [s3.upload_part(Bucket=bucket, Key="assembled", UploadId=uid, PartNumber=n, Body=p)["ETag"]
             for n, p in enumerate(parts, 1)]
    assert etags == [f'"{hashlib.md5(p).hexdigest()}"' for p in parts]
    # parts are not objects: nothing is visible before completion
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    listed = s3.list_parts(Bucket=bucket, Key="assembled", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in listed] == [(1, 5 * MiB), (2, 5 * MiB + 3), (3, 7)]
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [uid]
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="assembled", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})
    expected = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + "-3"
    assert done["ETag"] == f'"{expected}"'
    got = s3.get_object(Bucket=bucket, Key="assembled")
    assert got["Body"].read() == b"".join(parts)
    assert got["ETag"] == f'"{expected}"' and got["Metadata"] == {"camera": "x100"}
    assert got["ContentType"] == "video/mp4"
    with pytest.raises(ClientError) as exc:           # the upload is gone once completed
        s3.list_parts(Bucket=bucket, Key="assembled", UploadId=uid)
    assert error_code(exc) == "NoSuchUpload"


def test_multipart_errors_and_abort(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    e1 = s3.upload_part(Bucket=bucket, Key="m", UploadId=uid, PartNumber=1, Body=b"small")["ETag"]
    e2 = s3.upload_part(Bucket=bucket, Key="m", UploadId=uid, PartNumber=2, Body=b"tail")["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    assert error_code(exc) == "EntityTooSmall"
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": '"00000000000000000000000000000000"'}]})
    assert error_code(exc) == "InvalidPart"
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]})
    assert error_code(exc) == "InvalidPartOrder"
    s3.abort_multipart_upload(Bucket=bucket, Key="m", UploadId=uid)
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key="m", UploadId=uid, PartNumber=3, Body=b"late")
    assert error_code(exc) == "NoSuchUpload"
    with pytest.raises(ClientError) as exc:
        s3.abort_multipart_upload(Bucket=bucket, Key="m", UploadId="../../../etc")
    assert error_code(exc) == "NoSuchUpload"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


# ------------------------------------------------------------------ one store, two APIs

def test_boto3_writes_swiftclient_reads(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="from-s3.txt", Body=b"hello swift", ContentType="text/plain",
                  Metadata={"color": "green"})
    conn = swiftclient.Connection(authurl=f"{server.url}/auth/v1.0", user="test:tester", key="testing",
                                  retries=0)
    headers, body = conn.get_object(bucket, "from-s3.txt")
    assert body == b"hello swift"
    assert headers["x-object-meta-color"] == "green"
    assert headers["etag"] == hashlib.md5(b"hello swift").hexdigest()
    assert headers["content-type"].startswith("text/plain")
    conn.close()


def test_swiftclient_writes_boto3_reads(server, s3, bucket):
    conn = swiftclient.Connection(authurl=f"{server.url}/auth/v1.0", user="test:tester", key="testing",
                                  retries=0)
    conn.put_object(bucket, "from-swift.txt", b"hello s3", content_type="text/markdown",
                    headers={"X-Object-Meta-Shape": "round"})
    conn.close()
    got = s3.get_object(Bucket=bucket, Key="from-swift.txt")
    assert got["Body"].read() == b"hello s3"
    assert got["Metadata"] == {"shape": "round"}
    assert got["ContentType"] == "text/markdown"


# ------------------------------------------------------------------ authentication

def test_wrong_secret_is_refused(server, bucket):
    bad = make_client(server, secret="not-the-key")
    with pytest.raises(ClientError) as exc:
        bad.list_objects_v2(Bucket=bucket)
    assert error_code(exc) == "SignatureDoesNotMatch"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as exc:
        make_client(server, key="nobody:here").list_buckets()
    assert error_code(exc) == "InvalidAccessKeyId"


def test_unsigned_payload_accepted(server, bucket):
    client = make_client(server, payload_signing_enabled=False)
    client.put_object(Bucket=bucket, Key="unsigned", Body=b"trust me")
    assert client.get_object(Bucket=bucket, Key="unsigned")["Body"].read() == b"trust me"


def test_default_checksums_accepted(server, bucket):
    # a boto3 client with today's defaults adds x-amz-checksum-crc32 and signs it
    client = boto3.client("s3", endpoint_url=server.url, aws_access_key_id="test:tester",
                          aws_secret_access_key="testing", region_name="us-east-1",
                          config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    client.put_object(Bucket=bucket, Key="crc", Body=b"checked")
    assert client.get_object(Bucket=bucket, Key="crc")["Body"].read() == b"checked"


def signed_request(server, method, path, body=b"", when=None, headers=None):
    """A request signed by botocore's own SigV4 signer, sent with http.client; returns (status, body, headers)."""
    request = AWSRequest(method=method, url=server.url + path, data=body, headers=headers or {})
    signer = S3SigV4Auth(Credentials("test:tester", "testing"), "s3", "us-east-1")
    if when is not None:
        # botocore stamps the current time; sign as a client whose clock shows ``when``
        original = signer._modify_request_before_signing

        def stamp(req):
            original(req)
            req.context["timestamp"] = when
            req.headers.replace_header("X-Amz-Date", when)
        signer._modify_request_before_signing = stamp
    signer.add_auth(request)
    prepared = request.prepare()
    return send(server, method, path, prepared.body, dict(prepared.headers))


def send(server, method, path, body, headers):
    """Send one raw request with http.client; returns (status, body, response)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data, resp


def test_body_changed_after_signing(server, s3, bucket):
    request = AWSRequest(method="PUT", url=f"{server.url}/{bucket}/tampered", data=b"original")
    S3SigV4Auth(Credentials("test:tester", "testing"), "s3", "us-east-1").add_auth(request)
    prepared = request.prepare()
    status, data, _ = send(server, "PUT", f"/{bucket}/tampered", b"tampered", dict(prepared.headers))
    assert status == 400
    assert ET.fromstring(data).findtext("Code") == "XAmzContentSHA256Mismatch"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="tampered")


def test_clock_skew(server, bucket):
    skewed = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 3600))
    status, data, _ = signed_request(server, "GET", f"/{bucket}", when=skewed)
    assert status == 403
    assert ET.fromstring(data).findtext("Code") == "RequestTimeTooSkewed"
    almost = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 600))
    assert signed_request(server, "GET", f"/{bucket}", when=almost)[0] == 200


def test_error_body_is_s3_xml(server, bucket):
    status, data, resp = signed_request(server, "GET", f"/{bucket}/no/such/key")
    assert status == 404
    doc = ET.fromstring(data)
    assert doc.tag == "Error"
    assert doc.findtext("Code") == "NoSuchKey"
    assert doc.findtext("Message")
    assert doc.findtext("Resource") == f"/{bucket}/no/such/key"
    assert doc.findtext("RequestId") == resp.getheader("x-amz-request-id")


def test_unsigned_header_refused(server, bucket):
    request = AWSRequest(method="GET", url=f"{server.url}/{bucket}")
    S3SigV4Auth(Credentials("test:tester", "testing"), "s3", "us-east-1").add_auth(request)
    headers = dict(request.prepare().headers)
    headers["x-amz-meta-sneaky"] = "added later"
    status, data, _ = send(server, "GET", f"/{bucket}", None, headers)
    assert status == 403 and ET.fromstring(data).findtext("Code") == "AccessDenied"


def test_presigned_urls(s3, bucket):
    s3.put_object(Bucket=bucket, Key="shared doc.txt", Body=b"for your eyes")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared doc.txt"},
                                    ExpiresIn=60)
    assert "X-Amz-Signature=" in url
    assert urllib.request.urlopen(url, timeout=10).read() == b"for your eyes"
    tampered = url.replace("shared%20doc.txt", "other.txt")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(tampered, timeout=10)
    assert exc.value.code == 403
    assert ET.fromstring(exc.value.read()).findtext("Code") == "SignatureDoesNotMatch"
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "uploaded"},
                                        ExpiresIn=60)
    urllib.request.urlopen(urllib.request.Request(put_url, data=b"via url", method="PUT"), timeout=10)
    assert s3.get_object(Bucket=bucket, Key="uploaded")["Body"].read() == b"via url"


def test_presigned_url_expires(s3, bucket, server):
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=1)
    parts = urlsplit(url)
    headers = {"Host": parts.netloc}
    auth = sigv4.verify("GET", parts.path, parts.query, headers, USERS.get)  # valid now
    assert auth.presigned and auth.access_key == "test:tester"
    with pytest.raises(sigv4.AuthError) as exc:
        sigv4.verify("GET", parts.path, parts.query, headers, USERS.get, now=time.time() + 5)
    assert exc.value.code == "AccessDenied" and "expired" in exc.value.message


# ------------------------------------------------------------------ aws-chunked, AWS's own example

# "Example: PUT Object" of AWS's "Signature Calculations for the Authorization Header:
# Transferring Payload in Multiple Chunks": 66560 bytes of 'a' in chunks of 64 KiB and 1 KiB
AWS_EXAMPLE_HEADERS = {
    "Host": "s3.amazonaws.com", "x-amz-date": "20130524T000000Z", "x-amz-storage-class": "REDUCED_REDUNDANCY",
    "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
                     "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
                     "x-amz-decoded-content-length;x-amz-storage-class,"
                     "Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
    "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "Content-Encoding": "aws-chunked",
    "x-amz-decoded-content-length": "66560", "Content-Length": "66824"}
AWS_EXAMPLE_SECRETS = {"AKIAIOSFODNN7EXAMPLE": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
AWS_EXAMPLE_CHUNKS = [
    (65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"),
    (1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"),
    (0, "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9")]
AWS_EXAMPLE_NOW = calendar.timegm((2013, 5, 24, 0, 1, 0))


def aws_example_body(fill=b"a"):
    """The aws-chunked body of AWS's example, its data bytes all ``fill``."""
    body = b""
    for size, signature in AWS_EXAMPLE_CHUNKS:
        body += f"{size:x};chunk-signature={signature}\r\n".encode() + fill * size + b"\r\n"
    return body


def decode(body):
    """Verify AWS's example request and decode ``body`` as its aws-chunked payload."""
    async def run():
        reader = asyncio.StreamReader()
        reader.feed_data(body)
        reader.feed_eof()
        auth = sigv4.verify("PUT", "/examplebucket/chunkObject.txt", "", CIMultiDict(AWS_EXAMPLE_HEADERS),
                            AWS_EXAMPLE_SECRETS.get, now=AWS_EXAMPLE_NOW)
        return b"".join([c async for c in sigv4.payload_chunks(auth, reader, CIMultiDict(AWS_EXAMPLE_HEADERS))])
    return asyncio.run(run())


def test_aws_chunked_example_verifies():
    body = aws_example_body()
    assert len(body) == int(AWS_EXAMPLE_HEADERS["Content-Length"])
    assert decode(body) == b"a" * 66560


def test_aws_chunked_tampered_chunk_refused():
    body = bytearray(aws_example_body())
    body[200] = ord("b")                # one byte of the first chunk changed in flight
    with pytest.raises(sigv4.AuthError) as exc:
        decode(bytes(body))
    assert exc.value.code == "SignatureDoesNotMatch"


def test_aws_chunked_truncated_refused():
    with pytest.raises(sigv4.AuthError) as exc:
        decode(aws_example_body()[:66000])
    assert exc.value.code == "IncompleteBody"


def test_canonical_request_matches_botocore():
    # the canonical request botocore builds for an awkward request is the one we rebuild
    request = AWSRequest(method="GET", url="http://127.0.0.1:9/bkt/a%20b/%E2%82%AC~x?prefix=a%2Fb&list-type=2&z=",
                         headers={"x-amz-meta-spaced": "  a   b  "})
    signer = S3SigV4Auth(Credentials("k", "s"), "s3", "us-east-1")
    signer.add_auth(request)
    expected = signer.canonical_request(request)
    parts = urlsplit(request.url)
    headers = CIMultiDict(request.headers)
    headers["Host"] = parts.netloc
    signed = signer.signed_headers(signer.headers_to_sign(request)).split(";")
    ours = sigv4.canonical_request("GET", parts.path, parts.query, headers, signed,
                                   request.headers["X-Amz-Content-SHA256"])
    assert ours == expected


# ------------------------------------------------------------------ the lab service

def test_lab_s3_client(tmp_path, monkeypatch):
    import cloudlab as cl
    monkeypatch.setenv("CLOUDLAB_HOME", str(tmp_path))
    with cl.Lab(name="s3test") as lab:
        client = lab.object_store.s3_client()
        client.create_bucket(Bucket="lab-bucket")
        client.put_object(Bucket="lab-bucket", Key="k", Body=b"from the lab")
        assert client.get_object(Bucket="lab-bucket", Key="k")["Body"].read() == b"from the lab"
        headers, body = lab.object_store.connection().get_object("lab-bucket", "k")
        assert body == b"from the lab"
