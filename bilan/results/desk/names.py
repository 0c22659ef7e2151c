"""How people read a result's name: the catalogue's French label of its LOINC code (an
analyser's middleware often sends the bare code, "6690-2", with no display nor text), else the
result's own text, else a coding's display, else its code."""

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from bilan.fhir.terminology import LOINC
from bilan.storage import catalogue


async def labels(conn: AsyncConnection, results: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The catalogue's French label of each LOINC code of these results (their contents)."""
    codes = {str(c.get("code")) for content in results for c in (content.get("code") or {}).get("coding", [])
             if c.get("system") == LOINC and c.get("code")}
    return {code: entry["label_fr"] for code, entry in (await catalogue.entries_by_loinc(conn, codes)).items()}


def label(content: Mapping[str, Any], known: Mapping[str, str], default: str = "Résultat") -> str:
    """A result's name for people; `known`: the catalogue's labels by LOINC code (`labels`)."""
    concept = content.get("code") or {}
    codings = concept.get("coding", [])
    return (next((known[c["code"]] for c in codings if c.get("system") == LOINC and c.get("code") in known), "")
            or concept.get("text") or next((c["display"] for c in codings if c.get("display")), "")
            or next((c["code"] for c in codings if c.get("code")), default))
