"""Critical values: a result beyond the catalogue's critical limits is flagged LL or HH wherever
it comes from (an analyser whose own flag says otherwise, a value typed by hand, a correction);
its order's biological validation and report wait until the biologist records the call to the
prescriber (who, when, how, what was said), traced in the order's thread and the audit trail,
with an urgent message mailed to the prescriber; the lab's first queue lists the values not yet
called."""

import csv
import importlib.util
import re
from datetime import datetime, timedelta, timezone
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from bilan import data
from bilan.demo.prescriptions import EXAMS
from bilan.fhir.dates import date_range
from bilan.french import PARIS
from bilan.prescription.catalogue import read_csv
from bilan.prescription.messaging import KINDS_SYSTEM
from bilan.results.desk import interpretation
from bilan.results.document import conformance
from bilan.results.queues import CRITICAL
from bilan.storage.migrate import MIGRATIONS
from tests.audit import stored_events
from tests.helpers import search
from tests.orders import addressed, collected, imported, prescribed
from tests.receivers import eventually
from tests.results import (
    GLUCOSE,
    binary,
    decide,
    documents,
    entry_path,
    glucose_result,
    issue,
    line,
    posted,
    prescriber_mail,
    result,
    results_of,
)
from tests.web import submit

IONO = EXAMS[8]
POTASSIUM, SODIUM = "2823-3", "2951-2"
V3 = {"h": "urn:hl7-org:v3"}


def _flag(observation: dict[str, Any]) -> str | None:
    return next((c["code"] for i in observation.get("interpretation", []) for c in i["coding"]), None)


def _results_page(browser: httpx.Client, web_root: str, task_id: str) -> httpx.Response:
    page = browser.get(f"{web_root}/reception/prescriptions/{task_id}/resultats")
    assert page.status_code == 200, page.text
    return page


def _paris_minutes_ago(minutes: int) -> datetime:
    return (datetime.now(PARIS) - timedelta(minutes=minutes)).replace(second=0, microsecond=0)


def _call(biologist: httpx.Client, web_root: str, task_id: str, result_id: str, **form: str) -> httpx.Response:
    page = _results_page(biologist, web_root, task_id)
    fields = {"resultat": result_id, "qui": "Dr Aline Roux (remplaçante)",
              "quand": _paris_minutes_ago(10).strftime("%Y-%m-%dT%H:%M"), "moyen": "telephone",
              "propos": "Valeur transmise ; contrôle en urgence convenu.", **form}
    return submit(biologist, page, f"/reception/prescriptions/{task_id}/resultats/appel", fields)


def _prescriber_family(api: httpx.Client, task_id: str) -> str:
    """The stored prescriber's family name (one Practitioner per RPPS, as first sent)."""
    who = api.get(api.get(f"Task/{task_id}").json()["requester"]["reference"]).json()
    if who["resourceType"] == "PractitionerRole":
        who = api.get(who["practitioner"]["reference"]).json()
    return str(who["name"][0]["family"])


def _kind(message: dict[str, Any]) -> str:
    return next(c["code"] for cat in message["category"] for c in cat["coding"] if c["system"] == KINDS_SYSTEM)



def _queue(browser: httpx.Client, web_root: str) -> str:
    page = browser.get(f"{web_root}/reception/a-traiter")
    found = re.search(rf'<section class="card" id="{CRITICAL}".*?</section>', page.text, re.S)
    assert found, page.text
    return unescape(found.group(0))


def _count(browser: httpx.Client, web_root: str) -> int:
    home = browser.get(f"{web_root}/")
    found = re.search(rf'id="compte-{CRITICAL}">(\d+)<', home.text)
    assert found, home.text
    return int(found.group(1))


def test_a_faulty_analysers_flags_give_way_to_the_critical_limits(fhir, lab_middleware, desk, web_root, rng) -> None:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[IONO, GLUCOSE]))
    iono, glucose = prescribed(fhir, task_id, IONO[0]), prescribed(fhir, task_id, GLUCOSE[0])
    normal = {"interpretation": [{"coding": [{"system": interpretation.CODE_SYSTEM_URI, "code": "N"}]}]}

    def stored(observation: dict[str, Any]) -> dict[str, Any]:
        return fhir.get(f"Observation/{posted(lab_middleware, observation)}").json()

    potassium = stored(result(iono, POTASSIUM, 6.9, "mmol/L", **normal))  # the analyser says normal
    assert _flag(potassium) == "HH"
    assert potassium["interpretation"][0]["coding"][0]["display"] == "Très anormalement haut, alerte"
    assert "computed" in {t["code"] for t in potassium["meta"]["tag"]}
    sodium = stored(result(iono, SODIUM, 118, "mmol/L"))
    assert _flag(sodium) == "LL"
    assert (sodium["referenceRange"][0]["low"]["value"], sodium["referenceRange"][0]["high"]["value"]) == (136, 145)
    assert _flag(stored(result(iono, POTASSIUM, 5.8, "mmol/L"))) == "H"  # abnormal, not critical
    assert _flag(stored(result(iono, POTASSIUM, 6.2, "mmol/L"))) == "H"  # the limit itself is not beyond it
    beyond = result(iono, POTASSIUM, 7, "mmol/L")
    beyond["valueQuantity"]["comparator"] = ">"  # above the measuring range: above 6.2 too
    assert _flag(stored(beyond)) == "HH"
    assert _flag(stored(glucose_result(glucose, 4.6, "g/L"))) == "HH"  # 25.5 mmol/L in the catalogue's unit
    assert _flag(stored(glucose_result(glucose, 0.39, "g/L"))) == "LL"  # 2.16 mmol/L, below 2.2


def test_biological_validation_waits_for_the_call_traced_in_the_thread_and_the_audit_trail(
        fhir, lab_middleware, desk, technician, biologist, web_root, mail_relay, settings, rng) -> None:
    spec = addressed(rng, exams=[IONO])
    task_id = imported(fhir, desk, web_root, spec)
    iono = prescribed(fhir, task_id, IONO[0])
    potassium = posted(lab_middleware, result(iono, POTASSIUM, 6.9, "mmol/L"))
    sodium = posted(lab_middleware, result(iono, SODIUM, 140, "mmol/L"))

    assert decide(technician, web_root, task_id, "technique", [potassium, sodium]).status_code == 200
    refused = decide(biologist, web_root, task_id, "biologique", [sodium])  # the whole order waits
    assert refused.status_code == 409
    assert "Valeur critique non appelée : Potassium 6,9 mmol/L (HH)" in unescape(refused.text)
    assert fhir.get(f"Observation/{sodium}").json()["status"] == "preliminary"

    page = _results_page(biologist, web_root, task_id)
    assert 'id="valeurs-critiques"' in page.text
    prefilled = re.search(r'name="qui"[^>]*value="([^"]*)"', page.text).group(1)
    assert _prescriber_family(fhir, task_id).upper() in unescape(prefilled).upper()  # to change if need be
    assert re.search(r'name="quand" value="\d{4}-\d\d-\d\dT\d\d:\d\d"', page.text)  # now, on Paris clocks

    silent = _call(biologist, web_root, task_id, potassium, propos="  ")
    assert silent.status_code == 422
    assert re.search(rf'id="propos-{potassium}-erreur"[^>]*>Indiquez ce qui a été dit', unescape(silent.text))
    assert "Dr Aline Roux (remplaçante)" in silent.text  # what was typed comes back
    ahead = _call(biologist, web_root, task_id, potassium, quand=_paris_minutes_ago(-120).strftime("%Y-%m-%dT%H:%M"))
    assert ahead.status_code == 422 and f'id="quand-{potassium}-erreur"' in ahead.text
    assert not [m for m in search(fhir, "Communication", **{"part-of": f"Task/{task_id}"}).get("entry", [])]

    when = _paris_minutes_ago(10)
    said = "Kaliémie à 6,9 mmol/L transmise ; ECG et contrôle en urgence."
    done = _call(biologist, web_root, task_id, potassium, quand=when.strftime("%Y-%m-%dT%H:%M"), propos=said)
    assert done.status_code == 200, done.text
    assert "Appel tracé : Dr Aline Roux (remplaçante) joint (téléphone)" in unescape(done.text)
    assert 'name="propos"' not in done.text  # called: no form left

    thread = [e["resource"] for e in search(fhir, "Communication", **{"part-of": f"Task/{task_id}"})["entry"]]
    [call] = [m for m in thread if _kind(m) == "critical-call"]
    assert {"reference": f"Observation/{potassium}"} in call["about"]
    assert call["recipient"] == [{"display": "Dr Aline Roux (remplaçante)"}]
    assert call["medium"][0]["coding"][0]["code"] == "PHONE" and call["payload"][-1]["contentString"] == said
    assert date_range(call["sent"])[0] == when.astimezone(timezone.utc)
    assert call["note"][0]["authorString"] == "biologist:10000000017"
    [alert] = [m for m in thread if _kind(m) == "critical-value"]
    task = fhir.get(f"Task/{task_id}").json()
    assert alert["priority"] == "stat" and alert["recipient"] == [task["requester"]]
    assert said in alert["payload"][0]["contentString"]

    mail = eventually(lambda: [m for m in mail_relay.to(prescriber_mail(fhir, iono))
                               if spec.requisition in m["Subject"] and "URGENT" in m["Subject"]],
                      what="the urgent mail to the prescriber")[0]
    assert "Valeur critique" in mail["Subject"] and "Potassium 6,9 mmol/L (HH)" in mail.get_content()

    [audited] = [e for e in stored_events(settings) if f"Communication/{call['id']}" in
                 {x.get("what", {}).get("reference") for x in e.get("entity", [])}
                 and e.get("outcomeDesc", "").startswith("Appel pour valeur critique")]
    assert audited["outcomeDesc"] == ("Appel pour valeur critique : Potassium 6,9 mmol/L (HH), "
                                      "Dr Aline Roux (remplaçante) joint (téléphone)")
    assert audited["agent"][0]["who"]["identifier"]["value"] == "biologist:10000000017"
    assert f"Observation/{potassium}" in {x["what"]["reference"] for x in audited["entity"]}

    assert decide(biologist, web_root, task_id, "biologique", [potassium, sodium]).status_code == 200
    assert issue(biologist, web_root, task_id).status_code == 200
    [document] = documents(fhir, task_id)
    cda = binary(fhir, document["content"][0]["attachment"])
    assert conformance.problems(cda) == []
    [code] = etree.fromstring(cda).xpath(f"//h:observation[h:code/@code='{POTASSIUM}']/h:interpretationCode/@code",
                                         namespaces=V3)
    assert code == "HH"


def test_critical_values_come_first_in_the_labs_queues_until_called(
        fhir, desk, technician, biologist, web_root, rng) -> None:
    spec = addressed(rng, exams=[GLUCOSE])
    task_id = imported(fhir, desk, web_root, spec)
    collected(desk, web_root, task_id)
    glucose = prescribed(fhir, task_id, GLUCOSE[0])
    before = _count(biologist, web_root)

    typed = submit(technician, technician.get(f"{web_root}{entry_path(task_id)}"), entry_path(task_id),
                   line(glucose, GLUCOSE[0], "1,9", "mmol/L", "3,9", "6,1"))  # by hand, a hypoglycaemia
    assert typed.url.path.endswith("/resultats"), typed.text
    [stored] = results_of(fhir, glucose)
    assert _flag(stored) == "LL"

    assert _count(biologist, web_root) == before + 1
    home = biologist.get(f"{web_root}/")
    assert re.findall(r'id="compte-([^"]+)"', home.text)[0] == CRITICAL  # the most urgent, first
    waiting = _queue(biologist, web_root)
    assert spec.requisition in waiting and "Glycémie à jeun 1,9 mmol/L (LL)" in waiting
    assert f"/reception/prescriptions/{task_id}/resultats#valeurs-critiques" in waiting
    technicians_page = _results_page(technician, web_root, task_id)
    assert 'name="propos"' not in technicians_page.text and "à tracer par un biologiste" in technicians_page.text

    assert _call(biologist, web_root, task_id, stored["id"], moyen="personne").status_code == 200
    assert spec.requisition not in _queue(biologist, web_root)
    assert _count(biologist, web_root) == before


def test_a_correction_into_a_critical_value_holds_the_report_until_called(
        fhir, lab_middleware, desk, biologist, web_root, rng) -> None:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE]))
    glucose = posted(lab_middleware, glucose_result(prescribed(fhir, task_id, GLUCOSE[0]), 5.1, "mmol/L"))
    assert decide(biologist, web_root, task_id, "biologique", [glucose]).status_code == 200
    corrected = decide(biologist, web_root, task_id, "corriger", [glucose], valeur="1,8",
                       commentaire="Erreur de report du résultat")
    assert corrected.status_code == 200, corrected.text
    assert _flag(fhir.get(f"Observation/{glucose}").json()) == "LL"

    held = issue(biologist, web_root, task_id)
    assert held.status_code == 409
    assert "Valeur critique non appelée : Glycémie à jeun 1,8 mmol/L (LL)" in unescape(held.text)
    assert documents(fhir, task_id) == []

    assert _call(biologist, web_root, task_id, glucose, moyen="messagerie").status_code == 200
    assert issue(biologist, web_root, task_id).status_code == 200
    [document] = documents(fhir, task_id)
    assert conformance.problems(binary(fhir, document["content"][0]["attachment"])) == []


def test_only_a_biologist_records_the_call(fhir, lab_middleware, desk, technician, biologist, web_root, rng) -> None:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[IONO]))
    iono = prescribed(fhir, task_id, IONO[0])
    potassium = posted(lab_middleware, result(iono, POTASSIUM, 2.1, "mmol/L"))

    refused = _call(technician, web_root, task_id, potassium)
    assert refused.status_code == 403
    assert "Seul un biologiste trace l&#39;appel d&#39;une valeur critique" in refused.text
    forged = lab_middleware.post("Communication", json={
        "resourceType": "Communication", "status": "completed",
        "category": [{"coding": [{"system": KINDS_SYSTEM, "code": "critical-call"}]}],
        "partOf": [{"reference": f"Task/{task_id}"}], "about": [{"reference": f"Observation/{potassium}"}],
        "payload": [{"contentString": "Appelé."}]})
    assert forged.status_code == 403, forged.text
    assert decide(biologist, web_root, task_id, "biologique", [potassium]).status_code == 409


def _catalogue_with(tmp_path: Path, code: str, **change: str) -> Path:
    with data.CATALOGUE.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    path = tmp_path / "catalogue.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([{**r, **change} if r["local_code"] == code else r for r in rows])
    return path


@pytest.mark.parametrize(("change", "message"), [
    ({"critical_high": "4.8"}, "ref_high 5.0 is above critical_high 4.8"),
    ({"critical_low": "3.6"}, "critical_low 3.6 is above ref_low 3.5"),
    ({"critical_high": "25"}, "critical_high 25 is outside the plausible limits"),
    ({"critical_low": "bas"}, "critical_low 'bas' is not a number"),
])
def test_a_catalogue_whose_critical_limits_contradict_its_ranges_is_not_loaded(tmp_path, change, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        read_csv(_catalogue_with(tmp_path, "K", **change))


def test_the_catalogue_carries_the_usual_critical_limits_and_0008_gives_them_to_existing_databases() -> None:
    rows = {r["local_code"]: r for r in read_csv(data.CATALOGUE)}
    assert (rows["K"]["critical_low"], rows["K"]["critical_high"]) == ("2.8", "6.2")
    assert (rows["NA"]["critical_low"], rows["NA"]["critical_high"]) == ("120", "160")
    assert (rows["GLY"]["critical_low"], rows["GLY"]["critical_high"]) == ("2.2", "25")
    assert (rows["HB"]["critical_low"], rows["PLAQ"]["critical_low"], rows["INR"]["critical_high"]) == ("7", "20", "5")
    path = next((MIGRATIONS / "versions").glob("0008_*.py"))
    spec = importlib.util.spec_from_file_location("migration_0008", path)
    assert spec and spec.loader
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    assert {code: (loinc, ucum, low, high) for code, loinc, ucum, low, high in migration.CRITICAL} == {
        code: (r["loinc"], r["ucum"], r["critical_low"], r["critical_high"]) for code, r in rows.items()
        if r["critical_low"] or r["critical_high"]}


def test_the_biologist_records_the_call_in_a_real_browser(
        page_as, shots, fhir, lab_middleware, desk, web_root, rng) -> None:
    from playwright.sync_api import expect

    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[IONO]))
    potassium = posted(lab_middleware, result(prescribed(fhir, task_id, IONO[0]), POTASSIUM, 1.9, "mmol/L"))
    biologist = page_as("bio.durand")
    biologist.goto(f"/reception/prescriptions/{task_id}/resultats")
    section = biologist.locator("#valeurs-critiques")
    expect(section).to_contain_text("Potassium 1,9 mmol/L (LL)")
    expect(section.locator(f"#qui-{potassium}")).not_to_have_value("")
    section.get_by_role("button", name="Enregistrer l'appel").click()  # nothing said yet
    expect(biologist.locator(f"#propos-{potassium}-erreur")).to_contain_text("Indiquez ce qui a été dit")
    shots(biologist, "call-refused-without-what-was-said")

    biologist.locator(f"#moyen-{potassium}").select_option(label="En personne")
    biologist.locator(f"#propos-{potassium}").fill("Kaliémie à 1,9 mmol/L transmise ; hospitalisation convenue.")
    biologist.get_by_role("button", name="Enregistrer l'appel").click()
    expect(biologist.locator("#valeurs-critiques")).to_contain_text("Appel tracé")
    expect(biologist.locator("#valeurs-critiques")).to_contain_text("(en personne)")
    shots(biologist, "call-recorded")
