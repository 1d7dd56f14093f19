"""Identity (Keystone): the real OpenStack Keystone, run by the lab on loopback.

Every OpenStack request starts here.  A client sends a user name, a password and the
project it wants to work in to ``POST /v3/auth/tokens``; Keystone checks the password,
answers with a *token* in the ``X-Subject-Token`` header and, in the body, the user's
roles in that project and the *service catalog*: where compute, image, network and
object storage answer.  Every later request carries only the token (``X-Auth-Token``),
and each service asks Keystone whether it is valid (``GET /v3/auth/tokens``).

The lab runs Keystone itself, not an imitation:

* ``python -m cloudlab identity install`` (run by ``make``) installs Keystone from PyPI
  into a virtual environment of its own under the cache (``keystone-requirements.txt``;
  its pins stay out of the lab's venv);
* a template database is made once per install: ``keystone-manage db_sync`` and
  ``bootstrap`` (the admin user, project and roles, the region) on SQLite in WAL mode
  (in SQLite's default mode Keystone's first login of the day waits on its own read lock);
* each lab copies the template, writes its own ``keystone.conf`` and Fernet keys and
  starts ``gunicorn`` (one worker, four threads) on a socket it bound on 127.0.0.1, then
  sets fresh passwords and creates the course's projects and users and the service users
  (nova, glance, neutron, swift, cinder, manila) through Keystone's own REST API.

In a multi-node layout Keystone is a process of the controller node (its namespaces), as
the install guides put it there: it still answers on the loopback socket the lab bound
(a socket keeps the namespace it was made in), and also on port 5000 of the controller's
addresses, for the other nodes (:attr:`Identity.node_url`).

Limits, chosen for a one-machine lab: SQLite, one gunicorn worker, bcrypt with 4
rounds (Keystone's minimum: a login costs milliseconds, not a quarter of a second),
tokens valid for 12 hours, an in-memory cache.  Everything else is Keystone's default.
"""

import base64
import contextlib
import fcntl
import hashlib
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .. import config
from ..errors import CloudlabError, Conflict, InvalidInput, MissingPrerequisite, NotFound
from ..process import Handover, stop_process

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "keystone-requirements.txt"
REGION = "RegionOne"
DOMAIN = "Default"
TEMPLATE_PASSWORD = "cloudlab-template"       # replaced in every lab before anyone can log in
START_TIMEOUT_S = 90.0
TOKEN_TTL_S = 12 * 3600
NODE_PORT = 5000                              # Keystone's port, on the controller node's addresses
# the services' own users (project "service", roles admin and service), as a deployment has them
SERVICE_USERS = ("nova", "glance", "neutron", "swift", "cinder", "manila", "trove")
DEFAULT_PROJECTS = {"demo": ["demo"]}
NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")

KEYSTONE_CONF = """\
# written by cloudlab for one lab's Keystone
[DEFAULT]
use_stderr = false
log_file = {state}/keystone.log
default_log_levels = keystone=WARN,amqp=WARN,sqlalchemy=WARN,oslo_policy=ERROR,oslo_db=WARN,stevedore=WARN
[database]
connection = sqlite:///{state}/keystone.db
[fernet_tokens]
key_repository = {state}/fernet-keys
[fernet_receipts]
key_repository = {state}/fernet-keys
[credential]
key_repository = {state}/credential-keys
[identity]
password_hash_rounds = 4
[token]
expiration = {ttl}
[cache]
enabled = true
backend = dogpile.cache.memory
[oslo_policy]
enforce_new_defaults = true
enforce_scope = true
"""


# -- the installation: a venv of its own, and a template database ------------------------

def install_key():
    """Hash of the pinned requirements: a change means a new environment."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes())
    digest.update(f"{sys.version_info[0]}.{sys.version_info[1]}".encode())
    return digest.hexdigest()[:12]


def venv_dir():
    """Keystone's virtual environment under the cache (it may not exist yet)."""
    return config.cache() / "keystone" / f"venv-{install_key()}"


def installed():
    """True when Keystone's environment is complete (``install()`` writes its marker last)."""
    return (venv_dir() / ".installed").is_file()


def install(progress=None):
    """Install Keystone and gunicorn into their own venv under the cache (a no-op when present).

    The marker file is written last: an install that was interrupted is removed and
    made again, so the cache never passes half an install off as a whole one.  (A venv
    cannot be built elsewhere and renamed: its scripts name its own path.)

    Raises:
        MissingPrerequisite: python3-venv is missing.
        CloudlabError: pip failed (PyPI cannot be reached, say).
    """
    say = progress or (lambda line: print(f"identity: {line}", flush=True))
    target = venv_dir()
    if installed():
        return target
    with _cache_lock():
        if installed():           # another process installed it while we waited
            return target
        return _install_into(target, say)


@contextlib.contextmanager
def _cache_lock():
    """An exclusive lock on Keystone's folder in the cache: several labs and make runs share the cache."""
    folder = config.cache() / "keystone"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _install_into(target, say):
    if target.exists():
        shutil.rmtree(target)
    started = time.monotonic()
    say(f"installing Keystone into {target} (pins: {REQUIREMENTS.name})")
    try:
        _run([sys.executable, "-m", "venv", str(target)], "creating Keystone's venv",
             fix="sudo apt-get install python3-venv")
        pip = [str(target / "bin" / "python"), "-m", "pip", "install", "-q"]
        _run(pip + ["--upgrade", "pip"], "upgrading pip in Keystone's venv", fix="check that PyPI can be reached")
        _run(pip + ["-r", str(REQUIREMENTS)], "installing Keystone", fix="check that PyPI can be reached")
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    (target / ".installed").write_text(REQUIREMENTS.read_text())
    say(f"installed in {time.monotonic() - started:.0f} s")
    return target


def _run(args, what, fix=None, env=None):
    try:
        return subprocess.run(args, check=True, capture_output=True, text=True, env=env)
    except FileNotFoundError:
        raise MissingPrerequisite(f"{what}: {args[0]} is missing", fix=fix or "run `make lab`") from None
    except subprocess.CalledProcessError as exc:
        lines = [line for line in (exc.stderr or exc.stdout or "").splitlines()
                 if line.strip() and not line.startswith("WARNING: Location")]
        raise CloudlabError(f"{what} failed: {' '.join(lines[-6:])[-600:]}", fix=fix) from None


def _require_install():
    if not installed():
        raise MissingPrerequisite("Keystone (the identity service) is not installed",
                                  fix="run `make lab`, or `python -m cloudlab identity install`")
    return venv_dir()


def _write_conf(state):
    (state / "keystone.conf").write_text(KEYSTONE_CONF.format(state=state, ttl=TOKEN_TTL_S))


def _write_fernet_keys(folder):
    """A Fernet key repository as ``keystone-manage fernet_setup`` makes it: 0 staged, 1 primary."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for index in (0, 1):
        key = folder / str(index)
        key.write_bytes(base64.urlsafe_b64encode(secrets.token_bytes(32)))
        key.chmod(0o600)


def _manage_env(state):
    env = dict(os.environ)
    env.update(OS_KEYSTONE_CONFIG_DIR=str(state), OS_KEYSTONE_CONFIG_FILES="keystone.conf",
               PYTHONWARNINGS="ignore")
    return env


def template_db(progress=None):
    """The template database (schema and bootstrap done), made once per install.

    Raises:
        MissingPrerequisite: Keystone is not installed.
    """
    venv = _require_install()
    target = venv / "template" / "keystone.db"
    if target.is_file():
        return target
    with _cache_lock():
        if target.is_file():
            return target
        return _make_template(venv, target, progress)


def _make_template(venv, target, progress):
    say = progress or (lambda line: print(f"identity: {line}", flush=True))
    scratch = Path(tempfile.mkdtemp(prefix=".template-", dir=venv))
    try:
        say("creating Keystone's database (keystone-manage db_sync and bootstrap)")
        _write_conf(scratch)
        _write_fernet_keys(scratch / "fernet-keys")
        _write_fernet_keys(scratch / "credential-keys")
        manage = [str(venv / "bin" / "keystone-manage"), "--config-file", str(scratch / "keystone.conf")]
        env = _manage_env(scratch)
        _run(manage + ["db_sync"], "keystone-manage db_sync", env=env)
        _run(manage + ["bootstrap", "--bootstrap-password", TEMPLATE_PASSWORD,
              "--bootstrap-username", "admin", "--bootstrap-project-name", "admin",
              "--bootstrap-role-name", "admin", "--bootstrap-region-id", REGION],
             "keystone-manage bootstrap", env=env)
        db = sqlite3.connect(scratch / "keystone.db")
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.commit()
        finally:
            db.close()
        (scratch / "template").mkdir()
        os.rename(scratch / "keystone.db", scratch / "template" / "keystone.db")
        os.rename(scratch / "template", target.parent)
        return target
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# -- a small synchronous client of Keystone's REST API (the lab's own admin calls) -----

class KeystoneClient:
    """Keystone's REST API as the lab's admin uses it; plain HTTP with ``requests``.

    Args:
        url: Keystone's base URL, e.g. ``http://127.0.0.1:PORT``.
    """

    def __init__(self, url):
        import requests
        self.url = url.rstrip("/")
        self.http = requests.Session()
        self._token = None
        self._admin_password = None

    def password_token(self, user, password, project=None, system=False):
        """Log in: ``(token, body)`` for ``user`` scoped to ``project`` (or the system).

        Raises:
            InvalidInput: Keystone refused the user name or password (401).
        """
        auth = {"identity": {"methods": ["password"], "password": {
            "user": {"name": user, "domain": {"name": DOMAIN}, "password": password}}}}
        if system:
            auth["scope"] = {"system": {"all": True}}
        elif project:
            auth["scope"] = {"project": {"name": project, "domain": {"name": DOMAIN}}}
        response = self.http.post(f"{self.url}/v3/auth/tokens", json={"auth": auth}, timeout=30)
        if response.status_code == 401:
            raise InvalidInput(f"Keystone refused the password of user {user!r}",
                               fix="lab.identity.credentials(user) has the lab's passwords")
        self._check(response, f"logging in as {user}")
        return response.headers["X-Subject-Token"], response.json()

    def login_admin(self, password):
        """Log in as the admin user in the admin project; later calls carry this token."""
        self._admin_password = password
        self._token, _ = self.password_token("admin", password, project="admin")

    def _check(self, response, what):
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:300]
            kind = {404: NotFound, 409: Conflict, 400: InvalidInput}.get(response.status_code, CloudlabError)
            raise kind(f"{what}: Keystone answered {response.status_code}: {message}")
        return response

    def call(self, method, path, what, body=None, token=None, headers=None):
        """One admin request; returns the decoded JSON body (or None for 204).

        The admin token is renewed once when Keystone no longer takes it: a password change
        revokes every token issued in the same second, and tokens expire.
        """
        for attempt in (1, 2):
            sent = {"X-Auth-Token": token or self._token}
            sent.update(headers or {})
            response = self.http.request(method, f"{self.url}{path}", json=body, headers=sent, timeout=30)
            if response.status_code == 401 and token is None and attempt == 1:
                time.sleep(1.05)      # Keystone's revocation events have a resolution of one second
                self.login_admin(self._admin_password)
                continue
            self._check(response, what)
            return response.json() if response.content else None

    def find(self, collection, name):
        """The entity of ``collection`` (``users``, ``projects``, ``roles``...) called ``name``, or None."""
        found = self.call("GET", f"/v3/{collection}?name={name}", f"looking up {name}")[collection]
        return found[0] if found else None


# -- the service ---------------------------------------------------------------------

class Identity:
    """The lab's identity service: one real Keystone, with the course's projects and users.

    Args:
        lab: the :class:`~cloudlab.lab.Lab`; Keystone's state lives under its home.
        projects: ``{project: [user, ...]}`` of course members (role ``member``); by default
            one project ``demo`` with user ``demo``.  The admin user is always there.
    """

    def __init__(self, lab, projects=None):
        self.lab = lab
        self.projects_wanted = dict(DEFAULT_PROJECTS if projects is None else projects)
        self._proc = None
        self.node = None             # the controller node it runs on (multi-node layouts)
        # its sockets (loopback; and the controller node's addresses in multi-node layouts) and the pipe
        # it watches (see keystone_gunicorn.py): a process.Handover
        self._handover = None
        self.port = None
        self.client = None
        self._credentials = {}       # user -> (password, project)
        self._ids = {}               # ("project"|"user"|"role", name) -> id
        self._service_tokens = {}    # service user -> (token, renew after)
        self._lock = threading.RLock()

    @property
    def state_dir(self):
        """Keystone's folder in the lab's home (its name carries the lab's prefix, so clean-up finds it)."""
        return self.lab.home / f"{self.lab.prefix}keystone"

    @property
    def url(self):
        """Keystone's base URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_url(self):
        """The URL clients authenticate at (``.../v3``), as ``OS_AUTH_URL``."""
        return f"{self.url}/v3"

    # -- lifecycle

    def start(self):
        """Start Keystone and set up the lab's users, projects and services.

        Raises:
            MissingPrerequisite: Keystone is not installed (``make lab`` installs it).
            ResourceTimeout: Keystone did not answer in time (the message shows its log).
        """
        venv = _require_install()
        template = template_db()
        state = self.state_dir
        if state.exists():
            shutil.rmtree(state)
        state.mkdir(parents=True)
        shutil.copyfile(template, state / "keystone.db")
        _write_conf(state)
        _write_fernet_keys(state / "fernet-keys")
        _write_fernet_keys(state / "credential-keys")
        (state / "cloudlab_keystone_wsgi.py").write_text((HERE / "keystone_wsgi.py").read_text())
        try:
            self._handover = Handover([socket.create_server(("127.0.0.1", 0))])
            self.port = self._handover.sockets[0].getsockname()[1]
            self.node = self._controller_node()
            if self.node is not None:
                # a process of the controller node: it answers on the socket bound here (the machine's
                # loopback, where the learner's clients are) and on Keystone's own port on the node's
                # addresses, where the other nodes' services reach it.  gunicorn serves either inherited
                # sockets or addresses it binds, never both: the node's socket is made here too, inside
                # the node's namespace
                self._handover.sockets.append(self.node.listen("0.0.0.0", NODE_PORT))
            self._spawn(venv)
            self._wait_ready()
            self.client = KeystoneClient(self.url)
            self._setup()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, venv):
        """Start gunicorn with Keystone on the sockets bound (on the controller node in a multi-node layout)."""
        state = self.state_dir
        env = _manage_env(state)
        # Keystone ends itself when the read end of this pipe sees end-of-file: when this process ends
        fds, watch = self._handover.socket_fds, self._handover.parent_fd
        env["CLOUDLAB_PARENT_FD"] = str(watch)
        # the owner mark `host leftovers` looks for: this process belongs to this lab host
        from ..host import state_dir as host_state_dir
        env["CLOUDLAB_OWNER"] = str(host_state_dir())
        args = [str(venv / "bin" / "gunicorn"), "--config", str(HERE / "keystone_gunicorn.py"),
                *(arg for fd in fds for arg in ("--bind", f"fd://{fd}")), "--chdir", str(state),
                "--pid", str(state / "gunicorn.pid"), "--error-logfile", str(state / "gunicorn.log"),
                "cloudlab_keystone_wsgi:application"]
        if self.node is None:
            with open(state / "gunicorn.out", "wb") as out:
                self._proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                              stderr=subprocess.STDOUT, pass_fds=(*fds, watch),
                                              start_new_session=True)
        else:
            self._proc = self.node.popen(args, state / "gunicorn.out", env=env, pass_fds=(*fds, watch))
        (state / "keystone.pid").write_text(f"{self._proc.pid}\n")

    def resume(self):
        """Start Keystone's process again after its node's power cut, with its database, keys and sockets as they were.

        A machine starts its services when it boots: the controller node calls this when
        it starts again (:meth:`cloudlab.host.nodes.Node.start`).  Nothing is lost: tokens
        issued before stay valid (the same Fernet keys).
        """
        with self._lock:
            if self.running or self._handover is None:
                return self
            self._spawn(_require_install())
            self._wait_ready()
        return self

    def _controller_node(self):
        """The controller node Keystone runs on in a multi-node layout (started first), or None."""
        if len(self.lab.topology.nodes) < 2:
            return None
        return self.lab.nodes.controller

    @property
    def node_url(self):
        """Keystone's URL as services on the lab's nodes reach it: the controller's address, port 5000.

        In the all-in-one layout, the loopback URL (services run beside it).
        """
        if self.node is None:
            return self.url
        return f"http://{self.node.address}:{NODE_PORT}"

    def _log_tail(self, lines=8):
        text = []
        for name in ("gunicorn.log", "keystone.log", "gunicorn.out"):
            try:
                text += (self.state_dir / name).read_text(errors="replace").splitlines()
            except OSError:
                pass
        useful = [t for t in text if "Error" in t or "error" in t or "Traceback" in t] or text
        return "\n".join(useful[-lines:])

    def _wait_ready(self):
        from ..process import wait_answering
        wait_answering(f"{self.url}/v3", [("Keystone", self._proc)], "Keystone", self._log_tail,
                       fix=f"see the logs in {self.state_dir}", timeout=START_TIMEOUT_S)

    def _setup(self):
        """The course's projects and users, the services' users, then a fresh admin password."""
        c = self.client
        c.login_admin(TEMPLATE_PASSWORD)
        for kind, name in (("roles", "admin"), ("roles", "member"), ("roles", "reader"),
                           ("roles", "service"), ("projects", "admin"), ("users", "admin")):
            self._ids[(kind, name)] = c.find(kind, name)["id"]
        self.create_project("service", description="the services' own users")
        for user in SERVICE_USERS:
            self.create_user(user, project="service", roles=("admin", "service"))
        for project, members in self.projects_wanted.items():
            self.create_project(project)
            for user in members:
                self.create_user(user, project=project)
        # last: the change revokes the admin token in use, which call() then renews
        admin_password = secrets.token_urlsafe(12)
        c.call("PATCH", f"/v3/users/{self._ids[('users', 'admin')]}", "setting the admin password",
               {"user": {"password": admin_password}})
        c._admin_password = admin_password
        self._credentials["admin"] = (admin_password, "admin")

    def stop(self):
        """Stop Keystone (by its PID) and remove its state."""
        with self._lock:
            if self._proc is not None:
                stop_process(self._proc, timeout=10)
                self._proc = None
            if self._handover is not None:
                self._handover.close()
                self._handover = None
            shutil.rmtree(self.state_dir, ignore_errors=True)

    @property
    def running(self):
        """True while Keystone's process runs."""
        return self._proc is not None and self._proc.poll() is None

    # -- projects, users, roles

    def _id(self, kind, name):
        key = (kind, name)
        if key not in self._ids:
            found = self.client.find(kind, name)
            if found is None:
                raise NotFound(f"Keystone has no {kind[:-1]} named {name!r}",
                               fix=f"create it with lab.identity.create_{kind[:-1]}({name!r})")
            self._ids[key] = found["id"]
        return self._ids[key]

    def project_id(self, name):
        """The id of project ``name`` (32 hex digits, Keystone's)."""
        return self._id("projects", name)

    def user_id(self, name):
        """The id of user ``name``."""
        return self._id("users", name)

    def role_id(self, name):
        """The id of role ``name``."""
        return self._id("roles", name)

    @staticmethod
    def _check_name(kind, name):
        if not isinstance(name, str) or not name or len(name) > 64 or not set(name) <= NAME_OK:
            raise InvalidInput(f"{kind} name {name!r} is not usable",
                               fix="use up to 64 letters, digits, '.', '_' or '-'")

    def create_project(self, name, description=""):
        """Create a project (프로젝트, a tenant) in the Default domain; returns its id.

        Raises:
            InvalidInput: a bad name.
            Conflict: the project exists.
        """
        self._check_name("project", name)
        body = self.client.call("POST", "/v3/projects", f"creating project {name}",
                                {"project": {"name": name, "domain_id": "default",
                                             "description": description or f"cloudlab project {name}"}})
        self._ids[("projects", name)] = body["project"]["id"]
        return body["project"]["id"]

    def create_user(self, name, project, password=None, roles=("member",)):
        """Create a user with ``roles`` in ``project``; returns the password.

        Args:
            name: user name.
            project: the project the user works in (created first with :meth:`create_project`).
            password: default: a random one (see :meth:`credentials`).
            roles: role names given in ``project``.
        Raises:
            InvalidInput: a bad name; NotFound: no such project or role; Conflict: the user exists.
        """
        self._check_name("user", name)
        project_id = self.project_id(project)
        password = password or secrets.token_urlsafe(12)
        body = self.client.call("POST", "/v3/users", f"creating user {name}",
                                {"user": {"name": name, "domain_id": "default", "password": password,
                                          "default_project_id": project_id}})
        user_id = body["user"]["id"]
        self._ids[("users", name)] = user_id
        for role in roles:
            self.grant(name, project, role)
        with self._lock:
            self._credentials[name] = (password, project)
        return password

    def grant(self, user, project, role="member"):
        """Give ``user`` the ``role`` in ``project``."""
        self.client.call("PUT", f"/v3/projects/{self.project_id(project)}/users/{self.user_id(user)}"
                                f"/roles/{self.role_id(role)}", f"giving {user} the role {role} in {project}")

    def credentials(self, user="demo"):
        """``(password, project)`` of a user the lab created.

        Raises:
            NotFound: the lab did not create that user.
        """
        with self._lock:
            if user not in self._credentials:
                raise NotFound(f"the lab created no user {user!r}",
                               fix=f"use one of: {', '.join(self.users())}")
            return self._credentials[user]

    def users(self, course_only=False):
        """Names of the users the lab created (``course_only``: without admin and the services)."""
        with self._lock:
            names = list(self._credentials)
        if course_only:
            names = [n for n in names if n != "admin" and n not in SERVICE_USERS]
        return names

    # -- tokens

    def issue_token(self, user="demo", project=None):
        """Log ``user`` in (password auth) and return ``(token, body)``: body is Keystone's token document."""
        password, home_project = self.credentials(user)
        return self.client.password_token(user, password, project=project or home_project)

    def validate(self, token, service_user="nova"):
        """Keystone's view of ``token`` (the body of ``GET /v3/auth/tokens``), as a service asks it.

        Raises:
            NotFound: Keystone does not know the token, or it has expired (Keystone's 404).
        """
        service_token = self.service_token(service_user)
        try:
            return self.client.call("GET", "/v3/auth/tokens", "validating a token", token=service_token,
                                    headers={"X-Subject-Token": token})["token"]
        except NotFound:
            raise NotFound("Keystone does not know this token, or it has expired",
                           fix="log in again (openstack token issue)") from None

    def service_token(self, service_user="nova"):
        """A token of one of the services' users (``nova``, ``glance``...), renewed before it expires."""
        with self._lock:
            cached = self._service_tokens.get(service_user)
            if cached and cached[1] > time.time():
                return cached[0]
        token, _ = self.issue_token(service_user)
        with self._lock:
            self._service_tokens[service_user] = (token, time.time() + TOKEN_TTL_S / 2)
        return token

    # -- the catalog

    def register(self, service_type, name, url, description=""):
        """Put a service and its public endpoint in the catalog (replacing an earlier one of that type).

        Args:
            service_type: OpenStack's type: ``compute``, ``image``, ``network``, ``object-store``...
            name: the service's name: ``nova``, ``glance``...
            url: the endpoint; ``$(project_id)s`` is filled in per token by Keystone.
        """
        c = self.client
        for old in c.call("GET", f"/v3/services?type={service_type}", "listing services")["services"]:
            c.call("DELETE", f"/v3/services/{old['id']}", f"removing the old {service_type} service")
        service = c.call("POST", "/v3/services", f"registering {name}",
                         {"service": {"type": service_type, "name": name, "enabled": True,
                                      "description": description or f"cloudlab's {name}"}})["service"]
        c.call("POST", "/v3/endpoints", f"registering {name}'s endpoint",
               {"endpoint": {"service_id": service["id"], "interface": "public", "region_id": REGION,
                             "url": url, "enabled": True}})
        return service["id"]

    def catalog(self):
        """The catalog as ``[(type, name, url), ...]``, read from Keystone."""
        c = self.client
        services = {s["id"]: s for s in c.call("GET", "/v3/services", "listing services")["services"]}
        rows = []
        for endpoint in c.call("GET", "/v3/endpoints", "listing endpoints")["endpoints"]:
            service = services.get(endpoint["service_id"])
            if service and endpoint["interface"] == "public":
                rows.append((service["type"], service["name"], endpoint["url"]))
        return sorted(rows)

    def __repr__(self):
        return f"<Identity {self.auth_url if self.port else '(not started)'}>"


# -- command line: python -m cloudlab identity install|status ------------------------------

def add_arguments(parser):
    """Arguments of ``python -m cloudlab identity``."""
    parser.add_argument("action", choices=["install", "status"],
                        help="install: Keystone into its own venv under the cache (make runs it)")


def main(args):
    """Run ``python -m cloudlab identity``."""
    if args.action == "install":
        venv = install()
        template_db()
        print(f"identity: Keystone installed in {venv}")
        return 0
    if installed():
        print(f"identity: Keystone installed in {venv_dir()}")
        return 0
    print("identity: Keystone is not installed (python -m cloudlab identity install)")
    return 1

