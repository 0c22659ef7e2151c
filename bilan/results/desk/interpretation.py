"""Interpretation flags of a result: HL7 v3 ObservationInterpretation, as the CI-SIS value set
JDV_HL7_ObservationInterpretation_CISIS has them, computed from the reference range when the
instrument gives none."""

from collections.abc import Collection
from decimal import Decimal

CODE_SYSTEM_OID = "2.16.840.1.113883.5.83"
CODE_SYSTEM_URI = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
VALUE_SET_OID = "2.16.840.1.113883.1.11.78"

NORMAL, ABNORMAL = "N", "A"
LOW, HIGH = "L", "H"
CRITICAL_LOW, CRITICAL_HIGH = "LL", "HH"

# The value set's concepts and French displays, as the ANS publishes them (TestContenuCDA-3-0).
LABELS: dict[str, str] = {
    "<": "Inférieur à la limite de détection",
    ">": "Supérieur à la limite maximale de mesure",
    "A": "Anormal",
    "AA": "Très anormal, alerte",
    "B": "Amélioration",
    "CAR": "Porteur d'une forme altérée d'un gène",
    "D": "Diminution significative par rapport au résultat antérieur",
    "DET": "Détecté",
    "E": "Équivoque",
    "EX": "Hors seuils",
    "EXP": "Attendu",
    "H": "Anormalement haut",
    "HH": "Très anormalement haut, alerte",
    "HU": "Significativement haut",
    "HX": "Hors seuil supérieur",
    "I": "Intermédiaire",
    "IE": "Preuves insuffisantes",
    "IND": "Indéterminé",
    "L": "Anormalement bas",
    "LL": "Très anormalement bas, alerte",
    "LU": "Significativement bas",
    "LX": "Hors seuil inférieur",
    "N": "Normal",
    "NCL": "Pas de standard défini",
    "ND": "Non détecté",
    "NEG": "Négatif",
    "NR": "Non réactif",
    "NS": "Non sensible",
    "POS": "Positif",
    "R": "Résistant",
    "RR": "Réactif",
    "S": "Sensible",
    "SDD": "Sensible à forte dose",
    "SYN-R": "Synergie - résistant",
    "SYN-S": "Synergie - sensible",
    "U": "Augmentation significative par rapport au résultat antérieur",
    "UNE": "Inattendu",
    "W": "Dégradation",
    "WR": "Faiblement réactif",
}


class UnknownInterpretation(ValueError):
    """A code that is not in the CI-SIS ObservationInterpretation value set."""


def label(code: str) -> str:
    if code not in LABELS:
        raise UnknownInterpretation(f"{code!r} is not in {VALUE_SET_OID} "
                                    "(JDV_HL7_ObservationInterpretation_CISIS)")
    return LABELS[code]


def flag(value: Decimal, low: Decimal | None, high: Decimal | None,
         critical_low: Decimal | None = None, critical_high: Decimal | None = None) -> str | None:
    """N, L, H, LL or HH; None when there is no reference range and no critical limit is crossed.

    Limits belong to the range: a value equal to one is N (or L/H at a critical limit). LL and HH
    come only from critical limits given by the caller, never from the reference range alone.
    """
    _check_limits(low, high, critical_low, critical_high)
    if critical_low is not None and value < critical_low:
        return CRITICAL_LOW
    if critical_high is not None and value > critical_high:
        return CRITICAL_HIGH
    if low is None and high is None:
        return None
    if low is not None and value < low:
        return LOW
    if high is not None and value > high:
        return HIGH
    return NORMAL


COMPARATORS = ("<", "<=", ">=", ">")  # FHIR QuantityComparator: a value censored at a bound


def flag_censored(comparator: str | None, bound: Decimal, low: Decimal | None, high: Decimal | None,
                  critical_low: Decimal | None = None, critical_high: Decimal | None = None) -> str | None:
    """The flag of a censored value ("<0.5": the true value is below 0.5): the one every value
    it may be shares, else None (no conclusion). "<0.5" with a low limit of 1 is L; "<0.5"
    with a low limit of 0.3 says nothing. Without a comparator, `flag`."""
    if comparator is None:
        return flag(bound, low, high, critical_low, critical_high)
    if comparator not in COMPARATORS:
        raise ValueError(f"{comparator!r} is not a FHIR quantity comparator ({', '.join(COMPARATORS)})")
    _check_limits(low, high, critical_low, critical_high)
    limits = [limit for limit in (critical_low, low, high, critical_high) if limit is not None]
    below = comparator.startswith("<")
    # `flag` only grows with the value, so the values between the two ends share a flag
    # when both ends have it: the far end beyond every limit, the near end at the bound (or
    # just beside it, before the next limit, when the bound itself is excluded).
    far = min([*limits, bound]) - 1 if below else max([*limits, bound]) + 1
    near = bound if comparator.endswith("=") else _beside(bound, limits, below)
    ends = {flag(point, low, high, critical_low, critical_high) for point in (far, near)}
    return ends.pop() if len(ends) == 1 else None


def _beside(bound: Decimal, limits: list[Decimal], below: bool) -> Decimal:
    """A value just below (or above) the bound, nearer to it than any limit."""
    gaps = [bound - limit if below else limit - bound for limit in limits]
    step = min((gap for gap in gaps if gap > 0), default=Decimal(2)) / 2
    return bound - step if below else bound + step


def flag_qualitative(result: str, expected: Collection[str]) -> str:
    """N when a qualitative result is one of the expected answers (say NEG), A otherwise."""
    if not expected:
        raise ValueError("a qualitative result needs at least one expected answer")
    return NORMAL if result in expected else ABNORMAL


def interpret(reported: str | None, value: Decimal, low: Decimal | None, high: Decimal | None,
              critical_low: Decimal | None = None, critical_high: Decimal | None = None) -> str | None:
    """The instrument's flag when it gives one (checked against the value set), else `flag`."""
    if reported:
        label(reported)
        return reported
    return flag(value, low, high, critical_low, critical_high)


def _check_limits(low: Decimal | None, high: Decimal | None,
                  critical_low: Decimal | None, critical_high: Decimal | None) -> None:
    pairs = (("low", low, "high", high),
             ("critical low", critical_low, "low", low),
             ("high", high, "critical high", critical_high),
             ("critical low", critical_low, "critical high", critical_high))
    for lower_name, lower, upper_name, upper in pairs:
        if lower is not None and upper is not None and lower > upper:
            raise ValueError(f"the {lower_name} limit {lower} is above the {upper_name} limit {upper}")
