"""One report as its patient reads it on bilan's own page: the lab, the dates, the prescriber,
the results by chapter (value, unit, reference range, out-of-range flag in words), the
biologist's comments and conclusion, and whether it replaces an earlier version.

The same reading serves the lab's own CR-BIOs and the reports imported from elsewhere: the
results and comments come from the version's own CDA (bilan/results/elsewhere/cda_reading.py),
so a page shows what that version says even after a later one was issued (the order's one
DiagnosticReport says the latest); for the lab's own, the prescription it answers and the lab's
directory entry add the prescriber and the lab's address. The document is read as the
patient, through the access rules (a masked or partly masked report, another person's, an unknown
id: refused), and that audited read is what takes its "Nouveau" mark away (patient_space.py)."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from bilan import french
from bilan.auth.caller import Caller
from bilan.fhir.outcomes import Forbidden, Gone, Issue, NotFound
from bilan.prescription import directory, display_name
from bilan.records.service import Records
from bilan.results.desk import interpretation
from bilan.results.document import assembly
from bilan.results.elsewhere.cda_reading import (
    Concept,
    Interval,
    Measure,
    ReadReport,
    ReadResult,
    UnreadableReport,
    read_cr_bio,
)
from bilan.results.elsewhere.imported import DOCUMENT_MEDIA, document_of
from bilan.results.issuing import CDA_TYPE
from bilan.results.views.trends import OUT_OF_RANGE_FLAGS
from bilan.storage.repository import Repository, Stored

# An out-of-range flag said in words (a colour alone tells nothing to many readers).
_FLAG_WORDS = {"L": "Bas, hors normes", "LU": "Bas, hors normes", "LX": "Bas, hors normes",
               "LL": "Très bas, hors normes", "H": "Haut, hors normes", "HU": "Haut, hors normes",
               "HX": "Haut, hors normes", "HH": "Très haut, hors normes", "A": "Hors normes",
               "AA": "Très anormal, hors normes", "EX": "Hors normes"}
_STATUSES = {"preliminary": "Partiel", "amended": "Corrigé", "corrected": "Corrigé"}  # docStatus
_COMPARATORS = {(True, False): "≥", (False, False): ">", (True, True): "≤", (False, True): "<"}


@dataclass(frozen=True)
class Row:
    """One result: a number and its UCUM unit (the page prints them the French way), or a text."""

    label: str
    number: Decimal | None
    comparator: str  # "<", "≤", ">", "≥" before a censored number; "" for none
    unit: str | None  # UCUM
    text: str  # a coded or free-text result, "Non réalisé"...; "" when `number` says it
    low: Decimal | None  # reference range, in `range_unit`
    high: Decimal | None
    range_unit: str | None
    flag: str  # its interpretation code ("" none)
    flag_words: str  # "Haut, hors normes"..., "" for a normal one
    abnormal: bool
    comment: str


@dataclass(frozen=True)
class Group:
    label: str  # the battery (Numération formule sanguine...), "" for results on their own
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class Chapter:
    label: str  # Hématologie, Biochimie...
    groups: tuple[Group, ...]
    comments: tuple[str, ...] = ()  # the biologist's, on the chapter


@dataclass(frozen=True)
class ReportPage:
    document_id: str
    lab: str
    lab_address: tuple[str, ...]  # lines, then "75011 PARIS"
    prescriber: str
    prescribed_on: datetime | None
    sampled_on: datetime | None
    validated_on: datetime | None
    biologist: str
    status: str  # "Définitif", "Partiel", "Corrigé"
    replaces: bool  # it replaces an earlier version of the report
    superseded: bool  # a later version replaced it
    elsewhere: bool  # received from another lab
    chapters: tuple[Chapter, ...]
    conclusion: tuple[tuple[str, tuple[str, ...]], ...]  # (title, paragraphs): the comment section
    structured: bool  # False: a report whose results only its PDF gives

    @property
    def abnormal(self) -> int:
        return sum(1 for c in self.chapters for g in c.groups for r in g.rows if r.abnormal)


class PatientReport:
    def __init__(self, records: Records):
        self.records = records

    async def page(self, caller: Caller, document_id: str) -> ReportPage:
        """The report, or a French 403 (not hers, or hidden from her until her consultation) or
        404 (no such report), each refusal recorded in the audit trail."""
        try:
            document = await self.records.read(caller, "DocumentReference", document_id)
        except Forbidden:
            raise Forbidden([Issue("Ce compte rendu ne vous est pas accessible.", "forbidden")]) from None
        except (NotFound, Gone):
            raise NotFound([Issue("Ce compte rendu est introuvable.", "not-found")]) from None
        read = await self._read(caller, document.content)
        async with self.records.work(caller) as work:
            order = await _Order.of(work.repo, document.content)
        return _page(document, read, order)

    async def _read(self, caller: Caller, content: dict[str, Any]) -> ReadReport | None:
        """The version's CDA as read; None when it carries none bilan can read."""
        cda = document_of(content)
        if cda is None:
            attachment = next((c.get("attachment") or {} for c in content.get("content", [])
                               if (c.get("attachment") or {}).get("contentType") in (CDA_TYPE, *DOCUMENT_MEDIA)), None)
            if attachment is None:
                return None
            cda = await self.records.attachment(caller, attachment)
        try:
            return read_cr_bio(cda, check=False)
        except UnreadableReport:
            return None


@dataclass(frozen=True)
class _Order:
    """What the lab's stored order adds to its own report (nothing for one from elsewhere)."""

    prescriber: str = ""
    prescribed_on: datetime | None = None
    lab: str = ""
    lab_address: tuple[str, ...] = ()

    @classmethod
    async def of(cls, repo: Repository, content: dict[str, Any]) -> "_Order":
        related = [r.get("reference", "") for r in (content.get("context") or {}).get("related", [])]
        request = next((s for s in await repo.read_references(r for r in related if r.startswith("ServiceRequest/"))
                        if s.content), None)
        requester = ((request.content.get("requester") or {}).get("reference", "")) if request else ""
        lab = await repo.read_reference((content.get("custodian") or {}).get("reference", ""))
        return cls(display_name(await directory.practitioner_of(repo, requester)) if requester else "",
                   assembly.moment(request.content.get("authoredOn")) if request else None,
                   str(lab.content.get("name", "")) if lab else "", _address(lab.content) if lab else ())


def _page(document: Stored, read: ReadReport | None, order: _Order) -> ReportPage:
    content = document.content
    imported = any(t.get("code") == "imported" for t in (content.get("meta") or {}).get("tag", []))
    period = (content.get("context") or {}).get("period") or {}
    replaces = any(r.get("code") == "replaces" for r in content.get("relatesTo", [])) or bool(read and read.replaces)
    biologist = read.biologist if read else None
    lab = order.lab or (read.lab.name if read and read.lab and read.lab.name else "") or next(
        (str(a["display"]) for a in content.get("author", []) if a.get("display")), "")
    return ReportPage(
        document.id, lab, order.lab_address, order.prescriber, order.prescribed_on,
        assembly.moment(period.get("start")),
        (biologist.validated_at if biologist and biologist.validated_at else assembly.moment(period.get("end"))),
        french.professional_name(biologist.family or "", biologist.given or "") if biologist else "",
        _STATUSES.get(content.get("docStatus", ""), "Corrigé" if imported and replaces else "Définitif"),
        replaces, content.get("status") == "superseded", imported,
        _chapters(read) if read else (),
        tuple((c.title or "Commentaire du biologiste", tuple(c.text.splitlines()))
              for c in (read.comments if read else ()) if c.chapter is None),
        read is not None and read.unstructured is None)


def _chapters(read: ReadReport) -> tuple[Chapter, ...]:
    """The results in the document's order, by chapter, then by battery within it; each
    chapter with its comments."""
    chapters: dict[str, dict[tuple[int | None, str], list[Row]]] = {}
    for result in read.results:
        battery, isolate = result.battery, result.isolate
        label = " — ".join(name for name in (
            (battery.text or battery.display or "") if battery else "",
            (isolate.text or isolate.display or "") if isolate else "") if name)
        groups = chapters.setdefault(result.chapter or assembly.OTHER_CHAPTER, {})
        groups.setdefault((result.battery_number, label), []).append(_row(result))
    return tuple(Chapter(assembly.chapter_label(code),
                         tuple(Group(label, tuple(rows)) for (_, label), rows in groups.items()),
                         tuple(c.text for c in read.comments if c.chapter == code))
                 for code, groups in chapters.items())


def _row(result: ReadResult) -> Row:
    value = result.value
    number, comparator, unit, text = None, "", None, ""
    if isinstance(value, Measure):
        number, unit = value.value, value.unit
    elif isinstance(value, Interval) and value.low is not None and value.high is not None:
        text = f"{french.number(value.low)} – {french.quantity(value.high, value.unit)}"
    elif isinstance(value, Interval):
        upper = value.low is None
        number, unit = (value.high if upper else value.low), value.unit
        comparator = _COMPARATORS[(value.high_inclusive if upper else value.low_inclusive, upper)]
    elif isinstance(value, Concept):
        text = value.text or value.display or value.code or ""
    elif isinstance(value, str):
        text = value
    if result.status == "aborted":
        text, number = "Non réalisé", None
    elif number is None and not text:
        text = "—"
    flag = result.interpretation or ""
    words = _FLAG_WORDS.get(flag) or ("" if flag in ("", "N") else interpretation.LABELS.get(flag, flag))
    return Row(result.label or result.display or result.code or "Analyse", number, comparator, unit, text,
               result.low, result.high, result.range_unit or unit, flag, words, flag in OUT_OF_RANGE_FLAGS,
               result.comment or "")


def _address(organization: dict[str, Any]) -> tuple[str, ...]:
    address = (organization.get("address") or [{}])[0]
    town = " ".join(part for part in (address.get("postalCode", ""), address.get("city", "")) if part)
    return tuple(str(line) for line in (*address.get("line", []), town) if line)
