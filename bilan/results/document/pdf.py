"""The printable report of a LabReport ("Compte rendu d'examens biologiques"), A4, as the lab
issues it: the PDF that `cda.cda_document` embeds as the mandatory copy.

Helvetica (a standard PDF font) keeps the PDF free of any system font; its WinAnsi encoding
covers French. `invariant=1` fixes the creation date and document id, so the same report always
gives the same bytes and so the same CDA."""

import io
from collections.abc import Iterator
from datetime import datetime
from functools import partial
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    CondPageBreak,
    Flowable,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from bilan import french
from bilan.fhir.terminology import INS_NIA
from bilan.results.desk import interpretation

# The CDA narrative's wording, so that the copy says what the structured document says.
from bilan.results.document.cda import TITLE, earlier_text, range_text, value_text
from bilan.results.document.report import (
    Battery,
    Chapter,
    Identifier,
    LabReport,
    Patient,
    Practitioner,
    Result,
)

# Flags that say "as expected": printed plainly, the others stand out.
UNREMARKABLE = frozenset({"N", "NEG", "ND", "NR", "EXP", "S"})
SEXES = {"F": "Féminin", "M": "Masculin", "U": "Inconnu"}
MARGIN = 18 * mm
FOOTER = 16 * mm
WIDTHS = (60 * mm, 36 * mm, 44 * mm, 34 * mm)  # examen, résultat, interprétation, référence
WIDTHS_EARLIER = (54 * mm, 30 * mm, 30 * mm, 28 * mm, 32 * mm)  # the same, and the antériorité

_BASE = ParagraphStyle("base", fontName="Helvetica", fontSize=9, leading=11.5)
STYLES = {
    "title": ParagraphStyle("title", _BASE, fontName="Helvetica-Bold", fontSize=14, leading=18,
                            alignment=TA_CENTER, spaceBefore=4, spaceAfter=6),
    "lab": ParagraphStyle("lab", _BASE, fontName="Helvetica-Bold", fontSize=12, leading=15),
    "text": _BASE,
    "chapter": ParagraphStyle("chapter", _BASE, fontName="Helvetica-Bold", fontSize=11, leading=14,
                              spaceBefore=8, spaceAfter=3, textColor=colors.HexColor("#1f3a5f")),
    "head": ParagraphStyle("head", _BASE, fontName="Helvetica-Bold", fontSize=8, leading=10,
                           textColor=colors.HexColor("#444444")),
    "cell": _BASE,
    "flagged": ParagraphStyle("flagged", _BASE, fontName="Helvetica-Bold"),
    "comment": ParagraphStyle("comment", _BASE, fontName="Helvetica-Oblique", leftIndent=4 * mm),
    "note": ParagraphStyle("note", _BASE, fontName="Helvetica-Oblique", spaceBefore=3),
    "warning": ParagraphStyle("warning", _BASE, fontName="Helvetica-Bold", spaceBefore=4),
}


def report_pdf(report: LabReport) -> bytes:
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer, pagesize=A4, invariant=1, leftMargin=MARGIN, rightMargin=MARGIN,
        topMargin=MARGIN, bottomMargin=MARGIN + FOOTER,
        title=TITLE, author=report.lab.name, subject="Compte rendu de biologie médicale",
        creator="bilan", keywords="")
    document.build(list(_story(report)), canvasmaker=partial(NumberedCanvas, footer=_footer(report)))
    return buffer.getvalue()


def _story(report: LabReport) -> Iterator[Flowable]:
    yield from _header(report)
    for chapter in report.chapters:
        yield from _chapter(chapter)
    if report.adaptation:
        yield Paragraph("Adaptation de la prescription", STYLES["chapter"])
        yield _paragraph(report.adaptation, "note")
    if report.conclusion:
        yield Paragraph("Conclusion du biologiste", STYLES["chapter"])
        yield _paragraph(report.conclusion, "text")
    if report.forwarded:
        yield Paragraph("Examens transmis à un laboratoire partenaire", STYLES["chapter"])
        for sent in report.forwarded:
            yield _paragraph(sent.text, "note")
    if not report.complete:
        yield _paragraph("Compte rendu partiel : d'autres résultats sont en attente.", "warning")
    yield Spacer(0, 6 * mm)
    yield _paragraph(f"Résultats validés par {_name(report.biologist)}, biologiste, "
                     f"le {_when(report.validated_at)}.", "text")


# Header: the lab, then the patient and the request side by side

def _header(report: LabReport) -> Iterator[Flowable]:
    lab = report.lab
    address = [*lab.address.lines, f"{lab.address.postal_code} {lab.address.city}"]
    phones = [t.split(":", 1)[1] for t in lab.telecom if t.startswith("tel:")]
    yield _paragraph(lab.name, "lab")
    yield _lines([*address, *(f"Tél. {p}" for p in phones), f"FINESS {lab.finess}"])
    yield Paragraph(escape(TITLE), STYLES["title"])
    if report.version > 1:
        yield _paragraph(f"Version {report.version} : annule et remplace la version précédente.",
                         "warning")
    block = Table([[_patient(report.patient), _request(report)]], colWidths=(87 * mm, 87 * mm))
    block.setStyle(TableStyle([
        ("BOX", (0, 0), (0, 0), 0.5, colors.grey), ("BOX", (1, 0), (1, 0), 0.5, colors.grey),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 4), ("BOTTOMPADDING", (0, 0), (-1, -1), 4)]))
    yield block


def _patient(patient: Patient) -> Paragraph:
    lines = [f"<b>Nom de naissance : {escape(patient.birth_family.upper())}</b>",
             f"Prénoms : {escape(' '.join(patient.birth_given))}",
             f"Sexe : {SEXES[patient.sex]}",
             f"Date de naissance : {french.date(patient.birth_date)}"]
    if patient.ins_in_header and patient.ins:  # only a qualified identity shows its INS
        kind = "NIA" if patient.ins_system == INS_NIA else "NIR"
        lines.append(f"INS ({kind}) : {escape(patient.ins)}")
    else:
        lines.append(f"N° de dossier : {escape(_identifier(patient.file_id))}")
    return Paragraph("<br/>".join(lines), STYLES["text"])


def _request(report: LabReport) -> Paragraph:
    lines = [f"Prescripteur : Dr {escape(_name(report.prescriber))}"]
    if report.prescribed_at:
        lines.append(f"Prescrit le : {french.date(report.prescribed_at)}")
    lines.append(f"N° de prescription : {escape(_identifier(report.order_id))}")
    if report.request_id:
        lines.append(f"N° de demande : {escape(_identifier(report.request_id))}")
    collected = sorted(s.collected_at for s in report.specimens)
    if collected:
        lines.append(f"Prélevé le : {_when(collected[0])}")
    lines.append(f"Reçu le : {_when(report.received_at)}")
    return Paragraph("<br/>".join(lines), STYLES["text"])


# Chapters: a title, the specimens, a table per battery and per run of single results

def _chapter(chapter: Chapter) -> Iterator[Flowable]:
    title = Paragraph(escape(chapter.display), STYLES["chapter"])
    specimens = [f"Prélèvement : {s.kind.display}, le {_when(s.collected_at)}"
                 for s in chapter.specimens]
    # Page breaks that keep a chapter's or a battery's title off a page's foot; a long table
    # still starts where it is, and repeats its headings on the next page.
    yield CondPageBreak(40 * mm)
    yield title
    if specimens:
        yield _lines(specimens)
    for table in _tables(chapter.items):
        yield CondPageBreak(20 * mm)
        yield table
    if chapter.comment:
        yield _paragraph(chapter.comment, "note")


def _tables(items: tuple[Result | Battery, ...]) -> Iterator[Table]:
    singles: list[Result] = []
    for item in items:
        if isinstance(item, Result):
            singles.append(item)
            continue
        if singles:
            yield _table(None, singles)
            singles = []
        yield _table(item.display, list(item.results))
    if singles:
        yield _table(None, singles)


def _table(battery: str | None, results: list[Result]) -> Table:
    earlier = any(r.earlier for r in results)
    heads = ("Examen", "Résultat", "Interprétation", "Valeurs de référence", *(("Antériorité",) if earlier else ()))
    rows: list[list[Any]] = [[Paragraph(h, STYLES["head"]) for h in heads]]
    blank = [""] * (len(heads) - 1)
    style: list[tuple[Any, ...]] = [
        ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.grey),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5)]
    if battery:
        rows.append([Paragraph(f"<b>{escape(battery)}</b>", STYLES["cell"]), *blank])
        style.append(("SPAN", (0, 1), (-1, 1)))
    for result in results:
        rows.append(_row(result, indent=bool(battery))[:len(heads)])
        if result.comment:
            rows.append([_paragraph(result.comment, "comment"), *blank])
            style.append(("SPAN", (0, len(rows) - 1), (-1, len(rows) - 1)))
    # A battery longer than a page repeats its name under the headings.
    table = Table(rows, colWidths=WIDTHS_EARLIER if earlier else WIDTHS, repeatRows=2 if battery else 1)
    table.setStyle(TableStyle(style))
    return table


def _row(result: Result, indent: bool) -> list[Paragraph]:
    code = result.interpretation
    flagged = code is not None and code not in UNREMARKABLE
    style = STYLES["flagged" if flagged else "cell"]
    name = Paragraph(("&nbsp;&nbsp;&nbsp;" if indent else "") + escape(result.display), STYLES["cell"])
    flag = f"{escape(code)} {escape(interpretation.LABELS[code])}" if flagged and code else ""
    reference = range_text(result)
    return [name, Paragraph(escape(value_text(result)), style), Paragraph(flag, style),
            Paragraph(escape(f"({reference})") if reference else "", STYLES["cell"]),
            Paragraph(escape(earlier_text(result)), STYLES["cell"])]


# Footer on every page: who validated, the version, "page x / y"

def _footer(report: LabReport) -> list[str]:
    version = f"Version {report.version}"
    if report.replaces is not None:
        version += " - Annule et remplace la version précédente"
    return [f"Validé par {_name(report.biologist)}, biologiste, le {_when(report.validated_at)}",
            f"{report.lab.name} - {version}"]


class NumberedCanvas(Canvas):  # type: ignore[misc]  # reportlab ships no types
    """Holds every page until the end, when the page count is known for "x / y"."""

    def __init__(self, *args: Any, footer: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._footer = footer
        self._pages: list[dict[str, Any]] = []

    def showPage(self) -> None:
        self._pages.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        for number, page in enumerate(self._pages, 1):
            self.__dict__.update(page)
            self._draw_footer(number, len(self._pages))
            super().showPage()
        super().save()

    def _draw_footer(self, number: int, total: int) -> None:
        width, _ = A4
        self.setStrokeColor(colors.grey)
        self.setLineWidth(0.5)
        self.line(MARGIN, MARGIN + FOOTER - 3 * mm, width - MARGIN, MARGIN + FOOTER - 3 * mm)
        self.setFont("Helvetica", 8)
        self.setFillColor(colors.black)
        for i, line in enumerate(self._footer):
            self.drawString(MARGIN, MARGIN + FOOTER - 8 * mm - i * 10, line)
        self.drawRightString(width - MARGIN, MARGIN + FOOTER - 8 * mm, f"Page {number} / {total}")


# Words

def _paragraph(text: str, style: str) -> Paragraph:
    return Paragraph(escape(text), STYLES[style])


def _lines(lines: list[str]) -> Paragraph:
    return Paragraph("<br/>".join(escape(line) for line in lines), STYLES["text"])


def _when(moment: datetime) -> str:
    return french.datetime(moment, at=True)


def _name(who: Practitioner) -> str:
    return french.professional_name(who.family, who.given)


def _identifier(identifier: Identifier) -> str:
    return identifier.extension or identifier.root

