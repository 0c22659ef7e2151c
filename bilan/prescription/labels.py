"""Sample-tube labels for a lab order: one 50 x 25 mm PDF page per specimen, with its Code 128."""

import io
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from reportlab.graphics.barcode.code128 import Code128
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

PAGE = (50 * mm, 25 * mm)
MARGIN = 1.5 * mm
BAR_HEIGHT = 9 * mm
QUIET_MODULES = 10  # Code 128 needs 10 modules of blank space on each side
MIN_MODULE = 0.0075 * 72  # 7.5 mil, ReportLab's documented minimum for Code 128
MAX_MODULE = 0.3 * mm  # a wider symbol wraps further round the tube
BOLD, REGULAR = "Helvetica-Bold", "Helvetica"
ELLIPSIS = "…"


@dataclass(frozen=True)
class Label:
    """One tube: `barcode` is the specimen's accession identifier, `patient` "NOM Prénom"."""

    barcode: str
    accession: str
    patient: str
    birth_date: str
    sex: str
    tube: str
    exams: str


def labels_pdf(labels: Sequence[Label]) -> bytes:
    """One page per label, sized for a thermal tube-label printer (50 x 25 mm)."""
    if not labels:
        raise ValueError("no labels to print: the order has no specimen")
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=PAGE, pageCompression=1)
    accessions = dict.fromkeys(label.accession for label in labels)
    canvas.setTitle(f"Étiquettes {', '.join(accessions)}")
    canvas.setAuthor("")
    canvas.setSubject("")
    canvas.setCreator("bilan")
    for label in labels:
        _draw(canvas, label)
        canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def _barcode(value: str) -> Code128:
    """The Code 128 symbol of `value`, quiet zones included, as wide as the label allows."""
    if not value or not all(" " <= char <= "~" for char in value):
        # Code128 silently drops what it cannot encode; a wrong barcode is worse than none.
        raise ValueError(f"barcode {value!r} must be non-empty printable ASCII")
    modules = Code128(value, barWidth=1, quiet=0).width + 2 * QUIET_MODULES
    module = min(MAX_MODULE, (PAGE[0] - 2 * MARGIN) / modules)
    if module < MIN_MODULE:
        raise ValueError(f"barcode {value!r} is too long to be read on a 50 mm label")
    quiet = QUIET_MODULES * module
    return Code128(value, barWidth=module, barHeight=BAR_HEIGHT, quiet=1, lquiet=quiet,
                   rquiet=quiet, humanReadable=0)


def _fit(text: str, font: str, size: float, width: float) -> str:
    """`text` on one line, cut and ended with an ellipsis if it is wider than `width`."""
    text = _printable(" ".join(text.split()))
    if stringWidth(text, font, size) <= width:
        return text
    while text and stringWidth(text + ELLIPSIS, font, size) > width:
        text = text[:-1]
    return text.rstrip() + ELLIPSIS


def _draw(canvas: Canvas, label: Label) -> None:
    width, height = PAGE
    inner = width - 2 * MARGIN
    top = height - MARGIN - 6.5  # baseline of the 8 pt first line

    identity = " ".join(part for part in (label.sex.strip(), label.birth_date.strip()) if part)
    identity = _fit(identity, REGULAR, 7, inner / 2)
    room = inner - stringWidth(identity, REGULAR, 7) - (4 if identity else 0)
    canvas.setFont(BOLD, 8)
    canvas.drawString(MARGIN, top, _fit(label.patient, BOLD, 8, room))
    canvas.setFont(REGULAR, 7)
    canvas.drawRightString(width - MARGIN, top, identity)

    symbol = _barcode(label.barcode)
    bars_bottom = top - 4 - BAR_HEIGHT
    symbol.drawOn(canvas, (width - symbol.width) / 2, bars_bottom)

    canvas.setFont(REGULAR, 7)
    canvas.drawCentredString(width / 2, bars_bottom - 7, _fit(label.barcode, REGULAR, 7, inner))
    canvas.setFont(REGULAR, 6)
    canvas.drawString(MARGIN, bars_bottom - 14.5, _fit(label.tube, REGULAR, 6, inner))
    canvas.drawString(MARGIN, bars_bottom - 21.5, _fit(label.exams, REGULAR, 6, inner))


def _printable(text: str) -> str:
    """Keep what Helvetica's WinAnsi encoding can show; strip other accents, else '?'."""
    kept = []
    for char in text:
        if not _encodable(char):
            base = "".join(c for c in unicodedata.normalize("NFKD", char)
                           if not unicodedata.combining(c))
            char = base if base and all(_encodable(c) for c in base) else "?"
        kept.append(char)
    return "".join(kept)


def _encodable(char: str) -> bool:
    try:
        char.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True
