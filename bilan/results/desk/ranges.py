"""The reference range a result is judged by: the patient's. The catalogue gives an entry
ranges per sex and age band (bilan/data/catalogue/ranges.csv); the row that fits the patient's
sex and age on the day of the sample wins, the most specific first (one sex before "any", then
the narrowest band), and the entry's general range (`ref_low`, `ref_high`) applies when none
fits. A row without limits says no range applies (the first months of a blood count): no flag
rather than an adult's.

Pure rules on the catalogue's rows and the Patient resource; the FHIR `referenceRange` element
that carries the range says whom it applies to (`appliesTo` the sex, `age` the band, in years).
"""

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Mapping, Sequence

from bilan import french
from bilan.fhir.dates import date_range
from bilan.fhir.terminology import UCUM

GENDER = "http://hl7.org/fhir/administrative-gender"
SEXES = {"female": ("Female", "femme"), "male": ("Male", "homme")}
LABEL = "Valeurs de référence du laboratoire"


@dataclass(frozen=True)
class Applicable:
    """A reference range and whom it applies to (no sex, no band: everyone)."""

    low: Decimal | None
    high: Decimal | None
    sex: str | None = None  # female or male, when the range is for one sex
    age_min: Decimal | None = None  # years, inclusive
    age_max: Decimal | None = None  # years, exclusive
    banded: bool = False  # a row of the catalogue's ranges, not the entry's general range

    @property
    def empty(self) -> bool:
        return self.low is None and self.high is None

    @property
    def whom(self) -> str:
        """Whom it applies to, in French ("femme, à partir de 12 ans"); "" for everyone."""
        parts = [SEXES[self.sex][1]] if self.sex in SEXES else []
        low, high = (_age(a) if a else None for a in (self.age_min, self.age_max))
        if low and high:
            parts.append(f"de {low} à {high}")
        elif low:
            parts.append(f"à partir de {low}")
        elif high:
            parts.append(f"avant {high}")
        return ", ".join(parts)


def patient_range(entry: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], patient: Mapping[str, Any] | None,
                  sampled: date | None) -> Applicable:
    """The range of `entry` (a catalogue row) for this patient on the day of the sample."""
    sex = (patient or {}).get("gender")
    months = _months((patient or {}).get("birthDate"), sampled)
    fitting = [row for row in rows if _fits(row, sex, months)]
    if not fitting:
        return Applicable(_number(entry.get("ref_low")), _number(entry.get("ref_high")))
    row = min(fitting, key=_specificity)
    return Applicable(_number(row.get("ref_low")), _number(row.get("ref_high")),
                      row["sex"] if row["sex"] in SEXES else None, _number(row.get("age_min_years")),
                      _number(row.get("age_max_years")), banded=True)


def sample_day(observation: Mapping[str, Any]) -> date | None:
    """The day (Paris) the sample was taken: the result's effective time, else its issue."""
    period = observation.get("effectivePeriod") or {}
    text = observation.get("effectiveDateTime") or period.get("start") or observation.get("issued")
    if not isinstance(text, str) or not text:
        return None
    try:
        return french.in_paris(date_range(text)[0]).date()
    except ValueError:
        return None


def element(applicable: Applicable, unit: str) -> dict[str, Any]:
    """The FHIR referenceRange of the range, in `unit`, saying whom it applies to."""
    whom = applicable.whom
    found: dict[str, Any] = {"text": f"{LABEL} ({whom})" if whom else LABEL}
    for name, value in (("low", applicable.low), ("high", applicable.high)):
        if value is not None:  # the catalogue's digits, kept: "3.90" stays 3.90
            found[name] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    if applicable.sex in SEXES:
        display, french_word = SEXES[applicable.sex]
        found["appliesTo"] = [{"coding": [{"system": GENDER, "code": applicable.sex, "display": display}],
                               "text": french_word.capitalize()}]
    ages = {name: {"value": years, "unit": "a", "system": UCUM, "code": "a"}
            for name, years in (("low", applicable.age_min), ("high", applicable.age_max)) if years}
    if ages:
        found["age"] = ages
    return found


def _fits(row: Mapping[str, Any], sex: Any, months: int | None) -> bool:
    if row["sex"] != "any" and row["sex"] != sex:
        return False
    start, end = _number(row.get("age_min_years")), _number(row.get("age_max_years"))
    if not start and end is None:
        return True  # every age
    if months is None:
        return False  # a band, and no age to place the patient in it
    return (not start or months >= start * 12) and (end is None or months < end * 12)


def _specificity(row: Mapping[str, Any]) -> tuple[int, Decimal]:
    start, end = _number(row.get("age_min_years")) or Decimal(0), _number(row.get("age_max_years"))
    return (0 if row["sex"] in SEXES else 1), (end - start if end is not None else Decimal(1000))


def _months(born: Any, on: date | None) -> int | None:
    """Whole months of age on a day; None without a full birth date or a day."""
    if not isinstance(born, str) or len(born) < 10 or on is None:
        return None
    try:
        birth = datetime.strptime(born[:10], "%Y-%m-%d").date()
    except ValueError:
        return None
    months = (on.year - birth.year) * 12 + on.month - birth.month - (on.day < birth.day)
    return months if months >= 0 else None


def _age(years: Decimal) -> str:
    if years % 1:
        return f"{int(years * 12)} mois"
    return f"{int(years)} an{'s' if years > 1 else ''}"


def _number(text: Any) -> Decimal | None:
    return None if text is None or text == "" else Decimal(str(text))
