"""A terminology module for code systems and OIDs: the identifier systems and the label codes
that every layer names (auth's access rules, the write path, the domain), kept here at the
bottom of the stack so that none of them imports a domain folder for a constant.

What the codes mean and the rules over them stay in the domain: INS checks in
bilan/prescription/ins.py, RPPS checks in bilan/prescription/practitioners.py, the masking and
sharing labels in bilan/results/masking.py."""

# INS (Identifiant National de Santé): the NIR, the NIA, and the test and demo NIR systems.
INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
INS_NIA = "urn:oid:1.2.250.1.213.1.4.9"
INS_NIR_TEST = "urn:oid:1.2.250.1.213.1.4.10"
INS_NIR_DEMO = "urn:oid:1.2.250.1.213.1.4.11"
INS_SYSTEMS = (INS_NIR, INS_NIA, INS_NIR_TEST, INS_NIR_DEMO)

# LOINC, the exams' and results' codes: its FHIR system, and its OID in CDA documents.
LOINC = "http://loinc.org"
LOINC_OID = "2.16.840.1.113883.6.1"
# UCUM, the results' units.
UCUM = "http://unitsofmeasure.org"

# Professionals' identifiers: the RPPS number and the national id.
RPPS = "https://rpps.esante.gouv.fr"
NATIONAL_ID = "urn:oid:1.2.250.1.71.4.2.1"
# Organisations' identifiers: the national structure id ("1" + FINESS) and the FINESS number itself.
ORGANIZATION_ID = "urn:oid:1.2.250.1.71.4.2.2"
FINESS = "https://finess.esante.gouv.fr"

# The DMP's document confidentiality codes (CI-SIS JDV_J07 XdsConfidentialityCode), as security labels.
CONFIDENTIALITY = "urn:oid:1.2.250.1.213.1.1.4.13"
INVISIBLE_PATIENT = "INVISIBLE_PATIENT"
HIDDEN_FROM_PROFESSIONALS = "MASQUE_PS"
SECRET_CONNECTION = "CONNEXION_SECRETE"
# bilan's sharing tags: shared in the patient's space, announced, and the derived seen-by-patient.
SHARING = "https://bilan.sante.fr/fhir/CodeSystem/sharing"
PATIENT_SPACE = "patient-space"
# Set by the lab when it chose to tell the patient that a result awaits their consultation.
ANNOUNCED = "announced"
# Derived, never set by hand: shared in the patient's space and not hidden. The access rules test
# this one tag (a row lookup per result) rather than a tag and the absence of a label.
SEEN_BY_PATIENT = "seen-by-patient"
# The resource types that carry these labels.
RESULT_TYPES = ("Observation", "DiagnosticReport", "DocumentReference")
