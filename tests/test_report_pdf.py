"""The printable report: what a reader finds in its text, that it is stable byte for byte, and
that it serves as the CR-BIO's PDF copy."""

import dataclasses
from datetime import timezone

import pypdfium2 as pdfium

from bilan.results.document.cda import cda_document
from bilan.results.document.conformance import problems
from bilan.results.document.pdf import report_pdf
from bilan.results.document.report import Battery, Chapter, Identifier, LabReport, Result
from tests.lab_reports import at, quantity, report


def pages(pdf: bytes) -> list[str]:
    document = pdfium.PdfDocument(pdf)
    try:
        return [page.get_textpage().get_text_range() for page in document]
    finally:
        document.close()


def text(pdf: bytes) -> str:
    return "\n".join(pages(pdf))


def corrected() -> LabReport:
    first = report()
    return report(document_id=Identifier("6F1D3A52-8C1B-4E0B-9E43-0A51C1D2B002"), version=2,
                  replaces=first.document_id, effective_time=at(11, 9, 15))


def test_the_report_reads_as_issued() -> None:
    found = text(report_pdf(report()))
    assert "Compte rendu d'examens biologiques" in found
    assert "Laboratoire Bilan République" in found and "FINESS 750012345" in found
    assert "PAT-TROIS" in found and "DOMINIQUE MARIE-LOUISE" in found
    assert "28/03/1979" in found and "Féminin" in found
    assert "Dr Pascal CHARLES" in found and "2025030800042" in found
    assert "Prélevé le : 10/03/2025 à 07:35" in found
    for label in ("Hématologie", "Numération formule sanguine", "Hémoglobine", "Leucocytes",
                  "Plaquettes", "Biochimie", "Glycémie à jeun", "hCG qualitative (test de grossesse)"):
        assert label in found, label
    assert "7,2 mmol/L" in found and "13,2 g/dL" in found
    assert "H Anormalement haut" in found
    assert "(3,9 – 6,1)" in found
    assert "Hyperleucocytose modérée, à contrôler." in found
    assert "Adaptation de la prescription" in found and "bilan martial" in found
    assert "Marcel CAMPARINI" in found and "16:30" in found
    assert "Version 1" in found and "Page 1 / 1" in found
    assert "Annule et remplace" not in found


def test_times_are_printed_in_paris_time() -> None:
    in_utc = report(validated_at=at(10, 16, 30).astimezone(timezone.utc))
    assert "le 10/03/2025 à 16:30" in text(report_pdf(in_utc))


def test_the_ins_shows_only_for_a_qualified_identity() -> None:
    qualified = text(report_pdf(report()))
    assert "279035121518989" in qualified
    provisional = report(patient=dataclasses.replace(report().patient, identity_status="PROV"))
    found = text(report_pdf(provisional))
    assert "279035121518989" not in found and "INS" not in found
    assert "P0001234" in found


def test_a_correction_says_what_it_replaces() -> None:
    found = text(report_pdf(corrected()))
    assert "Version 2" in found
    assert "Annule et remplace la version précédente" in found


def test_the_same_report_gives_the_same_bytes() -> None:
    assert report_pdf(report()) == report_pdf(report())
    assert report_pdf(report()) != report_pdf(corrected())


def test_metadata_name_no_patient() -> None:
    document = pdfium.PdfDocument(report_pdf(report()))
    metadata = document.get_metadata_dict()
    document.close()
    assert metadata["Title"] == "Compte rendu d'examens biologiques"
    for key in ("Author", "Subject", "Keywords"):
        assert not any(part in metadata.get(key, "") for part in ("PAT-TROIS", "DOMINIQUE", "2790351"))


def test_many_results_span_numbered_pages() -> None:
    codes = (("718-7", "Hémoglobine"), ("6690-2", "Leucocytes"), ("777-3", "Plaquettes"))
    batteries = tuple(
        Battery("58410-2", f"Numération formule sanguine n° {n}", tuple(
            quantity(code, f"{display} n° {n}", "11.8", "10*9/L", "4.0", "10.0", "H",
                     comment="Contrôle demandé.")
            for code, display in codes))
        for n in range(1, 31))
    many = report(chapters=(Chapter("18723-7", "Hématologie", batteries),))
    found = pages(report_pdf(many))
    total = len(found)
    assert total >= 3
    for number, page in enumerate(found, 1):
        assert f"Page {number} / {total}" in page
    everything = "\n".join(found)
    assert all(f"Numération formule sanguine n° {n}\r\n" in everything for n in range(1, 31))
    # a table split over pages repeats its column headings
    assert all("Valeurs de référence" in page for page in found)


def test_a_partial_report_with_an_aborted_result() -> None:
    urine = Chapter("18729-4", "Urines", (
        Result("5778-6", "Couleur des urines", "jaune paille"),
        Result("2514-8", "Corps cétoniques", None, status="aborted",
               comment="Échantillon insuffisant, analyse non réalisée."),
    ))
    found = text(report_pdf(report(chapters=(urine,), adaptation=None, complete=False)))
    assert "jaune paille" in found and "Non réalisé" in found
    assert "Échantillon insuffisant" in found and "en attente" in found
    assert "Adaptation de la prescription" not in found


def test_the_pdf_is_the_cda_copy() -> None:
    for issued in (report(), corrected()):
        with_copy = dataclasses.replace(issued, pdf=report_pdf(issued))
        assert problems(cda_document(with_copy)) == []
