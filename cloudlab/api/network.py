"""Network API (Neutron v2.0) over the lab's network, read from libvirt.

Neutron models a cloud's networking as *networks* (a layer-2 segment), *subnets* (an
address range on a network, with its gateway and DHCP pool) and *ports* (one network
interface of a server: a MAC address and its fixed IP).  The lab has exactly these,
made by libvirt: the lab's network is a libvirt network (a Linux bridge with dnsmasq
for DHCP), its subnet is the bridge's /24 and DHCP range, and every server's NIC is a
port whose IP is dnsmasq's lease for its MAC.

Ids are libvirt's network UUID, and UUIDs derived from it for the subnet and from
the server id and MAC for ports.  The network is shared by every project and owned
by the admin project; a port belongs to its server's project.  The lab's network is
fixed: creating networks, subnets, routers or floating IPs is 501 with a message.
"""

import uuid
import xml.etree.ElementTree as ET

from aiohttp import web

from ..errors import CloudlabError
from .http import CONTEXT, ApiError, blocking, json_response, middleware

NOT_FOUND_TYPES = {"networks": "NetworkNotFound", "subnets": "SubnetNotFound", "ports": "PortNotFound"}
UPDATED = "2024-01-01T00:00:00Z"


def neutron_fault(status, message, fault=None):
    """A fault as Neutron writes it: ``{"NeutronError": {"type": ..., "message": ..., "detail": ""}}``."""
    kind = fault or {400: "BadRequest", 401: "Unauthorized", 403: "PolicyNotAuthorized", 404: "NotFound",
                     409: "Conflict", 501: "NotImplemented"}.get(status, "NeutronError")
    return {"NeutronError": {"type": kind, "message": message, "detail": ""}}


class NetworkAPI:
    """Neutron's v2.0 REST API over the lab host's network.

    Args:
        api: the :class:`~cloudlab.api.OpenStackAPI`.
        auth: the :class:`~cloudlab.api.auth.TokenCheck` for the ``neutron`` service user.
    """

    service_user = "neutron"
    catalog_name = "network"

    def __init__(self, api, auth):
        self.api = api
        self.lab = api.lab
        self.auth = auth
        self.base = None
        self._network = None
        self._macs = {}            # server id -> its NICs' MAC addresses

    def catalog(self):
        """The catalog entry: ``[(type, name, url, description)]``."""
        return [("network", "neutron", self.base, "Network: the lab's libvirt network")]

    def app(self):
        """The aiohttp application."""
        mw = middleware(self.auth, neutron_fault, public=[self._public], journal=self.api.journal,
                        service="neutron")
        app = web.Application(middlewares=[mw])
        r = app.router
        r.add_get("/", self.versions)
        r.add_get("/v2.0", self.resources)
        r.add_get("/v2.0/", self.resources)
        r.add_get("/v2.0/extensions", self.extensions)
        for kind in ("networks", "subnets", "ports"):
            r.add_get(f"/v2.0/{kind}", self._lister(kind))
            r.add_get(f"/v2.0/{kind}/{{id}}", self._shower(kind))
        for kind in ("networks", "subnets", "ports", "routers", "floatingips", "security-groups"):
            r.add_route("POST", f"/v2.0/{kind}", self.fixed)
        for kind in ("networks", "subnets", "ports"):
            r.add_route("PUT", f"/v2.0/{kind}/{{id}}", self.fixed)
            r.add_route("DELETE", f"/v2.0/{kind}/{{id}}", self.fixed)
        for kind in ("routers", "floatingips", "security-groups", "trunks", "qos/policies"):
            r.add_get(f"/v2.0/{kind}", self._empty(kind.split("/")[-1].replace("-", "_")))
        return app

    @staticmethod
    def _public(request):
        return request.method == "GET" and request.path == "/"

    async def versions(self, request):
        """``GET /``: Neutron's one version."""
        return json_response({"versions": [{"id": "v2.0", "status": "CURRENT",
                                            "links": [{"href": f"{self.base}/v2.0/", "rel": "self"}]}]})

    async def resources(self, request):
        """``GET /v2.0``: the collections."""
        return json_response({"resources": [
            {"name": name[:-1], "collection": name, "links": [{"href": f"{self.base}/v2.0/{name}", "rel": "self"}]}
            for name in ("networks", "subnets", "ports")]})

    async def extensions(self, request):
        """``GET /v2.0/extensions``: the few the lab's answers carry."""
        names = [("standard-attr-description", "Standard attribute description"),
                 ("project-id", "project_id field enabled"), ("network_availability_zone", "Network AZ")]
        return json_response({"extensions": [{"alias": a, "name": n, "description": n, "links": [],
                                              "updated": UPDATED} for a, n in names]})

    async def fixed(self, request):
        """Changes to the network: the lab's network is fixed."""
        raise ApiError(501, "the lab has one network, made by libvirt with the lab host; it cannot be changed "
                            "through the API (lab.host.network)", fault="NotImplemented")

    @staticmethod
    def _empty(collection):
        async def handler(request):
            return json_response({collection: []})
        return handler

    # -- the lab's network as Neutron records

    def network(self):
        """The lab network's record (with ``libvirt_name`` for the compute API), read once from libvirt."""
        if self._network is None:
            host = self.lab.host
            try:
                net = host.connect().networkLookupByName(host.network)
                xml = ET.fromstring(net.XMLDesc())
                net_id = net.UUIDString()
            except Exception as exc:  # libvirt's error, for a network that should be there
                raise CloudlabError(f"reading the lab network {host.network} from libvirt failed: {exc}",
                                    fix="python -m cloudlab host up") from None
            ip = xml.find("ip")
            dhcp = ip.find("dhcp/range") if ip is not None else None
            subnet_id = str(uuid.uuid5(uuid.UUID(net_id), "subnet"))
            owner = self.api.admin_project_id
            common = {"tenant_id": owner, "project_id": owner, "created_at": UPDATED, "updated_at": UPDATED,
                      "revision_number": 1, "tags": [], "description": ""}
            self._subnet = dict(common, id=subnet_id, name=f"{host.network}-subnet", network_id=net_id,
                                ip_version=4, cidr=str(host.subnet), gateway_ip=host.gateway, enable_dhcp=True,
                                allocation_pools=[{"start": dhcp.get("start"), "end": dhcp.get("end")}]
                                if dhcp is not None else [], dns_nameservers=[], host_routes=[],
                                ipv6_address_mode=None, ipv6_ra_mode=None, subnetpool_id=None,
                                service_types=[], segment_id=None,
                                description=f"libvirt network {host.network}: bridge {host.bridge}, DHCP by dnsmasq")
            self._network = dict(common, id=net_id, name=host.network, status="ACTIVE", admin_state_up=True,
                                 shared=True, subnets=[subnet_id], mtu=1500, **{"router:external": False},
                                 port_security_enabled=False, availability_zones=["nova"],
                                 availability_zone_hints=[], ipv4_address_scope=None, ipv6_address_scope=None,
                                 is_default=False, l2_adjacency=True, qos_policy_id=None, dns_domain="",
                                 description=f"the lab's network (libvirt network {host.network}, "
                                             f"bridge {host.bridge})", libvirt_name=host.network)
        return self._network

    def network_by_id(self, ident):
        """The network record with id or name ``ident``, or None."""
        net = self.network()
        return net if ident in (net["id"], net["name"]) else None

    def subnet(self):
        """The lab subnet's record."""
        self.network()
        return self._subnet

    def server_ports(self, server):
        """The ports of ``server``: one per NIC on the lab network, with its MAC and leased IP."""
        net = self.network()
        if server.network != net["libvirt_name"]:
            return []
        macs = self._macs.get(server.id)
        if macs is None:
            # once per server: a MAC never changes, and reading a running domain's XML makes
            # libvirt ask QEMU (its monitor), which slows a guest that is still booting
            try:
                xml = ET.fromstring(server.domain_xml())
            except CloudlabError:
                return []
            macs = self._macs[server.id] = [m.get("address") for m in xml.iter("mac") if m.get("address")]
        running = server.status not in ("SHUTOFF", "ERROR", "DELETED", "BUILD")
        addresses = server.addresses.get(server.network, []) if running else []
        owner = server.properties.get("project_id") or self.api.default_project_id
        ports = []
        for address in macs:
            ports.append({
                "id": str(uuid.uuid5(uuid.UUID(server.id), address)), "name": "", "network_id": net["id"],
                "network_name": net["name"], "mac_address": address, "admin_state_up": True,
                "status": "ACTIVE" if running else "DOWN", "device_id": server.id, "device_owner": "compute:nova",
                "fixed_ips": [{"subnet_id": self._subnet["id"], "ip_address": a} for a in addresses],
                "tenant_id": owner, "project_id": owner, "security_groups": [], "allowed_address_pairs": [],
                "extra_dhcp_opts": [], "binding:vnic_type": "normal", "port_security_enabled": False,
                "created_at": UPDATED, "updated_at": UPDATED, "revision_number": 1, "tags": [], "description": "",
                "dns_name": server.name, "dns_assignment": [], "qos_policy_id": None})
        return ports

    def _ports(self):
        ports = []
        for server in self.lab.compute.list_servers():
            ports += self.server_ports(server)
        return ports

    def _records(self, kind, ctx):
        if kind == "networks":
            records = [self.network()]
        elif kind == "subnets":
            records = [self.subnet()]
        else:
            records = [p for p in self._ports() if ctx.is_admin or p["project_id"] == ctx.project_id]
        return [{k: v for k, v in r.items() if k not in ("libvirt_name", "network_name")} for r in records]

    def _lister(self, kind):
        async def handler(request):
            records = await blocking(self._records, kind, request[CONTEXT])
            for key, value in request.query.items():
                if key in ("fields", "limit", "marker", "sort_key", "sort_dir"):
                    continue
                wanted = request.query.getall(key)
                records = [r for r in records if key not in r or str(r[key]).lower() in
                           [w.lower() for w in wanted] or (isinstance(r[key], bool) and
                                                           str(r[key]).lower() in [w.lower() for w in wanted])]
            return json_response({kind: records})
        return handler

    def _shower(self, kind):
        async def handler(request):
            ident = request.match_info["id"]
            for record in await blocking(self._records, kind, request[CONTEXT]):
                if record["id"] == ident:
                    return json_response({kind[:-1]: record})
            raise ApiError(404, f"{kind[:-1].capitalize()} {ident} could not be found.", fault=NOT_FOUND_TYPES[kind])
        return handler
