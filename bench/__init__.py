"""Benchmarks run against references on the same machine (never from ``make test``)."""

from pathlib import Path


def write_block(doc: Path, block: str, begin: str, end: str) -> None:
    """Put ``block`` (which starts with ``begin`` and ends with ``end``) in
    ``doc`` in place of the previous one, or at the end the first time."""
    text = doc.read_text() if doc.exists() else ""
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
    doc.write_text(text)
