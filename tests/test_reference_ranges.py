"""Reference ranges by sex and age: the catalogue carries range rows per sex and age band
(bilan/data/catalogue/ranges.csv), and a result is judged by the patient's (sex, age on the day
of the sample), received from an analyser or typed by hand; the range the Observation carries
says whom it applies to, and the report prints it as stored. A woman's haemoglobin of 12.5 g/dL
is normal, a man's is low."""

import csv
import importlib.util
import re
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree
from sqlalchemy import select, update

from bilan import data
from bilan.demo.prescriptions import EXAMS
from bilan.prescription.catalogue import read_csv
from bilan.results.desk import ranges
from bilan.results.document import conformance
from bilan.settings import Settings
from bilan.storage import catalogue
from bilan.storage.database import create_engine
from bilan.storage.migrate import MIGRATIONS, downgrade, upgrade
from bilan.storage.tables import catalogue as catalogue_table
from tests.helpers import run
from tests.orders import addressed, collected, imported, prescribed
from tests.results import (
    decide,
    documents,
    entry_path,
    issue,
    line,
    patient_aged,
    pdf_text,
    posted,
    report_files,
    result,
    results_of,
)
from tests.web import submit

NFS, RENAL = EXAMS[0], EXAMS[2]
HAEMOGLOBIN, CREATININE = "718-7", "14682-9"
GENDER = "http://hl7.org/fhir/administrative-gender"
V3 = {"h": "urn:hl7-org:v3"}


def _flag(observation: dict[str, Any]) -> str | None:
    return next((c["code"] for i in observation.get("interpretation", []) for c in i["coding"]), None)


def _analysed(fhir: httpx.Client, lab_middleware: httpx.Client, desk: httpx.Client, web_root: str, rng: Any,
              patient: Any, exam: tuple[str, str], code: str, value: float, unit: str) -> tuple[str, dict[str, Any]]:
    """An order for `patient`, and the analyser's result of `code` (no range of its own)."""
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[exam], patient=patient))
    request = prescribed(fhir, task_id, exam[0])
    return task_id, fhir.get(f"Observation/{posted(lab_middleware, result(request, code, value, unit))}").json()


def _field(page: httpx.Response, name: str) -> str | None:
    found = re.search(rf'<input[^>]*name="{re.escape(name)}"[^>]*value="([^"]*)"', page.text)
    return found.group(1) if found else None


def test_a_womans_haemoglobin_is_judged_against_womens_ranges_through_the_api(
        fhir, lab_middleware, desk, web_root, rng) -> None:
    woman, man = patient_aged(rng, "female", 40), patient_aged(rng, "male", 40)
    _, hers = _analysed(fhir, lab_middleware, desk, web_root, rng, woman, NFS, HAEMOGLOBIN, 12.5, "g/dL")
    _, his = _analysed(fhir, lab_middleware, desk, web_root, rng, man, NFS, HAEMOGLOBIN, 12.5, "g/dL")

    assert (_flag(hers), _flag(his)) == ("N", "L")
    [her_range], [his_range] = hers["referenceRange"], his["referenceRange"]
    assert (her_range["low"]["value"], her_range["high"]["value"]) == (12, 16)
    assert her_range["appliesTo"][0]["coding"][0] == {"system": GENDER, "code": "female", "display": "Female"}
    assert her_range["age"]["low"] == {"value": 12, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}
    assert "high" not in her_range["age"]
    assert her_range["text"] == "Valeurs de référence du laboratoire (femme, à partir de 12 ans)"
    assert (his_range["low"]["value"], his_range["high"]["value"]) == (13, 17)
    assert his_range["appliesTo"][0]["coding"][0]["code"] == "male" and his_range["age"]["low"]["value"] == 15


def test_children_are_judged_against_their_age_band(fhir, lab_middleware, desk, web_root, rng) -> None:
    child, infant, toddler, woman = (patient_aged(rng, "male", 8), patient_aged(rng, "female", 0.25),
                                     patient_aged(rng, "female", 2), patient_aged(rng, "female", 40))
    _, boys = _analysed(fhir, lab_middleware, desk, web_root, rng, child, NFS, HAEMOGLOBIN, 12.5, "g/dL")
    assert _flag(boys) == "N"  # 11.5 - 14.5 g/dL from 5 to 12 years, either sex
    assert "appliesTo" not in boys["referenceRange"][0] and boys["referenceRange"][0]["age"]["high"]["value"] == 12
    _, babys = _analysed(fhir, lab_middleware, desk, web_root, rng, infant, NFS, HAEMOGLOBIN, 10.2, "g/dL")
    assert _flag(babys) is None and "referenceRange" not in babys  # no range before 6 months: no guess

    _, little = _analysed(fhir, lab_middleware, desk, web_root, rng, toddler, RENAL, CREATININE, 40, "umol/L")
    _, grown = _analysed(fhir, lab_middleware, desk, web_root, rng, woman, RENAL, CREATININE, 40, "umol/L")
    assert (_flag(little), _flag(grown)) == ("H", "L")  # 15 - 31 at 2 years; 45 - 90 for a woman
    assert (little["referenceRange"][0]["low"]["value"], little["referenceRange"][0]["high"]["value"]) == (15, 31)


def test_the_entry_page_starts_from_the_patients_range_and_the_report_prints_it(
        fhir, desk, biologist, web_root, rng) -> None:
    typed: dict[str, dict[str, Any]] = {}
    for gender in ("female", "male"):
        task_id = imported(fhir, desk, web_root, addressed(rng, exams=[NFS], patient=patient_aged(rng, gender, 40)))
        collected(desk, web_root, task_id)
        nfs = prescribed(fhir, task_id, NFS[0])
        page = biologist.get(f"{web_root}{entry_path(task_id)}")
        key = f"{nfs['id']}-{HAEMOGLOBIN}"
        low, high = _field(page, f"bas-{key}"), _field(page, f"haut-{key}")
        assert (low, high) == {"female": ("12", "16"), "male": ("13", "17")}[gender]
        saved = submit(biologist, page, entry_path(task_id), line(nfs, HAEMOGLOBIN, "12,5", "g/dL", low, high))
        assert saved.url.path.endswith("/resultats"), saved.text
        [stored] = [r for r in results_of(fhir, nfs) if r["code"]["coding"][0]["code"] == HAEMOGLOBIN]
        typed[gender] = {"task": task_id, "result": stored}

    hers, his = typed["female"]["result"], typed["male"]["result"]
    assert (_flag(hers), _flag(his)) == ("N", "L")
    assert hers["referenceRange"][0]["appliesTo"][0]["coding"][0]["code"] == "female"
    assert his["referenceRange"][0]["appliesTo"][0]["coding"][0]["code"] == "male"

    task_id = typed["female"]["task"]
    assert decide(biologist, web_root, task_id, "biologique", [hers["id"]]).status_code == 200
    assert issue(biologist, web_root, task_id).status_code == 200
    [document] = documents(fhir, task_id)
    cda, pdf = report_files(fhir, document)
    assert conformance.problems(cda) == []
    [observed] = etree.fromstring(cda).xpath(f"//h:observation[h:code/@code='{HAEMOGLOBIN}']", namespaces=V3)
    bounds = observed.find("h:referenceRange/h:observationRange/h:value", V3)
    assert (bounds.find("h:low", V3).get("value"), bounds.find("h:high", V3).get("value")) == ("12", "16")
    assert observed.find("h:interpretationCode", V3).get("code") == "N"
    assert "12 – 16" in " ".join(pdf_text(pdf).split())


def test_the_range_that_fits_best_wins_and_without_sex_or_age_the_general_one_applies() -> None:
    entries = {r["local_code"]: r for r in read_csv(data.CATALOGUE)}
    hb, ferritin = entries["HB"], entries["FERRI"]
    day = date(2026, 11, 24)

    def applied(entry: dict[str, Any], patient: dict[str, Any] | None) -> tuple[Any, Any]:
        found = ranges.patient_range(entry, entry["ranges"], patient, day)
        return found.low, found.high

    assert applied(hb, {"gender": "male", "birthDate": "2013-01-10"}) == (12, 16)  # 13 years: before 15
    assert applied(hb, {"gender": "male", "birthDate": "2011-11-24"}) == (13, 17)  # 15 that day
    assert applied(hb, {"gender": "female", "birthDate": "2026-06-25"}) == (None, None)  # under 6 months
    assert applied(hb, {"gender": "unknown", "birthDate": "1980-01-01"}) == (11.5, 14.5)  # the general range
    assert applied(hb, {"gender": "female", "birthDate": "1980"}) == (11.5, 14.5)  # a year is not an age
    assert applied(hb, None) == (11.5, 14.5)
    assert applied(ferritin, {"gender": "female", "birthDate": "2016-03-01"}) == (20, 300)  # no child rows


def _ranges_with(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "catalogue.csv"
    path.write_bytes(data.CATALOGUE.read_bytes())
    text = (data.CATALOGUE.parent / "ranges.csv").read_text(encoding="utf-8")
    (tmp_path / "ranges.csv").write_text(text + "".join(f"{r}\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(("row", "message"), [
    ("HB,female,40,60,12.5,15.5,", "overlaps another row of the same sex"),
    ("XYZ,any,,,1,2,", "no quantitative catalogue entry has this local code"),
    ("NFS,any,,,1,2,", "no quantitative catalogue entry has this local code"),
    ("K,other,,,3,5,", "sex is one of female, male, any"),
    ("K,any,0.3,1,3,5,", "is not a whole number of months"),
    ("K,any,5,2,3,5,", "age_min_years 5 is not below age_max_years 2"),
    ("K,any,70,,2.5,5,", "critical_low 2.8 is above ref_low 2.5"),
    ("K,any,70,,3.5,25,", "ref_high 25 is outside the plausible limits"),
])
def test_a_ranges_file_that_contradicts_itself_or_the_catalogue_is_not_loaded(tmp_path, row, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        read_csv(_ranges_with(tmp_path, row))


def test_the_catalogue_loads_its_ranges_and_0008_gives_them_to_existing_databases(own_database: Settings) -> None:
    async def scenario() -> tuple[dict[str, int], dict[str, int], dict[str, Any]]:
        engine = create_engine(own_database)
        try:
            await upgrade(engine)
            count = await catalogue.load(engine, read_csv(data.CATALOGUE))
            assert count == 82
            async with engine.connect() as conn:
                loaded = {code: len(rows) for code, rows in (await catalogue.ranges(conn, ["HB", "CREA", "K"])).items()}
            await downgrade(engine, "0007")
            async with engine.begin() as conn:  # the lab changed haemoglobin's unit before 0008
                await conn.execute(update(catalogue_table).where(catalogue_table.c.local_code == "HB")
                                   .values(ucum="g/L"))
            await upgrade(engine)
            async with engine.connect() as conn:
                migrated = {code: len(rows) for code, rows in (await catalogue.ranges(conn, ["HB", "CREA"])).items()}
                c = catalogue_table.c
                limits = {row.local_code: (row.critical_low, row.critical_high) for row in await conn.execute(
                    select(c.local_code, c.critical_low, c.critical_high).where(c.local_code.in_(["K", "HB", "NFS"])))}
            return loaded, migrated, limits
        finally:
            await engine.dispose()

    loaded, migrated, limits = run(scenario())
    assert loaded == {"HB": 6, "CREA": 10}  # potassium's range is everyone's
    assert migrated == {"CREA": 10}  # not bilan's haemoglobin any more: no rows guessed for it
    assert limits == {"K": ("2.8", "6.2"), "HB": (None, None), "NFS": (None, None)}

    path = next((MIGRATIONS / "versions").glob("0008_*.py"))
    spec = importlib.util.spec_from_file_location("migration_0008", path)
    assert spec and spec.loader
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    entries = {r["local_code"]: r for r in read_csv(data.CATALOGUE)}
    with (data.CATALOGUE.parent / "ranges.csv").open(encoding="utf-8", newline="") as handle:
        expected = [(r["local_code"], entries[r["local_code"]]["loinc"], entries[r["local_code"]]["ucum"], r["sex"],
                     *(r[c] or None for c in ("age_min_years", "age_max_years", "ref_low", "ref_high")))
                    for r in csv.DictReader(handle)]
    assert [tuple(row) for row in migration.RANGES] == expected
