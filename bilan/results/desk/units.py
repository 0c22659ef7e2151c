"""UCUM units as French lab reports use them: checking a unit code, converting a value.

Any UCUM code reads (`ucum`: the grammar and the UCUM table); bilan then asks for one spelling
of each unit, the one the catalogue and the ANS examples write (L, not l; 10*9, not 10^9), and
knows how French reports misspell them (`_SPELLINGS`), to say the fix.
"""

import re
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from bilan.results.desk import ucum
from bilan.results.desk.ucum import Dimension, InvalidUnit, UnitError

__all__ = ["Dimension", "IncompatibleUnits", "InvalidUnit", "UnitError", "check_unit", "convert", "suggest_unit"]


class IncompatibleUnits(UnitError):
    pass


# Spellings seen on French reports and instruments, each with its UCUM form and why. Applied
# in order to the whole code; the result is offered only if it reads. UCUM itself also has l
# and 10^, but the catalogue (and the ANS CR-BIO examples, for L) write L and 10*: one spelling
# each keeps units comparable as strings.
_SPELLINGS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"\s+"), "", "UCUM codes have no spaces"),
    (re.compile("[\u00b5\u03bc]"), "u", "micro is written u, not \u00b5"),
    (re.compile("\u00b2"), "2", "exponents are plain digits"),
    (re.compile("\u00b3"), "3", "exponents are plain digits"),
    (re.compile(r"^[xX\u00d7](?=10)"), "", "a power of ten takes no multiplication sign"),
    (re.compile(r"10(?:\^|[eE](?=[+-]?\d))"), "10*", "powers of ten are written 10*9, not 10^9 or 10E9"),
    (re.compile(r"^G/"), "10*9/", "giga per litre is 10*9/L (G is the gauss)"),
    (re.compile(r"^T/"), "10*12/", "tera per litre is 10*12/L (T is the tesla)"),
    (re.compile(r"(^|[/.])([kdcmunpf]?)l(?=$|[/.\d{])"), r"\1\2L", "the litre is written L, not l"),
    (re.compile(r"(^|[/.])(m?)(?:UI|IU)(?=$|[/.])"), r"\1\2[IU]",
     "international units are [IU], not UI or IU"),
    (re.compile(r"(^|[/.])(m?)Eq(?=$|[/.])"), r"\1\2eq", "equivalents are eq"),
    (re.compile(r"^(?:sec|secondes?)$"), "s", "the second is s"),
    (re.compile(r"^u3$"), "fL", "a cubic micrometre is a femtolitre, fL"),
    (re.compile(r"^(ratio|INR)$"), r"{\1}", "a ratio carries its name in braces"),
    (re.compile(r"(?<!\{)1[.,]73_?m2(?!\})"), "{1.73_m2}",
     "per body surface area is the annotation {1.73_m2}"),
    (re.compile(r"(?<=/)(\d+)\.?h(?=$|[/.])"), r"(\1.h)",
     "hours in a divisor go in parentheses, /(24.h): UCUM reads / and . left to right, so g/24.h is g.h/24"),
)


def check_unit(code: str) -> str | None:
    """Why `code` is not a UCUM unit as bilan spells it, with the fix if one is known: what is
    not UCUM ("mmol/L/", "UI/L"), and the UCUM that is not bilan's spelling ("mmol/l", "10^9/L")
    or not what a lab means ("G/L", the gauss per litre; "g/24.h", gram-hours per 24)."""
    fix, reasons = _respell(code)
    if fix is not None:
        return f"{code!r}: {'; '.join(reasons)}; write {fix!r}"
    try:
        ucum.read(code)
    except InvalidUnit as error:
        return str(error)
    return None


def suggest_unit(code: str) -> str | None:
    """The UCUM spelling of a common variant ("mmol/l", "µmol/L", "10^9/L", "mUI/L"), if known."""
    return _respell(code)[0]


def convert(value: Decimal, from_unit: str, to_unit: str, analyte_loinc: str,
            catalogue_rows: Iterable[Mapping[str, Any]], exact: bool = False) -> Decimal:
    """`value` in `to_unit`, keeping the significant digits of `value` (unless `exact`: for a
    calculation's inputs, rounded once at its end).

    Units of one dimension convert by their scales (g/L, mg/L, g/dL; mmol/L, umol/L); across
    dimensions (mmol/L to g/L) only through the analyte's catalogue row, where
    value_in_alt_ucum = value_in_ucum x factor_to_alt.
    """
    source, target = _read(from_unit), _read(to_unit)
    if source.dimension == target.dimension:
        converted = value * source.scale / target.scale
        return converted if exact else _significant(converted, value)
    if special := source.special or target.special:
        raise IncompatibleUnits(f"{from_unit} and {to_unit} do not convert: {special[0]} is a scale, "
                                "not a multiple of a unit (a UCUM special unit), and converts only to itself")
    for row in catalogue_rows:
        if row.get("loinc") != analyte_loinc or not row.get("alt_ucum") or not row.get("factor_to_alt"):
            continue
        unit, alt = _read(row["ucum"]), _read(row["alt_ucum"])
        factor = Decimal(str(row["factor_to_alt"]))
        if (source.dimension, target.dimension) == (unit.dimension, alt.dimension):
            converted = value * source.scale / unit.scale * factor * alt.scale / target.scale
        elif (source.dimension, target.dimension) == (alt.dimension, unit.dimension):
            converted = value * source.scale / alt.scale / factor * unit.scale / target.scale
        else:
            continue
        return converted if exact else _significant(converted, value)
    raise IncompatibleUnits(
        f"{from_unit} and {to_unit} measure different things and the catalogue gives no factor "
        f"between them for LOINC {analyte_loinc}")


def _respell(code: str) -> tuple[str | None, list[str]]:
    fixed, reasons = code, []
    for pattern, replacement, why in _SPELLINGS:
        respelled = pattern.sub(replacement, fixed)
        if respelled != fixed and why not in reasons:
            reasons.append(why)
        fixed = respelled
    if fixed == code:
        return None, []
    try:
        ucum.read(fixed)
    except InvalidUnit:
        return None, []
    return fixed, reasons


def _read(code: str) -> ucum.Unit:
    problem = check_unit(code)
    if problem is not None:
        raise InvalidUnit(problem)
    return ucum.read(code)


def _significant(exact: Decimal, like: Decimal) -> Decimal:
    if exact.is_zero():
        return Decimal(0)
    digits = len(like.as_tuple().digits)
    exponent = exact.adjusted() - digits + 1
    rounded = exact.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_HALF_UP)
    if rounded.adjusted() > exact.adjusted():  # 9.96 to 2 digits is 10, not 10.0
        exponent += 1
        rounded = rounded.quantize(Decimal(1).scaleb(exponent))
    # Large values are written out (1200, not 1.2E+3); the zeros are not significant.
    return rounded.quantize(Decimal(1)) if exponent > 0 else rounded
