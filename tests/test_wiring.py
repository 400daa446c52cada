"""One wiring: every front end builds its tools' collaborators with wiring.tool_context from the
same Settings, so a setting means the same in the CLI, the Action, the App and the MCP server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pipeline_bot import wiring
from pipeline_bot.settings import Settings, get_settings
from tests.test_action import _payload, _run


class RecordingPrometheus:
    """A query API on loopback that answers empty vectors and keeps each request's headers."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.headers.append(dict(self.headers))
                body = json.dumps(
                    {"status": "success", "data": {"resultType": "vector", "result": []}}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def prometheus():
    server = RecordingPrometheus()
    yield server
    server.close()


@pytest.mark.integration
def test_the_action_queries_prometheus_with_the_auth_settings(
    base_repo, tmp_path, prometheus, monkeypatch
):
    monkeypatch.setenv("PIPELINE_BOT_PROMETHEUS_TOKEN", "prom-bearer-token")
    monkeypatch.setenv("PIPELINE_BOT_PROMETHEUS_HEADERS", '{"X-Scope-OrgID": "team-a"}')
    before = base_repo.git("rev-parse", "HEAD")
    after = base_repo.commit("x", {"src/shop/x.py": "x = 1\n"})
    payload = _payload("push")
    payload.update(before=before, after=after)
    proc, _outputs, _ = _run(
        base_repo, tmp_path, "push", payload, **{"PROMETHEUS-URL": prometheus.url}
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert prometheus.headers, "the trend warnings did not query Prometheus"
    for headers in prometheus.headers:
        assert headers.get("Authorization") == "Bearer prom-bearer-token"
        assert headers.get("X-Scope-OrgID") == "team-a"


@pytest.mark.integration
def test_the_action_reads_the_history_setting(base_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_BOT_HISTORY_COMMITS", "0")
    before = base_repo.git("rev-parse", "HEAD")
    after = base_repo.commit("x", {"src/shop/x.py": "x = 1\n"})
    payload = _payload("push")
    payload.update(before=before, after=after)
    proc, _outputs, summary = _run(base_repo, tmp_path, "push", payload)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "History read: history is off" in summary


def test_every_front_end_builds_its_context_with_the_one_wiring(base_repo, cli, monkeypatch):
    built: list[Settings] = []
    real = wiring.tool_context

    def spy(settings: Settings, **kw: Any) -> Any:
        built.append(settings)
        return real(settings, **kw)

    monkeypatch.setattr(wiring, "tool_context", spy)
    monkeypatch.setenv("PIPELINE_BOT_LLM_MAX_STEPS", "3")
    get_settings.cache_clear()
    assert cli("analyze", "--repo", str(base_repo.root), "--format", "json").exit_code == 0

    from pipeline_bot.action.main import _context

    ctx = _context({"GITHUB_WORKSPACE": str(base_repo.root), "INPUT_MODEL": "m"})
    from pipeline_bot.app.server import wiring_context

    wiring_context()
    assert len(built) == 3
    assert {s.llm_max_steps for s in built} == {3}
    assert ctx.ai.max_steps == 3
    assert ctx.llm is not None  # the Action's `model` input became the llm_model setting
    assert ctx.risk is not None


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, None),
        ({"prometheus_url": "http://p:9090"}, "http://p:9090"),
    ],
)
def test_metrics_are_built_only_with_a_url(values, expected):
    got = wiring.metrics(Settings(**values))
    assert (got.url if got else None) == expected  # type: ignore[attr-defined]


def test_bad_prometheus_headers_are_a_config_error_that_does_not_echo_them():
    from pipeline_bot.errors import ConfigError

    settings = Settings(prometheus_url="http://p", prometheus_headers="secret-not-json")
    with pytest.raises(ConfigError) as err:
        wiring.metrics(settings)
    assert "secret-not-json" not in str(err.value)
    assert "JSON object of strings" in str(err.value)
