"""Upstream's keyless signing identity: who signs Talos release images, declared once.

A module of its own so that reading a config does not load the X.509 machinery.
"""

from __future__ import annotations

DEFAULT_ISSUER = "https://accounts.google.com"
DEFAULT_SUBJECT_REGEXP = (
    r"(@siderolabs\.com$|^releasemgr-svc@talos-production\.iam\.gserviceaccount\.com$)"
)
