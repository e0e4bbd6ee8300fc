"""Rule packs: load and lint the TOML files, classify a `Message`, explain the decision.

A pack declares its sender domains, lookalike words and guards; its rules match patterns in
the subject and body. Everything here is pure: files are read once by `load_rule_set`, and
`classify` is a function of the message and the loaded rules.
"""

from optout_mail.rules.authenticity import authenticity
from optout_mail.rules.compiled import Condition, Guard, Pack, Rule, RuleSet, iter_rules
from optout_mail.rules.load import bundled_rules_dir, load_rule_set, pack_dirs
from optout_mail.rules.match import Explanation, RuleTrace, classify, explain
from optout_mail.rules.prefilter import required_literal
from optout_mail.rules.text import normalise

__all__ = [
    "Condition",
    "Explanation",
    "Guard",
    "Pack",
    "Rule",
    "RuleSet",
    "RuleTrace",
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
