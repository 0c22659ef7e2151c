"""Who is calling: a person (prescriber, reception, technician, biologist, patient) or practice software or
lab middleware acting for a prescriber or a lab, as read from a verified access token."""

from dataclasses import dataclass
from typing import Any, Literal

from bilan.fhir.outcomes import Forbidden, Issue

Kind = Literal["prescriber", "reception", "technician", "biologist", "patient", "practice-software",
               "lab-middleware"]
PEOPLE: tuple[Kind, ...] = ("prescriber", "reception", "technician", "biologist", "patient")
LAB_PEOPLE: tuple[Kind, ...] = ("reception", "technician", "biologist")
MACHINES: tuple[Kind, ...] = ("practice-software", "lab-middleware")


@dataclass(frozen=True)
class Caller:
    kind: Kind
    subject: str
    scopes: frozenset[str]
    rpps: str | None = None
    lab_finess: str | None = None
    ins: str | None = None
    client_id: str | None = None
    address: str | None = None

    @property
    def is_machine(self) -> bool:
        return self.kind in MACHINES

    @property
    def for_prescriber(self) -> bool:
        return self.kind in ("prescriber", "practice-software")

    @property
    def for_lab(self) -> bool:
        return self.kind in (*LAB_PEOPLE, "lab-middleware")

    @property
    def signer(self) -> str:
        """Who signs a step of the lab's work: the person (RPPS, else their account), not the lab."""
        return f"{self.kind}:{self.rpps or self.subject}"

    @property
    def label(self) -> str:
        """How the audit trail names the caller: role and an identifier, never a name."""
        ident = self.rpps or self.lab_finess or self.client_id or self.subject
        return f"{self.kind}:{ident}"


def caller_from_claims(claims: dict[str, Any], address: str | None) -> Caller:
    """The caller an access token describes; 403 when it names no role bilan knows."""
    scopes = frozenset(str(claims.get("scope", "")).split())
    kind = claims.get("client_kind") or claims.get("role")
    if kind == "practice-software" and claims.get("acting_rpps"):
        return Caller("practice-software", str(claims["sub"]), scopes, rpps=claims["acting_rpps"],
                      client_id=claims.get("client_id"), address=address)
    if kind == "lab-middleware" and claims.get("acting_finess"):
        return Caller("lab-middleware", str(claims["sub"]), scopes,
                      lab_finess=claims["acting_finess"], client_id=claims.get("client_id"),
                      address=address)
    if kind == "prescriber" and claims.get("rpps"):
        return Caller("prescriber", str(claims["sub"]), scopes, rpps=claims["rpps"], address=address)
    if kind in LAB_PEOPLE and claims.get("lab_finess"):
        return Caller(kind, str(claims["sub"]), scopes, rpps=claims.get("rpps"),
                      lab_finess=claims["lab_finess"], address=address)
    if kind == "patient" and claims.get("ins"):
        return Caller("patient", str(claims["sub"]), scopes, ins=claims["ins"], address=address)
    raise Forbidden([Issue("This token gives no role in bilan (prescriber, lab, patient, "
                                "practice software or lab middleware)", "forbidden")])
