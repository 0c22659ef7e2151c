"""The biologist issues the report: a conformant CR-BIO with its PDF, stored and searchable,
mailed to the prescriber with the CDA attached, sent to the shared record, notified to the
practice software; partial, final and corrected versions; masking until the prescriber
releases it; and the patient's choices (opposition, identity not qualified)."""

import base64
import dataclasses
import hashlib
import json
from datetime import datetime
from zoneinfo import ZoneInfo

from lxml import etree

from bilan.demo.prescriptions import EXAMS
from bilan.results.document import conformance
from tests.deliveries import settled, subscribed
from tests.helpers import search
from tests.orders import (
    addressed,
    imported,
    imported_for,
    open_by_number,
    prescribed,
    send,
    task_of,
)
from tests.people import DUPONT
from tests.receivers import eventually
from tests.results import (
    binary,
    cda_in,
    decide,
    documents,
    issue,
    pdf_text,
    posted,
    prescriber_mail,
    report_files,
    report_of,
    result,
)
from tests.web import log_in, submit

NFS, GLUCOSE = EXAMS[0], EXAMS[1]
PSA = ("2857-1", "PSA total")  # sensitive in the catalogue: suggested hidden until announced
V3 = {"h": "urn:hl7-org:v3"}


def test_the_report_reaches_the_prescriber_the_shared_record_and_the_patient_once_released(
        fhir, lab_middleware, desk, biologist, doctor, web_root, server, webhook, dmp, mail_relay, as_user, rng) -> None:
    subscribed(fhir, "DocumentReference?type=http://loinc.org|11502-2", webhook.url)
    spec = addressed(rng, exams=[NFS, GLUCOSE, PSA], patient=DUPONT)
    task_id = imported_for(fhir, desk, web_root, spec)
    nfs, glucose, psa = (prescribed(fhir, task_id, code) for code in (NFS[0], GLUCOSE[0], PSA[0]))
    ids = [posted(lab_middleware, result(nfs, "718-7", 13.2, "g/dL")),
           posted(lab_middleware, result(nfs, "6690-2", 11.8, "10*9/L")),
           posted(lab_middleware, result(glucose, GLUCOSE[0], 7.2, "mmol/L")),
           posted(lab_middleware, result(psa, PSA[0], 6.5, "ug/L"))]
    assert decide(biologist, web_root, task_id, "biologique", ids).status_code == 200

    page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}/resultats")
    assert f'name="masquer" value="{ids[3]}" checked' in page.text  # PSA: sensitive, hidden by default
    issued = issue(biologist, web_root, task_id, masquer=[ids[3]], annonce="1")
    assert issued.status_code == 200, issued.text
    assert "Version" in issued.text and "Masqué au patient" in issued.text

    [document] = documents(fhir, task_id)
    [cda_attachment] = (c["attachment"] for c in document["content"])  # one content: the CDA
    cda, pdf = report_files(fhir, document)
    assert conformance.problems(cda) == []
    assert pdf.startswith(b"%PDF-")
    assert cda_attachment["size"] == len(cda)
    assert cda_attachment["hash"] == base64.b64encode(hashlib.sha1(cda).digest()).decode()
    assert document["content"][0]["format"]["code"] == "urn:ihe:lab:xd-lab:2008"
    assert {c["code"] for label in document["securityLabel"] for c in label["coding"]} >= {"INVISIBLE_PATIENT"}
    root = etree.fromstring(cda)
    assert root.xpath("string(h:recordTarget//h:id[@root='1.2.250.1.213.1.4.10']/@extension)", namespaces=V3) \
        == DUPONT.ins  # a qualified identity is sent under its INS
    assert root.xpath("string(h:inFulfillmentOf/h:order/h:id/@extension)", namespaces=V3) == spec.requisition
    assert root.xpath("string(h:authenticator//h:id/@extension)", namespaces=V3) == "810000000017"
    assert "Numération formule sanguine" in cda.decode()  # the panel's results as a battery

    report = report_of(fhir, task_id)
    assert report["status"] == "final" and len(report["result"]) == 4
    assert fhir.get(f"Task/{task_id}").json()["status"] == "completed"

    mails = eventually(lambda: [m for m in mail_relay.to(prescriber_mail(fhir, glucose))
                                if spec.requisition in m["Subject"] and "Compte rendu" in m["Subject"]],
                       10, "the report mailed to the prescriber")
    attached = {part.get_filename(): part.get_content() for mail in mails for part in mail.iter_attachments()}
    assert attached["CR-BIO.xml"] == cda
    [sent] = eventually(lambda: [json.loads(c.body) for c in dmp.delivered("/dmp/fhir")
                                 if spec.requisition.encode() in cda_in(c.body)], 10, "the report sent to the DMP")
    shared = next(e["resource"] for e in sent["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    assert shared["subject"]["identifier"]["value"] == DUPONT.ins  # the DMP knows the patient by INS
    eventually(lambda: webhook.delivered(), 10, "the practice software notified")

    view = doctor.get(f"{web_root}/documents/{document['id']}")
    assert view.status_code == 200 and "Glycémie" in view.text  # the ANS stylesheet's rendering

    # The patient: the PSA and the whole report hidden until the prescriber has seen them.
    patient = as_user("patient.dupont")
    seen = {e["resource"]["id"] for e in search(patient, "Observation", _id=f"{ids[2]},{ids[3]}").get("entry", [])}
    assert seen == set()  # the report is absent whole: its unmasked results too
    assert patient.get(f"Observation/{ids[3]}").status_code == 403
    assert patient.get(f"Observation/{ids[2]}").status_code == 403
    assert patient.get(f"DocumentReference/{document['id']}").status_code == 403
    assert patient.get(cda_attachment["url"], headers={"Accept": "application/xml"}).status_code == 403
    browser, _ = log_in(web_root, "patient.dupont")
    assert browser.get(f"{web_root}/documents/{document['id']}/compte-rendu.pdf").status_code == 403

    page = doctor.get(f"{web_root}/prescripteur/prescriptions/{task_id}")
    assert "Masqué au patient" in page.text
    released = submit(doctor, page, f"/prescripteur/prescriptions/{task_id}/levee-masquage", {})
    assert released.status_code == 200 and "Masqué au patient" not in released.text
    assert patient.get(f"Observation/{ids[3]}").status_code == 200
    assert patient.get(f"Observation/{ids[2]}").status_code == 200
    assert browser.get(f"{web_root}/documents/{document['id']}/compte-rendu.pdf").content == pdf


def test_partial_then_final_then_corrected_versions_replace_each_other(
        fhir, lab_middleware, desk, biologist, web_root, mail_relay, settings, rng) -> None:
    spec = addressed(rng, exams=[NFS, GLUCOSE])
    task_id = imported(fhir, desk, web_root, spec)
    nfs, glucose = prescribed(fhir, task_id, NFS[0]), prescribed(fhir, task_id, GLUCOSE[0])
    sugar = posted(lab_middleware, result(glucose, GLUCOSE[0], 7.2, "mmol/L"))
    haemoglobin = posted(lab_middleware, result(nfs, "718-7", 13.2, "g/dL"))
    decide(biologist, web_root, task_id, "biologique", [sugar])

    assert issue(biologist, web_root, task_id).status_code == 200
    assert report_of(fhir, task_id)["status"] == "partial"
    assert fhir.get(f"Task/{task_id}").json()["status"] != "completed"

    decide(biologist, web_root, task_id, "biologique", [haemoglobin])
    assert issue(biologist, web_root, task_id).status_code == 200
    assert report_of(fhir, task_id)["status"] == "final"  # after a partial one: not a correction
    assert fhir.get(f"Task/{task_id}").json()["status"] == "completed"

    corrected = decide(biologist, web_root, task_id, "corriger", [sugar], valeur="5,4",
                       commentaire="Erreur de dilution")
    assert corrected.status_code == 200, corrected.text
    sugar_now = fhir.get(f"Observation/{sugar}").json()
    assert sugar_now["status"] == "corrected" and sugar_now["valueQuantity"]["value"] == 5.4
    assert sugar_now["interpretation"][0]["coding"][0]["code"] == "N"  # computed again
    assert issue(biologist, web_root, task_id).status_code == 200
    assert report_of(fhir, task_id)["status"] == "corrected"

    first, second, third = documents(fhir, task_id)
    assert [d["status"] for d in (first, second, third)] == ["superseded", "superseded", "current"]
    # Each version's state is coded (docStatus), and the order lists them by a coded output type.
    assert [d["docStatus"] for d in (first, second, third)] == ["preliminary", "final", "amended"]
    outputs = fhir.get(f"Task/{task_id}").json()["output"]
    assert [(o["type"]["coding"][0]["code"], o["valueReference"]["reference"]) for o in outputs] == [
        ("results", f"DiagnosticReport/{report_of(fhir, task_id)['id']}"),
        *(("report", f"DocumentReference/{d['id']}") for d in (first, second, third))]
    page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}/resultats").text
    assert [number for number in ("1", "2", "3") if f"<td>{number} (partiel)</td>" in page] == ["1"]
    assert third["relatesTo"][0] == {"code": "replaces", "target": {"reference": f"DocumentReference/{second['id']}"}}
    cdas = [etree.fromstring(binary(fhir, d["content"][0]["attachment"])) for d in (first, second, third)]
    assert {c.xpath("string(h:setId/@root)", namespaces=V3) for c in cdas} == {cdas[0].xpath(
        "string(h:setId/@root)", namespaces=V3)}
    assert [c.xpath("string(h:versionNumber/@value)", namespaces=V3) for c in cdas] == ["1", "2", "3"]
    assert cdas[2].xpath("string(h:relatedDocument[@typeCode='RPLC']/h:parentDocument/h:id/@root)",
                         namespaces=V3) == cdas[1].xpath("string(h:id/@root)", namespaces=V3)
    assert "5,4" in etree.tostring(cdas[2]).decode() or "5.4" in etree.tostring(cdas[2]).decode()
    # One mail for the correction: counted once what the third version queued is done.
    done = eventually(lambda: settled(settings, task_id, f"DocumentReference/{third['id']}"),
                      10, "the corrected version's deliveries done")
    assert [(n.channel, n.status) for n in done if n.target == prescriber_mail(fhir, glucose)] == [
        ("email", "delivered")]  # the patient's notices go to her own addresses
    corrected = [m for m in mail_relay.to(prescriber_mail(fhir, glucose))
                 if "corrigé" in m["Subject"] and spec.requisition in m["Subject"]]
    assert len(corrected) == 1


def test_a_patient_who_opposed_or_without_a_qualified_identity_is_not_shared(
        fhir, lab_middleware, desk, biologist, web_root, dmp, mail_relay, settings, rng) -> None:
    opposed = addressed(rng, exams=[GLUCOSE])
    send(fhir, opposed)
    page = open_by_number(desk, web_root, opposed.requisition)
    submit(desk, page, page.url.path + "/import", {"dossier": "new", "opposition": "oui"})
    provisional = addressed(rng, exams=[GLUCOSE])
    provisional.patient = dataclasses.replace(provisional.patient, status="PROV")
    for spec, task_id, why in ((opposed, task_of(fhir, opposed.requisition)["id"], "opposé"),
                               (provisional, imported(fhir, desk, web_root, provisional), "Identité non qualifiée")):
        request = prescribed(fhir, task_id, GLUCOSE[0])
        decide(biologist, web_root, task_id, "biologique", [posted(lab_middleware, result(request, GLUCOSE[0], 5.0, "mmol/L"))])
        page = issue(biologist, web_root, task_id)
        assert page.status_code == 200 and "Non partagé" in page.text and why in page.text
        [document] = documents(fhir, task_id)
        assert not any(t["code"] == "patient-space" for t in document["meta"].get("tag", []))
        # The shared record's feed would be queued with the mail, in the issuing's transaction:
        # once what the issuing queued is done, the mail delivered, the DMP call would be made.
        done = eventually(lambda: settled(settings, task_id, f"DocumentReference/{document['id']}"),
                          10, "the issuing's deliveries done")
        assert [(n.channel, n.target, n.status) for n in done] == [
            ("email", prescriber_mail(fhir, request), "delivered")]
        assert [m for m in mail_relay.to(prescriber_mail(fhir, request)) if spec.requisition in m["Subject"]]
        assert not [c for c in dmp.calls if spec.requisition.encode() in cda_in(c.body)]


def test_a_report_that_cannot_be_made_is_not_issued_and_the_lab_sees_why(
        fhir, lab_middleware, desk, biologist, web_root, rng) -> None:
    spec = addressed(rng, exams=[GLUCOSE])
    task_id = imported(fhir, desk, web_root, spec)
    request = prescribed(fhir, task_id, GLUCOSE[0])
    odd = posted(lab_middleware, result(request, GLUCOSE[0], 7.2, "mmol/L", interpretation=[{"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "XYZ"}]}]))
    assert issue(biologist, web_root, task_id).status_code == 422  # nothing validated yet
    decide(biologist, web_root, task_id, "biologique", [odd])
    refused = issue(biologist, web_root, task_id)
    assert refused.status_code == 422
    assert "Le compte rendu n'a pas été émis" in refused.text and "XYZ" in refused.text
    assert documents(fhir, task_id) == []
    assert fhir.get(f"Task/{task_id}").json()["status"] != "completed"
    assert issue(desk, web_root, task_id).status_code == 403  # only a biologist issues


def test_a_masked_report_is_released_at_the_date_the_lab_chose_and_carries_its_dmp_flags(
        fhir, lab_middleware, desk, biologist, web_root, dmp, as_user, rng) -> None:
    spec = addressed(rng, exams=[PSA], patient=DUPONT)
    task_id = imported_for(fhir, desk, web_root, spec)
    psa = posted(lab_middleware, result(prescribed(fhir, task_id, PSA[0]), PSA[0], 1.2, "ug/L"))
    decide(biologist, web_root, task_id, "biologique", [psa])
    bad_date = issue(biologist, web_root, task_id, masquer_tout="1", liberation="31/02/2026")
    assert bad_date.status_code == 422 and "JJ/MM/AAAA" in bad_date.text
    today = datetime.now(ZoneInfo("Europe/Paris")).date().isoformat()
    issued = issue(biologist, web_root, task_id, masquer_tout="1", liberation=today, masque_ps="1",
                   connexion_secrete="1")
    assert issued.status_code == 200, issued.text[-3000:]

    [document] = documents(fhir, task_id)
    labels = {c["code"] for label in document["securityLabel"] for c in label["coding"]}
    assert labels >= {"MASQUE_PS", "CONNEXION_SECRETE", "INVISIBLE_PATIENT"}
    [sent] = eventually(lambda: [json.loads(c.body) for c in dmp.delivered("/dmp/fhir")
                                 if spec.requisition.encode() in cda_in(c.body)], 10, "the report sent to the DMP")
    shared = next(e["resource"] for e in sent["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    assert {c["code"] for label in shared["securityLabel"] for c in label["coding"]} >= {"MASQUE_PS", "CONNEXION_SECRETE"}
    patient = as_user("patient.dupont")
    # Due at 00:00 today, Paris time: the delivery worker releases it at once.
    eventually(lambda: patient.get(f"DocumentReference/{document['id']}").status_code == 200, 10,
               "the report released at its date")
    assert patient.get(f"Observation/{psa}").status_code == 200


def test_only_the_biologist_s_explicit_release_with_its_reason_lifts_a_mask(
        fhir, lab_middleware, desk, biologist, web_root, as_user, rng) -> None:
    spec = addressed(rng, exams=[GLUCOSE, PSA], patient=DUPONT)
    task_id = imported_for(fhir, desk, web_root, spec)
    glucose = posted(lab_middleware, result(prescribed(fhir, task_id, GLUCOSE[0]), GLUCOSE[0], 5.1, "mmol/L"))
    psa = posted(lab_middleware, result(prescribed(fhir, task_id, PSA[0]), PSA[0], 7.5, "ug/L"))
    assert decide(biologist, web_root, task_id, "biologique", [glucose, psa]).status_code == 200
    assert issue(biologist, web_root, task_id, masquer=[psa]).status_code == 200
    patient = as_user("patient.dupont")
    assert patient.get(f"Observation/{psa}").status_code == 403

    # The desk shows the mask as standing; a corrected value keeps it.
    page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}/resultats")
    assert f'value="{psa}" checked disabled' in page.text and 'id="levee-masquage"' in page.text
    assert decide(biologist, web_root, task_id, "corriger", [psa], valeur="7,2",
                  commentaire="Dilution").status_code == 200
    assert issue(biologist, web_root, task_id).status_code == 200
    assert patient.get(f"Observation/{psa}").status_code == 403

    # Without a reason, nothing is lifted and the page says why, next to the field.
    page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}/resultats")
    refused = submit(biologist, page, f"/reception/prescriptions/{task_id}/levee-masquage", {"motif": "  "})
    assert refused.status_code == 422 and 'id="motif-erreur"' in refused.text
    assert "Indiquez le motif" in refused.text
    assert patient.get(f"Observation/{psa}").status_code == 403

    page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}/resultats")
    done = submit(biologist, page, f"/reception/prescriptions/{task_id}/levee-masquage",
                  {"motif": "Résultat expliqué à la patiente par téléphone"})
    assert done.status_code == 200 and 'id="levee-masquage"' not in done.text
    assert patient.get(f"Observation/{psa}").json()["valueQuantity"]["value"] == 7.2
    subject = fhir.get(f"Observation/{psa}").json()["subject"]["reference"]
    trail = search(patient, "AuditEvent", patient=subject, _sort="-date", _count=200)  # hers: other tests' too
    reasons = [e["resource"].get("outcomeDesc", "") for e in trail.get("entry", [])]
    assert "Levée du masquage : Résultat expliqué à la patiente par téléphone" in reasons


def test_the_biologists_conclusion_is_in_the_cda_the_pdf_and_the_report_and_makes_a_new_version(
        fhir, lab_middleware, desk, biologist, web_root, rng) -> None:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE]))
    request = prescribed(fhir, task_id, GLUCOSE[0])
    decide(biologist, web_root, task_id, "biologique", [posted(lab_middleware, result(request, GLUCOSE[0], 7.4, "mmol/L"))])
    assert issue(biologist, web_root, task_id).status_code == 200
    again = issue(biologist, web_root, task_id)
    assert again.status_code == 409  # nothing new: no new version

    conclusion = "Hyperglycémie à jeun : à contrôler, HbA1c conseillée."
    assert issue(biologist, web_root, task_id, conclusion=conclusion).status_code == 200
    first, second = documents(fhir, task_id)
    assert second["docStatus"] == "amended" or second["relatesTo"][0]["code"] == "replaces"
    cda = binary(fhir, second["content"][0]["attachment"])
    assert conformance.problems(cda) == []
    section = etree.fromstring(cda).xpath("//h:section[h:code/@code='55112-7']", namespaces=V3)
    assert len(section) == 1 and conclusion in "".join(section[0].itertext())
    assert report_of(fhir, task_id)["conclusion"] == conclusion
    _, pdf = report_files(fhir, second)
    assert conclusion in pdf_text(pdf) and "Conclusion du biologiste" in pdf_text(pdf)
    assert issue(biologist, web_root, task_id, conclusion=conclusion).status_code == 409  # the same again


def test_the_pdf_prints_the_previous_result_beside_the_new_one(
        fhir, lab_middleware, desk, biologist, web_root, rng) -> None:
    spec = addressed(rng, exams=[GLUCOSE])
    first = imported(fhir, desk, web_root, spec)
    earlier = result(prescribed(fhir, first, GLUCOSE[0]), GLUCOSE[0], 5.4, "mmol/L",
                     effectiveDateTime="2026-05-12T08:00:00+02:00")
    decide(biologist, web_root, first, "biologique", [posted(lab_middleware, earlier)])
    again = imported_for(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE], patient=spec.patient))
    decide(biologist, web_root, again, "biologique", [posted(lab_middleware, result(
        prescribed(fhir, again, GLUCOSE[0]), GLUCOSE[0], 7.0, "mmol/L"))])
    assert "5,4 mmol/L" in biologist.get(f"{web_root}/reception/prescriptions/{again}/resultats").text
    assert issue(biologist, web_root, again).status_code == 200

    [document] = documents(fhir, again)
    text = " ".join(pdf_text(report_files(fhir, document)[1]).split())  # cells wrap
    assert "Antériorité" in text and "7,0 mmol/L" in text and "5,4 mmol/L (12/05/2026)" in text
