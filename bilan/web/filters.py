"""Jinja filters: dates as a French lab shows them, in the lab's time zone."""

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment

from bilan.results.views import number

PARIS = ZoneInfo("Europe/Paris")


def fr_date(value: str | datetime) -> str:
    """2026-11-24 → 24/11/2026; an instant → its day in the lab's time zone."""
    if isinstance(value, datetime) or len(value) > 10:
        return fr_datetime(value)[:10]
    parts = value.split("-")
    return "/".join(reversed(parts)) if len(parts) == 3 else value


def fr_datetime(value: datetime | str) -> str:
    """A stored instant (UTC; naive means UTC) as the lab's local date and time."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(PARIS).strftime("%d/%m/%Y %H:%M")


def fr_number(value: Decimal | float | int) -> str:
    """7.20 → "7,20": a French decimal comma, the digits as the lab gave them."""
    return number(Decimal(str(value)))


def capitalize_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def register(environment: Environment) -> None:
    environment.filters.update(fr_date=fr_date, fr_datetime=fr_datetime, fr_number=fr_number,
                               capitalize_first=capitalize_first)


def engine_callback(engine: Any) -> None:
    register(engine.engine)
