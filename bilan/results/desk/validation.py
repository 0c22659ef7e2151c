"""The lab's results desk: an order's results with the patient's previous result of the same
analyte (delta check), then technical and biological validation, re-run or cancellation.

Statuses (FHIR Observation): from the analysers `registered` or `preliminary`; technical
validation `preliminary`; biological validation `final` (by a biologist only); rejected for a
re-run or not done: `cancelled` (not done carries a dataAbsentReason).
"""

import sys
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from bilan import french
from bilan.auth import access
from bilan.auth.audit import patients_of
from bilan.auth.caller import Caller
from bilan.fhir.dates import OLDEST, date_range, instant
from bilan.fhir.outcomes import Conflict, Invalid, Issue
from bilan.fhir.query import parse_search
from bilan.fhir.terminology import LOINC
from bilan.prescription import adapted_requests, loinc_codes, same_person, tracking
from bilan.records.service import Records, new_id
from bilan.results.desk import context, critical, interpretation, plausibility, typed, units
from bilan.results.desk.critical import Call
from bilan.results.desk.delta import DeltaResult, delta_check
from bilan.results.desk.names import label, labels
from bilan.results.desk.signatures import Signature, entered_by_hand, signatures, signed
from bilan.storage import catalogue
from bilan.storage import search as store_search
from bilan.storage.repository import Repository, Stored, Write

OPEN = ("registered", "preliminary")
CORRECTABLE = ("final", "amended", "corrected")  # validated: a change is a correction
STATUS_LABELS = {"registered": "À valider", "preliminary": "Validé techniquement",
                 "final": "Validé biologiquement", "amended": "Corrigé", "corrected": "Corrigé",
                 "cancelled": "Annulé", "entered-in-error": "Erreur de saisie"}
STEPS = {"technique": "technical", "biologique": "biological", "repasser": "rerun", "annuler": "not-done"}
NOT_DONE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                        "code": "not-performed", "display": "Not Performed"}]}


@dataclass(frozen=True)
class Previous:
    value: Decimal
    unit: str
    when: str
    delta: DeltaResult | None


@dataclass(frozen=True)
class Row:
    id: str
    label: str
    value: str
    flag: str
    flag_label: str
    reference: str
    status: str
    previous: Previous | None
    notes: tuple[str, ...]
    signatures: tuple[Signature, ...] = ()
    warnings: tuple[str, ...] = ()  # what the biologist must check first (a differential over 100 %)
    critical: bool = False  # flagged LL or HH: the prescriber is called before validation
    calls: tuple[Call, ...] = ()  # the calls recorded about it
    called: bool = False  # a call covers its present value
    described: str = ""  # a critical result as its call names it: "Potassium 6,9 mmol/L (HH)"
    context: tuple[str, ...] = ()  # the clinical context that changes how it reads
    origin: str = ""  # where the value came from: "Automate", "Saisie manuelle", "Calcul", ...

    @property
    def to_call(self) -> bool:
        return self.critical and not self.called

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status)

    @property
    def open(self) -> bool:
        return self.status in OPEN

    @property
    def correctable(self) -> bool:
        return self.status in CORRECTABLE


class ResultsDesk:
    def __init__(self, records: Records):
        self.records = records

    async def results(self, caller: Caller, task_id: str) -> list[Row]:
        async with self.records.work(caller) as work:
            repo = work.repo
            task = await tracking.order_task(work, task_id, "read", "results-desk")
            found = await order_results(repo, self.records.base_url, caller, task)
            unbalanced = _unbalanced(found)
            history = await person_history(repo, self.records.base_url, caller, task, found)
            calls = await critical.order_calls(repo, self.records.base_url, task)
            named = await critical.names(repo, [s for s in found if critical.is_critical(s.content)])
            bearing = context.readings(await _clinical_context(repo, task))
            known = await labels(repo.conn, [s.content for s in found])
            lab = str((task.content.get("owner") or {}).get("reference", ""))
            rows = [replace(await self._row(repo, caller, s, history, known, lab), warnings=tuple(
                plausibility.unbalanced_in_french(problem) for problem, ids in unbalanced if s.id in ids),
                critical=critical.is_critical(s.content), calls=tuple(calls.get(s.id, [])),
                called=critical.called(s, calls),
                described=critical.described(s.content, named) if critical.is_critical(s.content) else "",
                context=tuple(dict.fromkeys(t for code in loinc_codes(s.content) for t in bearing.get(code, ()))))
                for s in found]
            work.note("read", patients=patients_of(task.content) | {p for refs in history.values() for p in refs},
                      touched=[f"Observation/{s.id}" for s in found])
        return rows

    async def decide(self, caller: Caller, task_id: str, action: str, ids: list[str], comment: str,
                     value: str = "") -> None:
        """technical / biological validation, re-run, or not done, for the chosen results; or
        the correction of one validated result (new value and reason)."""
        if action not in ("technique", "biologique", "repasser", "annuler", "corriger"):
            raise Invalid([Issue("Action inconnue.", "value", expression="action")])
        if not ids:
            raise Invalid([Issue("Cochez au moins un résultat.", "required", expression="resultats")])
        if action in ("repasser", "annuler", "corriger") and not comment.strip():
            raise Invalid([Issue("Indiquez le motif.", "required", expression="commentaire")])
        if action == "corriger" and len(ids) != 1:
            raise Invalid([Issue("Cochez le seul résultat à corriger.", "value", expression="resultats")])
        async with self.records.work(caller) as work:
            repo = work.repo
            work.allow("validate-biologically" if action in ("biologique", "corriger") else "validate-technically",
                       [f"Task/{task_id}"], "update")
            task = await tracking.order_task(work, task_id, "update", "results-desk")
            mine = {s.id: s for s in await order_results(repo, self.records.base_url, caller, task)}
            now, writes = work.now, []
            for result_id in ids:
                stored = mine.get(result_id)
                allowed = CORRECTABLE if action == "corriger" else OPEN
                if stored is None or stored.content.get("status") not in allowed:
                    raise Conflict([Issue("Ce résultat n'est plus à valider : rechargez la page.",
                                                "conflict", expression="resultats")])
                if action == "corriger":
                    content = _corrected(stored.content, value, comment, caller.signer, now)
                else:
                    content = _decided(stored.content, action, comment, caller.signer, now)
                writes.append(Write("Observation", stored.id, content, "PUT", stored.version_id))
            if action == "corriger":
                await _check_plausible(repo, content)
            if action == "biologique":
                uncalled = critical.uncalled(list(mine.values()), await critical.order_calls(
                    repo, self.records.base_url, task))
                if uncalled:
                    raise Conflict([critical.refusal(uncalled, "la validation biologique",
                                                     await critical.names(repo, uncalled))])
                for problem, in_it in _unbalanced(list(mine.values())):
                    if in_it & set(ids):
                        raise Invalid([Issue(f"{plausibility.unbalanced_in_french(problem)} Corrigez ou faites "
                                             "repasser avant la validation biologique.", "business-rule",
                                             expression="resultats")])
            await work.write(writes)

    async def call(self, caller: Caller, task_id: str, result_id: str, who: str, when: str, how: str,
                   said: str) -> None:
        """The biologist's call to the prescriber about a critical result: traced in the order's
        thread (who was reached, when, how, what was said) with an urgent message to the
        prescriber, both through the write path (audited), and noted with its detail."""
        async with self.records.work(caller) as work:
            repo = work.repo
            task = await tracking.order_task(work, task_id, "create", "call-critical")
            who, moment = critical.checked_call(result_id, who, when, how, said, work.now)
            results = {s.id: s for s in await order_results(repo, self.records.base_url, caller, task)}
            stored = results.get(result_id)
            if stored is None or not critical.is_critical(stored.content):
                raise Conflict([Issue("Ce résultat n'est pas une valeur critique à appeler : rechargez la page.",
                                      "conflict", expression="resultats")])
            if critical.called(stored, await critical.order_calls(repo, self.records.base_url, task)):
                raise Conflict([Issue("L'appel de cette valeur critique est déjà tracé : rechargez la page.",
                                      "conflict", expression="resultats")])
            named = await critical.names(repo, [stored])
            trace, alert = critical.messages({**task.content, "id": task.id}, stored, who, moment, how, said,
                                             caller.signer, work.now, named)
            saved = await work.write([Write("Communication", new_id(), trace, "POST"),
                                      Write("Communication", new_id(), alert, "POST")])
            work.note("create", patients=patients_of(task.content) | patients_of(stored.content),
                      touched=[*(f"Communication/{s.id}" for s in saved), f"Observation/{stored.id}"],
                      detail=f"Appel pour valeur critique : {critical.described(stored.content, named)}, "
                             f"{who} joint ({critical.MEDIA[how][2]})")

    async def _row(self, repo: Repository, caller: Caller, stored: Stored, history: dict[str, list[str]],
                   known: dict[str, str], lab: str) -> Row:
        content = stored.content
        flag = next((c.get("code", "") for i in content.get("interpretation", []) for c in i.get("coding", [])), "")
        return Row(
            id=stored.id, label=label(content, known), value=typed.shown(content), flag=flag, origin=_origin(content, lab),
            flag_label=interpretation.LABELS.get(flag, flag), reference=_reference(content),
            status=content.get("status", ""), previous=await previous_result(repo, self.records.base_url, caller, stored, history),
            notes=tuple(n.get("text", "") for n in content.get("note", [])), signatures=signatures(content))


def _origin(content: dict[str, Any], lab: str) -> str:
    """Where a result's value came from, as the desk says it."""
    if entered_by_hand(content):
        return "Saisie manuelle"
    if any(t.get("code") == "calculated" for t in (content.get("meta") or {}).get("tag", [])):
        return "Calcul"
    performers = {p.get("reference") for p in content.get("performer", [])
                  if str(p.get("reference", "")).startswith("Organization/")}
    if lab and performers and lab not in performers:
        return "Laboratoire partenaire"
    return "Automate"


async def person_history(repo: Repository, base_url: str, caller: Caller, task: Stored,
                         results: list[Stored]) -> dict[str, list[str]]:
    """For each patient the order's results are about, the Patient records of the same person
    the caller may read (the order's lab file and what it links to, the same qualified INS):
    where the previous results are."""
    lab_file = tracking.lab_file_of(task.content)
    subjects = {str((s.content.get("subject") or {}).get("reference", "")) for s in results}
    return {subject: await same_person(repo, base_url, caller, subject, lab_file) or [subject]
            for subject in sorted(subjects - {""})}


async def previous_result(repo: Repository, base_url: str, caller: Caller, stored: Stored,
                          history: dict[str, list[str]]) -> Previous | None:
    """The patient's last validated result of the same analyte before this one, among all
    the records of the person (`history`: the lab's file, each prescriber's Patient, reports
    from other labs), and the delta check between them (in this result's unit)."""
    content = stored.content
    quantity, codes = content.get("valueQuantity"), loinc_codes(content)
    subject = (content.get("subject") or {}).get("reference")
    if not quantity or not codes or not subject:
        return None
    patients = ",".join(history.get(subject) or [subject])
    query = parse_search("Observation", [("patient", patients), ("code", f"{LOINC}|{codes[0]}"),
                                         ("status", "final,amended,corrected"), ("_sort", "-date")],
                         default_count=10, max_count=10)
    found = await store_search.search(repo.conn, query, base_url,
                                      lambda t: access.visible(caller, t))
    when = _moment(content)
    for earlier in found.matches:
        other = earlier.content
        if earlier.id == stored.id or not other.get("valueQuantity") or _moment(other) >= when:
            continue
        value, unit = Decimal(str(other["valueQuantity"]["value"])), other["valueQuantity"].get("code", "")
        here = quantity.get("code", "")
        try:
            rows = await catalogue.results_by_loinc(repo.conn, codes)
            compared = value if unit == here else units.convert(value, unit, here, codes[0], rows)
        except units.UnitError:
            return Previous(value, unit, other.get("effectiveDateTime", ""), None)
        days = (when - _moment(other)).total_seconds() / 86400
        if quantity.get("comparator") or other["valueQuantity"].get("comparator"):
            return Previous(value, unit, other.get("effectiveDateTime", ""), None)  # "<0,5": no change to measure
        return Previous(value, unit, other.get("effectiveDateTime", ""),
                        delta_check(Decimal(str(quantity["value"])), compared, days, codes[0], unit=here))
    return None


async def _clinical_context(repo: Repository, task: Stored) -> list[dict[str, Any]]:
    """The clinical context the order's prescribed exams carry (their supportingInfo)."""
    requests = await repo.read_references(b["reference"] for b in task.content.get("basedOn", []))
    refs = dict.fromkeys(s["reference"] for r in requests for s in r.content.get("supportingInfo", [])
                         if s.get("reference"))
    return [s.content for s in await repo.read_references(refs)]


async def order_results(repo: Repository, base_url: str, caller: Caller, task: Stored) -> list[Stored]:
    """The results of an order: based on its prescribed exams or on the lab's adaptations, in
    the clinical order: exam by exam as the order lists them (the prescribed ones, then the
    lab's adaptations), within an exam in the catalogue's order (an NFS's leucocytes, hématies,
    hémoglobine...); results the catalogue does not know last, by name."""
    originals = [b["reference"] for b in task.content.get("basedOn", [])]
    adapted = [f"ServiceRequest/{s.id}" for s in await adapted_requests(repo, base_url, task.content)]
    exams = [*originals, *adapted]
    query = parse_search("Observation", [("based-on", ",".join(exams))], default_count=500, max_count=500)
    found = await store_search.search(repo.conn, query, base_url, lambda t: access.visible(caller, t))
    entries = await catalogue.entries_by_loinc(repo.conn, {c for s in found.matches for c in loinc_codes(s.content)})
    rank = {exam: n for n, exam in reversed(list(enumerate(exams)))}  # an exam listed twice: its first place
    known = {code: entry["label_fr"] for code, entry in entries.items()}

    def clinical(stored: Stored) -> tuple[int, int, str, datetime]:
        content = stored.content
        exam = min((rank[b["reference"]] for b in content.get("basedOn", []) if b.get("reference") in rank),
                   default=len(exams))
        position = next((entries[c]["position"] for c in loinc_codes(content) if c in entries), sys.maxsize)
        return exam, position, label(content, known), stored.last_updated

    return sorted(found.matches, key=clinical)


def _decided(content: dict[str, Any], action: str, comment: str, author: str, now: datetime) -> dict[str, Any]:
    status = {"technique": "preliminary", "biologique": "final", "repasser": "cancelled",
              "annuler": "cancelled"}[action]
    decided = signed({**content, "status": status}, STEPS[action], author, now)
    text = {"repasser": f"Rejeté pour nouvelle analyse : {comment.strip()}",
            "annuler": f"Non réalisé : {comment.strip()}"}.get(action, comment.strip())
    if text:
        decided["note"] = [*content.get("note", []), {"authorString": author, "time": instant(now), "text": text}]
    if action == "annuler":
        decided.pop("valueQuantity", None)
        decided["dataAbsentReason"] = NOT_DONE
    return decided


def _corrected(content: dict[str, Any], value: str, reason: str, author: str, now: datetime) -> dict[str, Any]:
    """A validated result with its new value (`corrected`), its flag computed again."""
    quantity = content.get("valueQuantity")
    if not quantity:
        raise Invalid([Issue("Seul un résultat numérique se corrige ici.", "value", expression="resultats")])
    try:
        comparator, number = typed.censored(value)
    except typed.Unmeasurable:
        raise Invalid([Issue("Ce nombre n'est pas un résultat possible (trop grand, ou pas un nombre fini) : "
                             "vérifiez la saisie.", "value", expression="valeur")]) from None
    except typed.NotANumber:
        number = None
    if number is None:
        raise Invalid([Issue("Saisissez la nouvelle valeur (un nombre, par exemple 5,2, ou une limite, <0,5).",
                             "value", expression="valeur")])
    previous = f"{typed.shown(content)}"
    corrected = {key: item for key, item in content.items() if key != "interpretation"}
    corrected["meta"] = {**content.get("meta", {}), "tag": [t for t in content.get("meta", {}).get("tag", [])
                                                          if t.get("code") != "computed"]}
    kept = {key: item for key, item in quantity.items() if key not in ("value", "comparator")}
    corrected.update(status="corrected", valueQuantity={"value": number, **({"comparator": comparator} if comparator
                                                                            else {}), **kept})
    corrected["note"] = [*content.get("note", []), {"authorString": author, "time": instant(now),
                                                     "text": f"Corrigé (était {previous}) : {reason.strip()}"}]
    return signed(corrected, "corrected", author, now)


async def _check_plausible(repo: Repository, content: dict[str, Any]) -> None:
    """A corrected value is one a living patient can have (the catalogue's limits)."""
    quantity = content["valueQuantity"]
    value, unit = Decimal(str(quantity["value"])), str(quantity.get("code") or "")
    found = plausibility.beyond(value, unit, await catalogue.results_by_loinc(repo.conn, loinc_codes(content)))
    if found is not None:
        raise Invalid([Issue(plausibility.in_french(found, quantity.get("comparator"), value, unit), "value",
                             expression="valeur")])


def _unbalanced(results: list[Stored]) -> list[tuple[plausibility.Unbalanced, set[str]]]:
    """The differentials of an order that do not add up (per exam, the latest result of each
    code, rejected ones aside), each with the ids of the results in it."""
    exams: dict[str, dict[str, Stored]] = {}
    for stored in sorted(results, key=lambda s: s.last_updated):
        content = stored.content
        if content.get("status") in ("cancelled", "entered-in-error"):
            continue
        for code in set(loinc_codes(content)) & plausibility.DIFFERENTIAL:
            for based_on in content.get("basedOn", []):
                exams.setdefault(str(based_on.get("reference")), {})[code] = stored
    found = []
    for latest in exams.values():
        values = {code: (Decimal(str(q["value"])), str(q.get("code") or "")) for code, stored in latest.items()
                  if (q := stored.content.get("valueQuantity") or {}).get("value") is not None
                  and not q.get("comparator")}
        for problem in plausibility.differential(values):
            codes = set(problem.codes) | (plausibility.LEUKOCYTES if problem.kind == "count" else set())
            found.append((problem, {latest[code].id for code in codes if code in latest}))
    return found



def _reference(content: dict[str, Any]) -> str:
    for element in content.get("referenceRange", []):
        low, high = (element.get("low") or {}).get("value"), (element.get("high") or {}).get("value")
        if low is not None or high is not None:
            return f"{french.number(low)} – {french.number(high)}"
    return ""


def _moment(content: dict[str, Any]) -> datetime:
    text = content.get("effectiveDateTime") or content.get("issued") or (content.get("meta") or {}).get("lastUpdated")
    return date_range(text)[0] if text else OLDEST
