"""Showing the lab's own documents to a learner: the parts that matter, without this machine's paths.

libvirt's domain XML runs to a hundred lines of controllers and PCI addresses; a lab shows
the few elements it talks about.  Paths under the lab's home and cache folders are written
as ``$CLOUDLAB_HOME`` and ``$CLOUDLAB_CACHE``, so a stored notebook holds no path of the
machine it was run on.
"""

import xml.etree.ElementTree as ET

from .. import config
from ..errors import InvalidInput


def without_machine_paths(text):
    """``text`` with the lab's home and cache folders written as ``$CLOUDLAB_HOME`` and ``$CLOUDLAB_CACHE``."""
    for folder, name in ((config.home(), "$CLOUDLAB_HOME"), (config.cache(), "$CLOUDLAB_CACHE")):
        text = text.replace(str(folder.resolve()), name).replace(str(folder), name)
    return text


def xml_excerpt(xml, *paths):
    """The elements of ``xml`` found at ``paths`` (ElementTree paths such as ``devices/disk``), indented.

    Args:
        xml: an XML document as text (e.g. ``server.domain_xml()``).
        paths: element paths relative to the root; each element found is shown whole.
    Raises:
        InvalidInput: the text is not XML, or a path matches nothing.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise InvalidInput(f"not an XML document: {exc}") from None
    parts = [f"<{root.tag} type='{root.get('type')}'>" if root.get("type") else f"<{root.tag}>"]
    for path in paths:
        found = root.findall(path)
        if not found:
            raise InvalidInput(f"the XML has no element at {path!r}",
                               fix=f"its top-level elements are: {', '.join(sorted({c.tag for c in root}))}")
        for element in found:
            element = ET.fromstring(ET.tostring(element))      # a copy: indenting must not change the document
            element.tail = None
            ET.indent(element, space="  ")
            parts.append("\n".join("  " + line for line in ET.tostring(element, encoding="unicode").splitlines()))
    parts.append(f"</{root.tag}>")
    return without_machine_paths("\n".join(parts))
