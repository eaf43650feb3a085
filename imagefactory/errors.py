"""Typed errors shared by the CLI, the workflow and the server.

Each kind maps to one CLI exit code and one HTTP status, decided here and nowhere else.
"""

from __future__ import annotations


class FactoryError(Exception):
    """Base of every error the factory reports to a person."""

    exit_code = 1
    http_status = 500


class InvalidInput(FactoryError):
    """The input (schematic, path, version, config) is wrong; the message says what."""

    exit_code = 2
    http_status = 400


class NotFound(FactoryError):
    """A well-formed reference to something that does not exist."""

    exit_code = 2
    http_status = 404


class BuildError(FactoryError):
    """A build or runtime step failed although the input was valid."""


class ToolError(BuildError):
    """An external command exited non-zero."""

    def __init__(self, argv: list[str], returncode: int, stderr_tail: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        super().__init__(f"{argv[0]} exited with {returncode}: {stderr_tail.strip()}")
