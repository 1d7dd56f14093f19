"""The S3 view of the object store: the same data as the Swift view, spoken as Amazon S3.

A *bucket* is a Swift *container* and a *key* is an *object* name.  Requests are signed
with Signature V4 (:mod:`.sigv4`) by an access key ``account:user`` whose secret is the
user's key (as in Swift's s3api), or not signed at all: an *anonymous* request, which
succeeds only where a bucket's ACL or policy allows it (:mod:`.access`).  Bucket names
are global, as in S3: a bucket belongs to the account that created it, another
account creating one of that name gets ``BucketAlreadyExists``, and its owner creating it
again gets 200 OK (us-east-1's legacy answer; other regions say ``BucketAlreadyOwnedByYou``).  ``x-amz-meta-color``
and Swift's ``X-Object-Meta-Color`` are one and the same stored metadata entry.

Requests are path-style (``/bucket/key``).  Which operation a request is comes from its
method, whether it names a key, and its *subresources* (``?versioning``, ``?acl``,
``?uploads``, ``?tagging`` ...).  What this view implements:

* buckets: Create/Head/Delete/ListBuckets, ListObjects (v1, v2), ListObjectVersions,
  Get/PutBucketVersioning, Get/Put bucket ACL, Get/Put/DeleteBucketPolicy,
  Get/Put/DeleteBucketCors, Get/Put/DeleteBucketTagging, GetBucketLocation, DeleteObjects;
* objects: Put/Get/Head/Delete/CopyObject (each with ``versionId``), Get/Put object ACL,
  Get/Put/DeleteObjectTagging, GetObjectAttributes, POST Object (a browser form signed
  by a policy, :mod:`.form_upload`), CORS preflight (OPTIONS);
* multipart uploads, UploadPartCopy included (:mod:`.multipart`).

Everything else (object lock, lifecycle, replication, KMS ...) answers ``NotImplemented``
naming the operation.  Answers are S3's XML documents; errors are
``<Error><Code>..</Code><Message>..</Message><Resource>..</Resource><RequestId>..</RequestId></Error>``
with the status S3 uses, and every response carries ``x-amz-request-id``.
"""

import base64
import binascii
import email.utils
import fnmatch
import hashlib
import json
import logging
import re
import time
import uuid
import weakref
from urllib.parse import parse_qsl, quote, unquote
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from aiohttp import web

from ..errors import CloudlabError, InvalidInput, NotFound
from . import access, sigv4
from .access import AccessError
from .multipart import MultipartError, Uploads
from .storage import (NULL, ContainerBusy, ContainerNotEmpty, DeleteMarker, EtagMismatch, NoSuchVersion,
                      TooLarge)
from .swift import parse_ranges

XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
REGION = "us-east-1"            # the store's one region (North Virginia, S3's first)
MAX_KEYS = 1000
SMALL_BODY = 1 << 20            # bodies up to this size are read whole: one disk write, no streaming
INLINE_GET = 256 << 10          # objects up to this size are answered in one piece
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
VERSION_ID = re.compile(r"^(null|[0-9a-f]{28})$")
KEPT_HEADERS = ("content-disposition", "content-encoding", "content-language", "cache-control", "expires")
RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type", "response-content-language": "Content-Language",
    "response-expires": "Expires", "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition", "response-content-encoding": "Content-Encoding",
}
MAX_TAGS = 10
# subresources this view does not implement: S3's operation names by method, answered NotImplemented
UNSUPPORTED = {
    "lifecycle": "BucketLifecycleConfiguration", "website": "BucketWebsite", "logging": "BucketLogging",
    "notification": "BucketNotificationConfiguration", "replication": "BucketReplication",
    "encryption": "BucketEncryption", "object-lock": "ObjectLockConfiguration", "retention": "ObjectRetention",
    "legal-hold": "ObjectLegalHold", "torrent": "ObjectTorrent", "restore": "RestoreObject",
    "select": "SelectObjectContent", "accelerate": "BucketAccelerateConfiguration",
    "requestPayment": "BucketRequestPayment", "analytics": "BucketAnalyticsConfiguration",
    "inventory": "BucketInventoryConfiguration", "metrics": "BucketMetricsConfiguration",
    "ownershipControls": "BucketOwnershipControls", "publicAccessBlock": "PublicAccessBlock",
    "intelligent-tiering": "BucketIntelligentTieringConfiguration", "policyStatus": "BucketPolicyStatus",
    "session": "CreateSession", "metadataTable": "BucketMetadataTableConfiguration",
}
VERBS = {"GET": "Get", "PUT": "Put", "DELETE": "Delete", "POST": "Post", "HEAD": "Head"}
# parameters with a value that S3 or its clients send; a bare ?name that is none of these is refused
KNOWN_PARAMS = {
    "acl", "policy", "tagging", "versioning", "versions", "cors", "attributes", "location", "uploads", "delete",
    "uploadId", "partNumber", "versionId", "list-type", "prefix", "delimiter", "marker", "max-keys",
    "continuation-token", "start-after", "fetch-owner", "encoding-type", "key-marker", "version-id-marker",
    "upload-id-marker", "max-uploads", "max-parts", "part-number-marker", "x-id",
    *RESPONSE_OVERRIDES, *UNSUPPORTED,
}
# headers that ask for what is out of scope
UNSUPPORTED_HEADERS = {
    "x-amz-object-lock-mode": "object lock", "x-amz-object-lock-retain-until-date": "object lock",
    "x-amz-object-lock-legal-hold": "object lock", "x-amz-server-side-encryption": "server-side encryption",
    "x-amz-server-side-encryption-customer-algorithm": "server-side encryption with customer keys (SSE-C)",
    "x-amz-bucket-object-lock-enabled": "object lock",
}

_uploads = weakref.WeakKeyDictionary()      # store -> its Uploads
log = logging.getLogger(__name__)


class S3Error(CloudlabError):
    """An S3 error response: code, message and HTTP status (e.g. ``NoSuchKey``, 404).

    Args:
        code: S3 error code.
        message: explanation naming what was wrong.
        status: HTTP status.
        details: extra elements for the XML error body.
        headers: extra response headers (e.g. ``x-amz-delete-marker``).
    """

    def __init__(self, code, message, status=400, details=None, headers=None):
        super().__init__(message)
        self.code = code
        self.status = status
        self.details = details or {}
        self.headers = headers or {}


def not_implemented(operation, what=None):
    """The ``NotImplemented`` error for an S3 operation (or feature) this view leaves out."""
    return S3Error("NotImplemented", f"A header or query you provided implies functionality that is not "
                   f"implemented: cloudlab's S3 view does not implement {what or operation}", 501,
                   details={"Operation": operation})


# ------------------------------------------------------------------------------ formatting

def _iso(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def _http_date(ts):
    return email.utils.formatdate(ts, usegmt=True)


def _xml(root, body):
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{XMLNS}">{body}</{root}>'


def _el(name, value):
    return f"<{name}>{escape(str(value))}</{name}>"


def _quoted(etag):
    return f'"{etag}"'


def _local(el):
    return el.tag.rpartition("}")[2]


def _children(el, name):
    return [c for c in el if _local(c) == name]


def _text(el, name, default=None):
    found = _children(el, name)
    return (found[0].text or "").strip() if found else default


def error_response(exc, resource, request_id, head=False):
    """The XML error response for an :class:`S3Error`, :class:`~.sigv4.AuthError` or MultipartError.

    Args:
        exc: the error (with ``code``, ``status``, and optional ``details``, ``headers``).
        resource: the path the request named.
        request_id: this request's id.
        head: a HEAD request gets no body.
    """
    details = "".join(_el(k, v) for k, v in getattr(exc, "details", {}).items())
    body = ("" if head else
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error>' + _el("Code", exc.code)
            + _el("Message", exc.message) + _el("Resource", resource) + _el("RequestId", request_id)
            + details + "</Error>")
    headers = {"x-amz-request-id": request_id, "x-amz-id-2": request_id, **getattr(exc, "headers", {})}
    return web.Response(status=exc.status, text=body or None, content_type="application/xml", headers=headers)


def _translate(exc):
    """The S3Error for an error of the store or of access checking."""
    if isinstance(exc, EtagMismatch):
        return S3Error("BadDigest", exc.message)
    if isinstance(exc, TooLarge):
        return S3Error("EntityTooLarge", exc.message)
    if isinstance(exc, ContainerNotEmpty):
        return S3Error("BucketNotEmpty", "The bucket you tried to delete is not empty: " + exc.message, 409)
    if isinstance(exc, ContainerBusy):
        return S3Error("OperationAborted", "A conflicting conditional operation is currently in progress "
                       "against this resource. Try again: " + exc.message, 409)
    if isinstance(exc, AccessError):
        return S3Error(exc.code, exc.message, 501 if exc.code == "NotImplemented" else 400)
    if isinstance(exc, NoSuchVersion):
        return S3Error("NoSuchVersion", "The specified version does not exist. " + exc.message, 404)
    if isinstance(exc, InvalidInput):
        return S3Error("InvalidArgument", exc.message)
    if isinstance(exc, NotFound):
        # e.g. the bucket was deleted while this request was under way
        return S3Error("NoSuchBucket", exc.message, 404)
    return S3Error("InvalidRequest", exc.message)


# ------------------------------------------------------------------------------ entry point

async def handle(request, store, users):
    """Answer one S3 request (already routed here by the server) with an aiohttp response.

    Args:
        request: the aiohttp request.
        store: the :class:`~cloudlab.object_store.storage.Store` holding the data.
        users: the :class:`~cloudlab.object_store.auth.Users` whose keys sign requests.
    """
    from .server import undecodable_header
    request_id = uuid.uuid4().hex[:16].upper()
    raw_path, _, raw_query = request.raw_path.partition("?")
    resource = unquote(raw_path)
    head = request.method == "HEAD"
    op = None
    try:
        bad = undecodable_header(request.headers)
        if bad is not None:
            raise S3Error("InvalidArgument", f"the {bad} header is not valid UTF-8: send it as UTF-8 text")
        try:
            resource = unquote(raw_path, errors="strict")
        except UnicodeDecodeError:
            raise S3Error("InvalidURI", "Couldn't parse the specified URI: the path is not valid UTF-8 "
                          "once percent-decoded") from None
        op = _Operation(request, store, users, resource, raw_path, raw_query, request_id)
        response = await op.run()
    except (S3Error, sigv4.AuthError, MultipartError) as exc:
        response = error_response(exc, resource, request_id, head)
    except DeleteMarker as exc:
        status, code = (405, "MethodNotAllowed") if exc.addressed else (404, "NoSuchKey")
        headers = {"x-amz-delete-marker": "true", "x-amz-version-id": exc.version_id or NULL}
        if exc.addressed and exc.timestamp is not None:
            headers["Last-Modified"] = _http_date(exc.timestamp)    # as the GetObject reference says
        details = {"Method": request.method, "ResourceType": "DeleteMarker"} if exc.addressed else \
            {"Key": op.key if op is not None else ""}
        response = error_response(S3Error(code, "The specified method is not allowed against this resource: "
                                          "it is a delete marker" if exc.addressed else
                                          "The specified key does not exist (its latest version is a delete "
                                          "marker).", status, details=details, headers=headers),
                                  resource, request_id, head)
    except NoSuchVersion as exc:
        # the reference's NoSuchVersion names the key and the version asked for
        details = {"Key": op.key, "VersionId": op.query.get("versionId", "")} if op is not None else {}
        response = error_response(S3Error("NoSuchVersion", "The specified version does not exist. " + exc.message,
                                          404, details=details), resource, request_id, head)
    except (CloudlabError, AccessError) as exc:
        response = error_response(_translate(exc), resource, request_id, head)
    except OSError as exc:
        log.error("S3 %s %r: the disk refused: %s", request.method, resource[:200], exc)
        status = 507 if exc.errno in (28, 122) else 503
        response = error_response(S3Error("ServiceUnavailable" if status == 503 else "InsufficientStorage",
                                          f"the store could not complete the request: {exc.strerror or exc}",
                                          status), resource, request_id, head)
    if not response.prepared:
        response.headers["x-amz-request-id"] = request_id
        response.headers.setdefault("x-amz-id-2", request_id)
        if op is not None and op.cors_headers:
            response.headers.update(op.cors_headers)
    return response


def _uploads_for(store):
    uploads = _uploads.get(store)
    if uploads is None:
        uploads = _uploads[store] = Uploads(store.root)
    return uploads


def _query(raw_query):
    """The query string as a dict (last value wins); a bare name maps to ""."""
    out = {}
    for item in raw_query.split("&") if raw_query else ():
        if not item:
            continue
        name, _, value = item.partition("=")
        try:
            out[unquote(name, errors="strict")] = unquote(value.replace("+", "%20"), errors="strict")
        except UnicodeDecodeError:
            raise S3Error("InvalidArgument", f"the query parameter {name!r} is not valid UTF-8 once "
                          "percent-decoded") from None
    return out


class _Operation:
    """One S3 request being answered: parses the path and query, authenticates, then dispatches."""

    def __init__(self, request, store, users, path, raw_path, raw_query, request_id):
        self.request = request
        self.store = store
        self.users = users
        self.raw_path = raw_path
        self.raw_query = raw_query
        self.request_id = request_id
        self.bucket, _, self.key = path.lstrip("/").partition("/")
        self.query = _query(raw_query)
        self.auth = None
        self.requester = None       # the signing account; None: anonymous
        self.owner = None           # the bucket's account, once looked up
        self.bucket_info = None
        self.cors_headers = {}

    # ---- authentication and dispatch -------------------------------------------------------

    def _authenticate(self):
        headers = self.request.headers
        signed = "authorization" in headers or "X-Amz-Signature=" in self.raw_query \
            or "X-Amz-Algorithm=" in self.raw_query
        if not signed:
            if "AWSAccessKeyId" in self.query and "Signature" in self.query:
                raise sigv4.AuthError("InvalidRequest", "This URL is presigned with Signature Version 2, which "
                                      "this store does not accept: presign with Signature Version 4 (AWS CLI: "
                                      "aws configure set default.s3.signature_version s3v4)", 400)
            return
        accounts = {}

        def lookup(access_key):
            found = self.users.s3_secret(access_key)
            if found is None:
                return None
            accounts[access_key] = found[1]
            return found[0]

        self.auth = sigv4.verify(self.request.method, self.raw_path, self.raw_query, headers, lookup)
        self.requester = accounts[self.auth.access_key]

    def _check_query(self):
        q = self.query
        for sub, name in UNSUPPORTED.items():
            if sub in q:
                raise not_implemented(VERBS.get(self.request.method, self.request.method) + name,
                                      f"{VERBS.get(self.request.method, '')}{name} (?{sub})")
        for name, value in q.items():
            if value == "" and name not in KNOWN_PARAMS and not name.startswith("X-Amz-"):
                raise S3Error("InvalidArgument", f"the query subresource ?{name} is not one S3 defines "
                              "(or this view knows)", details={"ArgumentName": name})
        for header, what in UNSUPPORTED_HEADERS.items():
            if header in self.request.headers:
                raise not_implemented(what, f"{what} ({header})")

    async def run(self):
        """Dispatch on method, bucket/key and subresources; returns the response."""
        method = self.request.method
        if method == "OPTIONS":
            return await self.preflight()
        if method == "POST" and self.bucket and not self.key and \
                self.request.headers.get("Content-Type", "").startswith("multipart/form-data"):
            from .form_upload import post_object
            return await post_object(self)
        self._authenticate()
        self._check_query()
        if not self.bucket:
            if method == "GET":
                return await self.list_buckets()
            raise S3Error("MethodNotAllowed", f"{method} is not allowed on the service", 405)
        if not self.key:
            table = {"GET": self.get_bucket, "HEAD": self.head_bucket, "PUT": self.put_bucket,
                     "DELETE": self.delete_bucket, "POST": self.post_bucket}
        else:
            table = {"GET": self.get_object, "HEAD": self.get_object, "PUT": self.put_object,
                     "DELETE": self.delete_object, "POST": self.post_object}
        action = table.get(method)
        if action is None:
            raise S3Error("MethodNotAllowed", f"{method} is not allowed on this resource", 405)
        if self.bucket:
            await self._cors_for_request()
        return await action()

    # ---- buckets, owners and permissions ------------------------------------------------------

    async def _find_bucket(self):
        """The bucket's ContainerInfo and owner (``self.owner``): the requester's own first, else global."""
        if self.bucket_info is not None:
            return self.bucket_info
        try:
            if self.requester is not None:
                try:
                    self.bucket_info = await self.store.container_info(self.requester, self.bucket)
                    self.owner = self.requester
                    return self.bucket_info
                except NotFound:
                    pass
            owner = await self.store.container_owner(self.bucket)
            if owner is None:
                raise S3Error("NoSuchBucket", f"The specified bucket does not exist: {self.bucket}", 404,
                              details={"BucketName": self.bucket})
            self.bucket_info = await self.store.container_info(owner, self.bucket)
            self.owner = owner
            return self.bucket_info
        except InvalidInput as exc:
            raise S3Error("InvalidBucketName", exc.message) from None

    async def _require(self, action, key=None, object_acl=None):
        """Look the bucket up and check that the requester may do ``action`` there; returns its info.

        Raises:
            S3Error: NoSuchBucket, or AccessDenied (403) when neither ownership, the
                bucket policy nor an ACL allows it.
        """
        info = await self._find_bucket()
        if self.requester == self.owner:
            return info
        config = info.config
        if not access.s3_allowed(self.requester, self.owner, action, self.bucket, key,
                                 bucket_acl=config.get("acl"), object_acl=object_acl,
                                 policy=config.get("policy")):
            who = "an anonymous request" if self.requester is None else f"account {self.requester}"
            raise S3Error("AccessDenied", f"Access Denied: {who} may not {action} on "
                          f"{self.bucket}{'/' + key if key else ''}", 403)
        return info

    def _owner_xml(self, account=None):
        account = account or self.owner or self.requester
        return "<Owner>" + _el("ID", account) + _el("DisplayName", account) + "</Owner>"

    def _xml_response(self, root, body, status=200, headers=None):
        return web.Response(status=status, text=_xml(root, body), content_type="application/xml",
                            headers=headers)

    def _known_accounts(self):
        return {u.storage_account for u in self.users}

    def _version_param(self, name="versionId"):
        value = self.query.get(name)
        if value is None:
            return None
        if not VERSION_ID.match(value):
            raise S3Error("InvalidArgument", f"Invalid version id specified: {value!r}",
                          details={"ArgumentName": name, "ArgumentValue": value})
        return value

    def _version_header(self, version_id):
        """``x-amz-version-id`` for an object of a bucket whose versioning was ever set."""
        if self.bucket_info is not None and self.bucket_info.config.get("versioning"):
            return {"x-amz-version-id": version_id or NULL}
        return {}

    # ---- request bodies -----------------------------------------------------------------------

    def _body_chunks(self):
        if self.auth is None:
            return self._plain_chunks()
        return sigv4.payload_chunks(self.auth, self.request.content, self.request.headers)

    async def _plain_chunks(self):
        while chunk := await self.request.content.read(1 << 20):
            yield chunk

    async def _small_body(self):
        """The whole body as bytes when it is small and plain; else None (stream it)."""
        length = self.request.content_length
        streaming = self.auth is not None and self.auth.payload.startswith("STREAMING-")
        if (streaming or length is None or length > SMALL_BODY
                or "chunked" in self.request.headers.get("Transfer-Encoding", "")):
            return None
        data = await self.request.read()
        if self.auth is not None and self.auth.payload != sigv4.UNSIGNED_PAYLOAD \
                and hashlib.sha256(data).hexdigest() != self.auth.payload:
            raise sigv4.AuthError("XAmzContentSHA256Mismatch",
                                  "The provided 'x-amz-content-sha256' header does not match what was "
                                  "computed: the body changed after it was signed", 400)
        return data

    async def _read_body(self, limit=1 << 20):
        """The whole (small) request body, checked against its signature: for XML and JSON documents."""
        parts, total = [], 0
        async for chunk in self._body_chunks():
            total += len(chunk)
            if total > limit:
                raise S3Error("MaxMessageLengthExceeded", f"the request body is larger than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    def _content_md5(self):
        value = self.request.headers.get("Content-MD5")
        if value is None:
            return None
        try:
            digest = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            digest = b""
        if len(digest) != 16:
            raise S3Error("InvalidDigest", "The Content-MD5 you specified is not the base64 of a 16-byte MD5")
        return digest.hex()

    def _metadata(self):
        meta = {}
        for name, value in self.request.headers.items():
            lower = name.lower()
            if lower.startswith("x-amz-meta-"):
                meta[lower[len("x-amz-meta-"):]] = value
        return meta

    def _kept_headers(self):
        return {h: self.request.headers[h] for h in KEPT_HEADERS if h in self.request.headers}

    def _parse_xml(self, data, root):
        try:
            doc = ElementTree.fromstring(data)
        except ElementTree.ParseError as exc:
            raise S3Error("MalformedXML", f"The XML you provided was not well-formed or did not validate "
                          f"against our published schema: {exc}") from None
        if _local(doc) != root:
            raise S3Error("MalformedXML", f"expected a <{root}> document, got <{_local(doc)}>")
        return doc

    async def _xml_body(self, root):
        data = await self._read_body()
        if not data.strip():
            raise S3Error("MalformedXML", f"the request needs a <{root}> document as its body")
        return self._parse_xml(data, root)

    # ---- service and buckets ---------------------------------------------------------------

    async def list_buckets(self):
        """ListBuckets: the account's buckets with their creation dates (anonymous: AccessDenied)."""
        if self.requester is None:
            raise S3Error("AccessDenied", "Access Denied: ListBuckets needs a signed request", 403)
        entries = await self.store.list_containers(self.requester)
        buckets = []
        for e in entries:
            created = (await self.store.container_info(self.requester, e.name)).timestamp
            buckets.append("<Bucket>" + _el("Name", e.name) + _el("CreationDate", _iso(created)) + "</Bucket>")
        return self._xml_response("ListAllMyBucketsResult",
                                  self._owner_xml(self.requester) + f"<Buckets>{''.join(buckets)}</Buckets>")

    async def put_bucket(self):
        """PUT on a bucket: CreateBucket, or PutBucketVersioning/Acl/Policy/Cors/Tagging."""
        q = self.query
        for sub, action in (("versioning", self.put_versioning), ("acl", self.put_bucket_acl),
                            ("policy", self.put_policy), ("cors", self.put_cors),
                            ("tagging", self.put_bucket_tagging)):
            if sub in q:
                return await action()
        return await self.create_bucket()

    async def create_bucket(self):
        """CreateBucket: a new container (S3's naming rules apply to new buckets only)."""
        if self.requester is None:
            raise S3Error("AccessDenied", "Access Denied: CreateBucket needs a signed request", 403)
        if not BUCKET_NAME.match(self.bucket) or ".." in self.bucket:
            raise S3Error("InvalidBucketName",
                          f"The specified bucket is not valid: {self.bucket!r}; use 3-63 lowercase letters, "
                          "digits, dots and hyphens, starting and ending with a letter or digit",
                          details={"BucketName": self.bucket})
        body = await self._read_body()
        if body.strip():
            doc = self._parse_xml(body, "CreateBucketConfiguration")
            region = _text(doc, "LocationConstraint", "")
            if region not in ("", REGION):
                raise S3Error("InvalidLocationConstraint", f"The specified location-constraint is not valid: "
                              f"this store has one region, {REGION}, not {region!r}")
        acl = self._acl_from_headers()
        owner = await self.store.container_owner(self.bucket)
        if owner is not None and owner != self.requester:
            raise S3Error("BucketAlreadyExists", "The requested bucket name is not available. The bucket "
                          "namespace is shared by all users of the system. Select a different name and try "
                          "again.", 409, details={"BucketName": self.bucket})
        config = {"acl": acl} if acl else None
        if not await self.store.create_container(self.requester, self.bucket, config=config):
            # S3 answers BucketAlreadyOwnedByYou (409) in every region but us-east-1, this
            # store's: there, for legacy compatibility (CreateBucket's reference), 200 OK, and
            # the bucket's ACL is reset to the one this request asks for (private without one)
            await self.store.update_container_config(self.requester, self.bucket, {"acl": acl or None})
        return web.Response(status=200, headers={"Location": f"/{self.bucket}"})

    async def head_bucket(self):
        """HeadBucket: 200 if the bucket exists and may be read, 403 or 404 (no body) otherwise."""
        await self._require("s3:ListBucket")
        return web.Response(status=200, headers={"x-amz-bucket-region": REGION})

    async def delete_bucket(self):
        """DELETE on a bucket: DeleteBucket, or DeleteBucketPolicy/Cors/Tagging."""
        q = self.query
        info = await self._find_bucket()
        if self.requester != self.owner:
            raise S3Error("AccessDenied", "Access Denied: only the bucket's owner may delete it or its "
                          "configuration", 403)
        for sub, key in (("policy", "policy"), ("cors", "cors"), ("tagging", "tags")):
            if sub in q:
                await self.store.update_container_config(self.owner, self.bucket, {key: None})
                return web.Response(status=204)
        del info
        await self.store.delete_container(self.owner, self.bucket)
        await _uploads_for(self.store).abort_bucket(self.owner, self.bucket)
        return web.Response(status=204)

    async def get_bucket(self):
        """GET on a bucket: ListObjects (v1, v2), ListObjectVersions, or one of its configurations."""
        q = self.query
        if "location" in q:
            await self._owner_only()
            return web.Response(text=_xml("LocationConstraint", ""), content_type="application/xml")
        if "versioning" in q:
            info = await self._owner_only()
            state = info.config.get("versioning")
            return self._xml_response("VersioningConfiguration", _el("Status", state) if state else "")
        if "acl" in q:
            info = await self._require("s3:GetBucketAcl")
            return self._xml_response("AccessControlPolicy",
                                      access.acl_xml(info.config.get("acl"), self.owner, self.owner))
        if "policy" in q:
            info = await self._owner_only()
            if not info.config.get("policy"):
                raise S3Error("NoSuchBucketPolicy", "The bucket policy does not exist", 404,
                              details={"BucketName": self.bucket})
            return web.Response(text=json.dumps(info.config["policy"]), content_type="application/json")
        if "cors" in q:
            info = await self._owner_only()
            if not info.config.get("cors"):
                raise S3Error("NoSuchCORSConfiguration", "The CORS configuration does not exist", 404,
                              details={"BucketName": self.bucket})
            return self._xml_response("CORSConfiguration", _cors_xml(info.config["cors"]))
        if "tagging" in q:
            info = await self._owner_only()
            if not info.config.get("tags"):
                raise S3Error("NoSuchTagSet", "The TagSet does not exist", 404,
                              details={"BucketName": self.bucket})
            return self._xml_response("Tagging", _tagset_xml(info.config["tags"]))
        if "uploads" in q:
            return await self.list_uploads()
        if "versions" in q:
            return await self.list_versions()
        return await self.list_objects(v2=q.get("list-type") == "2")

    async def _owner_only(self):
        info = await self._find_bucket()
        if self.requester != self.owner:
            raise S3Error("AccessDenied", "Access Denied: only the bucket's owner may read or change its "
                          "configuration", 403)
        return info

    # ---- bucket configuration --------------------------------------------------------------

    async def put_versioning(self):
        """PutBucketVersioning: Enabled or Suspended (never back to unversioned, as in S3)."""
        await self._owner_only()
        doc = await self._xml_body("VersioningConfiguration")
        status = _text(doc, "Status")
        if _text(doc, "MfaDelete") == "Enabled":
            raise not_implemented("PutBucketVersioning", "MFA delete")
        if status not in ("Enabled", "Suspended"):
            raise S3Error("IllegalVersioningConfigurationException",
                          f"The versioning configuration specified in the request is invalid: Status must be "
                          f"Enabled or Suspended, not {status!r}")
        await self.store.update_container_config(self.owner, self.bucket, {"versioning": status})
        return web.Response(status=200)

    def _acl_from_headers(self):
        return access.acl_from_headers(self.request.headers, self._known_accounts())

    async def put_bucket_acl(self):
        """PutBucketAcl: a canned ACL, grant headers, or an AccessControlPolicy document."""
        await self._require("s3:PutBucketAcl")
        acl = await self._acl_request()
        await self.store.update_container_config(self.owner, self.bucket, {"acl": acl})
        return web.Response(status=200)

    async def _acl_request(self):
        acl = self._acl_from_headers()
        body = await self._read_body()
        if body.strip():
            if acl is not None:
                raise S3Error("UnexpectedContent", "This request does not support content: send the ACL as "
                              "headers or as a document, not both")
            acl = access.acl_from_xml(self._parse_xml(body, "AccessControlPolicy"), self.owner,
                                      self._known_accounts())
        if acl is None:
            raise S3Error("MissingSecurityHeader", "Your request was missing a required header: x-amz-acl, "
                          "an x-amz-grant-* header, or an AccessControlPolicy body")
        return acl

    async def put_policy(self):
        """PutBucketPolicy: a JSON policy document, checked before it is stored."""
        await self._owner_only()
        body = await self._read_body(limit=20 << 10)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise S3Error("MalformedPolicy", "Policies must be valid UTF-8 JSON") from None
        policy = access.parse_policy(text, self.bucket)
        await self.store.update_container_config(self.owner, self.bucket, {"policy": policy})
        return web.Response(status=204)

    async def put_cors(self):
        """PutBucketCors: CORS rules (allowed origins, methods, headers) for browsers."""
        await self._owner_only()
        doc = await self._xml_body("CORSConfiguration")
        rules = []
        for rule in _children(doc, "CORSRule"):
            methods = [(m.text or "").strip() for m in _children(rule, "AllowedMethod")]
            origins = [(o.text or "").strip() for o in _children(rule, "AllowedOrigin")]
            if not methods or not origins:
                raise S3Error("MalformedXML", "each <CORSRule> needs an <AllowedMethod> and an <AllowedOrigin>")
            for m in methods:
                if m not in ("GET", "PUT", "POST", "DELETE", "HEAD"):
                    raise S3Error("InvalidRequest", f"Found unsupported HTTP method in CORS config. "
                                  f"Unsupported method is {m}")
            max_age = _text(rule, "MaxAgeSeconds")
            if max_age is not None and not max_age.isdigit():
                raise S3Error("MalformedXML", f"<MaxAgeSeconds> must be a number of seconds, not {max_age!r}")
            rules.append({"id": _text(rule, "ID"), "methods": methods, "origins": origins,
                          "headers": [(h.text or "").strip() for h in _children(rule, "AllowedHeader")],
                          "expose": [(h.text or "").strip() for h in _children(rule, "ExposeHeader")],
                          "max_age": int(max_age) if max_age else None})
        if not rules:
            raise S3Error("MalformedXML", "a CORSConfiguration needs at least one <CORSRule>")
        if len(rules) > 100:
            raise S3Error("MalformedXML", "a CORSConfiguration may hold at most 100 rules")
        await self.store.update_container_config(self.owner, self.bucket, {"cors": rules})
        return web.Response(status=200)

    async def put_bucket_tagging(self):
        """PutBucketTagging: the bucket's TagSet (at most 50 tags)."""
        await self._owner_only()
        tags = _parse_tagging(await self._xml_body("Tagging"), limit=50)
        await self.store.update_container_config(self.owner, self.bucket, {"tags": tags})
        return web.Response(status=204)

    # ---- CORS --------------------------------------------------------------------------------

    def _cors_rule(self, rules, origin, method, headers=()):
        for rule in rules or ():
            if not any(fnmatch.fnmatchcase(origin, o) for o in rule["origins"]):
                continue
            if method not in rule["methods"]:
                continue
            allowed = [h.lower() for h in rule["headers"]]
            if all(any(fnmatch.fnmatchcase(h.lower(), a) for a in allowed) for h in headers):
                return rule
        return None

    async def preflight(self):
        """A browser's CORS preflight (OPTIONS): allowed origin, methods and headers, or 403."""
        origin = self.request.headers.get("Origin")
        method = self.request.headers.get("Access-Control-Request-Method")
        if not origin or not method:
            raise S3Error("BadRequest", "Insufficient information. Origin request header needed."
                          if not origin else "Invalid Access-Control-Request-Method header", 400)
        if not self.bucket:
            raise S3Error("BadRequest", "a CORS preflight names a bucket", 400)
        info = await self._find_bucket()
        wanted = [h.strip() for h in self.request.headers.get("Access-Control-Request-Headers", "").split(",")
                  if h.strip()]
        rule = self._cors_rule(info.config.get("cors"), origin, method, wanted)
        if rule is None:
            raise S3Error("AccessForbidden", "CORSResponse: This CORS request is not allowed. This is usually "
                          "because the evalution of Origin, request method / Access-Control-Request-Method or "
                          "Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.", 403)
        headers = {"Access-Control-Allow-Origin": "*" if rule["origins"] == ["*"] else origin,
                   "Access-Control-Allow-Methods": ", ".join(rule["methods"]),
                   "Vary": "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"}
        if wanted:
            headers["Access-Control-Allow-Headers"] = ", ".join(wanted)
        if rule["expose"]:
            headers["Access-Control-Expose-Headers"] = ", ".join(rule["expose"])
        if rule["max_age"] is not None:
            headers["Access-Control-Max-Age"] = str(rule["max_age"])
        return web.Response(status=200, headers=headers)

    async def _cors_for_request(self):
        """For a request with an Origin: the CORS headers its answer carries when a rule allows it."""
        origin = self.request.headers.get("Origin")
        if not origin:
            return
        try:
            info = await self._find_bucket()
        except S3Error:
            self.bucket_info = None     # looked up again (and refused properly) by the operation
            return
        rule = self._cors_rule(info.config.get("cors"), origin, self.request.method)
        if rule is not None:
            self.cors_headers = {"Access-Control-Allow-Origin": "*" if rule["origins"] == ["*"] else origin,
                                 "Access-Control-Allow-Methods": ", ".join(rule["methods"]),
                                 "Vary": "Origin"}
            if rule["expose"]:
                self.cors_headers["Access-Control-Expose-Headers"] = ", ".join(rule["expose"])
            if rule["max_age"] is not None:
                self.cors_headers["Access-Control-Max-Age"] = str(rule["max_age"])

    # ---- listings ----------------------------------------------------------------------------

    def _encoder(self):
        q = self.query
        encode = q.get("encoding-type") == "url"
        if "encoding-type" in q and not encode:
            raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request: use url")
        return encode, ((lambda s: quote(s, safe="/")) if encode else (lambda s: s))

    def _max_keys(self, name="max-keys"):
        try:
            value = int(self.query.get(name, MAX_KEYS)) if len(self.query.get(name, "")) < 12 else -1
        except ValueError:
            value = -1
        if value < 0:
            raise S3Error("InvalidArgument", f"{name} must be a number from 0 to {MAX_KEYS}",
                          details={"ArgumentName": name})
        return min(value, MAX_KEYS)

    async def list_objects(self, v2):
        """ListObjects / ListObjectsV2: prefix, delimiter, max-keys, marker or continuation token."""
        q = self.query
        await self._require("s3:ListBucket")
        max_keys = self._max_keys()
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter") or None
        encode, enc = self._encoder()
        if v2:
            token = q.get("continuation-token")
            if token is not None:
                try:
                    marker = base64.urlsafe_b64decode(token.encode()).decode("utf-8")
                except (binascii.Error, ValueError):
                    raise S3Error("InvalidArgument", "The continuation token provided is incorrect") from None
            else:
                marker = q.get("start-after")
        else:
            marker = q.get("marker")
        entries = []
        if max_keys:
            entries = await self.store.list_objects(self.owner, self.bucket, prefix=prefix,
                                                    delimiter=delimiter, marker=marker or None,
                                                    limit=max_keys + 1)
        truncated = len(entries) > max_keys
        entries = entries[:max_keys]
        owner = self._owner_xml() if (not v2 or q.get("fetch-owner") == "true") else ""
        contents, prefixes = [], []
        for e in entries:
            if e.subdir:
                prefixes.append("<CommonPrefixes>" + _el("Prefix", enc(e.name)) + "</CommonPrefixes>")
            else:
                contents.append("<Contents>" + _el("Key", enc(e.name)) + _el("LastModified", _iso(e.timestamp))
                                + _el("ETag", _quoted(e.etag)) + _el("Size", e.size)
                                + owner + _el("StorageClass", "STANDARD") + "</Contents>")
        parts = [_el("Name", self.bucket), _el("Prefix", enc(prefix))]
        if delimiter:
            parts.append(_el("Delimiter", enc(delimiter)))
        parts.append(_el("MaxKeys", max_keys))
        if encode:
            parts.append(_el("EncodingType", "url"))
        parts.append(_el("IsTruncated", "true" if truncated else "false"))
        if v2:
            parts.append(_el("KeyCount", len(entries)))
            if "continuation-token" in q:
                parts.append(_el("ContinuationToken", q["continuation-token"]))
            if "start-after" in q:
                parts.append(_el("StartAfter", enc(q["start-after"])))
            if truncated:
                token = base64.urlsafe_b64encode(entries[-1].name.encode("utf-8")).decode()
                parts.append(_el("NextContinuationToken", token))
        else:
            parts.append(_el("Marker", enc(marker or "")))
            if truncated and delimiter:
                parts.append(_el("NextMarker", enc(entries[-1].name)))
        return self._xml_response("ListBucketResult", "".join(parts + contents + prefixes))

    async def list_versions(self):
        """ListObjectVersions: every version and delete marker, keys in order and newest first."""
        q = self.query
        await self._require("s3:ListBucketVersions")
        max_keys = self._max_keys()
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter") or None
        key_marker = q.get("key-marker") or None
        version_marker = q.get("version-id-marker") or None
        if version_marker and not key_marker:
            raise S3Error("InvalidArgument", "A version-id marker cannot be specified without a key marker.",
                          details={"ArgumentName": "version-id-marker"})
        if version_marker and not VERSION_ID.match(version_marker):
            raise S3Error("InvalidArgument", f"Invalid version id specified: {version_marker!r}")
        encode, enc = self._encoder()
        entries = await self.store.list_versions(self.owner, self.bucket, prefix=prefix, delimiter=delimiter,
                                                 key_marker=key_marker, version_marker=version_marker,
                                                 limit=max_keys + 1)
        truncated = len(entries) > max_keys
        entries = entries[:max_keys]
        owner = self._owner_xml()
        parts = [_el("Name", self.bucket), _el("Prefix", enc(prefix)), _el("KeyMarker", enc(key_marker or "")),
                 _el("VersionIdMarker", version_marker or "")]
        if truncated and entries:
            last = entries[-1]
            parts.append(_el("NextKeyMarker", enc(last.name)))
            if not last.subdir:
                parts.append(_el("NextVersionIdMarker", last.version_id))
        parts.append(_el("MaxKeys", max_keys))
        if delimiter:
            parts.append(_el("Delimiter", enc(delimiter)))
        if encode:
            parts.append(_el("EncodingType", "url"))
        parts.append(_el("IsTruncated", "true" if truncated else "false"))
        for e in entries:
            if e.subdir:
                parts.append("<CommonPrefixes>" + _el("Prefix", enc(e.name)) + "</CommonPrefixes>")
            elif e.delete_marker:
                parts.append("<DeleteMarker>" + _el("Key", enc(e.name)) + _el("VersionId", e.version_id)
                             + _el("IsLatest", str(e.is_latest).lower()) + _el("LastModified", _iso(e.timestamp))
                             + owner + "</DeleteMarker>")
            else:
                parts.append("<Version>" + _el("Key", enc(e.name)) + _el("VersionId", e.version_id)
                             + _el("IsLatest", str(e.is_latest).lower()) + _el("LastModified", _iso(e.timestamp))
                             + _el("ETag", _quoted(e.etag)) + _el("Size", e.size)
                             + _el("StorageClass", "STANDARD") + owner + "</Version>")
        return self._xml_response("ListVersionsResult", "".join(parts))

    async def list_uploads(self):
        """ListMultipartUploads: the bucket's uploads in progress."""
        await self._require("s3:ListBucketMultipartUploads")
        uploads = await _uploads_for(self.store).list_uploads(self.owner, self.bucket)
        body = _el("Bucket", self.bucket) + _el("IsTruncated", "false") + "".join(
            "<Upload>" + _el("Key", key) + _el("UploadId", uid) + _el("Initiated", _iso(ts))
            + _el("StorageClass", "STANDARD") + "</Upload>" for key, uid, ts in uploads)
        return self._xml_response("ListMultipartUploadsResult", body)

    async def post_bucket(self):
        """POST on a bucket: DeleteObjects (``?delete``), up to 1000 keys (and versions) in one request."""
        if "delete" not in self.query:
            raise not_implemented("PostBucket", "POST on a bucket other than ?delete or a browser form upload")
        await self._require("s3:DeleteObject")
        doc = await self._xml_body("Delete")
        quiet = (_text(doc, "Quiet", "") or "").lower() == "true"
        deleted, errors = [], []
        objects = _children(doc, "Object")
        if len(objects) > 1000:
            raise S3Error("MalformedXML", "a DeleteObjects request may name at most 1000 keys")
        for obj in objects:
            key = _text(obj, "Key", "")
            version = _text(obj, "VersionId")
            try:
                if version is not None and not VERSION_ID.match(version):
                    raise S3Error("NoSuchVersion", "The specified version does not exist.")
                vid, marker = await self.store.delete_object(self.owner, self.bucket, key, version=version)
            except NotFound as exc:
                if isinstance(exc, NoSuchVersion):
                    vid, marker = version, False    # deleting a version that is not there succeeds too
                else:
                    vid, marker = None, False       # deleting a missing key succeeds in S3
            except (S3Error, InvalidInput) as exc:
                code = getattr(exc, "code", "InvalidArgument")
                errors.append("<Error>" + _el("Key", key) + _el("Code", code)
                              + _el("Message", exc.message) + "</Error>")
                continue
            if not quiet:
                extra = ""
                if version is not None:
                    extra += _el("VersionId", version)
                    if marker:
                        extra += _el("DeleteMarker", "true")
                elif marker:
                    extra += _el("DeleteMarker", "true") + _el("DeleteMarkerVersionId", vid)
                deleted.append("<Deleted>" + _el("Key", key) + extra + "</Deleted>")
        return self._xml_response("DeleteResult", "".join(deleted + errors))

    # ---- objects --------------------------------------------------------------------------

    def _system_for_new_object(self):
        """ACL and tags a write sets with ``x-amz-acl``/``x-amz-grant-*`` and ``x-amz-tagging``."""
        system = {}
        acl = self._acl_from_headers()
        if acl:
            system["acl"] = acl
        tagging = self.request.headers.get("x-amz-tagging")
        if tagging:
            system["tags"] = _tags_from_query(tagging)
        return system

    async def put_object(self):
        """PUT on a key: PutObject, CopyObject, UploadPart(Copy), PutObjectAcl or PutObjectTagging."""
        q = self.query
        if "uploadId" in q or "partNumber" in q:
            return await self.upload_part()
        if "acl" in q:
            return await self.put_object_acl()
        if "tagging" in q:
            return await self.put_object_tagging()
        if "x-amz-copy-source" in self.request.headers:
            return await self.copy_object()
        info = await self._require("s3:PutObject", self.key)
        content_md5 = self._content_md5()
        headers = self.request.headers
        system = self._system_for_new_object()
        body = await self._small_body()
        if body is None:
            body = self._body_chunks()
        stored = await self.store.put_object(
            self.owner, self.bucket, self.key, body,
            content_type=headers.get("Content-Type") or "binary/octet-stream",
            metadata=self._metadata(), headers=self._kept_headers(), expected_etag=content_md5,
            system=system)
        del info
        return web.Response(status=200, headers={"ETag": _quoted(stored.etag),
                                                 **self._version_header(stored.version_id)})

    def _copy_source(self):
        raw = self.request.headers["x-amz-copy-source"]
        source, _, query = raw.partition("?")
        source = unquote(source)
        version = None
        if query:
            params = dict(parse_qsl(query, keep_blank_values=True))
            if set(params) - {"versionId"}:
                raise S3Error("InvalidArgument", "x-amz-copy-source may only carry ?versionId=")
            version = params.get("versionId")
            if version is not None and not VERSION_ID.match(version):
                raise S3Error("InvalidArgument", f"Invalid version id specified: {version!r}")
        src_bucket, _, src_key = source.lstrip("/").partition("/")
        if not src_bucket or not src_key:
            raise S3Error("InvalidArgument", "Copy Source must mention the source bucket and key: "
                          "sourcebucket/sourcekey")
        return src_bucket, src_key, version

    async def _copy_source_object(self):
        """(owner account, bucket, key, version, ObjectInfo) of the copy source, checked for reading."""
        src_bucket, src_key, version = self._copy_source()
        source = _Operation(self.request, self.store, self.users, f"/{src_bucket}/{src_key}", "", "",
                            self.request_id)
        source.auth, source.requester = self.auth, self.requester
        await source._find_bucket()
        try:
            src = await self.store.head_object(source.owner, src_bucket, src_key, version=version)
        except DeleteMarker:
            raise S3Error("NoSuchKey" if version is None else "InvalidRequest",
                          "The specified copy source is a delete marker", 404 if version is None else 400) \
                from None
        except NoSuchVersion:
            raise
        except NotFound:
            raise S3Error("NoSuchKey", f"The specified key does not exist: {src_bucket}/{src_key}", 404,
                          details={"Key": src_key}) from None
        await source._require("s3:GetObject", src_key, object_acl=src.system.get("acl"))
        return source.owner, src_bucket, src_key, version, src

    async def copy_object(self):
        """CopyObject: server-side copy, metadata copied or replaced (x-amz-metadata-directive)."""
        await self._require("s3:PutObject", self.key)
        src_owner, src_bucket, src_key, version, src = await self._copy_source_object()
        directive = self.request.headers.get("x-amz-metadata-directive", "COPY").upper()
        if directive not in ("COPY", "REPLACE"):
            raise S3Error("InvalidArgument", f"Unknown metadata directive {directive!r}: use COPY or REPLACE")
        replace = directive == "REPLACE"
        same = (src_owner, src_bucket, src_key) == (self.owner, self.bucket, self.key) and version is None
        if not replace and same and not self.bucket_info.config.get("versioning"):
            raise S3Error("InvalidRequest", "This copy request is illegal because it is trying to copy an object "
                          "to itself without changing the object's metadata, storage class, website redirect "
                          "location or encryption attributes.")
        self._check_conditions(src, prefix="x-amz-copy-source-", status=412)
        tag_directive = self.request.headers.get("x-amz-tagging-directive", "COPY").upper()
        system = {}
        if tag_directive == "REPLACE":
            if self.request.headers.get("x-amz-tagging"):
                system["tags"] = _tags_from_query(self.request.headers["x-amz-tagging"])
        elif src.system.get("tags"):
            system["tags"] = src.system["tags"]
        acl = self._acl_from_headers()
        if acl:
            system["acl"] = acl
        info = await self.store.copy_object(
            src_owner, src_bucket, src_key, self.owner, self.bucket, self.key, version=version,
            metadata=self._metadata() if replace else None,
            content_type=self.request.headers.get("Content-Type") if replace else None,
            headers=self._kept_headers() if replace else None, system=system)
        body = _el("LastModified", _iso(info.timestamp)) + _el("ETag", _quoted(info.etag))
        headers = self._version_header(info.version_id)
        if version is not None or src.version_id is not None:
            headers["x-amz-copy-source-version-id"] = src.version_id or NULL
        return self._xml_response("CopyObjectResult", body, headers=headers)

    def _check_conditions(self, info, prefix="", status=None):
        """Apply If-Match / If-None-Match / If-(Un)Modified-Since as S3 does; returns 304 or None."""
        h = self.request.headers
        etag = info.etag

        def matches(value):
            return any(v.strip() in ("*", _quoted(etag), etag) for v in value.split(","))

        def since(name):
            value = h.get(prefix + name)
            parsed = email.utils.parsedate_tz(value) if value else None
            return None if parsed is None else email.utils.mktime_tz(parsed)

        if_match, if_none = h.get(prefix + "if-match"), h.get(prefix + "if-none-match")
        unmodified, modified = since("if-unmodified-since"), since("if-modified-since")
        whole_seconds = int(info.timestamp)
        if if_match is not None and not matches(if_match):
            raise S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                          412, details={"Condition": prefix + "If-Match"})
        if if_match is None and unmodified is not None and whole_seconds > unmodified:
            raise S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                          412, details={"Condition": prefix + "If-Unmodified-Since"})
        if if_none is not None and matches(if_none):
            if status:
                raise S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not "
                              "hold", status, details={"Condition": prefix + "If-None-Match"})
            return 304
        if if_none is None and modified is not None and whole_seconds <= modified:
            if status:
                raise S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not "
                              "hold", status, details={"Condition": prefix + "If-Modified-Since"})
            return 304
        return None

    def _object_headers(self, info):
        headers = {"ETag": _quoted(info.etag), "Last-Modified": _http_date(info.timestamp),
                   "Accept-Ranges": "bytes", "Content-Type": info.content_type}
        for name, value in info.headers.items():
            if name in KEPT_HEADERS:
                headers[name.title()] = value
        for name, value in info.metadata.items():
            headers["x-amz-meta-" + name] = value
        if "-" in info.etag:
            headers["x-amz-mp-parts-count"] = info.etag.rpartition("-")[2]
        if info.system.get("tags"):
            headers["x-amz-tagging-count"] = str(len(info.system["tags"]))
        headers.update(self._version_header(info.version_id))
        return headers

    def _range(self, size):
        """(offset, length) asked for by a Range header, None for the whole object; 416 if unsatisfiable.

        S3 serves one range; several, or a malformed header, get the whole object.
        """
        value = self.request.headers.get("Range")
        if not value or "," in value:
            return None
        ranges = parse_ranges(value, size)
        if ranges is None:
            return None
        if ranges == "unsatisfiable":
            raise S3Error("InvalidRange", "The requested range is not satisfiable", 416,
                          details={"RangeRequested": value, "ActualObjectSize": size})
        first, last = ranges[0]
        return first, last - first + 1

    async def get_object(self):
        """GetObject / HeadObject, GetObjectAcl/Tagging/Attributes, or ListParts with ``?uploadId``."""
        q = self.query
        if "uploadId" in q:
            return await self.list_parts()
        for sub, action in (("acl", self.get_object_acl), ("tagging", self.get_object_tagging),
                            ("attributes", self.get_object_attributes)):
            if sub in q:
                return await action()
        version = self._version_param()
        await self._find_bucket()
        if self.request.method == "HEAD":
            info = await self._head(version)
            await self._require("s3:GetObject" if version is None else "s3:GetObjectVersion", self.key,
                                object_acl=info.system.get("acl"))
            return await self._answer(info, None)
        try:
            # one open serves the headers and the bytes, so both come from the same version
            reader = await self.store.get_object(self.owner, self.bucket, self.key, version=version)
        except (DeleteMarker, NoSuchVersion):
            await self._missing_key()
            raise
        except NotFound:
            await self._missing_key()
            raise S3Error("NoSuchKey", "The specified key does not exist.", 404, details={"Key": self.key}) \
                from None
        async with reader:
            await self._require("s3:GetObject" if version is None else "s3:GetObjectVersion", self.key,
                                object_acl=reader.info.system.get("acl"))
            return await self._answer(reader.info, reader)

    async def _head(self, version=None):
        """The ObjectInfo of the key (or a version of it); NoSuchKey (after the access check) if absent."""
        try:
            return await self.store.head_object(self.owner, self.bucket, self.key, version=version)
        except (DeleteMarker, NoSuchVersion):
            await self._missing_key()
            raise
        except NotFound:
            await self._missing_key()
            raise S3Error("NoSuchKey", "The specified key does not exist.", 404, details={"Key": self.key}) \
                from None

    async def _missing_key(self):
        """Before saying a key is missing: only to those who may list the bucket (else AccessDenied, as S3)."""
        await self._require("s3:ListBucket")

    async def _answer(self, info, reader):
        """The response for GET (``reader`` open) or HEAD (``reader`` None): conditions, range, headers."""
        headers = self._object_headers(info)
        if self._check_conditions(info) == 304:
            headers.pop("Content-Type", None)
            return web.Response(status=304, headers=headers)
        for param, header in RESPONSE_OVERRIDES.items():
            if param in self.query:
                if self.requester is None:
                    raise S3Error("InvalidRequest", "Request specific response headers cannot be used for "
                                  "anonymous GET requests.")
                headers[header] = self.query[param]
        rng = self._range(info.size)
        status, offset, length = 200, 0, info.size
        if rng is not None:
            offset, length = rng
            status = 206
            headers["Content-Range"] = f"bytes {offset}-{offset + length - 1}/{info.size}"
        if reader is None:
            headers["Content-Length"] = str(length)
            return web.Response(status=status, headers=headers)
        reader.restrict(offset, length)
        return await self._send(reader, status, headers, length)

    async def _send(self, reader, status, headers, length):
        if length <= INLINE_GET:
            return web.Response(status=status, body=await reader.read(), headers=headers)
        resp = web.StreamResponse(status=status, headers={**headers, **self.cors_headers})
        resp.content_length = length
        resp.headers["x-amz-request-id"] = self.request_id
        resp.headers["x-amz-id-2"] = self.request_id
        await resp.prepare(self.request)
        async for chunk in reader:
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def delete_object(self):
        """DeleteObject (204 even when absent; a delete marker when versioned), DeleteObjectTagging,
        or AbortMultipartUpload with ``?uploadId``."""
        q = self.query
        if "uploadId" in q:
            await self._require("s3:AbortMultipartUpload", self.key)
            await _uploads_for(self.store).abort(q["uploadId"], self.owner, self.bucket, self.key)
            return web.Response(status=204)
        if "tagging" in q:
            await self._rewrite_system(lambda system: system.pop("tags", None), "s3:DeleteObjectTagging")
            return web.Response(status=204)
        version = self._version_param()
        await self._require("s3:DeleteObject" if version is None else "s3:DeleteObjectVersion", self.key)
        headers = {}
        try:
            vid, marker = await self.store.delete_object(self.owner, self.bucket, self.key, version=version)
        except NoSuchVersion:
            vid, marker = version, False        # S3 answers 204 for a version that is not there
        except NotFound:
            vid, marker = None, False           # S3 answers 204 for a key that is not there
        if vid is not None:
            headers["x-amz-version-id"] = vid
        if marker:
            headers["x-amz-delete-marker"] = "true"
        return web.Response(status=204, headers=headers)

    # ---- object ACLs, tags, attributes ---------------------------------------------------------

    async def _rewrite_system(self, change, action):
        """Change what is kept about the object (a version of it) besides its bytes; returns the new info."""
        version = self._version_param()
        await self._find_bucket()
        info = await self._head(version)
        await self._require(action, self.key, object_acl=info.system.get("acl"))
        system = dict(info.system)
        change(system)
        return await self.store.rewrite_object(self.owner, self.bucket, self.key, version=version,
                                               system=system, touch=False)

    async def put_object_acl(self):
        """PutObjectAcl: a canned ACL, grant headers or a document, for the object (or a version)."""
        await self._find_bucket()
        acl = await self._acl_request()
        new = await self._rewrite_system(lambda system: system.__setitem__("acl", acl), "s3:PutObjectAcl")
        return web.Response(status=200, headers=self._version_header(new.version_id))

    async def get_object_acl(self):
        """GetObjectAcl: the object's grants (the owner's FULL_CONTROL first)."""
        version = self._version_param()
        await self._find_bucket()
        info = await self._head(version)
        await self._require("s3:GetObjectAcl", self.key, object_acl=info.system.get("acl"))
        return self._xml_response("AccessControlPolicy", access.acl_xml(info.system.get("acl"), self.owner,
                                                                         self.owner),
                                  headers=self._version_header(info.version_id))

    async def put_object_tagging(self):
        """PutObjectTagging: replace the object's TagSet (at most 10 tags)."""
        await self._find_bucket()
        tags = _parse_tagging(await self._xml_body("Tagging"), limit=MAX_TAGS)
        new = await self._rewrite_system(lambda system: system.__setitem__("tags", tags), "s3:PutObjectTagging")
        return web.Response(status=200, headers=self._version_header(new.version_id))

    async def get_object_tagging(self):
        """GetObjectTagging: the object's TagSet (empty when it has none)."""
        version = self._version_param()
        await self._find_bucket()
        info = await self._head(version)
        await self._require("s3:GetObjectTagging", self.key, object_acl=info.system.get("acl"))
        return self._xml_response("Tagging", _tagset_xml(info.system.get("tags", [])),
                                  headers=self._version_header(info.version_id))

    async def get_object_attributes(self):
        """GetObjectAttributes: ETag, ObjectSize, StorageClass, ObjectParts as ``x-amz-object-attributes`` asks."""
        wanted = [a.strip() for a in self.request.headers.get("x-amz-object-attributes", "").split(",")
                  if a.strip()]
        known = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")
        if not wanted:
            raise S3Error("InvalidArgument", "x-amz-object-attributes must name at least one of "
                          + ", ".join(known), details={"ArgumentName": "x-amz-object-attributes"})
        for a in wanted:
            if a not in known:
                raise S3Error("InvalidArgument", f"Invalid attribute name specified: {a!r}",
                              details={"ArgumentName": "x-amz-object-attributes"})
        version = self._version_param()
        await self._find_bucket()
        info = await self._head(version)
        await self._require("s3:GetObjectAttributes", self.key, object_acl=info.system.get("acl"))
        body = ""
        if "ETag" in wanted:
            body += _el("ETag", info.etag)
        if "ObjectParts" in wanted and "-" in info.etag:
            body += "<ObjectParts>" + _el("PartsCount", info.etag.rpartition("-")[2]) + "</ObjectParts>"
        if "StorageClass" in wanted:
            body += _el("StorageClass", "STANDARD")
        if "ObjectSize" in wanted:
            body += _el("ObjectSize", info.size)
        headers = {"Last-Modified": _http_date(info.timestamp), **self._version_header(info.version_id)}
        return self._xml_response("GetObjectAttributesResponse", body, headers=headers)

    # ---- multipart ------------------------------------------------------------------------

    async def post_object(self):
        """POST on a key: CreateMultipartUpload (``?uploads``) or CompleteMultipartUpload (``?uploadId``)."""
        q = self.query
        uploads = _uploads_for(self.store)
        if "uploads" in q:
            await self._require("s3:PutObject", self.key)
            upload_id = await uploads.create(
                self.owner, self.bucket, self.key,
                self.request.headers.get("Content-Type") or "binary/octet-stream",
                self._metadata(), self._kept_headers())
            body = _el("Bucket", self.bucket) + _el("Key", self.key) + _el("UploadId", upload_id)
            return self._xml_response("InitiateMultipartUploadResult", body)
        if "uploadId" in q:
            await self._require("s3:PutObject", self.key)
            doc = await self._xml_body("CompleteMultipartUpload")
            requested = []
            for part in _children(doc, "Part"):
                fields = {_local(c): (c.text or "") for c in part}
                try:
                    requested.append((int(fields["PartNumber"]), fields["ETag"]))
                except (KeyError, ValueError):
                    raise S3Error("MalformedXML", "each <Part> needs a numeric <PartNumber> and an <ETag>") from None
            info = await uploads.complete(q["uploadId"], self.owner, self.bucket, self.key, requested,
                                          self.store)
            body = (_el("Location", f"/{self.bucket}/{self.key}") + _el("Bucket", self.bucket)
                    + _el("Key", self.key) + _el("ETag", _quoted(info.etag)))
            return self._xml_response("CompleteMultipartUploadResult", body,
                                      headers=self._version_header(info.version_id))
        raise not_implemented("PostObject", "POST on an object other than ?uploads or ?uploadId")

    async def upload_part(self):
        """UploadPart, or UploadPartCopy (``x-amz-copy-source``, optionally a byte range of it)."""
        q = self.query
        try:
            number = int(q.get("partNumber", "")) if len(q.get("partNumber", "")) < 8 else 0
        except ValueError:
            raise S3Error("InvalidArgument", "partNumber must be a number from 1 to 10000") from None
        if "uploadId" not in q:
            raise S3Error("InvalidArgument", "an UploadPart request needs ?uploadId")
        await self._require("s3:PutObject", self.key)
        uploads = _uploads_for(self.store)
        if "x-amz-copy-source" not in self.request.headers:
            etag = await uploads.put_part(q["uploadId"], self.owner, self.bucket, self.key, number,
                                          self._body_chunks(), expected_md5=self._content_md5())
            return web.Response(status=200, headers={"ETag": _quoted(etag)})
        src_owner, src_bucket, src_key, version, src = await self._copy_source_object()
        self._check_conditions(src, prefix="x-amz-copy-source-", status=412)
        offset, length = 0, src.size
        spec = self.request.headers.get("x-amz-copy-source-range")
        if spec is not None:
            m = re.match(r"^bytes=(\d{1,19})-(\d{1,19})$", spec.strip())
            if not m or int(m.group(2)) < int(m.group(1)):
                raise S3Error("InvalidArgument", "The x-amz-copy-source-range value must be of the form "
                              "bytes=first-last where first and last are the zero-based offsets of the first and "
                              "last bytes to copy", details={"ArgumentName": "x-amz-copy-source-range"})
            first, last = int(m.group(1)), int(m.group(2))
            if last >= src.size:
                raise S3Error("InvalidRange", f"The requested range is not satisfiable: the source is "
                              f"{src.size} bytes", 416, details={"RangeRequested": spec,
                                                                  "ActualObjectSize": src.size})
            offset, length = first, last - first + 1
        reader = await self.store.get_object(src_owner, src_bucket, src_key, offset=offset, length=length,
                                             version=version)
        async with reader:
            etag = await uploads.put_part(q["uploadId"], self.owner, self.bucket, self.key, number, reader)
        body = _el("LastModified", _iso(time.time())) + _el("ETag", _quoted(etag))
        headers = {"x-amz-copy-source-version-id": src.version_id} if src.version_id else {}
        return self._xml_response("CopyPartResult", body, headers=headers)

    async def list_parts(self):
        """ListParts: the parts of an upload stored so far."""
        await self._require("s3:ListMultipartUploadParts", self.key)
        upload_id = self.query["uploadId"]
        parts = await _uploads_for(self.store).list_parts(upload_id, self.owner, self.bucket, self.key)
        body = (_el("Bucket", self.bucket) + _el("Key", self.key) + _el("UploadId", upload_id)
                + _el("IsTruncated", "false") + "".join(
                    "<Part>" + _el("PartNumber", n) + _el("LastModified", _iso(ts)) + _el("ETag", _quoted(etag))
                    + _el("Size", size) + "</Part>" for n, etag, size, ts in parts))
        return self._xml_response("ListPartsResult", body)


# ------------------------------------------------------------------------------ tags and CORS as XML

def _check_tag(key, value):
    if not key or len(key) > 128:
        raise S3Error("InvalidTag", f"The TagKey you have provided is invalid: {key!r} (1 to 128 characters)")
    if len(value) > 256:
        raise S3Error("InvalidTag", f"The TagValue you have provided is invalid: the value of {key!r} is longer "
                      "than 256 characters")
    if key.lower().startswith("aws:"):
        raise S3Error("InvalidTag", f"Your TagKey cannot be prefixed with aws: ({key!r})")


def _parse_tagging(doc, limit):
    sets = _children(doc, "TagSet")
    if len(sets) != 1:
        raise S3Error("MalformedXML", "a <Tagging> document holds one <TagSet>")
    tags = []
    for tag in _children(sets[0], "Tag"):
        key, value = _text(tag, "Key"), _text(tag, "Value", "")
        if key is None:
            raise S3Error("MalformedXML", "each <Tag> needs a <Key>")
        _check_tag(key, value)
        tags.append([key, value])
    if len({k for k, _ in tags}) != len(tags):
        raise S3Error("InvalidTag", "Cannot provide multiple Tags with the same key")
    if len(tags) > limit:
        raise S3Error("BadRequest", f"Object tags cannot be greater than {limit}")
    return tags


def _tags_from_query(text):
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise S3Error("InvalidArgument", f"x-amz-tagging {text!r} is not a URL query (key=value&...)") from None
    for key, value in pairs:
        _check_tag(key, value)
    if len({k for k, _ in pairs}) != len(pairs):
        raise S3Error("InvalidTag", "Cannot provide multiple Tags with the same key")
    if len(pairs) > MAX_TAGS:
        raise S3Error("BadRequest", f"Object tags cannot be greater than {MAX_TAGS}")
    return [list(p) for p in pairs]


def _tagset_xml(tags):
    return "<TagSet>" + "".join("<Tag>" + _el("Key", k) + _el("Value", v) + "</Tag>" for k, v in tags) + \
        "</TagSet>"


def _cors_xml(rules):
    out = []
    for rule in rules:
        parts = [_el("ID", rule["id"])] if rule.get("id") else []
        parts += [_el("AllowedHeader", h) for h in rule["headers"]]
        parts += [_el("AllowedMethod", m) for m in rule["methods"]]
        parts += [_el("AllowedOrigin", o) for o in rule["origins"]]
        parts += [_el("ExposeHeader", h) for h in rule["expose"]]
        if rule.get("max_age") is not None:
            parts.append(_el("MaxAgeSeconds", rule["max_age"]))
        out.append("<CORSRule>" + "".join(parts) + "</CORSRule>")
    return "".join(out)
