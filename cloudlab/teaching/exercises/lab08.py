"""Lab 08 · object storage: checks that read the live store.

Every check reads the store through python-swiftclient or boto3, never through the
learner's own variables (except 08.4's function, which is run against a fresh
multipart upload), so an exercise passes only when the store really holds what
the task asks for.  An object is "file + metadata": the checks look at both.
"""

import hashlib
import os

from ..exercise import Check, exercise

CONTAINER = "homework"
OBJECT = "report.txt"


def _head(store, container=CONTAINER, name=OBJECT):
    """(headers, body) of an object, or (None, None) when it is not there."""
    from swiftclient import ClientException
    try:
        return store.connection().get_object(container, name)
    except ClientException:
        return None, None


def _container_exists(store, container=CONTAINER):
    from swiftclient import ClientException
    try:
        store.connection().head_container(container)
        return True
    except ClientException:
        return False


def _report_checks(store, headers, body):
    """Checks every exercise on homework/report.txt starts with: it exists, and its ETag is its MD5."""
    yield Check(f"the container {CONTAINER!r} exists", _container_exists(store),
                hint=f'PUT storage_url + "/{CONTAINER}" creates it')
    yield Check(f"{CONTAINER}/{OBJECT} exists", headers is not None,
                hint=f'PUT storage_url + "/{CONTAINER}/{OBJECT}" with a body creates it')
    yield Check(f"{OBJECT} holds some bytes", bool(body), hint="send a non-empty body with the PUT")
    yield Check("its ETag is the MD5 of its bytes", headers.get("etag") == hashlib.md5(body).hexdigest(),
                hint="upload it whole with one PUT (not in parts)")


def _meta(headers):
    return {k[len("x-object-meta-"):]: v for k, v in headers.items() if k.startswith("x-object-meta-")}


@exercise("08.1", title="Create an object: file + metadata", points=2)
def create_with_metadata(lab):
    """homework/report.txt exists, text/plain, with Course: cloud and Week: 8."""
    store = lab.object_store
    headers, body = _head(store)
    yield from _report_checks(store, headers, body)
    yield Check("its Content-Type is text/plain", headers.get("content-type", "").startswith("text/plain"),
                hint="send the header Content-Type: text/plain with the PUT")
    meta = _meta(headers)
    yield Check("it carries the metadata Course: cloud", meta.get("course") == "cloud",
                hint=f"user metadata travels as X-Object-Meta-* headers; the store has {meta or 'none'}")
    yield Check("it carries the metadata Week: 8", meta.get("week") == "8",
                hint=f"send X-Object-Meta-Week: 8; the store has {meta or 'none'}")


@exercise("08.2", title="Update metadata the Swift way (POST)", points=2)
def update_with_post(lab):
    """report.txt also says Reviewed: yes, kept Course and Week, and still has its bytes."""
    store = lab.object_store
    headers, body = _head(store)
    yield from _report_checks(store, headers, body)
    meta = _meta(headers)
    yield Check("it carries the metadata Reviewed: yes", meta.get("reviewed") == "yes",
                hint="POST to the object with X-Object-Meta-Reviewed: yes")
    yield Check("Course: cloud and Week: 8 survived the update",
                meta.get("course") == "cloud" and meta.get("week") == "8",
                hint=f"a POST replaces all user metadata: send the old items again; the store has {meta}")


@exercise("08.3", title="Update metadata the S3 way (copy onto itself)", points=2)
def update_with_s3_copy(lab):
    """Through S3, report.txt gained grade: A and kept Course, Week and Reviewed."""
    store = lab.object_store
    headers, body = _head(store)
    yield from _report_checks(store, headers, body)
    s3_meta = store.s3_client().head_object(Bucket=CONTAINER, Key=OBJECT)["Metadata"]
    yield Check("S3 shows the metadata grade: A", s3_meta.get("grade") == "A",
                hint="s3.copy_object(Bucket=..., Key=..., CopySource={'Bucket': ..., 'Key': ...}, "
                     "MetadataDirective='REPLACE', Metadata={...})")
    meta = _meta(headers)
    yield Check("course, week and reviewed survived the copy",
                (meta.get("course"), meta.get("week"), meta.get("reviewed")) == ("cloud", "8", "yes"),
                hint=f"MetadataDirective='REPLACE' replaces all of it: pass the old items too; the store has {meta}")
    yield Check("Swift reads the same metadata S3 wrote", meta.get("grade") == "A")


def _multipart_upload(s3, bucket, key, parts):
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    done = []
    for number, part in enumerate(parts, 1):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=part)["ETag"]
        done.append({"PartNumber": number, "ETag": etag})
    return s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload,
                                        MultipartUpload={"Parts": done})["ETag"].strip('"')


@exercise("08.4", title="Predict a multipart upload's ETag", points=3)
def multipart_etag(lab, answer=None):
    """``answer(parts)`` returns the ETag the store gives an object uploaded in those parts."""
    yield Check("answer is a function of a list of parts", callable(answer),
                hint="def answer(parts): ... return the ETag as a string")
    s3 = lab.object_store.s3_client()
    bucket = "exercise-08-4"
    # fresh random bytes each time, so only the rule itself can predict the ETag
    parts = [os.urandom(5 << 20), os.urandom(1000 + os.urandom(1)[0])]
    s3.create_bucket(Bucket=bucket)
    try:
        live = _multipart_upload(s3, bucket, "check.bin", parts)
    finally:
        for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])
        s3.delete_bucket(Bucket=bucket)
    try:
        predicted = answer(list(parts))
    except Exception as exc:  # the learner's function failing is a wrong answer, not a crash
        yield Check("answer(parts) runs", False, hint=f"{type(exc).__name__}: {exc}")
        return
    predicted = predicted.decode() if isinstance(predicted, bytes) else predicted
    yield Check("answer(parts) returns a string", isinstance(predicted, str), hint=f"it returned {predicted!r}")
    yield Check("the live multipart ETag is not the MD5 of the bytes", live != hashlib.md5(b"".join(parts)).hexdigest())
    yield Check("answer(parts) equals the ETag the store gave a fresh 2-part upload", predicted.strip('"') == live,
                hint=f"the store said {live}: the MD5 of the parts' binary MD5s joined, then '-' and the count")
