"""HTML to the text a person sees: block elements become line breaks; scripts, styles and
elements hidden from the reader (display:none, visibility:hidden, zero size, white on white)
vanish, so that text nobody can see never decides what a mail means.
"""

from __future__ import annotations

import re

MAX_HTML_CHARS = 256 * 1024

_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?:\.0*)?(?:px|pt|em|rem|%)?\s*(?:;|$|!)"
    r"|max-height\s*:\s*0(?:px)?\s*(?:;|$|!)|opacity\s*:\s*0(?:\.0*)?\s*(?:;|$|!)"
    r"|(?<![-\w])color\s*:\s*(?:#f{3}(?:f{3})?|white|rgb\(\s*255\s*,\s*255\s*,\s*255\s*\))\b",
    re.IGNORECASE,
)
_BLOCKS = ("p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "td")


def html_to_text(html: str) -> str:
    """Readable text from an HTML body, without what the reader cannot see."""
    from bs4 import BeautifulSoup  # imported here: costs ~30 ms and few commands need it

    soup = BeautifulSoup(html[:MAX_HTML_CHARS], "html.parser")
    for tag in soup(["script", "style", "head", "title", "template"]):
        tag.decompose()
    for tag in soup.find_all(_is_hidden):
        tag.decompose()
    lines = (line.strip() for line in soup.get_text("\n").splitlines())
    return "\n".join(line for line in lines if line)


def _is_hidden(tag: object) -> bool:
    attrs = getattr(tag, "attrs", None)
    if not isinstance(attrs, dict):
        return False
    if "hidden" in attrs:
        return True
    style = attrs.get("style")
    return isinstance(style, str) and bool(_HIDDEN_STYLE.search(style))
