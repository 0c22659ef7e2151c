"""Making every reference of incoming resources point at a stored resource, or saying why not."""

from typing import Any, Callable
from urllib.parse import parse_qsl

from bilan.fhir.outcomes import Issue, bad_request
from bilan.fhir.query import SearchQuery, parse_search
from bilan.fhir.references import literal, references, relative, rewrite
from bilan.storage import search as store_search
from bilan.storage.repository import Repository


class Linker:
    """Resolves references for one write: in-bundle fullUrls, conditional and literal ones."""

    def __init__(self, repo: Repository, base_url: str, local: dict[str, str] | None = None,
                 pending: set[tuple[str, str]] | None = None,
                 findable: Callable[[str], Any] = store_search.everything):
        self.repo = repo
        self.findable = findable  # what conditional references may resolve to
        self.base_url = base_url
        self.local = local or {}          # fullUrl -> "Type/id" for resources in the same bundle
        self.pending = pending or set()   # (type, id) written in the same bundle
        self.resolved: dict[str, str] = {}

    async def check(self, resource: dict[str, Any], prefix: str) -> list[Issue]:
        """Resolve the references of one resource; the issues of those that do not resolve."""
        issues: list[Issue] = []
        literals: dict[tuple[str, str], str] = {}
        for path, ref in references(resource, prefix):
            if ref in self.resolved or ref.startswith("#"):
                continue
            target = self.local.get(ref)
            if target is None and "?" in ref:
                target = await self._conditional(ref, path, issues)
            elif target is None:
                rel = relative(ref, self.base_url)
                key = literal(rel)
                if key is None:
                    issues.append(Issue(
                        f"Reference {ref!r} does not resolve: use Type/id, a urn:uuid fullUrl of "
                        "this Bundle or a conditional reference Type?param=value", "not-found",
                        expression=path))
                    continue
                if key not in self.pending:
                    literals[key] = path
                target = f"{key[0]}/{key[1]}"
            if target is not None:
                self.resolved[ref] = target
        if literals:
            found = await self.repo.read_many(literals)
            for key, path in literals.items():
                if key not in found:
                    issues.append(Issue(f"Reference {key[0]}/{key[1]} does not resolve: no such "
                                        "resource", "not-found", expression=path))
        return issues

    async def _conditional(self, ref: str, path: str, issues: list[Issue]) -> str | None:
        rtype, _, criteria = ref.partition("?")
        query = conditional_query(rtype, criteria)
        found = await store_search.first_matches(self.repo.conn, query, self.base_url, self.findable)
        if len(found) != 1:
            what = "no resource" if not found else "several resources"
            issues.append(Issue(f"Conditional reference {ref!r} matches {what}; exactly one is "
                                "needed", "not-found", expression=path))
            return None
        return f"{rtype}/{found[0].id}"

    def apply(self, resource: dict[str, Any]) -> dict[str, Any]:
        linked: dict[str, Any] = rewrite(resource, lambda ref: self.resolved.get(ref, ref))
        return linked


def conditional_query(resource_type: str, criteria: str) -> SearchQuery:
    """The search behind If-None-Exist, ifNoneExist or a conditional reference."""
    query = parse_search(resource_type, parse_qsl(criteria, keep_blank_values=True),
                         default_count=2, max_count=2)
    if not query.criteria:
        raise bad_request(f"Conditional criteria {criteria!r} select nothing")
    return query
