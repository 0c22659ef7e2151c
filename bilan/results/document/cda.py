"""The CR-BIO document (CDA R2 level 3, CI-SIS volet CR-BIO 2024.01) of a LabReport: header,
one chapter section per LOINC chapter with its narrative table and its structured entry, the
biologist's adaptation of the prescription, and the mandatory PDF copy section.

Conformance, as the ANS checks it (CDA_extended.xsd and the kit's six schematrons), is checked
by `conformance.check`; every kind of report gives 0 errors and 0 warnings
(tests/test_ans_pipeline.py)."""

import base64
import re
import uuid
from datetime import datetime
from decimal import Decimal
from itertools import count
from typing import Any

from lxml import etree
from lxml.builder import ElementMaker

from bilan import french
from bilan.fhir.terminology import LOINC_OID
from bilan.results.desk import interpretation, typed
from bilan.results.document.report import (
    Address,
    Battery,
    Chapter,
    Code,
    Identifier,
    LabReport,
    Organization,
    Patient,
    Practitioner,
    Quantity,
    Result,
    Specimen,
)

V3 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
LAB = "urn:oid:1.3.6.1.4.1.19376.1.3.2"  # IHE XD-LAB extensions (lab:statusCode)
PRACTITIONER_ID = "1.2.250.1.71.4.2.1"  # IdNat_PS: "8" + RPPS
ORGANIZATION_ID = "1.2.250.1.71.4.2.2"  # IdNat_Struct: "1" + FINESS
CHAPTER_SECTION = "1.3.6.1.4.1.19376.1.3.3.2.1"
PDF_COPY_SECTION = "1.2.250.1.213.1.1.2.243"
TITLE = "Compte rendu d'examens biologiques"

_TYPE = f"{{{XSI}}}type"
_PRACTICE_SETTINGS = {"AMBULATOIRE": "Ambulatoire", "ETABLISSEMENT": "Etablissement de santé"}
_SEX = {"F": "Féminin", "M": "Masculin", "U": "Inconnu"}
# The CI-SIS administrative gender codes (JDV_J143): an unknown sex is UN.
_SEX_CODES = {"F": "F", "M": "M", "U": "UN"}
# The builder skips None children, so optional parts read inline.
E = ElementMaker(namespace=V3, nsmap={None: V3, "xsi": XSI, "lab": LAB},
                 typemap={type(None): lambda element, item: None})
L = ElementMaker(namespace=LAB)
_ANNOTATION = re.compile(r"\{[^}]*\}")
_KIT_READS = re.compile(r"\{.[a-z]*.\}")  # the annotations the ANS terminology check strips
_NUMBERED = re.compile(r"(\d+(?:\s*(?:bis|ter|quater|[A-Z])\b)?),?\s+(.+)", re.IGNORECASE)


def cda_document(report: LabReport) -> bytes:
    """The CR-BIO of a validated report, UTF-8 XML bytes."""
    root = E.ClinicalDocument(*_header(report), _body(report))
    document: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return document


# Header

def _header(report: LabReport) -> list[Any]:
    lab, biologist = report.lab, report.biologist
    return [
        E.realmCode(code="FR"),
        E.typeId(root="2.16.840.1.113883.1.3", extension="POCD_HD000040"),
        _template("2.16.840.1.113883.2.8.2.1"),  # HL7 France
        _template("1.2.250.1.213.1.1.1.1"),  # CI-SIS
        _template("1.3.6.1.4.1.19376.1.3.3"),  # IHE PALM laboratory report
        _template("1.2.250.1.213.1.1.1.55", "2024.01"),  # CR-BIO
        _ii("id", report.document_id),
        E.code(code="11502-2", displayName="CR d'examens biologiques", codeSystem=LOINC_OID,
               codeSystemName="LOINC"),
        E.title(TITLE),
        _ts("effectiveTime", report.effective_time),
        E.confidentialityCode(code="N", displayName="Normal", codeSystem="2.16.840.1.113883.5.25"),
        E.languageCode(code="fr-FR"),
        _ii("setId", report.set_id),
        E.versionNumber(value=str(report.version)),
        E.recordTarget(_patient_role(report.patient)),
        E.author(_ts("time", report.effective_time), E.assignedAuthor(*_professional(biologist, lab))),
        E.custodian(E.assignedCustodian(E.representedCustodianOrganization(
            *_organization_parts(report.custodian_organization, telecoms=1)))),
        E.legalAuthenticator(_ts("time", report.validated_at), E.signatureCode(code="S"),
                             E.assignedEntity(*_professional(biologist, lab, setting=True))),
        E.authenticator(_template("1.3.6.1.4.1.19376.1.3.3.1.5"), _ts("time", report.validated_at),
                        E.signatureCode(code="S"),
                        E.assignedEntity(*_professional(biologist, lab, setting=True))),
        _prescriber(report),
        _collector(report),
        E.inFulfillmentOf(E.order(_ii("id", report.order_id))),
        *_documentation_of(report),
        _replaced(report),
        _encounter(report),
    ]


def _patient_role(patient: Patient) -> Any:
    ids = [patient.file_id]
    if patient.ins_in_header and patient.ins:
        ids.insert(0, Identifier(_oid(patient.ins_system), patient.ins))
    telecom = [E.telecom(value=t) for t in patient.telecom] or [E.telecom(nullFlavor="UNK")]
    return E.patientRole(
        *[_ii("id", i) for i in ids],
        _addr(patient.address) if patient.address else E.addr(nullFlavor="UNK"),
        *telecom,
        E.patient(
            E.name(E.family(patient.birth_family, qualifier="BR"),
                   E.given(" ".join(patient.birth_given)),
                   E.given(patient.birth_given[0], qualifier="BR")),
            E.administrativeGenderCode(code=_SEX_CODES[patient.sex], displayName=_SEX[patient.sex],
                                       codeSystem="2.16.840.1.113883.5.1"),
            E.birthTime(value=patient.birth_date.strftime("%Y%m%d")),
            E.birthplace(E.place(E.addr(E.county(patient.birthplace)))) if patient.birthplace else None,
            classCode="PSN"))


def _professional(who: Practitioner, lab: Organization, setting: bool = False) -> list[Any]:
    """id, code, addr, telecom, person and organization: the shape shared by author,
    authenticators, performer and responsible party. A biologist is reached at the lab."""
    return [
        E.id(root=PRACTITIONER_ID, extension=f"8{who.rpps}"),
        _code("code", who.specialty) if who.specialty else None,
        _addr(lab.address),
        *[E.telecom(value=t, use="WP") for t in lab.telecom],
        E.assignedPerson(_person_name(who)),
        E.representedOrganization(*_organization_parts(lab, setting=setting)),
    ]


def _organization_parts(org: Organization, setting: bool = False, telecoms: int | None = None) -> list[Any]:
    """`telecoms`: how many the element allows (a custodian's organization has one)."""
    return [
        E.id(root=ORGANIZATION_ID, extension=f"1{org.finess}"),
        E.name(org.name),
        *[E.telecom(value=t, use="WP") for t in org.telecom[:telecoms]],
        _addr(org.address),
        E.standardIndustryClassCode(code=org.practice_setting,
                                    displayName=_PRACTICE_SETTINGS[org.practice_setting],
                                    codeSystem="1.2.250.1.213.1.1.4.9") if setting else None,
    ]


def _prescriber(report: LabReport) -> Any:
    # The participant's time is required (structuration minimale): unknown when the
    # prescription's date is.
    time = (E.time({_TYPE: "IVL_TS"}, _ts("high", report.prescribed_at))
            if report.prescribed_at else E.time({_TYPE: "IVL_TS"}, nullFlavor="UNK"))
    return E.participant(_template("1.3.6.1.4.1.19376.1.3.3.1.6"), time,
                         _associated(report.prescriber), typeCode="REF")


def _collector(report: LabReport) -> Any:
    if report.collector is None or not report.specimens:
        return None
    return E.participant(
        E.functionCode(code="PRELV", displayName="Préleveur", codeSystem="1.2.250.1.213.1.1.4.2.280"),
        E.time({_TYPE: "IVL_TS"}, _ts("high", min(s.collected_at for s in report.specimens))),
        _associated(report.collector), typeCode="PRF")


def _associated(who: Practitioner) -> Any:
    return E.associatedEntity(
        E.id(root=PRACTITIONER_ID, extension=f"8{who.rpps}"),
        _code("code", who.specialty) if who.specialty else None,
        E.associatedPerson(_person_name(who)),
        classCode="PROV")


def _documentation_of(report: LabReport) -> list[Any]:
    """The lab's request (first chapter, status, dates, executing lab), then one act per other
    chapter, as the PALM profile lists a report's specialties."""
    first, *others = report.chapters
    performer = E.performer(
        _template("1.3.6.1.4.1.19376.1.3.3.1.7"),
        _period("time", report.received_at, report.validated_at),
        E.assignedEntity(*_professional(report.biologist, report.lab, setting=True)),
        typeCode="PRF")
    main = E.serviceEvent(
        _ii("id", report.request_id) if report.request_id else None,
        _loinc("code", first.code, first.display),
        L.statusCode(code="completed" if report.complete else "active"),
        _period("effectiveTime", report.received_at, report.effective_time),
        performer)
    return [E.documentationOf(main)] + [
        E.documentationOf(E.serviceEvent(_loinc("code", c.code, c.display))) for c in others]


def _replaced(report: LabReport) -> Any:
    if report.replaces is None:
        return None
    return E.relatedDocument(
        # The structuration minimale allows the parent's id and version, not its setId
        # (which is this document's own).
        E.parentDocument(_ii("id", report.replaces), E.versionNumber(value=str(report.version - 1))),
        typeCode="RPLC")


def _encounter(report: LabReport) -> Any:
    started = min((s.collected_at for s in report.specimens), default=report.received_at)
    lab = report.lab
    return E.componentOf(E.encompassingEncounter(
        E.code(code="AMB", displayName="Ambulatoire (hors établissement)",
               codeSystem="2.16.840.1.113883.5.4"),
        E.effectiveTime(_ts("low", started)),
        E.responsibleParty(E.assignedEntity(*_professional(report.biologist, lab))),
        E.location(E.healthCareFacility(
            E.code(code="SA25", displayName="Laboratoire de biologie médicale",
                   codeSystem="1.2.250.1.71.4.2.4"),
            E.location(E.name(lab.name), _addr(lab.address))))))


# Body

def _body(report: LabReport) -> Any:
    ids = _Ids()
    sections = [_chapter_section(report, chapter, ids) for chapter in report.chapters]
    if report.conclusion or report.adaptation or report.forwarded:
        sections.append(_comment_section(report))
    sections.append(_pdf_section(report))
    return E.component(E.structuredBody(*[E.component(s) for s in sections]))


def _chapter_section(report: LabReport, chapter: Chapter, ids: "_Ids") -> Any:
    """Narrative and entry are built together so that each coded element points at its text."""
    rows: list[Any] = []
    entries: list[Any] = []
    heads = ["Examen", "Résultat", "Valeurs de référence", "Interprétation"]
    if any(r.earlier for item in chapter.items for r in (item.results if isinstance(item, Battery) else (item,))):
        heads.append("Antériorité")
    table = _Table(ids, len(heads))
    for item in chapter.items:
        entry, item_rows = (_battery(item, chapter, table) if isinstance(item, Battery)
                            else _result(item, chapter, table))
        entries.append(entry)
        rows.extend(item_rows)
    comment_id = ids.next("commentaire") if chapter.comment else None
    text = E.text(
        *[E.paragraph(_specimen_text(s)) for s in chapter.specimens],
        E.table(E.thead(E.tr(*[E.th(h) for h in heads])), E.tbody(*rows), border="0"),
        E.paragraph(chapter.comment, ID=comment_id) if comment_id else None,
        E.paragraph(f"Résultats validés par {_full_name(report.biologist)} le "
                    f"{_when(report.validated_at)}"))
    act = E.act(
        _loinc("code", chapter.code, chapter.display),
        E.statusCode(code="completed" if report.complete else "active"),
        *[E.entryRelationship(_specimen_procedure(report, s), typeCode="COMP") for s in chapter.specimens],
        *[E.entryRelationship(entry, typeCode="COMP") for entry in entries],
        E.entryRelationship(_comment_act(comment_id), typeCode="SUBJ") if comment_id else None,
        classCode="ACT", moodCode="EVN")
    return E.section(
        _template(CHAPTER_SECTION), _template("1.2.250.1.213.1.1.2.70"),
        _loinc("code", chapter.code, chapter.display),
        E.title(chapter.display),
        text,
        # A chapter holds one entry, or sub-chapter sections: never both (FR-CR-BIO-Chapitre).
        E.entry(_template("1.3.6.1.4.1.19376.1.3.1"), _template("1.2.250.1.213.1.1.3.21"), act,
                typeCode="DRIV"))


def _battery(battery: Battery, chapter: Chapter, table: "_Table") -> tuple[Any, list[Any]]:
    label = table.ids.next("batterie")
    rows = [E.tr(E.td(E.content(battery.display, ID=label), colspan=str(table.columns), styleCode="Bold"))]
    components = []
    for result in battery.results:
        observation, result_rows = _result(result, chapter, table)
        rows.extend(result_rows)
        components.append(E.component(observation))
    aborted = all(r.status == "aborted" for r in battery.results)
    organizer = E.organizer(
        _template("1.3.6.1.4.1.19376.1.3.1.4"), _template("1.2.250.1.213.1.1.3.78"),
        _loinc("code", battery.code, battery.display, reference=label),
        E.statusCode(code="aborted" if aborted else "completed"),
        *components, classCode="BATTERY", moodCode="EVN")
    return organizer, rows


def _result(result: Result, chapter: Chapter, table: "_Table") -> tuple[Any, list[Any]]:
    """The observation and its narrative rows (the result, then its comment if any)."""
    label = table.ids.next("resultat")
    flag_label = interpretation.LABELS.get(result.interpretation or "", "")
    cells = [E.td(E.content(result.display, ID=label)), E.td(value_text(result)),
             E.td(range_text(result)), E.td("" if result.interpretation == "N" else flag_label),
             E.td(earlier_text(result))]
    rows = [E.tr(*cells[:table.columns])]
    comment_id = None
    if result.comment:
        comment_id = table.ids.next("commentaire")
        rows.append(E.tr(E.td(E.content(result.comment, ID=comment_id, styleCode="Italics"),
                              colspan=str(table.columns))))
    observed = result.observed_at or min((s.collected_at for s in chapter.specimens), default=None)
    observation = E.observation(
        _template("1.3.6.1.4.1.19376.1.3.1.6"), _template("1.2.250.1.213.1.1.3.80"),
        _loinc("code", result.code, result.display, reference=label),
        E.statusCode(code=result.status),
        _ts("effectiveTime", observed) if observed else None,
        _value(result.value),
        E.interpretationCode(code=result.interpretation, displayName=flag_label,
                             codeSystem=interpretation.CODE_SYSTEM_OID) if result.interpretation else None,
        E.entryRelationship(_comment_act(comment_id), typeCode="SUBJ", inversionInd="true")
        if comment_id else None,
        _previous(result),
        _reference_range(result),
        classCode="OBS", moodCode="EVN")
    return observation, rows


def _value(value: Quantity | Code | str | None) -> Any:
    if isinstance(value, Quantity) and value.comparator:
        return _censored(value)
    if isinstance(value, Quantity):
        return E.value({_TYPE: "PQ"}, value=_decimal(value.value), **_unit(value.unit))
    if isinstance(value, Code):
        return E.value({_TYPE: "CD"}, code=value.code, displayName=value.display,
                       codeSystem=value.system)
    if isinstance(value, str):
        return E.value({_TYPE: "ST"}, value)
    return None


def _censored(value: Quantity) -> Any:
    """"<0.5" as CDA R2 says it: an interval with one bound, excluded for < and >, included for
    <= and >= (as the ANS CR-BIO examples write a MIC, "<0,128 µg/ml": IVL_PQ, high 0.128,
    inclusive false)."""
    bound = "high" if (value.comparator or "").startswith("<") else "low"
    inclusive = "true" if (value.comparator or "").endswith("=") else "false"
    return E.value({_TYPE: "IVL_PQ"}, E(bound, value=_decimal(value.value), inclusive=inclusive, **_unit(value.unit)))


def _reference_range(result: Result) -> Any:
    if not isinstance(result.value, Quantity) or (result.low is None and result.high is None):
        return None
    unit = result.value.unit
    bounds = [E(name, value=_decimal(bound), **_unit(unit))
              for name, bound in (("low", result.low), ("high", result.high)) if bound is not None]
    return E.referenceRange(E.observationRange(
        E.value({_TYPE: "IVL_PQ"}, *bounds),
        E.interpretationCode(code="N", displayName="Normal", codeSystem=interpretation.CODE_SYSTEM_OID),
        classCode="OBS", moodCode="EVN.CRT"), typeCode="REFV")


def _previous(result: Result) -> Any:
    """The antériorité: the patient's previous result of the analyte, a completed observation
    with its time (CR-BIO: REFR, effectiveTime required; one without a known time is only in
    the narrative). It has no result template: a reader looking for this report's results
    must not take it for one."""
    earlier = result.earlier
    if earlier is None or earlier.observed_at is None:
        return None
    return E.entryRelationship(E.observation(
        _loinc("code", result.code, result.display),
        E.statusCode(code="completed"),
        _ts("effectiveTime", earlier.observed_at),
        _value(earlier.value),
        classCode="OBS", moodCode="EVN"), typeCode="REFR")


def _unit(unit: str) -> dict[str, str]:
    """A PQ's unit attribute. The ANS terminology check reads UCUM from a fixed list and
    strips an annotation only when it is a lower-case word ({ratio}); an annotation it cannot
    strip ({INR}, {1.73_m2}) is left out, which UCUM allows (an annotation is unity: {INR} is
    1, mL/min/{1.73_m2} is mL/min), and a unit that is only an annotation is PQ's default 1,
    written as no unit. The LOINC code says what was measured; the narrative prints the lab's
    unit."""
    written = _ANNOTATION.sub(lambda m: m[0] if _KIT_READS.fullmatch(m[0]) else "", unit).rstrip("/.")
    return {"unit": written} if written else {}


def _specimen_procedure(report: LabReport, specimen: Specimen) -> Any:
    received = None
    if specimen.received_at:
        received = E.entryRelationship(E.act(
            _template("1.3.6.1.4.1.19376.1.3.1.3"), _template("1.2.250.1.213.1.1.3.107"),
            E.code(code="SPRECEIVE", displayName="Échantillon reçu",
                   codeSystem="1.3.5.1.4.1.19376.1.5.3.2", codeSystemName="IHEActCode"),
            _ts("effectiveTime", specimen.received_at),
            classCode="ACT", moodCode="EVN"), typeCode="COMP")
    return E.procedure(
        _template("1.3.6.1.4.1.19376.1.3.1.2"), _template("1.2.250.1.213.1.1.3.77"),
        _ts("effectiveTime", specimen.collected_at),
        E.participant(E.participantRole(
            _ii("id", specimen.id or _specimen_id(report, specimen)),
            E.playingEntity(_code("code", specimen.kind)),
            classCode="SPEC"), typeCode="PRD"),
        received,
        classCode="PROC", moodCode="EVN")


def _specimen_id(report: LabReport, specimen: Specimen) -> Identifier:
    """A specimen without its tube's number still has an id (IHE PaLM: required), the same in
    every version of the report."""
    seed = f"{report.set_id.root}|{report.set_id.extension}|{specimen.kind.code}|{specimen.collected_at.isoformat()}"
    return Identifier(str(uuid.uuid5(uuid.NAMESPACE_OID, seed)).upper())


def _comment_act(reference: str) -> Any:
    return E.act(
        _template("2.16.840.1.113883.10.20.1.40"), _template("1.3.6.1.4.1.19376.1.5.3.1.4.2"),
        _template("1.2.250.1.213.1.1.3.32"),
        _loinc("code", "48767-8", "Commentaire"),
        E.text(E.reference(value=f"#{reference}")),
        E.statusCode(code="completed"),
        classCode="ACT", moodCode="EVN")


def _comment_section(report: LabReport) -> Any:
    """FR-Commentaire-non-code, the one free-text level-1 section a CR-BIO allows: the
    biologist's conclusion, then what they changed in the prescription, then the exams sent to
    the partner lab."""
    parts: list[Any] = []
    if report.conclusion:
        parts.append(E.paragraph(E.content("Conclusion : ", styleCode="Bold"), report.conclusion))
    if report.adaptation:
        if report.conclusion:
            parts.append(E.paragraph(E.content("Adaptation de la prescription :", styleCode="Bold")))
        parts.extend(E.paragraph(line) for line in report.adaptation.splitlines() if line.strip())
    title = ("Conclusion du biologiste" if not report.adaptation
             else "Adaptation de la prescription par le biologiste" if not report.conclusion
             else "Conclusion et adaptation de la prescription par le biologiste")
    if report.forwarded:  # exams sent to the partner lab: which lab, and whether a result is to come
        sent = "Examens transmis à un laboratoire partenaire"
        if parts:
            parts.append(E.paragraph(E.content(f"{sent} :", styleCode="Bold")))
        parts.extend(E.paragraph(f.text) for f in report.forwarded)
        title = f"{title} ; {sent[0].lower()}{sent[1:]}" if report.conclusion or report.adaptation else sent
    return E.section(
        _template("1.3.6.1.4.1.19376.1.4.1.2.16"), _template("2.16.840.1.113883.10.12.201"),
        _template("1.2.250.1.213.1.1.2.73"),
        _loinc("code", "55112-7", "Commentaire"),
        E.title(title), E.text(*parts))


def _pdf_section(report: LabReport) -> Any:
    """FR-Document-PDF-copie: the printable report, base64, shown through renderMultiMedia."""
    def uid(part: str) -> Any:  # stable ids: the same report gives the same document
        seed = f"{report.document_id.root}|{report.document_id.extension}|{part}"
        return E.id(root=str(uuid.uuid5(uuid.NAMESPACE_OID, seed)).upper())

    return E.section(
        _template(PDF_COPY_SECTION), uid("section"),
        _loinc("code", "55108-5", "Copie du document"),
        E.title("Copie du document"),
        E.text(E.table(E.tbody(
            E.tr(E.td(E.content("Copie PDF du compte rendu", ID="copie-pdf-type"))),
            E.tr(E.td(E.renderMultiMedia(referencedObject="copie-pdf")))), border="0")),
        E.entry(E.organizer(
            _template("1.2.250.1.213.1.1.3.18"), uid("organizer"),
            _loinc("code", "55107-7", "Document attaché"),
            E.statusCode(code="completed"),
            E.component(E.observation(
                _template("1.3.6.1.4.1.19376.1.5.3.1.4.13"), _template("1.2.250.1.213.1.1.3.48"),
                _template("1.2.250.1.213.1.1.3.48.18"), uid("type"),
                _loinc("code", "69764-9", "Type de document"),
                E.text(E.reference(value="#copie-pdf-type")),
                E.statusCode(code="completed"),
                E.effectiveTime(nullFlavor="NA"),
                E.value({_TYPE: "CD"}, code="55108-5", displayName="Copie du document",
                        codeSystem=LOINC_OID, codeSystemName="LOINC"),
                classCode="OBS", moodCode="EVN")),
            E.component(E.observationMedia(
                E.value(base64.b64encode(report.pdf).decode("ascii"), mediaType="application/pdf",
                        representation="B64"),
                classCode="OBS", moodCode="EVN", ID="copie-pdf")),
            classCode="CLUSTER", moodCode="EVN")))


# Data types

def _template(root: str, extension: str | None = None) -> Any:
    return _ii("templateId", Identifier(root, extension))


def _ii(tag: str, identifier: Identifier) -> Any:
    attributes = {"root": identifier.root}
    if identifier.extension is not None:
        attributes["extension"] = identifier.extension
    return E(tag, **attributes)


def _ts(tag: str, moment: datetime) -> Any:
    """An instant as HL7 TS on Paris clocks with its offset (20261124140500+0100): every time
    of the document, header, entries and narrative, reads the same way."""
    return E(tag, value=french.in_paris(moment).strftime("%Y%m%d%H%M%S%z"))


def _period(tag: str, low: datetime, high: datetime) -> Any:
    """An interval from low to high; from low alone when high is not after it (a report issued
    when nothing says when the samples came): an interval's high must be after its low, and
    the service event's low is required."""
    if high.replace(microsecond=0) > low.replace(microsecond=0):
        return E(tag, _ts("low", low), _ts("high", high))
    return E(tag, _ts("low", low))


def _decimal(value: Decimal) -> str:
    """A PQ value: the digits given, a decimal point, no exponent."""
    return format(value, "f")


def _code(tag: str, code: Code) -> Any:
    return E(tag, code=code.code, displayName=code.display, codeSystem=code.system)


def _loinc(tag: str, code: str, display: str, reference: str | None = None) -> Any:
    original = E.originalText(E.reference(value=f"#{reference}")) if reference else None
    return E(tag, original, code=code, displayName=display, codeSystem=LOINC_OID, codeSystemName="LOINC")


def _addr(address: Address) -> Any:
    """An address in parts, as the structuration minimale wants it with a postal code and a
    city (it refuses streetAddressLine beside them): the line with the number and the street
    (the one that starts with a number, else the last), the others as one additional
    locator (building, floor...)."""
    lines = [line.strip() for line in address.lines if line.strip()]
    street = next((line for line in lines if line[0].isdigit()), lines[-1] if lines else None)
    others = [line for line in lines if line is not street]
    numbered = _NUMBERED.fullmatch(street) if street else None
    return E.addr(
        E.houseNumber(numbered[1]) if numbered else None,
        E.streetName(numbered[2] if numbered else street) if street else None,
        E.additionalLocator(", ".join(others)) if others else None,
        E.postalCode(address.postal_code), E.city(address.city))


def _person_name(who: Practitioner) -> Any:
    return E.name(E.given(who.given), E.family(who.family))


def _oid(system: str) -> str:
    return system.removeprefix("urn:oid:")


class _Ids:
    """Narrative ids, unique in the document (xs:ID)."""

    def __init__(self) -> None:
        self._counter = count(1)

    def next(self, prefix: str) -> str:
        return f"{prefix}-{next(self._counter)}"


class _Table:
    """A chapter's narrative table: the document's ids, and how many columns it has (the
    antériorités' only when one of its results has one)."""

    def __init__(self, ids: _Ids, columns: int) -> None:
        self.ids = ids
        self.columns = columns


# Narrative text (French, as printed)

def value_text(result: Result) -> str:
    value = result.value
    if isinstance(value, Quantity):
        return typed.comparator_text(value.comparator) + french.quantity(value.value, value.unit)
    if isinstance(value, Code):
        return value.display
    return value if isinstance(value, str) else "Non réalisé"


def earlier_text(result: Result) -> str:
    """The previous result and its day, as the lab prints antériorités."""
    earlier = result.earlier
    if earlier is None:
        return ""
    value = typed.comparator_text(earlier.value.comparator) + french.quantity(earlier.value.value, earlier.value.unit)
    return f"{value} ({french.date(earlier.observed_at)})" if earlier.observed_at else value


def range_text(result: Result) -> str:
    low, high = result.low, result.high
    if low is not None and high is not None:
        return f"{french.number(low)} – {french.number(high)}"
    if high is not None:
        return f"< {french.number(high)}"
    if low is not None:
        return f"> {french.number(low)}"
    return ""


def _specimen_text(specimen: Specimen) -> str:
    text = f"Prélèvement : {specimen.kind.display}, le {_when(specimen.collected_at)}"
    if specimen.received_at:
        text += f" ; reçu au laboratoire le {_when(specimen.received_at)}"
    return text


def _when(moment: datetime) -> str:
    return french.datetime(moment, at=True)


def _full_name(who: Practitioner) -> str:
    return french.professional_name(who.family, who.given)
