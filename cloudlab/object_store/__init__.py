"""Object storage (오브젝트 스토리지): a Swift-compatible object store with an S3 view.

Object storage keeps *objects*: a file's bytes plus metadata, addressed by name
inside a *container* (S3: bucket) of an *account*, and reached only through a
RESTful HTTP API (create, read, update, delete with PUT, GET, POST, DELETE).  There
is no directory tree to mount and no block device: the API is the whole interface.

    lab = cl.Lab()
    store = lab.object_store              # starts the server on 127.0.0.1
    conn = store.connection()             # python-swiftclient
    s3 = store.s3_client()                # boto3, same data

The pieces: ``storage`` (the crash-safe on-disk store, with versions), ``commit`` (group
commit of small uploads), ``files`` (temp files and durable writes), ``auth`` (TempAuth
users, tokens, S3 keys), ``access`` (S3 ACLs and bucket policies, Swift ACLs), ``swift``
(Swift API v1), ``s3`` (the S3 view), ``sigv4`` (AWS Signature V4), ``multipart`` (S3
multipart uploads), ``form_upload`` (S3 POST Object from a browser form), ``server`` (the
aiohttp application and its runner), ``cli`` (``python -m cloudlab object-store``),
``wire`` (one raw HTTP request, shown as a transcript) and ``swift_cli`` (the real
``swift`` command line).
"""

import shutil

from ..errors import MissingPrerequisite
from .auth import Users
from .server import ObjectStoreServer
from .swift_cli import run_swift
from .wire import exchange

__all__ = ["ObjectStore", "ObjectStoreServer", "Users"]


class ObjectStore:
    """The lab's object store service: a server on loopback with its data under the lab's home.

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
        self.server = ObjectStoreServer(self.root, host=host, port=port, users=users)

    def start(self):
        """Start the server (returns once it listens)."""
        self.server.start()
        return self

    def stop(self, remove_data=True):
        """Stop the server; by default also remove its data, as everything a lab creates.

        Args:
            remove_data: delete the store's root directory too.
        """
        self.server.stop()
        if remove_data:
            shutil.rmtree(self.root, ignore_errors=True)
            shutil.rmtree(self.files, ignore_errors=True)

    @property
    def url(self):
        """Base URL of the server, e.g. ``http://127.0.0.1:PORT``."""
        return self.server.url

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
        return self.server.users.as_dict()

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
        return f"<ObjectStore {self.url}>"
