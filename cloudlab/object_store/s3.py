"""The S3 view of the object store: the same data as the Swift view, spoken as Amazon S3.

A *bucket* is a Swift *container* and a *key* is an *object* name, in the account of the
user whose access key signed the request (access key ``account:user``, secret = the
user's key, as in Swift's s3api).  ``x-amz-meta-color`` and Swift's
``X-Object-Meta-Color`` are one and the same stored metadata entry.

Requests are path-style (``/bucket/key``); every one is authenticated with Signature V4
(:mod:`.sigv4`).  Which operation a request is comes from its method, whether it names
a key, and its *subresources*: ``?uploads``, ``?uploadId=``, ``?partNumber=``,
``?list-type=2``, ``?delete``.  Answers are S3's XML documents; errors are
``<Error><Code>..</Code><Message>..</Message><Resource>..</Resource><RequestId>..</RequestId></Error>``
with the status S3 uses, and every response carries ``x-amz-request-id``.
"""

import base64
import binascii
import email.utils
import hashlib
import logging
import re
import time
import uuid
import weakref
from urllib.parse import quote, unquote
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from aiohttp import web

from ..errors import CloudlabError, InvalidInput, NotFound
from . import sigv4
from .multipart import MultipartError, Uploads
from .swift import parse_ranges
from .storage import ContainerBusy, ContainerNotEmpty, EtagMismatch, TooLarge

XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_KEYS = 1000
SMALL_BODY = 1 << 20            # bodies up to this size are read whole: one disk write, no streaming
INLINE_GET = 256 << 10          # objects up to this size are answered in one piece
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
KEPT_HEADERS = ("content-disposition", "content-encoding", "content-language", "cache-control", "expires")
RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type", "response-content-language": "Content-Language",
    "response-expires": "Expires", "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition", "response-content-encoding": "Content-Encoding",
}
# subresources this view does not implement: answered 501 rather than misread as plain requests
UNSUPPORTED = ("acl", "policy", "tagging", "versioning", "versions", "lifecycle", "cors", "website",
               "logging", "notification", "replication", "encryption", "object-lock", "retention",
               "legal-hold", "torrent", "restore", "select", "accelerate", "requestPayment",
               "analytics", "inventory", "metrics", "ownershipControls", "publicAccessBlock",
               "intelligent-tiering", "attributes")

_uploads = weakref.WeakKeyDictionary()      # store -> its Uploads
log = logging.getLogger(__name__)


class S3Error(CloudlabError):
    """An S3 error response: code, message and HTTP status (e.g. ``NoSuchKey``, 404).

    Args:
        code: S3 error code.
        message: explanation naming what was wrong.
        status: HTTP status.
        details: extra elements for the XML error body.
    """

    def __init__(self, code, message, status=400, details=None):
        super().__init__(message)
        self.code = code
        self.status = status
        self.details = details or {}


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


def error_response(exc, resource, request_id, head=False):
    """The XML error response for an :class:`S3Error`, :class:`~.sigv4.AuthError` or MultipartError.

    Args:
        exc: the error (with ``code``, ``status``, and optional ``details``).
        resource: the path the request named.
        request_id: this request's id.
        head: a HEAD request gets no body.
    """
    details = "".join(_el(k, v) for k, v in getattr(exc, "details", {}).items())
    body = ("" if head else
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error>' + _el("Code", exc.code)
            + _el("Message", exc.message) + _el("Resource", resource) + _el("RequestId", request_id)
            + details + "</Error>")
    return web.Response(status=exc.status, text=body or None, content_type="application/xml",
                        headers={"x-amz-request-id": request_id, "x-amz-id-2": request_id})


# ------------------------------------------------------------------------------ entry point

async def handle(request, store, users):
    """Answer one S3 request (already routed here by the server) with an aiohttp response.

    Args:
        request: the aiohttp request.
        store: the :class:`~cloudlab.object_store.storage.Store` holding the data.
        users: the :class:`~cloudlab.object_store.auth.Users` whose keys sign requests.
    """
    request_id = uuid.uuid4().hex[:16].upper()
    raw_path, _, raw_query = request.raw_path.partition("?")
    resource = unquote(raw_path)
    head = request.method == "HEAD"
    try:
        from .server import undecodable_header
        bad = undecodable_header(request.headers)
        if bad is not None:
            raise S3Error("InvalidArgument", f"the {bad} header is not valid UTF-8: send it as UTF-8 text")
        accounts = {}

        def lookup(access_key):
            found = users.s3_secret(access_key)
            if found is None:
                return None
            accounts[access_key] = found[1]
            return found[0]

        auth = sigv4.verify(request.method, raw_path, raw_query, request.headers, lookup)
        op = _Operation(request, store, auth, accounts[auth.access_key], raw_path, raw_query, request_id)
        response = await op.run()
    except (S3Error, sigv4.AuthError, MultipartError) as exc:
        response = error_response(exc, resource, request_id, head)
    except EtagMismatch as exc:
        response = error_response(S3Error("BadDigest", exc.message), resource, request_id, head)
    except TooLarge as exc:
        response = error_response(S3Error("EntityTooLarge", exc.message), resource, request_id, head)
    except ContainerNotEmpty as exc:
        response = error_response(S3Error("BucketNotEmpty", "The bucket you tried to delete is not empty: "
                                          + exc.message, 409), resource, request_id, head)
    except ContainerBusy as exc:
        response = error_response(S3Error("OperationAborted", "A conflicting conditional operation is currently "
                                          "in progress against this resource. Try again: " + exc.message, 409),
                                  resource, request_id, head)
    except InvalidInput as exc:
        response = error_response(S3Error("InvalidArgument", exc.message), resource, request_id, head)
    except NotFound as exc:
        # e.g. the bucket was deleted while this request was under way
        response = error_response(S3Error("NoSuchBucket", exc.message, 404), resource, request_id, head)
    except CloudlabError as exc:
        response = error_response(S3Error("InvalidRequest", exc.message), resource, request_id, head)
    except OSError as exc:
        log.exception("S3 %s %s failed", request.method, resource)
        response = error_response(S3Error("InternalError", f"the store could not complete the request: "
                                          f"{exc.strerror or exc}", 500), resource, request_id, head)
    if not response.prepared:
        response.headers["x-amz-request-id"] = request_id
        response.headers.setdefault("x-amz-id-2", request_id)
    return response


def _uploads_for(store):
    uploads = _uploads.get(store)
    if uploads is None:
        uploads = _uploads[store] = Uploads(store.root)
    return uploads


class _Operation:
    """One S3 request being answered: parses the path and query, then dispatches."""

    def __init__(self, request, store, auth, account, raw_path, raw_query, request_id):
        self.request = request
        self.store = store
        self.auth = auth
        self.account = account
        self.request_id = request_id
        path = unquote(raw_path)
        self.bucket, _, self.key = path.lstrip("/").partition("/")
        self.query = {}
        for item in raw_query.split("&") if raw_query else ():
            name, _, value = item.partition("=")
            self.query[unquote(name)] = unquote(value.replace("+", "%20"))

    async def run(self):
        """Dispatch on method, bucket/key and subresources; returns the response."""
        method, q = self.request.method, self.query
        for sub in UNSUPPORTED:
            if sub in q:
                raise S3Error("NotImplemented", f"the ?{sub} subresource is not implemented by cloudlab's "
                              "S3 view", 501)
        if not self.bucket:
            if method == "GET":
                return await self.list_buckets()
            raise S3Error("MethodNotAllowed", f"{method} is not allowed on the service", 405)
        if not self.key:
            table = {"GET": self.get_bucket, "HEAD": self.head_bucket, "PUT": self.create_bucket,
                     "DELETE": self.delete_bucket, "POST": self.post_bucket}
        else:
            table = {"GET": self.get_object, "HEAD": self.get_object, "PUT": self.put_object,
                     "DELETE": self.delete_object, "POST": self.post_object}
        action = table.get(method)
        if action is None:
            raise S3Error("MethodNotAllowed", f"{method} is not allowed on this resource", 405)
        return await action()

    # ---- helpers -------------------------------------------------------------------------

    async def _require_bucket(self):
        try:
            return await self.store.container_info(self.account, self.bucket)
        except NotFound:
            raise S3Error("NoSuchBucket", f"The specified bucket does not exist: {self.bucket}",
                          404) from None
        except InvalidInput as exc:
            raise S3Error("InvalidBucketName", exc.message) from None

    def _body_chunks(self):
        return sigv4.payload_chunks(self.auth, self.request.content, self.request.headers)

    async def _small_body(self):
        """The whole body as bytes when it is small and plain; else None (stream it)."""
        length = self.request.content_length
        if (self.auth.payload.startswith("STREAMING-") or length is None or length > SMALL_BODY
                or "chunked" in self.request.headers.get("Transfer-Encoding", "")):
            return None
        data = await self.request.read()
        if self.auth.payload != sigv4.UNSIGNED_PAYLOAD and hashlib.sha256(data).hexdigest() != self.auth.payload:
            raise sigv4.AuthError("XAmzContentSHA256Mismatch",
                                  "The provided 'x-amz-content-sha256' header does not match what was "
                                  "computed: the body changed after it was signed", 400)
        return data

    async def _read_body(self, limit=1 << 20):
        """The whole (small) request body, checked against its signature: for XML documents."""
        parts, total = [], 0
        async for chunk in sigv4.payload_chunks(self.auth, self.request.content, self.request.headers):
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
            raise S3Error("MalformedXML", f"The XML you provided was not well-formed: {exc}") from None
        if doc.tag.rpartition("}")[2] != root:
            raise S3Error("MalformedXML", f"expected a <{root}> document, got <{doc.tag}>")
        return doc

    # ---- service and buckets ---------------------------------------------------------------

    async def list_buckets(self):
        """ListBuckets: the account's containers with their creation dates."""
        entries = await self.store.list_containers(self.account)
        owner = self._owner()
        buckets = []
        for e in entries:
            created = (await self.store.container_info(self.account, e.name)).timestamp
            buckets.append("<Bucket>" + _el("Name", e.name) + _el("CreationDate", _iso(created)) + "</Bucket>")
        buckets = "".join(buckets)
        return self._xml_response("ListAllMyBucketsResult", owner + f"<Buckets>{buckets}</Buckets>")

    def _owner(self):
        return "<Owner>" + _el("ID", self.account) + _el("DisplayName", self.auth.access_key) + "</Owner>"

    def _xml_response(self, root, body, status=200):
        return web.Response(status=status, text=_xml(root, body), content_type="application/xml")

    async def create_bucket(self):
        """CreateBucket: a new container (S3's naming rules apply to new buckets only)."""
        if not BUCKET_NAME.match(self.bucket) or ".." in self.bucket:
            raise S3Error("InvalidBucketName",
                          f"The specified bucket is not valid: {self.bucket!r}; use 3-63 lowercase letters, "
                          "digits, dots and hyphens, starting and ending with a letter or digit")
        await self._read_body()     # an optional CreateBucketConfiguration: the region is ignored
        if not await self.store.create_container(self.account, self.bucket):
            raise S3Error("BucketAlreadyOwnedByYou", "Your previous request to create the named bucket "
                          "succeeded and you already own it.", 409)
        return web.Response(status=200, headers={"Location": f"/{self.bucket}"})

    async def head_bucket(self):
        """HeadBucket: 200 if the bucket exists in this account, else 404."""
        await self._require_bucket()
        return web.Response(status=200, headers={"x-amz-bucket-region": "us-east-1"})

    async def delete_bucket(self):
        """DeleteBucket: remove an empty bucket and drop its unfinished multipart uploads."""
        await self._require_bucket()
        await self.store.delete_container(self.account, self.bucket)
        await _uploads_for(self.store).abort_bucket(self.account, self.bucket)
        return web.Response(status=204)

    async def get_bucket(self):
        """GET on a bucket: GetBucketLocation, ListMultipartUploads, or ListObjects (v1 or v2)."""
        q = self.query
        if "location" in q:
            await self._require_bucket()
            return web.Response(text=_xml("LocationConstraint", ""), content_type="application/xml")
        if "uploads" in q:
            return await self.list_uploads()
        return await self.list_objects(v2=q.get("list-type") == "2")

    async def list_objects(self, v2):
        """ListObjects / ListObjectsV2: prefix, delimiter, max-keys, marker or continuation token."""
        q = self.query
        await self._require_bucket()
        try:
            max_keys = int(q.get("max-keys", MAX_KEYS))
        except ValueError:
            max_keys = -1
        if max_keys < 0:
            raise S3Error("InvalidArgument", "max-keys must be a number from 0 to 1000")
        max_keys = min(max_keys, MAX_KEYS)
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter") or None
        encode = q.get("encoding-type") == "url"
        if "encoding-type" in q and not encode:
            raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request: use url")
        enc = (lambda s: quote(s, safe="/")) if encode else (lambda s: s)
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
            entries = await self.store.list_objects(self.account, self.bucket, prefix=prefix,
                                                    delimiter=delimiter, marker=marker or None,
                                                    limit=max_keys + 1)
        truncated = len(entries) > max_keys
        entries = entries[:max_keys]
        owner = self._owner() if (not v2 or q.get("fetch-owner") == "true") else ""
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

    async def list_uploads(self):
        """ListMultipartUploads: the bucket's uploads in progress."""
        await self._require_bucket()
        uploads = await _uploads_for(self.store).list_uploads(self.account, self.bucket)
        body = _el("Bucket", self.bucket) + _el("IsTruncated", "false") + "".join(
            "<Upload>" + _el("Key", key) + _el("UploadId", uid) + _el("Initiated", _iso(ts))
            + _el("StorageClass", "STANDARD") + "</Upload>" for key, uid, ts in uploads)
        return self._xml_response("ListMultipartUploadsResult", body)

    async def post_bucket(self):
        """POST on a bucket: DeleteObjects (``?delete``), up to 1000 keys in one request."""
        if "delete" not in self.query:
            raise S3Error("NotImplemented", "POST on a bucket is only implemented for ?delete", 501)
        await self._require_bucket()
        doc = self._parse_xml(await self._read_body(), "Delete")
        quiet = (doc.findtext(f"{{{XMLNS}}}Quiet") or doc.findtext("Quiet") or "").lower() == "true"
        deleted, errors = [], []
        objects = [o for o in doc if o.tag.rpartition("}")[2] == "Object"]
        if len(objects) > 1000:
            raise S3Error("MalformedXML", "a DeleteObjects request may name at most 1000 keys")
        for obj in objects:
            key = next((c.text or "" for c in obj if c.tag.rpartition("}")[2] == "Key"), "")
            try:
                await self.store.delete_object(self.account, self.bucket, key)
            except NotFound:
                pass                # deleting a missing key succeeds in S3
            except InvalidInput as exc:
                errors.append("<Error>" + _el("Key", key) + _el("Code", "InvalidArgument")
                              + _el("Message", exc.message) + "</Error>")
                continue
            if not quiet:
                deleted.append("<Deleted>" + _el("Key", key) + "</Deleted>")
        return self._xml_response("DeleteResult", "".join(deleted + errors))

    # ---- objects --------------------------------------------------------------------------

    async def put_object(self):
        """PUT on a key: PutObject, CopyObject (x-amz-copy-source) or UploadPart."""
        q = self.query
        if "uploadId" in q or "partNumber" in q:
            return await self.upload_part()
        if "x-amz-copy-source" in self.request.headers:
            return await self.copy_object()
        await self._require_bucket()
        content_md5 = self._content_md5()
        headers = self.request.headers
        body = await self._small_body()
        if body is None:
            body = self._body_chunks()
        info = await self.store.put_object(
            self.account, self.bucket, self.key, body,
            content_type=headers.get("Content-Type") or "binary/octet-stream",
            metadata=self._metadata(), headers=self._kept_headers(), expected_etag=content_md5)
        return web.Response(status=200, headers={"ETag": _quoted(info.etag)})

    async def copy_object(self):
        """CopyObject: server-side copy, metadata copied or replaced (x-amz-metadata-directive)."""
        source = unquote(self.request.headers["x-amz-copy-source"]).split("?versionId=")[0]
        src_bucket, _, src_key = source.lstrip("/").partition("/")
        if not src_bucket or not src_key:
            raise S3Error("InvalidArgument", "x-amz-copy-source must be bucket/key")
        await self._require_bucket()
        replace = self.request.headers.get("x-amz-metadata-directive", "COPY").upper() == "REPLACE"
        if not replace and (src_bucket, src_key) == (self.bucket, self.key):
            raise S3Error("InvalidRequest", "This copy request is illegal because it is trying to copy an object "
                          "to itself without changing the object's metadata")
        try:
            src = await self.store.head_object(self.account, src_bucket, src_key)
        except NotFound:
            raise S3Error("NoSuchKey", f"The specified copy source does not exist: {source}", 404) from None
        self._check_conditions(src, prefix="x-amz-copy-source-", status=412)
        info = await self.store.copy_object(
            self.account, src_bucket, src_key, self.account, self.bucket, self.key,
            metadata=self._metadata() if replace else None,
            content_type=self.request.headers.get("Content-Type") if replace else None,
            headers=self._kept_headers() if replace else None)
        body = _el("LastModified", _iso(info.timestamp)) + _el("ETag", _quoted(info.etag))
        return self._xml_response("CopyObjectResult", body)

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
            raise S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold "
                          "(If-Match)", 412)
        if if_match is None and unmodified is not None and whole_seconds > unmodified:
            raise S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold "
                          "(If-Unmodified-Since)", 412)
        if if_none is not None and matches(if_none):
            if status:
                raise S3Error("PreconditionFailed", "the copy source matches x-amz-copy-source-if-none-match",
                              status)
            return 304
        if if_none is None and modified is not None and whole_seconds <= modified:
            if status:
                raise S3Error("PreconditionFailed", "the copy source was not modified since the date given",
                              status)
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
        """GetObject / HeadObject (or ListParts with ``?uploadId``): conditions, Range, headers."""
        if "uploadId" in self.query:
            return await self.list_parts()
        if self.request.method == "HEAD":
            try:
                info = await self.store.head_object(self.account, self.bucket, self.key)
            except NotFound:
                raise await self._no_such_key() from None
            return await self._answer(info, None)
        try:
            # one open serves the headers and the bytes, so both come from the same version
            reader = await self.store.get_object(self.account, self.bucket, self.key)
        except NotFound:
            raise await self._no_such_key() from None
        async with reader:
            return await self._answer(reader.info, reader)

    async def _no_such_key(self):
        await self._require_bucket()
        return S3Error("NoSuchKey", "The specified key does not exist.", 404, details={"Key": self.key})

    async def _answer(self, info, reader):
        """The response for GET (``reader`` open) or HEAD (``reader`` None): conditions, range, headers."""
        headers = self._object_headers(info)
        if self._check_conditions(info) == 304:
            headers.pop("Content-Type", None)
            return web.Response(status=304, headers=headers)
        for param, header in RESPONSE_OVERRIDES.items():
            if param in self.query:
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
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = length
        resp.headers["x-amz-request-id"] = self.request_id
        resp.headers["x-amz-id-2"] = self.request_id
        await resp.prepare(self.request)
        async for chunk in reader:
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def delete_object(self):
        """DeleteObject (204 even when absent), or AbortMultipartUpload with ``?uploadId``."""
        if "uploadId" in self.query:
            await _uploads_for(self.store).abort(self.query["uploadId"], self.account, self.bucket, self.key)
            return web.Response(status=204)
        await self._require_bucket()
        try:
            await self.store.delete_object(self.account, self.bucket, self.key)
        except NotFound:
            pass                    # S3 answers 204 for a key that is not there
        return web.Response(status=204)

    # ---- multipart ------------------------------------------------------------------------

    async def post_object(self):
        """POST on a key: CreateMultipartUpload (``?uploads``) or CompleteMultipartUpload (``?uploadId``)."""
        q = self.query
        uploads = _uploads_for(self.store)
        if "uploads" in q:
            await self._require_bucket()
            upload_id = await uploads.create(
                self.account, self.bucket, self.key,
                self.request.headers.get("Content-Type") or "binary/octet-stream",
                self._metadata(), self._kept_headers())
            body = _el("Bucket", self.bucket) + _el("Key", self.key) + _el("UploadId", upload_id)
            return self._xml_response("InitiateMultipartUploadResult", body)
        if "uploadId" in q:
            await self._require_bucket()
            doc = self._parse_xml(await self._read_body(), "CompleteMultipartUpload")
            requested = []
            for part in doc:
                if part.tag.rpartition("}")[2] != "Part":
                    continue
                fields = {c.tag.rpartition("}")[2]: (c.text or "") for c in part}
                try:
                    requested.append((int(fields["PartNumber"]), fields["ETag"]))
                except (KeyError, ValueError):
                    raise S3Error("MalformedXML", "each <Part> needs a numeric <PartNumber> and an <ETag>") from None
            info = await uploads.complete(q["uploadId"], self.account, self.bucket, self.key, requested,
                                          self.store)
            body = (_el("Location", f"/{self.bucket}/{self.key}") + _el("Bucket", self.bucket)
                    + _el("Key", self.key) + _el("ETag", _quoted(info.etag)))
            return self._xml_response("CompleteMultipartUploadResult", body)
        raise S3Error("NotImplemented", "POST on an object needs ?uploads or ?uploadId", 501)

    async def upload_part(self):
        """UploadPart: store one numbered part of a multipart upload; returns its ETag."""
        q = self.query
        if "x-amz-copy-source" in self.request.headers:
            raise S3Error("NotImplemented", "UploadPartCopy is not implemented by cloudlab's S3 view", 501)
        try:
            number = int(q.get("partNumber", ""))
        except ValueError:
            raise S3Error("InvalidArgument", "partNumber must be a number from 1 to 10000") from None
        if "uploadId" not in q:
            raise S3Error("InvalidArgument", "an UploadPart request needs ?uploadId")
        await self._require_bucket()
        etag = await _uploads_for(self.store).put_part(
            q["uploadId"], self.account, self.bucket, self.key, number, self._body_chunks(),
            expected_md5=self._content_md5())
        return web.Response(status=200, headers={"ETag": _quoted(etag)})

    async def list_parts(self):
        """ListParts: the parts of an upload stored so far."""
        await self._require_bucket()
        upload_id = self.query["uploadId"]
        parts = await _uploads_for(self.store).list_parts(upload_id, self.account, self.bucket, self.key)
        body = (_el("Bucket", self.bucket) + _el("Key", self.key) + _el("UploadId", upload_id)
                + _el("IsTruncated", "false") + "".join(
                    "<Part>" + _el("PartNumber", n) + _el("LastModified", _iso(ts)) + _el("ETag", _quoted(etag))
                    + _el("Size", size) + "</Part>" for n, etag, size, ts in parts))
        return self._xml_response("ListPartsResult", body)
