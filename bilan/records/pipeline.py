"""The one write path. Every write, whoever describes it (REST, transactions, web forms, domain
services, imports, workers, the demo loader), is stored by `Work.write`, in this order:

1. authorise it against the stored version (the writer may read it; what it changes, what
   it deletes) and the new one (what it points to is readable by the writer, the identifiers
   that name one resource stay unique): bilan/auth/policy.py;
2. validate it (models, value sets, French rules), unless the door already did;
3. run the domain guards of its type;
4. compute the derived elements: the patient-visibility labels (bilan/results/masking.py);
5. store it, its history and its search rows, with the rows access derives from facts fixed
   at intake (who requested a prescription, which lab it is addressed to or was taken by);
6. note it for the audit trail, written in the same transaction when the Work ends;
7. tell the observers, which queue the after-commit events (outbox).
"""

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable

from bilan.auth import access, policy
from bilan.auth.access import LAB_ROW, REQUESTER_ROW
from bilan.auth.audit import patients_of
from bilan.auth.caller import Caller
from bilan.fhir import fr_core
from bilan.fhir.outcomes import FhirError, Invalid, Issue, Malformed, errors_only
from bilan.fhir.references import literal, references
from bilan.fhir.terminology import RPPS
from bilan.records.validation import is_structural
from bilan.results import masking
from bilan.storage.repository import Repository, Stored, Write

if TYPE_CHECKING:
    from bilan.records.service import Records

Observer = Callable[["Work", list[Stored]], Awaitable[None]]
KEEP_OWNER = object()


def invalid(issues: list[Issue]) -> FhirError:
    """400 for a resource that is not well-formed FHIR, 422 for one that breaks a rule."""
    return Malformed(issues) if is_structural(issues) else Invalid(issues)


class Denied(Exception):
    """A refusal raised inside a transaction; Records.unit records it after the rollback."""

    def __init__(self, caller: Caller, interaction: str, error: FhirError, touched: list[str],
                 patients: Iterable[str] = ()):
        super().__init__(str(error))
        self.caller, self.interaction, self.error = caller, interaction, error
        self.touched, self.patients = touched, set(patients)


@dataclass
class Noted:
    """One interaction to audit: which patients, which resources, the query if any."""

    interaction: str
    patients: set[str] = field(default_factory=set)
    touched: set[str] = field(default_factory=set)
    query: str | None = None
    detail: str | None = None  # why, when the person said it (a mask lifted, and its reason)


class Work:
    """One unit of work of one caller (None: bilan's own code), in one database transaction.
    Services read through `repo` and describe their writes to `write`; what they read they
    `note`, and the audit trail of the whole unit is written when it ends."""

    def __init__(self, records: "Records", repo: Repository, caller: Caller | None, now: datetime,
                 interaction: str | None = None):
        self.records = records
        self.interaction = interaction  # how the writes are audited when not as themselves
        self.repo = repo
        self.caller = caller
        self.now = now
        self.noted: list[Noted] = []
        self.written: set[tuple[str, str]] = set()  # (type, id) of what this unit wrote
        self._directory: dict[str, Stored | None] = {}  # references read for access rows

    @property
    def conn(self) -> Any:
        return self.repo.conn

    def note(self, interaction: str, *, patients: Iterable[str] = (), touched: Iterable[str] = (),
             query: str | None = None, detail: str | None = None) -> None:
        self.noted.append(Noted(interaction, set(patients), set(touched), query, detail))

    def audited(self) -> list[Noted]:
        """What the unit did, one entry per kind of interaction (and query, and reason): a
        prescription of twelve resources is one access to one patient's record."""
        merged: dict[tuple[str, str | None, str | None], Noted] = {}
        for noted in self.noted:
            key = (noted.interaction, noted.query, noted.detail)
            entry = merged.setdefault(key, Noted(*key[:1], query=noted.query, detail=noted.detail))
            entry.patients |= noted.patients
            entry.touched |= noted.touched
        return list(merged.values())

    def allow(self, action: str, touched: Iterable[str] = (), interaction: str = "read") -> None:
        """The caller may take this domain action (bilan/auth/policy.py ACTIONS), or a 403
        recorded as a refused `interaction`."""
        if self.caller is None:
            return
        try:
            policy.check_action(self.caller, action)
        except FhirError as error:
            raise Denied(self.caller, interaction, error, list(touched)) from None

    def problems(self, content: dict[str, Any]) -> list[Issue]:
        """Step 2 for one resource ahead of its write (a form checks each line): its errors."""
        return errors_only(self.records.validator.check(content))

    async def guarded(self, content: dict[str, Any]) -> dict[str, Any]:
        """Step 3 for one resource ahead of its write: as the guards complete it, or refused."""
        return await self.records.guarded(self.repo, self.caller, content)

    async def write(self, writes: list[Write], *, system: bool = False,
                    owner: Any = KEEP_OWNER) -> list[Stored]:
        """Store these writes through the pipeline. `system` for bilan's own bookkeeping
        inside a caller's unit (a Task moved when an answer arrives): authorised by the domain
        rule that triggers it, not by the caller's rights. `owner` overrides who the created
        resources belong to (an imported report's results belong to the report's owner)."""
        if not writes:
            return []
        acting = None if system else self.caller
        current = await self._current(writes)
        prepared = []
        for write in writes:
            stored = current.get((write.resource_type, write.id))
            if acting is not None:
                await self._authorise(acting, write, stored)
            prepared.append(await self._derived(write, stored))
        if acting is not None:
            await self._check_references(acting, prepared)
            await self._check_unique(prepared)
        key = policy.owner_key(self.caller) if owner is KEEP_OWNER else owner
        saved = await self.repo.save(prepared, self.now, key)
        self.written |= {(s.resource_type, s.id) for s in saved}
        paths = {(w.resource_type, w.id): w.path or w.resource_type for w in prepared}
        await self._access_rows(acting, saved, current, paths)
        for stored in saved:
            before = current.get((stored.resource_type, stored.id))
            interaction = {"POST": "create", "PUT": "update", "DELETE": "delete"}[stored.method]
            if stored.method == "PUT" and (before is None or before.deleted):
                interaction = "create"
            self.note(self.interaction or interaction, patients=patients_of(stored.content) | patients_of(
                before.content if before else None), touched=[f"{stored.resource_type}/{stored.id}"])
        for observer in self.records.observers:
            await observer(self, saved)
        return saved

    async def _current(self, writes: list[Write]) -> dict[tuple[str, str], Stored]:
        keys = [(w.resource_type, w.id) for w in writes if w.method != "POST"]
        found: dict[tuple[str, str], Stored] = {}
        for key in keys:
            stored = await self.repo.read(*key)
            if stored is not None:
                found[key] = stored
        return found

    async def _authorise(self, caller: Caller, write: Write, stored: Stored | None) -> None:
        path = write.path or write.resource_type
        policy.check_type(caller, write.resource_type)
        live = stored if stored is not None and not stored.deleted else None
        if live is not None:
            await self.records.check_read(self.repo, caller, "update", live)
        if write.content is None:
            if live is not None:
                policy.check_delete(write.resource_type,
                                    await self.repo.referrers(write.resource_type, write.id), path)
            return
        if live is not None:
            policy.check_change(caller, write.resource_type, live.content, write.content,
                                await self.repo.owner(write.resource_type, write.id), path)

    def _validated(self, content: dict[str, Any], path: str | None) -> dict[str, Any]:
        issues = self.records.validator.check(content, path)
        if errors_only(issues):
            raise invalid(errors_only(issues))
        return content

    async def _derived(self, write: Write, stored: Stored | None) -> Write:
        if write.content is None:
            return write
        content = write.content
        if not write.validated:
            content = self._validated(content, write.path)
        content = _caller_labels_dropped(content, stored, write)
        if not write.guarded:
            try:
                content = await self.guarded(content)
            except FhirError as error:  # said where the resource sits: Bundle.entry[1].resource...
                error.issues = [_placed(issue, write) for issue in error.issues]
                raise
        return replace(write, content=_visibility(content, stored, write))

    async def _access_rows(self, caller: Caller | None, saved: list[Stored],
                           current: dict[tuple[str, str], Stored], paths: dict[tuple[str, str], str]) -> None:
        """The rows access derives from facts fixed at intake (bilan/auth/access.py)."""
        rows: list[tuple[str, str, str, str]] = []
        for stored in saved:
            if stored.deleted:
                continue
            content = stored.content
            before = current.get((stored.resource_type, stored.id))
            created = before is None or before.deleted
            path = paths[(stored.resource_type, stored.id)]
            if stored.resource_type == "ServiceRequest" and created:
                rpps = await self._requester_rpps(caller, content, path)
                finess = await self._finess(content.get("performer", []))
                rows += [("ServiceRequest", stored.id, name, value)
                         for name, value in ((REQUESTER_ROW, rpps), (LAB_ROW, finess)) if value]
            elif stored.resource_type == "Task":
                owner = content.get("owner")
                if not created and before is not None and before.content.get("owner") == owner:
                    continue
                finess = await self._finess([owner] if owner else [])
                if caller is not None and caller.for_lab and owner and finess != caller.lab_finess:
                    raise policy.forbidden("A Task's owner is the lab that writes it", f"{path}.owner")
                if created:
                    rows += [("Task", stored.id, LAB_ROW, finess)] if finess else []
                else:
                    await self.repo.replace_row("Task", stored.id, LAB_ROW, finess)
        await self.repo.add_rows(rows)

    async def _requester_rpps(self, caller: Caller | None, request: dict[str, Any], path: str) -> str | None:
        """Whose prescription a new request is: its requester's RPPS, which must be the
        caller's own when a prescriber writes; none for a lab's (an adaptation is seen through
        the prescription it adapts)."""
        if caller is not None and caller.for_lab:
            return None
        rpps = await self._rpps((request.get("requester") or {}).get("reference", ""))
        if caller is not None and caller.for_prescriber:
            if caller.rpps not in rpps:
                raise policy.forbidden("The request's requester is not the prescriber this token "
                                       "acts for", f"{path}.requester")
            return caller.rpps
        return rpps[0] if rpps else None

    async def _lookup(self, reference: str) -> Stored | None:
        """A directory resource a write names, read once per unit of work."""
        if reference not in self._directory:
            self._directory[reference] = await self.repo.read_reference(reference)
        return self._directory[reference]

    async def _rpps(self, reference: str) -> list[str]:
        found = await self._lookup(reference)
        if found is not None and found.resource_type == "PractitionerRole":
            found = await self._lookup((found.content.get("practitioner") or {}).get("reference", ""))
        if found is None or found.resource_type != "Practitioner":
            return []
        return [str(i.get("value")) for i in found.content.get("identifier", [])
                if i.get("system") == RPPS and i.get("value")]

    async def _finess(self, organizations: list[Any]) -> str | None:
        for item in organizations:
            reference = item.get("reference", "") if isinstance(item, dict) else ""
            found = await self._lookup(reference) if reference.startswith("Organization/") else None
            # A lab by its Organization, or by one of its identifiers alone.
            alone = [item.get("identifier") or {}] if isinstance(item, dict) and not reference else []
            for ident in found.content.get("identifier", []) if found else alone:
                finess = fr_core.finess_of(ident)
                if finess:
                    return finess
        return None

    async def _check_references(self, caller: Caller, writes: list[Write]) -> None:
        """Everything a write points to is readable by its writer before it is stored (a write
        never makes its own targets readable), or written in the same unit of work."""
        pending = self.written | {(w.resource_type, w.id) for w in writes}
        wanted: dict[str, dict[str, str]] = defaultdict(dict)
        for write in writes:
            if write.content is None:
                continue
            for path, reference in references(write.content, write.path or write.resource_type):
                key = literal(reference)
                if key is not None and key not in pending:
                    wanted[key[0]].setdefault(key[1], path)
        for resource_type, paths in wanted.items():
            allowed = access.visible(caller, resource_type)
            seen = await self.repo.visible_ids(resource_type, paths, allowed)
            for resource_id, path in paths.items():
                if resource_id not in seen:
                    raise policy.forbidden(f"{resource_type}/{resource_id} is not yours to see: "
                                           "a write may only point to what its writer may read",
                                           path.removesuffix(".reference"))

    async def _check_unique(self, writes: list[Write]) -> None:
        """An RPPS names one Practitioner, a FINESS one Organization: a second one would make
        every conditional reference to it ambiguous (policy.UNIQUE_IDENTIFIERS)."""
        for write in writes:
            systems = policy.UNIQUE_IDENTIFIERS.get(write.resource_type, ())
            for index, ident in enumerate((write.content or {}).get("identifier", [])):
                if not isinstance(ident, dict) or ident.get("system") not in systems:
                    continue
                others = await self.repo.carrying(write.resource_type, str(ident["system"]),
                                                  str(ident.get("value", "")))
                if others - {write.id}:
                    raise policy.forbidden(
                        f"{ident['system']}|{ident.get('value')} already identifies another "
                        f"{write.resource_type} of bilan's directory",
                        f"{write.path or write.resource_type}.identifier[{index}]")


def _placed(issue: Issue, write: Write) -> Issue:
    """A guard's issue about "Observation.x" as "<where the write sits>.x"."""
    where, own = write.path, f"{write.resource_type}."
    if not where or where == write.resource_type or not (issue.expression or "").startswith(own):
        return issue
    return replace(issue, expression=f"{where}.{(issue.expression or '')[len(own):]}")


def _caller_labels_dropped(content: dict[str, Any], stored: Stored | None,
                           write: Write) -> dict[str, Any]:
    """Before the guards: the sharing tags are never taken from the caller. They are the
    domain's when it labels the write itself, else the stored version's."""
    if write.labelled:
        return content
    before = stored.content if stored is not None and stored.content else {}
    return masking.with_labels(content, masking.security_of(content), masking.tags_of(before))


def _visibility(content: dict[str, Any], stored: Stored | None, write: Write) -> dict[str, Any]:
    """After the guards: a mask once set stays on every new version until a write that
    explicitly lifts it, and the derived seen-by-patient tag is computed again."""
    before = stored.content if stored is not None and stored.content else {}
    security = masking.security_of(content)
    if not write.unmask:
        security |= masking.security_of(before) & {masking.INVISIBLE_PATIENT}
    tags = masking.tags_of(content) if write.resource_type in masking.RESULT_TYPES else set()
    return masking.with_labels(content, security, tags)
