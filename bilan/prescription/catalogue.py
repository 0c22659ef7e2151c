"""The lab's exam catalogue: the LOINC-coded CSV it is loaded from (stored and looked up by
bilan/storage/catalogue.py).

Beside the reference range (`ref_low`, `ref_high`: what is normal), a quantitative row may
give the limits of what is physiologically possible (`plausible_low`, `plausible_high`, in the
row's unit): a result beyond them is a typo or an instrument fault and is refused where it
comes in (bilan/results/desk/plausibility.py). Both are checked here, so that a lab's edited
CSV with a reference range outside its own limits is refused at load, not at the bench.
"""

import csv
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

_COLUMNS = ("local_code", "label_fr", "kind", "panel", "loinc", "loinc_display", "chapter_loinc",
            "specimen", "ucum", "ref_low", "ref_high", "plausible_low", "plausible_high", "alt_ucum",
            "factor_to_alt")
_LIMITS = ("ref_low", "ref_high", "plausible_low", "plausible_high")


def read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = []
        for number, line in enumerate(csv.DictReader(handle), start=2):
            row: dict[str, Any] = {c: (line.get(c) or "").strip() or None for c in _COLUMNS}
            row["sensitive"] = (line.get("sensitive") or "").strip().lower() == "yes"
            _check_limits(row, f"{path.name} line {number} ({row['local_code']})")
            rows.append(row)
    return rows


def _check_limits(row: dict[str, Any], where: str) -> None:
    limits: dict[str, Decimal] = {}
    for column in _LIMITS:
        if row[column] is None:
            continue
        try:
            limits[column] = Decimal(row[column])
        except InvalidOperation:
            raise ValueError(f"{where}: {column} {row[column]!r} is not a number") from None
        if not limits[column].is_finite():
            raise ValueError(f"{where}: {column} {row[column]!r} is not a number")
    low, high = limits.get("plausible_low"), limits.get("plausible_high")
    if low is not None and high is not None and low > high:
        raise ValueError(f"{where}: plausible_low {low} is above plausible_high {high}")
    for column in ("ref_low", "ref_high"):
        limit = limits.get(column)
        if limit is not None and ((low is not None and limit < low) or (high is not None and limit > high)):
            raise ValueError(f"{where}: {column} {limit} is outside the plausible limits {low} - {high}")
