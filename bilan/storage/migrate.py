"""Apply the Alembic migrations (at every start) and make new revisions (for developers)."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two workers starting together must not both migrate; a data migration may take
            # longer than a request's statement timeout.
            await conn.execute(text("SELECT pg_advisory_xact_lock(741852963)"))
            await conn.execute(text("SET LOCAL statement_timeout = 0"))
        await conn.run_sync(lambda sync: command.upgrade(_config(sync), "head"))


async def revision(engine: AsyncEngine, message: str) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(
            lambda sync: command.revision(_config(sync), message=message, autogenerate=True)
        )


async def downgrade(engine: AsyncEngine, target: str) -> None:
    """Back to revision `target` (for tests of a data migration, and for operators)."""
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: command.downgrade(_config(sync), target))
