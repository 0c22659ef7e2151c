"""A validated lab report as the lab issues it, independent of FHIR and of CDA: who it is about,
who validated it, what was found. `cda.cda_document` turns it into a CR-BIO.

Identifiers are (root, extension) pairs as CDA needs them: root an OID, or a UUID with no
extension. Times are timezone-aware: the CI-SIS requires the producer's UTC offset."""

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from bilan.fhir.terminology import INS_NIR, INS_SYSTEMS
from bilan.prescription import ins_problem, loinc_problem, rpps_problem
from bilan.results.desk import interpretation, units

IdentityStatus = Literal["PROV", "RECUP", "VALI", "QUAL"]
Sex = Literal["F", "M", "U"]  # U: unknown, sent as nullFlavor UNK as the CR-BIO asks
PracticeSetting = Literal["AMBULATOIRE", "ETABLISSEMENT"]
ResultStatus = Literal["completed", "aborted"]  # aborted: will not be done (sample unusable...)

PROFESSIONS = "1.2.250.1.213.1.1.4.5"  # CI-SIS professions and specialties


class ReportError(ValueError):
    """The report cannot be issued as given (a rule of the CR-BIO or of the INS is broken)."""


@dataclass(frozen=True)
class Identifier:
    root: str  # OID, or UUID when there is no extension
    extension: str | None = None


@dataclass(frozen=True)
class Code:
    code: str
    display: str
    system: str  # OID of the code system


MEDICAL_BIOLOGY = Code("G15_10/SM03", "Médecin - Biologie médicale (SM)", PROFESSIONS)


@dataclass(frozen=True)
class Address:
    lines: tuple[str, ...]  # street lines, as printed
    postal_code: str
    city: str


@dataclass(frozen=True)
class Organization:
    finess: str  # 9 characters; the CDA id is "1" + FINESS
    name: str
    address: Address
    telecom: tuple[str, ...]  # URIs: tel:, mailto:, fax:
    practice_setting: PracticeSetting = "AMBULATOIRE"

    def __post_init__(self) -> None:
        if len(self.finess) != 9:
            raise ReportError(f"a FINESS number has 9 characters, not {self.finess!r}")
        if not self.telecom:
            raise ReportError(f"the CR-BIO requires a telecom for {self.name}")


@dataclass(frozen=True)
class Practitioner:
    rpps: str  # 11 digits; the national id (IdNat_PS) is "8" + RPPS
    family: str
    given: str
    specialty: Code | None = None

    def __post_init__(self) -> None:
        problem = rpps_problem(self.rpps)
        if problem:
            raise ReportError(f"{self.family}: {problem}")


@dataclass(frozen=True)
class Patient:
    file_id: Identifier  # the lab's own patient file number (root: the lab's OID for its files)
    birth_family: str
    birth_given: tuple[str, ...]  # all birth given names, in order; the first is the "premier prénom"
    sex: Sex
    birth_date: date
    identity_status: IdentityStatus
    ins: str | None = None  # NIR or NIA with its key, 15 characters
    ins_system: str = INS_NIR  # FHIR system, urn:oid:...
    birthplace: str | None = None  # INSEE (COG) code of the commune, or 99xxx for a country
    address: Address | None = None
    telecom: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.birth_given:
            raise ReportError("the patient's birth given names are missing")
        if self.ins is not None:
            problem = ins_problem(self.ins)
            if problem:
                raise ReportError(f"invalid INS: {problem}")
            if self.ins_system not in INS_SYSTEMS:
                raise ReportError(f"{self.ins_system!r} is not an INS system")
        if self.identity_status == "QUAL" and self.ins is None:
            raise ReportError("a qualified identity has an INS")

    @property
    def ins_in_header(self) -> bool:
        """Only a qualified identity may be shared under its INS (DMP, MSSanté)."""
        return self.identity_status == "QUAL"


@dataclass(frozen=True)
class Quantity:
    value: Decimal  # the digits reported: 1.950 is not 1.95
    unit: str  # UCUM, as bilan spells it (units.check_unit)
    comparator: str | None = None  # "<", "<=", ">=", ">": censored at `value` ("<0.5")

    def __post_init__(self) -> None:
        problem = units.check_unit(self.unit)
        if problem:
            raise ReportError(problem)
        if self.comparator is not None and self.comparator not in interpretation.COMPARATORS:
            raise ReportError(f"{self.comparator!r} is not a quantity comparator")
        if not self.value.is_finite():
            raise ReportError(f"{self.value} is not a measured value")


@dataclass(frozen=True)
class Result:
    code: str  # LOINC
    display: str
    value: Quantity | Code | str | None  # None when aborted
    interpretation: str | None = None  # CI-SIS ObservationInterpretation (interpretation.LABELS)
    low: Decimal | None = None  # reference range, in the value's unit
    high: Decimal | None = None
    status: ResultStatus = "completed"
    comment: str | None = None  # the biologist's comment on this result
    observed_at: datetime | None = None
    earlier: "Earlier | None" = None  # the patient's previous result of the analyte (antériorité)

    def __post_init__(self) -> None:
        _loinc(self.code)
        if self.interpretation is not None and self.interpretation not in interpretation.LABELS:
            raise ReportError(f"{self.code}: interpretation {self.interpretation!r} is not in the "
                              "CI-SIS ObservationInterpretation value set")
        if (self.low is not None or self.high is not None) and not isinstance(self.value, Quantity):
            raise ReportError(f"{self.code}: a numeric reference range needs a quantity value")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ReportError(f"{self.code}: reference range low {self.low} above high {self.high}")
        if (self.value is None) != (self.status == "aborted"):
            raise ReportError(f"{self.code}: a completed result has a value, an aborted one none")
        _aware(self.observed_at, f"{self.code} observed_at")


@dataclass(frozen=True)
class Earlier:
    """The patient's previous validated result of the same analyte, across their records."""

    value: Quantity
    observed_at: datetime | None


@dataclass(frozen=True)
class Battery:
    code: str  # LOINC panel
    display: str
    results: tuple[Result, ...]

    def __post_init__(self) -> None:
        _loinc(self.code)
        if not self.results:
            raise ReportError(f"battery {self.code} has no result")


@dataclass(frozen=True)
class Specimen:
    kind: Code  # HL7 specimen type (table 0487, 2.16.840.1.113883.18.311): BLD, SER, PLAS, UR...
    collected_at: datetime
    received_at: datetime | None = None
    id: Identifier | None = None

    def __post_init__(self) -> None:
        _aware(self.collected_at, "specimen collected_at")
        _aware(self.received_at, "specimen received_at")


@dataclass(frozen=True)
class Chapter:
    code: str  # LOINC chapter, e.g. 18719-5 Biochimie, 18723-7 Hématologie
    display: str
    items: tuple[Result | Battery, ...]
    specimens: tuple[Specimen, ...] = ()  # what this chapter's results were measured on
    comment: str | None = None

    def __post_init__(self) -> None:
        _loinc(self.code)
        if not self.items:
            raise ReportError(f"chapter {self.code} has no result")


@dataclass(frozen=True)
class Forwarded:
    """An exam the lab sent to its partner lab, which performs it."""

    exam: str  # its name
    lab: str  # the partner lab's name; "" when bilan's directory does not name it
    finess: str
    pending: bool  # its result has not come back (validated) yet

    @property
    def text(self) -> str:
        """What the report says of it."""
        who = f"au laboratoire partenaire {self.lab}" if self.lab else "à un laboratoire partenaire"
        who += f" (FINESS {self.finess})" if self.finess else ""
        if self.pending:
            return f"{self.exam} : examen transmis {who}, résultat à suivre."
        return f"{self.exam} : examen transmis {who}, qui l'a réalisé."


@dataclass(frozen=True)
class LabReport:
    document_id: Identifier  # this version
    set_id: Identifier  # shared by every version
    version: int
    effective_time: datetime  # when this version was made
    patient: Patient
    lab: Organization  # the executing lab, author of the report
    biologist: Practitioner  # validated the results: authenticator and legal authenticator
    validated_at: datetime
    prescriber: Practitioner
    order_id: Identifier  # the prescription number (inFulfillmentOf/order/id)
    received_at: datetime  # the request and its samples reached the lab
    chapters: tuple[Chapter, ...]
    pdf: bytes  # the same report, printable; its copy section is mandatory
    custodian: Organization | None = None  # keeps the document; the lab when None
    prescribed_at: datetime | None = None
    collector: Practitioner | None = None  # who took the samples, when the lab knows
    request_id: Identifier | None = None  # the lab's own number for the request
    adaptation: str | None = None  # what the biologist changed in the prescription, and why
    replaces: Identifier | None = None  # the document id of the version this one corrects
    complete: bool = True  # False: a partial report, results still to come
    conclusion: str | None = None  # the biologist's conclusion on the whole report
    forwarded: tuple[Forwarded, ...] = ()  # exams sent to the partner lab

    def __post_init__(self) -> None:
        if self.version < 1:
            raise ReportError("versionNumber is a positive integer")
        if (self.version > 1) != (self.replaces is not None):
            raise ReportError("a version after the first replaces the previous one (RPLC), "
                              "and only then")
        if self.replaces == self.document_id:
            raise ReportError("a document cannot replace itself")
        if not self.chapters:
            raise ReportError("a CR-BIO has at least one chapter")
        if self.biologist.specialty is None:
            raise ReportError("the CR-BIO names the responsible biologist's profession/specialty")
        if not self.pdf.startswith(b"%PDF-"):
            raise ReportError("the copy of the report must be a PDF")
        if self.complete and any(f.pending for f in self.forwarded):
            raise ReportError("a report waiting for a partner lab's result is partial")
        for name in ("effective_time", "validated_at", "received_at", "prescribed_at"):
            _aware(getattr(self, name), name)

    @property
    def custodian_organization(self) -> Organization:
        return self.custodian or self.lab

    @property
    def specimens(self) -> tuple[Specimen, ...]:
        seen: dict[Specimen, None] = {}
        for chapter in self.chapters:
            seen.update(dict.fromkeys(chapter.specimens))
        return tuple(seen)


def _aware(moment: datetime | None, name: str) -> None:
    if moment is not None and moment.utcoffset() is None:
        raise ReportError(f"{name} needs a timezone: CDA times carry the producer's UTC offset")


def _loinc(code: str) -> None:
    problem = loinc_problem(code)
    if problem:
        raise ReportError(problem)
