"""Block storage API (Cinder v3) over the lab's block storage service, with microversions.

``openstack volume create --size 1 data`` becomes ``POST /v3/{project_id}/volumes``; this
module checks the token's project and calls ``lab.block_storage.create_volume``, which
makes the volume's file on the backend of its *volume type* (``file`` or ``nbd``, the
lab's two backends, as a Cinder deployment offers one type per backend).  The lab makes
the volume before it answers, so the 202's volume is already ``available`` (Cinder
answers ``creating`` and finishes in the background; clients poll either way).

**Attachments go through Nova**, as in OpenStack: ``openstack server add volume web1
data`` is ``POST /v2.1/servers/{id}/os-volume_attachments`` to the compute API, which
calls :meth:`BlockStorageAPI.attach` here, which calls ``lab.block_storage.attach_volume``:
the backend's connection info, then libvirt hot-plugs the disk into the running guest.
The volume is ``in-use`` and its ``attachments`` name the server and the device Nova
asked for (``/dev/vdb``; the guest may name it otherwise, see lab 07).

**Microversions**: ``OpenStack-API-Version: volume 3.N``, 3.0 ... 3.71 (Cinder's range
since 2023.1); the answer names the version it has.  **Projects**: a volume belongs to
the project whose token created it (kept in ``volume.properties``); one made without the
API belongs to the lab's default project (``demo``); another project's volume is 404.
The lab's quotas (volumes, snapshots, gigabytes) are one set for the whole lab, shown to
every project; passing one is 413 ``overLimit``, as Cinder answers.

What the lab has not: backups, groups, transfers, QoS, the attachments API (3.27: Nova
here calls the lab's service directly), retype, migration, renaming; their paths are 404.
"""

import json
import uuid

from aiohttp import web

from ..errors import Conflict, InvalidInput, NotFound, QuotaExceeded
from .http import CONTEXT, ApiError, blocking, field, json_body, json_response, middleware, nova_fault, require_writer
from .microversion import VERSION, Microversions, ProjectScopedAPI, vstr

MICROVERSIONS = Microversions(("volume", "block-storage"), (3, 0), (3, 71))
NAMESPACE = uuid.UUID("0b6f2a52-6c1e-4f7e-9d0c-6a1b8a1c3e11")
UPDATED = "2023-02-20T00:00:00Z"
PROJECT = "{project_id:[0-9a-f]{32}}"


def cinder_fault(status, message, fault=None):
    """A fault as Cinder writes it (Nova's shape; ``overLimit`` carries ``retryAfter``)."""
    body = nova_fault(status, message, fault)
    if status == 413:
        next(iter(body.values()))["retryAfter"] = "0"
    return body


def type_id(name):
    """The stable id of a volume type (Cinder's are UUIDs)."""
    return str(uuid.uuid5(NAMESPACE, name))


def version_doc(base):
    """Cinder's v3 version document."""
    return {"id": "v3.0", "status": "CURRENT", "version": vstr(MICROVERSIONS.maximum),
            "min_version": vstr(MICROVERSIONS.minimum), "updated": UPDATED,
            "links": [{"rel": "self", "href": f"{base}/v3/"},
                      {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.volume+json;version=3"}]}


class BlockStorageAPI(ProjectScopedAPI):
    """Cinder's v3 REST API over ``lab.block_storage``; the compute API attaches through it.

    Args:
        api: the :class:`~cloudlab.api.OpenStackAPI`.
        auth: the :class:`~cloudlab.api.auth.TokenCheck` for the ``cinder`` service user.
    """

    service_user = "cinder"
    catalog_name = "block-storage"

    microversions = MICROVERSIONS
    version_path = "/v3"

    def catalog(self):
        """The catalog entries: ``block-storage`` (the official type) and ``volumev3`` (what clients also look for)."""
        url = f"{self.base}/v3/$(project_id)s"
        return [("block-storage", "cinder", url, "Block storage: lab.block_storage"),
                ("volumev3", "cinderv3", url, "Block storage v3 (the same service, under its older type)")]

    # -- the application

    def app(self):
        """The aiohttp application."""
        mw = middleware(self.auth, cinder_fault, public=[self._public], checks=[self._negotiate,
                                                                                self._project_in_url],
                        journal=self.api.journal, service="cinder")
        app = web.Application(middlewares=[mw], client_max_size=1 << 20)
        r = app.router
        r.add_get("/", self.versions)
        r.add_get("/v3", self.version)
        r.add_get("/v3/", self.version)
        p = f"/v3/{PROJECT}"
        r.add_get(p, self.version)
        r.add_get(p + "/", self.version)
        r.add_get(p + "/volumes", self.list_volumes)
        r.add_get(p + "/volumes/detail", self.list_volumes_detail)
        r.add_post(p + "/volumes", self.create_volume)
        r.add_get(p + "/volumes/{id}", self.show_volume)
        r.add_delete(p + "/volumes/{id}", self.delete_volume)
        r.add_post(p + "/volumes/{id}/action", self.volume_action)
        r.add_get(p + "/snapshots", self.list_snapshots)
        r.add_get(p + "/snapshots/detail", self.list_snapshots_detail)
        r.add_post(p + "/snapshots", self.create_snapshot)
        r.add_get(p + "/snapshots/{id}", self.show_snapshot)
        r.add_delete(p + "/snapshots/{id}", self.delete_snapshot)
        r.add_get(p + "/types", self.list_types)
        r.add_get(p + "/types/default", self.default_type)
        r.add_get(p + "/types/{id}", self.show_type)
        r.add_get(p + "/limits", self.limits)
        r.add_get(p + "/os-quota-sets/{target}", self.show_quotas)
        r.add_get(p + "/os-quota-sets/{target}/defaults", self.default_quotas)
        r.add_put(p + "/os-quota-sets/{target}", self.update_quotas)
        r.add_get(p + "/os-availability-zone", self.availability_zones)
        r.add_get(p + "/extensions", self.extensions)
        app.on_response_prepare.append(MICROVERSIONS.headers)
        return app

    async def versions(self, request):
        """``GET /``: the versions (300 Multiple Choices, as Cinder answers at its root)."""
        return json_response({"versions": [version_doc(self.base)]}, status=300)

    async def version(self, request):
        """``GET /v3``: the version document (min and max microversion)."""
        return json_response({"versions": [version_doc(self.base)]})

    # -- helpers

    def link(self, kind, project, ident):
        """Cinder's ``links`` of a resource."""
        return [{"rel": "self", "href": f"{self.base}/v3/{project}/{kind}/{ident}"},
                {"rel": "bookmark", "href": f"{self.base}/{project}/{kind}/{ident}"}]

    def owner(self, item):
        """``(project id, user id)`` that own a volume or snapshot."""
        props = item.properties
        return props.get("project_id") or self.api.default_project_id, props.get("user_id") or ""

    def _visible(self, ctx, item):
        return ctx.is_admin or self.owner(item)[0] == ctx.project_id

    _writer = staticmethod(require_writer)

    def visible_volume(self, ctx, ident):
        """The volume with id ``ident`` if the caller's project may see it.

        Raises:
            ApiError: 404 itemNotFound (also for another project's volume).
        """
        try:
            volume = self.lab.block_storage.get_volume(ident)
        except NotFound:
            volume = None
        if volume is None or volume.id != ident or not self._visible(ctx, volume):
            raise ApiError(404, f"Volume {ident} could not be found.")
        return volume

    def _visible_snapshot(self, ctx, ident):
        try:
            snapshot = self.lab.block_storage.get_snapshot(ident)
        except NotFound:
            snapshot = None
        if snapshot is None or snapshot.id != ident or not self._visible(ctx, snapshot):
            raise ApiError(404, f"Snapshot {ident} could not be found.")
        return snapshot

    @staticmethod
    def _metadata(body, where):
        metadata = field(body, "metadata", dict, default={}, path=f"{where}/metadata")
        if any(not isinstance(k, str) or not isinstance(v, str) for k, v in metadata.items()):
            raise ApiError(400, f"Invalid input for field/attribute {where}/metadata: keys and values are strings")
        return metadata

    def _filtered(self, request, items, statuses=True):
        """The items the caller's project may list, with Cinder's filters (name, status, all_tenants)."""
        ctx = request[CONTEXT]
        query = request.query
        all_projects = ctx.is_admin and query.get("all_tenants", "0").lower() not in ("0", "false", "no", "off")
        wanted = query.get("project_id") if ctx.is_admin else None
        out = []
        for item in items:
            project = self.owner(item)[0]
            if not all_projects and project != (wanted or ctx.project_id):
                continue
            if "name" in query and item.name != query["name"]:
                continue
            if statuses and "status" in query and item.status != query["status"].lower():
                continue
            out.append(item)
        return out

    # -- volumes

    def volume_view(self, volume, ctx, version, detail=True):
        """A volume as Cinder shows it at microversion ``version``."""
        project, user = self.owner(volume)
        out = {"id": volume.id, "name": volume.name, "links": self.link("volumes", project, volume.id)}
        if not detail:
            return out
        body = volume.to_cinder()
        if not body.get("volume_image_metadata"):
            body.pop("volume_image_metadata", None)
        out.update(body)
        out.update({"user_id": user, "os-vol-tenant-attr:tenant_id": project, "source_volid": None,
                    "replication_status": "disabled", "consistencygroup_id": None,
                    "os-vol-mig-status-attr:migstat": None, "os-vol-mig-status-attr:name_id": None,
                    "metadata": json.loads(volume.properties.get("metadata") or "{}")})
        if ctx.is_admin:
            out["os-vol-host-attr:host"] = f"cloudlab@{volume.volume_type}#{volume.volume_type}"
        if version >= (3, 13):
            out["group_id"] = None
        if version >= (3, 21):
            out["provider_id"] = None
        if version >= (3, 48):
            out.update({"shared_targets": False, "service_uuid": type_id(f"service:{volume.volume_type}")})
        if version >= (3, 61):
            out["cluster_name"] = None
        if version >= (3, 63):
            out["volume_type_id"] = type_id(volume.volume_type)
        if version >= (3, 65):
            out["consumes_quota"] = True
        return out

    async def _volumes(self, request, detail):
        volumes = self._filtered(request, await blocking(self.lab.block_storage.list_volumes))
        ctx, version = request[CONTEXT], request[VERSION]
        return json_response({"volumes": [self.volume_view(v, ctx, version, detail) for v in volumes]})

    async def list_volumes(self, request):
        """``GET /volumes``: ids and names."""
        return await self._volumes(request, detail=False)

    async def list_volumes_detail(self, request):
        """``GET /volumes/detail``."""
        return await self._volumes(request, detail=True)

    async def show_volume(self, request):
        """``GET /volumes/{id}``."""
        ctx = request[CONTEXT]
        volume = await blocking(self.visible_volume, ctx, request.match_info["id"])
        return json_response({"volume": self.volume_view(volume, ctx, request[VERSION])})

    def _volume_type(self, ref):
        """The lab's volume type named, or with the id of, ``ref``."""
        for name in self.lab.block_storage.list_volume_types():
            if ref in (name, type_id(name)):
                return name
        raise ApiError(404, f"Volume type {ref} could not be found.")

    async def create_volume(self, request):
        """``POST /volumes``: an empty volume, or one from an image (``imageRef``) or a snapshot."""
        ctx = request[CONTEXT]
        self._writer(ctx)
        body = await json_body(request, "volume")
        size = field(body, "size", (int, str), path="volume/size")
        if isinstance(size, str):
            if not size.strip().isdigit():
                raise ApiError(400, f"Invalid input for field/attribute volume/size. Value: {size!r}. "
                                    "It must be a whole number of GiB")
            size = int(size)
        name = field(body, "name", str, path="volume/name")
        description = field(body, "description", str, default="", path="volume/description")
        type_ref = field(body, "volume_type", str, path="volume/volume_type")
        snapshot_id = field(body, "snapshot_id", str, path="volume/snapshot_id")
        image_ref = field(body, "imageRef", str, path="volume/imageRef")
        multiattach = field(body, "multiattach", bool, default=False, path="volume/multiattach")
        zone = field(body, "availability_zone", str, path="volume/availability_zone")
        metadata = self._metadata(body, "volume")
        if body.get("source_volid") or body.get("backup_id"):
            raise ApiError(400, "Invalid input for field/attribute volume: the lab makes volumes empty, from an "
                                "image or from a snapshot; snapshot the source volume first, then use snapshot_id")
        if zone not in (None, "nova"):
            raise ApiError(400, f"Invalid input for field/attribute volume/availability_zone. Value: {zone!r}. "
                                "The lab has one availability zone: nova")
        if size is None and not (snapshot_id or image_ref):
            raise ApiError(400, "Invalid input for field/attribute volume/size. 'size' is a required property "
                                "(GiB) for an empty volume")
        volume_type = self._volume_type(type_ref) if type_ref else None
        image = None
        if image_ref:
            record = await blocking(self.api.images.visible_image, ctx, image_ref)
            if record is None:
                raise ApiError(400, f"Invalid image identifier or unable to access requested image {image_ref}.")
            image = record["name"]
        snapshot = None
        if snapshot_id:
            snapshot = (await blocking(self._visible_snapshot, ctx, snapshot_id)).id
        if not name:
            name = f"volume-{uuid.uuid4().hex[:8]}"     # Cinder allows no name; the lab's volumes have one
        properties = {"project_id": ctx.project_id, "user_id": ctx.user_id}
        if metadata:
            properties["metadata"] = json.dumps(metadata)
        try:
            volume = await blocking(self.lab.block_storage.create_volume, name, size=size, image=image,
                                    snapshot=snapshot, multiattach=multiattach, description=description,
                                    volume_type=volume_type, properties=properties)
        except QuotaExceeded as exc:
            raise ApiError(413, f"VolumeLimitExceeded: {exc.message}", fault="overLimit") from None
        except Conflict as exc:
            raise ApiError(409, f"{exc.message}: the lab's volume names are unique across projects; "
                                "choose another name") from None
        return json_response({"volume": self.volume_view(volume, ctx, request[VERSION])}, status=202)

    async def delete_volume(self, request):
        """``DELETE /volumes/{id}`` (``?cascade=true`` also deletes its snapshots)."""
        ctx = request[CONTEXT]
        self._writer(ctx)
        volume = await blocking(self.visible_volume, ctx, request.match_info["id"])
        cascade = request.query.get("cascade", "false").lower() in ("1", "true", "yes", "on")
        try:
            await blocking(self.lab.block_storage.delete_volume, volume, cascade=cascade)
        except Conflict as exc:
            # Cinder's InvalidVolume is a 400
            hint = "delete its snapshots first, or all at once: openstack volume delete --purge" \
                if "snapshot" in exc.message else "detach it first: openstack server remove volume SERVER VOLUME" \
                if "in-use" in exc.message else "wait until it is available"
            raise ApiError(400, f"Invalid volume: {exc.message} ({hint})") from None
        return web.Response(status=202)

    async def volume_action(self, request):
        """``POST /volumes/{id}/action``: ``os-extend`` (``openstack volume set --size``)."""
        ctx = request[CONTEXT]
        self._writer(ctx)
        volume = await blocking(self.visible_volume, ctx, request.match_info["id"])
        body = await json_body(request)
        if len(body) != 1:
            raise ApiError(400, "Malformed request body: give exactly one action, e.g. {\"os-extend\": "
                                "{\"new_size\": 2}}")
        (name, arg), = body.items()
        if name == "os-extend":
            if not isinstance(arg, dict):
                raise ApiError(400, "Invalid input for field/attribute os-extend: it must be an object")
            new_size = field(arg, "new_size", (int, str), required=True, path="os-extend/new_size")
            if isinstance(new_size, str) and not new_size.isdigit():
                raise ApiError(400, f"Invalid input for field/attribute os-extend/new_size. Value: {new_size!r}. "
                                    "It must be a whole number of GiB")
            try:
                await blocking(self.lab.block_storage.extend_volume, volume, int(new_size))
            except QuotaExceeded as exc:
                raise ApiError(413, f"VolumeSizeExceedsAvailableQuota: {exc.message}", fault="overLimit") from None
            except (Conflict, InvalidInput) as exc:
                raise ApiError(400, f"Invalid volume: {exc.message}") from None
            return web.Response(status=202)
        raise ApiError(400, f"There is no such action: {name}" +
                       (" in the lab (its volumes grow with os-extend; attach them through Nova: "
                        "openstack server add volume)" if name.startswith("os-") else ""))

    # -- snapshots

    def snapshot_view(self, snapshot, version, detail=True):
        """A snapshot as Cinder shows it."""
        project, user = self.owner(snapshot)
        out = {"id": snapshot.id, "name": snapshot.name, "links": self.link("snapshots", project, snapshot.id)}
        if not detail:
            return out
        out.update(snapshot.to_cinder())
        out.update({"description": snapshot.description or None, "updated_at": None,
                    "metadata": json.loads(snapshot.properties.get("metadata") or "{}"),
                    "os-extended-snapshot-attributes:project_id": project,
                    "os-extended-snapshot-attributes:progress": "100%" if snapshot.status == "available" else "0%"})
        if version >= (3, 14):
            out["group_snapshot_id"] = None
        if version >= (3, 41):
            out["user_id"] = user
        if version >= (3, 65):
            out["consumes_quota"] = True
        return out

    async def _snapshots(self, request, detail):
        snapshots = self._filtered(request, await blocking(self.lab.block_storage.list_snapshots))
        if "volume_id" in request.query:
            snapshots = [s for s in snapshots if s.volume_id == request.query["volume_id"]]
        return json_response({"snapshots": [self.snapshot_view(s, request[VERSION], detail) for s in snapshots]})

    async def list_snapshots(self, request):
        """``GET /snapshots``."""
        return await self._snapshots(request, detail=False)

    async def list_snapshots_detail(self, request):
        """``GET /snapshots/detail``."""
        return await self._snapshots(request, detail=True)

    async def show_snapshot(self, request):
        """``GET /snapshots/{id}``."""
        snapshot = await blocking(self._visible_snapshot, request[CONTEXT], request.match_info["id"])
        return json_response({"snapshot": self.snapshot_view(snapshot, request[VERSION])})

    async def create_snapshot(self, request):
        """``POST /snapshots``: a copy of a detached volume (``openstack volume snapshot create``)."""
        ctx = request[CONTEXT]
        self._writer(ctx)
        body = await json_body(request, "snapshot")
        volume_id = field(body, "volume_id", str, required=True, path="snapshot/volume_id")
        name = field(body, "name", str, path="snapshot/name") or f"snapshot-{uuid.uuid4().hex[:8]}"
        description = field(body, "description", str, default="", path="snapshot/description")
        force = body.get("force", False)
        metadata = self._metadata(body, "snapshot")
        volume = await blocking(self.visible_volume, ctx, volume_id)
        properties = {"project_id": ctx.project_id, "user_id": ctx.user_id}
        if metadata:
            properties["metadata"] = json.dumps(metadata)
        try:
            snapshot = await blocking(self.lab.block_storage.create_snapshot, volume, name,
                                      description=description, properties=properties)
        except QuotaExceeded as exc:
            raise ApiError(413, f"SnapshotLimitExceeded: {exc.message}", fault="overLimit") from None
        except Conflict as exc:
            hint = " (force does not help: the lab snapshots only detached volumes)" if force else ""
            raise ApiError(400, f"Invalid volume: {exc.message}{hint}") from None
        return json_response({"snapshot": self.snapshot_view(snapshot, request[VERSION])}, status=202)

    async def delete_snapshot(self, request):
        """``DELETE /snapshots/{id}``."""
        ctx = request[CONTEXT]
        self._writer(ctx)
        snapshot = await blocking(self._visible_snapshot, ctx, request.match_info["id"])
        await blocking(self.lab.block_storage.delete_snapshot, snapshot)
        return web.Response(status=202)

    # -- volume types: one per backend

    def type_view(self, name):
        """A volume type as Cinder shows it; ``volume_backend_name`` says which backend holds its volumes."""
        default = self.lab.block_storage.default_type
        description = {"file": "qcow2 files on the lab host, opened by QEMU directly",
                       "nbd": "the same files served over the lab network by qemu-storage-daemon (NBD)"}
        return {"id": type_id(name), "name": name, "description": description.get(name, ""),
                "is_public": True, "os-volume-type-access:is_public": True, "qos_specs_id": None,
                "extra_specs": {"volume_backend_name": name, **({"default": "true"} if name == default else {})}}

    async def list_types(self, request):
        """``GET /types``."""
        return json_response({"volume_types": [self.type_view(n) for n in
                                               self.lab.block_storage.list_volume_types()]})

    async def show_type(self, request):
        """``GET /types/{id}`` (an id or, as the lab allows, a name)."""
        return json_response({"volume_type": self.type_view(self._volume_type(request.match_info["id"]))})

    async def default_type(self, request):
        """``GET /types/default``: the type of volumes created without one."""
        return json_response({"volume_type": self.type_view(self.lab.block_storage.default_type)})

    # -- quotas and limits: the lab's one set

    def _quota_set(self, project, usage=False):
        service = self.lab.block_storage
        quotas, used = service.quotas.to_record(), service.usage()
        out = {"id": project}
        for key in ("volumes", "snapshots", "gigabytes"):
            out[key] = {"limit": quotas[key], "in_use": used[key], "reserved": 0, "allocated": 0} if usage \
                else quotas[key]
        for key in ("backups", "backup_gigabytes", "groups"):
            out[key] = {"limit": 0, "in_use": 0, "reserved": 0, "allocated": 0} if usage else 0
        out["per_volume_gigabytes"] = {"limit": -1, "in_use": 0, "reserved": 0} if usage else -1
        return out

    async def show_quotas(self, request):
        """``GET /os-quota-sets/{project}`` (``?usage=true`` adds what is in use)."""
        usage = request.query.get("usage", "false").lower() in ("1", "true", "yes")
        return json_response({"quota_set": self._quota_set(request.match_info["target"], usage)})

    async def default_quotas(self, request):
        """``GET /os-quota-sets/{project}/defaults``: Cinder's defaults with the lab's gigabytes."""
        from ..block_storage import Quotas
        return json_response({"quota_set": dict(Quotas().to_record(), id=request.match_info["target"],
                                                backups=0, backup_gigabytes=0, groups=0, per_volume_gigabytes=-1)})

    async def update_quotas(self, request):
        """``PUT /os-quota-sets/{project}`` (admin): change the lab's limits (``openstack quota set``)."""
        ctx = request[CONTEXT]
        if not ctx.is_admin:
            raise ApiError(403, "Policy doesn't allow volume_extension:quotas:update to be performed.",
                           fault="forbidden")
        body = await json_body(request, "quota_set")
        changes = {key: field(body, key, int, path=f"quota_set/{key}") for key in ("volumes", "snapshots",
                                                                                   "gigabytes")}
        await blocking(self.lab.block_storage.set_quotas, **changes)
        return json_response({"quota_set": self._quota_set(request.match_info["target"])})

    async def limits(self, request):
        """``GET /limits``: the lab's quotas and what is in use."""
        service = self.lab.block_storage
        quotas, used = service.quotas, service.usage()
        return json_response({"limits": {"rate": [], "absolute": {
            "maxTotalVolumes": quotas.volumes, "maxTotalSnapshots": quotas.snapshots,
            "maxTotalVolumeGigabytes": quotas.gigabytes, "maxTotalBackups": 0, "maxTotalBackupGigabytes": 0,
            "totalVolumesUsed": used["volumes"], "totalSnapshotsUsed": used["snapshots"],
            "totalGigabytesUsed": used["gigabytes"], "totalBackupsUsed": 0, "totalBackupGigabytesUsed": 0}}})

    async def availability_zones(self, request):
        """``GET /os-availability-zone``: one zone, ``nova``."""
        return json_response({"availabilityZoneInfo": [{"zoneName": "nova", "zoneState": {"available": True}}]})

    async def extensions(self, request):
        """``GET /extensions``: none."""
        return json_response({"extensions": []})

    # -- attachments, for the compute API (Nova's os-volume_attachments)

    def attachments_of(self, server):
        """The volumes attached to ``server``: ``[{"volumeId", "device", "attachment_id"}]``."""
        service = self.lab.started_service("block_storage")
        if service is None:
            return []
        out = []
        for volume in service.list_volumes():
            for attachment in volume.attachments:
                if attachment.server_id == server.id:
                    out.append({"volumeId": volume.id, "device": attachment.requested_device,
                                "attachment_id": attachment.id})
        return out

    def attach(self, ctx, server, volume_id):
        """Attach the caller's volume ``volume_id`` to ``server``; returns the attachment as :meth:`attachments_of`.

        Raises:
            ApiError: 404 for a volume the caller's project cannot see; 409 for one in use.
        """
        volume = self.visible_volume(ctx, volume_id)
        attachment = self.lab.block_storage.attach_volume(volume, server)
        return {"volumeId": volume.id, "device": attachment.requested_device, "attachment_id": attachment.id}

    def detach(self, server, volume_id):
        """Detach volume ``volume_id`` from ``server``."""
        service = self.lab.block_storage
        service.detach_volume(service.get_volume(volume_id), server)
