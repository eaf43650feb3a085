"""CLI subcommands, one module per concern; each exposes `register(subparsers)`."""

from __future__ import annotations

import argparse

DEFAULT_CONFIG = "config/config.yaml"


def common_options() -> argparse.ArgumentParser:
    """Options every subcommand takes, so they may follow the subcommand's name."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", default=DEFAULT_CONFIG, help="config file (default: %(default)s)"
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log every tool run")
    return common
