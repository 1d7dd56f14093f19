"""HTTP to the lab's addresses, from wherever the caller runs.

With ``CLOUDLAB_NETNS`` the lab's network (its bridge, containers, servers and the
load balancer) exists only inside a network namespace, which the notebook's own
process is not in.  :func:`request` opens its socket inside that namespace
(:func:`cloudlab.host.netns.socket_in`), so the notebook speaks plain HTTP to an
address of the lab, as a browser on a learner's own machine does without any of this.
"""

import dataclasses
import http.client
import time
import urllib.parse

from ..errors import CloudlabError, InvalidInput
from ..host import netns as netns_mod


@dataclasses.dataclass
class Response:
    """One HTTP answer: status, headers (lower-case names), body text, seconds it took."""

    status: int
    headers: dict
    text: str
    elapsed_s: float

    @property
    def ok(self):
        """True for a 2xx status."""
        return 200 <= self.status < 300

    def __str__(self):
        return self.text


class _Connection(http.client.HTTPConnection):
    def __init__(self, host, port, ns, timeout):
        super().__init__(host, port, timeout=timeout)
        self._ns = ns

    def connect(self):
        sock = netns_mod.socket_in(self._ns)
        sock.settimeout(self.timeout)
        try:
            sock.connect((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.sock = sock


def request(url, ns=None, method="GET", data=None, headers=None, timeout=10.0):
    """Send one HTTP request to ``url`` from inside namespace ``ns`` (None: this process's network).

    Args:
        url: ``http://ADDRESS:PORT/path?query``.
        data: request body (str or bytes) for POST/PUT.
        headers: extra request headers.
    Returns:
        a :class:`Response`.
    Raises:
        InvalidInput: not an http:// URL.
        CloudlabError: nothing answered (refused, timed out); the message names the address.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise InvalidInput(f"{url!r} is not an http:// URL", fix="e.g. http://10.0.0.1:8000/")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    body = data.encode() if isinstance(data, str) else data
    started = time.monotonic()
    conn = _Connection(parts.hostname, parts.port or 80, ns, timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        answer = conn.getresponse()
        text = answer.read().decode("utf-8", "replace")
        return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, text,
                        time.monotonic() - started)
    except (OSError, http.client.HTTPException) as exc:
        raise CloudlabError(f"no HTTP answer from {parts.hostname}:{parts.port or 80}: {exc}",
                            fix="is the app running? (app.status(), app.logs())") from None
    finally:
        conn.close()


def wait_for(url, ns=None, timeout=10.0, status=200):
    """Poll ``url`` until it answers with ``status`` (None: any status below 500); returns that :class:`Response`.

    Raises:
        ResourceTimeout: it did not, within ``timeout`` seconds (the message says what came back last).
    """
    from ..errors import ResourceTimeout
    deadline = time.monotonic() + timeout
    last = "nothing"
    while True:
        try:
            answer = request(url, ns=ns, timeout=max(0.5, min(2.0, deadline - time.monotonic())))
            if answer.status == status or (status is None and answer.status < 500):
                return answer
            last = f"status {answer.status}"
        except CloudlabError as exc:
            last = exc.message
        if time.monotonic() >= deadline:
            raise ResourceTimeout(f"{url} did not answer {status} within {timeout:g} s (last: {last})",
                                  fix="read the app's logs(): did its program start?")
        time.sleep(0.05)
