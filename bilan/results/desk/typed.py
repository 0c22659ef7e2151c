"""Results as lab staff type them in French pages: "5,2", "1 200", "<0,5", "≥ 1000".

The number keeps the digits typed ("1,950" stays 1.950: precision is a clinical fact). A value
beyond what any measure can be ("1e309", "nan", twenty nines from a scanner's double read) is
refused here, before any arithmetic, with its own reason: it is not a mistyped number but a
number no result can be.
"""

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from bilan import french

# No lab value reaches this in any unit bilan reads (cells/L are written 10*9/L): a result at
# or beyond it is a typo or an instrument fault, and would not survive float arithmetic intact.
LARGEST_RESULT = Decimal("1e9")

# "<0,5", "<= 0,5", "≤0,5", "> 1000", ">=1000", "≥ 1000": FHIR's QuantityComparator codes.
_COMPARATOR = re.compile(r"^\s*(<=|>=|≤|≥|<|>)\s*")
_SPELLINGS = {"≤": "<=", "≥": ">="}
_SHOWN = {"<": "<", "<=": "≤", ">": ">", ">=": "≥"}


class NotANumber(ValueError):
    """What was typed is not a number."""


class Unmeasurable(ValueError):
    """A number, but none a result can be: not finite, or beyond LARGEST_RESULT."""


def measurable(number: Decimal) -> bool:
    """Whether a number (a result, a reference or a censoring limit) can be a lab value."""
    return number.is_finite() and abs(number) < LARGEST_RESULT


def number(text: str | None) -> Decimal | None:
    """A number as French pages write it ("5,2", "1 200"); None for nothing typed. -0 is 0."""
    cleaned = "".join(str(text or "").split()).replace(",", ".")
    if not cleaned:
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise NotANumber(text) from None
    if not measurable(value):
        raise Unmeasurable(text)
    return value.copy_abs() if value.is_zero() else value


def censored(text: str | None) -> tuple[str | None, Decimal | None]:
    """A result as typed, with its comparator when censored ("<0,5": "<" and 0.5)."""
    found = _COMPARATOR.match(text or "")
    if not found:
        return None, number(text)
    value = number((text or "")[found.end():])
    if value is None:
        raise NotANumber(text)
    return _SPELLINGS.get(found.group(1), found.group(1)), value


def comparator_text(comparator: str | None) -> str:
    """"< ", "≤ ", "> ", "≥ " before a censored value as pages print it; "" for none."""
    return f"{_SHOWN.get(comparator, comparator)} " if comparator else ""


def shown(content: dict[str, Any]) -> str:
    """A result's value as pages print it: "< 0,5 mg/L", "5,2 mmol/L", its text, or "—"."""
    quantity = content.get("valueQuantity")
    if quantity:
        return comparator_text(quantity.get("comparator")) + french.quantity(quantity.get("value"),
                                                                             quantity.get("code"))
    return str(content.get("valueString") or (content.get("valueCodeableConcept") or {}).get("text") or "—")
