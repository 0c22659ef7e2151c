"""A printable copy of a report another lab produced (a CR-BIO or BIO-TROD read by
bilan/results/elsewhere/cda_reading.py) that came without one: the same A4 layout as bilan's own
reports (bilan/results/document/pdf.py), from what the document says. It says it is a copy made
by bilan, not the lab's own print: the lab's CDA stays the reference."""

import io
from collections.abc import Iterator
from decimal import Decimal
from functools import partial
from itertools import groupby
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.platypus import CondPageBreak, Flowable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from bilan import french
from bilan.results.desk import interpretation, typed
from bilan.results.document import assembly
from bilan.results.document.cda import TITLE
from bilan.results.document.pdf import FOOTER, MARGIN, STYLES, UNREMARKABLE, WIDTHS, NumberedCanvas
from bilan.results.elsewhere.cda_reading import TROD_CODE, Concept, Interval, Measure, ReadReport, ReadResult

TROD_TITLE = "Compte rendu de test rapide d'orientation diagnostique"
SEXES = {"F": "Féminin", "M": "Masculin"}
NOTICE = ("Copie imprimable établie par bilan à partir du document structuré (CDA) reçu ; "
          "seul ce document fait foi.")
ABORTED = ("aborted", "cancelled")


def received_pdf(report: ReadReport) -> bytes:
    """The report as a PDF; the same report always gives the same bytes."""
    buffer = io.BytesIO()
    lab = _lab_name(report)
    document = SimpleDocTemplate(
        buffer, pagesize=A4, invariant=1, leftMargin=MARGIN, rightMargin=MARGIN,
        topMargin=MARGIN, bottomMargin=MARGIN + FOOTER,
        title=_title(report), author=lab, subject="Compte rendu de biologie médicale",
        creator="bilan", keywords="")
    footer = [f"{lab} - document du {french.datetime(report.effective_time, at=True)}", NOTICE]
    document.build(list(_story(report)), canvasmaker=partial(NumberedCanvas, footer=footer))
    return buffer.getvalue()


def _story(report: ReadReport) -> Iterator[Flowable]:
    yield _paragraph(_lab_name(report), "lab")
    if report.lab and report.lab.finess:
        yield _paragraph(f"FINESS {report.lab.finess}", "text")
    yield Paragraph(escape(_title(report)), STYLES["title"])
    if report.replaces is not None:
        yield _paragraph("Annule et remplace une version précédente.", "warning")
    yield _patient(report)
    chapters = groupby(report.results, key=lambda r: r.chapter)
    for chapter, results in chapters:
        yield CondPageBreak(40 * mm)
        yield Paragraph(escape(assembly.chapter_label(chapter) if chapter else "Résultats"), STYLES["chapter"])
        yield _table(list(results))
    if not report.results:
        yield _paragraph("Ce document ne contient aucun résultat structuré.", "note")
    yield Spacer(0, 6 * mm)
    biologist = report.biologist
    if biologist and (biologist.family or biologist.given):
        name = french.professional_name(biologist.family or "", biologist.given or "")
        when = f", le {french.datetime(biologist.validated_at, at=True)}" if biologist.validated_at else ""
        yield _paragraph(f"Validé par {name}{when}.", "text")
    yield _paragraph(NOTICE, "note")


def _patient(report: ReadReport) -> Table:
    patient = report.patient
    lines = [f"<b>Nom de naissance : {escape((patient.family or '').upper())}</b>",
             f"Prénoms : {escape(' '.join(patient.given))}"]
    if patient.sex in SEXES:
        lines.append(f"Sexe : {SEXES[patient.sex]}")
    if patient.birth_date:
        lines.append(f"Date de naissance : {french.date(patient.birth_date)}")
    if patient.ins:
        lines.append(f"INS : {escape(patient.ins)}")
    document = [f"Document du : {french.datetime(report.effective_time, at=True)}"]
    if report.version:
        document.append(f"Version : {report.version}")
    if report.order_id and report.order_id.extension:
        document.append(f"N° de prescription : {escape(report.order_id.extension)}")
    block = Table([[Paragraph("<br/>".join(lines), STYLES["text"]),
                    Paragraph("<br/>".join(escape(line) for line in document), STYLES["text"])]],
                  colWidths=(87 * mm, 87 * mm))
    block.setStyle(TableStyle([
        ("BOX", (0, 0), (0, 0), 0.5, colors.grey), ("BOX", (1, 0), (1, 0), 0.5, colors.grey),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 4), ("BOTTOMPADDING", (0, 0), (-1, -1), 4)]))
    return block


def _table(results: list[ReadResult]) -> Table:
    heads = ("Examen", "Résultat", "Interprétation", "Valeurs de référence")
    rows: list[list[Any]] = [[Paragraph(h, STYLES["head"]) for h in heads]]
    style: list[tuple[Any, ...]] = [
        ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.grey), ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5)]
    battery: int | None = None
    isolate: Concept | None = None
    for result in results:
        if result.isolate is not None and result.isolate != isolate:
            rows.append([Paragraph(f"<b>Germe : {escape(_concept_text(result.isolate))}</b>", STYLES["cell"]),
                         "", "", ""])
            style.append(("SPAN", (0, len(rows) - 1), (-1, len(rows) - 1)))
        isolate = result.isolate
        if result.battery_number is not None and result.battery_number != battery and result.battery:
            rows.append([Paragraph(f"<b>{escape(_concept_text(result.battery))}</b>", STYLES["cell"]), "", "", ""])
            style.append(("SPAN", (0, len(rows) - 1), (-1, len(rows) - 1)))
        battery = result.battery_number
        rows.append(_row(result, indent=battery is not None))
        if result.comment:
            rows.append([_paragraph(result.comment, "comment"), "", "", ""])
            style.append(("SPAN", (0, len(rows) - 1), (-1, len(rows) - 1)))
    table = Table(rows, colWidths=WIDTHS, repeatRows=1)
    table.setStyle(TableStyle(style))
    return table


def _row(result: ReadResult, indent: bool) -> list[Paragraph]:
    code = result.interpretation
    flagged = code is not None and code not in UNREMARKABLE
    style = STYLES["flagged" if flagged else "cell"]
    name = result.label or result.display or result.code or "Résultat"
    return [Paragraph(("&nbsp;&nbsp;&nbsp;" if indent else "") + escape(name), STYLES["cell"]),
            Paragraph(escape(_value_text(result)), style),
            Paragraph(escape(_flag_text(result) if flagged else ""), style),
            Paragraph(escape(_range_text(result)), STYLES["cell"])]


def _flag_text(result: ReadResult) -> str:
    """HL7's codes with bilan's labels; another system's (a TROD's SNOMED CT) by its label."""
    code = result.interpretation or ""
    if code in interpretation.LABELS:
        return f"{code} {interpretation.LABELS[code]}"
    coded = result.interpreted
    return (coded.text or coded.display if coded else None) or code


def _value_text(result: ReadResult) -> str:
    value = result.value
    if isinstance(value, Measure):
        return french.quantity(value.value, value.unit)
    if isinstance(value, Interval):
        return _interval_text(value)
    if isinstance(value, Concept):
        return _concept_text(value)
    if isinstance(value, str):
        return value
    return "Non réalisé" if result.status in ABORTED else ""


def _interval_text(value: Interval) -> str:
    if value.low is not None and value.high is not None:
        return f"{french.number(value.low)} – {french.quantity(value.high, value.unit)}"
    if value.high is not None:
        return typed.comparator_text("<=" if value.high_inclusive else "<") + french.quantity(value.high, value.unit)
    if value.low is not None:
        return typed.comparator_text(">=" if value.low_inclusive else ">") + french.quantity(value.low, value.unit)
    return ""


def _range_text(result: ReadResult) -> str:
    low, high = result.low, result.high
    unit = f" {french.unit(result.range_unit)}" if result.range_unit else ""
    if low is not None and high is not None:
        return f"({_number(low)} – {_number(high)}{unit})"
    if high is not None:
        return f"(< {_number(high)}{unit})"
    if low is not None:
        return f"(> {_number(low)}{unit})"
    return ""


def _concept_text(concept: Concept) -> str:
    return concept.text or concept.display or concept.code or ""


def _title(report: ReadReport) -> str:
    return report.title or (TROD_TITLE if report.code == TROD_CODE else TITLE)


def _lab_name(report: ReadReport) -> str:
    return (report.lab.name if report.lab else None) or "Laboratoire"


def _number(value: Decimal) -> str:
    return french.number(value)


def _paragraph(text: str, style: str) -> Paragraph:
    return Paragraph(escape(text), STYLES[style])
