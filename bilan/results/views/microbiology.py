"""Microbiology in the patient's space: per examination (a lab's results of one day), what was
seen (an urine's colour, its cell counts), the germs found and, for each, its antibiogram in
words (sensible, intermédiaire, résistant). Never as trends: an antibiotic's MIC against one
germ is no analyte of the patient's, and a culture's count follows no course over time.

A result is microbiology by its chapter, never by its label: the LOINC chapter an imported
result carries as a category (18725-2 Microbiologie, 18769-0 Antibiogramme), the catalogue
chapter of its code, or the germ (isolate) it is about.
"""

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Iterable

from bilan import french
from bilan.fhir.terminology import LOINC
from bilan.results.desk import typed
from bilan.results.elsewhere.imported import FOCUS_CODE
from bilan.storage.catalogue import Entry

CHAPTERS = frozenset({"18725-2", "18769-0"})  # Microbiologie, Antibiogramme (JDV_BIO_Chapitres-CISIS)
# HL7 ObservationInterpretation codes of an antibiogram, as French reports word them.
SUSCEPTIBILITY = {"S": "sensible", "I": "intermédiaire", "R": "résistant", "NS": "non sensible",
                  "SDD": "sensible selon la dose"}


@dataclass(frozen=True)
class Finding:
    label: str  # "Leucocytes", "Couleur"
    value: str  # as pages print it: "500 /mL", "paille"


@dataclass(frozen=True)
class Susceptibility:
    antibiotic: str  # "Amoxicilline"
    reading: str  # "sensible", "intermédiaire", "résistant"; "" when the lab gave none
    value: str  # the MIC as reported ("≥ 0,512 µg/mL"), "" if none


@dataclass(frozen=True)
class Germ:
    name: str  # "Escherichia coli"
    findings: tuple[Finding, ...]  # its count...
    antibiogram: tuple[Susceptibility, ...]


@dataclass(frozen=True)
class Examination:
    day: date  # the sample's day, in Paris
    lab: str  # who performed it, "" if unknown
    findings: tuple[Finding, ...]  # what is about no germ
    germs: tuple[Germ, ...]


def is_microbiology(content: dict[str, Any], entries: dict[str, Entry]) -> bool:
    """Whether a result belongs to microbiology (`entries`: catalogue rows by LOINC code)."""
    if germ_of(content):
        return True
    categories = {c.get("code") for category in content.get("category", []) for c in category.get("coding", [])
                  if c.get("system") == LOINC}
    if categories & CHAPTERS:
        return True
    codes = [c.get("code") for c in (content.get("code") or {}).get("coding", []) if c.get("system") == LOINC]
    return any(code in entries and entries[code]["chapter_loinc"] in CHAPTERS for code in codes)


def germ_of(content: dict[str, Any]) -> str:
    """The germ (isolate) a result is about, as the lab named it; "" for none."""
    for extension in content.get("extension", []):
        if extension.get("url") == FOCUS_CODE:
            return _concept_text(extension.get("valueCodeableConcept") or {})
    return ""


def examinations(results: Iterable[tuple[str, datetime, dict[str, Any]]], labs: dict[str, str],
                 names: dict[str, str]) -> list[Examination]:
    """(id, when, content) of microbiology results, as examinations newest first (`labs`: who
    performed each result, by id; `names`: the catalogue's French label of a LOINC code, for a
    result that carries no text). Batteries, which only list their results, and results
    without a value are left out."""
    by_exam: dict[tuple[date, str], list[tuple[str, datetime, dict[str, Any]]]] = {}
    for result in results:
        _, when, content = result
        if content.get("hasMember") or not (_has_value(content) or _reading(content)):
            continue
        lab = labs.get(result[0], "")
        by_exam.setdefault((french.in_paris(when).date(), lab), []).append(result)
    made = [_examination(day, lab, sorted(found, key=lambda r: r[1]), names)
            for (day, lab), found in by_exam.items()]
    return sorted(made, key=lambda e: (e.day, e.lab), reverse=True)


def _examination(day: date, lab: str, found: list[tuple[str, datetime, dict[str, Any]]],
                 names: dict[str, str]) -> Examination:
    findings: list[Finding] = []
    germs: dict[str, tuple[list[Finding], list[Susceptibility]]] = {}
    for _, _, content in found:
        germ = germ_of(content)
        if not germ:
            findings.append(Finding(_label(content, names), _value(content)))
            continue
        seen, antibiogram = germs.setdefault(germ, ([], []))
        if _reading(content):
            antibiogram.append(Susceptibility(_label(content, names), _reading(content), _value(content, "")))
        else:
            seen.append(Finding(_label(content, names), _value(content)))
    return Examination(day, lab, tuple(findings),
                       tuple(Germ(name, tuple(seen), tuple(sorted(antibiogram, key=lambda s: s.antibiotic)))
                             for name, (seen, antibiogram) in germs.items()))


def _reading(content: dict[str, Any]) -> str:
    """Sensible, intermédiaire or résistant, from the result's interpretation; "" for none."""
    for interpretation in content.get("interpretation", []):
        for coding in interpretation.get("coding", []):
            if coding.get("code") in SUSCEPTIBILITY:
                return SUSCEPTIBILITY[coding["code"]]
    return ""


def _has_value(content: dict[str, Any]) -> bool:
    return any(key.startswith("value") for key in content)


def _value(content: dict[str, Any], missing: str = "—") -> str:
    quantity = content.get("valueQuantity")
    if quantity:
        return typed.comparator_text(quantity.get("comparator")) + french.quantity(
            quantity.get("value"), quantity.get("code") or quantity.get("unit"))
    concept = content.get("valueCodeableConcept")
    if concept:
        return _concept_text(concept) or missing
    return str(content.get("valueString") or missing)


def _label(content: dict[str, Any], names: dict[str, str]) -> str:
    """What the lab printed, else the catalogue's label of its LOINC code, else its code's."""
    concept = content.get("code") or {}
    named = next((names[c["code"]] for c in concept.get("coding", [])
                  if c.get("system") == LOINC and c.get("code") in names), None)
    return str(concept.get("text") or named or _concept_text(concept) or "Résultat")


def _concept_text(concept: dict[str, Any]) -> str:
    return str(concept.get("text") or next((c["display"] for c in concept.get("coding", []) if c.get("display")),
                                           next((c["code"] for c in concept.get("coding", []) if c.get("code")), "")))
