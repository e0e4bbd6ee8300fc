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
    extract: ExtractSpec = ExtractSpec()


class RuleFileSpec(_Strict):
    language: Annotated[str, Field(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")]
    guards: dict[str, GuardSpec] = Field(default_factory=dict)
    rule: list[dict[str, object]] = Field(default_factory=list)  # validated one by one


class PackInfoSpec(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9_-]+$")]
    description: str = ""


class LookalikeSpec(_Strict):
    words: list[str] = Field(default_factory=list)


class PackFileSpec(_Strict):
    pack: PackInfoSpec
    senders: dict[str, str] = Field(min_length=1)
    lookalike: LookalikeSpec = LookalikeSpec()
    guards: dict[str, GuardSpec] = Field(default_factory=dict)
