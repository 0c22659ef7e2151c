"""String search semantics: case- and accent-insensitive, as FHIR string search asks."""

import unicodedata


def normalise(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.casefold().split())
