"""The real OpenStack clients against the lab: python-openstackclient, openstacksdk, python-swiftclient.

One lab serves the whole module: the real Keystone, then Nova, Glance and Neutron over
the lab's services and Swift's object store, all on loopback; servers boot on the lab
host's libvirt inside the test network namespace.  Three boots in all: one server the
CLI creates and takes through its lifecycle, one created with openstacksdk, one that
another project must not see.

Runs only inside the lab's network namespace (``CLOUDLAB_NETNS``, set by ``make test``).
"""

import hashlib
import json
import os
import subprocess
import time

import pytest
import requests

import cloudlab as cl
from cloudlab import config

pytestmark = [pytest.mark.lab, pytest.mark.slow]
BOOT_TIMEOUT = 120


@pytest.fixture(scope="module")
def lab():
    if not config.netns():
        pytest.skip("lab tests run inside a network namespace: set CLOUDLAB_NETNS (make test does)")
    lab = cl.Lab(name="ostest")
    lab.api     # noqa: B018 - starts Keystone and the APIs
    yield lab
    lab.stop()


@pytest.fixture(scope="module")
def api(lab):
    return lab.api


def osc(api, *args, cloud="cloudlab"):
    """Run `openstack ARGS -f json` and decode its output."""
    result = api.cli(*args, "-f", "json", cloud=cloud)
    return json.loads(result.stdout) if result.stdout.strip() else None


def token(api, user="demo"):
    return api.lab.identity.issue_token(user)[0]


# -- identity and the catalog -----------------------------------------------------------

def test_token_issue_is_project_scoped(api):
    issued = osc(api, "token", "issue")
    assert issued["project_id"] == api.lab.identity.project_id("demo")
    assert issued["user_id"] == api.lab.identity.user_id("demo")
    # the same token, validated by Keystone as a service would
    body = api.lab.identity.validate(issued["id"])
    assert body["project"]["name"] == "demo"
    assert "member" in {r["name"] for r in body["roles"]}


def test_catalog_lists_every_running_service(api):
    catalog = {entry["Type"]: entry for entry in osc(api, "catalog", "list")}
    assert {"identity", "compute", "image", "network", "object-store"} <= set(catalog)
    swift = catalog["object-store"]["Endpoints"][0]["url"]
    assert swift.endswith("/v1/AUTH_" + api.lab.identity.project_id("demo"))
    assert catalog["compute"]["Endpoints"][0]["url"].endswith("/v2.1")


def test_version_documents_need_no_token(api):
    nova = requests.get(api.urls["compute"] + "/v2.1", timeout=10).json()["version"]
    assert (nova["min_version"], nova["version"], nova["status"]) == ("2.1", "2.100", "CURRENT")
    glance = requests.get(api.urls["image"] + "/", timeout=10)
    assert glance.status_code == 300 and glance.json()["versions"][0]["id"].startswith("v2.")
    neutron = requests.get(api.urls["network"] + "/", timeout=10).json()
    assert neutron["versions"][0]["id"] == "v2.0"
    keystone = requests.get(api.lab.identity.auth_url, timeout=10).json()
    assert keystone["version"]["id"].startswith("v3.")


def test_admin_and_course_clouds_are_written(api):
    text = api.clouds_yaml.read_text()
    assert "cloudlab:" in text and "cloudlab-admin:" in text
    assert oct(api.clouds_yaml.stat().st_mode & 0o777) == "0o600"
    # this process reads its own lab's file; the shared one is what a terminal uses (the newest
    # lab's: a graded copy of a lab running meanwhile may have written it since)
    assert os.environ["OS_CLIENT_CONFIG_FILE"] == str(api.clouds_yaml)
    shared = config.home() / "clouds.yaml"
    assert "cloudlab:" in shared.read_text() and oct(shared.stat().st_mode & 0o777) == "0o600"
    env = dict(os.environ, OS_CLOUD="cloudlab")
    out = subprocess.run([api.cli_path(), "project", "list", "--my-projects", "-f", "value", "-c", "Name"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["demo"]
    admin = osc(api, "user", "list", cloud="cloudlab-admin")
    assert {"admin", "demo", "nova", "glance", "neutron", "swift"} <= {u["Name"] for u in admin}


# -- compute, image, network through the CLI -------------------------------------------

def test_flavor_image_network_lists(api, lab):
    flavors = {f["Name"]: f for f in osc(api, "flavor", "list")}
    assert flavors["m1.tiny"]["RAM"] == 128 and flavors["m1.tiny"]["VCPUs"] == 1
    images = {i["Name"]: i for i in osc(api, "image", "list")}
    assert images["busybox"]["Status"] == "active"
    networks = osc(api, "network", "list")
    assert [n["Name"] for n in networks] == [lab.host.network]
    subnet = osc(api, "subnet", "show", networks[0]["Subnets"][0])
    assert subnet["cidr"] == str(lab.host.subnet) and subnet["gateway_ip"] == lab.host.gateway


def test_server_lifecycle_through_the_cli(api, lab):
    net = lab.host.network
    created = osc(api, "server", "create", "--image", "busybox", "--flavor", "m1.tiny", "--network", net,
                  "--wait", "cli1")
    assert created["status"] == "ACTIVE"
    server = lab.compute.get_server("cli1")
    assert created["id"] == server.id         # the API's id is the libvirt domain's UUID
    assert server.properties["project_id"] == lab.identity.project_id("demo")

    listed = {s["Name"]: s for s in osc(api, "server", "list")}
    assert listed["cli1"]["Status"] == "ACTIVE" and listed["cli1"]["Flavor"] == "m1.tiny"
    shown = osc(api, "server", "show", "cli1")
    assert shown["OS-EXT-SRV-ATTR:instance_name"] == server.domain_name
    assert shown["flavor"]["original_name"] == "m1.tiny"
    ips = server.wait_for_address(timeout=30)[net]
    ports = osc(api, "port", "list", "--server", "cli1")
    assert ports and ports[0]["Fixed IP Addresses"][0]["ip_address"] in ips
    console = api.cli("console", "log", "show", "cli1").stdout
    assert "cloudlab-ready" in console

    api.cli("server", "stop", "cli1")
    lab.compute.wait_for_server("cli1", status="SHUTOFF", timeout=60)
    assert osc(api, "server", "show", "cli1")["status"] == "SHUTOFF"
    # a stopped server cannot be stopped again: Nova's 409 conflictingRequest
    again = api.cli("server", "stop", "cli1", check=False)
    assert again.returncode != 0 and "vm_state stopped" in again.stderr
    api.cli("server", "start", "cli1")
    lab.compute.wait_for_server("cli1", timeout=BOOT_TIMEOUT)
    api.cli("server", "delete", "--wait", "cli1")
    assert "cli1" not in {s.name for s in lab.compute.list_servers()}
    assert osc(api, "server", "list") == []


def test_image_create_upload_show_delete(api, lab, tmp_path):
    disk = tmp_path / "tiny.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    made = osc(api, "image", "create", "--disk-format", "qcow2", "--container-format", "bare",
               "--file", str(disk), "apitest-tiny")
    try:
        assert made["status"] == "active"
        shown = osc(api, "image", "show", "apitest-tiny")
        assert shown["checksum"] == hashlib.md5(disk.read_bytes()).hexdigest()
        assert shown["visibility"] == "private" and shown["owner"] == lab.identity.project_id("demo")
        assert lab.image.get_image("apitest-tiny").properties["id"] == made["id"]
        saved = tmp_path / "saved.qcow2"
        api.cli("image", "save", "--file", str(saved), "apitest-tiny")
        assert saved.read_bytes() == disk.read_bytes()
        # another project does not see a private image
        lab.identity.create_project("other")
        lab.identity.create_user("other", project="other")
        api.write_clouds_yaml()
        assert "apitest-tiny" not in {i["Name"] for i in osc(api, "image", "list", cloud="cloudlab-other")}
    finally:
        api.cli("image", "delete", "apitest-tiny", check=False)
    assert "apitest-tiny" not in lab.image.names()


# -- the object store with Keystone tokens ----------------------------------------------

def test_containers_and_objects_through_the_cli(api, lab, tmp_path):
    api.cli("container", "create", "notes")
    assert "notes" in {c["Name"] for c in osc(api, "container", "list")}
    source = tmp_path / "hello.txt"
    source.write_text("hello from the openstack CLI\n")
    api.cli("object", "create", "--name", "hello.txt", "notes", str(source))
    assert [o["Name"] for o in osc(api, "object", "list", "notes")] == ["hello.txt"]
    saved = tmp_path / "saved.txt"
    api.cli("object", "save", "--file", str(saved), "notes", "hello.txt")
    assert saved.read_text() == source.read_text()
    # TempAuth still works beside Keystone, for its own account, which does not hold the project's data
    conn = lab.object_store.connection()
    assert "notes" not in {c["name"] for c in conn.get_account()[1]}


def test_swiftclient_with_a_keystone_token(api, lab):
    import swiftclient
    tok = token(api)
    url = f"{lab.object_store.url}/v1/AUTH_{lab.identity.project_id('demo')}"
    conn = swiftclient.Connection(preauthurl=url, preauthtoken=tok, retries=0)
    conn.put_container("swiftclient")
    conn.put_object("swiftclient", "a.txt", contents=b"abc")
    headers, body = conn.get_object("swiftclient", "a.txt")
    assert body == b"abc" and headers["etag"] == hashlib.md5(b"abc").hexdigest()
    # the same token does not open another project's account
    other = swiftclient.Connection(preauthurl=f"{lab.object_store.url}/v1/AUTH_test", preauthtoken=tok, retries=0)
    with pytest.raises(swiftclient.ClientException) as err:
        other.get_account()
    assert err.value.http_status == 403
    # swiftclient's own Keystone v3 login finds the storage URL in the catalog
    password, project = lab.identity.credentials("demo")
    v3 = swiftclient.Connection(authurl=lab.identity.auth_url, user="demo", key=password, auth_version="3",
                                os_options={"project_name": project, "user_domain_name": "Default",
                                            "project_domain_name": "Default"}, retries=0)
    assert "swiftclient" in {c["name"] for c in v3.get_account()[1]}


# -- openstacksdk -----------------------------------------------------------------------

def test_openstacksdk_creates_and_waits_for_a_server(api, lab):
    import openstack
    conn = openstack.connect(cloud="cloudlab")       # finds the lab through OS_CLIENT_CONFIG_FILE
    image = conn.image.find_image("busybox")
    flavor = conn.compute.find_flavor("m1.tiny")
    network = conn.network.find_network(lab.host.network)
    server = conn.compute.create_server(name="sdk1", image_id=image.id, flavor_id=flavor.id,
                                        networks=[{"uuid": network.id}])
    try:
        server = conn.compute.wait_for_server(server, status="ACTIVE", interval=0.5, wait=BOOT_TIMEOUT)
        assert server.status == "ACTIVE" and server.name == "sdk1"
        assert lab.compute.get_server("sdk1").status == "ACTIVE"
        output = conn.compute.get_server_console_output(server, length=5)["output"]
        assert "cloudlab-ready" in output
        # a hard reboot passes through HARD_REBOOT back to ACTIVE, with a fresh boot on the console
        boots = lab.compute.get_server("sdk1").console_log().count("cloudlab-ready")
        conn.compute.reboot_server(server, "HARD")
        # the 202 means accepted: the status shows the reboot at once (the SDK's wait returns at
        # once for a resource that already has the status it waits for, so read it again first)
        server = conn.compute.get_server(server)
        assert server.status == "HARD_REBOOT"
        server = conn.compute.wait_for_server(server, status="ACTIVE", interval=0.5, wait=BOOT_TIMEOUT)
        assert lab.compute.get_server("sdk1").status == "ACTIVE" and boots >= 1
        # resize: a bigger flavor, then (as Nova) confirm when the service asks for it
        conn.compute.resize_server(server, "m1.small")
        assert conn.compute.get_server(server).status == "RESIZE"
        deadline = time.monotonic() + BOOT_TIMEOUT
        while conn.compute.get_server(server).status not in ("ACTIVE", "VERIFY_RESIZE", "ERROR") or \
                lab.compute.get_server("sdk1").flavor.name != "m1.small":
            assert time.monotonic() < deadline, "resize did not finish"
            time.sleep(0.5)
        if conn.compute.get_server(server).status == "VERIFY_RESIZE":
            conn.compute.confirm_server_resize(server)
            conn.compute.wait_for_server(server, status="ACTIVE", interval=0.5, wait=BOOT_TIMEOUT)
        resized = conn.compute.get_server(server)
        assert resized.flavor["original_name"] == "m1.small" and resized.status == "ACTIVE"
        conn.object_store.create_container("sdk")
        conn.object_store.upload_object(container="sdk", name="greeting", data=b"hi from the sdk")
        assert conn.object_store.download_object("greeting", container="sdk") == b"hi from the sdk"
    finally:
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, interval=0.5, wait=60)
    assert "sdk1" not in {s.name for s in lab.compute.list_servers()}


# -- bad input: the faults clients expect, never a traceback ----------------------------

@pytest.fixture(scope="module")
def demo_server(api, lab):
    conn = api.connect()
    image = conn.image.find_image("busybox")
    server = conn.compute.create_server(name="owned", image_id=image.id, flavor_id="m1.tiny", networks="none")
    yield server
    conn.compute.delete_server(server)


def nova(api, method, path, tok, body=None, version=None, raw=None):
    headers = {"X-Auth-Token": tok, "Content-Type": "application/json"}
    if version:
        headers["OpenStack-API-Version"] = f"compute {version}"
    return requests.request(method, f"{api.urls['compute']}/v2.1{path}", headers=headers, timeout=30,
                            data=raw if raw is not None else (json.dumps(body) if body is not None else None))


def test_tokens_missing_garbage_or_revoked_are_401(api):
    no_token = requests.get(f"{api.urls['compute']}/v2.1/servers", timeout=10)
    assert no_token.status_code == 401
    assert no_token.headers["WWW-Authenticate"].startswith("Keystone uri=")
    assert "unauthorized" in no_token.json()
    assert nova(api, "GET", "/servers", "gAAAAABnot-a-token").status_code == 401
    # a token another Keystone issued (the same format, other keys) is not one of ours
    foreign = "gAAAAAB" + "x" * 170
    for url in (f"{api.urls['image']}/v2/images", f"{api.urls['network']}/v2.0/networks"):
        assert requests.get(url, headers={"X-Auth-Token": foreign}, timeout=10).status_code == 401
    tok = token(api)
    assert nova(api, "GET", "/servers", tok).status_code == 200
    api.lab.identity.client.call("DELETE", "/v3/auth/tokens", "revoking", headers={"X-Subject-Token": tok})
    time.sleep(0.1)
    # the API's cache keeps a valid answer a minute, as keystonemiddleware does; a new API asks again
    from cloudlab.api.auth import TokenValidator
    assert TokenValidator(api.lab.identity, "nova").validate(tok) is None


def test_another_projects_server_is_not_found(api, lab, demo_server):
    if "other" not in lab.identity.users():
        lab.identity.create_project("other")
        lab.identity.create_user("other", project="other")
    theirs = token(api, "other")
    shown = nova(api, "GET", f"/servers/{demo_server.id}", theirs)
    assert shown.status_code == 404 and "itemNotFound" in shown.json()
    assert nova(api, "DELETE", f"/servers/{demo_server.id}", theirs).status_code == 404
    assert nova(api, "GET", "/servers", theirs).json()["servers"] == []
    mine = nova(api, "GET", f"/servers/{demo_server.id}", token(api))
    assert mine.status_code == 200
    # the admin sees every project's servers when asking for all of them
    admin = token(api, "admin")
    every = nova(api, "GET", "/servers?all_tenants=1", admin).json()["servers"]
    assert demo_server.id in {s["id"] for s in every}


def test_microversions_are_negotiated(api, demo_server):
    tok = token(api)
    old = nova(api, "GET", f"/servers/{demo_server.id}", tok).json()["server"]
    assert old["flavor"]["id"] == "m1.tiny" and "description" not in old          # 2.1: a link to the flavor
    new = nova(api, "GET", f"/servers/{demo_server.id}", tok, version="2.47")
    assert new.headers["OpenStack-API-Version"] == "compute 2.47"
    assert new.json()["server"]["flavor"]["original_name"] == "m1.tiny"           # 2.47: embedded
    latest = nova(api, "GET", "/servers", tok, version="latest")
    assert latest.headers["OpenStack-API-Version"] == "compute 2.100"
    unknown = nova(api, "GET", "/servers", tok, version="2.999")
    assert unknown.status_code == 406 and "maximum is 2.100" in unknown.text
    assert nova(api, "GET", "/servers", tok, version="two").status_code == 400


def test_malformed_bodies_are_400_naming_the_field(api, demo_server):
    tok = token(api)
    bad = nova(api, "POST", "/servers", tok, raw="{not json", version="2.37")
    assert bad.status_code == 400 and "badRequest" in bad.json() and "JSON" in bad.text
    missing = nova(api, "POST", "/servers", tok, body={"server": {"name": "x", "imageRef": "y"}}, version="2.37")
    assert missing.status_code == 400 and "flavorRef" in missing.json()["badRequest"]["message"]
    typed = nova(api, "POST", "/servers", tok, body={"server": {"name": 5}}, version="2.37")
    assert typed.status_code == 400 and "server/name" in typed.text
    no_image = nova(api, "POST", "/servers", tok, version="2.37",
                    body={"server": {"name": "x", "imageRef": "0" * 32, "flavorRef": "m1.tiny", "networks": "none"}})
    assert no_image.status_code == 400 and "could not be found" in no_image.text
    reboot = nova(api, "POST", f"/servers/{demo_server.id}/action", tok, body={"reboot": {"type": "GENTLE"}})
    assert reboot.status_code == 400 and "SOFT" in reboot.text
    action = nova(api, "POST", f"/servers/{demo_server.id}/action", tok, body={"fly": None})
    assert action.status_code == 400 and "no such action" in action.text
    neutron = requests.get(f"{api.urls['network']}/v2.0/networks/nope", headers={"X-Auth-Token": tok}, timeout=10)
    assert neutron.status_code == 404 and neutron.json()["NeutronError"]["type"] == "NetworkNotFound"
    glance = requests.post(f"{api.urls['image']}/v2/images", data="[1, 2", timeout=10,
                           headers={"X-Auth-Token": tok, "Content-Type": "application/json"})
    assert glance.status_code == 400 and "JSON" in glance.json()["message"]
    for url in (f"{api.urls['compute']}/v2.1/nothing", f"{api.urls['image']}/v2/nothing"):
        answer = requests.get(url, headers={"X-Auth-Token": tok}, timeout=10)
        assert answer.status_code == 404 and answer.headers["Content-Type"].startswith("application/json")
        assert "Traceback" not in answer.text
