"""Fuzzing the App's HTTP entries and the Action's inputs (issue 15, deliverable 5).

- the REST API, from the App's own OpenAPI description, with schemathesis: no request, with or
  without the token, gets a 5xx;
- the webhook intake with hypothesis: any body, event name, delivery id and signature (valid or
  not) gets a 2xx or 4xx, and the worker then handles every stored delivery without a traceback
  and leaves none `running`;
- the Action's entry point with hypothesis: any value of any input, and any event file, ends in
  exit 0 or 1 with `::error::` saying why, never an exception.

Deterministic: derandomized, no example database. FUZZ_EXAMPLES raises the number of examples
(bench/security.py runs the long fuzz)."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
import respx
import schemathesis
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline_bot import redaction
from pipeline_bot.action.main import main as action_main
from pipeline_bot.app.context import AppServices
from pipeline_bot.app.server import create_app
from pipeline_bot.integrations.deliveries import DeliveryStore
from pipeline_bot.integrations.github_app import GitHubApp
from pipeline_bot.integrations.store import SqlStore
from tests.app_harness import API, API_TOKEN, SECRET, private_key, signed

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def _app(folder: Path) -> tuple[Any, AppServices]:
    url = f"sqlite:///{folder / 'app.db'}"
    services = AppServices(
        deliveries=DeliveryStore(url),
        github=GitHubApp("1", private_key(), api_url=API),
        store=SqlStore(url),
    )
    return create_app(
        services, SECRET, api_token=API_TOKEN, mcp=False, start_worker=False
    ), services


# ---------------------------------------------------------------- the REST API (schemathesis)

REST_APP, _ = _app(Path(tempfile.mkdtemp(prefix="pb-fuzz-rest-")))  # schemathesis needs it now
schema = schemathesis.openapi.from_asgi("/openapi.json", REST_APP)


@schema.parametrize()
@settings(max_examples=max(5, EXAMPLES // 2), deadline=None, derandomize=True, database=None)
def test_the_rest_api_answers_any_request_without_a_5xx(case):
    with respx.mock(assert_all_called=False) as mock:  # GitHub is never reached for real
        mock.route(url__startswith=API).respond(503)
        for headers in (AUTH, {}):
            response = case.call(headers=headers)
            assert response.status_code < 500, (case.method, case.path, response.text[:300])
            if not headers and case.path not in ("/health", "/metrics"):
                assert response.status_code in (401, 403, 404, 405), case.path


# ---------------------------------------------------------------- the webhook intake

EVENTS = ["pull_request", "issue_comment", "push", "check_run", "ping", "installation", "zzz", ""]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    event = draw(st.sampled_from(EVENTS))
    kind = draw(st.sampled_from(["json", "bytes", "shaped"]))
    if kind == "json":
        body = json.dumps(draw(json_values)).encode()
    elif kind == "bytes":
        body = draw(st.binary(max_size=300))
    else:  # GitHub's shape with hostile values
        body = json.dumps(
            {
                "action": draw(st.text(max_size=10)),
                "repository": {"full_name": draw(st.text(max_size=30)), "id": draw(st.integers())},
                "installation": {"id": draw(st.integers())},
                "pull_request": draw(json_values),
                "comment": {"body": draw(st.text(max_size=60)), "user": draw(json_values)},
                "issue": draw(json_values),
                "sender": {"login": draw(st.text(max_size=20)), "type": "User"},
            }
        ).encode()
    ascii_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
    delivery = draw(st.one_of(st.just(str(uuid.uuid4())), ascii_text))
    _, headers = signed(event, body, delivery=str(uuid.uuid4()))
    headers["X-GitHub-Delivery"] = delivery
    signature = draw(st.sampled_from(["valid", "wrong", "missing", "garbage"]))
    if signature == "wrong":
        headers["X-Hub-Signature-256"] = "sha256=" + "0" * 64
    elif signature == "missing":
        del headers["X-Hub-Signature-256"]
    elif signature == "garbage":
        headers["X-Hub-Signature-256"] = draw(
            st.text(max_size=40).map(lambda t: t.encode("ascii", "ignore").decode())
        )
    return body, headers


def test_any_delivery_gets_an_answer_and_the_worker_handles_what_was_kept(tmp_path):
    app, services = _app(tmp_path)
    with respx.mock(assert_all_called=False) as mock, TestClient(app) as client:
        mock.route(url__startswith=API).respond(503)

        @FUZZ
        @given(delivery=deliveries())
        def run(delivery: tuple[bytes, dict[str, str]]) -> None:
            body, headers = delivery
            response = client.post("/webhooks", content=body, headers=headers)
            assert response.status_code < 500, response.text[:300]
            worker = client.app.state.worker  # type: ignore[attr-defined]
            while worker.run_once():
                pass

        run()
    running = services.deliveries.recent("running", limit=10)
    assert not running, f"deliveries left running: {[d.id for d in running]}"


# ---------------------------------------------------------------- the Action's inputs and events

ACTION_INPUTS = list(
    yaml.safe_load((Path(__file__).parents[1] / "action.yml").read_text())["inputs"]
)
hostile = st.one_of(
    st.sampled_from(
        ["", "abc", "-1", "0", "1e309", "production", "staging", "canary", "high", "true",
         "5m", "x" * 300, "../../etc/passwd", "::error::injected", "a\nb", "{}", "[", "- a: [b"]
    ),
    st.text(max_size=40).map(lambda t: t.replace("\0", "")),
)  # fmt: skip


@st.composite
def action_runs(draw: st.DrawFn) -> tuple[dict[str, str], Any]:
    names = draw(st.sets(st.sampled_from([n for n in ACTION_INPUTS if n != "command"]), max_size=6))
    inputs = {name: draw(hostile) for name in names}
    inputs["command"] = draw(st.sampled_from(["analyze", "analyze", "deploy", "promote", "bogus"]))
    event = draw(st.one_of(json_values, st.just({"pull_request": {"base": {"sha": "zz"}}})))
    event_name = draw(st.sampled_from(["pull_request", "push", "workflow_dispatch", "", "x"]))
    return inputs, (event, event_name)


def test_any_action_input_ends_in_exit_0_or_1_never_a_traceback(base_repo, tmp_path, capsys):
    base_repo.commit("a change", {"src/shop/cart.py": "def total(items):\n    return 1\n"})

    @FUZZ
    @given(run=action_runs())
    def fuzz(run: tuple[dict[str, str], Any]) -> None:
        inputs, (event, event_name) = run
        event_file = tmp_path / "event.json"
        event_file.write_text(json.dumps(event))
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "GITHUB_WORKSPACE": str(base_repo.root),
            "GITHUB_OUTPUT": str(tmp_path / "output"),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
            "GITHUB_EVENT_PATH": str(event_file),
            "GITHUB_EVENT_NAME": event_name,
            "PIPELINE_BOT_CACHE_DIR": str(tmp_path / "cache"),
            "PIPELINE_BOT_DATABASE_URL": f"sqlite:///{tmp_path / 'pb.db'}",
            "PIPELINE_BOT_LLM_RETRIES": "0",
            "KUBECONFIG": str(tmp_path / "no-kubeconfig"),
        }
        env.update({f"INPUT_{k.upper()}": v for k, v in inputs.items()})
        known = redaction.values()
        try:
            code = action_main(env)
        finally:
            # the Action registers its secret inputs for masking, process-wide: a hostile
            # "github-token: production" must not mask "production" in the tests that follow
            redaction._reset_for_tests()
            redaction.register(*known)
        out = capsys.readouterr().out
        assert code in (0, 1), code
        if code == 1:
            assert "::error" in out, out[-500:]

    fuzz()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
