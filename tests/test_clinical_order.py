"""Results in the catalogue's clinical order, named in French (issue 13): an NFS the analyser's
middleware posts in any order, each result a bare LOINC code, reads on the entry page, on the
results desk and in the report as the lab lists it (leucocytes, hématies, hémoglobine...),
exam by exam as prescribed, chapters in the catalogue's order."""

import re
from html import unescape
from typing import Any

import httpx

from bilan import data
from bilan.demo.prescriptions import EXAMS
from bilan.prescription.catalogue import read_csv
from bilan.results.desk.names import label
from bilan.results.issuing.documents import embedded_pdf
from tests.orders import addressed, imported, prescribed
from tests.results import binary, decide, documents, entry_path, issue, pdf_text, posted, result

NFS, GLUCOSE, CRP = EXAMS[0], EXAMS[1], EXAMS[5]
ENTRIES = {row["local_code"]: row for row in read_csv(data.CATALOGUE)}
NFS_RESULTS = sorted((row for row in ENTRIES.values() if row["panel"] == "NFS"), key=lambda row: row["position"])
# A blood count that adds up: counts to the leukocytes, percentages to 100.
VALUES = {"GB": 7.0, "GR": 4.5, "HB": 13.5, "HT": 40, "VGM": 89, "TCMH": 30, "CCMH": 33, "IDR": 13,
          "PLAQ": 250, "VMP": 9, "PNN": 4.2, "LYM": 2.1, "MONO": 0.5, "PNE": 0.15, "PNB": 0.05,
          "PNN_PCT": 60, "LYM_PCT": 30, "MONO_PCT": 7, "PNE_PCT": 2, "PNB_PCT": 1}


def _in_order(text: str, names: list[str]) -> bool:
    """Whether each name comes after the one before it in `text`."""
    at = -1
    for name in names:
        at = text.find(name, at + 1)
        if at < 0:
            return False
    return True


def _desk_labels(page: httpx.Response) -> list[str]:
    return [unescape(found) for found in re.findall(r'<label for="r-[^"]+">([^<]+)</label>', page.text)]


def test_a_shuffled_code_only_nfs_reads_in_the_catalogue_s_order_with_french_names(
        fhir, lab_middleware, desk, technician, biologist, web_root, rng) -> None:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[CRP, NFS, GLUCOSE]))
    nfs_names = [row["label_fr"] for row in NFS_RESULTS]

    typed = technician.get(f"{web_root}{entry_path(task_id)}")
    lines = [unescape(found) for found in re.findall(r'<label for="valeur-[^"]+">([^<]+)</label>', typed.text)]
    assert [line.split(" (")[0] for line in lines[1:21]] == [name.split(" (")[0] for name in nfs_names]
    assert lines[0].startswith("Protéine C réactive") and lines[-1].startswith("Glycémie à jeun")

    blood = prescribed(fhir, task_id, NFS[0])
    posts = [(blood, ENTRIES[code]["loinc"], value, ENTRIES[code]["ucum"]) for code, value in VALUES.items()]
    posts += [(prescribed(fhir, task_id, GLUCOSE[0]), GLUCOSE[0], 5.0, "mmol/L"),
              (prescribed(fhir, task_id, CRP[0]), CRP[0], 3, "mg/L")]
    rng.shuffle(posts)
    assert result(*posts[0])["code"] == {"coding": [{"system": "http://loinc.org", "code": posts[0][1]}]}
    ids = [posted(lab_middleware, result(*each)) for each in posts]  # codes alone: no display, no text

    page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}/resultats")
    assert _desk_labels(page) == ["Protéine C réactive (CRP)", *nfs_names, "Glycémie à jeun"]
    assert "6690-2" not in " ".join(_desk_labels(page))

    assert decide(biologist, web_root, task_id, "biologique", ids).status_code == 200
    assert issue(biologist, web_root, task_id).status_code == 200
    document = documents(fhir, task_id)[-1]
    [content] = document["content"]  # the CDA, which carries the PDF copy
    text = " ".join(pdf_text(embedded_pdf(binary(fhir, content["attachment"])) or b"").split())
    # Hématologie before Biochimie (the catalogue lists its NFS first), though the CRP was
    # prescribed first; in Biochimie the CRP then the glucose, as prescribed.
    assert _in_order(text, ["Hématologie", "Leucocytes", "Hématies", "Hémoglobine", "Hématocrite",
                            "Plaquettes", "Polynucléaires neutrophiles", "Lymphocytes", "Monocytes",
                            "Polynucléaires neutrophiles (%)", "Biochimie", "Protéine C réactive",
                            "Glycémie à jeun"]), text
    cda = binary(fhir, document["content"][0]["attachment"]).decode()
    reported = [code for code in dict.fromkeys(re.findall(r'<code code="([0-9]+-[0-9])"', cda))
                if code in {row["loinc"] for row in NFS_RESULTS}]
    assert reported == [row["loinc"] for row in NFS_RESULTS]


def test_a_result_is_named_by_the_catalogue_then_its_text_its_display_its_code() -> None:
    def coded(**concept: Any) -> dict[str, Any]:
        return {"code": concept}

    loinc = {"system": "http://loinc.org", "code": "6690-2"}
    known = {"6690-2": "Leucocytes"}
    assert label(coded(coding=[loinc], text="WBC"), known) == "Leucocytes"
    assert label(coded(coding=[loinc], text="WBC"), {}) == "WBC"
    assert label(coded(coding=[loinc, {"system": "urn:lab", "code": "W", "display": "Globules blancs"}]),
                 {}) == "Globules blancs"
    assert label(coded(coding=[loinc]), {}) == "6690-2"
    assert label({}, {}) == "Résultat"
    assert label(coded(coding=[{"system": "urn:lab", "code": "6690-2"}]), known) == "6690-2"  # not LOINC
