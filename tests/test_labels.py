"""Tube labels: read back the PDF as a lab scanner and a PDF reader would."""

import pypdfium2 as pdfium
import pytest
import zxingcpp
from reportlab.lib.units import mm

from bilan.prescription.labels import Label, labels_pdf

SCALE = 10  # 720 dpi: the thinnest bar is a few pixels wide

LABELS = [
    Label("261124-0007-01", "261124-0007", "LEFÈVRE Jean", "12/03/1979", "M",
          "Tube sec avec gel (bouchon jaune)", "IONO, CRP"),
    Label("261124-0007-02", "261124-0007", "LEFÈVRE Jean", "12/03/1979", "M",
          "Tube EDTA (bouchon violet)", "NFS"),
    Label("261124-0007-03", "261124-0007", "LEFÈVRE Jean", "12/03/1979", "M",
          "Tube citraté (bouchon bleu)", "TP, TCA"),
]


def _pages(pdf: bytes) -> list[pdfium.PdfPage]:
    return list(pdfium.PdfDocument(pdf))


def _decoded(page: pdfium.PdfPage) -> list[tuple[str, zxingcpp.BarcodeFormat]]:
    image = page.render(scale=SCALE).to_pil().convert("L")
    return [(found.text, found.format) for found in zxingcpp.read_barcodes(image)]


def _lines(page: pdfium.PdfPage) -> list[str]:
    return page.get_textpage().get_text_range().splitlines()


def test_each_page_scans_as_its_specimen() -> None:
    pages = _pages(labels_pdf(LABELS))
    assert len(pages) == len(LABELS)
    for page, label in zip(pages, LABELS):
        assert _decoded(page) == [(label.barcode, zxingcpp.BarcodeFormat.Code128)]


def test_page_text_is_searchable_with_accents() -> None:
    for page, label in zip(_pages(labels_pdf(LABELS)), LABELS):
        text = page.get_textpage().get_text_range()
        for expected in (label.patient, label.birth_date, label.tube, label.exams, label.barcode):
            assert expected in text


def test_page_is_50_by_25_mm() -> None:
    for page in _pages(labels_pdf(LABELS)):
        width, height = page.get_size()
        assert width == pytest.approx(50 * mm, abs=0.5)
        assert height == pytest.approx(25 * mm, abs=0.5)


def test_long_text_is_cut_and_the_barcode_still_scans() -> None:
    label = Label("ABCDEFGH-1234567", "261124-0008",
                  "DE LA FONTAINE-SAINT-ÉTIENNE Marie-Françoise Amélie", "01/01/1950", "F",
                  "Tube citraté 3,2 % (bouchon bleu) pour hémostase spécialisée",
                  ", ".join(["TP", "TCA", "FIBRI", "D-DIM", "AT3", "PC", "PS"] * 4))
    (page,) = _pages(labels_pdf([label]))
    assert _decoded(page) == [(label.barcode, zxingcpp.BarcodeFormat.Code128)]

    name, barcode, tube, exams = _lines(page)
    assert name.startswith("DE LA FONTAINE") and "…" in name and name.endswith("F 01/01/1950")
    assert barcode == label.barcode
    assert tube.endswith("…") and len(tube) < len(label.tube)
    assert exams.endswith("…") and len(exams) < len(label.exams)

    width, height = page.get_size()
    text = page.get_textpage()
    for index in range(text.count_chars()):
        left, bottom, right, top = text.get_charbox(index)
        assert 0 <= left <= right <= width and 0 <= bottom <= top <= height


def test_letters_outside_latin1_fall_back_to_their_base_letter() -> None:
    label = Label("261124-0009-01", "261124-0009", "DVOŘÁK Łucja", "02/02/2002", "",
                  "Tube sec", "CRP")
    (page,) = _pages(labels_pdf([label]))
    assert _lines(page)[0] == "DVORÁK ?ucja 02/02/2002"


def test_metadata_has_the_title_and_no_patient_data() -> None:
    metadata = pdfium.PdfDocument(labels_pdf(LABELS)).get_metadata_dict()
    assert metadata["Title"] == "Étiquettes 261124-0007"
    others = " ".join(value for key, value in metadata.items() if key != "Title")
    assert "LEFÈVRE" not in others and "1979" not in others


def test_no_labels_is_an_error() -> None:
    with pytest.raises(ValueError, match="no labels"):
        labels_pdf([])


@pytest.mark.parametrize("barcode", ["261124-0007-01-ABCDEFGHIJ", "261124-0007-É", ""])
def test_barcode_that_cannot_be_printed_readably_is_an_error(barcode: str) -> None:
    label = Label(barcode, "261124-0007", "DUPONT Marie", "12/03/1979", "F", "Tube sec", "CRP")
    with pytest.raises(ValueError, match="barcode"):
        labels_pdf([label])
