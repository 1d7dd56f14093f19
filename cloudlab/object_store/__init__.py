"""Object storage (오브젝트 스토리지): a Swift-compatible object store with an S3 view.

Object storage keeps *objects*: a file's bytes plus metadata, addressed by name
inside a *container* (S3: bucket) of an *account*, and reached only through a
RESTful HTTP API (create, read, update, delete with PUT, GET, POST, DELETE).  There
is no directory tree to mount and no block device: the API is the whole interface.

    lab = cl.Lab()
    store = lab.object_store              # starts the server on 127.0.0.1
    conn = store.connection()             # python-swiftclient
    s3 = store.s3_client()                # boto3, same data

Where it runs follows the layout.  All-in-one: a server in a thread of the lab's own
process, on loopback.  Multi-node (``cl.TwoNode()``, ``cl.ThreeNode()``): split as Swift
is, into two processes (``python -m cloudlab object-store``, each started in its node's
namespaces and listed by the node's ``processes()``):

* the **proxy** (``--upstream``, :mod:`.proxy`) on the controller, where the install
  guides put ``swift-proxy-server``: it takes every request of the API and passes it on.
  The lab binds its two listening sockets and hands them over (``--fd``), as systemd's
  socket activation does: one on the machine's loopback (a socket keeps the namespace it
  was made in), where the learner's clients connect (``store.url``), one on port 8080 of
  the controller's addresses, where the other nodes do (``store.node_url``);
* the **object server** on the storage node (port 6200 of its address,
  ``store.object_server_url``), as ``swift-object-server``: it keeps the objects (the
  store's folder) and checks who may do what.

Keystone tokens are accepted beside TempAuth once the lab's identity service runs
(``store.use_keystone``): the lab's process asks Keystone in the all-in-one layout; the
object server asks it itself over HTTP, as the ``swift`` service user, as Swift's proxy
does with keystonemiddleware (here the object server holds the authorization, the one
difference of the split from Swift's, where the proxy does).

The pieces: ``storage`` (the crash-safe on-disk store, with versions), ``commit`` (group
commit of small uploads), ``files`` (temp files and durable writes), ``auth`` (TempAuth
users, tokens, S3 keys), ``access`` (S3 ACLs and bucket policies, Swift ACLs), ``swift``
(Swift API v1), ``s3`` (the S3 view), ``sigv4`` (AWS Signature V4), ``multipart`` (S3
multipart uploads), ``form_upload`` (S3 POST Object from a browser form), ``server`` (the
aiohttp application and its runner), ``cli`` (``python -m cloudlab object-store``),
``proxy`` (the controller's part in a multi-node layout), ``wire`` (one raw HTTP request,
shown as a transcript) and ``swift_cli`` (the real
``swift`` command line).
"""

import shutil
import socket
import sys
import threading

from ..errors import InvalidInput, MissingPrerequisite
from ..process import Handover, package_env, stop_process, wait_answering
from .auth import Users
from .cli import KEYSTONE_PASSWORD_VARIABLE
from .server import ObjectStoreServer
from .swift_cli import run_swift
from .wire import exchange

__all__ = ["ObjectStore", "ObjectStoreServer", "Users"]

NODE_PORT = 8080                 # the Swift proxy's port, on the controller node's addresses
OBJECT_SERVER_PORT = 6200        # Swift's object server's port, on the storage node's address
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
BACKLOG = 1024


class ObjectStore:
    """The lab's object store service: a Swift and S3 proxy with its data under the lab's home.

    In the all-in-one layout it is a server in a thread of the lab's process, on loopback
    (:attr:`server`).  In a multi-node layout it is two processes: the proxy on the
    controller node (:attr:`process`, on :attr:`node`), answering both on a loopback socket
    the lab bound (:attr:`url`, for the learner's clients) and on port 8080 of the
    controller's addresses (:attr:`node_url`, for the other nodes); and the object server,
    which keeps the data, on the storage node (:attr:`storage_process`, on
    :attr:`storage_node`, at :attr:`object_server_url`).

    Args:
        lab: the :class:`~cloudlab.lab.Lab` this service belongs to.
        host: address to bind (loopback by default).
        port: TCP port; 0 picks a free one.
        users: mapping ``"account:user" -> key``; Swift's sample ``test:tester`` / ``testing`` by default.
    """

    def __init__(self, lab, host="127.0.0.1", port=0, users=None):
        self.lab = lab
        # with the lab's prefix, as every file of a lab: two labs of one name (a notebook and its graded
        # run under a prefix of its own) share the lab's folder, and must not share (or remove) one store
        self.root = lab.home / f"{lab.prefix}object_store"
        self.files = lab.home / f"{lab.prefix}object_store_files"      # the learner's local files (removed by stop)
        self.host, self.port = host, port
        self.keystone = None         # the Identity whose tokens it accepts (see use_keystone)
        self.node = None             # the controller node its proxy runs on (multi-node layouts)
        self.process = None          # the proxy's Popen there
        self.storage_node = None     # the storage node its object server runs on (multi-node layouts)
        self.storage_process = None  # the object server's Popen there
        self._handover = None        # the proxy's (loopback, node) sockets and the parent pipe (process.Handover)
        self._lock = threading.RLock()
        if len(lab.topology.nodes) < 2:
            self.server = ObjectStoreServer(self.root, host=host, port=port, users=users)
            self._users = self.server.users
        else:
            self.server = None       # no server object here: it runs in the node's process
            self._users = Users(users)

    # -- lifecycle

    def start(self):
        """Start the store (returns once it answers).

        A Keystone that already runs (``lab.identity``) is trusted from the start, as a
        Swift proxy of a cloud with Keystone has its authtoken filter (:meth:`use_keystone`).

        Raises:
            InvalidInput: the loopback address is taken.  Conflict: port 8080 of the controller is
                taken (multi-node layouts).
            ResourceTimeout, CloudlabError: the store's process did not come up (its log is quoted).
        """
        identity = self.lab.started_service("identity")
        if identity is not None and identity.running and self.keystone is None:
            self.use_keystone(identity)
        if self.server is not None:
            self.server.start()
            return self
        with self._lock:
            try:
                self._bind()
                self._spawn()
            except BaseException:
                self.stop(remove_data=False)
                raise
        return self

    def _bind(self):
        """The two listening sockets: loopback here, and 0.0.0.0:8080 in the controller's namespace."""
        self.node = self.lab.nodes.controller
        try:
            loopback = socket.create_server((self.host, self.port), backlog=BACKLOG)
        except OSError as exc:
            raise InvalidInput(f"cannot listen on {self.host}:{self.port}: {exc.strerror}",
                               fix="choose another port (0 picks a free one)") from None
        self._handover = Handover([loopback])
        self.port = loopback.getsockname()[1]
        # a socket belongs to the namespace it was made in, for its whole life: this one is the node's
        self._handover.sockets.append(self.node.listen("0.0.0.0", NODE_PORT, backlog=BACKLOG))
        self.storage_node = self.lab.nodes.storage

    def _spawn(self):
        """Start what is not running: the object server on the storage node, the proxy on the controller."""
        # a part whose node is down (a power cut) starts with its node (resume)
        if (self.storage_process is None or self.storage_process.poll() is not None) and self.storage_node.is_up:
            self._spawn_object_server()
        if (self.process is None or self.process.poll() is not None) and self.node.is_up:
            fds, parent = self._handover.socket_fds, self._handover.parent_fd
            command = [sys.executable, "-m", "cloudlab", "object-store", "--upstream", self.object_server_url,
                       "--parent-fd", str(parent)]
            for fd in fds:
                command += ["--fd", str(fd)]
            self.process = self.node.popen(command, self.log_path, pass_fds=fds + [parent], env=package_env())
        if all(p is not None and p.poll() is None for p in (self.process, self.storage_process)):
            self._wait_ready()

    @property
    def object_server_url(self):
        """The object server's URL on the storage node (multi-node layouts; the proxy's upstream), or None."""
        if self.storage_node is None:
            return None
        return f"http://{self.storage_node.address}:{OBJECT_SERVER_PORT}"

    def _spawn_object_server(self):
        """Start ``python -m cloudlab object-store --root ...`` on the storage node, on its socket."""
        identity = self.keystone
        # bound here and handed over, but not kept: once the object server ends, its port is closed,
        # and the proxy meets a refusal (a 502 for the client) rather than a queue nobody serves
        server_socket = self.storage_node.listen(self.storage_node.address, OBJECT_SERVER_PORT, backlog=BACKLOG)
        fd = server_socket.fileno()
        command = [sys.executable, "-m", "cloudlab", "object-store", "--root", str(self.root),
                   "--parent-fd", str(self._handover.parent_fd), "--fd", str(fd)]
        for login, key in self._users.as_dict().items():
            command += ["--user", f"{login}={key}"]
        env = package_env()
        if identity is not None:
            # keystonemiddleware's way: the proxy validates tokens itself, as the swift service user,
            # at Keystone's address on the node (the node's process cannot call back into this one)
            password, project = identity.credentials("swift")
            command += ["--keystone-url", identity.node_url, "--keystone-user", "swift",
                        "--keystone-project", project]
            env[KEYSTONE_PASSWORD_VARIABLE] = password
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self.storage_process = self.storage_node.popen(command, self.server_log_path,
                                                           pass_fds=[fd, self._handover.parent_fd], env=env)
        finally:
            server_socket.close()

    @property
    def log_path(self):
        """The proxy's log (multi-node layouts): in the controller node's folder."""
        return None if self.node is None else self.node.state_path / "object-store.log"

    @property
    def server_log_path(self):
        """The object server's log (multi-node layouts): in the storage node's folder."""
        return None if self.storage_node is None else self.storage_node.state_path / "object-server.log"

    def _log_tail(self, lines=8):
        text = []
        for path in (self.log_path, self.server_log_path):
            try:
                text += path.read_text(errors="replace").splitlines()[-lines:]
            except (OSError, AttributeError):
                pass
        return "\n".join(text) or "(no log)"

    def _wait_ready(self):
        wait_answering(f"http://{self.host}:{self.port}/info",
                       [("the object store's proxy", self.process), ("the object store's object server",
                                                                    self.storage_process)],
                       "the object store", self._log_tail, fix=f"see its logs, {self.log_path} and {self.server_log_path}",
                       timeout=START_TIMEOUT_S)

    def use_keystone(self, identity=None):
        """Accept Keystone tokens beside TempAuth's, as a Swift proxy with authtoken and keystoneauth does.

        A token of a project's member opens ``AUTH_<project id>`` (the rule:
        :func:`cloudlab.api.auth.swift_account`); answers are cached a minute.  In the
        all-in-one layout the lab's process asks Keystone for the store.  In a multi-node
        layout the store's process asks it itself, as the ``swift`` service user, at
        Keystone's address on the controller: the process is started again with those
        options, on the same sockets (a client's request waits in their queue meanwhile,
        never refused) and the same data; TempAuth tokens issued before are then unknown,
        and clients log in again (python-swiftclient does on a 401).

        Args:
            identity: the lab's :class:`~cloudlab.api.identity.Identity` (``lab.identity`` by default).
        """
        identity = identity or self.lab.identity
        with self._lock:
            if self.keystone is identity:
                return self
            self.keystone = identity
            if self.server is not None:
                from ..api.auth import TokenValidator, keystone_accounts
                self.server.users.add_token_source(keystone_accounts(TokenValidator(identity, "swift")))
            elif self.storage_process is not None:     # not yet started: start() passes the options
                # the object server checks the tokens: it alone starts again
                stop_process(self.storage_process, timeout=STOP_TIMEOUT_S)
                self.storage_process = None
                self._spawn()
        return self

    def resume(self):
        """Start the store's process again after its node's power cut, on the same sockets and data.

        A machine starts its services when it boots: the controller node calls this when it
        starts again (:meth:`cloudlab.host.nodes.Node.start`); the objects stored before are
        all there (the store never lies about what it kept).  Does nothing in the all-in-one
        layout, or while the process runs.
        """
        with self._lock:
            if self.server is not None or self._handover is None:
                return self
            if all(p is not None and p.poll() is None for p in (self.process, self.storage_process)):
                return self
            self._spawn()
        return self

    def stop(self, remove_data=True):
        """Stop the store; by default also remove its data, as everything a lab creates.

        Args:
            remove_data: delete the store's root directory too.
        """
        with self._lock:
            if self.server is not None:
                self.server.stop()
            for proc in (self.process, self.storage_process):
                if proc is not None:
                    stop_process(proc, timeout=STOP_TIMEOUT_S)
            self.process = self.storage_process = None
            if self._handover is not None:
                self._handover.close()
                self._handover = None
        if remove_data:
            shutil.rmtree(self.root, ignore_errors=True)
            shutil.rmtree(self.files, ignore_errors=True)

    # -- where it answers

    @property
    def url(self):
        """Base URL of the store on this machine's loopback, e.g. ``http://127.0.0.1:PORT``."""
        if self.server is not None:
            return self.server.url
        return f"http://{self.host}:{self.port}"

    @property
    def node_url(self):
        """The store's URL as the lab's nodes reach it: the controller's address, port 8080.

        In the all-in-one layout, the loopback URL (everything runs beside it).
        """
        if self.node is None:
            return self.url
        return f"http://{self.node.address}:{NODE_PORT}"

    @property
    def auth_url(self):
        """TempAuth URL clients log in at (``.../auth/v1.0``)."""
        return f"{self.url}/auth/v1.0"

    def storage_url(self, account="test"):
        """Storage URL of an account, e.g. ``.../v1/AUTH_test``.

        Args:
            account: the account part of a login (``test`` for ``test:tester``).
        """
        return f"{self.url}/v1/AUTH_{account}"

    @property
    def users(self):
        """The users as a mapping ``"account:user" -> key`` (the key is also the S3 secret)."""
        return self._users.as_dict()

    def _credentials(self, user):
        users = self.users
        if user is None:
            user = next(iter(users))
        if user not in users:
            from ..errors import NotFound
            raise NotFound(f"the object store has no user {user!r}", fix=f"use one of {', '.join(users)}")
        return user, users[user]

    def connection(self, user=None):
        """A python-swiftclient ``Connection`` logged in as ``user`` (the first user by default)."""
        import swiftclient
        user, key = self._credentials(user)
        return swiftclient.Connection(authurl=self.auth_url, user=user, key=key, retries=0)

    def s3_client(self, user=None):
        """A boto3 S3 client for the same data, signing with ``user`` as access key and its key as secret.

        Raises:
            MissingPrerequisite: boto3 is not installed.
        """
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise MissingPrerequisite("boto3 is not installed", fix="pip install boto3") from None
        user, key = self._credentials(user)
        config = Config(signature_version="s3v4", s3={"addressing_style": "path"},
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required",
                        retries={"max_attempts": 1})
        return boto3.client("s3", endpoint_url=self.url, aws_access_key_id=user,
                            aws_secret_access_key=key, region_name="us-east-1", config=config)

    def exchange(self, method, url, headers=None, body=None, read=()):
        """Send one raw HTTP request to the store; returns an Exchange that prints like ``curl -v``.

        Args:
            method: HTTP verb (GET, HEAD, PUT, POST, DELETE, COPY).
            url: a full URL on this store, e.g. ``store.storage_url() + "/photos"``.
            headers: request headers; body: bytes or str.
            read: header names (``*`` patterns) the transcript marks as the ones to read.
        Raises:
            InvalidInput: not a loopback URL. NotFound: nothing listens there.
        """
        return exchange(method, url, headers, body, read=read)

    def swift(self, *args, user=None):
        """Run the real ``swift`` command line against this store, in the folder ``files``.

        Args:
            args: the command's arguments, e.g. ``"upload", "photos", "notes.txt"``.
            user: the login (the first user by default).
        Returns:
            a :class:`~cloudlab.object_store.swift_cli.SwiftRun` that prints like a terminal.
        Raises:
            MissingPrerequisite: the command is not installed; NotFound: no such user.
        """
        user, key = self._credentials(user)
        self.files.mkdir(parents=True, exist_ok=True)
        return run_swift(self.auth_url, user, key, args, cwd=self.files)

    def __repr__(self):
        where = f" on node {self.node.name} ({self.node_url})" if self.node is not None else ""
        return f"<ObjectStore {self.url}{where}>"
