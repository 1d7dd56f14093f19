"""POST Object: an upload from an HTML form in a browser, allowed by a signed *policy*.

A web page cannot hold a secret key, so the owner signs a **policy** instead and puts it
in the form: a base64 JSON document with an ``expiration`` time and ``conditions`` every
form field must meet (``{"bucket": "photos"}``, ``["starts-with", "$key", "uploads/"]``,
``["content-length-range", 0, 1048576]`` ...).  The form carries the policy, the
credential it was signed with (``x-amz-credential``, ``x-amz-date``,
``x-amz-algorithm``), the signature (HMAC-SHA256 of the base64 policy under the SigV4
signing key) and then the ``file`` field.  The server checks the signature, the expiry
and every condition, then stores the file as ``key`` (``${filename}`` in it becomes the
file's name) and answers 204, 200 or 201 (``success_action_status``), or redirects to
``success_action_redirect``.  Fields after ``file`` are ignored, as S3 does.
"""

import base64
import binascii
import calendar
import hmac
import json
import time
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from . import sigv4
from .storage import NULL

MAX_FORM_FIELD = 20 << 10       # bytes of one form field other than the file
IGNORED = {"policy", "x-amz-signature", "file", "awsaccesskeyid", "signature"}


def _error(code, message, status=400):
    from .s3 import S3Error
    return S3Error(code, message, status)


def _policy_time(text):
    try:
        return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    except (ValueError, TypeError):
        raise _error("InvalidPolicyDocument", f"Invalid Policy: Invalid 'expiration' value: {text!r}") from None


def _check_conditions(conditions, fields, bucket):
    """Every condition holds, and every field (but the exempt ones) is covered by one."""
    covered = {"bucket"}
    size_range = None
    for cond in conditions:
        if isinstance(cond, dict):
            if len(cond) != 1:
                raise _error("InvalidPolicyDocument", f"Invalid Policy: each condition object names one field: {cond}")
            name, expected = next(iter(cond.items()))
            name = name.lower()
            actual = bucket if name == "bucket" else fields.get(name)
            if actual != expected:
                raise _error("AccessDenied", f"Invalid according to Policy: Policy Condition failed: "
                             f'["eq", "${name}", "{expected}"]', 403)
            covered.add(name)
        elif isinstance(cond, list) and len(cond) == 3:
            op, target, value = cond
            if op == "content-length-range":
                try:
                    size_range = (int(target), int(value))
                except (TypeError, ValueError):
                    raise _error("InvalidPolicyDocument", "Invalid Policy: content-length-range needs two "
                                 "numbers") from None
                continue
            if not isinstance(target, str) or not target.startswith("$"):
                raise _error("InvalidPolicyDocument", f"Invalid Policy: the field of {cond} must start with $")
            name = target[1:].lower()
            actual = bucket if name == "bucket" else fields.get(name, "")
            if op == "eq" and actual != value:
                raise _error("AccessDenied", f"Invalid according to Policy: Policy Condition failed: {cond}", 403)
            if op == "starts-with" and not actual.startswith(value):
                raise _error("AccessDenied", f"Invalid according to Policy: Policy Condition failed: {cond}", 403)
            if op not in ("eq", "starts-with"):
                raise _error("InvalidPolicyDocument", f"Invalid Policy: unknown condition operation {op!r}")
            covered.add(name)
        else:
            raise _error("InvalidPolicyDocument", f"Invalid Policy: a condition is an object or a list of 3: {cond}")
    extra = [f for f in fields if f not in covered and f not in IGNORED and not f.startswith("x-ignore-")]
    if extra:
        raise _error("AccessDenied", "Invalid according to Policy: Extra input fields: " + ", ".join(sorted(extra)),
                     403)
    return size_range


def _verify(op, fields):
    """Check the form's signature and policy; returns (access key's account, policy conditions)."""
    policy_b64 = fields.get("policy")
    if policy_b64 is None:
        return None, []       # no policy: an anonymous upload, allowed only by the bucket's ACL or policy
    if fields.get("x-amz-algorithm") != sigv4.ALGORITHM:
        raise _error("InvalidArgument", f"POST requires x-amz-algorithm {sigv4.ALGORITHM} (Signature V4)")
    for name in ("x-amz-credential", "x-amz-date", "x-amz-signature"):
        if name not in fields:
            raise _error("InvalidArgument", f"Bucket POST must contain a field named '{name}'. If it is "
                         "specified, please check the order of the fields.")
    credential = fields["x-amz-credential"].split("/")
    if len(credential) != 5 or credential[3:] != [sigv4.SERVICE, sigv4.TERMINATOR]:
        raise _error("InvalidArgument", f"x-amz-credential {fields['x-amz-credential']!r} is not "
                     "ACCESS_KEY/YYYYMMDD/REGION/s3/aws4_request")
    access_key, date, region = credential[:3]
    found = op.users.s3_secret(access_key)
    if found is None:
        raise _error("InvalidAccessKeyId", f"the access key id {access_key!r} does not exist in this object "
                     "store", 403)
    secret, account = found
    key = sigv4.signing_key(secret, date, region)
    if not hmac.compare_digest(sigv4.sign(key, policy_b64), fields["x-amz-signature"]):
        raise _error("SignatureDoesNotMatch", "The request signature we calculated does not match the signature "
                     "you provided: the policy was changed, or signed with another key", 403)
    try:
        policy = json.loads(base64.b64decode(policy_b64, validate=True))
    except (binascii.Error, ValueError):
        raise _error("InvalidPolicyDocument", "Invalid Policy: the policy is not base64 of a JSON document") \
            from None
    if not isinstance(policy, dict) or "expiration" not in policy or "conditions" not in policy:
        raise _error("InvalidPolicyDocument", "Invalid Policy: it needs 'expiration' and 'conditions'")
    if _policy_time(policy["expiration"]) < time.time():
        raise _error("AccessDenied", "Invalid according to Policy: Policy expired.", 403)
    if not isinstance(policy["conditions"], list):
        raise _error("InvalidPolicyDocument", "Invalid Policy: 'conditions' must be a list")
    return account, policy["conditions"]


async def post_object(op):
    """Answer a browser form upload for the S3 operation ``op`` (its bucket named, no key)."""
    try:
        reader = await op.request.multipart()
    except (ValueError, AssertionError) as exc:
        raise _error("MalformedPOSTRequest", f"The body of your POST request is not well-formed "
                     f"multipart/form-data: {exc}") from None
    fields, file_part = {}, None
    while True:
        try:
            part = await reader.next()
        except ValueError as exc:
            raise _error("MalformedPOSTRequest", f"The body of your POST request is not well-formed "
                         f"multipart/form-data: {exc}") from None
        if part is None:
            break
        name = (part.name or "").lower()
        if name == "file":
            file_part = part
            break                      # fields after the file are ignored, as S3 does
        value = await part.read(decode=False)
        if len(value) > MAX_FORM_FIELD:
            raise _error("MaxPostPreDataLengthExceeded", "Your POST request fields preceding the upload file "
                         f"were too large: {name} is over {MAX_FORM_FIELD} bytes")
        try:
            fields[name] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise _error("InvalidArgument", f"the form field {name!r} is not UTF-8 text") from None
    if file_part is None:
        raise _error("InvalidArgument", "POST requires exactly one file upload per request (a field named file)")
    if "key" not in fields:
        raise _error("InvalidArgument", "Bucket POST must contain a field named 'key'.  If it is specified, "
                     "please check the order of the fields.")
    filename = file_part.filename or ""
    fields["key"] = fields["key"].replace("${filename}", filename)
    account, conditions = _verify(op, fields)
    op.requester = account
    op.key = fields["key"]
    size_range = _check_conditions(conditions, fields, op.bucket) if account is not None else None
    await op._require("s3:PutObject", op.key)
    system = {}
    if "acl" in fields:
        from .access import canned_acl
        system["acl"] = canned_acl(fields["acl"])
    if fields.get("tagging"):
        from .s3 import _parse_tagging
        system["tags"] = _parse_tagging(op._parse_xml(fields["tagging"].encode(), "Tagging"), limit=10)
    limit = size_range[1] if size_range else None

    async def chunks():
        total = 0
        while chunk := await file_part.read_chunk(1 << 20):
            total += len(chunk)
            if limit is not None and total > limit:
                raise _error("EntityTooLarge", f"Your proposed upload exceeds the maximum allowed size of "
                             f"{limit} bytes (content-length-range)")
            yield chunk
        if size_range and total < size_range[0]:
            raise _error("EntityTooSmall", f"Your proposed upload is smaller than the minimum allowed size of "
                         f"{size_range[0]} bytes (content-length-range)")

    meta = {k[len("x-amz-meta-"):]: v for k, v in fields.items() if k.startswith("x-amz-meta-")}
    kept = {h: fields[h] for h in ("content-disposition", "content-encoding", "cache-control", "expires")
            if h in fields}
    info = await op.store.put_object(op.owner, op.bucket, op.key, chunks(),
                                     content_type=fields.get("content-type") or file_part.headers.get(
                                         "Content-Type") or "binary/octet-stream",
                                     metadata=meta, headers=kept, system=system)
    location = f"{op.request.scheme}://{op.request.host}/{op.bucket}/{op.key}"
    headers = {"ETag": f'"{info.etag}"', "Location": location}
    if op.bucket_info.config.get("versioning"):
        headers["x-amz-version-id"] = info.version_id or NULL
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect and urlsplit(redirect).scheme in ("http", "https"):
        sep = "&" if "?" in redirect else "?"
        target = redirect + sep + urlencode({"bucket": op.bucket, "key": op.key, "etag": f'"{info.etag}"'})
        return web.Response(status=303, headers={**headers, "Location": target})
    status = fields.get("success_action_status", "204")
    if status == "201":
        from .s3 import _el
        body = (_el("Location", location) + _el("Bucket", op.bucket) + _el("Key", op.key)
                + _el("ETag", f'"{info.etag}"'))
        return web.Response(status=201, text=f'<?xml version="1.0" encoding="UTF-8"?>\n<PostResponse>{body}'
                            "</PostResponse>", content_type="application/xml", headers=headers)
    return web.Response(status=200 if status == "200" else 204, headers=headers)
