"""Registry credentials a user already has: `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`).

Inline `auths` entries (`auth` = base64 user:password, or username/password), then a per-host
`credHelpers` entry or the `credsStore`, asked through `docker-credential-<name> get`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
from pathlib import Path

from imagefactory import tools
from imagefactory.errors import FactoryError, InvalidInput


def docker_config_path() -> Path:
    directory = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    return Path(directory) / "config.json"


def _host_keys(host: str) -> tuple[str, ...]:
    # docker login writes bare hosts; older clients wrote URLs.
    return (host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"http://{host}/v1/")


def _from_helper(helper: str, host: str, source: Path) -> tuple[str, str] | None:
    binary = f"docker-credential-{helper}"
    if shutil.which(binary) is None:
        raise InvalidInput(f"{source}: credential helper {binary} is not installed")
    try:
        out = tools.run([binary, "get"], stdin=host.encode())
    except FactoryError:
        return None  # the helper has nothing for this host
    try:
        answer = json.loads(out)
        return str(answer["Username"]), str(answer["Secret"])
    except (ValueError, KeyError, TypeError):
        raise InvalidInput(f"{binary} get: answer is not credentials JSON") from None


def registry_credentials(host: str, path: Path | None = None) -> tuple[str, str] | None:
    """(username, password) for `host` from the docker config, or None when it has none."""
    path = path or docker_config_path()
    try:
        config = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path}: cannot read docker config: {exc}") from None
    if not isinstance(config, dict):
        raise InvalidInput(f"{path}: docker config is not a JSON object")
    auths = config.get("auths") or {}
    for key in _host_keys(host):
        entry = auths.get(key) if isinstance(auths, dict) else None
        if not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            bad = InvalidInput(f"{path}: auths.{key}.auth is not base64 user:password")
            try:
                decoded = base64.b64decode(entry["auth"], validate=True).decode()
            except (binascii.Error, ValueError):
                raise bad from None
            user, sep, password = decoded.partition(":")
            if not sep:
                raise bad
            return user, password
        if entry.get("username") and entry.get("password"):
            return str(entry["username"]), str(entry["password"])
    helpers = config.get("credHelpers") or {}
    helper = helpers.get(host) if isinstance(helpers, dict) else None
    helper = helper or config.get("credsStore")
    if isinstance(helper, str) and helper:
        return _from_helper(helper, host, path)
    return None
