"""S3 as AWS documents it, beyond plain objects: versioning, ACLs and bucket policies with anonymous
access, browser-form uploads, tagging, CORS, UploadPartCopy, GetObjectAttributes, and the
precise errors for what is malformed or out of scope.  Driven by boto3; anonymous requests and
browser forms by urllib and http.client, as a browser or ``curl`` would send them.
"""

import email.utils
import hashlib
import http.client
import json
import os
import urllib.error
import urllib.request
import uuid

import pytest
from botocore.exceptions import ClientError

from cloudlab.object_store.server import ObjectStoreServer
from tests.test_object_store_s3 import error_code, make_client

USERS = {"test:tester": "testing", "other:user2": "secret2"}
MiB = 1 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ObjectStoreServer(tmp_path_factory.mktemp("s3features"), users=USERS).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def s3(server):
    return make_client(server)


@pytest.fixture
def bucket(s3):
    name = "f-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            s3.delete_object(Bucket=name, Key=v["Key"], VersionId=v["VersionId"])
    for obj in s3.list_objects_v2(Bucket=name).get("Contents", []):
        s3.delete_object(Bucket=name, Key=obj["Key"])
    s3.delete_bucket(Bucket=name)


def anonymous(server, method, path, headers=None, body=None):
    """An unsigned request, as a browser or curl sends one: (status, headers, body)."""
    h = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        h.request(method, path, body=body, headers=headers or {})
        r = h.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        h.close()


def code_of(body):
    return body.split(b"<Code>")[1].split(b"</Code>")[0].decode() if b"<Code>" in body else None


# ------------------------------------------------------------------ versioning

def test_versioning_keeps_every_version_and_restores_an_overwritten_one(s3, bucket):
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="before", Body=b"written before versioning")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    v1 = s3.put_object(Bucket=bucket, Key="doc", Body=b"first draft")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="doc", Body=b"second draft")["VersionId"]
    assert v1 != v2 and v1 != "null"
    assert s3.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"second draft"
    old = s3.get_object(Bucket=bucket, Key="doc", VersionId=v1)
    assert old["Body"].read() == b"first draft" and old["VersionId"] == v1
    listing = s3.list_object_versions(Bucket=bucket)
    versions = [(v["Key"], v["VersionId"], v["IsLatest"]) for v in listing["Versions"]]
    assert versions == [("before", "null", True), ("doc", v2, True), ("doc", v1, False)]
    # restore the overwritten version: copy it over the current one
    restored = s3.copy_object(Bucket=bucket, Key="doc", CopySource={"Bucket": bucket, "Key": "doc", "VersionId": v1})
    assert restored["CopySourceVersionId"] == v1
    assert s3.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"first draft"
    assert len(s3.list_object_versions(Bucket=bucket, Prefix="doc")["Versions"]) == 3


def test_delete_markers_hide_and_deleting_them_brings_back(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["VersionId"]
    gone = s3.delete_object(Bucket=bucket, Key="k")
    assert gone["DeleteMarker"] is True and gone["VersionId"] not in (v1, "null")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k")
    assert error_code(exc) == "NoSuchKey"
    assert exc.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", VersionId=gone["VersionId"])
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 405
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    markers = s3.list_object_versions(Bucket=bucket)["DeleteMarkers"]
    assert [(m["VersionId"], m["IsLatest"]) for m in markers] == [(gone["VersionId"], True)]
    s3.delete_object(Bucket=bucket, Key="k", VersionId=gone["VersionId"])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v1"
    # deleting a version for good: the older one becomes current
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"v2")["VersionId"]
    s3.delete_object(Bucket=bucket, Key="k", VersionId=v2)
    assert s3.get_object(Bucket=bucket, Key="k")["VersionId"] == v1


def test_suspended_versioning_writes_the_null_version(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    kept = s3.put_object(Bucket=bucket, Key="s", Body=b"kept")["VersionId"]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert s3.put_object(Bucket=bucket, Key="s", Body=b"null 1")["VersionId"] == "null"
    assert s3.put_object(Bucket=bucket, Key="s", Body=b"null 2")["VersionId"] == "null"
    ids = [v["VersionId"] for v in s3.list_object_versions(Bucket=bucket)["Versions"]]
    assert ids == ["null", kept]        # the null version was replaced, the enabled-era one kept
    assert s3.get_object(Bucket=bucket, Key="s", VersionId="null")["Body"].read() == b"null 2"


def test_list_object_versions_pages_with_markers(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    made = []
    for key in ("a", "b"):
        for i in range(3):
            made.append((key, s3.put_object(Bucket=bucket, Key=key, Body=f"{key}{i}".encode())["VersionId"]))
    expected = [("a", v) for k, v in reversed(made) if k == "a"] + [("b", v) for k, v in reversed(made) if k == "b"]
    seen, kwargs = [], {}
    while True:
        page = s3.list_object_versions(Bucket=bucket, MaxKeys=2, **kwargs)
        seen += [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
        if not page["IsTruncated"]:
            break
        kwargs = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}
    assert seen == expected


def test_version_errors(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", VersionId="not-a-version")
    assert error_code(exc) == "InvalidArgument"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", VersionId="0" * 28)
    assert error_code(exc) == "NoSuchVersion"
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Off"})
    assert error_code(exc) == "IllegalVersioningConfigurationException"
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=bucket)
    assert error_code(exc) == "BucketNotEmpty"


# ------------------------------------------------------------------ ACLs, policies, anonymous access

def test_public_read_object_is_fetched_anonymously_and_private_one_refused(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="public.txt", Body=b"for everyone", ACL="public-read")
    s3.put_object(Bucket=bucket, Key="private.txt", Body=b"mine")
    with urllib.request.urlopen(f"{server.url}/{bucket}/public.txt", timeout=10) as r:
        assert r.read() == b"for everyone"
    status, _, body = anonymous(server, "GET", f"/{bucket}/private.txt")
    assert status == 403 and code_of(body) == "AccessDenied"
    # the bucket is not listable anonymously, so a missing key is 403 too (no leak of what exists)
    assert code_of(anonymous(server, "GET", f"/{bucket}/missing")[2]) == "AccessDenied"
    assert code_of(anonymous(server, "GET", f"/{bucket}")[2]) == "AccessDenied"
    grants = s3.get_object_acl(Bucket=bucket, Key="public.txt")["Grants"]
    assert {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
            "Permission": "READ"} in grants
    s3.put_object_acl(Bucket=bucket, Key="public.txt", ACL="private")
    assert anonymous(server, "GET", f"/{bucket}/public.txt")[0] == 403
    assert code_of(anonymous(server, "GET", "/no-such-bucket-xyz/k")[2]) == "NoSuchBucket"


def test_public_read_bucket_acl_allows_anonymous_listing(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="listed", Body=b"x")
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    status, _, body = anonymous(server, "GET", f"/{bucket}?list-type=2")
    assert status == 200 and b"<Key>listed</Key>" in body
    assert anonymous(server, "GET", f"/{bucket}/listed")[0] == 403      # objects keep their own ACL
    assert code_of(anonymous(server, "GET", f"/{bucket}/missing")[2]) == "NoSuchKey"
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    assert anonymous(server, "GET", f"/{bucket}?list-type=2")[0] == 403


def test_bucket_policy_grants_and_denies(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="site/index.html", Body=b"<h1>hi</h1>", ContentType="text/html")
    s3.put_object(Bucket=bucket, Key="secret/plan.txt", Body=b"no")
    policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "PublicRead", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{bucket}/*"},
        {"Sid": "NotSecrets", "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{bucket}/secret/*"}]}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == policy
    status, h, body = anonymous(server, "GET", f"/{bucket}/site/index.html")
    assert status == 200 and body == b"<h1>hi</h1>" and h["content-type"] == "text/html"
    assert anonymous(server, "GET", f"/{bucket}/secret/plan.txt")[0] == 403
    other = make_client(server, "other:user2", "secret2")
    assert other.get_object(Bucket=bucket, Key="site/index.html")["Body"].read() == b"<h1>hi</h1>"
    with pytest.raises(ClientError) as exc:
        other.put_object(Bucket=bucket, Key="site/x", Body=b"x")
    assert error_code(exc) == "AccessDenied"
    s3.delete_bucket_policy(Bucket=bucket)
    assert anonymous(server, "GET", f"/{bucket}/site/index.html")[0] == 403
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_policy(Bucket=bucket)
    assert error_code(exc) == "NoSuchBucketPolicy"


@pytest.mark.parametrize("policy,code", [
    ("not json", "MalformedPolicy"),
    ('{"Statement": []}', "MalformedPolicy"),
    ('{"Statement": [{"Effect": "Maybe", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::B/*"}]}',
     "MalformedPolicy"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::elsewhere/*"}]}',
     "MalformedPolicy"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "GetObject", "Resource": "arn:aws:s3:::B/*"}]}',
     "MalformedPolicy"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::B/*",'
     ' "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.1/32"}}}]}', "NotImplemented"),
])
def test_bad_policies_are_refused_and_nothing_is_stored(s3, bucket, policy, code):
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_policy(Bucket=bucket, Policy=policy.replace("arn:aws:s3:::B", f"arn:aws:s3:::{bucket}"))
    assert error_code(exc) == code
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_policy(Bucket=bucket)
    assert error_code(exc) == "NoSuchBucketPolicy"


def test_acl_errors(s3, bucket):
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_acl(Bucket=bucket, GrantRead='uri="http://acs.amazonaws.com/groups/global/Nobody"')
    assert error_code(exc) == "InvalidArgument"
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_acl(Bucket=bucket, GrantRead="id=AUTH_nobody")
    assert error_code(exc) == "InvalidArgument"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="everyone-please")
    assert error_code(exc) == "InvalidArgument"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")      # nothing was written


def test_grant_to_another_account(server, s3, bucket):
    other = make_client(server, "other:user2", "secret2")
    s3.put_object(Bucket=bucket, Key="shared", Body=b"for user2")
    s3.put_object_acl(Bucket=bucket, Key="shared", GrantRead="id=AUTH_other")
    assert other.get_object(Bucket=bucket, Key="shared")["Body"].read() == b"for user2"
    s3.put_bucket_acl(Bucket=bucket, GrantWrite="id=AUTH_other")
    other.put_object(Bucket=bucket, Key="from-other", Body=b"hello")
    assert s3.get_object(Bucket=bucket, Key="from-other")["Body"].read() == b"hello"


# ------------------------------------------------------------------ browser form upload (POST Object)

def _multipart(fields, filename, data):
    boundary = uuid.uuid4().hex
    out = b""
    for k, v in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
    out += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: text/plain\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def test_presigned_post_from_a_form(server, s3, bucket):
    post = s3.generate_presigned_post(Bucket=bucket, Key="uploads/${filename}",
                                      Conditions=[["starts-with", "$key", "uploads/"],
                                                  ["content-length-range", 1, 1000]], ExpiresIn=300)
    body, ctype = _multipart(post["fields"], "hello.txt", b"from a browser")
    status, h, _ = anonymous(server, "POST", f"/{bucket}", {"Content-Type": ctype}, body)
    assert status == 204 and h["etag"] == f'"{hashlib.md5(b"from a browser").hexdigest()}"'
    assert s3.get_object(Bucket=bucket, Key="uploads/hello.txt")["Body"].read() == b"from a browser"
    # too big for the policy's content-length-range: refused, nothing stored
    body, ctype = _multipart(post["fields"], "big.txt", b"x" * 2000)
    status, _, answer = anonymous(server, "POST", f"/{bucket}", {"Content-Type": ctype}, body)
    assert status == 400 and code_of(answer) == "EntityTooLarge"
    # a field changed after signing breaks the policy
    tampered = dict(post["fields"], key="elsewhere/${filename}")
    body, ctype = _multipart(tampered, "x.txt", b"x")
    status, _, answer = anonymous(server, "POST", f"/{bucket}", {"Content-Type": ctype}, body)
    assert status == 403 and code_of(answer) == "AccessDenied"
    forged = dict(post["fields"], **{"x-amz-signature": "0" * 64})
    body, ctype = _multipart(forged, "x.txt", b"x")
    assert code_of(anonymous(server, "POST", f"/{bucket}", {"Content-Type": ctype}, body)[2]) == \
        "SignatureDoesNotMatch"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["uploads/hello.txt"]


def test_presigned_post_with_201_answer(server, s3, bucket):
    post = s3.generate_presigned_post(Bucket=bucket, Key="form.txt", Fields={"success_action_status": "201"},
                                      Conditions=[{"success_action_status": "201"}])
    body, ctype = _multipart(post["fields"], "form.txt", b"x")
    status, _, answer = anonymous(server, "POST", f"/{bucket}", {"Content-Type": ctype}, body)
    assert status == 201 and b"<Key>form.txt</Key>" in answer


# ------------------------------------------------------------------ tagging, attributes, copy parts

def test_object_and_bucket_tagging(s3, bucket):
    s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging="team=blue&year=2024")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == [{"Key": "team", "Value": "blue"},
                                                                       {"Key": "year", "Value": "2024"}]
    assert s3.get_object(Bucket=bucket, Key="t")["TagCount"] == 2
    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": "only", "Value": "one"}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == [{"Key": "only", "Value": "one"}]
    s3.delete_object_tagging(Bucket=bucket, Key="t")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []
    with pytest.raises(ClientError) as exc:
        s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": f"k{i}", "Value": "v"}
                                                                          for i in range(11)]})
    assert error_code(exc) == "BadRequest"
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_tagging(Bucket=bucket)
    assert error_code(exc) == "NoSuchTagSet"
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "cost", "Value": "lab"}]})
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "cost", "Value": "lab"}]


def test_get_object_attributes_and_location(s3, bucket):
    s3.put_object(Bucket=bucket, Key="a", Body=b"12345")
    got = s3.get_object_attributes(Bucket=bucket, Key="a", ObjectAttributes=["ETag", "ObjectSize", "StorageClass"])
    assert got["ETag"] == hashlib.md5(b"12345").hexdigest() and got["ObjectSize"] == 5
    assert got["StorageClass"] == "STANDARD"
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] is None


def test_upload_part_copy(s3, bucket):
    source = os.urandom(6 * MiB)
    s3.put_object(Bucket=bucket, Key="source", Body=source)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="joined")["UploadId"]
    p1 = s3.upload_part_copy(Bucket=bucket, Key="joined", UploadId=uid, PartNumber=1,
                             CopySource={"Bucket": bucket, "Key": "source"}, CopySourceRange=f"bytes=0-{5 * MiB - 1}")
    p2 = s3.upload_part(Bucket=bucket, Key="joined", UploadId=uid, PartNumber=2, Body=b"tail")
    s3.complete_multipart_upload(Bucket=bucket, Key="joined", UploadId=uid, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]}, {"PartNumber": 2, "ETag": p2["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="joined")["Body"].read() == source[:5 * MiB] + b"tail"
    parts = s3.get_object_attributes(Bucket=bucket, Key="joined", ObjectAttributes=["ObjectParts"])
    assert parts["ObjectParts"]["TotalPartsCount"] == 2
    uid = s3.create_multipart_upload(Bucket=bucket, Key="bad")["UploadId"]
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(Bucket=bucket, Key="bad", UploadId=uid, PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "source"}, CopySourceRange="bytes=0-99999999")
    assert error_code(exc) == "InvalidRange"
    s3.abort_multipart_upload(Bucket=bucket, Key="bad", UploadId=uid)


# ------------------------------------------------------------------ CORS

def test_cors_configuration_and_preflight(server, s3, bucket):
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_cors(Bucket=bucket)
    assert error_code(exc) == "NoSuchCORSConfiguration"
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": ["http://lab.example"], "AllowedMethods": ["GET", "PUT"], "AllowedHeaders": ["*"],
         "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600}]})
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"][0]["AllowedMethods"] == ["GET", "PUT"]
    status, h, _ = anonymous(server, "OPTIONS", f"/{bucket}/k", {
        "Origin": "http://lab.example", "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type"})
    assert status == 200 and h["access-control-allow-origin"] == "http://lab.example"
    assert "PUT" in h["access-control-allow-methods"] and h["access-control-max-age"] == "600"
    status, _, body = anonymous(server, "OPTIONS", f"/{bucket}/k", {
        "Origin": "http://evil.example", "Access-Control-Request-Method": "PUT"})
    assert status == 403 and code_of(body) == "AccessForbidden"
    assert anonymous(server, "OPTIONS", f"/{bucket}/k", {"Access-Control-Request-Method": "GET"})[0] == 400
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="public-read")
    status, h, _ = anonymous(server, "GET", f"/{bucket}/k", {"Origin": "http://lab.example"})
    assert status == 200 and h["access-control-allow-origin"] == "http://lab.example"
    s3.delete_bucket_cors(Bucket=bucket)
    assert anonymous(server, "OPTIONS", f"/{bucket}/k", {
        "Origin": "http://lab.example", "Access-Control-Request-Method": "GET"})[0] == 403


# ------------------------------------------------------------------ errors of the reference

def test_out_of_scope_operations_are_not_implemented_by_name(s3, bucket):
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert error_code(exc) == "NotImplemented" and "GetBucketLifecycleConfiguration" in str(exc.value)
    with pytest.raises(ClientError) as exc:
        s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
    assert error_code(exc) == "NotImplemented" and "ObjectLockConfiguration" in str(exc.value)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms")
    assert error_code(exc) == "NotImplemented"
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_malformed_xml_and_unknown_subresource(server, s3, bucket):
    def truncate(request, **kw):
        request.data = b"<Versioning"
    s3.meta.events.register_first("before-sign.s3.PutBucketVersioning", truncate)
    try:
        with pytest.raises(ClientError) as exc:
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        assert error_code(exc) == "MalformedXML"
    finally:
        # (unregister needs the handler itself: without it the truncation stays for later tests)
        s3.meta.events.unregister("before-sign.s3.PutBucketVersioning", truncate)
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    url = s3.generate_presigned_url("list_objects_v2", Params={"Bucket": bucket})
    status, _, body = anonymous(server, "GET", url.replace(server.url, "") + "&frobnicate")
    assert status in (400, 403) and code_of(body) in ("InvalidArgument", "SignatureDoesNotMatch")


def test_unicode_metadata_round_trips_as_sent(server, s3, bucket):
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    value = "café ☃ 한국어"
    h = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    h.putrequest("PUT", f"/{bucket}/uni")
    h.putheader("Content-Length", "1")
    h.putheader("x-amz-meta-word", value.encode("utf-8"))
    h.endheaders(b"u")
    assert h.getresponse().status == 200
    h.close()
    head = s3.head_object(Bucket=bucket, Key="uni")
    raw = head["ResponseMetadata"]["HTTPHeaders"]["x-amz-meta-word"]
    assert raw.encode("latin-1").decode("utf-8") == value


def test_bucket_already_exists_vs_owned(server, s3, bucket):
    # CreateBucket's reference: BucketAlreadyOwnedByYou in every region but us-east-1 (the store's),
    # where re-creating a bucket you own answers 200 OK and resets its ACL; the data stays
    s3.put_object(Bucket=bucket, Key="kept", Body=b"still here")
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert anonymous(server, "GET", f"/{bucket}")[0] == 200
    again = s3.create_bucket(Bucket=bucket)
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert anonymous(server, "GET", f"/{bucket}")[0] == 403          # the ACL is private again
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"still here"
    s3.create_bucket(Bucket=bucket, ACL="public-read")                 # reset to what the request asks
    assert anonymous(server, "GET", f"/{bucket}")[0] == 200
    with pytest.raises(ClientError) as exc:
        make_client(server, "other:user2", "secret2").create_bucket(Bucket=bucket)
    assert error_code(exc) == "BucketAlreadyExists"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409


def test_version_errors_as_the_reference_names_them(server, s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="doc", Body=b"one")
    missing = "0" * 28
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="doc", VersionId=missing)
    error = exc.value.response["Error"]
    assert error["Code"] == "NoSuchVersion" and exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert error["Key"] == "doc" and error["VersionId"] == missing
    # a GET naming a delete marker's version: 405 with x-amz-delete-marker and Last-Modified
    marker = s3.delete_object(Bucket=bucket, Key="doc")["VersionId"]
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="doc", VersionId=marker)
    headers = exc.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 405
    assert error_code(exc) == "MethodNotAllowed"
    assert headers["x-amz-delete-marker"] == "true" and headers["x-amz-version-id"] == marker
    listed = s3.list_object_versions(Bucket=bucket)["DeleteMarkers"][0]["LastModified"]
    assert abs(email.utils.parsedate_to_datetime(headers["last-modified"]) - listed).total_seconds() < 1
    # the latest version being a marker: 404 NoSuchKey, still saying it is a marker
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="doc")
    assert error_code(exc) == "NoSuchKey"
    assert exc.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
