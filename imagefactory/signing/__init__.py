"""Cosign-compatible image signatures: keys, payloads, attach/fetch, keyless checks, policy.

Signatures are stored exactly as cosign stores them, so cosign and containers/image verify them.
"""
