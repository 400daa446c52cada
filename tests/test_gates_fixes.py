"""Gates, issue 14 point 9: missing stable data follows `no_data`, every series of a query is
judged (the worst decides and is named), and the memory trend warning reads the limit metric that
exists (kube-state-metrics' or cAdvisor's) or says it could not check. Pure decisions are tested
in tables against core/; the rest through the CLI against real Prometheus servers."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from pipeline_bot.core import predict
from pipeline_bot.core.canary import judge_gate, measure
from pipeline_bot.models import MetricSample
from pipeline_bot.repo_config import MetricGate, StableComparison, Threshold
from tests.conftest import stop_process, wait_until_up
from tests.test_gates import _config, _evaluate


def _gate(*, no_data="inconclusive", compare=None, **bounds) -> MetricGate:
    return MetricGate(
        name="errors",
        query="q",
        success_condition=Threshold(**bounds),
        no_data=no_data,
        compare_to_stable=StableComparison(**compare) if compare is not None else None,
    )


def _samples(*pairs: tuple[dict[str, str], float]) -> list[MetricSample]:
    return [MetricSample(labels=labels, value=value) for labels, value in pairs]


# ---------------------------------------------------------------- stable without data (core)


@pytest.mark.parametrize(
    ("no_data", "passed", "outcome"),
    [("pass", True, "passed"), ("fail", False, "failed"), ("inconclusive", None, "inconclusive")],
)
def test_missing_stable_data_follows_the_gates_no_data_policy(no_data, passed, outcome):
    gate = _gate(no_data=no_data, compare={"max_increase": 0.5}, max=0.01)
    m = measure(gate, "q", _samples(({}, 0.005)), stable=[])
    assert m.passed is passed
    assert f"stable has no data to compare with (policy: {no_data})" in m.reason
    assert judge_gate(gate, [m]).outcome == outcome


@pytest.mark.parametrize("no_data", ["pass", "fail", "inconclusive"])
def test_a_canary_over_its_own_threshold_fails_whatever_stable_has(no_data):
    gate = _gate(no_data=no_data, compare={"max_increase": 0.5}, max=0.01)
    m = measure(gate, "q", _samples(({}, 0.2)), stable=[])
    assert m.passed is False
    assert "0.2 is above the maximum 0.01" in m.reason


def test_stable_data_is_still_compared_when_there_is_some():
    gate = _gate(compare={"max_increase": 0.5}, max=1)
    m = measure(gate, "q", _samples(({}, 0.3)), stable=_samples(({}, 0.1)))
    assert (m.passed, m.baseline) == (False, 0.1)
    assert "more than 50% above stable's 0.1" in m.reason


# ---------------------------------------------------------------- several series (core)

A, B, C = {"pod": "a"}, {"pod": "b"}, {"pod": "c"}


@pytest.mark.parametrize(
    ("bounds", "series", "passed", "worst", "value"),
    [
        # the first series is fine, a later one is not: the later one decides
        ({"max": 0.01}, [(A, 0.001), (B, 0.5), (C, 0.2)], False, 'pod="b"', 0.5),
        ({"min": 0.99}, [(A, 0.999), (B, 0.95), (C, 0.98)], False, 'pod="b"', 0.95),
        ({"min": 0.9, "max": 1.1}, [(A, 1.0), (B, 1.2), (C, 0.5)], False, 'pod="c"', 0.5),
        # all pass: the one closest to its bound is shown
        ({"max": 0.01}, [(A, 0.001), (B, 0.009), (C, 0.002)], True, 'pod="b"', 0.009),
    ],
)
def test_every_series_is_judged_and_the_worst_decides(bounds, series, passed, worst, value):
    m = measure(_gate(**bounds), "q", _samples(*series))
    assert (m.passed, m.value) == (passed, value)
    assert m.series == "{" + worst + "}"
    assert worst in m.reason
    assert "worst of 3 series" in m.reason


def test_one_series_keeps_the_plain_reason():
    m = measure(_gate(max=0.01), "q", _samples(({"code": "500"}, 0.5)))
    assert m.reason == "0.5 is above the maximum 0.01"


def test_each_series_is_compared_with_stables_series_of_the_same_labels():
    gate = _gate(compare={"max_increase": 0.5}, max=1)
    a, b = {"route": "/a"}, {"route": "/b"}
    m = measure(gate, "q", _samples((a, 0.01), (b, 0.03)), stable=_samples((a, 0.02), (b, 0.01)))
    assert (m.passed, m.value, m.baseline) == (False, 0.03, 0.01)
    assert 'route="/b"' in m.reason


def test_series_without_a_stable_counterpart_follow_no_data():
    gate = _gate(compare={"max_increase": 0.5}, max=1, no_data="fail")
    m = measure(
        gate, "q", _samples((A, 0.01), (B, 0.01)), stable=_samples((C, 0.01), ({"pod": "d"}, 0.01))
    )
    assert m.passed is False
    assert "stable has no data to compare with (policy: fail)" in m.reason


def test_a_failing_series_outranks_one_without_stable_data():
    gate = _gate(compare={"max_increase": 0.5}, max=1, no_data="inconclusive")
    a, b = {"route": "/a"}, {"route": "/b"}
    m = measure(gate, "q", _samples((a, 0.5), (b, 2.0)), stable=_samples((b, 1.9)))
    assert m.passed is False
    assert 'route="/b"' in m.reason


# ---------------------------------------------------------------- through the CLI (real Prometheus)


@pytest.mark.parametrize(
    ("policy", "verdict", "code"),
    [("inconclusive", "inconclusive", 3), ("pass", "pass", 0), ("fail", "fail", 1)],
)
def test_compare_to_stable_with_no_stable_series_follows_no_data(
    cli, base_repo, prometheus, policy, verdict, code
):
    """gates-good has canary pods and no stable ones."""
    _config(
        base_repo,
        "gates:\n  - name: success\n"
        '    query: sum(rate(http_requests_total{namespace="{{namespace}}",pod=~"{{canary_pods}}",'
        'code!~"5.."}[1m])) / sum(rate(http_requests_total{namespace="{{namespace}}",'
        'pod=~"{{canary_pods}}"}[1m]))\n'
        "    success_condition: {min: 0.99}\n    compare_to_stable: {max_decrease: 0.01}\n"
        f"    no_data: {policy}\n",
    )
    result = _evaluate(cli, base_repo, "good", "good", prometheus)
    assert result.exit_code == code, result.stdout + result.stderr
    data = result.json()
    assert data["verdict"] == verdict
    (row,) = data["measurements"]
    assert row["value"] == pytest.approx(1.0)
    assert f"stable has no data to compare with (policy: {policy})" in row["reason"]


@pytest.mark.parametrize(
    ("bound", "culprit"), [("min: 10", 'code="500"'), ("max: 10", 'code="200"')]
)
def test_a_query_with_several_series_fails_on_any_of_them(
    cli, base_repo, prometheus, bound, culprit
):
    """gates-bad's canary: 950 good and 50 failed requests per 15 s, so 63.3/s and 3.3/s."""
    _config(
        base_repo,
        "gates:\n  - name: per-code\n"
        '    query: sum by (code) (rate(http_requests_total{namespace="{{namespace}}",'
        'pod=~"{{canary_pods}}"}[1m]))\n'
        f"    success_condition: {{{bound}}}\n",
    )
    result = _evaluate(cli, base_repo, "bad", "bad", prometheus)
    assert result.exit_code == 1, result.stdout + result.stderr
    data = result.json()
    assert data["verdict"] == "fail"
    (row,) = data["measurements"]
    assert row["passed"] is False
    assert row["series"] == "{" + culprit + "}"
    assert culprit in row["reason"]
    assert "worst of 2 series" in row["reason"]
    assert culprit in data["reason"]


# ---------------------------------------------------------------- memory limits (promtool tables)

MEMORY = next(p for p in predict.PREDICTIONS if p.rule == "predicted-memory-exhaustion")
WHERE = 'namespace="ns",pod="p-1-2",container="c"'
GROWING = f'container_memory_working_set_bytes{{{WHERE},id="/x"}}'
KSM = f'kube_pod_container_resource_limits{{{WHERE},resource="memory",unit="byte",node="n"}}'
KSM_CPU = f'kube_pod_container_resource_limits{{{WHERE},resource="cpu",unit="core",node="n"}}'
CADVISOR = f'container_spec_memory_limit_bytes{{{WHERE},id="/x"}}'
MIB = 2**20


@pytest.mark.parametrize(
    ("limits", "warned", "checkable"),
    [
        ({KSM: 512 * MIB}, True, True),
        ({CADVISOR: 512 * MIB}, True, True),
        ({KSM: 512 * MIB, CADVISOR: 512 * MIB}, True, True),
        ({KSM: 64 * 2**30}, False, True),  # far from its limit
        ({CADVISOR: 0}, False, False),  # cAdvisor's 0: no limit set
        ({KSM_CPU: 1}, False, False),  # a CPU limit is not a memory limit
        ({}, False, False),
    ],
)
def test_the_memory_warning_reads_whichever_limit_metric_exists(
    tmp_path, limits, warned, checkable
):
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing: `apt-get install -y prometheus`")
        pytest.skip("promtool is missing: `apt-get install -y prometheus`")
    warning = predict.query_for(MEMORY, namespace="ns", hours=4)
    requirement = predict.requirement_for(MEMORY, namespace="ns")
    assert requirement is not None
    series = [(GROWING, f"'{100 * MIB}+{MIB}x300'")]  # 1 MiB per 15 s
    series += [(name, f"'{value}x300'") for name, value in limits.items()]
    inputs = "".join(f"      - series: '{s}'\n        values: {v}\n" for s, v in series)
    labels = 'container="c",namespace="ns",pod="p-1-2"'
    expected_warning = f"[{{labels: '{{{labels}}}', value: 1}}]" if warned else "[]"
    (tmp_path / "test.yml").write_text(
        "rule_files: []\nevaluation_interval: 1m\ntests:\n  - interval: 15s\n"
        f"    input_series:\n{inputs}"
        "    promql_expr_test:\n"
        "      - expr: 'count by (namespace, pod, container) "
        f"({_quoted(warning)})'\n        eval_time: 70m\n"
        f"        exp_samples: {expected_warning}\n"
        f"      - expr: 'sgn(count({_quoted(requirement[0])}))'\n        eval_time: 70m\n"
        f"        exp_samples: {'[{value: 1}]' if checkable else '[]'}\n"
    )
    proc = subprocess.run(
        [promtool, "test", "rules", str(tmp_path / "test.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _quoted(promql: str) -> str:
    return promql.replace("'", "''")


# ---------------------------------------------------------------- memory limits (end to end)


def _memory_series(now: int) -> str:
    """gates-ksm: a leak with only kube-state-metrics' limit; gates-nolimit: a leak with no limit
    metric at all; gates-zero: cAdvisor's 0 (no limit) only."""
    start, end = now - 1800, now + 3600
    growing, limits = [], []
    for ns in ("gates-ksm", "gates-nolimit", "gates-zero"):
        where = f'namespace="{ns}",pod="leaky-7c6b5-y2",container="leaky"'
        growing += [
            f"container_memory_working_set_bytes{{{where}}} {(100 + k) * MIB} {t}"
            for k, t in enumerate(range(start, end, 15))
        ]
    ksm = (
        'namespace="gates-ksm",pod="leaky-7c6b5-y2",container="leaky",resource="memory",unit="byte"'
    )
    limits += [
        f"kube_pod_container_resource_limits{{{ksm}}} {512 * MIB} {t}"
        for t in range(start, end, 15)
    ]
    zero = 'namespace="gates-zero",pod="leaky-7c6b5-y2",container="leaky"'
    cadvisor = [f"container_spec_memory_limit_bytes{{{zero}}} 0 {t}" for t in range(start, end, 15)]
    return (
        "\n".join(
            [
                "# TYPE container_memory_working_set_bytes gauge",
                *growing,
                "# TYPE kube_pod_container_resource_limits gauge",
                *limits,
                "# TYPE container_spec_memory_limit_bytes gauge",
                *cadvisor,
                "# EOF",
            ]
        )
        + "\n"
    )


@pytest.fixture(scope="module")
def memory_prometheus(tmp_path_factory) -> Iterator[str]:
    """A real Prometheus of its own (the session's has only cAdvisor limits), backfilled by
    promtool, on a free port of 127.0.0.1; stopped by its own process id."""
    import socket
    import urllib.request

    binary, promtool = shutil.which("prometheus"), shutil.which("promtool")
    missing = "Prometheus is missing: `apt-get install -y prometheus`"
    if not (binary and promtool):
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    root = tmp_path_factory.mktemp("memory-prometheus")
    (root / "series.om").write_text(_memory_series(int(time.time())))
    subprocess.run(
        [
            promtool,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(root / "series.om"),
            str(root / "data"),
        ],
        check=True,
        capture_output=True,
    )
    (root / "prometheus.yml").write_text("global:\n  scrape_interval: 15s\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(proc, lambda: urllib.request.urlopen(f"{url}/-/ready", timeout=2).close())
        yield url
    finally:
        stop_process(proc)


def _memory_findings(cli, repo, env, prometheus):
    repo.commit(
        "config",
        {
            ".github/pipeline-bot.yml": (
                "version: 1\nenvironments:\n"
                "  - {name: ksm, namespace: gates-ksm}\n"
                "  - {name: nolimit, namespace: gates-nolimit}\n"
                "  - {name: zero, namespace: gates-zero}\n"
            )
        },
    )
    repo.commit("code", {"src/shop/app.py": "def main():\n    return 'ok!'\n"})
    result = cli(
        "analyze", "--repo", str(repo.root), "--environment", env,
        "--prometheus-url", prometheus, "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return [
        f
        for f in result.json()["findings"]
        if f["path"] is None and f["rule"] == "predicted-memory-exhaustion"
    ]


def test_a_leak_towards_a_kube_state_metrics_limit_is_a_finding(cli, base_repo, memory_prometheus):
    (finding,) = _memory_findings(cli, base_repo, "ksm", memory_prometheus)
    assert finding["severity"] == "high"
    assert finding["message"].startswith(
        "leaky-7c6b5-y2/leaky will reach its memory limit within 4 h"
    )


@pytest.mark.parametrize("env", ["nolimit", "zero"])
def test_without_a_memory_limit_metric_the_warning_says_it_could_not_check(
    cli, base_repo, memory_prometheus, env
):
    (finding,) = _memory_findings(cli, base_repo, env, memory_prometheus)
    assert finding["severity"] == "info"
    assert finding["message"].startswith("could not check: ")
    assert "kube_pod_container_resource_limits" in finding["message"]
    assert "container_spec_memory_limit_bytes" in finding["message"]
    assert f"gates-{env}" in finding["message"]
