"""The human view of a CR-BIO: the ANS display stylesheet (feuille-de-style-externe_BIO-CR-BIO.xsl,
XSLT 1.0) turns the CDA into HTML, as a DMP viewer would show it."""

import threading
from copy import deepcopy
from functools import cache

from lxml import etree
from lxml import html as lxml_html
from lxml.html import builder as E

from bilan.data import CDA_KIT

STYLESHEET = CDA_KIT / "FeuilleDeStyle" / "externe" / "feuille-de-style-externe_BIO-CR-BIO.xsl"
# The stylesheet reads '../cda_l10n.xml' and 'cda_narrativeblock.xml' relative to itself, but
# the kit keeps both in FeuilleDeStyle/: it is parsed as if it lived there.
_FOLDER = STYLESHEET.parent.parent
# An "auto-présentable" document received from elsewhere (docs/imported.md).
_SELF_PRESENTING, _V3 = "{http://www.w3.org/1999/XSL/Transform}stylesheet", "urn:hl7-org:v3"
_TRANSFORMING = threading.Lock()  # an XSLT object keeps its last error log: one run at a time


def html(document: bytes) -> str:
    """The report as the ANS stylesheet renders it (a whole HTML page)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    tree = etree.fromstring(document, parser)
    if tree.tag == _SELF_PRESENTING:  # a CDA inside its own stylesheet: shown with the ANS one
        tree = deepcopy(next(tree.iter(f"{{{_V3}}}ClinicalDocument"), tree))
    with _TRANSFORMING:
        return str(_transform()(tree, vocFile=etree.XSLT.strparam(str(_FOLDER / "cda_l10n.xml"))))


def page(document: bytes, *, back: str, pdf: str | None) -> str:
    """The stylesheet's page made usable on its own, around the stylesheet (never edited): in
    French for screen readers, a title, no unnamed image, a way back to `back`, and the PDF copy
    as a link to `pdf` instead of the base64 <object> the stylesheet writes (a page policy of
    default-src 'none' blocks it, and a PDF inside a page is no help to a screen reader); `pdf`
    None: the document carries no PDF copy."""
    tree = lxml_html.document_fromstring(html(document))
    tree.set("lang", "fr")
    head, body = tree.find("head"), tree.find("body")
    title = head.find("title")
    if title is None:
        title = E.TITLE()
        head.append(title)
    title.text = f"{(title.text or '').strip() or 'Compte rendu de biologie'} — bilan"
    for image in tree.iter("img"):
        if image.get("alt") is None:  # the stylesheet's logo and signature stamp: decoration
            image.set("alt", "")
    for embedded in list(tree.iter("object")) if pdf else ():
        if (embedded.get("type") or "").lower() == "application/pdf":
            link = E.P(E.A("Ouvrir la copie PDF du compte rendu", href=pdf, id="copie-pdf"))
            link.tail = embedded.tail
            embedded.getparent().replace(embedded, link)
    head.append(E.STYLE(_BAR_STYLE))
    main = E.MAIN(id="contenu")
    main.text, body.text = body.text, None
    for child in list(body):
        main.append(child)
    links = [E.A("← Retour", href=back), *((" · ", E.A("Copie PDF", href=pdf)) if pdf else ())]
    body.append(E.NAV(*links, **{"class": "bilan-barre", "aria-label": "Compte rendu"}))
    body.append(main)
    return str(lxml_html.tostring(tree, doctype="<!DOCTYPE html>", encoding="unicode"))


_BAR_STYLE = """
.bilan-barre { font-family: system-ui, sans-serif; background: #000091; padding: .6rem 1rem; margin: -8px -8px 1rem; }
.bilan-barre a { color: #fff; }
.bilan-barre a:focus-visible { outline: 3px solid #fff; outline-offset: 2px; }
"""


@cache
def _transform() -> etree.XSLT:
    access = etree.XSLTAccessControl(read_network=False, write_file=False, create_dir=False,
                                     write_network=False)
    return etree.XSLT(etree.parse(str(STYLESHEET), base_url=str(_FOLDER / STYLESHEET.name)),
                      access_control=access)
