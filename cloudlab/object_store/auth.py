"""Who may use the object store: TempAuth-style users, tokens and S3 keys.

Swift's TempAuth keeps users in the proxy's configuration as ``account:user`` with
a key.  A client sends them once, to ``GET /auth/v1.0`` (``X-Auth-User`` and
``X-Auth-Key``), and receives a *token* and the *storage URL* of its account
(``.../v1/AUTH_<account>``); every later request carries only the token
(``X-Auth-Token``), which expires after a while.  The S3 view signs each request
instead (Signature V4) with an access key and its secret; here, as in Swift's own
s3api middleware, the access key is ``account:user`` and the secret is the key.

Users and tokens live in memory: one dict lookup per request, no file read.
"""

import secrets
import threading
import time
from dataclasses import dataclass

from ..errors import InvalidInput

DEFAULT_USERS = {"test:tester": "testing"}    # Swift's TempAuth sample user
TOKEN_TTL = 86400                             # TempAuth's default token life, seconds
RESELLER_PREFIX = "AUTH_"


@dataclass(frozen=True)
class User:
    """One user: ``account:user`` and the key (password / S3 secret) they authenticate with."""
    account: str
    user: str
    key: str

    @property
    def storage_account(self):
        """The account name in storage URLs, e.g. ``AUTH_test``."""
        return RESELLER_PREFIX + self.account

    @property
    def name(self):
        """``account:user``, the login (and S3 access key)."""
        return f"{self.account}:{self.user}"


class Users:
    """The store's users and the tokens issued to them.

    Args:
        users: mapping ``"account:user" -> key``; defaults to ``test:tester`` / ``testing``.
        token_ttl: seconds a token stays valid.
    Raises:
        InvalidInput: a login is not of the form ``account:user``.
    """

    def __init__(self, users=None, token_ttl=TOKEN_TTL):
        self.token_ttl = token_ttl
        self._users = {}
        self._tokens = {}           # token -> (storage account, expiry)
        self._lock = threading.Lock()
        for login, key in (DEFAULT_USERS if users is None else users).items():
            self.add(login, key)

    def add(self, login, key):
        """Add (or replace) a user.

        Args:
            login: ``account:user``.
            key: the user's key (also the S3 secret).
        Raises:
            InvalidInput: malformed login or empty key.
        """
        account, sep, user = str(login).partition(":")
        if not sep or not account or not user or "/" in login:
            raise InvalidInput(f"user {login!r} is not of the form account:user",
                               fix="name users like 'test:tester'")
        if not key:
            raise InvalidInput(f"user {login!r} needs a non-empty key")
        self._users[login] = User(account, user, str(key))

    def __iter__(self):
        return iter(self._users.values())

    def __len__(self):
        return len(self._users)

    def as_dict(self):
        """Mapping ``account:user -> key`` of every user."""
        return {u.name: u.key for u in self._users.values()}

    def authenticate(self, login, key):
        """The :class:`User` whose login and key these are, or None."""
        user = self._users.get(login)
        if user is None or not secrets.compare_digest(user.key.encode(), str(key).encode()):
            return None
        return user

    def s3_secret(self, access_key):
        """``(secret, storage account)`` for an S3 access key, or None when unknown."""
        user = self._users.get(access_key)
        return None if user is None else (user.key, user.storage_account)

    def issue_token(self, user):
        """Issue a token for ``user``; returns ``(token, seconds until it expires)``.

        A user who already holds a valid token gets the same one back, as TempAuth does.
        """
        now = time.time()
        with self._lock:
            for token, (account, expires, login) in list(self._tokens.items()):
                if expires <= now:
                    del self._tokens[token]
                elif login == user.name:
                    return token, int(expires - now)
            token = "AUTH_tk" + secrets.token_hex(16)
            self._tokens[token] = (user.storage_account, now + self.token_ttl, user.name)
        return token, self.token_ttl

    def identity_for_token(self, token):
        """``(storage account, "account:user")`` of a valid token's user, or None (unknown or expired)."""
        entry = self._tokens.get(token)
        if entry is None or entry[1] <= time.time():
            return None
        return entry[0], entry[2]

    def account_for_token(self, token):
        """The storage account a valid token gives access to, or None (unknown or expired)."""
        entry = self._tokens.get(token)
        if entry is None:
            return None
        account, expires, _ = entry
        if expires <= time.time():
            with self._lock:
                self._tokens.pop(token, None)
            return None
        return account
