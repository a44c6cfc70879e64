"""Rules of a transfer (``coffre.domain.transfers``): pure functions, no I/O.

Expiry parsing and bounds, file-name sanitising (SEC-19/20/30), RFC 9110
byte ranges, link usability (410 reasons) and who may manage a transfer
(deny by default, another organisation's transfer does not exist).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from coffre.domain.accounts import ALL_SCOPES, Actor, Role
from coffre.domain.transfers import (
    MAX_FILENAME_BYTES,
    ByteRange,
    archive_name,
    check_downloads_left,
    check_expiry,
    check_link_usable,
    check_recipient_usable,
    downloads_left,
    parse_expiry,
    parse_range,
    recipient_state,
    sanitise_filename,
)
from coffre.errors import Gone, InvalidInput
from coffre.services.tracking import Step, collapse

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
YEAR = timedelta(days=365)

# -- expiry ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12h", timedelta(hours=12)),
        ("1h", timedelta(hours=1)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("3m", timedelta(days=90)),
        (" 7D ", timedelta(days=7)),
        ("12 m", timedelta(days=360)),
    ],
)
def test_parse_expiry_durations(text: str, expected: timedelta) -> None:
    assert parse_expiry(text) == expected


@pytest.mark.parametrize("text", ["permanent", "Never", " jamais "])
def test_parse_expiry_permanent(text: str) -> None:
    assert parse_expiry(text) is None


@pytest.mark.parametrize(
    "text", ["0d", "0h", "", "7", "d", "-1d", "1.5d", "7 days", "1y", "123456d", "7d7d", "\u0667d"]
)
def test_parse_expiry_rejects(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_expiry(text)
    assert caught.value.details == {"field": "expires_in"}


def test_check_expiry_bounds() -> None:
    check_expiry(None, YEAR)  # permanent
    check_expiry(timedelta(hours=1), YEAR)
    check_expiry(YEAR, YEAR)
    for bad in (timedelta(minutes=59), YEAR + timedelta(seconds=1), timedelta(0)):
        with pytest.raises(InvalidInput):
            check_expiry(bad, YEAR)


def test_thirteen_months_is_too_long_for_a_one_year_maximum() -> None:
    duration = parse_expiry("13m")
    with pytest.raises(InvalidInput, match="365 days"):
        check_expiry(duration, YEAR)


# -- file names -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Compte rendu é.pdf", "Compte rendu é.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\Windows\\system32\\cmd.exe", "cmd.exe"),
        ("/absolute/path/irm.dcm", "irm.dcm"),
        ("rapport\r\nSet-Cookie: x=1.pdf", "rapportSet-Cookie_ x=1.pdf"),
        ("x.pdf\x00.exe", "x.pdf.exe"),
        ("x.pdf.exe", "x.pdf.exe"),  # kept as is: the type check is elsewhere (SEC-19)
        ("facture\u202egpj.exe", "facturegpj.exe"),  # RTL override would show "exe.jpg"
        ("a\u200bb\ufeff.txt", "ab.txt"),  # zero-width and BOM (format characters)
        ("\x1b[31mrouge\x1b[0m.txt", "[31mrouge[0m.txt"),  # ANSI escape loses its ESC
        ('a:b*c?d"e<f>g|h.txt', "a_b_c_d_e_f_g_h.txt"),
        ("  .bashrc  ", "bashrc"),
        ("fichier.", "fichier"),
        ("..", "fichier"),
        ("", "fichier"),
        ("\u202e\x00\r\n", "fichier"),
    ],
)
def test_sanitise_filename(raw: str, expected: str) -> None:
    assert sanitise_filename(raw) == expected


def test_sanitise_filename_normalises_to_nfc() -> None:
    decomposed = "Re\u0301sultats.pdf"  # e + combining acute accent
    assert sanitise_filename(decomposed) == "Résultats.pdf"
    assert unicodedata.is_normalized("NFC", sanitise_filename(decomposed))


@pytest.mark.parametrize(
    "raw",
    [
        "a" * 1000 + ".pdf",
        "é" * 400 + ".pdf",
        "😀" * 200 + ".dcm",
        "b" * 300,
        "c" * 300 + "." + "x" * 40,  # an "extension" too long to be one
    ],
)
def test_sanitise_filename_caps_length_and_keeps_valid_utf8(raw: str) -> None:
    name = sanitise_filename(raw)
    encoded = name.encode()
    assert 0 < len(encoded) <= MAX_FILENAME_BYTES
    assert encoded.decode() == name  # never cut inside a character
    ext = raw.rpartition(".")[2]
    if len(ext) < 20 and "." in raw:
        assert name.endswith("." + ext)


def test_sanitise_filename_is_idempotent() -> None:
    for raw in ["../../etc/passwd", "x.pdf\x00.exe", "é" * 400 + ".pdf", "  a\r\nb  "]:
        once = sanitise_filename(raw)
        assert sanitise_filename(once) == once


# -- byte ranges (RFC 9110) -----------------------------------------------------

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", ByteRange(0, 100)),
        ("bytes=100-199", ByteRange(100, 200)),
        ("bytes=0-0", ByteRange(0, 1)),
        ("bytes=999-999", ByteRange(999, 1000)),
        ("bytes=500-", ByteRange(500, 1000)),  # open-ended
        ("bytes=900-5000", ByteRange(900, 1000)),  # last-pos past the end is clamped
        ("bytes=-100", ByteRange(900, 1000)),  # suffix
        ("bytes=-5000", ByteRange(0, 1000)),  # suffix longer than the file
        ("Bytes = 10-19", ByteRange(10, 20)),
    ],
)
def test_parse_range_single(header: str, expected: ByteRange) -> None:
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes=0-99,200-299",  # several ranges: answered with the whole file
        "bytes=0-1, 5-6",
        "items=0-99",  # unknown unit
        "bytes=abc-",
        "bytes=5",
        "bytes=-",
        "bytes=20-10",  # last < first: invalid, ignored
        "bytes=1_0-20",  # Python int() syntax is not RFC syntax
        "bytes=+5-10",
        "bytes=--5",
        "bytes=\u0663-\u0669",  # non-ASCII digits
        "bytes=" + "9" * 40 + "-",
    ],
)
def test_parse_range_ignored(header: str | None) -> None:
    assert parse_range(header, SIZE) is None


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=1000-", SIZE),  # starts at the end
        ("bytes=5000-6000", SIZE),
        ("bytes=-0", SIZE),  # empty suffix
        ("bytes=0-", 0),  # nothing to range over in an empty file
    ],
)
def test_parse_range_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_range(header, size)
    assert caught.value.details == {"unsatisfiable": True, "size": size}


def test_byte_range_length() -> None:
    assert ByteRange(10, 20).length == 10


# -- link usability and download limits ------------------------------------------


@dataclass
class FakeTransfer:
    sender_id: str = "alice"
    organisation_id: str = "org-a"
    expires_at: datetime | None = NOW + timedelta(days=1)
    revoked_at: datetime | None = None
    purged_at: datetime | None = None
    max_downloads: int | None = None


def _reason(transfer: FakeTransfer, now: datetime = NOW) -> str | None:
    try:
        check_link_usable(transfer, now)
    except Gone as exc:
        assert exc.status == 410
        reason: str = exc.details["reason"]
        return reason
    return None


def test_link_usable_until_expiry() -> None:
    transfer = FakeTransfer()
    assert _reason(transfer) is None
    assert _reason(transfer, NOW + timedelta(hours=23)) is None
    assert _reason(transfer, NOW + timedelta(days=1)) == "expired"  # expiry instant included
    assert _reason(transfer, NOW + timedelta(days=2)) == "expired"


def test_permanent_link_never_expires() -> None:
    assert _reason(FakeTransfer(expires_at=None), NOW + timedelta(days=36500)) is None


def test_link_reasons_in_order_of_precedence() -> None:
    past = NOW - timedelta(days=1)
    assert _reason(FakeTransfer(revoked_at=past)) == "revoked"
    assert _reason(FakeTransfer(revoked_at=past, expires_at=past)) == "revoked"
    assert _reason(FakeTransfer(purged_at=past, revoked_at=past, expires_at=past)) == "deleted"


def test_download_limit() -> None:
    unlimited = FakeTransfer()
    check_downloads_left(unlimited, 10_000)
    assert downloads_left(unlimited, 10_000) is None
    once = FakeTransfer(max_downloads=1)
    check_downloads_left(once, 0)
    assert downloads_left(once, 0) == 1
    with pytest.raises(Gone) as caught:
        check_downloads_left(once, 1)
    assert caught.value.details == {"reason": "exhausted"}
    assert downloads_left(once, 1) == 0
    assert downloads_left(FakeTransfer(max_downloads=3), 5) == 0


# -- who may manage a transfer ---------------------------------------------------


def _actor(user: str, org: str, role: Role = Role.MEMBER) -> Actor:
    return Actor(user_id=user, organisation_id=org, role=role, scopes=ALL_SCOPES)


def test_intervals_merge_and_cover() -> None:
    from coffre.domain.transfers import add_interval, covers

    delivered = add_interval([], 10, 20)
    delivered = add_interval(delivered, 30, 40)
    assert delivered == [(10, 20), (30, 40)]
    delivered = add_interval(delivered, 15, 35)
    assert delivered == [(10, 40)]
    assert not covers(delivered, 40)
    delivered = add_interval(delivered, 0, 10)  # adjacent ranges join
    assert delivered == [(0, 40)]
    assert covers(delivered, 40)
    assert not covers(delivered, 41)
    assert add_interval(delivered, 5, 5) == delivered
    assert not covers([], 0)


# -- what the sender's pages show (issue 16) ----------------------------------------------


def test_one_state_per_recipient_from_their_furthest_step() -> None:
    assert recipient_state([]) == "mail_sent"
    assert recipient_state([], opened=True) == "link_opened"
    # Opened, then a code sent: "Code sent" everywhere, not "Opened" somewhere.
    assert recipient_state(["mail_sent", "link_opened", "code_sent", "link_opened"],
                           opened=True) == "code_sent"
    assert recipient_state(["code_verified", "zip_downloaded"]) == "file_downloaded"
    assert recipient_state(["file_downloaded"], revoked=True) == "revoked"


def test_a_revoked_recipient_link_answers_gone() -> None:
    check_recipient_usable(None)
    with pytest.raises(Gone) as caught:
        check_recipient_usable(datetime(2026, 12, 7, tzinfo=UTC))
    assert caught.value.details["reason"] == "revoked"


def test_the_zip_is_named_after_the_subject() -> None:
    day = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
    assert archive_name("Résultats IRM / genou", day) == "Résultats IRM - genou.zip"
    assert archive_name("../../etc/passwd", day) == "-..-etc-passwd.zip"
    assert archive_name("a\\b:c*?\x00d", day) == "a-b_c__d.zip"
    assert archive_name("  ", day) == "fichiers-2026-12-07.zip"
    assert archive_name("...", day) == "fichiers-2026-12-07.zip"
    assert len(archive_name("é" * 300, day)) == 124


def test_repeated_steps_are_collapsed_in_the_order_they_first_came() -> None:
    def step(n: int, kind: str, file_id: str | None = None) -> Step:
        return Step(n, kind, datetime(2026, 12, 7, 9, n, tzinfo=UTC), "r", "a@x.fr", file_id,
                    None)

    steps = [step(1, "mail_sent"), step(2, "link_opened"), step(3, "code_sent"),
             step(4, "link_opened"), step(5, "file_downloaded", "f1"),
             step(6, "file_downloaded", "f2"), step(7, "link_opened")]
    lines = collapse(steps)
    assert [(g.kind, g.file_id, g.count) for g in lines] == [
        ("mail_sent", None, 1), ("link_opened", None, 3), ("code_sent", None, 1),
        ("file_downloaded", "f1", 1), ("file_downloaded", "f2", 1)]
    assert (lines[1].first.minute, lines[1].last.minute) == (2, 7)
