"""The CR-BIO document: the LabReport model (a validated report independent of FHIR and CDA),
its assembly from what the lab stored about an order, and its forms: the CDA R2 level 3
document, the PDF copy it embeds, the FHIR DiagnosticReport and Observations (`fhir_report`,
whose report builders only the tests call; bilan reads its code systems), the conformance
check against the ANS kit, and the human view through the ANS stylesheet (`display`)."""

from bilan.results.document import assembly, conformance, display, fhir_report
from bilan.results.document.cda import cda_document
from bilan.results.document.pdf import report_pdf
from bilan.results.document.report import (
    MEDICAL_BIOLOGY,
    Address,
    Battery,
    Chapter,
    Code,
    Earlier,
    Forwarded,
    Identifier,
    LabReport,
    Organization,
    Patient,
    Practitioner,
    Quantity,
    ReportError,
    Result,
    Specimen,
)

__all__ = ["MEDICAL_BIOLOGY", "Address", "Battery", "Chapter", "Code", "Earlier", "Forwarded", "Identifier",
           "LabReport", "Organization", "Patient", "Practitioner", "Quantity", "ReportError", "Result", "Specimen",
           "assembly", "cda_document", "conformance", "display", "fhir_report", "report_pdf"]
