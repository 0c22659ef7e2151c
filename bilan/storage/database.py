"""The async engine: SQLite (embedded default) or PostgreSQL, with the same behaviour."""

from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bilan.settings import Settings


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_engine(settings: Settings) -> AsyncEngine:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(settings.database_url)
    connect_args: dict[str, Any] = {}
    if settings.database_schema:
        connect_args["server_settings"] = {"search_path": settings.database_schema}
    return create_async_engine(
        settings.database_url,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        pool_pre_ping=True,
        connect_args=connect_args,
    )


def _sqlite_engine(database_url: str) -> AsyncEngine:
    engine = create_async_engine(
        database_url,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
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
