"""``orbit-globus-bridge``: run the bridge, enroll endpoints, make client tokens.

orbit-globus-bridge serve [--host H --port P --tls-cert C --tls-key K --no-dashboard]
orbit-globus-bridge endpoint add NAME        # prints the endpoint's enrollment token
orbit-globus-bridge endpoint list | remove NAME
orbit-globus-bridge token add NAME [--endpoints a,b]   # prints a client token
orbit-globus-bridge token list
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from .config import OPTION_NAMES, load_config
from .errors import BridgeError
from .registry import Registry

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orbit-globus-bridge",
        argument_default=argparse.SUPPRESS,
        description="Bridge between orbit clients and endpoint daemons that connect out to it.",
    )
    parser.add_argument("--state-dir", help="state folder (default ~/.radical/orbit/bridge)")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("serve", help="run the bridge (the default)")
    run.add_argument("--host", help="bind address (default 127.0.0.1; others need TLS)")
    run.add_argument("--port", type=int, help="port (default 0: any free port)")
    run.add_argument("--tls-cert", help="PEM certificate chain to serve TLS with")
    run.add_argument("--tls-key", help="PEM private key of the certificate")
    run.add_argument("--relay-timeout", type=float, help="seconds per relayed request (60)")
    run.add_argument("--log-level", help="debug, info, warning, error")
    run.add_argument(
        "--no-dashboard", dest="dashboard", action="store_false", help="do not serve /dashboard/"
    )

    endpoint = sub.add_parser("endpoint", help="enroll or list endpoints")
    endpoint_sub = endpoint.add_subparsers(dest="action", required=True)
    add = endpoint_sub.add_parser("add", help="enroll an endpoint and print its token")
    add.add_argument("name")
    add.add_argument("--quiet", action="store_true", help="print only the token")
    endpoint_sub.add_parser("list", help="list enrolled endpoints")
    remove = endpoint_sub.add_parser("remove", help="withdraw an endpoint's enrollment")
    remove.add_argument("name")

    token = sub.add_parser("token", help="manage client tokens")
    token_sub = token.add_subparsers(dest="action", required=True)
    tadd = token_sub.add_parser("add", help="create a client token and print it")
    tadd.add_argument("name")
    tadd.add_argument(
        "--endpoints", default="*", help="comma-separated endpoints it may use (default: all)"
    )
    tadd.add_argument("--quiet", action="store_true", help="print only the token")
    token_sub.add_parser("list", help="list client tokens and their endpoints")
    for p in (run, endpoint, token, add, remove, tadd):
        p.add_argument("--state-dir", help=argparse.SUPPRESS, default=argparse.SUPPRESS)
    return parser


def _manage(args: argparse.Namespace, registry: Registry) -> int:
    quiet = getattr(args, "quiet", False)
    if args.command == "endpoint":
        if args.action == "add":
            secret = registry.add_endpoint(args.name)
            if not quiet:
                print(
                    f"enrollment token of endpoint {args.name!r} (shown once; give it to the "
                    "endpoint as RADICAL_ORBIT_BRIDGE_TOKEN or bridge_token in its config):",
                    file=sys.stderr,
                )
            print(secret)
        elif args.action == "remove":
            registry.remove_endpoint(args.name)
        else:
            print("\n".join(registry.endpoint_names()))
        return 0
    if args.action == "add":
        secret = registry.add_client(args.name, args.endpoints.split(","))
        if not quiet:
            print(f"client token {args.name!r} (shown once):", file=sys.stderr)
        print(secret)
    else:
        for client in registry.clients():
            print(f"{client.name}\t{','.join(sorted(client.endpoints))}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = getattr(args, "command", None) or "serve"
    flags = {key: value for key, value in vars(args).items() if key in OPTION_NAMES}
    try:
        config = load_config(
            flags=flags if command == "serve" else {"state_dir": flags.get("state_dir")}
        )
        if command != "serve":
            args.command = command
            return _manage(args, Registry(config.state_dir))
        logging.basicConfig(
            level=config.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        from .server import serve

        return asyncio.run(serve(config))
    except BridgeError as exc:
        print(f"orbit-globus-bridge: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
