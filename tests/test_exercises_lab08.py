"""Lab 08's graded checks against a live store: other correct answers pass, typical mistakes fail with a hint.

The answers are given with other real clients than the notebook's (swiftclient, the AWS CLI, s3cmd,
Swift's own versioning and ACL headers; tests/clients.py, shared with the store's client tests).
"""

import hashlib
import json

import pytest

import cloudlab as cl
from cloudlab.teaching.exercise import run_exercise
from tests.clients import aws_cli, s3cmd_cli


@pytest.fixture(scope="module")
def lab():
    lab = cl.Lab(name="ex08")
    yield lab
    lab.stop()


def failed(result):
    return [c for c in result.checks if not c.ok]


def test_each_step_fails_until_done_and_passes_with_other_clients(lab):
    store = lab.object_store
    swift = store.connection()
    assert failed(run_exercise("08.1", lab))[0].label == "the container 'homework' exists"
    # swiftclient instead of raw HTTP, and a content type with a charset: still right
    swift.put_container("homework")
    swift.put_object("homework", "report.txt", b"draft\n", content_type="text/plain; charset=utf-8",
                     headers={"X-Object-Meta-Course": "cloud"})
    first = failed(run_exercise("08.1", lab))
    assert first[0].label == "it carries the metadata Week: 8" and "course" in first[0].hint
    swift.post_object("homework", "report.txt", {"X-Object-Meta-Course": "cloud", "X-Object-Meta-Week": "8"})
    assert run_exercise("08.1", lab).passed
    assert not run_exercise("08.2", lab).passed
    # the classic mistake: POST only the new item, which removes the others
    swift.post_object("homework", "report.txt", {"X-Object-Meta-Reviewed": "yes"})
    mistake = failed(run_exercise("08.2", lab))
    assert mistake and "replaces all user metadata" in mistake[0].hint
    swift.post_object("homework", "report.txt", {"X-Object-Meta-Course": "cloud", "X-Object-Meta-Week": "8",
                                                 "X-Object-Meta-Reviewed": "yes"})
    assert run_exercise("08.2", lab).passed
    # the S3 copy without the old items loses them
    s3 = store.s3_client()
    source = {"Bucket": "homework", "Key": "report.txt"}
    s3.copy_object(Bucket="homework", Key="report.txt", CopySource=source, MetadataDirective="REPLACE",
                   Metadata={"grade": "A"})
    assert "REPLACE" in failed(run_exercise("08.3", lab))[0].hint
    s3.copy_object(Bucket="homework", Key="report.txt", CopySource=source, MetadataDirective="REPLACE",
                   Metadata={"grade": "A", "course": "cloud", "week": "8", "reviewed": "yes"})
    assert run_exercise("08.3", lab).passed and run_exercise("08.2", lab).passed


def test_multipart_etag_needs_the_rule_not_a_value(lab):
    assert not run_exercise("08.4", lab, answer=None).passed
    assert not run_exercise("08.4", lab, answer=lambda parts: hashlib.md5(b"".join(parts)).hexdigest()).passed
    assert "ZeroDivisionError" in failed(run_exercise("08.4", lab, answer=lambda parts: 1 / 0))[0].hint

    def quoted_bytes(parts):        # another correct answer: bytes, with quotes
        digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
        return f'"{digest}-{len(parts)}"'.encode()

    assert run_exercise("08.4", lab, answer=quoted_bytes).passed
    # the check cleans up after itself
    assert "exercise-08-4" not in [b["Name"] for b in lab.object_store.s3_client().list_buckets()["Buckets"]]


# ---- versioning and public access, each solved with another real client than the reference's boto3

def test_restore_with_the_aws_cli_and_the_mistakes_that_fail(lab, tmp_path):
    store = lab.object_store
    aws = aws_cli(store.url, tmp_path)
    assert failed(run_exercise("08.5", lab))[0].label == "the bucket 'drafts' exists"
    aws("s3api", "create-bucket", "--bucket", "drafts")
    assert "off (never enabled)" in failed(run_exercise("08.5", lab))[0].hint
    aws("s3api", "put-bucket-versioning", "--bucket", "drafts", "--versioning-configuration", "Status=Enabled")
    ids = []
    for text in ("first draft\n", "second draft, much better\n"):
        (tmp_path / "essay.txt").write_text(text)
        ids.append(aws("s3api", "put-object", "--bucket", "drafts", "--key", "essay.txt",
                       "--body", str(tmp_path / "essay.txt"), parse=True)["VersionId"])
    assert "copy the oldest version" in failed(run_exercise("08.5", lab))[0].hint
    # a plain delete leaves a marker on top
    marker = aws("s3api", "delete-object", "--bucket", "drafts", "--key", "essay.txt", parse=True)["VersionId"]
    assert "delete marker" in failed(run_exercise("08.5", lab))[0].label
    aws("s3api", "delete-object", "--bucket", "drafts", "--key", "essay.txt", "--version-id", marker)
    aws("s3api", "copy-object", "--bucket", "drafts", "--key", "essay.txt",
        "--copy-source", f"drafts/essay.txt?versionId={ids[0]}")
    assert run_exercise("08.5", lab).passed


def test_restore_by_deleting_the_newer_version_loses_it(lab):
    s3 = lab.object_store.s3_client()
    s3.put_object(Bucket="drafts", Key="essay.txt", Body=b"third draft\n")
    newest = s3.list_object_versions(Bucket="drafts", Prefix="essay.txt")["Versions"][0]["VersionId"]
    assert not run_exercise("08.5", lab).passed
    # every version but the first draft removed: it reads right, but the second draft is gone
    for v in s3.list_object_versions(Bucket="drafts", Prefix="essay.txt")["Versions"][:-1]:
        s3.delete_object(Bucket="drafts", Key="essay.txt", VersionId=v["VersionId"])
    assert newest not in [v["VersionId"] for v in s3.list_object_versions(Bucket="drafts")["Versions"]]
    assert failed(run_exercise("08.5", lab))[0].label == "essay.txt has at least two versions"


def test_delete_marker_through_swift(lab):
    swift = lab.object_store.connection()
    assert failed(run_exercise("08.6", lab, answer=None))[0].label.startswith("old-notes.txt was uploaded")
    swift.put_object("drafts", "old-notes.txt", b"notes I no longer need\n")
    assert "no VersionId" in failed(run_exercise("08.6", lab, answer=None))[0].hint
    response = {}
    swift.delete_object("drafts", "old-notes.txt", response_dict=response)
    marker = response["headers"]["x-object-version-id"]      # Swift names the marker it made too
    assert failed(run_exercise("08.6", lab, answer=None))[0].label.startswith("answer is the delete marker")
    assert not run_exercise("08.6", lab, answer="0" * 28).passed
    assert run_exercise("08.6", lab, answer=marker).passed
    # the bytes are still there, one version below the marker
    versions = lab.object_store.s3_client().list_object_versions(Bucket="drafts", Prefix="old-notes.txt")
    assert len(versions["Versions"]) == 1 and versions["DeleteMarkers"][0]["VersionId"] == marker


def test_public_object_with_s3cmd_and_the_mistakes_that_fail(lab, tmp_path):
    store = lab.object_store
    s3cmd = s3cmd_cli(store.url, tmp_path)
    url = f"{store.url}/public-site/index.html"
    assert failed(run_exercise("08.7", lab, answer=url))[0].label == "the bucket 'public-site' exists"
    s3cmd("mb", "s3://public-site")
    (tmp_path / "index.html").write_text("<h1>hello</h1>\n")
    (tmp_path / "secret.txt").write_text("the exam answers\n")
    s3cmd("put", str(tmp_path / "index.html"), str(tmp_path / "secret.txt"), "s3://public-site/")
    assert "public-read ACL" in failed(run_exercise("08.7", lab, answer=url))[0].hint
    # a whole public bucket opens the secret too: refused as an answer
    policy = tmp_path / "policy.json"
    policy.write_text('{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", '
                      '"Action": "s3:GetObject", "Resource": "arn:aws:s3:::public-site/*"}]}')
    s3cmd("setpolicy", str(policy), "s3://public-site")
    assert "open only index.html" in failed(run_exercise("08.7", lab, answer=url))[0].hint
    s3cmd("delpolicy", "s3://public-site")
    s3cmd("setacl", "--acl-public", "s3://public-site/index.html")
    assert not run_exercise("08.7", lab, answer=None).passed
    assert not run_exercise("08.7", lab, answer=f"{store.url}/public-site/secret.txt").passed
    assert run_exercise("08.7", lab, answer=url).passed


def test_public_object_through_a_policy_and_the_swift_url(lab):
    store = lab.object_store
    swift, s3 = store.connection(), store.s3_client()
    s3.put_object_acl(Bucket="public-site", Key="index.html", ACL="private")
    swift_url = f"{store.storage_url()}/public-site/index.html"
    assert not run_exercise("08.7", lab, answer=swift_url).passed
    # a container ACL opens every object in it, the secret as well
    swift.post_container("public-site", {"X-Container-Read": ".r:*"})
    assert "Swift 200" in failed(run_exercise("08.7", lab, answer=swift_url))[0].hint
    swift.post_container("public-site", {"X-Container-Read": ""})
    # a bucket policy for that one key: the S3 URL opens, the Swift URL does not (Swift reads its own ACLs)
    s3.put_bucket_policy(Bucket="public-site", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": "arn:aws:s3:::public-site/index.html"}]}))
    assert run_exercise("08.7", lab, answer=f"{store.url}/public-site/index.html").passed
    assert not run_exercise("08.7", lab, answer=swift_url).passed
