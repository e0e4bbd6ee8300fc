"""One message as the rules read it: Meta's own words (quoted replies, forwards and quoted
sentences set aside), its sentences folded for the lexicon, memoised set and guard hits, and
the languages the mail is written in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from optout_mail.model import Message
from optout_mail.rules.compiled import Guard, Pack, TermSet
from optout_mail.rules.prefilter import any_in
from optout_mail.rules.text import (
    drop_links,
    drop_quoted_spans,
    fold,
    normalise,
    sentences,
    split_own_words,
)

# Meta's answers say what they mean in the first few paragraphs; looking no further keeps a
# huge mail from a lookalike sender from costing the rules seconds.
RULE_TEXT_CHARS = 32 * 1024


@dataclass
class Texts:
    """One message as the rules see it, with everything computed at most once."""

    subject: str
    body: str  # Meta's own words (quoted replies and forwarded mails set aside), normalised
    html_body: str = ""
    _text: str | None = None
    _guards: dict[str, tuple[str, str] | None] = field(default_factory=dict)
    _folded: dict[str, str] = field(default_factory=dict)
    _sentences: list[str] | None = None
    _set_hits: dict[tuple[str, str], dict[int, str]] = field(default_factory=dict)

    @classmethod
    def of(cls, message: Message) -> Texts:
        own, _quoted = split_own_words(message.text[:RULE_TEXT_CHARS])
        return cls(
            subject=drop_quoted_spans(message.subject[:1000]),
            body=drop_links(drop_quoted_spans(own)),
            html_body=message.html,
        )

    def folded(self, field_name: str) -> str:
        """The field case-folded, for the literal pre-check (memoised)."""
        if field_name not in self._folded:
            self._folded[field_name] = self.get(field_name).casefold()
        return self._folded[field_name]

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = normalise(self.subject) + "\n" + normalise(self.body)
        return self._text

    def get(self, field_name: str) -> str:
        """The field as regex conditions see it: normalised (one line)."""
        key = "norm:" + field_name
        if key not in self._folded:
            if field_name == "text":
                value = self.text
            else:
                value = normalise(self.subject if field_name == "subject" else self.body)
            self._folded[key] = value
        return self._folded[key]

    @property
    def sentences(self) -> list[str]:
        """Folded sentences: the subject first, then the body's."""
        if self._sentences is None:
            self._sentences = [fold(self.subject), *(fold(s) for s in sentences(self.body))]
        return self._sentences

    @property
    def lexical(self) -> str:
        if "lexical" not in self._folded:
            self._folded["lexical"] = "\n".join(self.sentences)
        return self._folded["lexical"]

    def hits(self, term_set: TermSet) -> dict[int, str]:
        """Sentence index -> the term found, for every sentence in which the set occurs."""
        key = (term_set.language, term_set.name)
        if key not in self._set_hits:
            found: dict[int, str] = {}
            if term_set.needles is None or any_in(term_set.needles, self.lexical):
                for index, sentence in enumerate(self.sentences):
                    match = term_set.pattern.search(sentence)
                    if match:
                        found[index] = match.group(0)
            self._set_hits[key] = found
        return self._set_hits[key]

    def guard_hit(self, guard: Guard) -> tuple[str, str] | None:
        """(field, matched text) of the first pattern of `guard` found, memoised per message."""
        if guard.name not in self._guards:
            hit = None
            for field_name, pattern, needles in guard.patterns:
                if needles is not None and not any_in(needles, self.folded(field_name)):
                    continue
                found = pattern.search(self.get(field_name))
                if found:
                    hit = (field_name, found.group(0))
                    break
            self._guards[guard.name] = hit
        return self._guards[guard.name]


# A language is the mail's when its marker words count at least this share of the best one's.
LANGUAGE_SHARE = 0.5
_WORD = re.compile(r"\w+")
# Words whose markers a pack remembers: the common words of nine languages, with room to spare.
MARKER_WORDS_KEPT = 50_000


def mail_languages(pack: Pack, texts: Texts) -> frozenset[str]:
    """The languages the mail is written in, by the distinct marker words of each (the
    `marker` lexicon set); every language of the pack when too few markers say anything."""
    scores = {language: len(found) for language, found in _markers_found(pack, texts).items()}
    best = max(scores.values(), default=0)
    if best < 3:
        return frozenset(pack.lexicons)
    return frozenset(
        lang for lang in pack.lexicons if scores.get(lang, best) >= best * LANGUAGE_SHARE
    )


def _markers_found(pack: Pack, texts: Texts) -> dict[str, set[str]]:
    """Per language, the distinct marker words the mail holds."""
    by_word = pack.word_markers
    found: dict[str, set[str]] = {
        # One pass over the sentences joined by line breaks (no marker spans one).
        language: {m.group(0) for m in marker.pattern.finditer(texts.lexical)}
        for language, marker in pack.markers.items()
        if language not in by_word
    }
    if not by_word:
        return found
    # A marker of these languages matches at a word start and stays inside the word, so the
    # mail's markers are those of its distinct words, each looked up once per pack, instead of
    # an alternation per language run over the whole text.
    found.update((language, set()) for language in by_word)
    known = pack.marker_words
    for word in set(_WORD.findall(texts.lexical)):
        hits = known.get(word)
        if hits is None:
            hits = tuple(
                (language, m.group(0))
                for language in by_word
                if (m := pack.markers[language].pattern.match(word))
            )
            if len(known) < MARKER_WORDS_KEPT:
                known[word] = hits
        for language, marker_word in hits:
            found[language].add(marker_word)
    return found
