"""The human view of a CR-BIO: the ANS display stylesheet (feuille-de-style-externe_BIO-CR-BIO.xsl,
XSLT 1.0) turns the CDA into HTML, as a DMP viewer would show it."""

import threading
from copy import deepcopy
from functools import cache

from lxml import etree

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


@cache
def _transform() -> etree.XSLT:
    access = etree.XSLTAccessControl(read_network=False, write_file=False, create_dir=False,
                                     write_network=False)
    return etree.XSLT(etree.parse(str(STYLESHEET), base_url=str(_FOLDER / STYLESHEET.name)),
                      access_control=access)
