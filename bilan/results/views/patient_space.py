"""What the patient's space shows besides trends: their reports, newest first, whether a result
awaits their consultation (when the lab chose to say so), and who accessed their data, in plain
words. Everything is read as the patient, through the access rules, and audited."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bilan.auth import access
from bilan.auth.audit import DMP_CONSULTED, DMP_DETAILS, DMP_IMPORTED, DMP_OPENED, patients_of
from bilan.auth.caller import Caller
from bilan.fhir.dates import OLDEST
from bilan.fhir.query import parse_search
from bilan.prescription import directory, display_name
from bilan.records.service import Records
from bilan.results import masking
from bilan.results.document import assembly
from bilan.storage import search as store_search
from bilan.storage.compartments import narrowed, referring, with_token
from bilan.storage.repository import Repository, Stored

_ACTIONS = {"read": "a consulté", "vread": "a consulté", "history-instance": "a consulté l'historique de",
            "search-type": "a recherché", "search-system": "a recherché", "create": "a ajouté",
            "update": "a modifié", "delete": "a supprimé", "transaction": "a enregistré",
            "login": "s'est connecté(e)", "logout": "s'est déconnecté(e)"}
_WHAT = {"Observation": "des résultats", "DiagnosticReport": "un compte rendu", "DocumentReference": "un compte rendu",
         "Binary": "un compte rendu", "ServiceRequest": "une prescription", "Task": "le suivi d'une prescription",
         "Specimen": "des prélèvements", "Patient": "votre dossier", "Communication": "des échanges sur une prescription",
         "Condition": "des informations cliniques", "AuditEvent": "l'historique des accès à vos données"}

_DMP_TRAIL = {DMP_CONSULTED: ("a consulté", "votre dossier médical partagé (DMP)"),
              DMP_OPENED: ("a ouvert", "un document de votre dossier médical partagé (DMP)"),
              DMP_IMPORTED: ("a importé", "un compte rendu de votre DMP dans l'historique de vos résultats")}


@dataclass(frozen=True)
class ReportLine:
    document_id: str
    when: datetime | None
    lab: str
    prescriber: str
    status: str  # French: "Définitif", "Partiel", "Corrigé", "Remplacé"
    elsewhere: bool  # a report from another lab or the DMP
    has_pdf: bool


@dataclass(frozen=True)
class TrailLine:
    when: datetime | None
    who: str
    did: str
    what: str
    refused: bool


class PatientSpace:
    def __init__(self, records: Records):
        self.records = records

    async def reports(self, caller: Caller) -> list[ReportLine]:
        """The patient's reports (current versions), newest first."""
        async with self.records.work(caller) as work:
            repo = work.repo
            found = await self._search(repo, caller, "DocumentReference", [("status", "current")])
            lines = [await self._line(repo, s) for s in found]
            work.note("search-type", touched=[f"DocumentReference/{s.id}" for s in found],
                      patients={p for s in found for p in patients_of(s.content)},
                      query="DocumentReference?status=current")
        return sorted(lines, key=lambda line: line.when or OLDEST, reverse=True)

    async def awaiting(self, caller: Caller) -> list[str]:
        """The labs that said a report of theirs awaits the patient's consultation with their
        doctor (hidden until then): only the lab's name, never what or when."""
        if caller.kind != "patient":
            return []
        async with self.records.work(caller) as work:
            repo = work.repo
            mine = referring("DocumentReference", "patient", "Patient", access.visible(caller, "Patient"))
            announced = narrowed(mine, within=(
                with_token("DocumentReference", "_tag", masking.SHARING, masking.ANNOUNCED),
                with_token("DocumentReference", "_security", masking.CONFIDENTIALITY, masking.INVISIBLE_PATIENT),
                with_token("DocumentReference", "status", None, "current")))
            query = parse_search("DocumentReference", [], default_count=50, max_count=50)
            found = await store_search.search(repo.conn, query, self.records.base_url, lambda _t: announced)
            labs = {await self._organization(repo, s.content.get("custodian")) for s in found.matches}
        return sorted(lab or "Votre laboratoire" for lab in labs)

    async def trail(self, caller: Caller) -> list[TrailLine]:
        """Who accessed the patient's data, newest first, in plain words."""
        async with self.records.work(caller) as work:
            repo = work.repo
            found = await self._search(repo, caller, "AuditEvent", [("_sort", "-date")], count=200)
            names: dict[str, str] = {}
            lines = [await self._trail_line(repo, s.content, names) for s in found]
            work.note("search-type", query="AuditEvent?_sort=-date")
        return lines

    async def _search(self, repo: Repository, caller: Caller, resource_type: str,
                      params: list[tuple[str, str]], count: int = 200) -> list[Stored]:
        query = parse_search(resource_type, params, default_count=count, max_count=count)
        result = await store_search.search(repo.conn, query, self.records.base_url,
                                           lambda t: access.readable(caller, t))
        return result.matches

    async def _line(self, repo: Repository, stored: Stored) -> ReportLine:
        content = stored.content
        imported = any(t.get("code") == "imported" for t in (content.get("meta") or {}).get("tag", []))
        report = await self._report(repo, stored.id, content)
        status = {"partial": "Partiel", "corrected": "Corrigé", "amended": "Corrigé"}.get(
            (report or {}).get("status", ""), "Définitif")
        period = (content.get("context") or {}).get("period") or {}
        authors = content.get("author", [])
        lab = await self._organization(repo, content.get("custodian")) or next(
            (a.get("display", "") for a in authors if a.get("display")), "")
        return ReportLine(stored.id, assembly.moment(period.get("start") or content.get("date")), lab,
                          await self._prescriber(repo, report), status, imported,
                          any((c.get("attachment") or {}).get("contentType") == "application/pdf"
                              for c in content.get("content", [])))

    async def _report(self, repo: Repository, document_id: str, content: dict[str, Any]) -> dict[str, Any] | None:
        """The DiagnosticReport the lab issued with this document (none for one from elsewhere)."""
        task = next((r["reference"] for r in (content.get("context") or {}).get("related", [])
                     if r.get("reference", "").startswith("Task/")), None)
        stored = await repo.read_reference(task) if task else None
        for output in stored.content.get("output", []) if stored else []:
            ref = (output.get("valueReference") or {}).get("reference", "")
            if ref.startswith("DiagnosticReport/"):
                found = await repo.read_reference(ref)
                return found.content if found else None
        return None

    async def _prescriber(self, repo: Repository, report: dict[str, Any] | None) -> str:
        for based_on in (report or {}).get("basedOn", [])[:1]:
            request = await repo.read_reference(based_on.get("reference", ""))
            requester = (request.content.get("requester") or {}).get("reference", "") if request else ""
            return display_name(await directory.practitioner_of(repo, requester))
        return ""

    async def _organization(self, repo: Repository, reference: dict[str, Any] | None) -> str:
        if not reference:
            return ""
        if reference.get("display"):
            return str(reference["display"])
        found = await repo.read_reference(reference.get("reference", ""))
        return str(found.content.get("name", "")) if found else ""

    async def _trail_line(self, repo: Repository, event: dict[str, Any], names: dict[str, str]) -> TrailLine:
        agent = (event.get("agent") or [{}])[0]
        label = str(((agent.get("who") or {}).get("identifier") or {}).get("value", ""))
        interaction = next((c.get("code", "") for c in event.get("subtype", [])), "")
        types = sorted({str((e.get("what") or {}).get("reference", "")).split("/")[0]
                        for e in event.get("entity", []) if (e.get("what") or {}).get("reference")} - {"Patient"})
        what = ", ".join(dict.fromkeys(_WHAT.get(t, "des données") for t in types)) or (
            "votre dossier" if interaction not in ("login", "logout") else "")
        if label not in names:
            names[label] = await self._who(repo, label)
        did = _ACTIONS.get(interaction, "a accédé à")
        if event.get("outcomeDesc") in DMP_DETAILS:  # said as what it was: the shared record
            did, what = _DMP_TRAIL[event["outcomeDesc"]]
        return TrailLine(assembly.moment(event.get("recorded")), names[label], did,
                         what, event.get("outcome") not in (None, "0"))

    async def _who(self, repo: Repository, label: str) -> str:
        kind, _, ident = label.partition(":")
        if kind == "patient":
            return "Vous"
        if kind in ("prescriber", "practice-software", "biologist"):
            name = await self._practitioner(repo, ident) or f"un professionnel (RPPS {ident})"
            return {"prescriber": name, "biologist": f"{name}, biologiste",
                    "practice-software": f"le logiciel du cabinet de {name}"}[kind]
        if kind in ("reception", "lab-middleware"):
            lab = await self._lab(repo, ident) or f"le laboratoire (FINESS {ident})"
            return f"l'accueil de {lab}" if kind == "reception" else f"les automates de {lab}"
        return "bilan"

    async def _practitioner(self, repo: Repository, rpps: str) -> str:
        found = await directory.practitioner_by_rpps(repo, self.records.base_url, rpps)
        return display_name(found.content) if found else ""

    async def _lab(self, repo: Repository, finess: str) -> str:
        found = await directory.organization_by_finess(repo, self.records.base_url, finess)
        return str(found.content.get("name", "")) if found else ""
