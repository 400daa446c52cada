"""Fitting the risk model: the prior corpus pooled with the repository's own history (numpy).

The prior ships with the package (`pipeline_bot/data/risk_prior.json` and its rows, built by
`scripts/build-risk-prior` from public repositories). A fit is a regularised logistic regression
on standardised, log-transformed features with one intercept per repository (so a repository whose
changes are bigger or riskier overall does not bend the shared coefficients), the repository's own
labelled commits weighted up as there are more of them. The fit is Newton's method on the exact
penalised log-loss (`fit_logistic`: a few dense solves of the features' size, so numpy is all it
needs; scikit-learn's LogisticRegression finds the same optimum, tests/test_riskfit.py); numpy is
imported only here, only when a model is fitted; scoring needs nothing (core/riskmodel.py).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from pipeline_bot.core.dataset import Dataset, Row, build
from pipeline_bot.core.features import HistoryState, replay
from pipeline_bot.core.labels import label_history
from pipeline_bot.core.riskmodel import ModelParams, RiskInputs, transform
from pipeline_bot.errors import IntegrationError
from pipeline_bot.integrations.history import (
    HistoryMiner,
    HistoryStore,
    Progress,
    no_progress,
    store_path,
)
from pipeline_bot.models import ChangeSet

C_REGULARISATION = 0.05
"""Inverse L2 strength, chosen by leave-one-repository-out AUC on the prior corpus."""
OWN_HALF_WEIGHT = 3000
"""With this many labelled commits of its own, a repository weighs as much as the whole prior."""
MIN_OWN_ROWS = 100
MIN_OWN_POSITIVES = 5
CV_SHARE = 0.3


@dataclass(frozen=True)
class PriorRow:
    repo: int
    label: int
    weight: float
    features: dict[str, float]
    commit: str = ""  # the first 12 hex digits of its sha: where the row came from


@dataclass(frozen=True)
class Prior:
    meta: dict[str, Any]
    rows: tuple[PriorRow, ...]

    @property
    def repositories(self) -> list[str]:
        return [r["name"] for r in self.meta["repositories"]]

    def without(self, shas: Sequence[str]) -> tuple[Prior, list[str]]:
        """The prior without the repositories any of these commits belong to: a repository of
        the prior that is analysed must not learn from its own future through the prior."""
        prefixes = {sha[:12] for sha in shas}
        hit = {r.repo for r in self.rows if r.commit in prefixes}
        if not hit:
            return self, []
        names = [self.repositories[i] for i in sorted(hit)]
        return Prior(self.meta, tuple(r for r in self.rows if r.repo not in hit)), names

    def params(self) -> ModelParams:
        """The prior's own fit, for repositories without enough labelled history."""
        m = self.meta
        return ModelParams(
            kind="prior",
            features=list(m["features"]),
            center=list(m["center"]),
            scale=list(m["scale"]),
            coef=list(m["coef"]),
            intercept=float(m["intercept"]),
            prior_commits=int(m["rows"]),
            fitted_at=datetime.fromisoformat(m["built_at"]),
            cross_validated_auc=m.get("loro_auc", {}).get("mean"),
            note=f"learned from {len(self.repositories)} public repositories",
        )


def load_prior(*, rows: bool = True) -> Prior:
    """The prior that ships with the package; a clear error when it is missing or damaged."""
    try:
        data = resources.files("pipeline_bot.data")
        meta = json.loads(data.joinpath("risk_prior.json").read_text())
        table = data.joinpath("risk_prior_rows.csv.gz").read_bytes() if rows else b""
    except (OSError, ValueError, ModuleNotFoundError) as exc:
        raise IntegrationError(
            f"the risk model's prior is missing or damaged ({type(exc).__name__}); reinstall "
            "pipeline-bot, or rebuild it with scripts/build_risk_prior.py",
            service="risk-model",
        ) from None
    return Prior(meta, tuple(_read_rows(table, meta)) if rows else ())


@lru_cache(maxsize=1)
def prior_meta() -> dict[str, Any]:
    return load_prior(rows=False).meta


def _read_rows(table: bytes, meta: dict[str, Any]) -> list[PriorRow]:
    names = list(meta["features"])
    text = gzip.decompress(table).decode()
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    at = {name: header.index(name) for name in [*names, "repo", "label", "weight", "commit"]}
    out = []
    for row in reader:
        out.append(
            PriorRow(
                repo=int(row[at["repo"]]),
                label=int(row[at["label"]]),
                weight=float(row[at["weight"]]),
                features={n: float(row[at[n]]) for n in names},
                commit=row[at["commit"]],
            )
        )
    return out


def own_weight(own_rows: int, prior_weight: float) -> float:
    """Weight of each of the repository's own rows: its share of the pool grows with its history
    (half of it at OWN_HALF_WEIGHT labelled commits)."""
    if own_rows == 0:
        return 0.0
    share = own_rows / (own_rows + OWN_HALF_WEIGHT)
    return max(1.0, share / (1 - share) * prior_weight / own_rows)


def fit(
    prior: Prior,
    own: Sequence[Row],
    *,
    newest_commit: str | None,
    now: datetime | None = None,
    cross_validate: bool = True,
) -> ModelParams:
    """The pooled model for a repository; `kind` is `prior` when its own history is too short."""
    positives = sum(r.label for r in own)
    prior, dropped = prior.without([r.sha for r in own])
    if len(own) < MIN_OWN_ROWS or positives < MIN_OWN_POSITIVES:
        base = prior.params()
        if dropped:  # the shipped coefficients saw this repository: refit the prior without it
            coef, intercept = fit_pooled(prior, [])
            base = base.model_copy(update={"coef": coef, "intercept": intercept})
        note = (
            f"{len(own)} labelled commits with {positives} that went wrong: too few to learn "
            f"from yet (needs {MIN_OWN_ROWS} and {MIN_OWN_POSITIVES}); "
        )
        return base.model_copy(
            update={
                "commits": len(own),
                "positives": positives,
                "newest_commit": newest_commit,
                "note": note + base.note,
            }
        )
    coef, intercept = fit_pooled(prior, own)
    auc = _time_split_auc(prior, own) if cross_validate else None
    m = prior.meta
    return ModelParams(
        kind="history",
        features=list(m["features"]),
        center=list(m["center"]),
        scale=list(m["scale"]),
        coef=coef,
        intercept=intercept,
        commits=len(own),
        positives=positives,
        prior_commits=int(m["rows"]),
        fitted_at=now or datetime.now(UTC),
        cross_validated_auc=auc,
        newest_commit=newest_commit,
        note=f"{len(own)} labelled commits of this repository pooled with "
        f"{len(prior.repositories)} public repositories",
    )


def fit_pooled(prior: Prior, own: Sequence[Row]) -> tuple[list[float], float]:
    """Coefficients and the intercept for the repository (for one with no rows of its own, an
    average repository of the prior)."""
    import numpy as np

    names = list(prior.meta["features"])
    center = np.array(prior.meta["center"])
    scale = np.array(prior.meta["scale"])
    repos = len(prior.repositories)
    prior_weight = sum(r.weight for r in prior.rows)
    w_own = own_weight(len(own), prior_weight)

    def design(rows: Sequence[dict[str, float]], repo: int) -> Any:
        x = np.array([[transform(n, f.get(n, 0.0)) for n in names] for f in rows])
        groups = np.zeros((len(rows), repos + 1))
        groups[:, repo] = 1.0
        return np.hstack([(x - center) / scale, groups])

    blocks, labels, weights = [], [], []
    by_repo: dict[int, list[PriorRow]] = {}
    for r in prior.rows:
        by_repo.setdefault(r.repo, []).append(r)
    for repo, rows in sorted(by_repo.items()):
        blocks.append(design([r.features for r in rows], repo))
        labels += [r.label for r in rows]
        weights += [r.weight for r in rows]
    if own:
        blocks.append(design([r.features for r in own], repos))
        labels += [r.label for r in own]
        weights += [w_own] * len(own)
    coef, intercept = fit_logistic(
        np.vstack(blocks), np.array(labels), np.array(weights), C_REGULARISATION
    )
    effect = coef[-1] if own else float(np.mean(coef[len(names) : len(names) + repos]))
    return [float(c) for c in coef[: len(names)]], float(intercept + effect)


def fit_logistic(
    x: Any, y: Any, weights: Any, c: float, *, max_iter: int = 100
) -> tuple[Any, float]:
    """L2-regularised logistic regression with an unpenalised intercept, by Newton's method:
    minimises 1/2 |w|^2 + c * sum_i weights_i * logloss(y_i, x_i . w + b), the objective
    scikit-learn's LogisticRegression(C=c) minimises. Each step solves the exact Hessian (the
    objective is strictly convex in w, and in b while any weight is positive), with a backtracking
    line search, so it converges in a handful of steps to the optimum's precision, not to a
    solver's tolerance. Returns (w, b) as a numpy array and a float."""
    import numpy as np

    n, d = x.shape
    a = np.hstack([x, np.ones((n, 1))])
    penalty = np.ones(d + 1)
    penalty[-1] = 0.0
    cw = c * weights
    theta = np.zeros(d + 1)
    scale = 1.0 + float(np.sum(cw))

    def objective(t: Any) -> float:
        z = a @ t
        return float(0.5 * np.sum(penalty * t * t) + np.sum(cw * (np.logaddexp(0.0, z) - y * z)))

    value = objective(theta)
    for _ in range(max_iter):
        z = a @ theta
        p = 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic function, without overflow
        grad = penalty * theta + a.T @ (cw * (p - y))
        if float(np.max(np.abs(grad))) <= 1e-9 * scale:
            return theta[:-1], float(theta[-1])
        hessian = (a.T * (cw * p * (1.0 - p))) @ a + np.diag(penalty)
        try:
            step = np.linalg.solve(hessian, grad)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(hessian, grad, rcond=None)[0]
        t, decrease = 1.0, float(grad @ step)
        while True:
            candidate = theta - t * step
            new = objective(candidate)
            if new <= value - 1e-4 * t * decrease or t < 1e-12:
                break
            t /= 2
        converged = float(np.max(np.abs(candidate - theta))) < 1e-12
        theta, value = candidate, new
        if converged:
            return theta[:-1], float(theta[-1])
    raise IntegrationError(
        f"the risk model's fit did not converge in {max_iter} Newton steps", service="risk-model"
    )


def _time_split_auc(prior: Prior, own: Sequence[Row]) -> float | None:
    """Fitted on the older part of the repository's own history (with the prior), scored on the
    newer part: what the model would have got right."""
    from pipeline_bot.core.riskmodel import auc, predict

    ordered = sorted(own, key=lambda r: r.position)
    cut = int(len(ordered) * (1 - CV_SHARE))
    train, test = ordered[:cut], ordered[cut:]
    labels = [r.label for r in test]
    if sum(labels) < 3 or len(labels) - sum(labels) < 3 or sum(r.label for r in train) < 1:
        return None
    coef, intercept = fit_pooled(prior, train)
    m = prior.meta
    params = ModelParams(
        kind="history",
        features=list(m["features"]),
        center=list(m["center"]),
        scale=list(m["scale"]),
        coef=coef,
        intercept=intercept,
    )
    scores = [predict(params, r.features).probability for r in test]
    return round(auc(labels, scores), 3)


@dataclass
class LabelledHistory:
    dataset: Dataset
    blamed: dict[str, list[str]]
    aliases: dict[str, str]
    records: int
    window: list[str]  # the shas mined, oldest first


def labelled_history(
    miner: HistoryMiner, head: str, *, window: int, horizon_days: int
) -> LabelledHistory:
    """Mine the window below `head` (one pass, with SZZ) and label it as seen from `head`."""
    mined = miner.mine(head, window, szz=True)
    blamed = mined.blamed or {}
    aliases = miner.aliases(mined.records) if mined.records else {}
    data = build(mined.records, blamed, aliases=aliases, horizon_days=horizon_days)
    shas = [r.sha for r in mined.records]
    return LabelledHistory(data, blamed, aliases, len(mined.records), shas)


REFIT_EVERY = 50
"""The model is refitted about every this many mainline commits: the fit for a head is the one at
the newest mainline commit below it whose sha, read as a number, is a multiple of this. So the
score of a commit never depends on which analyses ran before it (or on what the cache holds), and
finding the checkpoint costs nothing but the history window git lists anyway."""


def checkpoint(window: Sequence[str], every: int = REFIT_EVERY) -> str | None:
    """The newest commit of a window (oldest first) that the model is fitted at."""
    for sha in reversed(window):
        if int(sha[:8], 16) % every == 0:
            return sha
    return None


class HistoryRisk:
    """RiskPort over local clones: mines, labels and fits once per checkpoint, cached on disk."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        window: int = 5000,
        horizon_days: int = 30,
        learn: bool = True,
        refit_every: int = REFIT_EVERY,
        git: str = "git",
        progress: Progress = no_progress,
    ) -> None:
        self.cache_dir = cache_dir
        self.window = window
        self.horizon_days = horizon_days
        self.learn = learn
        self.refit_every = refit_every
        self.git = git
        self.progress = progress

    def assess(self, root: Path | None, changes: ChangeSet) -> RiskInputs:
        if root is None:
            return RiskInputs(load_prior(rows=False).params(), note="no local history to read")
        if self.window == 0:
            return RiskInputs(
                load_prior(rows=False).params(),
                note="history is off (PIPELINE_BOT_HISTORY_COMMITS=0)",
            )
        store = HistoryStore(store_path(self.cache_dir, root, self.git))
        try:
            return self._assess(
                HistoryMiner(root, store, git=self.git, progress=self.progress), changes
            )
        finally:
            store.close()

    def _assess(self, miner: HistoryMiner, changes: ChangeSet) -> RiskInputs:
        window = miner.window(changes.head, self.window)
        at = checkpoint(window, self.refit_every) if self.learn else None
        if at is None:  # the prior alone: asked for, or a history too young to have a checkpoint
            params = load_prior(rows=False).params()
            return self._replayed(miner, changes, window, params, {}, {})
        entry = self._model_at(miner, at)
        params = ModelParams.model_validate(entry["params"])
        own = {c.sha for c in changes.commits}
        since = window[window.index(at) + 1 :]
        if at in own or any(sha in own for sha in entry["window"]):
            # the change is part of the checkpoint's history: replay without it
            return self._replayed(miner, changes, window, params, entry["blamed"], entry["aliases"])
        state = HistoryState.from_data(entry["state"])
        for record in miner.records([sha for sha in since if sha not in own]):
            state.add(record)
        note = (
            f"the {entry['commits']:,} mainline commits up to {at[:12]} (where the model was "
            f"fitted) and the {len(since):,} since"
        )
        return self._inputs(miner, changes, params, state, note, len(window))

    def _model_at(self, miner: HistoryMiner, at: str) -> dict[str, Any]:
        """The fit at a checkpoint, with the history it saw: cached, else mined and fitted."""
        key = f"{at}:{self.window}:{self.horizon_days}:{prior_meta()['built_at']}:v2"
        cached = miner.store.model(key)
        if cached is not None:
            return json.loads(cached)  # type: ignore[no-any-return]
        self.progress(
            "learning the risk model from this repository's history (the first analysis after "
            f"about {self.refit_every} new commits does this; the next ones reuse it)"
        )
        learned = labelled_history(miner, at, window=self.window, horizon_days=self.horizon_days)
        data = learned.dataset
        self.progress(
            f"fitting on {len(data.rows):,} labelled commits ({data.positives:,} went wrong) "
            "and the prior corpus"
        )
        params = fit(load_prior(), data.rows, newest_commit=at)
        entry = {
            "params": params.model_dump(mode="json"),
            "blamed": learned.blamed,
            "aliases": learned.aliases,
            "window": learned.window,
            "commits": learned.records,
            "state": data.state.to_data(),
        }
        miner.store.put_model(key, json.dumps(entry, separators=(",", ":")), time.time())
        return entry

    def _replayed(
        self,
        miner: HistoryMiner,
        changes: ChangeSet,
        window: list[str],
        params: ModelParams,
        blamed: dict[str, list[str]],
        aliases: dict[str, str],
    ) -> RiskInputs:
        """The change's history from a replay of the whole window below it (without it)."""
        own = {c.sha for c in changes.commits}
        # the change's own commits are left out unread: the largest records, and not history
        records = miner.records([sha for sha in window if sha not in own])
        labels = label_history(records, blamed, aliases)
        _, state = replay(records, labels.found_out, skip=len(records))
        note = f"the last {len(records):,} mainline commits before the change"
        return self._inputs(miner, changes, params, state, note, len(window), empty=not records)

    def _inputs(
        self,
        miner: HistoryMiner,
        changes: ChangeSet,
        params: ModelParams,
        state: HistoryState,
        note: str,
        listed: int,
        *,
        empty: bool = False,
    ) -> RiskInputs:
        paths = [f.path for f in changes.files]
        lines_before = miner.sizes_at(changes.base, paths)
        if listed < self.window and miner.is_shallow():
            note = "shallow clone: the history before the change is not here (fetch-depth: 0)"
            return RiskInputs(params, None, lines_before, note)
        if empty:
            return RiskInputs(params, None, lines_before, "no commits before the change")
        author = next((c for c in changes.commits if not c.message.startswith("Merge ")), None)
        head = changes.commits[0] if changes.commits else None
        when = int(head.timestamp.timestamp()) if head else 0
        history = state.history_features(paths, author.email.lower() if author else "", when)
        return RiskInputs(params, history, lines_before, note)
