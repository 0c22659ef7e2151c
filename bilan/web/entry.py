"""The lab's page for typing an order's results by hand (bilan/results/desk/entry.py)."""

from collections.abc import Mapping
from typing import Any

from litestar import Controller, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import Redirect, Template

from bilan.api.statuses import status_of
from bilan.auth.caller import Caller
from bilan.fhir.outcomes import FhirError
from bilan.records.service import Records
from bilan.results.desk import FIELDS, UNCOLLECTED, ResultEntry, Typed
from bilan.settings import Settings
from bilan.web.reception import AnyRequest, Form, shown_on_page, signed_in
from bilan.web.session import WebUser


def typed_lines(data: Mapping[str, str]) -> dict[str, Typed]:
    """What was typed on each line, by line key (fields are named "<field>-<line key>")."""
    typed = {}
    for name, text in data.items():
        key = name.removeprefix(f"{FIELDS[0]}-")
        if key != name:
            typed[key] = Typed(text, *(data.get(f"{field}-{key}", "") for field in FIELDS[1:]))
    return typed


def provide_entry(records: NamedDependency[Records]) -> ResultEntry:
    return ResultEntry(records)


class EntryController(Controller):
    path = "/reception/prescriptions/{task_id:str}/saisie"
    dependencies = {"entry": Provide(provide_entry, sync_to_thread=False)}

    @get()
    async def form(self, request: AnyRequest, task_id: FromPath[str], settings: NamedDependency[Settings],
                   entry: NamedDependency[ResultEntry]) -> Template:
        user, caller = signed_in(request, settings)
        return await _page(user, caller, entry, task_id)

    @post()
    async def save(self, request: AnyRequest, task_id: FromPath[str], data: Form,
                   settings: NamedDependency[Settings], entry: NamedDependency[ResultEntry]) -> Template | Redirect:
        user, caller = signed_in(request, settings)
        typed = typed_lines(data)
        try:
            await entry.save(caller, task_id, typed, data.get(UNCOLLECTED, ""))
        except FhirError as error:
            return await _page(user, caller, entry, task_id, error, typed)
        return Redirect(f"/reception/prescriptions/{task_id}/resultats")


async def _page(user: WebUser, caller: Caller, entry: ResultEntry, task_id: str,
                error: FhirError | None = None, typed: dict[str, Typed] | None = None) -> Template:
    """The form; after a refusal, with each reason next to its field and what was typed kept."""
    shown_on_page(error)
    errors: dict[str, Any] = {}
    for issue in error.issues if error else []:
        errors.setdefault(issue.expression or "general", issue.diagnostics)
    return Template("reception/entry.html", status_code=status_of(error) if error else 200,
                    context={"user": user, "form": await entry.form(caller, task_id),
                             "errors": errors, "typed": typed or {}, "uncollected": UNCOLLECTED})
