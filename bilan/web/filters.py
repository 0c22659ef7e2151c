"""Jinja filters: the pages write numbers, dates, units and names as bilan.french does, so a page
says what the PDF and the CDA say."""

from typing import Any

from jinja2 import Environment

from bilan import french
from bilan.results.desk import typed
from bilan.web import confirmations


def capitalize_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def register(environment: Environment) -> None:
    environment.filters.update(
        fr_date=french.date, fr_datetime=french.datetime, fr_number=french.number, fr_unit=french.unit,
        fr_quantity=french.quantity, label_with_unit=french.label_with_unit, capitalize_first=capitalize_first,
        fr_comparator=typed.comparator_text)


def engine_callback(engine: Any) -> None:
    register(engine.engine)
    confirmations.register(engine.engine)
