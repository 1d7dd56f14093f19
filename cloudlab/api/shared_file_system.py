"""Shared file systems API (Manila v2) over the lab's shared file system service.

``openstack share create NFS 1 --name docs`` (python-manilaclient's plugin of the
``openstack`` CLI) becomes ``POST /v2/{project_id}/shares``; this module checks the
token's project and calls ``lab.shared_file_system.create_share``, which makes an XFS
filesystem of that size on the lab's share server (NFS-Ganesha) and exports it.  Then,
as in any Manila cloud:

* ``openstack share access create docs ip 10.213.0.0/24`` adds an **access rule**
  (``POST /shares/{id}/action {"allow_access": ...}``): only the addresses a rule names
  may mount the share;
* ``openstack share export location list docs`` gives the **export location**
  (``ADDRESS:/share-ID``) that a guest mounts: ``mount -t nfs4 ADDRESS:/share-ID /mnt``.

**Microversions**: Manila's own header, ``X-OpenStack-Manila-API-Version: 2.N``, which
python-manilaclient sends and which the answer repeats; 2.0 ... 2.81.  The lab answers in
the shapes of those steps (export locations under their own path from 2.9, access rules
listed by ``/share-access-rules`` from 2.45); the later steps add access-rule locks (2.82),
mount point names and encryption, which the lab has not, so clients settle on 2.81.
**Projects**: a share belongs to the project whose token made it (``share.properties``);
another project's share is 404.  The share server starts with the first share (it is a
node of its own on the lab network), so listing before that answers an empty list.

One share type, ``default`` (``driver_handles_share_servers=False``: the lab runs one
share server for every share).  What the lab has not: snapshots of shares, replicas, share
networks and servers, groups, backups, migration, quotas; their paths are 404.
"""

import json
import uuid

from aiohttp import web

from ..errors import Conflict, InvalidInput
from .http import CONTEXT, ApiError, blocking, field, json_body, json_response, middleware, nova_fault, require_writer
from .microversion import VERSION, Microversions, ProjectScopedAPI, vstr

MICROVERSIONS = Microversions(("shared-file-system", "sharev2", "share"), (2, 0), (2, 81),
                              legacy="X-OpenStack-Manila-API-Version", answer_standard=False)
NAMESPACE = uuid.UUID("5d7c1f0e-2b8a-4c61-9a3e-7f4d0b2c6a22")
UPDATED = "2015-08-27T11:33:21Z"
PROJECT = "{project_id:[0-9a-f]{32}}"
SHARE_TYPE = "default"


def manila_fault(status, message, fault=None):
    """A fault as Manila writes it (Nova's shape: ``{"itemNotFound": {"code": 404, "message": ...}}``)."""
    return nova_fault(status, message, fault)


def stable_id(*parts):
    """A UUID derived from ``parts`` (export locations and the share type have stable ids)."""
    return str(uuid.uuid5(NAMESPACE, "/".join(parts)))


def version_docs(base):
    """Manila's versions: v1.0 (deprecated) and v2.0 with its microversion range."""
    links = [{"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"}]
    media = [{"base": "application/json", "type": "application/vnd.openstack.share+json;version=1"}]
    return [{"id": "v1.0", "status": "DEPRECATED", "version": "", "min_version": "", "updated": UPDATED,
             "links": links + [{"rel": "self", "href": f"{base}/v1/"}], "media-types": media},
            {"id": "v2.0", "status": "CURRENT", "version": vstr(MICROVERSIONS.maximum),
             "min_version": vstr(MICROVERSIONS.minimum), "updated": UPDATED,
             "links": links + [{"rel": "self", "href": f"{base}/v2/"}], "media-types": media}]


class SharedFileSystemAPI(ProjectScopedAPI):
    """Manila's v2 REST API over ``lab.shared_file_system``.

    Args:
        api: the :class:`~cloudlab.api.OpenStackAPI`.
        auth: the :class:`~cloudlab.api.auth.TokenCheck` for the ``manila`` service user.
    """

    service_user = "manila"
    catalog_name = "shared-file-system"

    microversions = MICROVERSIONS
    version_path = "/v2"

    def catalog(self):
        """The catalog entries: ``sharev2`` (the type python-manilaclient and devstack use) and the official one."""
        url = f"{self.base}/v2/$(project_id)s"
        return [("sharev2", "manilav2", url, "Shared file systems: lab.shared_file_system (NFS-Ganesha)"),
                ("shared-file-system", "manila", url, "Shared file systems (the same service, official type)")]

    # -- the application

    def app(self):
        """The aiohttp application."""
        mw = middleware(self.auth, manila_fault, public=[self._public],
                        checks=[self._negotiate, self._project_in_url],
                        journal=self.api.journal, service="manila")
        app = web.Application(middlewares=[mw], client_max_size=1 << 20)
        r = app.router
        r.add_get("/", self.versions)
        r.add_get("/v2", self.version)
        r.add_get("/v2/", self.version)
        p = f"/v2/{PROJECT}"
        r.add_get(p, self.version)
        r.add_get(p + "/shares", self.list_shares)
        r.add_get(p + "/shares/detail", self.list_shares_detail)
        r.add_post(p + "/shares", self.create_share)
        r.add_get(p + "/shares/{id}", self.show_share)
        r.add_delete(p + "/shares/{id}", self.delete_share)
        r.add_post(p + "/shares/{id}/action", self.share_action)
        r.add_get(p + "/shares/{id}/export_locations", self.list_export_locations)
        r.add_get(p + "/shares/{id}/export_locations/{location}", self.show_export_location)
        r.add_get(p + "/share-access-rules", self.list_access_rules)
        r.add_get(p + "/share-access-rules/{id}", self.show_access_rule)
        r.add_get(p + "/types", self.list_types)
        r.add_get(p + "/types/{id}", self.show_type)
        r.add_get(p + "/availability-zones", self.availability_zones)
        r.add_get(p + "/limits", self.limits)
        app.on_response_prepare.append(MICROVERSIONS.headers)
        return app

    async def versions(self, request):
        """``GET /``: the versions (300 Multiple Choices, as Manila answers at its root)."""
        return json_response({"versions": version_docs(self.base)}, status=300)

    async def version(self, request):
        """``GET /v2``: the v2 version document."""
        return json_response({"versions": [version_docs(self.base)[1]]})

    # -- helpers

    def _service(self, start=False):
        """The lab's shared file system service; None when it has not started and ``start`` is False."""
        if start:
            return self.lab.shared_file_system
        return self.lab.started_service("shared_file_system")

    def owner(self, share):
        """``(project id, user id)`` that own a share."""
        props = share.properties
        return props.get("project_id") or self.api.default_project_id, props.get("user_id") or ""

    def _visible(self, ctx, share):
        return ctx.is_admin or self.owner(share)[0] == ctx.project_id

    _writer = staticmethod(require_writer)

    def visible_share(self, ctx, ident):
        """The share with id ``ident`` if the caller's project may see it.

        Raises:
            ApiError: 404 itemNotFound (also for another project's share).
        """
        service = self._service()
        share = None
        if service is not None:
            share = next((s for s in service.list_shares() if s.id == ident), None)
        if share is None or not self._visible(ctx, share):
            raise ApiError(404, f"Share {ident} could not be found.")
        return share

    def link(self, project, ident):
        """Manila's ``links`` of a share."""
        return [{"rel": "self", "href": f"{self.base}/v2/{project}/shares/{ident}"},
                {"rel": "bookmark", "href": f"{self.base}/{project}/shares/{ident}"}]

    # -- shares

    def share_view(self, share, ctx, version, detail=True):
        """A share as Manila shows it at microversion ``version``."""
        project, user = self.owner(share)
        out = {"id": share.id, "name": share.name, "links": self.link(project, share.id)}
        if not detail:
            return out
        body = share.to_manila()
        locations = body.pop("export_locations")
        out.update({
            "size": share.size, "status": share.status, "share_proto": share.share_proto,
            "description": body["description"], "created_at": share.created_at, "updated_at": share.updated_at,
            "availability_zone": "nova", "project_id": project, "snapshot_id": None, "share_network_id": None,
            "share_type": stable_id("type", SHARE_TYPE), "volume_type": SHARE_TYPE, "is_public": False,
            "metadata": json.loads(share.properties.get("metadata") or "{}"),
            "snapshot_support": False})
        if ctx.is_admin:
            out.update({"host": "cloudlab@ganesha#nfs", "share_server_id": None})
        if version < (2, 9):
            out["export_location"] = locations[0] if locations else None
            out["export_locations"] = locations
        if version >= (2, 5):
            out["task_state"] = None
        if (2, 5) <= version < (2, 31):
            out["consistency_group_id"] = None
        if version >= (2, 6):
            out["share_type_name"] = SHARE_TYPE
        if version >= (2, 10):
            out["access_rules_status"] = body["access_rules_status"]
        if version >= (2, 11):
            out.update({"replication_type": None, "has_replicas": False})
        if version >= (2, 16):
            out["user_id"] = user
        if version >= (2, 24):
            out["create_share_from_snapshot_support"] = False
        if version >= (2, 27):
            out["revert_to_snapshot_support"] = False
        if version >= (2, 31):
            out.update({"share_group_id": None, "source_share_group_snapshot_member_id": None})
        if version >= (2, 32):
            out["mount_snapshot_support"] = False
        if version >= (2, 54):
            out["progress"] = "100%" if share.status == "available" else "0%"
        if version >= (2, 69):
            out.update({"is_soft_deleted": False, "scheduled_to_be_deleted_at": None})
        if version >= (2, 80):
            out["source_backup_id"] = None
        return out

    async def _shares(self, request, detail):
        ctx, query = request[CONTEXT], request.query
        service = self._service()
        shares = await blocking(service.list_shares) if service is not None else []
        all_projects = ctx.is_admin and query.get("all_tenants", "0").lower() not in ("0", "false", "no", "off")
        shares = [s for s in shares if all_projects or self.owner(s)[0] == ctx.project_id]
        if query.get("is_soft_deleted", "false").lower() in ("1", "true", "yes"):
            shares = []         # the recycle bin (2.69): the lab deletes shares at once
        if query.get("name"):
            shares = [s for s in shares if s.name == query["name"]]
        if query.get("status"):
            shares = [s for s in shares if s.status == query["status"].lower()]
        version = request[VERSION]
        return json_response({"shares": [self.share_view(s, ctx, version, detail) for s in shares]})

    async def list_shares(self, request):
        """``GET /shares``: ids and names."""
        return await self._shares(request, detail=False)

    async def list_shares_detail(self, request):
        """``GET /shares/detail``."""
        return await self._shares(request, detail=True)

    async def show_share(self, request):
        """``GET /shares/{id}``."""
        ctx = request[CONTEXT]
        share = await blocking(self.visible_share, ctx, request.match_info["id"])
        return json_response({"share": self.share_view(share, ctx, request[VERSION])})

    async def create_share(self, request):
        """``POST /shares``: a new NFS share, exported (nobody may mount it until an access rule allows)."""
        ctx = request[CONTEXT]
        self._writer(ctx)
        body = await json_body(request, "share")
        proto = field(body, "share_proto", str, required=True, path="share/share_proto")
        size = field(body, "size", (int, str), required=True, path="share/size")
        if isinstance(size, str):
            if not size.strip().isdigit():
                raise ApiError(400, f"Invalid input for field/attribute share/size. Value: {size!r}. "
                                    "It must be a whole number of GiB")
            size = int(size)
        name = field(body, "name", str, path="share/name") or f"share-{uuid.uuid4().hex[:8]}"
        description = field(body, "description", str, default="", path="share/description")
        metadata = field(body, "metadata", dict, default={}, path="share/metadata")
        if any(not isinstance(k, str) or not isinstance(v, str) for k, v in metadata.items()):
            raise ApiError(400, "Invalid input for field/attribute share/metadata: keys and values are strings")
        share_type = field(body, "share_type", str, path="share/share_type")
        if share_type not in (None, SHARE_TYPE, stable_id("type", SHARE_TYPE)):
            raise ApiError(404, f"Share type {share_type} could not be found: the lab has one, {SHARE_TYPE}")
        for unsupported in ("snapshot_id", "share_network_id", "share_group_id", "source_backup_id"):
            if body.get(unsupported):
                raise ApiError(400, f"Invalid input for field/attribute share/{unsupported}: the lab's shares are "
                                    "new, empty NFS shares on its one share server")
        if body.get("is_public"):
            raise ApiError(400, "Invalid input for field/attribute share/is_public: the lab's shares belong to "
                                "one project; let others in with access rules")
        zone = field(body, "availability_zone", str, path="share/availability_zone")
        if zone not in (None, "nova"):
            raise ApiError(400, f"Availability zone {zone!r} not found: the lab has one, nova")
        properties = {"project_id": ctx.project_id, "user_id": ctx.user_id}
        if metadata:
            properties["metadata"] = json.dumps(metadata)
        service = await blocking(self._service, True)
        try:
            share = await blocking(service.create_share, name, size, share_proto=proto, description=description,
                                   properties=properties)
        except Conflict as exc:
            raise ApiError(409, f"{exc.message}: the lab's share names are unique across projects; "
                                "choose another name") from None
        return json_response({"share": self.share_view(share, ctx, request[VERSION])})

    async def delete_share(self, request):
        """``DELETE /shares/{id}``: unexport it and delete its files."""
        ctx = request[CONTEXT]
        self._writer(ctx)
        share = await blocking(self.visible_share, ctx, request.match_info["id"])
        try:
            await blocking(self._service().delete_share, share)
        except Conflict as exc:
            raise ApiError(400, f"Invalid share: {exc.message}") from None
        return web.Response(status=202)

    # -- actions: access rules and growing

    def access_view(self, share, rule, version):
        """An access rule as Manila shows it."""
        out = {"id": rule.id, "share_id": share.id, "access_type": rule.access_type, "access_to": rule.access_to,
               "access_level": rule.access_level, "state": rule.state, "access_key": None}
        if version >= (2, 33):
            out.update({"created_at": rule.created_at, "updated_at": None})
        if version >= (2, 45):
            out["metadata"] = {}
        return out

    async def share_action(self, request):
        """``POST /shares/{id}/action``: ``allow_access``, ``deny_access``, ``access_list``, ``extend``."""
        ctx = request[CONTEXT]
        share = await blocking(self.visible_share, ctx, request.match_info["id"])
        body = await json_body(request)
        if len(body) != 1:
            raise ApiError(400, "Malformed request body: give exactly one action, e.g. {\"allow_access\": {...}}")
        (name, arg), = body.items()
        version = request[VERSION]
        name = name.removeprefix("os-")       # before 2.7 the actions were os-allow_access ...
        service = self._service()
        if name == "access_list":
            return json_response({"access_list": [self.access_view(share, r, version) for r in share.access_rules]})
        self._writer(ctx)
        if not isinstance(arg, dict):
            raise ApiError(400, f"Invalid input for field/attribute {name}: it must be an object")
        try:
            if name == "allow_access":
                access_type = field(arg, "access_type", str, required=True, path="allow_access/access_type")
                access_to = field(arg, "access_to", str, required=True, path="allow_access/access_to")
                level = field(arg, "access_level", str, default="rw", path="allow_access/access_level")
                rule = await blocking(service.allow_access, share, access_to, level, access_type=access_type)
                return json_response({"access": self.access_view(share, rule, version)})
            if name == "deny_access":
                rule_id = field(arg, "access_id", str, required=True, path="deny_access/access_id")
                if not any(r.id == rule_id for r in share.access_rules):
                    raise ApiError(404, f"Access rule {rule_id} could not be found on share {share.id}.")
                await blocking(service.deny_access, share, rule_id)
                return web.Response(status=202)
            if name == "extend":
                new_size = field(arg, "new_size", int, required=True, path="extend/new_size")
                await blocking(service.extend_share, share, new_size)
                return web.Response(status=202)
        except InvalidInput as exc:
            raise ApiError(400, f"Invalid input: {exc.message} ({exc.fix})" if exc.fix else exc.message) from None
        except Conflict as exc:
            raise ApiError(400, f"Invalid share access rule: {exc.message}" if "rule" in exc.message
                           else f"Invalid share: {exc.message}") from None
        raise ApiError(400, f"There is no such action: {name} (the lab's shares take allow_access, deny_access, "
                            "access_list and extend)")

    async def list_access_rules(self, request):
        """``GET /share-access-rules?share_id=ID`` (2.45): the rules of one share."""
        ctx = request[CONTEXT]
        share_id = request.query.get("share_id")
        if not share_id:
            raise ApiError(400, "Invalid input for field/attribute share_id: give ?share_id=ID")
        share = await blocking(self.visible_share, ctx, share_id)
        return json_response({"access_list": [self.access_view(share, r, request[VERSION])
                                              for r in share.access_rules]})

    async def show_access_rule(self, request):
        """``GET /share-access-rules/{id}``."""
        ctx = request[CONTEXT]
        service = self._service()
        ident = request.match_info["id"]
        for share in (service.list_shares() if service is not None else []):
            for rule in share.access_rules:
                if rule.id == ident and self._visible(ctx, share):
                    return json_response({"access": self.access_view(share, rule, request[VERSION])})
        raise ApiError(404, f"Access rule {ident} could not be found.")

    # -- export locations

    def location_view(self, share, ctx, version):
        """A share's one export location."""
        out = {"id": stable_id("location", share.id), "path": share.export_location,
               "created_at": share.created_at, "updated_at": share.updated_at}
        if version >= (2, 14):
            out["preferred"] = True
        if ctx.is_admin:
            out.update({"is_admin_only": False, "share_instance_id": share.id})
        return out

    async def list_export_locations(self, request):
        """``GET /shares/{id}/export_locations``: where clients mount the share."""
        ctx = request[CONTEXT]
        share = await blocking(self.visible_share, ctx, request.match_info["id"])
        locations = [self.location_view(share, ctx, request[VERSION])] if share.export_location else []
        return json_response({"export_locations": locations})

    async def show_export_location(self, request):
        """``GET /shares/{id}/export_locations/{location}``."""
        ctx = request[CONTEXT]
        share = await blocking(self.visible_share, ctx, request.match_info["id"])
        view = self.location_view(share, ctx, request[VERSION])
        if request.match_info["location"] != view["id"]:
            raise ApiError(404, f"Export location {request.match_info['location']} could not be found.")
        return json_response({"export_location": view})

    # -- the one share type, zones, limits

    def type_view(self, version):
        """The ``default`` share type."""
        specs = {"driver_handles_share_servers": "False", "snapshot_support": "False",
                 "create_share_from_snapshot_support": "False", "revert_to_snapshot_support": "False",
                 "mount_snapshot_support": "False"}
        out = {"id": stable_id("type", SHARE_TYPE), "name": SHARE_TYPE, "extra_specs": specs,
               "required_extra_specs": {"driver_handles_share_servers": "False"},
               "share_type_access:is_public": True, "os-share-type-access:is_public": True}
        if version >= (2, 41):
            out["description"] = "NFS shares on the lab's NFS-Ganesha share server"
        if version >= (2, 46):
            out["is_default"] = True
        return out

    async def list_types(self, request):
        """``GET /types``."""
        return json_response({"share_types": [self.type_view(request[VERSION])]})

    async def show_type(self, request):
        """``GET /types/{id}`` (``default``, the name or the id)."""
        view = self.type_view(request[VERSION])
        if request.match_info["id"] not in ("default", view["id"]):
            raise ApiError(404, f"Share type {request.match_info['id']} could not be found.")
        return json_response({"share_type": view})

    async def availability_zones(self, request):
        """``GET /availability-zones``: one zone, ``nova``."""
        return json_response({"availability_zones": [{"id": stable_id("zone", "nova"), "name": "nova",
                                                      "created_at": UPDATED, "updated_at": None}]})

    async def limits(self, request):
        """``GET /limits``: the lab sets no share quotas (-1), only what the project uses."""
        ctx = request[CONTEXT]
        service = self._service()
        mine = [s for s in (service.list_shares() if service else []) if self.owner(s)[0] == ctx.project_id]
        return json_response({"limits": {"rate": [], "absolute": {
            "maxTotalShares": -1, "maxTotalShareGigabytes": -1, "maxTotalShareSnapshots": 0,
            "maxTotalSnapshotGigabytes": 0, "maxTotalShareNetworks": 0,
            "totalSharesUsed": len(mine), "totalShareGigabytesUsed": sum(s.size for s in mine),
            "totalShareSnapshotsUsed": 0, "totalSnapshotGigabytesUsed": 0, "totalShareNetworksUsed": 0}}})
