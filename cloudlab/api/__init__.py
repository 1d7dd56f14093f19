"""OpenStack's REST APIs over the lab: the real ``openstack`` CLI and openstacksdk drive it.

    lab = cl.Lab()
    api = lab.api                        # Keystone, then Nova, Glance, Neutron, Cinder, Manila, Trove, Swift
    api.cli("server", "list")            # the real python-openstackclient, OS_CLOUD=cloudlab
    conn = api.connect()                 # openstacksdk: conn.compute.create_server(...)

A request walks the same path as in any OpenStack cloud: the client logs in to
Keystone (:mod:`.identity`, the real Keystone) and gets a token and the service
catalog; it sends the token to the service's endpoint from the catalog; the service
(:mod:`.compute`, :mod:`.image`, :mod:`.network`, :mod:`.block_storage`,
:mod:`.shared_file_system`, :mod:`.database`, or the object store) validates the token with
Keystone (:mod:`.auth`) and calls the lab's service (``lab.compute``...), which calls libvirt.
Each API is an aiohttp server of its own on a loopback port (:mod:`.http`).

``clouds.yaml`` (``api.clouds_yaml``) names the lab's clouds: ``cloudlab`` (user
``demo`` in project ``demo``), ``cloudlab-admin``, and one ``cloudlab-USER`` per
course member.  It is written to the lab's home and to ``$CLOUDLAB_HOME/clouds.yaml``
(the newest lab's), and ``OS_CLIENT_CONFIG_FILE`` points the lab's process and its
children at it: ``!openstack`` in a notebook and ``OS_CLOUD=cloudlab openstack ...``
in JupyterLab's terminal (``make lab`` sets the variable) work without touching
``~/.config/openstack``; :meth:`OpenStackAPI.write_user_config` writes there only
when asked.
"""

import collections
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from .. import config
from ..errors import CloudlabError, InvalidInput, MissingPrerequisite, NotFound
from .auth import TokenCheck, TokenValidator
from .http import ApiServer
from .node_service import SERVED, ApiProcess

CLOUD = "cloudlab"
CLI_TIMEOUT_S = 300
JOURNAL_SIZE = 500
TIMING_LINE = re.compile(r'^[|" ]*(GET|POST|PUT|PATCH|DELETE|HEAD) (http\S+?)[" |,]')
# OpenStack's services, what each does, and the lab's part that plays it (service type, lab attribute)
SERVICES = [
    ("Keystone", "identity", "identity: users, projects, roles, tokens, the catalog", "identity",
     "the real Keystone (gunicorn, SQLite) started by the lab"),
    ("Nova", "compute", "compute: servers from flavors and images", "compute", "lab.compute: libvirt domains run by QEMU"),
    ("Glance", "image", "images servers boot from", "image", "lab.image: images built from Debian packages"),
    ("Neutron", "network", "networks, subnets, ports", "host", "lab.host: a libvirt network (bridge + dnsmasq DHCP)"),
    ("Cinder", "block-storage", "volumes attached to servers", "block_storage", "lab.block_storage (lab 07)"),
    ("Swift", "object-store", "objects in containers over HTTP", "object_store", "lab.object_store: Swift API + S3"),
    ("Manila", "shared-file-system", "shared file systems (NFS)", "shared_file_system",
     "lab.shared_file_system (lab 09)"),
    ("Trove", "database", "databases as a service", "database", "lab.database (lab 10)"),
    ("Horizon", "dashboard", "the web UI over all of the above", None,
     "not in the lab: JupyterLab and the openstack CLI are its consoles"),
]


# The REST APIs the lab serves: (attribute of OpenStackAPI, "module:Class").  Each class has
# ``service_user`` (its Keystone user, identity.SERVICE_USERS), ``catalog_name`` (its port's name
# in api.urls), ``app()`` and ``catalog()`` (its entries: [(type, name, url, description)]).
APIS = [
    ("compute", "cloudlab.api.compute:ComputeAPI"),
    ("images", "cloudlab.api.image:ImageAPI"),
    ("networks", "cloudlab.api.network:NetworkAPI"),
    ("volumes", "cloudlab.api.block_storage:BlockStorageAPI"),
    ("shares", "cloudlab.api.shared_file_system:SharedFileSystemAPI"),
    ("databases", "cloudlab.api.database:DatabaseAPI"),
]
# a service's other catalog types (clients look for either)
TYPE_ALIASES = {"block-storage": ("volumev3",), "shared-file-system": ("sharev2",)}


def _yaml_clouds(clouds):
    """``clouds.yaml`` text for ``{name: {auth...}}`` (flat strings only: no YAML library needed)."""
    lines = ["# written by cloudlab: the lab's clouds for openstack CLI and openstacksdk", "clouds:"]
    for name, auth in clouds.items():
        lines += [f"  {name}:", "    auth:"]
        # single-quoted YAML scalars: a quote inside is written twice
        lines += [f"      {key}: '{str(value).replace(chr(39), chr(39) * 2)}'" for key, value in auth.items()]
        lines += ["    region_name: RegionOne", "    interface: public", "    identity_api_version: 3"]
    return "\n".join(lines) + "\n"


class OpenStackAPI:
    """The lab's OpenStack APIs: Keystone plus Nova, Glance, Neutron, Cinder, Manila and Swift behind it.

    Args:
        lab: the :class:`~cloudlab.lab.Lab`.
    """

    def __init__(self, lab):
        self.lab = lab
        self.server = None
        self.urls = {}
        self._validators = {}
        self._lock = threading.Lock()
        self.compute = self.images = self.networks = self.volumes = self.shares = None
        self.processes = {}        # catalog name -> ApiProcess: the APIs run as a node's process
        self.journal = collections.deque(maxlen=JOURNAL_SIZE)   # the APIs' recent requests

    # -- lifecycle

    def start(self):
        """Start Keystone (if needed) and every API, fill the catalog, write clouds.yaml.

        Raises:
            MissingPrerequisite: Keystone is not installed (``make lab`` installs it).
        """
        identity = self.lab.identity
        try:
            self._start(identity)
        except BaseException:
            # nothing half-started stays: a node's API process, the loopback ports
            self.stop()
            raise
        return self

    def _start(self, identity):
        import importlib
        self.server = ApiServer()
        apis = []
        for attribute, where in APIS:
            module_name, class_name = where.split(":")
            cls = getattr(importlib.import_module(module_name), class_name)
            api = cls(self, self._check(cls.service_user))
            setattr(self, attribute, api)
            node = self._node_for(cls.catalog_name)
            if node is not None:
                # a process of the controller, as glance-api is; this process keeps an unserved copy
                # over the same files for Nova's and Cinder's image lookups (see node_service)
                process = self.processes[cls.catalog_name] = ApiProcess(self, cls.catalog_name, node)
                process.start()
                api.base = self.urls[cls.catalog_name] = process.url
            else:
                api.base = self.urls[cls.catalog_name] = self.server.add(cls.catalog_name, api.app())
            apis.append(api)
        self.server.start()
        store = self.lab.object_store
        # Keystone tokens open AUTH_<project id> (a store started after Keystone trusts it already)
        store.use_keystone(identity)
        self.urls["object-store"] = store.url
        identity.register("identity", "keystone", identity.auth_url, "OpenStack Identity (the real Keystone)")
        for api in apis:
            for kind, name, url, description in api.catalog():
                identity.register(kind, name, url, description)
        identity.register("object-store", "swift", f"{store.url}/v1/AUTH_$(project_id)s",
                          "Object storage: lab.object_store")
        self.write_clouds_yaml()

    def _node_for(self, name):
        """The node whose process serves API ``name`` (the controller of a multi-node layout), or None."""
        if name not in SERVED or len(self.lab.topology.nodes) < 2:
            return None
        return self.lab.nodes.controller

    @property
    def node(self):
        """The node running some of the APIs as processes of their own (the controller), or None."""
        return next((process.node for process in self.processes.values()), None)

    def resume(self):
        """Start the APIs' processes again after their node's power cut (:meth:`cloudlab.host.nodes.Node.start`)."""
        for process in self.processes.values():
            process.resume()
        return self

    def stop(self):
        """Stop the APIs and remove the lab's clouds.yaml (Keystone stops with the lab)."""
        if self.server is not None:
            self.server.stop()
            self.server = None
        for process in self.processes.values():
            process.stop()
        self.processes = {}
        if self.images is not None:
            self.images.close()
        shared = config.home() / "clouds.yaml"
        mine = self.clouds_yaml
        try:
            if shared.read_text() == mine.read_text():
                shared.unlink()
        except OSError:
            pass
        mine.unlink(missing_ok=True)

    def _validator(self, service_user):
        with self._lock:
            if service_user not in self._validators:
                self._validators[service_user] = TokenValidator(self.lab.identity, service_user)
            return self._validators[service_user]

    def _check(self, service_user):
        return TokenCheck(self._validator(service_user), self.lab.identity.auth_url)

    def requests(self, since=0, service=None):
        """The APIs' recent requests, oldest first: ``{service, method, path, status, ms, user, project, token}``.

        Args:
            since: skip the first ``since`` entries (``len(api.journal)`` taken before a command).
            service: only this one's (``nova``, ``glance``, ``neutron``).
        """
        self._read_node_journals()
        # in the order they were served: a node's entries are read in later than they happened
        entries = sorted(list(self.journal)[since:], key=lambda e: e.get("at", 0))
        return [e for e in entries if service is None or e["service"] == service]

    def _read_node_journals(self):
        """Append to the journal what the APIs running as a node's process served since the last read."""
        for process in list(self.processes.values()):
            self.journal.extend(process.new_entries())      # each writes a file of its own

    def service_map(self):
        """OpenStack's services beside the lab's parts: ``[{project, type, does, lab, running, endpoint}]``.

        ``running`` and ``endpoint`` are read from the lab and from Keystone's catalog now.
        """
        from ..lab import SERVICES as LAB_SERVICES
        catalog = {kind: url for kind, _, url in self.lab.identity.catalog()}
        rows = []
        for project, kind, does, attribute, part in SERVICES:
            exists = attribute in LAB_SERVICES if attribute else False
            rows.append({"project": project, "type": kind, "does": does, "lab": part,
                         "in the lab": "yes" if exists else "not yet" if attribute else "no",
                         "endpoint": catalog.get(kind) or next((catalog[a] for a in TYPE_ALIASES.get(kind, ())
                                                                   if a in catalog), "")})
        return rows

    # -- projects as the APIs see them

    @property
    def default_project_id(self):
        """The project that owns what the lab made without the API (the first course project, ``demo``)."""
        identity = self.lab.identity
        projects = list(identity.projects_wanted) or ["admin"]
        return identity.project_id(projects[0])

    @property
    def admin_project_id(self):
        """The admin project's id (it owns the lab's network and its built image)."""
        return self.lab.identity.project_id("admin")

    # -- volume attachments: Nova's os-volume_attachments, done by the block storage API

    def attachments_of(self, server):
        """The volumes attached to ``server``: ``[{"volumeId", "device", "attachment_id"}]``."""
        return self.volumes.attachments_of(server) if self.volumes is not None else []

    def attach(self, ctx, server, volume_id):
        """Attach the caller's volume ``volume_id`` to ``server`` (``openstack server add volume``)."""
        if self.volumes is None:
            from .http import ApiError
            raise ApiError(404, f"Volume {volume_id} could not be found: the lab serves no block storage API")
        return self.volumes.attach(ctx, server, volume_id)

    def detach(self, server, volume_id):
        """Detach volume ``volume_id`` from ``server`` (``openstack server remove volume``)."""
        if self.volumes is None:
            from .http import ApiError
            raise ApiError(404, f"Volume {volume_id} is not attached")
        self.volumes.detach(server, volume_id)

    # -- clients

    @property
    def clouds_yaml(self):
        """Path of the lab's own ``clouds.yaml`` (named with the lab's prefix: two labs of one name, as a grader
        runs them beside a learner's, do not overwrite each other's)."""
        return self.lab.home / f"{self.lab.prefix}clouds.yaml"

    def clouds(self):
        """The lab's clouds: ``{name: auth dict}`` as written to clouds.yaml."""
        identity = self.lab.identity
        out = {}
        order = identity.users(course_only=True)
        for cloud, user in ([(CLOUD, order[0])] if order else []) + [(f"{CLOUD}-admin", "admin")] + \
                [(f"{CLOUD}-{u}", u) for u in order[1:]]:
            password, project = identity.credentials(user)
            out[cloud] = {"auth_url": identity.auth_url, "username": user, "password": password,
                          "project_name": project, "user_domain_name": "Default", "project_domain_name": "Default"}
        return out

    def write_clouds_yaml(self):
        """Write clouds.yaml to the lab's home and ``$CLOUDLAB_HOME/clouds.yaml``; point ``OS_CLIENT_CONFIG_FILE`` at the lab's.

        The shared file is the one a terminal reads (``make lab`` points it there): the
        newest lab's.  This process uses its own lab's, so that another lab started
        meanwhile (a graded copy of the same notebook, say) is never the one it talks to.
        """
        text = _yaml_clouds(self.clouds())
        for path in (self.clouds_yaml, config.home() / "clouds.yaml"):
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")   # writers race
            tmp.write_text(text)
            tmp.chmod(0o600)
            os.replace(tmp, path)
        os.environ["OS_CLIENT_CONFIG_FILE"] = str(self.clouds_yaml)
        return self.clouds_yaml

    def write_user_config(self, path=None):
        """Add the lab's clouds to ``~/.config/openstack/clouds.yaml`` (only when asked: it is the user's file).

        Other clouds in that file are kept; earlier ``cloudlab*`` entries are replaced.
        Returns the path written.
        """
        import yaml
        target = Path(path or Path.home() / ".config" / "openstack" / "clouds.yaml")
        data = {}
        if target.exists():
            data = yaml.safe_load(target.read_text()) or {}
        clouds = {k: v for k, v in (data.get("clouds") or {}).items() if not str(k).startswith(CLOUD)}
        for name, auth in self.clouds().items():
            clouds[name] = {"auth": auth, "region_name": "RegionOne", "interface": "public",
                            "identity_api_version": 3}
        data["clouds"] = clouds
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(data, sort_keys=False))
        target.chmod(0o600)
        return target

    def env(self, cloud=CLOUD):
        """The environment for a client process: our clouds.yaml and ``OS_CLOUD``."""
        env = dict(os.environ)
        env["OS_CLIENT_CONFIG_FILE"] = str(self.clouds_yaml)
        env["OS_CLOUD"] = cloud
        env.pop("OS_AUTH_URL", None)
        return env

    def _check_cloud(self, cloud):
        if cloud not in self.clouds():
            raise NotFound(f"the lab has no cloud {cloud!r}", fix=f"use one of: {', '.join(self.clouds())}")

    def connect(self, cloud=CLOUD):
        """An openstacksdk ``Connection`` to the lab as ``cloud`` (``openstack.connect(cloud=...)``).

        Raises:
            MissingPrerequisite: openstacksdk is not installed.
        """
        self._check_cloud(cloud)
        try:
            import openstack
        except ImportError:
            raise MissingPrerequisite("openstacksdk is not installed", fix="run `make lab`") from None
        from openstack import config as os_config
        loader = os_config.OpenStackConfig(config_files=[str(self.clouds_yaml)])
        return openstack.connection.Connection(config=loader.get_one(cloud=cloud))

    @staticmethod
    def cli_path():
        """The ``openstack`` program of this Python's environment.

        Raises:
            MissingPrerequisite: python-openstackclient is not installed.
        """
        path = Path(sys.executable).parent / "openstack"
        if path.exists():
            return str(path)
        found = shutil.which("openstack")
        if not found:
            raise MissingPrerequisite("the openstack CLI (python-openstackclient) is not installed",
                                      fix="run `make lab`")
        return found

    def cli(self, *args, cloud=CLOUD, check=True, timeout=CLI_TIMEOUT_S, input=None):
        """Run the real ``openstack`` CLI against the lab and return its ``CompletedProcess`` (text).

        Args:
            args: the command, e.g. ``("server", "list", "-f", "json")``; a single string is split.
            cloud: which of the lab's clouds (``OS_CLOUD``).
            check: raise when the command fails.
        Raises:
            CloudlabError: the command failed (with ``check``); the message has its stderr.
        """
        if len(args) == 1 and isinstance(args[0], str):
            args = tuple(args[0].split())
        self._check_cloud(cloud)
        started = time.monotonic()
        try:
            result = subprocess.run([self.cli_path(), *map(str, args)], env=self.env(cloud), capture_output=True,
                                    text=True, timeout=timeout, input=input)
        except subprocess.TimeoutExpired:
            raise CloudlabError(f"openstack {' '.join(map(str, args))} did not finish within {timeout} s") from None
        result.seconds = time.monotonic() - started
        if check and result.returncode != 0:
            raise CloudlabError(f"openstack {' '.join(map(str, args))} failed ({result.returncode}): "
                                f"{result.stderr.strip()[-800:]}")
        return result

    def trace(self, *args, cloud=CLOUD):
        """Run one CLI command and follow it: what the client sent, what each API did, what it returned.

        Returns ``{"output": stdout, "client": [(method, url), ...], "server": [journal entries]}``:
        ``client`` comes from the CLI's own ``--timing`` report (Keystone's requests included),
        ``server`` from the APIs' journal (which names the token check: asked Keystone or cached).
        """
        if len(args) == 1 and isinstance(args[0], str):
            args = tuple(args[0].split())
        self._read_node_journals()      # what they served before the command is not its
        since = len(self.journal)
        result = self.cli("--timing", *args, cloud=cloud)
        client, output = [], []
        for line in result.stdout.splitlines():
            # the report is a table or CSV, as -f asks: | GET http://... | 0.01 |  or  "GET http://...",0.01
            found = TIMING_LINE.search(line)
            if found:
                client.append((found.group(1), found.group(2)))
            elif not client and not line.startswith(('"URL"', "+--", "| URL")):
                output.append(line)
        return {"output": "\n".join(output).strip(), "client": client, "server": self.requests(since)}

    def __repr__(self):
        return f"<OpenStackAPI {', '.join(f'{k}={v}' for k, v in self.urls.items()) or '(not started)'}>"


# -- command line: python -m cloudlab openstack -------------------------------------------

def add_arguments(parser):
    """Arguments of ``python -m cloudlab openstack``."""
    parser.add_argument("--name", default="os", help="the lab's name (default: os)")


def main(args):
    """Serve a lab's OpenStack APIs until Ctrl-C (or SIGTERM); prints where clouds.yaml is."""
    import signal
    from ..lab import Lab

    def interrupt(signum, frame):
        raise KeyboardInterrupt
    # a shell's background job ignores SIGINT, and `kill PID` sends SIGTERM: both stop the lab cleanly
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    if not args.name.replace("-", "").isalnum():
        raise InvalidInput(f"lab name {args.name!r} is not usable", fix="use letters, digits and dashes")
    lab = Lab(name=args.name)
    try:
        api = lab.api
        print(f"openstack: Keystone at {lab.identity.auth_url}; clouds.yaml at {config.home() / 'clouds.yaml'}")
        print(f"  try: OS_CLIENT_CONFIG_FILE={config.home() / 'clouds.yaml'} OS_CLOUD={CLOUD} openstack server list")
        print("  Ctrl-C stops the lab", flush=True)
        api.server._thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        lab.stop()
    return 0
