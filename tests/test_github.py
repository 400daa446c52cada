"""The GitHub adapter, answered by respx with the examples of GitHub's own OpenAPI description."""

from __future__ import annotations

import httpx
import pytest
import respx

from pipeline_bot.errors import IntegrationError
from pipeline_bot.integrations.github import GitHubActions
from tests.conftest import github_examples


@pytest.fixture(scope="module")
def examples():
    return github_examples()


def test_recent_workflow_runs(examples):
    page = examples["workflow-run-paginated"]["value"]
    with respx.mock(assert_all_called=True) as mock:
        route = mock.get("https://api.github.com/repos/acme/shop/actions/runs").mock(
            return_value=httpx.Response(200, json=page)
        )
        runs = GitHubActions("ghp_test_token").recent_runs("acme/shop", limit=5)
    assert route.calls[0].request.headers["authorization"].endswith("ghp_test_token")
    assert route.calls[0].request.url.params["per_page"] == "5"
    first = page["workflow_runs"][0]
    assert [(r.id, r.sha, r.event) for r in runs][:1] == [
        (first["id"], first["head_sha"], first["event"])
    ]


def test_github_errors_carry_status_and_message_not_the_token():
    with respx.mock() as mock:
        mock.get("https://api.github.com/repos/acme/shop/actions/runs").mock(
            return_value=httpx.Response(
                404, json={"message": "Not Found", "documentation_url": "https://docs"}
            )
        )
        with pytest.raises(IntegrationError) as err:
            GitHubActions("ghp_secret_value").recent_runs("acme/shop")
    assert str(err.value) == "GitHub answered 404 for the workflow runs of acme/shop: Not Found"
    assert "ghp_secret_value" not in str(err.value)


def test_a_repository_must_be_owner_slash_name():
    with pytest.raises(IntegrationError, match="is not owner/name"):
        GitHubActions("t").recent_runs("shop")
