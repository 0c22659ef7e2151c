"""Results the lab calculates from others, as French labs report them:

- the estimated glomerular filtration rate by CKD-EPI 2021 (race-free), from a creatinine, the
  patient's age on the day of the sample and sex;
- LDL cholesterol by Friedewald, from total and HDL cholesterol and triglycerides, only when
  triglycerides are below 3.4 mmol/L: above, the LDL is "non calculable" (a direct LDL is needed).

Whenever an input of an order is stored, the calculated result of that order is written again
(bilan's own write, through the same guard: unit, range, flag); it is `derivedFrom` its inputs,
tagged `calculated`, and its note says how it was obtained. It is validated like any result."""

from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from bilan import french
from bilan.fhir.dates import date_range
from bilan.fhir.outcomes import Invalid
from bilan.fhir.query import parse_search
from bilan.fhir.terminology import LOINC, UCUM
from bilan.prescription import loinc_codes
from bilan.records.pipeline import Work
from bilan.records.service import new_id
from bilan.results.desk import units
from bilan.storage import catalogue
from bilan.storage import search as store_search
from bilan.storage.catalogue import Entry
from bilan.storage.repository import Stored, Write

CALCULATED_TAG = {"system": "https://bilan.sante.fr/fhir/CodeSystem/result-origin", "code": "calculated",
                  "display": "Résultat calculé"}
NOT_CALCULABLE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                              "code": "not-applicable", "display": "Not Applicable"}]}
CREATININE, EGFR = "14682-9", "62238-1"
CHOLESTEROL, HDL, TRIGLYCERIDES, LDL = "2093-3", "2085-9", "2571-8", "13457-7"
INPUTS = {CREATININE: EGFR, CHOLESTEROL: LDL, HDL: LDL, TRIGLYCERIDES: LDL}
FRIEDEWALD_LIMIT = Decimal("3.4")  # mmol/L of triglycerides
OPEN = ("registered", "preliminary")
UNUSABLE = ("cancelled", "entered-in-error")


@dataclass(frozen=True)
class Calculated:
    value: Decimal | None  # None: not calculable
    unit: str
    how: str  # the note: method and inputs, in French


def egfr_ckd_epi_2021(creatinine_umol_l: Decimal, age: int, female: bool) -> Decimal:
    """mL/min/1.73 m², rounded to a whole number (Inker et al., N Engl J Med 2021)."""
    scr = float(creatinine_umol_l) / 88.42  # mg/dL
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    rate = 142 * min(scr / kappa, 1) ** alpha * max(scr / kappa, 1) ** -1.200 * 0.9938 ** age
    rate *= 1.012 if female else 1
    return Decimal(str(rate)).quantize(Decimal("1"), ROUND_HALF_UP)


def ldl_friedewald(total: Decimal, hdl: Decimal, triglycerides: Decimal) -> Decimal | None:
    """LDL cholesterol in mmol/L from mmol/L inputs; None when triglycerides are too high."""
    if triglycerides >= FRIEDEWALD_LIMIT:
        return None
    return (total - hdl - triglycerides / Decimal("2.2")).quantize(Decimal("0.01"), ROUND_HALF_UP)


async def on_saved(work: Work, saved: list[Stored]) -> None:
    """Write again the calculated results of the requests whose inputs were just stored."""
    requests = {b.get("reference", "") for s in saved if s.resource_type == "Observation" and not s.deleted
                and _code(s.content) in INPUTS for b in s.content.get("basedOn", [])}
    for request in sorted(r for r in requests if r.startswith("ServiceRequest/")):
        results = await _results(work, request)
        for output in sorted({INPUTS[c] for c in results if c in INPUTS}):
            await _calculate(work, request, output, results)


async def _calculate(work: Work, request: str, output: str, results: dict[str, Stored]) -> None:
    rows = await catalogue.results_by_loinc(work.conn, [output, *INPUTS])
    entry = next((r for r in rows if r["loinc"] == output), None)
    if entry is None or not entry["ucum"]:  # the lab's catalogue does not report it, or not as a number
        return
    inputs = [CREATININE] if output == EGFR else [CHOLESTEROL, HDL, TRIGLYCERIDES]
    if any(code not in results for code in inputs):
        return
    found = await (_egfr(work, results[CREATININE]) if output == EGFR else _ldl(results, rows))
    if found is None:
        return
    unit = entry["ucum"]
    value = found.value
    if value is not None and found.unit != unit:
        value = units.convert(value, found.unit, unit, output, rows, exact=True).quantize(Decimal("0.01"), ROUND_HALF_UP)
    sources = [results[c] for c in inputs]
    try:
        await _store(work, results.get(output), _observation(request, entry, value, unit, found.how, sources))
    except Invalid:  # beyond the analyte's plausible limits: said, never stored as a value
        how = f"Non calculable : le calcul donne {french.number(value or 0)} {french.unit(unit)}, hors des limites plausibles."
        await _store(work, results.get(output), _observation(request, entry, None, unit, how, sources))


async def _egfr(work: Work, creatinine: Stored) -> Calculated | None:
    value = _value(creatinine.content, "umol/L", CREATININE, [])
    patient = await work.repo.read_reference((creatinine.content.get("subject") or {}).get("reference", ""))
    if value is None or patient is None or patient.content.get("gender") not in ("female", "male"):
        return None
    born, sampled = patient.content.get("birthDate"), _sampled(creatinine.content)
    if not born or sampled is None:
        return None
    age = _age(date.fromisoformat(born[:10]) if len(born) >= 10 else date(int(born[:4]), 1, 1), sampled.date())
    female = patient.content["gender"] == "female"
    rate = egfr_ckd_epi_2021(value, age, female)
    how = (f"Calculé (CKD-EPI 2021) à partir de la créatinine à {french.number(value)} µmol/L, "
           f"{age} ans, {'femme' if female else 'homme'}.")
    return Calculated(rate, "mL/min/{1.73_m2}", how)


async def _ldl(results: dict[str, Stored], rows: list[Entry]) -> Calculated | None:
    values = [_value(results[c].content, "mmol/L", c, rows) for c in (CHOLESTEROL, HDL, TRIGLYCERIDES)]
    if any(v is None for v in values):
        return None
    total, hdl, triglycerides = (v for v in values if v is not None)
    ldl = ldl_friedewald(total, hdl, triglycerides)
    inputs = (f"cholestérol total {french.number(total)}, HDL {french.number(hdl)}, "
              f"triglycérides {french.number(triglycerides)} mmol/L")
    if ldl is None:
        return Calculated(None, "mmol/L", f"Non calculable : triglycérides ≥ 3,4 mmol/L ({inputs}). "
                                          "Un dosage direct du LDL est nécessaire.")
    if ldl <= 0:  # HDL and triglycerides outweigh the total: the formula does not hold
        return Calculated(None, "mmol/L", f"Non calculable : la formule donne {french.number(ldl)} mmol/L "
                                          f"({inputs}). Un dosage direct du LDL est nécessaire.")
    return Calculated(ldl, "mmol/L", f"Calculé (Friedewald) à partir de : {inputs}.")


def _observation(request: str, entry: Entry, value: Decimal | None, unit: str, how: str,
                 sources: list[Stored]) -> dict[str, Any]:
    first = sources[0].content
    observation: dict[str, Any] = {
        "resourceType": "Observation", "status": "registered",
        "meta": {"tag": [CALCULATED_TAG]},
        "category": first.get("category", []),
        "code": {"coding": [{"system": LOINC, "code": entry["loinc"], "display": entry["loinc_display"]}],
                 "text": entry["label_fr"]},
        "subject": first["subject"], "basedOn": [{"reference": request}],
        "derivedFrom": [{"reference": f"Observation/{s.id}"} for s in sources],
        "note": [{"authorString": "bilan", "text": how}],
    }
    for element in ("effectiveDateTime", "specimen", "performer"):
        if element in first:
            observation[element] = first[element]
    if value is None:
        observation["dataAbsentReason"] = NOT_CALCULABLE
    else:
        observation["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    return observation


async def _store(work: Work, existing: Stored | None, observation: dict[str, Any]) -> None:
    if existing is None:
        await work.write([Write("Observation", new_id(), observation, "POST")], system=True)
        return
    if _result_of(existing.content) == _result_of(observation):
        return  # the same result: nothing to validate again
    if existing.content.get("status") not in OPEN:
        observation["status"] = "corrected"
    await work.write([Write("Observation", existing.id, observation, "PUT", existing.version_id)], system=True)


async def _results(work: Work, request: str) -> dict[str, Stored]:
    """The request's latest usable result per LOINC code."""
    query = parse_search("Observation", [("based-on", request)], default_count=500, max_count=500)
    found = await store_search.search(work.conn, query, "")
    latest: dict[str, Stored] = {}
    for stored in sorted(found.matches, key=lambda s: s.last_updated):
        code = _code(stored.content)
        if code and stored.content.get("status") not in UNUSABLE:
            latest[code] = stored
    return latest


def _value(content: dict[str, Any], unit: str, loinc: str, rows: list[Entry]) -> Decimal | None:
    quantity = content.get("valueQuantity") or {}
    if quantity.get("value") is None or quantity.get("comparator"):
        return None  # no number, or a censored one: nothing to calculate from
    value = Decimal(str(quantity["value"]))
    source = quantity.get("code") or unit
    try:
        return value if source == unit else units.convert(value, source, unit, loinc, rows, exact=True)
    except units.IncompatibleUnits:
        return None


def _result_of(content: dict[str, Any]) -> tuple[Decimal | None, str]:
    value = (content.get("valueQuantity") or {}).get("value")
    return (None if value is None else Decimal(str(value))), str(content.get("note", [{}])[-1].get("text", ""))


def _code(content: dict[str, Any]) -> str:
    return next(iter(loinc_codes(content)), "")


def _sampled(content: dict[str, Any]) -> datetime | None:
    text = content.get("effectiveDateTime") or content.get("issued")
    return date_range(text)[0] if text else None


def _age(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))
