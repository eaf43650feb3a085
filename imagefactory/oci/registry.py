"""An OCI distribution registry as a Target, over plain HTTP with requests.

Bounded retries, basic and Bearer-token auth, chunked uploads and digest-checked streaming downloads.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import requests
import requests.adapters

from imagefactory.errors import BuildError, InvalidInput, NotFound
from imagefactory.oci import media
from imagefactory.oci.digest import (
    CHUNK,
    VerifyingReader,
    buffered,
    check_digest,
    sha256_bytes,
    write_verified,
)
from imagefactory.oci.model import (
    HOST_RE,
    MAX_MANIFEST_BYTES,
    Descriptor,
    check_reference,
    check_repository,
    is_digest,
    manifest_media_type,
    parse_manifest,
)

log = logging.getLogger(__name__)

UPLOAD_CHUNK = 16 << 20
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
TAGS_PAGE = 1000


def _reason(exc: BaseException) -> str:
    """The root cause of a transport error in a few words ("connection refused")."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, ConnectionResetError):
            return "connection reset by peer"
        if isinstance(e, socket.gaierror):
            return f"cannot resolve host name ({e.strerror})"
        if isinstance(e, TimeoutError | requests.Timeout):
            return "timed out"
        nested = [getattr(e, "reason", None), e.__cause__, e.__context__, *e.args]
        todo.extend(n for n in nested if isinstance(n, BaseException))
    return str(exc) or type(exc).__name__


def _registry_errors(resp: requests.Response) -> str:
    """The codes and messages of a distribution error body, else the HTTP reason."""
    try:
        body = resp.json()
        errors = body.get("errors") if isinstance(body, dict) else None
        if isinstance(errors, list) and errors:
            return "; ".join(
                f"{e.get('code', '?')}: {e.get('message', '')}".rstrip(": ")
                for e in errors
                if isinstance(e, dict)
            )
    except ValueError:
        pass
    return f"{resp.status_code} {resp.reason}"


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """Split `Bearer realm="...",service="...",scope="..."` into scheme and parameters."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    i = 0
    while i < len(rest):
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().lstrip(",").strip().lower()
        i = eq + 1
        if i < len(rest) and rest[i] == '"':
            end = rest.find('"', i + 1)
            end = len(rest) if end < 0 else end
            params[key] = rest[i + 1 : end]
            i = end + 1
        else:
            end = rest.find(",", i)
            end = len(rest) if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end
        i = rest.find(",", i) + 1 if rest.find(",", i) >= 0 else len(rest)
    return scheme.lower(), params


class RegistryTarget:
    """One registry host; every request names the repository and reference it was for."""

    def __init__(
        self,
        host: str,
        *,
        insecure: bool = False,
        username: str | None = None,
        password: str | None = None,
        retries: int = 3,
        backoff: float = 0.2,
        timeout: float = 30,
        chunk_size: int = UPLOAD_CHUNK,
    ) -> None:
        if not HOST_RE.match(host):
            raise InvalidInput(f"not a registry host[:port]: {host!r}")
        if retries < 1:
            raise InvalidInput(f"registry {host}: retries must be at least 1, not {retries}")
        if (username is None) != (password is None):
            raise InvalidInput(f"registry {host}: give both username and password, or neither")
        self.name = host
        self.base = f"{'http' if insecure else 'https'}://{host}"
        self.username = username
        self.password = password
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.attempts = 0  # transport attempts made, for tests and logs
        self._session = requests.Session()
        # Retries are ours (bounded, with a clear final error); urllib3 must not add its own.
        adapter = requests.adapters.HTTPAdapter(max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._basic = False
        self._tokens: dict[str, str] = {}

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> RegistryTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ------------------------------------------------------------------------

    def _what(self, repository: str, reference: str) -> str:
        sep = "@" if is_digest(reference) else ":"
        return f"{repository}{sep}{reference}"

    def _url(self, repository: str, tail: str) -> str:
        return f"{self.base}/v2/{repository}/{tail}"

    def _auth_header(self, repository: str, push: bool) -> dict[str, str]:
        token = self._tokens.get(f"{repository}:{'push' if push else 'pull'}")
        if token is None and not push:
            token = self._tokens.get(f"{repository}:push")
        if token is not None:
            return {"Authorization": f"Bearer {token}"}
        if self._basic and self.username is not None and self.password is not None:
            return {"Authorization": requests.auth._basic_auth_str(self.username, self.password)}
        return {}

    def _authenticate(
        self, resp: requests.Response, repository: str, push: bool, what: str
    ) -> None:
        header = resp.headers.get("WWW-Authenticate", "")
        scheme, params = _parse_challenge(header)
        who = f"registry {self.name} ({what})"
        if scheme == "basic":
            if self.username is None:
                raise BuildError(f"{who}: needs a username and password (basic auth)")
            self._basic = True
            return
        if scheme != "bearer" or "realm" not in params:
            raise BuildError(f"{who}: unsupported authentication challenge {header!r}")
        scope = params.get("scope") or f"repository:{repository}:{'pull,push' if push else 'pull'}"
        query = {"scope": scope}
        if "service" in params:
            query["service"] = params["service"]
        auth = None
        if self.username is not None and self.password is not None:
            auth = (self.username, self.password)
        try:
            token_resp = self._session.get(
                params["realm"], params=query, auth=auth, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise BuildError(f"{who}: token server {params['realm']}: {_reason(exc)}") from None
        if token_resp.status_code != 200:
            raise BuildError(
                f"{who}: token server {params['realm']} refused"
                f"{f' user {self.username!r}' if self.username else ''}:"
                f" {_registry_errors(token_resp)}"
            )
        try:
            body = token_resp.json()
        except ValueError:
            body = None
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise BuildError(f"{who}: token server {params['realm']} sent no token")
        self._tokens[f"{repository}:{'push' if push else 'pull'}"] = token

    def _send(
        self,
        method: str,
        url: str,
        *,
        repository: str,
        reference: str,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """One request with auth and bounded retries on transport errors and 429/5xx."""
        push = method not in ("GET", "HEAD")
        what = self._what(repository, reference)
        authenticated = False
        last = ""
        attempt = 0
        while attempt < self.retries:
            attempt += 1
            self.attempts += 1
            try:
                resp = self._session.request(
                    method,
                    url,
                    headers={**(headers or {}), **self._auth_header(repository, push)},
                    data=data,
                    stream=stream,
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                last = _reason(exc)
                log.info(
                    "registry %s: %s %s: %s (attempt %d)", self.name, method, url, last, attempt
                )
                if attempt < self.retries:
                    time.sleep(self.backoff * 2 ** (attempt - 1))
                continue
            if resp.status_code == 401 and not authenticated:
                resp.close()
                self._authenticate(resp, repository, push, what)
                authenticated = True
                attempt -= 1  # answering a challenge is not a failed attempt
                continue
            if resp.status_code == 401:
                user = f" for user {self.username!r}" if self.username else ""
                raise BuildError(
                    f"registry {self.name}: authentication failed{user} ({what}):"
                    f" {_registry_errors(resp)}"
                )
            if resp.status_code in RETRY_STATUSES:
                last = f"{resp.status_code} {resp.reason}"
                resp.close()
                if attempt < self.retries:
                    time.sleep(self.backoff * 2 ** (attempt - 1))
                continue
            return resp
        verb = "still failing" if last[:3].isdigit() else "cannot reach it"
        raise BuildError(
            f"registry {self.name}: {verb} after {self.retries} attempts ({what}): {last}"
        )

    def _fail(self, resp: requests.Response, action: str, repository: str, reference: str) -> None:
        what = f"{self.name}/{self._what(repository, reference)}"
        detail = _registry_errors(resp)
        resp.close()
        if resp.status_code == 404:
            raise NotFound(f"{what}: not found ({detail})")
        if resp.status_code == 403:
            raise BuildError(f"{what}: {action} forbidden ({detail})")
        raise BuildError(f"{what}: {action} failed: {detail}")

    # -- manifests ------------------------------------------------------------------------

    def resolve(self, repository: str, reference: str) -> Descriptor:
        check_repository(repository)
        check_reference(reference)
        resp = self._send(
            "HEAD",
            self._url(repository, f"manifests/{reference}"),
            repository=repository,
            reference=reference,
            headers={"Accept": media.MANIFEST_ACCEPT},
        )
        if resp.status_code != 200:
            self._fail(resp, "resolve", repository, reference)
        digest = resp.headers.get("Docker-Content-Digest", "")
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        size = resp.headers.get("Content-Length", "")
        if not (digest and media_type and size.isdigit()):
            return self.get_manifest(repository, reference)[0]
        check_digest(digest)
        if is_digest(reference) and digest != reference:
            raise BuildError(
                f"{self.name}/{self._what(repository, reference)}: registry answered digest {digest}"
            )
        return Descriptor(media_type=media_type, digest=digest, size=int(size))

    def get_manifest(self, repository: str, reference: str) -> tuple[Descriptor, bytes]:
        check_repository(repository)
        check_reference(reference)
        what = f"{self.name}/{self._what(repository, reference)}"
        resp = self._send(
            "GET",
            self._url(repository, f"manifests/{reference}"),
            repository=repository,
            reference=reference,
            headers={"Accept": media.MANIFEST_ACCEPT},
            stream=True,
        )
        if resp.status_code != 200:
            self._fail(resp, "get manifest", repository, reference)
        with resp:
            try:
                data = resp.raw.read(MAX_MANIFEST_BYTES + 1, decode_content=True)
            except Exception as exc:
                raise BuildError(f"{what}: reading manifest: {_reason(exc)}") from None
        got = sha256_bytes(data)
        expected = reference if is_digest(reference) else resp.headers.get("Docker-Content-Digest")
        if expected and got != expected:
            raise BuildError(
                f"{what}: manifest digest mismatch: expected {expected}, content hashes to {got}"
            )
        media_type = manifest_media_type(parse_manifest(data, what), what)
        return Descriptor(media_type=media_type, digest=got, size=len(data)), data

    def put_manifest(
        self, repository: str, data: bytes, media_type: str, tag: str | None = None
    ) -> Descriptor:
        check_repository(repository)
        digest = sha256_bytes(data)
        if tag is not None and (is_digest(tag) or not check_reference(tag)):
            raise InvalidInput(f"not a tag: {tag!r}")
        if not media_type:
            raise InvalidInput(f"{self.name}/{repository}: a manifest needs a media type")
        parse_manifest(data, f"{self.name}/{self._what(repository, tag or digest)}")
        for reference in (digest, tag) if tag is not None else (digest,):
            resp = self._send(
                "PUT",
                self._url(repository, f"manifests/{reference}"),
                repository=repository,
                reference=reference,
                headers={"Content-Type": media_type},
                data=data,
            )
            if resp.status_code not in (200, 201):
                self._fail(resp, "put manifest", repository, reference)
            answered = resp.headers.get("Docker-Content-Digest")
            resp.close()
            if answered and answered != digest:
                raise BuildError(
                    f"{self.name}/{self._what(repository, reference)}: registry stored the"
                    f" manifest as {answered}, not {digest}"
                )
        return Descriptor(media_type=media_type, digest=digest, size=len(data))

    def delete_manifest(self, repository: str, digest: str) -> None:
        check_repository(repository)
        check_digest(digest)
        resp = self._send(
            "DELETE",
            self._url(repository, f"manifests/{digest}"),
            repository=repository,
            reference=digest,
        )
        if resp.status_code not in (200, 202):
            self._fail(resp, "delete manifest", repository, digest)
        resp.close()

    def list_tags(self, repository: str) -> list[str]:
        check_repository(repository)
        tags: list[str] = []
        url: str | None = self._url(repository, f"tags/list?n={TAGS_PAGE}")
        while url is not None:
            resp = self._send("GET", url, repository=repository, reference="latest")
            if resp.status_code != 200:
                self._fail(resp, "list tags", repository, "latest")
            try:
                page = resp.json().get("tags") or []
            except (ValueError, AttributeError):
                raise BuildError(f"{self.name}/{repository}: tag list is not JSON") from None
            tags.extend(t for t in page if isinstance(t, str))
            nxt = resp.links.get("next", {}).get("url")
            url = urllib.parse.urljoin(self.base, nxt) if nxt else None
        return tags

    # -- blobs ----------------------------------------------------------------------------

    def has_blob(self, repository: str, digest: str) -> bool:
        check_repository(repository)
        check_digest(digest)
        resp = self._send(
            "HEAD",
            self._url(repository, f"blobs/{digest}"),
            repository=repository,
            reference=digest,
        )
        resp.close()
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        self._fail(resp, "check blob", repository, digest)
        return False

    def _get_blob(self, repository: str, digest: str) -> requests.Response:
        check_repository(repository)
        check_digest(digest)
        resp = self._send(
            "GET",
            self._url(repository, f"blobs/{digest}"),
            repository=repository,
            reference=digest,
            stream=True,
        )
        if resp.status_code != 200:
            self._fail(resp, "get blob", repository, digest)
        return resp

    def fetch_blob(self, repository: str, digest: str, dest: Path) -> None:
        what = f"{self.name}/{repository}@{digest}"
        with self._get_blob(repository, digest) as resp:
            try:
                write_verified(
                    resp.raw.stream(CHUNK, decode_content=False), Path(dest), digest, what
                )
            except requests.RequestException as exc:
                raise BuildError(f"{what}: download failed: {_reason(exc)}") from None
            except OSError as exc:
                if isinstance(exc, FileNotFoundError | PermissionError):
                    raise BuildError(f"{what}: cannot write {dest}: {exc.strerror}") from None
                raise BuildError(f"{what}: download failed: {_reason(exc)}") from None

    def open_blob(self, repository: str, digest: str) -> BinaryIO:
        resp = self._get_blob(repository, digest)

        def read(n: int) -> bytes:
            data: bytes = resp.raw.read(n, decode_content=False)
            return data

        what = f"{self.name}/{repository}@{digest}"
        return buffered(VerifyingReader(read, digest, what, resp.close))

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Cross-repository mount; False when the registry can't (the blob must be pushed)."""
        check_repository(from_repository)
        check_digest(digest)
        query = urllib.parse.urlencode({"mount": digest, "from": from_repository})
        resp = self._send(
            "POST",
            self._url(repository, f"blobs/uploads/?{query}"),
            repository=repository,
            reference=digest,
        )
        resp.close()
        if resp.status_code == 201:
            return True
        if resp.status_code == 202 and "Location" in resp.headers:
            cancel = self._send(
                "DELETE",
                urllib.parse.urljoin(self.base, resp.headers["Location"]),
                repository=repository,
                reference=digest,
            )
            cancel.close()
            return False
        self._fail(resp, "mount blob", repository, digest)
        return False

    def _start_upload(self, repository: str, reference: str) -> str:
        resp = self._send(
            "POST",
            self._url(repository, "blobs/uploads/"),
            repository=repository,
            reference=reference,
        )
        resp.close()
        if resp.status_code != 202 or "Location" not in resp.headers:
            self._fail(resp, "start upload", repository, reference)
        return urllib.parse.urljoin(self.base, resp.headers["Location"])

    def _finish_upload(
        self, location: str, repository: str, digest: str, data: bytes | None = None
    ) -> None:
        sep = "&" if "?" in location else "?"
        headers = {"Content-Type": "application/octet-stream"}
        resp = self._send(
            "PUT",
            f"{location}{sep}{urllib.parse.urlencode({'digest': digest})}",
            repository=repository,
            reference=digest,
            headers=headers,
            data=data or b"",
        )
        resp.close()
        if resp.status_code not in (201, 204):
            self._fail(resp, "finish upload", repository, digest)

    def _chunks(self, source: Path) -> Iterator[bytes]:
        with Path(source).open("rb") as f:
            while chunk := f.read(self.chunk_size):
                yield chunk

    def push_blob(self, repository: str, source: Path, digest: str | None = None) -> str:
        check_repository(repository)
        if digest is not None and self.has_blob(repository, check_digest(digest)):
            return digest
        if not Path(source).is_file():
            raise InvalidInput(f"{self.name}/{repository}: blob source is not a file: {source}")
        reference = digest or "sha256:" + "0" * 64
        location = self._start_upload(repository, reference)
        h = hashlib.sha256()
        offset = 0
        # PATCH one chunk at a time: memory stays at one chunk whatever the blob size.
        for chunk in self._chunks(source):
            h.update(chunk)
            resp = self._send(
                "PATCH",
                location,
                repository=repository,
                reference=reference,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                },
                data=chunk,
            )
            resp.close()
            if resp.status_code != 202:
                self._fail(resp, "upload chunk", repository, reference)
            location = urllib.parse.urljoin(self.base, resp.headers.get("Location", location))
            offset += len(chunk)
        got = "sha256:" + h.hexdigest()
        if digest is not None and got != digest:
            self._send("DELETE", location, repository=repository, reference=digest).close()
            raise BuildError(
                f"{self.name}/{repository}: blob {source} hashes to {got}, not {digest}"
            )
        self._finish_upload(location, repository, got)
        return got

    def push_blob_bytes(self, repository: str, data: bytes) -> str:
        check_repository(repository)
        digest = sha256_bytes(data)
        if self.has_blob(repository, digest):
            return digest
        location = self._start_upload(repository, digest)
        self._finish_upload(location, repository, digest, data)
        return digest
