"""What goes over the wire: send one HTTP request and show it, headers and all.

Object storage is an HTTP API, so the clearest way to learn it is to read the
requests and answers themselves.  :func:`exchange` sends one request with the
standard library's ``http.client`` (no client library tidying anything) and returns
an :class:`Exchange` that prints like a ``curl -v`` transcript::

    > PUT /v1/AUTH_test/photos/cat.txt HTTP/1.1
    > X-Auth-Token: AUTH_tk...
    > X-Object-Meta-Color: grey
    < HTTP/1.1 201 Created
    < Etag: 4a4be40c96ac6314e91d93f38043a634     <- read this

A transcript leaves out what every HTTP answer carries and says nothing about
object storage (``Server``, ``Date``, and ``X-Openstack-Request-Id``, a copy of
``X-Trans-Id``) unless asked for in full, and marks the headers named in ``read``
(``X-Object-Meta-*`` matches every user metadata header) so a reader knows where to look.
"""

import fnmatch
import http.client
from urllib.parse import quote, urlsplit

from ..errors import InvalidInput, NotFound

# headers that say nothing about object storage; left out of transcripts
QUIET = {"server", "connection", "keep-alive"}
# headers every answer carries; shown only in a full transcript
ROUTINE = {"date", "x-openstack-request-id"}
MARK = "    <- read this"


class Exchange:
    """One request and its response: ``status``, ``reason``, ``headers`` (a dict), ``body`` (bytes)."""

    def __init__(self, method, path, request_headers, request_body, status, reason, headers, body, read=()):
        self.read = tuple(read)
        self.method = method
        self.path = path
        self.request_headers = request_headers
        self.request_body = request_body
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def header(self, name, default=None):
        """A response header by case-insensitive name."""
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return default

    @staticmethod
    def _marked(side, name, read):
        # a pattern "> Name" marks only the request's header, "< Name" only the response's
        for pattern in read:
            where, _, bare = pattern.partition(" ") if pattern[:2] in ("> ", "< ") else ("", "", pattern)
            if where in ("", side) and fnmatch.fnmatch(name.lower(), bare.lower()):
                return MARK
        return ""

    def transcript(self, max_body=200, read=None, full=False):
        """The exchange as ``>`` request and ``<`` response lines, bodies cut at ``max_body`` bytes.

        Args:
            max_body: bytes of each body shown.
            read: header names (``*`` patterns; ``"> Name"`` only in the request, ``"< Name"`` only
                in the response) to mark; the exchange's own ``read`` by default.
            full: also show the headers every answer carries (``Date``, ``X-Openstack-Request-Id``).
        """
        read = self.read if read is None else tuple(read)
        hidden = QUIET if full else QUIET | ROUTINE
        lines = [f"> {self.method} {self.path} HTTP/1.1"]
        lines += [f"> {k}: {v}{self._marked('>', k, read)}" for k, v in self.request_headers.items()]
        if self.request_body:
            lines.append(">")
            lines.append("> " + _preview(self.request_body, max_body))
        lines.append(f"< HTTP/1.1 {self.status} {self.reason}")
        lines += [f"< {k}: {v}{self._marked('<', k, read)}" for k, v in self.headers.items() if k.lower() not in hidden]
        if self.body:
            lines.append("<")
            lines += ["< " + line for line in _preview(self.body, max_body).splitlines()]
        return "\n".join(lines)

    def __str__(self):
        return self.transcript()

    def __repr__(self):
        return f"<Exchange {self.method} {self.path} -> {self.status}>"


def _preview(body, limit):
    text = body[:limit].decode("utf-8", "replace")
    return text + (f"... ({len(body)} bytes)" if len(body) > limit else "")


def exchange(method, url, headers=None, body=None, timeout=10, read=()):
    """Send one HTTP request to a loopback URL and return the :class:`Exchange`.

    Args:
        method: HTTP verb (GET, PUT, POST, HEAD, DELETE, COPY ...).
        url: full URL, e.g. ``store.storage_url() + "/photos"``; the path is
            percent-encoded as needed (``/`` kept).
        headers: request headers.
        body: request body (bytes or str); Content-Length is set from it.
        read: header names (``*`` patterns allowed) the transcript marks as the ones to read.
    Raises:
        InvalidInput: the URL is not http://127.x.x.x or localhost.
        NotFound: nothing listens at that address.
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or not (parts.hostname == "localhost" or (parts.hostname or "").startswith("127.")):
        raise InvalidInput(f"{url!r} is not a loopback http URL", fix="use the lab's store.url")
    path = quote(parts.path or "/", safe="/%") + (f"?{parts.query}" if parts.query else "")
    if isinstance(body, str):
        body = body.encode()
    sent = dict(headers or {})
    if body is not None or method in ("PUT", "POST"):
        sent.setdefault("Content-Length", str(len(body or b"")))
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
        for k, v in sent.items():
            conn.putheader(k, v)
        conn.endheaders(body)
        resp = conn.getresponse()
        got = resp.read()
    except ConnectionRefusedError:
        raise NotFound(f"nothing listens at {parts.netloc}", fix="start the store: lab.object_store") from None
    finally:
        conn.close()
    return Exchange(method, path, sent, body, resp.status, resp.reason, dict(resp.getheaders()), got, read=read)
