"""Reading a stored stream back as plaintext, for every download path.

One place decides how a blob is read: through the store's forward reader
when it has one (``SequentialReads``: S3 serves a whole download from one
streaming GET), else by ``read`` per batch of segments.
"""

from __future__ import annotations

from collections.abc import Iterator

from coffre.crypto import stream
from coffre.ports import BlobReader, BlobStore, SequentialReads


def plaintext(
    store: BlobStore,
    storage_key: str,
    key: bytes,
    stream_size: int,
    start: int,
    end: int,
    associated_data: bytes = b"",
    *,
    batch_segments: int,
    read_ahead: bool,
) -> Iterator[stream.Chunk]:
    """The verified plaintext ``[start, end)`` of the stream stored under
    ``storage_key`` (``stream.decrypt_range``); the reader is released when
    the iterator ends or is closed."""

    def read(offset: int, length: int) -> bytes:
        return store.read(storage_key, offset, length)

    reader: BlobReader | None = None
    if isinstance(store, SequentialReads):
        reader = store.reader(storage_key, stream.ciphertext_end(end, stream_size))
    try:
        yield from stream.decrypt_range(key, reader or read, stream_size, start, end,
                                        associated_data,
                                        batch_segments=batch_segments, read_ahead=read_ahead)
    finally:
        if reader is not None:
            reader.close()
