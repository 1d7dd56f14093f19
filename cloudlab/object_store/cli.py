"""``python -m cloudlab object-store``: run the object store in the foreground.

Prints one line with its URL once it listens, then serves until SIGTERM or
SIGINT (Ctrl-C).  Benchmarks and the crash test start it this way, as a process
of its own that they can kill; in a multi-node layout the lab starts it so as a
process of the controller node, serving sockets the lab bound (``--fd``) and
accepting Keystone tokens (``--keystone-url``) as Swift's proxy does with
keystonemiddleware.
"""

import logging
import sys

from ..api.auth import KEYSTONE_PASSWORD_VARIABLE
from ..errors import InvalidInput
from ..process import inherited_sockets, parent_pipe
from .auth import Users
from .server import ObjectStoreServer

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def add_arguments(parser):
    """Add the command's options to ``parser``."""
    parser.add_argument("--root", help="directory that holds the store's data (required unless --upstream)")
    parser.add_argument("--upstream", metavar="URL",
                        help="run as the proxy: pass every request on to the object server at URL "
                             "(the controller's part of a multi-node layout); keeps no data")
    parser.add_argument("--host", help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, help=f"TCP port (0 picks a free one; default {DEFAULT_PORT})")
    parser.add_argument("--fd", type=int, action="append", metavar="N",
                        help="serve the listening socket inherited as file descriptor N instead of "
                             "--host/--port (repeatable: one server on several sockets)")
    parser.add_argument("--parent-fd", type=int, metavar="N",
                        help="read end of a pipe from the starting process: stop when that process is gone")
    parser.add_argument("--user", action="append", metavar="ACCOUNT:USER=KEY",
                        help="a user (repeatable); default test:tester=testing")
    parser.add_argument("--keystone-url", metavar="URL",
                        help="also accept Keystone tokens, validated at this Keystone (its base URL) as the "
                             f"service user; the user's password is read from ${KEYSTONE_PASSWORD_VARIABLE}")
    parser.add_argument("--keystone-user", default="swift", help="the service user (default swift)")
    parser.add_argument("--keystone-project", default="service",
                        help="the service user's project (default service)")
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")
    parser.add_argument("--sync-dirs", action="store_true",
                        help="fsync directories after each rename too (survives power loss; slower)")


def users_from(specs):
    """A :class:`Users` from ``--user ACCOUNT:USER=KEY`` options (Swift's sample user when there are none).

    Raises:
        InvalidInput: an option is not ``ACCOUNT:USER=KEY``.
    """
    if not specs:
        return Users()
    users = {}
    for spec in specs:
        login, sep, key = spec.partition("=")
        if not sep:
            raise InvalidInput(f"--user {spec!r} is not ACCOUNT:USER=KEY", fix="e.g. --user test:tester=testing")
        users[login] = key
    return Users(users)


def _sockets(args):
    """The inherited sockets of ``--fd`` (none when the server binds ``--host:--port`` itself)."""
    if not args.fd:
        return []
    if args.host is not None or args.port is not None:
        raise InvalidInput("--fd serves sockets the process inherited: --host and --port do not apply",
                           fix="give either --fd N (repeatable) or --host/--port")
    return inherited_sockets(args.fd)


def _address(args):
    """``--host`` and ``--port``, or their defaults."""
    return (DEFAULT_HOST if args.host is None else args.host, DEFAULT_PORT if args.port is None else args.port)


def _add_keystone(users, args):
    """Accept the Keystone tokens of ``--keystone-url`` beside TempAuth's (Swift's authtoken + keystoneauth)."""
    if not args.keystone_url:
        return
    from ..api.auth import ServiceLogin, TokenValidator, keystone_accounts
    login = ServiceLogin.from_environment(args.keystone_url, args.keystone_user, project=args.keystone_project)
    users.add_token_source(keystone_accounts(TokenValidator(login, args.keystone_user)))


def main(args):
    """Run the server until it is told to stop; returns the exit status."""
    # one line per refused request (cloudlab.object_store), warnings and errors of the rest;
    # aiohttp's own parser errors are answered 400 and need no traceback in the log
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.server").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.INFO if args.access_log else logging.WARNING)
    if args.upstream is not None:
        return _proxy(args)
    if args.root is None:
        raise InvalidInput("the object store needs --root (the folder of its data)",
                           fix="--root DIR, or --upstream URL to run as a proxy in front of one")
    users = users_from(args.user)
    _add_keystone(users, args)
    parent_fd = parent_pipe(args.parent_fd)
    sockets = _sockets(args)
    host, port = _address(args)
    server = ObjectStoreServer(args.root, host=host, port=port, users=users, access_log=args.access_log,
                               sync_dirs=args.sync_dirs, sockets=sockets)

    def ready(srv):
        where = " and ".join(srv.urls)
        keystone = f"; Keystone tokens checked at {args.keystone_url}" if args.keystone_url else ""
        print(f"object store listening on {where} (auth: {srv.url}/auth/v1.0{keystone})", flush=True)

    server.run(on_ready=ready, parent_fd=parent_fd)
    print("object store stopped", file=sys.stderr)
    return 0


def _proxy(args):
    """Run the proxy (``--upstream``) until told to stop."""
    from urllib.parse import urlsplit
    from .proxy import ProxyServer
    wrong = [name for name, given in (("--root", args.root), ("--user", args.user),
                                      ("--keystone-url", args.keystone_url)) if given]
    if wrong:
        raise InvalidInput(f"{', '.join(wrong)} do not apply to a proxy (--upstream): the object server "
                           "behind it keeps the data and checks the users", fix="give them to the object server")
    parts = urlsplit(args.upstream)
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/"):
        raise InvalidInput(f"--upstream {args.upstream!r} is not an object server's base URL",
                           fix="e.g. --upstream http://10.214.0.14:6200")
    host, port = _address(args)
    server = ProxyServer(args.upstream, host=host, port=port, sockets=_sockets(args), access_log=args.access_log)

    def ready(srv):
        print(f"object store proxy listening on {' and '.join(srv.urls)}, passing requests to {args.upstream}",
              flush=True)

    server.run(on_ready=ready, parent_fd=parent_pipe(args.parent_fd))
    print("object store proxy stopped", file=sys.stderr)
    return 0

