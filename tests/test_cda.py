"""The CR-BIO document: the ANS examples and the documents bilan generates pass the ANS pipeline
(CDA_extended.xsd and the kit's six schematrons; every kind of report in test_ans_pipeline.py),
say what the report says, and the ANS stylesheet displays them."""

import base64
import dataclasses
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from bilan.results.document.cda import cda_document
from bilan.results.document.conformance import CDA_KIT, problems
from bilan.results.document.report import Chapter, Identifier, Patient, ReportError, Result
from tests.helpers import ANS_CDA_EXAMPLES
from tests.lab_reports import (
    FIRST_ID,
    SET_ID,
    at,
    one_page_pdf,
    quantity,
    report,
)

NS = {"cda": "urn:hl7-org:v3"}
INS_ROOTS = ("1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9", "1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.11")
STYLESHEET = CDA_KIT / "FeuilleDeStyle" / "externe" / "feuille-de-style-externe_BIO-CR-BIO.xsl"


def tree(document: bytes) -> etree._Element:
    return etree.fromstring(document)


# The ANS material first: if it fails, the validator is broken, not the generator.

def test_the_three_ans_examples_are_there() -> None:
    assert len(ANS_CDA_EXAMPLES) == 3


@pytest.mark.parametrize("example", ANS_CDA_EXAMPLES, ids=lambda p: p.name)
def test_ans_examples_conform(example: Path) -> None:
    assert problems(example.read_bytes()) == []


def test_generated_report_conforms() -> None:
    document = cda_document(report())
    assert problems(document) == []

    root = tree(document)
    assert root.xpath("cda:recordTarget/cda:patientRole/cda:id[@root='1.2.250.1.213.1.4.10']"
                      "/@extension", namespaces=NS) == ["279035121518989"]
    assert root.xpath("cda:authenticator/cda:assignedEntity/cda:id/@extension", namespaces=NS) \
        == ["810000000017"]
    assert root.xpath("cda:inFulfillmentOf/cda:order/cda:id/@extension", namespaces=NS) \
        == ["2025030800042"]
    chapters = root.xpath("//cda:section[cda:templateId/@root='1.3.6.1.4.1.19376.1.3.3.2.1']",
                          namespaces=NS)
    assert [c.xpath("string(cda:code/@code)", namespaces=NS) for c in chapters] == ["18723-7", "18719-5"]
    battery = chapters[0].xpath(".//cda:organizer[@classCode='BATTERY']", namespaces=NS)[0]
    assert battery.xpath("cda:component/cda:observation/cda:code/@code", namespaces=NS) \
        == ["718-7", "6690-2", "777-3"]
    glucose = chapters[1].xpath(".//cda:observation[cda:code/@code='40193-5']", namespaces=NS)[0]
    assert glucose.xpath("cda:value/@value", namespaces=NS) == ["7.2"]
    assert glucose.xpath("cda:value/@unit", namespaces=NS) == ["mmol/L"]
    assert glucose.xpath("cda:interpretationCode/@code", namespaces=NS) == ["H"]
    assert glucose.xpath(".//cda:referenceRange//cda:low/@value", namespaces=NS) == ["3.9"]
    media = root.xpath("//cda:observationMedia/cda:value", namespaces=NS)[0]
    assert base64.b64decode(media.text) == one_page_pdf()
    assert "bilan martial" in "".join(root.xpath(
        "//cda:section[cda:code/@code='55112-7']/cda:text//text()", namespaces=NS))


def test_every_narrative_reference_points_at_the_text() -> None:
    root = tree(cda_document(report()))
    ids = set(root.xpath("//@ID"))
    references = {r[1:] for r in root.xpath("//cda:reference/@value", namespaces=NS)}
    assert references and references <= ids
    comments = root.xpath("//cda:act[cda:code/@code='48767-8']/cda:text/cda:reference/@value",
                          namespaces=NS)
    assert len(comments) == 2  # the leucocytes' comment and the biochemistry chapter's


def test_provisional_identity_keeps_the_ins_out_of_the_header() -> None:
    patient = dataclasses.replace(report().patient, identity_status="PROV")
    document = cda_document(report(patient=patient))
    assert problems(document) == []
    ids = tree(document).xpath("cda:recordTarget/cda:patientRole/cda:id", namespaces=NS)
    assert [(i.get("root"), i.get("extension")) for i in ids] == [("1.2.3.4.567.8.9.10", "P0001234")]
    assert not any(i.get("root") in INS_ROOTS for i in ids)


def test_corrected_version_replaces_the_first() -> None:
    first = report()
    glucose = dataclasses.replace(first.chapters[1].items[0], comment="Résultat corrigé après contrôle.")
    chapters = (first.chapters[0], dataclasses.replace(
        first.chapters[1], items=(glucose, *first.chapters[1].items[1:])))
    second = report(document_id=Identifier("6F1D3A52-8C1B-4E0B-9E43-0A51C1D2B002"), version=2,
                    replaces=first.document_id, effective_time=at(11, 9, 15), chapters=chapters)
    document = cda_document(second)
    assert problems(document) == []
    root = tree(document)
    assert root.xpath("cda:setId/@root", namespaces=NS) == [SET_ID.root]
    assert root.xpath("cda:versionNumber/@value", namespaces=NS) == ["2"]
    related = root.xpath("cda:relatedDocument[@typeCode='RPLC']/cda:parentDocument/cda:id/@root",
                         namespaces=NS)
    assert related == [FIRST_ID.root]


def test_a_partial_report_with_less_known_conforms() -> None:
    """Unknown sex and address, a provisional identity without INS, a result that will not be
    done, a textual result, results still to come, no adaptation: still a conformant CR-BIO."""
    patient = Patient(Identifier("1.2.3.4.567.8.9.10", "P0009999"), "INCONNU", ("ALEX",), "U",
                      date(1990, 1, 1), "PROV")
    urine = Chapter("18729-4", "Urines", (
        Result("5778-6", "Couleur des urines", "jaune paille"),
        Result("2514-8", "Corps cétoniques", None, status="aborted",
               comment="Échantillon insuffisant, analyse non réalisée."),
    ))
    document = cda_document(report(patient=patient, chapters=(urine,), adaptation=None,
                                   complete=False, collector=None, request_id=None,
                                   prescribed_at=None))
    assert problems(document) == []
    root = tree(document)
    assert root.xpath("cda:documentationOf/cda:serviceEvent/*[local-name()='statusCode']/@code",
                      namespaces=NS) == ["active"]
    assert root.xpath("//cda:administrativeGenderCode/@code", namespaces=NS) == ["UN"]  # CI-SIS: Inconnu
    assert root.xpath("//cda:observation[cda:code/@code='2514-8']/cda:statusCode/@code",
                      namespaces=NS) == ["aborted"]


def _without_pdf_section(document: bytes) -> bytes:
    root = tree(document)
    section = root.xpath("//cda:section[cda:templateId/@root='1.2.250.1.213.1.1.2.243']",
                         namespaces=NS)[0]
    component = section.getparent()
    component.getparent().remove(component)
    return etree.tostring(root)


@pytest.mark.parametrize("breaking, named", [
    (lambda d: d.replace(b'code="11502-2"', b'code="11488-4"'), "11502-2"),
    (_without_pdf_section, "FR-Document-PDF-copie (1.2.250.1.213.1.1.2.243)"),
    (lambda d: d.replace(b'<interpretationCode code="H"', b'<interpretationCode code="HIGH"', 1),
     "[HIGH:Anormalement haut:2.16.840.1.113883.5.83]"),
    (lambda d: d.replace(b'<versionNumber value="1"/>', b'<versionNumber value="un"/>'),
     "versionNumber"),
    (lambda d: d.replace(b'<statusCode code="completed"/>', b'<statusCode code="done"/>', 1),
     "statusCode"),
], ids=["document code", "pdf section", "interpretation", "version number", "result status"])
def test_broken_documents_name_their_problem(breaking: Any, named: str) -> None:
    found = problems(breaking(cda_document(report())))
    assert any(named in p for p in found), found
    assert all(p.split()[0] in ("error", "warning") and p.split()[2] == "line" for p in found), found


def test_not_xml_is_a_problem_too() -> None:
    assert problems(b"<ClinicalDocument>")[0].startswith("error XML line 1: not well-formed XML")


def test_ans_stylesheet_displays_the_report() -> None:
    # The stylesheet reads '../cda_l10n.xml' and 'cda_narrativeblock.xml' relative to itself,
    # but the kit keeps both in FeuilleDeStyle/: parse it as if it lived there.
    folder = STYLESHEET.parent.parent
    transform = etree.XSLT(etree.parse(str(STYLESHEET), base_url=str(folder / STYLESHEET.name)))
    html = str(transform(etree.fromstring(cda_document(report())),
                         vocFile=etree.XSLT.strparam(str(folder / "cda_l10n.xml"))))
    assert not [e for e in transform.error_log if e.level_name == "ERROR"]
    assert "PAT-TROIS" in html
    assert "7,2 mmol/L" in html
    assert "Numération formule sanguine" in html


@pytest.mark.parametrize("changes, reason", [
    ({"version": 2}, "replaces the previous one"),
    ({"replaces": FIRST_ID}, "replaces the previous one"),
    ({"pdf": b"<html>"}, "must be a PDF"),
    ({"validated_at": datetime(2025, 3, 10, 16, 30)}, "needs a timezone"),
    ({"chapters": ()}, "at least one chapter"),
])
def test_a_report_that_cannot_be_issued(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(ReportError, match=reason):
        report(**changes)


def test_results_rules() -> None:
    with pytest.raises(ReportError, match="value set"):
        quantity("40193-5", "Glycémie", "7.2", "mmol/L", "3.9", "6.1", "HIGH")
    with pytest.raises(ReportError, match="check digit"):
        quantity("40193-4", "Glycémie", "7.2", "mmol/L", "3.9", "6.1")
    with pytest.raises(ReportError, match="write 'mmol/L'"):
        quantity("40193-5", "Glycémie", "7.2", "mmol/l", "3.9", "6.1")
    with pytest.raises(ReportError, match="quantity value"):
        Result("2106-3", "hCG", "négatif", low=Decimal(1))
    with pytest.raises(ReportError, match="a qualified identity has an INS"):
        dataclasses.replace(report().patient, ins=None)
