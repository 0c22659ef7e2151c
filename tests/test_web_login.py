"""People log in to bilan's pages through the OpenID provider, and log out of both."""

import time

import httpx
import pytest

from bilan.demo.prescriptions import patient_resource
from tests.helpers import search
from tests.people import DUPONT
from tests.servers import running
from tests.web import follow, form, log_in


@pytest.mark.parametrize("username, shown", [
    ("dr.lambert", "Claire Lambert — prescripteur"),
    ("accueil.martin", "Julie Martin — accueil du laboratoire"),
    ("bio.durand", "Luc Durand — biologiste"),
    ("patient.dupont", "Marie Dupont — patient"),
])
def test_login_opens_a_session(web_root: str, server: str, username: str, shown: str) -> None:
    browser, home = log_in(web_root, username)

    assert home.status_code == 200 and str(home.url) == f"{web_root}/"
    assert shown in home.text
    cookie = next(c for c in browser.cookies.jar if c.name == "bilan_session")
    assert cookie.has_nonstandard_attr("HttpOnly") and cookie.path == "/"


def test_logout_needs_the_form_token_and_ends_both_sessions(web_root: str, server: str,
                                                            as_user, fhir) -> None:
    fhir.post("Patient", json=patient_resource(DUPONT),
              headers={"If-None-Exist": f"identifier={DUPONT.ins_system}|{DUPONT.ins}"})
    browser, home = log_in(web_root, "patient.dupont")

    forged = browser.post(f"{web_root}/auth/logout")  # no CSRF token: a cross-site post
    assert forged.status_code == 403 and "Accès refusé" in forged.text
    assert "Marie Dupont" in browser.get(f"{web_root}/").text

    action, fields = form(home)
    at_provider = follow(browser, browser.post(action, data=fields))
    assert "Déconnexion" in at_provider.text
    confirm, hidden = form(at_provider)
    back = follow(browser, browser.post(confirm, data={**hidden, "logout": "yes"}))
    assert str(back.url).startswith(f"{web_root}/") and "Se connecter" in back.text
    again = follow(browser, browser.get(f"{web_root}/auth/login"))
    assert "Identifiant" in again.text  # the provider asks for the password again

    # Her two newest: this login and logout (other tests log her in too, earlier).
    trail = search(as_user("patient.dupont"), "AuditEvent", subtype="login,logout", _sort="-date", _count=2)
    assert {e["resource"]["subtype"][0]["code"] for e in trail["entry"]} == {"login", "logout"}


def test_a_forged_callback_is_refused_in_french(web_root: str, server: str) -> None:
    response = httpx.get(f"{web_root}/auth/callback", params={"code": "x", "state": "y"})
    assert response.status_code == 401
    assert "Connexion requise" in response.text and "recommencez" in response.text


def test_an_idle_session_ends(settings, second_root: str, server: str) -> None:
    idle = settings.model_copy(update={"base_url": f"{second_root}/fhir", "session_idle": 1,
                                       "token_audience": settings.base_url})
    with running(idle):
        browser, home = log_in(second_root, "dr.lambert")
        assert "Claire Lambert" in home.text
        time.sleep(1.5)
        after = browser.get(f"{second_root}/")
        assert "Claire Lambert" not in after.text and "Se connecter" in after.text
