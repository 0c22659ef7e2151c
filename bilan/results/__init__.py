"""Results and the CR Bio report (FHIR DiagnosticReport and CDA R2 level 3), in rooms that
follow a result through the lab:

- `desk/`: results in (the Observation guard, manual entry) and the lab's desk (delta check,
  technical and biological validation);
- `document/`: the CR-BIO document: the LabReport model and its CDA, PDF and FHIR forms, checked
  against the ANS kit;
- `issuing/`: the biologist issues the report, stored and delivered in one transaction;
- `views/`: what patients and prescribers see: the patient's space, trends, $lastn;
- `elsewhere/`: reports from other labs, read into the patient's history.

`masking.py` stays beside the rooms: the labels that decide what a patient sees are derived on
every write by the write path (bilan/records/pipeline.py), below the rooms, so it must not
import them. Each room's `__init__.py` is its face: other rooms and the rest of bilan import
from it; within a room, modules import each other directly."""
