"""Image references and registry challenges as the core reads them (core/images.py)."""

from __future__ import annotations

import pytest

from pipeline_bot.core.images import (
    ReferenceError,
    is_pinned,
    oci_labels,
    parse_challenge,
    parse_reference,
)

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("nginx", "registry-1.docker.io", "library/nginx", "latest", None),
        ("nginx:1.27", "registry-1.docker.io", "library/nginx", "1.27", None),
        ("docker.io/nginx:1", "registry-1.docker.io", "library/nginx", "1", None),
        ("acme/shop:2", "registry-1.docker.io", "acme/shop", "2", None),
        ("ghcr.io/acme/shop:v1.2.3", "ghcr.io", "acme/shop", "v1.2.3", None),
        ("localhost/shop", "localhost", "shop", "latest", None),
        ("127.0.0.1:5000/a/b/c:x", "127.0.0.1:5000", "a/b/c", "x", None),
        (f"ghcr.io/acme/shop@{D}", "ghcr.io", "acme/shop", None, D),
        (f"ghcr.io/acme/shop:1@{D}", "ghcr.io", "acme/shop", "1", D),
    ],
)
def test_a_reference_is_read_as_docker_reads_it(text, registry, repository, tag, digest):
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )


@pytest.mark.parametrize(
    ("text", "pinned"),
    [
        ("nginx:1", f"nginx@{D}"),  # the name stays as the user wrote it
        ("127.0.0.1:5000/shop:1", f"127.0.0.1:5000/shop@{D}"),
        (f"ghcr.io/a/b:1@{'sha256:' + '0' * 64}", f"ghcr.io/a/b@{D}"),
    ],
)
def test_a_pinned_reference_keeps_the_name_and_drops_the_tag(text, pinned):
    assert parse_reference(text).pinned(D) == pinned


@pytest.mark.parametrize(
    "text",
    ["", "Shop:1", "shop:-bad", "shop@sha256:xyz", "a b:1", "ghcr.io/:1", "shop@nodigest"],
)
def test_what_is_no_reference_is_refused_saying_so(text):
    with pytest.raises(ReferenceError):
        parse_reference(text)


@pytest.mark.parametrize(
    ("header", "scheme", "params"),
    [
        ('Basic realm="registry"', "basic", {"realm": "registry"}),
        (
            'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull"',
            "bearer",
            {
                "realm": "https://ghcr.io/token",
                "service": "ghcr.io",
                "scope": "repository:a/b:pull",
            },
        ),
        (
            'bearer realm="https://auth.docker.io/token", service="registry.docker.io"',
            "bearer",
            {"realm": "https://auth.docker.io/token", "service": "registry.docker.io"},
        ),
        (
            'Bearer realm=https://x/t,error="insufficient_scope"',
            "bearer",
            {"realm": "https://x/t", "error": "insufficient_scope"},
        ),
    ],
)
def test_a_challenge_gives_its_scheme_and_parameters(header, scheme, params):
    challenge = parse_challenge(header)
    assert challenge is not None
    assert (challenge.scheme, challenge.params) == (scheme, params)


@pytest.mark.parametrize("header", ["", "Negotiate abc", "Digest realm=x"])
def test_an_unknown_challenge_is_none(header):
    assert parse_challenge(header) is None


def test_pinned_and_labels():
    assert is_pinned(f"a@{D}")
    assert not is_pinned("a:1")
    assert oci_labels(revision="abc", source=None) == {"org.opencontainers.image.revision": "abc"}
