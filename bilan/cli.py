"""The `bilan` command: serve, demo, migrate, catalogue (load or export).

A failure is told in one sentence on stderr with a non-zero exit code, never as a traceback
(BILAN_LOG_LEVEL=DEBUG logs it).
"""

import argparse
import asyncio
import logging
import os
import secrets
import signal
import socket
import sys
from datetime import date
from pathlib import Path
from types import FrameType

import httpx
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from bilan.demo.dmp import demo_stand_in
from bilan.demo.idp import local_provider
from bilan.demo.mail import local_relay
from bilan.serving import serve
from bilan.settings import get_settings
from bilan.storage.database import create_engine
from bilan.storage.migrate import upgrade

log = logging.getLogger("bilan.cli")


class CommandError(Exception):
    """A failure the user can act on, told in one sentence."""


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=get_settings().log_level,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its lines carry URLs and queries
    try:
        _run(args)
    except KeyboardInterrupt:
        sys.exit(130)
    except CommandError as error:
        _fail(str(error))
    except Exception as error:  # the last resort: still one sentence
        log.debug("bilan %s failed", args.command, exc_info=True)
        reason = str(error) if isinstance(error, RuntimeError) else f"{type(error).__name__}: {error}"
        _fail(f"bilan {args.command} failed: {reason}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bilan", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (("serve", "start the HTTP service (migrations applied first)"),
                           ("demo", "load the demo data, start its OpenID provider, mail relay and DMP "
                                    "stand-in, serve")):
        sub = commands.add_parser(name, help=helptext)
        sub.add_argument("--host", default="127.0.0.1")
        sub.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
        sub.add_argument("--workers", type=int, default=1, help="worker processes")
    demo = commands.choices["demo"]
    demo.add_argument("--idp-port", type=int, help="port of the local OpenID provider "
                      "(default BILAN_IDP_PORT or 9400)")
    demo.add_argument("--smtp-port", type=int, help="port of the demo mail relay "
                      "(default BILAN_SMTP_PORT or 8025)")
    commands.add_parser("migrate", help="apply the database migrations and exit")
    token = commands.add_parser("dev-token", help="get an access token for a demo client "
                                "(client credentials, private_key_jwt) and print it")
    token.add_argument("--client", default="practice-software-demo",
                       help="client id (practice-software-demo, lab-middleware-demo)")
    token.add_argument("--scope", help="scopes to ask for (default: all the demo client may have)")
    token.add_argument("--key", type=Path, help="private JWK (default: the demo key of the client)")
    token.add_argument("--issuer", help="the OpenID provider (default BILAN_OIDC_ISSUER or "
                       "http://127.0.0.1:9400)")
    history = commands.add_parser("dmp-history", help="queue to the DMP the lab's reports issued since a date "
                                  "that it does not have yet (each at most once); a running bilan sends them")
    history.add_argument("--since", required=True, type=date.fromisoformat, metavar="YYYY-MM-DD")
    load = commands.add_parser("catalogue", help="load the lab's exam catalogue from a CSV, or export it")
    load.add_argument("path", type=Path, nargs="?", help="CSV file (default: BILAN_CATALOGUE_PATH)")
    load.add_argument("--ranges", type=Path, help="CSV of its reference ranges by sex and age "
                      "(default: the ranges.csv beside the catalogue, when there is one)")
    load.add_argument("--export", type=Path, metavar="DIR", help="write the stored catalogue to "
                      "DIR/catalogue.csv and DIR/ranges.csv (what the load reads) instead of loading one")
    return parser


def _run(args: argparse.Namespace) -> None:
    if args.command == "dev-token":
        print(_dev_token(args.issuer or get_settings().oidc_issuer, args.client, args.scope, args.key))
    elif args.command == "migrate":
        asyncio.run(_migrate())
    elif args.command == "catalogue" and args.export is not None:
        if args.path is not None or args.ranges is not None:
            raise CommandError("bilan catalogue --export DIR writes the stored catalogue: it takes no CSV "
                               "to load (nor --ranges).")
        asyncio.run(_export_catalogue(args.export))
    elif args.command == "catalogue":
        asyncio.run(_load_catalogue(args.path or get_settings().catalogue_path, args.ranges))
    elif args.command == "demo":
        _demo(args)
    elif args.command == "dmp-history":
        asyncio.run(_dmp_history(args.since))
    else:
        _stop_on_signals()
        _check_free(args.host, args.port, "bilan's HTTP port", "--port")
        asyncio.run(_migrate())
        _serve(args.host, args.port, args.workers)


def _fail(sentence: str) -> None:
    print(" ".join(sentence.split()), file=sys.stderr)  # one line, whatever the error held
    sys.exit(1)


def _stop_on_signals() -> None:
    """SIGTERM and SIGINT end bilan through its `finally` blocks, which stop the demo's
    provider and relay. (uvicorn handles them while it serves, then raises them again.)"""

    def stop(signum: int, _frame: FrameType | None) -> None:
        for each in (signal.SIGTERM, signal.SIGINT):  # a second signal must not cut the clean-up
            signal.signal(each, signal.SIG_IGN)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def _check_free(host: str, port: int, what: str, option: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            sock.bind((host, port))
        except OSError as error:
            raise CommandError(f"Port {port} on {host} ({what}) is not available ({error.strerror}); "
                               f"choose another with {option}.") from error


def _demo(args: argparse.Namespace) -> None:
    for option, variable in ((args.idp_port, "BILAN_IDP_PORT"), (args.smtp_port, "BILAN_SMTP_PORT")):
        if option is not None:
            os.environ[variable] = str(option)
    # The mails the demo load queues link to the pages at their real address.
    os.environ.setdefault("BILAN_BASE_URL", f"http://{args.host}:{args.port}/fhir")
    get_settings.cache_clear()
    settings = get_settings()
    _stop_on_signals()
    _check_free(args.host, args.port, "bilan's HTTP port", "--port")
    _check_free(args.host, settings.idp_port, "the local OpenID provider", "--idp-port or BILAN_IDP_PORT")
    _check_free(settings.smtp_host, settings.smtp_port, "the demo mail relay",
                "--smtp-port or BILAN_SMTP_PORT")
    asyncio.run(_load_demo())
    dmp_port = int(os.environ.get("BILAN_DMP_PORT", "8390"))
    if not os.environ.get("BILAN_DMP_URL"):
        _check_free(args.host, dmp_port, "the DMP stand-in", "BILAN_DMP_PORT")
    with local_provider(args.host, args.port), local_relay(), demo_stand_in(args.host, dmp_port):
        _serve(args.host, args.port, args.workers)


def _dev_token(issuer: str, client: str, scope: str | None, key: Path | None) -> str:
    from bilan.auth.client_credentials import request_token

    try:
        return request_token(issuer, client, scope, key)
    except httpx.HTTPError as error:
        raise CommandError(f"Cannot get a token from the OpenID provider at {issuer} ({error}); "
                           "is `bilan demo` running? Otherwise name the provider with --issuer "
                           "or BILAN_OIDC_ISSUER.") from error
    except OSError as error:
        raise CommandError(f"Cannot read the client's private key: {error}.") from error


async def _migrate() -> None:
    settings = get_settings()
    url = make_url(settings.database_url)

    def unreachable(reason: str) -> CommandError:
        return CommandError(f"Cannot reach the database {url.render_as_string(hide_password=True)} "
                            f"({reason}); check BILAN_DATABASE_URL.")

    # Checked before aiosqlite tries, whose thread would print its own traceback at exit.
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).parent.is_dir():
        raise unreachable(f"no folder {Path(url.database).parent}")
    engine = create_engine(settings)
    try:
        try:
            async with engine.connect():
                pass
        except (TimeoutError, OSError, SQLAlchemyError) as error:
            raise unreachable(str(getattr(error, "orig", None) or error) or type(error).__name__) from error
        await upgrade(engine)
    finally:
        await engine.dispose()


async def _load_catalogue(path: Path, ranges: Path | None = None) -> None:
    from bilan.prescription.catalogue import read_csv
    from bilan.storage import catalogue

    await _migrate()
    engine = create_engine(get_settings())
    try:
        count = await catalogue.load(engine, read_csv(path, ranges))
    finally:
        await engine.dispose()
    print(f"{count} catalogue entries loaded from {path}")


async def _export_catalogue(folder: Path) -> None:
    from bilan.prescription.catalogue import RANGES_FILE
    from bilan.prescription.lab_catalogue import CATALOGUE_FILE, catalogue_files

    paths = [folder / CATALOGUE_FILE, folder / RANGES_FILE]
    taken = [str(p) for p in paths if p.exists()]
    if taken:  # never over a lab's own files (bilan/data/catalogue is bilan's)
        raise CommandError(f"{' and '.join(taken)} already exist{'s' if len(taken) == 1 else ''}; "
                           "export into another folder.")
    await _migrate()
    engine = create_engine(get_settings())
    try:
        async with engine.connect() as conn:
            files = await catalogue_files(conn)
    finally:
        await engine.dispose()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.named().items():
            (folder / name).write_text(text, encoding="utf-8")
    except OSError as error:
        raise CommandError(f"Cannot write the catalogue into {folder}: {error.strerror or error}.") from error
    print(f"{files.count} catalogue entries exported to {paths[0]} and {paths[1]}")


async def _dmp_history(since: date) -> None:
    from bilan.app import build_services

    settings = get_settings()
    if not settings.dmp_url:
        raise CommandError("No DMP is configured: set BILAN_DMP_URL (and its credentials) first.")
    await _migrate()
    engine = create_engine(settings)
    try:
        built = build_services(engine, settings)
        async with built.records.work(None) as work:
            count = await built.dmp_feed.queue_history(work.repo, work.now, since=since)
    finally:
        await engine.dispose()
    print(f"{count} report(s) issued since {since.isoformat()} queued for the DMP; a running bilan sends them")


async def _load_demo() -> None:
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
