"""Compute API (Nova v2.1) over the lab's compute service, with microversions.

``openstack server create --image busybox --flavor m1.tiny --network NET web1`` becomes
``POST /v2.1/servers``; this module checks the token's project, turns the image,
flavor and network ids into the lab's names, and calls ``lab.compute.create_server``,
which defines and boots a libvirt domain.  The answer is 202 Accepted with the
server's id (the domain's UUID) at once; the client then polls ``GET /servers/{id}``
until the status is ACTIVE, as Nova's clients do.

**Microversions.**  Nova's API changes in small numbered steps (2.1 ... 2.100) and a
client says which it speaks in ``OpenStack-API-Version: compute 2.N``; the answer has
the shape of that version (from 2.47 a server's flavor is embedded rather than linked,
from 2.19 it has a description...).  No header means 2.1; ``latest`` means the
newest; a version outside 2.1..2.100 is 406, as Nova answers.

**Projects.**  A server belongs to the project of the token that created it; the
project and user ids are kept in the server's ``properties`` (its libvirt domain's
metadata).  A server the lab created without the API belongs to the lab's default
project (``demo``).  Another project's server is 404 itemNotFound; the admin role
sees every project's with ``?all_tenants=1`` (``openstack server list --all-projects``).
When the services get projects of their own (issue 15), ``properties["project_id"]``
becomes the service's own field and this module only passes it through.

What the lab has not: key pairs, security groups, server groups, migrations, host
aggregates; their requests are 400 or 501 with a message saying so.
"""

import hashlib
import json
import re
import threading
import time

from aiohttp import web

from ..compute.flavor import NAME_RE
from ..errors import Conflict, NotFound, QuotaExceeded
from .auth import TokenCheck
from .http import ApiError, background, blocking, field, json_body, json_response, middleware, nova_fault, CONTEXT, \
    require_writer

MIN_VERSION = (2, 1)
MAX_VERSION = (2, 100)
VERSION = web.RequestKey("version", tuple)
HEADER = "OpenStack-API-Version"
LEGACY_HEADER = "X-OpenStack-Nova-API-Version"
_VERSION_RE = re.compile(r"^(\d+)\.(\d+)$")
UPDATED = "2013-07-23T11:33:21Z"

# the lab's status -> (vm_state, task_state) as Nova shows them
VM_STATES = {"BUILD": ("building", "spawning"), "ACTIVE": ("active", None), "SHUTOFF": ("stopped", None),
             "REBOOT": ("active", "rebooting"), "HARD_REBOOT": ("active", "rebooting_hard"),
             "RESIZE": ("active", "resize_migrating"), "VERIFY_RESIZE": ("resized", None),
             "REVERT_RESIZE": ("resized", "resize_reverting"), "PAUSED": ("paused", None),
             "ERROR": ("error", None), "DELETED": ("deleted", None)}
# task_state of an action under way -> the status Nova shows meanwhile
TASK_STATUS = {"rebooting": "REBOOT", "rebooting_hard": "HARD_REBOOT", "resize_prep": "RESIZE",
               "resize_reverting": "REVERT_RESIZE"}
POWER_STATES = {"RUNNING": 1, "PAUSED": 3, "SHUTDOWN": 4, "CRASHED": 6, "SUSPENDED": 7, "NOSTATE": 0}


def v(text):
    """``"2.47"`` as ``(2, 47)``."""
    major, minor = text.split(".")
    return int(major), int(minor)


def vstr(version):
    """``(2, 47)`` as ``"2.47"``."""
    return f"{version[0]}.{version[1]}"


def parse_version(request):
    """The microversion the client asked for.

    Raises:
        ApiError: 400 for a malformed header, 406 for a version outside 2.1..2.100.
    """
    value = None
    header = request.headers.get(HEADER)
    if header:
        for item in header.split(","):
            service, _, wanted = item.strip().partition(" ")
            if service.lower() == "compute":
                value = wanted.strip()
    if value is None:
        value = request.headers.get(LEGACY_HEADER)
    if not value:
        return MIN_VERSION
    if value.lower() == "latest":
        return MAX_VERSION
    match = _VERSION_RE.match(value)
    if not match:
        raise ApiError(400, f"API Version String {value} is of invalid format. Must be of format "
                            "MajorNum.MinorNum.")
    wanted = int(match.group(1)), int(match.group(2))
    if not MIN_VERSION <= wanted <= MAX_VERSION:
        raise ApiError(406, f"Version {value} is not supported by the API. Minimum is {vstr(MIN_VERSION)} "
                            f"and maximum is {vstr(MAX_VERSION)}.", fault="computeFault")
    return wanted


def version_doc(base):
    """Nova's v2.1 version document (what ``GET /v2.1`` answers)."""
    return {"id": "v2.1", "status": "CURRENT", "version": vstr(MAX_VERSION), "min_version": vstr(MIN_VERSION),
            "updated": UPDATED, "links": [{"rel": "self", "href": f"{base}/v2.1/"},
                                          {"rel": "describedby", "type": "text/html",
                                           "href": "https://docs.openstack.org/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.compute+json;version=2.1"}]}


def iso(ts):
    """A Unix time as Nova writes times: ``2024-01-02T03:04:05Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts or 0))


class ComputeAPI:
    """Nova's REST API over ``lab.compute``.

    Args:
        api: the :class:`~cloudlab.api.OpenStackAPI` (the lab, identity, images, networks).
        auth: the :class:`~cloudlab.api.auth.TokenCheck` for the ``nova`` service user.
    """

    service_user = "nova"
    catalog_name = "compute"

    def __init__(self, api, auth: TokenCheck):
        self.api = api
        self.lab = api.lab
        self.auth = auth
        self.base = None            # set once the port is bound
        self._tasks = {}            # server id -> (task_state, threading.Event set when the action is done)
        self._launched = {}         # server id -> when it was first seen ACTIVE

    # -- the application

    def catalog(self):
        """The catalog entry: ``[(type, name, url, description)]``."""
        return [("compute", "nova", f"{self.base}/v2.1", "Compute: lab.compute on libvirt")]

    def app(self):
        """The aiohttp application."""
        mw = middleware(self.auth, nova_fault, public=[self._public], checks=[self._negotiate],
                        journal=self.api.journal, service="nova")
        app = web.Application(middlewares=[mw])
        r = app.router
        r.add_get("/", self.versions)
        r.add_get("/v2.1", self.version)
        r.add_get("/v2.1/", self.version)
        p = "/v2.1"
        r.add_get(p + "/flavors", self.list_flavors)
        r.add_get(p + "/flavors/detail", self.list_flavors_detail)
        r.add_post(p + "/flavors", self.create_flavor)
        r.add_get(p + "/flavors/{id}", self.show_flavor)
        r.add_delete(p + "/flavors/{id}", self.delete_flavor)
        r.add_get(p + "/flavors/{id}/os-extra_specs", self.flavor_extra_specs)
        r.add_get(p + "/servers", self.list_servers)
        r.add_get(p + "/servers/detail", self.list_servers_detail)
        r.add_post(p + "/servers", self.create_server)
        r.add_get(p + "/servers/{id}", self.show_server)
        r.add_delete(p + "/servers/{id}", self.delete_server)
        r.add_post(p + "/servers/{id}/action", self.action)
        r.add_get(p + "/servers/{id}/ips", self.server_ips)
        r.add_get(p + "/servers/{id}/os-volume_attachments", self.list_attachments)
        r.add_post(p + "/servers/{id}/os-volume_attachments", self.attach_volume)
        r.add_get(p + "/servers/{id}/os-volume_attachments/{volume}", self.show_attachment)
        r.add_delete(p + "/servers/{id}/os-volume_attachments/{volume}", self.detach_volume)
        r.add_get(p + "/os-availability-zone", self.availability_zones)
        r.add_get(p + "/limits", self.limits)
        r.add_get(p + "/extensions", self.extensions)
        app.on_response_prepare.append(self._version_headers)
        return app

    @staticmethod
    def _public(request):
        return request.method == "GET" and request.path in ("/", "/v2.1", "/v2.1/")

    async def _negotiate(self, request):
        request[VERSION] = parse_version(request)

    async def _version_headers(self, request, response):
        version = request.get(VERSION)
        if version is not None:
            response.headers[HEADER] = f"compute {vstr(version)}"
            response.headers[LEGACY_HEADER] = vstr(version)
        response.headers["Vary"] = f"{HEADER}, {LEGACY_HEADER}"

    async def versions(self, request):
        """``GET /``: the API versions."""
        return json_response({"versions": [version_doc(self.base)]})

    async def version(self, request):
        """``GET /v2.1``: the version document (min and max microversion)."""
        return json_response({"version": version_doc(self.base)})

    # -- helpers

    def link(self, kind, ident):
        """Nova's ``links`` of a resource."""
        return [{"rel": "self", "href": f"{self.base}/v2.1/{kind}/{ident}"},
                {"rel": "bookmark", "href": f"{self.base}/{kind}/{ident}"}]

    def _owner(self, server):
        props = server.properties
        return props.get("project_id") or self.api.default_project_id, props.get("user_id") or ""

    def _visible(self, ctx, server):
        return ctx.is_admin or self._owner(server)[0] == ctx.project_id

    async def _server(self, request):
        """The server of the path's id, if the caller's project may see it; else 404."""
        ident = request.match_info["id"]
        ctx = request[CONTEXT]
        servers = await blocking(self.lab.compute.list_servers)
        for server in servers:
            if server.id == ident and self._visible(ctx, server):
                return server
        raise ApiError(404, f"Instance {ident} could not be found.")

    _writer = staticmethod(require_writer)

    # -- flavors

    def flavor_view(self, flavor, version, detail=True):
        """A flavor as Nova shows it; its id is its name."""
        out = {"id": flavor.name, "name": flavor.name, "links": self.link("flavors", flavor.name)}
        if detail:
            out.update({"vcpus": flavor.vcpus, "ram": flavor.ram_mib, "disk": flavor.disk_gib,
                        "OS-FLV-EXT-DATA:ephemeral": 0, "OS-FLV-DISABLED:disabled": False, "swap": "",
                        "rxtx_factor": 1.0, "os-flavor-access:is_public": True})
            if version >= (2, 55):
                out["description"] = None
            if version >= (2, 61):
                out["extra_specs"] = {}
        return out

    def _find_flavor(self, ident):
        try:
            return self.lab.compute.get_flavor(ident)
        except NotFound:
            return None

    async def list_flavors(self, request, detail=False):
        """``GET /flavors``."""
        flavors = await blocking(self.lab.compute.list_flavors)
        return json_response({"flavors": [self.flavor_view(f, request[VERSION], detail) for f in flavors]})

    async def list_flavors_detail(self, request):
        """``GET /flavors/detail``."""
        return await self.list_flavors(request, detail=True)

    async def show_flavor(self, request):
        """``GET /flavors/{id}``."""
        flavor = self._find_flavor(request.match_info["id"])
        if flavor is None:
            raise ApiError(404, f"Flavor {request.match_info['id']} could not be found.")
        return json_response({"flavor": self.flavor_view(flavor, request[VERSION])})

    async def flavor_extra_specs(self, request):
        """``GET /flavors/{id}/os-extra_specs``: the lab's flavors have none."""
        if self._find_flavor(request.match_info["id"]) is None:
            raise ApiError(404, f"Flavor {request.match_info['id']} could not be found.")
        return json_response({"extra_specs": {}})

    async def create_flavor(self, request):
        """``POST /flavors`` (admin): a new flavor; its id is its name."""
        ctx = request[CONTEXT]
        if not ctx.is_admin:
            raise ApiError(403, "Policy doesn't allow os_compute_api:os-flavor-manage:create to be performed.",
                           fault="forbidden")
        body = await json_body(request, "flavor")
        name = field(body, "name", str, required=True, path="flavor/name")
        ident = field(body, "id", str, path="flavor/id")
        if ident not in (None, "", name):
            raise ApiError(400, f"Invalid input for field/attribute flavor/id: the lab's flavor ids are their "
                                f"names; leave id out or give {name!r}")
        vcpus = field(body, "vcpus", int, required=True, path="flavor/vcpus")
        ram = field(body, "ram", int, required=True, path="flavor/ram")
        disk = field(body, "disk", int, default=0, path="flavor/disk")
        flavor = await blocking(self.lab.compute.create_flavor, name, vcpus, ram, disk)
        return json_response({"flavor": self.flavor_view(flavor, request[VERSION])})

    async def delete_flavor(self, request):
        """``DELETE /flavors/{id}`` (admin)."""
        if not request[CONTEXT].is_admin:
            raise ApiError(403, "Policy doesn't allow os_compute_api:os-flavor-manage:delete to be performed.",
                           fault="forbidden")
        flavor = self._find_flavor(request.match_info["id"])
        if flavor is None:
            raise ApiError(404, f"Flavor {request.match_info['id']} could not be found.")
        await blocking(self.lab.compute.delete_flavor, flavor.name)
        return web.Response(status=202)

    # -- servers

    def _status(self, server):
        """(status, vm_state, task_state, power_state) as Nova shows them."""
        status = server.status
        task, done = self._tasks.get(server.id, (None, None))
        if task and not done.is_set():
            # accepted (202) but not finished: it shows at once, as Nova sets task_state first
            # (whatever the domain passes through meanwhile: a revert pauses it a moment)
            if task in TASK_STATUS and status not in ("ERROR", "DELETED"):
                status = TASK_STATUS[task]
        elif task == "rebooting_hard" and status == "REBOOT":
            status = "HARD_REBOOT"      # the lab's REBOOT does not say how; the API remembers
        elif task:
            self._tasks.pop(server.id, None)
            task = None
        vm_state, default_task = VM_STATES.get(status, ("active", None))
        power = getattr(server, "power_state", None)
        if isinstance(power, str):
            power_code = POWER_STATES.get(power, 0)
        else:
            power_code = 1 if status in ("ACTIVE", "BUILD", "REBOOT", "HARD_REBOOT", "RESIZE") else 4
        return status, vm_state, task or default_task, power_code

    def server_view(self, server, version, detail=True):
        """A server as Nova shows it at microversion ``version``."""
        out = {"id": server.id, "name": server.name, "links": self.link("servers", server.id)}
        if not detail:
            return out
        project, user = self._owner(server)
        props = server.properties
        status, vm_state, task, power = self._status(server)
        if status == "ACTIVE":
            self._launched.setdefault(server.id, time.time())
        image = self.api.images.find_by_name(server.image)
        image_ref = {"id": image["id"], "links": [{"rel": "bookmark",
                                                   "href": f"{self.base}/images/{image['id']}"}]} if image else ""
        if image and version >= (2, 98):
            image_ref["properties"] = {k: v for k, v in image.items() if k in ("os_distro",)}
        flavor = server.flavor
        if version >= (2, 47):
            flavor_ref = {"vcpus": flavor.vcpus, "ram": flavor.ram_mib, "disk": flavor.disk_gib, "ephemeral": 0,
                          "swap": 0, "original_name": flavor.name, "extra_specs": {}}
        else:
            flavor_ref = {"id": flavor.name, "links": [{"rel": "bookmark",
                                                        "href": f"{self.base}/flavors/{flavor.name}"}]}
        addresses = {}
        if status not in ("SHUTOFF", "ERROR"):
            for port in self.api.networks.server_ports(server):
                addresses.setdefault(port["network_name"], []).extend(
                    {"version": 4, "addr": ip["ip_address"], "OS-EXT-IPS:type": "fixed",
                     "OS-EXT-IPS-MAC:mac_addr": port["mac_address"]} for ip in port["fixed_ips"])
        created = iso(server.created)
        out.update({
            "status": status, "tenant_id": project, "user_id": user,
            "metadata": json.loads(props.get("metadata") or "{}"),
            # as Nova: a hash of project and host, so a project sees which of its servers share a host
            "hostId": hashlib.sha224(f"{project}{server.host}".encode()).hexdigest(),
            "image": image_ref, "flavor": flavor_ref, "created": created, "updated": created,
            "addresses": addresses, "accessIPv4": "", "accessIPv6": "", "progress": 0,
            "config_drive": "", "key_name": None, "OS-DCF:diskConfig": "MANUAL",
            "OS-EXT-AZ:availability_zone": "nova", "OS-EXT-STS:vm_state": vm_state,
            "OS-EXT-STS:task_state": task, "OS-EXT-STS:power_state": power,
            "OS-SRV-USG:launched_at": iso(self._launched[server.id]).replace("Z", ".000000")
            if server.id in self._launched else None,
            "OS-SRV-USG:terminated_at": None, "security_groups": [{"name": "default"}],
            "os-extended-volumes:volumes_attached": [{"id": a["volumeId"]} if version < (2, 3) else
                                                     {"id": a["volumeId"], "delete_on_termination": False}
                                                     for a in self.api.attachments_of(server)],
        })
        if status == "ERROR":
            out["fault"] = {"code": 500, "created": created, "message": getattr(server, "_failed", None)
                            or "the server failed; its console log tells why"}
        if version >= (2, 3):
            out.update({"OS-EXT-SRV-ATTR:host": server.host, "OS-EXT-SRV-ATTR:hypervisor_hostname": server.host,
                        "OS-EXT-SRV-ATTR:instance_name": server.domain_name,
                        "OS-EXT-SRV-ATTR:hostname": server.name, "OS-EXT-SRV-ATTR:kernel_id": "",
                        "OS-EXT-SRV-ATTR:ramdisk_id": "", "OS-EXT-SRV-ATTR:launch_index": 0,
                        "OS-EXT-SRV-ATTR:reservation_id": "r-" + server.id[:8],
                        "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda", "OS-EXT-SRV-ATTR:user_data": None})
        if version >= (2, 9):
            out["locked"] = False
        if version >= (2, 16):
            out["host_status"] = "UP"
        if version >= (2, 19):
            out["description"] = props.get("description") or None
        if version >= (2, 26):
            out["tags"] = json.loads(props.get("tags") or "[]")
        if version >= (2, 63):
            out["trusted_image_certificates"] = None
        if version >= (2, 73):
            out["locked_reason"] = None
        if version >= (2, 96):
            out["pinned_availability_zone"] = None
        if version >= (2, 100):
            out["scheduler_hints"] = {}
        return out

    async def _servers_for(self, request):
        ctx = request[CONTEXT]
        all_projects = "all_tenants" in request.query and \
            request.query["all_tenants"].lower() not in ("0", "false", "no", "off")
        if not ctx.is_admin:
            all_projects = False      # as Nova: ignored for non-admins
        wanted_project = request.query.get("project_id") or request.query.get("tenant_id")
        servers = await blocking(self.lab.compute.list_servers)
        out = []
        for server in servers:
            project = self._owner(server)[0]
            if not all_projects and project != (wanted_project if ctx.is_admin and wanted_project
                                                else ctx.project_id):
                continue
            out.append(server)
        name = request.query.get("name")
        if name:
            try:
                pattern = re.compile(name)
            except re.error:
                raise ApiError(400, f"Invalid filter name={name!r}: not a regular expression") from None
            out = [s for s in out if pattern.search(s.name)]
        status = request.query.get("status")
        if status:
            out = [s for s in out if s.status == status.upper()]
        return out

    async def list_servers(self, request):
        """``GET /servers``: ids and names."""
        servers = await self._servers_for(request)
        return json_response({"servers": [self.server_view(s, request[VERSION], detail=False) for s in servers]})

    async def list_servers_detail(self, request):
        """``GET /servers/detail``."""
        servers = await self._servers_for(request)
        views = await blocking(lambda: [self.server_view(s, request[VERSION]) for s in servers])
        return json_response({"servers": views})

    async def show_server(self, request):
        """``GET /servers/{id}``."""
        server = await self._server(request)
        view = await blocking(self.server_view, server, request[VERSION])
        return json_response({"server": view})

    def _network_for(self, value):
        """The lab network a ``networks`` entry of a create request names (None: no NIC)."""
        if value == "none":
            return False
        if value == "auto":
            return None
        if not isinstance(value, list):
            raise ApiError(400, f"Invalid input for field/attribute networks. Value: {json.dumps(value)}. "
                                "It must be 'auto', 'none' or a list of {\"uuid\": ...}")
        if len(value) == 0:
            return False
        if len(value) > 1:
            raise ApiError(400, "the lab's servers have one network interface: give one network")
        entry = value[0]
        if not isinstance(entry, dict) or not (entry.get("uuid") or entry.get("port")):
            raise ApiError(400, f"Invalid input for field/attribute networks. Value: {json.dumps(value)}. "
                                "Each entry needs a uuid (a network) or a port")
        if entry.get("port"):
            raise ApiError(400, "the lab makes a server's port itself: give the network's uuid, not a port")
        network = self.api.networks.network_by_id(entry["uuid"])
        if network is None:
            raise ApiError(400, f"Network {entry['uuid']} could not be found.")
        return network["libvirt_name"]

    async def create_server(self, request):
        """``POST /servers``: boot a server from an image, with a flavor, on a network."""
        ctx = request[CONTEXT]
        self._writer(ctx)
        version = request[VERSION]
        body = await json_body(request, "server")
        name = field(body, "name", str, required=True, path="server/name")
        if not NAME_RE.match(name):
            raise ApiError(400, f"Invalid input for field/attribute server/name. Value: {name!r}. The lab's server "
                                "names are 1-40 letters, digits, '.', '_' or '-', starting with a letter or digit")
        image_ref = field(body, "imageRef", str, path="server/imageRef")
        flavor_ref = field(body, "flavorRef", (str, int), required=True, path="server/flavorRef")
        if body.get("block_device_mapping"):
            raise ApiError(400, "the lab's servers boot from an image: block_device_mapping is not supported")
        mappings = field(body, "block_device_mapping_v2", list, default=[], path="server/block_device_mapping_v2")
        for index, bdm in enumerate(mappings):
            # the image as the local root disk is what imageRef means too (the CLI sends both)
            if not isinstance(bdm, dict) or bdm.get("source_type") != "image" or \
                    bdm.get("destination_type", "local") != "local":
                raise ApiError(400, f"Invalid input for field/attribute server/block_device_mapping_v2/{index}: the "
                                    "lab's servers boot from an image onto a local disk; attach volumes after boot "
                                    "(openstack server add volume)")
            image_ref = image_ref or bdm.get("uuid")
        if not image_ref:
            raise ApiError(400, "Invalid input for field/attribute server/imageRef: give the image to boot from")
        for count in ("min_count", "max_count"):
            if field(body, count, int, default=1, path=f"server/{count}") != 1:
                raise ApiError(400, f"Invalid input for field/attribute server/{count}: the lab creates one "
                                    "server per request")
        if body.get("key_name"):
            raise ApiError(400, "Invalid key_name provided: the lab has no key pairs (its guests run commands "
                                "through their agent: server.run() in Python)")
        metadata = field(body, "metadata", dict, default={}, path="server/metadata")
        if any(not isinstance(k, str) or not isinstance(val, str) for k, val in metadata.items()):
            raise ApiError(400, "Invalid input for field/attribute server/metadata: keys and values are strings")
        description = field(body, "description", str, path="server/description") if version >= (2, 19) else None
        tags = field(body, "tags", list, default=[], path="server/tags") if version >= (2, 52) else []
        if "networks" in body:
            network = self._network_for(body["networks"])
        elif version >= (2, 37):
            raise ApiError(400, "Invalid input for field/attribute server/networks. 'networks' is a required "
                                "property from microversion 2.37 ('auto', 'none' or a list)")
        else:
            network = None
        flavor = self._find_flavor(str(flavor_ref))
        if flavor is None:
            raise ApiError(400, f"Flavor {flavor_ref} could not be found.")
        image = self.api.images.visible_image(ctx, image_ref)
        if image is None:
            raise ApiError(400, f"Image {image_ref} could not be found.")
        if image["status"] != "active":
            raise ApiError(400, f"Image {image_ref} is not active (it is {image['status']}): upload its data first")
        properties = {"project_id": ctx.project_id, "user_id": ctx.user_id, "metadata": json.dumps(metadata)}
        if description:
            properties["description"] = description
        if tags:
            properties["tags"] = json.dumps(tags)
        try:
            server = await blocking(self.lab.compute.create_server, name, image=image["name"], flavor=flavor.name,
                                    network=network, wait=False, properties=properties)
        except Conflict as exc:
            raise ApiError(409, f"{exc.message}: the lab's server names are unique across projects; "
                                "choose another name") from None
        except QuotaExceeded as exc:
            raise ApiError(403, f"Quota exceeded: {exc.message}", fault="overLimit") from None
        return json_response({"server": {"id": server.id, "links": self.link("servers", server.id),
                                         "OS-DCF:diskConfig": "MANUAL", "security_groups": [{"name": "default"}],
                                         "adminPass": ""}},
                             status=202, headers={"Location": f"{self.base}/v2.1/servers/{server.id}"})

    async def delete_server(self, request):
        """``DELETE /servers/{id}``: power off, undefine, remove the disk (done when the answer comes)."""
        ctx = request[CONTEXT]
        self._writer(ctx)
        server = await self._server(request)
        self._tasks[server.id] = ("deleting", threading.Event())
        try:
            for attachment in self.api.attachments_of(server):
                await blocking(self.api.detach, server, attachment["volumeId"])
            await blocking(self.lab.compute.delete_server, server)
        finally:
            self._tasks.pop(server.id, None)
            self._launched.pop(server.id, None)
        return web.Response(status=204)

    async def server_ips(self, request):
        """``GET /servers/{id}/ips``."""
        server = await self._server(request)
        view = await blocking(self.server_view, server, request[VERSION])
        return json_response({"addresses": view["addresses"]})

    # -- actions

    def _conflict(self, server, action, status):
        vm_state = VM_STATES.get(status, ("active", None))[0]
        return ApiError(409, f"Cannot '{action}' instance {server.id} while it is in vm_state {vm_state}")

    def _run_task(self, server, task, fn, *args, **kwargs):
        """Start ``fn`` in the background with ``task`` shown as the server's task_state meanwhile."""
        done = threading.Event()
        self._tasks[server.id] = (task, done)

        def run():
            try:
                fn(*args, **kwargs)
            finally:
                done.set()
        background(run)

    async def action(self, request):
        """``POST /servers/{id}/action``: os-start, os-stop, reboot, resize, confirm/revertResize, console."""
        ctx = request[CONTEXT]
        server = await self._server(request)
        body = await json_body(request)
        if len(body) != 1:
            raise ApiError(400, "Malformed request body: give exactly one action, e.g. {\"os-stop\": null}")
        (name, arg), = body.items()
        if name == "os-getConsoleOutput":
            length = (arg or {}).get("length") if isinstance(arg, dict) else None
            if length is not None and (not isinstance(length, (int, str)) or not str(length).lstrip("-").isdigit()):
                raise ApiError(400, f"Invalid input for field/attribute length. Value: {length!r}. "
                                    "It must be an integer")
            text = await blocking(server.console_log)
            if length is not None and int(length) >= 0:
                text = "\n".join(text.splitlines()[-int(length):]) if int(length) else ""
            return json_response({"output": text})
        self._writer(ctx)
        status = await blocking(lambda: server.status)
        if name == "os-start":
            if status != "SHUTOFF":
                raise self._conflict(server, "start", status)
            self._run_task(server, "powering-on", server.start, wait=False)
        elif name == "os-stop":
            if status in ("SHUTOFF", "DELETED"):
                raise self._conflict(server, "stop", status)
            self._run_task(server, "powering-off", server.stop)
        elif name == "reboot":
            kind = (arg or {}).get("type") if isinstance(arg, dict) else None
            if not isinstance(kind, str) or kind.upper() not in ("SOFT", "HARD"):
                raise ApiError(400, f"Invalid input for field/attribute type. Value: {kind!r}. "
                                    "'type' must be one of 'SOFT', 'HARD'")
            if status in ("SHUTOFF", "ERROR") and kind.upper() == "SOFT":
                raise self._conflict(server, "reboot", status)
            hard = kind.upper() == "HARD"
            if status == "SHUTOFF":
                self._run_task(server, "rebooting_hard", server.start, wait=False)
            else:
                self._run_task(server, "rebooting_hard" if hard else "rebooting", server.reboot,
                               hard=hard, wait=False)
        elif name == "resize":
            ref = (arg or {}).get("flavorRef") if isinstance(arg, dict) else None
            if not isinstance(ref, (str, int)):
                raise ApiError(400, "Invalid input for field/attribute flavorRef. 'flavorRef' is a required property")
            flavor = self._find_flavor(str(ref))
            if flavor is None:
                raise ApiError(400, f"Flavor {ref} could not be found.")
            if status not in ("ACTIVE", "SHUTOFF"):
                raise self._conflict(server, "resize", status)
            if flavor.name == server.flavor.name:
                raise ApiError(400, "When resizing, instances must change flavor!")
            if flavor.disk_gib < server.flavor.disk_gib:
                raise ApiError(400, f"Resize error: flavor {flavor.name}'s disk ({flavor.disk_gib} GiB) is smaller "
                                    f"than the server's ({server.flavor.disk_gib} GiB); disks only grow")
            self._run_task(server, "resize_prep", self.lab.compute.resize_server, server, flavor.name, wait=False)
        elif name in ("confirmResize", "revertResize"):
            method = getattr(self.lab.compute, "confirm_resize" if name == "confirmResize" else "revert_resize", None)
            if method is None:
                raise ApiError(501, f"{name} needs a compute service with resize confirmation", fault="notImplemented")
            if status != "VERIFY_RESIZE":
                raise self._conflict(server, name, status)
            if name == "confirmResize":
                await blocking(method, server)
            else:
                self._run_task(server, "resize_reverting", method, server, wait=False)
        else:
            raise ApiError(400, f"There is no such action: {name}" +
                           ("" if name not in ("os-pause", "os-unpause", "suspend", "resume", "shelve", "unshelve",
                                               "createImage", "migrate", "os-migrateLive", "rebuild", "lock")
                            else " in the lab (its servers start, stop, reboot and resize)"))
        return web.Response(status=202)

    # -- volume attachments (through the block storage API when the lab has one)

    async def list_attachments(self, request):
        """``GET /servers/{id}/os-volume_attachments``."""
        server = await self._server(request)
        return json_response({"volumeAttachments": [self._attachment_view(server, a, request[VERSION])
                                                    for a in self.api.attachments_of(server)]})

    def _attachment_view(self, server, attachment, version):
        out = {"id": attachment["volumeId"], "volumeId": attachment["volumeId"], "serverId": server.id,
               "device": attachment.get("device")}
        if version >= (2, 70):
            out["tag"] = None
        if version >= (2, 79):
            out["delete_on_termination"] = False
        if version >= (2, 89):
            out.pop("id")
            out["attachment_id"] = attachment.get("attachment_id")
            out["bdm_uuid"] = attachment.get("attachment_id")
        return out

    async def show_attachment(self, request):
        """``GET /servers/{id}/os-volume_attachments/{volume}``."""
        server = await self._server(request)
        for attachment in self.api.attachments_of(server):
            if attachment["volumeId"] == request.match_info["volume"]:
                return json_response({"volumeAttachment": self._attachment_view(server, attachment,
                                                                                 request[VERSION])})
        raise ApiError(404, f"Volume {request.match_info['volume']} is not attached to {server.id}")

    async def attach_volume(self, request):
        """``POST /servers/{id}/os-volume_attachments``: hot-plug a volume (``openstack server add volume``)."""
        ctx = request[CONTEXT]
        self._writer(ctx)
        server = await self._server(request)
        body = await json_body(request, "volumeAttachment")
        volume_id = field(body, "volumeId", str, required=True, path="volumeAttachment/volumeId")
        attachment = await blocking(self.api.attach, ctx, server, volume_id)
        return json_response({"volumeAttachment": self._attachment_view(server, attachment, request[VERSION])})

    async def detach_volume(self, request):
        """``DELETE /servers/{id}/os-volume_attachments/{volume}``."""
        ctx = request[CONTEXT]
        self._writer(ctx)
        server = await self._server(request)
        volume_id = request.match_info["volume"]
        if not any(a["volumeId"] == volume_id for a in self.api.attachments_of(server)):
            raise ApiError(404, f"Volume {volume_id} is not attached to {server.id}")
        await blocking(self.api.detach, server, volume_id)
        return web.Response(status=202)

    # -- small read-only documents clients ask for

    async def availability_zones(self, request):
        """``GET /os-availability-zone``: one zone, ``nova``, as an all-in-one deployment has."""
        return json_response({"availabilityZoneInfo": [{"zoneName": "nova", "zoneState": {"available": True},
                                                        "hosts": None}]})

    async def limits(self, request):
        """``GET /limits``: what the project uses (the lab's limit is the host's memory)."""
        ctx = request[CONTEXT]
        servers = [s for s in await blocking(self.lab.compute.list_servers) if self._owner(s)[0] == ctx.project_id]
        free = await blocking(self.lab.compute.host.free_memory_mib)
        used_ram = sum(s.flavor.ram_mib for s in servers)
        return json_response({"limits": {"rate": [], "absolute": {
            "maxTotalInstances": -1, "maxTotalCores": -1, "maxTotalRAMSize": used_ram + free,
            "maxServerMeta": 128, "maxImageMeta": 128, "maxPersonality": 5, "maxPersonalitySize": 10240,
            "maxTotalKeypairs": 0, "maxServerGroups": 0, "maxServerGroupMembers": 0,
            "maxSecurityGroups": -1, "maxSecurityGroupRules": -1, "maxTotalFloatingIps": 0,
            "totalInstancesUsed": len(servers), "totalCoresUsed": sum(s.flavor.vcpus for s in servers),
            "totalRAMUsed": used_ram, "totalSecurityGroupsUsed": 0, "totalFloatingIpsUsed": 0,
            "totalServerGroupsUsed": 0}}})

    async def extensions(self, request):
        """``GET /extensions``: none (Nova v2.1 has folded its extensions into the API)."""
        return json_response({"extensions": []})
