"""Image references and registry protocol details as pure functions: `repo:tag` parsed the way
Docker does, a registry's WWW-Authenticate challenge, the pinned `repo@sha256:...` form and the
OCI labels a build carries. No I/O (integrations/images.py talks to registries)."""

from __future__ import annotations

import re
from dataclasses import dataclass

DOCKER_HUB = "registry-1.docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
# the distribution spec's grammar for a repository path component and a tag
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]{32,}$")
_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")

# what a manifest request accepts: an image index (multi-platform) is resolved to its own digest,
# which is what a pod pulls by, so every kind is asked for
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)

TAG_ANNOTATION = "pipeline-bot.dev/image-tag"


class ReferenceError(ValueError):
    """Text that is not an image reference; the message says why."""


@dataclass(frozen=True)
class ImageRef:
    """A parsed reference. `registry` is the host (Docker Hub's API host for names without
    one), `repository` the path on it (`library/` added for Docker Hub's official images)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None
    given_name: str = ""  # the name as written (without tag and digest), for pinned references

    @property
    def reference(self) -> str:
        """What the manifest API is asked for: the digest when there is one, else the tag."""
        return self.digest or self.tag or "latest"

    def pinned(self, digest: str) -> str:
        """`name@digest`, the name as the user wrote it (so `nginx` stays `nginx`)."""
        return f"{self.given_name or self.registry + '/' + self.repository}@{digest}"

    def __str__(self) -> str:
        name = self.given_name or f"{self.registry}/{self.repository}"
        tag = f":{self.tag}" if self.tag else ""
        return f"{name}{tag}{'@' + self.digest if self.digest else ''}"


def parse_reference(text: str) -> ImageRef:
    """`[registry/]path[:tag][@digest]` as Docker reads it: the first component is a registry
    when it has a dot or a port, or is `localhost`; without a tag or digest the tag is latest."""
    text = text.strip()
    if not text or any(c.isspace() for c in text):
        raise ReferenceError(f"{text!r} is not an image reference")
    name, _, digest = text.partition("@")
    if digest and not _DIGEST.match(digest):
        raise ReferenceError(f"{digest!r} in {text!r} is not a digest (algorithm:hex)")
    tag: str | None = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        if not _TAG.match(tag):
            raise ReferenceError(f"tag {tag!r} in {text!r} is not a valid tag")
    parts = name.split("/")
    first = parts[0]
    if len(parts) > 1 and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, parts[1:]
    else:
        registry, path = DOCKER_HUB, parts
    if registry in _HUB_ALIASES:
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and len(path) == 1:
        path = ["library", *path]
    bad = [p for p in path if not _COMPONENT.match(p)]
    if bad or not path:
        raise ReferenceError(
            f"{text!r}: repository {'/'.join(path)!r} must be lowercase letters, digits and "
            "separators (. _ -)"
        )
    if tag is None and not digest:
        tag = "latest"
    return ImageRef(registry, "/".join(path), tag, digest or None, given_name=name)


def is_pinned(text: str) -> bool:
    """Whether a reference names a digest already."""
    return "@" in text


def valid_sha256(digest: str) -> bool:
    return bool(_SHA256.match(digest))


@dataclass(frozen=True)
class Challenge:
    """A 401's WWW-Authenticate: `scheme` (basic or bearer) and its parameters."""

    scheme: str
    params: dict[str, str]


_PARAM = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def parse_challenge(header: str) -> Challenge | None:
    """`Bearer realm="https://auth/token",service="reg",scope="repository:a/b:pull"` ->
    Challenge("bearer", {...}); None for an empty or unknown header."""
    scheme, _, rest = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme not in ("basic", "bearer"):
        return None
    params = {m.group(1).lower(): _unquote(m.group(2), m.group(3)) for m in _PARAM.finditer(rest)}
    return Challenge(scheme, params)


def _unquote(quoted: str | None, bare: str) -> str:
    return quoted.replace('\\"', '"') if quoted is not None else bare


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def oci_labels(
    *, revision: str | None, source: str | None, version: str | None = None
) -> dict[str, str]:
    """The OCI annotation keys a build labels its image with (image-spec annotations.md)."""
    labels = {
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.source": source,
        "org.opencontainers.image.version": version,
    }
    return {k: v for k, v in labels.items() if v}


@dataclass(frozen=True)
class ResolvedImage:
    """What a registry says a reference points at now."""

    reference: str  # as given
    registry: str
    repository: str
    tag: str | None
    digest: str
    media_type: str
    pinned: str  # name@digest, what a pod should run


@dataclass(frozen=True)
class BuildSpec:
    """What to build: a context folder, its Dockerfile, the reference to tag it with, build
    arguments and labels."""

    context: str
    reference: str
    dockerfile: str | None = None
    build_args: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
