"""A strict reader for the From header: exactly one mailbox, or a reason why not.

Python's `email.utils` before 3.11.10 reads `a@b.example)<x@c.example>` as a@b.example
(CVE-2023-27043), so this is a small RFC 5322 parser of its own: no groups, no source routes,
no encoded words in the address, nothing after the mailbox but comments and spaces.
"""

from __future__ import annotations

import re
from email.header import decode_header, make_header

# atext of RFC 5322, plus any non-ASCII character (RFC 6532).
_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\U0010ffff]+")
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


class FromError(ValueError):
    """Why a From header does not name exactly one mailbox."""


def strict_from(values: tuple[str, ...]) -> str:
    """The one address (lower-case) of the one From header; raises FromError otherwise."""
    if not values:
        raise FromError("the mail has no From header")
    if len(values) > 1:
        raise FromError(f"the mail has {len(values)} From headers")
    return _Parser(" ".join(values[0].split())).mailbox()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def mailbox(self) -> str:
        self._cfws()
        words = self._phrase()
        self._cfws()
        if self._peek() == "<":
            self._check_display_name(words)
            self.pos += 1
            self._cfws()
            if self._peek() == "@":
                raise FromError("From uses an obsolete source route")
            address = self._addr_spec()
            self._cfws()
            if self._peek() != ">":
                raise FromError("From has an unterminated <address>")
            self.pos += 1
        elif self._peek() == "@" and len(words) == 1:
            self.pos += 1
            address = self._finish_addr_spec(words[0])
        else:
            raise FromError("From names no readable address")
        self._cfws()
        if self.pos < len(self.text):
            if self._peek() == ",":
                raise FromError("From names more than one address")
            rest = self.text[self.pos :][:40]
            raise FromError(f"unexpected text after the From address: {rest!r}")
        return address

    def _check_display_name(self, words: list[str]) -> None:
        name = " ".join(words)
        if _ENCODED_WORD.search(name):
            try:
                name = str(make_header(decode_header(name)))
            except (UnicodeError, LookupError, ValueError):
                raise FromError("From has an undecodable display name") from None
        if "@" in name or "<" in name:
            raise FromError("the From display name contains an address")

    def _addr_spec(self) -> str:
        local = self._word()
        if local is None:
            raise FromError("From has an empty address")
        self._cfws()
        if self._peek() != "@":
            raise FromError("From address has no @")
        self.pos += 1
        return self._finish_addr_spec(local)

    def _finish_addr_spec(self, local: str) -> str:
        if _ENCODED_WORD.search(local):
            raise FromError("From has an encoded word inside the address")
        self._cfws()
        if self._peek() == "[":
            raise FromError("From uses a domain literal")
        found = _ATEXT.match(self.text, self.pos)
        domain = ""
        while found:
            domain += found.group(0)
            self.pos = found.end()
            if self._peek() != ".":
                break
            domain += "."
            self.pos += 1
            found = _ATEXT.match(self.text, self.pos)
        labels = domain.split(".")
        if len(labels) < 2 or not all(labels):
            raise FromError(f"From has an invalid domain {domain!r}")
        if self._peek() == "@":
            raise FromError("From address has more than one @")
        return f"{local}@{domain}".lower()

    def _phrase(self) -> list[str]:
        """Words (atoms, dot-atoms, quoted strings) up to the next special character."""
        words: list[str] = []
        while True:
            self._cfws()
            if self._peek() == ".":  # obs-phrase: "J. Doe"
                self.pos += 1
                words.append(".")
                continue
            word = self._word()
            if word is None:
                return words
            words.append(word)

    def _word(self) -> str | None:
        if self._peek() == '"':
            return self._quoted()
        found = _ATEXT.match(self.text, self.pos)
        if not found:
            return None
        word = found.group(0)
        self.pos = found.end()
        while self._peek() == "." and (nxt := _ATEXT.match(self.text, self.pos + 1)):
            word += "." + nxt.group(0)
            self.pos = nxt.end()
        return word

    def _quoted(self) -> str:
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\" and self.pos < len(self.text):
                out.append(self.text[self.pos])
                self.pos += 1
            elif char == '"':
                return '"' + "".join(out) + '"'
            else:
                out.append(char)
        raise FromError("From has an unterminated quoted string")

    def _cfws(self) -> None:
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char.isspace():
                self.pos += 1
            elif char == "(":
                self._comment()
            else:
                return

    def _comment(self) -> None:
        depth = 0
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\":
                self.pos += 1
            elif char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
                if depth == 0:
                    return
        raise FromError("From has an unterminated comment")

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""
