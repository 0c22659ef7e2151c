"""The lab prescription: French identity rules (INS, RPPS), exam codes, and intake of the
e-prescription Bundle (one patient, one requisition, re-sending is harmless).

What the results side (bilan/results/) uses of it, and only that, is offered here: the modules
for the order's state and the people in it (tracking, adaptation, identity, directory, display,
worklist), the identity and code checks a lab report repeats, the requests in effect after the
biologist's adaptations, the order's tubes and the exams it sends to the partner lab
(`order_state`), the prescriber's mail address, the kinds of the
thread's messages (`MESSAGE_KINDS`: a critical value's call is one), and the Patient
records of one person (`same_person`: whose whole history a delta check, a report's previous
results or a trend reads)."""

from bilan.prescription import adaptation, directory, display, identity, tracking, worklist
from bilan.prescription.exams import loinc_codes, loinc_problem
from bilan.prescription.identity import LAB_PATIENT, traits
from bilan.prescription.ins import ins_identifiers, ins_problem
from bilan.prescription.messaging import KINDS as MESSAGE_KINDS
from bilan.prescription.messaging import KINDS_SYSTEM as MESSAGE_KINDS_SYSTEM
from bilan.prescription.messaging import kind_of, mail_address
from bilan.prescription.order import adapted_requests
from bilan.prescription.order import state as order_state
from bilan.prescription.patient_links import same_person
from bilan.prescription.practitioners import display_name, rpps_problem
from bilan.prescription.reception import order_specimens, worklist_row
from bilan.prescription.tubes import tube_for

__all__ = [
    "LAB_PATIENT", "MESSAGE_KINDS", "MESSAGE_KINDS_SYSTEM", "adaptation", "adapted_requests", "directory", "display", "display_name", "identity",
    "ins_identifiers", "ins_problem", "kind_of", "loinc_codes", "loinc_problem", "mail_address", "order_specimens", "order_state",
    "worklist_row",
    "rpps_problem", "same_person", "traits", "tracking", "tube_for", "worklist",
]
