"""The lab prescription: French identity rules (INS, RPPS), exam codes, and intake of the
e-prescription Bundle (one patient, one requisition, re-sending is harmless).

What the results side (bilan/results/) uses of it, and only that, is offered here: the modules
for the order's state and the people in it (tracking, adaptation, identity, directory, display,
worklist), the identity and code checks a lab report repeats, the requests in effect after the
biologist's adaptations, the order's tubes, and the prescriber's mail address."""

from bilan.prescription import adaptation, directory, display, identity, tracking, worklist
from bilan.prescription.exams import loinc_codes, loinc_problem
from bilan.prescription.identity import LAB_PATIENT, traits
from bilan.prescription.ins import ins_identifiers, ins_problem
from bilan.prescription.messaging import adapted_requests, mail_address
from bilan.prescription.practitioners import display_name, rpps_problem
from bilan.prescription.reception import order_specimens, worklist_row
from bilan.prescription.tubes import tube_for

__all__ = [
    "LAB_PATIENT", "adaptation", "adapted_requests", "directory", "display", "display_name", "identity",
    "ins_identifiers", "ins_problem", "loinc_codes", "loinc_problem", "mail_address", "order_specimens",
    "worklist_row",
    "rpps_problem", "traits", "tracking", "tube_for", "worklist",
]
