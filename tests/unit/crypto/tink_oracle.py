"""Tink as a reference implementation of ``AES256_GCM_HKDF_1MB`` streaming AEAD.

Builds a Tink ``StreamingAead`` primitive from the same raw 32-byte key that
``coffre.crypto.stream`` uses, so ciphertexts can be checked both ways.
"""

from __future__ import annotations

import io

import tink
from tink import secret_key_access, streaming_aead
from tink.proto import aes_gcm_hkdf_streaming_pb2, common_pb2, tink_pb2

TYPE_URL = "type.googleapis.com/google.crypto.tink.AesGcmHkdfStreamingKey"
SEGMENT_SIZE = 1 << 20
KEY_ID = 1

streaming_aead.register()


class _KeepOpenBytesIO(io.BytesIO):
    """Tink closes the destination when the encrypting stream exits."""

    def close(self) -> None:
        pass


def primitive(key: bytes) -> streaming_aead.StreamingAead:
    """A Tink ``StreamingAead`` for raw ``key`` (32 bytes, HKDF-SHA256, 1 MiB segments)."""
    params = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingParams(
        ciphertext_segment_size=SEGMENT_SIZE,
        derived_key_size=32,
        hkdf_hash_type=common_pb2.SHA256,
    )
    key_proto = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey(
        version=0, key_value=key, params=params
    )
    keyset = tink_pb2.Keyset(
        primary_key_id=KEY_ID,
        key=[
            tink_pb2.Keyset.Key(
                key_data=tink_pb2.KeyData(
                    type_url=TYPE_URL,
                    value=key_proto.SerializeToString(),
                    key_material_type=tink_pb2.KeyData.SYMMETRIC,
                ),
                status=tink_pb2.ENABLED,
                key_id=KEY_ID,
                output_prefix_type=tink_pb2.RAW,
            )
        ],
    )
    handle = tink.proto_keyset_format.parse(keyset.SerializeToString(), secret_key_access.TOKEN)
    return handle.primitive(streaming_aead.StreamingAead)


def tink_encrypt(key: bytes, plaintext: bytes, associated_data: bytes = b"") -> bytes:
    """Encrypt ``plaintext`` with Tink."""
    out = _KeepOpenBytesIO()
    with primitive(key).new_encrypting_stream(out, associated_data) as enc:
        view = memoryview(plaintext)
        pos = 0
        while pos < len(view):  # write() may accept fewer bytes than given
            written = enc.write(view[pos:])
            pos += written if written is not None else len(view) - pos
    return out.getvalue()


def tink_decrypt(key: bytes, ciphertext: bytes, associated_data: bytes = b"") -> bytes:
    """Decrypt ``ciphertext`` with Tink; raises ``tink.TinkError`` on failure."""
    src = io.BytesIO(ciphertext)
    with primitive(key).new_decrypting_stream(src, associated_data) as dec:
        return dec.read()
