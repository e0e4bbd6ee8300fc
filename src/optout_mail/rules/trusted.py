"""Classification with its authenticity verdict: the rules say what a mail means, the trust
policy whether it really is from its sender. Only mails a rule matched are checked, so the
trace headers of thousands of unrelated notifications are never parsed.
"""

from __future__ import annotations

from dataclasses import replace

from optout_mail.model import Classification, Message
from optout_mail.rules import match
from optout_mail.rules.authenticity import authenticity
from optout_mail.rules.compiled import RuleSet
from optout_mail.rules.dkimcheck import DnsLookup
from optout_mail.rules.trust import Trust


def classify(
    message: Message,
    rule_set: RuleSet,
    trust: Trust | None = None,
    *,
    dkim_dns: DnsLookup | None = None,
) -> Classification:
    """What `message` means, and whether it is authentic under `trust`."""
    return authenticate(match.classify(message, rule_set), message, trust, dkim_dns)


def explain(
    message: Message,
    rule_set: RuleSet,
    trust: Trust | None = None,
    *,
    dkim_dns: DnsLookup | None = None,
) -> match.Explanation:
    """Like `classify`, with every rule's trace; the verdict's reasons are in the notes."""
    explanation = match.explain(message, rule_set)
    result = authenticate(explanation.classification, message, trust, dkim_dns)
    return replace(explanation, classification=result)


def authenticate(
    result: Classification,
    message: Message,
    trust: Trust | None,
    dkim_dns: DnsLookup | None = None,
) -> Classification:
    """`result` with `authentic` decided; lookalikes and non-matches stay as they are."""
    if result.outcome is None or result.lookalike:
        return result
    verdict = authenticity(message, trust, dkim_dns=dkim_dns)
    notes = (
        *result.notes,
        *(f"authenticity: {reason}" for reason in verdict.reasons),
        *(f"warning: {warning}" for warning in verdict.warnings),
    )
    return replace(result, authentic=verdict.authentic, notes=notes)
