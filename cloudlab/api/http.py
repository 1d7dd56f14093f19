"""What every OpenStack REST API of the lab shares: faults, JSON bodies, tokens, one event loop.

Each service (compute, image, network...) is an aiohttp application of its own on its
own port, as in a deployment, where nova-api, glance-api and neutron-server are
separate servers.  They run on one event loop in one background thread
(:class:`ApiServer`); the lab's services they call block (libvirt, qemu-img), so every
such call runs in a thread pool (:func:`blocking`).

Requests pass through :func:`middleware`, in this order:

1. the token: ``X-Auth-Token`` is checked with Keystone (:mod:`cloudlab.api.auth`); none
   or an invalid one is 401 with ``WWW-Authenticate: Keystone uri=...``, as
   keystonemiddleware answers; version documents need no token;
2. the service's own checks (the compute API's microversion header, ...);
3. the handler; any error becomes a JSON *fault* in the service's own shape (Nova's
   ``{"itemNotFound": {"code": 404, "message": ...}}``, Neutron's ``{"NeutronError": ...}``),
   never a traceback: an unexpected exception is a 500 naming only its kind, and is
   written with its traceback to the API's log file.
"""

import asyncio
import functools
import json
import logging
import socket
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from ..errors import CloudlabError, Conflict, InvalidInput, MissingPrerequisite, NotFound, QuotaExceeded, \
    ResourceTimeout

CONTEXT = web.RequestKey("context", object)     # the caller's auth.TokenInfo
log = logging.getLogger("cloudlab.api")

# Nova's fault names by status, which python-novaclient and the SDK print
NOVA_FAULTS = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
               405: "badMethod", 406: "notAcceptable", 409: "conflictingRequest", 413: "overLimit",
               415: "badMediaType", 500: "computeFault", 501: "notImplemented", 503: "serviceUnavailable"}


class ApiError(Exception):
    """An HTTP error of an API: status, message, and optionally a fault name and headers."""

    def __init__(self, status, message, fault=None, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.fault = fault
        self.headers = headers or {}


def from_cloudlab(exc):
    """The :class:`ApiError` for one of cloudlab's errors raised by a service."""
    message = exc.message + (f" ({exc.fix})" if exc.fix else "")
    if isinstance(exc, NotFound):
        return ApiError(404, message)
    if isinstance(exc, InvalidInput):
        return ApiError(400, message)
    if isinstance(exc, Conflict):
        return ApiError(409, message)
    if isinstance(exc, QuotaExceeded):
        return ApiError(403, message, fault="forbidden")
    if isinstance(exc, ResourceTimeout):
        return ApiError(504, message)
    if isinstance(exc, MissingPrerequisite):
        return ApiError(503, message)
    return ApiError(500, message)


def nova_fault(status, message, fault=None):
    """A fault as Nova writes it: ``{"itemNotFound": {"code": 404, "message": "..."}}``."""
    name = fault or NOVA_FAULTS.get(status, "computeFault")
    return {name: {"code": status, "message": message}}


def require_writer(ctx):
    """Refuse a change by a caller whose roles only read (403, as the services' policies answer)."""
    if not ctx.can_write:
        raise ApiError(403, f"Policy doesn't allow this action: the role(s) {', '.join(ctx.roles)} may only "
                            "read; it needs member", fault="forbidden")


def json_response(body, status=200, headers=None):
    """A JSON response (``application/json``)."""
    return web.Response(status=status, text=json.dumps(body), content_type="application/json",
                        headers=headers)


async def json_body(request, root=None):
    """The request's JSON body; with ``root``, the object under that key.

    Raises:
        ApiError: 400 naming what is wrong: not JSON, not an object, no ``root`` key.
    """
    raw = await request.read()
    if not raw:
        raise ApiError(400, "the request needs a JSON body" + (f' with a "{root}" object' if root else ""))
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Malformed request body: the body is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"Malformed request body: expected a JSON object, got {type(body).__name__}")
    if root is None:
        return body
    if root not in body:
        raise ApiError(400, f"Invalid input for field/attribute {root}. Value: {json.dumps(body)[:200]}. "
                            f"'{root}' is a required property")
    if not isinstance(body[root], dict):
        raise ApiError(400, f"Invalid input for field/attribute {root}. Value: {json.dumps(body[root])[:200]}. "
                            f"{json.dumps(body[root])[:100]} is not of type 'object'")
    return body[root]


def field(obj, name, kind, required=False, default=None, path=None):
    """``obj[name]`` checked to be of ``kind`` (a type or tuple of types).

    Raises:
        ApiError: 400 naming the field, its value and the type it needs.
    """
    where = path or name
    if name not in obj or obj[name] is None and not required:
        if required:
            raise ApiError(400, f"Invalid input for field/attribute {where}. '{name}' is a required property")
        return default
    value = obj[name]
    if not isinstance(value, kind) or isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple)
                                                                              else (kind,)):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ApiError(400, f"Invalid input for field/attribute {where}. Value: {json.dumps(value)[:100]}. "
                            f"It must be of type {names}")
    return value


_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="cloudlab-api")


async def blocking(fn, *args, **kwargs):
    """Run a blocking call (a lab service, libvirt, Keystone) in the API's thread pool."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool, functools.partial(fn, *args, **kwargs))


def background(fn, *args, **kwargs):
    """Start a blocking call in the thread pool without waiting (what a 202 Accepted promises)."""
    def run():
        try:
            fn(*args, **kwargs)
        except Exception:   # the resource's state shows the failure; the log keeps the why
            log.exception("background task %s failed", getattr(fn, "__name__", fn))
    _pool.submit(run)


def middleware(auth, fault, public=(), checks=(), journal=None, service=""):
    """An aiohttp middleware: token check, the service's ``checks``, faults as the service writes them.

    Args:
        auth: a :class:`cloudlab.api.auth.TokenCheck`.
        fault: ``(status, message, fault_name) -> JSON-ready body`` in the service's shape.
        public: callables ``request -> bool`` for requests that need no token (version documents).
        checks: coroutines ``(request) -> None`` run after the token (may raise ApiError).
        journal: a ``collections.deque`` that gets one dict per request (see ``OpenStackAPI.requests``).
        service: the service's name in the journal (``nova``, ``glance``...).
    """
    @web.middleware
    async def handle(request, handler):
        started = time.monotonic()
        asked = auth.validator.asked
        response = await _handle(request, handler)
        if journal is not None:
            ctx = request.get(CONTEXT)
            journal.append({"service": service, "method": request.method, "path": request.path_qs,
                            "status": response.status, "ms": round((time.monotonic() - started) * 1000, 1),
                            "user": ctx.user_name if ctx else None, "project": ctx.project_name if ctx else None,
                            "token": "no token needed" if ctx is None else
                            ("validated by Keystone" if auth.validator.asked > asked else "validation cached"),
                            "at": time.time()})
        return response

    async def _handle(request, handler):
        try:
            if not any(p(request) for p in public):
                request[CONTEXT] = await auth.context(request)
            for check in checks:
                await check(request)
            return await handler(request)
        except ApiError as exc:
            return json_response(fault(exc.status, exc.message, exc.fault), status=exc.status, headers=exc.headers)
        except CloudlabError as exc:
            err = from_cloudlab(exc)
            return json_response(fault(err.status, err.message, err.fault), status=err.status)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            reason = {404: "no such resource: see the API reference for this service's paths",
                      405: f"{request.method} is not allowed on {request.path}"}.get(exc.status, exc.reason)
            return json_response(fault(exc.status, reason, None), status=exc.status,
                                 headers={k: v for k, v in exc.headers.items() if k == "Allow"})
        except asyncio.CancelledError:
            raise
        except Exception as exc:   # never a traceback at a client: the log has it
            log.error("unexpected error on %s %s:\n%s", request.method, request.path, traceback.format_exc())
            return json_response(fault(500, f"Unexpected API Error ({type(exc).__name__}); "
                                            "the lab's API log has the details", None), status=500)
    return handle


class ApiServer:
    """The lab's REST APIs: aiohttp applications, each on its own loopback port, on one event loop.

    ``add(name, app)`` binds a socket at once (so the URL is known before the loop runs);
    ``start()`` serves every added application from a background thread.
    """

    def __init__(self, host="127.0.0.1"):
        self.host = host
        self._apps = {}          # name -> (app, socket)
        self._runners = []
        self._loop = None
        self._thread = None
        self._stopped = None

    def add(self, name, app):
        """Bind a port for ``app`` and return its base URL (``http://127.0.0.1:PORT``)."""
        sock = socket.create_server((self.host, 0), backlog=256)
        self._apps[name] = (app, sock)
        if self._loop is not None:     # already serving: start this one too
            asyncio.run_coroutine_threadsafe(self._serve(app, sock), self._loop).result(10)
        return self.url(name)

    def url(self, name):
        """Base URL of application ``name``."""
        return f"http://{self.host}:{self._apps[name][1].getsockname()[1]}"

    async def _serve(self, app, sock):
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runners.append(runner)

    def start(self, timeout=10):
        """Serve every added application from a background thread; returns once they listen."""
        ready = threading.Event()
        failure = []

        def run():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                for app, sock in self._apps.values():
                    loop.run_until_complete(self._serve(app, sock))
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            self._stopped = asyncio.Event()
            ready.set()
            loop.run_until_complete(self._stopped.wait())
            for runner in self._runners:
                loop.run_until_complete(runner.cleanup())
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, name="cloudlab-api", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise ResourceTimeout(f"the OpenStack APIs did not start within {timeout} s")
        if failure:
            raise failure[0]
        return self

    def stop(self, timeout=10):
        """Stop serving and close every socket."""
        if self._thread is not None and self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout)
        self._thread = None
        self._loop = None
        for _, sock in self._apps.values():
            sock.close()
        self._apps.clear()
        self._runners.clear()
