"""Reading CR-BIOs from other labs: the ANS examples, bilan's own documents read back, and the
documents that must be refused (not a CR-BIO, malformed, entity bombs)."""

import dataclasses
import re
import time
from datetime import timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from bilan.results.document.cda import cda_document
from bilan.results.document.report import Battery, Chapter, Code, Identifier, Quantity, Result
from bilan.results.elsewhere.cda_reading import (
    MAX_BYTES,
    TROD_CODE,
    Concept,
    Interval,
    Measure,
    ReadResult,
    UnreadableReport,
    Unstructured,
    read_cr_bio,
)
from tests.helpers import ANS_CDA_EXAMPLES
from tests.lab_reports import BILLION_LAUGHS, at, one_page_pdf, quantity, report
from tests.received_reports import SNOMED, level_one, self_presenting, trod_problems, trod_report

EXAMPLES = {p.name.removeprefix("BIO-CR-BIO_2024.01_").removesuffix(".xml"): p
            for p in ANS_CDA_EXAMPLES}
PLUS_ONE, PLUS_TWO = timezone(timedelta(hours=1)), timezone(timedelta(hours=2))
LOINC = "2.16.840.1.113883.6.1"


def example(name: str) -> bytes:
    return EXAMPLES[name].read_bytes()


def by_code(results: tuple[ReadResult, ...], code: str) -> list[ReadResult]:
    return [r for r in results if r.code == code]


# The ANS examples

@pytest.mark.parametrize("path", ANS_CDA_EXAMPLES, ids=lambda p: p.name)
def test_ans_examples_read_without_warnings(path: Path) -> None:
    assert read_cr_bio(path.read_bytes()).warnings == ()


def test_tsh_example_header() -> None:
    read = read_cr_bio(example("TSH_1"))
    assert read.document_id == Identifier("1.2.250.1.213.1.1.1.55.2024.9.1")
    assert read.set_id == Identifier("1.2.250.1.213.1.1.1.55.2024.9")
    assert read.version == 1
    assert read.effective_time.utcoffset() == timedelta(hours=1)
    assert read.effective_time.isoformat() == "2021-04-01T17:10:00+01:00"
    assert read.lab is not None
    assert (read.lab.finess, read.lab.name) == ("120459876", "Laboratoire des charmes")
    patient = read.patient
    assert (patient.ins, patient.ins_root) == ("279035121518989", "1.2.250.1.213.1.4.10")
    assert (patient.family, patient.given, patient.sex) == ("PAT-TROIS", ("DOMINIQUE", "MARIE-LOUISE"), "F")
    assert patient.birth_date.isoformat() == "1979-03-28"
    assert read.biologist is not None
    assert (read.biologist.rpps, read.biologist.family) == ("01234534765", "CAMPARINI")
    assert read.order_id == Identifier("1.2.250.1.213.1.1.9", "2014123456789")
    assert read.replaces is None


def test_tsh_example_results() -> None:
    results = read_cr_bio(example("TSH_1")).results
    assert [r.code for r in results] == ["3016-3", "3024-7"]
    tsh, ft4 = results
    assert tsh.value == Measure(Decimal("1.950"), "m[IU]/L")
    assert (tsh.low, tsh.high, tsh.range_unit) == (Decimal("0.270"), Decimal("4.200"), "m[IU]/L")
    assert (tsh.interpretation, tsh.status, tsh.chapter, tsh.battery) == ("N", "completed", "18719-5", None)
    assert tsh.comparable and tsh.loinc == "3016-3"
    assert tsh.display == "Thyréostimuline [Arbitraire/Volume] Sérum/Plasma ; Numérique"
    assert tsh.label == "Thyréostimuline (TSH)"
    assert tsh.observed_at.isoformat() == "2014-04-02T14:55:21+02:00"
    assert ft4.value == Measure(Decimal("7.67"), "pg/mL")
    assert (ft4.low, ft4.high, ft4.interpretation) == (Decimal("9.30"), Decimal("17.00"), "L")


def test_non_loinc_result_is_kept_but_not_comparable() -> None:
    (crp,) = read_cr_bio(example("CRP_non_LOINC")).results
    assert not crp.comparable and crp.loinc is None
    assert (crp.code, crp.system) == ("1234", "1.2.250.1.2.3.4")
    assert crp.display == "C Réactive protéine [Masse/Volume] Sérum/Plasma ; Numérique"
    assert crp.label == "CRP"
    # "< 1,0 mg/L": the value itself is an interval
    assert crp.value == Interval(None, Decimal("1.0"), "mg/L", high_inclusive=True)
    assert (crp.low, crp.high, crp.range_unit) == (None, Decimal("5.0"), "mg/L")


def test_microbiology_example() -> None:
    read = read_cr_bio(example("Microbiologie_V2"))
    results = read.results
    assert len(results) == 14
    assert (read.version, read.replaces) == (2, Identifier("1.2.250.1.213.1.1.1.55.12345.13"))
    assert all(r.chapter == "18725-2" and r.comparable for r in results)

    (colour,) = by_code(results, "5778-6")
    assert colour.value == Concept(None, None, None, "paille")  # text only, no code
    assert colour.battery == Concept("4", "2.16.840.1.113883.5.84", "Examen macroscopique",
                                     "Examen macroscopique")
    (gram,) = by_code(results, "653-6")
    assert gram.value == Concept(None, None, None, "nombreux Gram - ; quelques Gram +")
    (leucocytes,) = by_code(results, "30405-5")
    assert leucocytes.value == Measure(Decimal(500), "/mL")

    counts = by_code(results, "51480-2")
    assert [(c.isolate.code, c.value) for c in counts] == [
        ("112283007", Measure(Decimal(120000), "/mL")),
        ("58800005", Measure(Decimal(200000), "/mL"))]
    assert all(c.battery is None for c in counts)

    amoxicillin = by_code(results, "20-8")[0]
    assert amoxicillin.isolate.text == "Escherichia coli"
    assert amoxicillin.battery.code == "18769-0"
    assert amoxicillin.value == Interval(Decimal("0.512"), None, "ug/mL")
    assert amoxicillin.interpretation == "R"
    ampicillin = by_code(results, "28-1")[0]
    assert ampicillin.value == Interval(None, Decimal("0.128"), "ug/mL", high_inclusive=False)
    assert ampicillin.interpretation == "I"


# bilan's own documents

def expected(result: Result, chapter: Chapter, battery: Battery | None) -> tuple[object, ...]:
    value = result.value
    if isinstance(value, Quantity):
        value = Measure(value.value, value.unit)
    elif isinstance(value, Code):
        value = Concept(value.code, value.system, value.display)
    observed = result.observed_at or min(s.collected_at for s in chapter.specimens)
    return (result.code, LOINC, result.display, result.display, True, chapter.code,
            battery.code if battery else None, value, result.interpretation, result.low,
            result.high, result.status, result.comment, observed)


def as_read(result: ReadResult) -> tuple[object, ...]:
    return (result.code, result.system, result.display, result.label, result.comparable,
            result.chapter, result.battery.code if result.battery else None, result.value,
            result.interpretation, result.low, result.high, result.status, result.comment,
            result.observed_at)


def written(chapters: tuple[Chapter, ...]) -> list[tuple[object, ...]]:
    rows = []
    for chapter in chapters:
        for item in chapter.items:
            if isinstance(item, Battery):
                rows += [expected(r, chapter, item) for r in item.results]
            else:
                rows.append(expected(item, chapter, None))
    return rows


def test_generated_report_reads_back_equal() -> None:
    source = report()
    urine = dataclasses.replace(source.chapters[1].specimens[0],
                                kind=Code("UR", "Urine", "2.16.840.1.113883.18.311"))
    more = Chapter("18729-4", "Urines", (
        Result("5803-2", "pH urinaire", None, status="aborted"),
        Result("1988-5", "Aspect", "trouble", observed_at=at(10, 9, 0)),
    ), specimens=(urine,))
    source = dataclasses.replace(source, chapters=(*source.chapters, more))
    read = read_cr_bio(cda_document(source))

    assert read.warnings == ()
    assert [as_read(r) for r in read.results] == written(source.chapters)
    assert (read.document_id, read.set_id, read.version) == (source.document_id, source.set_id, 1)
    assert read.effective_time == source.effective_time
    assert read.lab.finess == source.lab.finess
    assert (read.patient.ins, read.patient.family, read.patient.given) == (
        source.patient.ins, source.patient.birth_family, source.patient.birth_given)
    assert read.patient.birth_date == source.patient.birth_date
    assert read.biologist.rpps == source.biologist.rpps
    assert read.biologist.validated_at == source.validated_at
    assert read.order_id == source.order_id


# What is refused, and what is only warned about

def test_other_cda_document_is_refused() -> None:
    not_cr_bio = example("TSH_1").replace(b'root="1.2.250.1.213.1.1.1.55"', b'root="1.2.250.1.213.1.1.1.5"')
    with pytest.raises(UnreadableReport, match="not a CR-BIO: no templateId 1.2.250.1.213.1.1.1.55"):
        read_cr_bio(not_cr_bio)
    wrong_code = example("TSH_1").replace(b'code="11502-2"', b'code="34133-9"', 1)
    with pytest.raises(UnreadableReport, match="document code is 34133-9"):
        read_cr_bio(wrong_code)
    with pytest.raises(UnreadableReport, match="not a CDA document"):
        read_cr_bio(b"<note><to>Tove</to></note>")


def test_malformed_document_is_refused() -> None:
    truncated = example("TSH_1")[:5000]
    with pytest.raises(UnreadableReport, match=r"not well-formed XML \(line \d+\)"):
        read_cr_bio(truncated)
    with pytest.raises(UnreadableReport, match="over the"):
        read_cr_bio(b" " * (MAX_BYTES + 1))


def test_entity_bomb_is_refused_without_expanding() -> None:
    started = time.perf_counter()
    with pytest.raises(UnreadableReport, match="DOCTYPE"):
        read_cr_bio(BILLION_LAUGHS)
    assert time.perf_counter() - started < 1


def test_external_entity_is_never_read() -> None:
    xxe = (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&x;</title></ClinicalDocument>')
    with pytest.raises(UnreadableReport, match="DOCTYPE") as refused:
        read_cr_bio(xxe)
    assert "root:" not in refused.value.reason


def test_imperfect_document_reads_with_warnings() -> None:
    imperfect = (example("TSH_1")
                 .replace(b'<effectiveTime value="20210401171000+0100"/>',
                          b'<effectiveTime value="20210401171000"/>')
                 .replace(b'<versionNumber value="1"/>', b""))
    read = read_cr_bio(imperfect)
    assert read.effective_time.isoformat() == "2021-04-01T17:10:00+02:00"  # Paris, summer time
    assert len(read.results) == 2 and read.version is None
    assert "document effectiveTime: '20210401171000' has no UTC offset, read as Europe/Paris time" \
        in read.warnings
    assert any(w.startswith("not conformant: error ") for w in read.warnings)
    assert not any(w.startswith("not conformant") for w in read_cr_bio(imperfect, check=False).warnings)


def test_times_keep_their_offset() -> None:
    crp = read_cr_bio(example("CRP_non_LOINC"), check=False).results[0]
    assert crp.observed_at.tzinfo == PLUS_TWO
    assert read_cr_bio(example("TSH_1"), check=False).effective_time.tzinfo == PLUS_ONE


# What else a lab receives: point-of-care tests, auto-présentable and level-1 reports

def test_a_trod_report_reads_as_results_with_their_interpretation_and_day() -> None:
    read = read_cr_bio(trod_report(), check=False)
    assert (read.code, read.title, read.unstructured) == (TROD_CODE, "Test rapide d'orientation diagnostique", None)
    assert read.warnings == ()
    assert (read.lab.finess, read.lab.name) == ("750001234", "Pharmacie du Marché")
    glucose, covid, flu = read.results
    assert (glucose.code, glucose.label, glucose.chapter) == ("41653-7", "Glycémie capillaire", "18719-5")
    assert glucose.value == Measure(Decimal("1.250"), "g/L") and str(glucose.value.value) == "1.250"
    assert glucose.interpreted == Concept("80394007", SNOMED, "hyperglycémie")  # not HL7's H/L/N
    assert glucose.observed_at.isoformat() == "2025-03-10T09:30:00+01:00" and glucose.observed_on is None
    assert covid.value == Concept("260385009", SNOMED, "négatif", "négatif")
    assert flu.value == Concept("10828004", SNOMED, "positif", "positif")
    assert (covid.observed_on, flu.observed_on) == ("2025-03-10", "2025-03-10")  # a day, not midnight
    assert all(r.comparable and r.battery is None for r in read.results)


def test_my_trod_report_passes_the_kits_schema_and_trod_schematron() -> None:
    """The TROD document the tests use is one the ANS kit accepts, and the check can fail."""
    assert trod_problems(trod_report()) == []
    no_device = re.sub(rb'<participant typeCode="DEV">.*?</participant>', b"", trod_report(), flags=re.S)
    assert any("DEV" in p or "dispositif" in p for p in trod_problems(no_device))


def test_a_self_presenting_report_reads_as_the_cda_inside_it() -> None:
    cda = cda_document(report())
    wrapped = self_presenting(cda)
    assert wrapped.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<?xml-stylesheet')
    read, plain = read_cr_bio(wrapped), read_cr_bio(cda)
    assert read.self_presenting and not plain.self_presenting
    assert read.warnings == ()  # the CDA inside is checked, and conforms
    assert dataclasses.replace(read, self_presenting=False) == plain
    empty = wrapped.replace(b"<data:Contenu>", b"<data:Autre>").replace(b"</data:Contenu>", b"</data:Autre>")
    with pytest.raises(UnreadableReport, match="auto-présentable document: it should hold one ClinicalDocument"):
        read_cr_bio(empty)


def test_a_level_one_report_keeps_its_pdf_and_has_no_result() -> None:
    source = report()
    read = read_cr_bio(level_one(cda_document(source), one_page_pdf()))
    assert read.unstructured == Unstructured("application/pdf", one_page_pdf())
    assert read.results == () and read.warnings == ()
    assert (read.document_id, read.code, read.patient.ins) == (source.document_id, "11502-2", source.patient.ins)
    assert read.biologist.rpps == source.biologist.rpps
    not_base64 = re.sub(rb'(representation="B64">)[^<]+', rb"\1@@not base64@@", level_one(cda_document(source), b"%PDF"))
    with pytest.raises(UnreadableReport, match="nonXMLBody text is not base64"):
        read_cr_bio(not_base64)


def test_a_trod_code_without_its_template_is_refused() -> None:
    wrong = trod_report().replace(b'root="1.2.250.1.213.1.1.1.59"', b'root="1.2.250.1.213.1.1.1.5"')
    with pytest.raises(UnreadableReport, match="not a BIO-TROD: no templateId 1.2.250.1.213.1.1.1.59"):
        read_cr_bio(wrong)


def test_code_less_batteries_stay_apart_and_grouped() -> None:
    source = report()
    haematology = source.chapters[0]
    twice = Chapter(haematology.code, haematology.display,
                    (*haematology.items, Battery("24360-0", "Hémoglobine et hématocrite", (
                        quantity("4544-3", "Hématocrite", "41.0", "%", "36.0", "46.0"),))),
                    specimens=haematology.specimens)
    cda = cda_document(dataclasses.replace(source, chapters=(twice, *source.chapters[1:])))
    document = etree.fromstring(cda)
    codes = document.xpath("//h:organizer[@classCode='BATTERY']/h:code", namespaces={"h": "urn:hl7-org:v3"})
    assert len(codes) == 2
    for code in codes:
        code.getparent().remove(code)
    results = read_cr_bio(etree.tostring(document), check=False).results
    numbers = [r.battery_number for r in results if r.battery is not None]
    assert len(numbers) == 4 and len(set(numbers)) == 2  # three in the blood count, one apart
    assert {r.battery for r in results if r.battery is not None} == {Concept(None, None, None)}


def test_a_day_precision_time_is_kept_to_the_day_without_warning() -> None:
    dated = example("TSH_1").replace(b'<effectiveTime value="20140402145521+0200"/>',
                                     b'<effectiveTime value="20140402"/>', 1)
    read = read_cr_bio(dated, check=False)
    tsh = by_code(read.results, "3016-3")[0]
    assert (tsh.observed_on, tsh.observed_at.isoformat()) == ("2014-04-02", "2014-04-02T00:00:00+02:00")
    assert read.warnings == ()
