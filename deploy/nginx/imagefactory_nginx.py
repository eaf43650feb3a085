"""nginx for the published tree: the server block, a stand-alone nginx.conf, and the v2 sidecars.

The server block is generated from the declarations it must agree with (imagefactory.tree's paths and
content types, imagefactory.oci.media's manifest types), and `deploy/nginx/imagefactory.conf` is its
output for the default root; a test keeps the two equal.

nginx cannot read a file to fill a header, so a manifest's media type and digest reach it through
names: beside `v2/<repo>/manifests/<ref>`, a hard link `v2/<repo>/.manifests/<ref>/<kind>,<digest>`.
A request for a manifest is rewritten to that directory, random_index (in Debian's nginx) redirects to
its one file, and the location matching `<kind>,<digest>` sets Content-Type and Docker-Content-Digest.

    python deploy/nginx/imagefactory_nginx.py conf [--root DIR] [--listen ADDR]   # the server block
    python deploy/nginx/imagefactory_nginx.py standalone --prefix DIR --root DIR --listen ADDR
    python deploy/nginx/imagefactory_nginx.py sidecars PUBLIC                      # after a publish
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from pathlib import Path

from imagefactory import tree
from imagefactory.oci import media

DEFAULT_ROOT = "/srv/imagefactory/public"
DEFAULT_LISTEN = "8080"
CONF = Path(__file__).resolve().parent / "imagefactory.conf"

IMMUTABLE = "public, max-age=31536000, immutable"  # content-addressed: the path names the bytes
SHORT = "public, max-age=300"  # names whose bytes change: versions, catalogs, tags, keys, UI
TEXT = "text/plain; charset=utf-8"
YAML = "application/yaml"
API_VERSION = "registry/2.0"

# The file-name token of each manifest media type in the `.manifests/<ref>/` sidecars.
MANIFEST_KINDS = {
    media.OCI_INDEX: "oci-index",
    media.OCI_MANIFEST: "oci-manifest",
    media.DOCKER_LIST: "docker-list",
    media.DOCKER_MANIFEST: "docker-manifest",
}
SIDECAR_DIR = ".manifests"
DIGEST_RE = "sha256:[0-9a-f]{64}"
REF = re.compile(r"(sha256:[0-9a-f]{64}|[A-Za-z0-9_][A-Za-z0-9._-]{0,127})")


def _types() -> list[str]:
    """Upstream's content types by extension (the server's table; locations inherit it)."""
    by_type: dict[str, list[str]] = {}
    for ext, ctype in tree.CONTENT_TYPES.items():
        by_type.setdefault(ctype, []).append(ext.lstrip("."))
    return ["types {", *(f'    "{t}" {" ".join(exts)};' for t, exts in by_type.items()), "}"]


def _default(ctype: str) -> str:
    """What a location answers for names without an extension of the table."""
    return f'default_type "{ctype}";'


def _headers(cache: str, *extra: tuple[str, str]) -> list[str]:
    # add_header in a location replaces the server's, so every location states all of its own.
    pairs = [("Cache-Control", cache), ("X-Content-Type-Options", "nosniff"), *extra]
    return [f'add_header {name} "{value}" always;' for name, value in pairs]


def _location(match: str, body: list[str], comment: str = "") -> list[str]:
    head = [f"# {comment}"] if comment else []
    if match.startswith("~ "):  # a regex: quoted, as its braces would end the directive
        match = f'~ "{match[2:]}"'
    return [*head, f"location {match} {{", *(f"    {line}" for line in body), "}", ""]


def _v2_locations() -> list[str]:
    api = ("Docker-Distribution-API-Version", API_VERSION)
    out = _location(
        "~ ^/v2/?$",
        [*_headers("no-cache", api), "default_type application/json;", "return 200 '{}';"],
        "the registry API's version check",
    )
    for kind_re, cache, what in ((DIGEST_RE, IMMUTABLE, "by digest"), ("[^/]+", SHORT, "by tag")):
        for media_type, kind in MANIFEST_KINDS.items():
            out += _location(
                f"~ ^/v2/.+/{re.escape(SIDECAR_DIR)}/{kind_re}/{kind},(?<digest>{DIGEST_RE})$",
                [
                    "internal;",
                    _default(media_type),
                    *_headers(cache, api, ("Docker-Content-Digest", "$digest")),
                ],
                f"a manifest {what} ({kind}), reached from its sidecar directory",
            )
    out += _location(
        f"~ ^/v2/.+/{re.escape(SIDECAR_DIR)}/[^/]+/$",
        ["internal;", "random_index on;"],
        "a manifest's sidecar directory holds one file; random_index redirects to it",
    )
    out += _location(r"~ (^|/)\.", ["return 404;"], "hidden names are never served")
    out += _location(
        "~ ^/v2/(?<repo>.+)/manifests/(?<ref>[^/]+)$",
        [f"rewrite ^ /v2/$repo/{SIDECAR_DIR}/$ref/ last;"],
        "manifests by tag or digest: type and digest come from the sidecar's name",
    )
    out += _location(
        f"~ ^/v2/.+/blobs/(?<digest>{DIGEST_RE})$",
        [
            _default(tree.OCTET_STREAM),
            *_headers(IMMUTABLE, api, ("Docker-Content-Digest", "$digest")),
        ],
        "blobs by digest",
    )
    out += _location("/v2/", ["return 404;"])
    return out


def server_block(root: str = DEFAULT_ROOT, listen: str = DEFAULT_LISTEN) -> str:
    """The nginx `server { }` serving the published tree at `root` (the pipeline's `public`)."""
    body = [
        f"listen {listen};",
        "server_name _;",
        "# The pipeline's `public`: a symlink to the current generation, switched atomically by a",
        "# publish; nginx resolves it per request (open_file_cache stays off), so a switch is seen at",
        "# once and a request already open keeps reading the generation it started on.",
        f"root {root};",
        "autoindex off;",
        "index index.html;",
        "server_tokens off;",
        *_types(),
        _default(tree.OCTET_STREAM),
        "",
        *_location(
            "/image/",
            [_default(tree.OCTET_STREAM), *_headers(IMMUTABLE)],
            "image/<id>/<vtag>/<asset>: the ID and version name the bytes",
        ),
        *_location(
            "/schematics/",
            [_default(YAML), *_headers(IMMUTABLE)],
            "schematics/<id>: the ID is the hash of the bytes",
        ),
        *_location(
            "/pxe/", [_default(TEXT), *_headers(SHORT)], "iPXE scripts name the external URL"
        ),
        *_location("/versions", [_default(TEXT), *_headers(SHORT)], "the versions list"),
        *_location(
            "/version/", [_default(TEXT), *_headers(SHORT)], "extension and overlay catalogs"
        ),
        *_location(
            f"/{tree.SIGNING_KEY}", [_default(tree.PEM), *_headers(SHORT)], "the signing key"
        ),
        *_location(
            f"/{tree.SECUREBOOT_CERT}",
            [_default(tree.PEM), *_headers(SHORT)],
            "the Secure Boot signing certificate",
        ),
        *_v2_locations(),
        *_location(
            "/",
            ["include /etc/nginx/mime.types;", *_headers(SHORT)],
            "the web UI: HTML, CSS, scripts, images",
        ),
    ]
    lines = [
        "# Image Factory: nginx server block for the published static tree (`public` in the config).",
        "# Generated by deploy/nginx/imagefactory_nginx.py from imagefactory/tree.py and",
        "# imagefactory/oci/media.py; regenerate, don't edit. Needs random_index (Debian's nginx has it).",
        "# Install: copy to /etc/nginx/sites-enabled/ with `root` set to your `public` path.",
        "server {",
        *(f"    {line}" if line else "" for line in body),
    ]
    while lines[-1] == "":
        lines.pop()
    return "\n".join([*lines, "}", ""])


def standalone(prefix: Path, server: str) -> str:
    """A whole nginx.conf for an unprivileged nginx: `nginx -p PREFIX -c nginx.conf`, foreground."""
    temp = "\n".join(
        f"    {kind}_temp_path {prefix}/tmp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    indented = "\n".join(f"    {line}" if line else "" for line in server.splitlines())
    return (
        "daemon off;\nworker_processes 1;\n"
        f"pid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        "    include /etc/nginx/mime.types;\n"
        f"    access_log {prefix}/access.log;\n{temp}\n"
        f"{indented}\n}}\n"
    )


def _link(source: Path, dest: Path) -> None:
    """Hard-link `source` at `dest` by a rename, so a reader never sees a missing or partial file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.link(source, tmp)
    os.replace(tmp, dest)


def write_sidecars(public: Path) -> int:
    """Give every `v2/<repo>/manifests/<ref>` its sidecar; returns how many were written."""
    v2 = public / "v2"
    written = 0
    for manifest in sorted(v2.glob("**/manifests/*")) if v2.is_dir() else ():
        if manifest.name.endswith(tree.SIDECAR_SUFFIXES) or not REF.fullmatch(manifest.name):
            continue  # a checksum or signature beside a manifest, or not a reference
        if not manifest.is_file():
            continue
        data = manifest.read_bytes()
        try:
            media_type = json.loads(data)["mediaType"]
        except (ValueError, TypeError, KeyError):
            media_type = None
        kind = MANIFEST_KINDS.get(media_type) if isinstance(media_type, str) else None
        if kind is None:
            raise ValueError(f"{manifest}: no mediaType nginx can serve: {media_type!r}")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if manifest.name.startswith("sha256:") and manifest.name != digest:
            raise ValueError(f"{manifest}: content digest is {digest}")
        sidecar = manifest.parent.parent / SIDECAR_DIR / manifest.name
        wanted = f"{kind},{digest}"
        for stale in sidecar.glob("*") if sidecar.is_dir() else ():
            if stale.name != wanted:
                stale.unlink()
        target = sidecar / wanted
        if not (target.exists() and target.samefile(manifest)):
            _link(manifest, target)
            written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imagefactory_nginx", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    conf = sub.add_parser("conf", help="print the server block")
    alone = sub.add_parser("standalone", help="print a whole nginx.conf for an unprivileged nginx")
    for p in (conf, alone):
        p.add_argument("--root", default=DEFAULT_ROOT, help="the published tree (`public`)")
        p.add_argument("--listen", default=DEFAULT_LISTEN, help="nginx `listen` value")
    alone.add_argument("--prefix", required=True, type=Path, help="pid, logs and temp files")
    side = sub.add_parser("sidecars", help="write the v2 manifests' sidecars into a tree")
    side.add_argument("public", type=Path)
    args = parser.parse_args(argv)
    if args.command == "sidecars":
        try:
            print(f"{write_sidecars(args.public)} sidecars written")
        except (OSError, ValueError) as e:
            print(f"imagefactory_nginx: {e}", file=sys.stderr)
            return 2
        return 0
    server = server_block(args.root, args.listen)
    if args.command == "standalone":
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (args.prefix / "tmp" / kind).mkdir(parents=True, exist_ok=True)
        server = standalone(args.prefix.resolve(), server)
    sys.stdout.write(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
