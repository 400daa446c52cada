"""Build the risk model's prior: labelled commits of many public repositories, pooled.

For each source (a public repository at a pinned commit) it mines the last `--window` mainline
commits with the product's own miner (SZZ by line origins, reverts), labels them as seen from
that commit (30-day horizon), and keeps every commit that went wrong and a sample of those that
did not (weighted back up, so fits see each repository's true balance). It then fits the prior
(a regularised logistic regression with one intercept per repository), measures it by
leave-one-repository-out AUC next to the lines-changed baseline, and writes:

  src/pipeline_bot/data/risk_prior.json         features, scaling, coefficients, sources, AUCs
  src/pipeline_bot/data/risk_prior_rows.csv.gz  the pooled rows (repository, commit, label, weight,
                                                raw features): what a refit pools with a
                                                repository's own history

    .venv/bin/python scripts/build_risk_prior.py --repos-dir DIR [--window 5000] [--jobs 2]
    .venv/bin/python scripts/build_risk_prior.py --repos-dir DIR --refresh-sources

DIR holds one clone per source named `owner+name` (bare clones are fine; a clone at
`DIR/owner+name/repo` too), e.g. `git clone --bare https://github.com/owner/name DIR/owner+name`.
Sources are listed in src/pipeline_bot/data/risk_prior_sources.tsv (name, URL, commit);
--refresh-sources rewrites that list from the clones' HEADs. Four repositories are kept out for
evaluation and refused here: prometheus/prometheus, argoproj/argo-cd, pytest-dev/pytest and
hashicorp/terraform.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import math
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pipeline_bot.core.dataset import Row
from pipeline_bot.core.features import NAMES
from pipeline_bot.core.riskmodel import auc, transform
from pipeline_bot.integrations.history import HistoryMiner, HistoryStore
from pipeline_bot.integrations.riskfit import (
    C_REGULARISATION,
    Prior,
    PriorRow,
    fit_pooled,
    labelled_history,
)

DATA = Path(__file__).resolve().parents[1] / "src" / "pipeline_bot" / "data"
SOURCES = DATA / "risk_prior_sources.tsv"
HELD_OUT = {"prometheus/prometheus", "argoproj/argo-cd", "pytest-dev/pytest", "hashicorp/terraform"}
MAX_ROWS = 1200
MAX_POSITIVES = 600
HORIZON_DAYS = 30


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repos-dir", type=Path, required=True)
    ap.add_argument("--window", type=int, default=5000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--refresh-sources", action="store_true")
    args = ap.parse_args()
    if args.refresh_sources:
        refresh_sources(args.repos_dir)
    sources = read_sources()
    bad = HELD_OUT & {name for name, _, _ in sources}
    if bad:
        print(f"error: {', '.join(sorted(bad))} is kept for evaluation", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    jobs = [
        (name, str(clone_dir(args.repos_dir, name)), commit, args.window)
        for name, _, commit in sources
    ]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        mined = list(pool.map(mine_one, jobs))
    print(f"mined {len(mined)} repositories in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    write_prior(sources, mined, args.window)
    return 0


def refresh_sources(repos_dir: Path) -> None:
    import subprocess

    lines = []
    for path in sorted(p for p in repos_dir.iterdir() if "+" in p.name):
        name = path.name.replace("+", "/", 1)
        if name in HELD_OUT:
            continue
        root = path / "repo" if (path / "repo").is_dir() else path
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
        lines.append(f"{name}\thttps://github.com/{name}\t{head.stdout.strip()}")
    SOURCES.write_text(
        "# name\tURL\tcommit mined (the newest commit the prior saw)\n" + "\n".join(lines) + "\n"
    )


def read_sources() -> list[tuple[str, str, str]]:
    out = []
    for line in SOURCES.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, url, commit = line.split("\t")[:3]
            out.append((name, url, commit))
    return out


def clone_dir(repos_dir: Path, name: str) -> Path:
    path = repos_dir / name.replace("/", "+", 1)
    return path / "repo" if (path / "repo").is_dir() else path


def mine_one(job: tuple[str, str, str, int]) -> dict[str, object]:
    name, root, commit, window = job
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        store = HistoryStore(Path(tmp) / "h.sqlite3")
        miner = HistoryMiner(Path(root), store)
        got = labelled_history(miner, commit, window=window, horizon_days=HORIZON_DAYS)
        store.close()
    rows = got.dataset.rows
    reverted = got.dataset.labels.reverted
    bad = sum(r.label for r in rows)
    print(
        f"  {name}: {got.records} commits, {len(rows)} labelled, {bad} went wrong "
        f"({sum(1 for r in rows if r.sha in reverted)} reverted) in {time.monotonic() - t0:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    return {
        "name": name,
        "rows": rows,
        "records": got.records,
        "reverted": [r.sha for r in rows if r.sha in reverted],
    }


def sample(rows: list[Row]) -> list[tuple[Row, float]]:
    """Every positive (up to MAX_POSITIVES) and negatives to MAX_ROWS, by sha order (a fixed,
    content-independent sample), each weighted by how many it stands for."""
    pos = sorted((r for r in rows if r.label), key=lambda r: r.sha)
    neg = sorted((r for r in rows if not r.label), key=lambda r: r.sha)
    keep_pos = pos[:MAX_POSITIVES]
    keep_neg = neg[: max(0, MAX_ROWS - len(keep_pos))]
    wp = len(pos) / len(keep_pos) if keep_pos else 1.0
    wn = len(neg) / len(keep_neg) if keep_neg else 1.0
    return [(r, wp) for r in keep_pos] + [(r, wn) for r in keep_neg]


def write_prior(
    sources: list[tuple[str, str, str]], mined: list[dict[str, object]], window: int
) -> None:
    import numpy as np

    names = list(NAMES)
    kept = [sample(list(m["rows"])) for m in mined]  # type: ignore[arg-type]
    x = np.array([[transform(n, r.features[n]) for n in names] for rows in kept for r, _ in rows])
    w = np.array([wt for rows in kept for _, wt in rows])
    center = np.average(x, axis=0, weights=w)
    scale = np.sqrt(np.average((x - center) ** 2, axis=0, weights=w))
    scale[scale == 0] = 1.0
    meta: dict[str, object] = {
        "version": 1,
        "built_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "features": names,
        "center": [round(float(v), 6) for v in center],
        "scale": [round(float(v), 6) for v in scale],
        "C": C_REGULARISATION,
        "window": window,
        "horizon_days": HORIZON_DAYS,
        "rows": sum(len(k) for k in kept),
    }
    prior_rows = [
        PriorRow(i, r.label, wt, r.features) for i, rows in enumerate(kept) for r, wt in rows
    ]
    repos = []
    for i, ((name, url, commit), m) in enumerate(zip(sources, mined, strict=True)):
        rows = list(m["rows"])  # type: ignore[arg-type]
        repos.append(
            {
                "name": name,
                "url": url,
                "commit": commit,
                "commits_mined": m["records"],
                "labelled": len(rows),
                "positives": sum(r.label for r in rows),
                "reverted": len(m["reverted"]),  # type: ignore[arg-type]
                "kept": len(kept[i]),
            }
        )
    meta["repositories"] = repos
    full = Prior(meta, tuple(prior_rows))
    coef, intercept = fit_pooled(full, [])
    meta["coef"] = [round(c, 6) for c in coef]
    meta["intercept"] = round(intercept, 6)
    # leave one repository out: fitted on the others, scored on all of its labelled commits
    per_repo = {}
    for i, m in enumerate(mined):
        rows = list(m["rows"])  # type: ignore[arg-type]
        labels = [r.label for r in rows]
        if sum(labels) < 5 or len(labels) - sum(labels) < 5:
            continue
        others = Prior(meta, tuple(r for r in prior_rows if r.repo != i))
        c, _ = fit_pooled(others, [])
        xs = np.array([[transform(n, r.features[n]) for n in names] for r in rows])
        scores = ((xs - center) / scale) @ np.array(c)
        lines = [r.features["la"] + r.features["ld"] for r in rows]
        per_repo[m["name"]] = {
            "model": round(auc(labels, [float(v) for v in scores]), 3),
            "lines": round(auc(labels, lines), 3),
        }
        print(f"  leave-one-out {m['name']}: {per_repo[m['name']]}", file=sys.stderr)
    meta["loro_auc"] = {
        "mean": round(sum(v["model"] for v in per_repo.values()) / len(per_repo), 3),
        "lines_mean": round(sum(v["lines"] for v in per_repo.values()) / len(per_repo), 3),
        "per_repo": per_repo,
    }
    (DATA / "risk_prior.json").write_text(json.dumps(meta, indent=1) + "\n")
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["repo", "commit", "label", "weight", *names])
    for i, rows in enumerate(kept):
        for r, wt in rows:
            out.writerow([i, r.sha[:12], r.label, _num(wt), *(_num(r.features[n]) for n in names)])
    (DATA / "risk_prior_rows.csv.gz").write_bytes(gzip.compress(buf.getvalue().encode(), mtime=0))
    print(
        f"prior: {meta['rows']} rows from {len(repos)} repositories; leave-one-out AUC "
        f"{meta['loro_auc']['mean']} (lines changed {meta['loro_auc']['lines_mean']})",  # type: ignore[index]
        file=sys.stderr,
    )


def _num(v: float) -> str:
    if float(v).is_integer():
        return str(int(v))
    return f"{v:.4g}" if math.isfinite(v) else "0"


if __name__ == "__main__":
    raise SystemExit(main())
