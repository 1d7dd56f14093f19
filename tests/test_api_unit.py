"""Unit tests of the OpenStack API layer: microversions, faults, JSON bodies, clouds.yaml, ownership fields.

No Keystone and no hypervisor: the HTTP parts run on aiohttp's test server with a token
check that knows one token, and the compute service on libvirt's ``test:///default``.
"""

import asyncio
import json
import re
import types

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

import cloudlab as cl
from cloudlab import compute as compute_mod
from cloudlab.api import _yaml_clouds
from cloudlab.api.auth import ServiceLogin, TokenInfo, TokenValidator, keystone_accounts, swift_account
from cloudlab.api.compute import MAX_VERSION, parse_version
from cloudlab.api.http import ApiError, field, json_body, middleware, nova_fault
from cloudlab.api.image import glance_fault
from cloudlab.api.network import neutron_fault


def request(headers=None, body=b""):
    req = make_mocked_request("POST", "/v2.1/servers", headers=headers or {})
    req._read_bytes = body
    return req


# -- microversions -----------------------------------------------------------------------

@pytest.mark.parametrize("headers, version", [
    ({}, (2, 1)),
    ({"OpenStack-API-Version": "compute 2.47"}, (2, 47)),
    ({"OpenStack-API-Version": "volume 3.5, compute 2.10"}, (2, 10)),
    ({"X-OpenStack-Nova-API-Version": "2.60"}, (2, 60)),
    ({"OpenStack-API-Version": "compute latest"}, MAX_VERSION),
])
def test_microversion_header_is_read(headers, version):
    assert parse_version(request(headers)) == version


@pytest.mark.parametrize("value, status", [("compute 2.999", 406), ("compute 1.9", 406), ("compute two", 400),
                                           ("compute 2.x", 400)])
def test_bad_microversions_are_refused(value, status):
    with pytest.raises(ApiError) as err:
        parse_version(request({"OpenStack-API-Version": value}))
    assert err.value.status == status
    if status == 406:
        assert "Minimum is 2.1 and maximum is 2.100" in err.value.message


# -- faults and bodies -------------------------------------------------------------------

def test_faults_have_each_services_shape():
    assert nova_fault(404, "gone") == {"itemNotFound": {"code": 404, "message": "gone"}}
    assert nova_fault(409, "busy") == {"conflictingRequest": {"code": 409, "message": "busy"}}
    assert nova_fault(403, "quota", fault="overLimit") == {"overLimit": {"code": 403, "message": "quota"}}
    assert neutron_fault(404, "no net", "NetworkNotFound")["NeutronError"]["type"] == "NetworkNotFound"
    assert glance_fault(400, "bad") == {"code": 400, "title": "Bad Request", "message": "bad"}


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("body, needle", [
    (b"", "needs a JSON body"),
    (b"{oops", "not valid JSON"),
    (b"[1]", "expected a JSON object"),
    (b'{"other": {}}', "'server' is a required property"),
    (b'{"server": 3}', "is not of type 'object'"),
])
def test_json_bodies_are_checked_and_the_field_named(body, needle):
    with pytest.raises(ApiError) as err:
        run(json_body(request(body=body), "server"))
    assert err.value.status == 400 and needle in err.value.message


def test_fields_are_typed():
    assert field({"a": 1}, "a", int) == 1
    assert field({}, "a", int, default=5) == 5
    with pytest.raises(ApiError, match="server/name. Value: 5. It must be of type str"):
        field({"name": 5}, "name", str, path="server/name")
    with pytest.raises(ApiError, match="'flavorRef' is a required property"):
        field({}, "flavorRef", str, required=True)
    with pytest.raises(ApiError, match="must be of type int"):
        field({"n": True}, "n", int)           # a bool is not a number here


class OneToken:
    """A token check that knows one token (the real one asks Keystone; see test_api_openstack.py)."""

    validator = types.SimpleNamespace(asked=0)
    info = TokenInfo("u1", "demo", "p1", "demo", ("member",), 2e9)

    async def context(self, req):
        if req.headers.get("X-Auth-Token") != "good":
            raise ApiError(401, "no", fault="unauthorized")
        return self.info


def test_middleware_turns_every_error_into_a_fault():
    async def boom(req):
        raise RuntimeError("secret internals /etc/passwd")

    async def missing(req):
        raise cl.NotFound("no server named x", fix="list them")

    async def main():
        app = web.Application(middlewares=[middleware(OneToken(), nova_fault, public=[lambda r: r.path == "/"])])
        app.router.add_get("/", lambda r: web.json_response({"ok": True}))
        app.router.add_get("/boom", boom)
        app.router.add_get("/missing", missing)
        async with TestClient(TestServer(app)) as client:
            assert (await client.get("/")).status == 200                  # public: no token
            denied = await client.get("/boom")
            assert denied.status == 401 and "unauthorized" in await denied.json()
            good = {"X-Auth-Token": "good"}
            crash = await client.get("/boom", headers=good)
            text = await crash.text()
            assert crash.status == 500 and "RuntimeError" in text
            assert "secret internals" not in text and "Traceback" not in text
            gone = await client.get("/missing", headers=good)
            assert gone.status == 404 and (await gone.json())["itemNotFound"]["message"].startswith("no server")
            nowhere = await client.get("/nowhere", headers=good)
            assert nowhere.status == 404 and "itemNotFound" in await nowhere.json()
            wrong = await client.delete("/missing", headers=good)
            assert wrong.status == 405 and "badMethod" in await wrong.json()
    run(main())


# -- tokens and clouds.yaml -----------------------------------------------------------

def test_token_document_is_read():
    body = {"expires_at": "2030-01-02T03:04:05.000000Z", "user": {"id": "u", "name": "demo"},
            "project": {"id": "p", "name": "demo"}, "roles": [{"name": "reader"}, {"name": "member"}]}
    info = TokenInfo.from_token(body)
    assert (info.user_name, info.project_id, info.roles) == ("demo", "p", ("member", "reader"))
    assert info.can_write and not info.is_admin
    assert not TokenInfo.from_token(dict(body, roles=[{"name": "reader"}])).can_write


def test_swift_account_rule_of_keystone_tokens():
    member = TokenInfo("u1", "demo", "p1", "demo", ("member",), 2e9)
    assert swift_account(member) == ("AUTH_p1", "p1:u1")
    assert swift_account(TokenInfo("u1", "demo", "p1", "demo", ("reader",), 2e9)) is None
    assert swift_account(TokenInfo("u1", "demo", "", "", ("member",), 2e9)) is None     # not project-scoped
    assert swift_account(None) is None


def test_a_keystone_that_cannot_be_asked_accepts_no_token():
    import socket
    with socket.socket() as closed:            # a loopback port that nothing listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        login = ServiceLogin(url, "swift", "pw")
        assert keystone_accounts(TokenValidator(login, "swift"))("gAAAAsome-token") is None
    with pytest.raises(cl.CloudlabError, match="'swift'"):
        login.service_token("nova")


def test_clouds_yaml_is_valid_yaml_for_any_password():
    clouds = {"cloudlab": {"auth_url": "http://127.0.0.1:5000/v3", "username": "demo", "password": "it's: #1",
                           "project_name": "demo"}}
    data = yaml.safe_load(_yaml_clouds(clouds))
    assert data["clouds"]["cloudlab"]["auth"]["password"] == "it's: #1"
    assert data["clouds"]["cloudlab"]["region_name"] == "RegionOne"


# -- where the API keeps a resource's project ------------------------------------------

NODE_XML = """<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads>
  <active>2</active><mhz>2000</mhz><model>x86_64</model></cpu><memory>25165824</memory>
  <network><name>default</name><bridge name='virbr0'/><ip address='192.168.122.1' netmask='255.255.255.0'>
  <dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp></ip></network></node>"""


@pytest.fixture
def compute(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDLAB_HOME", str(tmp_path / "home"))
    node = tmp_path / "node.xml"
    node.write_text(NODE_XML)
    host = compute_mod.LibvirtHost(f"test://{node}")
    service = compute_mod.Compute(cl.Lab(name="apiunit"), host=host).start()
    yield service
    service.stop()
    host.stop()


def test_server_properties_live_in_the_domain(compute):
    server = compute.create_server("owned", wait=False, properties={"project_id": "p1", "user_id": "u1"})
    assert server.properties == {"project_id": "p1", "user_id": "u1"}
    compute._servers.clear()                 # read back from libvirt, as after a restart
    again = compute.get_server("owned")
    assert again.properties["project_id"] == "p1"
    assert json.loads(json.dumps(again.properties)) == again.properties
    for bad in ({"a": 1}, {"": "x"}, ["a"]):
        with pytest.raises(cl.InvalidInput):
            compute.create_server("bad", wait=False, properties=bad)
    assert [s.name for s in compute.list_servers()] == ["owned"]


def test_image_properties_live_in_the_manifest(tmp_path, monkeypatch):
    import subprocess
    from cloudlab.image import ImageService
    monkeypatch.setenv("CLOUDLAB_HOME", str(tmp_path / "home"))
    disk = tmp_path / "d.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "8M"], check=True)
    images = ImageService()
    with pytest.raises(cl.InvalidInput):
        images.import_image("propbad", disk, properties={"owner": 5})
    assert "propbad" not in images.names()
    image = images.import_image("proptest", disk, properties={"owner": "p1", "visibility": "private"})
    assert images.get_image("proptest").properties == {"owner": "p1", "visibility": "private"}
    assert image.properties["owner"] == "p1"
    images.delete_image("proptest")


# -- the block storage and shared file systems APIs' microversions ------------------------

def test_cinder_and_manila_microversions_are_read():
    from cloudlab.api.block_storage import MICROVERSIONS as CINDER
    from cloudlab.api.shared_file_system import MICROVERSIONS as MANILA
    assert CINDER.parse(request()) == (3, 0)
    assert CINDER.parse(request({"OpenStack-API-Version": "compute 2.5, volume 3.27"})) == (3, 27)
    assert CINDER.parse(request({"OpenStack-API-Version": "volume latest"})) == (3, 71)
    assert MANILA.parse(request({"X-OpenStack-Manila-API-Version": "2.45"})) == (2, 45)
    # keystoneauth sends both headers; manilaclient's own wins
    assert MANILA.parse(request({"OpenStack-API-Version": "shared-file-system 2.9",
                                 "X-OpenStack-Manila-API-Version": "2.10"})) == (2, 10)
    for parser, value, status in ((CINDER, {"OpenStack-API-Version": "volume 3.72"}, 406),
                                  (CINDER, {"OpenStack-API-Version": "volume 2.0"}, 406),
                                  (CINDER, {"OpenStack-API-Version": "volume x"}, 400),
                                  (MANILA, {"X-OpenStack-Manila-API-Version": "2.98"}, 406)):
        with pytest.raises(ApiError) as err:
            parser.parse(request(value))
        assert err.value.status == status


def test_cinder_overlimit_fault_has_retry_after():
    from cloudlab.api.block_storage import cinder_fault
    assert cinder_fault(413, "too many", "overLimit") == {"overLimit": {"code": 413, "message": "too many",
                                                                         "retryAfter": "0"}}
    assert cinder_fault(404, "gone") == {"itemNotFound": {"code": 404, "message": "gone"}}


def test_volumes_and_shares_keep_properties(tmp_path, monkeypatch):
    from cloudlab.block_storage import BlockStorage
    monkeypatch.setenv("CLOUDLAB_HOME", str(tmp_path / "home"))
    lab = cl.Lab(name="propvol")
    storage = BlockStorage(lab).start()
    try:
        with pytest.raises(cl.InvalidInput):
            storage.create_volume("bad", size=1, properties={"project_id": 5})
        assert storage.list_volumes() == []
        volume = storage.create_volume("owned", size=1, properties={"project_id": "p1"})
        snapshot = storage.create_snapshot(volume, "snap", properties={"project_id": "p1"})
        again = BlockStorage(lab).start()           # read back from the records, as after a restart
        assert again.get_volume("owned").properties == {"project_id": "p1"}
        assert again.get_snapshot(snapshot.id).properties == {"project_id": "p1"}
    finally:
        storage.stop()


# -- the database API (Trove): its faults and the checks of its bodies ---------------------

def test_trove_faults_are_named_as_trove_names_them():
    from cloudlab.api.database import trove_fault
    assert trove_fault(404, "gone") == {"itemNotFound": {"code": 404, "message": "gone"}}
    # webob's class names, not Nova's: HTTPConflict -> conflict, a 500 is an instanceFault
    assert list(trove_fault(409, "taken")) == ["conflict"]
    assert list(trove_fault(422, "busy")) == ["unprocessableEntity"]
    assert list(trove_fault(500, "oops")) == ["instanceFault"]
    assert list(trove_fault(403, "no", fault="forbidden")) == ["forbidden"]


def test_trove_refuses_an_action_on_a_busy_instance():
    from cloudlab.api.database import available
    ready = types.SimpleNamespace(name="db1", status="ACTIVE")
    assert available(ready) is ready
    for status in ("BUILD", "REBOOT", "RESIZE", "ERROR"):
        with pytest.raises(ApiError) as err:
            available(types.SimpleNamespace(name="db1", status=status))
        assert err.value.status == 422 and f"status was {status}" in err.value.message


@pytest.mark.parametrize("value, size", [(1, 1), ("2", 2), (" 3 ", 3)])
def test_trove_volume_sizes_are_whole_numbers(value, size):
    from cloudlab.api.database import volume_size
    assert volume_size(value, "instance/volume/size") == size


@pytest.mark.parametrize("value", ["abc", 1.5, True, None, [1], "-1"])
def test_trove_bad_volume_sizes_name_the_field(value):
    from cloudlab.api.database import volume_size
    with pytest.raises(ApiError) as err:
        volume_size(value, "resize/volume/size")
    assert err.value.status == 400 and "resize/volume/size" in err.value.message


def test_trove_databases_and_users_bodies_are_checked():
    from cloudlab.api.database import DatabaseAPI
    assert DatabaseAPI._databases([{"name": "a"}, {"name": "b"}], "databases") == ["a", "b"]
    assert DatabaseAPI._users([{"name": "u", "password": "pw", "databases": [{"name": "a"}]}], "users") == \
        [{"name": "u", "password": "pw", "databases": ["a"]}]
    for bad, needle in (("notes", "databases: it must be a list"), (["notes"], "databases[0]"),
                        ([{"name": 5}], "databases[0]")):
        with pytest.raises(ApiError, match=re.escape(needle)):
            DatabaseAPI._databases(bad, "databases")
    for bad, needle in (({"name": "u"}, "users: it must be a list"), ([{"name": "u"}], "users[0]/password"),
                        ([{"password": "pw"}], "users[0]/name"),
                        ([{"name": "u", "password": "pw", "databases": "a"}], "users[0]/databases")):
        with pytest.raises(ApiError, match=re.escape(needle)):
            DatabaseAPI._users(bad, "users")


def test_trove_datastore_ids_are_stable_and_distinct():
    from cloudlab.api.database import stable_id
    assert stable_id("postgresql") == stable_id("postgresql")
    assert len({stable_id("postgresql"), stable_id("postgresql", "15"), stable_id("postgresql", "16")}) == 3
