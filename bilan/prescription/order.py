"""The lab's order as it stands: the exams to collect once the biologist's adaptations apply,
and its tubes (Specimens) kept in step with them.

- The tubes are planned from the exams to collect: those in effect, and those suspended (a
  cancellation waiting for the prescriber's answer: the tube is drawn all the same). One tube per
  kind the catalogue's exams need (`tubes.tube_for`), and one per kind for the exams the lab sends
  to its partner lab (`tubes.tube_for_forwarded`): that tube travels to the partner with the
  transfer slip, and names it (`forwarded-to`).
- When the order is imported, and whenever an adaptation comes into effect (the biologist
  proceeds at once, or the prescriber agrees), the stored tubes follow the plan: a tube of a kind
  still needed gets the requests it now serves (an added exam joins the tube of its kind, drawn
  or not: the lab adds it on to that sample); a kind not yet drawn for gets a new Specimen,
  numbered after the others; a tube left with no exam is cancelled. Not drawn, it becomes
  `unavailable` (FHIR: there is no physical specimen; `entered-in-error` would say the record
  was wrong, and it was right when made); drawn, it stays `available` (the sample exists and is
  kept) and is no longer printed. A cancelled tube keeps its requests: what it was planned for,
  and how the order finds it.
- A print of the labels is recorded on each tube it printed (`label-printed`: when, and the
  exams the label lists). Once the order's labels were printed, a tube whose exams changed, a new
  tube or a printed tube since cancelled means the labels are to be printed again; printing the
  new set records it, which clears that.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bilan.auth import policy
from bilan.fhir.dates import instant
from bilan.fhir.query import parse_search
from bilan.prescription import adaptation, display, tracking
from bilan.prescription.display import Exam
from bilan.prescription.exams import EXTENSION_BASE
from bilan.prescription.tubes import SPECIMEN_TYPES, Tube, tube_for, tube_for_forwarded
from bilan.records.service import new_id
from bilan.storage import catalogue
from bilan.storage import search as store_search
from bilan.storage.compartments import owned_by
from bilan.storage.repository import Repository, Stored, Write

if TYPE_CHECKING:
    from bilan.records.pipeline import Work

FORWARDED_TO = f"{EXTENSION_BASE}/forwarded-to"  # Specimen: the partner lab the tube is sent to
LABEL_PRINTED = f"{EXTENSION_BASE}/label-printed"  # Specimen: its last printed label (at, exams)
OPEN = ("accepted", "in-progress")  # an order whose tubes still follow its exams
CANCELLED = "unavailable"
CANCELLED_NOTE = "Tube annulé : plus aucun examen demandé."
# A tube for the partner lab when bilan's directory holds none: it names no lab, but is still
# the partner's (never merged with the lab's own tube of the same kind).
UNNAMED = {"display": "Laboratoire partenaire non enregistré"}


@dataclass(frozen=True)
class OrderTube:
    """A stored tube of the order, with the exams to collect among those it was drawn for."""

    specimen: Stored
    exams: tuple[Exam, ...]
    partner: str  # "Organization/<id>" of the lab it is sent to; "" when the lab does its exams
    partner_name: str
    printed: str | None  # the exams its last printed label listed; None if never printed

    @property
    def barcode(self) -> str:
        return _barcode(self.specimen.content)

    @property
    def tube(self) -> str:
        return _container(self.specimen.content)

    @property
    def text(self) -> str:
        """The exams as the label and the sheet list them."""
        return ", ".join(e.label for e in self.exams)

    @property
    def collected(self) -> str | None:
        return (self.specimen.content.get("collection") or {}).get("collectedDateTime")

    @property
    def live(self) -> bool:
        """To draw (or drawn) for exams still asked: printed, listed on the sheet."""
        return bool(self.exams) and self.specimen.content.get("status") != CANCELLED

    @property
    def change(self) -> str | None:
        """What changed since its label was printed, in the desk's words; None if nothing."""
        if self.live:
            if self.printed is None:
                return "nouveau tube"
            return "examens modifiés" if self.printed != self.text else None
        return "tube annulé : jeter son étiquette" if self.printed is not None else None


@dataclass(frozen=True)
class OrderState:
    exams: tuple[Exam, ...]  # to collect: in effect or suspended, prescribed first
    tubes: tuple[OrderTube, ...]  # every tube stored for the order, by barcode

    @property
    def printable(self) -> list[OrderTube]:
        return [t for t in self.tubes if t.live]

    @property
    def forwarded(self) -> list[Exam]:
        """Exams the lab does not perform: sent to its partner."""
        return [e for e in self.exams if not e.in_catalogue]

    @property
    def sent(self) -> list[tuple[Exam, str]]:
        """Each exam sent to a partner lab, with that lab ("Organization/<id>"; "" if none is named)."""
        partner = {e.reference: t.partner for t in self.printable for e in t.exams}
        return [(e, partner.get(e.reference, "")) for e in self.forwarded]

    @property
    def reprint(self) -> list[tuple[str, str]]:
        """(barcode, what changed) of each tube whose label is out of date, once the order's
        labels were printed; [] when none is (or nothing was printed yet)."""
        if not any(t.printed is not None for t in self.tubes):
            return []
        return [(t.barcode, t.change) for t in self.tubes if t.change]


async def adapted_requests(repo: Repository, base_url: str, task: dict[str, Any]) -> list[Stored]:
    """The lab's requests adapting a prescription (its Task's), oldest first."""
    originals = ",".join(b["reference"] for b in task.get("basedOn", []))
    if not originals:
        return []
    query = parse_search("ServiceRequest", [("based-on", originals)], default_count=500, max_count=500)
    found = await store_search.search(repo.conn, query, base_url)
    return sorted((s for s in found.matches if s.content and adaptation.is_adaptation(s.content)),
                  key=lambda s: s.last_updated)


async def order_specimens(repo: Repository, base_url: str, lab_finess: str, task: dict[str, Any],
                          adapted: list[Stored] | None = None) -> list[Stored]:
    """The order's tubes, as the lab stored them (for its prescribed and its adapted exams)."""
    if adapted is None:
        adapted = await adapted_requests(repo, base_url, task)
    requests = [*(b["reference"] for b in task.get("basedOn", [])), *(f"ServiceRequest/{s.id}" for s in adapted)]
    if not requests:
        return []
    query = parse_search("Specimen", [("request", ",".join(requests))], default_count=100, max_count=100)
    mine = owned_by("Specimen", policy.lab_key(lab_finess))
    result = await store_search.search(repo.conn, query, base_url, lambda _t: mine)
    return sorted(result.matches, key=lambda s: _barcode(s.content))


async def state(repo: Repository, base_url: str, lab_finess: str, task: dict[str, Any]) -> OrderState:
    """The order's exams to collect and its tubes, as they stand."""
    adapted = await adapted_requests(repo, base_url, task)
    exams = [exam for _request, exam in await _to_collect(repo, task, adapted)]
    specimens = await order_specimens(repo, base_url, lab_finess, task, adapted)
    return OrderState(tuple(exams), tuple(_tube(s, exams) for s in specimens))


async def keep_in_step(work: "Work", task: dict[str, Any], lab_finess: str,
                       partner: dict[str, str] | None = None, system: bool = True) -> None:
    """Store the order's tubes as its exams to collect now need them (see the module's
    docstring). `partner` ({reference, display}) is the lab its own partner tubes go to, by
    default the one its existing partner tubes name. `system` when the rule, not the caller,
    authorises the writes (an answer, an adaptation): they stay the lab's."""
    if task.get("status") not in OPEN:
        return
    repo, base_url = work.repo, work.records.base_url
    # Two answers at once would each number a new tube alike: one at a time per order.
    await repo.lock_many([f"order-tubes:{task.get('id', '')}"])
    adapted = await adapted_requests(repo, base_url, task)
    collect = await _to_collect(repo, task, adapted)
    stored = await order_specimens(repo, base_url, lab_finess, task, adapted)
    partner = partner or next((p for s in stored if (p := _partner(s.content)) and p.get("reference")), None)
    plans = _plan(collect, partner)
    kept: set[str] = set()
    updates, creates = [], []
    numbers = [_number(s.content) for s in stored]
    for (label, destination), (tube, exams) in plans.items():
        same = [s for s in stored if s.id not in kept and _container(s.content) == label
                and _destination(s.content) == destination]
        found = next((s for s in same if s.content.get("status") != CANCELLED), same[0] if same else None)
        requests = [{"reference": e.reference} for e in exams]
        if found is None:
            number = max(numbers, default=0) + 1
            numbers.append(number)
            creates.append(Write("Specimen", new_id(), _specimen(
                tube, exams, f"{tracking.accession_of(task)}-{number:02d}", lab_finess,
                tracking.lab_file_of(task), (partner or UNNAMED) if destination else None), "POST"))
            continue
        kept.add(found.id)
        content = found.content
        if content.get("request") != requests or content.get("status") == CANCELLED:
            updated = {**content, "request": requests, "note": [{"text": ", ".join(e.label for e in exams)}]}
            if content.get("status") == CANCELLED:
                updated.pop("status")
            updates.append(Write("Specimen", found.id, updated, "PUT", found.version_id))
    for specimen in stored:
        content = specimen.content
        if specimen.id in kept or content.get("status") == CANCELLED or content.get("collection"):
            continue  # a drawn tube with no exam left stays what it is: a sample the lab keeps
        updates.append(Write("Specimen", specimen.id, {**content, "status": CANCELLED,
                                                       "note": [{"text": CANCELLED_NOTE}]},
                             "PUT", specimen.version_id))
    # The tubes are the lab's, whoever's step put the change in effect; their requests change
    # only through this rule (policy.FIXED keeps them from any caller's update).
    await work.write(creates, system=system, owner=policy.lab_key(lab_finess))
    await work.write(updates, system=True)


def printed(order: OrderState, now: datetime) -> list[Write]:
    """The writes recording that the order's labels were printed now, as they stand."""
    writes = []
    for tube in order.tubes:
        content = {**tube.specimen.content,
                   "extension": [e for e in tube.specimen.content.get("extension", [])
                                 if e.get("url") != LABEL_PRINTED]}
        if tube.live and tube.printed != tube.text:
            content["extension"].append({"url": LABEL_PRINTED, "extension": [
                {"url": "at", "valueDateTime": instant(now)}, {"url": "exams", "valueString": tube.text}]})
        elif tube.live or tube.printed is None:
            continue
        if not content["extension"]:
            content.pop("extension")
        writes.append(Write("Specimen", tube.specimen.id, content, "PUT", tube.specimen.version_id))
    return writes


async def _to_collect(repo: Repository, task: dict[str, Any],
                      adapted: list[Stored]) -> list[tuple[dict[str, Any], Exam]]:
    """Each exam to collect (in effect or suspended) with its request, prescribed first."""
    prescribed = await repo.read_references(b["reference"] for b in task.get("basedOn", []))
    requests = adaptation.in_effect([{**s.content, "id": s.id} for s in prescribed if s.content],
                                    [{**s.content, "id": s.id} for s in adapted], suspended=True)
    entries = await catalogue.orderable(repo.conn, (c for r in requests for c in _codes(r)))
    return [(r, display.exam(r, next((entries[c] for c in _codes(r) if c in entries), None)))
            for r in requests]


def _plan(collect: Iterable[tuple[dict[str, Any], Exam]],
          partner: dict[str, str] | None) -> dict[tuple[str, str], tuple[Tube, list[Exam]]]:
    """The tubes the exams need, by (tube, where its exams are done: see `_destination`)."""
    plans: dict[tuple[str, str], tuple[Tube, list[Exam]]] = {}
    for request, exam in collect:
        if exam.in_catalogue:
            tube, sent_to = tube_for({"local_code": exam.local_code, "specimen": exam.specimen,
                                      "chapter_loinc": exam.chapter}), ""
        else:
            concept = request.get("code") or {}
            names = [concept.get("text") or "", *(c.get("display") or "" for c in concept.get("coding", []))]
            tube, sent_to = tube_for_forwarded(names), (partner or {}).get("reference") or "?"
        plans.setdefault((tube.label, sent_to), (tube, []))[1].append(exam)
    return plans


def _specimen(tube: Tube, exams: list[Exam], barcode: str, lab_finess: str, lab_file: str,
              partner: dict[str, str] | None) -> dict[str, Any]:
    specimen: dict[str, Any] = {
        "resourceType": "Specimen",
        "accessionIdentifier": {"system": f"{tracking.ACCESSION}/{lab_finess}", "value": barcode},
        "type": {"coding": [{"system": SPECIMEN_TYPES, "code": tube.specimen_code,
                             "display": tube.specimen_label}], "text": tube.specimen_label},
        "subject": {"reference": lab_file},
        "request": [{"reference": e.reference} for e in exams],
        "container": [{"type": {"text": tube.label},
                       **({"additiveCodeableConcept": {"text": tube.additive}} if tube.additive else {})}],
        "note": [{"text": ", ".join(e.label for e in exams)}],  # for people; read from request
    }
    if partner:
        specimen["extension"] = [{"url": FORWARDED_TO, "valueReference": dict(partner)}]
    return specimen


def _tube(specimen: Stored, exams: list[Exam]) -> OrderTube:
    """A stored tube: its exams are those to collect among the requests it was drawn for."""
    by_reference = {e.reference: e for e in exams}
    drawn_for = [r.get("reference", "") for r in specimen.content.get("request", [])]
    partner = _partner(specimen.content) or {}
    return OrderTube(specimen, tuple(by_reference[r] for r in drawn_for if r in by_reference),
                     partner.get("reference", ""), partner.get("display", ""), _printed(specimen.content))


def _printed(specimen: dict[str, Any]) -> str | None:
    for extension in specimen.get("extension", []):
        if extension.get("url") == LABEL_PRINTED:
            return next((p.get("valueString", "") for p in extension.get("extension", [])
                         if p.get("url") == "exams"), "")
    return None


def _destination(specimen: dict[str, Any]) -> str:
    """Where a tube's exams are done: "" at the lab; the partner lab's reference, or "?" for a
    partner tube naming no lab."""
    partner = _partner(specimen)
    if partner is None:
        return ""
    return partner.get("reference") or "?"


def _partner(specimen: dict[str, Any]) -> dict[str, str] | None:
    return next((dict(e["valueReference"]) for e in specimen.get("extension", [])
                 if e.get("url") == FORWARDED_TO and e.get("valueReference")), None)


def _codes(request: dict[str, Any]) -> list[str]:
    return [c["code"] for c in (request.get("code") or {}).get("coding", []) if c.get("code")]


def _container(specimen: dict[str, Any]) -> str:
    return str(((specimen.get("container") or [{}])[0].get("type") or {}).get("text", ""))


def _barcode(specimen: dict[str, Any]) -> str:
    return str((specimen.get("accessionIdentifier") or {}).get("value", ""))


def _number(specimen: dict[str, Any]) -> int:
    """The tube's number within the order (the barcode's last part: 261124-0007-02 is 2)."""
    suffix = _barcode(specimen).rpartition("-")[2]
    return int(suffix) if suffix.isdigit() else 0
