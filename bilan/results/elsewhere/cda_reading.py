"""Reading a lab report that someone else produced, so that a patient's history spans labs:
`read_cr_bio(document) -> ReadReport`, a typed extract independent of FHIR and of bilan's own
`LabReport` (which only describes what bilan issues and refuses what it would not write).

What it reads (docs/cda.md, "Reading CR-BIOs from other labs"):
- a CR-BIO 2024.01 (templateId 1.2.250.1.213.1.1.1.55, code 11502-2) with a structured body;
- a BIO-TROD 2024.01 point-of-care test report (templateId 1.2.250.1.213.1.1.1.59, code
  96173-0), whose results are laid out as a CR-BIO's;
- a level-1 CR-BIO (code 11502-2, a `nonXMLBody`, usually a PDF): its header and its file, no
  result;
- either of the first two "auto-présentable": the CDA inside an XSL stylesheet
  (`data:Contenu/ClinicalDocument`), which is read and the stylesheet ignored.

What is fatal and what is a warning: a document that cannot be parsed safely, or is none of the
above, or lacks what makes it a report at all (id, effectiveTime, patient), raises
`UnreadableReport`. Anything else imperfect (schema or schematron problems, a time without its
UTC offset, a unit bilan does not know) is kept as a warning: a report from elsewhere may be
imperfect and still worth showing in a history.
"""

import base64
import binascii
from copy import deepcopy
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

from lxml import etree

from bilan.fhir.terminology import LOINC_OID
from bilan.french import PARIS
from bilan.results.desk import units
from bilan.results.document import Identifier, conformance

V3 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSI_TYPE = f"{{{XSI}}}type"
CR_BIO_TEMPLATE = "1.2.250.1.213.1.1.1.55"
CR_BIO_CODE = "11502-2"
TROD_TEMPLATE = "1.2.250.1.213.1.1.1.59"  # BIO-TROD 2024.01, a point-of-care test report
TROD_CODE = "96173-0"
XSL = "http://www.w3.org/1999/XSL/Transform"
# An auto-présentable document: an XSL stylesheet holding the CDA in data:Contenu.
SELF_PRESENTING = f"{{urn:asip-sante:ci-sis}}Contenu/{{{V3}}}ClinicalDocument"
INS_ROOTS = ("1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9", "1.2.250.1.213.1.4.10",
             "1.2.250.1.213.1.4.11")  # NIR, NIA, test NIR, demo NIR
PRACTITIONER_ID = "1.2.250.1.71.4.2.1"  # "8" + RPPS
ORGANIZATION_ID = "1.2.250.1.71.4.2.2"  # "1" + FINESS
CHAPTER_SECTION = "1.3.6.1.4.1.19376.1.3.3.2.1"
RESULT_OBSERVATION = "1.3.6.1.4.1.19376.1.3.1.6"
ISOLATE_ORGANIZER = "1.3.6.1.4.1.19376.1.3.1.5"
ITEM_SECTION = "1.3.6.1.4.1.19376.1.3.3.2.2"  # a level-2 section: one exam of a chapter
COMMENT_CODE = "48767-8"  # LOINC "Commentaire": a comment act (FR-Commentaire-ER)
COMMENT_SECTION = "55112-7"  # the free-text comment section (FR-Commentaire-non-code)
INTERPRETATION_OID = "2.16.840.1.113883.5.83"  # HL7 ObservationInterpretation
# libxml2 refuses a text node over 10 MB without huge_tree, which the PDF copy must fit in.
MAX_BYTES = 10 * 1024 * 1024
# What a time without offset is taken to mean: CR-BIOs reaching bilan come from French labs.
ASSUMED_ZONE = PARIS

_NS = {"h": V3}
_DOCTYPE = tuple("<!DOCTYPE".encode(codec) for codec in ("utf-8", "utf-16-le", "utf-16-be"))
_NO_DOCTYPE = ("the document has a DOCTYPE, which a CDA document never has "
               "(its entity declarations could expand without bound or read local files)")


class UnreadableReport(ValueError):
    """Not a CR-BIO bilan can read; `reason` says why, in words a user can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Concept:
    """A coded element as the lab sent it: code and system may be absent when only the printed
    text is given (the microbiology examples' CD values)."""
    code: str | None
    system: str | None
    display: str | None
    text: str | None = None  # the narrative text its originalText points at


@dataclass(frozen=True)
class Measure:  # PQ (INT and REAL read with unit "1")
    value: Decimal
    unit: str  # UCUM as the lab wrote it


@dataclass(frozen=True)
class Interval:  # IVL_PQ as a value: "< 1.0 mg/L", a MIC "<= 0.128 ug/mL"
    low: Decimal | None
    high: Decimal | None
    unit: str | None
    low_inclusive: bool = True
    high_inclusive: bool = True


Value = Measure | Interval | Concept | str | None


@dataclass(frozen=True)
class ReadResult:
    code: str | None  # LOINC when `comparable`, else the lab's local code
    system: str | None  # OID of the code system
    display: str | None  # the code's displayName (CI-SIS: the French LOINC label)
    label: str | None  # what the lab printed (narrative text of originalText)
    comparable: bool  # LOINC-coded: the same analyte in any lab's report
    chapter: str | None  # LOINC chapter of the level-1 section
    battery: Concept | None  # the organizer (BATTERY) it sits in, if any: its code, else the exam's
    isolate: Concept | None  # the organism of a microbiology isolate, if any
    value: Value
    interpretation: str | None  # its code: HL7 ObservationInterpretation, or as `interpreted` says
    low: Decimal | None  # reference range
    high: Decimal | None
    range_unit: str | None
    observed_at: datetime | None  # the start of `observed_on` when the lab gave a day only
    status: str | None  # completed, aborted, active...
    comment: str | None = None
    battery_number: int | None = None  # which organizer of the document: tells batteries apart
    interpreted: Concept | None = None  # the whole interpretationCode (a TROD's may be SNOMED CT)
    observed_on: str | None = None  # a time given to the day, month or year: YYYY[-MM[-DD]]

    @property
    def loinc(self) -> str | None:
        return self.code if self.comparable else None


@dataclass(frozen=True)
class Lab:
    id: Identifier | None
    finess: str | None  # from an IdNat_Struct "1" + FINESS
    name: str | None


@dataclass(frozen=True)
class ReadPatient:
    ids: tuple[Identifier, ...]  # every patientRole/id, INS first when the lab put it first
    ins: str | None
    ins_root: str | None  # one of INS_ROOTS
    family: str | None  # birth name
    given: tuple[str, ...]  # birth given names
    sex: str | None  # F, M, or None (nullFlavor)
    birth_date: date | None


@dataclass(frozen=True)
class Biologist:
    id: Identifier | None
    rpps: str | None  # from an IdNat_PS "8" + RPPS
    family: str | None
    given: str | None
    validated_at: datetime | None


@dataclass(frozen=True)
class Unstructured:
    """A level-1 body (nonXMLBody): the report as a file (a PDF), with no result to read."""
    media_type: str
    data: bytes


@dataclass(frozen=True)
class Comment:
    """The biologist's words beside the results: a chapter's comment (its comment act, not one
    result's), or the report's free-text comment section (conclusion...) when `chapter` is None."""
    chapter: str | None  # LOINC chapter code
    title: str | None  # the comment section's title
    text: str  # its paragraphs, one a line


@dataclass(frozen=True)
class ReadReport:
    document_id: Identifier
    set_id: Identifier | None
    version: int | None
    effective_time: datetime
    lab: Lab | None  # the author's organisation
    patient: ReadPatient
    biologist: Biologist | None  # the legal authenticator
    order_id: Identifier | None  # inFulfillmentOf/order: the prescription
    replaces: Identifier | None  # RPLC parent document
    results: tuple[ReadResult, ...]
    warnings: tuple[str, ...]  # non-conformance and oddities, in document order
    code: str = CR_BIO_CODE  # the document's LOINC type: CR_BIO_CODE or TROD_CODE
    title: str | None = None
    unstructured: Unstructured | None = None  # the file of a level-1 document
    self_presenting: bool = False  # the CDA came inside an XSL stylesheet
    comments: tuple[Comment, ...] = ()  # in document order


def read_cr_bio(document: bytes, check: bool = True) -> ReadReport:
    """The extract of a lab report (CR-BIO, BIO-TROD, level-1 CR-BIO). `check` runs the ANS
    schema and the CR-BIO pipeline on a CR-BIO (not on a TROD or a level-1 one, whose
    volets bilan does not ship) and lists their problems in `warnings`; it never refuses a
    document."""
    outer = _parse(document)
    root = _clinical_document(outer)
    code = _require_lab_report(root)
    warnings: list[str] = []
    if check and code == CR_BIO_CODE and _body(root) is not None:
        cda = document if root is outer else _standalone(root)
        warnings = [f"not conformant: {p}" for p in conformance.problems(cda)]
    reader = _Reader(root, warnings)
    return reader.report(code, self_presenting=root is not outer)


# Parsing

def _parse(document: bytes) -> etree._Element:
    if len(document) > MAX_BYTES:
        raise UnreadableReport(f"the document is {len(document)} bytes, over the "
                               f"{MAX_BYTES} bytes bilan reads")
    # Refused before parsing: libxml2 would start expanding an entity bomb before its own
    # amplification limit stops it. A CDA document has no DTD, so this costs no real document.
    if any(marker in document for marker in _DOCTYPE):
        raise UnreadableReport(_NO_DOCTYPE)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False,
                             load_dtd=False, dtd_validation=False)
    try:
        root = etree.fromstring(document, parser)
    except etree.XMLSyntaxError as error:
        raise UnreadableReport(f"not well-formed XML (line {error.lineno}): {error.msg}") from None
    if root.getroottree().docinfo.doctype:  # in an encoding the byte search does not cover
        raise UnreadableReport(_NO_DOCTYPE)
    return root


def _clinical_document(root: etree._Element) -> etree._Element:
    """The CDA: the root, or the one inside an auto-présentable document's stylesheet."""
    if root.tag in (f"{{{XSL}}}stylesheet", f"{{{XSL}}}transform"):
        inside = root.findall(SELF_PRESENTING)
        if len(inside) != 1:
            raise UnreadableReport(
                "an XSL stylesheet that is not an auto-présentable document: it should hold one "
                f"ClinicalDocument in data:Contenu, and holds {len(inside)}")
        return inside[0]
    if root.tag != f"{{{V3}}}ClinicalDocument":
        raise UnreadableReport(f"not a CDA document: the root element is {root.tag}, "
                               f"not {{{V3}}}ClinicalDocument")
    return root


def _standalone(cda: etree._Element) -> bytes:
    """The CDA of an auto-présentable document as a document of its own, in the default
    namespace: its xsi:type values ("PQ", "IVL_TS") name CDA types only there."""
    copy = etree.Element(cda.tag, nsmap={None: V3, "xsi": XSI})
    for name, value in cda.attrib.items():
        copy.set(name, value)
    copy.extend(deepcopy(child) for child in cda)
    standalone: bytes = etree.tostring(copy, xml_declaration=True, encoding="utf-8")
    return standalone


def _require_lab_report(root: etree._Element) -> str:
    """The document's type (CR_BIO_CODE or TROD_CODE), once it is one bilan reads."""
    templates = root.xpath("h:templateId/@root", namespaces=_NS)
    code = root.find("h:code", _NS)
    found = "none" if code is None else f"{code.get('code')} in {code.get('codeSystem')}"
    kind = code.get("code") if code is not None and code.get("codeSystem") == LOINC_OID else None
    # A level-1 CR-BIO (the ANS's own example) declares the unstructured-document template
    # rather than the CR-BIO one: its code says what it is.
    if kind == CR_BIO_CODE and (CR_BIO_TEMPLATE in templates or _body(root) is None):
        return CR_BIO_CODE
    if kind == TROD_CODE and TROD_TEMPLATE in templates:
        return TROD_CODE
    if kind not in (CR_BIO_CODE, TROD_CODE):
        raise UnreadableReport(f"not a lab report: the document code is {found}, not LOINC "
                               f"{CR_BIO_CODE} (CR-BIO) or {TROD_CODE} (BIO-TROD)")
    template = CR_BIO_TEMPLATE if kind == CR_BIO_CODE else TROD_TEMPLATE
    volet = "a CR-BIO" if kind == CR_BIO_CODE else "a BIO-TROD"
    raise UnreadableReport(f"not {volet}: no templateId {template} "
                           f"(found {', '.join(templates) or 'none'})")


def _body(root: etree._Element) -> etree._Element | None:
    """The structured body; None for a level-1 document (nonXMLBody)."""
    return root.find("h:component/h:structuredBody", _NS)


class _Reader:
    def __init__(self, root: etree._Element, warnings: list[str]) -> None:
        self.root = root
        self.warnings = warnings
        self.texts = {e.get("ID"): " ".join("".join(e.itertext()).split())
                      for e in root.iter() if isinstance(e.tag, str) and e.get("ID")}
        self.organizers = {e: n for n, e in enumerate(root.iter(f"{{{V3}}}organizer"))}

    def report(self, code: str, self_presenting: bool) -> ReadReport:
        root = self.root
        document_id = _identifier(root.find("h:id", _NS))
        if document_id is None:
            raise UnreadableReport("the document has no id")
        effective = self.time(root.find("h:effectiveTime", _NS), "document effectiveTime")
        if effective is None:
            raise UnreadableReport("the document has no effectiveTime")
        version = root.find("h:versionNumber", _NS)
        unstructured = self.unstructured() if _body(root) is None else None
        return ReadReport(
            document_id=document_id,
            set_id=_identifier(root.find("h:setId", _NS)),
            version=self.integer(version.get("value") if version is not None else None),
            effective_time=effective,
            lab=_lab(root.find("h:author/h:assignedAuthor/h:representedOrganization", _NS)),
            patient=self.patient(),
            biologist=self.biologist(),
            order_id=_identifier(root.find("h:inFulfillmentOf/h:order/h:id", _NS)),
            replaces=_identifier(root.find(
                "h:relatedDocument[@typeCode='RPLC']/h:parentDocument/h:id", _NS)),
            results=tuple(self.results()) if unstructured is None else (),
            warnings=tuple(self.warnings),
            code=code, title=_first_text(root, "h:title"), unstructured=unstructured,
            self_presenting=self_presenting, comments=tuple(self.comments()) if unstructured is None else ())

    def unstructured(self) -> Unstructured:
        text = self.root.find("h:component/h:nonXMLBody/h:text", _NS)
        if text is None:
            raise UnreadableReport("the document has neither a structuredBody nor a nonXMLBody/text")
        media = text.get("mediaType", "text/plain")
        if text.get("representation") != "B64":  # plain text, or a reference to a file elsewhere
            if text.find("h:reference", _NS) is not None:
                raise UnreadableReport("the nonXMLBody refers to a file outside the document, "
                                       "which bilan cannot keep")
            return Unstructured(media, "".join(text.itertext()).encode("utf-8"))
        try:
            data = base64.b64decode("".join("".join(text.itertext()).split()), validate=True)
        except (binascii.Error, ValueError):
            raise UnreadableReport("the nonXMLBody text is not base64") from None
        return Unstructured(media, data)

    # Header

    def patient(self) -> ReadPatient:
        role = self.root.find("h:recordTarget/h:patientRole", _NS)
        if role is None:
            raise UnreadableReport("the document has no recordTarget/patientRole")
        ids = tuple(i for i in map(_identifier, role.findall("h:id", _NS)) if i is not None)
        ins = next((i for i in ids if i.root in INS_ROOTS), None)
        person = role.find("h:patient", _NS)
        name = person.find("h:name", _NS) if person is not None else None
        family = given = None
        if name is not None:
            family = _first_text(name, "h:family[@qualifier='BR']", "h:family")
            given = _first_text(name, "h:given[not(@qualifier)]", "h:given[@qualifier='BR']")
        sex = person.find("h:administrativeGenderCode", _NS) if person is not None else None
        birth = person.find("h:birthTime", _NS) if person is not None else None
        return ReadPatient(
            ids=ids, ins=ins.extension if ins else None, ins_root=ins.root if ins else None,
            family=family, given=tuple(given.split()) if given else (),
            sex=sex.get("code") if sex is not None else None,
            birth_date=self.birth_date(birth.get("value") if birth is not None else None))

    def biologist(self) -> Biologist | None:
        legal = self.root.find("h:legalAuthenticator", _NS)
        if legal is None:
            return None
        entity = legal.find("h:assignedEntity", _NS)
        ident = _identifier(entity.find("h:id", _NS)) if entity is not None else None
        name = entity.find("h:assignedPerson/h:name", _NS) if entity is not None else None
        return Biologist(
            id=ident, rpps=_national(ident, PRACTITIONER_ID, "8"),
            family=_first_text(name, "h:family") if name is not None else None,
            given=_first_text(name, "h:given") if name is not None else None,
            validated_at=self.time(legal.find("h:time", _NS), "legalAuthenticator time"))

    # Body

    def results(self) -> list[ReadResult]:
        found = []
        for section in self.root.xpath(
                "h:component/h:structuredBody/h:component/h:section"
                f"[h:templateId/@root='{CHAPTER_SECTION}']", namespaces=_NS):
            chapter = section.find("h:code", _NS)
            # A previous result (antériorité, REFR) is not one of this report's.
            observations = section.xpath(
                f".//h:observation[h:templateId/@root='{RESULT_OBSERVATION}']"
                "[not(parent::h:entryRelationship[@typeCode='REFR'])]", namespaces=_NS)
            found += [self.result(o, chapter.get("code") if chapter is not None else None)
                      for o in observations]
        return found

    def comments(self) -> list[Comment]:
        found = []
        for section in self.root.xpath("h:component/h:structuredBody/h:component/h:section", namespaces=_NS):
            code = section.find("h:code", _NS)
            chapter = code.get("code") if code is not None else None
            if chapter == COMMENT_SECTION:
                text = section.find("h:text", _NS)
                paragraphs = [] if text is None else text.findall("h:paragraph", _NS) or [text]
                said = "\n".join(line for line in (" ".join("".join(p.itertext()).split()) for p in paragraphs) if line)
                if said:
                    found.append(Comment(None, _first_text(section, "h:title"), said))
            elif section.xpath(f"h:templateId/@root='{CHAPTER_SECTION}'", namespaces=_NS):
                for reference in section.xpath(
                        f".//h:act[h:code/@code='{COMMENT_CODE}'][not(ancestor::h:observation)]/h:text/h:reference",
                        namespaces=_NS):
                    remark = self.reference(reference)
                    if remark:
                        found.append(Comment(chapter, None, remark))
        return found

    def result(self, observation: etree._Element, chapter: str | None) -> ReadResult:
        code = self.concept(observation.find("h:code", _NS))
        comparable = code is not None and code.system == LOINC_OID and code.code is not None
        where = code.code if code and code.code else f"line {observation.sourceline}"
        low, high, range_unit = self.reference_range(observation, where)
        status = observation.find("h:statusCode", _NS)
        interpretation = self.concept(observation.find("h:interpretationCode", _NS))
        effective = observation.find("h:effectiveTime", _NS)
        organizer = self.battery_organizer(observation)
        comment = observation.find(
            "h:entryRelationship[@typeCode='SUBJ']/h:act/h:text/h:reference", _NS)
        return ReadResult(
            code=code.code if code else None, system=code.system if code else None,
            display=code.display if code else None, label=code.text if code else None,
            comparable=comparable, chapter=chapter,
            battery=self.battery(organizer) if organizer is not None else None,
            isolate=self.enclosing(observation, f"[h:templateId/@root='{ISOLATE_ORGANIZER}']",
                                   "h:specimen/h:specimenRole/h:specimenPlayingEntity/h:code"),
            value=self.value(observation.find("h:value", _NS), where),
            interpretation=interpretation.code if interpretation else None,
            low=low, high=high, range_unit=range_unit,
            observed_at=self.time(effective, f"{where} effectiveTime"),
            status=status.get("code") if status is not None else None,
            comment=self.reference(comment),
            battery_number=self.organizers[organizer] if organizer is not None else None,
            interpreted=interpretation if interpretation and interpretation.code else None,
            observed_on=_coarse(effective))

    def battery_organizer(self, observation: etree._Element) -> etree._Element | None:
        found = observation.xpath("ancestor::h:organizer[@classCode='BATTERY'][1]", namespaces=_NS)
        return found[0] if found else None

    def battery(self, organizer: etree._Element) -> Concept:
        """The battery's code; for one sent without a code, the exam it belongs to (its level-2
        section's code), else no more than its existence."""
        own = self.concept(organizer.find("h:code", _NS))
        if own is not None and (own.code or own.text):
            return own
        exams = organizer.xpath(f"ancestor::h:section[h:templateId/@root='{ITEM_SECTION}'][1]",
                                namespaces=_NS)
        exam = self.concept(exams[0].find("h:code", _NS)) if exams else None
        if exam is not None and exam.code:
            return Concept(exam.code, exam.system, exam.display, _first_text(exams[0], "h:title"))
        return Concept(None, None, None, None)

    def enclosing(self, observation: etree._Element, test: str, path: str) -> Concept | None:
        organizers = observation.xpath(f"ancestor::h:organizer{test}[1]", namespaces=_NS)
        return self.concept(organizers[0].find(path, _NS)) if organizers else None

    def value(self, element: etree._Element | None, where: str) -> Value:
        if element is None or element.get("nullFlavor"):
            return None
        kind = element.get(XSI_TYPE, "").split(":")[-1]
        if kind == "PQ":
            return Measure(self.decimal(element.get("value"), where), self.unit(element, where))
        if kind in ("INT", "REAL"):
            return Measure(self.decimal(element.get("value"), where), "1")
        if kind == "IVL_PQ":
            low, high = element.find("h:low", _NS), element.find("h:high", _NS)
            bound = low if low is not None else high
            return Interval(
                self.decimal(low.get("value"), where) if low is not None else None,
                self.decimal(high.get("value"), where) if high is not None else None,
                self.unit(bound, where) if bound is not None else None,
                low is None or low.get("inclusive", "true") == "true",
                high is None or high.get("inclusive", "true") == "true")
        if kind in ("CD", "CE", "CV", "CO"):
            return self.concept(element)
        if kind not in ("ST", "ED"):
            self.warnings.append(f"{where}: value of type {kind or 'unknown'} read as its text")
        return " ".join("".join(element.itertext()).split()) or None

    def reference_range(self, observation: etree._Element, where: str
                        ) -> tuple[Decimal | None, Decimal | None, str | None]:
        value = observation.find("h:referenceRange/h:observationRange/h:value", _NS)
        if value is None:
            return None, None, None
        bounds = [value.find(f"h:{name}", _NS) for name in ("low", "high")]
        numbers = [self.decimal(b.get("value"), where) if b is not None and b.get("value")
                   else None for b in bounds]
        unit = next((self.unit(b, where) for b in bounds if b is not None and b.get("value")), None)
        return numbers[0], numbers[1], unit

    def concept(self, element: etree._Element | None) -> Concept | None:
        """The element's own code, or else its first translation (a local or method code)."""
        if element is None:
            return None
        text = self.reference(element.find("h:originalText/h:reference", _NS))
        if text is None:
            text = " ".join(element.findtext("h:originalText", "", _NS).split()) or None
        coded = element if element.get("code") else element.find("h:translation[@code]", _NS)
        if coded is None:
            return Concept(None, None, None, text)
        return Concept(coded.get("code"), coded.get("codeSystem"), coded.get("displayName"), text)

    # Data types

    def reference(self, element: etree._Element | None) -> str | None:
        if element is None:
            return None
        target = element.get("value", "").removeprefix("#")
        text = self.texts.get(target)
        if text is None:
            self.warnings.append(f"line {element.sourceline}: reference #{target} finds no text")
        return text

    def unit(self, element: etree._Element, where: str) -> str:
        unit = element.get("unit", "1")
        problem = units.check_unit(unit)
        if problem:
            self.warnings.append(f"{where}: unit {problem}")
        return str(unit)

    def decimal(self, text: str | None, where: str) -> Decimal:
        try:
            number = Decimal(text or "")
        except InvalidOperation:
            number = Decimal("NaN")
        if not number.is_finite():  # NaN, INF: no measure, and no JSON number either
            raise UnreadableReport(f"{where}: {text!r} is not a number")
        return number

    def integer(self, text: str | None) -> int | None:
        if text is None:
            return None
        if not text.isdigit():
            self.warnings.append(f"versionNumber {text!r} is not a positive integer")
            return None
        return int(text)

    def time(self, element: etree._Element | None, what: str) -> datetime | None:
        value = element.get("value") if element is not None else None
        if not value:
            return None
        try:
            moment, aware = _timestamp(value)
        except ValueError:
            self.warnings.append(f"{what}: {value!r} is not a CDA time")
            return None
        if not aware and _coarse(element) is None:  # a day has no UTC offset to give
            self.warnings.append(f"{what}: {value!r} has no UTC offset, read as Europe/Paris time")
        return moment

    def birth_date(self, value: str | None) -> date | None:
        if value is None:
            return None
        try:
            return datetime.strptime(value[:8], "%Y%m%d").date()
        except ValueError:
            self.warnings.append(f"birthTime {value!r} is not a full date")
            return None


def _timestamp(value: str) -> tuple[datetime, bool]:
    """A CDA TS (YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+|-ZZZZ]) and whether it carried its offset."""
    digits, sign, offset = value, "", ""
    for mark in "+-":
        if mark in value:
            digits, offset = value.split(mark, 1)
            sign = mark
    digits = digits.split(".")[0]
    formats: dict[int, str] = {4: "%Y", 6: "%Y%m", 8: "%Y%m%d", 10: "%Y%m%d%H", 12: "%Y%m%d%H%M",
                               14: "%Y%m%d%H%M%S"}
    if len(digits) not in formats or not digits.isdigit():
        raise ValueError(value)
    moment = datetime.strptime(digits, formats[len(digits)])
    if not sign:
        return moment.replace(tzinfo=ASSUMED_ZONE), False
    if len(offset) != 4 or not offset.isdigit():
        raise ValueError(value)
    delta = timedelta(hours=int(offset[:2]), minutes=int(offset[2:]))
    return moment.replace(tzinfo=timezone(delta if sign == "+" else -delta)), True


def _coarse(element: etree._Element | None) -> str | None:
    """A time the lab gave to the day, month or year only, as FHIR writes such a date
    (20240104 -> 2024-01-04): None for a time to the hour or finer, or no readable time."""
    value = element.get("value", "") if element is not None else ""
    digits = value.split("+")[0].split("-")[0]
    if len(digits) not in (4, 6, 8) or not digits.isdigit():
        return None
    try:
        _timestamp(value)
    except ValueError:
        return None
    return "-".join((digits[:4], digits[4:6], digits[6:8])).rstrip("-")


def _identifier(element: etree._Element | None) -> Identifier | None:
    if element is None or not element.get("root"):
        return None
    return Identifier(element.get("root"), element.get("extension"))


def _national(ident: Identifier | None, root: str, prefix: str) -> str | None:
    """The RPPS or FINESS inside a national id ("8" + RPPS, "1" + FINESS)."""
    if ident is None or ident.root != root or not ident.extension:
        return None
    return ident.extension[1:] if ident.extension.startswith(prefix) else None


def _lab(organization: etree._Element | None) -> Lab | None:
    if organization is None:
        return None
    ident = _identifier(organization.find("h:id", _NS))
    return Lab(ident, _national(ident, ORGANIZATION_ID, "1"), _first_text(organization, "h:name"))


def _first_text(element: etree._Element, *paths: str) -> str | None:
    for path in paths:
        found = element.xpath(path, namespaces=_NS)
        if found:
            text = " ".join("".join(found[0].itertext()).split())
            if text:
                return text
    return None

