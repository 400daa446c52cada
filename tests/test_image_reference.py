"""The image a deploy runs, one rule for every front end (core.manifests.image_reference): the
deploy tool and the App's GitHub deployments name the same image for the same tag."""

from __future__ import annotations

import pytest

from pipeline_bot.core.manifests import image_reference
from pipeline_bot.repo_config import RepoConfig, Service

CONFIG = RepoConfig(
    version=1,
    services=[
        Service(name="shop", paths=["src/**"], image="registry.local:5000/acme/shop:latest"),
        Service(name="cart", paths=["cart/**"]),  # no image configured
    ],
)
DIGEST = "sha256:" + "0" * 64


@pytest.mark.parametrize(
    ("app", "tag", "image"),
    [
        ("shop", "1.2.3", "registry.local:5000/acme/shop:1.2.3"),  # a bare tag on its image
        ("shop", "shop:1", "shop:1"),  # a full reference is as given
        ("shop", "ghcr.io/acme/shop", "ghcr.io/acme/shop"),
        ("shop", f"ghcr.io/acme/shop@{DIGEST}", f"ghcr.io/acme/shop@{DIGEST}"),
        ("cart", "cart:7", "cart:7"),
        ("cart", "7", None),  # a bare tag with no image to put it on
        ("unknown", "7", None),
    ],
)
def test_a_tag_becomes_the_services_image_and_a_full_reference_stays(app, tag, image):
    assert image_reference(CONFIG, app, tag) == image
