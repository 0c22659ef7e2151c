"""Results as the lab writes them (analysers' middleware, lab staff): a checked UCUM unit, and
the interpretation flag computed from the reference range when the instrument gives none.

The reference range is the result's own, else the catalogue's for the analyte when the result
is in the catalogue's unit. Observations written by prescribers (clinical context) are left
as they are.
"""

from decimal import Decimal, InvalidOperation
from typing import Any

from bilan.auth.caller import Caller
from bilan.fhir.outcomes import Invalid, Issue
from bilan.prescription import loinc_codes
from bilan.results.desk import interpretation, units
from bilan.storage import catalogue
from bilan.storage.repository import Repository

UCUM = "http://unitsofmeasure.org"
# No lab value reaches this in any unit bilan reads (cells/L are written 10*9/L): a result at
# or beyond it is a typo or an instrument fault, and would not survive float arithmetic intact.
LARGEST_RESULT = Decimal("1e9")
INTERPRETATION = interpretation.CODE_SYSTEM_URI
COMPUTED = {"system": "https://bilan.sante.fr/fhir/CodeSystem/result-flag", "code": "computed",
            "display": "Interprétation calculée par bilan à partir des valeurs de référence"}


class ResultsIntake:
    async def guard(self, repo: Repository, caller: Caller | None,
                    observation: dict[str, Any]) -> dict[str, Any]:
        """A records guard for Observations (see Records.guards)."""
        if caller is None or not caller.for_lab or "valueQuantity" not in observation:
            return observation
        quantity = observation["valueQuantity"]
        unit = _unit_of(quantity)
        value = _decimal(quantity.get("value"), "Observation.valueQuantity.value")
        entries = await catalogue.results_by_loinc(repo.conn, loinc_codes(observation))
        _check_dimension(entries, unit)
        if observation.get("interpretation"):
            return observation
        low, high = _range(observation, entries, unit)
        code = interpretation.flag(value, low, high) if (low, high) != (None, None) else None
        if code is None:
            return observation
        completed = {**observation, "interpretation": [{"coding": [
            {"system": INTERPRETATION, "code": code, "display": interpretation.label(code)}]}]}
        completed["meta"] = {**observation.get("meta", {}),
                             "tag": [*observation.get("meta", {}).get("tag", []), COMPUTED]}
        if not observation.get("referenceRange"):
            completed["referenceRange"] = [_range_element(low, high, unit)]
        return completed


def _unit_of(quantity: dict[str, Any]) -> str:
    code = quantity.get("code") or ""
    if quantity.get("system") != UCUM or not code:
        raise Invalid([Issue(f"A result's unit is UCUM: system {UCUM} and a code (e.g. mmol/L)",
                                    "value", expression="Observation.valueQuantity.system")])
    problem = units.check_unit(code)
    if problem:
        raise Invalid([Issue(problem, "code-invalid", expression="Observation.valueQuantity.code")])
    return code


def _decimal(value: Any, path: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise Invalid([Issue("A result needs a numeric value", "value", expression=path)]) from None
    if not plausible(number):
        raise Invalid([Issue(f"{path} must be a finite number below {LARGEST_RESULT:,.0f} in "
                                    f"absolute value, not {str(value)[:40]}: check what was typed "
                                    "or sent", "value", expression=path)])
    return number


def plausible(number: Decimal) -> bool:
    """Whether a measured value (or a reference limit) can be a real lab result."""
    return number.is_finite() and abs(number) < LARGEST_RESULT


def _check_dimension(entries: list[dict[str, Any]], unit: str) -> None:
    """A result's unit measures what the catalogue's unit for the analyte measures."""
    for entry in entries:
        if not entry.get("ucum") or entry["ucum"] == unit:
            continue
        try:
            units.convert(Decimal(1), unit, entry["ucum"], entry["loinc"], entries)
        except units.UnitError:
            raise Invalid([Issue(
                f"{entry['label_fr']} is reported in {entry['ucum']} (or a unit convertible to it), "
                f"not {unit}", "code-invalid", expression="Observation.valueQuantity.code")]) from None


def _range(observation: dict[str, Any], entries: list[dict[str, Any]],
           unit: str) -> tuple[Decimal | None, Decimal | None]:
    """The result's own reference range (in its unit), else the catalogue's."""
    for element in observation.get("referenceRange", []):
        low, high = element.get("low") or {}, element.get("high") or {}
        if low.get("code", unit) == unit and high.get("code", unit) == unit:
            return (_decimal(low["value"], "Observation.referenceRange.low") if "value" in low else None,
                    _decimal(high["value"], "Observation.referenceRange.high") if "value" in high else None)
    for entry in entries:
        if entry.get("ucum") == unit and (entry.get("ref_low") or entry.get("ref_high")):
            return (Decimal(entry["ref_low"]) if entry.get("ref_low") else None,
                    Decimal(entry["ref_high"]) if entry.get("ref_high") else None)
    return None, None


def _range_element(low: Decimal | None, high: Decimal | None, unit: str) -> dict[str, Any]:
    element: dict[str, Any] = {"text": "Valeurs de référence du laboratoire"}
    for name, value in (("low", low), ("high", high)):
        if value is not None:
            element[name] = {"value": float(value), "unit": unit, "system": UCUM, "code": unit}
    return element

