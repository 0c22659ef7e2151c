"""The lab's exam catalogue: the LOINC-coded CSV it is loaded from (stored and looked up by
bilan/storage/catalogue.py), and the reference ranges by sex and age beside it (`ranges.csv`).

Beside the reference range (`ref_low`, `ref_high`: what is normal), a quantitative row may
give the limits of what is physiologically possible (`plausible_low`, `plausible_high`, in the
row's unit): a result beyond them is a typo or an instrument fault and is refused where it
comes in (bilan/results/desk/plausibility.py); and its critical limits (`critical_low`,
`critical_high`): a result beyond them is flagged LL/HH and called to the prescriber before
it is validated (bilan/results/desk/critical.py). All are checked here, so that a lab's edited
CSV with a reference range outside its own limits, or a critical limit inside its reference
range, is refused at load, not at the bench.

`ranges.csv`, in the same folder (or named on the command line), gives an entry reference
ranges per sex (female, male, any) and age band (`age_min_years` inclusive,
`age_max_years` exclusive, empty: no bound; in years, whole months allowed: 0.5). Each row is
checked like the entry's own range; two rows of one entry and sex may not overlap. A row
without limits says that no range applies in that band (no flag rather than another band's).
Each entry read gets its rows under "ranges".

The row order of `catalogue.csv` is the lab's clinical order (an entry's `position`: the NFS's
leucocytes, hématies, hémoglobine...), which the pages and the report follow. `source` and
`notes` (a range row's `notes`) are the lab's documentation: stored, not used, and given back.

The export writes the same two files back (`write_csv`, `write_ranges`: every column the
import reads, in the order of bilan's own files, values as stored, so "4.50" stays "4.50"):
loading an export gives the same catalogue, which is what a lab changing software needs.
"""

import csv
import io
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Mapping, cast

from bilan.storage.catalogue import LoadedEntry

_COLUMNS = ("local_code", "label_fr", "kind", "panel", "loinc", "loinc_display", "chapter_loinc",
            "specimen", "ucum", "ref_low", "ref_high", "plausible_low", "plausible_high", "critical_low",
            "critical_high", "alt_ucum", "factor_to_alt")
COLUMNS = (*_COLUMNS, "sensitive", "source", "notes")  # catalogue.csv's, in the order of bilan's file
_LIMITS = ("ref_low", "ref_high", "plausible_low", "plausible_high", "critical_low", "critical_high")
RANGES_FILE = "ranges.csv"
RANGE_COLUMNS = ("local_code", "sex", "age_min_years", "age_max_years", "ref_low", "ref_high", "notes")
SEXES = ("female", "male", "any")


def read_csv(path: Path, ranges: Path | None = None) -> list[LoadedEntry]:
    """The catalogue's entries, each with its range rows (from `ranges`, else the ranges.csv
    beside the catalogue when there is one)."""
    with path.open(encoding="utf-8-sig", newline="") as handle:  # -sig: a spreadsheet's BOM
        rows = []
        for number, line in enumerate(csv.DictReader(handle), start=2):
            row: dict[str, Any] = {c: (line.get(c) or "").strip() or None for c in (*_COLUMNS, "source", "notes")}
            row["sensitive"] = (line.get("sensitive") or "").strip().lower() == "yes"
            row["position"] = number - 1
            _check_limits(row, f"{path.name} line {number} ({row['local_code']})")
            rows.append(row)
    if ranges is not None and not ranges.exists():
        raise ValueError(f"{ranges}: no such file of reference ranges")
    ranges = ranges or path.with_name(RANGES_FILE)
    by_code = read_ranges(ranges, rows) if ranges.exists() else {}
    for row in rows:
        row["ranges"] = by_code.get(row["local_code"], [])
    return cast(list[LoadedEntry], rows)


def read_ranges(path: Path, entries: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The range rows of `path` by local code, checked against the entries they belong to."""
    known = {e["local_code"]: e for e in entries}
    found: dict[str, list[dict[str, Any]]] = {}
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for number, line in enumerate(csv.DictReader(handle), start=2):
            row: dict[str, Any] = {c: (line.get(c) or "").strip() or None for c in RANGE_COLUMNS}
            where = f"{path.name} line {number} ({row['local_code']})"
            entry = known.get(row["local_code"] or "")
            if entry is None or not entry.get("ucum"):
                raise ValueError(f"{where}: no quantitative catalogue entry has this local code")
            if row["sex"] not in SEXES:
                raise ValueError(f"{where}: sex is one of {', '.join(SEXES)}, not {row['sex']!r}")
            low, high = (_years(row[c], f"{where}: {c}") for c in ("age_min_years", "age_max_years"))
            if low is not None and high is not None and low >= high:
                raise ValueError(f"{where}: age_min_years {low} is not below age_max_years {high}")
            _check_limits({**entry, "ref_low": row["ref_low"], "ref_high": row["ref_high"]}, where)
            for other in found.get(row["local_code"], []):
                if other["sex"] == row["sex"] and _overlap(other, row):
                    raise ValueError(f"{where}: its age band overlaps another row of the same sex")
            found.setdefault(row["local_code"], []).append(row)
    return found


def write_csv(entries: Iterable[Mapping[str, Any]]) -> str:
    """catalogue.csv of these entries (as stored: in their order, values as given)."""
    return _written(COLUMNS, ({**e, "sensitive": "yes" if e.get("sensitive") else "no"} for e in entries))


def write_ranges(rows: Iterable[Mapping[str, Any]]) -> str:
    """ranges.csv of these range rows."""
    return _written(RANGE_COLUMNS, rows)


def _written(columns: tuple[str, ...], rows: Iterable[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")  # as bilan's files: quotes only where needed
    writer.writerow(columns)
    writer.writerows([("" if row.get(c) is None else str(row[c])) for c in columns] for row in rows)
    return out.getvalue()


def _years(text: str | None, where: str) -> Decimal | None:
    if text is None:
        return None
    try:
        years = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{where} {text!r} is not a number of years") from None
    if not years.is_finite() or years < 0 or (years * 12) % 1:
        raise ValueError(f"{where} {text!r} is not a whole number of months (in years, e.g. 0.5)")
    return years


def _overlap(one: dict[str, Any], other: dict[str, Any]) -> bool:
    def band(row: dict[str, Any]) -> tuple[Decimal, Decimal | None]:
        return Decimal(row["age_min_years"] or 0), Decimal(row["age_max_years"]) if row["age_max_years"] else None

    (start, end), (other_start, other_end) = band(one), band(other)
    return (end is None or other_start < end) and (other_end is None or start < other_end)


def _check_limits(row: dict[str, Any], where: str) -> None:
    limits: dict[str, Decimal] = {}
    for column in _LIMITS:
        if row.get(column) is None:
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
    for column in ("ref_low", "ref_high", "critical_low", "critical_high"):
        limit = limits.get(column)
        if limit is not None and ((low is not None and limit < low) or (high is not None and limit > high)):
            raise ValueError(f"{where}: {column} {limit} is outside the plausible limits {low} - {high}")
    # In order, each below the next: critical low, reference range, critical high.
    ordered = [(c, limits[c]) for c in ("critical_low", "ref_low", "ref_high", "critical_high") if c in limits]
    for (lower, below), (upper, above) in zip(ordered, ordered[1:]):
        if below > above:
            raise ValueError(f"{where}: {lower} {below} is above {upper} {above}")
