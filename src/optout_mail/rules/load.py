"""Loading the rule packs: find the pack folders, read and validate their TOML files, compile
the patterns, and lint the whole set (duplicate ids, priority ties with different meanings).

Every problem is collected with its file and rule, and reported at once as one RuleError.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from optout_mail.errors import RuleError
from optout_mail.model import ANSWER_OUTCOMES, Outcome
from optout_mail.rules.compiled import Clause, Condition, Guard, Pack, Rule, RuleSet, TermSet
from optout_mail.rules.lexicon import clause_from, compile_lexicon
from optout_mail.rules.prefilter import gate, required_literal
from optout_mail.rules.schema import (
    ClauseSpec,
    ConditionSpec,
    GuardSpec,
    PackFileSpec,
    RuleFileSpec,
    RuleSpec,
)

# Outcomes that answer a request (or say Meta wrote about it): the pack's `never_an_answer`
# guards veto them all.
ANSWERS = ANSWER_OUTCOMES | {Outcome.UNCLEAR}

_FLAGS = re.IGNORECASE | re.UNICODE
_FIELDS = ("subject", "body", "text")


def bundled_rules_dir() -> Path:
    """The packs shipped with optout-mail: `optout_mail/rule_packs` inside the wheel, or the
    top-level `rules/` folder of a checkout."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "rule_packs"
    if installed.is_dir():
        return installed
    return package.parents[1] / "rules"


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
    files: list[tuple[Path, RuleFileSpec]] = []
    for path in sorted(directory.glob("*.toml")):
        if path.name != "pack.toml" and (file_spec := _read_rule_file(path, problems)):
            files.append((path, file_spec))
            _add_guards(path, file_spec.guards, guard_patterns, guard_text, problems)
    lexicons: dict[str, dict[str, TermSet]] = {}
    for language in sorted({f.language for _p, f in files}):
        layers = [spec.lexicon, *(f.lexicon for _p, f in files if f.language == language)]
        lexicons[language] = compile_lexicon(
            language, layers, f"{directory} [{language}]", problems
        )
    rules: list[Rule] = []
    guard_refs: list[tuple[Path, str, list[str]]] = []
    for path, file_spec in files:
        rules.extend(
            _compile_rules(
                path,
                file_spec,
                senders,
                lexicons[file_spec.language],
                spec.pack.never_an_answer,
                guard_refs,
                problems,
            )
        )
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
        lexicons=lexicons,
    )


def _read_rule_file(path: Path, problems: list[str]) -> RuleFileSpec | None:
    raw_file = _read_toml(path, problems)
    if raw_file is None:
        return None
    try:
        return RuleFileSpec.model_validate(raw_file)
    except ValidationError as exc:
        problems.extend(_validation_problems(path, raw_file, exc))
        return None


def _compile_rules(
    path: Path,
    file_spec: RuleFileSpec,
    senders: dict[str, str],
    lexicon: dict[str, TermSet],
    never_an_answer: list[str],
    guard_refs: list[tuple[Path, str, list[str]]],
    problems: list[str],
) -> list[Rule]:
    rules = []
    for index, raw_rule in enumerate(file_spec.rule):
        # Each rule on its own, so that one broken rule does not hide the others' problems.
        try:
            rule_spec = RuleSpec.model_validate(raw_rule)
        except ValidationError as exc:
            problems.extend(_validation_problems(path, {"rule": file_spec.rule}, exc, index))
            continue
        if rule_spec.outcome in ANSWERS:
            extra = [g for g in never_an_answer if g not in rule_spec.unless]
            rule_spec = rule_spec.model_copy(update={"unless": [*rule_spec.unless, *extra]})
        guard_refs.append((path, rule_spec.id, [*rule_spec.unless, *rule_spec.requires]))
        rule = _compile_rule(path, file_spec.language, rule_spec, senders, lexicon, problems)
        if rule is not None:
            rules.append(rule)
    return rules


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


def _compile(source: str, where: str, problems: list[str]) -> re.Pattern[str] | None:
    try:
        return re.compile(source, _FLAGS)
    except re.error as exc:
        problems.append(f"{where}: bad pattern {source!r}: {exc}")
        return None


def _compile_rule(
    path: Path,
    language: str,
    spec: RuleSpec,
    senders: dict[str, str],
    lexicon: dict[str, TermSet],
    problems: list[str],
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
                conditions.append(
                    Condition(
                        field=field_name,
                        mode=mode,
                        patterns=patterns,
                        literals=tuple(required_literal(p) for p in patterns),
                    )
                )
    sentence = tuple(_clause(c) for c in spec.sentence)
    mail = _clause(spec.mail)
    problems.extend(_unknown_sets(where, language, spec, (*sentence, mail), lexicon))
    positive = any(c.mode in ("all", "any") for c in conditions) or any(
        c.all or c.any for c in (*sentence, mail)
    )
    if not positive and not spec.requires:
        problems.append(f"{where}: needs at least one `all` or `any` pattern or lexicon set")
    extract_code = tuple(p for s in spec.extract.code if (p := _compile(s, where, problems)))
    extract_ref = tuple(p for s in spec.extract.reference if (p := _compile(s, where, problems)))
    all_patterns = [p for c in conditions if c.mode != "none" for p in c.patterns]
    if (
        spec.outcome is Outcome.CODE
        and spec.extract.code_near is None
        and not any("code" in p.groupindex for p in all_patterns + list(extract_code))
    ):
        problems.append(f"{where}: outcome 'code' needs extract.code_near or a (?P<code>...) group")
    for domain in spec.sender:
        if not any(domain == d or domain.endswith("." + d) for d in senders):
            problems.append(f"{where}: sender {domain!r} is not one of the pack's senders")
    if len(problems) > before:
        return None
    # Cheap conditions first: `all` fails fastest, `none` needs a full scan to succeed.
    conditions.sort(key=lambda c: ("all", "any", "none").index(c.mode))
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
        gate=gate(conditions),
        sentence=sentence,
        mail=mail,
        code_near=spec.extract.code_near,
        reference_near=spec.extract.reference_near,
    )


def _unknown_sets(
    where: str,
    language: str,
    spec: RuleSpec,
    clauses: tuple[Clause, ...],
    lexicon: dict[str, TermSet],
) -> list[str]:
    names = [n for clause in clauses for n in clause.names()]
    names += [n for n in (spec.extract.code_near, spec.extract.reference_near) if n is not None]
    return [
        f"{where}: no lexicon set {name!r} in language {language!r}"
        for name in dict.fromkeys(names)
        if name not in lexicon
    ]


def _clause(spec: ClauseSpec) -> Clause:
    return clause_from(spec.all, spec.any, spec.none, spec.mail_none)


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
    return any(
        x == y or x.endswith("." + y) or y.endswith("." + x) for x in a.senders for y in b.senders
    )
