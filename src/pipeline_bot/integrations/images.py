"""ImagePort: registries through the OCI distribution API (httpx: anonymous, basic and bearer
token flows), builds and pushes with the docker SDK where a daemon answers, else buildah."""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pipeline_bot.core.images import (
    MANIFEST_TYPES,
    BuildSpec,
    Challenge,
    ImageRef,
    ReferenceError,
    ResolvedImage,
    parse_challenge,
    parse_reference,
    pull_scope,
)
from pipeline_bot.errors import ImageError, IntegrationError

Progress = Callable[[str], None]
SERVICE = "registry"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


def docker_config_credentials(registry: str, config_dir: str | None = None) -> Credentials | None:
    """The `auth` that `docker login` (or docker/login-action) wrote for `registry` in
    $DOCKER_CONFIG/config.json (default ~/.docker/config.json); credential helpers are not run."""
    folder = Path(config_dir or os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        auths = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("auths", {})
    except (OSError, ValueError, AttributeError):
        return None
    hub = registry == "registry-1.docker.io"
    for key, entry in (auths or {}).items():
        host = key.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
        if host == registry or (hub and host in ("index.docker.io", "docker.io")):
            try:
                user, _, password = base64.b64decode(entry.get("auth", "")).decode().partition(":")
            except (ValueError, AttributeError):
                return None
            return Credentials(user, password) if user else None
    return None


def plain_http(registry: str, insecure: frozenset[str]) -> bool:
    """Registries spoken to over plain HTTP: loopback ones (as Docker treats them) and those
    listed in the insecure setting."""
    host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    return registry in insecure or host in ("localhost", "[::1]") or host.startswith("127.")


class RegistryClient:
    """Resolves references to digests. One client keeps tokens per registry and scope."""

    def __init__(
        self,
        credentials: Callable[[str], Credentials | None],
        *,
        insecure: frozenset[str] = frozenset(),
        timeout: float = 30,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._credentials = credentials
        self._insecure = insecure
        self._timeout = timeout
        self._transport = transport
        self._auth: dict[tuple[str, str], str] = {}  # Authorization per registry and repository

    def base(self, registry: str) -> str:
        return f"{'http' if plain_http(registry, self._insecure) else 'https'}://{registry}"

    def resolve(self, text: str) -> ResolvedImage:
        """The digest `text` points at now. A missing repository or tag is ImageError; a
        registry that cannot be reached, answers 5xx or refuses the pull, IntegrationError."""
        try:
            ref = parse_reference(text)
        except ReferenceError as exc:
            raise ImageError(str(exc), reference=text) from None
        url = f"{self.base(ref.registry)}/v2/{ref.repository}/manifests/{ref.reference}"
        with httpx.Client(
            timeout=self._timeout, transport=self._transport, follow_redirects=True
        ) as http:
            resp = self._send(http, "HEAD", ref, url)
            if resp.status_code != 200 or "docker-content-digest" not in resp.headers:
                resp = self._send(http, "GET", ref, url)  # errors have a body; some lack the header
            if resp.status_code != 200:
                raise self._failure(http, ref, resp)
        digest = resp.headers.get("docker-content-digest") or (
            "sha256:" + hashlib.sha256(resp.content).hexdigest()
        )
        media = resp.headers.get("content-type", "").split(";", 1)[0].strip()
        return ResolvedImage(
            text, ref.registry, ref.repository, ref.tag, digest, media, ref.pinned(digest)
        )

    def _send(self, http: httpx.Client, method: str, ref: ImageRef, url: str) -> httpx.Response:
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        key = (ref.registry, ref.repository)
        if key in self._auth:
            headers["Authorization"] = self._auth[key]
        resp = self._call(http, method, url, ref, headers)
        if resp.status_code != 401:
            return resp
        challenge = parse_challenge(resp.headers.get("www-authenticate", ""))
        authorization = self._authorize(http, ref, challenge)
        if authorization is None:
            return resp
        self._auth[key] = authorization
        return self._call(http, method, url, ref, {**headers, "Authorization": authorization})

    def _call(
        self,
        http: httpx.Client,
        method: str,
        url: str,
        ref: ImageRef,
        headers: dict[str, str],
        **kw: Any,
    ) -> httpx.Response:
        try:
            return http.request(method, url, headers=headers, **kw)
        except httpx.HTTPError as exc:
            raise IntegrationError(
                f"registry {ref.registry} cannot be reached ({type(exc).__name__}: {exc})",
                service=SERVICE,
            ) from None

    def _authorize(
        self, http: httpx.Client, ref: ImageRef, challenge: Challenge | None
    ) -> str | None:
        """The Authorization header the challenge asks for, or None when we have nothing to
        answer it with (the 401 then stands)."""
        creds = self._credentials(ref.registry)
        basic = (
            "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
            if creds
            else None
        )
        if challenge is None or challenge.scheme == "basic":
            return basic
        realm = challenge.params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise IntegrationError(
                f"registry {ref.registry} asked for a token from {realm!r}, which is no URL",
                service=SERVICE,
                status=401,
            )
        params = {"scope": challenge.params.get("scope") or pull_scope(ref.repository)}
        if "service" in challenge.params:
            params["service"] = challenge.params["service"]
        headers = {"Authorization": basic} if basic else {}
        resp = self._call(http, "GET", realm, ref, headers, params=params)
        if resp.status_code in (401, 403):
            raise IntegrationError(
                f"registry {ref.registry} refused a token to pull {ref.repository} "
                f"({resp.status_code}){'' if creds else '; no credentials are configured'}",
                service=SERVICE,
                status=resp.status_code,
            )
        try:
            body = resp.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if resp.status_code != 200 or not isinstance(token, str) or not token:
            raise IntegrationError(
                f"registry {ref.registry}'s token service answered {resp.status_code} without a "
                "token",
                service=SERVICE,
                status=resp.status_code,
            )
        return f"Bearer {token}"

    def _failure(self, http: httpx.Client, ref: ImageRef, resp: httpx.Response) -> Exception:
        codes = _error_codes(resp)
        where = f"{ref.registry}/{ref.repository}"
        if resp.status_code == 404 or {"MANIFEST_UNKNOWN", "NAME_UNKNOWN"} & codes:
            tags = None if "NAME_UNKNOWN" in codes else self._tags(http, ref)
            if tags is None:
                return ImageError(f"repository {where} does not exist", reference=str(ref))
            some = ", ".join(sorted(tags)[:10]) or "none"
            return ImageError(
                f"{ref.reference!r} is not in {where} (no such tag or digest; tags there: "
                f"{some}{' ...' if len(tags) > 10 else ''})",
                reference=str(ref),
            )
        if resp.status_code in (401, 403):
            creds = self._credentials(ref.registry)
            hint = "" if creds else "; no credentials are configured for it"
            return IntegrationError(
                f"registry {ref.registry} refused to let us pull {ref.repository} "
                f"({resp.status_code}: it does not exist, or the credentials may not read "
                f"it{hint})",
                service=SERVICE,
                status=resp.status_code,
            )
        return IntegrationError(
            f"registry {ref.registry} answered {resp.status_code} for {ref.repository}:"
            f"{ref.reference}",
            service=SERVICE,
            status=resp.status_code if resp.status_code >= 500 else None,
        )

    def _tags(self, http: httpx.Client, ref: ImageRef) -> list[str] | None:
        """The repository's tags; None when the registry says it has no such repository."""
        url = f"{self.base(ref.registry)}/v2/{ref.repository}/tags/list"
        resp = self._send(http, "GET", ref, url)
        if resp.status_code == 404 or "NAME_UNKNOWN" in _error_codes(resp):
            return None
        try:
            tags = resp.json().get("tags") if resp.status_code == 200 else []
        except (ValueError, AttributeError):
            tags = []
        return [str(t) for t in tags or []]


def _error_codes(resp: httpx.Response) -> set[str]:
    try:
        errors = resp.json().get("errors") or []
        return {str(e.get("code")) for e in errors if isinstance(e, dict)}
    except (ValueError, AttributeError):
        return set()


class Buildah:
    """Builds and pushes with buildah (no daemon). Storage follows buildah's own configuration
    (CONTAINERS_STORAGE_CONF); isolation is chroot unless BUILDAH_ISOLATION says otherwise."""

    name = "buildah"

    def __init__(
        self, credentials: Callable[[str], Credentials | None], insecure: frozenset[str]
    ) -> None:
        self._credentials = credentials
        self._insecure = insecure

    def build(self, spec: BuildSpec, progress: Progress) -> None:
        cmd = ["buildah", "bud"]
        if not os.environ.get("BUILDAH_ISOLATION"):
            cmd += ["--isolation", "chroot"]
        if spec.dockerfile:
            cmd += ["-f", spec.dockerfile]
        for key, value in spec.build_args:
            cmd += ["--build-arg", f"{key}={value}"]
        for key, value in spec.labels:
            cmd += ["--label", f"{key}={value}"]
        _stream([*cmd, "-t", spec.reference, spec.context], progress, "buildah bud")

    def push(self, reference: str, progress: Progress) -> str:
        ref = parse_reference(reference)
        with tempfile.TemporaryDirectory(prefix="pipeline-bot-push-") as tmp:
            digestfile = Path(tmp) / "digest"
            cmd = ["buildah", "push", "--digestfile", str(digestfile)]
            if plain_http(ref.registry, self._insecure):
                cmd.append("--tls-verify=false")
            with _authfile(ref.registry, self._credentials(ref.registry), Path(tmp)) as auth:
                if auth:
                    cmd += ["--authfile", str(auth)]
                _stream([*cmd, reference, f"docker://{reference}"], progress, "buildah push")
            return digestfile.read_text(encoding="utf-8").strip()


@contextmanager
def _authfile(registry: str, creds: Credentials | None, folder: Path) -> Iterator[Path | None]:
    """A containers-auth.json for one registry, readable by us only, removed after use: the
    password never goes on a command line."""
    if creds is None:
        yield None
        return
    path = folder / "auth.json"
    token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({"auths": {registry: {"auth": token}}}, out)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _stream(cmd: list[str], progress: Progress, what: str) -> None:
    """Run `cmd`, each output line a progress line; a failure names the last lines."""
    tail: list[str] = []
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
    except OSError as exc:
        raise IntegrationError(f"{what} could not start: {exc}", service=SERVICE) from None
    assert proc.stdout is not None  # noqa: S101 - asked for above
    with proc:
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                progress(line)
                tail = [*tail[-4:], line]
    if proc.returncode != 0:
        raise IntegrationError(
            f"{what} failed (exit {proc.returncode}): {' | '.join(tail)}", service=SERVICE
        )


class DockerDaemon:
    """Builds and pushes through a Docker Engine API (Docker, or Podman's compatible service)
    with the docker SDK: GitHub-hosted runners have a daemon. Each build or push opens its own
    connection and closes it; no read timeout there, as a push may print nothing for minutes
    (Podman's says nothing until the registry has the image)."""

    name = "docker"

    def __init__(self, docker: Any, credentials: Callable[[str], Credentials | None]) -> None:
        self._docker = docker  # the docker SDK's module
        self._credentials = credentials

    @classmethod
    def reachable(cls, credentials: Callable[[str], Credentials | None]) -> DockerDaemon | None:
        try:
            docker = importlib.import_module("docker")
        except ImportError:
            return None
        host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        if host.startswith("unix://") and not _listening(host.removeprefix("unix://")):
            return None  # asked first: the SDK leaves its socket open when it is refused
        try:
            client = docker.from_env(timeout=5)
        except Exception:  # noqa: BLE001 - no usable DOCKER_HOST: buildah then
            return None
        try:
            client.ping()
        except Exception:  # noqa: BLE001 - any failure means no usable daemon; buildah then
            return None
        finally:
            client.close()
        return cls(docker, credentials)

    @contextmanager
    def _api(self, what: str, reference: str, secret: str | None = None) -> Iterator[Any]:
        """A connection to the daemon for one operation; the SDK's and the connection's
        failures become IntegrationError naming `what` and the image (never `secret`)."""
        client = None
        try:
            client = self._docker.from_env(timeout=None)
            yield client.api
        except (self._docker.errors.DockerException, OSError) as exc:  # requests' are OSError
            detail = getattr(exc, "explanation", None) or str(exc) or type(exc).__name__
            raise IntegrationError(
                f"{what} of {reference} failed: {_scrub(str(detail), secret)}", service=SERVICE
            ) from None
        finally:
            if client is not None:
                client.close()

    def build(self, spec: BuildSpec, progress: Progress) -> None:
        with self._api("docker build", spec.reference) as api:
            stream = api.build(
                path=spec.context,
                dockerfile=spec.dockerfile,
                tag=spec.reference,
                buildargs=dict(spec.build_args),
                labels=dict(spec.labels),
                decode=True,
                rm=True,
            )
            error = _follow(stream, progress)[1]
        if error is not None:
            raise IntegrationError(
                f"docker build of {spec.reference} failed: {error}", service=SERVICE
            )

    def push(self, reference: str, progress: Progress) -> str:
        ref = parse_reference(reference)
        creds = self._credentials(ref.registry)
        secret = creds.password if creds else None
        auth = {"username": creds.username, "password": creds.password} if creds else None
        name = reference.rsplit(":", 1)[0] if ref.tag and reference.endswith(ref.tag) else reference
        with self._api("docker push", reference, secret) as api:
            stream = api.push(name, tag=ref.tag, stream=True, decode=True, auth_config=auth)
            digest, error = _follow(stream, progress)
        if error is not None:
            error = _scrub(error, secret)
            if _REFUSED.search(error):
                hint = (
                    f"; check the credentials for {creds.username}"
                    if creds
                    else "; no credentials are configured for it"
                )
                raise IntegrationError(
                    f"registry {ref.registry} refused the push of {reference} ({error}){hint}",
                    service=SERVICE,
                )
            raise IntegrationError(
                f"docker push of {reference} to registry {ref.registry} failed: {error}",
                service=SERVICE,
            )
        if not digest:
            raise IntegrationError(f"docker push of {reference} named no digest", service=SERVICE)
        return digest


# what a daemon says when the registry refuses the credentials (Docker, Podman)
_REFUSED = re.compile(
    r"\bunauthori[sz]ed\b|authentication required|\bdenied:|incorrect username or password",
    re.I,
)
# Docker and Podman end a push with the status line `<tag>: digest: sha256:... size: N`;
# Docker also sends it as aux.Digest, Podman does not
_PUSHED_DIGEST = re.compile(r"\bdigest: (sha256:[0-9a-f]{64})\b")


def _follow(stream: Any, progress: Progress) -> tuple[str | None, str | None]:
    """Read a daemon's JSON message stream to its end: each line a progress line; the digest a
    push reported, and the error that ended it, if any. Read to the end even after an error,
    so that the response's connection is released and closed with the client."""
    digest = error = None
    for chunk in stream:
        if error is not None:
            continue
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail") or {}
            error = str(chunk.get("error") or detail.get("message") or chunk).strip()
            continue
        text = str(chunk.get("stream") or chunk.get("status") or "").strip()
        if text:
            progress(text)
            found = _PUSHED_DIGEST.search(text) if chunk.get("status") else None
            digest = found.group(1) if found else digest
        aux = chunk.get("aux") or {}
        digest = aux.get("Digest") or digest
    return digest, error


def _listening(path: str) -> bool:
    """Whether something accepts connections on the unix socket at `path`."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(5)
            conn.connect(path)
    except OSError:
        return False
    return True


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


class RegistryImages:
    """The ImagePort: resolve through the registry API, build and push with a builder chosen
    on first use (a Docker daemon that answers, else buildah)."""

    def __init__(
        self,
        credentials: Callable[[str], Credentials | None],
        *,
        insecure: frozenset[str] = frozenset(),
        builder: Buildah | DockerDaemon | None = None,
    ) -> None:
        self._credentials = credentials
        self._insecure = insecure
        self._builder = builder
        self._registry: RegistryClient | None = None

    def resolve(self, reference: str) -> ResolvedImage:
        if self._registry is None:
            self._registry = RegistryClient(self._credentials, insecure=self._insecure)
        return self._registry.resolve(reference)

    def builder(self) -> Buildah | DockerDaemon:
        if self._builder is None:
            daemon = DockerDaemon.reachable(self._credentials)
            if daemon is not None:
                self._builder = daemon
            elif shutil.which("buildah"):
                self._builder = Buildah(self._credentials, self._insecure)
            else:
                raise IntegrationError(
                    "no image builder here: no Docker daemon answers and buildah is not "
                    "installed (apt-get install buildah)",
                    service=SERVICE,
                )
        return self._builder

    def build(self, spec: BuildSpec, *, progress: Progress | None = None) -> str:
        builder = self.builder()
        (progress or _quiet)(f"building {spec.reference} with {builder.name}")
        builder.build(spec, progress or _quiet)
        return builder.name

    def push(self, reference: str, *, progress: Progress | None = None) -> ResolvedImage:
        """Push a built image; the registry's answer for it (its digest) after."""
        try:
            ref = parse_reference(reference)
        except ReferenceError as exc:
            raise ImageError(str(exc), reference=reference) from None
        digest = self.builder().push(reference, progress or _quiet)
        resolved = self.resolve(reference)
        if digest and resolved.digest != digest:
            (progress or _quiet)(
                f"pushed {digest}, and {reference} now names {resolved.digest} (pushed again "
                "meanwhile?)"
            )
        return ResolvedImage(
            reference,
            ref.registry,
            ref.repository,
            ref.tag,
            resolved.digest,
            resolved.media_type,
            resolved.pinned,
        )


def _quiet(_: str) -> None:
    return None
