"""parse(): charsets, encoded words, HTML-only mail, Authentication-Results, hostile input."""

from __future__ import annotations

import base64
import tracemalloc
import unicodedata
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optout_mail.model import RawMail, TraceHeader
from optout_mail.parse import MAX_PARSE_BYTES, html_to_text, parse, received_by


def _parse(data: bytes):  # type: ignore[no-untyped-def]
    return parse(RawMail(data=data, origin="test"))


def test_latin1_quoted_printable_body_and_encoded_subject() -> None:
    raw = (
        b"From: Facebook <notification@facebookmail.com>\r\n"
        b"To: Alice <Alice@Example.org>\r\n"
        b"Subject: =?ISO-8859-1?Q?Dein_Widerspruch_gegen_die_Verwendung_f=FCr_KI?=\r\n"
        b"Message-ID: <a1@www.facebook.com>\r\n"
        b"Date: Tue, 03 Jun 2025 10:00:00 +0200\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"Wir werden deinem Widerspruch nachkommen. Gr=FC=DFe\r\n"
    )
    message = _parse(raw)
    assert message.subject == "Dein Widerspruch gegen die Verwendung für KI"
    assert "Grüße" in message.text
    assert message.from_address == "notification@facebookmail.com"
    assert message.from_domain == "facebookmail.com"
    assert message.to == ("alice@example.org",)
    assert message.date is not None and message.date.hour == 8  # normalised to UTC
    assert message.message_id == "<a1@www.facebook.com>"


def test_windows_1250_base64_html_only_mail_becomes_text() -> None:
    html = (
        "<html><head><style>p{}</style></head><body><p>Uwzględnimy Twój sprzeciw</p>"
        "<script>evil()</script><div>Centrum kont</div></body></html>"
    )
    raw = (
        b"From: Facebook <notification@facebookmail.com>\r\n"
        b"Subject: =?windows-1250?B?"
        + base64.b64encode("Twój sprzeciw".encode("cp1250"))
        + b"?=\r\nContent-Type: text/html; charset=windows-1250\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(html.encode("cp1250"))
    )
    message = _parse(raw)
    assert message.subject == "Twój sprzeciw"
    assert message.text.splitlines() == ["Uwzględnimy Twój sprzeciw", "Centrum kont"]


def test_plain_part_is_preferred_over_html(mail: Callable[..., bytes]) -> None:
    message = _parse(mail(body="plain words", html="<p>html words</p>"))
    assert message.text.strip() == "plain words"


def test_trace_keeps_every_authentication_results_between_the_received_hops() -> None:
    raw = (
        b"Received: by 2002:a05:7300:1d51:b0:69f:f4c6:67b with SMTP id x;\r\n"
        b"        Tue, 27 May 2025 02:14:10 -0700 (PDT)\r\n"
        b"Authentication-Results: mx.example.org; dkim=pass header.d=facebookmail.com;\r\n"
        b"  dmarc=pass (p=REJECT) header.from=facebookmail.com\r\n"
        b"Received: from mx-out.facebook.com (mx-out.facebook.com [69.171.232.143])\r\n"
        b"\tby MX.Example.ORG. (Postfix) with ESMTPS id 4ZDw\r\n"
        b"Authentication-Results: forged.example; dkim=fail header.d=facebookmail.com\r\n"
        b"From: notification@facebookmail.com\r\n"
        b"From: x@attacker.example\r\n\r\nbody\r\n"
    )
    message = _parse(raw)
    assert message.trace == (
        TraceHeader("received", "2002:a05:7300:1d51:b0:69f:f4c6:67b"),
        TraceHeader(
            "auth",
            "mx.example.org; dkim=pass header.d=facebookmail.com; "
            "dmarc=pass (p=REJECT) header.from=facebookmail.com",
        ),
        TraceHeader("received", "mx.example.org"),
        TraceHeader("auth", "forged.example; dkim=fail header.d=facebookmail.com"),
    )
    assert message.from_headers == ("notification@facebookmail.com", "x@attacker.example")
    assert message.raw == raw


@pytest.mark.parametrize(
    ("value", "host"),
    [
        (
            "from a.example (a.example [192.0.2.1]) by mx.example.org (Postfix) with ESMTPS",
            "mx.example.org",
        ),
        (
            "from x (helo said: by evil.example) by mx.example.org; Tue, 1 Jan 2025",
            "mx.example.org",
        ),
        ("from localhost (localhost [127.0.0.1]) by 10.217.137.25 with SMTPs", "10.217.137.25"),
        ("from mx6 ([10.202.2.205])\n  by compute3.internal (LMTPProxy); Tue", "compute3.internal"),
        ("from pop.example by mx.google.com with POP3 id d2e1a72", "mx.google.com"),
        ("from somewhere with SMTP; Tue, 27 May 2025", ""),
    ],
)
def test_received_by_host(value: str, host: str) -> None:
    assert received_by(value) == host


def test_raw_utf8_from_header_is_kept_as_text() -> None:
    raw = "From: Facebook <x@f\u0430cebookmail.com>\r\nSubject: x\r\n\r\nbody\r\n"
    assert _parse(raw.encode()).from_headers == ("Facebook <x@f\u0430cebookmail.com>",)


def test_missing_message_id_gets_a_stable_content_key() -> None:
    raw = b"From: a@b.c\r\nSubject: x\r\n\r\nbody\r\n"
    assert _parse(raw).message_id == _parse(raw).message_id
    assert _parse(raw).message_id != _parse(raw + b"more").message_id


def test_repeated_subject_and_broken_from_do_not_raise() -> None:
    raw = b"From: =?utf-8?q?not_an_address?=\r\nSubject: one\r\nSubject: two\r\n\r\nx"
    message = _parse(raw)
    assert message.subject == "one"
    assert message.from_address == ""


def test_deeply_nested_multipart_is_handled() -> None:
    depth = 2000
    parts = [
        f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n" for i in range(depth)
    ]
    raw = b"From: a@facebookmail.com\r\nSubject: nested\r\n" + "".join(parts).encode()
    message = _parse(raw)
    assert message.subject == "nested"
    assert message.from_address == "a@facebookmail.com"


def test_huge_mail_is_cut_and_parsed_in_bounded_memory() -> None:
    head = b"From: a@facebookmail.com\r\nSubject: big\r\nContent-Type: text/plain\r\n\r\nhello "
    raw = head + b"x" * (20 * 1024 * 1024)
    tracemalloc.start()
    message = _parse(raw)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert message.text.startswith("hello")
    assert any(d.startswith("truncated") for d in message.defects)
    assert peak < 64 * MAX_PARSE_BYTES  # a few copies of the cut mail, never of the 20 MB


def test_html_to_text_keeps_block_structure() -> None:
    assert html_to_text("<p>a&amp;b</p><br><div>c</div>") == "a&b\nc"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4000))
def test_parse_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    message = _parse(data)
    assert isinstance(message.text, str)
    assert message.message_id


@settings(max_examples=100, deadline=None)
@given(
    st.text(max_size=200),
    st.sampled_from(["utf-8", "latin-1", "cp1250", "iso-8859-2", "cp1252"]),
    st.sampled_from(["quoted-printable", "base64", "8bit"]),
)
def test_body_round_trips_through_any_charset(text: str, charset: str, cte: str) -> None:
    try:
        payload = text.encode(charset)
    except UnicodeEncodeError:
        payload = text.encode("utf-8")
        charset = "utf-8"
    if cte == "base64":
        body = base64.encodebytes(payload)
    elif cte == "quoted-printable":
        import quopri

        body = quopri.encodestring(payload)
    else:
        body = payload
    raw = (
        b"From: a@facebookmail.com\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        + f"Content-Type: text/plain; charset={charset}\r\n".encode()
        + f"Content-Transfer-Encoding: {cte}\r\n\r\n".encode()
        + body
    )
    message = _parse(raw)
    # mail-parser hands out NFC text: compatibility ideographs such as U+F900 become U+8C48.
    expected = unicodedata.normalize("NFC", text)
    assert " ".join(message.text.split()) == " ".join(expected.split())
