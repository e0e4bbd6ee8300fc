"""A ledger with one request in each situation a report must show, built the way a user builds
one: requests recorded by hand, then a scan of real sample mails through the whole pipeline.

`python -m tests.reportdata OUT.html` writes the report of it (docs/report.png is a screenshot).
"""

from __future__ import annotations

import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

from optout_mail.ledger import Ledger
from optout_mail.model import Kind
from optout_mail.pipeline import run_source
from optout_mail.report import render_report
from optout_mail.rules import RuleSet, load_rule_set
from optout_mail.sources.local import LocalSource

from .conftest import SAMPLES, make_mail

NOW = datetime(2025, 6, 25, 9, 0, tzinfo=UTC)
HOSTILE_SUBJECT = '<script>document.title="pwned"</script><img src=x onerror=alert(1)>'
MAILS = (
    "meta/en/code.eml",  # alice, Facebook: a code, then honoured (2024)
    "meta/en/honoured-uk.eml",
    "meta/en/rejected.eml",  # erik, Facebook: refused (2024)
    "meta/en/code-instagram.eml",  # bob, Instagram: a code in May 2025, then nothing: overdue
    "meta/en/received-extended.eml",  # maeve, Facebook: acknowledged, two more months
    "meta/en/honoured-us.eml",  # carla, Instagram: honoured
    "traps/phishing-lookalike.eml",  # a lookalike domain: changes nothing, kept as evidence
)


def build_ledger(
    data_dir: Path, rule_set: RuleSet, *, hostile: bool = False, mails: Path | None = None
) -> Path:
    """The ledger at `data_dir`/ledger.sqlite3, its originals in `data_dir`/mails. With
    `hostile`, one authentic refusal carries a subject that is HTML and script."""
    inbox = mails or data_dir.parent / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    for name in MAILS:
        shutil.copy(SAMPLES / name, inbox / name.replace("/", "-"))
    if hostile:
        (inbox / "hostile.eml").write_bytes(
            make_mail(
                to="dan@example.org",
                subject=HOSTILE_SUBJECT,
                body=(SAMPLES / "meta/en/rejected.eml").read_text().split("\n\n", 1)[1],
                sender="Meta Privacy <noreply@support.facebook.com>",
                date=datetime(2025, 6, 2, 8, 0, tzinfo=UTC),
            )
        )
    path = data_dir / "ledger.sqlite3"
    with Ledger(path) as ledger:
        ledger.add_request(
            platform="facebook",
            account="alice@example.org",
            kind=Kind.OBJECTION,
            filed_at=datetime(2024, 6, 3, 9, tzinfo=UTC),
            now=NOW,
        )
        ledger.add_request(
            platform="facebook",
            account="erik@example.net",
            kind=Kind.OBJECTION,
            filed_at=datetime(2024, 6, 12, 9, tzinfo=UTC),
            now=NOW,
        )
        run_source(LocalSource(inbox), rules=rule_set, ledger=ledger, clock=lambda: NOW)
    return path


def report_html(data_dir: Path) -> str:
    with Ledger(data_dir / "ledger.sqlite3") as ledger:
        return render_report(
            ledger.requests(now=NOW), now=NOW, unattached=ledger.unattached_events()
        )


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as temp:
        build_ledger(Path(temp) / "data", load_rule_set())
        Path(sys.argv[1]).write_text(report_html(Path(temp) / "data"), encoding="utf-8")
