"""The prescriber's pages: each prescription shows its validated results (values, flags,
ranges, the previous value and its date, critical values first, what is masked to the patient
and until when, what is still pending); a page per patient of his with every result over
time; "Mes prescriptions" with search, filters, paging, "nouveau" marks and the date he
prescribed; a mail link opened logged out comes back to its page after login, and nowhere
else. Another prescriber gets a 403, recorded in the audit trail."""

import re
from datetime import date, datetime, timedelta, timezone
from html import unescape
from urllib.parse import quote, urlsplit

import httpx

from bilan.demo.prescriptions import EXAMS
from bilan.french import PARIS
from tests.audit import stored_events
from tests.orders import adapt, addressed, imported, imported_for, prescribed, send, task_of
from tests.results import GLUCOSE, decide, issue, patient_aged, posted, result
from tests.web import follow, form, log_in, submit

IONO = EXAMS[8]
POTASSIUM, SODIUM = "2823-3", "2951-2"
PRESCRIBED_ON = datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc)


def _call_critical(biologist: httpx.Client, web_root: str, task_id: str, result_id: str) -> None:
    page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}/resultats")
    when = datetime.now(PARIS) - timedelta(minutes=10)  # the form takes Paris clocks
    done = submit(biologist, page, f"/reception/prescriptions/{task_id}/resultats/appel", {
        "resultat": result_id, "qui": "Dr Claire Lambert", "quand": when.strftime("%Y-%m-%dT%H:%M"),
        "moyen": "telephone", "propos": "Kaliémie transmise."})
    assert done.status_code == 200, done.text


def _rows(page: httpx.Response) -> list[str]:
    return [row for row in re.findall(r"<tr>.*?</tr>", page.text, re.S) if 'scope="col"' not in row]


def _listed(page: httpx.Response, number: str) -> str:
    """The row of prescription `number` in "Mes prescriptions" ("" if not on the page)."""
    return next((row for row in _rows(page) if f">{number}</a>" in row), "")


def _earlier_glucose(fhir, lab_middleware, desk, biologist, web_root, rng, person) -> None:
    """The patient's glucose of 01/10/2026 (5,4 mmol/L), validated and issued."""
    spec = addressed(rng, exams=[GLUCOSE], patient=person)
    task_id = imported_for(fhir, desk, web_root, spec)
    request = prescribed(fhir, task_id, GLUCOSE[0])
    earlier = posted(lab_middleware, {**result(request, GLUCOSE[0], 5.4, "mmol/L"),
                                      "effectiveDateTime": "2026-10-01T08:00:00+02:00"})
    decide(biologist, web_root, task_id, "biologique", [earlier])
    assert issue(biologist, web_root, task_id).status_code == 200


def test_the_prescription_shows_its_results_critical_first_with_the_previous_value_and_the_mask(
        fhir, lab_middleware, desk, biologist, doctor, web_root, settings, rng) -> None:
    person = patient_aged(rng, "female", 50)  # her own history: no other test's glucose in it
    _earlier_glucose(fhir, lab_middleware, desk, biologist, web_root, rng, person)
    spec = addressed(rng, exams=[GLUCOSE, IONO], patient=person, authored=PRESCRIBED_ON)
    task_id = imported_for(fhir, desk, web_root, spec)
    glucose_request, iono = prescribed(fhir, task_id, GLUCOSE[0]), prescribed(fhir, task_id, IONO[0])
    glucose = posted(lab_middleware, result(glucose_request, GLUCOSE[0], 7.2, "mmol/L"))
    potassium = posted(lab_middleware, result(iono, POTASSIUM, 6.9, "mmol/L"))
    posted(lab_middleware, result(iono, SODIUM, 140, "mmol/L"))  # left to validate
    _call_critical(biologist, web_root, task_id, potassium)
    assert decide(biologist, web_root, task_id, "biologique", [glucose, potassium]).status_code == 200
    release_on = date.today() + timedelta(days=10)
    assert issue(biologist, web_root, task_id, masquer=[glucose],
                 liberation=release_on.isoformat()).status_code == 200

    page = doctor.get(f"{web_root}/prescripteur/prescriptions/{task_id}")
    assert page.status_code == 200, page.text
    text = unescape(page.text)
    assert "2 résultats hors normes" in text
    section = text[text.index('id="resultats"'):text.index('id="examens-titre"')]
    rows = re.findall(r"<tr class=.*?</tr>", section, re.S)
    assert len(rows) == 2
    critical, sugar = rows  # the critical value first, though the glucose was prescribed first
    assert "6,9 mmol/L" in critical and ">HH<" in critical and "valeur critique" in critical
    assert "7,2 mmol/L" in sugar and ">H<" in sugar and "3,9 – 6,1 mmol/L" in sugar
    assert "5,4 mmol/L le 01/10/2026" in sugar  # the previous value, from the earlier report
    assert f"Masqué au patient jusqu'au {release_on:%d/%m/%Y}" in sugar
    assert "Masqué au patient" not in critical
    assert "En attente de validation par le biologiste : Sodium" in text

    patient_id = task_of(fhir, spec.requisition)["for"]["reference"].removeprefix("Patient/")
    assert f'href="/prescripteur/patients/{patient_id}"' in page.text
    summary = doctor.get(f"{web_root}/prescripteur/patients/{patient_id}")
    assert summary.status_code == 200, summary.text
    assert f"/prescripteur/patients/{patient_id}/analyses/glucose" in summary.text
    trend = doctor.get(f"{web_root}/prescripteur/patients/{patient_id}/analyses/glucose")
    assert trend.status_code == 200, trend.text
    assert "<svg" in trend.text and "5,4 mmol/L" in unescape(trend.text) and "7,2 mmol/L" in unescape(trend.text)

    other, _ = log_in(web_root, "dr.nguyen")
    for path in (f"/prescripteur/prescriptions/{task_id}", f"/prescripteur/patients/{patient_id}",
                 f"/prescripteur/patients/{patient_id}/analyses/glucose"):
        refused = other.get(f"{web_root}{path}")
        assert refused.status_code == 403, (path, refused.status_code)
        assert "6,9" not in refused.text and person.family.upper() not in refused.text.upper()
        assert "n'est pas l'une des vôtres" in unescape(refused.text) or "ne suivez pas ce patient" in unescape(refused.text)
    other.close()
    denied = [e for e in stored_events(settings) if e["outcome"] == "4"
              and any((x.get("what") or {}).get("reference") == f"Patient/{patient_id}" for x in e.get("entity", []))]
    assert denied, "the refusal of the patient page is in the audit trail"


def test_my_prescriptions_search_filters_paging_new_marks_and_the_prescription_date(
        fhir, lab_middleware, desk, biologist, doctor, web_root, rng) -> None:
    person = patient_aged(rng, "female", 50)
    # A family name of her own: the five names patient_aged draws from are everyone's.
    person.family = "Lemarchand" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6))
    numbers = []
    for n in range(21):
        spec = addressed(rng, exams=[GLUCOSE], patient=person,
                         authored=PRESCRIBED_ON - timedelta(days=n))
        send(fhir, spec)
        numbers.append(spec.requisition)
    family = person.family

    first = doctor.get(f"{web_root}/prescripteur/", params={"q": family})
    assert first.status_code == 200 and "21 prescriptions" in first.text and "page 1 sur 2" in first.text
    second = doctor.get(f"{web_root}/prescripteur/", params={"q": family.lower(), "page": "2"})
    shown = [n for n in numbers if _listed(first, n)] + [n for n in numbers if _listed(second, n)]
    assert sorted(shown) == sorted(numbers) and len(_rows(second)) == 1
    by_number = doctor.get(f"{web_root}/prescripteur/", params={"q": numbers[3]})
    assert [n for n in numbers if _listed(by_number, n)] == [numbers[3]]
    assert "20/11/2026" in _listed(first, numbers[0]) + _listed(second, numbers[0])  # authoredOn, not the intake
    assert "17/11/2026" in _listed(first, numbers[3]) + _listed(second, numbers[3])

    # One with an abnormal result, one with a normal one, one awaiting his answer.
    high_spec = addressed(rng, exams=[GLUCOSE], patient=person)
    high = imported_for(fhir, desk, web_root, high_spec)
    normal_spec = addressed(rng, exams=[GLUCOSE], patient=person)
    normal = imported_for(fhir, desk, web_root, normal_spec)
    for task_id, value in ((high, 7.4), (normal, 5.0)):
        found = posted(lab_middleware, result(prescribed(fhir, task_id, GLUCOSE[0]), GLUCOSE[0], value, "mmol/L"))
        decide(biologist, web_root, task_id, "biologique", [found])
    waiting_spec = addressed(rng, exams=[EXAMS[0], EXAMS[5]], patient=person)
    waiting = imported_for(fhir, desk, web_root, waiting_spec)
    crp = prescribed(fhir, waiting, EXAMS[5][0])
    assert adapt(biologist, web_root, waiting, change="cancel", original=f"ServiceRequest/{crp['id']}",
                 reason="redundant", note="CRP faite hier.").status_code == 200

    def listed(filtre: str) -> set[str]:
        page = doctor.get(f"{web_root}/prescripteur/", params={"q": family, "filtre": filtre})
        assert page.status_code == 200
        return {n for n in [high_spec.requisition, normal_spec.requisition, waiting_spec.requisition, *numbers]
                if _listed(page, n)}

    assert listed("anormaux") == {high_spec.requisition}
    assert listed("attente") == {waiting_spec.requisition}
    assert listed("nouveaux") == {high_spec.requisition, normal_spec.requisition}
    everything = doctor.get(f"{web_root}/prescripteur/", params={"q": family})
    assert "nouveau" in _listed(everything, high_spec.requisition)
    assert "1 résultat validé, " in unescape(_listed(everything, high_spec.requisition))
    assert "hors normes" in _listed(everything, high_spec.requisition)
    assert "nouveau" not in _listed(everything, numbers[-1])

    assert doctor.get(f"{web_root}/prescripteur/prescriptions/{high}").status_code == 200  # he opens it
    assert listed("nouveaux") == {normal_spec.requisition}
    again = doctor.get(f"{web_root}/prescripteur/", params={"q": family})
    assert "nouveau" not in _listed(again, high_spec.requisition)


def _log_in_from(browser: httpx.Client, url: str) -> httpx.Response:
    """Open `url` logged out, log in on the provider's form, and return where bilan lands."""
    login_page = follow(browser, browser.get(url))
    assert "Connexion" in login_page.text
    action, _ = form(login_page)
    return follow(browser, browser.post(action, data={"login": "dr.lambert", "password": "demo"}))


def test_a_mail_link_opened_logged_out_comes_back_to_its_page_after_login(
        fhir, desk, web_root, rng) -> None:
    spec = addressed(rng, exams=[GLUCOSE])
    task_id = imported(fhir, desk, web_root, spec)
    link = f"{web_root}/prescripteur/prescriptions/{task_id}"

    with httpx.Client(timeout=30) as browser:
        bounced = browser.get(link)
        assert bounced.is_redirect and urlsplit(bounced.headers["location"]).path == "/auth/login"
        landed = _log_in_from(browser, link)
        assert landed.status_code == 200 and landed.url.path == f"/prescripteur/prescriptions/{task_id}"
        assert spec.requisition in landed.text


def test_only_a_path_of_bilan_is_opened_after_login(web_root, server) -> None:
    for elsewhere in ("https://evil.example/prescripteur", "//evil.example/prescripteur",
                      "/\\evil.example/prescripteur", "http:/evil.example", "javascript:alert(1)"):
        with httpx.Client(timeout=30) as browser:
            landed = _log_in_from(browser, f"{web_root}/auth/login?next={quote(elsewhere, safe='')}")
            assert landed.url.host == urlsplit(web_root).hostname and landed.url.path == "/", elsewhere
            assert "Claire Lambert" in landed.text

