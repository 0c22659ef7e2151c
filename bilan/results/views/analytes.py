"""Which results are the same analyte over time, whatever the lab and the unit, for the
patient's trends (bilan/results/views/trends.py).

Labs code one analyte with several LOINC codes: mass or molar concentration (glucose in g/L or
mmol/L), fasting or not, serum or blood, automated or manual count, a method's variant (hs-CRP,
third-generation TSH). The table below puts such related codes on one key: codes of one LOINC
component, property and system whatever the method, and the mass and molar codes of an analyte
whose catalogue row gives the factor between them. Codes of another component (urea nitrogen
beside urea, 25-OH vitamin D3 alone beside D2+D3, the beta-hCG beside the total hCG), computed
another way (CKD-EPI 2021 beside 2009, an LDL measured directly beside the catalogue's
calculated one) or on another scale (D-dimers in DDU beside FEU) stay apart. A group keeps the key of its catalogue entry (its local code), so
a link to its trend stays valid.

Every other analyte of the lab's catalogue is its own key (its local code), and a code the
catalogue does not know is its own analyte too: a LOINC code keyed by itself, a local code
(imported reports keep their `urn:oid:` systems) by its system and code. A local code is never
matched to an analyte by its label.
"""

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Iterable

from sqlalchemy.ext.asyncio import AsyncConnection

from bilan.fhir.terminology import LOINC
from bilan.fhir.text import normalise
from bilan.results.document import assembly
from bilan.results.views.explanations import explanation
from bilan.storage import catalogue
from bilan.storage.catalogue import Entry

BIOCHEMISTRY = "18719-5"
_LOINC_CODE = re.compile(r"^\d{1,7}-\d$")
_LOCAL = "code-"  # key prefix of a local (non-LOINC) code: base64url of "system|code"


@dataclass(frozen=True)
class Group:
    """Related LOINC codes reported as one analyte. `same_unit_only`: its units do not convert
    into each other (HbA1c in % (NGSP) and in mmol/mol (IFCC) are not a plain factor apart)."""

    key: str
    label: str
    codes: tuple[str, ...]
    synonyms: tuple[str, ...] = ()
    same_unit_only: bool = False


GROUPS: tuple[Group, ...] = (
    # Glucose [Moles/volume] Ser/Plas pre-meal (the catalogue's), [Moles/volume] Ser/Plas,
    # [Mass/volume] Ser/Plas, fasting [Moles/volume] and [Mass/volume], [Moles/volume] Blood.
    Group("glucose", "Glycémie", ("40193-5", "14749-6", "2345-7", "14771-0", "1558-6", "15074-8"),
          ("glycémie", "glycémie à jeun", "glucose", "sucre")),
    # Creatinine [Moles/volume] Ser/Plas (the catalogue's), [Mass/volume] Ser/Plas and Blood.
    Group("creatinine", "Créatinine", ("14682-9", "2160-0", "38483-4"),
          ("créatinine", "créatininémie", "créat", "rein")),
    Group("cholesterol", "Cholestérol total", ("2093-3", "14647-2"), ("cholestérol", "cholesterol total", "CT")),
    Group("hdl", "Cholestérol HDL", ("2085-9", "14646-4"), ("cholestérol", "HDL", "bon cholestérol")),
    Group("triglycerides", "Triglycérides", ("2571-8", "14927-8"), ("triglycérides", "TG", "lipides")),
    Group("acide-urique", "Acide urique", ("14933-6", "3084-1"), ("acide urique", "uricémie", "urate")),
    # HbA1c/Hemoglobin.total in Blood, by HPLC, by IFCC protocol (mmol/mol).
    Group("hba1c", "Hémoglobine glyquée (HbA1c)", ("4548-4", "17856-6", "59261-8"),
          ("HbA1c", "hémoglobine glyquée", "glycohémoglobine", "diabète"), same_unit_only=True),
    # Blood count: by automated count (the catalogue's), without method, by manual count.
    Group("gb", "Leucocytes", ("6690-2", "26464-8", "804-5"), ("leucocytes", "globules blancs", "GB")),
    Group("gr", "Hématies", ("789-8", "26453-1", "790-6"), ("hématies", "globules rouges", "érythrocytes", "GR")),
    Group("hb", "Hémoglobine", ("718-7", "20509-6"), ("hémoglobine", "Hb", "anémie")),  # measured, calculated
    Group("ht", "Hématocrite", ("4544-3", "20570-8"), ("hématocrite", "Ht")),
    Group("vgm", "VGM (volume globulaire moyen)", ("30428-7", "787-2"), ("VGM", "volume globulaire")),
    Group("tcmh", "TCMH (teneur corpusculaire moyenne en hémoglobine)", ("28539-5", "785-6"), ("TCMH",)),
    Group("ccmh", "CCMH (concentration corpusculaire moyenne en hémoglobine)", ("28540-3", "786-4"), ("CCMH",)),
    Group("idr", "IDR (indice de distribution des hématies)", ("30385-9", "788-0"), ("IDR", "anisocytose")),
    Group("plaq", "Plaquettes", ("777-3", "26515-7", "778-1"), ("plaquettes", "thrombocytes")),
    Group("vmp", "VMP (volume moyen plaquettaire)", ("32623-1", "28542-9"), ("VMP", "plaquettes")),
    Group("pnn", "Polynucléaires neutrophiles", ("26499-4", "751-8"), ("neutrophiles", "PNN")),
    Group("lym", "Lymphocytes", ("26474-7", "731-0"), ("lymphocytes",)),
    Group("mono", "Monocytes", ("26484-6", "742-7"), ("monocytes",)),
    Group("pne", "Polynucléaires éosinophiles", ("26449-9", "711-2"), ("éosinophiles", "PNE")),
    Group("pnb", "Polynucléaires basophiles", ("26444-0", "704-7"), ("basophiles", "PNB")),
    Group("pnn-pct", "Polynucléaires neutrophiles (%)", ("26511-6", "770-8"), ("neutrophiles", "PNN")),
    Group("lym-pct", "Lymphocytes (%)", ("26478-8", "736-9"), ("lymphocytes",)),
    Group("mono-pct", "Monocytes (%)", ("26485-3", "5905-5"), ("monocytes",)),
    Group("pne-pct", "Polynucléaires éosinophiles (%)", ("26450-7", "713-8"), ("éosinophiles", "PNE")),
    Group("pnb-pct", "Polynucléaires basophiles (%)", ("30180-4", "706-2"), ("basophiles", "PNB")),
    Group("vs", "Vitesse de sédimentation (1re heure)", ("30341-2", "4537-7"), ("VS", "sédimentation")),
    # Electrolytes in Ser/Plas (the catalogue's) and in Blood (blood-gas analysers' electrodes
    # measure the plasma's concentration, as the Ser/Plas code itself mixes serum and plasma).
    Group("na", "Sodium", ("2951-2", "2947-0"), ("sodium", "natrémie", "Na", "ionogramme")),
    Group("k", "Potassium", ("2823-3", "6298-4"), ("potassium", "kaliémie", "ionogramme")),
    Group("cl", "Chlore", ("2075-0", "2069-3"), ("chlore", "chlorure", "chlorémie", "ionogramme")),
    # Urea [Moles/volume] and [Mass/volume]; not urea nitrogen (BUN, 3094-0): another factor.
    Group("uree", "Urée", ("22664-7", "3091-6"), ("urée", "urémie", "rein")),
    # LDL calculated [Mass/volume] (the catalogue's) and [Moles/volume] by calculation.
    Group("ldl", "Cholestérol LDL calculé", ("13457-7", "39469-2"), ("cholestérol", "LDL", "mauvais cholestérol")),
    # Transaminases without and with pyridoxal 5'-phosphate (the ANS example's).
    Group("asat", "ASAT (transaminase TGO)", ("1920-8", "30239-8"), ("ASAT", "TGO", "transaminases", "foie")),
    Group("alat", "ALAT (transaminase TGP)", ("1742-6", "1743-4"), ("ALAT", "TGP", "transaminases", "foie")),
    Group("bilt", "Bilirubine totale", ("14631-6", "1975-2"), ("bilirubine", "foie")),
    # CRP, and the same protein in the same unit by a high-sensitivity method.
    Group("crp", "Protéine C réactive (CRP)", ("1988-5", "30522-7"),
          ("CRP", "protéine C réactive", "inflammation", "CRP ultrasensible")),
    # TSH, and by third- and second-generation assays (detection limits 0.005 and 0.05 mIU/L).
    Group("tsh", "TSH ultrasensible", ("3016-3", "11580-8", "11579-0"), ("TSH", "thyréostimuline", "thyroïde")),
    # Free T4 [Moles/volume] (the catalogue's) and [Mass/volume] (the ANS example's, pg/mL).
    Group("t4l", "T4 libre", ("14920-3", "3024-7"), ("T4", "thyroxine", "thyroïde")),
    Group("ferri", "Ferritine", ("2276-4", "20567-4"), ("ferritine", "fer", "réserves en fer")),  # any, immunoassay
    Group("fer", "Fer sérique", ("14798-3", "2498-4"), ("fer", "sidérémie")),
    Group("vitd", "25-OH vitamine D (D2+D3)", ("62292-8", "68438-1"), ("vitamine D", "25-OH")),
    Group("b12", "Vitamine B12", ("2132-9", "14685-2"), ("vitamine B12", "cobalamine")),
    Group("fol", "Folates sériques", ("2284-8", "14732-2"), ("folates", "acide folique", "vitamine B9")),
    Group("ca", "Calcium", ("2000-8", "17861-6"), ("calcium", "calcémie")),
    Group("phos", "Phosphore", ("14879-1", "2777-1"), ("phosphore", "phosphate", "phosphorémie")),
    # Albumin without method, by bromocresol green and purple.
    Group("alb", "Albumine", ("1751-7", "61151-7", "61152-5"), ("albumine", "albuminémie")),
    # Troponin T by a high-sensitivity method (ng/L) and without (µg/L): the same protein.
    Group("tnt", "Troponine T hypersensible", ("67151-1", "6598-7"), ("troponine", "cœur")),
    # Albumin/creatinine mass ratio in urine, and its older "microalbumin" code.
    Group("malb", "Microalbuminurie (rapport albumine/créatinine urinaire)", ("9318-7", "14959-1"),
          ("microalbuminurie", "albumine urinaire", "rein")),
)
_GROUP_OF_CODE = {code: group for group in GROUPS for code in group.codes}
_GROUPS = {group.key: group for group in GROUPS}


@dataclass(frozen=True)
class Analyte:
    """How trends name, chart and find one analyte."""

    key: str
    label: str
    chapter: str
    codes: tuple[tuple[str, str], ...]  # (system, code) of the results it gathers
    synonyms: tuple[str, ...]
    rows: tuple[Entry, ...]  # its catalogue entries: unit, reference range, factors
    same_unit_only: bool = False

    @property
    def chapter_label(self) -> str:
        return assembly.chapter_label(self.chapter)

    @property
    def explanation(self) -> str:
        """What it measures, in plain French ("" when bilan has no line for it)."""
        return explanation(self.key)

    @property
    def unit(self) -> str | None:
        """The catalogue's unit for it, if the catalogue has one."""
        return next((row["ucum"] for row in self.rows if row.get("ucum")), None)

    def matches(self, text: str) -> bool:
        """Every word of `text` in one of its names, accents and case aside."""
        words = normalise(text).split()
        return any(all(w in normalise(name) for w in words) for name in (self.label, *self.synonyms))


Coding = tuple[str | None, str]  # (system, code)


def codings(observation: dict[str, Any]) -> list[Coding]:
    return [(c.get("system"), c["code"]) for c in (observation.get("code") or {}).get("coding", [])
            if c.get("code")]


def key_of(found: list[Coding], entries: dict[str, Entry]) -> str | None:
    """The analyte key of a result's codes; `entries`: catalogue rows by LOINC code. A code of a
    group wins, then one the catalogue knows, then any LOINC code, then the first other code."""
    loinc = [code for system, code in found if system == LOINC]
    for code in loinc:
        if code in _GROUP_OF_CODE:
            return _GROUP_OF_CODE[code].key
    for code in loinc:
        if code in entries:
            return _entry_key(entries[code])
    if loinc:
        return loinc[0]
    local = next(((system, code) for system, code in found if system), None)
    if local is None:
        return None
    return _LOCAL + base64.urlsafe_b64encode(f"{local[0]}|{local[1]}".encode()).decode().rstrip("=")


def related_loinc(found: Iterable[Coding]) -> set[str]:
    """The LOINC codes of these codes and of the groups they belong to (for catalogue lookups)."""
    codes = {code for system, code in found if system == LOINC}
    return codes | {c for code in codes if code in _GROUP_OF_CODE for c in _GROUP_OF_CODE[code].codes}


def describe(key: str, entries: dict[str, Entry], example: dict[str, Any] | None) -> Analyte:
    """The analyte a key names, from the groups, the catalogue rows of its codes (`entries`)
    and, for a code the catalogue does not know, one of its results (`example`)."""
    group = _GROUPS.get(key)
    if group is not None:
        rows = tuple(entries[code] for code in group.codes if code in entries)
        chapter = next((r["chapter_loinc"] for r in rows if r["chapter_loinc"]), BIOCHEMISTRY)
        names = (*group.synonyms, *(r["label_fr"] for r in rows), *(r["loinc_display"] for r in rows),
                 *group.codes)
        return Analyte(key, group.label, chapter, tuple((LOINC, c) for c in group.codes), names, rows,
                       group.same_unit_only)
    entry = next((e for e in entries.values() if _entry_key(e) == key), None)
    if entry is not None:
        return Analyte(key, entry["label_fr"], entry["chapter_loinc"] or assembly.OTHER_CHAPTER,
                       ((LOINC, entry["loinc"]),), (entry["local_code"], entry["loinc_display"], entry["loinc"]),
                       (entry,))
    coding = parse_key(key)
    if coding is None:
        raise ValueError(f"not an analyte key: {key!r}")
    label = _text_of(example, coding) if example else coding[1]
    return Analyte(key, label, _chapter_of(example) if example else assembly.OTHER_CHAPTER, (coding,),
                   (coding[1],), ())


def parse_key(key: str) -> tuple[str, str] | None:
    """The code a key of an analyte outside the groups and the catalogue stands for."""
    if _LOINC_CODE.match(key):
        return LOINC, key
    if key.startswith(_LOCAL):
        encoded = key.removeprefix(_LOCAL)
        try:
            system, _, code = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode().partition("|")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return (system, code) if system and code else None
    return None


async def codes_of_key(conn: AsyncConnection, key: str) -> tuple[list[Coding], dict[str, Entry]]:
    """The codes whose results a key gathers, and the catalogue rows of those codes."""
    group = _GROUPS.get(key)
    if group is not None:
        return [(LOINC, c) for c in group.codes], await catalogue.entries_by_loinc(conn, group.codes)
    entry = await catalogue.unpanelled(conn, {key.upper(), key.upper().replace("-", "_")})
    if entry is not None and entry["loinc"] not in _GROUP_OF_CODE:
        return [(LOINC, entry["loinc"])], {entry["loinc"]: entry}
    coding = parse_key(key)
    if coding is None:
        return [], {}
    return [coding], await catalogue.entries_by_loinc(conn, [coding[1]] if coding[0] == LOINC else [])


def entry_key(entry: Entry) -> str:
    """The key of the analyte a catalogue entry reports: its group's, else its own."""
    group = _GROUP_OF_CODE.get(entry["loinc"])
    return group.key if group is not None else _entry_key(entry)


def _entry_key(entry: Entry) -> str:
    return str(entry["local_code"]).lower().replace("_", "-")


def _text_of(observation: dict[str, Any], coding: Coding) -> str:
    concept = observation.get("code") or {}
    display = next((c.get("display") for c in concept.get("coding", [])
                    if (c.get("system"), c.get("code")) == coding and c.get("display")), None)
    return concept.get("text") or display or coding[1]


def _chapter_of(observation: dict[str, Any]) -> str:
    """The LOINC chapter an imported result carries as a category, else 'Biologie polyvalente'."""
    for category in observation.get("category", []):
        for coding in category.get("coding", []):
            if coding.get("system") == LOINC and coding.get("code"):
                return str(coding["code"])
    return assembly.OTHER_CHAPTER
