"""Results and the CR Bio report (FHIR DiagnosticReport and CDA R2 level 3)."""
