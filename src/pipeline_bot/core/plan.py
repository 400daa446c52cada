"""Services and their `depends_on` -> a deploy plan: stages of services that may deploy in
parallel, in dependency order, and what a failure stops.

A service's stage is one more than the deepest stage it depends on, so stage 0 holds the services
that depend on nothing. A runner need not wait for a whole stage: `ready()` names every service
whose dependencies have all succeeded, and `blocked()` the ones a failure (or a pause) stops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Location = tuple[int | str, ...]

MAX_PARALLEL_DEFAULT = 4
"""Services of one stage deployed at once unless a caller says otherwise."""


class DependencyProblem(ValueError):
    """`depends_on` names a service that does not exist, or services depend on each other in a
    cycle. Each problem has its place in the config (`services[2].depends_on[0]`), so the config
    loader can name its line."""

    def __init__(self, problems: list[tuple[Location, str]]) -> None:
        self.problems = problems
        super().__init__(problems[0][1] if problems else "dependency problem")


class PlanService(BaseModel):
    name: str
    stage: int = Field(ge=0)
    depends_on: list[str] = Field(default_factory=list)
    image: str | None = None
    manifests: list[str] = Field(default_factory=list)


class DeployPlan(BaseModel):
    """The services of a repository in deploy order (`stages[0]` first)."""

    environment: str | None = None
    max_parallel: int = Field(MAX_PARALLEL_DEFAULT, ge=1)
    services: list[PlanService]
    stages: list[list[str]]

    def service(self, name: str) -> PlanService:
        return next(s for s in self.services if s.name == name)


ServiceStatus = Literal[
    "succeeded", "failed", "rolled_back", "paused", "planned", "skipped", "pending", "running"
]
OK_STATUSES = frozenset({"succeeded", "planned"})
"""What lets a service's dependents go on (`planned`: a dry run that rendered it)."""


class ServiceOutcome(BaseModel):
    name: str
    stage: int
    status: ServiceStatus
    message: str = ""
    image: str | None = None
    deploy_id: str | None = None
    seconds: float = 0.0
    blocked_by: str | None = Field(
        None, description="the service whose failure (or pause) stopped this one"
    )


class PlanResult(BaseModel):
    """How a plan ran: each service's outcome, in plan order."""

    plan_id: str
    environment: str
    status: Literal["succeeded", "failed", "planned"]
    message: str
    stages: list[list[str]]
    services: list[ServiceOutcome]
    started_at: datetime
    finished_at: datetime
    seconds: float = 0.0


# --------------------------------------------------------------------------- checking


def dependency_problems(
    services: Sequence[tuple[str, Sequence[str]]],
) -> list[tuple[Location, str]]:
    """Every unknown service named in `depends_on`, and every cycle (once, at the edge that
    closes it), each with its location in the config."""
    names = [name for name, _ in services]
    known = set(names)
    problems: list[tuple[Location, str]] = []
    for i, (name, deps) in enumerate(services):
        for j, dep in enumerate(deps):
            if dep not in known:
                problems.append(
                    (
                        ("services", i, "depends_on", j),
                        f"service {name!r} depends on unknown service {dep!r}"
                        f" (known: {', '.join(n for n in names if n != name) or 'none'})",
                    )
                )
    graph = {name: [d for d in deps if d in known] for name, deps in services}
    index = {name: i for i, name in enumerate(names)}
    problems += [
        (("services", index[node], "depends_on", list(services[index[node]][1]).index(dep)), msg)
        for node, dep, msg in _cycles(graph)
    ]
    return problems


def _cycles(graph: Mapping[str, list[str]]) -> list[tuple[str, str, str]]:
    """(node, dependency, message) for each edge that closes a cycle, depth first."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    found: list[tuple[str, str, str]] = []
    for root in graph:
        if state.get(root):
            continue
        path: list[str] = [root]
        todo: list[list[str]] = [list(graph[root])]
        state[root] = 1
        while todo:  # an explicit stack: a long chain must not hit the recursion limit
            if not todo[-1]:
                todo.pop()
                state[path.pop()] = 2
                continue
            dep = todo[-1].pop(0)
            if state.get(dep) == 1:
                cycle = " -> ".join([*path[path.index(dep) :], dep])
                found.append((path[-1], dep, f"services depend on each other in a cycle: {cycle}"))
            elif not state.get(dep):
                state[dep] = 1
                path.append(dep)
                todo.append(list(graph[dep]))
    return found


# --------------------------------------------------------------------------- planning


def build_plan(
    services: Sequence[PlanService | tuple[str, Sequence[str]]],
    *,
    environment: str | None = None,
    max_parallel: int = MAX_PARALLEL_DEFAULT,
) -> DeployPlan:
    """Stages in dependency order; within a stage, the config's order. Raises
    DependencyProblem for an unknown dependency or a cycle."""
    items = [
        s if isinstance(s, PlanService) else PlanService(name=s[0], stage=0, depends_on=list(s[1]))
        for s in services
    ]
    problems = dependency_problems([(s.name, s.depends_on) for s in items])
    if problems:
        raise DependencyProblem(problems)
    stage: dict[str, int] = {}
    waiting = {s.name: len(set(s.depends_on)) for s in items}
    dependents: dict[str, list[str]] = {s.name: [] for s in items}
    for s in items:
        for d in set(s.depends_on):
            dependents[d].append(s.name)
    queue = [s.name for s in items if not waiting[s.name]]
    by_name = {s.name: s for s in items}
    while queue:  # Kahn's order: a service is placed once all its dependencies are
        name = queue.pop()
        stage[name] = 1 + max((stage[d] for d in by_name[name].depends_on), default=-1)
        for dependent in dependents[name]:
            waiting[dependent] -= 1
            if not waiting[dependent]:
                queue.append(dependent)
    planned = [s.model_copy(update={"stage": stage[s.name]}) for s in items]
    stages: list[list[str]] = [[] for _ in range(1 + max(stage.values(), default=-1))]
    for s in planned:
        stages[s.stage].append(s.name)
    return DeployPlan(
        environment=environment, max_parallel=max_parallel, services=planned, stages=stages
    )


def ready(plan: DeployPlan, status: Mapping[str, ServiceStatus]) -> list[str]:
    """Services not started yet whose dependencies have all succeeded, in plan order."""
    return [
        s.name
        for n in range(len(plan.stages))
        for s in plan.services
        if s.stage == n
        and status.get(s.name, "pending") == "pending"
        and all(status.get(d) in OK_STATUSES for d in s.depends_on)
    ]


def blocked(plan: DeployPlan, status: Mapping[str, ServiceStatus]) -> dict[str, str]:
    """Services not started that can no longer start -> the service that stops them: the first
    dependency (transitively) that ended in anything but success."""
    ended = {"failed", "rolled_back", "paused", "skipped"}
    cause: dict[str, str] = {}
    for name in [n for stage in plan.stages for n in stage]:  # dependencies come first
        if status.get(name, "pending") != "pending":
            continue
        for dep in plan.service(name).depends_on:
            if status.get(dep) in ended or dep in cause:
                cause[name] = cause.get(dep, dep)
                break
    return cause


def plan_status(outcomes: Sequence[ServiceOutcome]) -> Literal["succeeded", "failed", "planned"]:
    if all(o.status == "planned" for o in outcomes) and outcomes:
        return "planned"
    return "succeeded" if all(o.status in OK_STATUSES for o in outcomes) else "failed"


def summary(outcomes: Sequence[ServiceOutcome]) -> str:
    """One line: how many services ended how."""
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    order = ("succeeded", "planned", "paused", "failed", "rolled_back", "skipped")
    return ", ".join(f"{counts[k]} {k.replace('_', ' ')}" for k in order if k in counts)
