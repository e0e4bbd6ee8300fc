"""Authenticity: every provider's Authentication-Results, the trust block, strict From, DKIM.

Header values are the real formats collected per provider (Gmail, Microsoft 365, Yahoo/AOL,
iCloud, GMX, Fastmail, Proton, Posteo, Zoho, OpenDKIM, OpenDMARC, rspamd, Amavis), with the
sender domain changed to Meta's or an attacker's where a test needs it.
"""

from __future__ import annotations

import base64
import contextlib
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optout_mail.model import Message, RawMail, TraceHeader
from optout_mail.parse import parse
from optout_mail.rules import DnsUnavailable, Trust, Verdict, authenticity
from optout_mail.rules.authresults import parse_auth_header
from optout_mail.rules.fromaddr import FromError, strict_from
from optout_mail.rules.trust import aligned, registrable

META = "notification@facebookmail.com"


def message(
    *trace: tuple[str, str], sender: str = META, from_headers: tuple[str, ...] | None = None
) -> Message:
    """A Message with `trace` = ("received", by host) / ("auth", value) pairs, top to bottom."""
    return Message(
        message_id="<m@x>",
        from_address=sender,
        from_name="Facebook",
        to=("alice@example.org",),
        subject="Your objection request",
        date=None,
        text="",
        trace=tuple(TraceHeader(kind, value) for kind, value in trace),  # type: ignore[arg-type]
        from_headers=(f"Facebook <{sender}>",) if from_headers is None else from_headers,
    )


def hop(host: str) -> tuple[str, str]:
    return ("received", host)


def ar(value: str) -> tuple[str, str]:
    return ("auth", " ".join(value.split()))


FOREIGN = hop("facebook.com")  # Meta's own internal hop: the first one outside any provider

# ---------------------------------------------------------------------------------------------
# The reader: every provider format parses, without warnings, to the expected results.

PROVIDER_HEADERS = {
    "gmail": (
        """mx.google.com;
       dkim=pass header.i=@facebookmail.com header.s=s2048-2024-q2 header.b=KF9PvN1o;
       spf=pass (google.com: domain of notification@facebookmail.com designates
       69.171.232.143 as permitted sender) smtp.mailfrom=notification@facebookmail.com;
       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=facebookmail.com""",
        "mx.google.com",
        [("dkim", "pass"), ("spf", "pass"), ("dmarc", "pass")],
    ),
    "microsoft": (
        """spf=pass (sender IP is 209.85.128.67)
 smtp.mailfrom=facebookmail.com; dkim=pass (signature was verified)
 header.d=facebookmail.com;dmarc=pass action=none header.from=facebookmail.com;compauth=pass
 reason=100""",
        None,
        [("spf", "pass"), ("dkim", "pass"), ("dmarc", "pass"), ("compauth", "pass")],
    ),
    "microsoft-tenant": (
        """spf=pass (sender IP is 209.85.219.172) smtp.mailfrom=example.org; alum.mit.edu;
 dkim=pass (signature was verified) header.d=example.org;alum.mit.edu; dmarc=pass
 action=none header.from=example.org;compauth=pass reason=100""",
        None,
        [("spf", "pass"), ("dkim", "pass"), ("dmarc", "pass"), ("compauth", "pass")],
    ),
    "microsoft-split": (
        "spf=pass (sender IP is 1.2.3.4); smtp.mailfrom=valimail.com; dkim=pass (signature "
        "was verified); header.d=valimail.com; dmarc=pass action=none header.from=valimail.com",
        None,
        [("spf", "pass"), ("dkim", "pass"), ("dmarc", "pass")],
    ),
    "yahoo": (
        """atlas-production.v2-mail-prod1-gq1.omega.yahoo.com;
 dkim=perm_fail header.i=@facebookmail.com header.s=2023a;
 dkim=pass header.i=@facebookmail.com header.s=s2048 arc_overridden_status=NOT_OVERRIDDEN;
 spf=pass smtp.mailfrom=facebookmail.com;
 dmarc=pass(p=REJECT) header.from=facebookmail.com;""",
        "atlas-production.v2-mail-prod1-gq1.omega.yahoo.com",
        [("dkim", "permerror"), ("dkim", "pass"), ("spf", "pass"), ("dmarc", "pass")],
    ),
    "aol-unknown": (
        """atlas206.aol.mail.ne1.yahoo.com;
 dkim=unknown;
 spf=none smtp.mailfrom=delta.blinzeln.de;
 dmarc=unknown header.from=delta.blinzeln.de;""",
        "atlas206.aol.mail.ne1.yahoo.com",
        [("dkim", "none"), ("spf", "none"), ("dmarc", "none")],
    ),
    "icloud-dkim": (
        """dkim-verifier.icloud.com;
	dkim=pass (2048-bit key) header.d=facebookmail.com header.i=@facebookmail.com
	header.b=HYnahEVt""",
        "dkim-verifier.icloud.com",
        [("dkim", "pass")],
    ),
    "icloud-bimi": (
        'bimi.icloud.com; bimi=skipped reason="insufficient dmarc"',
        "bimi.icloud.com",
        [("bimi", "skipped")],
    ),
    "gmx": ("gmx.net; dkim=pass header.i=@facebookmail.com", "gmx.net", [("dkim", "pass")]),
    "fastmail": (
        """mx6.messagingengine.com;
    dkim=pass (2048-bit rsa key sha256) header.d=facebookmail.com
      header.i=@facebookmail.com header.b=hr44hXYS header.a=rsa-sha256
      header.s=20210112 x-bits=2048;
    dmarc=pass policy.published-domain-policy=reject
      policy.applied-disposition=none policy.evaluated-disposition=none
      (p=reject,d=none,d.eval=none) policy.policy-from=p
      header.from=facebookmail.com;
    iprev=pass smtp.remote-ip=69.171.232.143 (mx-out.facebook.com);
    spf=pass smtp.mailfrom=notification@facebookmail.com
      smtp.helo=mx-out.facebook.com""",
        "mx6.messagingengine.com",
        [("dkim", "pass"), ("dmarc", "pass"), ("iprev", "pass"), ("spf", "pass")],
    ),
    "fastmail-bimi-url": (
        """mx1.messagingengine.com;
    bimi=pass header.d=amazon.com header.selector=default
      policy.authority=pass policy.mark-type="Registered Mark"
      policy.authority-uri=
      https://d3frv9g52qce38.cloudfront.net/amazondefault/amazon_web_services_inc.pem""",
        "mx1.messagingengine.com",
        [("bimi", "pass")],
    ),
    "proton": (
        """mail.protonmail.ch; dkim=fail reason="key not found in DNS"
 (0-bit key) header.d=86e835319c.nxcli.io header.i=@86e835319c.nxcli.io
 header.b="XFVjBFda\"""",
        "mail.protonmail.ch",
        [("dkim", "fail")],
    ),
    "posteo": (
        """posteo.de;
	dkim=pass (2048-bit key) header.d=facebookmail.com header.i=@facebookmail.com
	header.b=SJjarA70;
	dkim-atps=neutral""",
        "posteo.de",
        [("dkim", "pass"), ("dkim-atps", "neutral")],
    ),
    "posteo-tempfail": (
        "posteo.de; spf=tempfail smtp.mailfrom=delta.blinzeln.de",
        "posteo.de",
        [("spf", "temperror")],
    ),
    "zoho": (
        """mx.zohomail.com;
	dkim=pass;
	spf=pass (zohomail.com: domain of beauty.sephora.com designates 142.54.245.176 as
	permitted sender)  smtp.mailfrom=bounce@beauty.sephora.com;
	dmarc=pass(p=reject dis=none)  header.from=beauty.sephora.com""",
        "mx.zohomail.com",
        [("dkim", "pass"), ("spf", "pass"), ("dmarc", "pass")],
    ),
    "opendkim-two-signatures": (
        """alsa1.perex.cz;
 dkim=pass (2048-bit key) header.d=gmx.net header.i=@gmx.net
 header.b="Dnh6W7CU";
 dkim=pass (2048-bit key) header.d=gmx.net header.i=@gmx.net
 header.b="G8cxqjXg\"""",
        "alsa1.perex.cz",
        [("dkim", "pass"), ("dkim", "pass")],
    ),
    "opendmarc": (
        "mail.kernel.org; dmarc=fail (p=none dis=none) header.from=pex.com",
        "mail.kernel.org",
        [("dmarc", "fail")],
    ),
    "rspamd": (
        """mail.lfdr.de;
	dkim=pass header.d=Nvidia.com header.s=selector2 header.b=UWbgjcWN;
	spf=pass (mail.lfdr.de: domain of "linux-rdma+bounces=lfdr.de@vger.kernel.org"
	designates 2600:3c04:e001:36c::12fc:5321 as permitted sender)
	smtp.mailfrom="linux-rdma+bounces-21870-lists+linux-rdma=lfdr.de@vger.kernel.org";
	dmarc=pass (policy=reject) header.from=nvidia.com;
	arc=reject ("cv is fail on i=2")""",
        "mail.lfdr.de",
        [("dkim", "pass"), ("spf", "pass"), ("dmarc", "pass"), ("arc", "reject")],
    ),
    "amavis": (
        """mm01.cs.columbia.edu (amavisd-new); dkim=softfail
	(fail, message has been altered) header.i=@google.com""",
        "mm01.cs.columbia.edu",
        [("dkim", "softfail")],
    ),
    "rfc-none": ("example.org 1; none", "example.org", []),
    "ses": (
        "amazonses.com; spf=none (spfCheck: x) client-ip=188.92.29.6; "
        "envelope-from=capitalone@secure.net; helo=secure.net; dmarc=none "
        "header.from=secure.net;",
        "amazonses.com",
        [
            ("spf", "none"),
            ("envelope-from", "capitalone@secure.net"),
            ("helo", "secure.net"),
            ("dmarc", "none"),
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(PROVIDER_HEADERS))
def test_every_provider_format_is_read(name: str) -> None:
    value, authserv_id, results = PROVIDER_HEADERS[name]
    header = parse_auth_header(value)
    assert header.authserv_id == authserv_id
    assert [(r.method, r.result) for r in header.results] == results
    assert header.warnings == ()


def test_properties_comments_case_and_spacing() -> None:
    header = parse_auth_header(
        "  MX.Google.COM ;DKIM = Pass (good (nested) comment) header.i=@FacebookMail.com"
        ' header.b="a;b"   ;  (comment) dmarc=pass(p=REJECT)header.from=facebookmail.com ; '
    )
    assert header.authserv_id == "mx.google.com"
    dkim, dmarc = header.results
    assert (dkim.method, dkim.result, dkim.prop("header.i")) == (
        "dkim",
        "pass",
        "@FacebookMail.com",
    )
    assert dkim.prop("header.b") == "a;b"
    assert (dmarc.result, dmarc.prop("header.from")) == ("pass", "facebookmail.com")


@pytest.mark.parametrize(
    "value",
    [
        "",
        ";;;",
        "mx.example.org; dkim=pass (unterminated",
        "mx.example.org; ??? !!!",
        "mx.example.org; header.d=facebookmail.com",
        'mx.example.org; dkim=pass header.b="x',
    ],
)
def test_unreadable_headers_warn_and_never_raise(value: str) -> None:
    assert parse_auth_header(value).warnings


# ---------------------------------------------------------------------------------------------
# Verdicts per provider, in each provider's own layout of the trace.

GMAIL = (hop("2002:a05:7300:1d51:b0:69f:f4c6:67b"), hop("mx.google.com"))
MS_HOPS = (
    hop("db9pr04mb9626.eurprd04.prod.outlook.com"),
    hop("du7p191ca0012.outlook.office365.com"),
)
MS_INBOUND = hop("db1pepf000509f0.mail.protection.outlook.com")
YAHOO = (hop("atlas-production.v2-mail-prod1-gq1.omega.yahoo.com"),)
SELF = (hop("mail.novak.example.org"),)  # LMTP delivery; the inbound hop follows the ARs


def verdict(*trace: tuple[str, str], trust: Trust | None = None, **kw: object) -> Verdict:
    return authenticity(message(*trace, **kw), trust)  # type: ignore[arg-type]


CASES = [
    ("gmail pass", (*GMAIL, ar(PROVIDER_HEADERS["gmail"][0]), FOREIGN), True),
    (
        "gmail dmarc fail",
        (
            *GMAIL,
            ar(
                "mx.google.com; dkim=pass header.i=@listserv.example; "
                "dmarc=fail (p=REJECT) header.from=facebookmail.com"
            ),
            FOREIGN,
        ),
        False,
    ),
    (
        "gmail spf only",
        (*GMAIL, ar("mx.google.com; spf=pass smtp.mailfrom=facebookmail.com"), FOREIGN),
        None,
    ),
    ("gmail none", (*GMAIL, ar("mx.google.com; none"), FOREIGN), None),
    ("microsoft pass", (*MS_HOPS, ar(PROVIDER_HEADERS["microsoft"][0]), MS_INBOUND, FOREIGN), True),
    (
        "microsoft compauth fail",
        (
            *MS_HOPS,
            ar(
                "spf=fail smtp.mailfrom=facebookmail.com; dkim=none "
                "(message not signed) header.d=none;dmarc=none action=none header.from=facebookmail.com;"
                "compauth=fail reason=001"
            ),
            MS_INBOUND,
            FOREIGN,
        ),
        False,
    ),
    (
        "microsoft id-less header on a self-hosted server",
        (*SELF, ar(PROVIDER_HEADERS["microsoft"][0]), hop("mail.novak.example.org"), FOREIGN),
        None,
    ),
    (
        "yahoo pass despite a stale key",
        (*YAHOO, ar(PROVIDER_HEADERS["yahoo"][0]), hop("10.217.137.25"), FOREIGN),
        True,
    ),
    (
        "yahoo fail",
        (
            *YAHOO,
            ar(
                "atlas1.free.mail.bf1.yahoo.com; dkim=fail header.i=@facebookmail"
                ".com; dmarc=fail(p=REJECT) header.from=facebookmail.com;"
            ),
            FOREIGN,
        ),
        False,
    ),
    (
        "icloud split pass",
        (
            hop("p116-mailgateway-smtp.me.com"),
            ar(PROVIDER_HEADERS["icloud-bimi"][0]),
            ar("dmarc.icloud.com; dmarc=pass header.from=facebookmail.com"),
            ar(PROVIDER_HEADERS["icloud-dkim"][0]),
            FOREIGN,
        ),
        True,
    ),
    (
        "icloud unsigned",
        (
            hop("p116-mailgateway-smtp.me.com"),
            ar("dmarc.icloud.com; dmarc=none header.from=facebookmail.com"),
            ar("dkim-verifier.icloud.com; dkim=none"),
            FOREIGN,
        ),
        None,
    ),
    ("gmx pass", (hop("mx-ha.gmx.net"), ar(PROVIDER_HEADERS["gmx"][0]), FOREIGN), True),
    (
        "fastmail pass",
        (
            hop("sloti43n12"),
            hop("compute3.internal"),
            hop("mx6.messagingengine.com"),
            ar(PROVIDER_HEADERS["fastmail"][0]),
            FOREIGN,
        ),
        True,
    ),
    (
        "fastmail neutral",
        (
            hop("mx6.messagingengine.com"),
            ar(
                "mx6.messagingengine.com; dkim="
                "neutral (body hash did not verify) header.d=facebookmail.com; dmarc=none header.from="
                "facebookmail.com"
            ),
            FOREIGN,
        ),
        None,
    ),
    (
        "proton fail",
        (
            hop("mailin012.protonmail.ch"),
            ar(
                "mail.protonmail.ch; dkim=fail (Bad 0 "
                "bit rsa-sha256 signature.) header.d=facebookmail.com header.a=rsa-sha256"
            ),
            FOREIGN,
        ),
        False,
    ),
    (
        "posteo split pass",
        (
            hop("mx01.posteo.de"),
            ar("posteo.de; dmarc=pass (p=reject dis=none) header.from=facebookmail.com"),
            ar("posteo.de; spf=pass smtp.mailfrom=facebookmail.com"),
            FOREIGN,
        ),
        True,
    ),
    (
        "zoho dkim=pass without a domain",
        (
            hop("mx.zohomail.com"),
            ar("mx.zohomail.com; dkim=pass; spf=pass smtp.mailfrom=x@attacker.example"),
            FOREIGN,
        ),
        None,
    ),
    (
        "zoho dkim=fail without a domain",
        (
            hop("mx.zohomail.com"),
            ar("mx.zohomail.com; dkim=fail; spf=temperror smtp.mailfrom=x@attacker.example"),
            FOREIGN,
        ),
        False,
    ),
    (
        "opendkim + opendmarc",
        (
            *SELF,
            ar(
                "mail.novak.example.org; dkim=pass (2048-bit key; "
                "unprotected) header.d=facebookmail.com header.i=@facebookmail.com; dkim-atps=neutral"
            ),
            ar(
                "mail.novak.example.org; dmarc=pass (p=reject dis=none) header.from=facebookmail.com"
            ),
            hop("mail.novak.example.org"),
            FOREIGN,
        ),
        True,
    ),
    (
        "rspamd temperror",
        (
            *SELF,
            ar(
                "mail.novak.example.org; dkim=temperror header.d="
                "facebookmail.com; dmarc=none header.from=facebookmail.com"
            ),
            hop("mail.novak.example.org"),
            FOREIGN,
        ),
        None,
    ),
    (
        "amavis softfail",
        (
            *SELF,
            ar(
                "mail.novak.example.org (amavisd-new); dkim=softfail (fail, "
                "message has been altered) header.i=@facebookmail.com"
            ),
            hop("mail.novak.example.org"),
            FOREIGN,
        ),
        False,
    ),
    (
        "permerror",
        (*GMAIL, ar("mx.google.com; dkim=permerror header.i=@facebookmail.com"), FOREIGN),
        None,
    ),
    (
        "policy",
        (*GMAIL, ar("mx.google.com; dkim=policy header.i=@facebookmail.com"), FOREIGN),
        None,
    ),
    ("arc only", (*GMAIL, ar("mx.google.com; arc=pass (i=1)"), FOREIGN), None),
    ("no header", (*GMAIL, FOREIGN), None),
    ("no trace at all", (), None),
]


@pytest.mark.parametrize(("trace", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_verdict_per_provider(trace: tuple[tuple[str, str], ...], expected: bool | None) -> None:
    assert verdict(*trace).authentic is expected


def test_the_same_verdicts_with_the_provider_hint_and_configured_ids() -> None:
    gmail = (*GMAIL, ar(PROVIDER_HEADERS["gmail"][0]), FOREIGN)
    assert verdict(*gmail, trust=Trust(provider="imap.gmail.com")).authentic is True
    assert verdict(*gmail, trust=Trust(("mx.google.com",), provider="gmail")).authentic is True
    assert verdict(*gmail, trust=Trust(("*.google.com",))).authentic is True
    # Configured ids replace the table: Gmail's header is not one of them.
    assert verdict(*gmail, trust=Trust(("mx.example.org",))).authentic is None


def test_unreadable_trusted_header_warns_and_is_not_a_pass() -> None:
    result = verdict(
        *GMAIL, ar("mx.google.com; dkim=pass (oops header.i=@facebookmail.com"), FOREIGN
    )
    assert result.authentic is None
    assert any("unbalanced" in w for w in result.warnings)


# ---------------------------------------------------------------------------------------------
# Whose headers count: the provider's block.

GMAIL_PASS = ar(PROVIDER_HEADERS["gmail"][0])
GMAIL_FAIL = ar(
    "mx.google.com; dkim=fail header.i=@facebookmail.com; dmarc=fail (p=REJECT) "
    "header.from=facebookmail.com"
)
SELF_PASS = ar(
    "mail.novak.example.org; dkim=pass header.d=facebookmail.com; dmarc=pass "
    "(policy=reject) header.from=facebookmail.com"
)


def test_a_fail_wins_over_a_forged_pass_below_it() -> None:
    assert verdict(*GMAIL, GMAIL_FAIL, GMAIL_PASS, FOREIGN).authentic is False


def test_trusted_headers_that_disagree_fail_closed() -> None:
    dkim_none = ar("mx.google.com; dkim=none; dmarc=pass header.from=facebookmail.com")
    result = verdict(*GMAIL, GMAIL_PASS, dkim_none, FOREIGN)
    assert result.authentic is False
    assert "disagree on dkim" in result.reasons[-1]


def test_headers_below_a_foreign_hop_do_not_count() -> None:
    # Fetched by POP from another mailbox: the forged pass came with the mail.
    trace = (*GMAIL, hop("mx1.mailbox.example"), GMAIL_PASS, FOREIGN)
    assert verdict(*trace).authentic is None
    assert verdict(*trace, trust=Trust(provider="gmail")).authentic is None


def test_a_forged_first_header_without_a_provider_hop_does_not_count() -> None:
    trace = (GMAIL_PASS, hop("imap.gmail.com"), hop("mail.attacker.example"))
    assert verdict(*trace, trust=Trust(("mx.google.com",), provider="gmail")).authentic is None
    assert verdict(*trace).authentic is None


def test_self_hosted_headers_below_the_inbound_hop_came_with_the_mail() -> None:
    inbound = hop("mail.novak.example.org")
    attacker = hop("mail.attacker.example")
    assert verdict(*SELF, inbound, SELF_PASS, attacker).authentic is None
    assert verdict(*SELF, SELF_PASS, inbound, attacker).authentic is True
    # A user who names the id vouches for a server that writes below the hop (rspamd can).
    named = Trust(("mail.novak.example.org",))
    assert verdict(*SELF, inbound, SELF_PASS, attacker, trust=named).authentic is True
    # Where OpenDKIM 2.11 and OpenDMARC 1.4 put them: the reasons say how to trust the server.
    unverified = verdict(*SELF, inbound, SELF_PASS, attacker)
    assert any('trusted_authserv_ids = ["mail.novak.example.org"]' in r for r in unverified.reasons)
    assert not any("trusted_authserv_ids" in r for r in verdict(*SELF, inbound, attacker).reasons)


@pytest.mark.parametrize(
    "authserv_id",
    ["mx.google.com.attacker.example", "mx.googie.com", "attacker-mx.example", "google.com"],
)
def test_untrusted_and_lookalike_authserv_ids_are_ignored(authserv_id: str) -> None:
    forged = ar(PROVIDER_HEADERS["gmail"][0].replace("mx.google.com", authserv_id, 1))
    result = verdict(*GMAIL, forged, FOREIGN)
    assert result.authentic is None
    assert authserv_id in result.reasons[1]


def test_suffix_patterns_need_a_dot_boundary() -> None:
    forged = ar("evilyahoo.com; dkim=pass header.i=@facebookmail.com")
    assert verdict(*YAHOO, forged, FOREIGN).authentic is None


def test_learned_id_shares_the_registrable_domain_of_the_receiving_host() -> None:
    filter_host = ar(SELF_PASS[1].replace("mail.novak.example.org", "filter.example.org", 1))
    inbound = hop("mx.novak.example.org")
    assert verdict(*SELF, filter_host, inbound, FOREIGN).authentic is True
    other = ar(SELF_PASS[1].replace("mail.novak.example.org", "mail.example.net", 1))
    assert verdict(*SELF, other, inbound, FOREIGN).authentic is None


# ---------------------------------------------------------------------------------------------
# Alignment.


@pytest.mark.parametrize(
    ("signer", "from_domain", "expected"),
    [
        ("facebookmail.com", "facebookmail.com", True),
        ("mail.instagram.com", "instagram.com", True),
        ("instagram.com", "mail.instagram.com", True),
        ("@facebookmail.com", "facebookmail.com", True),
        ("facebookmail.com.attacker.example", "facebookmail.com", False),
        ("notfacebookmail.com", "facebookmail.com", False),
        ("facebookmail.com", "facebookmail.com.evil.example", False),
        ("b.co.uk", "a.co.uk", False),
        ("", "facebookmail.com", False),
    ],
)
def test_relaxed_alignment_on_the_registrable_domain(
    signer: str, from_domain: str, expected: bool
) -> None:
    assert aligned(signer, from_domain) is expected


def test_registrable_domain() -> None:
    assert registrable("mail.novak.example.org") == "example.org"
    assert registrable("a.b.co.uk") == "b.co.uk"
    assert registrable("localhost") is None


def test_dmarc_pass_must_name_the_from_domain_exactly() -> None:
    other = ar("mx.google.com; dmarc=pass header.from=instagram.com")
    assert verdict(*GMAIL, other, FOREIGN).authentic is None


# ---------------------------------------------------------------------------------------------
# Strict From.


@pytest.mark.parametrize(
    ("values", "why"),
    [
        (("notification@facebookmail.com)<x@attacker.example>",), "unexpected text"),
        (("Facebook <notification@facebookmail.com>, x@attacker.example",), "more than one"),
        (("Facebook <notification@facebookmail.com>", "x@attacker.example"), "2 From headers"),
        (
            (
                "=?UTF-8?B?RmFjZWJvb2sgPG5vdGlmaWNhdGlvbkBmYWNlYm9va21haWwuY29tPg==?= "
                "<x@attacker.example>",
            ),
            "display name contains an address",
        ),
        (
            ('"Facebook" <=?utf-8?q?notification=40facebookmail=2Ecom=3E=00?=x@attacker.example>',),
            "encoded word",
        ),
        (('"notification@facebookmail.com" <x@attacker.example>',), "display name"),
        (("<notification@facebookmail.com>@attacker.example",), "unexpected text"),
        (("<@facebookmail.com:notification@attacker.example>",), "source route"),
        (("<notification@facebookmail.com@attacker.example>",), "more than one @"),
        (("Meta: notification@facebookmail.com;",), "no readable address"),
        (("notification@[192.0.2.1]",), "domain literal"),
        (("Facebook <notification@facebookmail.com",), "unterminated"),
        ((), "no From header"),
    ],
)
def test_strict_from_refuses_ambiguous_headers(values: tuple[str, ...], why: str) -> None:
    with pytest.raises(FromError, match=why):
        strict_from(values)
    result = authenticity(message(*GMAIL, GMAIL_PASS, FOREIGN, from_headers=values))
    assert result.authentic is False
    assert why in result.reasons[0]


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ('"Facebook" <Notification@FacebookMail.com>', "notification@facebookmail.com"),
        ("Facebook <notification@facebookmail.com> (Meta)", "notification@facebookmail.com"),
        ("notification@facebookmail.com", "notification@facebookmail.com"),
        ("x@attacker.example (notification@facebookmail.com)", "x@attacker.example"),
        ("=?UTF-8?Q?Meta_Privacy?= <privacy@support.facebook.com>", "privacy@support.facebook.com"),
        ("J. Doe <j.doe@example.org>", "j.doe@example.org"),
    ],
)
def test_strict_from_reads_ordinary_headers(value: str, address: str) -> None:
    assert strict_from((value,)) == address


def test_from_domain_must_be_the_one_the_rules_saw() -> None:
    result = authenticity(
        message(*GMAIL, GMAIL_PASS, FOREIGN, from_headers=("x@attacker.example",))
    )
    assert result.authentic is False
    assert "ambiguous" in result.reasons[0]


# ---------------------------------------------------------------------------------------------
# Local DKIM verification with dkimpy, a key made here and a dict for DNS.


def new_key() -> tuple[bytes, bytes]:
    """(private key PEM, public TXT record) of a fresh 2048-bit RSA key."""
    pem = subprocess.run(
        ["openssl", "genrsa", "-traditional", "2048"], check=True, capture_output=True
    ).stdout
    der = subprocess.run(
        ["openssl", "rsa", "-pubout", "-outform", "DER"], input=pem, check=True, capture_output=True
    ).stdout
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


@pytest.fixture(scope="module")
def rsa_key() -> tuple[bytes, bytes]:
    return new_key()


UNSIGNED = (
    b"From: Facebook <notification@facebookmail.com>\r\n"
    b"To: alice@example.org\r\n"
    b"Subject: Your objection request\r\n"
    b"Date: Tue, 20 May 2025 09:30:00 +0000\r\n"
    b"Message-ID: <dkim-test@www.facebook.com>\r\n"
    b"\r\n"
    b"We will honour your objection.\r\n"
)
KEY_NAME = "s2048._domainkey.facebookmail.com"


def signed(
    key: bytes, data: bytes = UNSIGNED, domain: bytes = b"facebookmail.com", **kw: object
) -> bytes:
    import dkim

    header = dkim.sign(
        data,
        b"s2048",
        domain,
        key,
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
        **kw,
    )
    return bytes(header) + data


def lookup_from(records: dict[str, bytes]) -> Callable[[str], bytes | None]:
    return lambda name: records.get(name)


def dkim_verdict(data: bytes, lookup: Callable[[str], bytes | None]) -> Verdict:
    return authenticity(parse(RawMail(data, "t")), Trust(), dkim_dns=lookup)


def test_valid_aligned_signature_is_authentic(rsa_key: tuple[bytes, bytes]) -> None:
    key, txt = rsa_key
    result = dkim_verdict(signed(key), lookup_from({KEY_NAME: txt}))
    assert result.authentic is True
    assert "valid signature by facebookmail.com" in result.reasons[-1]


def test_tampered_body_is_forged(rsa_key: tuple[bytes, bytes]) -> None:
    key, txt = rsa_key
    data = signed(key).replace(b"honour", b"ignore")
    assert dkim_verdict(data, lookup_from({KEY_NAME: txt})).authentic is False


def test_another_key_under_the_selector_is_forged(rsa_key: tuple[bytes, bytes]) -> None:
    key, _txt = rsa_key
    _other_pem, other_txt = new_key()
    assert dkim_verdict(signed(key), lookup_from({KEY_NAME: other_txt})).authentic is False


def test_missing_revoked_or_unreachable_key_is_unverifiable(rsa_key: tuple[bytes, bytes]) -> None:
    key, _txt = rsa_key
    data = signed(key)
    assert dkim_verdict(data, lookup_from({})).authentic is None
    assert dkim_verdict(data, lookup_from({KEY_NAME: b"v=DKIM1; k=rsa; p="})).authentic is None

    def down(name: str) -> bytes | None:
        raise DnsUnavailable("timeout")

    result = dkim_verdict(data, down)
    assert result.authentic is None
    assert "DNS failed" in result.reasons[-1]


def test_unaligned_partial_or_absent_signatures_prove_nothing(
    rsa_key: tuple[bytes, bytes],
) -> None:
    key, txt = rsa_key
    records = {KEY_NAME: txt, "s2048._domainkey.attacker.example": txt}
    assert (
        dkim_verdict(signed(key, domain=b"attacker.example"), lookup_from(records)).authentic
        is None
    )
    assert dkim_verdict(signed(key, length=True), lookup_from(records)).authentic is None
    assert dkim_verdict(UNSIGNED, lookup_from(records)).authentic is None


def test_an_unsigned_copy_of_a_signed_header_on_top_is_forged(rsa_key: tuple[bytes, bytes]) -> None:
    key, txt = rsa_key
    data = b"Subject: We will honour your objection\r\n" + signed(key)
    result = dkim_verdict(data, lookup_from({KEY_NAME: txt}))
    assert result.authentic is False
    assert "subject" in result.reasons[-1]


def test_trusted_headers_take_precedence_over_local_dkim(rsa_key: tuple[bytes, bytes]) -> None:
    key, txt = rsa_key
    data = (
        b"Authentication-Results: mx.example.org; dkim=fail header.d=facebookmail.com\r\n"
        b"Received: from mx-out.facebook.com by mx.example.org (Postfix); Tue, 20 May 2025\r\n"
        + signed(key)
    )
    assert dkim_verdict(data, lookup_from({KEY_NAME: txt})).authentic is False


def test_without_a_dns_lookup_local_dkim_is_not_tried(rsa_key: tuple[bytes, bytes]) -> None:
    key, _txt = rsa_key
    result = authenticity(parse(RawMail(signed(key), "t")))
    assert result.authentic is None
    assert "no DNS lookup" in result.reasons[-1]


# ---------------------------------------------------------------------------------------------
# The command line and the configuration.


def test_classify_explain_shows_the_reasons_and_trust_option(
    cli: Callable[..., object], tmp_path: Path
) -> None:
    corpus = Path(__file__).parent / "corpus" / "attacks"
    genuine = corpus / "genuine-04-postfix-rspamd-facebook-honoured.eml"
    result = cli("classify", "--explain", "--trust", "mail.novak.example.org", str(genuine))
    assert result.status == 0  # type: ignore[attr-defined]
    assert "honoured" in result.out and ", authentic," in result.out  # type: ignore[attr-defined]
    assert "authenticity: provider configured" in result.out  # type: ignore[attr-defined]
    result = cli("classify", "--explain", "--trust", "mx.other.example", str(genuine))
    assert "authenticity unknown" in result.out  # type: ignore[attr-defined]
    assert "no Received hop of the provider (other.example)" in result.out  # type: ignore[attr-defined]
    bad = cli("classify", "--trust", "not an id!", str(genuine))
    assert bad.status == 2  # type: ignore[attr-defined]


def test_scan_trust_goes_with_source(cli: Callable[..., object], tmp_path: Path) -> None:
    result = cli("scan", "--trust", "mx.example.org")
    assert result.status == 2  # type: ignore[attr-defined]
    assert "--trust goes with --source" in result.err  # type: ignore[attr-defined]


def test_account_trusted_authserv_ids_are_checked() -> None:
    from pydantic import ValidationError

    from optout_mail.config import Account
    from optout_mail.sources.imap import IMAPSource

    base = {"host": "imap.gmail.com", "username": "a", "password": "p"}
    account = Account(**base, trusted_authserv_ids=["MX.Example.org", "*.example.org", ""])
    source = IMAPSource("home", account, sender_domains=())
    assert source.trust == Trust(("mx.example.org", "*.example.org", ""), provider="imap.gmail.com")
    with pytest.raises(ValidationError, match="not an authserv-id"):
        Account(**base, trusted_authserv_ids=["mx.example.org; dkim=pass"])


# ---------------------------------------------------------------------------------------------
# Hostile input: the readers never raise anything but FromError.


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_readers_never_raise(text: str) -> None:
    header = parse_auth_header(text)
    assert all(r.method and r.result for r in header.results)
    with contextlib.suppress(FromError):
        strict_from((text,))
    verdict(*GMAIL, ar(text), FOREIGN, from_headers=(text,))
