"""`export` (the whole ledger as CSV, JSON or an HTML report) and `evidence` (one request's
original mails, checksummed, in a zip for a data protection authority)."""

from __future__ import annotations

from pathlib import Path

import click

from optout_mail import __version__
from optout_mail.commands.state import State, now, pass_state

OUTPUT = click.Path(path_type=Path, dir_okay=False, allow_dash=True)


@click.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json", "html"]),
    required=True,
    help="csv: one row per mail with its request; json: as `requests list --json`; html: a "
    "report to read, print or attach to a complaint.",
)
@click.option(
    "--output",
    "-o",
    type=OUTPUT,
    metavar="FILE",
    help="Write here ('-': standard output). Default: standard output for csv and json, "
    "report.html for html.",
)
@pass_state
def export(state: State, fmt: str, output: Path | None) -> None:
    """Export the ledger: every request, every mail from Meta, the legal clock.

    The HTML report is one self-contained file (no scripts, nothing loaded from the net)
    that prints well; for a refused or overdue request it says what you can do next and
    drafts a complaint to the Irish Data Protection Commission. In the CSV, cells that a
    spreadsheet would run as a formula start with an apostrophe.

    \b
    Examples:
      optout-mail export --format html               # writes report.html
      optout-mail export --format csv -o ledger.csv
      optout-mail export --format json | jq '.[] | select(.overdue)'
    """
    from optout_mail.export import ledger_csv, ledger_json, write_new
    from optout_mail.ledger import Ledger
    from optout_mail.report import render_report

    moment = now()
    with Ledger(state.settings().ledger_path) as ledger:
        requests = ledger.requests(now=moment)
        unattached = ledger.unattached_events()
    if fmt == "json":
        text = ledger_json(requests)
    elif fmt == "csv":
        text = ledger_csv(requests, unattached)
    else:
        text = render_report(requests, now=moment, unattached=unattached)
        output = output or Path("report.html")
    if output is None or str(output) == "-":
        click.echo(text, nl=False)
        return
    write_new(output, text.encode(), force=True)
    click.echo(f"Wrote {output} ({len(requests)} request(s)).", err=True)


@click.command()
@click.argument("request_id", type=int)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE.zip",
    help="Where to write the zip. Default: request-ID.zip.",
)
@click.option("--force", is_flag=True, help="Overwrite FILE.zip if it exists.")
@pass_state
def evidence(state: State, request_id: int, output: Path | None, force: bool) -> None:
    """Bundle the evidence of one request in a zip, e.g. for a complaint.

    The zip holds Meta's original mails (.eml, exactly as received), the HTML report of the
    request, manifest.json (the request, its mails and the SHA-256 of every file) and
    MANIFEST.sha256, which `sha256sum -c` checks. Mails recorded before optout-mail kept
    originals are listed in the manifest as "original not kept".

    \b
    Example:
      optout-mail evidence 3 --output request-3.zip
      unzip request-3.zip && (cd request-3 && sha256sum -c MANIFEST.sha256)
    """
    from optout_mail.export import build_bundle, bundle_zip, write_new
    from optout_mail.ledger import Ledger
    from optout_mail.mailstore import MailStore

    moment = now()
    settings = state.settings()
    with Ledger(settings.ledger_path) as ledger:
        request = ledger.request(request_id, now=moment)
    output = output or Path(f"request-{request_id}.zip")
    store = MailStore.beside(settings.ledger_path)
    bundle = build_bundle(
        request,
        original=store.get if store else lambda _sha: None,
        now=moment,
        generator=f"optout-mail {__version__}",
    )
    write_new(output, bundle_zip(bundle, moment), force=force)
    kept = len(request.events) - len(bundle.not_kept) - len(bundle.missing)
    click.echo(f"Wrote {output}: {kept} original mail(s) of request #{request_id}.")
    if bundle.not_kept:
        click.echo(
            f"{len(bundle.not_kept)} mail(s) were recorded before optout-mail kept original "
            'mails; manifest.json lists them as "original not kept" (they are still in your '
            "mailbox: save them from there if you need them).",
            err=True,
        )
    if bundle.missing:
        click.echo(
            f"{len(bundle.missing)} original mail(s) are missing or damaged in "
            f"{store.folder if store else 'the mail store'}; manifest.json lists them.",
            err=True,
        )
