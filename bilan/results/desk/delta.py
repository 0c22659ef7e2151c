"""Delta check: a new result beside the patient's previous one of the same analyte, and whether
the change between them is implausible (a mislabelled or contaminated sample, or an acute event
the biologist should see before validating)."""

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from bilan.results.desk.units import convert


@dataclass(frozen=True)
class DeltaRule:
    """How far an analyte may move within a window before the change is called implausible.

    With both limits, the change must exceed both: a small value may double (creatinine 40 to
    80 umol/L) and a large one move by a wide margin (300 to 360 umol/L) without a warning.
    """

    loinc: str
    label: str
    unit: str  # UCUM unit of max_absolute: the catalogue's unit for the analyte
    window_days: float  # results further apart than this are never compared
    max_absolute: Decimal | None = None
    max_relative: Decimal | None = None  # a fraction of the previous value: 0.5 is 50 %


# Orders of magnitude found in common laboratory practice, not a standard: each lab's
# biologists set their own (see docs/results.md) and pass them as `rules`.
DELTA_RULES: tuple[DeltaRule, ...] = (
    DeltaRule("718-7", "Hémoglobine", "g/dL", 3, max_absolute=Decimal("2.0")),
    DeltaRule("30428-7", "VGM", "fL", 7, max_absolute=Decimal(5)),
    DeltaRule("777-3", "Plaquettes", "10*9/L", 3, max_absolute=Decimal(100),
              max_relative=Decimal("0.5")),
    DeltaRule("2823-3", "Potassium", "mmol/L", 2, max_absolute=Decimal("1.0")),
    DeltaRule("2951-2", "Sodium", "mmol/L", 2, max_absolute=Decimal(8)),
    DeltaRule("2000-8", "Calcium", "mmol/L", 2, max_absolute=Decimal("0.50")),
    DeltaRule("14682-9", "Créatinine", "umol/L", 2, max_absolute=Decimal(40),
              max_relative=Decimal("0.5")),
    DeltaRule("40193-5", "Glycémie à jeun", "mmol/L", 2, max_absolute=Decimal("5.0"),
              max_relative=Decimal("0.5")),
)


@dataclass(frozen=True)
class DeltaResult:
    current: Decimal
    previous: Decimal
    days_between: float
    absolute_change: Decimal  # current - previous, in the results' unit
    relative_change: Decimal | None  # of the previous value, to 4 places; None when it was 0
    rule: DeltaRule | None  # None: the analyte has no rule and is never flagged
    implausible: bool

    @property
    def interpretation(self) -> str | None:
        """U or D, the CI-SIS codes for a significant rise or fall, when the change is implausible."""
        if not self.implausible:
            return None
        return "U" if self.absolute_change > 0 else "D"


def delta_check(current: Decimal, previous: Decimal, days_between: float, analyte_loinc: str, *,
                unit: str | None = None, rules: Iterable[DeltaRule] = DELTA_RULES) -> DeltaResult:
    """Compare two results of one analyte for one patient, both in `unit` (the rule's if None).

    Results in another unit than the rule's are fine when `unit` says which: the rule's
    absolute limit is converted (g/L against a g/dL rule), never the results.
    """
    if days_between < 0:
        raise ValueError(f"the previous result must come first ({days_between} days between them)")
    change = current - previous
    ratio = None if previous == 0 else change / abs(previous)
    rule = next((r for r in rules if r.loinc == analyte_loinc), None)
    implausible = (rule is not None and days_between <= rule.window_days
                   and _exceeds(rule, change, ratio, unit or rule.unit))
    relative = None if ratio is None else ratio.quantize(Decimal("0.0001"))
    return DeltaResult(current, previous, days_between, change, relative, rule, implausible)


def _exceeds(rule: DeltaRule, change: Decimal, ratio: Decimal | None, unit: str) -> bool:
    checks = []
    if rule.max_absolute is not None:
        limit = convert(rule.max_absolute, rule.unit, unit, rule.loinc, ())
        checks.append(abs(change) > limit)
    if rule.max_relative is not None:
        checks.append(change != 0 if ratio is None else abs(ratio) > rule.max_relative)
    return bool(checks) and all(checks)
