"""The plain-French line an analyte of the patient's space shows under its name ("Mesure le taux
de sucre dans le sang..."): bilan/data/catalogue/explanations.csv, keyed by the analyte's key
(bilan/results/views/analytes.py: a group's, else its catalogue entry's local code in lower case
with "-" for "_"). An analyte without one shows none."""

import csv
from functools import cache
from importlib.resources import files

FILE = files("bilan") / "data" / "catalogue" / "explanations.csv"


@cache
def explanations() -> dict[str, str]:
    """Every explanation, by analyte key."""
    with FILE.open("r", encoding="utf-8") as text:
        return {row["key"].strip(): row["explanation"].strip() for row in csv.DictReader(text)}


def explanation(key: str) -> str:
    return explanations().get(key, "")
