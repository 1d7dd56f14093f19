"""The object store's HTTP server: one aiohttp application, two APIs over one store.

Every request goes through :func:`dispatch`, which reads the raw request path
itself (so that ``%2F``, ``..`` and ``%00`` in names reach the API exactly as the
client sent them) and picks the view:

* ``/auth/v1.0`` and ``/info``: TempAuth login and capabilities (Swift view);
* ``/v1/<account>/...``: the Swift API (``swift.py``);
* anything else signed the AWS way (``Authorization: AWS4-HMAC-SHA256 ...`` or
  ``X-Amz-*`` in the query): the S3 view, ``cloudlab.object_store.s3.handle(request,
  store, users)``, when that module is present; 501 otherwise.

:class:`ObjectStoreServer` runs the application either in a background thread with
its own event loop (for a lab or a test) or in the foreground until SIGTERM/SIGINT
(``python -m cloudlab object-store``).  It binds its own address, or serves listening
sockets it was handed (:func:`cloudlab.process.inherited_socket`): a process started by the lab inside a
node's network namespace answers on sockets the lab bound, one on the machine's
loopback and one on the node's addresses, as systemd's socket activation hands a
daemon its sockets.  No access log is written unless asked for: formatting one line
per request costs more than a small GET.
"""

import asyncio
import importlib
import itertools
import logging
import os
import secrets
import socket
import threading
import time
from urllib.parse import unquote

from aiohttp import web

from ..errors import CloudlabError, InvalidInput, ResourceTimeout
from ..process import until_stopped
from .auth import Users
from .storage import Store
from .swift import SwiftAPI, SwiftError, error_response

STORE_KEY = web.AppKey("store", Store)
USERS_KEY = web.AppKey("users", Users)
log = logging.getLogger("cloudlab.object_store")


_TX_SESSION = secrets.token_hex(6)       # 12 random hex digits per server process
_tx_counter = itertools.count()


def trans_id():
    """A Swift-style transaction id: ``tx`` + 21 hex digits + ``-`` + hex time; unique per request.

    The 21 digits are random per process plus a counter, so no random bytes are
    fetched per request.
    """
    return f"tx{_TX_SESSION}{next(_tx_counter) & 0xfffffffff:09x}-{int(time.time()):010x}"


def _s3_handler():
    """``cloudlab.object_store.s3.handle`` if the S3 view is installed, else None."""
    try:
        module = importlib.import_module("cloudlab.object_store.s3")
    except ModuleNotFoundError as exc:
        if exc.name != "cloudlab.object_store.s3":
            raise       # the S3 module exists but is broken: say so rather than hide it
        return None
    return getattr(module, "handle", None)


def is_s3_request(request):
    """True when the request is signed the AWS way (header or presigned query)."""
    auth = request.headers.get("Authorization", "")
    if auth.startswith("AWS4-HMAC-SHA256") or auth.startswith("AWS "):
        return True
    return "X-Amz-Signature" in request.query or "X-Amz-Credential" in request.query


def route(request):
    """Which view serves a request: ``"auth"``, ``"info"``, ``"swift"`` or ``"s3"``.

    Decided on whole path segments, so that a bucket called ``information`` or
    ``authors`` is S3's: ``/v1/...`` and ``/v1.0/...`` are always Swift (neither is a
    valid bucket name); ``/auth/...`` and ``/info`` are Swift's unless the request is
    signed the AWS way; everything else is S3, signed or anonymous.
    """
    path = request.raw_path.split("?", 1)[0]
    segments = path.lstrip("/").split("/", 2)
    first = segments[0]
    if first == "v1.0" and len(segments) == 1:
        return "auth"                   # TempAuth's alternative login path
    if first in ("v1", "v1.0"):
        return "swift"
    if not is_s3_request(request):
        if first == "auth":
            return "auth"
        if first == "info" and len(segments) == 1:
            return "info"
    return "s3"


def split_path(raw_path):
    """Decode a raw request path into its segments: ``(version, account, container, object)``.

    At most four parts; the object part keeps its slashes.
    Raises:
        SwiftError: 412 when the path is not valid UTF-8 or contains NUL (as Swift answers).
    """
    path = raw_path.split("?", 1)[0]
    try:
        path = unquote(path, errors="strict")
    except UnicodeDecodeError:
        raise SwiftError(412, "Invalid UTF8 or contains NULL") from None
    if "\x00" in path:
        raise SwiftError(412, "Invalid UTF8 or contains NULL")
    return path.lstrip("/").split("/", 3)


def undecodable_header(headers):
    """The name of the first header whose value is not valid UTF-8, or None.

    aiohttp decodes header bytes as UTF-8 and keeps undecodable bytes as lone
    surrogates, which no later ``encode()`` accepts: such a request is refused
    at the door (400 naming the header) instead of failing deep inside.
    """
    for name, value in headers.items():
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return name
    return None


def _log_rejected(request, status, tx, detail=""):
    # one line per refused request: enough to find it, never a traceback
    path = request.raw_path
    if len(path) > 200:
        path = path[:200] + "..."
    log.info("%s %r -> %d %s%s", request.method, path, status, tx, f": {detail}" if detail else "")


def make_app(store, users, s3_handler=None):
    """The aiohttp application serving ``store`` to ``users`` through the Swift and S3 views.

    Args:
        store: a :class:`~cloudlab.object_store.storage.Store`.
        users: a :class:`~cloudlab.object_store.auth.Users`.
        s3_handler: coroutine ``(request, store, users) -> response`` for S3 requests;
            found in ``cloudlab.object_store.s3`` when not given.
    """
    swift = SwiftAPI(store, users)
    s3 = s3_handler or _s3_handler()

    async def dispatch(request):
        tx = trans_id()
        detail = ""
        try:
            view = route(request)
            if view == "s3":
                if s3 is None:
                    raise SwiftError(501, "the S3 view is not installed (cloudlab.object_store.s3)")
                response = await s3(request, store, users)
            else:
                bad = undecodable_header(request.headers)
                if bad is not None:
                    raise SwiftError(400, f"the {bad} header is not valid UTF-8",
                                     fix=f"send {bad} as UTF-8 text (percent-encode other bytes)")
                if view == "auth":
                    response = await swift.auth(request)
                elif view == "info":
                    response = await swift.info(request)
                else:
                    response = await swift.handle(request, split_path(request.raw_path)[1:])
        except SwiftError as exc:
            detail = exc.message
            response = error_response(exc.status, exc.message, exc.headers, exc.fix)
        except CloudlabError as exc:
            detail = exc.message
            response = error_response(400, exc.message, fix=exc.fix)
        except asyncio.CancelledError:
            raise
        except Exception as exc:    # a bug: one line in the log, an answer without a traceback
            where = exc.__traceback__
            while where.tb_next is not None:
                where = where.tb_next
            detail = (f"unexpected {type(exc).__name__}: {exc} "
                      f"({os.path.basename(where.tb_frame.f_code.co_filename)}:{where.tb_lineno})")
            log.error("%s %r failed with %s", request.method, request.raw_path[:200], detail)
            response = error_response(500, f"the store met an unexpected error (transaction {tx}); "
                                           "it is in the store's log")
            response.headers["Connection"] = "close"
        if not response.prepared:
            response.headers["Server"] = "cloudlab"
            response.headers["X-Trans-Id"] = tx
            response.headers["X-Openstack-Request-Id"] = tx
        if response.status >= 400:
            _log_rejected(request, response.status, tx, detail)
        return response

    app = web.Application(client_max_size=2 << 20)
    app[STORE_KEY] = store
    app[USERS_KEY] = users
    # [\s\S] and not ".": object names may contain newlines, which "." would not match
    app.router.add_route("*", r"/{path:[\s\S]*}", dispatch)
    return app


class ObjectStoreServer:
    """The object store as a running HTTP server.

    Args:
        root: directory holding the data (created if missing); None for a subclass that keeps none.
        host: address to bind; loopback by default.
        port: TCP port; 0 picks a free one.
        users: mapping ``"account:user" -> key`` or a :class:`Users`; Swift's sample user by default.
        access_log: write one log line per request to stderr (off: it costs time).
        sync_dirs: fsync directories after renames too (see :class:`~cloudlab.object_store.storage.Store`).
        sockets: listening sockets to serve instead of binding ``host:port`` (e.g. from
            :func:`cloudlab.process.inherited_socket`); ``host`` and ``port`` then name the first one.
    """

    def __init__(self, root, host="127.0.0.1", port=0, users=None, access_log=False, sync_dirs=False,
                 sockets=()):
        self.root = None if root is None else os.path.abspath(os.fspath(root))
        self.host = host
        self.port = port
        self.sockets = list(sockets)
        if self.sockets:
            self.host, self.port = self.sockets[0].getsockname()[:2]
        self.users = users if isinstance(users, Users) else Users(users)
        self.access_log = access_log
        self.sync_dirs = sync_dirs
        self.store = None
        self._loop = None
        self._thread = None
        self._runner = None
        self._stopped = None

    @property
    def url(self):
        """Base URL, e.g. ``http://127.0.0.1:8080`` (the first socket's, when it was given sockets)."""
        return f"http://{self.host}:{self.port}"

    @property
    def urls(self):
        """The base URL of every socket it serves (one unless it was given several)."""
        if not self.sockets:
            return [self.url]
        return [f"http://{host}:{port}" for host, port in (s.getsockname()[:2] for s in self.sockets)]

    def _listen(self):
        """The listening sockets to serve: the ones given, or one bound to ``host:port``."""
        if self.sockets:
            return self.sockets
        try:
            sock = socket.create_server((self.host, self.port), reuse_port=False, backlog=1024)
        except OSError as exc:
            raise InvalidInput(f"cannot listen on {self.host}:{self.port}: {exc.strerror}",
                               fix="choose another --port (0 picks a free one)") from None
        self.port = sock.getsockname()[1]
        return [sock]

    def _make_app(self):
        """The aiohttp application this server runs: the store's, over its root."""
        try:
            self.store = Store(self.root, sync_dirs=self.sync_dirs)
        except OSError as exc:
            raise InvalidInput(f"cannot use {self.root} as the store's root: {exc.strerror}",
                               fix="pass a writable directory as --root") from None
        return make_app(self.store, self.users)

    async def _start_sites(self, socks):
        self._runner = web.AppRunner(self._make_app(), access_log=web.access_logger if self.access_log else None,
                                     handle_signals=False)
        await self._runner.setup()
        for sock in socks:
            await web.SockSite(self._runner, sock).start()

    async def _cleanup(self):
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.store is not None:
            self.store.close()

    def start(self, timeout=10):
        """Start serving in a background thread; returns once the server listens.

        Raises:
            InvalidInput: the address is taken or the root is not writable.
            ResourceTimeout: the server did not come up in ``timeout`` seconds.
        """
        socks = self._listen()
        ready = threading.Event()
        failure = []

        def run():
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._start_sites(socks))
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            self._stopped = asyncio.Event()
            ready.set()
            loop.run_until_complete(self._stopped.wait())
            loop.run_until_complete(self._cleanup())
            # connections kept alive by clients still have handler tasks: end them cleanly
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, name="cloudlab-object-store", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise ResourceTimeout(f"the object store did not start within {timeout} s")
        if failure:
            for sock in socks:
                sock.close()
            raise failure[0]
        return self

    def stop(self, timeout=10):
        """Stop the background server and wait for it."""
        if self._thread is None:
            return
        if self._loop is not None and self._stopped is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout)
        self._thread = None

    def run(self, on_ready=None, parent_fd=None):
        """Serve in the foreground until SIGTERM or SIGINT (the command line).

        Args:
            on_ready: called with this server once it listens (e.g. to print the URL).
            parent_fd: the read end of a pipe whose write end the starting process keeps:
                it becomes readable (end of file) when that process is gone, and the server
                then stops too, so a lab that dies leaves no store behind.
        """
        socks = self._listen()

        async def main():
            await self._start_sites(socks)
            if on_ready:
                on_ready(self)
            try:
                await until_stopped(parent_fd)
            finally:
                await self._cleanup()

        asyncio.run(main())
