"""OCI images: registry and layout targets, deterministic image writing, verified pulls.

The submodules hold the API (model, target, registry, layout, build, pull); open_target picks a target.
"""

from __future__ import annotations

from imagefactory.oci.layout import LayoutTarget, open_target
from imagefactory.oci.registry import RegistryTarget
from imagefactory.oci.target import Target

__all__ = ["LayoutTarget", "RegistryTarget", "Target", "open_target"]
