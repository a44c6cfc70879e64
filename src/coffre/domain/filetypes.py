"""File types an organisation refuses (SEC-19): executables and scripts,
recognised by their name and by their first bytes. Pure functions.

The policy is a net for programs sent by mistake or by a careless (or
hostile) correspondent, not a malware scanner: an executable inside an
archive passes, as archives must (medical images travel zipped). It must
never refuse a medical format: DICOM (a 128-byte preamble, then ``DICM``),
PDF, images, ZIP-based office files, OLE2 office files (``.doc``, ``.xls``).

Names are judged as every consumer may read them: after removing invisible
and bidirectional control characters (``photo\u202egpj.exe`` shows as
``photoexe.jpg``), cut at a NUL byte (C programs stop there), and without
the trailing dots and spaces Windows drops (``x.exe.``).
"""

from __future__ import annotations

import struct
import unicodedata
from dataclasses import dataclass

#: Extensions of programs and scripts that run when opened (Windows, macOS,
#: Linux, Android, Java), lower case, without the dot.
BLOCKED_EXTENSIONS = frozenset({
    # Windows programs, libraries, installers, shortcuts and control panel items
    "exe", "dll", "com", "scr", "pif", "cpl", "msi", "msp", "mst", "msc", "sys", "drv",
    "ocx", "lnk", "scf", "url", "reg", "inf", "hta", "chm", "gadget", "application",
    "appx", "appxbundle", "msix", "msixbundle", "xbap", "xll", "appref-ms",
    # Windows scripts
    "bat", "cmd", "ps1", "psm1", "psd1", "ps1xml", "psc1", "vbs", "vbe", "vb", "js", "jse",
    "wsf", "wsh", "wsc", "ws", "msh", "msh1", "msh2",
    # Unix and macOS programs and scripts
    "sh", "bash", "zsh", "ksh", "csh", "run", "command", "tool", "app", "pkg", "dmg",
    "workflow", "action", "dylib", "so", "elf", "deb", "rpm", "appimage",
    # Interpreted and bytecode programs
    "jar", "jnlp", "class", "py", "pyc", "pyw", "pl", "rb", "php",
    # Mobile
    "apk", "aab", "xapk", "ipa", "dex",
})

#: Bytes judged at the start of a file: enough for every signature below
#: (a PE header is found through ``e_lfanew``, within this window).
SNIFF_BYTES = 64 * 1024

#: Characters that change how a name is shown without being seen.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

_MACHO = (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe")
#: Universal (fat) Mach-O binaries and Java class files share this magic.
_CAFEBABE = (b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf")
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
#: Root storage CLSIDs of Windows Installer packages, patches and transforms.
_MSI_CLSIDS = tuple(
    struct.pack("<IHH", value, 0, 0) + b"\xc0\x00\x00\x00\x00\x00\x00\x46"
    for value in (0x000C1084, 0x000C1086, 0x000C1082)
)
_LNK = b"\x4c\x00\x00\x00\x01\x14\x02\x00"
#: First entries of Java and Android archives (ZIP files that run).
_RUNNABLE_ZIP_ENTRIES = (b"META-INF/MANIFEST.MF", b"AndroidManifest.xml", b"classes.dex")


@dataclass(frozen=True)
class Refusal:
    """Why a file is refused: ``reason`` is ``name`` or ``content``; ``kind``
    the extension or the signature recognised (``pe``, ``elf``...)."""

    reason: str
    kind: str


@dataclass(frozen=True)
class Verdict:
    """What the first bytes say: ``refusal`` if they are a program;
    ``decided`` False while more bytes could still change the answer."""

    refusal: Refusal | None
    decided: bool


def _extension(name: str) -> str:
    name = name.rstrip(". \t")
    _stem, dot, ext = name.rpartition(".")
    return ext.lower() if dot else ""


def names_seen(raw: str) -> list[str]:
    """The names different programs may make of ``raw`` (see the module doc)."""
    name = unicodedata.normalize("NFKC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    seen = [name.split("\x00", 1)[0]]
    visible = "".join(c for c in name if c not in _BIDI
                      and unicodedata.category(c) not in {"Cc", "Cf"})
    seen.append(visible)
    # NTFS alternate data streams: "x.exe::$DATA" is x.exe.
    seen.extend(n.split(":", 1)[0] for n in list(seen) if ":" in n)
    return seen


def check_name(raw: str | None) -> Refusal | None:
    """A refusal if any reading of the file name ends in a blocked extension."""
    if not raw:
        return None
    for name in names_seen(raw):
        ext = _extension(name)
        if ext in BLOCKED_EXTENSIONS:
            return Refusal("name", ext)
    return None


def _pe(head: bytes, final: bool) -> Verdict:
    """``MZ`` with ``e_lfanew`` pointing to a PE/NE/LE header (a DOS stub
    alone, or text starting with "MZ", is not refused). Also catches the
    PE/DICOM polyglot, whose preamble holds an MZ header."""
    if len(head) < 0x40:
        return Verdict(None, final)
    (lfanew,) = struct.unpack_from("<I", head, 0x3C)
    if lfanew >= SNIFF_BYTES:
        return Verdict(None, True)
    if len(head) < lfanew + 4:
        return Verdict(None, final)
    signature = head[lfanew:lfanew + 4]
    if signature == b"PE\x00\x00" or signature[:2] in (b"NE", b"LE", b"LX"):
        return Verdict(Refusal("content", "pe"), True)
    return Verdict(None, True)


def _msi(head: bytes, final: bool) -> Verdict:
    """An OLE2 compound file is refused only if its root storage is a
    Windows Installer one (Word and Excel 97 files are OLE2 too)."""
    if len(head) < 0x40:
        return Verdict(None, final)
    (shift,) = struct.unpack_from("<H", head, 0x1E)
    (first_dir,) = struct.unpack_from("<I", head, 0x30)
    if shift not in (9, 12) or first_dir >= 0xFFFFFFFA:
        return Verdict(None, True)
    root = (first_dir + 1) << shift
    if root + 0x60 > SNIFF_BYTES:
        return Verdict(None, True)  # the directory lies further: not judged
    if len(head) < root + 0x60:
        return Verdict(None, final)
    if head[root + 0x50:root + 0x60] in _MSI_CLSIDS:
        return Verdict(Refusal("content", "msi"), True)
    return Verdict(None, True)


def _zip(head: bytes, final: bool) -> Verdict:
    """A ZIP whose first entry is a Java or Android manifest (JAR, APK)."""
    if len(head) < 30:
        return Verdict(None, final)
    (name_length,) = struct.unpack_from("<H", head, 26)
    if len(head) < 30 + name_length:
        return Verdict(None, final)
    if head[30:30 + name_length] in _RUNNABLE_ZIP_ENTRIES:
        return Verdict(Refusal("content", "jar"), True)
    return Verdict(None, True)


def sniff(head: bytes, *, final: bool) -> Verdict:
    """Judge the first bytes of a file (up to ``SNIFF_BYTES``).

    ``final``: ``head`` is the whole file, so no later byte can change the
    answer. A short prefix that could still become a program is undecided.
    """
    head = head[:SNIFF_BYTES]
    fixed: tuple[tuple[tuple[bytes, ...], str], ...] = (
        ((b"\x7fELF",), "elf"),
        (_MACHO, "mach-o"),
        (_CAFEBABE, "mach-o-or-java"),
        ((b"dex\n",), "dex"),
        ((_LNK,), "lnk"),
        ((b"#!", b"\xef\xbb\xbf#!"), "script"),
    )
    for signatures, kind in fixed:
        for signature in signatures:
            if head.startswith(signature):
                return Verdict(Refusal("content", kind), True)
    if head.startswith(b"MZ"):
        return _pe(head, final)
    if head.startswith(_OLE):
        return _msi(head, final)
    if head.startswith(b"PK\x03\x04"):
        return _zip(head, final)
    longest = max(len(s) for signatures, _k in fixed for s in signatures)
    prefixes = [s for signatures, _k in fixed for s in signatures]
    prefixes += [b"MZ", _OLE, b"PK\x03\x04"]
    if not final and len(head) < longest and any(s.startswith(head) for s in prefixes):
        return Verdict(None, False)
    return Verdict(None, True)
