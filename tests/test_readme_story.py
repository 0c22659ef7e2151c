"""The README's demo story, step by step as written, through bilan's pages on a fresh database
loaded as `bilan demo` loads it: what a person following it sees."""

import re
from collections.abc import Iterator
from html import unescape

import httpx
import pytest

from bilan.demo.load import load_demo
from bilan.settings import Settings
from bilan.storage.database import create_engine
from bilan.storage.migrate import upgrade
from tests.helpers import run
from tests.servers import running
from tests.web import follow, log_in, submit

TO_IMPORT = ("DEMO-2026-0001", "DEMO-2026-0002", "DEMO-2026-0003")  # addressed to the lab


async def _load(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    await load_demo(settings)


@pytest.fixture
def demo(settings: Settings, own_database: Settings, second_root: str, web_root: str) -> Iterator[str]:
    """`bilan demo` on a database of its own: a second bilan at second_root (the provider
    knows its callback; it accepts the provider's tokens, issued for the first one)."""
    fresh = settings.model_copy(update={
        "database_url": own_database.database_url, "database_schema": own_database.database_schema,
        "base_url": f"{second_root}/fhir", "token_audience": f"{web_root}/fhir"})
    run(_load(fresh))
    with running(fresh):
        yield second_root


@pytest.fixture
def people(demo: str) -> Iterator[dict[str, httpx.Client]]:
    """The demo accounts, each logged in through the provider's form."""
    opened = {name: log_in(demo, name)[0] for name in ("accueil.martin", "tech.bernard", "bio.durand", "dr.lambert")}
    yield opened
    for browser in opened.values():
        browser.close()


def rows(page: httpx.Response) -> list[str]:
    """The prescription numbers a worklist page lists."""
    return re.findall(r'href="/reception/prescriptions/[^"]+">([^<]+)</a>', page.text)


def link(page: httpx.Response, text: str) -> str:
    """The address of the page's link whose text is `text`."""
    found = re.search(rf'href="([^"]+)"[^>]*>{re.escape(text)}</a>', page.text)
    assert found, f"no link « {text} » on {page.url}"
    return str(page.url.join(unescape(found.group(1))))


def scan(browser: httpx.Client, root: str, typed: str) -> httpx.Response:
    """Typed in the reception list's search field, then Enter (the form's plain submission)."""
    return follow(browser, browser.get(f"{root}/reception", params={"q": typed, "statut": "received"}))


def test_the_readme_story_is_true_step_by_step(demo: str, people: dict[str, httpx.Client]) -> None:
    desk, biologist, doctor = people["accueil.martin"], people["bio.durand"], people["dr.lambert"]

    # As accueil.martin, « Réception des prescriptions » lists the prescriptions addressed to the lab.
    home = desk.get(f"{demo}/")
    worklist = desk.get(link(home, "Réception des prescriptions"))
    assert worklist.status_code == 200 and "Prescriptions reçues" in worklist.text
    assert sorted(rows(worklist)) == list(TO_IMPORT)

    # DEMO-2026-0100 + Enter opens the one addressed to no lab: Inès BENALI's, whom the lab has
    # no file for; its IgA is not in the catalogue.
    page = scan(desk, demo, "DEMO-2026-0100")
    assert page.status_code == 200 and "Prescription n° DEMO-2026-0100" in page.text
    assert "BENALI" in page.text and "LAMBERT" in page.text
    assert "Vérification d'identité et import" in page.text
    assert "Aucun dossier du laboratoire ne porte cet INS" in page.text
    assert "Immunoglobulines A" in page.text and "À transmettre" in page.text
    imported = submit(desk, page, page.url.path + "/import", {"dossier": "new"})
    assert imported.status_code == 200 and "Dossier de prélèvement n°" in imported.text
    labels = desk.get(link(imported, "Imprimer les étiquettes"))
    assert labels.status_code == 200 and labels.headers["content-type"] == "application/pdf"
    assert labels.content.startswith(b"%PDF")
    sheet = desk.get(link(imported, "Fiche de réception"))
    assert sheet.status_code == 200 and "Fiche de réception" in sheet.text and "BENALI" in sheet.text
    # Scanned again once imported, the number still opens it.
    assert "Dossier de prélèvement n°" in scan(desk, demo, "DEMO-2026-0100").text

    # DEMO-2026-0002, Jean LEFÈVRE's: the lab has a file for him whose traits differ.
    page = scan(desk, demo, "DEMO-2026-0002")
    assert "Prescription n° DEMO-2026-0002" in page.text and "LEFÈVRE" in page.text
    assert re.search(r"Rattacher au dossier n° P0900001 — LEFÈVRE", page.text)
    assert re.search(r'class="badge warn">\d+ différences?<', page.text)
    lab_file = re.search(r'name="dossier" value="([^"]+)"', page.text).group(1)
    imported = submit(desk, page, page.url.path + "/import", {"dossier": lab_file})
    assert "Dossier de prélèvement n°" in imported.text and "P0900001" in imported.text
    task_path = imported.url.path

    # As bio.durand, adapt it: add an exam, with a reason.
    page = biologist.get(f"{demo}{task_path}")
    assert "Adapter la prescription" in page.text
    prescribed = page.text.split('id="examens-titre"')[1].split("</table>")[0]
    catalogue = page.text.split('<select id="code"')[1].split("</select>")[0]
    code, label = next((value, unescape(text)) for value, text in re.findall(
        r'<option value="([^"]+)"\s*>([^<]+)</option>', catalogue) if unescape(text) not in unescape(prescribed))
    adapted = submit(biologist, page, f"{task_path}/adaptation",
                     {"change": "add", "code": code, "reason": "clinical-context",
                      "note": "Asthénie : à compléter."})
    assert adapted.status_code == 200 and "Ajout" in adapted.text
    assert "En attente de l&#39;accord du prescripteur" in adapted.text

    # As dr.lambert, « Mes prescriptions » shows it waiting for his answer; he agrees.
    home = doctor.get(f"{demo}/")
    mine = doctor.get(link(home, "Mes prescriptions"))
    line = next(row for row in mine.text.split("<tr>") if ">DEMO-2026-0002</a>" in row)
    assert "Adaptation en attente de l&#39;accord du prescripteur" in line
    page = doctor.get(link(mine, "DEMO-2026-0002"))
    assert label in unescape(page.text) and "Asthénie : à compléter." in page.text
    change = re.search(r'name="adaptation" value="([^"]+)"', page.text).group(1)
    answered = submit(doctor, page, f"{page.url.path}/reponse",
                      {"adaptation": change, "accord": "oui", "texte": "D'accord."})
    assert answered.status_code == 200 and "Accord du prescripteur" in answered.text
    assert "Accord du prescripteur" in biologist.get(f"{demo}{task_path}").text

    # Results: as bio.durand, « Dupont » in the reception list finds her imported check-ups.
    found = follow(biologist, biologist.get(f"{demo}/reception", params={"q": "Dupont", "statut": "received"}))
    assert "DEMO-2026-9002" in rows(found) and "Importée" in found.text
    page = biologist.get(link(found, "DEMO-2026-9002"))
    results = biologist.get(link(page, "Résultats"))
    assert results.status_code == 200 and "Résultats — DUPONT" in results.text
    assert "Validé biologiquement" in results.text  # validated, beside the previous check-up's values
    assert "(12/05/2026)" in results.text
    report = results.text.split('id="cr-titre"')[1]
    assert "En vigueur" in report
    view, pdf, cda = (biologist.get(link(results, text)) for text in ("Voir", "PDF", "CDA"))
    assert view.status_code == 200 and "DUPONT" in view.text.upper()
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert cda.status_code == 200 and b"ClinicalDocument" in cda.content

    # The lab's home page counts what waits: DEMO-2026-9100's results (a critical one, and Dr
    # Lambert's message), DEMO-2026-9101's report to issue.
    home = biologist.get(f"{demo}/")
    assert re.search(r'Valeurs critiques à appeler</a> <span class="badge urgent" id="compte-valeurs-critiques">1<',
                     home.text)
    assert re.search(r'Résultats à valider</a> <span class="badge urgent" id="compte-a-valider">1<', home.text)
    queues = biologist.get(link(home, "Résultats à valider"))
    waiting = queues.text.split('id="a-emettre"')
    assert "DEMO-2026-9100" in waiting[0] and "DEMO-2026-9101" in waiting[1]
    assert "Merci de m&#39;appeler si la glycémie dépasse 7 mmol/L." in waiting[1]
    # As tech.bernard, validate them technically; as bio.durand, biologically.
    technician = people["tech.bernard"]
    to_validate = technician.get(link(technician.get(link(technician.get(f"{demo}/"), "Résultats à valider")),
                                      "DEMO-2026-9100"))
    chosen = re.findall(r'name="resultats" value="([^"]+)"', to_validate.text)
    assert chosen and "Validation biologique" not in to_validate.text
    checked = submit(technician, to_validate, to_validate.url.path, {"action": "technique", "resultats": chosen})
    assert checked.status_code == 200 and "Validé techniquement par technician:staff-tech-bernard" in checked.text
    page = biologist.get(str(to_validate.url))
    # Its glucose is critical (HH): bio.durand records his call to Dr Lambert before validating.
    assert submit(biologist, page, page.url.path, {"action": "biologique", "resultats": chosen}).status_code == 409
    critical = re.search(r'name="resultat" value="([^"]+)"', page.text).group(1)
    when = re.search(r'name="quand" value="([^"]+)"', page.text).group(1)
    called = submit(biologist, page, f"{page.url.path}/appel", {
        "resultat": critical, "qui": "Dr Claire Lambert", "quand": when, "moyen": "telephone",
        "propos": "Glycémie à 26,8 mmol/L transmise ; la patiente est adressée aux urgences."})
    assert called.status_code == 200 and "Appel tracé : Dr Claire Lambert" in called.text
    done = submit(biologist, page, page.url.path, {"action": "biologique", "resultats": chosen})
    assert done.status_code == 200 and "Validé biologiquement par biologist:10000000017" in done.text
