"""The patient's "who accessed my data": her audit trail in plain French, one line per person
and kind of access and day ("Le laboratoire Bilan Paris Est a consulté des résultats, 3 fois,
de 08:02 à 08:40"), newest day first, a page at a time; all of it, the professionals' accesses
only, or the refusals only. Read as the patient (access.trail_of), and audited."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from bilan import french
from bilan.auth import access
from bilan.auth.audit import DMP_CONSULTED, DMP_IMPORTED, DMP_OPENED
from bilan.auth.caller import Caller
from bilan.prescription import directory, display_name
from bilan.records.service import Records
from bilan.storage import audit_log
from bilan.storage.repository import Repository, Stored

PAGE_SIZE = 300  # events a page groups into lines
ALL, PROFESSIONALS, REFUSALS = "tous", "professionnels", "refus"
SHOWN = (ALL, PROFESSIONALS, REFUSALS)

# An interaction as a sentence says it: its past participle and its infinitive.
_VERBS = {"read": ("consulté", "consulter"), "vread": ("consulté", "consulter"),
          "history-instance": ("consulté l'historique de", "consulter l'historique de"),
          "history-type": ("consulté l'historique de", "consulter l'historique de"),
          # A search shows what it found: to its patient, it was consulted.
          "search-type": ("consulté", "consulter"), "search-system": ("consulté", "consulter"),
          "create": ("ajouté", "ajouter"), "update": ("modifié", "modifier"),
          "delete": ("supprimé", "supprimer"), "transaction": ("enregistré", "enregistrer")}
_SESSIONS = {"login": ("s'est connecté(e)", "vous êtes connecté(e)"),
             "logout": ("s'est déconnecté(e)", "vous êtes déconnecté(e)")}
_DMP = {DMP_CONSULTED: (("consulté", "consulter"), "votre dossier médical partagé (DMP)"),
        DMP_OPENED: (("ouvert", "ouvrir"), "un document de votre dossier médical partagé (DMP)"),
        DMP_IMPORTED: (("importé", "importer"),
                       "un compte rendu de votre DMP dans l'historique de vos résultats")}
_WHAT = {"Observation": "des résultats", "DiagnosticReport": "un compte rendu",
         "DocumentReference": "un compte rendu", "Binary": "un compte rendu",
         "ServiceRequest": "une prescription", "Task": "le suivi d'une prescription",
         "Specimen": "des prélèvements", "Communication": "des échanges sur une prescription",
         "Condition": "des informations cliniques", "Encounter": "un séjour",
         "AuditEvent": "l'historique des accès à vos données"}
_DIRECTORY = ("Practitioner", "PractitionerRole", "Organization", "Location")  # no one's data
YOUR_RECORD = "votre dossier"
YOU = "Vous"


@dataclass(frozen=True)
class TrailLine:
    """Who did what, how many times and when, on one day."""

    sentence: str  # "Le laboratoire Bilan Paris Est a consulté des résultats"
    count: int
    first: datetime
    last: datetime
    refused: bool
    by_patient: bool

    @property
    def when(self) -> str:
        if self.count == 1:
            return f"à {french.clock(self.first)}"
        return f"{self.count} fois, de {french.clock(self.first)} à {french.clock(self.last)}"


@dataclass(frozen=True)
class TrailDay:
    day: date
    lines: list[TrailLine]

    @property
    def heading(self) -> str:
        return french.day(self.day)


@dataclass(frozen=True)
class TrailPage:
    days: list[TrailDay]
    shown: str  # ALL, PROFESSIONALS or REFUSALS
    page: int  # from 1
    pages: int
    events: int  # in all, for what is shown


@dataclass
class _Group:
    who: str
    verb: tuple[str, str] | None  # None: a login or logout
    interaction: str
    refused: bool
    by_patient: bool
    whats: dict[str, None] = field(default_factory=dict)  # in order, once each
    moments: list[datetime] = field(default_factory=list)


class AccessTrail:
    def __init__(self, records: Records):
        self.records = records

    async def page(self, caller: Caller, shown: str = ALL, page: int = 1) -> TrailPage:
        """One page of the caller's own trail (a patient's), grouped; `shown` one of SHOWN."""
        shown = shown if shown in SHOWN else ALL
        page = max(page, 1)
        async with self.records.work(caller) as work:
            total, events = await audit_log.trail(
                work.repo.conn, access.trail_of(caller),
                professionals_only=shown == PROFESSIONALS,
                refused_only=shown == REFUSALS, count=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
            days = await self._days(work.repo, events)
            work.note("search-type", query=f"AuditEvent?_sort=-date&shown={shown}&page={page}")
        return TrailPage(days, shown, page, max(1, -(-total // PAGE_SIZE)), total)

    async def _days(self, repo: Repository, events: list[Stored]) -> list[TrailDay]:
        names: dict[str, str] = {}
        by_day: dict[date, dict[tuple[str, Any, bool], _Group]] = {}
        for stored in events:  # newest first
            event = stored.content
            label = _agent_label(event)
            if label not in names:
                names[label] = await self._who(repo, label)
            moment = stored.last_updated
            groups = by_day.setdefault(french.in_paris(moment).date(), {})
            interaction, refused = _interaction(event), event.get("outcome") not in (None, "0")
            verb = _verb(event, interaction)
            # The shared record's accesses are lines of their own: what they show is not bilan's.
            kind = event["outcomeDesc"] if event.get("outcomeDesc") in _DMP else verb or interaction
            key = (label, kind, refused)
            group = groups.get(key) or groups.setdefault(key, _Group(
                names[label], verb, interaction, refused, names[label] == YOU))
            group.whats.update(dict.fromkeys(_whats(event, interaction)))
            group.moments.append(moment)
        return [TrailDay(day, [_line(g) for g in groups.values()]) for day, groups in by_day.items()]

    async def _who(self, repo: Repository, label: str) -> str:
        """Who an event's agent is, as the subject of a sentence. In a patient's trail, a
        patient's access is hers: no one else sees her data as a patient."""
        kind, _, ident = label.partition(":")
        if kind == "patient":
            return YOU
        if kind in ("prescriber", "practice-software", "biologist"):
            found = await directory.practitioner_by_rpps(repo, self.records.base_url, ident)
            name = display_name(found.content) if found else f"un professionnel de santé (RPPS {ident})"
            return {"prescriber": name, "biologist": f"{name}, biologiste,",
                    "practice-software": f"le logiciel du cabinet de {name}"}[kind]
        if kind in ("reception", "technician", "lab-middleware"):
            found = await directory.organization_by_finess(repo, self.records.base_url, ident)
            lab = _laboratory(str(found.content.get("name", "")) if found else f"(FINESS {ident})")
            return {"reception": f"l'accueil du {lab}", "technician": f"un technicien du {lab}",
                    "lab-middleware": f"le {lab}"}[kind]
        return "bilan"


def _agent_label(event: dict[str, Any]) -> str:
    agent = (event.get("agent") or [{}])[0]
    return str(((agent.get("who") or {}).get("identifier") or {}).get("value", ""))


def _interaction(event: dict[str, Any]) -> str:
    return next((c.get("code", "") for c in event.get("subtype", [])), "")


def _verb(event: dict[str, Any], interaction: str) -> tuple[str, str] | None:
    if interaction in _SESSIONS:
        return None
    if event.get("outcomeDesc") in _DMP:
        return _DMP[event["outcomeDesc"]][0]
    return _VERBS.get(interaction, ("accédé à", "accéder à"))


def _whats(event: dict[str, Any], interaction: str) -> Iterable[str]:
    if interaction in _SESSIONS:
        return []
    if event.get("outcomeDesc") in _DMP:
        return [_DMP[event["outcomeDesc"]][1]]
    types = sorted({str((e.get("what") or {}).get("reference", "")).split("/")[0]
                    for e in event.get("entity", []) if (e.get("what") or {}).get("reference")}
                   - {"Patient", *_DIRECTORY})
    return [_WHAT.get(t, "des données") for t in types] or [YOUR_RECORD]


def _line(group: _Group) -> TrailLine:
    return TrailLine(_sentence(group), len(group.moments), min(group.moments), max(group.moments),
                     group.refused, group.by_patient)


def _sentence(group: _Group) -> str:
    """The group as a French sentence, its subject agreeing with the verb; a refusal says what
    was tried."""
    you = group.who == YOU
    if group.verb is None:
        third, second = _SESSIONS[group.interaction]
        return f"Vous {second}" if you else f"{_capitalised(group.who)} {third}"
    participle, infinitive = group.verb
    whats = _listed(list(group.whats))
    if group.refused:
        did = f"avez tenté de {infinitive}" if you else f"a tenté de {infinitive}"
        return f"{_capitalised(group.who)} {did} {whats}"  # the page marks it refused
    return f"{_capitalised(group.who)} {'avez' if you else 'a'} {participle} {whats}"


def _listed(whats: list[str]) -> str:
    """"des résultats, un compte rendu et une prescription"."""
    return whats[0] if len(whats) == 1 else f"{', '.join(whats[:-1])} et {whats[-1]}"


def _laboratory(name: str) -> str:
    """A lab's name after an article: "laboratoire Bilan Paris Est"."""
    if name.lower().startswith("laboratoire "):
        return "laboratoire " + name[len("laboratoire "):]
    return f"laboratoire {name}"


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]
