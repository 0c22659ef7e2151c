"""The transfer slip (bordereau de transmission) that goes with the tubes the lab sends to its
partner lab: who sends, who receives, the patient, the request, each tube with its barcode and
the exams asked, the clinical context and how the tubes travel. One A4 page per partner lab,
generated with ReportLab like the labels."""

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.barcode.code128 import Code128
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from bilan.auth.access import ORGANIZATION_ID

TITLE = "Bordereau de transmission d'échantillons biologiques"
# Human specimens sent by road between labs travel as UN 3373 (biological substance, category
# B) in a triple packaging (ADR packing instruction P650); at room temperature unless the
# partner's guide to its exams asks otherwise for an exam.
TRANSPORT = (
    "Triple emballage conforme à l'instruction P650 de l'ADR : « UN 3373 — Matière biologique, "
    "catégorie B ».",
    "Tubes bouchés, en position verticale, à température ambiante (15 à 25 °C) sauf indication "
    "contraire du guide des examens du laboratoire destinataire (réfrigéré, congelé, à l'abri de "
    "la lumière).",
    "Acheminement dans les 24 heures suivant le prélèvement, accompagné de ce bordereau.",
)
MARGIN = 15 * mm
BARCODE_COLUMN = 55 * mm
_BASE = ParagraphStyle("base", fontName="Helvetica", fontSize=9, leading=11.5)
STYLES = {
    "title": ParagraphStyle("title", _BASE, fontName="Helvetica-Bold", fontSize=14, leading=17, spaceAfter=4),
    "section": ParagraphStyle("section", _BASE, fontName="Helvetica-Bold", fontSize=10.5, leading=13,
                              spaceBefore=7, spaceAfter=3),
    "text": _BASE,
    "bold": ParagraphStyle("bold", _BASE, fontName="Helvetica-Bold"),
    "code": ParagraphStyle("code", _BASE, fontName="Courier", alignment=1),
    "urgent": ParagraphStyle("urgent", _BASE, fontName="Helvetica-Bold", fontSize=11, leading=14, spaceAfter=3,
                             textColor=colors.red),
}


@dataclass(frozen=True)
class Party:
    """A lab as the slip names it."""

    name: str
    finess: str
    address: tuple[str, ...]
    telecom: tuple[str, ...]


@dataclass(frozen=True)
class SentTube:
    barcode: str  # the tube's accession identifier, as its label's Code 128
    tube: str
    exams: tuple[str, ...]  # "label (LOINC code)"
    collected: str  # when it was drawn, in French; "" when not yet


@dataclass(frozen=True)
class TransferSlip:
    accession: str  # the lab's order number
    sender: Party
    partner: Party
    patient: tuple[tuple[str, str], ...]  # (trait, value), in the order printed
    request: tuple[tuple[str, str], ...]  # prescription and order numbers, prescriber...
    tubes: tuple[SentTube, ...]
    context: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]
    urgent: bool = False


def party(organization: dict[str, Any]) -> Party:
    """A lab from its directory Organization."""
    finess = next((str(i.get("value", ""))[1:] for i in organization.get("identifier", [])
                   if i.get("system") == ORGANIZATION_ID), "")
    address = (organization.get("address") or [{}])[0]
    lines = (*address.get("line", []), " ".join(p for p in (address.get("postalCode"), address.get("city")) if p))
    return Party(organization.get("name", ""), finess, tuple(line for line in lines if line),
                 tuple(t["value"] for t in organization.get("telecom", []) if t.get("value")))


def transfer_pdf(slips: Sequence[TransferSlip]) -> bytes:
    """The slips, each starting a page."""
    if not slips:
        raise ValueError("no slip: the order sends nothing to a partner lab")
    buffer = io.BytesIO()
    document = SimpleDocTemplate(buffer, pagesize=A4, invariant=1, leftMargin=MARGIN, rightMargin=MARGIN,
                                 topMargin=MARGIN, bottomMargin=MARGIN, title=TITLE,
                                 author=slips[0].sender.name, creator="bilan", subject="", keywords="")
    story: list[Flowable] = []
    for index, slip in enumerate(slips):
        if index:
            story.append(PageBreak())
        story.extend(_slip(slip))
    document.build(story)
    return buffer.getvalue()


def _slip(slip: TransferSlip) -> list[Flowable]:
    width = A4[0] - 2 * MARGIN
    story: list[Flowable] = [_p(TITLE, "title")]
    if slip.urgent:
        story.append(_p("URGENT", "urgent"))
    story.append(_grid([[_party("Laboratoire expéditeur", slip.sender), _party("Laboratoire destinataire",
                                                                                slip.partner)]],
                       [width / 2, width / 2], boxed=True))
    story.append(_p("Patient", "section"))
    story.append(_pairs(slip.patient, width))
    story.append(_p("Demande", "section"))
    story.append(_pairs(slip.request, width))
    story.append(_p("Échantillons transmis", "section"))
    rows: list[list[Any]] = [[_p("Code-barres", "bold"), _p("Tube", "bold"), _p("Examens demandés", "bold"),
                              _p("Prélevé le", "bold")]]
    for tube in slip.tubes:
        rows.append([[_barcode(tube.barcode, BARCODE_COLUMN - 6), _p(tube.barcode, "code")], _p(tube.tube, "text"), _p("<br/>".join(map(escape, tube.exams)), None),
                     _p(tube.collected or "Non prélevé", "text")])
    story.append(_grid(rows, [BARCODE_COLUMN, 32 * mm, width - BARCODE_COLUMN - 60 * mm, 28 * mm], boxed=True, header=True))
    story.append(_p("Contexte clinique", "section"))
    context = [f"{what} : {value}" for what, value in slip.context] + list(slip.notes)
    story.append(_p("<br/>".join(map(escape, context)) if context else "Aucun élément transmis.", None))
    story.append(_p("Conditions de transport", "section"))
    story.append(_p("<br/>".join(f"• {escape(line)}" for line in TRANSPORT), None))
    story.append(Spacer(0, 8 * mm))
    story.append(_grid([[_p("Remis au transporteur le ........ à ........ par ....................", "text"),
                         _p("Reçu par le laboratoire destinataire le ........ à ........", "text")]],
                       [width / 2, width / 2]))
    return story


def _party(title: str, lab: Party) -> Paragraph:
    lines = [f"<b>{escape(title)}</b>", f"<b>{escape(lab.name)}</b>", f"FINESS {escape(lab.finess)}",
             *map(escape, lab.address), *map(escape, lab.telecom)]
    return Paragraph("<br/>".join(lines), STYLES["text"])


def _pairs(pairs: tuple[tuple[str, str], ...], width: float) -> Table:
    return _grid([[_p(what, "bold"), _p(value or "—", "text")] for what, value in pairs], [45 * mm, width - 45 * mm])


def _grid(rows: list[list[Any]], widths: list[float], boxed: bool = False, header: bool = False) -> Table:
    table = Table(rows, colWidths=widths, hAlign="LEFT")
    style: list[tuple[Any, ...]] = [("VALIGN", (0, 0), (-1, -1), "MIDDLE" if header else "TOP"),
             ("LEFTPADDING", (0, 0), (-1, -1), 3), ("RIGHTPADDING", (0, 0), (-1, -1), 3)]
    if boxed:
        style += [("GRID", (0, 0), (-1, -1), 0.5, colors.grey)]
    if header:
        style += [("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee"))]
    table.setStyle(TableStyle(style))
    return table


def _barcode(value: str, width: float) -> Code128:
    """The tube's Code 128, as on its label, as wide as the column allows (quiet zones in)."""
    if not value or not all(" " <= char <= "~" for char in value):
        raise ValueError(f"barcode {value!r} must be non-empty printable ASCII")
    modules = Code128(value, barWidth=1, quiet=0).width + 20  # 10 blank modules each side
    module = min(0.33 * mm, width / modules)
    return Code128(value, barWidth=module, barHeight=11 * mm, humanReadable=0, quiet=1,
                   lquiet=10 * module, rquiet=10 * module)


def _p(text: str, style: str | None) -> Paragraph:
    """A paragraph; `style` None for text already marked up (escaped, with <br/>)."""
    return Paragraph(text if style is None else escape(text), STYLES[style or "text"])
