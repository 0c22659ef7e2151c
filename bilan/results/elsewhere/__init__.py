"""Reports from other labs: reading a CR-BIO another lab produced (`read_cr_bio`), and putting
the results of a DocumentReference that carries one (from the DMP, another lab, a practice's
software) into the patient's history (docs/imported.md); the patient's DMP consulted from an order and
its CR-BIOs imported the same way (shared_record.py, docs/dmp.md)."""

from bilan.results.elsewhere.cda_reading import read_cr_bio
from bilan.results.elsewhere.imported import ImportedReports, document_identifier
from bilan.results.elsewhere.shared_record import Listing, SharedRecord

__all__ = ["ImportedReports", "Listing", "SharedRecord", "document_identifier", "read_cr_bio"]
