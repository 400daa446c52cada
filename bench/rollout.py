"""Benchmark: how soon the deploy engine knows a rollout succeeded, and what it costs the API.

On the Kubernetes API test server (in this process, on 127.0.0.1), for each strategy:
  latency   from the moment the Deployment became available (the server's own status write,
            timestamped) to the moment the engine returns success; median over --runs deploys.
            Baseline, measured the same way in the same run: a loop that polls the Deployment
            every 5 seconds, as many deploy scripts do. Target: under 0.5 s.
  requests  HTTP requests the engine sent to the API server for one deploy.

    python bench/rollout.py [--runs 5] [--replicas 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kubernetes import client
from tests.kubeapi.server import ApiServer

from pipeline_bot.core.strategy import strategy_named
from pipeline_bot.deploy.engine import DeployEngine
from pipeline_bot.integrations.kubernetes import KubernetesCluster
from pipeline_bot.integrations.store import SqlStore
from pipeline_bot.models import DeployRequest
from pipeline_bot.repo_config import Environment


def available_at(server: ApiServer, namespace: str, name: str, generation: int) -> float:
    """When the server first wrote a status saying every replica of `generation` is available."""
    for event in server.store.log:
        obj = event.obj
        meta, spec, status = obj["metadata"], obj.get("spec", {}), obj.get("status", {})
        if (
            event.res.kind == "Deployment"
            and meta.get("namespace") == namespace
            and meta["name"] == name
            and status.get("observedGeneration", 0) >= generation
            and status.get("availableReplicas", 0)
            == spec.get("replicas", 1)
            == status.get("updatedReplicas", 0)
            == status.get("replicas", 0)
        ):
            return event.at
    raise RuntimeError(f"{name} never became available")


def engine_run(
    server: ApiServer,
    engine: DeployEngine,
    env: Environment,
    strategy: str,
    image: str,
    replicas: int,
) -> tuple[float, int]:
    req = DeployRequest(
        app="bench", environment=env.name, image=image, replicas=replicas, timeout_seconds=60
    )
    plan = strategy_named(strategy, env, reason="benchmark", steps=[50], pause_seconds=0)
    server.requests.clear()
    result = engine.deploy(req, plan, env)
    done = time.monotonic()
    if result.status != "succeeded":
        raise RuntimeError(f"{strategy} deploy did not succeed: {result.message}")
    requests = sum(server.requests.values())
    target = {"rolling": "bench", "canary": "bench"}.get(strategy)
    if strategy == "blue-green":
        target = result.steps[0].name.removeprefix("apply ")
    name = target or "bench"
    dep = engine.cluster.get("apps/v1", "Deployment", env.namespace or env.name, name)
    assert dep is not None
    return done - available_at(
        server, env.namespace or env.name, name, dep["metadata"]["generation"]
    ), requests


def polling_run(
    server: ApiServer,
    cluster: KubernetesCluster,
    namespace: str,
    image: str,
    replicas: int,
    interval: float = 5.0,
) -> float:
    """The baseline: apply, then GET the Deployment every `interval` seconds until it is done."""
    labels = {"app": "poll"}
    applied = cluster.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "poll", "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "poll", "image": image}]},
                },
            },
        }
    )
    generation = applied["metadata"]["generation"]
    while True:
        time.sleep(interval)
        dep = cluster.get("apps/v1", "Deployment", namespace, "poll") or {}
        st = dep.get("status", {})
        if st.get("observedGeneration", 0) >= generation and st.get(
            "availableReplicas", 0
        ) == st.get("updatedReplicas", 0) == replicas == st.get("replicas", 0):
            return time.monotonic() - available_at(server, namespace, "poll", generation)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--poll-runs", type=int, default=3)
    args = parser.parse_args()
    server = ApiServer(0, pod_ready_seconds=0.2)
    server.start()
    try:
        cfg = client.Configuration()
        cfg.host = f"http://127.0.0.1:{server.port}"
        cluster = KubernetesCluster(client.ApiClient(cfg))
        with tempfile.TemporaryDirectory() as tmp:
            store = SqlStore(f"sqlite:///{tmp}/bench.db")
            results: dict[str, tuple[list[float], list[int]]] = {}
            for strategy in ("rolling", "blue-green", "canary"):
                env = Environment(
                    name=f"bench-{strategy}", namespace=f"bench-{strategy.replace('-', '')}"
                )
                engine_run(
                    server, DeployEngine(cluster, store), env, "rolling", "bench:0", args.replicas
                )  # a stable version first
                lat, req = [], []
                for i in range(1, args.runs + 1):
                    # a new client each time, as each CLI or Action run has: discovery included
                    fresh = KubernetesCluster(client.ApiClient(cfg))
                    latency, requests = engine_run(
                        server,
                        DeployEngine(fresh, store),
                        env,
                        strategy,
                        f"bench:{i}",
                        args.replicas,
                    )
                    lat.append(latency)
                    req.append(requests)
                results[strategy] = (lat, req)
            cluster.ensure_namespace("bench-poll")
            polls = [
                polling_run(server, cluster, "bench-poll", f"poll:{i}", args.replicas)
                for i in range(args.poll_runs)
            ]
        baseline = statistics.median(polls)
        print(
            f"baseline: poll every 5 s      median {baseline:.3f} s after available "
            f"({args.poll_runs} runs)"
        )
        for strategy, (lat, req) in results.items():
            med = statistics.median(lat)
            print(
                f"engine {strategy:<11}          median {med:.3f} s after available "
                f"(max {max(lat):.3f}); {baseline / med:.0f}x sooner than polling; "
                f"{statistics.median(req):.0f} API requests per deploy  (target < 0.5 s)"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
