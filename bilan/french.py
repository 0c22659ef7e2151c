"""How bilan writes for French readers: numbers, dates, units and names, the same on the pages,
the PDF report and the CDA narrative.

Numbers keep exactly the digits they were given (a result's precision is a clinical fact:
nothing is rounded, no trailing zero dropped), with a decimal comma. Instants are UTC in the
code and turn into Paris time here, for display only. Units stay UCUM in the data; `unit` is
how a French report prints them. Nothing (None) shows as nothing ("").
"""

import datetime as dt
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")  # the lab's time zone: its calendar days and its clocks

Number = Decimal | int | float | str
Moment = dt.datetime | dt.date | str

# UCUM codes as French lab reports print them. Only exact equivalences: 10*3/uL is 10*9/L
# (G/L), 10*6/uL is 10*12/L (T/L). U (the enzyme unit) prints as UI, as French reports write
# enzyme activities; a power of ten in superscript, "u" (micro) as µ, a count per day as
# "/24 h". A code not listed prints as it is.
UNITS: dict[str, str] = {
    "10*9/L": "G/L", "10*3/uL": "G/L", "10*12/L": "T/L", "10*6/uL": "T/L",
    "10*3/L": "10³/L", "10*6/L": "10⁶/L", "10*3/mL": "10³/mL", "10*6/mL": "10⁶/mL",
    "/uL": "/µL", "uL": "µL", "{cells}/uL": "/µL", "/[HPF]": "/champ",
    "umol/L": "µmol/L", "ug/L": "µg/L", "ug/dL": "µg/dL", "ug/mL": "µg/mL", "ug/g": "µg/g",
    "umol/mol": "µmol/mol", "ukat/L": "µkat/L",
    "[IU]/L": "UI/L", "[IU]/mL": "UI/mL", "m[IU]/L": "mUI/L", "m[IU]/mL": "mUI/mL",
    "u[IU]/mL": "µUI/mL", "k[IU]/L": "kUI/L", "U/L": "UI/L", "mU/L": "mUI/L", "U/mL": "UI/mL",
    "[iU]/L": "UI/L", "m[iU]/L": "mUI/L", "kU/L": "kUI/L",
    "mL/min/{1.73_m2}": "mL/min/1,73 m²", "mm[Hg]": "mmHg",
    "g/(24.h)": "g/24 h", "mg/(24.h)": "mg/24 h", "mmol/(24.h)": "mmol/24 h", "umol/(24.h)": "µmol/24 h",
    "1": "", "{ratio}": "", "{INR}": "", "[pH]": "",
}

_IN_PARENTHESES = re.compile(r"\(([^()]*)\)\s*$")


def number(value: Number | None) -> str:
    """"5,0" for 5.0, "1,950" for 1.950, "100" for 1E+2: the digits given, a decimal comma."""
    if value is None or value == "":
        return ""
    return format(_decimal(value), "f").replace(".", ",")


def unit(ucum: str | None) -> str:
    """The unit as printed: "G/L" for 10*9/L, "µmol/L" for umol/L, "" for a ratio."""
    if not ucum:
        return ""
    return UNITS.get(ucum, ucum)


def quantity(value: Number | None, ucum: str | None) -> str:
    """"5,0 mmol/L"; a value without a printed unit stands alone ("1,12" for an INR)."""
    return " ".join(part for part in (number(value), unit(ucum)) if part)


def label_with_unit(label: str, ucum: str | None) -> str:
    """"Glycémie à jeun (mmol/L)"; a label that already ends with its unit keeps it once:
    "Lymphocytes (%)", never "Lymphocytes (%) (%)"."""
    shown = unit(ucum)
    if not shown:
        return label
    ending = _IN_PARENTHESES.search(label)
    if ending and ending.group(1).strip() in (shown, ucum):
        return label
    return f"{label} ({shown})"


def in_paris(moment: dt.datetime) -> dt.datetime:
    """The same instant on Paris clocks."""
    if moment.tzinfo is None:
        # Tolerated for now, and only here: a naive time is read as UTC, as bilan stores
        # instants. Times in the code are becoming aware; once they all are, this goes.
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(PARIS)


def date(value: Moment | None) -> str:
    """"24/11/2026". An instant gives its day in Paris; a calendar date is its own day; a
    FHIR partial date prints what it has ("11/2026", "2026")."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        if "T" not in value and len(value) <= 10:
            return "/".join(reversed(value.split("-")))
        value = _instant(value)
    if isinstance(value, dt.datetime):
        value = in_paris(value)
    return f"{value:%d/%m/%Y}"


_WEEKDAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
_MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
           "octobre", "novembre", "décembre")


def day(value: dt.date) -> str:
    """"lundi 7 décembre 2026", a calendar day as a heading reads."""
    first = "1er" if value.day == 1 else str(value.day)
    return f"{_WEEKDAYS[value.weekday()]} {first} {_MONTHS[value.month - 1]} {value.year}"


def clock(moment: dt.datetime) -> str:
    """"14:05", on Paris clocks."""
    return in_paris(moment).strftime("%H:%M")


def datetime(value: dt.datetime | str | None, *, at: bool = False) -> str:
    """"24/11/2026 14:05" on Paris clocks; with `at`, "24/11/2026 à 14:05" as a sentence reads.
    A calendar date (no time) prints as a date."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        if "T" not in value and len(value) <= 10:
            return date(value)
        value = _instant(value)
    return in_paris(value).strftime("%d/%m/%Y à %H:%M" if at else "%d/%m/%Y %H:%M")


def person_name(family: str, given: str | Sequence[str] = ()) -> str:
    """A patient as labels, lists and reports name them: "DUPONT Marie" (the family name in
    capitals first). Pass the given names to show: all of them, or only the first."""
    givens = [given] if isinstance(given, str) else list(given)
    return " ".join(part for part in (family.strip().upper(), *(g.strip() for g in givens)) if part)


def professional_name(family: str, given: str | Sequence[str] = (), prefix: str | Sequence[str] = ()) -> str:
    """A health professional as a signature or an address names them: "Dr Claire LAMBERT"."""
    prefixes = [prefix] if isinstance(prefix, str) else list(prefix)
    givens = [given] if isinstance(given, str) else list(given)
    words = [*prefixes, *givens, family.strip().upper()]
    return " ".join(word.strip() for word in words if word and word.strip())


def _decimal(value: Number) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise TypeError(f"{value!r} is not a number")
    try:
        # A float's shortest repr is the number it was read from: 5.0 stays "5.0".
        return Decimal(value if isinstance(value, (int, str)) else repr(value))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None


def _instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
