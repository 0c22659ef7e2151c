"""The lab prescription: French identity rules (INS, RPPS), exam codes, and intake of the
e-prescription Bundle (one patient, one requisition, re-sending is harmless)."""
