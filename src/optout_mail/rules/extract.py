"""Extracting what a mail carries besides its meaning: the one-time code and Meta's case or
reference number, found near the lexicon terms that announce them ("your code", "case number").
"""

from __future__ import annotations

import re

# 6 to 8 digits, possibly written in two groups ("714 093", "2759-0614"), not part of a longer
# number, a date, a time or an amount.
_CODE = re.compile(r"(?<![\d.,:/+])(\d{3,8}(?:[ \u00a0-]\d{3,4})?)(?!\d|[.,:/]\d)")
# A case number may be written in groups of digits ("8840 2291 5573"): one reference.
_REFERENCE = re.compile(r"(?<![\w-])(#?[a-z0-9][a-z0-9-]{3,30}(?: \d{3,4}(?![\w-]))*)(?![\w-])")
# Sentences after the one that announces a code in which the code may stand on its own.
_FOLLOWING = 2


def extract_code(sentences: list[str], near: dict[int, str]) -> str | None:
    """The first code in or just after a sentence that announces one."""
    for index in sorted(near):
        for candidate in sentences[index : index + 1 + _FOLLOWING]:
            after = candidate
            if candidate is sentences[index]:
                # In the announcing sentence, look from the announcing word on first.
                position = candidate.find(near[index])
                after = candidate[position:] + " " + candidate[:position]
            found = _first_code(after)
            if found:
                return found
    return None


def _first_code(text: str) -> str | None:
    for match in _CODE.finditer(text):
        digits = re.sub(r"\D", "", match.group(1))
        if 6 <= len(digits) <= 8:
            return digits
    return None


def extract_reference(sentences: list[str], near: dict[int, str]) -> str | None:
    """A case or reference number: a token with a digit right after the announcing term."""
    for index in sorted(near):
        sentence = sentences[index]
        position = sentence.find(near[index]) + len(near[index])
        for match in _REFERENCE.finditer(sentence[position : position + 60]):
            token = match.group(1).lstrip("#").replace(" ", "")
            if sum(ch.isdigit() for ch in token) >= 4:
                return token.upper() if not token.isdigit() else token
    return None
