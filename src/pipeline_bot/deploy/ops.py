"""What every strategy does to the cluster: apply a Deployment and watch its rollout, explain a
failed one, find the Deployment that serves now."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from pipeline_bot.core.canary import seconds as duration_seconds
from pipeline_bot.core.rollout import RolloutState, assess
from pipeline_bot.core.variants import COLOR_LABEL, color_variant, images_of, selector_of
from pipeline_bot.deploy.gates import Gate
from pipeline_bot.deploy.run import Obj, Progress, Run, now
from pipeline_bot.deploy.workload import Workload
from pipeline_bot.errors import IntegrationError
from pipeline_bot.integrations.ports import ClusterPort, StorePort, deadline


class Ops:
    """The collaborators a strategy works with, and the steps they share."""

    def __init__(
        self, cluster: ClusterPort, store: StorePort, gate: Gate, progress: Progress
    ) -> None:
        self.cluster, self.store, self.gate, self.progress = cluster, store, gate, progress

    def deployment(self, namespace: str, name: str) -> Obj | None:
        return self.cluster.get("apps/v1", "Deployment", namespace, name)

    def live(self, namespace: str, app: str, w: Workload) -> Obj:
        """The workload's Deployment as the one that serves now: after a blue-green deploy that
        is the colour the Service selects, so rolling and canary deploys update that colour."""
        service = self.cluster.get("v1", "Service", namespace, app)
        color = ((service or {}).get("spec") or {}).get("selector", {}).get(COLOR_LABEL)
        return color_variant(w.deployment, app, color) if color else w.deployment

    def pause_expires(self, run: Run) -> datetime:
        """When a pause on inconclusive gates that starts now is aborted (environment policy)."""
        timeout = duration_seconds(run.env.inconclusive_timeout) if run.env else 3600.0
        return now() + timedelta(seconds=timeout)

    def apply_and_watch(
        self, run: Run, deployment: Obj, timeout: float, label: str
    ) -> RolloutState:
        """Apply (retrying what fails at the API for up to `timeout`), then watch the rollout
        for up to `timeout`."""
        started = time.monotonic()
        with deadline(timeout):
            applied = self.cluster.apply(deployment)
            run.step(
                f"apply {deployment['metadata']['name']}",
                "succeeded",
                f"generation {applied['metadata'].get('generation')}",
                time.monotonic() - started,
            )
        return self.watch(run, applied, timeout, label)

    def watch(self, run: Run, deployment: Obj, timeout: float, label: str) -> RolloutState:
        """The rollout's outcome within `timeout`; an API still failing then is an
        IntegrationError (the step is recorded as failed with it first)."""
        started = time.monotonic()
        meta = deployment["metadata"]
        generation = int(meta.get("generation") or 1)
        images = images_of(deployment)
        last = RolloutState("failed", "Timeout", f"{label}: no word from the cluster")
        rollout = self.cluster.watch_rollout(
            meta["namespace"], meta["name"], selector_of(deployment), timeout=timeout
        )
        while True:
            try:
                dep, pods = next(rollout)
            except StopIteration:
                break
            except IntegrationError as exc:
                with deadline(timeout):  # the record says so, however late
                    run.step(label, "failed", exc.message, time.monotonic() - started)
                raise
            state = assess(dep, pods, generation=generation, images=images)
            if state.message != last.message and not state.done:
                self.progress(f"{label}: {state.message}")
            last = state
            if state.done:
                run.step(
                    label,
                    "succeeded" if state.phase == "succeeded" else "failed",
                    state.message,
                    time.monotonic() - started,
                )
                return state
        timed_out = RolloutState(
            "failed",
            "Timeout",
            f"{label} did not finish within {timeout:g}s (last: {last.message})",
            failing_pods=last.failing_pods,
        )
        run.step(label, "failed", timed_out.message, time.monotonic() - started)
        return timed_out

    def explain(self, namespace: str, state: RolloutState) -> str:
        """The failure, with the failing pods' last events when they can be read: an API that
        cannot list events must not stop the rollback this explanation comes before."""
        try:
            events = (
                self.cluster.pod_events(namespace, state.failing_pods) if state.failing_pods else []
            )
        except IntegrationError as exc:
            return f"{state.message} (events unavailable: {exc.message})"
        return state.message + (f" (events: {'; '.join(events[-3:])})" if events else "")

    def restore(
        self,
        run: Run,
        namespace: str,
        name: str,
        template: Obj,
        timeout: float,
        label: str,
        *,
        replicas: int | None = None,
    ) -> tuple[Obj, RolloutState]:
        """Put `template` (and `replicas`, if given) back into Deployment `name` and watch it
        roll out, each for up to `timeout`."""
        spec: Obj = {"template": template}
        if replicas is not None:
            spec["replicas"] = replicas
        with deadline(timeout):
            restored = self.cluster.patch("apps/v1", "Deployment", namespace, name, {"spec": spec})
        return restored, self.watch(run, restored, timeout, label)
