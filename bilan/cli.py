"""The `bilan` command: serve, demo, migrate, catalogue."""

import argparse
import asyncio
import logging
import os
import secrets
from pathlib import Path

from bilan.demo.idp import local_provider
from bilan.demo.mail import local_relay
from bilan.serving import serve
from bilan.settings import get_settings
from bilan.storage.database import create_engine
from bilan.storage.migrate import upgrade


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bilan", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (("serve", "start the HTTP service (migrations applied first)"),
                           ("demo", "load the demo data, then serve")):
        sub = commands.add_parser(name, help=helptext)
        sub.add_argument("--host", default="127.0.0.1")
        sub.add_argument("--port", type=int, default=8000)
        sub.add_argument("--workers", type=int, default=1, help="worker processes")
    commands.add_parser("migrate", help="apply the database migrations and exit")
    token = commands.add_parser("dev-token", help="get an access token for a demo client "
                                "(client credentials, private_key_jwt) and print it")
    token.add_argument("--client", default="practice-software-demo",
                       help="client id (practice-software-demo, lab-middleware-demo)")
    token.add_argument("--scope", help="scopes to ask for (default: all the demo client may have)")
    token.add_argument("--key", type=Path, help="private JWK (default: the demo key of the client)")
    load = commands.add_parser("catalogue", help="load the lab's exam catalogue from a CSV")
    load.add_argument("path", type=Path, nargs="?", help="CSV file (default: BILAN_CATALOGUE_PATH)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=get_settings().log_level,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its lines carry URLs and queries
    if args.command == "dev-token":
        from bilan.auth.client_credentials import request_token

        print(request_token(get_settings().oidc_issuer, args.client, args.scope, args.key))
    elif args.command == "migrate":
        asyncio.run(_migrate())
    elif args.command == "catalogue":
        asyncio.run(_load_catalogue(args.path or get_settings().catalogue_path))
    elif args.command == "demo":
        asyncio.run(_demo())
        with local_provider(args.host, args.port), local_relay():
            _serve(args.host, args.port, args.workers)
    else:
        asyncio.run(_migrate())
        _serve(args.host, args.port, args.workers)


async def _migrate() -> None:
    engine = create_engine(get_settings())
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


async def _load_catalogue(path: Path) -> None:
    from bilan.prescription.catalogue import read_csv
    from bilan.storage import catalogue

    await _migrate()
    engine = create_engine(get_settings())
    try:
        count = await catalogue.load(engine, read_csv(path))
    finally:
        await engine.dispose()
    print(f"{count} catalogue entries loaded from {path}")


async def _demo() -> None:
    from bilan.demo.load import load_demo

    await _migrate()
    await load_demo(get_settings())


def _serve(host: str, port: int, workers: int) -> None:
    # Every worker must read the session cookies the others wrote.
    os.environ.setdefault("BILAN_SESSION_SECRET", secrets.token_hex(32))
    get_settings.cache_clear()
    settings = get_settings()
    if not os.environ.get("BILAN_BASE_URL"):
        os.environ["BILAN_BASE_URL"] = f"http://{host}:{port}/fhir"
        get_settings.cache_clear()
    print(f"bilan serving {get_settings().base_url} on {settings.database_url.split('://')[0]} "
          f"with {workers} worker(s)", flush=True)
    serve(host, port, workers, settings.log_level.lower())
