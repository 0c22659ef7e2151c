"""Whether a result can be a living patient's, before it is stored: the safety net under
typing and instruments (a sodium of 5, a glucose of -5, basophils typed in % into a G/L field).

Two rules, on Decimal values and the catalogue's rows (no database, no FHIR):

- **limits**: each quantitative catalogue entry may give `plausible_low` and `plausible_high`
  in its unit, the limits of what is physiologically possible (bilan/data/catalogue/README.md
  says where they come from). A value beyond them, once converted to that unit, is refused. A
  censored value ("<0.5") is judged by its bound, a number the instrument knows.
- **differential**: the leukocyte differential adds up. Its percentages are parts of one
  whole: together they cannot pass 100 % (less is normal: blasts, immature granulocytes or
  erythroblasts are counted apart). Its absolute counts cannot add up to more than the
  leukocytes. Each sum allows what rounding the values as written can explain, and no more.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from bilan import french
from bilan.results.desk import typed, units

LEUKOCYTES = frozenset({"6690-2", "26464-8"})  # by automated count, and the method-less code
COUNT_UNIT = "10*9/L"
# The five cells of the differential, each by its LOINC codes (in Blood, and by automated count).
PERCENTS = {"26511-6": "neutrophils", "770-8": "neutrophils", "26478-8": "lymphocytes",
            "736-9": "lymphocytes", "26485-3": "monocytes", "5905-5": "monocytes",
            "26450-7": "eosinophils", "713-8": "eosinophils", "30180-4": "basophils", "706-2": "basophils"}
COUNTS = {"26499-4": "neutrophils", "751-8": "neutrophils", "26474-7": "lymphocytes",
          "731-0": "lymphocytes", "26484-6": "monocytes", "742-7": "monocytes",
          "26449-9": "eosinophils", "711-2": "eosinophils", "26444-0": "basophils", "704-7": "basophils"}
DIFFERENTIAL = LEUKOCYTES | PERCENTS.keys() | COUNTS.keys()


@dataclass(frozen=True)
class Implausible:
    """A value beyond its analyte's limits, in the catalogue's unit."""

    label: str
    value: Decimal
    unit: str
    low: Decimal | None
    high: Decimal | None


@dataclass(frozen=True)
class Unbalanced:
    """A differential that does not add up: `total` of the `codes` passes `limit`."""

    kind: Literal["percent", "count"]
    total: Decimal
    limit: Decimal  # 100 (%), or the leukocyte count (10*9/L)
    codes: tuple[str, ...]


def limits(entry: Mapping[str, Any]) -> tuple[Decimal | None, Decimal | None]:
    return _decimal(entry.get("plausible_low")), _decimal(entry.get("plausible_high"))


def beyond(value: Decimal, unit: str, entries: Iterable[Mapping[str, Any]]) -> Implausible | None:
    """The first catalogue entry of the analyte whose limits the value (in `unit`) passes."""
    rows = list(entries)
    for entry in rows:
        low, high = limits(entry)
        if (low is None and high is None) or not entry.get("ucum"):
            continue
        try:
            converted = value if unit == entry["ucum"] else units.convert(
                value, unit, entry["ucum"], entry["loinc"], [dict(r) for r in rows])
        except units.UnitError:
            continue  # a unit that does not measure the same thing is refused on its own
        if (low is not None and converted < low) or (high is not None and converted > high):
            return Implausible(entry.get("label_fr") or entry["loinc"], converted, entry["ucum"], low, high)
    return None


def differential(results: Mapping[str, tuple[Decimal, str]]) -> list[Unbalanced]:
    """What does not add up among an order's results (value and unit by LOINC code); censored
    values are left out, which can only make a sum smaller."""
    problems = []
    percents = _per_cell(results, PERCENTS, "%")
    if percents:
        total = sum(percents.values(), Decimal(0))
        if total > 100 + _rounding(percents.values()):
            problems.append(Unbalanced("percent", total, Decimal(100), tuple(percents)))
    counts = _per_cell(results, COUNTS, COUNT_UNIT)
    leukocytes = next((v for code, v in _converted(results, LEUKOCYTES, COUNT_UNIT)), None)
    if counts and leukocytes is not None:
        total = sum(counts.values(), Decimal(0))
        if total > leukocytes + _rounding([*counts.values(), leukocytes]):
            problems.append(Unbalanced("count", total, leukocytes, tuple(counts)))
    return problems


def in_french(found: Implausible, comparator: str | None, value: Decimal, unit: str) -> str:
    """The refusal as the lab's pages say it, next to the value typed."""
    limits = f"{french.number(found.low) or '…'} à {french.number(found.high) or '…'} {french.unit(found.unit)}"
    return (f"Valeur impossible pour {found.label} : {typed.comparator_text(comparator)}{french.quantity(value, unit)} "
            f"est hors des limites physiologiques ({limits.strip()}). Vérifiez la saisie.")


def unbalanced_in_french(problem: Unbalanced) -> str:
    if problem.kind == "percent":
        return (f"La formule leucocytaire fait {french.number(problem.total)} % : ses pourcentages ne "
                "peuvent dépasser 100 % ensemble. Vérifiez les résultats.")
    return (f"Les polynucléaires, lymphocytes et monocytes font ensemble {french.quantity(problem.total, COUNT_UNIT)}, "
            f"plus que les leucocytes ({french.quantity(problem.limit, COUNT_UNIT)}) : vérifiez les résultats "
            "(un pourcentage saisi en G/L ?).")


def _per_cell(results: Mapping[str, tuple[Decimal, str]], codes: Mapping[str, str],
              unit: str) -> dict[str, Decimal]:
    """One value per cell (the first of its codes), in `unit`, by the code it came as."""
    found: dict[str, Decimal] = {}
    seen: set[str] = set()
    for code, value in _converted(results, codes.keys(), unit):
        if codes[code] not in seen:
            seen.add(codes[code])
            found[code] = value
    return found


def _converted(results: Mapping[str, tuple[Decimal, str]], codes: Iterable[str],
               unit: str) -> Iterable[tuple[str, Decimal]]:
    wanted = set(codes)
    for code, (value, given) in results.items():
        if code not in wanted:
            continue
        try:
            yield code, value if given == unit else units.convert(value, given, unit, code, [])
        except units.UnitError:
            continue


def _rounding(values: Iterable[Decimal]) -> Decimal:
    """The most that rounding each value to the digits it is written with may have added."""
    total = Decimal(0)
    for value in values:
        exponent = value.as_tuple().exponent
        total += Decimal(5).scaleb((exponent if isinstance(exponent, int) else 0) - 1)
    return total


def _decimal(text: Any) -> Decimal | None:
    return None if text is None or text == "" else Decimal(str(text))
