"""The async engine: SQLite (embedded default) or PostgreSQL, with the same behaviour."""

import json
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bilan.settings import Settings


def json_dumps(value: Any) -> str:
    """JSON as bilan stores it (Decimals with their digits)."""
    return orjson.dumps(value, default=_decimal).decode()


def _decimal(value: Any) -> orjson.Fragment:
    """A Decimal as the JSON number it is: a result's 1.950 is stored as 1.950."""
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json_loads(text: str | bytes) -> Any:
    """Decimals read back as Decimal, digits kept (a float would read 1.950 as 1.95)."""
    return json.loads(text, parse_float=Decimal)


def create_engine(settings: Settings) -> AsyncEngine:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(settings.database_url)
    return create_async_engine(
        settings.database_url,
        json_serializer=json_dumps,
        json_deserializer=_json_loads,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        # No ping before each checkout (a round trip per request): a connection the server
        # dropped fails its statement once and is discarded with the pool's other ones.
        pool_pre_ping=False,
        pool_timeout=settings.database_connect_timeout,
        connect_args=_postgres_connect_args(settings),
    )


def create_reads_engine(settings: Settings) -> AsyncEngine | None:
    """PostgreSQL's connections for audited reads (None on SQLite): in autocommit, each
    statement its own transaction, committed without waiting for the disk. A read is then two
    round trips, its statement and its audit row's, instead of five (BEGIN, SET LOCAL, read,
    audit, COMMIT). Never for writes: their commits must reach the disk."""
    if make_url(settings.database_url).get_backend_name() == "sqlite":
        return None
    connect_args = _postgres_connect_args(settings)
    connect_args["server_settings"] = dict(connect_args["server_settings"], synchronous_commit="off")
    return create_async_engine(
        settings.database_url,
        json_serializer=json_dumps,
        json_deserializer=_json_loads,
        isolation_level="AUTOCOMMIT",
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        pool_pre_ping=False,
        pool_timeout=settings.database_connect_timeout,
        connect_args=connect_args,
    )


def _postgres_connect_args(settings: Settings) -> dict[str, Any]:
    """A database that is down or stalled answers within seconds (a 503), never after minutes."""
    # Custom plans only: a prepared statement's generic plan, chosen after five executions
    # without its values, reads every search row of a code for the ten a patient has
    # (docs/storage.md, Plans that do not depend on statistics).
    server_settings = {"statement_timeout": str(settings.statement_timeout_ms),
                       "plan_cache_mode": "force_custom_plan"}
    if settings.database_schema:
        server_settings["search_path"] = settings.database_schema
    connect_args: dict[str, Any] = {"timeout": settings.database_connect_timeout,
                                    "server_settings": server_settings}
    if settings.statement_timeout_ms:
        # The server cancels a slow statement itself; this bounds a server that stopped answering.
        connect_args["command_timeout"] = settings.statement_timeout_ms / 1000 + settings.database_connect_timeout
    return connect_args


def _sqlite_engine(database_url: str) -> AsyncEngine:
    engine = create_async_engine(
        database_url,
        json_serializer=json_dumps,
        json_deserializer=_json_loads,
        connect_args={"timeout": 30},
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, say when a transaction begins (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Take the write lock up front: two deferred transactions that both read then write
        # would otherwise deadlock into "database is locked" instead of queueing.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"
