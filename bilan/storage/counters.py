"""Named sequences, incremented inside the caller's transaction (so a rolled-back import
gives its number back)."""

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from bilan.storage.tables import counters


async def next_value(conn: AsyncConnection, name: str) -> int:
    """1 the first time a name is used, then 2, 3... One statement: concurrent callers never
    get the same value."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(counters).values(name=name, value=1)
    statement = statement.on_conflict_do_update(
        index_elements=[counters.c.name], set_={"value": counters.c.value + 1})
    value: int = (await conn.execute(statement.returning(counters.c.value))).scalar_one()
    return value
