"""The lab's exam catalogue: the LOINC-coded CSV it is loaded from (stored and looked up by
bilan/storage/catalogue.py)."""

import csv
from pathlib import Path
from typing import Any

_COLUMNS = ("local_code", "label_fr", "kind", "panel", "loinc", "loinc_display", "chapter_loinc",
            "specimen", "ucum", "ref_low", "ref_high", "alt_ucum", "factor_to_alt")


def read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = []
        for line in csv.DictReader(handle):
            row: dict[str, Any] = {c: (line.get(c) or None) for c in _COLUMNS}
            row["sensitive"] = (line.get("sensitive") or "").strip().lower() == "yes"
            rows.append(row)
    return rows
