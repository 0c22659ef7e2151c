"""Where a patient is told that a report of hers is available: her MSSanté citizen mailbox
(`<INS>@patient.mssante.fr`, for a qualified INS only) and the e-mail address she sets in her
space.

The address she sets is kept on a FHIR `Person` of hers (a person's contact details, apart
from any health record), one per INS, that only her space writes and only with that address:
a patient writes no Patient, result or report. It is stored with its history and audited like
any write, but no Person is served through the FHIR API (not a type bilan offers)."""

import hashlib
import re
from typing import Any

from bilan.auth.caller import Caller
from bilan.fhir.outcomes import Invalid, Issue
from bilan.records.service import Records
from bilan.storage.repository import Repository, Write

CITIZEN_DOMAIN = "patient.mssante.fr"
FIELD = "courriel"  # the form field, named by the refusal's expression
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"{_LOCAL}@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}")


def citizen_mailbox(ins: str) -> str:
    """The patient's MSSanté citizen mailbox (Mon espace santé), named by her INS."""
    return f"{ins}@{CITIZEN_DOMAIN}"


def person_id(ins: str) -> str:
    """The id of the patient's Person: derived from her INS, which it does not show."""
    return "ins-" + hashlib.sha256(ins.encode()).hexdigest()[:40]


def email_problem(text: str) -> str | None:
    """Why `text` is not an e-mail address a notice can go to (in French), or None."""
    if len(text) > 254:
        return "Cette adresse est trop longue (254 caractères au plus)."
    if not _ADDRESS.fullmatch(text) or len(text.partition("@")[0]) > 64:
        return "Saisissez une adresse électronique complète, par exemple marie.dupont@exemple.fr."
    if text.lower().endswith("@" + CITIZEN_DOMAIN):
        return "Votre messagerie Mon espace santé reçoit déjà ces avis : indiquez une autre adresse."
    return None


async def chosen_email(repo: Repository, ins: str) -> str:
    """The address the patient set in her space ("" when none)."""
    found = await repo.read("Person", person_id(ins))
    return _email(found.content) if found is not None and not found.deleted else ""


class NoticeAddress:
    """The patient's own notice address, read and set in her space."""

    def __init__(self, records: Records):
        self.records = records

    async def get(self, caller: Caller) -> str:
        async with self.records.work(caller) as work:
            return await chosen_email(work.repo, _ins(caller))

    async def set(self, caller: Caller, text: str) -> str:
        """Keep `text` as her address ("" removes it); a 422 naming the field when it is not an
        address. The address kept."""
        address = text.strip()
        problem = email_problem(address) if address else None
        if problem:
            raise Invalid([Issue(problem, "value", expression=FIELD)])
        ins = _ins(caller)
        async with self.records.work(caller) as work:
            stored = await work.repo.read("Person", person_id(ins))
            if (stored is None or stored.deleted) and not address:
                return ""
            content = _person(address)
            # Built here from her INS and the checked address alone: nothing else of hers is written.
            await work.write([Write("Person", person_id(ins), content,
                                    "PUT" if stored is not None else "POST",
                                    stored.version_id if stored is not None else None,
                                    validated=True, guarded=True)], system=True)
        return address


def _ins(caller: Caller) -> str:
    if caller.kind != "patient" or not caller.ins:
        raise Invalid([Issue("Seul le patient choisit son adresse d'avis.", "forbidden", expression=FIELD)])
    return caller.ins


def _person(address: str) -> dict[str, Any]:
    person: dict[str, Any] = {"resourceType": "Person"}  # whose: its id, derived from her INS
    if address:
        person["telecom"] = [{"system": "email", "value": address, "use": "home"}]
    return person


def _email(person: dict[str, Any]) -> str:
    return next((str(t["value"]) for t in person.get("telecom", [])
                 if t.get("system") == "email" and t.get("value")), "")
