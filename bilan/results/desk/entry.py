"""Results typed by hand in the lab's pages, exam by exam.

Each exam of the order in effect (the prescribed ones the biologist did not cancel, suspend or
replace, and the lab's own additions and replacements) gives the lines to type: one per
analyte of a panel, one for a single test, each starting from the catalogue's unit and
reference range. What is typed is stored the way an analyser's results are (`registered`, for
the results desk to validate) and goes through the same records guards (UCUM unit, dimension,
computed flag): every line in one audited transaction, or none. A result already validated is
shown, not typed over; an open one is shown with its value, and changing it makes a new version.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from bilan import french
from bilan.auth.audit import patients_of
from bilan.auth.caller import Caller
from bilan.fhir.dates import instant, utc_now
from bilan.fhir.outcomes import Conflict, FhirError, Invalid, Issue
from bilan.fhir.terminology import LOINC, UCUM
from bilan.prescription import (
    adaptation,
    adapted_requests,
    display,
    identity,
    loinc_codes,
    order_specimens,
    tracking,
    tube_for,
    worklist_row,
)
from bilan.records.pipeline import Work
from bilan.records.service import Records, new_id
from bilan.results.desk import plausibility, ranges, typed, units
from bilan.results.desk.signatures import signed
from bilan.results.desk.validation import OPEN, STATUS_LABELS, order_results
from bilan.storage import catalogue
from bilan.storage.catalogue import Band, Entry
from bilan.storage.repository import Repository, StaleVersion, Stored, Write

OPEN_ORDER = ("accepted", "in-progress")  # imported, results may come in
SET_ASIDE = ("cancelled", "entered-in-error")  # rejected or wrong: the line is typed again
LABORATORY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                          "code": "laboratory", "display": "Laboratory"}]}
FIELDS = ("valeur", "unite", "bas", "haut")  # a line's form fields: "<field>-<line key>"
UNCOLLECTED = "motif_sans_prelevement"  # the form's field: why results are typed before collection


@dataclass(frozen=True)
class Line:
    """One analyte to type, as the form starts it (French decimals: "3,9")."""

    key: str  # ServiceRequest id and LOINC: names the line's fields
    request: str
    loinc: str
    loinc_display: str
    label: str
    ucum: str  # the catalogue's unit
    unit: str
    low: str
    high: str
    value: str = ""
    status: str = ""  # of the line's result; "" before any
    result: Stored | None = None
    specimen: str = ""
    collected: str = ""
    applicable: ranges.Applicable | None = None  # the patient's range the form started from

    @property
    def locked(self) -> bool:
        """Validated, or past validation: shown, not typed."""
        return self.status not in ("", *OPEN)

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status) if self.status else "À saisir"

    def field(self, name: str) -> str:
        return f"{name}-{self.key}"


@dataclass(frozen=True)
class ExamEntry:
    label: str
    lines: tuple[Line, ...]
    note: str = ""  # why there is nothing to type


@dataclass(frozen=True)
class EntryForm:
    task_id: str
    requisition: str
    accession: str
    patient: identity.Traits
    exams: list[ExamEntry]

    @property
    def lines(self) -> list[Line]:
        return [line for exam in self.exams for line in exam.lines]

    @property
    def uncollected(self) -> bool:
        """Whether a line to type has no tube recorded as collected."""
        return any(not line.locked and not line.collected for line in self.lines)


@dataclass(frozen=True)
class Typed:
    """What was typed on one line, as typed."""

    value: str
    unit: str = ""
    low: str = ""
    high: str = ""


@dataclass(frozen=True)
class _Measured:
    value: Decimal
    unit: str
    low: Decimal | None
    high: Decimal | None
    comparator: str | None = None  # "<", "<=", ">=", ">": a censored value ("<0,5")


@dataclass(frozen=True)
class _Order:
    subject: str  # the lab's patient file
    performer: str  # the lab
    patients: set[str]
    form: EntryForm


class ResultEntry:
    def __init__(self, records: Records):
        self.records = records

    async def form(self, caller: Caller, task_id: str) -> EntryForm:
        async with self.records.work(caller) as work:
            order = await self._order(work, task_id, "read")
            work.note("read", patients=order.patients, touched=[
                f"Task/{task_id}", *(f"Observation/{line.result.id}" for line in order.form.lines if line.result)])
        return order.form

    async def save(self, caller: Caller, task_id: str, values: Mapping[str, Typed],
                   uncollected_reason: str = "") -> list[str]:
        """Store the lines typed (new, or changed from their open result); the ids stored.
        Any refused line refuses them all, each issue naming its field. A result whose tube is not
        recorded as collected needs the reason it is typed anyway, kept in its note."""
        async with self.records.work(caller) as work:
            await work.repo.lock_many([f"result-entry:{task_id}"])  # two agents typing one order
            order = await self._order(work, task_id, "create")
            now, writes, issues = work.now, [], []
            rows = await catalogue.results_by_loinc(work.repo.conn, {line.loinc for line in order.form.lines})
            written: dict[str, _Measured] = {}
            for line in order.form.lines:
                entered = values.get(line.key)
                if line.locked or entered is None or not entered.value.strip() or _unchanged(line, entered):
                    continue
                if not line.collected and not uncollected_reason.strip():
                    issues.append(Issue("Prélèvement non enregistré : enregistrez-le sur la page de la prescription, "
                                        "ou indiquez ci-dessous pourquoi vous saisissez sans lui.", "business-rule",
                                        expression=line.field("valeur")))
                    continue
                try:
                    measured = _measured(line, entered, [r for r in rows if r["loinc"] == line.loinc])
                    observation = _observation(order, line, measured, caller.signer, now)
                    if not line.collected:
                        observation["note"] = [{"authorString": caller.signer, "time": instant(now),
                                                "text": f"Saisi sans prélèvement enregistré : {uncollected_reason.strip()}"}]
                    observation = await _prepared(work, line, observation)
                except FhirError as error:
                    issues.extend(error.issues)
                    continue
                written[line.key] = measured
                writes.append(_write(line, observation))
            issues.extend(_unbalanced(order.form.lines, written))
            if issues:
                raise Invalid(issues)
            if not writes:
                raise Invalid([Issue("Aucun résultat nouveau ou modifié : rien n'a été enregistré.",
                                            "required")])
            try:
                stored = await work.write(writes)
            except StaleVersion:
                raise Conflict([Issue("Un résultat vient d'être modifié par ailleurs : rechargez la page.",
                                            "conflict")]) from None
        return [s.id for s in stored]

    async def _order(self, work: Work, task_id: str, interaction: str) -> _Order:
        """The order, once the caller may type its results: staff of the lab that imported it,
        in a role that writes results, while it is open."""
        repo, caller = work.repo, work.caller
        assert caller is not None
        row = await worklist_row(work, task_id, interaction, "enter-results")
        task = await self.records.read_for(repo, caller, interaction, "Task", task_id)
        if task is None or task.deleted:
            raise tracking.unknown_prescription()
        content = task.content
        imported = row.status == "imported" and row.order_lab == caller.lab_finess
        if not imported or content.get("status") not in OPEN_ORDER:
            raise Conflict([Issue("Les résultats se saisissent une fois la prescription importée, "
                                        "tant que la demande est en cours.", "business-rule")])
        lab_file = tracking.lab_file_of(content)
        patient = await repo.read_reference(lab_file) if lab_file else None
        form = EntryForm(
            task_id=task.id, requisition=(content.get("groupIdentifier") or {}).get("value", ""),
            accession=tracking.accession_of(content),
            patient=identity.traits(patient.content if patient and patient.content else {}),
            exams=await self._exams(repo, caller, task, patient.content if patient and patient.content else {}))
        return _Order(lab_file or (content.get("for") or {}).get("reference", ""),
                      (content.get("owner") or {}).get("reference", ""),
                      patients_of(content) | ({lab_file} if lab_file else set()), form)

    async def _exams(self, repo: Repository, caller: Caller, task: Stored,
                     patient: dict[str, Any]) -> list[ExamEntry]:
        requests = await self._in_effect(repo, task.content)
        entries = await catalogue.orderable(repo.conn, (c for r in requests for c in loinc_codes(r)))
        panels = await catalogue.panel_results(repo.conn, [e["local_code"] for e in entries.values()
                                                  if e["kind"] == "panel"])
        results = _latest(await order_results(repo, self.records.base_url, caller, task))
        specimens = await order_specimens(repo, self.records.base_url, caller, task.content)
        bands = await catalogue.ranges(repo.conn, [r["local_code"] for p in panels.values() for r in p]
                                       + [e["local_code"] for e in entries.values()])
        exams = []
        for request in requests:
            entry = next((entries[c] for c in loinc_codes(request) if c in entries), None)
            exam = display.exam(request, entry)
            if entry is None or not exam.in_catalogue:
                exams.append(ExamEntry(exam.label, (), "À transmettre"))
                continue
            rows = [r for r in (panels.get(entry["local_code"], []) if entry["kind"] == "panel" else [entry])
                    if r.get("ucum")]
            specimen = _specimen_for(specimens, exam.reference, entry)
            lines = tuple(_line(exam.reference, row, results.get((exam.reference, row["loinc"])), specimen,
                                patient, bands.get(row["local_code"], [])) for row in rows)
            exams.append(ExamEntry(exam.label, lines,
                                   "" if lines else "Résultat qualitatif : pas de saisie chiffrée."))
        return exams

    async def _in_effect(self, repo: Repository, task: dict[str, Any]) -> list[dict[str, Any]]:
        """The prescribed exams still to do, then the lab's additions and replacements in effect
        (a suspended exam is not typed: its cancellation waits for the prescriber)."""
        adapted = [s.content for s in await adapted_requests(repo, self.records.base_url, task) if s.content]
        originals = await repo.read_references([b["reference"] for b in task.get("basedOn", [])])
        return adaptation.in_effect([s.content for s in originals if s.content], adapted)


async def _prepared(work: Work, line: Line, observation: dict[str, Any]) -> dict[str, Any]:
    """The result as the pipeline's checks and guards complete it (flag, range), or their
    refusal in French, on the line's field."""
    problems = work.problems(observation)
    if problems:
        raise Invalid([Issue(f"Résultat refusé : {'; '.join(p.diagnostics for p in problems)}",
                                    "invalid", expression=line.field("valeur"))])
    try:
        return await work.guarded(work.records.validator.amend(observation))
    except FhirError as error:
        unit = observation["valueQuantity"]["code"]
        raise Invalid([_in_french(issue, line, unit) for issue in error.issues]) from None


def _latest(results: list[Stored]) -> dict[tuple[str, str], Stored]:
    """The latest result of each (request, LOINC), leaving aside rejected ones."""
    latest: dict[tuple[str, str], Stored] = {}
    for stored in sorted(results, key=lambda s: s.last_updated):
        content = stored.content
        if content.get("status") in SET_ASIDE:
            continue
        for based_on in content.get("basedOn", []):
            for code in loinc_codes(content):
                latest[(based_on.get("reference", ""), code)] = stored
    return latest


def _specimen_for(specimens: list[Stored], request: str, entry: Entry) -> Stored | None:
    """The tube drawn for the exam; for one the lab added, a tube of the kind it needs."""
    def requests(specimen: Stored) -> set[str]:
        return {r.get("reference", "") for r in specimen.content.get("request", [])}

    def tube(specimen: Stored) -> str:
        return str(((specimen.content.get("container") or [{}])[0].get("type") or {}).get("text", ""))

    return (next((s for s in specimens if request in requests(s)), None)
            or next((s for s in specimens if tube(s) == tube_for(entry).label), None))


def _line(request: str, row: Entry, result: Stored | None, specimen: Stored | None,
          patient: dict[str, Any], bands: list[Band]) -> Line:
    """A line as the form starts it: the open or validated result if any, else the catalogue's
    range for the patient (sex, age on the day of collection)."""
    content = result.content if result else {}
    quantity = content.get("valueQuantity") or {}
    unit = str(quantity.get("code") or row["ucum"] or "")
    collection = (specimen.content if specimen else {}).get("collection") or {}
    applicable = ranges.patient_range(row, bands, patient, ranges.sample_day(
        {"effectiveDateTime": collection.get("collectedDateTime") or instant(utc_now())}))
    low, high = _range_of(content)
    if low is None and high is None and unit == row["ucum"]:
        low, high = applicable.low, applicable.high
    return Line(
        key=f"{request.removeprefix('ServiceRequest/')}-{row['loinc']}", request=request, loinc=row["loinc"],
        loinc_display=row["loinc_display"], label=row["label_fr"], ucum=row["ucum"] or "", unit=unit,
        low=french.number(low), high=french.number(high), status=content.get("status", ""),
        value=typed.comparator_text(quantity.get("comparator")) + french.number(quantity.get("value")),
        result=result, specimen=f"Specimen/{specimen.id}" if specimen else "",
        collected=collection.get("collectedDateTime", ""), applicable=applicable)


def _range_of(content: dict[str, Any]) -> tuple[Any, Any]:
    for element in content.get("referenceRange", []):
        low, high = (element.get("low") or {}).get("value"), (element.get("high") or {}).get("value")
        if low is not None or high is not None:
            return low, high
    return None, None


def _unchanged(line: Line, entered: Typed) -> bool:
    """Whether an open result's line comes back as the form showed it."""
    if line.result is None:
        return False
    try:
        return (_as_read(entered.value, entered.low, entered.high), entered.unit.strip()) == \
            (_as_read(line.value, line.low, line.high), line.unit)
    except ValueError:
        return False


def _as_read(value: str, low: str, high: str) -> tuple[str | None, ...]:
    """A line's numbers with their digits: "1,950" for an open 1,95 is a new value."""
    comparator, number = typed.censored(value)
    return comparator, *(None if n is None else str(n) for n in (number, typed.number(low), typed.number(high)))


def _measured(line: Line, entered: Typed, rows: list[Entry]) -> _Measured:
    """What was typed on a line, read and checked: numbers, a unit, a value a living patient
    can have (the catalogue's plausible limits for the analyte, `rows`)."""
    issues: list[Issue] = []

    def read(field: str, text: str, not_a_number: str) -> tuple[str | None, Decimal | None]:
        try:
            return typed.censored(text) if field == "valeur" else (None, typed.number(text))
        except typed.Unmeasurable:
            message = "Ce nombre n'est pas un résultat possible (trop grand, ou pas un nombre fini) : vérifiez la saisie."
        except typed.NotANumber:
            message = not_a_number
        issues.append(Issue(message, "value", expression=line.field(field)))
        return None, None

    comparator, value = read("valeur", entered.value,
                             "Saisissez un nombre (par exemple 5,2), ou une limite (par exemple <0,5 ou >1000).")
    low = read("bas", entered.low, "Saisissez un nombre, ou laissez vide.")[1]
    high = read("haut", entered.high, "Saisissez un nombre, ou laissez vide.")[1]
    unit = entered.unit.strip()
    if not unit:
        issues.append(Issue("Indiquez l'unité (UCUM, par exemple mmol/L).", "required",
                            expression=line.field("unite")))
    elif value is not None:
        found = plausibility.beyond(value, unit, rows)
        if found is not None:
            issues.append(Issue(plausibility.in_french(found, comparator, value, unit), "value",
                                expression=line.field("valeur")))
    if low is not None and high is not None and low > high:
        issues.append(Issue("La valeur de référence basse dépasse la haute.", "value",
                            expression=line.field("bas")))
    if issues or value is None:
        raise Invalid(issues)
    return _Measured(value, unit, low, high, comparator)


def _unbalanced(lines: list[Line], written: Mapping[str, _Measured]) -> list[Issue]:
    """A differential typed now adds up with the rest of its exam (the lines not typed again
    keep their stored value); each line typed now that is part of a wrong sum says so."""
    issues: list[Issue] = []
    exams: dict[str, list[Line]] = {}
    for line in lines:
        exams.setdefault(line.request, []).append(line)
    for exam in exams.values():
        typed_now = [line for line in exam if line.key in written and line.loinc in plausibility.DIFFERENTIAL]
        if not typed_now:
            continue
        results: dict[str, tuple[Decimal, str]] = {}
        for line in exam:
            stored = ((line.result.content or {}) if line.result else {}).get("valueQuantity") or {}
            if line.key in written and written[line.key].comparator is None:
                results[line.loinc] = (written[line.key].value, written[line.key].unit)
            elif line.key not in written and stored.get("value") is not None and not stored.get("comparator"):
                results[line.loinc] = (Decimal(str(stored["value"])), str(stored.get("code") or ""))
        for problem in plausibility.differential(results):
            message = plausibility.unbalanced_in_french(problem)
            issues.extend(Issue(message, "business-rule", expression=line.field("valeur")) for line in typed_now
                          if line.loinc in problem.codes
                          or (problem.kind == "count" and line.loinc in plausibility.LEUKOCYTES))
    return issues


def _observation(order: _Order, line: Line, measured: _Measured, by: str, now: datetime) -> dict[str, Any]:
    observation: dict[str, Any] = {
        "resourceType": "Observation", "status": "registered", "category": [LABORATORY],
        "code": {"coding": [{"system": LOINC, "code": line.loinc, "display": line.loinc_display}],
                 "text": line.label},
        "subject": {"reference": order.subject},
        "basedOn": [{"reference": line.request}],
        "effectiveDateTime": line.collected or instant(now),
        "issued": instant(now),
        "performer": [{"reference": order.performer}],
        "valueQuantity": _quantity(measured.value, measured.unit, measured.comparator),
    }
    observation = signed(observation, "entered", by, now)
    if line.specimen:
        observation["specimen"] = {"reference": line.specimen}
    applicable = line.applicable
    if applicable and applicable.banded and not applicable.empty and measured.unit == line.ucum and (
            measured.low, measured.high) == (applicable.low, applicable.high):
        observation["referenceRange"] = [ranges.element(applicable, measured.unit)]  # says whom it is for
    elif measured.low is not None or measured.high is not None:
        element: dict[str, Any] = {"text": "Valeurs de référence du laboratoire"}
        for name, limit in (("low", measured.low), ("high", measured.high)):
            if limit is not None:
                element[name] = _quantity(limit, measured.unit)
        observation["referenceRange"] = [element]
    return observation


def _write(line: Line, observation: dict[str, Any]) -> Write:
    """A new result, or a new version of the line's open one (its identifiers and notes kept;
    back to `registered`, for the desk to validate again)."""
    if line.result is None:
        return Write("Observation", new_id(), observation, "POST", validated=True, guarded=True)
    kept = {k: v for k, v in line.result.content.items() if k in ("identifier", "note")}
    return Write("Observation", line.result.id, {**observation, **kept}, "PUT", line.result.version_id,
                 validated=True, guarded=True)


def _quantity(number: Decimal, unit: str, comparator: str | None = None) -> dict[str, Any]:
    """The number as typed, digits kept ("1,950" stays 1.950, "5,0" 5.0), stored as a Decimal."""
    quantity: dict[str, Any] = {"value": number}
    if comparator:
        quantity["comparator"] = comparator
    return {**quantity, "unit": unit, "system": UCUM, "code": unit}


def _in_french(issue: Issue, line: Line, unit: str) -> Issue:
    """A guard's refusal, said on the field it is about."""
    where = issue.expression or ""
    if where.endswith(("valueQuantity.code", "valueQuantity.system")):
        if units.check_unit(unit):
            fix = units.suggest_unit(unit)
            message = (f"Unité non reconnue : écrivez « {fix} »." if fix
                       else "Unité non reconnue : écrivez-la en UCUM (par exemple mmol/L).")
        else:
            message = f"{line.label} ne se mesure pas en {unit} : utilisez {line.ucum} ou une unité convertible."
        return Issue(message, issue.code, expression=line.field("unite"))
    if "referenceRange" in where:
        return Issue("Valeurs de référence illisibles.", issue.code, expression=line.field("bas"))
    return Issue(f"Résultat refusé : {issue.diagnostics}", issue.code, expression=line.field("valeur"))
