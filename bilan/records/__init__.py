"""FHIR interactions on stored resources: validation, references, transactions."""
