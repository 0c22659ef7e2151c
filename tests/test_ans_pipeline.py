"""The ANS pipeline is bilan's conformance check: the CDA schema and the six schematrons of the
kit (IHE, terminologie, ModelesDeContenusCDA, StructurationMinimale, Modeles_ANS, CR-BIO
2024.01) give 0 errors and 0 warnings on the ANS's own examples and on every kind of report
bilan makes, built from the LabReport model and issued through the HTTP flow."""

import base64
import dataclasses
import filecmp
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from bilan.demo.prescriptions import EXAMS
from bilan.results.document import conformance
from bilan.results.document.cda import cda_document
from bilan.results.document.pdf import report_pdf
from bilan.results.document.report import (
    Address,
    Battery,
    Chapter,
    Code,
    Earlier,
    Forwarded,
    Identifier,
    LabReport,
    Patient,
    Quantity,
    Result,
    Specimen,
)
from bilan.results.elsewhere.cda_reading import read_cr_bio
from tests.helpers import ANS_CDA_EXAMPLES, ANS_FIXTURES
from tests.lab_reports import FIRST_ID, SNOMED, SPECIMEN_TYPE, at, quantity, report
from tests.orders import addressed, imported, imported_for, prescribed
from tests.results import binary, decide, documents, issue, posted, result, results_of

V3 = {"h": "urn:hl7-org:v3"}
KIT = ANS_FIXTURES / "TestContenuCDA-3-0"
NFS, GLUCOSE, KIDNEY, CRP, TP_INR = EXAMS[0], EXAMS[1], EXAMS[2], EXAMS[5], EXAMS[10]
CREATININE, EGFR, INR = "14682-9", "62238-1", "6301-6"
SECOND_ID = Identifier("6F1D3A52-8C1B-4E0B-9E43-0A51C1D2B002")


def assert_conforms(document: bytes) -> None:
    found = conformance.check(document)
    assert found.conforms, "\n".join([f"{len(found.errors)} errors, {len(found.warnings)} warnings:",
                                      *map(str, (*found.errors, *found.warnings))])


def tree(document: bytes) -> etree._Element:
    return etree.fromstring(document, etree.XMLParser(huge_tree=True))


# The control: the ANS's own examples pass the pipeline as bilan runs it.

@pytest.mark.parametrize("example", ANS_CDA_EXAMPLES, ids=lambda p: p.name)
def test_the_ans_examples_give_no_error_and_no_warning(example: Path) -> None:
    assert_conforms(example.read_bytes())


def test_the_volet_does_not_require_a_pdf_a_copy() -> None:
    """Two ANS examples embed a PDF/A-1b copy, but the third embeds a plain PDF 1.6 and passes
    the pipeline: bilan's copy stays a plain PDF (docs/cda.md, "PDF/A")."""
    example = next(p for p in ANS_CDA_EXAMPLES if "Microbiologie" in p.name)
    [copy] = tree(example.read_bytes()).xpath("//h:observationMedia/h:value[@mediaType='application/pdf']",
                                              namespaces=V3)
    pdf = base64.b64decode(copy.text)
    assert pdf.startswith(b"%PDF-1.6") and b"pdfaid" not in pdf and b"/OutputIntents" not in pdf
    assert_conforms(example.read_bytes())


# Every kind of report bilan makes, from the model

SERUM = Specimen(Code("SER", "Sérum", SPECIMEN_TYPE), at(10, 7, 35), at(10, 8, 5))
PLASMA = Specimen(Code("PLAS", "Plasma", SPECIMEN_TYPE), at(10, 7, 35), at(10, 8, 5))
URINE = Specimen(Code("UR", "Urine", SPECIMEN_TYPE), at(10, 7, 40), at(10, 8, 5))
VITAMIN_D = "Vitamine D (25-OH)"


def chemistry(**changes: object) -> Chapter:
    """A chemistry chapter with a censored CRP, a critical potassium and its call, a renal
    battery with a calculated eGFR and an antériorité, and a result not done."""
    chapter = Chapter("18719-5", "Biochimie", (
        Result("1988-5", "Protéine C réactive (CRP)", Quantity(Decimal("0.5"), "mg/L", "<"), "N",
               None, Decimal("5.0")),
        quantity("2823-3", "Potassium", "6.9", "mmol/L", "3.5", "5.0", "HH",
                 comment="Valeur critique appelée au Dr CHARLES le 10/03/2025 à 11 h 02."),
        Battery("24362-6", "Fonction rénale", (
            quantity(CREATININE, "Créatinine", "88", "umol/L", "45", "104",
                     earlier=Earlier(Quantity(Decimal("92"), "umol/L"), at(1, 8, 0))),
            Result(EGFR, "DFG estimé (CKD-EPI)", Quantity(Decimal("78"), "mL/min/{1.73_m2}"), "L",
                   Decimal("90"), None, comment="Calculé (CKD-EPI 2021) à partir de la créatinine."),
        )),
        Result("2514-8", "Corps cétoniques", None, status="aborted",
               comment="Échantillon hémolysé, analyse non réalisée."),
    ), specimens=(SERUM,))
    return dataclasses.replace(chapter, **changes)


def haemostasis() -> Chapter:
    return Chapter("18720-3", "Hémostase", (
        Battery("34528-0", "TP / INR", (
            quantity("5894-1", "Taux de prothrombine", "35", "%", "70", "100", "L"),
            Result(INR, "INR", Quantity(Decimal("2.6"), "{INR}"), "H", Decimal("0.8"), Decimal("1.2"),
                   earlier=Earlier(Quantity(Decimal("2.4"), "{INR}"), at(3, 9, 0))),
        )),), specimens=(PLASMA,))


def microbiology() -> Chapter:
    return Chapter("18725-2", "Microbiologie", (
        Battery("630-4", "Examen cytobactériologique des urines (ECBU)", (
            Result("30405-5", "Leucocytes urinaires", Quantity(Decimal("50000"), "/mL"), "H", None, Decimal("10000")),
            Result("51480-2", "Bactériurie (numération)", Quantity(Decimal("100000"), "/mL")),
            Result("6463-4", "Germe identifié", Code("112283007", "Escherichia coli", SNOMED)),
        )),), specimens=(URINE,), comment="Infection urinaire à Escherichia coli.")


def everything() -> LabReport:
    base = report()
    return report(chapters=(*base.chapters, chemistry(), haemostasis(), microbiology()),
                  conclusion="Hyperkaliémie à contrôler dès demain.")


def partial() -> LabReport:
    """Version 1: results still to come, an exam pending at the partner lab."""
    return report(chapters=(chemistry(),), complete=False, adaptation=None,
                  forwarded=(Forwarded(VITAMIN_D, "Laboratoire Partenaire Sud", "130000001", True),))


def corrected() -> LabReport:
    """Version 2 of `partial`: the partner lab answered, a result corrected, final."""
    vitamin_d = Chapter("18719-5", "Biochimie", (
        quantity("62292-8", VITAMIN_D, "18", "ng/mL", "30", "100", "L", comment="Résultat du laboratoire partenaire."),
    ), specimens=(SERUM,))
    return report(chapters=(chemistry(), vitamin_d, microbiology()), version=2, replaces=FIRST_ID,
                  document_id=SECOND_ID, effective_time=at(11, 9, 15),
                  forwarded=(Forwarded(VITAMIN_D, "Laboratoire Partenaire Sud", "130000001", False),))


def unknown_identity() -> LabReport:
    """Sex, address, prescription date unknown; a provisional identity, no collector."""
    patient = Patient(Identifier("1.2.3.4.567.8.9.10", "P0009999"), "INCONNU", ("ALEX",), "U",
                      report().patient.birth_date, "PROV")
    return report(patient=patient, adaptation=None, prescribed_at=None, request_id=None, collector=None)


def no_collection_time() -> LabReport:
    """Nothing says when the samples were taken: received, validated and issued at once."""
    return report(received_at=at(10, 16, 30), validated_at=at(10, 16, 30), effective_time=at(10, 16, 30),
                  chapters=(chemistry(specimens=()),), collector=None)


def with_its_pdf() -> LabReport:
    whole = everything()
    return dataclasses.replace(whole, pdf=report_pdf(whole))


def addresses() -> LabReport:
    """Addresses as people type them: a complement line, no house number."""
    base = report()
    lab = dataclasses.replace(base.lab, address=Address(("Bâtiment B, 2e étage", "3 bis avenue de la Gare"),
                                                        "69003", "LYON"))
    patient = dataclasses.replace(base.patient, address=Address(("Lieu-dit Les Granges",), "43100", "BRIOUDE"))
    return report(lab=lab, patient=patient)


CORPUS: dict[str, Callable[[], LabReport]] = {
    "battery, single and coded results, comments, adaptation": report,
    "censored, critical, calculated, not done, antériorités, microbiology, conclusion": everything,
    "partial, partner exam pending": partial,
    "corrected, partner exam answered": corrected,
    "unknown identity and dates": unknown_identity,
    "no collection time": no_collection_time,
    "the embedded PDF": with_its_pdf,
    "addresses": addresses,
}


@pytest.mark.parametrize("make", CORPUS.values(), ids=list(CORPUS))
def test_every_kind_of_report_gives_no_error_and_no_warning(make: Callable[[], LabReport]) -> None:
    assert_conforms(cda_document(make()))


def test_every_time_is_on_paris_clocks_with_its_offset() -> None:
    for make in CORPUS.values():
        times = [v for v in tree(cda_document(make())).xpath("//@value") if re.fullmatch(r"\d{12,14}.*", v)]
        assert times and all(re.fullmatch(r"\d{14}\+0[12]00", t) for t in times), times
    # 07:35 in Paris on 10 March 2025 is 06:35 UTC: written as Paris time.
    assert "20250310073500+0100" in tree(cda_document(report())).xpath("//h:procedure/h:effectiveTime/@value",
                                                                       namespaces=V3)


def _specimen_ids(document: bytes) -> list[str]:
    return tree(document).xpath("//h:procedure/h:participant/h:participantRole/h:id/@root", namespaces=V3)


def test_a_specimen_without_its_tube_number_has_an_id_kept_across_versions() -> None:
    first, second = _specimen_ids(cda_document(partial())), _specimen_ids(cda_document(corrected()))
    assert first and first[0] == second[0]  # the serum: the same id in both versions
    assert len(set(_specimen_ids(cda_document(everything())))) == 4  # blood, serum, plasma, urine


def test_addresses_are_written_in_parts() -> None:
    root = tree(cda_document(addresses()))
    lab = root.xpath("h:author/h:assignedAuthor/h:representedOrganization/h:addr", namespaces=V3)[0]
    assert [(etree.QName(e).localname, e.text) for e in lab] == [
        ("houseNumber", "3 bis"), ("streetName", "avenue de la Gare"),
        ("additionalLocator", "Bâtiment B, 2e étage"), ("postalCode", "69003"), ("city", "LYON")]
    patient = root.xpath("h:recordTarget/h:patientRole/h:addr", namespaces=V3)[0]
    assert [(etree.QName(e).localname, e.text) for e in patient] == [
        ("streetName", "Lieu-dit Les Granges"), ("postalCode", "43100"), ("city", "BRIOUDE")]
    assert not root.xpath("//h:streetAddressLine", namespaces=V3)


def _observation(root: etree._Element, code: str) -> etree._Element:
    [found] = root.xpath(f"//h:observation[h:templateId/@root='1.3.6.1.4.1.19376.1.3.1.6'][h:code/@code='{code}']",
                         namespaces=V3)
    return found


def test_units_are_written_as_the_ans_terminology_reads_them_and_printed_as_the_lab_does() -> None:
    root = tree(cda_document(everything()))
    egfr, inr = _observation(root, EGFR), _observation(root, INR)
    assert egfr.find("h:value", V3).get("unit") == "mL/min"  # {1.73_m2} is an annotation: unity
    assert inr.find("h:value", V3).get("unit") is None and inr.find("h:value", V3).get("value") == "2.6"
    assert inr.xpath("h:referenceRange//h:low/@unit", namespaces=V3) == []
    narrative = "".join(root.itertext())
    assert "78 mL/min/1,73 m²" in narrative


def test_an_anteriorite_is_a_previous_observation_with_its_time_and_not_a_result() -> None:
    document = cda_document(everything())
    root = tree(document)
    [previous] = _observation(root, CREATININE).xpath("h:entryRelationship[@typeCode='REFR']/h:observation",
                                                      namespaces=V3)
    assert previous.xpath("h:statusCode/@code", namespaces=V3) == ["completed"]
    assert previous.xpath("h:effectiveTime/@value", namespaces=V3) == ["20250301080000+0100"]
    assert previous.xpath("h:value/@value", namespaces=V3) == ["92"]
    assert "Antériorité" in "".join(root.xpath("//h:section[h:code/@code='18719-5']//h:th/text()", namespaces=V3))
    assert "92 µmol/L (01/03/2025)" in "".join(root.itertext())
    read = read_cr_bio(document, check=False)
    assert [r.code for r in read.results].count(CREATININE) == 1  # the antériorité is not read as a result


def test_a_correction_names_the_version_it_replaces_by_id_and_number() -> None:
    root = tree(cda_document(corrected()))
    [parent] = root.xpath("h:relatedDocument[@typeCode='RPLC']/h:parentDocument", namespaces=V3)
    assert [(etree.QName(e).localname, e.get("root") or e.get("value")) for e in parent] == [
        ("id", FIRST_ID.root), ("versionNumber", "1")]


def test_without_a_collection_time_the_periods_only_start() -> None:
    root = tree(cda_document(no_collection_time()))
    performer = root.xpath("h:documentationOf/h:serviceEvent/h:performer/h:time", namespaces=V3)[0]
    assert [etree.QName(e).localname for e in performer] == ["low"]


def test_an_unknown_sex_is_coded_un() -> None:
    root = tree(cda_document(unknown_identity()))
    assert root.xpath("//h:patient/h:administrativeGenderCode/@code", namespaces=V3) == ["UN"]


# What the pipeline reports

def test_an_error_names_its_schematron_and_where_it_is() -> None:
    document = cda_document(report()).replace(b'<statusCode code="completed"/>', b'<statusCode code="done"/>', 1)
    found = conformance.check(document)
    assert found.errors and not found.conforms
    assert {f.check for f in found.errors} == {"IHE", "CR-BIO"}
    assert all(str(f).startswith(f"error {f.check} line ") for f in found.errors), found.errors


def test_a_warning_is_reported_apart_from_the_errors() -> None:
    """The structuration minimale warns of a street line beside a postal code: a warning,
    not an error (issuing holds back errors only)."""
    document = cda_document(report()).replace(
        b"<houseNumber>12</houseNumber>\n          <streetName>rue des Analyses</streetName>",
        b"<streetAddressLine>12 rue des Analyses</streetAddressLine>", 1)
    found = conformance.check(document)
    assert not found.errors, found.errors
    assert [f.check for f in found.warnings] == ["StructurationMinimale", "StructurationMinimale"]
    assert all(p.startswith("warning StructurationMinimale line ") for p in conformance.problems(document))


def test_a_doctype_is_refused_before_any_check() -> None:
    found = conformance.check(b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "e">]><ClinicalDocument/>')
    assert [f.message for f in found.errors] == ["a CDA document has no DOCTYPE"]


def test_the_pipeline_is_compiled_once_a_process() -> None:
    conformance.warm()
    assert conformance.warm() == 0.0
    assert [name for name, _ in conformance._pipeline().schematrons] == [name for name, _ in conformance.PROFILES]
    assert conformance._pipeline().has(conformance.CR_BIO)


# What bilan ships of the kit

def test_the_kit_files_bilan_ships_are_the_kits_own() -> None:
    shipped = conformance.CDA_KIT.parent
    files = [p for p in shipped.rglob("*") if p.is_file()]
    assert len(files) > 600
    different = [str(p.relative_to(shipped)) for p in files
                 if not filecmp.cmp(p, ANS_FIXTURES / p.relative_to(shipped), shallow=False)]
    assert different == []


def test_every_code_system_bilan_writes_is_checked_as_the_whole_kit_would() -> None:
    """bilan ships the terminology files of the code systems it writes, and leaves out the
    others (CCAM, CIM-10...: 15 MB); a system whose file the kit has must be shipped."""
    terminologies = conformance.SCHEMATRONS / "profils" / "terminologies" / "terminologie"
    kit = KIT / "schematrons" / "profils" / "terminologies" / "terminologie"
    written = {s for make in CORPUS.values() for s in tree(cda_document(make())).xpath("//@codeSystem")}
    assert written
    assert [s for s in written if (kit / f"{s}.rdf").exists() and not (terminologies / f"{s}.rdf").exists()] == []
    assert (terminologies / "2.16.840.1.113883.6.8.xml").exists()  # UCUM


# Reports issued through the HTTP flow

def test_reports_issued_through_the_lab_give_no_error_and_no_warning(
        fhir, lab_middleware, desk, biologist, web_root, rng) -> None:
    """A battery, a calculated eGFR, an INR, a censored CRP, an antériorité, a result not done
    and the biologist's conclusion, then a correction: each version passes the pipeline."""
    spec = addressed(rng, exams=[GLUCOSE])
    earlier = imported(fhir, desk, web_root, spec)
    decide(biologist, web_root, earlier, "biologique", [posted(lab_middleware, result(
        prescribed(fhir, earlier, GLUCOSE[0]), GLUCOSE[0], 5.4, "mmol/L", effectiveDateTime="2026-05-12T08:00:00+02:00"))])

    task_id = imported_for(fhir, desk, web_root, addressed(rng, exams=[NFS, GLUCOSE, KIDNEY, CRP, TP_INR],
                                                            patient=spec.patient))
    nfs, glucose, kidney, crp, tp_inr = (prescribed(fhir, task_id, code) for code, _ in (NFS, GLUCOSE, KIDNEY, CRP, TP_INR))
    censored = result(crp, CRP[0], 0.5, "mg/L")
    censored["valueQuantity"]["comparator"] = "<"
    ids = [posted(lab_middleware, body) for body in (
        result(nfs, "718-7", 13.2, "g/dL"), result(nfs, "6690-2", 11.8, "10*9/L"), result(nfs, "777-3", 254, "10*9/L"),
        result(glucose, GLUCOSE[0], 7.0, "mmol/L"), result(kidney, CREATININE, 80, "umol/L"), censored,
        result(tp_inr, INR, 2.6, "{INR}"), result(tp_inr, "5894-1", 35, "%"))]
    egfr = next(o["id"] for o in results_of(fhir, kidney) if o["code"]["coding"][0]["code"] == EGFR)
    assert decide(biologist, web_root, task_id, "annuler", [ids[-1]], commentaire="Tube coagulé").status_code == 200
    assert decide(biologist, web_root, task_id, "biologique", [*ids[:-1], egfr]).status_code == 200
    assert issue(biologist, web_root, task_id, conclusion="Anticoagulation efficace.").status_code == 200
    assert decide(biologist, web_root, task_id, "corriger", [ids[3]], valeur="6,8",
                  commentaire="Contrôle sur un second tube").status_code == 200
    assert issue(biologist, web_root, task_id).status_code == 200

    first, second = documents(fhir, task_id)
    for document in (first, second):
        cda = binary(fhir, document["content"][0]["attachment"])
        assert_conforms(cda)
    root = tree(cda)
    assert _observation(root, EGFR).xpath("h:value/@unit", namespaces=V3) == ["mL/min"]
    assert _observation(root, GLUCOSE[0]).xpath("h:entryRelationship[@typeCode='REFR']/h:observation/h:value/@value",
                                                namespaces=V3) == ["5.4"]
    assert _observation(root, "5894-1").xpath("h:statusCode/@code", namespaces=V3) == ["aborted"]
    assert root.xpath("h:relatedDocument/h:parentDocument/h:versionNumber/@value", namespaces=V3) == ["1"]
