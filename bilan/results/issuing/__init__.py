"""Issuing and delivery: the biologist issues an order's report (the CR-BIO built from the
validated results, checked, stored as Binary, DocumentReference and DiagnosticReport, and
delivered to the prescriber, the patient's space and the DMP, all in one transaction), with the
masking and sharing choices (bilan/results/masking.py holds the labels)."""

from bilan.results.issuing.dmp_feed import DMP, DmpFeed
from bilan.results.issuing.documents import CDA_TYPE, PDF_TYPE
from bilan.results.issuing.issuing import RELEASE, Choices, Issuing, issued_documents

__all__ = ["CDA_TYPE", "DMP", "PDF_TYPE", "RELEASE", "Choices", "DmpFeed", "Issuing", "issued_documents"]
