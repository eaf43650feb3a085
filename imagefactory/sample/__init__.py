"""The sample release: a Talos-shaped stand-in for upstream content, built from Debian parts.

Laid out and signed like ghcr.io/siderolabs/..., so every source code path runs unchanged against it.
"""
