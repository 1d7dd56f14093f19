"""The object store's proxy: the API's front door on the controller, the objects on the storage node.

Swift splits itself so: ``swift-proxy-server`` on the controller takes every request of
the API, and passes it on to the object servers of the storage nodes, which keep the
bytes and the metadata on their disks.  In a multi-node layout the lab does the same
with two processes: the object server (:class:`~cloudlab.object_store.server.ObjectStoreServer`,
which keeps the data and checks who may do what) runs on the storage node, and this
proxy, on the controller, passes each request to it over the management network and
streams the answer back.

The proxy changes nothing that the object server (or a request's signature) depends
on: the method, the raw path and query, and the end-to-end headers, ``Host`` among them
(so an S3 signature still matches, and Swift's auth answer names the URL the client
used), go as they came; only the hop-by-hop headers of RFC 9110 stay on each hop.  The
bodies are streamed both ways, never held whole.  An object server that does not answer
(its port closed: the process or its node is down) is the client's ``502 Bad Gateway``
after a few seconds of trying again, as from a Swift proxy whose object servers are down.
"""

import asyncio
import logging

from aiohttp import ClientConnectorError, ClientError, ClientSession, ClientTimeout, TCPConnector, web
from multidict import CIMultiDict

from .server import ObjectStoreServer

log = logging.getLogger("cloudlab.object_store.proxy")

CHUNK = 64 * 1024
CONNECT_RETRY_S = 3.0      # how long a refused connection to the object server is tried again
# the headers of one hop only (RFC 9110, 7.6.1), and Expect: this proxy answers 100-continue itself
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
              "trailer", "transfer-encoding", "upgrade", "expect"}
SESSION_KEY = web.AppKey("session", ClientSession)


def make_proxy_app(upstream):
    """The aiohttp application that passes every request on to the object server at ``upstream``."""
    upstream = upstream.rstrip("/")

    async def open_session(app):
        app[SESSION_KEY] = ClientSession(
            connector=TCPConnector(limit=256), auto_decompress=False,
            timeout=ClientTimeout(total=None, sock_connect=5, sock_read=300),
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"))
        yield
        await app[SESSION_KEY].close()

    async def forward(request):
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP)
        headers.add("X-Forwarded-For", request.remote or "")
        body = request.content if request.body_exists else None
        try:
            async with await _connect(request, upstream + request.raw_path, headers, body) as up:
                response = web.StreamResponse(status=up.status, reason=up.reason)
                for name, value in up.headers.items():
                    if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                        response.headers.add(name, value)
                if "Content-Length" in up.headers:
                    response.content_length = int(up.headers["Content-Length"])
                await response.prepare(request)
                if request.method != "HEAD":
                    async for chunk in up.content.iter_chunked(CHUNK):
                        await response.write(chunk)
                await response.write_eof()
                return response
        except (ClientError, OSError) as exc:
            log.warning("%s %r: the object server at %s did not answer: %s", request.method,
                        request.raw_path[:200], upstream, exc)
            return web.Response(status=502, text=f"the object server at {upstream} did not answer "
                                                 f"({type(exc).__name__}); is the storage node up?\n")

    async def _connect(request, url, headers, body):
        # an object server starting again (a new Keystone, a node back from a power cut) refuses
        # connections for a moment: try again for a few seconds, which is safe because nothing of
        # the request, its body included, has been sent when the connection is refused
        deadline = asyncio.get_running_loop().time() + CONNECT_RETRY_S
        while True:
            try:
                return await request.app[SESSION_KEY].request(request.method, url, headers=headers, data=body,
                                                              allow_redirects=False)
            except ClientConnectorError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)

    app = web.Application()
    app.cleanup_ctx.append(open_session)
    app.router.add_route("*", r"/{path:[\s\S]*}", forward)
    return app


class ProxyServer(ObjectStoreServer):
    """The proxy as a running HTTP server (the runner, sockets and stopping are the object store's).

    Args:
        upstream: the object server's base URL, e.g. ``http://10.214.0.14:6200``.
        host, port, sockets, access_log: as for :class:`ObjectStoreServer`.
    """

    def __init__(self, upstream, host="127.0.0.1", port=0, sockets=(), access_log=False):
        super().__init__(None, host=host, port=port, access_log=access_log, sockets=sockets)   # keeps no data
        self.upstream = upstream

    def _make_app(self):
        return make_proxy_app(self.upstream)
