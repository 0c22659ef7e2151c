"""Rows passed to PostgreSQL as one array per column and unnested back into rows: a write of
many rows in one statement of one shape whatever their number, prepared once per connection,
instead of a statement per row."""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ARRAY, Boolean, Integer, Text, bindparam
from sqlalchemy.sql.elements import BindParameter

from bilan.storage.tables import Instant


@dataclass(frozen=True)
class Unnested:
    """The columns of rows passed as arrays."""

    prefix: str  # of the array parameters: the tables' column names meet in one statement
    columns: tuple[tuple[str, str], ...]  # (name, PostgreSQL type)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.columns]

    def source(self) -> str:
        """The rows, for a FROM clause."""
        arrays = ", ".join(f"CAST(:{self.prefix}_{name} AS {kind}[])" for name, kind in self.columns)
        return f"unnest({arrays}) AS u({', '.join(self.names)})"

    def parameters(self) -> list[BindParameter[Any]]:
        types: dict[str, Any] = {"text": Text(), "integer": Integer(), "boolean": Boolean(), "timestamp": Instant()}
        return [bindparam(f"{self.prefix}_{name}", type_=ARRAY(types[kind])) for name, kind in self.columns]

    def values(self, rows: list[tuple[Any, ...]]) -> dict[str, list[Any]]:
        return {f"{self.prefix}_{name}": [row[n] for row in rows] for n, name in enumerate(self.names)}
