"""What patients and prescribers see of the results: the patient's space (reports, awaited
results, who accessed their data), one report as the patient reads it (`patient_report`), the
prescriber's results of his orders (`prescriber_view`),
trends per analyte across labs and units and their SVG charts, and Observation/$lastn. Everything is read as the caller, through the access rules."""

from bilan.results.views.access_trail import AccessTrail
from bilan.results.views.chart import point_label, trend_svg
from bilan.results.views.lastn import last_n
from bilan.results.views.patient_report import PatientReport
from bilan.results.views.patient_space import PatientSpace
from bilan.results.views.prescriber_view import PrescriberView
from bilan.results.views.trends import Analyte, Trends

__all__ = ["AccessTrail", "Analyte", "PatientReport", "PatientSpace", "PrescriberView", "Trends", "last_n", "point_label", "trend_svg"]
