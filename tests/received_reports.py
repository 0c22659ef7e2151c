"""Reports a lab may receive besides a CR-BIO like its own, written for bilan's tests (the ANS's
examples of these kinds have no stated licence, so none is copied): a BIO-TROD 2024.01
point-of-care test report laid out as the volet and its schematron ask, an "auto-présentable"
CR-BIO (the CDA inside an XSL stylesheet) and a level-1 CR-BIO (a PDF body). The last two are
made from a document bilan generates (tests/lab_reports.py)."""

import base64
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from xml.sax.saxutils import escape

from lxml import etree
from saxonche import PySaxonProcessor, PyXdmNode, PyXsltExecutable

from tests.helpers import ANS_FIXTURES

V3 = "urn:hl7-org:v3"
LOINC = "2.16.840.1.113883.6.1"
SNOMED = "2.16.840.1.113883.6.96"
TROD_TEMPLATE = "1.2.250.1.213.1.1.1.59"
TROD_INS = "279035121518989"  # the patient of tests/lab_reports.py: PAT-TROIS, born 1979-03-28
PHARMACY = "1750001234"  # "1" + FINESS of the pharmacy that ran the tests
PHARMACIST = "810101010107"  # "8" + RPPS


@dataclass(frozen=True)
class TrodResult:
    """One screening result: its LOINC code, the printed label, when, and a CD or PQ value."""
    code: str
    display: str
    label: str
    effective: str  # a CDA TS: 20250310093000+0100, or a day 20250310
    value: str  # the value element's attributes, e.g. xsi:type="PQ" value="1.250" unit="g/L"
    printed: str  # what the narrative shows as the result
    interpretation: str = ""  # the interpretationCode element's attributes, if any


@dataclass(frozen=True)
class TrodTest:
    """A section of the report: one test kit (its UDI and label) and what it found."""
    chapter: tuple[str, str]  # LOINC code and name of the chapter
    exam: tuple[str, str]  # LOINC code and name of the act
    udi: str
    device: str
    results: tuple[TrodResult, ...]


GLYCAEMIA = TrodTest(
    ("18719-5", "Biochimie"), ("2345-7", "Glucose"), "(01)03760123450017(17)270630(10)GL4521",
    "Glucotest SA | GL-200 | GL4521 | 30/06/2027", (
        TrodResult("41653-7", "Glucose [Masse/Volume] Sang capillaire ; Numérique ; Glucomètre",
                   "Glycémie capillaire", "20250310093000+0100",
                   'xsi:type="PQ" value="1.250" unit="g/L"', "1,250 g/L",
                   f'code="80394007" displayName="hyperglycémie" codeSystem="{SNOMED}"'),
    ))
INFLUENZA_COVID = TrodTest(
    ("18725-2", "Microbiologie"), ("92893-7", "Sérologie virale"), "(01)03760123450024(17)261231(10)VX0077",
    "Viratest SA | VX-3 | VX0077 | 31/12/2026", (
        TrodResult("94558-4", "SARS-CoV-2 Ag [Présence] Voies respiratoires ; Qualitatif ; Immunoanalyse rapide",
                   "Dépistage COVID-19 (antigénique)", "20250310",
                   f'xsi:type="CD" code="260385009" displayName="négatif" codeSystem="{SNOMED}"', "négatif"),
        TrodResult("80382-5", "Influenzavirus A Ag [Présence] Voies respiratoires ; Qualitatif ; Immunoanalyse rapide",
                   "Dépistage grippe A", "20250310",
                   f'xsi:type="CD" code="10828004" displayName="positif" codeSystem="{SNOMED}"', "positif"),
    ))


def trod_report(tests: tuple[TrodTest, ...] = (GLYCAEMIA, INFLUENZA_COVID), ins: str = TROD_INS,
                document_id: str = "1.2.250.1.999.7.59.2025.1") -> bytes:
    """A BIO-TROD 2024.01 report of a pharmacy: each test a chapter section with its device."""
    sections = "".join(_trod_section(n, test) for n, test in enumerate(tests, 1))
    return _TROD.format(ins=ins, id=document_id, pharmacy=PHARMACY, pharmacist=PHARMACIST,
                        template=TROD_TEMPLATE, loinc=LOINC, sections=sections).encode("utf-8")


def _trod_section(n: int, test: TrodTest) -> str:
    rows = "".join(
        f'<tr><td><content ID="examen-{n}-{i}">{escape(r.label)}</content></td>'
        f'<td><content ID="resultat-{n}-{i}">{escape(r.printed)}</content></td></tr>'
        for i, r in enumerate(test.results, 1))
    observations = "".join(f"""
      <entryRelationship typeCode="COMP">
        <observation classCode="OBS" moodCode="EVN">
          <templateId root="1.3.6.1.4.1.19376.1.3.1.6"/>
          <templateId root="1.2.250.1.213.1.1.3.80"/>
          <code code="{r.code}" displayName="{escape(r.display)}" codeSystem="{LOINC}" codeSystemName="LOINC">
            <originalText><reference value="#examen-{n}-{i}"/></originalText>
          </code>
          <statusCode code="completed"/>
          <effectiveTime value="{r.effective}"/>
          {_value(r, f"#resultat-{n}-{i}")}
          {f"<interpretationCode {r.interpretation}/>" if r.interpretation else ""}
        </observation>
      </entryRelationship>""" for i, r in enumerate(test.results, 1))
    return f"""
  <component>
    <section>
      <templateId root="1.3.6.1.4.1.19376.1.3.3.2.1"/>
      <templateId root="1.2.250.1.213.1.1.2.70"/>
      <code code="{test.chapter[0]}" displayName="{test.chapter[1]}" codeSystem="{LOINC}" codeSystemName="LOINC"/>
      <title>{test.chapter[1]} : test rapide d'orientation diagnostique</title>
      <text>
        <table><thead><tr><th>Test</th><th>Résultat</th></tr></thead><tbody>{rows}</tbody></table>
        <paragraph>Dispositif : <content ID="dispositif-{n}">{escape(test.device)}</content></paragraph>
      </text>
      <entry typeCode="DRIV">
        <templateId root="1.3.6.1.4.1.19376.1.3.1"/>
        <templateId root="1.2.250.1.213.1.1.3.21"/>
        <act classCode="ACT" moodCode="EVN">
          <code code="{test.exam[0]}" displayName="{test.exam[1]}" codeSystem="{LOINC}" codeSystemName="LOINC"/>
          <statusCode code="completed"/>
          <participant typeCode="DEV">
            <participantRole classCode="MANU">
              <id root="2.51.1.1" extension="{escape(test.udi)}"/>
              <playingDevice classCode="DEV" determinerCode="INSTANCE">
                <code><originalText><reference value="#dispositif-{n}"/></originalText></code>
              </playingDevice>
            </participantRole>
          </participant>{observations}
        </act>
      </entry>
    </section>
  </component>"""


def _value(result: TrodResult, printed: str) -> str:
    """A CD points at the text the narrative prints; a PQ cannot (it has no originalText)."""
    if 'xsi:type="CD"' not in result.value:
        return f"<value {result.value}/>"
    return f'<value {result.value}><originalText><reference value="{printed}"/></originalText></value>'


_ADDRESS = """<addr><houseNumber>4</houseNumber><streetName>Place du Marché</streetName>
      <postalCode>51100</postalCode><city>REIMS</city></addr>"""
_PHARMACIST = """<id root="1.2.250.1.71.4.2.1" extension="{pharmacist}"/>
      <code code="G15_21/A" displayName="Pharmacien titulaire d'officine" codeSystem="1.2.250.1.213.1.1.4.5"/>
      """ + _ADDRESS + """
      <telecom value="tel:0326000000" use="WP"/>
      <assignedPerson><name><given>Claire</given><family>FONTAINE</family><prefix>MME</prefix></name></assignedPerson>
      <representedOrganization>
        <id root="1.2.250.1.71.4.2.2" extension="{pharmacy}"/>
        <name>Pharmacie du Marché</name>
        <telecom value="tel:0326000000"/>
        """ + _ADDRESS + """
        <standardIndustryClassCode code="DEPISTAGE" displayName="Dépistage" codeSystem="1.2.250.1.213.1.1.4.9"/>
      </representedOrganization>"""
_TROD = """<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <realmCode code="FR"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <templateId root="2.16.840.1.113883.2.8.2.1"/>
  <templateId root="1.3.6.1.4.1.19376.1.5.3.1.1.1"/>
  <templateId root="1.2.250.1.213.1.1.1.1"/>
  <templateId root="{template}" extension="2024.01"/>
  <id root="{id}"/>
  <code code="96173-0" displayName="Test rapide d'orientation diagnostique" codeSystem="{loinc}"/>
  <title>Test rapide d'orientation diagnostique</title>
  <effectiveTime value="20250310094500+0100"/>
  <confidentialityCode code="N" displayName="Normal" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <setId root="{id}.0"/>
  <versionNumber value="1"/>
  <recordTarget><patientRole>
    <id extension="{ins}" root="1.2.250.1.213.1.4.10"/>
    <patient classCode="PSN">
      <name><family qualifier="BR">PAT-TROIS</family><given>DOMINIQUE MARIE-LOUISE</given>
        <given qualifier="BR">DOMINIQUE</given></name>
      <administrativeGenderCode code="F" displayName="Féminin" codeSystem="2.16.840.1.113883.5.1"/>
      <birthTime value="19790328"/>
      <birthplace><place><addr><county>51215</county></addr></place></birthplace>
    </patient>
  </patientRole></recordTarget>
  <author>
    <time value="20250310094500+0100"/>
    <assignedAuthor>""" + _PHARMACIST + """
    </assignedAuthor>
  </author>
  <custodian><assignedCustodian><representedCustodianOrganization>
    <id root="1.2.250.1.71.4.2.2" extension="{pharmacy}"/>
    <name>Pharmacie du Marché</name>
    <telecom value="tel:0326000000"/>
    """ + _ADDRESS + """
  </representedCustodianOrganization></assignedCustodian></custodian>
  <legalAuthenticator>
    <time value="20250310094500+0100"/>
    <signatureCode code="S"/>
    <assignedEntity>""" + _PHARMACIST + """
    </assignedEntity>
  </legalAuthenticator>
  <documentationOf><serviceEvent classCode="ACT">
    <code code="R73.9" displayName="Hyperglycémie, sans précision" codeSystem="2.16.840.1.113883.6.3" codeSystemName="CIM-10"/>
    <effectiveTime><low value="20250310093000+0100"/></effectiveTime>
    <performer typeCode="PRF"><assignedEntity>""" + _PHARMACIST + """
    </assignedEntity></performer>
  </serviceEvent></documentationOf>
  <componentOf><encompassingEncounter>
    <code code="AMB" codeSystem="2.16.840.1.113883.5.4" displayName="Ambulatoire (hors établissement)"/>
    <effectiveTime><low value="20250310093000+0100"/></effectiveTime>
    <location><healthCareFacility>
      <code code="SA33" displayName="Pharmacie d'officine" codeSystem="1.2.250.1.71.4.2.4"/>
    </healthCareFacility></location>
  </encompassingEncounter></componentOf>
  <component><structuredBody>{sections}
  </structuredBody></component>
</ClinicalDocument>
"""


# Auto-présentable and level-1 CR-BIOs, from a CR-BIO bilan wrote

XSL = "http://www.w3.org/1999/XSL/Transform"
SELF_PRESENTING = "urn:asip-sante:ci-sis"


def self_presenting(cda: bytes) -> bytes:
    """The CR-BIO inside an XSL stylesheet that shows it, as an "auto-présentable" document
    travels: the stylesheet (here a small one) points at itself."""
    document = etree.fromstring(cda)
    stylesheet = etree.fromstring(f"""<xsl:stylesheet version="1.0" xmlns:xsl="{XSL}"
        xmlns:data="{SELF_PRESENTING}" xmlns:c="{V3}">
      <data:Contenu/>
      <xsl:output method="html" encoding="UTF-8"/>
      <xsl:template match="/">
        <html><body><h1><xsl:value-of select="//c:ClinicalDocument/c:title"/></h1>
          <xsl:for-each select="//c:section"><h2><xsl:value-of select="c:title"/></h2></xsl:for-each>
        </body></html>
      </xsl:template>
    </xsl:stylesheet>""")
    stylesheet.find(f"{{{SELF_PRESENTING}}}Contenu").append(document)
    return (b'<?xml version="1.0" encoding="UTF-8"?>\n<?xml-stylesheet type="text/xsl" href="#"?>\n'
            + etree.tostring(stylesheet, encoding="utf-8"))


def level_one(cda: bytes, pdf: bytes) -> bytes:
    """The CR-BIO's header with its PDF as the body (nonXMLBody), declared an unstructured
    document (IHE XDS-SD) instead of a CR-BIO, as the ANS's own level-1 example is."""
    document = etree.fromstring(cda)
    for template in document.findall(f"{{{V3}}}templateId"):
        if template.get("root") == "1.2.250.1.213.1.1.1.55":
            template.attrib.clear()
            template.set("root", "1.3.6.1.4.1.19376.1.2.20")
    component = document.find(f"{{{V3}}}component")
    component.clear()
    body = etree.SubElement(component, f"{{{V3}}}nonXMLBody")
    text = etree.SubElement(body, f"{{{V3}}}text", mediaType="application/pdf", representation="B64")
    text.text = base64.b64encode(pdf).decode("ascii")
    return etree.tostring(document, xml_declaration=True, encoding="utf-8")


# The ANS kit's own check of a TROD document: its CDA schema and its BIO-TROD schematron (bilan
# ships neither for this volet; the kit is in ../shared/fixtures). Only the volet's schematron
# is compiled here, never the five profiles conformance.py holds.

KIT = ANS_FIXTURES / "TestContenuCDA-3-0"
TROD_SCHEMATRON = KIT / "schematrons" / "CI-SIS_BIO-TROD_2024.01.sch"
_SVRL = "http://purl.oclc.org/dsdl/svrl"


def trod_problems(document: bytes) -> list[str]:
    """The schema's errors and the TROD schematron's failed asserts; [] when it conforms."""
    schema = _cda_schema()
    problems = [] if schema.validate(etree.fromstring(document)) else [e.message for e in schema.error_log]
    saxon, schematron = _trod_schematron()
    report = schematron.transform_to_string(xdm_node=saxon.parse_xml(xml_text=document.decode("utf-8")))
    svrl = etree.fromstring(report.encode("utf-8"))
    return problems + [" ".join(f.findtext(f"{{{_SVRL}}}text", "").split())
                       for f in svrl.iter(f"{{{_SVRL}}}failed-assert", f"{{{_SVRL}}}successful-report")]


@cache
def _cda_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(KIT / "infrastructure" / "cda" / "CDA_extended.xsd")))


@cache
def _trod_schematron() -> tuple[PySaxonProcessor, PyXsltExecutable]:
    """The schematron compiled as the kit's moteur does (include, expand, to XSLT 2)."""
    saxon = PySaxonProcessor(license=False)
    compiler = saxon.new_xslt30_processor()

    def parse(text: str, location: Path) -> PyXdmNode:
        builder = saxon.new_document_builder()
        builder.set_base_uri(location.as_uri())
        node: PyXdmNode = builder.parse_xml(xml_text=text, encoding="UTF-8")
        return node

    node = parse(TROD_SCHEMATRON.read_text(encoding="utf-8"), TROD_SCHEMATRON)
    for step in ("iso_dsdl_include.xsl", "iso_abstract_expand.xsl", "iso_svrl_for_xslt2.xsl"):
        xslt = compiler.compile_stylesheet(stylesheet_file=str(KIT / "schematrons" / "moteur" / step))
        node = parse(xslt.transform_to_string(xdm_node=node), TROD_SCHEMATRON.with_suffix(".xsl"))
    return saxon, compiler.compile_stylesheet(stylesheet_node=node)
