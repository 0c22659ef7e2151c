"""The patient's "who accessed my data": grouped by day and by who, in correct French, with
filters (professionals only, refusals only) and pages."""

import html
import re
from datetime import datetime
from typing import Any

import httpx
import pytest

from bilan import french
from bilan.demo.prescriptions import bundle
from bilan.results.views import access_trail
from tests.helpers import locations
from tests.identity import patient_auth
from tests.orders import addressed
from tests.people import DUPONT
from tests.web import log_in

READS = 3


@pytest.fixture(scope="module")
def accessed(fhir: httpx.Client, as_user: Any, rng_module: Any) -> str:
    """Dr Lambert's software sends a prescription for Mme Dupont and reads it three times;
    Dr Nguyen tries to read it (refused). Its ServiceRequest."""
    sent = fhir.post("", json=bundle(addressed(rng_module, patient=DUPONT)))
    assert sent.status_code == 200, sent.text
    request = next(loc for loc in locations(sent) if loc.startswith("ServiceRequest/"))
    for _ in range(READS):
        assert fhir.get(request).status_code == 200
    assert as_user("dr.nguyen").get(request).status_code == 403
    return request


def _lines(page: httpx.Response) -> list[str]:
    return [re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", item))).strip()
            for item in re.findall(r"<li>(.*?)</li>", page.text, re.S)]


def test_the_trail_reads_as_french_sentences_grouped_by_day_and_by_who(accessed: str, web_root: str) -> None:
    browser, _ = log_in(web_root, "patient.dupont")
    page = browser.get(f"{web_root}/patient/acces")
    assert page.status_code == 200
    lines = _lines(page)
    assert french.day(french.in_paris(datetime.now().astimezone()).date()).capitalize() in page.text
    assert any(line.startswith("Vous vous êtes connecté(e)") for line in lines), lines
    software = [line for line in lines
                if re.match(r"Le logiciel du cabinet de .+ a consulté .*une prescription.* \(\d+ fois", line)]
    assert software, lines
    counted = re.search(r"\((\d+) fois, de \d\d:\d\d à \d\d:\d\d\)", software[0])
    assert counted and int(counted.group(1)) >= READS  # one line for all her reads of the day
    assert any(re.match(r".+ a tenté de consulter .*une prescription.* \(.*\) accès refusé$", line)
               for line in lines), lines
    assert not any("des données" in line for line in lines)  # what was touched, named
    # Never the agreement errors of a sentence built for a third person.
    assert not any(re.search(r"Vous (a|s'est) ", line) for line in lines)


def test_the_filters_show_the_professionals_or_the_refusals_only(accessed: str, web_root: str) -> None:
    browser, _ = log_in(web_root, "patient.dupont")
    professionals = _lines(browser.get(f"{web_root}/patient/acces", params={"qui": "professionnels"}))
    assert professionals and not any(line.startswith("Vous") for line in professionals)
    assert any(line.startswith("Le logiciel du cabinet de") for line in professionals)
    refusals = _lines(browser.get(f"{web_root}/patient/acces", params={"qui": "refus"}))
    assert refusals and all(re.search(r" (a|avez) tenté de .* accès refusé$", line) for line in refusals), refusals
    assert 'value="refus" checked' in browser.get(f"{web_root}/patient/acces", params={"qui": "refus"}).text


def test_a_long_trail_comes_a_page_at_a_time(accessed: str, web_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(access_trail, "PAGE_SIZE", 2)  # the test service runs in this process
    browser, _ = log_in(web_root, "patient.dupont")
    first = browser.get(f"{web_root}/patient/acces", params={"qui": "professionnels"})
    pages = int(re.search(r"Page 1 sur (\d+)", first.text).group(1))
    assert pages >= 3 and "Accès plus anciens" in first.text and "Accès plus récents" not in first.text
    last = browser.get(f"{web_root}/patient/acces", params={"qui": "professionnels", "page": str(pages)})
    assert f"Page {pages} sur {pages}" in last.text and "Accès plus récents" in last.text
    assert "Accès plus anciens" not in last.text
    beyond = browser.get(f"{web_root}/patient/acces", params={"qui": "professionnels", "page": "x9"})
    assert beyond.status_code == 200 and "Page 1 sur" in beyond.text  # a careless page number: the first


def test_the_trail_is_the_patients_own(web_root: str, desk: httpx.Client) -> None:
    assert desk.get(f"{web_root}/patient/acces").status_code == 403


def test_her_access_from_another_account_of_hers_is_never_a_professionals(
        accessed: str, server: str, issuer: str, web_root: str) -> None:
    """Her health app logs in as another subject of hers (same INS): its reads are hers ("Vous"),
    and the professionals' filter leaves them out, like those of her web account."""
    with httpx.Client(base_url=server, auth=patient_auth(issuer, server, "patient-dupont-app", DUPONT.ins)) as app:
        assert app.get(accessed).status_code == 200
    browser, _ = log_in(web_root, "patient.dupont")
    everything = _lines(browser.get(f"{web_root}/patient/acces"))
    assert any(line.startswith("Vous avez consulté une prescription") for line in everything), everything
    professionals = _lines(browser.get(f"{web_root}/patient/acces", params={"qui": "professionnels"}))
    assert professionals and not any(line.startswith("Vous") for line in professionals), professionals
