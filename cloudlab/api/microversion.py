"""Microversions of the block storage and shared file systems APIs (Nova's are in :mod:`.compute`).

An OpenStack API changes in small numbered steps.  A client names the step it speaks
in a header, and the answer has that step's shape and names it back:

* Cinder: ``OpenStack-API-Version: volume 3.N`` (3.0 ... 3.71);
* Manila: ``X-OpenStack-Manila-API-Version: 2.N`` (2.0 ...), the header python-manilaclient
  sends; keystoneauth also sends ``OpenStack-API-Version: shared-file-system 2.N``.

No header means the minimum; ``latest`` the maximum; a version outside the range is
406 and a malformed one 400, as the services answer.
"""

import re

from aiohttp import web

from .http import CONTEXT, ApiError

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)$")
VERSION = web.RequestKey("microversion", tuple)


def vstr(version):
    """``(3, 27)`` as ``"3.27"``."""
    return f"{version[0]}.{version[1]}"


class Microversions:
    """One service's microversion range and headers.

    Args:
        names: the service names accepted in ``OpenStack-API-Version`` (``("volume", "block-storage")``).
        minimum, maximum: ``(major, minor)``.
        legacy: a service-specific header read and written too (Manila's), or None.
        answer_standard: also answer ``OpenStack-API-Version`` (Cinder does; Manila writes only its own).
    """

    def __init__(self, names, minimum, maximum, legacy=None, answer_standard=True):
        self.names = tuple(names)
        self.minimum = minimum
        self.maximum = maximum
        self.legacy = legacy
        self.answer_standard = answer_standard

    def parse(self, request):
        """The version the request asks for.

        Raises:
            ApiError: 400 for a malformed value, 406 for one outside the range.
        """
        value = None
        for item in request.headers.get("OpenStack-API-Version", "").split(","):
            service, _, wanted = item.strip().partition(" ")
            if service.lower() in self.names:
                value = wanted.strip()
        if self.legacy and request.headers.get(self.legacy):
            value = request.headers[self.legacy].strip()
        if not value:
            return self.minimum
        if value.lower() == "latest":
            return self.maximum
        match = _VERSION_RE.match(value)
        if not match:
            raise ApiError(400, f"API Version String {value} is of invalid format. Must be of format "
                                "MajorNum.MinorNum.")
        wanted = int(match.group(1)), int(match.group(2))
        if not self.minimum <= wanted <= self.maximum:
            raise ApiError(406, f"Version {value} is not supported by the API. Minimum is {vstr(self.minimum)} "
                                f"and maximum is {vstr(self.maximum)}.", fault="notAcceptable")
        return wanted

    async def negotiate(self, request):
        """The middleware check: remember the version for the handler (``request[VERSION]``)."""
        request[VERSION] = self.parse(request)

    async def headers(self, request, response):
        """``on_response_prepare``: name the version the answer has, and that answers vary by it."""
        version = request.get(VERSION)
        vary = []
        if self.answer_standard:
            vary.append("OpenStack-API-Version")
            if version is not None:
                response.headers["OpenStack-API-Version"] = f"{self.names[0]} {vstr(version)}"
        if self.legacy:
            vary.append(self.legacy)
            if version is not None:
                response.headers[self.legacy] = vstr(version)
        response.headers["Vary"] = ", ".join(vary)


class ProjectScopedAPI:
    """What Cinder's and Manila's APIs share: project-scoped URLs and microversions negotiated per request.

    A subclass sets ``microversions`` (its :class:`Microversions`) and ``version_path``
    (``"/v3"``), and lists :meth:`_negotiate` and :meth:`_project_in_url` among its
    middleware checks.

    Args:
        api: the :class:`~cloudlab.api.OpenStackAPI`.
        auth: the :class:`~cloudlab.api.auth.TokenCheck` for the service's user.
    """

    microversions = None
    version_path = None

    def __init__(self, api, auth):
        self.api = api
        self.lab = api.lab
        self.auth = auth
        self.base = None

    def _public(self, request):
        return request.method == "GET" and request.path.rstrip("/") in ("", self.version_path)

    async def _negotiate(self, request):
        # the version documents answer whatever version the client asks for: that is how it learns the range
        if not self._public(request):
            await self.microversions.negotiate(request)

    async def _project_in_url(self, request):
        """The URL's project is the token's (else 400 Malformed request url, as Cinder and Manila answer)."""
        wanted = request.match_info.get("project_id")
        ctx = request.get(CONTEXT)
        if wanted and ctx is not None and wanted != ctx.project_id and not ctx.is_admin:
            raise ApiError(400, f"Malformed request url: the URL names project {wanted}, the token project "
                                f"{ctx.project_id}")
