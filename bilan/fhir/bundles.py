"""Bundles bilan answers with: searchset, history and transaction-response."""

from datetime import datetime
from typing import Any, Protocol, Sequence
from urllib.parse import urlencode

from bilan.fhir.dates import instant
from bilan.fhir.outcomes import Issue, operation_outcome


class StoredLike(Protocol):
    # Read-only members, so that frozen dataclasses such as storage's `Stored` match.
    @property
    def resource_type(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def version_id(self) -> int: ...
    @property
    def last_updated(self) -> datetime: ...
    @property
    def deleted(self) -> bool: ...
    @property
    def content(self) -> dict[str, Any]: ...


def etag(stored: StoredLike) -> str:
    return f'W/"{stored.version_id}"'


def version_of_etag(value: Any) -> int | None:
    """The version an ETag such as W/"3" names; None when it names none."""
    text = str(value).strip().removeprefix("W/").strip('"')
    return int(text) if text.isdigit() else None


def location(stored: StoredLike) -> str:
    return f"{stored.resource_type}/{stored.id}/_history/{stored.version_id}"


def response_entry(status: str, stored: StoredLike | None = None, *, full_url: str | None = None,
                   warnings: Sequence[Issue] = ()) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if full_url:
        entry["fullUrl"] = full_url
    response: dict[str, Any] = {"status": status}
    if stored is not None:
        response.update(location=location(stored), etag=etag(stored),
                        lastModified=instant(stored.last_updated))
    if warnings:
        response["outcome"] = operation_outcome(list(warnings))
    entry["response"] = response
    return entry


def transaction_response(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}


def searchset(base_url: str, resource_type: str, params: list[tuple[str, str]], total: int,
              offset: int, count: int, matches: Sequence[StoredLike],
              included: Sequence[StoredLike], ignored: Sequence[str] = ()) -> dict[str, Any]:
    """A page of search results. `params` are those applied (the self link shows them)."""
    links = [{"relation": "self", "url": _page_url(base_url, resource_type, params, offset, count)}]
    if count and offset + count < total:
        links.append({"relation": "next",
                      "url": _page_url(base_url, resource_type, params, offset + count, count)})
    if count and offset > 0:
        links.append({"relation": "previous",
                      "url": _page_url(base_url, resource_type, params, max(offset - count, 0), count)})
    entries = [_search_entry(base_url, s, "match") for s in matches]
    entries += [_search_entry(base_url, s, "include") for s in included]
    if ignored:
        outcome = operation_outcome([Issue(f"Search parameter {name!r} is not supported and was "
                                           "ignored", "not-supported", "warning", name)
                                     for name in ignored])
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": total,
                              "link": links}
    if entries:
        bundle["entry"] = entries
    return bundle


def history(base_url: str, path: str, total: int, offset: int, count: int,
            versions: Sequence[StoredLike]) -> dict[str, Any]:
    links = [{"relation": "self", "url": f"{base_url}/{path}?_count={count}&_offset={offset}"}]
    if offset + count < total:
        links.append({"relation": "next",
                      "url": f"{base_url}/{path}?_count={count}&_offset={offset + count}"})
    entries = []
    for v in versions:
        method = getattr(v, "method", "") or "PUT"
        entry: dict[str, Any] = {
            "fullUrl": f"{base_url}/{v.resource_type}/{v.id}",
            "request": {"method": method,
                        "url": v.resource_type if method == "POST" else f"{v.resource_type}/{v.id}"},
            "response": {"status": "410 Gone" if v.deleted else ("201 Created" if method == "POST" else "200 OK"),
                         "etag": etag(v), "lastModified": instant(v.last_updated)},
        }
        if not v.deleted:
            entry["resource"] = v.content
        entries.append(entry)
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history", "total": total,
                              "link": links}
    if entries:
        bundle["entry"] = entries
    return bundle


def _search_entry(base_url: str, stored: StoredLike, mode: str) -> dict[str, Any]:
    return {"fullUrl": f"{base_url}/{stored.resource_type}/{stored.id}", "resource": stored.content,
            "search": {"mode": mode}}


def _page_url(base_url: str, resource_type: str, params: list[tuple[str, str]], offset: int,
              count: int) -> str:
    kept = [(k, v) for k, v in params if k not in ("_offset", "_count")]
    kept += [("_count", str(count)), ("_offset", str(offset))]
    return f"{base_url}/{resource_type}?{urlencode(kept)}"
