"""Finding and rewriting the references a resource holds."""

import re
from typing import Any, Callable, Iterator

ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
LITERAL = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(/_history/(?P<vid>[A-Za-z0-9\-.]{1,64}))?$")


def references(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """(FHIRPath, reference string) of every Reference.reference inside a resource."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield f"{path}.reference", value
            elif key != "contained":
                yield from references(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from references(item, f"{path}[{index}]")


def rewrite(node: Any, resolve: Callable[[str], str]) -> Any:
    """A copy of `node` with each Reference.reference replaced by resolve(reference)."""
    if isinstance(node, dict):
        return {
            key: (resolve(value) if key == "reference" and isinstance(value, str)
                  else value if key == "contained" else rewrite(value, resolve))
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [rewrite(item, resolve) for item in node]
    return node


def literal(reference: str) -> tuple[str, str] | None:
    """(type, id) of a relative literal reference 'Type/id' (or 'Type/id/_history/v')."""
    match = LITERAL.match(reference)
    return (match["type"], match["id"]) if match else None


def relative(reference: str, base_url: str) -> str:
    """An absolute reference to this server, made relative; anything else unchanged."""
    base = base_url.rstrip("/") + "/"
    return reference[len(base):] if reference.startswith(base) else reference
