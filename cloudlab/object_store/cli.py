"""``python -m cloudlab object-store``: run the object store in the foreground.

Prints one line with its URL once it listens, then serves until SIGTERM or
SIGINT (Ctrl-C).  Benchmarks and the crash test start it this way, as a process
of its own that they can kill.
"""

import logging
import sys

from .server import ObjectStoreServer


def add_arguments(parser):
    """Add the command's options to ``parser``."""
    parser.add_argument("--root", required=True, help="directory that holds the store's data")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (0 picks a free one; default 8080)")
    parser.add_argument("--user", action="append", metavar="ACCOUNT:USER=KEY",
                        help="a user (repeatable); default test:tester=testing")
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")
    parser.add_argument("--sync-dirs", action="store_true",
                        help="fsync directories after each rename too (survives power loss; slower)")


def main(args):
    """Run the server until it is told to stop; returns the exit status."""
    # one line per refused request (cloudlab.object_store), warnings and errors of the rest;
    # aiohttp's own parser errors are answered 400 and need no traceback in the log
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.server").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.INFO if args.access_log else logging.WARNING)
    users = None
    if args.user:
        users = {}
        for spec in args.user:
            login, sep, key = spec.partition("=")
            if not sep:
                from ..errors import InvalidInput
                raise InvalidInput(f"--user {spec!r} is not ACCOUNT:USER=KEY", fix="e.g. --user test:tester=testing")
            users[login] = key
    server = ObjectStoreServer(args.root, host=args.host, port=args.port, users=users,
                               access_log=args.access_log, sync_dirs=args.sync_dirs)

    def ready(srv):
        print(f"object store listening on {srv.url} (auth: {srv.url}/auth/v1.0)", flush=True)

    server.run(on_ready=ready)
    print("object store stopped", file=sys.stderr)
    return 0
