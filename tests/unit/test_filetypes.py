"""The file-type policy without a server (SEC-19): programs and scripts are
recognised by name and by their first bytes; medical formats pass."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest

from coffre.domain import filetypes

# -- samples (the bytes real tools write) ------------------------------------------


def pe_file(*, lfanew: int = 0x80, preamble: bytes = b"") -> bytes:
    """A minimal PE: DOS header with e_lfanew, stub, "PE\\0\\0" header."""
    dos = bytearray(b"MZ" + b"\x90\x00" * 29)
    dos += b"\x00" * (0x3C - len(dos))
    dos += struct.pack("<I", lfanew)
    dos += b"\x00" * (lfanew - len(dos))
    return preamble + bytes(dos) + b"PE\x00\x00" + b"\x4c\x01" + b"\x00" * 200


def dicom_file(preamble: bytes = b"\x00" * 128) -> bytes:
    return preamble + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00" + b"\x00" * 200


def pe_dicom_polyglot() -> bytes:
    """CVE-2019-11687: an MZ header in the DICOM preamble runs on Windows."""
    pe = bytearray(pe_file(lfanew=0x100))
    return bytes(pe[:128]) + b"DICM" + bytes(pe[132:])


def zip_file(first: str = "scan-001.dcm") -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(first, b"data")
        archive.writestr("other.txt", b"more")
    return out.getvalue()


def ole_file(clsid: bytes) -> bytes:
    """An OLE2 compound file with 512-byte sectors, directory in sector 0."""
    header = bytearray(512)
    header[:8] = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
    struct.pack_into("<H", header, 0x1E, 9)
    struct.pack_into("<I", header, 0x30, 0)
    root = bytearray(128)
    root[:10] = "Root".encode("utf-16-le") + b"\x00\x00"
    root[0x50:0x60] = clsid
    return bytes(header) + bytes(root) + b"\x00" * 384


MSI_CLSID = struct.pack("<IHH", 0x000C1084, 0, 0) + b"\xc0\x00\x00\x00\x00\x00\x00\x46"
WORD_CLSID = struct.pack("<IHH", 0x00020906, 0, 0) + b"\xc0\x00\x00\x00\x00\x00\x00\x46"

MEDICAL = {
    "dicom": dicom_file(),
    "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n" * 20,
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 100,
    "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 100,
    "zip": zip_file(),
    "docx": zip_file("[Content_Types].xml"),
    "odt": zip_file("mimetype"),
    "doc": ole_file(WORD_CLSID),
    "text": b"MZERBI Jean, ne le 01/02/1970\n" * 10,
    "csv": b"nom;prenom\nMartin;Paul\n",
    "empty": b"",
}
PROGRAMS = {
    "pe": pe_file(),
    "polyglot": pe_dicom_polyglot(),
    "elf": b"\x7fELF\x02\x01\x01" + b"\x00" * 100,
    "mach-o": b"\xcf\xfa\xed\xfe" + b"\x00" * 100,
    "mach-o-or-java": b"\xca\xfe\xba\xbe\x00\x00\x00\x34" + b"\x00" * 100,
    "script": b"#!/bin/sh\nrm -rf ~\n",
    "bom-script": b"\xef\xbb\xbf#!/usr/bin/env python3\n",
    "jar": zip_file("META-INF/MANIFEST.MF"),
    "apk": zip_file("AndroidManifest.xml"),
    "msi": ole_file(MSI_CLSID),
    "lnk": b"\x4c\x00\x00\x00\x01\x14\x02\x00" + b"\x00" * 100,
    "dex": b"dex\n035\x00" + b"\x00" * 100,
}


@pytest.mark.parametrize("kind", sorted(MEDICAL))
def test_medical_formats_pass(kind: str) -> None:
    verdict = filetypes.sniff(MEDICAL[kind], final=True)
    assert verdict == filetypes.Verdict(None, True)


@pytest.mark.parametrize("kind", sorted(PROGRAMS))
def test_programs_are_refused_by_content(kind: str) -> None:
    verdict = filetypes.sniff(PROGRAMS[kind], final=False)
    assert verdict.decided and verdict.refusal is not None
    assert verdict.refusal.reason == "content"


def test_a_short_prefix_waits_for_more_bytes() -> None:
    pe = pe_file()
    for cut in (0, 1, 2, 0x3F, 0x83):
        verdict = filetypes.sniff(pe[:cut], final=False)
        assert verdict == filetypes.Verdict(None, False), cut
    assert filetypes.sniff(pe[:0x84], final=False).refusal == filetypes.Refusal("content", "pe")
    # The whole file is shorter than a PE header: not a program.
    assert filetypes.sniff(pe[:0x40], final=True) == filetypes.Verdict(None, True)
    # Not the start of any signature: decided at once.
    assert filetypes.sniff(b"%P", final=False) == filetypes.Verdict(None, True)


def test_an_mz_without_a_pe_header_in_reach_passes() -> None:
    far = bytearray(pe_file())
    struct.pack_into("<I", far, 0x3C, filetypes.SNIFF_BYTES + 10)
    assert filetypes.sniff(bytes(far), final=False) == filetypes.Verdict(None, True)


@pytest.mark.parametrize("name", [
    "x.exe", "RAPPORT.EXE", "x.pdf.exe", "x.exe.", "x.exe . .", "x.exe ", "setup.msi",
    "run.bat", "run.cmd", "a.com", "a.scr", "a.ps1", "a.vbs", "a.js", "a.jar", "a.sh",
    "a.app", "a.apk", "a.dll", "dossier/a.exe", "C:\\temp\\a.exe",
    "compte-rendu\u202efdp.exe",   # shows as "compte-renduexe.pdf"
    "photo\u202egpj.scr",
    "x.e\u200bxe",                 # zero-width space
    "x.exe\x00.pdf",               # C programs read x.exe
    "x.exe::$DATA",                # NTFS stream of x.exe
    "x.\uff45\uff58\uff45",        # full-width letters
])
def test_programs_are_refused_by_name(name: str) -> None:
    refusal = filetypes.check_name(name)
    assert refusal is not None and refusal.reason == "name", name


@pytest.mark.parametrize("name", [
    None, "", "IRM-genou.dcm", "compte-rendu.pdf", "radio.png", "examens.zip", "lettre.docx",
    "sans-extension", "exe", "notes.txt", "resultats.xlsx", "archive.tar.gz", "scanner.iso",
    "x.exe.pdf",  # a PDF by its name; its content is judged separately
])
def test_medical_names_pass(name: str | None) -> None:
    assert filetypes.check_name(name) is None
