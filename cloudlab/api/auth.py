"""Checking tokens as an OpenStack service does: ask Keystone, remember the answer a while.

A service that receives ``X-Auth-Token: T`` asks Keystone ``GET /v3/auth/tokens`` with its
own token in ``X-Auth-Token`` and T in ``X-Subject-Token`` (keystonemiddleware's
``auth_token`` does this in every OpenStack service).  Keystone answers 200 with the
user, the project and the roles, or 404 when it does not know T or T has expired.
Answers are cached for a minute (keystonemiddleware keeps them five), so a client's
burst of requests costs Keystone one validation.

The caller's identity (:class:`TokenInfo`) is what every handler reads: the project
owns what it creates; another project's resource is "not found".

A service in a process of its own (the object store on the controller node) has no
:class:`~cloudlab.api.identity.Identity` to ask for its token: :class:`ServiceLogin` logs
in with the user and password its configuration names, as keystonemiddleware's
``[keystone_authtoken]`` section does.  :func:`swift_account` is the rule of Swift's
``keystoneauth`` the lab applies, wherever the object store runs.
"""

import dataclasses
import datetime
import os
import threading
import time

from ..errors import CloudlabError, InvalidInput, NotFound
from .http import ApiError

# a service user's password reaches a node's process through its environment, never its command
# line: /proc/PID/cmdline is readable by every user of the machine, /proc/PID/environ only by its owner
KEYSTONE_PASSWORD_VARIABLE = "CLOUDLAB_KEYSTONE_PASSWORD"
CACHE_S = 60.0
NEGATIVE_CACHE_S = 5.0
CACHE_MAX = 10000
# roles that may change what a project owns (Keystone's default roles; reader only reads)
WRITE_ROLES = {"admin", "manager", "member"}


@dataclasses.dataclass(frozen=True)
class TokenInfo:
    """Who a valid token speaks for: user, project and roles (from Keystone's token document)."""

    user_id: str
    user_name: str
    project_id: str
    project_name: str
    roles: tuple
    expires_at: float

    @property
    def is_admin(self):
        """True for the admin role (OpenStack's policies let it see every project)."""
        return "admin" in self.roles

    @property
    def can_write(self):
        """True when a role may create, change or delete the project's resources."""
        return bool(WRITE_ROLES & set(self.roles))

    @classmethod
    def from_token(cls, body):
        """Parse the ``token`` object of Keystone's answer."""
        project = body.get("project") or {}
        expires = datetime.datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")).timestamp()
        return cls(user_id=body["user"]["id"], user_name=body["user"]["name"],
                   project_id=project.get("id", ""), project_name=project.get("name", ""),
                   roles=tuple(sorted(r["name"] for r in body.get("roles", []))), expires_at=expires)


class ServiceLogin:
    """One service user's own login to Keystone, from its configuration (no lab object needed).

    Offers what :class:`TokenValidator` asks of the lab's Identity: ``url`` and
    ``service_token()``.  The token is fetched on first use and renewed at half its
    life, so a service started before Keystone answers still works once it does.

    Args:
        url: Keystone's base URL as this service reaches it, e.g. ``http://10.214.1.11:5000``.
        user: the service user (``swift``); password: its password.
        project: the project it is scoped to (``service``, as the install guides make it).
    """

    def __init__(self, url, user, password, project="service"):
        self.url = url.rstrip("/")
        self.user = user
        self.project = project
        self._password = password
        self._token = None
        self._renew_at = 0.0
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls, url, user, project="service"):
        """The login of ``user`` at ``url``, its password read from ``$CLOUDLAB_KEYSTONE_PASSWORD``.

        Raises:
            InvalidInput: the variable is not set.
        """
        password = os.environ.get(KEYSTONE_PASSWORD_VARIABLE)
        if not password:
            raise InvalidInput(f"--keystone-url needs the password of user {user!r} in ${KEYSTONE_PASSWORD_VARIABLE}",
                               fix=f"set {KEYSTONE_PASSWORD_VARIABLE} in the server's environment "
                                   "(never on its command line, which every user can read)")
        return cls(url, user, password, project=project)

    def service_token(self, service_user=None):
        """This service user's token (``service_user``, when given, must be that user).

        Raises:
            InvalidInput: Keystone refused the password; CloudlabError: asked for another user.
            requests.RequestException: Keystone could not be reached.
        """
        if service_user not in (None, self.user):
            raise CloudlabError(f"this login is {self.user!r}'s, not {service_user!r}'s")
        with self._lock:
            if self._token is not None and time.time() < self._renew_at:
                return self._token
            from .identity import KeystoneClient
            token, body = KeystoneClient(self.url).password_token(self.user, self._password, project=self.project)
            now = time.time()
            self._token = token
            self._renew_at = now + (TokenInfo.from_token(body["token"]).expires_at - now) / 2
            return token

    def __repr__(self):
        return f"<ServiceLogin {self.user} at {self.url}>"


class TokenValidator:
    """Validates tokens with Keystone as one service's user, with a cache; safe from any thread.

    Args:
        identity: the lab's :class:`~cloudlab.api.identity.Identity`, or a :class:`ServiceLogin`
            (a service in another process).
        service_user: the service's own user (``nova``, ``glance``, ``swift``...).
    """

    def __init__(self, identity, service_user):
        self.identity = identity
        self.service_user = service_user
        self._cache = {}          # token -> (TokenInfo or None, keep until)
        self._lock = threading.Lock()
        self._local = threading.local()
        self.asked = 0            # validations sent to Keystone (the rest came from the cache)

    def _client(self):
        from .identity import KeystoneClient
        if getattr(self._local, "client", None) is None:
            self._local.client = KeystoneClient(self.identity.url)
        return self._local.client

    def validate(self, token):
        """The :class:`TokenInfo` of a valid ``token``, or None (unknown, revoked or expired).

        Raises:
            CloudlabError: Keystone could not be asked (it is down, say).
        """
        now = time.time()
        with self._lock:
            hit = self._cache.get(token)
        if hit is not None and hit[1] > now and (hit[0] is None or hit[0].expires_at > now):
            return hit[0]
        import requests
        self.asked += 1
        try:
            body = self._client().call("GET", "/v3/auth/tokens", "validating a token",
                                       token=self.identity.service_token(self.service_user),
                                       headers={"X-Subject-Token": token})
            info = TokenInfo.from_token(body["token"])
            keep = min(now + CACHE_S, info.expires_at)
        except NotFound:
            info, keep = None, now + NEGATIVE_CACHE_S
        except requests.RequestException as exc:
            raise CloudlabError(f"Keystone could not be asked about a token: {exc}",
                                fix="is the lab's identity service running? lab.identity") from None
        with self._lock:
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            self._cache[token] = (info, keep)
        return info


class TokenCheck:
    """The token step of an API's middleware: 401 unless ``X-Auth-Token`` is valid.

    Args:
        validator: a :class:`TokenValidator`.
        auth_url: Keystone's URL, sent in ``WWW-Authenticate`` as keystonemiddleware does.
    """

    def __init__(self, validator, auth_url):
        self.validator = validator
        self.auth_url = auth_url

    def _denied(self, message):
        return ApiError(401, message, fault="unauthorized",
                        headers={"WWW-Authenticate": f"Keystone uri='{self.auth_url}'"})

    async def context(self, request):
        """The caller's :class:`TokenInfo`.

        Raises:
            ApiError: 401 without a token, or with one Keystone does not accept.
        """
        from .http import blocking
        token = request.headers.get("X-Auth-Token")
        if not token:
            raise self._denied("The request you have made requires authentication: send X-Auth-Token "
                               "(openstack token issue gives one)")
        info = await blocking(self.validator.validate, token)
        if info is None:
            raise self._denied("The request you have made requires authentication: the token is unknown, "
                               "revoked or expired")
        return info


def swift_account(info):
    """What a Keystone token opens in the object store, by Swift's ``keystoneauth`` rule as the lab applies it.

    A token of a project's member (a role that may write: :attr:`TokenInfo.can_write`)
    opens that project's account ``AUTH_<project id>`` as its owner; Swift's Keystone
    ACLs name the user ``<project id>:<user id>``.

    Args:
        info: a :class:`TokenInfo`, or None (Keystone did not accept the token).
    Returns:
        ``(storage account, login)``, or None: a reader's token, a token without a project.
    """
    if info is None or not info.can_write or not info.project_id:
        return None
    return f"AUTH_{info.project_id}", f"{info.project_id}:{info.user_id}"


def keystone_accounts(validator):
    """The object store's Keystone token source: ``token -> (storage account, login)`` or None.

    For :meth:`cloudlab.object_store.auth.Users.add_token_source`: ``validator`` (a
    :class:`TokenValidator`, which caches) asks Keystone; :func:`swift_account` decides.
    A Keystone that cannot be asked accepts nobody: the client gets a 401, not a 500.
    """
    def source(token):
        try:
            return swift_account(validator.validate(token))
        except CloudlabError:
            return None
    return source
