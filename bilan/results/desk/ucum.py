"""UCUM, the language of result units: its grammar, over the atoms and prefixes of the UCUM
table (`bilan/data/ucum/ucum-essence.xml`, version 2.2, as published). `read` turns a code into
what it measures: a scale times a product of bases.

The grammar is UCUM's (§2 to §9 of the specification, its formal BNF): `.` and `/` of equal
precedence, read left to right (`g/24.h` is g.h/24; grams per 24 hours is `g/(24.h)`); a
leading `/` (`/min`); parentheses; integer exponents (`m2`, `s-1`, `10*-3`); integer factors
(`24`); `{annotations}`; prefixes on metric atoms only. Case-sensitive codes only.

Where bilan departs from the table's arithmetic, on purpose, a unit does not convert where
UCUM would let it (never the other way):
- the mole is a base of its own, not 6.02214076e23 (a number): 10*9/L never meets mmol/L;
- an equivalent (eq) and an osmole (osm) are bases of their own, not moles: a mole is one
  equivalent only for a monovalent ion, and an osmole counts dissolved particles;
- an annotation is a base of its own, not 1: {INR} is not {ratio}, mL/min/{1.73_m2} is not mL/min;
- an arbitrary unit ([IU], [arb'U]...) is a base of its own, as UCUM says;
- a special unit (Cel, [pH], [degF]..., a scale rather than a ratio) is a base of its own, so it
  converts only to itself.
"""

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cache, lru_cache
from xml.etree import ElementTree

from bilan.data import UCUM_ESSENCE

Dimension = tuple[tuple[str, int], ...]

_NS = {"u": "http://unitsofmeasure.org/ucum-essence"}
_OWN_BASES = frozenset({"mol", "eq", "osm"})
# Exponents of one or two digits: m3 and 10*12 read; 10*999999999 is refused, not computed.
_LARGEST_EXPONENT = 99
_LONGEST_CODE = 200  # far beyond any lab unit; keeps nested parentheses within reach

_TOKENS = re.compile(r"(?P<operator>[./])|(?P<open>\()|(?P<close>\))|(?P<annotation>\{[^{}]*\})"
                     r"|(?P<symbol>(?:[^./(){}\[\]]|\[[^\[\]]*\])+)")
_EXPONENT = re.compile(r"(?P<unit>.*?)(?P<exponent>[+-]?\d+)?")


class UnitError(ValueError):
    """A unit bilan cannot read, or a conversion it cannot make."""


class InvalidUnit(UnitError):
    pass


@dataclass(frozen=True)
class Unit:
    """What a code measures: `scale` times the product of the `dimension`'s bases."""
    scale: Decimal
    dimension: Dimension
    special: tuple[str, ...] = ()  # the special units (scales, not ratios) it holds


@dataclass(frozen=True)
class _Atom:
    metric: bool
    special: bool
    arbitrary: bool
    value: Decimal
    definition: str  # the UCUM expression `value` multiplies; "" for a base unit


def read(code: str) -> Unit:
    """The unit `code` writes; InvalidUnit saying where it stops being UCUM."""
    if not code:
        raise InvalidUnit("an empty unit code")
    if not code.isascii() or not code.isprintable() or " " in code:
        raise InvalidUnit(f"{code!r} has characters UCUM does not allow (ASCII, no spaces)")
    if len(code) > _LONGEST_CODE:
        raise InvalidUnit(f"{code[:20]!r}... is longer than any unit ({len(code)} characters)")
    return _read(code)


@lru_cache(maxsize=2048)
def _read(code: str) -> Unit:
    return _Reader(code).main_term().unit()


@dataclass
class _Value:
    scale: Decimal
    dimension: dict[str, int]
    special: tuple[str, ...] = ()

    def times(self, other: "_Value", sign: int) -> "_Value":
        dimension = dict(self.dimension)
        for base, exponent in other.dimension.items():
            dimension[base] = dimension.get(base, 0) + sign * exponent
        return _Value(self.scale * other.scale ** sign, dimension, self.special + other.special)

    def power(self, exponent: int) -> "_Value":
        return _Value(self.scale ** exponent, {b: e * exponent for b, e in self.dimension.items()},
                      self.special)

    def unit(self) -> Unit:
        return Unit(self.scale, tuple(sorted((b, e) for b, e in self.dimension.items() if e)),
                    tuple(dict.fromkeys(self.special)))


class _Reader:
    """UCUM's BNF, one method a rule: main-term, term, component, simple unit."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.tokens = list(_tokens(code))
        self.at = 0

    def main_term(self) -> _Value:
        if self._peek() == ("operator", "/"):  # "/min": the leading division of §7
            self.at += 1
            value = _Value(Decimal(1), {}).times(self._component(), -1)
            value = self._rest_of_term(value)
        else:
            value = self._term()
        if self.at < len(self.tokens):
            kind, text = self.tokens[self.at]
            if kind == "close":
                raise InvalidUnit(f"{self.code!r} closes a parenthesis it did not open")
            raise InvalidUnit(f"{self.code!r} needs '.' or '/' before {text!r}")
        return value

    def _term(self) -> _Value:
        return self._rest_of_term(self._component())

    def _rest_of_term(self, value: _Value) -> _Value:
        while self._peek()[0] == "operator":
            operator = self.tokens[self.at][1]
            self.at += 1
            value = value.times(self._component(), -1 if operator == "/" else 1)
        return value

    def _component(self) -> _Value:
        kind, text = self._peek()
        self.at += 1
        if kind == "open":
            value = self._term()
            if self._peek()[0] != "close":
                raise InvalidUnit(f"{self.code!r} opens a parenthesis it does not close")
            self.at += 1
            return value
        if kind == "annotation":
            return _annotation(self.code, text)
        if kind == "symbol":
            value = _symbol(self.code, text)
            if self._peek()[0] == "annotation":
                value = value.times(_annotation(self.code, self.tokens[self.at][1]), 1)
                self.at += 1
            return value
        raise InvalidUnit(f"{self.code!r} has an empty term")

    def _peek(self) -> tuple[str, str]:
        return self.tokens[self.at] if self.at < len(self.tokens) else ("end", "")


def _tokens(code: str) -> Iterator[tuple[str, str]]:
    at = 0
    while at < len(code):
        found = _TOKENS.match(code, at)
        if found is None or found.lastgroup is None:
            raise InvalidUnit(_unmatched(code, code[at]))
        yield found.lastgroup, found.group()
        at = found.end()


def _unmatched(code: str, char: str) -> str:
    if char == "{":
        return f"{code!r} opens an annotation {{...}} it does not close"
    if char == "[":
        return f"{code!r} opens a bracket [...] it does not close"
    return f"{code!r} closes a {'bracket' if char == ']' else 'brace'} it did not open"


def _annotation(code: str, text: str) -> _Value:
    if not text[1:-1]:
        raise InvalidUnit(f"{code!r} has an empty annotation {{}}")
    return _Value(Decimal(1), {text: 1})


def _symbol(code: str, text: str) -> _Value:
    if text.isdigit():
        return _Value(Decimal(int(text)), {})
    parts = _EXPONENT.fullmatch(text)
    assert parts is not None  # the pattern matches any text
    symbol, exponent = parts["unit"], parts["exponent"]
    if exponent is not None and abs(int(exponent)) > _LARGEST_EXPONENT:
        raise InvalidUnit(f"{text!r} in {code!r} has an exponent beyond {_LARGEST_EXPONENT}")
    value = _simple_unit(code, symbol)
    return value if exponent is None else value.power(int(exponent))


def _simple_unit(code: str, symbol: str) -> _Value:
    prefixes, atoms = _table()
    if symbol in atoms:
        return _atom(symbol)
    unprefixable = None
    for prefix, factor in prefixes.items():
        atom = symbol[len(prefix):]
        if not symbol.startswith(prefix) or atom not in atoms:
            continue
        if atoms[atom].metric:
            value = _atom(atom)
            return _Value(factor * value.scale, value.dimension, value.special)
        unprefixable = atom
    if unprefixable:
        raise InvalidUnit(f"{symbol!r} in {code!r}: {unprefixable} takes no prefix")
    raise InvalidUnit(f"{symbol!r} in {code!r} is not a UCUM unit")


@cache
def _atom(code: str) -> _Value:
    atom = _table()[1][code]
    if not atom.definition or code in _OWN_BASES or atom.special or (atom.arbitrary and atom.definition == "1"):
        return _Value(Decimal(1), {code: 1}, (code,) if atom.special else ())
    defined = _Reader(atom.definition).main_term()
    return _Value(atom.value * defined.scale, defined.dimension, defined.special)


@cache
def _table() -> tuple[Mapping[str, Decimal], Mapping[str, _Atom]]:
    """The prefixes, longest first (da before d), and the atoms of the UCUM table."""
    root = ElementTree.parse(UCUM_ESSENCE).getroot()
    prefixes = {p.attrib["Code"]: Decimal(_value_of(p).attrib["value"]) for p in root.iterfind("u:prefix", _NS)}
    atoms = {b.attrib["Code"]: _Atom(True, False, False, Decimal(1), "") for b in root.iterfind("u:base-unit", _NS)}
    for unit in root.iterfind("u:unit", _NS):
        value = _value_of(unit)
        atoms[unit.attrib["Code"]] = _Atom(
            unit.get("isMetric") == "yes", unit.get("isSpecial") == "yes", unit.get("isArbitrary") == "yes",
            Decimal(value.get("value") or 1), value.attrib["Unit"])
    return dict(sorted(prefixes.items(), key=lambda item: -len(item[0]))), atoms


def _value_of(element: ElementTree.Element) -> ElementTree.Element:
    value = element.find("u:value", _NS)
    if value is None:
        raise LookupError(f"the UCUM table's {element.get('Code')} has no value")
    return value
