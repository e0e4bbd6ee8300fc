"""Rule packs: load and lint the TOML files, classify a `Message`, explain the decision.

A pack declares its sender domains, lookalike words and guards; its rules match patterns in
the subject and body. Everything here is pure: files are read once by `load_rule_set`, and
`classify` is a function of the message and the loaded rules.
"""

from optout_mail.rules.authenticity import Verdict, authenticity
from optout_mail.rules.compiled import Condition, Guard, Pack, Rule, RuleSet, iter_rules
from optout_mail.rules.conditions import RuleTrace
from optout_mail.rules.dkimcheck import DnsLookup, DnsUnavailable
from optout_mail.rules.load import bundled_rules_dir, load_rule_set, pack_dirs
from optout_mail.rules.match import Explanation
from optout_mail.rules.prefilter import required_literal
from optout_mail.rules.text import normalise
from optout_mail.rules.trust import Trust
from optout_mail.rules.trusted import classify, explain

__all__ = [
    "Condition",
    "DnsLookup",
    "DnsUnavailable",
    "Explanation",
    "Guard",
    "Pack",
    "Rule",
    "RuleSet",
    "RuleTrace",
    "Trust",
    "Verdict",
    "authenticity",
    "bundled_rules_dir",
    "classify",
    "explain",
    "iter_rules",
    "load_rule_set",
    "normalise",
    "pack_dirs",
    "required_literal",
]
