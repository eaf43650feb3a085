"""Talos disk images built rootless: GPT, per-partition file systems, bootloaders and META."""
