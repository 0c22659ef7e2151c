"""Who did what to a result, and when: each step (typed by hand, validated technically or
biologically, rejected for a re-run, not done, corrected) is signed on the Observation, in a
coded extension, so the desk shows it and an audit can rebuild it. A free-text note is kept
for the reason, never for the state."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bilan.fhir.dates import instant

SIGNATURE = "https://bilan.sante.fr/fhir/StructureDefinition/result-signature"
STEP_LABELS = {"entered": "Saisi à la main", "technical": "Validé techniquement",
               "biological": "Validé biologiquement", "rerun": "Rejeté pour nouvelle analyse",
               "not-done": "Non réalisé", "corrected": "Corrigé"}


@dataclass(frozen=True)
class Signature:
    step: str
    by: str
    at: str  # a FHIR instant

    @property
    def step_label(self) -> str:
        return STEP_LABELS.get(self.step, self.step)


def signed(content: dict[str, Any], step: str, by: str, at: datetime) -> dict[str, Any]:
    """The result with one more signature: `by` is the caller's audit label."""
    assert step in STEP_LABELS, step
    signature = {"url": SIGNATURE, "extension": [
        {"url": "step", "valueCode": step}, {"url": "by", "valueString": by},
        {"url": "at", "valueDateTime": instant(at)}]}
    return {**content, "extension": [*content.get("extension", []), signature]}


def signatures(content: dict[str, Any]) -> tuple[Signature, ...]:
    """The result's signatures, oldest first."""
    found = []
    for extension in content.get("extension", []):
        if extension.get("url") != SIGNATURE:
            continue
        parts = {e.get("url"): next((v for k, v in e.items() if k.startswith("value")), "")
                 for e in extension.get("extension", [])}
        found.append(Signature(str(parts.get("step", "")), str(parts.get("by", "")), str(parts.get("at", ""))))
    return tuple(found)


def entered_by_hand(content: dict[str, Any]) -> bool:
    return any(s.step == "entered" for s in signatures(content))
