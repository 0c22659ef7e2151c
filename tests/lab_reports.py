"""A lab report as the CDA writer takes it: a complete one (two chapters, a battery, a coded
result, a PDF copy) that each test changes as it needs, and a hostile document."""

import dataclasses
import io
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from bilan.prescription.ins import INS_NIR_TEST
from bilan.results.document.report import (
    MEDICAL_BIOLOGY,
    Address,
    Battery,
    Chapter,
    Code,
    Identifier,
    LabReport,
    Organization,
    Patient,
    Practitioner,
    Quantity,
    Result,
    Specimen,
)

PARIS = ZoneInfo("Europe/Paris")
SPECIMEN_TYPE = "2.16.840.1.113883.18.311"  # HL7 table 0487
SNOMED = "2.16.840.1.113883.6.96"
FIRST_ID = Identifier("6F1D3A52-8C1B-4E0B-9E43-0A51C1D2B001")
SET_ID = Identifier("6F1D3A52-8C1B-4E0B-9E43-0A51C1D2B000")


def at(day: int, hour: int, minute: int) -> datetime:
    return datetime(2025, 3, day, hour, minute, tzinfo=PARIS)


@cache
def one_page_pdf() -> bytes:
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=A4)
    page.drawString(72, 760, "Compte rendu d'examens biologiques - PAT-TROIS Dominique")
    page.drawString(72, 740, "Glycémie à jeun : 7,2 mmol/L (3,9 - 6,1)")
    page.showPage()
    page.save()
    return buffer.getvalue()


def quantity(code: str, display: str, value: str, unit: str, low: str, high: str,
             interpretation: str = "N", **more: Any) -> Result:
    return Result(code, display, Quantity(Decimal(value), unit), interpretation,
                  Decimal(low), Decimal(high), **more)


def report(**changes: Any) -> LabReport:
    lab = Organization("750012345", "Laboratoire Bilan République",
                       Address(("12 rue des Analyses",), "75011", "PARIS"), ("tel:0143000000",))
    blood = Specimen(Code("BLD", "Sang total", SPECIMEN_TYPE), at(10, 7, 35), at(10, 8, 5))
    serum = Specimen(Code("SER", "Sérum", SPECIMEN_TYPE), at(10, 7, 35), at(10, 8, 5))
    haematology = Chapter("18723-7", "Hématologie", (
        Battery("58410-2", "Numération formule sanguine", (
            quantity("718-7", "Hémoglobine", "13.2", "g/dL", "12.0", "16.0"),
            quantity("6690-2", "Leucocytes", "11.8", "10*9/L", "4.0", "10.0", "H",
                     comment="Hyperleucocytose modérée, à contrôler."),
            quantity("777-3", "Plaquettes", "254", "10*9/L", "150", "400"),
        )),
    ), specimens=(blood,))
    biochemistry = Chapter("18719-5", "Biochimie", (
        quantity("40193-5", "Glycémie à jeun", "7.2", "mmol/L", "3.9", "6.1", "H"),
        Result("2106-3", "hCG qualitative (test de grossesse)",
               Code("260385009", "Négatif", SNOMED), "NEG"),
    ), specimens=(serum,), comment="Glycémie à jeun élevée : à confronter à l'HbA1c.")
    base = LabReport(
        document_id=FIRST_ID, set_id=SET_ID, version=1, effective_time=at(10, 16, 40),
        patient=Patient(
            file_id=Identifier("1.2.3.4.567.8.9.10", "P0001234"), birth_family="PAT-TROIS",
            birth_given=("DOMINIQUE", "MARIE-LOUISE"), sex="F", birth_date=date(1979, 3, 28),
            identity_status="QUAL", ins="279035121518989", ins_system=INS_NIR_TEST,
            birthplace="51215", address=Address(("28 avenue de Breteuil",), "75007", "PARIS")),
        lab=lab,
        biologist=Practitioner("10000000017", "CAMPARINI", "Marcel", MEDICAL_BIOLOGY),
        validated_at=at(10, 16, 30),
        prescriber=Practitioner("10003456786", "CHARLES", "Pascal",
                                Code("G15_10/SM54", "Médecin - Médecine générale (SM)",
                                     "1.2.250.1.213.1.1.4.5")),
        prescribed_at=at(8, 10, 0),
        collector=Practitioner("10000000025", "BLEEDER", "Roberta",
                               Code("G15_60", "Infirmier", "1.2.250.1.213.1.1.4.5")),
        order_id=Identifier("1.2.250.1.213.1.1.9", "2025030800042"),
        request_id=Identifier("1.2.250.1.213.1.1.9", "250310-0007"),
        received_at=at(10, 8, 5),
        chapters=(haematology, biochemistry),
        pdf=one_page_pdf(),
        adaptation=("Ferritine remplacée par la numération formule sanguine : "
                    "bilan martial déjà réalisé il y a 15 jours."),
    )
    return dataclasses.replace(base, **changes)


# An entity bomb: a billion "lol"s in memory for a parser that expanded it.
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE ClinicalDocument [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&lol9;</title></ClinicalDocument>"""
