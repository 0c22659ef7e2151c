"""Identity and access: tokens, roles, what each may read, search and write, and the audit trail."""

import json
import os
import subprocess
import sys
import time

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from bilan.auth.client_credentials import request_token
from bilan.demo.load import LAB_IDENTIFIER
from bilan.demo.prescriptions import EXAMS, PrescriptionSpec, bundle
from bilan.prescription.ins import INS_NIR_TEST
from tests.helpers import DEMO_PRESCRIBER_RPPS, ids, locations, search, uuid_from
from tests.identity import IDP_DIR, login
from tests.people import DUPONT, LAMBERT, LEFEVRE, NGUYEN
from tests.servers import running

ACCOUNTS = {
    "dr.lambert": {"role": "prescriber", "rpps": "10003456786"},
    "dr.nguyen": {"role": "prescriber", "rpps": "10123456781"},
    "accueil.martin": {"role": "reception", "lab_finess": "750100001"},
    "bio.durand": {"role": "biologist", "lab_finess": "750100001"},
    "patient.dupont": {"role": "patient", "ins": "279035121518989"},
    "patient.lefevre": {"role": "patient", "ins": "162117512345635"},
}


def _signed(claims: dict, key: dict) -> str:
    return jwt.encode({"alg": "RS256", "kid": key.get("kid")}, claims, RSAKey.import_key(key),
                      algorithms=["RS256"])


def _claims(issuer: str, audience: str, **extra) -> dict:
    now = int(time.time())
    return {"iss": issuer, "aud": audience, "iat": now, "exp": now + 300, "sub": "practice-software-demo",
            "client_id": "practice-software-demo", "client_kind": "practice-software",
            "acting_rpps": DEMO_PRESCRIBER_RPPS, "scope": "system/*.read", **extra}


@pytest.fixture(scope="module")
def world(fhir: httpx.Client, as_user, rng_module) -> dict:
    """Two prescriptions: Dr Lambert's for Mme Dupont, addressed to the demo lab, through his
    software; Dr Nguyen's for M. Lefèvre, sent by himself, addressed to no lab."""
    run = uuid_from(rng_module).hex[:8].upper()
    first = PrescriptionSpec(DUPONT, LAMBERT, f"ACL-{run}-1", EXAMS[:2], lab=LAB_IDENTIFIER)
    second = PrescriptionSpec(LEFEVRE, NGUYEN, f"ACL-{run}-2", EXAMS[2:4])
    one = fhir.post("", json=bundle(first))
    two = as_user("dr.nguyen").post("", json=bundle(second))
    assert (one.status_code, two.status_code) == (200, 200), (one.text, two.text)
    return {"one": locations(one), "two": locations(two), "first": first, "second": second}


def _requests(locs: list[str]) -> set[str]:
    return {loc for loc in locs if loc.startswith("ServiceRequest/")}


def test_the_api_wants_a_token_but_says_where_to_get_one(anonymous: httpx.Client) -> None:
    refused = anonymous.get("Patient")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert refused.json()["issue"][0]["code"] == "login"
    statement = anonymous.get("metadata").json()
    assert statement["rest"][0]["security"]["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    smart = anonymous.get(".well-known/smart-configuration").json()
    assert smart["token_endpoint"].endswith("/token")
    assert "private_key_jwt" in smart["token_endpoint_auth_methods_supported"]


@pytest.mark.parametrize("problem", ["wrong audience", "expired", "wrong signature", "wrong issuer"])
def test_untrustworthy_tokens_are_refused(anonymous: httpx.Client, issuer: str, settings,
                                          problem: str) -> None:
    idp_key = json.loads((IDP_DIR / "keys" / "idp-signing.private.jwk.json").read_text())
    claims = _claims(issuer, settings.base_url)
    key = idp_key
    if problem == "wrong audience":
        claims["aud"] = "https://another-service.example/fhir"
    elif problem == "expired":
        claims["exp"] = int(time.time()) - 60
    elif problem == "wrong issuer":
        claims["iss"] = "https://impostor.example"
    else:
        key = dict(RSAKey.generate_key(2048).as_dict(private=True), kid=idp_key["kid"])
    valid = anonymous.get("Patient", headers={"Authorization": f"Bearer {_signed(_claims(issuer, settings.base_url), idp_key)}"})
    assert valid.status_code == 200  # the same token, untouched, is accepted

    response = anonymous.get("Patient", headers={"Authorization": f"Bearer {_signed(claims, key)}"})

    assert response.status_code == 401, problem
    assert "Invalid access token" in response.json()["issue"][0]["diagnostics"]


def test_a_token_verified_once_is_refused_once_it_expires(anonymous: httpx.Client, issuer: str, settings) -> None:
    """Verified claims are kept for the token's next requests, never past its expiry."""
    idp_key = json.loads((IDP_DIR / "keys" / "idp-signing.private.jwk.json").read_text())
    claims = dict(_claims(issuer, settings.base_url), exp=int(time.time()) + 2)
    headers = {"Authorization": f"Bearer {_signed(claims, idp_key)}"}
    assert anonymous.get("Patient", headers=headers).status_code == 200
    assert anonymous.get("Patient", headers=headers).status_code == 200  # from the kept claims
    time.sleep(max(0.0, claims["exp"] - time.time()) + 0.2)
    expired = anonymous.get("Patient", headers=headers)
    assert expired.status_code == 401 and "expired" in expired.json()["issue"][0]["diagnostics"]


def test_a_token_without_the_scope_cannot_write(server: str, issuer: str, spec) -> None:
    token = request_token(issuer, "practice-software-demo", "system/Patient.read")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    with httpx.Client(base_url=server, headers=headers) as api:
        assert api.post("", json=bundle(spec)).status_code == 403
        assert api.get("ServiceRequest").status_code == 403
        assert api.get("Patient").status_code == 200


@pytest.mark.parametrize("username", sorted(ACCOUNTS))
def test_each_role_logs_in_through_the_provider(issuer: str, web_root: str, server: str,
                                                username: str) -> None:
    done = login(issuer, username, "demo", f"{web_root}/auth/callback")
    for claim, value in ACCOUNTS[username].items():
        assert done.claims[claim] == value
    response = httpx.get(f"{server}/Patient", headers={"Authorization": f"Bearer {done.access_token}"})
    assert response.status_code == 200
    with pytest.raises(PermissionError):
        login(issuer, username, "wrong password", f"{web_root}/auth/callback")


def test_prescriber_sees_only_their_prescriptions(world: dict, fhir: httpx.Client, as_user) -> None:
    mine, theirs = _requests(world["one"]), _requests(world["two"])
    other_patient = world["two"][0]
    for api, own, foreign in ((fhir, mine, theirs), (as_user("dr.lambert"), mine, theirs),
                              (as_user("dr.nguyen"), theirs, mine)):
        for location in own:
            assert api.get(location).status_code == 200
        for location in foreign:
            assert api.get(location).status_code == 403
            assert api.get(f"{location}/_history").status_code == 403
            assert api.get(f"{location}/_history/1").status_code == 403
        found = search(api, "ServiceRequest", requisition=world["first"].requisition)
        assert ids(found) == (own if own == mine else set())
    # Searching for another prescriber's patient finds nothing, counts nothing, includes nothing.
    leak = search(fhir, "ServiceRequest", patient=other_patient, _include="ServiceRequest:patient")
    assert leak["total"] == 0 and "entry" not in leak
    rev = search(fhir, "Patient", _id=other_patient.split("/")[1], _revinclude="ServiceRequest:patient")
    assert rev["total"] == 0
    by_ins = search(fhir, "ServiceRequest", **{"patient.identifier": f"{INS_NIR_TEST}|{LEFEVRE.ins}"})
    assert not ids(by_ins) & theirs  # Lambert may have prescribed for him too, never Nguyen's
    history = fhir.get("ServiceRequest/_history", params={"_count": 500}).json()
    assert not theirs & {f"ServiceRequest/{e['resource']['id']}" for e in history.get("entry", []) if "resource" in e}


def test_searches_of_one_shape_never_share_their_rights_or_values(world: dict, fhir: httpx.Client,
                                                                   as_user) -> None:
    """bilan keeps one statement per search shape, its values bound at each run: alternating
    callers and values of one shape, each answer is the caller's and the values' own."""
    orders = [(world["one"][0], world["first"], _requests(world["one"])),
              (world["two"][0], world["second"], _requests(world["two"]))]
    codes = [spec.exams[0][0] for _, spec, _ in orders]
    for _ in range(3):
        for api, own in ((fhir, orders[0]), (as_user("dr.nguyen"), orders[1])):
            for patient, spec, requests in orders:
                found = search(api, "ServiceRequest", patient=patient, requisition=spec.requisition)
                assert ids(found) == (requests if spec is own[1] else set()), spec.requisition
                for code in codes:
                    found = search(api, "ServiceRequest", patient=patient, requisition=spec.requisition,
                                   code=f"http://loinc.org|{code}")
                    expected = spec is own[1] and code in {c for c, _ in spec.exams}
                    assert found["total"] == (1 if expected else 0), (spec.requisition, code)


def test_lab_staff_see_what_is_addressed_to_their_lab(world: dict, as_user, lab_middleware) -> None:
    addressed, elsewhere = _requests(world["one"]), _requests(world["two"])
    for api in (as_user("accueil.martin"), as_user("bio.durand"), lab_middleware):
        for location in addressed:
            assert api.get(location).status_code == 200
        for location in elsewhere:
            assert api.get(location).status_code == 403
        found = search(api, "ServiceRequest", requisition=world["second"].requisition)
        assert found["total"] == 0
    patient = as_user("accueil.martin").get(world["one"][0])
    assert patient.status_code == 200 and patient.json()["identifier"][0]["value"] == DUPONT.ins


def test_only_some_roles_write_some_things(world: dict, as_user, lab_middleware, spec) -> None:
    request = sorted(_requests(world["one"]))[0]
    task = {"resourceType": "Task", "status": "requested", "intent": "order",
            "basedOn": [{"reference": request}], "for": {"reference": world["one"][0]}}
    assert as_user("bio.durand").post("Task", json=task).status_code == 201
    assert as_user("accueil.martin").post("Task", json=task).status_code == 201
    assert as_user("patient.dupont").post("Task", json=task).status_code == 403
    assert as_user("accueil.martin").post("", json=bundle(spec)).status_code == 403
    assert lab_middleware.post("", json=bundle(spec)).status_code == 403
    assert as_user("dr.nguyen").post("", json=bundle(spec)).status_code == 403  # signed by Dr Lambert


def test_patients_see_only_their_own_data(world: dict, as_user) -> None:
    dupont, lefevre = as_user("patient.dupont"), as_user("patient.lefevre")
    both = {"_id": f'{world["one"][0].split("/")[1]},{world["two"][0].split("/")[1]}'}
    assert ids(search(dupont, "Patient", **both)) == {world["one"][0]}
    own = search(dupont, "Patient", _count=100)
    # Each prescriber who treats her keeps a Patient of his own for her: all carry her INS.
    assert all(DUPONT.ins in {i["value"] for i in e["resource"]["identifier"]} for e in own["entry"])
    assert ids(search(lefevre, "Patient", **both)) == {world["two"][0]}
    his = search(lefevre, "Patient", _count=100)
    assert all(LEFEVRE.ins in {i["value"] for i in e["resource"]["identifier"]} for e in his["entry"])
    # Named by id: other tests' prescriptions for her may fill a page.
    requests = ",".join(r.split("/")[1] for r in _requests(world["one"]) | _requests(world["two"]))
    assert ids(search(dupont, "ServiceRequest", _id=requests)) == _requests(world["one"])
    for location in _requests(world["two"]) | {world["two"][0]}:
        assert dupont.get(location).status_code == 403
    assert search(dupont, "ServiceRequest", patient=world["two"][0])["total"] == 0
    assert dupont.post("Patient", json={"resourceType": "Patient"}).status_code == 403


def test_every_access_is_in_the_patients_audit_trail(world: dict, fhir: httpx.Client, as_user) -> None:
    request = sorted(_requests(world["one"]))[0]
    fhir.get(request)
    as_user("dr.nguyen").get(request)  # refused, and recorded as such
    # Newest first: other tests' prescriptions for her (the same file of Dr Lambert's) add to it.
    trail = search(as_user("patient.dupont"), "AuditEvent", patient=world["one"][0], _sort="-date", _count=200)
    events = [e["resource"] for e in trail["entry"]]
    by = {(e["agent"][0]["who"]["identifier"]["value"], e["subtype"][0]["code"], e["outcome"]) for e in events}
    assert ("practice-software:10003456786", "read", "0") in by
    assert ("prescriber:10123456781", "read", "4") in by
    assert ("practice-software:10003456786", "transaction", "0") in by
    assert all("address" in e["agent"][0].get("network", {}) for e in events)
    others = search(as_user("patient.lefevre"), "AuditEvent", patient=world["one"][0])
    assert others["total"] == 0
    assert search(fhir, "AuditEvent")["total"] == 0


def test_dev_token_command_prints_a_usable_token(issuer: str, server: str) -> None:
    done = subprocess.run([sys.executable, "-m", "bilan", "dev-token", "--client", "lab-middleware-demo"],
                          env=dict(os.environ, BILAN_OIDC_ISSUER=issuer), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    response = httpx.get(f"{server}/Observation", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert httpx.post(f"{server}/Patient", json={"resourceType": "Patient"}, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}).status_code == 403


def test_an_unreachable_provider_is_a_503_not_a_crash(settings, second_root: str, server: str) -> None:
    cut_off = settings.model_copy(update={"base_url": f"{second_root}/fhir",
                                          "oidc_issuer": "http://127.0.0.1:9"})
    with running(cut_off):
        response = httpx.get(f"{second_root}/fhir/Patient", headers={"Authorization": "Bearer x.y.z"})
        statement = httpx.get(f"{second_root}/fhir/metadata")
    assert response.status_code == 503
    assert response.json()["issue"][0]["code"] == "transient"
    assert statement.status_code == 200  # still says what it serves
