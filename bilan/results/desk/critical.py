"""Critical results and the call to the prescriber.

A value beyond the catalogue's critical limits (`critical_low`, `critical_high`: the usual
French lab lists, bilan/data/catalogue/README.md) is flagged LL or HH by the results guard
(intake.py), whatever the instrument said; an instrument's own LL or HH counts too. Before the
order's results are validated biologically, or its report issued, the biologist calls the
prescriber and records the call (ISO 15189 asks who was reached, when, by whom, and what was
said):

- the call is a Communication in the order's thread, kind `critical-call`, `about` the Task
  and the result: `recipient` the person reached (by name), `sent` when, `medium` how (HL7 v3
  ParticipationMode), `payload` what was said, a `note` by the biologist who called;
- the prescriber also gets an urgent Communication (kind `critical-value`, priority `stat`),
  mailed to them like every message of the thread ("URGENT" in the subject).

Both are written through the one write path, so the audit trail has them. A call covers the
result as it was when called: a value entered again or corrected afterwards needs a new call.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Mapping, Sequence

from bilan import french
from bilan.fhir.dates import OLDEST, date_range, instant
from bilan.fhir.outcomes import Invalid, Issue
from bilan.fhir.query import parse_search
from bilan.prescription import MESSAGE_KINDS, MESSAGE_KINDS_SYSTEM, kind_of
from bilan.results.desk import interpretation, typed, units
from bilan.results.desk import names as result_names
from bilan.results.desk.signatures import signatures
from bilan.storage import search as store_search
from bilan.storage.repository import Repository, Stored

CRITICAL = frozenset({interpretation.CRITICAL_LOW, interpretation.CRITICAL_HIGH})
CALL, ALERT = "critical-call", "critical-value"
SET_ASIDE = ("cancelled", "entered-in-error")
CHANGED = ("entered", "corrected")  # the signed steps that give a result a new value
PARTICIPATION_MODE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode"
# How the prescriber was reached, as the form names it: (ParticipationMode code, display, French).
MEDIA: dict[str, tuple[str | None, str, str]] = {
    "telephone": ("PHONE", "telephone", "téléphone"),
    "messagerie": ("EMAILWRIT", "email", "messagerie sécurisée"),
    "personne": ("FACE", "face-to-face", "en personne"),
    "autre": (None, "", "autre moyen"),
}
FUTURE_SLACK = timedelta(minutes=5)  # a clock a little ahead is not a call in the future


@dataclass(frozen=True)
class Call:
    """A recorded call about one result."""

    id: str
    result: str  # the Observation's id
    who: str
    when: str  # FHIR instant
    how: str  # in French
    said: str
    by: str  # who called (signer)
    recorded: datetime


def flag(content: Mapping[str, Any]) -> str:
    return next((str(c.get("code", "")) for i in content.get("interpretation", [])
                 for c in i.get("coding", [])), "")


def is_critical(content: Mapping[str, Any]) -> bool:
    return flag(content) in CRITICAL and content.get("status") not in SET_ASIDE


def critical_flag(value: Decimal, comparator: str | None, unit: str,
                  entries: Sequence[Mapping[str, Any]]) -> str | None:
    """LL or HH when the value (in `unit`, censored or not) is beyond the critical limits of
    the analyte's catalogue entry, compared in the entry's unit; None otherwise."""
    for entry in entries:
        low, high = (Decimal(entry[c]) if entry.get(c) else None for c in ("critical_low", "critical_high"))
        if (low is None and high is None) or not entry.get("ucum"):
            continue
        try:
            converted = value if unit == entry["ucum"] else units.convert(
                value, unit, entry["ucum"], entry["loinc"], [dict(e) for e in entries], exact=True)
        except units.UnitError:
            continue
        found = interpretation.flag_censored(comparator, converted, None, None, low, high)
        if found in CRITICAL:
            return found
    return None


def calls_in(thread: Sequence[Stored]) -> dict[str, list[Call]]:
    """The calls recorded in an order's thread, by the id of the result each is about."""
    found: dict[str, list[Call]] = {}
    for message in thread:
        content = message.content
        if not content or kind_of(content) != CALL:
            continue
        texts = [p.get("contentString", "") for p in content.get("payload", [])]
        medium = next((m.get("text", "") for m in content.get("medium", [])), "")
        for about in content.get("about", []):
            reference = str(about.get("reference", ""))
            if reference.startswith("Observation/"):
                found.setdefault(reference.removeprefix("Observation/"), []).append(Call(
                    message.id, reference.removeprefix("Observation/"),
                    next((r.get("display", "") for r in content.get("recipient", [])), ""),
                    content.get("sent", ""), medium, texts[-1] if texts else "",
                    next((n.get("authorString", "") for n in content.get("note", [])), ""), message.last_updated))
    return found


async def order_calls(repo: Repository, base_url: str, task: Stored) -> dict[str, list[Call]]:
    query = parse_search("Communication", [("part-of", f"Task/{task.id}")], default_count=500, max_count=500)
    return calls_in((await store_search.search(repo.conn, query, base_url)).matches)


def called(result: Stored, calls: Mapping[str, Sequence[Call]]) -> bool:
    """A call was recorded since the result got its value."""
    changed = max((date_range(s.at)[0] for s in signatures(result.content) if s.step in CHANGED and s.at),
                  default=OLDEST)
    return any(call.recorded >= changed for call in calls.get(result.id, []))


def uncalled(results: Sequence[Stored], calls: Mapping[str, Sequence[Call]]) -> list[Stored]:
    return [r for r in results if is_critical(r.content) and not called(r, calls)]


async def names(repo: Repository, results: Sequence[Stored]) -> dict[str, str]:
    """The catalogue's French label of each result's LOINC code."""
    return await result_names.labels(repo.conn, [r.content for r in results])


def described(content: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> str:
    """"Potassium 6,8 mmol/L (HH)": the result as the messages name it (by the catalogue's
    label, `labels` by LOINC code, else its own text or display)."""
    label = result_names.label(content, labels or {}, default="")
    quantity = content.get("valueQuantity") or {}
    value = typed.comparator_text(quantity.get("comparator")) + french.quantity(quantity.get("value"),
                                                                                quantity.get("code"))
    return f"{label} {value} ({flag(content)})" if quantity else f"{label} ({flag(content)})"


def refusal(results: Sequence[Stored], step: str, labels: Mapping[str, str]) -> Issue:
    """The French refusal of `step` while these critical results are not called."""
    which = " ; ".join(described(r.content, labels) for r in results)
    plural = "s" if len(results) > 1 else ""
    return Issue(f"Valeur{plural} critique{plural} non appelée{plural} : {which}. Tracez l'appel au "
                 f"prescripteur (qui, quand, comment, ce qui a été dit) avant {step}.", "business-rule",
                 expression="resultats")


def checked_call(result_id: str, who: str, when: str, how: str, said: str, now: datetime) -> tuple[str, datetime]:
    """What the form gives, checked (French messages next to each field): the person reached
    and when (Paris time, not in the future)."""
    issues = []
    if not who.strip():
        issues.append(Issue("Indiquez qui a été joint.", "required", expression=f"qui-{result_id}"))
    if how not in MEDIA:
        issues.append(Issue("Choisissez comment le prescripteur a été joint.", "required",
                            expression=f"moyen-{result_id}"))
    if not said.strip():
        issues.append(Issue("Indiquez ce qui a été dit (la valeur transmise, la conduite convenue).",
                            "required", expression=f"propos-{result_id}"))
    moment = _paris_time(when)
    if moment is None or moment > now + FUTURE_SLACK:
        issues.append(Issue("Indiquez l'heure de l'appel (JJ/MM/AAAA HH:MM, pas dans le futur).", "value",
                            expression=f"quand-{result_id}"))
    if issues or moment is None:
        raise Invalid(issues)
    return who.strip(), moment


def messages(task: Mapping[str, Any], result: Stored, who: str, when: datetime, how: str, said: str,
             signer: str, now: datetime, labels: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The call as traced in the thread, and the urgent message to the prescriber."""
    code, display, french_how = MEDIA[how]
    medium: dict[str, Any] = {"text": french_how.capitalize()}
    if code:
        medium["coding"] = [{"system": PARTICIPATION_MODE, "code": code, "display": display}]
    what = described(result.content, labels)
    number = (task.get("groupIdentifier") or {}).get("value", "")
    about = [{"reference": f"Task/{task['id']}"}, {"reference": f"Observation/{result.id}"}]
    call = {
        "resourceType": "Communication", "status": "completed", "category": [_kind(CALL)],
        "partOf": [{"reference": f"Task/{task['id']}"}], "about": about,
        "recipient": [{"display": who}], "sent": instant(when), "medium": [medium],
        "note": [{"authorString": signer, "time": instant(now), "text": f"Appel passé par {signer}"}],
        "payload": [{"contentString": f"Valeur critique : {what}. {who} joint ({french_how}) le "
                                      f"{french.datetime(when, at=True)}."},
                    {"contentString": said.strip()}],
    }
    sampled = french.date(result.content.get("effectiveDateTime"))
    alert = {
        "resourceType": "Communication", "status": "completed", "priority": "stat",
        "category": [_kind(ALERT)], "partOf": [{"reference": f"Task/{task['id']}"}], "about": about,
        "payload": [{"contentString": f"URGENT — valeur critique (prescription n° {number}) : {what}"
                                      f"{f', prélevé le {sampled}' if sampled else ''}. Appel du laboratoire à "
                                      f"{who} ({french_how}) le {french.datetime(when, at=True)} : {said.strip()}"}],
    }
    return call, alert


def _kind(code: str) -> dict[str, Any]:
    return {"coding": [{"system": MESSAGE_KINDS_SYSTEM, "code": code, "display": MESSAGE_KINDS[code]}]}


def _paris_time(text: str) -> datetime | None:
    """An instant from the form's time on Paris clocks ("2026-12-14T10:05" or "14/12/2026 10:05")."""
    for pattern in ("%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%d/%m/%Y %H:%M", "%d/%m/%Y à %H:%M"):
        try:
            return datetime.strptime(text.strip(), pattern).replace(tzinfo=french.PARIS)
        except ValueError:
            continue
    return None
