"""A safety net under results: a value no living patient can have (a sodium of 5, a glucose of
-5, a scanner's double read) is refused where it is sent or typed, with the reason next to it,
and nothing is stored; a leukocyte differential that cannot add up is refused when typed and
stops the biological validation when it arrives piece by piece from an analyser."""

import csv
import importlib.util
import re
from decimal import Decimal
from html import unescape
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from bilan import data
from bilan.demo.prescriptions import EXAMS
from bilan.prescription.catalogue import read_csv
from bilan.results.desk import plausibility
from bilan.settings import Settings
from bilan.storage import catalogue
from bilan.storage.database import create_engine
from bilan.storage.migrate import MIGRATIONS, downgrade, upgrade
from bilan.storage.tables import catalogue as catalogue_table
from tests.helpers import diagnostics, expressions, post_bundle, run
from tests.orders import addressed, collected, imported, prescribed
from tests.results import decide, entry_path, line, result, results_of
from tests.web import csrf_token, submit

NFS, GLUCOSE, IONO = EXAMS[0], EXAMS[1], EXAMS[8]
SODIUM, POTASSIUM, CHLORIDE, BICARBONATE = "2951-2", "2823-3", "2075-0", "2028-9"
LEUKOCYTES, NEUTROPHILS, LYMPHOCYTES, BASOPHILS = "6690-2", "26499-4", "26474-7", "26444-0"
EOSINOPHILS = "26449-9"
NEUTROPHILS_PCT, LYMPHOCYTES_PCT, MONOCYTES_PCT = "26511-6", "26478-8", "26485-3"
VALUE = "Observation.valueQuantity.value"


def literal(observation: dict[str, Any], value: str) -> bytes:
    """The Observation's JSON with `value` written as is (a literal, not a Python float)."""
    text = httpx.Request("POST", "http://x", json={**observation, "valueQuantity": {
        **observation["valueQuantity"], "value": 424242}}).content.decode()
    return text.replace('"value":424242', f'"value":{value}').replace('"value": 424242', f'"value": {value}').encode()


def error_of(page: httpx.Response, name: str) -> str:
    """The message shown next to the form field `name`."""
    found = re.search(rf'id="{re.escape(name)}-erreur"[^>]*>([^<]*)<', page.text)
    assert found, (name, page.text[-3000:])
    return unescape(found.group(1))


def input_value(page: httpx.Response, name: str) -> str | None:
    found = re.search(rf'<input[^>]*name="{re.escape(name)}"[^>]*value="([^"]*)"', page.text)
    return unescape(found.group(1)) if found else None


def test_a_faulty_analyser_gets_a_422_naming_the_value_and_nothing_is_stored(
        fhir, lab_middleware, desk, web_root, rng) -> None:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE, IONO, NFS]))
    glucose, iono, nfs = (prescribed(fhir, task_id, code) for code in (GLUCOSE[0], IONO[0], NFS[0]))

    for request, code, value, unit in ((glucose, GLUCOSE[0], -5, "mmol/L"), (glucose, GLUCOSE[0], 0, "mmol/L"),
                                       (glucose, GLUCOSE[0], 30, "g/L"),  # 167 mmol/L: beyond any survivor
                                       (iono, SODIUM, 5, "mmol/L"), (iono, CHLORIDE, 5, "mmol/L"),
                                       (iono, POTASSIUM, 50, "mmol/L"), (nfs, EOSINOPHILS, -0.1, "10*9/L")):
        response = lab_middleware.post("Observation", json=result(request, code, value, unit))
        assert response.status_code == 422, response.text
        assert VALUE in expressions(response)
        assert "plausible limits" in diagnostics(response), response.text
    for written in ("99999999999999999999", "1e309", "-1e309", "1e308", "NaN", "Infinity", "-Infinity", "1E+9"):
        response = lab_middleware.post("Observation", content=literal(result(glucose, GLUCOSE[0], 0, "mmol/L"), written))
        assert response.status_code == 422, (written, response.text)
        assert VALUE in expressions(response), (written, response.text)
    glucose_minus_zero = lab_middleware.post("Observation", content=literal(
        result(glucose, GLUCOSE[0], 0, "mmol/L"), "-0.0"))
    assert glucose_minus_zero.status_code == 422, glucose_minus_zero.text  # -0 is 0: no glucose is 0

    sent = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": result(iono, code, value, "mmol/L"), "request": {"method": "POST", "url": "Observation"}}
        for code, value in ((POTASSIUM, 4.1), (SODIUM, 5))]}
    response = post_bundle(lab_middleware, sent)
    assert response.status_code == 422, response.text
    assert "Bundle.entry[1].resource.valueQuantity.value" in expressions(response), response.text
    assert results_of(fhir, glucose) == [] and results_of(fhir, iono) == [] and results_of(fhir, nfs) == []

    # The limits are for what a living patient can have, not for what is usual: a severe
    # acidosis has bicarbonates of 5, a hypereosinophilia 30 G/L; a count of -0 is 0.
    for request, code, value, unit in ((iono, BICARBONATE, 5, "mmol/L"), (nfs, EOSINOPHILS, 30, "10*9/L"),
                                       (glucose, GLUCOSE[0], 1.2, "g/L")):
        assert lab_middleware.post("Observation", json=result(request, code, value, unit)).status_code == 201
    zero = lab_middleware.post("Observation", content=literal(result(nfs, BASOPHILS, 0, "10*9/L"), "-0.00"))
    assert zero.status_code == 201, zero.text
    assert fhir.get(f"Observation/{zero.json()['id']}").text.count('"value":0.00') == 1


def test_a_careless_user_is_told_next_to_the_field_and_keeps_what_was_typed(
        fhir, desk, biologist, web_root, rng) -> None:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE, IONO]))
    collected(desk, web_root, task_id)
    glucose, iono = prescribed(fhir, task_id, GLUCOSE[0]), prescribed(fhir, task_id, IONO[0])
    page = biologist.get(f"{web_root}{entry_path(task_id)}")
    sodium, potassium = f"valeur-{iono['id']}-{SODIUM}", f"valeur-{iono['id']}-{POTASSIUM}"
    chloride, glycemia = f"valeur-{iono['id']}-{CHLORIDE}", f"valeur-{glucose['id']}-{GLUCOSE[0]}"
    typed = {**line(iono, SODIUM, "5", "mmol/L", "136", "145"), **line(iono, POTASSIUM, "4,1", "mmol/L"),
             **line(iono, CHLORIDE, "5", "mmol/L"), **line(glucose, GLUCOSE[0], "-5", "mmol/L", "3,9", "6,1")}

    refused = submit(biologist, page, entry_path(task_id), typed)
    assert refused.status_code == 422, refused.text
    assert error_of(refused, sodium).startswith("Valeur impossible pour Sodium : 5 mmol/L")
    assert "70 à 260 mmol/L" in error_of(refused, sodium)
    assert error_of(refused, chloride).startswith("Valeur impossible pour Chlore")
    assert error_of(refused, glycemia).startswith("Valeur impossible pour Glycémie à jeun : -5 mmol/L")
    assert f'aria-describedby="{sodium}-erreur"' in refused.text
    assert [input_value(refused, name) for name in (sodium, potassium, chloride, glycemia)] == ["5", "4,1", "5", "-5"]
    assert input_value(refused, f"bas-{iono['id']}-{SODIUM}") == "136"  # the whole line is kept
    assert f'id="{potassium}-erreur"' not in refused.text

    for written in ("99999999999999999999", "1e309", "NaN", "Infinity", "-Infinity", "-1e12", "1E+9"):
        answer = biologist.post(f"{web_root}{entry_path(task_id)}", data={
            **typed, sodium: "140", chloride: "100", glycemia: written, "_csrf_token": csrf_token(page)})
        assert answer.status_code == 422, (written, answer.text)
        assert "n'est pas un résultat possible" in error_of(answer, glycemia), written
        assert input_value(answer, glycemia) == written and input_value(answer, sodium) == "140"
    for written, message in (("-0", "Valeur impossible"), ("cinq", "Saisissez un nombre"), ("<", "Saisissez un nombre")):
        answer = biologist.post(f"{web_root}{entry_path(task_id)}", data={
            **typed, sodium: "140", chloride: "100", glycemia: written, "_csrf_token": csrf_token(page)})
        assert answer.status_code == 422 and message in error_of(answer, glycemia), (written, answer.text)
    assert results_of(fhir, glucose) == [] and results_of(fhir, iono) == []

    saved = submit(biologist, page, entry_path(task_id), {**typed, sodium: "140", chloride: "100", glycemia: "5,4"})
    assert saved.url.path.endswith("/resultats"), saved.text
    assert sorted(r["valueQuantity"]["value"] for r in results_of(fhir, iono)) == [4.1, 100, 140]


def test_a_differential_that_cannot_add_up_is_refused_when_typed(fhir, desk, biologist, web_root, rng) -> None:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[NFS]))
    collected(desk, web_root, task_id)
    nfs = prescribed(fhir, task_id, NFS[0])
    page = biologist.get(f"{web_root}{entry_path(task_id)}")

    percents = {**line(nfs, NEUTROPHILS_PCT, "60", "%"), **line(nfs, LYMPHOCYTES_PCT, "40", "%"),
                **line(nfs, MONOCYTES_PCT, "8", "%")}
    refused = submit(biologist, page, entry_path(task_id), percents)
    assert refused.status_code == 422, refused.text
    for code in (NEUTROPHILS_PCT, LYMPHOCYTES_PCT, MONOCYTES_PCT):
        assert error_of(refused, f"valeur-{nfs['id']}-{code}").startswith("La formule leucocytaire fait 108 %")

    # Basophils typed in % into their G/L field: each count is possible, their sum is not.
    counts = {**line(nfs, LEUKOCYTES, "7,0", "10*9/L"), **line(nfs, NEUTROPHILS, "4,2", "10*9/L"),
              **line(nfs, LYMPHOCYTES, "2,0", "10*9/L"), **line(nfs, BASOPHILS, "3,9", "10*9/L")}
    refused = submit(biologist, page, entry_path(task_id), counts)
    assert refused.status_code == 422, refused.text
    assert "plus que les leucocytes (7,0 G/L)" in error_of(refused, f"valeur-{nfs['id']}-{BASOPHILS}")
    assert results_of(fhir, nfs) == []

    # Rounding the parts may pass 100 by what their last digits allow, and no more.
    rounded = {**line(nfs, NEUTROPHILS_PCT, "61", "%"), **line(nfs, LYMPHOCYTES_PCT, "31", "%"),
               **line(nfs, MONOCYTES_PCT, "6", "%"), **line(nfs, "26450-7", "2", "%"), **line(nfs, "30180-4", "1", "%"),
               **counts, **line(nfs, BASOPHILS, "0,04", "10*9/L")}
    assert submit(biologist, page, entry_path(task_id), rounded).url.path.endswith("/resultats")
    assert len(results_of(fhir, nfs)) == 9


def test_a_differential_sent_piece_by_piece_is_flagged_and_not_validated_until_it_adds_up(
        fhir, lab_middleware, desk, biologist, web_root, rng) -> None:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[NFS]))
    nfs = prescribed(fhir, task_id, NFS[0])
    ids = {code: lab_middleware.post("Observation", json=result(nfs, code, value, "%")).json()["id"]
           for code, value in ((NEUTROPHILS_PCT, 60), (LYMPHOCYTES_PCT, 40), (MONOCYTES_PCT, 8))}
    page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}/resultats")
    assert page.text.count("La formule leucocytaire fait 108 %") == 3, page.text

    refused = decide(biologist, web_root, task_id, "biologique", list(ids.values()))
    assert refused.status_code == 422 and "avant la validation biologique" in refused.text
    assert all(r["status"] == "preliminary" for r in results_of(fhir, nfs))

    assert decide(biologist, web_root, task_id, "repasser", [ids[MONOCYTES_PCT]],
                  commentaire="Formule à recompter").status_code == 200
    page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}/resultats")
    assert "La formule leucocytaire fait" not in page.text
    validated = decide(biologist, web_root, task_id, "biologique", [ids[NEUTROPHILS_PCT], ids[LYMPHOCYTES_PCT]])
    assert validated.status_code == 200, validated.text


def test_a_correction_beyond_the_limits_is_refused_in_french(fhir, lab_middleware, desk, biologist,
                                                             web_root, rng) -> None:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[IONO]))
    iono = prescribed(fhir, task_id, IONO[0])
    sodium = lab_middleware.post("Observation", json=result(iono, SODIUM, 140, "mmol/L")).json()["id"]
    assert decide(biologist, web_root, task_id, "biologique", [sodium]).status_code == 200
    for written, message in (("14", "Valeur impossible pour Sodium"), ("1e309", "n'est pas un résultat possible")):
        answer = decide(biologist, web_root, task_id, "corriger", [sodium], valeur=written, commentaire="Erreur")
        assert answer.status_code == 422 and message in unescape(answer.text), answer.text
    assert fhir.get(f"Observation/{sodium}").json()["valueQuantity"]["value"] == 140
    answer = decide(biologist, web_root, task_id, "corriger", [sodium], valeur="141,0", commentaire="Relu")
    assert answer.status_code == 200, answer.text
    assert '"value":141.0' in fhir.get(f"Observation/{sodium}").text


@pytest.mark.parametrize(("results", "kinds"), [
    ({NEUTROPHILS_PCT: "60", LYMPHOCYTES_PCT: "40", MONOCYTES_PCT: "8"}, ["percent"]),
    ({NEUTROPHILS_PCT: "61", LYMPHOCYTES_PCT: "31", MONOCYTES_PCT: "6", "26450-7": "2", "30180-4": "2"}, []),
    ({NEUTROPHILS_PCT: "60.5", LYMPHOCYTES_PCT: "30.5", MONOCYTES_PCT: "5.5", "26450-7": "2.5", "30180-4": "1.5"},
     ["percent"]),  # one decimal each: at most 0.25 of rounding, not 0.5
    ({NEUTROPHILS_PCT: "20", LYMPHOCYTES_PCT: "10"}, []),  # blasts make up the rest
    ({NEUTROPHILS_PCT: "60", "770-8": "60"}, []),  # one cell by two codes counts once
    ({LEUKOCYTES: "7.0", NEUTROPHILS: "4.2", LYMPHOCYTES: "2.0", BASOPHILS: "3.9"}, ["count"]),
    ({LEUKOCYTES: "7.0", NEUTROPHILS: "4.2", LYMPHOCYTES: "2.0", BASOPHILS: "0.04"}, []),
    ({NEUTROPHILS: "4.2", LYMPHOCYTES: "20.0"}, []),  # no leukocyte count to compare with
])
def test_a_differential_adds_up_within_its_rounding(results: dict[str, str], kinds: list[str]) -> None:
    found = plausibility.differential({code: (Decimal(value), "%" if code in plausibility.PERCENTS else "10*9/L")
                                       for code, value in results.items()})
    assert [problem.kind for problem in found] == kinds


def test_a_count_in_another_unit_is_compared_in_g_per_l() -> None:
    found = plausibility.differential({LEUKOCYTES: (Decimal("7.0"), "10*9/L"), NEUTROPHILS: (Decimal("4200"), "/uL"),
                                       BASOPHILS: (Decimal("3900"), "/uL")})
    assert [(p.kind, p.total) for p in found] == [("count", Decimal("8.1"))]


def test_every_quantitative_analyte_has_limits_around_its_reference_range() -> None:
    rows = read_csv(data.CATALOGUE)
    for row in rows:
        if not row["ucum"]:
            assert row["plausible_low"] is None and row["plausible_high"] is None, row["local_code"]
            continue
        low, high = Decimal(row["plausible_low"]), Decimal(row["plausible_high"])
        assert low >= 0 and low < high, row["local_code"]
        for limit in (row["ref_low"], row["ref_high"]):
            assert limit is None or low <= Decimal(limit) <= high, row["local_code"]
        if row["ucum"] == "%" and row["local_code"].endswith("_PCT"):
            assert (low, high) == (0, 100), row["local_code"]
    # What migration 0007 gives an existing database is the catalogue's own.
    migration = _migration_0007()
    assert {code: (loinc, ucum, low, high) for code, loinc, ucum, low, high in migration.LIMITS} == {
        r["local_code"]: (r["loinc"], r["ucum"], r["plausible_low"], r["plausible_high"]) for r in rows if r["ucum"]}


def test_a_catalogue_whose_reference_range_passes_its_limits_is_not_loaded(tmp_path) -> None:
    with data.CATALOGUE.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    sodium = next(r for r in rows if r["local_code"] == "NA")
    for change, message in (({"plausible_high": "140"}, "outside the plausible limits"),
                            ({"plausible_low": "300"}, "above plausible_high"),
                            ({"plausible_low": "beaucoup"}, "is not a number")):
        path = tmp_path / "catalogue.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows([{**r, **change} if r is sodium else r for r in rows])
        with pytest.raises(ValueError, match=message):
            read_csv(path)


def test_a_database_from_before_0007_gets_the_limits_of_the_entries_it_holds_unchanged(own_database: Settings) -> None:
    async def scenario() -> dict[str, tuple[str | None, str | None]]:
        engine = create_engine(own_database)
        try:
            await upgrade(engine)
            await catalogue.load(engine, read_csv(data.CATALOGUE))
            await downgrade(engine, "0006")
            async with engine.begin() as conn:  # the lab changed one entry's unit before 0007
                await conn.exec_driver_sql("UPDATE catalogue SET ucum = 'mg/dL' WHERE local_code = 'GLY'")
            await upgrade(engine)
            async with engine.begin() as conn:
                c = catalogue_table.c
                rows = await conn.execute(select(c.local_code, c.plausible_low, c.plausible_high))
                found = {row.local_code: (row.plausible_low, row.plausible_high) for row in rows}
                await conn.execute(update(catalogue_table).values(plausible_low=None))  # a reload fills them
            await catalogue.load(engine, read_csv(data.CATALOGUE))
            async with engine.begin() as conn:
                reloaded = (await conn.execute(select(c.plausible_low).where(c.local_code == "GLY"))).scalar_one()
            assert reloaded == "0.1"
            return found
        finally:
            await engine.dispose()

    found = run(scenario())
    assert found["NA"] == ("70", "260") and found["PNB_PCT"] == ("0", "100") and found["GB"] == ("0", "2000")
    assert found["GLY"] == (None, None)  # not bilan's entry any more: no limits guessed for it
    assert found["NFS"] == (None, None)  # a panel has no value


def _migration_0007() -> Any:
    path = next((MIGRATIONS / "versions").glob("0007_*.py"))
    spec = importlib.util.spec_from_file_location("migration_0007", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
