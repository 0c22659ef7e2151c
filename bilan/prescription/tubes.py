"""Which tube each exam is collected in, from the catalogue's specimen type and chapter (the
usual practice of a French city lab)."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SPECIMEN_TYPES = "http://terminology.hl7.org/CodeSystem/v2-0487"
COAGULATION = "18720-3"


@dataclass(frozen=True)
class Tube:
    key: str
    label: str  # as printed on the label and the reception sheet
    specimen_code: str  # HL7 v2 table 0487
    specimen_label: str
    additive: str


TUBES = {tube.key: tube for tube in (
    Tube("edta", "Tube EDTA (bouchon violet)", "BLD", "Sang total", "EDTA K2"),
    Tube("vs", "Tube citraté VS (bouchon noir)", "BLD", "Sang total", "Citrate de sodium 1:4"),
    Tube("citrate", "Tube citraté (bouchon bleu)", "PLAS", "Plasma", "Citrate de sodium 3,2 %"),
    Tube("fluoride", "Tube fluorure (bouchon gris)", "PLAS", "Plasma", "Fluorure de sodium / oxalate"),
    Tube("heparin", "Tube hépariné (bouchon vert)", "PLAS", "Plasma", "Héparine de lithium"),
    Tube("serum", "Tube sec avec gel (bouchon jaune)", "SER", "Sérum", "Activateur de coagulation et gel"),
    Tube("urine", "Flacon stérile pour urines", "UR", "Urine", ""),
)}

# Exams whose tube is not the one their specimen type suggests.
BY_EXAM = {"VS": "vs", "GLY": "fluoride"}
# An exam sent to the partner lab is not in the catalogue: its LOINC name's system axis (after
# " in ": "IgA [Mass/volume] in Serum or Plasma") gives the sample when the prescription carries
# that name, the first word found here winning; otherwise a serum tube, what most exams sent out
# (serologies, proteins, hormones, vitamins) are done on. The slip names the tube, for the desk
# to check against the partner's guide to its exams.
SYSTEM_AXIS = (("urine", "urine"), ("serum", "serum"), ("blood", "edta"))
FORWARDED_DEFAULT = "serum"


def tube_for(entry: Mapping[str, Any]) -> Tube:
    """The tube for a catalogue entry (a row of the catalogue table)."""
    code = BY_EXAM.get(entry["local_code"])
    if code:
        return TUBES[code]
    specimen = (entry.get("specimen") or "").lower()
    if specimen == "urine":
        return TUBES["urine"]
    if specimen == "sang total":
        return TUBES["edta"]
    if specimen == "plasma":
        return TUBES["citrate" if entry.get("chapter_loinc") == COAGULATION else "heparin"]
    return TUBES["serum"]


def tube_for_forwarded(names: Iterable[str]) -> Tube:
    """The tube for an exam the lab sends to its partner, from the names the prescription gives it."""
    for name in names:
        words = name.lower()
        if " in " not in words:
            continue
        system = words.rpartition(" in ")[2]
        for word, key in SYSTEM_AXIS:
            if word in system:
                return TUBES[key]
    return TUBES[FORWARDED_DEFAULT]
