"""The rule-pack file format: pydantic specs of `pack.toml` and of the rule files.

Validation only, so that a typo is an error that names its place; `load` turns these specs
into the compiled types of `compiled`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from optout_mail.model import Kind, Outcome


def _as_list(value: object) -> object:
    return [value] if isinstance(value, str) else value


Patterns = Annotated[list[str], BeforeValidator(_as_list)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConditionSpec(_Strict):
    all: Patterns = Field(default_factory=list)
    any: Patterns = Field(default_factory=list)
    none: Patterns = Field(default_factory=list)


class GuardConditionSpec(_Strict):
    any: Patterns = Field(default_factory=list)


class GuardSpec(_Strict):
    description: str = ""
    subject: GuardConditionSpec = GuardConditionSpec()
    body: GuardConditionSpec = GuardConditionSpec()
    text: GuardConditionSpec = GuardConditionSpec()


class ExtractSpec(_Strict):
    code: Patterns = Field(default_factory=list)
    reference: Patterns = Field(default_factory=list)
    # Lexicon sets near which the built-in extractors look: the digits of a one-time code
    # (6 to 8, possibly split by one space or hyphen), or a case/reference number.
    code_near: str | None = None
    reference_near: str | None = None


def _as_clauses(value: object) -> object:
    return [value] if isinstance(value, dict) else value


class ClauseSpec(_Strict):
    """Lexicon sets that must (`all`, `any`) or must not (`none`) occur together.

    An entry names a set of the rule file's lexicon, or several joined by `|` (either set).
    """

    all: Patterns = Field(default_factory=list)
    any: Patterns = Field(default_factory=list)
    none: Patterns = Field(default_factory=list)
    # Sets that must occur nowhere in the mail for this clause to count: a weak signal
    # ("we won't use your information") is an answer only when no sentence refuses or asks.
    # "a+b" means both in one sentence that is not conditional.
    mail_none: Patterns = Field(default_factory=list)


Clauses = Annotated[list[ClauseSpec], BeforeValidator(_as_clauses)]


class RuleSpec(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")]
    description: Annotated[str, Field(min_length=1)]
    outcome: Outcome
    kind: Kind
    priority: Annotated[int, Field(ge=0, le=1000)]
    source: Literal["seen", "reported", "translated", "guess"]
    source_note: str = ""
    platform: str | None = None
    sender: list[str] = Field(default_factory=list)
    unless: list[str] = Field(default_factory=list)
    requires: list[str] = Field(default_factory=list)
    extends_deadline: bool = False
    subject: ConditionSpec = ConditionSpec()
    body: ConditionSpec = ConditionSpec()
    text: ConditionSpec = ConditionSpec()
    # Lexicon conditions on Meta's own words: one clause of `sentence` must hold within a
    # single sentence (or the subject); `mail` holds anywhere in the mail.
    sentence: Clauses = Field(default_factory=list)
    mail: ClauseSpec = ClauseSpec()
    extract: ExtractSpec = ExtractSpec()


Lexicon = dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], Patterns]


class RuleFileSpec(_Strict):
    language: Annotated[str, Field(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")]
    lexicon: Lexicon = Field(default_factory=dict)
    guards: dict[str, GuardSpec] = Field(default_factory=dict)
    rule: list[dict[str, object]] = Field(default_factory=list)  # validated one by one


class PackInfoSpec(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9_-]+$")]
    description: str = ""
    # Guards that veto every answer (and `unclear`): mails that are never Meta answering a
    # request, e.g. social notifications quoting other people, log-in codes, announcements.
    never_an_answer: list[str] = Field(default_factory=list)


class LookalikeSpec(_Strict):
    words: list[str] = Field(default_factory=list)


class PackFileSpec(_Strict):
    pack: PackInfoSpec
    senders: dict[str, str] = Field(min_length=1)
    lookalike: LookalikeSpec = LookalikeSpec()
    lexicon: Lexicon = Field(default_factory=dict)  # sets every language file can use
    guards: dict[str, GuardSpec] = Field(default_factory=dict)
