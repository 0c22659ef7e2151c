"""The clinical context that changes how a result reads, shown beside it on the desk: an INR
or a TCA under treatment (an anticoagulant raises them on purpose), a haemoglobin, TSH or hCG
in pregnancy, a glucose or triglycerides fasting or not.

The prescription carries the context (`ServiceRequest.supportingInfo`: Observations coded
LOINC 10160-0 treatment, 82810-3 pregnancy, 49541-6 fasting); which results each one bears on
is this table, by the results' LOINC codes."""

from typing import Any

from bilan.prescription import display

TREATMENT, PREGNANCY, FASTING = "10160-0", "82810-3", "49541-6"
BEARS_ON: dict[str, frozenset[str]] = {
    TREATMENT: frozenset({"6301-6", "5894-1", "5902-2", "34528-0",  # INR, TP, Quick
                          "50197-3", "14979-9", "63561-5",  # TCA
                          "3255-7", "48065-7"}),  # fibrinogen, D-dimers
    PREGNANCY: frozenset({"718-7", "789-8", "4544-3",  # haemoglobin, red cells, haematocrit
                          "3016-3", "14920-3",  # TSH, free T4
                          "19080-1", "2276-4", "14798-3",  # hCG, ferritin, iron
                          "14682-9", "62238-1", "6768-6", "3255-7", "48065-7"}),  # creatinine, eGFR, ALP, fibrinogen, D-dimers
    FASTING: frozenset({"40193-5", "2571-8", "13457-7"}),  # glucose, triglycerides, LDL
}


def readings(contexts: list[dict[str, Any]]) -> dict[str, tuple[str, ...]]:
    """For each result LOINC code, the context items that bear on it, in French
    ("Traitement en cours : Anticoagulant : Warfarine")."""
    found: dict[str, list[str]] = {}
    for resource in contexts:
        codes = {c.get("code") for c in (resource.get("code") or {}).get("coding", [])}
        what, value = display.context_item(resource)
        text = f"{what} : {value}" if value else what
        for kind in codes & BEARS_ON.keys():
            for result in BEARS_ON[kind]:
                found.setdefault(result, []).append(text)
    return {code: tuple(texts) for code, texts in found.items()}
