"""Metric gates against a real Prometheus (Debian's, started by a fixture, series backfilled
with promtool): the verdict engine, `pipeline-bot gates evaluate`, and gated deploys on the
Kubernetes API test server."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from kubernetes import client

from pipeline_bot.core.canary import DEFAULT_GATES, render
from pipeline_bot.deploy.engine import DeployEngine
from pipeline_bot.deploy.gates import PrometheusGate, pods_of
from pipeline_bot.errors import ConfigError, IntegrationError
from pipeline_bot.integrations.kubernetes import KubernetesCluster
from pipeline_bot.integrations.prometheus import PrometheusMetrics
from pipeline_bot.integrations.store import SqlStore
from pipeline_bot.models import CanaryStep, DeployRequest, Strategy, StrategyParameters
from pipeline_bot.repo_config import Environment, MetricGate, parse_repo_config
from tests.conftest import wait_until_up

ROW_KEYS = {"metric", "query", "value", "threshold", "passed", "reason"}


def _config(repo, gates_yaml=""):
    repo.commit(
        "config",
        {
            ".github/pipeline-bot.yml": (
                "version: 1\nenvironments:\n"
                "  - {name: good, namespace: gates-good}\n"
                "  - {name: bad, namespace: gates-bad}\n"
                "  - {name: slow, namespace: gates-slow}\n"
                "  - {name: nodata, namespace: gates-none}\n"
                "  - {name: cmp, namespace: gates-cmp}\n" + gates_yaml
            )
        },
    )


def _evaluate(cli, repo, env, app, prometheus, *extra):
    return cli(
        "gates",
        "evaluate",
        "--repo",
        str(repo.root),
        "-e",
        env,
        "--app",
        app,
        "--prometheus-url",
        prometheus,
        "--format",
        "json",
        *extra,
    )


def test_healthy_canary_passes_with_every_query_value_and_threshold(cli, base_repo, prometheus):
    _config(base_repo)
    result = _evaluate(cli, base_repo, "good", "good", prometheus)
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["verdict"] == "pass"
    rows = {m["metric"]: m for m in data["measurements"]}
    assert set(rows) == {"request-success-rate", "request-duration-p99"}
    assert all(set(m) >= ROW_KEYS for m in data["measurements"])
    assert rows["request-success-rate"]["value"] == pytest.approx(1.0)
    assert rows["request-success-rate"]["threshold"] == ">= 0.99"
    assert 'pod=~"good-canary-[a-z0-9]+-[a-z0-9]+"' in rows["request-success-rate"]["query"]
    assert rows["request-duration-p99"]["value"] < 0.1


def test_a_five_percent_error_rate_fails(cli, base_repo, prometheus):
    _config(base_repo)
    result = _evaluate(cli, base_repo, "bad", "bad", prometheus)
    assert result.exit_code == 1
    data = result.json()
    assert data["verdict"] == "fail"
    success = next(m for m in data["measurements"] if m["metric"] == "request-success-rate")
    assert success["value"] == pytest.approx(0.95)
    assert success["passed"] is False
    assert success["reason"] == "0.95 is below the minimum 0.99"


def test_slow_canary_fails_on_latency(cli, base_repo, prometheus):
    _config(base_repo)
    data = _evaluate(cli, base_repo, "slow", "slow", prometheus).json()
    p99 = next(m for m in data["measurements"] if m["metric"] == "request-duration-p99")
    assert p99["passed"] is False
    assert "above the maximum 0.5" in p99["reason"]


@pytest.mark.parametrize(
    ("policy", "verdict", "code"),
    [("inconclusive", "inconclusive", 3), ("fail", "fail", 1), ("pass", "pass", 0)],
)
def test_no_data_follows_the_policy(cli, base_repo, prometheus, policy, verdict, code):
    _config(
        base_repo,
        "gates:\n  - name: success\n"
        '    query: sum(rate(http_requests_total{namespace="{{namespace}}"}[1m]))\n'
        f"    success_condition: {{min: 1}}\n    no_data: {policy}\n",
    )
    result = _evaluate(cli, base_repo, "nodata", "ghost", prometheus)
    assert result.exit_code == code, result.stderr
    assert result.json()["verdict"] == verdict
    assert f"no data (policy: {policy})" in result.json()["measurements"][0]["reason"]


def test_canary_compared_with_stable(cli, base_repo, prometheus):
    _config(
        base_repo,
        "gates:\n  - name: error-rate\n"
        '    query: sum(rate(http_requests_total{namespace="{{namespace}}",pod=~"{{canary_pods}}",'
        'code="500"}[1m])) / sum(rate(http_requests_total{namespace="{{namespace}}",'
        'pod=~"{{canary_pods}}"}[1m]))\n'
        "    success_condition: {max: 0.01}\n    compare_to_stable: {max_increase: 0.5}\n",
    )
    data = _evaluate(cli, base_repo, "cmp", "cmp", prometheus).json()
    (row,) = data["measurements"]
    assert row["value"] == pytest.approx(0.005)
    assert row["baseline"] == pytest.approx(0.0)
    assert data["verdict"] == "fail"
    assert "above stable's 0" in row["reason"]


def test_an_invalid_query_is_bad_input_with_one_error_line(cli, base_repo, prometheus):
    _config(
        base_repo, "gates:\n  - {name: broken, query: 'rate(foo[1m', success_condition: {min: 1}}\n"
    )
    result = _evaluate(cli, base_repo, "good", "good", prometheus)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
    assert "gates.broken.query" in line
    assert "rejected the query: bad_data" in line


def test_an_unreachable_prometheus_exits_4_with_one_error_line(cli, base_repo):
    """Exit 4 (docs/exit-codes.md): something the command needs could not be reached; the
    config is not at fault (it was exit 2, "invalid configuration")."""
    _config(base_repo)
    result = _evaluate(cli, base_repo, "good", "good", "http://127.0.0.1:9")
    assert result.exit_code == 4, result.stdout + result.stderr
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
    assert "Prometheus at http://127.0.0.1:9 is unreachable" in line


def test_the_default_queries_pass_promtool_unit_tests(tmp_path):
    """`promtool test rules` evaluates the default gate queries on series it is given."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing: `apt-get install -y prometheus`")
    values = {
        "app": "shop",
        "namespace": "prod",
        "canary": "shop-canary",
        "stable": "shop",
        "interval": "1m",
        "canary_pods": pods_of("shop-canary"),
        "stable_pods": pods_of("shop"),
    }
    success, latency = (render(g.query, values) for g in DEFAULT_GATES)
    pod = 'namespace="prod",pod="shop-canary-abc-1"'
    (tmp_path / "test.yml").write_text(f"""\
rule_files: []
evaluation_interval: 1m
tests:
  - interval: 15s
    input_series:
      - series: 'http_requests_total{{{pod},code="200"}}'
        values: '0+98x20'
      - series: 'http_requests_total{{{pod},code="503"}}'
        values: '0+2x20'
      - series: 'http_request_duration_seconds_bucket{{{pod},le="0.25"}}'
        values: '0+98x20'
      - series: 'http_request_duration_seconds_bucket{{{pod},le="1"}}'
        values: '0+100x20'
      - series: 'http_request_duration_seconds_bucket{{{pod},le="+Inf"}}'
        values: '0+100x20'
    promql_expr_test:
      - expr: 'round({success}, 0.0001)'
        eval_time: 4m
        exp_samples: [{{labels: '{{}}', value: 0.98}}]
      - expr: 'round({latency}, 0.0001)'
        eval_time: 4m
        exp_samples: [{{labels: '{{}}', value: 0.625}}]
""")
    proc = subprocess.run(
        [promtool, "test", "rules", str(tmp_path / "test.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------- gated deploys


@pytest.fixture
def engine_for(kube_api, tmp_path):
    cfg = client.Configuration()
    cfg.host = kube_api.url
    store = SqlStore(f"sqlite:///{tmp_path / 'pb.db'}")

    def make(prometheus: str, gates=DEFAULT_GATES) -> DeployEngine:
        gate = PrometheusGate(PrometheusMetrics(prometheus), gates, sleep=lambda _s: None)
        return DeployEngine(KubernetesCluster(client.ApiClient(cfg)), store, gate=gate)

    return make


def _canary(app: str) -> tuple[DeployRequest, DeployRequest, Strategy, Environment]:
    env = Environment(name=app, namespace=f"gates-{app}")
    plan = Strategy(
        name="canary",
        environment=app,
        reasons=["test"],
        parameters=StrategyParameters(
            replicas=4,
            steps=[CanaryStep(weight=25, pause_seconds=0), CanaryStep(weight=50, pause_seconds=0)],
        ),
    )
    first = DeployRequest(app=app, environment=app, image=f"{app}:1", timeout_seconds=20)
    second = DeployRequest(app=app, environment=app, image=f"{app}:2", timeout_seconds=20)
    return first, second, plan, env


def test_a_healthy_canary_is_promoted_on_prometheus_gates(engine_for, prometheus):
    engine = engine_for(prometheus)
    first, second, plan, env = _canary("good")
    engine.deploy(first, plan, env)
    result = engine.deploy(second, plan, env)
    assert result.status == "succeeded", result.message
    gate_steps = [s for s in result.steps if s.name.startswith("gate")]
    assert [s.name for s in gate_steps] == ["gate 25%", "gate 50%"]
    row = gate_steps[0].details[0]
    assert set(row) >= ROW_KEYS
    assert row["value"] == pytest.approx(1.0)


def test_a_canary_with_five_percent_errors_is_rolled_back(engine_for, prometheus):
    engine = engine_for(prometheus)
    first, second, plan, env = _canary("bad")
    engine.deploy(first, plan, env)
    result = engine.deploy(second, plan, env)
    assert result.status == "rolled_back"
    assert "request-success-rate" in result.message
    assert "0.95 is below the minimum 0.99" in result.message
    stable = engine.cluster.get("apps/v1", "Deployment", "gates-bad", "bad")
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == "bad:1"


def test_an_invalid_query_stops_the_deploy_before_it_starts(engine_for, prometheus):
    broken = [MetricGate(name="broken", query="rate(foo[1m", success_condition={"min": 1})]
    engine = engine_for(prometheus, broken)
    _, second, plan, env = _canary("good")
    with pytest.raises(
        ConfigError, match=r"gates\.broken\.query: Prometheus at .* rejected the query"
    ):
        engine.deploy(second.model_copy(update={"app": "never"}), plan, env)
    assert engine.cluster.get("apps/v1", "Deployment", "gates-good", "never") is None


def test_an_unreachable_prometheus_stops_the_deploy_before_it_starts(engine_for):
    engine = engine_for("http://127.0.0.1:9")
    _, second, plan, env = _canary("good")
    with pytest.raises(IntegrationError, match="is unreachable"):
        engine.deploy(second.model_copy(update={"app": "never"}), plan, env)


def test_gate_config_is_validated(tmp_path):
    with pytest.raises(ConfigError, match="give min, max, or both"):
        parse_repo_config("version: 1\ngates:\n  - {name: x, query: up, success_condition: {}}\n")
    with pytest.raises(ConfigError, match="interval"):
        parse_repo_config(
            "version: 1\ngates:\n  - {name: x, query: up, interval: soon, "
            "success_condition: {min: 1}}\n"
        )


# ---------------------------------------------------------------- trend warnings


def _predict_config(repo):
    repo.commit(
        "config",
        {
            ".github/pipeline-bot.yml": (
                "version: 1\nenvironments:\n"
                "  - {name: leak, namespace: gates-leak}\n"
                "  - {name: rising, namespace: gates-rising}\n"
                "  - {name: calm, namespace: gates-good}\n"
            )
        },
    )
    repo.commit("code", {"src/shop/app.py": "def main():\n    return 'ok!'\n"})


def _findings(cli, repo, env, prometheus):
    result = cli(
        "analyze",
        "--repo",
        str(repo.root),
        "--environment",
        env,
        "--prometheus-url",
        prometheus,
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    return [f for f in result.json()["findings"] if f["path"] is None]


def test_a_container_heading_for_its_memory_limit_is_a_finding(cli, base_repo, prometheus):
    _predict_config(base_repo)
    (finding,) = _findings(cli, base_repo, "leak", prometheus)
    assert finding["rule"] == "predicted-memory-exhaustion"
    assert finding["severity"] == "high"
    assert finding["message"].startswith(
        "leaky-7c6b5-y2/leaky will reach its memory limit within 4 h"
    )


def test_a_rising_error_rate_is_a_finding(cli, base_repo, prometheus):
    _predict_config(base_repo)
    findings = _findings(cli, base_repo, "rising", prometheus)
    (finding,) = [f for f in findings if f["severity"] != "info"]  # no memory limit: info
    assert finding["rule"] == "error-rate-rising"
    assert "the error rate in gates-rising is 10.0%" in finding["message"]


def test_a_calm_namespace_has_no_warnings(cli, base_repo, prometheus):
    """gates-good sets no memory limit, so the memory trend says it could not check."""
    _predict_config(base_repo)
    (finding,) = _findings(cli, base_repo, "calm", prometheus)
    assert finding["rule"] == "predicted-memory-exhaustion"
    assert finding["severity"] == "info"
    assert finding["message"].startswith("could not check: no memory limit")


def test_predictions_that_cannot_be_checked_say_so(cli, base_repo):
    _predict_config(base_repo)
    findings = _findings(cli, base_repo, "calm", "http://127.0.0.1:9")
    assert {f["rule"] for f in findings} == {
        "predicted-memory-exhaustion",
        "predicted-disk-exhaustion",
        "error-rate-rising",
    }
    assert all(f["severity"] == "info" and "could not check" in f["message"] for f in findings)


def test_gates_from_a_file_replace_the_configs(cli, base_repo, prometheus, tmp_path):
    _config(base_repo)
    gates = tmp_path / "gates.yml"
    gates.write_text(
        "- name: any-traffic\n"
        '  query: sum(rate(http_requests_total{namespace="{{namespace}}"}[1m]))\n'
        "  success_condition: {min: 1}\n"
    )
    result = _evaluate(cli, base_repo, "good", "good", prometheus, "--gates", str(gates))
    assert result.exit_code == 0, result.stderr
    assert [m["metric"] for m in result.json()["measurements"]] == ["any-traffic"]
    gates.write_text("- name: broken\n  query: up\n  success_condition: {}\n")
    bad = _evaluate(cli, base_repo, "good", "good", prometheus, "--gates", str(gates))
    assert bad.exit_code == 2
    assert "gates[0].success_condition" in bad.stderr


# ---------------------------------------------------------------- TLS, auth, headers, push


@pytest.fixture(scope="module")
def secure_prometheus(tmp_path_factory):
    """A second real Prometheus behind TLS (a self-signed certificate) and basic auth."""
    import socket
    import urllib.request
    import warnings

    if not (shutil.which("prometheus") and shutil.which("openssl")):
        pytest.skip("needs prometheus and openssl: `apt-get install -y prometheus openssl`")
    with warnings.catch_warnings():  # the stdlib's crypt is the one bcrypt maker at hand
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        hashed = crypt.crypt("s3cret", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 10))  # noqa: S324 - bcrypt, as Prometheus requires
    root = tmp_path_factory.mktemp("secure-prometheus")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(root / "key.pem"),
            "-out",
            str(root / "cert.pem"),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    (root / "web.yml").write_text(
        f"tls_server_config:\n  cert_file: {root / 'cert.pem'}\n  key_file: {root / 'key.pem'}\n"
        f"basic_auth_users:\n  pb: '{hashed}'\n"
    )
    (root / "prometheus.yml").write_text("global:\n  scrape_interval: 15s\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.config.file={root / 'web.yml'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"https://127.0.0.1:{port}"
    import ssl

    context = ssl.create_default_context(cafile=str(root / "cert.pem"))
    try:

        def healthy() -> None:
            try:
                urllib.request.urlopen(f"{url}/-/healthy", timeout=2, context=context).close()
            except urllib.error.HTTPError:
                return  # it answers (401 without credentials): it is up

        wait_until_up(proc, healthy)
        yield url, str(root / "cert.pem")
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_tls_with_a_private_ca_and_basic_auth(secure_prometheus):
    url, ca = secure_prometheus
    ok = PrometheusMetrics(
        url, ca_file=ca, basic_auth=("pb", "s3cret"), headers={"X-Scope-OrgID": "team-a"}
    )
    assert [s.value for s in ok.query("vector(1)")] == [1.0]
    with pytest.raises(Exception, match="is unreachable: SSLError") as untrusted:
        PrometheusMetrics(url, basic_auth=("pb", "s3cret")).query("vector(1)")
    assert "s3cret" not in str(untrusted.value)
    with pytest.raises(Exception, match="rejected the query") as denied:
        PrometheusMetrics(url, ca_file=ca, basic_auth=("pb", "wrong")).query("vector(1)")
    assert "wrong" not in str(denied.value)


@pytest.fixture
def recording_pushgateway():
    """Test double for a Pushgateway: a loopback HTTP server that records what it is sent."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[tuple[str, str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append(("PUT", self.path, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def test_own_metrics_are_pushed_to_a_pushgateway(
    cli, base_repo, prometheus, recording_pushgateway, monkeypatch
):
    from pipeline_bot.settings import get_settings

    gateway, received = recording_pushgateway
    _config(base_repo)
    monkeypatch.setenv("PIPELINE_BOT_METRICS_PUSHGATEWAY", gateway)
    get_settings.cache_clear()
    result = _evaluate(cli, base_repo, "good", "good", prometheus)
    assert result.exit_code == 0, result.stderr
    ((method, path, body),) = received
    assert (method, path) == ("PUT", "/metrics/job/pipeline-bot")
    assert b"pipeline_bot_gate_evaluations_total" in body


def test_range_queries_return_points(prometheus):
    from datetime import UTC, datetime, timedelta

    end = datetime.now(UTC)
    (series,) = PrometheusMetrics(prometheus).query_range(
        'sum(container_memory_working_set_bytes{namespace="gates-good"})',
        start=end - timedelta(minutes=5),
        end=end,
        step="1m",
    )
    assert len(series.points) == 6
    assert {v for _, v in series.points} == {256 * 2**20}
