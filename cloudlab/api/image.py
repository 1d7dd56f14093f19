"""Image API (Glance v2) over the lab's image registry.

Glance keeps an image in two steps, and so does this API: ``POST /v2/images`` makes a
record in status ``queued`` (a name, a disk format, properties: no data yet), then
``PUT /v2/images/{id}/file`` uploads the bytes; the image becomes ``active`` when
they are stored (here: ``lab.image.import_image``, which checks the disk with
``qemu-img``).  ``openstack image create --file disk.qcow2 NAME`` does both.

Ids: Glance names images by UUID.  An image of the lab's registry has a stable one,
derived from its name and creation time, or the one its record was created with
(kept in its properties).  Owner and visibility live in the same properties; the
lab's built image (``busybox``) and images made without the API are public, owned
by the admin project.  Queued records (they hold no data yet) are files in the
lab's folder (:class:`QueuedImages`), removed when the lab stops: the lab's
process and a Glance process on the controller node (:mod:`.node_service`) read
the same ones, as two glance-api workers read one database.

The lab's registry names are its keys, so two images cannot share a name (Glance
allows it): a second one is 409.  Names are 1-40 lower-case letters, digits, '.',
'_' or '-'; disk formats qcow2 and raw; container format bare.
"""

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

from aiohttp import web

from ..errors import NotFound
from ..image import DEFAULT_IMAGE, NAME_RE
from .http import CONTEXT, ApiError, blocking, field, json_body, json_response, middleware

NAMESPACE = uuid.UUID("6f1e8c1a-9e2b-4cde-9d55-3a1c6c0f0a11")
DISK_FORMATS = ("qcow2", "raw")
CORE = {"id", "name", "status", "visibility", "protected", "checksum", "os_hash_algo", "os_hash_value", "owner",
        "size", "virtual_size", "min_ram", "min_disk", "disk_format", "container_format", "created_at",
        "updated_at", "tags", "self", "file", "schema", "os_hidden", "direct_url", "locations"}
# properties the lab keeps for itself (owner, visibility, id), not shown as extra properties
KEPT = {"id", "owner", "visibility", "protected", "min_disk", "tags", "os_hidden"}


def glance_fault(status, message, fault=None):
    """A fault as Glance's JSON: ``{"code": 404, "title": "Not Found", "message": ...}``."""
    titles = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
              409: "Conflict", 413: "Request Entity Too Large", 415: "Unsupported Media Type",
              500: "Internal Server Error", 501: "Not Implemented"}
    return {"code": status, "title": titles.get(status, "Error"), "message": message}


def iso(ts):
    """A Unix time as Glance writes times: ``2024-01-02T03:04:05Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts or 0))


def image_id(image):
    """The Glance id of a registry image: the one it was created with, or one derived from name and time."""
    return image.properties.get("id") or str(uuid.uuid5(NAMESPACE, f"{image.name}:{image.created_at:.6f}"))


_sha512 = {}


def sha512_file(path):
    """Hex SHA-512 of a file (Glance's ``os_hash_value``), remembered per path, size and time."""
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _sha512:
        digest = hashlib.sha512()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _sha512[key] = digest.hexdigest()
    return _sha512[key]


class QueuedImages:
    """The queued records (images without data yet), one JSON file each in ``folder``.

    Files, not memory: in a multi-node layout Glance's API is a process of the
    controller while Nova's, in the lab's process, looks the same images up.  Each
    record is written whole (a temporary file renamed over the old one), so a
    reader never sees half of one.
    """

    def __init__(self, folder):
        self.folder = Path(folder)

    def _path(self, ident):
        return self.folder / f"{uuid.UUID(ident)}.json"

    def values(self):
        """Every queued record, oldest first."""
        records = []
        for path in sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns if p.exists() else 0):
            try:
                records.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue        # deleted meanwhile
        return records

    def put(self, record):
        """Store ``record`` (a dict with an ``id``), replacing the one of that id."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(record["id"])
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)

    def pop(self, ident):
        """Remove the record ``ident`` and return it, or None when there is none."""
        path = self._path(ident)
        try:
            record = json.loads(path.read_text())
            path.unlink()
        except (OSError, ValueError):
            return None
        return record

    def clear(self):
        """Remove every record and the folder."""
        shutil.rmtree(self.folder, ignore_errors=True)


class ImageAPI:
    """Glance's v2 REST API over ``lab.image``.

    Args:
        api: the :class:`~cloudlab.api.OpenStackAPI`.
        auth: the :class:`~cloudlab.api.auth.TokenCheck` for the ``glance`` service user.
    """

    service_user = "glance"
    catalog_name = "image"

    def __init__(self, api, auth):
        self.api = api
        self.lab = api.lab
        self.auth = auth
        self.base = None
        self._queued = QueuedImages(self.lab.home / f"{self.lab.prefix}image-queue")
        self._lock = threading.Lock()

    def close(self):
        """Forget the queued records (the lab stops: they hold no data)."""
        self._queued.clear()

    def catalog(self):
        """The catalog entry: ``[(type, name, url, description)]``."""
        return [("image", "glance", self.base, "Image: lab.image")]

    def app(self):
        """The aiohttp application."""
        mw = middleware(self.auth, glance_fault, public=[self._public], journal=self.api.journal, service="glance")
        app = web.Application(middlewares=[mw], client_max_size=1 << 20)
        r = app.router
        r.add_get("/", self.versions)
        r.add_get("/versions", self.versions)
        r.add_get("/v2/images", self.list_images)
        r.add_post("/v2/images", self.create_image)
        r.add_get("/v2/images/{id}", self.show_image)
        r.add_patch("/v2/images/{id}", self.update_image)
        r.add_delete("/v2/images/{id}", self.delete_image)
        r.add_put("/v2/images/{id}/file", self.upload)
        r.add_get("/v2/images/{id}/file", self.download)
        r.add_get("/v2/schemas/image", self.schema)
        r.add_get("/v2/schemas/images", self.schema)
        return app

    @staticmethod
    def _public(request):
        return request.method == "GET" and request.path in ("/", "/versions")

    async def versions(self, request):
        """``GET /``: the versions (300 Multiple Choices at the root, as Glance answers)."""
        docs = [{"id": f"v2.{n}", "status": "CURRENT" if n == 17 else "SUPPORTED",
                 "links": [{"rel": "self", "href": f"{self.base}/v2/"}]} for n in (17, 16, 15, 9, 0)]
        return json_response({"versions": docs}, status=300 if request.path == "/" else 200)

    async def schema(self, request):
        """``GET /v2/schemas/image``: a minimal schema (the names of the image's properties)."""
        return json_response({"name": "image", "properties": {k: {"type": "string"} for k in sorted(CORE)},
                              "additionalProperties": {"type": "string"}})

    # -- records

    def _registry_record(self, image):
        props = image.properties
        owner = props.get("owner") or self.api.admin_project_id
        extra = {k: v for k, v in props.items() if k not in KEPT}
        record = {"id": image_id(image), "name": image.name, "status": "active",
                  "visibility": props.get("visibility") or ("public" if not props.get("owner") else "private"),
                  "protected": image.name == DEFAULT_IMAGE or props.get("protected") == "true",
                  "checksum": image.checksum, "os_hash_algo": "sha512", "os_hash_value": sha512_file(image.disk),
                  "owner": owner, "size": image.size, "virtual_size": image.virtual_size,
                  "min_ram": image.min_ram_mib, "min_disk": int(props.get("min_disk") or 0),
                  "disk_format": image.format, "container_format": "bare",
                  "created_at": iso(image.created_at), "updated_at": iso(image.created_at),
                  "tags": [t for t in props.get("tags", "").split(",") if t], "os_hidden": False}
        record.update(extra)
        return record

    def _decorate(self, record):
        out = dict(record)
        out.update({"self": f"/v2/images/{record['id']}", "file": f"/v2/images/{record['id']}/file",
                    "schema": "/v2/schemas/image"})
        return out

    def records(self):
        """Every image as a Glance record (registry images, then queued ones)."""
        out = [self._registry_record(image) for image in self.lab.image.list_images()]
        return out + self._queued.values()

    def find_by_name(self, name):
        """The record of the registry image called ``name``, or None (the compute API shows servers' images)."""
        try:
            return self._registry_record(self.lab.image.get_image(name))
        except NotFound:
            return None

    @staticmethod
    def _may_see(ctx, record):
        return ctx.is_admin or record["owner"] == ctx.project_id or record["visibility"] in ("public", "community")

    def visible_image(self, ctx, ident):
        """The record with id ``ident`` if ``ctx``'s project may see it, else None."""
        for record in self.records():
            if record["id"] == ident and self._may_see(ctx, record):
                return record
        return None

    async def _record(self, request):
        ctx = request[CONTEXT]
        ident = request.match_info["id"]
        record = await blocking(self.visible_image, ctx, ident)
        if record is None:
            raise ApiError(404, f"No image found with ID {ident}")
        return record

    # -- handlers

    async def list_images(self, request):
        """``GET /v2/images``: the images the project may see, newest first, with ``limit`` and ``marker``."""
        ctx = request[CONTEXT]
        q = request.query
        records = [r for r in await blocking(self.records) if self._may_see(ctx, r)]
        for key in ("name", "status", "visibility", "owner", "disk_format", "container_format"):
            if key in q:
                records = [r for r in records if str(r.get(key)) == q[key]]
        records.sort(key=lambda r: (r["created_at"], r["id"]), reverse=True)
        if "marker" in q:
            ids = [r["id"] for r in records]
            if q["marker"] not in ids:
                raise ApiError(400, f"Invalid marker: no image with ID {q['marker']}")
            records = records[ids.index(q["marker"]) + 1:]
        try:
            limit = int(q.get("limit", 25))
        except ValueError:
            raise ApiError(400, f"limit param must be an integer, not {q.get('limit')!r}") from None
        if limit < 0:
            raise ApiError(400, "limit param must be positive")
        page, more = records[:limit], len(records) > limit
        body = {"images": [self._decorate(r) for r in page], "first": "/v2/images", "schema": "/v2/schemas/images"}
        if more and page:
            body["next"] = f"/v2/images?marker={page[-1]['id']}&limit={limit}"
        return json_response(body)

    async def show_image(self, request):
        """``GET /v2/images/{id}``."""
        return json_response(self._decorate(await self._record(request)))

    async def create_image(self, request):
        """``POST /v2/images``: a queued record; its data comes with ``PUT .../file``."""
        ctx = request[CONTEXT]
        if not ctx.can_write:
            raise ApiError(403, "You are not authorized to complete add_image action.")
        body = await json_body(request)
        name = field(body, "name", str, required=True)
        if not NAME_RE.match(name):
            raise ApiError(400, f"Invalid input for field/attribute name. Value: {name!r}. The lab's image names are "
                                "1-40 lower-case letters, digits, '.', '_' or '-'")
        disk_format = field(body, "disk_format", str, default="qcow2")
        if disk_format not in DISK_FORMATS:
            raise ApiError(400, f"Invalid value '{disk_format}' for disk_format: the lab boots "
                                f"{' or '.join(DISK_FORMATS)} disks")
        container_format = field(body, "container_format", str, default="bare")
        if container_format != "bare":
            raise ApiError(400, f"Invalid value '{container_format}' for container_format: the lab takes bare")
        visibility = field(body, "visibility", str, default="private")
        if visibility not in ("private", "public", "shared", "community"):
            raise ApiError(400, f"Invalid value '{visibility}' for visibility")
        if visibility == "public" and not ctx.is_admin:
            raise ApiError(403, "You are not authorized to complete publicize_image action.")
        ident = field(body, "id", str) or str(uuid.uuid4())
        try:
            uuid.UUID(ident)
        except ValueError:
            raise ApiError(400, f"Invalid input for field/attribute id. Value: {ident!r}. It must be a UUID") from None
        existing = await blocking(self.records)
        if any(r["name"] == name for r in existing):
            raise ApiError(409, f"an image named {name!r} exists; the lab's image names are unique")
        if any(r["id"] == ident for r in existing):
            raise ApiError(409, f"Image with identifier {ident} already exists!")
        extra = {}
        for key, value in body.items():
            if key in CORE or key in ("id",):
                continue
            if not isinstance(value, str):
                raise ApiError(400, f"Invalid input for field/attribute {key}: extra properties are strings")
            extra[key] = value
        now = time.time()
        record = {"id": ident, "name": name, "status": "queued", "visibility": visibility,
                  "protected": bool(body.get("protected", False)), "checksum": None, "os_hash_algo": None,
                  "os_hash_value": None, "owner": ctx.project_id, "size": None, "virtual_size": None,
                  "min_ram": field(body, "min_ram", int, default=0), "min_disk": field(body, "min_disk", int, default=0),
                  "disk_format": disk_format, "container_format": container_format, "created_at": iso(now),
                  "updated_at": iso(now), "tags": field(body, "tags", list, default=[]), "os_hidden": False}
        record.update(extra)
        self._queued.put(record)
        return json_response(self._decorate(record), status=201, headers={"Location": f"{self.base}/v2/images/{ident}"})

    async def update_image(self, request):
        """``PATCH /v2/images/{id}``: JSON-patch of a queued record's properties."""
        record = await self._record(request)
        ctx = request[CONTEXT]
        if record["owner"] != ctx.project_id and not ctx.is_admin:
            raise ApiError(403, "You are not permitted to modify this image.")
        if record["status"] != "queued":
            raise ApiError(409, "the lab's active images cannot be changed; create a new one")
        try:
            ops = json.loads(await request.read() or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"Malformed request body: the body is not valid JSON ({exc})") from None
        if not isinstance(ops, list):
            raise ApiError(400, "the body must be a JSON-patch list of {op, path, value}")
        with self._lock:
            for op in ops:
                if not isinstance(op, dict) or op.get("op") not in ("add", "replace", "remove") or \
                        not str(op.get("path", "")).startswith("/"):
                    raise ApiError(400, f"Invalid JSON-patch operation: {op!r}")
                key = op["path"][1:]
                if key in ("id", "status", "owner", "checksum", "size", "self", "file", "schema"):
                    raise ApiError(403, f"Attribute '{key}' is read-only.")
                if op["op"] == "remove":
                    record.pop(key, None)
                else:
                    record[key] = op.get("value")
            self._queued.put(record)
        return json_response(self._decorate(record))

    async def upload(self, request):
        """``PUT /v2/images/{id}/file``: the image's data; the image becomes active."""
        record = await self._record(request)
        ctx = request[CONTEXT]
        if record["owner"] != ctx.project_id and not ctx.is_admin:
            raise ApiError(403, "You are not permitted to upload data to this image.")
        if record["status"] != "queued":
            raise ApiError(409, f"Image status transition from {record['status']} to saving is not allowed")
        with self._lock:
            record["status"] = "saving"
            self._queued.put(record)
        scratch = self.lab.home / "api-uploads"
        scratch.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=".upload-", dir=scratch)
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in request.content.iter_chunked(1 << 20):
                    out.write(chunk)
            props = {k: str(v) for k, v in record.items() if k not in CORE and isinstance(v, (str, int, float))}
            props.update(id=record["id"], owner=record["owner"], visibility=record["visibility"],
                         min_disk=str(record.get("min_disk") or 0), tags=",".join(record.get("tags") or []))
            image = await blocking(self.lab.image.import_image, record["name"], path, properties=props)
            if image.format != record["disk_format"]:
                await blocking(self.lab.image.delete_image, record["name"])
                raise ApiError(400, f"the data is a {image.format} disk, not {record['disk_format']}: create the "
                                    f"image with --disk-format {image.format}")
        except BaseException:
            with self._lock:
                record["status"] = "queued"
                self._queued.put(record)
            raise
        finally:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self._queued.pop(record["id"])
        return web.Response(status=204)

    async def download(self, request):
        """``GET /v2/images/{id}/file``: the image's data (``openstack image save``)."""
        record = await self._record(request)
        if record["status"] != "active":
            return web.Response(status=204)
        image = await blocking(self.lab.image.get_image, record["name"])
        return web.FileResponse(image.disk, headers={"Content-Type": "application/octet-stream",
                                                     "Content-MD5": image.checksum})

    async def delete_image(self, request):
        """``DELETE /v2/images/{id}``."""
        record = await self._record(request)
        ctx = request[CONTEXT]
        if record["protected"]:
            raise ApiError(403, f"Image {record['id']} is protected and cannot be deleted.")
        if record["owner"] != ctx.project_id and not ctx.is_admin:
            raise ApiError(403, f"You are not permitted to delete image {record['id']}.")
        queued = self._queued.pop(record["id"]) if record["status"] != "active" else None
        if queued is None:
            await blocking(self.lab.image.delete_image, record["name"])
        return web.Response(status=204)
