"""The Swift API v1 view of the store: accounts, containers and objects as HTTP resources.

Every resource is a URL and every operation an HTTP verb (REST)::

    /v1/AUTH_test                    account    HEAD GET POST
    /v1/AUTH_test/photos             container  PUT HEAD GET POST DELETE
    /v1/AUTH_test/photos/cat.jpg     object     PUT GET HEAD POST DELETE COPY

An object is "file + metadata": the body is the file, and headers carry the rest
(``Content-Type``, ``ETag`` = MD5 of the body, ``X-Object-Meta-*`` set by the
user, ``X-Timestamp`` and ``Last-Modified`` set by the store).  Containers and
accounts carry ``X-Container-Meta-*`` / ``X-Account-Meta-*`` and their usage in
``X-Container-Object-Count``, ``X-Account-Bytes-Used`` ...  Status codes follow
OpenStack's Object Storage API reference: 201 created, 202 accepted, 204 no content,
304/412 for conditional requests, 400/411/413/416/422 for bad requests, 401 without
a valid token (with ``WWW-Authenticate``), 403 for what the token's user may not do,
404, 406 for an Accept no listing format fits, 409 for a non-empty container, 501 for
what is not implemented (large-object manifests, the legacy versioning headers).

Who may do what: the account's owner everything; others what an account ACL
(``X-Account-Access-Control``) or a container ACL (``X-Container-Read``,
``X-Container-Write``, see :mod:`.access`) grants, so a container with ``.r:*`` is
readable without any token.  Versioning (``X-Versions-Enabled: true``) keeps every
older version (``?version-id=``, ``?versions`` listings), and ``X-Delete-At`` /
``X-Delete-After`` make an object expire.
"""

import email.utils
import errno
import functools
import json
import math
import mimetypes
import re
import secrets
import time
from urllib.parse import quote, unquote
from xml.sax.saxutils import escape, quoteattr

from aiohttp import web

from . import access
from .storage import (CHUNK, INLINE_READ, MAX_ACCOUNT_NAME, MAX_CONTAINER_NAME, MAX_OBJECT_NAME,
                      ContainerBusy, ContainerNotEmpty, EtagMismatch, InvalidInput, NotFound, TooLarge)

# Swift's default constraints (swift/common/constraints.py); /info publishes them
LIMITS = {
    "max_file_size": 5368709122,
    "max_meta_name_length": 128,
    "max_meta_value_length": 256,
    "max_meta_count": 90,
    "max_meta_overall_size": 4096,
    "max_header_size": 8192,
    "max_object_name_length": MAX_OBJECT_NAME,
    "container_listing_limit": 10000,
    "account_listing_limit": 10000,
    "max_account_name_length": MAX_ACCOUNT_NAME,
    "max_container_name_length": MAX_CONTAINER_NAME,
    "extra_header_count": 0,
}
# object headers kept with the object besides metadata (Swift's allowed_headers default);
# X-Delete-At is kept too (see _kept_headers), X-Object-Manifest is refused (501)
KEPT_HEADERS = ("content-disposition", "content-encoding", "content-language", "cache-control",
                "expires", "x-robots-tag")
SMALL_BODY = 1 << 20        # bodies up to this size are read whole, then written in one step
RANGE_RE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")
MAX_RANGES = 50             # more ranges than this in one request: the whole object is sent (as Swift)
MAX_DIGITS = 20             # a byte position with more digits is past any object (and past int()'s limit)
LEVEL = web.RequestKey("level", str)            # what the request's user may do here (SwiftAPI.check)
IDENTITY = web.RequestKey("identity", object)   # (storage account, login) of its token, or None
UNKNOWN_REALM = {"WWW-Authenticate": 'Swift realm="unknown"'}
POLICY = "Policy-0"         # the one storage policy; account listings name it per container
# a version id: ours (28 hex digits), "null", or Swift's own form (a timestamp), which this
# store never issues but a client may send: that is "no such version" (404), not malformed
VERSION_ID_RE = re.compile(r"^(null|[0-9a-f]{28})$")
SWIFT_VERSION_ID_RE = re.compile(r"^\d{10}\.\d{5}(_[0-9a-f]{16})?$")


def info():
    """The body of ``GET /info``: the capabilities and limits of this Swift-compatible store."""
    return {"swift": dict(LIMITS, version="cloudlab-1", strict_cors_mode=True,
                          policies=[{"name": "Policy-0", "default": True}],
                          allow_account_management=False, account_autocreate=True,
                          valid_api_versions=["v1", "v1.0"]),
            "tempauth": {"account_acls": False}}


def x_timestamp(ts):
    """Swift's ``X-Timestamp`` form: seconds since the epoch with 5 decimals."""
    return f"{ts:016.05f}"


def http_date(ts):
    """``Last-Modified`` form of a timestamp; Swift rounds up to the next whole second."""
    return _http_date(math.ceil(ts))


@functools.lru_cache(maxsize=1024)
def _http_date(seconds):
    return email.utils.formatdate(seconds, usegmt=True)


def iso_time(ts):
    """Listing form of a timestamp, e.g. ``2024-01-02T03:04:05.123456``."""
    whole = int(ts)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((ts - whole) * 1e6):06d}"


class SwiftError(Exception):
    """An HTTP error answer of the Swift view: status and a short explanation."""

    def __init__(self, status, message, headers=None, fix=None):
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.fix = fix
        super().__init__(message)


def error_response(status, message, headers=None, fix=None):
    """A plain-text error response as Swift sends them (``<reason>: <detail>``, then ``fix: ...``)."""
    reason = web.Response(status=status).reason
    body = f"{reason}: {message}\n" if message else f"{reason}\n"
    if fix:
        body += f"fix: {fix}\n"
    return web.Response(status=status, text=body if status not in (204, 304) else None,
                        headers=headers)


def _metadata(request, kind, limits=LIMITS):
    """Collect ``X-<kind>-Meta-*`` (and ``X-Remove-<kind>-Meta-*``) headers; checks Swift's limits.

    Returns a dict of lower-case names to values ("" for removals).
    Raises SwiftError 400 when a name or value or the total is too large.
    """
    prefix = f"x-{kind}-meta-"
    remove = f"x-remove-{kind}-meta-"
    meta = {}
    size = 0
    for key, value in request.headers.items():
        lk = key.lower()
        if lk.startswith(prefix):
            name = lk[len(prefix):]
        elif lk.startswith(remove):
            name, value = lk[len(remove):], ""
        else:
            continue
        if not name:
            raise SwiftError(400, "Metadata name cannot be empty")
        if len(name.encode()) > limits["max_meta_name_length"]:
            raise SwiftError(400, f"Metadata name too long; max {limits['max_meta_name_length']}: {name}")
        if len(value.encode()) > limits["max_meta_value_length"]:
            raise SwiftError(400, f"Metadata value longer than {limits['max_meta_value_length']}: {name}")
        meta[name] = value
        size += len(name.encode()) + len(value.encode())
    if len(meta) > limits["max_meta_count"]:
        raise SwiftError(400, f"Too many metadata items; max {limits['max_meta_count']}")
    if size > limits["max_meta_overall_size"]:
        raise SwiftError(400, f"Total metadata too large; max {limits['max_meta_overall_size']}")
    return meta


def _meta_headers(kind, metadata):
    return {f"X-{kind.title()}-Meta-{k.title()}": v for k, v in metadata.items()}


def _listing_params(request, max_limit):
    """The listing parameters of a GET on an account or container, checked as Swift does (412 when wrong)."""
    q = request.query
    limit = max_limit
    given = q.get("limit")
    # as Swift's constrain_req_limit: a limit that is not a whole number is ignored, one
    # above the maximum is refused (412)
    if given and given.isascii() and given.isdigit():
        if len(given) > 12 or int(given) > max_limit:
            raise SwiftError(412, f"Maximum limit is {max_limit}")
        limit = int(given)
    delimiter = q.get("delimiter") or None
    prefix = q.get("prefix", "")
    path = q.get("path")
    subdirs = True
    if path is not None:
        # the old "path" query: only the objects directly inside a pseudo-directory;
        # deeper names are skipped, not rolled up into subdir entries (as Swift does)
        prefix, delimiter, subdirs = (path.rstrip("/") + "/" if path else ""), "/", False
    for name, value in (("prefix", prefix), ("marker", q.get("marker")), ("end_marker", q.get("end_marker")),
                        ("delimiter", delimiter)):
        if value and "\x00" in value:
            raise SwiftError(412, f"{name} contains a NUL character")
    reverse = q.get("reverse", "").lower() in ("true", "1", "yes", "on", "t", "y")
    return dict(prefix=prefix, delimiter=delimiter, marker=q.get("marker") or None,
                end_marker=q.get("end_marker") or None, limit=limit, reverse=reverse, subdirs=subdirs)


FORMATS = {"json": "application/json", "xml": "application/xml", "plain": "text/plain"}
OFFERED = ("text/plain", "application/json", "application/xml", "text/xml")


def _out_format(request):
    """The listing format: ``?format=`` if given, else the best match of ``Accept`` (406 if none fits)."""
    fmt = request.query.get("format", "").lower()
    if fmt:
        return fmt if fmt in FORMATS else "plain"
    accept = request.headers.get("Accept", "")
    if not accept.strip():
        return "plain"
    best, best_q = None, 0.0
    for i, item in enumerate(accept.split(",")):
        media, *params = [x.strip() for x in item.split(";")]
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        for offer in OFFERED:
            kind, _, sub = offer.partition("/")
            m_kind, _, m_sub = media.lower().partition("/")
            if media == "*/*" or (m_kind == kind and m_sub in (sub, "*")):
                if quality > best_q:
                    best, best_q = offer, quality
                break
    if best is None:
        raise SwiftError(406, f"no listing format matches Accept: {accept!r}",
                         fix="accept text/plain, application/json or application/xml (or use ?format=)")
    return {"text/plain": "plain", "application/json": "json"}.get(best, "xml")


def _listing_response(request, fmt, kind, name, entries, headers):
    """Render an account or container listing as text, JSON or XML."""
    if fmt == "json":
        items = []
        for e in entries:
            if e.subdir:
                items.append({"subdir": e.name})
            elif kind == "account":
                items.append({"name": e.name, "count": e.count, "bytes": e.size,
                              "last_modified": iso_time(e.timestamp), "storage_policy": POLICY})
            else:
                item = {"name": e.name, "hash": e.etag, "bytes": e.size,
                        "content_type": e.content_type, "last_modified": iso_time(e.timestamp)}
                if e.version_id is not None:
                    item["version_id"] = e.version_id
                    item["is_latest"] = e.is_latest
                items.append(item)
        return web.Response(status=200, body=json.dumps(items).encode(), headers=headers,
                            content_type="application/json", charset="utf-8")
    if fmt == "xml":
        tag = "container" if kind == "account" else "object"
        parts = ['<?xml version="1.0" encoding="UTF-8"?>', f"<{kind} name={quoteattr(name)}>"]
        for e in entries:
            if e.subdir:
                parts.append(f"<subdir name={quoteattr(e.name)}><name>{escape(e.name)}</name></subdir>")
            elif kind == "account":
                parts.append(f"<{tag}><name>{escape(e.name)}</name><count>{e.count}</count>"
                             f"<bytes>{e.size}</bytes><last_modified>{iso_time(e.timestamp)}"
                             f"</last_modified><storage_policy>{POLICY}</storage_policy></{tag}>")
            else:
                parts.append(f"<{tag}><name>{escape(e.name)}</name><hash>{e.etag}</hash>"
                             f"<bytes>{e.size}</bytes><content_type>{escape(e.content_type)}"
                             f"</content_type><last_modified>{iso_time(e.timestamp)}</last_modified></{tag}>")
        parts.append(f"</{kind}>")
        return web.Response(status=200, text="\n".join(parts) + "\n", headers=headers,
                            content_type="application/xml", charset="utf-8")
    if not entries:
        return web.Response(status=204, headers=headers, content_type="text/plain", charset="utf-8")
    text = "".join(e.name + "\n" for e in entries)
    return web.Response(status=200, text=text, headers=headers, content_type="text/plain", charset="utf-8")


class SwiftAPI:
    """Request handlers of the Swift view over a :class:`~cloudlab.object_store.storage.Store`.

    Args:
        store: the storage core.
        users: the :class:`~cloudlab.object_store.auth.Users` that may log in.
    """

    def __init__(self, store, users):
        self.store = store
        self.users = users

    # ---- auth and info -------------------------------------------------------------

    async def auth(self, request):
        """``GET /auth/v1.0``: trade ``X-Auth-User``/``X-Auth-Key`` for a token and storage URL."""
        if request.method not in ("GET", "HEAD"):
            raise SwiftError(405, "use GET to authenticate", {"Allow": "GET, HEAD"})
        h = request.headers
        login = h.get("X-Auth-User") or h.get("X-Storage-User")
        key = h.get("X-Auth-Key") or h.get("X-Storage-Pass")
        if not login or key is None:
            raise SwiftError(401, "send X-Auth-User (account:user) and X-Auth-Key", UNKNOWN_REALM)
        user = self.users.authenticate(login, key)
        if user is None:
            raise SwiftError(401, f"unknown user or wrong key for {login!r}", UNKNOWN_REALM)
        token, ttl = self.users.issue_token(user)
        url = f"{request.scheme}://{request.host}/v1/{user.storage_account}"
        return web.Response(status=200, headers={
            "X-Storage-Url": url, "X-Auth-Token": token, "X-Storage-Token": token,
            "X-Auth-Token-Expires": str(ttl)}, content_type="text/plain", charset="utf-8")

    async def info(self, request):
        """``GET /info``: capabilities and limits; public, no token needed."""
        if request.method not in ("GET", "HEAD"):
            raise SwiftError(405, "use GET /info", {"Allow": "GET, HEAD"})
        return web.json_response(info())

    def identity(self, request, account):
        """``(storage account, login)`` of the request's token; None when it carries none.

        Raises:
            SwiftError: 401 (with WWW-Authenticate) for a token that is unknown or expired.
        """
        token = request.headers.get("X-Auth-Token") or request.headers.get("X-Storage-Token")
        if not token:
            return None
        found = self.users.identity_for_token(token)
        if found is None:
            raise SwiftError(401, "the token is unknown or has expired; authenticate again",
                             {"WWW-Authenticate": f'Swift realm="{quote(account)}"'})
        return found

    def _denied(self, identity, account, what):
        if identity is None:
            return SwiftError(401, f"{what} needs a token: send X-Auth-Token (get one from GET /auth/v1.0)",
                              {"WWW-Authenticate": f'Swift realm="{quote(account)}"'})
        return SwiftError(403, f"{identity[1]} may not {what} in account {account}",
                          fix="the account's owner can grant it (X-Container-Read, X-Container-Write or "
                              "X-Account-Access-Control)")

    async def account_level(self, identity, account):
        """"owner", "admin", "read-write", "read-only" or None: what ``identity`` may do in ``account``."""
        if identity is not None and identity[0] == account:
            return "owner"
        if identity is None:
            return None
        config = await self.store.account_config(account)
        return access.account_acl_level(config.get("acl"), identity)

    async def check(self, request, identity, account, container=None, obj=None, write=False):
        """Raise 401/403 unless ``identity`` may read (or ``write``) the account, container or object.

        The account's owner may do anything; an account ACL grants read-only,
        read-write or admin access to the whole account; a container's
        X-Container-Read / X-Container-Write grant its objects (and its listing).
        """
        level = await self.account_level(identity, account)
        if level in ("owner", "admin"):
            return level
        if level == "read-write" and (container or not write):
            return level
        if level == "read-only" and not write:
            return level
        if container:
            try:
                config = (await self.store.container_info(account, container)).config
            except (NotFound, InvalidInput):
                config = {}
            if write and obj:
                if access.swift_acl_allows(config.get("write", []), identity, None):
                    return "acl"
            elif not write:
                if access.swift_acl_allows(config.get("read", []), identity, request.headers.get("Referer"),
                                           listing=not obj):
                    return "acl"
        verb = "write to" if write else "read"
        raise self._denied(identity, account, f"{verb} {container + '/' + obj if obj else container or 'the account'}")

    # ---- dispatch ------------------------------------------------------------------

    async def handle(self, request, parts):
        """Serve ``/v1/<account>[/<container>[/<object>]]``; ``parts`` is the decoded split path."""
        account = parts[0] if parts else ""
        if not account:
            raise SwiftError(400, "the path needs an account: /v1/<account>")
        identity = self.identity(request, account)
        if len(account.encode()) > MAX_ACCOUNT_NAME:
            raise SwiftError(400, f"Account name length of {len(account.encode())} longer than {MAX_ACCOUNT_NAME}")
        container = parts[1] if len(parts) > 1 else ""
        obj = parts[2] if len(parts) > 2 else ""
        if obj and not container:
            raise SwiftError(400, "the path has an empty container name: /v1/<account>//<object>",
                             fix="name the container: /v1/<account>/<container>/<object>")
        method = request.method
        if obj:
            handler = getattr(self, f"object_{method.lower()}", None)
            args = (account, container, obj)
        elif container:
            handler = getattr(self, f"container_{method.lower()}", None)
            args = (account, container)
        else:
            handler = getattr(self, f"account_{method.lower()}", None)
            args = (account,)
        if handler is None:
            raise SwiftError(405, f"{method} is not allowed here")
        if container and len(container.encode()) > MAX_CONTAINER_NAME:
            raise SwiftError(400, f"Container name length of {len(container.encode())} longer than "
                                  f"{MAX_CONTAINER_NAME}")
        if obj and len(obj.encode()) > MAX_OBJECT_NAME:
            raise SwiftError(400, f"Object name length of {len(obj.encode())} longer than {MAX_OBJECT_NAME}")
        try:
            write = method not in ("GET", "HEAD", "COPY")      # COPY reads here, writes at its Destination
            request[LEVEL] = await self.check(request, identity, account, container or None, obj or None,
                                                write=write)
            request[IDENTITY] = identity
            return await handler(request, *args)
        except NotFound as exc:
            raise SwiftError(404, exc.message) from None
        except (ContainerNotEmpty, ContainerBusy) as exc:
            raise SwiftError(409, exc.message, fix=exc.fix) from None
        except EtagMismatch as exc:
            raise SwiftError(422, exc.message) from None
        except TooLarge as exc:
            raise SwiftError(413, exc.message) from None
        except InvalidInput as exc:
            raise SwiftError(400, exc.message) from None
        except OSError as exc:
            # the disk said no (full, read-only, I/O error): nothing was committed
            status = 507 if exc.errno in (errno.ENOSPC, errno.EDQUOT) else 503
            raise SwiftError(status, f"the store could not write to its disk: {exc.strerror}") from None

    # ---- account -------------------------------------------------------------------

    async def _account_headers(self, account, level=None):
        a = await self.store.account_info(account)
        headers = {"X-Account-Container-Count": str(a.container_count),
                   "X-Account-Object-Count": str(a.object_count),
                   "X-Account-Bytes-Used": str(a.bytes_used),
                   "X-Timestamp": x_timestamp(a.timestamp)}
        headers.update(_meta_headers("account", a.metadata))
        if level in ("owner", "admin") and a.config.get("acl"):
            headers["X-Account-Access-Control"] = json.dumps(a.config["acl"], separators=(",", ":"))
        return headers

    async def account_head(self, request, account):
        """HEAD account: usage and metadata, 204."""
        return web.Response(status=204, headers=await self._account_headers(account, request.get(LEVEL)),
                            content_type="text/plain", charset="utf-8")

    async def account_get(self, request, account):
        """GET account: the container listing (text, json or xml)."""
        params = _listing_params(request, LIMITS["account_listing_limit"])
        headers = await self._account_headers(account, request.get(LEVEL))
        entries = await self.store.list_containers(account, **params)
        return _listing_response(request, _out_format(request), "account", account, entries, headers)

    async def account_post(self, request, account):
        """POST account: set or remove ``X-Account-Meta-*`` and the account ACL, 204."""
        value = request.headers.get("X-Account-Access-Control")
        if request.headers.get("X-Remove-Account-Access-Control") is not None:
            value = ""
        if request.get(LEVEL) not in ("owner", "admin"):
            raise SwiftError(403, "only the account's owner (or an admin) may change the account")
        meta = _metadata(request, "account")
        if value is not None:
            try:
                acl = access.parse_account_acl(value) if value.strip() else None
            except ValueError as exc:
                raise SwiftError(400, str(exc)) from None
            await self.store.update_account_config(account, {"acl": acl})
        await self.store.update_account_metadata(account, meta)
        return web.Response(status=204)

    # ---- container -----------------------------------------------------------------

    async def _container_headers(self, account, container, level=None):
        c = await self.store.container_info(account, container)
        headers = {"X-Container-Object-Count": str(c.object_count),
                   "X-Container-Bytes-Used": str(c.bytes_used),
                   "X-Timestamp": x_timestamp(c.timestamp),
                   "X-Storage-Policy": "Policy-0",
                   "Last-Modified": http_date(c.last_modified)}
        headers.update(_meta_headers("container", c.metadata))
        if c.config.get("versioning"):
            headers["X-Versions-Enabled"] = "True" if c.config["versioning"] == "Enabled" else "False"
        if level in ("owner", "admin"):
            for key, header in (("read", "X-Container-Read"), ("write", "X-Container-Write")):
                if c.config.get(key):
                    headers[header] = ",".join(c.config[key])
        return headers

    async def _container_config(self, request, account):
        """Configuration changes a container PUT/POST asks for: ACLs and versioning; checked first.

        Raises:
            SwiftError: 400 for a malformed ACL or X-Versions-Enabled value, 403 when someone
                other than the account's owner (or an admin) changes an ACL, 501 for the
                legacy versioning headers.
        """
        h = request.headers
        changes = {}
        for header, key in (("X-Container-Read", "read"), ("X-Container-Write", "write")):
            value = h.get(header)
            if h.get(f"X-Remove-{header[2:]}") is not None:
                value = ""
            if value is None:
                continue
            try:
                changes[key] = access.parse_container_acl(value, header) or None
            except ValueError as exc:
                raise SwiftError(400, str(exc), fix=f"{header}: e.g. .r:*,.rlistings or account:user") from None
        if changes and request.get(LEVEL) not in ("owner", "admin"):
            raise SwiftError(403, "only the account's owner (or an admin) may change a container's ACLs")
        enabled = h.get("X-Versions-Enabled")
        if enabled is not None:
            flag = enabled.strip().lower()
            if flag not in ("true", "false", "yes", "no", "1", "0", "on", "off"):
                raise SwiftError(400, f"X-Versions-Enabled must be true or false, not {enabled!r}")
            changes["versioning"] = "Enabled" if flag in ("true", "yes", "1", "on") else "Suspended"
        for legacy in ("X-Versions-Location", "X-History-Location"):
            if h.get(legacy):
                raise SwiftError(501, f"{legacy} (the legacy versioning modes) is not implemented",
                                 fix="use X-Versions-Enabled: true (object versioning)")
        return changes

    async def _apply_config(self, account, container, changes):
        if "versioning" in changes:
            info = await self.store.container_info(account, container)
            if changes["versioning"] == "Suspended" and not info.config.get("versioning"):
                del changes["versioning"]           # "false" on a container never versioned: nothing to do
        if changes:
            await self.store.update_container_config(account, container, changes)

    async def container_put(self, request, account, container):
        """PUT container: create it (201), or update its metadata if it exists (202)."""
        changes = await self._container_config(request, account)
        created = await self.store.create_container(account, container, _metadata(request, "container"))
        await self._apply_config(account, container, changes)
        return web.Response(status=201 if created else 202)

    async def container_head(self, request, account, container):
        """HEAD container: usage and metadata, 204."""
        return web.Response(status=204, headers=await self._container_headers(account, container, request.get(LEVEL)),
                            content_type="text/plain", charset="utf-8")

    async def container_get(self, request, account, container):
        """GET container: the object listing (text, json or xml)."""
        params = _listing_params(request, LIMITS["container_listing_limit"])
        headers = await self._container_headers(account, container, request.get(LEVEL))
        if "versions" in request.query:
            # every version, newest first per name (Swift's object versioning listing)
            entries = await self.store.list_versions(
                account, container, prefix=params["prefix"], delimiter=params["delimiter"],
                key_marker=params["marker"], version_marker=request.query.get("version_marker") or None,
                limit=params["limit"])
            for e in entries:
                if e.delete_marker:
                    e.content_type = "application/x-deleted;swift_versions_deleted=1"
        else:
            entries = await self.store.list_objects(account, container, **params)
            for e in entries:
                e.version_id = None         # version ids are listed with ?versions only
        return _listing_response(request, _out_format(request), "container", container, entries, headers)

    async def container_post(self, request, account, container):
        """POST container: set or remove ``X-Container-Meta-*``, ACLs, versioning; 204 (moves Last-Modified)."""
        changes = await self._container_config(request, account)
        await self.store.update_container_metadata(account, container, _metadata(request, "container"))
        await self._apply_config(account, container, changes)
        return web.Response(status=204)

    async def container_delete(self, request, account, container):
        """DELETE container: 204, or 409 while it holds objects."""
        await self.store.delete_container(account, container)
        return web.Response(status=204)

    # ---- object --------------------------------------------------------------------

    def _object_headers(self, info):
        headers = {"ETag": info.etag, "Last-Modified": http_date(info.timestamp),
                   "X-Timestamp": x_timestamp(info.timestamp), "Accept-Ranges": "bytes",
                   "Content-Type": info.content_type}
        for k, v in info.headers.items():
            headers[k.title()] = v
        headers.update(_meta_headers("object", info.metadata))
        if info.version_id:
            headers["X-Object-Version-Id"] = info.version_id
        return headers

    @staticmethod
    def _kept_headers(request, expiry=False, only_expiry=False):
        """Headers kept with the object; with ``expiry``, X-Delete-At (from X-Delete-After too), checked.

        Raises:
            SwiftError: 400 for an X-Delete-At that is not a number or is in the past,
                or an X-Delete-After that is not a whole number of seconds.
        """
        h = request.headers
        kept = {} if only_expiry else {k: h[k] for k in KEPT_HEADERS if k in h}
        if not expiry:
            return kept
        if "X-Delete-After" in h:
            after = h["X-Delete-After"].strip()
            if not after.isdigit() or len(after) > 12:
                raise SwiftError(400, f"Non-integer X-Delete-After: {after!r}")
            kept["x-delete-at"] = str(int(time.time()) + int(after))
        elif "X-Delete-At" in h:
            at = h["X-Delete-At"].strip()
            if not at.isdigit() or len(at) > 12:
                raise SwiftError(400, f"Non-integer X-Delete-At: {at!r}")
            if int(at) <= time.time():
                raise SwiftError(400, "X-Delete-At in past")
            kept["x-delete-at"] = at
        return kept

    @staticmethod
    def _content_type(request, name):
        ctype = request.headers.get("Content-Type")
        if not ctype or request.headers.get("X-Detect-Content-Type", "").lower() in ("true", "1", "yes"):
            ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return ctype

    async def object_put(self, request, account, container, name):
        """PUT object: store the body (201 with its ETag), or copy with ``X-Copy-From``."""
        h = request.headers
        meta = _metadata(request, "object")
        if "X-Object-Manifest" in h or request.query.get("multipart-manifest") == "put":
            what = "dynamic large objects (X-Object-Manifest)" if "X-Object-Manifest" in h else \
                "static large objects (?multipart-manifest=put)"
            raise SwiftError(501, f"{what} are not implemented by this store",
                             fix="upload the object whole (up to 5 GiB), or use S3 multipart uploads")
        if "X-Copy-From" in h:
            if request.content_length not in (None, 0):
                raise SwiftError(400, "a copy request (X-Copy-From) must have an empty body")
            src_account = h.get("X-Copy-From-Account", account)
            src_container, src_name = _split_copy_path(h["X-Copy-From"], "X-Copy-From")
            await self.check(request, request.get(IDENTITY), src_account, src_container, src_name)
            return await self._copy(request, src_account, src_container, src_name, account, container, name, meta)
        chunked = "chunked" in h.get("Transfer-Encoding", "").lower()
        length = request.content_length
        if length is None and not chunked:
            raise SwiftError(411, "send Content-Length, or Transfer-Encoding: chunked")
        if length is not None and length > LIMITS["max_file_size"]:
            raise SwiftError(413, f"Your request is too large: {length} bytes; max_file_size is "
                                  f"{LIMITS['max_file_size']}")
        if "If-None-Match" in h and h["If-None-Match"].strip() != "*":
            raise SwiftError(400, "If-None-Match only supports * on a PUT")
        if h.get("If-None-Match", "").strip() == "*":
            try:
                await self.store.head_object(account, container, name)
            except NotFound:
                pass
            else:
                raise SwiftError(412, "the object exists and If-None-Match: * was sent")
        if any(v == "" for v in meta.values()):
            meta = {k: v for k, v in meta.items() if v != ""}
        kwargs = dict(content_type=self._content_type(request, name), metadata=meta,
                      headers=self._kept_headers(request, expiry=True), expected_etag=h.get("ETag"))
        if length is not None and length <= SMALL_BODY:
            body = await request.read()
        else:
            body = request.content.iter_chunked(CHUNK)
        stored = await self.store.put_object(account, container, name, body, **kwargs)
        headers = {"ETag": stored.etag, "Last-Modified": http_date(stored.timestamp),
                   "X-Timestamp": x_timestamp(stored.timestamp)}
        if stored.version_id:
            headers["X-Object-Version-Id"] = stored.version_id
        return web.Response(status=201, headers=headers, content_type="text/html", charset="utf-8")

    async def _copy(self, request, src_account, src_container, src_name, account, container, name, meta):
        version = request.query.get("version-id") if request.method == "COPY" else None
        src = await self.store.head_object(src_account, src_container, src_name, version=version)
        offset, length = 0, None
        if "Range" in request.headers:
            # a copy with a Range stores only those bytes (one range; several are refused)
            ranges = parse_ranges(request.headers["Range"], src.size)
            if ranges == "unsatisfiable":
                raise SwiftError(416, "Requested Range Not Satisfiable", {"Content-Range": f"bytes */{src.size}"})
            if ranges is not None and len(ranges) > 1:
                raise SwiftError(400, "a copy takes one byte range, not several")
            if ranges is not None:
                offset, length = ranges[0][0], ranges[0][1] - ranges[0][0] + 1
        fresh = request.headers.get("X-Fresh-Metadata", "").lower() in ("true", "1", "yes")
        merged = {} if fresh else dict(src.metadata)
        for k, v in meta.items():
            if v == "":
                merged.pop(k, None)
            else:
                merged[k] = v
        ctype = request.headers.get("Content-Type") if request.method == "COPY" or \
            "Content-Type" in request.headers else None
        kept = dict(src.headers)
        kept.update(self._kept_headers(request))
        kept.update(self._kept_headers(request, expiry=True, only_expiry=True))
        stored = await self.store.copy_object(src_account, src_container, src_name, account, container, name,
                                              metadata=merged, content_type=ctype, headers=kept, version=version,
                                              offset=offset, length=length)
        return web.Response(status=201, headers={
            "ETag": stored.etag, "Last-Modified": http_date(stored.timestamp),
            "X-Timestamp": x_timestamp(stored.timestamp),
            # quoted as Swift does: a name may hold CR, LF or any other byte a header cannot
            "X-Copied-From": quote(f"{src_container}/{src_name}"),
            "X-Copied-From-Account": quote(src_account),
            "X-Copied-From-Last-Modified": http_date(src.timestamp)},
            content_type="text/html", charset="utf-8")

    async def object_copy(self, request, account, container, name):
        """COPY object: copy to the ``Destination`` container/object (201)."""
        dest = request.headers.get("Destination")
        if not dest:
            raise SwiftError(412, "COPY needs a Destination header: <container>/<object>")
        dst_account = request.headers.get("Destination-Account", account)
        dst_container, dst_name = _split_copy_path(dest, "Destination")
        if len(dst_account.encode()) > MAX_ACCOUNT_NAME or len(dst_container.encode()) > MAX_CONTAINER_NAME \
                or len(dst_name.encode()) > MAX_OBJECT_NAME:
            raise SwiftError(400, "the Destination (or Destination-Account) is longer than Swift's limits")
        await self.check(request, request.get(IDENTITY), dst_account, dst_container, dst_name, write=True)
        meta = _metadata(request, "object")
        return await self._copy(request, account, container, name, dst_account, dst_container, dst_name, meta)

    def _conditions(self, request, info):
        """Apply If-Match / If-None-Match / If-(Un)Modified-Since; returns a 304/412 response or None.

        As Swift does, each header present is evaluated on its own (an If-Match that
        holds does not excuse a failed If-Unmodified-Since, unlike RFC 9110's order);
        412 wins over 304.
        """
        h = request.headers
        etag = info.etag
        modified = math.ceil(info.timestamp)
        failed = None
        if "If-Match" in h:
            tags = [t.strip().strip('"') for t in h["If-Match"].split(",")]
            if "*" not in tags and etag not in tags:
                failed = 412
        if failed is None and "If-Unmodified-Since" in h:
            since = _parse_date(h["If-Unmodified-Since"])
            if since is not None and modified > since:
                failed = 412
        if failed is None and "If-None-Match" in h:
            tags = [t.strip().strip('"') for t in h["If-None-Match"].split(",")]
            if "*" in tags or etag in tags:
                failed = 304
        if failed is None and "If-Modified-Since" in h:
            since = _parse_date(h["If-Modified-Since"])
            if since is not None and modified <= since:
                failed = 304
        if failed is None:
            return None
        return web.Response(status=failed, headers=self._conditional_headers(info))

    def _conditional_headers(self, info):
        """What a 304 or 412 carries: the object's headers (ETag, Last-Modified, type, metadata), no body."""
        headers = self._object_headers(info)
        headers["Content-Length"] = "0"
        return headers

    async def object_head(self, request, account, container, name):
        """HEAD object: its metadata as headers, no body."""
        info = await self.store.head_object(account, container, name, version=self._version(request))
        stop = self._conditions(request, info)
        if stop is not None:
            return stop
        headers = self._object_headers(info)
        headers["Content-Length"] = str(info.size)
        return web.Response(status=200, headers=headers)

    async def object_get(self, request, account, container, name):
        """GET object: the body (or one byte range, 206) with its metadata as headers."""
        reader = await self.store.get_object(account, container, name, version=self._version(request))
        info = reader.info
        try:
            stop = self._conditions(request, info)
            if stop is not None:
                return stop
            headers = self._object_headers(info)
            status = 200
            ranges = parse_ranges(request.headers["Range"], info.size) if "Range" in request.headers else None
            if ranges == "unsatisfiable":
                # the object's headers but its type (the body is an error text), as Swift
                headers.pop("Content-Type", None)
                return error_response(416, f"the object has {info.size} bytes; no range asked for is inside it",
                                      {**headers, "Content-Range": f"bytes */{info.size}"})
            if ranges is not None and len(ranges) > 1:
                return await self._multirange(request, reader, ranges, headers)
            if ranges is not None:
                first, last = ranges[0]
                reader.restrict(first, last - first + 1)
                headers["Content-Range"] = f"bytes {first}-{last}/{info.size}"
                status = 206
            if reader.length <= INLINE_READ:
                return web.Response(status=status, body=await reader.read(), headers=headers)
            resp = web.StreamResponse(status=status, headers=headers)
            resp.content_length = reader.length
            await resp.prepare(request)
            async for chunk in reader:
                await resp.write(chunk)
            await resp.write_eof()
            return resp
        finally:
            reader.close()

    @staticmethod
    async def _multirange(request, reader, ranges, headers):
        """A 206 with a multipart/byteranges body: one part per range, each with its Content-Range.

        Streamed piece by piece, so that many large ranges never sit in memory at once.
        """
        info = reader.info
        boundary = secrets.token_hex(16)
        heads = [f"--{boundary}\r\nContent-Type: {info.content_type}\r\n"
                 f"Content-Range: bytes {first}-{last}/{info.size}\r\n\r\n".encode() for first, last in ranges]
        tail = f"--{boundary}--".encode()
        total = sum(len(h) + (last - first + 1) + 2 for h, (first, last) in zip(heads, ranges)) + len(tail)
        headers["Content-Type"] = f"multipart/byteranges;boundary={boundary}"
        resp = web.StreamResponse(status=206, headers=headers)
        resp.content_length = total
        await resp.prepare(request)
        for head, (first, last) in zip(heads, ranges):
            await resp.write(head)
            offset = first
            while offset <= last:
                n = min(CHUNK, last + 1 - offset)
                await resp.write(await reader.read_at(offset, n))
                offset += n
            await resp.write(b"\r\n")
        await resp.write(tail)
        await resp.write_eof()
        return resp

    async def object_post(self, request, account, container, name):
        """POST object: replace all of its ``X-Object-Meta-*`` (202); kept headers and X-Delete-At as given."""
        meta = {k: v for k, v in _metadata(request, "object").items() if v != ""}
        ctype = request.headers.get("Content-Type")
        old = await self.store.head_object(account, container, name)
        kept = dict(old.headers)
        kept.update(self._kept_headers(request, expiry=True))
        if "X-Remove-Delete-At" in request.headers:
            kept.pop("x-delete-at", None)
        await self.store.set_object_metadata(account, container, name, meta, content_type=ctype, headers=kept)
        return web.Response(status=202, content_type="text/html", charset="utf-8")

    async def object_delete(self, request, account, container, name):
        """DELETE object (or one version of it, ``?version-id=``): 204."""
        vid, marker = await self.store.delete_object(account, container, name, version=self._version(request))
        headers = {"X-Object-Version-Id": vid} if vid else {}
        return web.Response(status=204, headers=headers, content_type="text/html", charset="utf-8")

    @staticmethod
    def _version(request):
        """The ``?version-id=`` of a request (None: the latest); 400 when it cannot be a version id."""
        value = request.query.get("version-id")
        if value is None or VERSION_ID_RE.match(value):
            return value
        if SWIFT_VERSION_ID_RE.match(value):
            raise SwiftError(404, f"no version {value} (this store's version ids are 28 hex digits)")
        raise SwiftError(400, f"Invalid version-id: {value!r}",
                         fix="use an X-Object-Version-Id this store returned, or null")


def _split_copy_path(value, header):
    path = unquote(value).lstrip("/")
    container, _, obj = path.partition("/")
    if not container or not obj:
        raise SwiftError(412, f"{header} must be <container>/<object>, not {value!r}")
    return container, obj


def _parse_date(value):
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.timestamp() if parsed.tzinfo else None


def _position(digits):
    """A byte position from its digits; one too long for any object stays "past the end"."""
    return int(digits) if len(digits) <= MAX_DIGITS else 1 << 70


def parse_ranges(header, size, max_ranges=MAX_RANGES):
    """The byte ranges of a ``Range`` header as inclusive ``[(first, last), ...]``, "unsatisfiable", or None.

    None means "ignore the header and send the whole object": another unit, a malformed
    spec (``bytes=x-y``, a last before its first) or more than ``max_ranges`` ranges, as
    RFC 9110 allows and Swift does.  Ranges outside the object are dropped; when none is
    left the answer is 416 ("unsatisfiable").  Positions of any length are accepted.
    """
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    specs = [p for p in spec.split(",") if p.strip()]
    if not specs or len(specs) > max_ranges:
        return None
    ranges = []
    for part in specs:
        m = RANGE_RE.match(part)
        if not m or (not m.group(1) and not m.group(2)):
            return None
        start, end = m.group(1), m.group(2)
        if start:
            first = _position(start)
            last = _position(end) if end else size - 1
            if end and last < first:
                return None
            if first < size:
                ranges.append((first, min(last, size - 1)))
        else:
            suffix = _position(end)
            if suffix > 0 and size > 0:
                ranges.append((max(0, size - suffix), size - 1))
    return ranges or "unsatisfiable"
