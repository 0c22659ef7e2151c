"""One person, several Patient resources: the prescriber's Patient each prescription came with,
the lab's own patient file (docs/reception.md, "Identity check"), a second prescriber's Patient
for the same INS. Which of them are the same person, so that a history reads them all.

Two things say so. The lab's own decision at import: its file gets a `Patient.link` of type
`seealso` to the prescription's Patient (both records stay in use, neither is merged into the
other: FHIR R4's `replaces` / `replaced-by` would say one is retired, `refer` that one is not the
main source). And a qualified INS (identity status QUAL), the national identifier: two Patients
carrying the same one are the same person, linked or not.

Nothing here widens what anyone sees: only Patients the caller may read are followed, only the
links on the caller's own lab files are believed (never a link someone else wrote), and the
history is then searched as the caller (`access.visible`), so it holds no result the caller
could not already read one by one.
"""

from typing import Any, Iterable

from bilan.auth import access, policy
from bilan.auth.caller import Caller
from bilan.fhir.query import parse_search
from bilan.fhir.references import literal
from bilan.prescription.ins import identity_status, ins_identifiers
from bilan.storage import search as store_search
from bilan.storage.compartments import owned_by
from bilan.storage.repository import Repository, Stored

SAME_PERSON = "seealso"  # Patient.link.type: another record, in use and valid, of this person
MOST_RECORDS = 50  # Patient records of one person followed (about); far more than anyone has


def linked(patient: dict[str, Any], other: str) -> dict[str, Any] | None:
    """The patient file with a `seealso` link to `other` ("Patient/id"); None when it has it."""
    links = patient.get("link", [])
    if other == _reference(patient) or any((link.get("other") or {}).get("reference") == other
                                           for link in links):
        return None
    return {**patient, "link": [*links, {"other": {"reference": other}, "type": SAME_PERSON}]}


async def same_person(repo: Repository, base_url: str, caller: Caller, *references: str) -> list[str]:
    """The "Patient/id" references of the person these Patient references name, among those
    the caller may read: theirs, the caller's lab files linked to them and what those files
    link to (both ways, as far as it goes), and the Patients with the same qualified INS.
    Sorted; empty when the caller may read none of `references`."""
    readable = access.visible(caller, "Patient")
    trusted = policy.owner_key(caller) if caller.for_lab else None  # whose links are believed
    known: dict[str, Stored] = {}
    todo = _patients(references)
    while todo and len(known) < MOST_RECORDS:
        ids = await repo.visible_ids("Patient", sorted(_id(r) for r in todo), readable)
        new = [s for s in await repo.read_references(f"Patient/{i}" for i in sorted(ids))
               if f"Patient/{s.id}" not in known]
        known.update((f"Patient/{s.id}", s) for s in new)
        todo = set()
        if trusted is not None:
            for stored in new:
                if await repo.owner("Patient", stored.id) == trusted:
                    todo |= _links(stored.content)
            todo |= await _linking(repo, base_url, trusted, [f"Patient/{s.id}" for s in new])
        todo |= await _same_ins(repo, base_url, readable, new)
        todo -= set(known)
    return sorted(known)


def _links(patient: dict[str, Any]) -> set[str]:
    """What a file links to: every type of link names the same person (FHIR R4 Patient.link)."""
    return _patients(str((link.get("other") or {}).get("reference", "")) for link in patient.get("link", []))


async def _linking(repo: Repository, base_url: str, owner: str, targets: list[str]) -> set[str]:
    """The owner's patient files that link to one of `targets`."""
    if not targets:
        return set()
    query = parse_search("Patient", [("link", ",".join(targets))], default_count=MOST_RECORDS,
                         max_count=MOST_RECORDS)
    files = owned_by("Patient", owner)
    found = await store_search.search(repo.conn, query, base_url, lambda _t: files)
    return {f"Patient/{s.id}" for s in found.matches}


async def _same_ins(repo: Repository, base_url: str, readable: Any, patients: list[Stored]) -> set[str]:
    """The readable Patients whose qualified INS is one of these Patients' qualified INS."""
    wanted = {f"{ident['system']}|{ident['value']}" for s in patients if _qualified(s.content)
              for _, ident in ins_identifiers(s.content) if ident.get("system") and ident.get("value")}
    if not wanted:
        return set()
    query = parse_search("Patient", [("identifier", ",".join(sorted(wanted)))], default_count=MOST_RECORDS,
                         max_count=MOST_RECORDS)
    found = await store_search.search(repo.conn, query, base_url, lambda _t: readable)
    return {f"Patient/{s.id}" for s in found.matches if _qualified(s.content) and wanted & {
        f"{i.get('system')}|{i.get('value')}" for _, i in ins_identifiers(s.content)}}


def _qualified(patient: dict[str, Any]) -> bool:
    return identity_status(patient) == "QUAL" and bool(ins_identifiers(patient))


def _patients(references: Iterable[str]) -> set[str]:
    """The Patient references among these, as "Patient/id"."""
    return {f"Patient/{key[1]}" for key in map(literal, references) if key is not None and key[0] == "Patient"}


def _id(reference: str) -> str:
    return reference.split("/", 1)[1]


def _reference(patient: dict[str, Any]) -> str:
    return f"Patient/{patient['id']}" if patient.get("id") else ""
