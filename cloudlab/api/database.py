"""Database API (Trove v1.0) over the lab's database service.

``openstack database instance create db1 --flavor m1.small --size 1 --datastore postgresql
--datastore-version 15`` (python-troveclient's plugin of the ``openstack`` CLI) becomes
``POST /v1.0/{project_id}/instances``; this module checks the token's project and calls
``lab.database.create_instance``, which starts a real PostgreSQL server of its own on the
lab network with its data on a block storage volume.  Then, as in any Trove cloud:

* ``openstack database db create db1 notes`` and ``openstack database user create db1 app
  SECRET --databases notes`` make a database and an account in it
  (``POST /instances/{id}/databases`` and ``.../users``);
* ``openstack database instance restart db1`` and ``openstack database instance resize
  flavor db1 m1.medium`` act on it (``POST /instances/{id}/action``);
* ``openstack database backup create db1 nightly`` dumps it into the object store.

**Faults** are Trove's: ``{"badRequest": {"code": 400, "message": ...}}`` naming the field; a busy
instance (BUILD, REBOOT, RESIZE) is 422 ``unprocessableEntity``; a database or user name already
taken is 400 (as Trove answers); an instance name already taken is 409 ``conflict`` (Trove allows
two instances of one name; the lab's names are unique, as its folders and addresses are named by them).

**Projects**: an instance belongs to the project whose token made it (``instance.project_id``;
one made through the Python API belongs to the lab's default project); another project's
instance or backup is 404.  **Versions**: Trove has no microversions: v1.0 only.
What the lab has not: clusters, replicas, configuration groups, modules, logs, root
enablement, quotas; their paths are 404.
"""

import uuid

from aiohttp import web

from ..errors import Conflict, NotFound
from .http import CONTEXT, ApiError, blocking, field, json_body, json_response, middleware, nova_fault, require_writer
from .microversion import ProjectScopedAPI

NAMESPACE = uuid.UUID("0b3c6a51-8f2d-4e7a-9c14-2d5e8a7f9b03")
UPDATED = "2012-08-01T00:00:00Z"
PROJECT = "{project_id:[0-9a-f]{32}}"


# Trove names a fault after webob's exception class (trove/common/wsgi.py, Fault._get_error_name):
# its own names for some, "HTTPConflict" -> "conflict" and the like for the rest; a 500 is an instanceFault
TROVE_FAULTS = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound", 405: "badMethod",
                406: "notAcceptable", 409: "conflict", 413: "overLimit", 415: "badMediaType",
                422: "unprocessableEntity", 500: "instanceFault", 501: "notImplemented", 503: "serviceUnavailable",
                504: "gatewayTimeout"}


def trove_fault(status, message, fault=None):
    """A fault as Trove writes it: ``{"itemNotFound": {"code": 404, "message": ...}}``."""
    return nova_fault(status, message, fault or TROVE_FAULTS.get(status, "instanceFault"))


def available(instance):
    """Refuse an action on an instance that is not ACTIVE: 422, with Trove's own words.

    Trove answers a busy instance (BUILD, REBOOT, RESIZE...) with ``unprocessableEntity``,
    not with a conflict: the request is right, the instance is not ready for it.
    """
    if instance.status != "ACTIVE":
        raise ApiError(422, "Instance is not currently available for an action to be performed "
                            f"(status was {instance.status}): wait until "
                            f"`openstack database instance show {instance.name}` says ACTIVE")
    return instance


def volume_size(value, where):
    """A volume size in GiB from a request: a whole number, or a string of digits (what the CLI may send).

    Raises:
        ApiError: 400 naming the field.
    """
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"Invalid input for field/attribute {where}. Value: {value!r}. "
                            "It must be a whole number of GiB")
    return value


def stable_id(*parts):
    """A UUID derived from ``parts``: datastores and their versions have stable ids."""
    return str(uuid.uuid5(NAMESPACE, "/".join(parts)))


def version_doc(base):
    """Trove's one version, v1.0."""
    return {"id": "v1.0", "status": "CURRENT", "updated": UPDATED,
            "links": [{"rel": "self", "href": f"{base}/v1.0/"}]}


class DatabaseAPI(ProjectScopedAPI):
    """Trove's v1.0 REST API over ``lab.database``.

    Args:
        api: the :class:`~cloudlab.api.OpenStackAPI`.
        auth: the :class:`~cloudlab.api.auth.TokenCheck` for the ``trove`` service user.
    """

    service_user = "trove"
    catalog_name = "database"
    version_path = "/v1.0"

    def catalog(self):
        """The catalog entry: ``database`` (trove), the project in its URL as Trove's is."""
        return [("database", "trove", f"{self.base}/v1.0/$(project_id)s",
                 "Databases as a service: lab.database (PostgreSQL)")]

    # -- the application

    def app(self):
        """The aiohttp application."""
        mw = middleware(self.auth, trove_fault, public=[self._public], checks=[self._project_in_url],
                        journal=self.api.journal, service="trove")
        app = web.Application(middlewares=[mw], client_max_size=1 << 20)
        r = app.router
        r.add_get("/", self.versions)
        r.add_get("/v1.0", self.version)
        r.add_get("/v1.0/", self.version)
        p = f"/v1.0/{PROJECT}"
        r.add_get(p + "/flavors", self.list_flavors)
        r.add_get(p + "/flavors/{id}", self.show_flavor)
        r.add_get(p + "/datastores", self.list_datastores)
        r.add_get(p + "/datastores/{id}", self.show_datastore)
        r.add_get(p + "/datastores/{id}/versions", self.list_datastore_versions)
        r.add_get(p + "/datastores/{id}/versions/{version}", self.show_datastore_version)
        r.add_get(p + "/datastores/versions/{version}", self.show_datastore_version)
        r.add_get(p + "/instances", self.list_instances)
        r.add_get(p + "/instances/detail", self.list_instances)
        r.add_post(p + "/instances", self.create_instance)
        r.add_get(p + "/instances/{id}", self.show_instance)
        r.add_delete(p + "/instances/{id}", self.delete_instance)
        r.add_post(p + "/instances/{id}/action", self.instance_action)
        r.add_get(p + "/instances/{id}/databases", self.list_databases)
        r.add_post(p + "/instances/{id}/databases", self.create_databases)
        r.add_delete(p + "/instances/{id}/databases/{name}", self.delete_database)
        r.add_get(p + "/instances/{id}/users", self.list_users)
        r.add_post(p + "/instances/{id}/users", self.create_users)
        r.add_get(p + "/instances/{id}/users/{name}", self.show_user)
        r.add_delete(p + "/instances/{id}/users/{name}", self.delete_user)
        r.add_get(p + "/instances/{id}/backups", self.list_instance_backups)
        r.add_get(p + "/backups", self.list_backups)
        r.add_post(p + "/backups", self.create_backup)
        r.add_get(p + "/backups/{id}", self.show_backup)
        r.add_delete(p + "/backups/{id}", self.delete_backup)
        return app

    async def versions(self, request):
        """``GET /``: the versions."""
        return json_response({"versions": [version_doc(self.base)]})

    async def version(self, request):
        """``GET /v1.0``: the version document."""
        return json_response({"version": version_doc(self.base)})

    # -- helpers

    def _service(self, start=False):
        """The lab's database service; None when it has not started and ``start`` is False."""
        if start:
            return self.lab.database
        return self.lab.started_service("database")

    def owner(self, item):
        """The project that owns an instance or a backup."""
        return item.project_id or self.api.default_project_id

    def _visible(self, ctx, item):
        return ctx.is_admin or self.owner(item) == ctx.project_id

    _writer = staticmethod(require_writer)

    def link(self, project, kind, ident):
        """Trove's ``links`` of a resource."""
        return [{"rel": "self", "href": f"{self.base}/v1.0/{project}/{kind}/{ident}"},
                {"rel": "bookmark", "href": f"{self.base}/{project}/{kind}/{ident}"}]

    def _find(self, ctx, kind, items, ident):
        """The item of ``items`` with id (or, among the caller's, name) ``ident``.

        Raises:
            ApiError: 404 itemNotFound (also for another project's).
        """
        found = next((i for i in items if i.id == ident), None) or \
            next((i for i in items if i.name == ident and self._visible(ctx, i)), None)
        if found is None or not self._visible(ctx, found):
            raise ApiError(404, f"The resource could not be found: {kind} {ident}")
        return found

    def visible_instance(self, ctx, ident):
        """The instance with id (or name) ``ident`` if the caller's project may see it (else 404)."""
        service = self._service()
        return self._find(ctx, "instance", service.list_instances() if service else [], ident)

    def visible_backup(self, ctx, ident):
        """The backup with id (or name) ``ident`` if the caller's project may see it (else 404)."""
        service = self._service()
        return self._find(ctx, "backup", service.list_backups() if service else [], ident)

    async def _url_instance(self, request, ready=True):
        """The instance the URL names (``{id}``), visible to the caller and, with ``ready``, ACTIVE (else 404, 422)."""
        instance = await blocking(self.visible_instance, request[CONTEXT], request.match_info["id"])
        return available(instance) if ready else instance

    # -- flavors (the compute service's, as Trove uses Nova's)

    def flavor_view(self, project, flavor):
        """A flavor as Trove shows it; its id is its name, as the compute API's is."""
        return {"id": flavor.name, "str_id": flavor.name, "name": flavor.name, "ram": flavor.ram_mib,
                "vcpus": flavor.vcpus, "disk": flavor.disk_gib, "links": self.link(project, "flavors", flavor.name)}

    async def list_flavors(self, request):
        """``GET /flavors``."""
        project = request[CONTEXT].project_id
        flavors = await blocking(self.lab.compute.list_flavors)
        return json_response({"flavors": [self.flavor_view(project, f) for f in flavors]})

    async def show_flavor(self, request):
        """``GET /flavors/{id}``."""
        ident = request.match_info["id"]
        try:
            flavor = await blocking(self.lab.compute.get_flavor, ident)
        except NotFound:
            raise ApiError(404, f"The resource could not be found: flavor {ident}") from None
        return json_response({"flavor": self.flavor_view(request[CONTEXT].project_id, flavor)})

    # -- datastores

    def _datastores(self):
        from ..database import datastore
        return datastore.versions()

    def version_view(self, project, store, version):
        """One datastore version as Trove shows it."""
        ident = stable_id(store, version)
        return {"id": ident, "name": version, "datastore": stable_id(store), "active": 1, "packages": "",
                "image": "", "version": version, "links": self.link(project, "datastores/versions", ident)}

    def datastore_view(self, project, store, versions):
        """A datastore with its versions, newest (the default) first."""
        return {"id": stable_id(store), "name": store, "default_version": stable_id(store, versions[0]),
                "versions": [self.version_view(project, store, v) for v in versions],
                "links": self.link(project, "datastores", stable_id(store))}

    def _find_datastore(self, ident):
        for store, versions in self._datastores().items():
            if ident in (store, stable_id(store)):
                return store, versions
        raise ApiError(404, f"Datastore '{ident}' cannot be found: the lab has "
                            f"{', '.join(self._datastores())}")

    async def list_datastores(self, request):
        """``GET /datastores``."""
        project = request[CONTEXT].project_id
        stores = await blocking(self._datastores)
        return json_response({"datastores": [self.datastore_view(project, s, v) for s, v in stores.items()]})

    async def show_datastore(self, request):
        """``GET /datastores/{id}`` (an id or a name)."""
        store, versions = await blocking(self._find_datastore, request.match_info["id"])
        return json_response({"datastore": self.datastore_view(request[CONTEXT].project_id, store, versions)})

    async def list_datastore_versions(self, request):
        """``GET /datastores/{id}/versions``."""
        store, versions = await blocking(self._find_datastore, request.match_info["id"])
        project = request[CONTEXT].project_id
        return json_response({"versions": [self.version_view(project, store, v) for v in versions]})

    async def show_datastore_version(self, request):
        """``GET /datastores/{id}/versions/{version}`` and ``/datastores/versions/{id}``."""
        wanted, project = request.match_info["version"], request[CONTEXT].project_id
        stores = await blocking(self._datastores)
        if "id" in request.match_info:
            store, versions = await blocking(self._find_datastore, request.match_info["id"])
            stores = {store: versions}
        for store, versions in stores.items():
            for version in versions:
                if wanted in (version, stable_id(store, version)):
                    return json_response({"version": self.version_view(project, store, version)})
        raise ApiError(404, f"Datastore version '{wanted}' cannot be found")

    # -- instances

    def instance_view(self, instance, detail=True):
        """An instance as Trove shows it."""
        project = self.owner(instance)
        out = instance.to_trove()
        out["links"] = self.link(project, "instances", instance.id)
        out["flavor"]["links"] = self.link(project, "flavors", instance.flavor)
        out["datastore"]["version_number"] = instance.datastore_version    # PostgreSQL's major version
        out["region"] = "RegionOne"
        out["operating_status"] = "HEALTHY" if instance.status == "ACTIVE" else ""
        out["access"] = {"is_public": False, "allowed_cidrs": []}
        if detail:
            out.update({"tenant_id": project, "service_status_updated": instance.updated or instance.created})
        return out

    async def list_instances(self, request):
        """``GET /instances`` and ``/instances/detail``: the caller's project's (every project's for an admin
        asking ``?all_projects``)."""
        ctx = request[CONTEXT]
        service = self._service()
        instances = await blocking(service.list_instances) if service is not None else []
        everyone = ctx.is_admin and "all_projects" in request.query
        instances = [i for i in instances if everyone or self.owner(i) == ctx.project_id]
        return json_response({"instances": [self.instance_view(i, detail=False) for i in instances], "links": []})

    async def show_instance(self, request):
        """``GET /instances/{id}``."""
        instance = await self._url_instance(request, ready=False)
        return json_response({"instance": self.instance_view(instance)})

    @staticmethod
    def _databases(items, where):
        if not isinstance(items, list):
            raise ApiError(400, f"Invalid input for field/attribute {where}: it must be a list of "
                                "{\"name\": ...} objects")
        names = []
        for n, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise ApiError(400, f"Invalid input for field/attribute {where}[{n}]: it needs a \"name\" string")
            names.append(item["name"])
        return names

    @classmethod
    def _users(cls, items, where):
        if not isinstance(items, list):
            raise ApiError(400, f"Invalid input for field/attribute {where}: it must be a list of users")
        users = []
        for n, item in enumerate(items):
            if not isinstance(item, dict):
                raise ApiError(400, f"Invalid input for field/attribute {where}[{n}]: it must be an object")
            name = field(item, "name", str, required=True, path=f"{where}[{n}]/name")
            password = field(item, "password", str, required=True, path=f"{where}[{n}]/password")
            databases = cls._databases(item.get("databases", []), f"{where}[{n}]/databases")
            users.append({"name": name, "password": password, "databases": databases})
        return users

    async def create_instance(self, request):
        """``POST /instances``: a new PostgreSQL instance, in BUILD until its server answers."""
        ctx = request[CONTEXT]
        self._writer(ctx)
        body = await json_body(request, "instance")
        name = field(body, "name", str, required=True, path="instance/name")
        flavor = field(body, "flavorRef", (str, int), required=True, path="instance/flavorRef")
        flavor = str(flavor).rstrip("/").rsplit("/", 1)[-1]     # an id or a link to one
        try:
            await blocking(self.lab.compute.get_flavor, flavor)
        except NotFound:
            raise ApiError(404, f"Flavor {flavor} could not be found: openstack database flavor list "
                                "shows the lab's") from None
        volume = field(body, "volume", dict, default={}, path="instance/volume")
        size = volume_size(volume.get("size", 1), "instance/volume/size")
        store = field(body, "datastore", dict, default={}, path="instance/datastore")
        store_type = field(store, "type", str, default="postgresql", path="instance/datastore/type")
        store_version = field(store, "version", str, path="instance/datastore/version")
        if store_type in [stable_id(s) for s in self._datastores()]:
            store_type = next(s for s in self._datastores() if stable_id(s) == store_type)
        if store_version:
            store_version = next((v for v in self._datastores().get(store_type, [])
                                  if stable_id(store_type, v) == store_version), store_version)
        databases = self._databases(body.get("databases", []), "instance/databases")
        users = self._users(body.get("users", []), "instance/users")
        restore = field(body, "restorePoint", dict, path="instance/restorePoint")
        source = None
        if restore is not None:
            ref = field(restore, "backupRef", str, required=True, path="instance/restorePoint/backupRef")
            source = (await blocking(self.visible_backup, ctx, ref)).id
        for unsupported in ("replica_of", "replica_count", "configuration", "modules", "locality"):
            if body.get(unsupported):
                raise ApiError(400, f"Invalid input for field/attribute instance/{unsupported}: the lab's "
                                    "instances are single PostgreSQL servers (no replicas, configuration groups "
                                    "or modules)")
        service = await blocking(self._service, True)
        try:
            instance = await blocking(service.create_instance, name, datastore_name=store_type,
                                      datastore_version=store_version, flavor=flavor, volume_size=size,
                                      databases=databases, users=users, restore_point=source, wait=False,
                                      project_id=ctx.project_id)
        except Conflict as exc:
            raise ApiError(409, f"{exc.message}: the lab's instance names are unique across projects; "
                                "choose another name") from None
        return json_response({"instance": self.instance_view(instance)})

    async def delete_instance(self, request):
        """``DELETE /instances/{id}``: stop its server, delete its volume and files."""
        ctx = request[CONTEXT]
        self._writer(ctx)
        instance = await self._url_instance(request, ready=False)
        await blocking(self._service().delete_instance, instance)
        return web.Response(status=202)

    async def instance_action(self, request):
        """``POST /instances/{id}/action``: ``restart``, ``resize`` (``flavorRef`` or ``volume.size``)."""
        ctx = request[CONTEXT]
        self._writer(ctx)
        body = await json_body(request)
        if len(body) > 1:
            # Trove takes one action per request; doing the first and dropping the rest would surprise
            raise ApiError(400, f"Invalid input: one action per request, this one has {', '.join(body)}")
        instance = await self._url_instance(request)
        service = self._service()
        if "restart" in body:
            await blocking(service.restart_instance, instance)
        elif "resize" in body:
            resize = field(body, "resize", dict, required=True)
            if "flavorRef" in resize:
                flavor = str(field(resize, "flavorRef", (str, int), path="resize/flavorRef")).rsplit("/", 1)[-1]
                try:
                    await blocking(self.lab.compute.get_flavor, flavor)
                except NotFound:
                    raise ApiError(404, f"Flavor {flavor} could not be found") from None
                await blocking(service.resize_instance, instance, flavor=flavor)
            elif "volume" in resize:
                volume = field(resize, "volume", dict, required=True, path="resize/volume")
                field(volume, "size", (int, str), required=True, path="resize/volume/size")
                size = volume_size(volume["size"], "resize/volume/size")
                await blocking(service.resize_instance, instance, volume_size=size)
            else:
                raise ApiError(400, "Invalid input: resize needs flavorRef or volume.size")
        else:
            raise ApiError(400, f"Invalid instance action {', '.join(body) or '(none)'}: the lab's are "
                                "restart and resize")
        return web.Response(status=202)

    # -- databases and users of an instance

    async def list_databases(self, request):
        """``GET /instances/{id}/databases``."""
        instance = await self._url_instance(request)
        names = await blocking(self._service().list_databases, instance)
        return json_response({"databases": [{"name": n} for n in names], "links": []})

    async def _create_each(self, request, what, parse, create):
        """``POST /instances/{id}/WHAT``: check the body's list, then ``create(instance, item)`` for each item.

        A name already taken is 400, as Trove answers (its DatabaseAlreadyExists and
        UserAlreadyExists), not the lab's 409.
        """
        self._writer(request[CONTEXT])
        body = await json_body(request)
        items = parse(body.get(what), what)
        instance = await self._url_instance(request)
        for item in items:
            try:
                await blocking(create, instance, item)
            except Conflict as exc:
                raise ApiError(400, exc.message) from None
        return web.Response(status=202)

    async def create_databases(self, request):
        """``POST /instances/{id}/databases``: ``{"databases": [{"name": ...}]}``."""
        def create(instance, name):
            return self._service().create_database(instance, name)
        return await self._create_each(request, "databases", self._databases, create)

    async def delete_database(self, request):
        """``DELETE /instances/{id}/databases/{name}``."""
        ctx = request[CONTEXT]
        self._writer(ctx)
        instance = await self._url_instance(request)
        await blocking(self._service().delete_database, instance, request.match_info["name"])
        return web.Response(status=202)

    @staticmethod
    def user_view(user):
        """A user as Trove shows it (the lab's accounts may connect from any host: ``%``)."""
        return {"name": user["name"], "host": "%", "databases": [{"name": d} for d in user["databases"]]}

    async def list_users(self, request):
        """``GET /instances/{id}/users``."""
        instance = await self._url_instance(request)
        users = await blocking(self._service().list_users, instance)
        return json_response({"users": [self.user_view(u) for u in users], "links": []})

    async def show_user(self, request):
        """``GET /instances/{id}/users/{name}`` (``name`` or ``name@%``)."""
        instance = await self._url_instance(request)
        name = request.match_info["name"].split("@", 1)[0]
        users = await blocking(self._service().list_users, instance)
        found = next((u for u in users if u["name"] == name), None)
        if found is None:
            raise ApiError(404, f"User {name} cannot be found on the instance")
        return json_response({"user": self.user_view(found)})

    async def create_users(self, request):
        """``POST /instances/{id}/users``: ``{"users": [{"name", "password", "databases"}]}``."""
        def create(instance, user):
            return self._service().create_user(instance, user["name"], user["password"], user["databases"])
        return await self._create_each(request, "users", self._users, create)

    async def delete_user(self, request):
        """``DELETE /instances/{id}/users/{name}``."""
        ctx = request[CONTEXT]
        self._writer(ctx)
        instance = await self._url_instance(request)
        await blocking(self._service().delete_user, instance, request.match_info["name"].split("@", 1)[0])
        return web.Response(status=202)

    # -- backups

    def backup_view(self, backup):
        """A backup as Trove shows it."""
        return {"id": backup.id, "name": backup.name, "description": backup.description,
                "instance_id": backup.instance_id, "status": backup.status, "size": backup.size / 2 ** 30,
                "locationRef": f"{self.api.lab.object_store.url}/v1/{backup.location}",
                "created": backup.created, "updated": backup.updated or backup.created,
                "datastore": {"type": backup.datastore, "version": backup.datastore_version,
                              "version_id": stable_id(backup.datastore, backup.datastore_version)},
                "project_id": self.owner(backup), "parent_id": None}

    async def _backups(self, request, instance=None):
        ctx = request[CONTEXT]
        service = self._service()
        backups = await blocking(service.list_backups) if service is not None else []
        backups = [b for b in backups if self._visible(ctx, b) and (instance is None or b.instance_id == instance.id)]
        return json_response({"backups": [self.backup_view(b) for b in backups], "links": []})

    async def list_backups(self, request):
        """``GET /backups``."""
        return await self._backups(request)

    async def list_instance_backups(self, request):
        """``GET /instances/{id}/backups``."""
        instance = await self._url_instance(request, ready=False)
        return await self._backups(request, instance)

    async def show_backup(self, request):
        """``GET /backups/{id}``."""
        backup = await blocking(self.visible_backup, request[CONTEXT], request.match_info["id"])
        return json_response({"backup": self.backup_view(backup)})

    async def create_backup(self, request):
        """``POST /backups``: ``{"backup": {"name", "instance", "description"}}``; the dump is done when it answers."""
        ctx = request[CONTEXT]
        self._writer(ctx)
        body = await json_body(request, "backup")
        name = field(body, "name", str, required=True, path="backup/name")
        ref = field(body, "instance", str, required=True, path="backup/instance")
        description = field(body, "description", str, default="", path="backup/description")
        instance = available(await blocking(self.visible_instance, ctx, ref))
        backup = await blocking(self._service().create_backup, instance, name, description or "")
        return json_response({"backup": self.backup_view(backup)}, status=202)

    async def delete_backup(self, request):
        """``DELETE /backups/{id}``."""
        ctx = request[CONTEXT]
        self._writer(ctx)
        backup = await blocking(self.visible_backup, ctx, request.match_info["id"])
        await blocking(self._service().delete_backup, backup)
        return web.Response(status=202)
