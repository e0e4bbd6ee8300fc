"""Rule packs: load and lint the TOML files, classify a `Message`, explain the decision.

A pack declares its sender domains, lookalike words and guards; its rules match patterns in
the subject and body. Everything here is pure: files are read once by `load_rule_set`, and
`classify` is a function of the message and the loaded rules.
"""

from __future__ import annotations

import importlib
import re
import tomllib
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from optout_mail.errors import RuleError
from optout_mail.model import Classification, Kind, Message, Outcome

# ---------------------------------------------------------------------------------------------
# The file format, validated by pydantic so that a typo is an error that names its place.


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


# ---------------------------------------------------------------------------------------------
# Compiled form.

_FLAGS = re.IGNORECASE | re.UNICODE
# Meta's answers say what they mean in the first few paragraphs; looking no further keeps a
# huge mail from a lookalike sender from costing the rules seconds.
RULE_TEXT_CHARS = 32 * 1024
_FIELDS = ("subject", "body", "text")


@dataclass(frozen=True)
class Condition:
    field: str  # subject | body | text
    mode: str  # all | any | none
    patterns: tuple[re.Pattern[str], ...]
    # per pattern: strings of which a match must contain one (see `required_literal`)
    literals: tuple[tuple[str, ...] | None, ...] = ()

    def search(self, index: int, texts: _Texts) -> re.Match[str] | None:
        needles = self.literals[index] if self.literals else None
        if needles is not None and not _any_in(needles, texts.folded(self.field)):
            return None  # plain substring tests are far cheaper than a regex scan
        return self.patterns[index].search(texts.get(self.field))


@dataclass(frozen=True)
class Guard:
    name: str
    description: str
    patterns: tuple[tuple[str, re.Pattern[str], tuple[str, ...] | None], ...]  # field, re, needles


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    outcome: Outcome
    kind: Kind
    priority: int
    language: str
    source: str
    source_note: str
    platform: str | None
    senders: tuple[str, ...]
    unless: tuple[str, ...]
    requires: tuple[str, ...]
    extends_deadline: bool
    conditions: tuple[Condition, ...]
    extract_code: tuple[re.Pattern[str], ...]
    extract_reference: tuple[re.Pattern[str], ...]
    path: str
    # strings of which the mail must contain one for the rule to have any chance: a fast skip
    gate: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Pack:
    id: str
    description: str
    path: str
    senders: dict[str, str]  # domain -> platform
    lookalike_words: tuple[str, ...]
    guards: dict[str, Guard]
    rules: tuple[Rule, ...]  # sorted: highest priority first, then id

    def sender_platform(self, domain: str) -> str | None:
        """The platform of a sender domain when the pack covers it (longest suffix wins)."""
        best: tuple[int, str] | None = None
        for sender, platform in self.senders.items():
            if (domain == sender or domain.endswith("." + sender)) and (
                best is None or len(sender) > best[0]
            ):
                best = (len(sender), platform)
        return best[1] if best else None

    def lookalike_platform(self, domain: str) -> str | None:
        """The platform a non-Meta domain imitates, or None when it does not look like Meta."""
        if not domain or self.sender_platform(domain) is not None:
            return None
        folded = _fold_homoglyphs(domain)
        for token in re.split(r"[^a-z]+", folded):
            for word in self.lookalike_words:
                if word in token or (len(word) >= 6 and _within_one_edit(token, word)):
                    return self._platform_of_word(word)
        return None

    def _platform_of_word(self, word: str) -> str:
        for sender, platform in sorted(self.senders.items()):
            if word in sender.split("."):
                return platform
        for sender, platform in sorted(self.senders.items()):
            if word in sender:
                return platform
        return next(iter(self.senders.values()))


@dataclass(frozen=True)
class RuleSet:
    packs: tuple[Pack, ...]

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(rule for pack in self.packs for rule in pack.rules)

    def lookalike_words(self) -> tuple[str, ...]:
        return tuple(sorted({w for pack in self.packs for w in pack.lookalike_words}))

    def sender_domains(self) -> tuple[str, ...]:
        """Every pack's sender domains, sorted: the server-side search terms."""
        return tuple(sorted({d for pack in self.packs for d in pack.senders}))


# ---------------------------------------------------------------------------------------------
# Loading and linting.


def bundled_rules_dir() -> Path:
    """The packs shipped with optout-mail (inside the wheel, or `rules/` in a checkout)."""
    installed = Path(__file__).with_name("rules")
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parents[2] / "rules"


def pack_dirs(roots: Iterable[Path]) -> list[Path]:
    """Pack folders: each root that holds a pack.toml, else its subfolders that do."""
    found: list[Path] = []
    for root in roots:
        if (root / "pack.toml").is_file():
            found.append(root)
        elif root.is_dir():
            found.extend(sorted(p.parent for p in root.glob("*/pack.toml")))
    return found


def load_rule_set(extra_dirs: Iterable[Path] = (), *, include_bundled: bool = True) -> RuleSet:
    """Load, compile and lint every pack. Raises RuleError listing every problem found."""
    roots = ([bundled_rules_dir()] if include_bundled else []) + list(extra_dirs)
    problems: list[str] = []
    for root in roots:
        if not root.is_dir():
            problems.append(f"{root}: rule folder not found")
        elif not pack_dirs([root]):
            problems.append(f"{root}: no pack.toml in it or in its subfolders")
    packs = [pack for d in pack_dirs(roots) if (pack := _load_pack(d, problems)) is not None]
    problems.extend(_lint_rule_set(packs))
    if problems:
        raise RuleError(
            f"the rule packs have {len(problems)} problem{'s' if len(problems) > 1 else ''}",
            problems=problems,
            hint="fix the files named above; `optout-mail rules check` lints them again",
        )
    return RuleSet(packs=tuple(packs))


def _read_toml(path: Path, problems: list[str]) -> dict[str, object] | None:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path}: not valid TOML: {exc}")
    except OSError as exc:
        problems.append(f"{path}: cannot be read: {exc.strerror}")
    return None


def _validation_problems(
    path: Path, data: dict[str, object], exc: ValidationError, rule_index: int | None = None
) -> list[str]:
    rules = data.get("rule")
    out = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = list(error["loc"])
        if rule_index is not None:
            loc = ["rule", rule_index, *loc]
        where = ""
        if len(loc) >= 2 and loc[0] == "rule" and isinstance(loc[1], int):
            rule_id = None
            if isinstance(rules, list) and loc[1] < len(rules) and isinstance(rules[loc[1]], dict):
                rule_id = rules[loc[1]].get("id")
            where = f" rule {rule_id or '#' + str(loc[1] + 1)}:"
            loc = loc[2:]
        key = ".".join(str(part) for part in loc)
        out.append(f"{path}:{where} {key}: {error['msg']}")
    return out


def _load_pack(directory: Path, problems: list[str]) -> Pack | None:
    pack_path = directory / "pack.toml"
    raw = _read_toml(pack_path, problems)
    if raw is None:
        return None
    try:
        spec = PackFileSpec.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_validation_problems(pack_path, raw, exc))
        return None
    senders = {d.lower().strip("."): p for d, p in spec.senders.items()}
    guard_patterns: dict[str, list[tuple[str, re.Pattern[str], tuple[str, ...] | None]]] = {}
    guard_text: dict[str, str] = {}
    _add_guards(pack_path, spec.guards, guard_patterns, guard_text, problems)
    rules: list[Rule] = []
    guard_refs: list[tuple[Path, str, list[str]]] = []
    for path in sorted(directory.glob("*.toml")):
        if path.name != "pack.toml":
            spec_guards, file_rules = _load_rule_file(path, senders, guard_refs, problems)
            _add_guards(path, spec_guards, guard_patterns, guard_text, problems)
            rules.extend(file_rules)
    guards = {
        name: Guard(name=name, description=guard_text.get(name, ""), patterns=tuple(patterns))
        for name, patterns in guard_patterns.items()
    }
    for path, rule_id, names in guard_refs:
        for name in names:
            if name not in guards:
                problems.append(f"{path}: rule {rule_id}: unknown guard {name!r}")
            elif not guards[name].patterns:
                problems.append(f"{path}: rule {rule_id}: guard {name!r} has no patterns")
    rules.sort(key=lambda r: (-r.priority, r.id))
    return Pack(
        id=spec.pack.id,
        description=spec.pack.description,
        path=str(directory),
        senders=senders,
        lookalike_words=tuple(w.lower() for w in spec.lookalike.words),
        guards=guards,
        rules=tuple(rules),
    )


def _load_rule_file(
    path: Path,
    senders: dict[str, str],
    guard_refs: list[tuple[Path, str, list[str]]],
    problems: list[str],
) -> tuple[dict[str, GuardSpec], list[Rule]]:
    raw_file = _read_toml(path, problems)
    if raw_file is None:
        return {}, []
    try:
        file_spec = RuleFileSpec.model_validate(raw_file)
    except ValidationError as exc:
        problems.extend(_validation_problems(path, raw_file, exc))
        return {}, []
    rules = []
    for index, raw_rule in enumerate(file_spec.rule):
        # Each rule on its own, so that one broken rule does not hide the others' problems.
        try:
            rule_spec = RuleSpec.model_validate(raw_rule)
        except ValidationError as exc:
            problems.extend(_validation_problems(path, {"rule": file_spec.rule}, exc, index))
            continue
        guard_refs.append((path, rule_spec.id, [*rule_spec.unless, *rule_spec.requires]))
        rule = _compile_rule(path, file_spec.language, rule_spec, senders, problems)
        if rule is not None:
            rules.append(rule)
    return file_spec.guards, rules


def _add_guards(
    path: Path,
    specs: dict[str, GuardSpec],
    patterns: dict[str, list[tuple[str, re.Pattern[str], tuple[str, ...] | None]]],
    descriptions: dict[str, str],
    problems: list[str],
) -> None:
    for name, spec in specs.items():
        bucket = patterns.setdefault(name, [])
        if spec.description:
            descriptions[name] = spec.description
        for field_name in _FIELDS:
            for source in getattr(spec, field_name).any:
                compiled = _compile(source, f"{path}: guard {name}", problems)
                if compiled is not None:
                    bucket.append((field_name, compiled, required_literal(compiled)))


_sre_parser: Any = importlib.import_module("re._parser")


def required_literal(pattern: re.Pattern[str]) -> tuple[str, ...] | None:
    """Plain strings of which every match must contain at least one, case-folded; None when
    there are none worth testing. A cheap pre-check before the regex scan (the classic
    prefilter of regex engines); when in doubt it returns None, which only costs speed."""
    try:
        parsed = _sre_parser.parse(pattern.pattern, pattern.flags)
    except Exception:  # a private module of the standard library: never let it break matching
        return None
    needles = _needles(list(parsed))
    if not needles or min(len(n.strip()) for n in needles) < 3:
        return None
    return tuple(n.casefold() for n in needles)


def _needles(items: list[Any]) -> tuple[str, ...] | None:
    """The best requirement of a parsed sequence: a literal run, or one group's alternatives."""
    candidates: list[tuple[str, ...]] = []
    run: list[str] = []
    for op, argument in items:
        if op is _sre_parser.LITERAL:
            run.append(chr(argument))
            continue
        if run:
            candidates.append(("".join(run),))
            run = []
        if op is _sre_parser.SUBPATTERN:
            inner = _needles(list(argument[-1]))
        elif op is _sre_parser.BRANCH:
            branches = [_needles(list(branch)) for branch in argument[1]]
            inner = None if any(b is None for b in branches) else tuple(
                n for b in branches if b for n in b)
        else:
            inner = None
        if inner:
            candidates.append(inner)
    if run:
        candidates.append(("".join(run),))
    # The most selective requirement: the one whose shortest alternative is longest.
    return max(candidates, key=lambda c: (min(map(len, c)), -len(c)), default=None)


def _compile(source: str, where: str, problems: list[str]) -> re.Pattern[str] | None:
    try:
        return re.compile(source, _FLAGS)
    except re.error as exc:
        problems.append(f"{where}: bad pattern {source!r}: {exc}")
        return None


def _compile_rule(
    path: Path, language: str, spec: RuleSpec, senders: dict[str, str], problems: list[str]
) -> Rule | None:
    where = f"{path}: rule {spec.id}"
    before = len(problems)
    conditions = []
    for field_name in _FIELDS:
        cond_spec: ConditionSpec = getattr(spec, field_name)
        for mode in ("all", "any", "none"):
            sources: list[str] = getattr(cond_spec, mode)
            if sources:
                compiled = [_compile(s, where, problems) for s in sources]
                patterns = tuple(p for p in compiled if p is not None)
                conditions.append(Condition(
                    field=field_name, mode=mode, patterns=patterns,
                    literals=tuple(required_literal(p) for p in patterns),
                ))
    if not any(c.mode in ("all", "any") for c in conditions) and not spec.requires:
        problems.append(f"{where}: needs at least one `all` or `any` pattern")
    extract_code = tuple(p for s in spec.extract.code if (p := _compile(s, where, problems)))
    extract_ref = tuple(p for s in spec.extract.reference if (p := _compile(s, where, problems)))
    all_patterns = [p for c in conditions if c.mode != "none" for p in c.patterns]
    if spec.outcome is Outcome.CODE and not any(
        "code" in p.groupindex for p in all_patterns + list(extract_code)
    ):
        problems.append(f"{where}: outcome 'code' needs a (?P<code>...) group to extract the code")
    for domain in spec.sender:
        if not any(domain == d or domain.endswith("." + d) for d in senders):
            problems.append(f"{where}: sender {domain!r} is not one of the pack's senders")
    if len(problems) > before:
        return None
    # Cheap conditions first: `all` fails fastest, `none` needs a full scan to succeed.
    conditions.sort(key=lambda c: ("all", "any", "none").index(c.mode))
    gate = _gate(conditions)
    return Rule(
        id=spec.id,
        description=spec.description,
        outcome=spec.outcome,
        kind=spec.kind,
        priority=spec.priority,
        language=language,
        source=spec.source,
        source_note=spec.source_note,
        platform=spec.platform,
        senders=tuple(d.lower() for d in spec.sender),
        unless=tuple(spec.unless),
        requires=tuple(spec.requires),
        extends_deadline=spec.extends_deadline,
        conditions=tuple(conditions),
        extract_code=extract_code,
        extract_reference=extract_ref,
        path=str(path),
        gate=gate,
    )


def _gate(conditions: list[Condition]) -> tuple[str, ...] | None:
    """The most selective requirement among the rule's `all` and `any` conditions."""
    options: list[tuple[str, ...]] = []
    for cond in conditions:
        if cond.mode == "all":
            options.extend(n for n in cond.literals if n)
        elif cond.mode == "any" and cond.literals and all(cond.literals):
            options.append(tuple(n for needles in cond.literals if needles for n in needles))
    return max(options, key=lambda o: (min(map(len, o)), -len(o)), default=None)


def _lint_rule_set(packs: list[Pack]) -> list[str]:
    problems = []
    seen: dict[str, str] = {}
    for pack in packs:
        for rule in pack.rules:
            if rule.id in seen:
                problems.append(f"{rule.path}: rule {rule.id}: id already used in {seen[rule.id]}")
            seen[rule.id] = rule.path
        for i, a in enumerate(pack.rules):
            for b in pack.rules[i + 1 :]:
                if b.priority != a.priority:
                    break  # rules are sorted by priority
                if (a.outcome, a.kind) != (b.outcome, b.kind) and _senders_overlap(a, b):
                    problems.append(
                        f"{b.path}: rule {b.id}: same priority {b.priority} as {a.id} "
                        f"({a.path}) but a different outcome or kind; make the precedence explicit"
                    )
    return problems


def _senders_overlap(a: Rule, b: Rule) -> bool:
    if not a.senders or not b.senders:
        return True
    return any(x == y or x.endswith("." + y) or y.endswith("." + x) for x in a.senders
               for y in b.senders)


# ---------------------------------------------------------------------------------------------
# Matching.

_TYPOGRAPHY = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u02bc": "'", "\u00b4": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"',
        "\u00ad": None, "\u200b": None, "\u200c": None, "\u200d": None, "\ufeff": None,
    }
)  # fmt: skip


def _any_in(needles: tuple[str, ...], haystack: str) -> bool:
    return any(needle in haystack for needle in needles)


def normalise(text: str) -> str:
    """The text the patterns see: NFC, plain quotes, one space for any run of whitespace."""
    return " ".join(unicodedata.normalize("NFC", text).translate(_TYPOGRAPHY).split())


@dataclass
class _Texts:
    subject: str
    body: str
    _text: str | None = None
    _guards: dict[str, tuple[str, str] | None] = field(default_factory=dict)
    _folded: dict[str, str] = field(default_factory=dict)

    def folded(self, field_name: str) -> str:
        """The field case-folded, for the literal pre-check (memoised)."""
        if field_name not in self._folded:
            self._folded[field_name] = self.get(field_name).casefold()
        return self._folded[field_name]

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self.subject + "\n" + self.body
        return self._text

    def get(self, field_name: str) -> str:
        if field_name == "text":
            return self.text
        return self.subject if field_name == "subject" else self.body

    def guard_hit(self, guard: Guard) -> tuple[str, str] | None:
        """(field, matched text) of the first pattern of `guard` found, memoised per message."""
        if guard.name not in self._guards:
            hit = None
            for field_name, pattern, needles in guard.patterns:
                if needles is not None and not _any_in(needles, self.folded(field_name)):
                    continue
                found = pattern.search(self.get(field_name))
                if found:
                    hit = (field_name, found.group(0))
                    break
            self._guards[guard.name] = hit
        return self._guards[guard.name]


@dataclass(frozen=True)
class RuleTrace:
    """How one rule fared against a message: for `classify --explain`."""

    rule: Rule
    matched: bool
    reasons: tuple[str, ...]  # what held, or the first thing that failed
    blocked_by: str | None = None  # the guard that blocked an otherwise matching rule


@dataclass(frozen=True)
class Explanation:
    classification: Classification
    pack: str | None
    sender: str
    traces: tuple[RuleTrace, ...]


def classify(message: Message, rule_set: RuleSet) -> Classification:
    """What `message` means according to the rules; `NO_MATCH`-like when no rule applies."""
    return _run(message, rule_set, explain=False).classification


def explain(message: Message, rule_set: RuleSet) -> Explanation:
    """Like `classify`, and say for every rule of the sender's pack what held and what did not."""
    return _run(message, rule_set, explain=True)


def _find_pack(rule_set: RuleSet, domain: str) -> tuple[Pack, str, bool] | None:
    for pack in rule_set.packs:
        platform = pack.sender_platform(domain)
        if platform:
            return pack, platform, False
    for pack in rule_set.packs:
        platform = pack.lookalike_platform(domain)
        if platform:
            return pack, platform, True
    return None


def _run(message: Message, rule_set: RuleSet, *, explain: bool) -> Explanation:
    domain = message.from_domain
    found = _find_pack(rule_set, domain)
    if found is None:
        note = f"sender {domain or '(none)'} is not covered by any rule pack"
        return Explanation(Classification(outcome=None, notes=(note,)), None, domain, ())
    pack, platform, lookalike = found
    texts = _Texts(subject=normalise(message.subject[:1000]),
                   body=normalise(message.text[:RULE_TEXT_CHARS]))
    traces: list[RuleTrace] = []
    winner: tuple[Rule, dict[str, str]] | None = None
    folded = texts.folded("text")
    for rule in pack.rules:
        if winner is not None and not explain:
            break
        if not explain and rule.gate is not None and not _any_in(rule.gate, folded):
            continue
        trace, groups = _try_rule(rule, pack, domain, texts)
        traces.append(trace)
        if trace.matched and winner is None:
            winner = (rule, groups)
    if winner is None:
        result = Classification(outcome=None, lookalike=lookalike,
                                notes=(f"no rule of pack {pack.id} matched",))
    else:
        rule, groups = winner
        result = Classification(
            outcome=rule.outcome,
            platform=rule.platform or platform,
            kind=rule.kind,
            authentic=False if lookalike else authenticity(message),
            code=groups.get("code") or _extract(rule.extract_code, "code", texts),
            reference=groups.get("reference")
            or _extract(rule.extract_reference, "reference", texts),
            rule=rule.id,
            language=rule.language,
            extends_deadline=rule.extends_deadline,
            lookalike=lookalike,
            notes=(f"sender {domain} only looks like {platform}",) if lookalike else (),
        )
    return Explanation(result, pack.id, domain, tuple(traces))


def _try_rule(
    rule: Rule, pack: Pack, domain: str, texts: _Texts
) -> tuple[RuleTrace, dict[str, str]]:
    if rule.senders and not any(domain == s or domain.endswith("." + s) for s in rule.senders):
        return RuleTrace(rule, False, (f"sender {domain} is not one of {list(rule.senders)}",)), {}
    reasons: list[str] = []
    groups: dict[str, str] = {}
    for cond in rule.conditions:
        failure = _check_condition(cond, texts, reasons, groups)
        if failure:
            return RuleTrace(rule, False, (*reasons, failure)), {}
    for name in rule.requires:
        hit = texts.guard_hit(pack.guards[name])
        if hit is None:
            return RuleTrace(rule, False, (*reasons, f"requires guard {name}: not found")), {}
        reasons.append(f"guard {name} found in {hit[0]}: {hit[1]!r}")
    for name in rule.unless:
        hit = texts.guard_hit(pack.guards[name])
        if hit is not None:
            why = f"blocked by guard {name}: {hit[1]!r} in {hit[0]}"
            return RuleTrace(rule, False, (*reasons, why), blocked_by=name), {}
    return RuleTrace(rule, True, tuple(reasons)), groups


def _check_condition(
    cond: Condition, texts: _Texts, reasons: list[str], groups: dict[str, str]
) -> str | None:
    """None when `cond` holds (adding what held to `reasons`), else why it does not."""
    hits: list[re.Match[str]] = []
    for index, pattern in enumerate(cond.patterns):
        found = cond.search(index, texts)
        if found:
            hits.append(found)
            if cond.mode != "all":
                break
        elif cond.mode == "all":
            return f"{cond.field}.all: {pattern.pattern!r} not found"
    if cond.mode == "none":
        if hits:
            return f"{cond.field}.none: {hits[0].re.pattern!r} found ({hits[0].group(0)!r})"
        reasons.append(f"{cond.field}.none: none of {len(cond.patterns)} found")
        return None
    if not hits:
        return f"{cond.field}.any: none found"
    for hit in hits:
        reasons.append(f"{cond.field}.{cond.mode}: {hit.group(0)!r}")
        for name, value in hit.groupdict().items():
            if value and name not in groups:
                groups[name] = value
    return None


def _extract(patterns: tuple[re.Pattern[str], ...], group: str, texts: _Texts) -> str | None:
    for pattern in patterns:
        found = pattern.search(texts.text)
        if found and found.groupdict().get(group):
            return found.group(group)
    return None


# ---------------------------------------------------------------------------------------------
# Authenticity and lookalikes.


def authenticity(message: Message) -> bool | None:
    """True when the topmost Authentication-Results shows DKIM or DMARC pass aligned with the
    From domain, False when it shows them failing, None when there is no verdict to read."""
    auth = message.auth
    domain = message.from_domain
    if auth is None or not domain:
        return None
    if any(_aligned(d, domain) for d in auth.passed("dkim") + auth.passed("dmarc")):
        return True
    if auth.failed("dkim") or auth.failed("dmarc"):
        return False
    if auth.passed("dkim"):
        return False  # signed, but by somebody else's domain: not Meta's signature
    return None


def _aligned(signer: str, from_domain: str) -> bool:
    # Relaxed alignment (RFC 7489 3.1.1), close enough for Meta's domains, which all sit
    # directly below a one-label public suffix (.com, .net).
    return signer == from_domain or from_domain.endswith("." + signer) or (
        signer.endswith("." + from_domain)
    )


_HOMOGLYPHS = str.maketrans({"0": "o", "1": "l", "3": "e", "4": "a", "5": "s", "7": "t"})


def _fold_homoglyphs(domain: str) -> str:
    folded = unicodedata.normalize("NFKD", domain.lower())
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch)).translate(_HOMOGLYPHS)
    return folded.replace("rn", "m").replace("vv", "w")


def _within_one_edit(a: str, b: str) -> bool:
    """True when `a` contains a substring at most one edit (insert/delete/replace) from `b`."""
    n = len(b)
    for size in (n - 1, n, n + 1):
        for start in range(0, max(len(a) - size, -1) + 1):
            if _one_edit(a[start : start + size], b):
                return True
    return False


def _one_edit(x: str, y: str) -> bool:
    if abs(len(x) - len(y)) > 1:
        return False
    if len(x) == len(y):
        return sum(p != q for p, q in zip(x, y, strict=True)) <= 1
    short, long_ = (x, y) if len(x) < len(y) else (y, x)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


def iter_rules(rule_set: RuleSet) -> Iterator[tuple[Pack, Rule]]:
    for pack in rule_set.packs:
        for rule in pack.rules:
            yield pack, rule
