"""The check keys behind the French rules, on known values."""

import pytest

from bilan.fhir.dates import date_range
from bilan.prescription.exams import loinc_problem
from bilan.prescription.ins import ins_problem
from bilan.prescription.practitioners import rpps_problem


@pytest.mark.parametrize("ins", ["279035121518989", "185029912345656"])
def test_valid_ins(ins: str) -> None:
    assert ins_problem(ins) is None


def test_corsican_ins_counts_2a_as_19_and_2b_as_18() -> None:
    assert ins_problem("185052A004123" + f"{97 - 1850519004123 % 97:02d}") is None
    assert ins_problem("185052B004123" + f"{97 - 1850518004123 % 97:02d}") is None
    assert ins_problem("185052A004123" + f"{97 - 1850518004123 % 97:02d}") is not None


@pytest.mark.parametrize("ins, reason", [
    ("123456789012244", "gives key 12, not 44"),      # ANS document-core example patient
    ("279035121518988", "gives key 89, not 88"),
    ("27903512151898", "15 characters"),
    ("979035121518989", "not shaped like a NIR"),
    ("2790351215189XX", "not shaped like a NIR"),
])
def test_invalid_ins(ins: str, reason: str) -> None:
    assert reason in ins_problem(ins)


def test_rpps() -> None:
    assert rpps_problem("10003456786") is None
    assert "Luhn" in rpps_problem("10003456787")
    assert "11 digits" in rpps_problem("1000345678")


def test_loinc_check_digit() -> None:
    assert loinc_problem("2345-7") is None
    assert loinc_problem("58410-2") is None
    assert "check digit" in loinc_problem("2345-8")
    assert "not a LOINC code" in loinc_problem("GLU")


def test_date_precision_is_a_range() -> None:
    assert date_range("2024")[1].year == 2025
    start, end = date_range("2024-03-10T10:00:00+01:00")
    assert (start.hour, (end - start).total_seconds()) == (9, 1)
