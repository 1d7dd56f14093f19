"""AWS Signature Version 4: how the S3 view knows who sent a request, and that nobody changed it.

The client never sends its secret key.  It builds a *canonical request* (method,
URI-encoded path, sorted query, the headers it chose to sign, and the SHA-256 of the
body or a marker such as ``UNSIGNED-PAYLOAD``), hashes it into a *string to sign* with
the time and a *credential scope* (``date/region/s3/aws4_request``), and signs that
with a key derived from its secret by a chain of HMACs over the scope.  The server
repeats every step with its own copy of the secret and compares the two signatures.

Two places carry the signature: the ``Authorization`` header, or the query string of
a *presigned URL* (``X-Amz-Credential``, ``X-Amz-Signature``, ``X-Amz-Expires`` ...),
which lets anyone holding the URL make that one request until it expires.  A body may
also be sent *aws-chunked*, each chunk signed with the previous chunk's signature
(``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``), so that a server can check an upload piece
by piece without holding it whole; :func:`payload_chunks` decodes and checks that.

Errors are :class:`AuthError` with the S3 error code (``SignatureDoesNotMatch``,
``InvalidAccessKeyId``, ``AccessDenied``, ``RequestTimeTooSkewed`` ...) and HTTP status
that the S3 view renders as an XML error body.
"""

import base64
import binascii
import calendar
import email.utils
import hashlib
import hmac
import re
import time
import zlib
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from ..errors import CloudlabError

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"
TERMINATOR = "aws4_request"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW_SECONDS = 15 * 60            # what AWS allows between client and server clocks
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600   # X-Amz-Expires may be at most one week
MAX_CHUNK_HEADER = 4096               # longest chunk-size line we read (a signature is 64 hex)

_UNRESERVED = "-_.~"                  # with letters and digits: never percent-encoded
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_AMZ_DATE = re.compile(r"^\d{8}T\d{6}Z$")


class AuthError(CloudlabError):
    """A request failed authentication; carries the S3 error code and HTTP status.

    Args:
        code: S3 error code, e.g. ``SignatureDoesNotMatch``.
        message: human-readable explanation naming what was wrong.
        status: HTTP status of the error response.
        details: extra XML elements for the error body (e.g. the canonical request),
            which is how S3 itself helps a client find its signing mistake.
    """

    def __init__(self, code, message, status=403, details=None):
        super().__init__(message)
        self.code = code
        self.status = status
        self.details = details or {}


@dataclass
class Auth:
    """A verified request: who sent it, and what is needed to check its body.

    ``payload`` is the ``x-amz-content-sha256`` the client signed: a hex digest the body
    must hash to, ``UNSIGNED-PAYLOAD``, or one of the ``STREAMING-*`` markers.
    """

    access_key: str
    signature: str
    amz_date: str
    scope: str
    signing_key: bytes = field(repr=False)
    payload: str
    presigned: bool = False


def uri_encode(text, safe=""):
    """Percent-encode ``text`` as SigV4 requires: UTF-8, every byte but A-Z a-z 0-9 - _ . ~ as %XX.

    Args:
        text: the string to encode.
        safe: extra characters to leave alone (``"/"`` for a path).
    """
    return quote(text, safe=_UNRESERVED + safe)


def canonical_uri(raw_path):
    """The canonical URI of an S3 request: the path decoded, then encoded once, segments kept.

    S3 does not normalize paths (a key may contain ``//`` or ``..``), so only the
    encoding is made canonical.

    Args:
        raw_path: the path exactly as it appeared on the request line (no query).
    """
    return uri_encode(unquote(raw_path or "/"), safe="/")


def canonical_query(raw_query, exclude=()):
    """The canonical query string: names and values decoded, re-encoded, sorted by name then value.

    Args:
        raw_query: the query string as sent, without the ``?``.
        exclude: parameter names to leave out (``X-Amz-Signature`` for presigned URLs).
    """
    pairs = []
    for item in raw_query.split("&") if raw_query else ():
        if not item:
            continue
        name, _, value = item.partition("=")
        name = unquote(name)
        if name in exclude:
            continue
        pairs.append((uri_encode(name), uri_encode(unquote(value))))
    pairs.sort()
    return "&".join(f"{n}={v}" for n, v in pairs)


def canonical_headers(headers, signed):
    """The canonical headers block for the names in ``signed``: ``name:value\\n`` lines in order.

    Values of a repeated header are joined with commas; runs of spaces inside a value
    collapse to one and the ends are trimmed, as the specification says.

    Args:
        headers: the request's headers (a multi-dict with ``getall``, or a plain mapping).
        signed: the lowercase names the client listed in ``SignedHeaders``, sorted.

    Raises:
        AuthError: a signed header is missing from the request.
    """
    lines = []
    for name in signed:
        if hasattr(headers, "getall"):
            values = headers.getall(name, [])
        else:
            values = [v for k, v in headers.items() if k.lower() == name]
        if not values:
            raise AuthError("AccessDenied", f"the signed header {name!r} is not in the request", 403)
        lines.append(name + ":" + ",".join(" ".join(v.split()) for v in values) + "\n")
    return "".join(lines)


def canonical_request(method, raw_path, raw_query, headers, signed, payload, exclude=()):
    """The canonical request string, exactly as AWS documents it (six lines).

    Args:
        method: HTTP method.
        raw_path: request path as sent.
        raw_query: query string as sent.
        headers: request headers.
        signed: sorted lowercase names of the signed headers.
        payload: hex SHA-256 of the body, or the marker the client signed instead.
        exclude: query parameters to leave out.
    """
    return "\n".join([
        method.upper(),
        canonical_uri(raw_path),
        canonical_query(raw_query, exclude),
        canonical_headers(headers, signed),
        ";".join(signed),
        payload,
    ])


def signing_key(secret, date, region, service=SERVICE):
    """The key derived from the secret for one day, region and service (the HMAC chain).

    Args:
        secret: the user's secret access key.
        date: ``YYYYMMDD`` of the request.
        region: region from the credential scope.
        service: service name, ``s3`` here.
    """
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, TERMINATOR):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def string_to_sign(amz_date, scope, canonical):
    """What is signed: algorithm, time, scope and the hash of the canonical request.

    Args:
        amz_date: request time as ``YYYYMMDDTHHMMSSZ``.
        scope: ``date/region/service/aws4_request``.
        canonical: the canonical request string.
    """
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def sign(key, text):
    """Hex HMAC-SHA256 of ``text`` under ``key``."""
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _parse_time(amz_date):
    if not _AMZ_DATE.match(amz_date or ""):
        raise AuthError("AccessDenied",
                        f"X-Amz-Date {amz_date!r} is not a time of the form YYYYMMDDTHHMMSSZ", 403)
    return calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))


def _parse_credential(credential, amz_date, where):
    parts = credential.split("/")
    if len(parts) != 5:
        raise AuthError("AuthorizationHeaderMalformed",
                        f"the {where} credential {credential!r} is not "
                        "ACCESS_KEY/YYYYMMDD/REGION/s3/aws4_request", 400)
    access_key, date, region, service, terminator = parts
    if terminator != TERMINATOR or service != SERVICE:
        raise AuthError("AuthorizationHeaderMalformed",
                        f"the credential scope must end in /{SERVICE}/{TERMINATOR}, not "
                        f"/{service}/{terminator}", 400)
    if date != amz_date[:8]:
        raise AuthError("AuthorizationHeaderMalformed",
                        f"the credential date {date} is not the day of the request time {amz_date}", 400)
    return access_key, date, region


def _secret(lookup, access_key):
    secret = lookup(access_key)
    if secret is None:
        raise AuthError("InvalidAccessKeyId",
                        f"the access key id {access_key!r} does not exist in this object store", 403)
    return secret


def _header_time(headers):
    amz_date = headers.get("x-amz-date")
    if amz_date:
        return amz_date
    date = headers.get("date")
    if date:
        parsed = email.utils.parsedate_tz(date)
        if parsed:
            return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(email.utils.mktime_tz(parsed)))
    raise AuthError("AccessDenied", "the request has neither an X-Amz-Date nor a Date header", 403)


def _same(expected, provided):
    # constant-time, and safe for any text a client may put where a signature belongs
    return hmac.compare_digest(expected.encode(), provided.encode("utf-8", "replace"))


def _check_signature(key, method, raw_path, raw_query, headers, signed, payload, exclude,
                     amz_date, scope, provided, key_id):
    canonical = canonical_request(method, raw_path, raw_query, headers, signed, payload, exclude)
    to_sign = string_to_sign(amz_date, scope, canonical)
    if _same(sign(key, to_sign), provided):
        return
    # botocore signs the path exactly as it sent it; a path with a character that the
    # rule would encode but the client left literal (a '+', say) is signed that way
    literal = canonical.split("\n", 2)
    if literal[1] != raw_path and raw_path:
        literal[1] = raw_path
        if _same(sign(key, string_to_sign(amz_date, scope, "\n".join(literal))), provided):
            return
    raise AuthError(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.", 403,
        details={"AWSAccessKeyId": key_id, "SignatureProvided": provided,
                 "StringToSign": to_sign, "CanonicalRequest": canonical})


def verify(method, raw_path, raw_query, headers, lookup, now=None):
    """Check the SigV4 signature of a request (header or presigned query) and return who sent it.

    Args:
        method: HTTP method.
        raw_path: path as sent on the request line.
        raw_query: query string as sent (without ``?``).
        headers: request headers (case-insensitive mapping; a multi-dict is best).
        lookup: ``lookup(access_key) -> secret or None``.
        now: current unix time (for tests); defaults to the clock.

    Raises:
        AuthError: missing or malformed authentication, unknown key, wrong signature,
            a clock too far off, or an expired presigned URL.
    """
    now = time.time() if now is None else now
    authorization = headers.get("authorization")
    if authorization:
        return _verify_header(method, raw_path, raw_query, headers, lookup, now, authorization)
    if "X-Amz-Signature=" in raw_query or "X-Amz-Algorithm=" in raw_query:
        return _verify_presigned(method, raw_path, raw_query, headers, lookup, now)
    raise AuthError("AccessDenied",
                    "anonymous requests are not allowed: sign the request with AWS Signature V4", 403)


def _verify_header(method, raw_path, raw_query, headers, lookup, now, authorization):
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise AuthError("InvalidRequest",
                        f"the authorization mechanism {algorithm!r} is not supported: "
                        f"use {ALGORITHM} (Signature Version 4)", 400)
    fields = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name] = value
    missing = [n for n in ("Credential", "SignedHeaders", "Signature") if n not in fields]
    if missing:
        raise AuthError("AuthorizationHeaderMalformed",
                        f"the Authorization header lacks {', '.join(missing)}", 400)
    amz_date = _header_time(headers)
    request_time = _parse_time(amz_date)
    if abs(now - request_time) > MAX_SKEW_SECONDS:
        raise AuthError("RequestTimeTooSkewed",
                        "The difference between the request time and the server's time is too large "
                        f"({int(now - request_time)} s; at most {MAX_SKEW_SECONDS} s allowed): "
                        "set the client's clock", 403,
                        details={"RequestTime": amz_date,
                                 "ServerTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                                 "MaxAllowedSkewMilliseconds": str(MAX_SKEW_SECONDS * 1000)})
    access_key, date, region = _parse_credential(fields["Credential"], amz_date, "Authorization")
    signed = fields["SignedHeaders"].lower().split(";")
    if signed != sorted(signed) or "host" not in signed:
        raise AuthError("AuthorizationHeaderMalformed",
                        "SignedHeaders must be sorted lowercase names and include host", 400)
    unsigned = sorted({k.lower() for k in headers.keys()
                       if k.lower().startswith("x-amz-") and k.lower() not in signed})
    if unsigned:
        raise AuthError("AccessDenied",
                        "There were headers present in the request which were not signed: "
                        + ", ".join(unsigned), 403, details={"HeadersNotSigned": ", ".join(unsigned)})
    payload = headers.get("x-amz-content-sha256")
    if not payload:
        raise AuthError("InvalidRequest",
                        "Missing required header for this request: x-amz-content-sha256", 400)
    if not (_HEX64.match(payload) or payload in (UNSIGNED_PAYLOAD, STREAMING_SIGNED,
                                                 STREAMING_UNSIGNED_TRAILER)):
        raise AuthError("InvalidArgument",
                        f"x-amz-content-sha256 {payload!r} is neither a SHA-256 hex digest nor a "
                        f"supported marker ({UNSIGNED_PAYLOAD}, {STREAMING_SIGNED}, "
                        f"{STREAMING_UNSIGNED_TRAILER})", 400)
    secret = _secret(lookup, access_key)
    key = signing_key(secret, date, region)
    scope = f"{date}/{region}/{SERVICE}/{TERMINATOR}"
    _check_signature(key, method, raw_path, raw_query, headers, signed, payload, (),
                     amz_date, scope, fields["Signature"], access_key)
    return Auth(access_key, fields["Signature"], amz_date, scope, key, payload)


def _verify_presigned(method, raw_path, raw_query, headers, lookup, now):
    params = {}
    for item in raw_query.split("&"):
        name, _, value = item.partition("=")
        params[unquote(name)] = unquote(value)
    missing = [n for n in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date",
                           "X-Amz-SignedHeaders", "X-Amz-Signature") if n not in params]
    if missing:
        raise AuthError("AuthorizationQueryParametersError",
                        f"the presigned URL lacks {', '.join(missing)}", 400)
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise AuthError("AuthorizationQueryParametersError",
                        f"X-Amz-Algorithm must be {ALGORITHM}", 400)
    amz_date = params["X-Amz-Date"]
    request_time = _parse_time(amz_date)
    try:
        expires = int(params.get("X-Amz-Expires", "900"))
    except ValueError:
        expires = -1
    if not 1 <= expires <= MAX_PRESIGN_EXPIRES:
        raise AuthError("AuthorizationQueryParametersError",
                        f"X-Amz-Expires must be a number of seconds from 1 to {MAX_PRESIGN_EXPIRES}", 400)
    if now > request_time + expires:
        raise AuthError("AccessDenied", "Request has expired: presign a new URL", 403,
                        details={"X-Amz-Expires": str(expires),
                                 "Expires": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                          time.gmtime(request_time + expires))})
    if request_time > now + MAX_SKEW_SECONDS:
        raise AuthError("AccessDenied", "Request is not yet valid: its X-Amz-Date is in the future", 403)
    access_key, date, region = _parse_credential(params["X-Amz-Credential"], amz_date, "X-Amz-Credential")
    signed = params["X-Amz-SignedHeaders"].lower().split(";")
    if signed != sorted(signed) or "host" not in signed:
        raise AuthError("AuthorizationQueryParametersError",
                        "X-Amz-SignedHeaders must be sorted lowercase names and include host", 400)
    payload = params.get("X-Amz-Content-Sha256") or UNSIGNED_PAYLOAD
    secret = _secret(lookup, access_key)
    key = signing_key(secret, date, region)
    scope = f"{date}/{region}/{SERVICE}/{TERMINATOR}"
    _check_signature(key, method, raw_path, raw_query, headers, signed, payload, ("X-Amz-Signature",),
                     amz_date, scope, params["X-Amz-Signature"], access_key)
    return Auth(access_key, params["X-Amz-Signature"], amz_date, scope, key, payload, presigned=True)


def chunk_string_to_sign(auth, previous, chunk_sha256):
    """What one aws-chunked chunk's signature covers: the previous signature and the chunk's hash.

    Args:
        auth: the verified request (its date, scope and seed signature).
        previous: signature of the previous chunk (the request's own for the first).
        chunk_sha256: hex SHA-256 of this chunk's data.
    """
    return (f"{ALGORITHM}-PAYLOAD\n{auth.amz_date}\n{auth.scope}\n{previous}\n"
            f"{EMPTY_SHA256}\n{chunk_sha256}")


_TRAILER_CHECKSUMS = {
    # trailer name -> (digest factory, how its value is encoded); crc32c and crc64nvme
    # have no implementation in the standard library, so they are accepted unchecked
    "x-amz-checksum-crc32": "crc32",
    "x-amz-checksum-sha1": "sha1",
    "x-amz-checksum-sha256": "sha256",
}


class _Crc32:
    def __init__(self):
        self.value = 0

    def update(self, data):
        self.value = zlib.crc32(data, self.value)

    def digest(self):
        return self.value.to_bytes(4, "big")


async def payload_chunks(auth, stream, headers, read_size=1 << 20):
    """Yield the body of a request as its data, checking it against what the client signed.

    Handles a plain body (checked against its signed SHA-256 unless ``UNSIGNED-PAYLOAD``)
    and the aws-chunked encodings (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``: every chunk
    signature checked; ``STREAMING-UNSIGNED-PAYLOAD-TRAILER``: crc32/sha1/sha256 trailing
    checksums checked).  The error comes after the last data is yielded when the whole body
    is wrong, so a caller must only commit what it stored once iteration ends cleanly.

    Args:
        auth: the :class:`Auth` returned by :func:`verify`.
        stream: an aiohttp ``StreamReader`` (``request.content``).
        headers: the request headers.
        read_size: largest piece yielded at a time.

    Raises:
        AuthError: ``XAmzContentSHA256Mismatch``, ``SignatureDoesNotMatch`` for a chunk,
            ``IncompleteBody``, ``InvalidChunkSizeError`` or ``BadDigest`` for a trailer.
    """
    if auth.payload.startswith("STREAMING-"):
        async for piece in _aws_chunked(auth, stream, headers, read_size):
            yield piece
        return
    digest = hashlib.sha256() if auth.payload != UNSIGNED_PAYLOAD else None
    while True:
        piece = await stream.read(read_size)
        if not piece:
            break
        if digest:
            digest.update(piece)
        yield piece
    if digest and digest.hexdigest() != auth.payload:
        raise AuthError("XAmzContentSHA256Mismatch",
                        "The provided 'x-amz-content-sha256' header does not match what was computed: "
                        "the body changed after it was signed", 400,
                        details={"ClientComputedContentSHA256": auth.payload,
                                 "S3ComputedContentSHA256": digest.hexdigest()})


async def _read_line(stream):
    try:
        line = await stream.readuntil(b"\r\n")
    except Exception as exc:  # LimitOverrunError or IncompleteReadError from aiohttp/asyncio
        raise AuthError("IncompleteBody", f"the aws-chunked body ended or broke mid-line ({exc})", 400)
    if len(line) > MAX_CHUNK_HEADER:
        raise AuthError("InvalidChunkSizeError", "an aws-chunked header line is too long", 400)
    return line[:-2].decode("latin-1")


async def _read_exactly(stream, size):
    try:
        return await stream.readexactly(size)
    except Exception as exc:  # IncompleteReadError: the client stopped sending
        raise AuthError("IncompleteBody", f"the aws-chunked body ended early ({exc})", 400)


async def _aws_chunked(auth, stream, headers, read_size):
    signed = auth.payload == STREAMING_SIGNED
    if auth.payload not in (STREAMING_SIGNED, STREAMING_UNSIGNED_TRAILER):
        raise AuthError("NotImplemented", f"the payload mode {auth.payload} is not supported", 501)
    declared = headers.get("x-amz-decoded-content-length")
    trailer_names = {n.strip().lower() for n in headers.get("x-amz-trailer", "").split(",") if n.strip()}
    checks = {}
    for name in trailer_names:
        kind = _TRAILER_CHECKSUMS.get(name)
        if kind:
            checks[name] = _Crc32() if kind == "crc32" else hashlib.new(kind)
    previous, total = auth.signature, 0
    while True:
        line = await _read_line(stream)
        size_text, _, extension = line.partition(";")
        try:
            size = int(size_text, 16)
        except ValueError:
            raise AuthError("InvalidChunkSizeError", f"aws-chunked size {size_text!r} is not hex", 400)
        if size < 0:
            raise AuthError("InvalidChunkSizeError", "negative aws-chunked size", 400)
        chunk_hash = hashlib.sha256() if signed else None
        remaining = size
        while remaining:
            piece = await _read_exactly(stream, min(remaining, read_size))
            remaining -= len(piece)
            if chunk_hash:
                chunk_hash.update(piece)
            for check in checks.values():
                check.update(piece)
            total += len(piece)
            yield piece
        if signed:
            name, _, provided = extension.partition("=")
            if name.strip() != "chunk-signature" or not provided:
                raise AuthError("IncompleteBody", "an aws-chunked chunk lacks its chunk-signature", 400)
            to_sign = chunk_string_to_sign(auth, previous, chunk_hash.hexdigest())
            expected = sign(auth.signing_key, to_sign)
            if not _same(expected, provided.strip()):
                raise AuthError("SignatureDoesNotMatch",
                                f"the signature of aws-chunked chunk ending at byte {total} does not match: "
                                "the upload was changed or cut", 403,
                                details={"StringToSign": to_sign, "SignatureProvided": provided.strip()})
            previous = expected
        if size == 0:
            break
        if await _read_exactly(stream, 2) != b"\r\n":
            raise AuthError("IncompleteBody", "an aws-chunked chunk does not end with CRLF", 400)
    # trailers (only with *-TRAILER), then the empty line that ends the body
    trailers = {}
    while True:
        line = await _read_line(stream) if not stream.at_eof() else ""
        if not line:
            break
        name, _, value = line.partition(":")
        trailers[name.strip().lower()] = value.strip()
    if declared is not None and declared.isdigit() and int(declared) != total:
        raise AuthError("IncompleteBody",
                        f"x-amz-decoded-content-length says {declared} bytes but the chunks held {total}", 400)
    for name, check in checks.items():
        value = trailers.get(name)
        if value is None:
            raise AuthError("IncompleteBody", f"the trailer {name} announced in x-amz-trailer is missing", 400)
        try:
            provided = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise AuthError("InvalidRequest", f"the trailer {name} is not base64", 400)
        if provided != check.digest():
            raise AuthError("BadDigest", f"the {name} trailer does not match the data received", 400)
