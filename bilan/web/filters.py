"""Jinja filters: dates as a French lab shows them, in the lab's time zone."""

from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment

PARIS = ZoneInfo("Europe/Paris")


def fr_date(value: str) -> str:
    """2026-11-24 → 24/11/2026; an instant → its day in the lab's time zone."""
    if len(value) > 10:
        return fr_datetime(value)[:10]
    parts = value.split("-")
    return "/".join(reversed(parts)) if len(parts) == 3 else value


def fr_datetime(value: datetime | str) -> str:
    """A stored instant (UTC; naive means UTC) as the lab's local date and time."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(PARIS).strftime("%d/%m/%Y %H:%M")


def register(environment: Environment) -> None:
    environment.filters.update(fr_date=fr_date, fr_datetime=fr_datetime)


def engine_callback(engine: Any) -> None:
    register(engine.engine)
