"""The text rules read: folded for matching, cut into sentences, Meta's own words kept apart.

`fold` makes matching forgiving (NFKC, casefold, accents off, plain quotes, one space);
`split_own_words` sets quoted replies and forwarded mails aside; `sentences` cuts what remains
where a person would stop reading: at line breaks and at the end of a sentence.
"""

from __future__ import annotations

import re
import unicodedata

_TYPOGRAPHY = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u02bc": "'",
        "\u00b4": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2039": '"',
        "\u203a": '"',
        "\u00ad": None,
        "\u200b": None,
        "\u200c": None,
        "\u200d": None,
        "\u2060": None,
        "\ufeff": None,
    }
)
# Letters that NFKD does not take apart but people type without the diacritic anyway.
_PLAIN_LETTERS = str.maketrans({"ł": "l", "ø": "o", "đ": "d", "ı": "i", "æ": "ae", "œ": "oe"})


def normalise(text: str) -> str:
    """NFC, plain quotes, one space for any run of whitespace (the text regex rules see)."""
    return " ".join(unicodedata.normalize("NFC", text).translate(_TYPOGRAPHY).split())


def fold(text: str) -> str:
    """Text for lexicon matching: NFKC, case-folded, accents and typography off, one space."""
    folded = unicodedata.normalize("NFKC", text).translate(_TYPOGRAPHY).casefold()
    if not folded.isascii():  # ASCII has no accents to strip: most of Meta's mail, quickly
        decomposed = unicodedata.normalize("NFKD", folded)
        folded = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(folded.translate(_PLAIN_LETTERS).split())


# A line that starts a quoted or forwarded mail, in the languages of the packs and as the common
# mail programs write it. Everything from such a line on is somebody else's text.
_QUOTE_START = re.compile(
    r"""^\s*(?:
        -{2,}\s*(?:forwarded\ message|original\ message|weitergeleitete\ nachricht
            |urspr[uü]ngliche\ nachricht|message\ transf[eé]r[eé]|message\ d'origine
            |mensaje\ (?:reenviado|original)|messaggio\ (?:inoltrato|originale)
            |doorgestuurd\ bericht|oorspronkelijk\ bericht
            |wiadomo[sś][cć]\ (?:przekazana|oryginalna)
            |mensagem\ (?:encaminhada|original)|vidarebefordrat\ meddelande
            |ursprungligt\ meddelande)\s*-*
        |begin\ forwarded\ message
        |(?:on|am|le|el|il|op|em|den|w\ dniu|dnia)\b.{4,200}?
            (?:wrote|schrieb|a\ [eé]crit|escribi[oó]|ha\ scritto|schreef|escreveu|skrev|napisa[lł])
            \s*:\s*$
        |(?:from|von|de|da|van|od|fr[aå]n)\s*:\s.+\s(?:sent|gesendet|envoy[eé]|enviado|inviato
            |verzonden|wys[lł]ano|skickat)\s*:
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_HEADER_BLOCK = re.compile(r"^\s*(?:from|von|de|da|van|od|fr[aå]n)\s*:\s*\S", re.IGNORECASE)
_SENT_LINE = re.compile(
    r"^\s*(?:sent|date|gesendet|datum|envoy[eé]|enviado|fecha|inviato|data|verzonden|wys[lł]ano"
    r"|skickat)\s*:",
    re.IGNORECASE,
)


def split_own_words(text: str) -> tuple[str, str]:
    """(the sender's own words, the quoted and forwarded rest) of a plain-text body."""
    own: list[str] = []
    quoted: list[str] = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.lstrip().startswith(">"):
            quoted.append(line)
            continue
        if _QUOTE_START.match(line) or _starts_header_block(lines, index):
            quoted.extend(lines[index:])
            break
        own.append(line)
    return "\n".join(own), "\n".join(quoted)


def _starts_header_block(lines: list[str], index: int) -> bool:
    """An Outlook-style quoted header: "From: …" followed within two lines by "Sent: …"."""
    if not _HEADER_BLOCK.match(lines[index]):
        return False
    return any(_SENT_LINE.match(line) for line in lines[index + 1 : index + 3])


# A sentence ends at . ! ? ; followed by space, also behind a closing quote (`.” Then`).
_SENTENCE_END = re.compile(r"(?<=[.!?;])['\"”’»)]*\s+|\s+[-–—•|]\s+")


_LIST_ITEM = re.compile(r"^\s*(?:[-–—•*·▪◦]|\d{1,2}[.)]|[a-z][.)])\s+", re.IGNORECASE)


def sentences(text: str) -> list[str]:
    """Sentences of `text` (already folded or not): cut at line breaks and sentence ends. A
    list that an unfinished line announces ("please send us:" - the prompts - a screenshot)
    stays with that line, as one sentence."""
    out: list[str] = []
    announcing = False
    for line in text.splitlines():
        if announcing and _LIST_ITEM.match(line) and out:
            out[-1] = f"{out[-1]} {_LIST_ITEM.sub('', line).strip()}"
            continue
        stripped = line.strip()
        if stripped:
            # An unfinished line ("please send us", "we need:") announces what follows.
            announcing = not stripped.endswith((".", "!", "?")) or (
                announcing and bool(_LIST_ITEM.match(line))
            )
        for part in _SENTENCE_END.split(line):
            part = part.strip()
            if part:
                out.append(part)
    return out


# Text between double quotes that runs for several words is somebody else's: the comment, post
# or message a Meta notification quotes, or a forwarded phrase. Meta's own answer never stands
# in quotes, so such spans are set aside like quoted replies. A span closes with the mark that
# pairs with its opening one, so a quote inside a quote ("ha ha, «your objection …»") stays in.
_QUOTE_PAIRS = (
    ('"', '"'),
    ("\u201c", "\u201d\u201c"),  # “…” (and “…“)
    ("\u201e", "\u201c\u201d"),  # „…“
    ("\u201d", "\u201d"),  # ”…” (Swedish, Finnish)
    ("\u00ab", "\u00bb"),  # «…»
    ("\u00bb", "\u00ab"),  # »…«
    ("\u2039", "\u203a"),  # ‹…›
)
_QUOTED_SPAN = re.compile(
    "|".join(f"{o}([^{o}{c}\n]{{12,800}}?)[{c}]" for o, c in _QUOTE_PAIRS),
)
_SENTENCE_LIKE = re.compile(r"[.!?:;]|\d{3}")
QUOTE_MIN_WORDS = 12


def drop_quoted_spans(text: str) -> str:
    """`text` with quoted sentences replaced by a marker. A quoted name (a form's title, a
    menu item) stays: it has no sentence punctuation or number and is short."""

    def replace(match: re.Match[str]) -> str:
        inner = next(group for group in match.groups() if group is not None)
        words = len(inner.split())
        sentence = bool(_SENTENCE_LIKE.search(inner))
        if words >= 3 and (sentence or words >= QUOTE_MIN_WORDS):
            return " [...] "
        return match.group(0)

    return _QUOTED_SPAN.sub(replace, text)


_LINK = re.compile(r"(?:https?://|www\.)\S+|\S+@\S+\.\w+", re.IGNORECASE)


def drop_links(text: str) -> str:
    """Links and addresses replaced by a marker: their random words and digits ("bcode=",
    story ids) are no part of what a mail says."""
    return _LINK.sub(" [link] ", text)
