"""`classify` (what one mail means, offline) and `rules check|list` (the rule packs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from optout_mail.commands.state import (
    TRUST_OPTION,
    State,
    authserv_ids,
    pass_state,
    print_json_line,
)
from optout_mail.errors import SourceError, UsageError
from optout_mail.model import NO_MATCH

if TYPE_CHECKING:
    from optout_mail.rules import RuleSet


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line and file.")
@click.option("--explain", is_flag=True, help="Show which rule matched, what held, what blocked.")
@TRUST_OPTION
@pass_state
def classify(
    state: State, files: tuple[Path, ...], as_json: bool, explain: bool, trust_ids: tuple[str, ...]
) -> None:
    """Say what each mail FILE (.eml) means. Reads no mailbox and writes no ledger.

    A file that cannot be read, or is not a mail, still gets its line, with an error.

    \b
    Examples:
      optout-mail classify --explain ~/Downloads/objection.eml
      optout-mail classify --json samples/meta/en/*.eml
    """
    from optout_mail.dkim_dns import TxtLookup
    from optout_mail.model import RawMail
    from optout_mail.output import describe_classification, explanation_lines
    from optout_mail.parse import looks_like_mail, parse
    from optout_mail.rules import Trust
    from optout_mail.rules import explain as explain_mail

    rule_set = state.rules()
    trust = Trust(authserv_ids(trust_ids))
    dkim_dns = TxtLookup()
    failures = 0
    for path in files:
        error = None
        if path.is_dir():
            error = (
                f"{path} is a folder, not a mail; to read the mails in it: "
                f'optout-mail --data-dir "$(mktemp -d)" scan --source {path}'
            )
        else:
            try:
                data = path.read_bytes()
            except OSError as exc:
                error = f"cannot read {path}: {exc.strerror or exc}"
            else:
                if not looks_like_mail(data):
                    error = f"{path} is not a mail (no mail headers such as From: or Subject:)"
        if error is not None:
            failures += 1
            if as_json:
                print_json_line({"path": str(path), **NO_MATCH.as_json(), "error": error})
            else:
                click.echo(f"{path}: error: {error}", err=True)
            continue
        message = parse(RawMail(data=data, origin=str(path)))
        explanation = explain_mail(message, rule_set, trust, dkim_dns=dkim_dns)
        result = explanation.classification
        if as_json:
            print_json_line({"path": str(path), **result.as_json()})
        else:
            click.echo(describe_classification(str(path), result))
            if explain:
                click.echo("\n".join(explanation_lines(explanation)))
    if failures:
        raise SourceError(f"{failures} of {len(files)} files could not be read as mails")


# ---------------------------------------------------------------------------------------------
# rules


@click.group()
def rules() -> None:
    """Inspect and lint the rule packs (bundled ones plus `rules_dirs`).

    \b
    Examples:
      optout-mail rules check             lint them, count them
      optout-mail rules list              the rules in the order they are tried
    """


@rules.command("check")
@click.option(
    "--samples",
    "samples_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="A samples folder with expected.toml, to report coverage (default: samples/ of a "
    "checkout, when there is one).",
)
@click.option("--json", "as_json", is_flag=True, help="A JSON object with the same counts.")
@pass_state
def rules_check(state: State, samples_dir: Path | None, as_json: bool) -> None:
    """Lint every pack; count rules per language, outcome and provenance; show the terms of
    every lexicon set per language and which languages and outcomes the samples cover.

    \b
    Example:
      optout-mail rules check --samples samples/
    """
    import tomllib

    from optout_mail.output import rules_check_lines
    from optout_mail.rules import bundled_rules_dir

    rule_set = state.rules()
    if samples_dir is None:
        guess = bundled_rules_dir().parent / "samples"
        samples_dir = guess if (guess / "expected.toml").is_file() else None
    samples = None
    if samples_dir is not None:
        try:
            samples = tomllib.loads((samples_dir / "expected.toml").read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(
                f"cannot read {samples_dir / 'expected.toml'}: {exc}",
                hint="give a folder that holds the samples and their expected.toml",
            ) from None
    if as_json:
        click.echo(json.dumps(rules_report(rule_set, samples), ensure_ascii=False, indent=2))
        return
    click.echo("\n".join(rules_check_lines(rule_set, samples)))


def rules_report(
    rule_set: RuleSet, samples: dict[str, dict[str, object]] | None
) -> dict[str, object]:
    """`rules check --json`: rules per language, outcome and provenance, the packs with their
    lexicon sizes, and the rules without a sample (when the samples are known)."""
    from collections import Counter

    all_rules = rule_set.rules
    report: dict[str, object] = {
        "packs": [
            {
                "id": pack.id,
                "senders": sorted(pack.senders),
                "lexicons": {
                    lang: {name: len(terms.terms) for name, terms in sorted(sets.items())}
                    for lang, sets in sorted(pack.lexicons.items())
                },
            }
            for pack in rule_set.packs
        ],
        "rules": len(all_rules),
        "by_language": dict(sorted(Counter(r.language for r in all_rules).items())),
        "by_outcome": dict(
            sorted(Counter(f"{r.kind.value}/{r.outcome.value}" for r in all_rules).items())
        ),
        "by_provenance": dict(sorted(Counter(r.source for r in all_rules).items())),
        "problems": [],
    }
    if samples is not None:
        covered = {str(entry.get("rule")) for entry in samples.values()}
        report["rules_without_sample"] = [r.id for r in all_rules if r.id not in covered]
    return report


@rules.command("list")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of rules.")
@click.option("--wide", is_flag=True, help="Show every column, however wide the table gets.")
@pass_state
def rules_list(state: State, as_json: bool, wide: bool) -> None:
    """List the rules in the order they are tried (highest priority first).

    \b
    Examples:
      optout-mail rules list --wide
      optout-mail rules list --json | jq '.[].id'
    """
    from optout_mail.output import print_rules, rule_rows

    rows = rule_rows(state.rules())
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    from rich.console import Console

    print_rules(Console(), rows, wide=wide)
