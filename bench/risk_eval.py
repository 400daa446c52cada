"""Benchmark: does the risk score rank changes that went wrong above those that did not?

On one repository's own history, in one run:
  1. mine the last --window mainline commits below --head (the product's miner: SZZ by line
     origins, reverts) and label them as seen from --head (30-day horizon);
  2. split in time: the older --train share is what the model may learn from, with the labels
     known at the split commit (later fixes and reverts are hidden from it); the newer part is
     scored, with the labels known at --head;
  3. fit the product's model (the public prior, without this repository if the prior holds it,
     pooled with the older part) and score the newer part;
  4. print the AUC of the model next to two baselines measured on the same commits: lines
     changed (added + deleted) and the fixed rule weights (PIPELINE_BOT_RISK_MODEL=rules, run on
     each commit's real diff), each with a bootstrap 95 % interval, and the paired difference
     between the model and lines changed.

    python bench/risk_eval.py --repo PATH [--head REF] [--window 5000] [--train 0.7]
                              [--bootstrap 1000] [--no-rules]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pipeline_bot.core.analysis import analyze
from pipeline_bot.core.dataset import Row, build
from pipeline_bot.core.riskmodel import ModelParams, auc, predict
from pipeline_bot.errors import PipelineBotError
from pipeline_bot.integrations.git import GitRepository
from pipeline_bot.integrations.history import HistoryMiner, HistoryStore
from pipeline_bot.integrations.riskfit import Prior, fit_pooled, labelled_history, load_prior
from pipeline_bot.repo_config import RepoConfig

HORIZON = 30


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--head", default="HEAD")
    ap.add_argument("--window", type=int, default=5000)
    ap.add_argument("--train", type=float, default=0.7)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--no-rules", action="store_true", help="skip the rule-weights baseline")
    args = ap.parse_args()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        store = HistoryStore(Path(tmp) / "h.sqlite3")
        miner = HistoryMiner(args.repo, store, progress=lambda m: print(m, file=sys.stderr))
        full = labelled_history(miner, args.head, window=args.window, horizon_days=HORIZON)
        records = miner.mine(args.head, args.window, szz=False).records
        store.close()
    rows = sorted(full.dataset.rows, key=lambda r: r.position)
    cut = int(len(records) * args.train)
    # what the model may learn from: the older part, labelled as it was known at the split
    known_then = build(
        records[:cut],
        dict(full.blamed),
        aliases=full.aliases,
        horizon_days=HORIZON,
    )
    train = known_then.rows
    test = [r for r in rows if r.position >= cut]
    y = [r.label for r in test]
    if sum(y) < 5 or len(y) - sum(y) < 5:
        print(f"error: the newer part has {sum(y)} positives of {len(y)}: too few", file=sys.stderr)
        return 2
    prior, left_out = load_prior().without([r.sha for r in records])
    dropped = ", ".join(left_out)
    coef, intercept = fit_pooled(prior, train)
    model = _params(prior, coef, intercept)
    coef0, intercept0 = fit_pooled(prior, [])
    prior_only = _params(prior, coef0, intercept0)
    scores = {
        "model (prior + own older history)": [predict(model, r.features).probability for r in test],
        "prior alone": [predict(prior_only, r.features).probability for r in test],
        "lines changed": [r.features["la"] + r.features["ld"] for r in test],
    }
    if not args.no_rules:
        scores["rule weights"] = _rule_scores(args.repo, test, records)
    _report(args, full, records, train, test, y, scores, dropped, time.monotonic() - t0)
    return 0


def _params(prior: Prior, coef: list[float], intercept: float) -> ModelParams:
    m = prior.meta
    return ModelParams(
        kind="history",
        features=list(m["features"]),
        center=list(m["center"]),
        scale=list(m["scale"]),
        coef=coef,
        intercept=intercept,
    )


def _rule_scores(root: Path, test: list[Row], records: list) -> list[float]:
    """The fixed-weight score of each commit's real diff (its first parent to it)."""
    repo = GitRepository(root)
    parents = {r.sha: r.parents for r in records}
    config = RepoConfig.model_validate({"version": 1})
    out = []
    for i, row in enumerate(test):
        base = parents[row.sha][0] if parents[row.sha] else None
        try:
            source = repo.read_change(base, row.sha)
            out.append(float(analyze(source.changes, config, risk=None).risk.score))
        except PipelineBotError:
            out.append(0.0)
        if (i + 1) % 250 == 0:
            print(f"  rule weights: {i + 1} of {len(test)} commits", file=sys.stderr)
    return out


def _bootstrap(y, columns, n, seed=7):
    rng = random.Random(seed)  # noqa: S311 - resampling, not cryptography
    idx = list(range(len(y)))
    draws: dict[str, list[float]] = {k: [] for k in columns}
    diffs = []
    for _ in range(n):
        pick = [rng.choice(idx) for _ in idx]
        yy = [y[i] for i in pick]
        if 0 < sum(yy) < len(yy):
            got = {k: auc(yy, [v[i] for i in pick]) for k, v in columns.items()}
            for k, a in got.items():
                draws[k].append(a)
            first = next(iter(columns))
            diffs.append(got[first] - got["lines changed"])
    return draws, diffs


def _interval(values: list[float]) -> str:
    v = sorted(values)
    lo, hi = v[int(0.025 * len(v))], v[int(0.975 * len(v)) - 1]
    return f"[{lo:.3f}, {hi:.3f}]"


def _report(args, full, records, train, test, y, scores, dropped, seconds) -> None:
    labels = full.dataset.labels
    rows = full.dataset.rows
    reverted = sum(1 for r in rows if r.sha in labels.reverted)
    print(f"repository: {args.repo} at {args.head}")
    print(
        f"history: the last {len(records):,} mainline commits; {len(rows):,} labelled "
        f"({sum(r.label for r in rows):,} went wrong, {reverted} of them reverted); "
        f"horizon {HORIZON} days"
    )
    print(
        f"split: the older {args.train:.0%} trains ({len(train):,} labelled as known then, "
        f"{sum(r.label for r in train)} went wrong); the newer part is scored "
        f"({len(test):,} commits, {sum(y)} went wrong)"
    )
    if dropped:
        print(f"prior: refitted without {dropped} (it is this repository)")
    draws, diffs = _bootstrap(y, scores, args.bootstrap)
    print(f"AUC on the newer part ({args.bootstrap} bootstrap resamples, 95 % interval):")
    for name, s in scores.items():
        print(f"  {name:36s} {auc(y, s):.3f} {_interval(draws[name])}")
    model, lines = next(iter(scores)), "lines changed"
    gain = auc(y, scores[model]) - auc(y, scores[lines])
    print(f"  {'model - lines changed':36s} {gain:+.3f} {_interval(diffs)}")
    model_scores = scores[model]
    print(
        f"calibration on the newer part: predicted {sum(model_scores) / len(model_scores):.1%} "
        f"on average, {sum(y) / len(y):.1%} went wrong (its youngest commits count only if they "
        "went wrong: the observed share runs high)"
    )
    rev = [1 if r.sha in labels.reverted else 0 for r in test]
    keep = [i for i, r in enumerate(test) if rev[i] or not r.label]
    if sum(rev) >= 3:
        ry = [rev[i] for i in keep]
        parts = ", ".join(f"{k} {auc(ry, [v[i] for i in keep]):.3f}" for k, v in scores.items())
        print(f"reverted only ({sum(rev)} reverted vs the commits that went fine): {parts}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"ran in {seconds:.0f} s on {os.cpu_count()} cores (load average {load:.1f})")


if __name__ == "__main__":
    raise SystemExit(main())
