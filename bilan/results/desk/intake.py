"""Results as the lab writes them (analysers' middleware, lab staff): a checked UCUM unit, a
value a living patient can have, and the interpretation flag computed from the reference
range when the instrument gives none.

The value must be a number a measure can be (finite, below typed.LARGEST_RESULT) and within
the catalogue's plausible limits for the analyte (bilan/results/desk/plausibility.py). A
censored value ("<0.5", FHIR valueQuantity.comparator) is judged by its bound and flagged by
what it says of the true value. Whether the leukocyte differential adds up is a matter of the
order's results together: the results desk checks it (results sent one by one may disagree
until the last arrives).

The reference range is the result's own, else the catalogue's for the analyte and the patient
(their sex and age on the day of the sample: bilan/results/desk/ranges.py) when the result is
in the catalogue's unit. A value beyond the catalogue's critical limits is flagged LL or HH,
whatever the instrument's flag (bilan/results/desk/critical.py). Observations written by
prescribers (clinical context) are left as they are.
"""

from decimal import Decimal, InvalidOperation
from typing import Any

from bilan.auth.caller import Caller
from bilan.fhir.outcomes import Invalid, Issue
from bilan.fhir.terminology import UCUM
from bilan.prescription import loinc_codes
from bilan.results.desk import interpretation, plausibility, ranges, units
from bilan.results.desk.critical import critical_flag
from bilan.results.desk.critical import flag as flag_of
from bilan.results.desk.typed import LARGEST_RESULT, measurable
from bilan.storage import catalogue
from bilan.storage.catalogue import Entry
from bilan.storage.repository import Repository

VALUE = "Observation.valueQuantity.value"
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
        value = _decimal(quantity.get("value"), VALUE)
        comparator = _comparator_of(quantity)
        entries = await catalogue.results_by_loinc(repo.conn, loinc_codes(observation))
        _check_dimension(entries, unit)
        _check_limits(value, comparator, unit, entries)
        if value.is_zero() and value.is_signed():  # -0 is 0
            observation = {**observation, "valueQuantity": {**quantity, "value": value.copy_abs()}}
        # Beyond the critical limits, LL or HH whatever the instrument's flag says.
        critical = critical_flag(value, comparator, unit, entries)
        reported = flag_of(observation)
        if reported and (critical is None or reported == critical):
            return observation
        applicable = _own_range(observation, unit) or await _patient_range(repo, observation, entries, unit)
        try:
            ranged = (interpretation.flag_censored(comparator, value, applicable.low, applicable.high)
                      if not applicable.empty else None)
        except ValueError as error:  # a range whose low limit is above its high one
            raise Invalid([Issue(str(error), "value", expression="Observation.referenceRange")]) from None
        code = critical or ranged
        if code is None:
            return observation
        completed = {**observation, "interpretation": [{"coding": [
            {"system": INTERPRETATION, "code": code, "display": interpretation.label(code)}]}]}
        tags = observation.get("meta", {}).get("tag", [])
        completed["meta"] = {**observation.get("meta", {}),
                             "tag": [*tags, *([] if any(t.get("code") == COMPUTED["code"] for t in tags) else [COMPUTED])]}
        if not observation.get("referenceRange") and not applicable.empty:
            completed["referenceRange"] = [ranges.element(applicable, unit)]
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


def _comparator_of(quantity: dict[str, Any]) -> str | None:
    comparator = quantity.get("comparator")
    if comparator is not None and comparator not in interpretation.COMPARATORS:
        raise Invalid([Issue(f"A result's comparator is one of {', '.join(interpretation.COMPARATORS)}, "
                             f"not {str(comparator)[:20]!r}", "code-invalid",
                             expression="Observation.valueQuantity.comparator")])
    return comparator if isinstance(comparator, str) else None


def _decimal(value: Any, path: str) -> Decimal:
    if isinstance(value, bool):
        raise Invalid([Issue("A result needs a numeric value", "value", expression=path)])
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise Invalid([Issue("A result needs a numeric value", "value", expression=path)]) from None
    if not measurable(number):
        raise Invalid([Issue(f"{path} must be a finite number below {LARGEST_RESULT:,.0f} in "
                                    f"absolute value, not {str(value)[:40]}: check what was typed "
                                    "or sent", "value", expression=path)])
    return number


def _check_dimension(entries: list[Entry], unit: str) -> None:
    """A result's unit measures what the catalogue's unit for the analyte measures."""
    for entry in entries:
        target = entry["ucum"]
        if not target or target == unit:
            continue
        try:
            units.convert(Decimal(1), unit, target, entry["loinc"], entries)
        except units.UnitError:
            raise Invalid([Issue(
                f"{entry['label_fr']} is reported in {entry['ucum']} (or a unit convertible to it), "
                f"not {unit}", "code-invalid", expression="Observation.valueQuantity.code")]) from None


def _check_limits(value: Decimal, comparator: str | None, unit: str, entries: list[Entry]) -> None:
    """Within the catalogue's plausible limits for the analyte (a censored value by its bound)."""
    found = plausibility.beyond(value, unit, entries)
    if found is None:
        return
    limits = " to ".join(str(limit) if limit is not None else "-" for limit in (found.low, found.high))
    given = f"{comparator or ''}{value} {unit}"
    raise Invalid([Issue(
        f"{found.label}: {given} is not a value a living patient can have (plausible limits {limits} "
        f"{found.unit}): check the sample, the instrument or what was typed", "value", expression=VALUE)])


def _own_range(observation: dict[str, Any], unit: str) -> ranges.Applicable | None:
    """The result's own reference range, in its unit (an instrument's, or typed at the desk)."""
    for element in observation.get("referenceRange", []):
        low, high = element.get("low") or {}, element.get("high") or {}
        if low.get("code", unit) == unit and high.get("code", unit) == unit:
            return ranges.Applicable(
                _decimal(low["value"], "Observation.referenceRange.low") if "value" in low else None,
                _decimal(high["value"], "Observation.referenceRange.high") if "value" in high else None)
    return None


async def _patient_range(repo: Repository, observation: dict[str, Any], entries: list[Entry],
                         unit: str) -> ranges.Applicable:
    """The catalogue's range for this patient (sex, age on the day of the sample), when the
    result is in the catalogue's unit; none otherwise (never a converted guess)."""
    entry = next((e for e in entries if e.get("ucum") == unit), None)
    if entry is None:
        return ranges.Applicable(None, None)
    rows = (await catalogue.ranges(repo.conn, [entry["local_code"]])).get(entry["local_code"], [])
    subject = str((observation.get("subject") or {}).get("reference", ""))
    patient = await repo.read_reference(subject) if rows and subject.startswith("Patient/") else None
    return ranges.patient_range(entry, rows, patient.content if patient and not patient.deleted else None,
                                ranges.sample_day(observation))
