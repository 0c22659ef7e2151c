"""Result rules without a database: UCUM units and conversions on the real catalogue,
interpretation flags against the CI-SIS value set, delta checks."""

import xml.etree.ElementTree as ET
from decimal import Decimal
from typing import Any

import pytest

from bilan.prescription.catalogue import read_csv
from bilan.results.desk.delta import DELTA_RULES, DeltaRule, delta_check
from bilan.results.desk.interpretation import (
    LABELS,
    UnknownInterpretation,
    flag,
    flag_qualitative,
    interpret,
    label,
)
from bilan.results.desk.units import (
    IncompatibleUnits,
    InvalidUnit,
    check_unit,
    convert,
    suggest_unit,
)
from bilan.settings import ROOT
from tests.helpers import ANS_FIXTURES

D = Decimal
CATALOGUE = read_csv(ROOT.parent / "shared" / "catalogue" / "catalogue.csv")
INTERPRETATION_JDV = (ANS_FIXTURES / "TestContenuCDA-3-0" / "jeuxDeValeurs"
                      / "JDV_HL7_ObservationInterpretation_CISIS.xml")
GLUCOSE, CREATININE, POTASSIUM, HAEMOGLOBIN = "40193-5", "14682-9", "2823-3", "718-7"


def _row(loinc: str) -> dict[str, Any]:
    return next(row for row in CATALOGUE if row["loinc"] == loinc)


def _jdv() -> dict[str, str]:
    ns = {"svs": "urn:ihe:iti:svs:2008"}
    concepts = ET.parse(INTERPRETATION_JDV).getroot().iterfind(".//svs:Concept", ns)
    return {c.get("code"): c.get("displayName") for c in concepts}  # type: ignore[misc]


# --- units ---------------------------------------------------------------------------------

@pytest.mark.parametrize("unit", sorted({r[c] for r in CATALOGUE for c in ("ucum", "alt_ucum") if r[c]}))
def test_every_catalogue_unit_is_valid(unit: str) -> None:
    assert check_unit(unit) is None


@pytest.mark.parametrize("unit", [
    "%", "g/L", "g/dL", "mg/L", "mg/dL", "mmol/L", "umol/L", "nmol/L", "pmol/L", "U/L", "[IU]/L",
    "m[IU]/L", "mU/L", "10*9/L", "10*12/L", "10*3/uL", "fL", "pg", "s", "{ratio}", "{INR}",
    "mL/min/{1.73_m2}", "ng/mL", "pg/mL", "ug/L", "mm/h", "/mL", "ukat/L", "meq/L", "mm3",
])
def test_common_units_are_valid(unit: str) -> None:
    assert check_unit(unit) is None


@pytest.mark.parametrize(("written", "ucum"), [
    ("mmol/l", "mmol/L"),
    ("g/dl", "g/dL"),
    ("U/l", "U/L"),
    ("fl", "fL"),
    ("\u00b5mol/L", "umol/L"),  # micro sign
    ("\u03bcmol/l", "umol/L"),  # Greek mu
    ("10^9/L", "10*9/L"),
    ("10E9/L", "10*9/L"),
    ("x10*9/L", "10*9/L"),
    ("G/L", "10*9/L"),
    ("T/L", "10*12/L"),
    ("mUI/L", "m[IU]/L"),
    ("UI/L", "[IU]/L"),
    ("mIU/mL", "m[IU]/mL"),
    ("ml/min/1.73m2", "mL/min/{1.73_m2}"),
    ("mL/min/1,73 m\u00b2", "mL/min/{1.73_m2}"),
    ("mmol / L", "mmol/L"),
    ("sec", "s"),
    ("INR", "{INR}"),
    ("ratio", "{ratio}"),
    ("\u00b53", "fL"),
    ("mEq/l", "meq/L"),
])
def test_french_spellings_are_rejected_with_their_ucum_form(written: str, ucum: str) -> None:
    assert suggest_unit(written) == ucum
    problem = check_unit(written)
    assert problem is not None and problem.endswith(f"write {ucum!r}")


def test_a_suggestion_says_why() -> None:
    assert check_unit("mmol/l") == "'mmol/l': the litre is written L, not l; write 'mmol/L'"
    assert check_unit("G/L") == "'G/L': giga per litre is 10*9/L (G is the gauss); write '10*9/L'"


@pytest.mark.parametrize(("written", "why"), [
    ("", "empty"),
    ("bananas", "not a UCUM unit"),
    ("mg/(dL", "does not close"),
    ("mL/min/{1.73_m2", "does not close"),
    ("mmol/L/", "empty term"),
    ("mmol//L", "empty term"),
    ("kmin/L", "min takes no prefix"),  # cd/L is the candela per litre
])
def test_unreadable_units_have_no_suggestion(written: str, why: str) -> None:
    assert suggest_unit(written) is None
    problem = check_unit(written)
    assert problem is not None and why in problem


def test_glucose_converts_with_the_catalogue_factor() -> None:
    factor = D(_row(GLUCOSE)["factor_to_alt"])
    assert factor == D("0.18016")
    assert convert(D("5.5"), "mmol/L", "g/L", GLUCOSE, CATALOGUE) == D("0.99")  # 0.99088
    assert convert(D("5.50"), "mmol/L", "g/L", GLUCOSE, CATALOGUE) == D("0.991")
    assert convert(D("1.10"), "g/L", "mmol/L", GLUCOSE, CATALOGUE) == D("6.11")  # 6.1057
    assert convert(D("99"), "mg/dL", "mmol/L", GLUCOSE, CATALOGUE) == D("5.5")  # via 0.99 g/L
    assert convert(D("7.0"), "mmol/L", "mg/dL", GLUCOSE, CATALOGUE) == D("130")  # 126.1
    assert str(convert(D("7.00"), "mmol/L", "mg/dL", GLUCOSE, CATALOGUE)) == "126"


def test_creatinine_converts_with_the_catalogue_factor() -> None:
    assert D(_row(CREATININE)["factor_to_alt"]) == D("0.1131")
    assert convert(D("80"), "umol/L", "mg/L", CREATININE, CATALOGUE) == D("9.0")  # 9.048
    assert convert(D("88"), "umol/L", "mg/L", CREATININE, CATALOGUE) == D("10")  # 9.95, 2 digits
    assert convert(D("12.0"), "mg/L", "umol/L", CREATININE, CATALOGUE) == D("106")  # 106.1
    assert convert(D("1.00"), "mg/dL", "umol/L", CREATININE, CATALOGUE) == D("88.4")


def test_conversion_round_trips_within_the_input_precision() -> None:
    for value in (D("3.9"), D("6.1"), D("11.2")):
        there = convert(value, "mmol/L", "g/L", GLUCOSE, CATALOGUE)
        assert convert(there, "g/L", "mmol/L", GLUCOSE, CATALOGUE) == value


@pytest.mark.parametrize(("value", "source", "target", "expected"), [
    ("13.5", "g/dL", "g/L", "135"),
    ("135", "g/L", "g/dL", "13.5"),
    ("1.2", "g/L", "mg/L", "1200"),
    ("850", "mg/L", "g/L", "0.850"),
    ("0.85", "g/L", "mg/dL", "85"),
    ("0.081", "mmol/L", "umol/L", "81"),
    ("81", "umol/L", "mmol/L", "0.081"),
    ("500", "ng/mL", "ug/L", "500"),
    ("40", "%", "L/L", "0.40"),
    ("5.2", "10*9/L", "/uL", "5200"),
    ("100", "U/L", "ukat/L", "1.67"),
    ("0", "g/L", "mg/L", "0"),
])
def test_prefixes_of_one_dimension_convert_without_the_catalogue(
        value: str, source: str, target: str, expected: str) -> None:
    converted = convert(D(value), source, target, "no-such-loinc", [])
    assert converted == D(expected) and str(converted) == expected


def test_the_same_unit_keeps_the_value() -> None:
    assert str(convert(D("4.20"), "mmol/L", "mmol/L", POTASSIUM, CATALOGUE)) == "4.20"


@pytest.mark.parametrize(("local_code", "value"), [
    ("HB", "13.5"), ("HT", "42"), ("CCMH", "33.0"), ("DDIM", "450"), ("ECBU_LEU", "12000"),
])
def test_catalogue_factors_agree_with_prefixes_where_both_apply(local_code: str, value: str) -> None:
    row = next(r for r in CATALOGUE if r["local_code"] == local_code)
    generic = convert(D(value), row["ucum"], row["alt_ucum"], "no-such-loinc", [])
    assert generic == D(value) * D(row["factor_to_alt"])


@pytest.mark.parametrize(("source", "target", "loinc"), [
    ("mmol/L", "g/L", POTASSIUM),  # no factor in the catalogue for potassium
    ("mmol/L", "g/L", "no-such-loinc"),
    ("mmol/L", "U/L", GLUCOSE),  # the glucose factor is for g/L only
    ("U/L", "[IU]/L", "1920-8"),
    ("{INR}", "{ratio}", "6301-6"),
    ("%", "{ratio}", "63561-5"),
    ("g/dL", "mmol/L", HAEMOGLOBIN),
])
def test_units_of_different_dimensions_do_not_convert(source: str, target: str, loinc: str) -> None:
    with pytest.raises(IncompatibleUnits, match=f"LOINC {loinc}"):
        convert(D("1.0"), source, target, loinc, CATALOGUE)


def test_conversion_refuses_an_invalid_unit_and_says_the_fix() -> None:
    with pytest.raises(InvalidUnit, match=r"write 'mmol/L'"):
        convert(D("5.5"), "mmol/l", "g/L", GLUCOSE, CATALOGUE)
    with pytest.raises(InvalidUnit, match="bananas"):
        convert(D("5.5"), "mmol/L", "bananas", GLUCOSE, CATALOGUE)


# --- interpretation ------------------------------------------------------------------------

def test_labels_are_the_ci_sis_value_set() -> None:
    assert LABELS == _jdv()
    assert label("LL") == "Très anormalement bas, alerte"
    with pytest.raises(UnknownInterpretation):
        label("LOW")


@pytest.mark.parametrize(("value", "expected"), [
    ("2.4", "LL"), ("2.5", "L"), ("3.4", "L"), ("3.5", "N"), ("4.2", "N"),
    ("5.0", "N"), ("5.1", "H"), ("6.5", "H"), ("6.6", "HH"),
])
def test_potassium_flags_at_every_boundary(value: str, expected: str) -> None:
    assert flag(D(value), D("3.5"), D("5.0"), D("2.5"), D("6.5")) == expected


@pytest.mark.parametrize(("value", "expected"), [("1.0", "L"), ("3.5", "N"), ("9.9", "H")])
def test_without_critical_limits_there_is_no_ll_or_hh(value: str, expected: str) -> None:
    assert flag(D(value), D("3.5"), D("5.0")) == expected


def test_one_sided_ranges() -> None:
    crp_high = D(_row("1988-5")["ref_high"])  # CRP < 5.0 mg/L
    assert flag(D("5.0"), None, crp_high) == "N"
    assert flag(D("5.1"), None, crp_high) == "H"
    assert flag(D("0"), None, crp_high) == "N"
    dfg_low = D(_row("62238-1")["ref_low"])  # eGFR >= 90
    assert flag(D("89"), dfg_low, None) == "L"
    assert flag(D("90"), dfg_low, None) == "N"
    assert flag(D("140"), dfg_low, None) == "N"


def test_no_range_gives_no_flag_unless_a_critical_limit_is_crossed() -> None:
    assert flag(D("12.5"), None, None) is None
    assert flag(D("12.5"), None, None, critical_high=D("40")) is None
    assert flag(D("45"), None, None, critical_high=D("40")) == "HH"


def test_every_computed_flag_is_in_the_value_set() -> None:
    codes = {flag(D(v), D("3.5"), D("5.0"), D("2.5"), D("6.5")) for v in ("1", "3", "4", "6", "9")}
    assert codes == {"LL", "L", "N", "H", "HH"} and codes <= set(_jdv())
    assert {flag_qualitative("POS", {"NEG"}), flag_qualitative("NEG", {"NEG"})} <= set(_jdv())


@pytest.mark.parametrize(("low", "high", "critical_low", "critical_high"), [
    ("5.0", "3.5", None, None),
    ("3.5", "5.0", "3.6", None),
    ("3.5", "5.0", None, "4.9"),
])
def test_inconsistent_limits_are_refused(low: str, high: str, critical_low: str | None,
                                         critical_high: str | None) -> None:
    with pytest.raises(ValueError, match="above"):
        flag(D("4"), D(low), D(high), None if critical_low is None else D(critical_low),
             None if critical_high is None else D(critical_high))


def test_qualitative_results() -> None:
    assert flag_qualitative("NEG", {"NEG", "ND"}) == "N"
    assert flag_qualitative("POS", {"NEG", "ND"}) == "A"
    with pytest.raises(ValueError):
        flag_qualitative("POS", set())


def test_the_instrument_flag_wins_when_it_is_in_the_value_set() -> None:
    assert interpret("H", D("4.2"), D("3.5"), D("5.0")) == "H"  # the instrument knows better
    assert interpret(None, D("5.2"), D("3.5"), D("5.0")) == "H"
    assert interpret("", D("4.2"), D("3.5"), D("5.0")) == "N"
    with pytest.raises(UnknownInterpretation, match="'HIGH'"):
        interpret("HIGH", D("5.2"), D("3.5"), D("5.0"))


# --- delta check ---------------------------------------------------------------------------

def test_every_delta_rule_is_in_the_catalogue_unit() -> None:
    for rule in DELTA_RULES:
        assert _row(rule.loinc)["ucum"] == rule.unit, rule.label
        assert rule.max_absolute is not None or rule.max_relative is not None


def test_a_potassium_jump_within_the_window_is_implausible() -> None:
    result = delta_check(D("5.6"), D("4.0"), 1, POTASSIUM)
    assert result.implausible and result.interpretation == "U"
    assert result.absolute_change == D("1.6") and result.relative_change == D("0.4000")
    assert result.rule is not None and result.rule.label == "Potassium"
    assert delta_check(D("2.9"), D("4.0"), 1, POTASSIUM).interpretation == "D"


def test_plausible_changes_are_not_flagged() -> None:
    result = delta_check(D("4.8"), D("4.0"), 1, POTASSIUM)
    assert not result.implausible and result.interpretation is None
    assert not delta_check(D("5.0"), D("4.0"), 2, POTASSIUM).implausible  # exactly at the limit


def test_outside_the_window_nothing_is_implausible() -> None:
    assert delta_check(D("5.6"), D("4.0"), 2, POTASSIUM).implausible
    assert not delta_check(D("5.6"), D("4.0"), 2.5, POTASSIUM).implausible


def test_with_two_limits_both_must_be_exceeded() -> None:
    assert not delta_check(D("100"), D("60"), 1, CREATININE).implausible  # +40, +67 %
    assert not delta_check(D("360"), D("300"), 1, CREATININE).implausible  # +60, +20 %
    result = delta_check(D("130"), D("60"), 1, CREATININE)  # +70, +117 %
    assert result.implausible and result.relative_change == D("1.1667")


def test_platelets_and_glucose() -> None:
    assert delta_check(D("120"), D("300"), 1, "777-3").interpretation == "D"  # -180, -60 %
    assert not delta_check(D("20"), D("45"), 1, "777-3").implausible  # -25: absolute too small
    assert delta_check(D("14.0"), D("5.5"), 1, GLUCOSE).implausible
    assert not delta_check(D("8.0"), D("5.5"), 1, GLUCOSE).implausible


def test_analytes_without_a_rule_are_never_flagged() -> None:
    result = delta_check(D("900"), D("25"), 1, "1920-8")  # ASAT x36
    assert result.rule is None and not result.implausible
    assert result.absolute_change == D("875") and result.relative_change == D("35.0000")


def test_a_result_in_another_unit_than_the_rule_converts_the_limit() -> None:
    assert not delta_check(D("120"), D("135"), 1, HAEMOGLOBIN, unit="g/L").implausible  # 1.5 g/dL
    assert delta_check(D("105"), D("135"), 1, HAEMOGLOBIN, unit="g/L").implausible  # 3.0 g/dL
    with pytest.raises(IncompatibleUnits):
        delta_check(D("1.10"), D("0.90"), 1, GLUCOSE, unit="g/L")


def test_a_previous_value_of_zero_has_no_relative_change() -> None:
    result = delta_check(D("0.5"), D("0"), 1, "no-rule")
    assert result.relative_change is None and result.absolute_change == D("0.5")
    rules = [DeltaRule("x", "relative only", "mmol/L", 2, max_relative=D("0.5"))]
    assert delta_check(D("0.5"), D("0"), 1, "x", rules=rules).implausible
    assert not delta_check(D("0"), D("0"), 1, "x", rules=rules).implausible


def test_a_lab_passes_its_own_rules() -> None:
    strict = [DeltaRule(POTASSIUM, "Potassium", "mmol/L", 7, max_absolute=D("0.5"))]
    assert delta_check(D("4.8"), D("4.0"), 5, POTASSIUM, rules=strict).implausible
    assert not delta_check(D("4.8"), D("4.0"), 5, POTASSIUM).implausible


def test_the_previous_result_must_come_first() -> None:
    with pytest.raises(ValueError, match="first"):
        delta_check(D("4.0"), D("4.1"), -1, POTASSIUM)
