"""StorePort over the cluster itself: each environment's lock is a Lease and its deploy records are
Secrets, in the environment's namespace, so every job and front end that can reach the cluster
sees the same locks, the paused canary and the last good version.

Which namespace: `namespaces[environment]` (the repository config's `namespace`), else the
environment's own name, as the deploy engine chooses. Which cluster: one for every environment,
or one per environment (`ClusterStore.per_environment`, for environments on other contexts).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from pipeline_bot.deploy.leases import LeaseLocks
from pipeline_bot.deploy.records import ClusterRecords
from pipeline_bot.integrations.ports import ClusterPort
from pipeline_bot.models import DeployRecord, EnvironmentLock
from pipeline_bot.repo_config import Environment, RepoConfig, default_config

DEFAULT_KEEP = 20


class ClusterStore:
    """Locks (Leases) and deploy records (Secrets) in the cluster. Builds nothing and calls
    nothing until it is used."""

    def __init__(
        self,
        cluster: ClusterPort,
        *,
        namespaces: Mapping[str, str] | None = None,
        keep: int = DEFAULT_KEEP,
    ) -> None:
        self._init(lambda _environment: cluster, namespaces, keep)

    @classmethod
    def per_environment(
        cls,
        clusters: Callable[[str], ClusterPort],
        *,
        namespaces: Mapping[str, str] | None = None,
        keep: int = DEFAULT_KEEP,
    ) -> ClusterStore:
        """Each environment's state in its own cluster (`clusters(name)`, built once each)."""
        store = cls.__new__(cls)
        store._init(clusters, namespaces, keep)
        return store

    @classmethod
    def for_config(
        cls,
        config: RepoConfig,
        connect: Callable[[Environment], ClusterPort],
        *,
        keep: int = DEFAULT_KEEP,
    ) -> ClusterStore:
        """Each environment of a repository's config on its own cluster (`connect`, as a
        ToolContext's `cluster`) and in its own namespace; an environment the config does not
        name is an UnknownEnvironmentError when used."""
        envs = config.environments or default_config().environments
        return cls.per_environment(
            lambda name: connect(config.environment(name)),
            namespaces={e.name: e.namespace or e.name for e in envs},
            keep=keep,
        )

    def _init(
        self,
        clusters: Callable[[str], ClusterPort],
        namespaces: Mapping[str, str] | None,
        keep: int,
    ) -> None:
        self._clusters = clusters
        self._built: dict[str, ClusterPort] = {}
        self._namespaces = dict(namespaces or {})
        self._known: dict[str, None] = dict.fromkeys(self._namespaces)
        self._guard = threading.Lock()
        self.locks = LeaseLocks(self.locate)
        self.records = ClusterRecords(self.locate, keep=keep, environments=self._environments)

    def locate(self, environment: str) -> tuple[ClusterPort, str]:
        """The cluster and namespace that hold `environment`'s lock and records."""
        with self._guard:
            self._known.setdefault(environment)
            cluster = self._built.get(environment)
        if cluster is None:
            cluster = self._clusters(environment)
            with self._guard:
                cluster = self._built.setdefault(environment, cluster)
        return cluster, self._namespaces.get(environment) or environment

    def _environments(self) -> list[str]:
        with self._guard:
            return list(self._known)

    # ------------------------------------------------------------------ StorePort

    def save(self, record: DeployRecord) -> None:
        self.records.save(record)

    def get(self, deploy_id: str) -> DeployRecord | None:
        return self.records.get(deploy_id)

    def history(
        self,
        environment: str,
        app: str | None = None,
        *,
        limit: int = 20,
        status: str | None = None,
    ) -> list[DeployRecord]:
        return self.records.history(environment, app, limit=limit, status=status)

    def last_successful(
        self, environment: str, app: str, *, before: str | None = None
    ) -> DeployRecord | None:
        return self.records.last_successful(environment, app, before=before)

    def acquire(
        self, environment: str, owner: str, reason: str, *, ttl: float, wait: float = 0.0
    ) -> EnvironmentLock:
        return self.locks.acquire(environment, owner, reason, ttl=ttl, wait=wait)

    def release(self, environment: str, owner: str) -> bool:
        return self.locks.release(environment, owner)

    def lock(self, environment: str) -> EnvironmentLock | None:
        return self.locks.lock(environment)
