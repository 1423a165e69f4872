"""`blackout serve`: the REST API and the web dashboard over the store, with uvicorn.

Reads are open; endpoints that change the store need ``--token``.  Binding an
address other than loopback without a token is refused (exit 2): exposing the
store to the network is a choice to make on purpose, with a token.  SIGTERM or
Ctrl-C stops cleanly (exit 0).  `replay` and `collect` may write the same
store meanwhile (see blackout.serve.reader).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys

from .common import add_db_arg

HELP = "serve the REST API and the web dashboard over the store"
EPILOG = """examples:
  blackout serve                                   # http://127.0.0.1:8080/ (dashboard), /openapi.json
  blackout serve --host 0.0.0.0 --token "$(openssl rand -hex 16)"
  curl 'http://127.0.0.1:8080/attacks?from=-1d&limit=10'
  curl -X DELETE -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/attacks/a-...
The token may also come from the BLACKOUT_TOKEN environment variable (kept out of `ps`).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help=HELP, description=HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_db_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    p.add_argument("--token", default=os.environ.get("BLACKOUT_TOKEN"), help="bearer token for changes")
    p.add_argument("--asnames", metavar="FILE", help="AS names table (JSON, maybe gzipped) for entity names")
    p.add_argument("--stats-file", metavar="FILE", help="a collector's JSON status file, exported in /metrics")
    p.add_argument(
        "--read-mode",
        choices=("snapshot", "direct"),
        default="snapshot",
        help="snapshot: never lock the store (writers may run); direct: open it read-only per request",
    )
    p.set_defaults(func=run)


def loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    if not loopback(args.host) and not args.token:
        print(
            f"blackout serve: refusing to bind {args.host} without a token: pass --token TOKEN "
            "(or BLACKOUT_TOKEN), or bind 127.0.0.1",
            file=sys.stderr,
        )
        return 2
    if not 1 <= args.port <= 65535:
        print(f"blackout serve: port {args.port} is out of range 1..65535", file=sys.stderr)
        return 2
    import uvicorn

    from ..serve.api import create_app

    app = create_app(
        args.db, token=args.token, asnames=args.asnames, stats_file=args.stats_file, read_mode=args.read_mode
    )
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False))
    # uvicorn re-raises the signal that stopped it once it has shut down; a no-op handler makes that a clean exit
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _s, _f: None)
    print(f"blackout serve: http://{args.host}:{args.port}/ (store {args.db})", file=sys.stderr, flush=True)
    try:
        server.run()
    finally:
        app.state.reader.close()
    return 0
