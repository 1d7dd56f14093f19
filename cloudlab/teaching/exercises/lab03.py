"""Lab 03's graded exercises: OpenStack's services and the real clients, checked against the live lab."""

from ..exercise import Check, exercise

SERVER = "ex-web"
CONTAINER = "ex-notes"
OBJECT = "hello.txt"
TEXT = "hello OpenStack"


def _api(lab):
    """The lab's OpenStack APIs, started by the notebook (None when they are not)."""
    if lab is None:
        return None
    return lab._services.get("api")


@exercise("03.1", title="Your project's id, from a token", points=2)
def project_id(lab, answer=None):
    """The learner reads the project id out of a token: ``openstack token issue``."""
    yield Check("answer is a project id (32 hex digits)", isinstance(answer, str) and len(answer) == 32
                and all(c in "0123456789abcdef" for c in answer),
                hint="answer = '...' with the project_id that `openstack token issue` prints")
    api = _api(lab)
    yield Check("the lab's OpenStack APIs run", api is not None, hint="run the cell with lab.api first")
    yield Check("it is the id Keystone gave project demo", answer == lab.identity.project_id("demo"),
                hint="issue the token as the cloud `cloudlab` (user demo in project demo)")


@exercise("03.2", title="Boot a server through the openstack CLI", points=3)
def boot_with_cli(lab, answer=None):
    """A server ``ex-web`` (m1.small) created through Nova's API, owned by project demo."""
    api = _api(lab)
    yield Check("the lab's OpenStack APIs run", api is not None, hint="run the cell with lab.api first")
    names = {s.name: s for s in lab.compute.list_servers()}
    yield Check(f"a server named {SERVER} exists", SERVER in names,
                hint=f"openstack server create --image busybox --flavor m1.small --network NET --wait {SERVER}")
    server = names[SERVER]
    yield Check("it came through the API, made by project demo",
                server.properties.get("project_id") == lab.identity.project_id("demo"),
                hint="create it with the openstack CLI (OS_CLOUD=cloudlab), not lab.compute.create_server")
    yield Check("its flavor is m1.small", server.flavor.name == "m1.small", hint="--flavor m1.small")
    yield Check("it is ACTIVE", server.status == "ACTIVE", hint="--wait waits until it is")


@exercise("03.3", title="An object in Swift, with your Keystone token", points=2)
def object_with_cli(lab, answer=None):
    """Container ``ex-notes`` holds ``hello.txt`` with the text ``hello OpenStack``, in project demo's account."""
    api = _api(lab)
    yield Check("the lab's OpenStack APIs run", api is not None, hint="run the cell with lab.api first")
    import swiftclient
    token = lab.identity.issue_token("demo")[0]
    url = f"{lab.object_store.url}/v1/AUTH_{lab.identity.project_id('demo')}"
    conn = swiftclient.Connection(preauthurl=url, preauthtoken=token, retries=0)
    containers = {c["name"] for c in conn.get_account()[1]}
    yield Check(f"project demo's account has a container {CONTAINER}", CONTAINER in containers,
                hint=f"openstack container create {CONTAINER}")
    objects = {o["name"] for o in conn.get_container(CONTAINER)[1]}
    yield Check(f"it holds {OBJECT}", OBJECT in objects,
                hint=f"write the file, then: openstack object create --name {OBJECT} {CONTAINER} FILE")
    body = conn.get_object(CONTAINER, OBJECT)[1].decode(errors="replace").strip()
    yield Check(f"its text is {TEXT!r}", body == TEXT, hint=f"the file should hold exactly: {TEXT}")


@exercise("03.4", title="From the API down to libvirt", points=2)
def instance_name(lab, answer=None):
    """The learner finds the libvirt domain behind ``ex-web`` in Nova's answer."""
    yield Check("answer is a name (a string)", isinstance(answer, str) and answer,
                hint="answer = '...': OS-EXT-SRV-ATTR:instance_name of `openstack server show`")
    servers = {s.name: s for s in lab.compute.list_servers()}
    yield Check(f"server {SERVER} exists (exercise 03.2)", SERVER in servers, hint="do exercise 03.2 first")
    server = servers[SERVER]
    yield Check("it is the libvirt domain of ex-web", answer == server.domain_name,
                hint="openstack server show ex-web -c OS-EXT-SRV-ATTR:instance_name")
    listed = lab.host.virsh("list", "--all", "--name").split()
    yield Check("libvirt lists that domain (virsh list --all)", answer in listed)


VOLUME = "ex-data"


@exercise("03.5", title="A Cinder volume on your server, through Nova", points=2)
def volume_through_nova(lab, answer=None):
    """Volume ``ex-data`` (1 GiB) created through Cinder's API and attached to ``ex-web`` through Nova's."""
    api = _api(lab)
    yield Check("the lab's OpenStack APIs run", api is not None, hint="run the cell with lab.api first")
    storage = lab._services.get("block_storage")
    volumes = {v.name: v for v in storage.list_volumes()} if storage is not None else {}
    yield Check(f"a volume named {VOLUME} exists", VOLUME in volumes,
                hint=f"openstack volume create --size 1 {VOLUME}")
    volume = volumes[VOLUME]
    yield Check("it came through the API, made by project demo",
                volume.properties.get("project_id") == lab.identity.project_id("demo"),
                hint="create it with the openstack CLI (OS_CLOUD=cloudlab), not lab.block_storage.create_volume")
    yield Check("its size is 1 GiB", volume.size == 1, hint="--size 1")
    yield Check(f"it is in-use on {SERVER}", volume.status == "in-use" and volume.servers == [SERVER],
                hint=f"openstack server add volume {SERVER} {VOLUME} (do exercise 03.2 first)")
