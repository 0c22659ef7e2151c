"""Demo data: a lab and its catalogue, prescribers, patients and prescriptions."""
