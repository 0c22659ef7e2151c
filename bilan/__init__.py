"""bilan: digital lab prescriptions and results between prescribers, labs and patients."""

__version__ = "0.1.0"
