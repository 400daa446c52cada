"""A deploy the App makes that fails is a failed delivery (issue 14, point 4): listed by
GET /deliveries?status=failed and run again by POST /deliveries/{id}/retry, while GitHub's
deployment gets `failure` and whoever asked still gets the reply. A rollout that ran and failed
is not re-run by the queue on its own; a retry repeats it only where that is safe."""

from __future__ import annotations

from typing import Any

from pipeline_bot.errors import IntegrationError
from pipeline_bot.integrations.kubernetes import KubernetesCluster
from tests.app_harness import (  # the fixtures are imported for pytest to find them
    API_TOKEN,
    HEAD,
    Harness,
    app_fixture,  # noqa: F401
    gh_fixture,  # noqa: F401
    kube_fixture,  # noqa: F401
)
from tests.conftest import webhook_example

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
NEXT = "c" * 40
LATER = "d" * 40


def _push(app: Harness, after: str, delivery: str, before: str = HEAD) -> None:
    payload = webhook_example("push")
    payload.update(ref="refs/heads/master", before=before, after=after, deleted=False)
    app.deliver("push", payload, delivery)
    app.work()


def _failed(app: Harness) -> list[dict[str, Any]]:
    response = app.client.get("/deliveries", params={"status": "failed"}, headers=AUTH)
    assert response.status_code == 200
    return list(response.json())


def _states(gh: Any) -> list[str]:
    return [c.body["state"] for c in gh.made("POST", r"/deployments/\d+/statuses$")]


def _retry(app: Harness, delivery: str) -> None:
    response = app.client.post(f"/deliveries/{delivery}/retry", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "pending"
    app.work()


def test_a_rolled_back_push_deploy_is_a_failed_delivery_that_a_retry_deploys_again(
    app, gh, kube, kube_api
):
    kube_api.fail_image(f"registry.local/shop:{HEAD}")
    _push(app, HEAD, "push-1", before="b" * 40)
    assert _states(gh) == ["in_progress", "failure"]
    failed = _failed(app)
    assert [d["id"] for d in failed] == ["push-1"]
    assert failed[0]["attempts"] == 1  # the rollout ran and failed: the queue does not re-run it
    assert "shop@staging: rolled_back" in failed[0]["error"]
    status = app.client.get("/pipeline/status/push-1", headers=AUTH).json()
    assert [d["status"] for d in status["deploys"]] == ["rolled_back"]

    kube_api.reset()  # the image can be pulled now
    _retry(app, "push-1")
    assert app.services.deliveries.get("push-1").status == "done"
    assert _states(gh)[-2:] == ["in_progress", "success"]
    status = app.client.get("/pipeline/status/push-1", headers=AUTH).json()
    assert "succeeded" in [d["status"] for d in status["deploys"]]


def test_a_failed_deploy_is_not_repeated_by_a_restart_only_by_a_retry(app, gh, kube, kube_api):
    kube_api.fail_image(f"registry.local/shop:{HEAD}")
    _push(app, HEAD, "push-1", before="b" * 40)
    deploys = len(gh.made("POST", r"/statuses$"))
    # a process killed after the deploy failed, before the row said so, runs it again on start
    app.services.deliveries.finish("push-1", "pending")
    app.work()
    assert len(gh.made("POST", r"/statuses$")) == deploys  # nothing deployed again
    assert app.services.deliveries.get("push-1").status == "failed"


class ConnectionLostAfterApply:
    """The cluster as the engine sees it when the connection drops right after the API server
    took a Deployment: applied there, an error here, the rollout's state unknown; and it stays
    lost for the automatic rollback's patch too, so the deploy ends failed, not rolled back."""

    def __init__(self, cluster: Any) -> None:
        self._cluster = cluster
        self.broken = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cluster, name)

    def apply(self, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        applied = self._cluster.apply(obj, dry_run=dry_run)
        if self.broken and obj.get("kind") == "Deployment" and not dry_run:
            raise IntegrationError("connection reset by peer", service="kubernetes")
        return dict(applied)

    def patch(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if self.broken:
            raise IntegrationError("connection reset by peer", service="kubernetes")
        return dict(self._cluster.patch(*args, **kwargs))


def test_a_deploy_that_failed_without_rollback_is_not_retried_until_the_environment_moved_on(
    app, gh, kube
):
    _push(app, HEAD, "push-1", before="b" * 40)
    assert _states(gh) == ["in_progress", "success"]
    cluster = ConnectionLostAfterApply(KubernetesCluster.connect(kubeconfig=str(kube)))
    app.services.cluster = lambda env: cluster
    _push(app, NEXT, "push-2")
    assert _states(gh)[-1] == "failure"
    failed = _failed(app)
    assert [d["id"] for d in failed] == ["push-2"]
    assert failed[0]["attempts"] == 1  # the deploy had begun: not re-run on top of itself
    assert "connection reset by peer" in failed[0]["error"]

    before = len(gh.made("POST", r"/statuses$"))
    _retry(app, "push-2")
    assert len(gh.made("POST", r"/statuses$")) == before  # not deployed blindly on top of it
    again = app.services.deliveries.get("push-2")
    assert again.status == "failed"
    assert "was not rolled back" in again.error
    assert "/rollback staging" in again.error

    cluster.broken = False
    _push(app, LATER, "push-3", before=NEXT)  # someone shipped a fix: staging moved on
    assert app.services.deliveries.get("push-3").status == "done"
    _retry(app, "push-2")
    assert app.services.deliveries.get("push-2").status == "done"
    assert "success" in _states(gh)[-2:]  # then push-3's deployment is marked inactive


def test_a_locked_environment_makes_a_push_deploy_wait_then_fail_then_retryable(app, gh, kube):
    worker = app.client.app.state.worker
    worker._backoff = lambda attempts: 0.0
    app.comment("/lock staging release freeze", "admin")
    _push(app, HEAD, "push-1", before="b" * 40)
    failed = _failed(app)
    assert [d["id"] for d in failed] == ["push-1"]
    assert failed[0]["attempts"] == 5  # nothing was applied: the queue's retry policy applies
    assert "locked by @admin" in failed[0]["error"]
    app.comment("/unlock staging", "admin", comment_id=502)
    _retry(app, "push-1")
    assert app.services.deliveries.get("push-1").status == "done"
    assert _states(gh)[-1] == "success"


def test_a_rolled_back_deploy_command_is_answered_and_is_a_failed_delivery(app, gh, kube, kube_api):
    kube_api.fail_image(f"registry.local/shop:{HEAD}")
    app.comment("/deploy staging", "writer")
    text = app.status_comment()
    assert "**rolled_back**" in text
    assert _states(gh) == ["in_progress", "failure"]
    assert [c.body["content"] for c in gh.made("POST", r"/reactions$")] == ["eyes", "confused"]
    failed = _failed(app)
    assert len(failed) == 1
    assert failed[0]["event"] == "issue_comment"
    assert failed[0]["attempts"] == 1

    kube_api.reset()
    _retry(app, failed[0]["id"])  # authorised again, the same accepted head deployed again
    assert app.services.deliveries.get(failed[0]["id"]).status == "done"
    assert "**succeeded**" in app.status_comment()
    assert _states(gh)[-1] == "success"
