"""Reports from other labs: reading a CR-BIO another lab produced (`read_cr_bio`), and putting
the results of a DocumentReference that carries one (from the DMP, another lab, a practice's
software) into the patient's history (docs/imported.md)."""

from bilan.results.elsewhere.cda_reading import read_cr_bio
from bilan.results.elsewhere.imported import ImportedReports, document_identifier

__all__ = ["ImportedReports", "document_identifier", "read_cr_bio"]
