"""A declarative, self-hosted Talos Linux Image Factory.

Schematics and a config drive pre-built, signed assets with upstream's URLs and IDs.
"""

__version__ = "0.1.0"
