"""UCUM units as French lab reports use them: checking a unit code, converting a value.

bilan reads a subset of UCUM: its syntax (`/` and `.` read left to right, exponents, `10*n`,
integer factors, `{annotations}`; no parentheses) over the atoms and prefixes in the tables
below, which cover the catalogue's units and the usual ones of a city lab.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

Dimension = tuple[tuple[str, int], ...]


class UnitError(ValueError):
    """A unit bilan cannot read, or a conversion it cannot make."""


class InvalidUnit(UnitError):
    pass


class IncompatibleUnits(UnitError):
    pass


@dataclass(frozen=True)
class _Atom:
    scale: Decimal
    dimension: dict[str, int]
    metric: bool  # takes a prefix


# Scales are to g, m, s, mol and the arbitrary bases; L = dm3 and U = umol/min as in UCUM, so
# that mm3 meets uL and U meets kat. [IU] and eq stay their own bases: [IU] is defined per
# substance, and an equivalent is a mole only for a monovalent ion.
_ATOMS: dict[str, _Atom] = {
    "g": _Atom(Decimal(1), {"g": 1}, True),
    "m": _Atom(Decimal(1), {"m": 1}, True),
    "L": _Atom(Decimal("0.001"), {"m": 3}, True),
    "s": _Atom(Decimal(1), {"s": 1}, True),
    "min": _Atom(Decimal(60), {"s": 1}, False),
    "h": _Atom(Decimal(3600), {"s": 1}, False),
    "d": _Atom(Decimal(86400), {"s": 1}, False),
    "mol": _Atom(Decimal(1), {"mol": 1}, True),
    "kat": _Atom(Decimal(1), {"mol": 1, "s": -1}, True),
    "U": _Atom(Decimal("0.000001") / 60, {"mol": 1, "s": -1}, True),
    "[IU]": _Atom(Decimal(1), {"[IU]": 1}, True),
    "[iU]": _Atom(Decimal(1), {"[IU]": 1}, True),
    "eq": _Atom(Decimal(1), {"eq": 1}, True),
    "%": _Atom(Decimal("0.01"), {}, False),
}

_PREFIXES: dict[str, Decimal] = {
    "k": Decimal("1e3"), "d": Decimal("1e-1"), "c": Decimal("1e-2"), "m": Decimal("1e-3"),
    "u": Decimal("1e-6"), "n": Decimal("1e-9"), "p": Decimal("1e-12"), "f": Decimal("1e-15"),
}

# Exponents of one or two digits: 10*12/L or m3 are read, 10*999999999 is refused, not computed.
_COMPONENT = re.compile(r"(?P<body>%|[A-Za-z]*(?:\[[A-Za-z]+\])?)(?P<exponent>[+-]?\d{1,2})?")
_POWER_OF_TEN = re.compile(r"10\*(?P<exponent>[+-]?\d{1,2})")
_ANNOTATED = re.compile(r"(?P<component>[^{}]*)(?P<annotation>\{[^{}]*\})")

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
)


@dataclass(frozen=True)
class _Unit:
    scale: Decimal
    dimension: Dimension


def check_unit(code: str) -> str | None:
    """Why `code` is not a UCUM unit as French lab reports write it, with the fix if one is known."""
    try:
        _parse(code)
    except InvalidUnit as error:
        fix, reasons = _respell(code)
        if fix is None:
            return str(error)
        return f"{code!r}: {'; '.join(reasons)}; write {fix!r}"
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
        _parse(fixed)
    except InvalidUnit:
        return None, []
    return fixed, reasons


def _read(code: str) -> _Unit:
    problem = check_unit(code)
    if problem is not None:
        raise InvalidUnit(problem)
    return _parse(code)


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


def _parse(code: str) -> _Unit:
    if not code:
        raise InvalidUnit("an empty unit code")
    if not code.isascii() or not code.isprintable() or " " in code:
        raise InvalidUnit(f"{code!r} has characters UCUM does not allow (ASCII, no spaces)")
    if "(" in code or ")" in code:
        raise InvalidUnit(f"{code!r}: bilan does not read UCUM's parentheses")
    scale = Decimal(1)
    dimension: dict[str, int] = {}
    for position, (sign, term) in enumerate(_terms(code)):
        if not term:
            if position == 0 and sign == 1 and code.startswith("/"):
                continue  # "/mL": UCUM's leading division
            raise InvalidUnit(f"{code!r} has an empty term")
        term_scale, term_dimension = _term(code, term)
        scale *= term_scale ** sign
        for base, exponent in term_dimension.items():
            dimension[base] = dimension.get(base, 0) + sign * exponent
    return _Unit(scale, tuple(sorted((b, e) for b, e in dimension.items() if e)))


def _terms(code: str) -> list[tuple[int, str]]:
    terms, sign, current, in_annotation = [], 1, "", False
    for char in code:
        if in_annotation or char not in "./":
            current += char
            if char in "{}":
                in_annotation = char == "{"
        else:
            terms.append((sign, current))
            sign, current = (-1 if char == "/" else 1), ""
    if in_annotation:
        raise InvalidUnit(f"{code!r} opens an annotation {{...}} it does not close")
    terms.append((sign, current))
    return terms


def _term(code: str, term: str) -> tuple[Decimal, dict[str, int]]:
    if annotated := _ANNOTATED.fullmatch(term):
        annotation = annotated["annotation"]
        if not annotated["component"]:
            return Decimal(1), {annotation: 1}
        scale, dimension = _term(code, annotated["component"])
        return scale, {**dimension, annotation: 1}
    if power := _POWER_OF_TEN.fullmatch(term):
        return Decimal(10) ** int(power["exponent"]), {}
    if term.isdigit():
        return Decimal(term), {}
    component = _COMPONENT.fullmatch(term)
    atom = _atom(component["body"]) if component else None
    if component is None or atom is None:
        raise InvalidUnit(f"{term!r} in {code!r} is not a UCUM unit bilan knows")
    exponent = int(component["exponent"] or 1)
    return atom.scale ** exponent, {base: e * exponent for base, e in atom.dimension.items()}


def _atom(body: str) -> _Atom | None:
    if body in _ATOMS:
        return _ATOMS[body]
    prefix, rest = body[:1], body[1:]
    atom = _ATOMS.get(rest)
    if prefix in _PREFIXES and atom is not None and atom.metric:
        return _Atom(_PREFIXES[prefix] * atom.scale, atom.dimension, False)
    return None
