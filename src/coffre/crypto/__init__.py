"""Cryptography at rest: the segmented AEAD stream, envelope keys, key providers."""
