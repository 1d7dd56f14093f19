"""Lab 08's graded checks against a live store: other correct answers pass, typical mistakes fail with a hint."""

import hashlib

import pytest

import cloudlab as cl
from cloudlab.teaching.exercise import run_exercise


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
