"""Lab 08 · object storage: checks that read the live store.

Every check reads the store through python-swiftclient or boto3, never through the
learner's own variables (except 08.4's function, which is run against a fresh
multipart upload, and the values 08.6 and 08.7 ask for, which are compared with what
the store holds), so an exercise passes only when the store really holds what
the task asks for.  An object is "file + metadata": the checks look at both.
Versioning (08.5, 08.6) is read from the bucket's version listing; public access
(08.7) by plain HTTP requests that carry no token and no signature, as a browser's.
"""

import hashlib
import os
from urllib.parse import urlsplit

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


# ---------------------------------------------------------------- versioning (08.5, 08.6)

VERSIONED = "drafts"
ESSAY = "essay.txt"
DELETED = "old-notes.txt"


def _bucket_state(s3, bucket):
    """(exists, versioning status) of a bucket, read with the owner's S3 client."""
    from botocore.exceptions import ClientError
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        return False, None
    return True, s3.get_bucket_versioning(Bucket=bucket).get("Status")


def _history(store, bucket, key):
    """Every version and delete marker of ``key``, newest first, as (version id, is a delete marker).

    Read from Swift's ``?versions`` listing of the same container: one list in the store's
    own order, where S3's ListObjectVersions splits versions and markers into two.
    """
    from urllib.parse import quote
    # (not full_listing: swiftclient drops the query string on its follow-up pages; one page of
    # 10,000 entries holds every version a learner makes)
    _, listing = store.connection().get_container(bucket, query_string=f"versions&prefix={quote(key)}")
    return [(e["version_id"], e["content_type"].startswith("application/x-deleted")) for e in listing
            if e.get("name") == key]


def _versioned_bucket_checks(s3, bucket):
    exists, status = _bucket_state(s3, bucket)
    yield Check(f"the bucket {bucket!r} exists", exists, hint=f's3.create_bucket(Bucket="{bucket}")')
    yield Check(f"versioning is Enabled on {bucket!r}", status == "Enabled",
                hint=f"it is {status or 'off (never enabled)'}: s3.put_bucket_versioning(Bucket=..., "
                     "VersioningConfiguration={'Status': 'Enabled'}), before the uploads")


@exercise("08.5", title="Restore an overwritten object from its versions", points=3)
def restore_version(lab):
    """drafts/essay.txt reads as its first draft again, and the second draft is still kept as a version."""
    s3 = lab.object_store.s3_client()
    yield from _versioned_bucket_checks(s3, VERSIONED)
    history = _history(lab.object_store, VERSIONED, ESSAY)
    objects = [vid for vid, marker in history if not marker]
    yield Check(f"{ESSAY} has at least two versions", len(objects) >= 2,
                hint=f"it has {len(objects)}: with versioning on, upload a first draft, then a different second draft")
    yield Check(f"a plain GET of {ESSAY} answers (its latest version is not a delete marker)",
                bool(history) and not history[0][1],
                hint="a delete left a delete marker on top: remove the marker by its version id")
    bodies = {vid: s3.get_object(Bucket=VERSIONED, Key=ESSAY, VersionId=vid)["Body"].read() for vid in objects}
    first_draft, latest = bodies[objects[-1]], bodies[objects[0]]
    yield Check("the oldest version (the first draft) and a later one differ",
                any(b != first_draft for b in bodies.values()),
                hint="upload two different texts: the second draft must differ from the first")
    yield Check(f"a plain GET of {ESSAY} returns the first draft's bytes", latest == first_draft,
                hint="copy the oldest version onto the key: s3.copy_object(Bucket=..., Key=..., "
                     "CopySource={'Bucket': ..., 'Key': ..., 'VersionId': <the first draft's id>})")
    yield Check("the second draft is still kept as an older version",
                any(b != first_draft for vid, b in bodies.items() if vid != objects[0]),
                hint="a restore by deleting the newer version loses it: copy the old version instead")


@exercise("08.6", title="A delete that removes nothing: the delete marker", points=2)
def delete_marker(lab, answer=None):
    """drafts/old-notes.txt was deleted without a version id: a marker on top, its bytes kept; answer is the marker's id."""
    s3 = lab.object_store.s3_client()
    yield from _versioned_bucket_checks(s3, VERSIONED)
    history = _history(lab.object_store, VERSIONED, DELETED)
    kept = [vid for vid, marker in history if not marker]
    yield Check(f"{DELETED} was uploaded (it has a version with bytes)", bool(kept),
                hint=f"put {DELETED} into {VERSIONED} first (versioning on), then delete it")
    yield Check("its latest version is a delete marker", bool(history) and history[0][1],
                hint="delete it with a plain s3.delete_object(Bucket=..., Key=...): no VersionId")
    from botocore.exceptions import ClientError
    try:
        s3.head_object(Bucket=VERSIONED, Key=DELETED)
        missing = False
    except ClientError as exc:
        missing = exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    yield Check(f"a plain GET of {DELETED} answers 404", missing)
    yield Check("answer is the delete marker's version id (a string)", isinstance(answer, str),
                hint="the DeleteObject answer carries it: s3.delete_object(...)['VersionId']")
    yield Check("answer equals the version id of the delete marker on top", answer == history[0][0],
                hint="answer names another version; list_object_versions shows DeleteMarkers with theirs")


# ---------------------------------------------------------------- public access (08.7)

PUBLIC = "public-site"
PAGE = "index.html"
SECRET = "secret.txt"


def _anonymous(store, url):
    """Status and body of a GET that carries no token and no signature, as a browser sends it."""
    got = store.exchange("GET", url)
    return got.status, got.body


@exercise("08.7", title="One public object, one private", points=3)
def public_and_private(lab, answer=None):
    """public-site/index.html opens for anyone at the URL in answer; public-site/secret.txt stays refused."""
    store = lab.object_store
    s3 = store.s3_client()
    exists, _ = _bucket_state(s3, PUBLIC)
    yield Check(f"the bucket {PUBLIC!r} exists", exists, hint=f's3.create_bucket(Bucket="{PUBLIC}")')
    from botocore.exceptions import ClientError
    stored = {}
    for key in (PAGE, SECRET):
        try:
            stored[key] = s3.get_object(Bucket=PUBLIC, Key=key)["Body"].read()
        except ClientError:
            stored[key] = None
    yield Check(f"{PUBLIC}/{PAGE} and {PUBLIC}/{SECRET} exist", all(v is not None for v in stored.values()),
                hint="upload both objects (with your own signed client)")
    yield Check("answer is a URL (a string starting with the store's URL)",
                isinstance(answer, str) and answer.startswith(store.url),
                hint=f'answer = store.url + "/{PUBLIC}/{PAGE}"')
    path = urlsplit(answer).path
    yield Check(f"the URL names {PUBLIC}/{PAGE}", path.endswith(f"/{PUBLIC}/{PAGE}"),
                hint=f"its path is {path!r}")
    status, body = _anonymous(store, answer)
    yield Check("an anonymous GET of that URL answers 200", status == 200,
                hint=f"it answered {status}: give {PAGE} a public-read ACL (or a bucket policy for that key)")
    yield Check(f"it returns the bytes of {PAGE}", body == stored[PAGE])
    s3_status, _ = _anonymous(store, f"{store.url}/{PUBLIC}/{SECRET}")
    swift_status, _ = _anonymous(store, f"{store.storage_url()}/{PUBLIC}/{SECRET}")
    yield Check(f"an anonymous GET of {SECRET} is refused, through S3 and through Swift",
                s3_status in (401, 403) and swift_status in (401, 403),
                hint=f"S3 answered {s3_status}, Swift {swift_status}: a public bucket ACL, a policy on "
                     f"{PUBLIC}/* or a container ACL (.r:*) opens every object; open only {PAGE}")
