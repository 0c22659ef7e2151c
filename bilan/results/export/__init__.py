"""A patient's data to take away (data portability): every report's files, PDF for all of them
(`report_files`), everything she may see (`everything`, Patient/$everything) and her archive
(`archive`: PDFs, CDAs, a FHIR Bundle and a transaction to import it elsewhere)."""

from bilan.results.export.archive import patient_archive
from bilan.results.export.everything import Everything, everything, everything_bundle
from bilan.results.export.report_files import report_cda, report_pdf

__all__ = ["Everything", "everything", "everything_bundle", "patient_archive", "report_cda", "report_pdf"]
