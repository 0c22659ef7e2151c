"""UCUM as bilan reads it: the grammar and table of the specification (its own examples, every
atom it defines, the ANS list of UCUM codes), bilan's spelling on top of it, and conversions
that come from the parsed dimensions, or from the catalogue across mass and moles."""

import re
from decimal import Decimal
from xml.etree import ElementTree

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bilan.data import CDA_KIT, UCUM_ESSENCE
from bilan.prescription.catalogue import read_csv
from bilan.results.desk import ucum
from bilan.results.desk.units import IncompatibleUnits, InvalidUnit, check_unit, convert, suggest_unit
from bilan.settings import ROOT

D = Decimal
CATALOGUE = read_csv(ROOT.parent / "shared" / "catalogue" / "catalogue.csv")
GLUCOSE, CREATININE, POTASSIUM = "40193-5", "14682-9", "2823-3"
ANS_UCUM = CDA_KIT / "schematrons" / "profils" / "terminologies" / "terminologie" / "2.16.840.1.113883.6.8.xml"
AVOGADRO, AVOGADRO_UCUM_1 = D("6.02214076e23"), D("6.0221367e23")
SI_BASES = {"m", "s", "g", "rad", "K", "C", "cd"}


def _same(unit: str, other: str) -> bool:
    one, two = ucum.read(unit), ucum.read(other)
    return one.dimension == two.dimension and abs(one.scale / two.scale - 1) < D("1e-25")


# --- the four units of the issue -------------------------------------------------------------

def test_grams_per_24_hours_is_grams_per_day() -> None:
    assert check_unit("g/(24.h)") is None
    assert _same("g/(24.h)", "g/d")
    assert convert(D("1.5"), "g/(24.h)", "g/d", "no-such-loinc", []) == D("1.5")
    assert str(convert(D("150"), "mg/(24.h)", "g/(24.h)", "no-such-loinc", [])) == "0.150"
    assert str(convert(D("2.0"), "g/(24.h)", "mg/h", "no-such-loinc", [])) == "83"


def test_g_per_24_dot_h_is_read_left_to_right_as_the_specification_says() -> None:
    # UCUM §7: "." and "/" have the same precedence, read from left to right: (g/24).h.
    assert _same("g/24.h", "g.h/24") and not _same("g/24.h", "g/(24.h)")
    assert dict(ucum.read("g/24.h").dimension) == {"g": 1, "s": 1}
    # A lab that writes it means per 24 hours: bilan says so rather than store gram-hours.
    assert suggest_unit("g/24.h") == "g/(24.h)"
    assert check_unit("g/24.h") == ("'g/24.h': hours in a divisor go in parentheses, /(24.h): UCUM reads / and . "
                                    "left to right, so g/24.h is g.h/24; write 'g/(24.h)'")
    for written in ("g/24h", "g/24 h", "mmol/24h"):
        assert suggest_unit(written) == written.replace(" ", "").replace("24h", "(24.h)")
    assert suggest_unit("mL/12h") == "mL/(12.h)"


def test_millimetres_of_mercury_are_a_pressure() -> None:
    assert check_unit("mm[Hg]") is None
    assert str(convert(D("120"), "mm[Hg]", "kPa", "no-such-loinc", [])) == "16.0"  # 15.9986
    assert str(convert(D("16.0"), "kPa", "mm[Hg]", "no-such-loinc", [])) == "120"
    assert _same("[in_i'Hg]", "m[Hg].[in_i]/m")


def test_ph_is_a_scale_that_converts_only_to_itself() -> None:
    assert check_unit("[pH]") is None
    assert str(convert(D("7.40"), "[pH]", "[pH]", "no-such-loinc", [])) == "7.40"
    with pytest.raises(IncompatibleUnits, match=r"\[pH\] is a scale"):
        convert(D("7.40"), "[pH]", "mol/L", "no-such-loinc", [])
    with pytest.raises(IncompatibleUnits, match="Cel is a scale"):
        convert(D("37.0"), "Cel", "K", "no-such-loinc", [])


def test_milliosmoles_per_kilogram_are_not_millimoles() -> None:
    assert check_unit("mosm/kg") is None
    assert str(convert(D("290"), "mosm/kg", "osm/kg", "no-such-loinc", [])) == "0.290"
    with pytest.raises(IncompatibleUnits):
        convert(D("290"), "mosm/kg", "mmol/kg", "no-such-loinc", [])


# --- the specification's examples and table --------------------------------------------------

# From the UCUM specification (version 2.2), "Example Unit Terms by Term": the code, its value in
# the canonical form and the canonical unit. Rows marked * were computed by the specification
# with the Avogadro number of UCUM 1.x (6.0221367e23); its table, and bilan, have 6.02214076e23.
SPECIFICATION_EXAMPLES = """
/[arb'U]  1  1
/[HPF]  1  1
/[iU]  1  1
/{tot}  1  1
/g{HGB}  1  g-1
/kg{body'wt}  .001  g-1
/L  1000  m-3
/min  0.0166666666666667  s-1
[iU]/d  1.15740740740741e-5  s-1
[iU]/L  1000  m-3
10*12/L  1e15  m-3
10*3.{RBC}  1000  1
10*3/mm3  1000000000000  m-3
10*6/L  1000000000  m-3
10*9/L  1000000000000  m-3
10.L/(min.m2)  0.000166666666666667  m.s-1
10.uN.s/(cm5.m2)  100000000  m-6.g.s-1
A/m  1  m-1.s-1.C
cm[H2O]  98066.5  m-1.g.s-2
cm[H2O].s/L  98066500  m-4.g.s-1
cm[H2O]/(s.m)  98066.5  m-2.g.s-3
fL  1e-18  m3
fmol  602214076  1
gf.m/({hb}.m2)  9.80665  s-2.g
g/(8.h)  3.47222222222222e-5  g.s-1
g/(8.kg.h)  3.47222222222222e-8  s-1
g/(kg.d)  1.15740740740741e-8  s-1
g/dL  10000  m-3.g
g/kg  0.001  1
J/L  1000000  m-1.g.s-2
K/W  0.001  m-2.g-1.s3.K
kat/L  6.02214076e26  m-3.s-1
kcal  4184000  m2.g.s-2
kcal/d  48.4259259259259  m2.g.s-3
kg/mol  1.66054018667494e-21  g  *
kPa  1000000  m-1.g.s-2
L.s2/s  0.001  m3.s
L/(8.h)  3.47222222222222e-8  m3.s-1
lm/m2  1  m-2.rad2.cd
m[iU]/mL  1000  m-3
mbar.s/L  100000000  m-4.g.s-1
meq  6.02214076e20  1
meq/(kg.min)  1.00368945e16  g-1.s-1  *
meq/L  6.02214076e23  m-3
mg/(8.h.kg)  3.47222222222222e-11  s-1
mg/dL  10  m-3.g
mg/kg  1e-6  1
mL/({h'b}.m2)  1e-6  m
mL/cm[H2O]  1.01971621297793e-11  m4.g-1.s2
mL/mbar  1e-11  m4.g-1.s2
mm/h  2.77777777777778e-7  m.s-1
mm[Hg]  133322  m-1.g.s-2
mmol/(kg.d)  6970065625000  g-1.s-1  *
mmol/L  6.02214076e23  m-3
mmol/min  1.00368945e19  s-1  *
mol/(kg.s)  6.02214076e20  g-1.s-1
mosm/L  6.02214076e23  m-3
Ms  1000000  s
mV  1  m2.g.s-2.C-1
N.s  1000  m.g.s-1
nkat  602214076000000  s-1
Ohm.m  1000  m3.g.s-1.C-2
osm/kg  6.02214076e20  g-1
pA  1e-12  s-1.C
pT  1e-9  g.s-1.C-1
u[iU]  1e-6  1
ueq  6.02214076e17  1
ug/dL  0.01  m-3.g
ukat  6.02214076e17  s-1
umol/d  6970065625000  s-1  *
umol/L  6.02214076e20  m-3
uV  0.001  m2.g.s-2.C-1
"""


def _canonical(code: str) -> tuple[Decimal, dict[str, int]]:
    """The specification's canonical form: moles (and bilan's equivalents and osmoles) counted
    as numbers, annotations and arbitrary units as 1."""
    unit = ucum.read(code)
    scale, dimension = unit.scale, {}
    for base, exponent in unit.dimension:
        if base in SI_BASES:
            dimension[base] = exponent
        elif base in ("mol", "eq", "osm"):
            scale *= AVOGADRO ** exponent
    return scale, dimension


def _dimension(canonical_unit: str) -> dict[str, int]:
    if canonical_unit == "1":
        return {}
    found = {}
    for part in canonical_unit.split("."):
        base = part.rstrip("-0123456789")
        found[base] = int(part[len(base):] or 1)
    return found


@pytest.mark.parametrize("row", SPECIFICATION_EXAMPLES.strip().splitlines(), ids=lambda row: row.split()[0])
def test_the_specification_examples_read_to_their_canonical_form(row: str) -> None:
    code, value, canonical_unit, *stale = row.split()
    moles = sum(exponent for base, exponent in ucum.read(code).dimension if base in ("mol", "eq", "osm"))
    expected = D(value) * ((AVOGADRO / AVOGADRO_UCUM_1) ** moles if stale else 1)
    scale, dimension = _canonical(code)
    assert dimension == _dimension(canonical_unit)
    assert abs(scale / expected - 1) < D("1e-12")


@pytest.mark.parametrize(("code", "same_as"), [
    ("10*3/L", "/mL"), ("10*12/L", "/pL"), ("10*9/mm3", "/fL"), ("10.L/min", "daL/min"),
    ("10.uN.s/cm5", "dyn.s/cm5"), ("cm[H2O].s/L", "cm[H2O]/(L/s)"), ("cm[H2O]/(s.m)", "cm[H2O]/s/m"),
    ("g/(kg.h)", "g/kg/h"), ("g/(kg.h)", "10*-3/h"), ("mg/kg", "10*-6"), ("g/kg", "1/1000"), ("L.s2/s", "L.s"),
    ("mL/(8.h.kg)", "mL/kg/(8.h)"), ("mol/(kg.s)", "mol/kg/s"),
    # §7: kg/m.s2 divides kg by m and multiplies by s2; kg/(m.s2) is a pressure.
    ("kg/m.s2", "kg.s2/m"), ("kg/(m.s2)", "Pa"),
    # The table's own definitions: Oersted 250 /[pi].A/m, circular mil [pi]/4.[mil_i]2, [car_Au] /24.
    ("Oe", "250/[pi].A/m"), ("[cml_i]", "[pi]/4.[mil_i]2"), ("[car_Au]", "/24"),
    ("L", "dm3"), ("l", "L"), ("10^3", "10*3"), ("%", "10*-2"), ("U", "umol/min"), ("ukat", "10*-6.mol/s"),
    ("cm2", "10*-4.m2"), ("m[IU]", "m[iU]"), ("g%", "g/dL"),
])
def test_equal_units_read_alike(code: str, same_as: str) -> None:
    assert _same(code, same_as)


def _essence_atoms() -> list[str]:
    root = ElementTree.parse(UCUM_ESSENCE).getroot()
    namespace = "{http://unitsofmeasure.org/ucum-essence}"
    return [element.attrib["Code"] for kind in ("base-unit", "unit") for element in root.iter(namespace + kind)]


def test_every_atom_of_the_table_reads_through_its_definition() -> None:
    atoms = _essence_atoms()
    assert len(atoms) == 312
    for atom in atoms:
        assert ucum.read(atom).scale > 0, atom


def test_every_code_of_the_ans_ucum_list_reads() -> None:
    """The list the ANS terminology schematron checks a CDA unit against."""
    codes = [element.text or "" for element in ElementTree.parse(ANS_UCUM).getroot().iter("code")]
    assert len(codes) == 761
    refused = {}
    for code in codes:
        try:
            ucum.read(code)
        except InvalidUnit as error:
            refused[code] = str(error)
    # Two codes of the list end with a space; the torr is no UCUM atom.
    assert refused == {
        "g/kg ": "'g/kg ' has characters UCUM does not allow (ASCII, no spaces)",
        "L/(min.m2) ": "'L/(min.m2) ' has characters UCUM does not allow (ASCII, no spaces)",
        "Torr": "'Torr' in 'Torr' is not a UCUM unit",
    }
    # Of the rest, bilan asks for its own spelling of only two atoms: L, not l; 10*, not 10^.
    respelled = {code: suggest_unit(code) for code in codes if code not in refused and check_unit(code)}
    assert respelled == {"l": "L", "10^": "10*"}


# --- the grammar -----------------------------------------------------------------------------

def test_an_exponent_raises_the_prefixed_atom() -> None:
    assert _same("cm3", "mL") and _same("mm3", "uL") and _same("dm3", "L")
    assert _same("s-1", "/s") and _same("m+2", "m2") and _same("10*-3", "/1000")


def test_prefixes_go_on_metric_atoms_only() -> None:
    assert _same("mmol", "10*-3.mol") and _same("dam", "10.m")
    assert dict(ucum.read("cd").dimension) == {"cd": 1}  # the candela, not a centi-day
    with pytest.raises(InvalidUnit, match="min takes no prefix"):
        ucum.read("kmin")


def test_an_annotation_is_a_unit_of_its_own_for_bilan() -> None:
    """UCUM counts an annotation as 1; bilan keeps what it names apart ({INR} is not {ratio})."""
    assert dict(ucum.read("{INR}").dimension) == {"{INR}": 1}
    assert dict(ucum.read("mL/min/{1.73_m2}").dimension) == {"m": 3, "s": -1, "{1.73_m2}": -1}
    assert not _same("mg{creat}", "mg") and _same("mg{creat}", "10*-3.g{creat}")


@pytest.mark.parametrize(("written", "why"), [
    ("", "an empty unit code"),
    ("mg/(dL", "'mg/(dL' opens a parenthesis it does not close"),
    ("mg/dL)", "'mg/dL)' closes a parenthesis it did not open"),
    ("mg{creat", "'mg{creat' opens an annotation {...} it does not close"),
    ("[in_i", "'[in_i' opens a bracket [...] it does not close"),
    ("m]", "'m]' closes a bracket it did not open"),
    ("mg}", "'mg}' closes a brace it did not open"),
    ("mg{}", "'mg{}' has an empty annotation {}"),
    ("{a}mg", "'{a}mg' needs '.' or '/' before 'mg'"),
    ("(m)(s)", "'(m)(s)' needs '.' or '/' before '('"),
    ("2m", "'2m' in '2m' is not a UCUM unit"),
    ("mmol//L", "'mmol//L' has an empty term"),
    ("mmol/L/", "'mmol/L/' has an empty term"),
    ("/", "'/' has an empty term"),
    ("()", "'()' has an empty term"),
    ("10*999/L", "'10*999' in '10*999/L' has an exponent beyond 99"),
    ("m\u00b2", "has characters UCUM does not allow"),
    ("m" * 201, "is longer than any unit (201 characters)"),
    ("MMOL/L", "'MMOL' in 'MMOL/L' is not a UCUM unit"),  # case-insensitive forms are not read
])
def test_what_is_not_ucum_is_refused_saying_where(written: str, why: str) -> None:
    with pytest.raises(InvalidUnit) as refused:
        ucum.read(written)
    assert why in str(refused.value)
    assert why in (check_unit(written) or "") or suggest_unit(written)


# --- conversions -----------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "source", "target", "expected"), [
    ("1.10", "g/L", "mg/dL", "110"),
    ("110", "mg/dL", "g/L", "1.10"),
    ("5.2", "10*9/L", "10*3/uL", "5.2"),
    ("4.5", "10*12/L", "10*6/uL", "4.5"),
    ("140", "mmol/L", "mol/m3", "140"),
    ("2.0", "mg/(24.h)", "ug/h", "83"),
    ("1.0", "mL/s", "L/min", "0.060"),
    ("60", "[IU]/L", "m[IU]/mL", "60"),
])
def test_units_of_one_dimension_convert_by_their_scales(value: str, source: str, target: str, expected: str) -> None:
    assert str(convert(D(value), source, target, "no-such-loinc", [])) == expected


def test_across_mass_and_moles_the_catalogue_gives_the_factor() -> None:
    """mmol/L to mg/dL needs the molar mass: the catalogue's factor (glucose 0.18016 g/L per
    mmol/L, 180.16 g/mol), with either side in any unit of its dimension."""
    assert str(convert(D("5.5"), "mmol/L", "mg/dL", GLUCOSE, CATALOGUE)) == "99"  # 99.088
    assert str(convert(D("99"), "mg/dL", "mmol/L", GLUCOSE, CATALOGUE)) == "5.5"
    assert str(convert(D("5500"), "umol/L", "g/L", GLUCOSE, CATALOGUE)) == "0.9909"
    assert str(convert(D("1.00"), "mg/dL", "umol/L", CREATININE, CATALOGUE)) == "88.4"


@pytest.mark.parametrize(("source", "target"), [
    ("mmol/L", "mg/dL"),  # no molar mass without the catalogue
    ("10*9/L", "mmol/L"),  # cells are not moles (UCUM counts a mole as 6.02214076e23)
    ("meq/L", "mmol/L"),  # a mole is one equivalent only for a monovalent ion
    ("mosm/kg", "mmol/kg"),
    ("{INR}", "1"),
    ("mL/min/{1.73_m2}", "mL/min"),
    ("U/L", "[IU]/L"),  # an international unit is defined per substance
    ("g/L", "g"),
    ("kPa", "mm[Hg]/s"),
])
def test_units_that_measure_different_things_do_not_convert(source: str, target: str) -> None:
    with pytest.raises(IncompatibleUnits, match=re.escape(f"{source} and {target} measure different things")):
        convert(D("1.0"), source, target, "no-such-loinc", [])
    with pytest.raises(IncompatibleUnits):
        convert(D("1.0"), target, source, "no-such-loinc", [])


def test_potassium_has_no_molar_mass_in_the_catalogue() -> None:
    with pytest.raises(IncompatibleUnits, match=f"LOINC {POTASSIUM}"):
        convert(D("4.2"), "mmol/L", "mg/dL", POTASSIUM, CATALOGUE)


# --- properties ------------------------------------------------------------------------------

SAME_DIMENSION = [
    ["g/L", "mg/dL", "mg/L", "ug/mL", "g/dL", "ng/mL", "kg/m3", "g/(24.h).d/L"],
    ["mmol/L", "umol/L", "nmol/mL", "mol/m3", "pmol/uL"],
    ["10*9/L", "10*3/uL", "/nL", "10*12/m3"],
    ["g/(24.h)", "g/d", "mg/h", "ug/min", "kg/a"],
    ["mm[Hg]", "kPa", "cm[H2O]", "bar", "atm", "[psi]"],
    ["U/L", "ukat/L", "nkat/mL", "mU/mL"],
    ["%", "1", "L/L", "10*-2", "[ppm]", "g/kg"],
    ["mL/min/{1.73_m2}", "L/h/{1.73_m2}", "mL/s/{1.73_m2}"],
]
values = st.decimals(min_value=D("0.001"), max_value=D("100000"), places=3, allow_nan=False)


@settings(derandomize=True, max_examples=300)
@given(values, st.sampled_from(SAME_DIMENSION).flatmap(lambda group: st.tuples(*[st.sampled_from(group)] * 2)))
def test_an_exact_conversion_comes_back_to_the_value(value: Decimal, units: tuple[str, str]) -> None:
    there = convert(value, units[0], units[1], "no-such-loinc", [], exact=True)
    back = convert(there, units[1], units[0], "no-such-loinc", [], exact=True)
    assert abs(back - value) <= value * D("1e-20")


CATALOGUE_PAIRS = [(row["loinc"], row["ucum"], row["alt_ucum"]) for row in CATALOGUE if row["factor_to_alt"]]


@settings(derandomize=True, max_examples=200)
@given(values, st.sampled_from(CATALOGUE_PAIRS))
def test_a_catalogue_conversion_comes_back_to_the_value(value: Decimal, pair: tuple[str, str, str]) -> None:
    loinc, unit, alt = pair
    there = convert(value, unit, alt, loinc, CATALOGUE, exact=True)
    assert abs(convert(there, alt, unit, loinc, CATALOGUE, exact=True) - value) <= value * D("1e-20")


@settings(derandomize=True, max_examples=200)
@given(values, st.sampled_from(["g/L", "mg/dL", "mg/L", "ug/mL", "g/dL", "ug/L"]),
       st.sampled_from(["g/L", "mg/dL", "mg/L", "ug/mL", "g/dL", "ug/L"]))
def test_a_power_of_ten_conversion_keeps_the_digits_both_ways(value: Decimal, source: str, target: str) -> None:
    there = convert(value, source, target, "no-such-loinc", [])
    assert convert(there, target, source, "no-such-loinc", []) == value


SIMPLE = ["g", "mg", "kg", "L", "dL", "mL", "mol", "mmol", "s", "min", "h", "d", "m2", "cm3", "10*3", "10*-6", "24",
          "[IU]", "U", "{cells}", "mm[Hg]", "kPa", "%"]


@settings(derandomize=True, max_examples=300)
@given(st.lists(st.tuples(st.sampled_from("./"), st.sampled_from(SIMPLE)), min_size=1, max_size=6),
       st.sampled_from(SIMPLE))
def test_a_term_reads_from_left_to_right(rest: list[tuple[str, str]], first: str) -> None:
    code = first + "".join(operator + unit for operator, unit in rest)
    scale, dimension = ucum.read(first).scale, dict(ucum.read(first).dimension)
    for operator, unit in rest:
        sign = -1 if operator == "/" else 1
        scale *= ucum.read(unit).scale ** sign
        for base, exponent in ucum.read(unit).dimension:
            dimension[base] = dimension.get(base, 0) + sign * exponent
    read = ucum.read(code)
    assert read.dimension == tuple(sorted((b, e) for b, e in dimension.items() if e))
    assert abs(read.scale / scale - 1) < D("1e-25")
    assert _same(f"({code})", code) and _same(f"{first}/({code})", f"{first}.{first}/{first}/({code})")


@settings(derandomize=True, max_examples=100)
@given(st.sampled_from(sorted({row[c] for row in CATALOGUE for c in ("ucum", "alt_ucum") if "L" in (row[c] or "")})),
       st.sampled_from(["\u00b5", "\u03bc"]))
def test_a_french_spelling_of_a_catalogue_unit_gets_its_ucum_form_back(unit: str, micro: str) -> None:
    written = unit.replace("L", "l").replace("u", micro).replace("10*", "10^")
    assert suggest_unit(written) == unit
    assert (check_unit(written) or "").endswith(f"write {unit!r}")
